import {
  adjustRef, copyData, get, initBuckets, inPtr, keyPtr, outPtr, probeSteps, put, rehash, remove, descBase, DESC_BYTES,
  D_CAPACITY, D_COUNT, D_DATA, D_INDEX_FID, D_PAGES, D_PAGES_PER_SEG, D_SEED_HI, D_SEED_LO, DD_CELLS_PER_SEG,
  DD_COUNT, DD_FID, DD_POW2, OUT_ELEMENTS, OUT_FULL_CLASS, OUT_KIND, OUT_RC_HI, OUT_RC_LO, OUT_SLOTS,
} from '../bucket';
import { adjustMany, bBuckets, bKeys, bOutRc, bOutSlots, bStatus, getMany, initBatch } from '../batch';
import { hashHi, hashKey } from '../hash';
import {
  CELL_BYTES, DATA_FULL, FOUND_CORRUPT, INDEX_FULL, J_BODY, J_CHECK, J_COMMIT, JOURNAL_SEED_HI, JOURNAL_SEED_LO, KIND_DATA,
  KIND_INLINE, KIND_ZERO, PUT_NEW, PUT_UPDATED, dataCellBytes, sizeClassOf,
} from '../layout';
import { initCache, invalidate, page } from '../page_cache';
import { createFile, fileU16, fileU32, fileU8, randomKey, seedRandom, setFileU8 } from './fixtures';

const SEED_LO: u32 = 0x1111;
const SEED_HI: u32 = 0x2222;
const INDEX_FID: u32 = 100;

function field(ix: u32, offset: u32): usize {
  return descBase + <usize>ix * DESC_BYTES + offset;
}

function bindIndex(fid: u32, pages: u32): void {
  createFile(fid, 1024 + pages * 1024);
  store<u32>(field(0, D_INDEX_FID), fid);
  store<u32>(field(0, D_PAGES), pages);
  store<u32>(field(0, D_PAGES_PER_SEG), pages);
  store<u32>(field(0, D_CAPACITY), pages * 20);
  store<u32>(field(0, D_SEED_LO), SEED_LO);
  store<u32>(field(0, D_SEED_HI), SEED_HI);
}

function bindData(sizeClass: u32, fid: u32, pow2: u32, elementSize: u32 = 16): void {
  const cellBytes = dataCellBytes(sizeClass, elementSize);
  createFile(fid, ((1024 + (<u32>1 << pow2) * cellBytes + 1023) / 1024) * 1024);
  const at = D_DATA + (sizeClass << 4);
  store<u32>(field(0, at + DD_FID), fid);
  store<u32>(field(0, at + DD_POW2), pow2);
  store<u32>(field(0, at + DD_CELLS_PER_SEG), <u32>1 << pow2);
}

function setup(maxSearch: u32, pages: u32, elementSize: u32 = 16): void {
  initCache(16);
  initBuckets(1, maxSearch, elementSize, 777, 1 << 20);
  seedRandom(4242);
  bindIndex(INDEX_FID, pages);
}

/** Keys kept by a spec, 32 bytes each. */
function keyStore(n: u32): usize {
  const keys = heap.alloc(<usize>n * 32);
  for (let i: u32 = 0; i < n; i++) randomKey(keys + <usize>i * 32);
  return keys;
}

function useKey(keys: usize, i: u32): void {
  memory.copy(keyPtr, keys + <usize>i * 32, 32);
}

/** Puts one inline element whose bytes are derived from `tag`. */
function putInline(tag: u32): u32 {
  for (let b: u32 = 0; b < 16; b += 4) store<u32>(inPtr + b, tag * 0x01000193 + b);
  return put(0, 1, 1, 0);
}

function ctrlInFile(c: u32): u32 {
  const p = c / 20;
  return fileU16(INDEX_FID, (1 + p) * 1024 + (c - p * 20) * 2);
}

function occupiedCells(): u32 {
  const cellBytes = dataCellBytes(0, 16);
  let n: u32 = 0;
  for (let k: u32 = 0; k < 32; k++) n += fileU8(310, 1024 + k * cellBytes + 7) & 1;
  return n;
}

function homeOf(key: usize, capacity: u32): u32 {
  return hashKey(key, SEED_LO, SEED_HI) % capacity;
}

/** The one live DATA cell of the index (the specs below write a single such entry). */
function dataCell(capacity: u32): u32 {
  for (let c: u32 = 0; c < capacity; c++) {
    const ctl = ctrlInFile(c);
    if ((ctl & 0xff) != 0 && (ctl >> 14) == KIND_DATA) return c;
  }
  return 0xffffffff;
}

/** Damages the slot count of index cell `c` (value bytes 8..11) in the file, and drops the cached copy. */
function setSlotCount(c: u32, slots: u32): void {
  const p = c / 20;
  const at = (1 + p) * 1024 + 64 + (c - p * 20) * CELL_BYTES + 32 + 8;
  for (let b: u32 = 0; b < 4; b++) setFileU8(INDEX_FID, at + b, (slots >> (b * 8)) & 0xff);
  invalidate(INDEX_FID, INDEX_FID + 1);
}

describe('bucket', () => {
  test('put then get returns the inline element; an absent key misses', () => {
    setup(32, 4);
    randomKey(keyPtr);
    expect(putInline(9)).toBe(PUT_NEW);
    expect(get(0)).toBe(1);
    expect(load<u32>(outPtr + OUT_KIND)).toBe(KIND_INLINE);
    expect(load<u32>(outPtr + OUT_RC_LO)).toBe(1);
    expect(load<u32>(outPtr + OUT_SLOTS)).toBe(1);
    expect(load<u32>(outPtr + OUT_ELEMENTS + 4)).toBe(9 * 0x01000193 + 4);
    expect(load<u32>(field(0, D_COUNT))).toBe(1);
    expect(putInline(10)).toBe(PUT_UPDATED);
    expect(load<u32>(field(0, D_COUNT))).toBe(1, 'an update does not count twice');
    randomKey(keyPtr);
    expect(get(0)).toBe(0);
  });

  test('Robin Hood order: each key within maxSearch of home, runs sorted by home, ctrl records dist, tag and kind', () => {
    setup(8, 20);
    const n: u32 = 300;
    const keys = keyStore(n);
    for (let i: u32 = 0; i < n; i++) {
      useKey(keys, i);
      expect(putInline(i)).toBe(PUT_NEW);
    }
    const capacity: u32 = 400;
    const key = heap.alloc(32);
    let live: u32 = 0;
    for (let c: u32 = 0; c < capacity; c++) {
      const ctl = ctrlInFile(c);
      if ((ctl & 0xff) == 0) continue;
      live++;
      const dist = (ctl & 0xff) - 1;
      expect(dist).toBeLessThan(8);
      expect(ctl >> 14).toBe(KIND_INLINE);
      const p = c / 20;
      for (let b: u32 = 0; b < 32; b++) store<u8>(key + b, <u8>fileU8(INDEX_FID, (1 + p) * 1024 + 64 + (c - p * 20) * CELL_BYTES + b));
      const home = homeOf(key, capacity);
      expect((c + capacity - home) % capacity).toBe(dist, 'dist is the distance from the home cell');
      expect((ctl >> 8) & 63).toBe(hashHi >>> 26, 'tag is the top 6 bits of the high word');
      const next = ctrlInFile((c + 1) % capacity);
      if ((next & 0xff) != 0) expect((next & 0xff) - 1).toBeLessThanOrEqual(dist + 1, 'a run is sorted by home cell');
    }
    expect(live).toBe(n);
    for (let i: u32 = 0; i < n; i++) {
      useKey(keys, i);
      expect(get(0)).toBe(1);
    }
  });

  test('probing wraps from the last cell to the first', () => {
    setup(32, 1);
    const keys = heap.alloc(3 * 32);
    let found: u32 = 0;
    while (found < 3) {
      randomKey(keys + <usize>found * 32);
      if (homeOf(keys + <usize>found * 32, 20) == 19) found++;
    }
    for (let i: u32 = 0; i < 3; i++) {
      useKey(keys, i);
      expect(putInline(i)).toBe(PUT_NEW);
    }
    expect(ctrlInFile(19) & 0xff).toBe(1);
    expect(ctrlInFile(0) & 0xff).toBe(2, 'second key wrapped to cell 0 at distance 1');
    expect(ctrlInFile(1) & 0xff).toBe(3);
    for (let i: u32 = 0; i < 3; i++) {
      useKey(keys, i);
      expect(get(0)).toBe(1);
    }
  });

  test('a miss stops at the first free cell or closer resident, not at the end of the window', () => {
    setup(32, 20);
    const n: u32 = 200;
    const keys = keyStore(n);
    for (let i: u32 = 0; i < n; i++) {
      useKey(keys, i);
      putInline(i);
    }
    const before = probeSteps;
    for (let i: u32 = 0; i < 1000; i++) {
      randomKey(keyPtr);
      expect(get(0)).toBe(0);
    }
    const perMiss = <f64>(probeSteps - before) / 1000;
    expect(perMiss).toBeLessThan(4.0, 'at half load a miss examines a few cells of its 32-cell window');
  });

  test('deleting shifts the rest of the run back; every other key stays reachable and no tombstone is left', () => {
    setup(16, 10);
    const n: u32 = 150;
    const keys = keyStore(n);
    for (let i: u32 = 0; i < n; i++) {
      useKey(keys, i);
      putInline(i);
    }
    for (let i: u32 = 0; i < n; i++) {
      useKey(keys, i);
      expect(remove(0)).toBe(1);
      expect(remove(0)).toBe(0, 'already gone');
      if (i % 25 == 0) {
        for (let j = i + 1; j < n; j++) {
          useKey(keys, j);
          expect(get(0)).toBe(1);
        }
      }
    }
    expect(load<u32>(field(0, D_COUNT))).toBe(0);
    for (let c: u32 = 0; c < 200; c++) expect(ctrlInFile(c)).toBe(0);
  });

  test('the log leaves the file byte for byte equal to the cached pages through shifts both ways', () => {
    // Cells move by move records (one per cell, applied by the host): a wrong offset, slot or
    // order would leave the file different from the copies the core reads.
    setup(16, 10);
    const n: u32 = 170;
    const keys = keyStore(n);
    for (let i: u32 = 0; i < n; i++) {
      useKey(keys, i);
      expect(putInline(i)).toBe(PUT_NEW);
      // Distinct extra bytes, so a move that dropped or misplaced one shows.
      for (let r: u32 = 0; r < i % 5; r++) adjustRef(0, 1);
    }
    for (let i: u32 = 0; i < n; i += 3) {
      useKey(keys, i);
      expect(remove(0)).toBe(1);
    }
    for (let i: u32 = 0; i < n; i += 3) {
      useKey(keys, i);
      expect(putInline(i + 1000)).toBe(PUT_NEW);
    }
    let differing: u32 = 0;
    for (let p: u32 = 1; p <= 10; p++) {
      const cached = page(INDEX_FID, p);
      for (let b: u32 = 0; b < 1024; b++) if (fileU8(INDEX_FID, p * 1024 + b) != <u32>load<u8>(cached + b)) differing++;
    }
    expect(differing).toBe(0, 'file bytes that differ from the cached pages');
    for (let i: u32 = 0; i < n; i++) {
      useKey(keys, i);
      expect(get(0)).toBe(1);
      expect(load<u32>(outPtr + OUT_RC_LO)).toBe(i % 3 == 0 ? 1 : 1 + i % 5);
    }
  });

  test('a full window returns INDEX_FULL and writes nothing', () => {
    setup(2, 1);
    const keys = heap.alloc(3 * 32);
    let found: u32 = 0;
    while (found < 3) {
      randomKey(keys + <usize>found * 32);
      if (homeOf(keys + <usize>found * 32, 20) == 5) found++;
    }
    useKey(keys, 0);
    expect(putInline(1)).toBe(PUT_NEW);
    useKey(keys, 1);
    expect(putInline(2)).toBe(PUT_NEW);
    useKey(keys, 2);
    expect(putInline(3)).toBe(INDEX_FULL);
    expect(get(0)).toBe(0);
    expect(load<u32>(field(0, D_COUNT))).toBe(2);
    expect(ctrlInFile(7)).toBe(0, 'nothing written past the window');
  });

  test('an insert that would fill more than 90% of the cells returns INDEX_FULL', () => {
    setup(20, 1);
    for (let i: u32 = 0; i < 18; i++) {
      randomKey(keyPtr);
      expect(putInline(i)).toBe(PUT_NEW);
    }
    randomKey(keyPtr);
    expect(putInline(99)).toBe(INDEX_FULL);
  });

  test('size classes are ceil(log2 n)', () => {
    expect(sizeClassOf(0)).toBe(0);
    expect(sizeClassOf(1)).toBe(0);
    expect(sizeClassOf(2)).toBe(1);
    expect(sizeClassOf(3)).toBe(2);
    expect(sizeClassOf(4)).toBe(2);
    expect(sizeClassOf(5)).toBe(3);
    expect(sizeClassOf(65536)).toBe(16);
  });

  test('lists longer than one go to a data cell of their class; a missing class returns DATA_FULL first', () => {
    setup(32, 2);
    randomKey(keyPtr);
    for (let b: u32 = 0; b < 48; b += 4) store<u32>(inPtr + b, 0xa0000000 + b);
    expect(put(0, 3, 4, 0)).toBe(DATA_FULL);
    expect(load<u32>(outPtr + OUT_FULL_CLASS)).toBe(2);
    expect(get(0)).toBe(0, 'nothing written');
    bindData(2, 300, 5);
    expect(put(0, 3, 4, 0)).toBe(PUT_NEW);
    expect(get(0)).toBe(1);
    expect(load<u32>(outPtr + OUT_KIND)).toBe(KIND_DATA);
    expect(load<u32>(outPtr + OUT_SLOTS)).toBe(3);
    expect(load<u32>(outPtr + OUT_RC_LO)).toBe(4);
    expect(load<u32>(outPtr + OUT_ELEMENTS + 40)).toBe(0xa0000000 + 40);
    expect(load<u32>(field(0, D_DATA + (2 << 4) + DD_COUNT))).toBe(1);
    let occupied: u32 = 0;
    const cellBytes = dataCellBytes(2, 16);
    for (let k: u32 = 0; k < 32; k++) {
      const at = 1024 + k * cellBytes;
      if ((fileU8(300, at + 7) & 1) == 0) continue;
      occupied++;
      expect(fileU32(300, at)).toBe(4, 'refCount in the cell header');
      expect(fileU32(300, at + 8)).toBe(0xa0000000);
    }
    expect(occupied).toBe(1);
  });

  test('a single element keeps refCounts 1 to 256 inline, in its page-header extra byte', () => {
    setup(32, 2);
    randomKey(keyPtr);
    expect(putInline(4)).toBe(PUT_NEW);
    let cell: u32 = 0;
    while ((ctrlInFile(cell) & 0xff) == 0) cell++;
    const extraAt = (1 + cell / 20) * 1024 + 40 + (cell % 20);
    expect(fileU8(INDEX_FID, extraAt)).toBe(0);
    for (let b: u32 = 0; b < 16; b += 4) store<u32>(inPtr + b, 4 * 0x01000193 + b);
    const commitsBefore = fileU32(INDEX_FID, J_CHECK);
    expect(put(0, 1, 200, 0)).toBe(PUT_UPDATED);
    expect(fileU8(INDEX_FID, extraAt)).toBe(199, 'refCount 200 is extra 199');
    expect(fileU32(INDEX_FID, J_CHECK)).toBe(commitsBefore, 'a refCount-only change needs no journal record');
    expect(ctrlInFile(cell) >> 14).toBe(KIND_INLINE);
    expect(get(0)).toBe(1);
    expect(load<u32>(outPtr + OUT_RC_LO)).toBe(200);
    expect(put(0, 1, 257, 0)).toBe(DATA_FULL, 'refCount 257 needs a data cell, and class 0 has no file');
  });

  test('adjustRef changes an inline refCount in place and hands the rest back to the host', () => {
    setup(32, 2);
    randomKey(keyPtr);
    expect(adjustRef(0, 1)).toBe(-1, 'absent');
    putInline(3);
    expect(adjustRef(0, 1)).toBe(2);
    expect(adjustRef(0, 254)).toBe(256);
    expect(adjustRef(0, 1)).toBe(-2, '257 does not fit inline');
    expect(adjustRef(0, -255)).toBe(1);
    expect(adjustRef(0, -1)).toBe(-2, '0 does not fit inline');
    expect(get(0)).toBe(1);
    expect(load<u32>(outPtr + OUT_RC_LO)).toBe(1);
    expect(put(0, 0, 5, 0)).toBe(PUT_UPDATED);
    expect(adjustRef(0, 1)).toBe(-2, 'an empty list is not inline');
  });

  test('adjustMany changes inline refCounts in place, in batch order, and stops where the host must rewrite', () => {
    setup(32, 4);
    initBatch();
    const keys = keyStore(4);
    useKey(keys, 0);
    putInline(1);
    useKey(keys, 1);
    expect(put(0, 1, 256, 0)).toBe(PUT_NEW);
    useKey(keys, 2);
    expect(put(0, 0, 5, 0)).toBe(PUT_NEW);
    // Batch: key 0, an absent key, key 0 again, key 1 (256 + 1 leaves the inline range), key 2.
    const order: u32[] = [0, 3, 0, 1, 2];
    for (let i = 0; i < order.length; i++) {
      memory.copy(bKeys + <usize>i * 32, keys + <usize>order[i] * 32, 32);
      store<u32>(bBuckets + (<usize>i << 2), 0);
    }
    expect(adjustMany(0, 5, 1)).toBe(3, 'stops at key 1');
    expect(load<u32>(bStatus)).toBe(1);
    expect(load<f64>(bOutRc)).toBe(2.0);
    expect(load<u32>(bStatus + 4)).toBe(0, 'absent');
    expect(load<u32>(bStatus + 8)).toBe(1);
    expect(load<f64>(bOutRc + 16)).toBe(3.0, 'the second listing sees the first');
    expect(adjustMany(4, 5, 1)).toBe(4, 'an empty list is not inline');
    expect(adjustMany(0, 3, -1)).toBe(3);
    expect(load<f64>(bOutRc + 16)).toBe(1.0);
    // What reached the file: key 0 back at refCount 1 (extra 0), key 1 still at 256 (extra 255).
    useKey(keys, 0);
    expect(get(0)).toBe(1);
    expect(load<u32>(outPtr + OUT_RC_LO)).toBe(1);
    useKey(keys, 1);
    expect(get(0)).toBe(1);
    expect(load<u32>(outPtr + OUT_RC_LO)).toBe(256);
    let extras: u32[] = [];
    for (let c: u32 = 0; c < 80; c++) {
      if ((ctrlInFile(c) & 0xff) != 0 && (ctrlInFile(c) >> 14) == KIND_INLINE) extras.push(fileU8(INDEX_FID, (1 + c / 20) * 1024 + 40 + (c % 20)));
    }
    extras.sort();
    expect(extras.length).toBe(2);
    expect(extras[0]).toBe(0);
    expect(extras[1]).toBe(255);
  });

  test('an empty list keeps its refCount in the index cell', () => {
    setup(32, 2);
    randomKey(keyPtr);
    expect(put(0, 0, 7, 3)).toBe(PUT_NEW);
    expect(get(0)).toBe(1);
    expect(load<u32>(outPtr + OUT_KIND)).toBe(KIND_ZERO);
    expect(load<u32>(outPtr + OUT_RC_LO)).toBe(7);
    expect(load<u32>(outPtr + OUT_RC_HI)).toBe(3);
    expect(load<u32>(outPtr + OUT_SLOTS)).toBe(0);
  });

  test('an update of a live cell goes through the journal, which ends cleared and checksummed', () => {
    setup(32, 2);
    randomKey(keyPtr);
    putInline(1);
    expect(putInline(2)).toBe(PUT_UPDATED);
    expect(fileU32(INDEX_FID, J_COMMIT)).toBe(0, 'commit cleared after the cell was written');
    const body = heap.alloc(32);
    for (let b: u32 = 0; b < 32; b++) store<u8>(body + b, <u8>fileU8(INDEX_FID, J_BODY + b));
    expect(fileU32(INDEX_FID, J_CHECK)).toBe(hashKey(body, JOURNAL_SEED_LO, JOURNAL_SEED_HI));
    expect(load<u32>(body + 8)).toBe(2 * 0x01000193, 'the body holds the new value');
    expect(get(0)).toBe(1);
    expect(load<u32>(outPtr + OUT_ELEMENTS)).toBe(2 * 0x01000193);
  });

  test('a data cell is freed when its entry goes back inline or is deleted', () => {
    setup(32, 2);
    bindData(0, 310, 5);
    randomKey(keyPtr);
    store<u32>(inPtr, 5);
    expect(put(0, 1, 300, 0)).toBe(PUT_NEW);
    expect(occupiedCells()).toBe(1, 'refCount 300 does not fit inline');
    expect(put(0, 1, 1, 0)).toBe(PUT_UPDATED);
    expect(occupiedCells()).toBe(0, 'freed when the entry went inline');
    expect(put(0, 1, 0, 0)).toBe(PUT_UPDATED);
    expect(occupiedCells()).toBe(1, 'refCount 0 with an element needs a data cell');
    expect(remove(0)).toBe(1);
    expect(occupiedCells()).toBe(0, 'freed on delete');
    expect(load<u32>(field(0, D_DATA + DD_COUNT))).toBe(0);
  });

  test('rehash moves every entry into a larger file and fails cleanly when the target is too small', () => {
    setup(32, 10);
    const n: u32 = 150;
    const keys = keyStore(n);
    for (let i: u32 = 0; i < n; i++) {
      useKey(keys, i);
      putInline(i);
    }
    createFile(500, 1024 + 1024);
    expect(rehash(0, 500, 1, 1, SEED_LO, SEED_HI)).toBe(0, '150 keys do not fit in 20 cells');
    createFile(600, 1024 + 30 * 1024);
    expect(rehash(0, 600, 30, 30, SEED_LO, SEED_HI)).toBe(1);
    expect(load<u32>(field(0, D_COUNT))).toBe(n);
    store<u32>(field(0, D_INDEX_FID), 600);
    store<u32>(field(0, D_PAGES), 30);
    store<u32>(field(0, D_PAGES_PER_SEG), 30);
    store<u32>(field(0, D_CAPACITY), 600);
    for (let i: u32 = 0; i < n; i++) {
      useKey(keys, i);
      expect(get(0)).toBe(1);
      expect(load<u32>(outPtr + OUT_ELEMENTS)).toBe(i * 0x01000193);
    }
  });

  test('rehash with a new seed places every key by the new hash (reseeding)', () => {
    setup(32, 10);
    const n: u32 = 120;
    const keys = keyStore(n);
    for (let i: u32 = 0; i < n; i++) {
      useKey(keys, i);
      putInline(i);
    }
    createFile(700, 1024 + 10 * 1024);
    expect(rehash(0, 700, 10, 10, 0xabcdef, 0x123456)).toBe(1);
    store<u32>(field(0, D_INDEX_FID), 700);
    store<u32>(field(0, D_SEED_LO), 0xabcdef);
    store<u32>(field(0, D_SEED_HI), 0x123456);
    let moved: u32 = 0;
    for (let i: u32 = 0; i < n; i++) {
      useKey(keys, i);
      expect(get(0)).toBe(1, 'found under the new seed');
      if (hashKey(keyPtr, 0xabcdef, 0x123456) % 200 != hashKey(keyPtr, SEED_LO, SEED_HI) % 200) moved++;
    }
    expect(moved).toBeGreaterThan(n / 2, 'a new seed sends most keys to new homes');
  });

  test('a data file doubles by spaced copy: cell j moves to cell 2j and entries stay valid', () => {
    setup(32, 4);
    bindData(0, 320, 2);
    const keys = keyStore(2);
    for (let i: u32 = 0; i < 2; i++) {
      useKey(keys, i);
      store<u32>(inPtr, 1000 + i);
      expect(put(0, 1, 5 + i, 0)).toBe(PUT_NEW);
    }
    const cellBytes = dataCellBytes(0, 16);
    createFile(330, ((1024 + 8 * cellBytes + 1023) / 1024) * 1024);
    copyData(0, 0, 330, 3, 8);
    for (let k: u32 = 0; k < 4; k++) {
      expect(fileU8(330, 1024 + (2 * k) * cellBytes + 7) & 1).toBe(fileU8(320, 1024 + k * cellBytes + 7) & 1);
      expect(fileU8(330, 1024 + (2 * k + 1) * cellBytes + 7) & 1).toBe(0, 'odd cells start free');
    }
    const at = D_DATA;
    store<u32>(field(0, at + DD_FID), 330);
    store<u32>(field(0, at + DD_POW2), 3);
    store<u32>(field(0, at + DD_CELLS_PER_SEG), 8);
    for (let i: u32 = 0; i < 2; i++) {
      useKey(keys, i);
      expect(get(0)).toBe(1);
      expect(load<u32>(outPtr + OUT_RC_LO)).toBe(5 + i);
      expect(load<u32>(outPtr + OUT_ELEMENTS)).toBe(1000 + i);
    }
  });

  test('getMany reports a slot count too large for the data area as damage, not as a full area', () => {
    // 32-byte elements: 100,000 of them (3.2 MiB) do not fit the batch's 1 MiB data area, even empty.
    setup(32, 2, 32);
    initBatch();
    bindData(1, 300, 4, 32);
    randomKey(keyPtr);
    expect(put(0, 2, 1, 0)).toBe(PUT_NEW);
    const c = dataCell(40);
    expect(c).toBeLessThan(40);
    setSlotCount(c, 100000);
    expect(get(0)).toBe(FOUND_CORRUPT);
    memory.copy(bKeys, keyPtr, 32);
    store<u32>(bBuckets, 0);
    expect(getMany(0, 1, 1)).toBe(1, 'stops after the damaged entry, not before it');
    expect(load<u32>(bStatus)).toBe(FOUND_CORRUPT);
    expect(load<u32>(outPtr + OUT_FULL_CLASS)).toBe(c);
  });

  test('a slot count above the longest list (1 MiB of elements) is damage even within its size class', () => {
    // 24-byte elements: a list stops at 43,690 elements, in class 16, whose cells hold 65,536.
    const most: u32 = (1 << 20) / 24;
    setup(32, 2, 24);
    initBatch();
    bindData(16, 300, 1, 24);
    randomKey(keyPtr);
    for (let b: u32 = 0; b < most * 24; b += 4) store<u32>(inPtr + b, 0x5a5a5a5a);
    expect(put(0, most, 1, 0)).toBe(PUT_NEW);
    expect(get(0)).toBe(1);
    expect(load<u32>(outPtr + OUT_SLOTS)).toBe(most, 'the longest list reads whole');
    const c = dataCell(40);
    memory.copy(bKeys, keyPtr, 32);
    store<u32>(bBuckets, 0);
    const counts: u32[] = [most + 1, 65536];
    for (let i = 0; i < counts.length; i++) {
      setSlotCount(c, counts[i]);
      expect(get(0)).toBe(FOUND_CORRUPT);
      expect(getMany(0, 1, 1)).toBe(1);
      expect(load<u32>(bStatus)).toBe(FOUND_CORRUPT);
    }
    setSlotCount(c, most);
    expect(getMany(0, 1, 1)).toBe(1);
    expect(load<u32>(bStatus)).toBe(1);
    expect(load<u32>(bOutSlots)).toBe(most);
  });
});
