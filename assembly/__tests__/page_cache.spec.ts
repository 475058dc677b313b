import {
  drainLog, flushDirty, initCache, invalidate, markDirty, page, prefetch, readRange, recover, setClock, writeRangeBuilding,
  writeThrough, writeU16Through,
} from '../page_cache';
import { createFile, fetches, fileU16, fileU8, logApplies, pageWrites, setFileU8 } from './fixtures';

const FILE: u32 = 7;

function freshFile(pages: u32): void {
  createFile(FILE, pages * 1024);
  // Byte i of page p holds (p * 31 + i) & 0xff, so any mix-up of pages or offsets shows.
  for (let p: u32 = 0; p < pages; p++) for (let i: u32 = 0; i < 1024; i += 97) setFileU8(FILE, p * 1024 + i, (p * 31 + i) & 0xff);
}

describe('page cache', () => {
  test('a miss fetches the page; a hit reads the cached copy without fetching', () => {
    initCache(4);
    freshFile(8);
    const before = fetches();
    const p = page(FILE, 3);
    expect(fetches()).toBe(before + 1);
    expect(<u32>load<u8>(p + 97)).toBe((3 * 31 + 97) & 0xff);
    const again = page(FILE, 3);
    expect(again).toBe(p);
    expect(fetches()).toBe(before + 1);
  });

  test('within a set the four most recently used pages stay; a fifth evicts the least recently used', () => {
    initCache(1);
    freshFile(8);
    for (let p: u32 = 0; p < 4; p++) page(FILE, p);
    page(FILE, 0); // 1 is now the least recently used
    const before = fetches();
    page(FILE, 4);
    expect(fetches()).toBe(before + 1);
    page(FILE, 0);
    page(FILE, 2);
    page(FILE, 3);
    expect(fetches()).toBe(before + 1, 'pages 0, 2 and 3 must still be resident');
    page(FILE, 1);
    expect(fetches()).toBe(before + 2, 'page 1 was evicted');
  });

  test('eviction stays least recently used when the use counter wraps past 2^32', () => {
    // A long-running process passes 2^32 uses in hours. Stamps issued after the wrap are small, so
    // a plain comparison takes the page just used for the oldest: each set would keep its three
    // stale pages for ever, and moveCell's source could be evicted by its destination.
    initCache(1);
    freshFile(8);
    setClock(0xfffffffc);
    for (let p: u32 = 0; p < 4; p++) page(FILE, p); // stamps ..fd, ..fe, ..ff, then the wrap
    const before = fetches();
    page(FILE, 4);
    expect(fetches()).toBe(before + 1);
    page(FILE, 1);
    page(FILE, 2);
    page(FILE, 3);
    page(FILE, 4);
    expect(fetches()).toBe(before + 1, 'page 0, the least recently used, was the one evicted');
  });

  test('a dirty page is written back when it is evicted', () => {
    initCache(1);
    freshFile(8);
    const p = page(FILE, 5);
    store<u8>(p + 10, 0xab);
    markDirty(p);
    expect(fileU8(FILE, 5 * 1024 + 10)).toBe(0, 'not written before eviction');
    const writes = pageWrites();
    for (let q: u32 = 0; q < 4; q++) page(FILE, q);
    expect(pageWrites()).toBe(writes + 1);
    expect(fileU8(FILE, 5 * 1024 + 10)).toBe(0xab);
  });

  test('flushDirty writes every dirty page back once, and only dirty ones', () => {
    initCache(4);
    freshFile(8);
    for (let q: u32 = 0; q < 3; q++) {
      const p = page(FILE, q);
      store<u8>(p + 1, <u8>(0x10 + q));
      markDirty(p);
    }
    page(FILE, 6);
    const writes = pageWrites();
    flushDirty();
    expect(pageWrites()).toBe(writes + 3);
    for (let q: u32 = 0; q < 3; q++) expect(fileU8(FILE, q * 1024 + 1)).toBe(0x10 + q);
    flushDirty();
    expect(pageWrites()).toBe(writes + 3, 'clean pages are not written again');
  });

  test('invalidate forgets pages without writing them back', () => {
    initCache(4);
    freshFile(8);
    const p = page(FILE, 2);
    store<u8>(p + 3, 0x77);
    markDirty(p);
    invalidate(FILE, FILE + 1);
    flushDirty();
    expect(fileU8(FILE, 2 * 1024 + 3)).toBe(0, 'dropped, not written');
    const before = fetches();
    page(FILE, 2);
    expect(fetches()).toBe(before + 1, 'fetched again');
  });

  test('recover drops pages a stopped batch tagged but never fetched, applies the log, and keeps dirty pages', () => {
    initCache(4);
    freshFile(8);
    const dirty = page(FILE, 1);
    store<u8>(dirty + 5, 0x5a);
    markDirty(dirty);
    writeU16Through(FILE, 4 * 1024 + 2, 0x1234);
    // A batch whose host fetch threw: page 3's slot is tagged, its bytes are another page's.
    page(FILE, 2);
    prefetch(FILE, 3);
    recover();
    expect(fileU16(FILE, 4 * 1024 + 2)).toBe(0x1234, 'the log reached the file');
    const before = fetches();
    const p = page(FILE, 3);
    expect(fetches()).toBe(before + 1, 'fetched, not answered from the tagged slot');
    expect(<u32>load<u8>(p + 97)).toBe((3 * 31 + 97) & 0xff);
    flushDirty();
    expect(fileU8(FILE, 1024 + 5)).toBe(0x5a, 'the dirty page was kept and written back');
  });

  test('writeThrough updates the resident copy at once and the file in order when the log drains', () => {
    initCache(4);
    freshFile(8);
    const p = page(FILE, 1);
    const src = heap.alloc(8);
    store<u8>(src, 0x11);
    writeThrough(FILE, 1024 + 40, src, 1);
    store<u8>(src, 0x22);
    writeThrough(FILE, 1024 + 40, src, 1);
    expect(<u32>load<u8>(p + 40)).toBe(0x22);
    expect(fileU8(FILE, 1024 + 40)).toBe(0, 'the log is not applied yet');
    const applies = logApplies();
    drainLog();
    expect(logApplies()).toBe(applies + 1);
    expect(fileU8(FILE, 1024 + 40)).toBe(0x22, 'the later write wins');
    heap.free(src);
  });

  test('a fetch drains the log first, so a page is never copied stale', () => {
    initCache(4);
    freshFile(8);
    writeU16Through(FILE, 6 * 1024 + 8, 0xbeef);
    const p = page(FILE, 6);
    expect(<u32>load<u16>(p + 8)).toBe(0xbeef);
    expect(fileU16(FILE, 6 * 1024 + 8)).toBe(0xbeef);
  });

  test('a write too large for the log reaches the file after the records before it', () => {
    initCache(4);
    freshFile(128);
    const small = heap.alloc(8);
    store<u8>(small, 0x5a);
    writeThrough(FILE, 2048, small, 1);
    const big = heap.alloc(100 * 1024);
    memory.fill(big, 0x3c, 100 * 1024);
    writeThrough(FILE, 2048, big, 100 * 1024);
    drainLog();
    expect(fileU8(FILE, 2048)).toBe(0x3c);
    expect(fileU8(FILE, 2048 + 100 * 1024 - 1)).toBe(0x3c);
    heap.free(small);
    heap.free(big);
  });

  test('readRange and writeRangeBuilding cross page boundaries', () => {
    initCache(4);
    freshFile(8);
    const src = heap.alloc(3000);
    for (let i: u32 = 0; i < 3000; i++) store<u8>(src + i, <u8>(i * 7));
    writeRangeBuilding(FILE, 1000, src, 3000);
    const dst = heap.alloc(3000);
    readRange(FILE, 1000, dst, 3000);
    for (let i: u32 = 0; i < 3000; i += 13) expect(<u32>load<u8>(dst + i)).toBe((i * 7) & 0xff);
    flushDirty();
    expect(fileU8(FILE, 1000 + 2999)).toBe((2999 * 7) & 0xff);
    heap.free(src);
    heap.free(dst);
  });
});
