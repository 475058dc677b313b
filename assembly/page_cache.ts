/**
 * The page cache: copies of 1 KiB file pages in wasm memory (wasm memory cannot map a file).
 *
 * 4-way set-associative, LRU within a set: a hit costs a set lookup, and the four most recently
 * used pages of a set stay put, so an algorithm may hold pointers to two pages at once.
 * Pages are addressed by (file id, page number in the segment file); file ids are handed out by
 * the host, one per segment file, and never reused.
 *
 * Two ways to write, for two kinds of file:
 *  - live files go through an ordered write log: the resident copy is updated and the bytes are
 *    appended to the log, which the host applies to the mapping in order (`drainLog`) at the end of
 *    every operation and before any page is fetched. The mapping therefore sees the same stores in
 *    the same order as the host path makes them, which is what crash safety relies on.
 *  - a file being built (the target of a resize) is written in its cached pages, which are marked
 *    dirty and written back when evicted or by `flushDirty`; order does not matter there because
 *    the file is not referenced until it is complete.
 *
 *   tag of slot s (16 bytes; a 4-way set is one 64-byte cache line):
 *     [ fid u32 | page u32 | stamp u32 | dirty u32 ]            page bytes at slotBase + s·1024
 *   log record: [ fid u32 | offset u32 | length u32 | bytes, padded to 4 ]
 *   move record: see logMove()
 */
import { PAGE_BYTES, PAGE_SHIFT } from './layout';

// @ts-ignore: decorator
@external("host", "fetchPage")
declare function hostFetchPage(fid: u32, page: u32, dst: usize): void;
// @ts-ignore: decorator
@external("host", "fetchPages")
declare function hostFetchPages(list: usize, count: u32): void;
// @ts-ignore: decorator
@external("host", "writePages")
declare function hostWritePages(list: usize, count: u32): void;
// @ts-ignore: decorator
@external("host", "applyLog")
declare function hostApplyLog(log: usize, bytes: u32): void;
// @ts-ignore: decorator
@external("host", "writeRange")
declare function hostWriteRange(fid: u32, offset: u32, src: usize, length: u32): void;

// @ts-ignore: decorator
@inline const WAYS: u32 = 4;
// @ts-ignore: decorator
@inline const LOG_BYTES: u32 = 64 * 1024;
// @ts-ignore: decorator
@inline const LOG_RECORD_HEADER: u32 = 12;
// @ts-ignore: decorator
@inline const WRITEBACK_BATCH: u32 = 256;
/** Pages one batched fetch may bring in (a batch of lookups needs at most one home page per key). */
// @ts-ignore: decorator
@inline export const FETCH_BATCH: u32 = 1024;

/** Counters the host reads (f64 so they count past 2^32 exactly). */
@unmanaged export class CacheStats {
  hits: f64 = 0;
  misses: f64 = 0;
  pagesIn: f64 = 0;
  pagesOut: f64 = 0;
  logRecords: f64 = 0;
}

// @ts-ignore: decorator
@inline const TAG_BYTES: u32 = 16;
// @ts-ignore: decorator
@inline const T_FID: u32 = 0;
// @ts-ignore: decorator
@inline const T_PAGE: u32 = 4;
// @ts-ignore: decorator
@inline const T_STAMP: u32 = 8;
// @ts-ignore: decorator
@inline const T_DIRTY: u32 = 12;

let slotBase: usize = 0;
let tags: usize = 0;
let slotCount: u32 = 0;
let setMask: u32 = 0;
let clock: u32 = 0;
let logBase: usize = 0;
let logUsed: u32 = 0;
let writeBackList: usize = 0;
/** Pages reserved by prefetch() and not yet copied in: [fid, page, dst] each. */
let fetchList: usize = 0;
let fetchCount: u32 = 0;
/** Slots dirtied since the last flushDirty, so a flush costs O(dirty pages), not O(cache). */
let dirtyList: usize = 0;
let dirtyCount: u32 = 0;
let dirtyOverflow: bool = false;
export let stats: CacheStats = changetype<CacheStats>(0);
/**
 * The last page() answer. A probe and the cell reads after it ask for the same page several times
 * in a row; this skips the set search then. Cleared whenever a slot is given to another page.
 */
let memoFid: u32 = 0;
let memoPage: u32 = 0;
let memoPtr: usize = 0;

/** Allocates `sets` × 4 slots (sets must be a power of two). */
export function initCache(sets: u32): void {
  slotCount = sets * WAYS;
  setMask = sets - 1;
  slotBase = heap.alloc(<usize>slotCount << PAGE_SHIFT);
  // Over-allocate to align the tags to a cache line, so a set never straddles two.
  tags = (heap.alloc(<usize>slotCount * TAG_BYTES + 64) + 63) & ~(<usize>63);
  memory.fill(tags, 0, <usize>slotCount * TAG_BYTES);
  dirtyList = heap.alloc(<usize>slotCount << 2);
  dirtyCount = 0;
  dirtyOverflow = false;
  logBase = heap.alloc(LOG_BYTES);
  writeBackList = heap.alloc(WRITEBACK_BATCH * 12);
  fetchList = heap.alloc(FETCH_BATCH * 12);
  fetchCount = 0;
  stats = changetype<CacheStats>(heap.alloc(offsetof<CacheStats>()));
  memory.fill(changetype<usize>(stats), 0, offsetof<CacheStats>());
  logUsed = 0;
  clock = 0;
  memoFid = 0;
}

/** Sets the use counter (the specs use it to reach the wrap without 2^32 uses). */
export function setClock(value: u32): void {
  clock = value;
}

export function cacheSlots(): u32 {
  return slotCount;
}

/**
 * The next use stamp. Before the counter would wrap, every stamp and the counter are halved: that
 * keeps their order (a wrapped stamp would rank the page just used as the oldest, and each set
 * would then evict its newest page and keep stale ones), and the stamp handed out is above all of
 * them, so the page just used is still strictly the most recent of its set, as moveCell needs.
 */
// @ts-ignore: decorator
@inline function tick(): u32 {
  if (clock == 0xffffffff) halveStamps();
  return ++clock;
}

function halveStamps(): void {
  for (let s: u32 = 0; s < slotCount; s++) {
    const t = tagOf(s);
    store<u32>(t, load<u32>(t, T_STAMP) >>> 1, T_STAMP);
  }
  clock >>>= 1;
}

// @ts-ignore: decorator
@inline function setOf(fid: u32, page: u32): u32 {
  return ((page + fid * 0x9e3779b1) & setMask) * WAYS;
}

// @ts-ignore: decorator
@inline function tagOf(s: u32): usize {
  return tags + <usize>s * TAG_BYTES;
}

/** Set in findSlot()'s result when the page is resident. */
// @ts-ignore: decorator
@inline const SLOT_HIT: u32 = 0x80000000;

/**
 * The slot holding page `page` of file `fid`, with SLOT_HIT set (its stamp refreshed, as a use);
 * otherwise the slot of its set to replace: a free one, else the least recently used.
 */
// @ts-ignore: decorator
@inline function findSlot(fid: u32, page: u32): u32 {
  const set = setOf(fid, page);
  let victim = set;
  let oldest: u32 = 0xffffffff;
  for (let s = set; s < set + WAYS; s++) {
    const t = tagOf(s);
    const f = load<u32>(t, T_FID);
    if (f == fid && load<u32>(t, T_PAGE) == page) {
      store<u32>(t, tick(), T_STAMP);
      return s | SLOT_HIT;
    }
    const age: u32 = f == 0 ? 0 : load<u32>(t, T_STAMP);
    if (age < oldest) {
      oldest = age;
      victim = s;
    }
  }
  return victim;
}

/** Pointer to page `page` of file `fid`, fetched on a miss. */
export function page(fid: u32, page: u32): usize {
  if (fid == memoFid && page == memoPage) {
    stats.hits += 1;
    return memoPtr;
  }
  const victim = findSlot(fid, page);
  if ((victim & SLOT_HIT) != 0) {
    stats.hits += 1;
    return remember(fid, page, slotBase + (<usize>(victim & ~SLOT_HIT) << PAGE_SHIFT));
  }
  const ptr = slotBase + (<usize>victim << PAGE_SHIFT);
  const t = tagOf(victim);
  if (load<u32>(t, T_DIRTY) != 0) writeBackSlot(victim);
  // The mapping must be current before a page is copied from it.
  if (logUsed != 0) drainLog();
  hostFetchPage(fid, page, ptr);
  store<u32>(t, fid, T_FID);
  store<u32>(t, page, T_PAGE);
  store<u32>(t, tick(), T_STAMP);
  stats.misses += 1;
  stats.pagesIn += 1;
  return remember(fid, page, ptr);
}

// @ts-ignore: decorator
@inline function remember(fid: u32, page: u32, ptr: usize): usize {
  memoFid = fid;
  memoPage = page;
  memoPtr = ptr;
  return ptr;
}

/**
 * Makes sure the page will be resident: on a miss its slot is taken now (tags set, so later
 * lookups in the batch find it) and the copy is queued for fetchPending(), which brings every
 * queued page in with one host call. Nothing may read the page before fetchPending().
 */
export function prefetch(fid: u32, page: u32): void {
  const victim = findSlot(fid, page);
  if ((victim & SLOT_HIT) != 0) return;
  if (fetchCount == FETCH_BATCH) fetchPending();
  memoFid = 0;
  const t = tagOf(victim);
  if (load<u32>(t, T_DIRTY) != 0) writeBackSlot(victim);
  store<u32>(t, fid, T_FID);
  store<u32>(t, page, T_PAGE);
  store<u32>(t, tick(), T_STAMP);
  const entry = fetchList + <usize>fetchCount * 12;
  store<u32>(entry, fid);
  store<u32>(entry, page, 4);
  store<u32>(entry, <u32>(slotBase + (<usize>victim << PAGE_SHIFT)), 8);
  fetchCount++;
}

/** Copies in every page prefetch() queued, with one host call. */
export function fetchPending(): void {
  if (fetchCount == 0) return;
  // The mapping must be current before pages are copied from it.
  if (logUsed != 0) drainLog();
  hostFetchPages(fetchList, fetchCount);
  stats.misses += <f64>fetchCount;
  stats.pagesIn += <f64>fetchCount;
  fetchCount = 0;
}

/** Pointer to the page if it is resident, else 0 (no fetch). */
function peek(fid: u32, page: u32): usize {
  // A write usually follows a read of the same page (the probe, or the shift's last step).
  if (fid == memoFid && page == memoPage) return memoPtr;
  const set = setOf(fid, page);
  for (let s = set; s < set + WAYS; s++) {
    const t = tagOf(s);
    if (load<u32>(t, T_FID) == fid && load<u32>(t, T_PAGE) == page) return slotBase + (<usize>s << PAGE_SHIFT);
  }
  return 0;
}

/** Marks the page holding `ptr` (a pointer into a slot) for write-back. */
export function markDirty(ptr: usize): void {
  const s = <u32>((ptr - slotBase) >> PAGE_SHIFT);
  const t = tagOf(s);
  if (load<u32>(t, T_DIRTY) != 0) return;
  store<u32>(t, 1, T_DIRTY);
  // A slot written back and dirtied again is listed twice; the flag makes the second a no-op.
  if (dirtyCount < slotCount) {
    store<u32>(dirtyList + (<usize>dirtyCount << 2), s);
    dirtyCount++;
  } else {
    dirtyOverflow = true;
  }
}

function writeBackSlot(s: u32): void {
  const t = tagOf(s);
  store<u32>(writeBackList, load<u32>(t, T_FID));
  store<u32>(writeBackList + 4, load<u32>(t, T_PAGE));
  store<u32>(writeBackList + 8, <u32>(slotBase + (<usize>s << PAGE_SHIFT)));
  hostWritePages(writeBackList, 1);
  store<u32>(t, 0, T_DIRTY);
  stats.pagesOut += 1;
}

/** Writes every dirty page back to its file. */
export function flushDirty(): void {
  let n: u32 = 0;
  const scanAll = dirtyOverflow;
  const end = scanAll ? slotCount : dirtyCount;
  for (let i: u32 = 0; i < end; i++) {
    const s = scanAll ? i : load<u32>(dirtyList + (<usize>i << 2));
    const t = tagOf(s);
    if (load<u32>(t, T_DIRTY) == 0) continue;
    const entry = writeBackList + <usize>n * 12;
    store<u32>(entry, load<u32>(t, T_FID));
    store<u32>(entry + 4, load<u32>(t, T_PAGE));
    store<u32>(entry + 8, <u32>(slotBase + (<usize>s << PAGE_SHIFT)));
    store<u32>(t, 0, T_DIRTY);
    stats.pagesOut += 1;
    if (++n == WRITEBACK_BATCH) {
      hostWritePages(writeBackList, n);
      n = 0;
    }
  }
  if (n != 0) hostWritePages(writeBackList, n);
  dirtyCount = 0;
  dirtyOverflow = false;
}

/** Forgets every cached page of files [fidFrom, fidTo), dirty or not (their files are gone). */
export function invalidate(fidFrom: u32, fidTo: u32): void {
  memoFid = 0;
  for (let s: u32 = 0; s < slotCount; s++) {
    const t = tagOf(s);
    const f = load<u32>(t, T_FID);
    if (f >= fidFrom && f < fidTo) {
      store<u32>(t, 0, T_FID);
      store<u32>(t, 0, T_DIRTY);
    }
  }
}

/**
 * Makes the cache agree with the mappings again after a call into the core threw part way (a
 * stack overflow in one of the host's callbacks, say; the host calls this before anything else).
 * Pages prefetch() tagged may never have been copied in, and a log the host was applying when it
 * threw still holds records: the host applies what it had not (it keeps its place), and every
 * clean page is dropped to be fetched again, so no copy older or newer than its file stays. Dirty
 * pages stay: only the core writes them, and a resize that stopped discards its file's.
 */
export function recover(): void {
  fetchCount = 0;
  memoFid = 0;
  drainLog();
  for (let s: u32 = 0; s < slotCount; s++) {
    const t = tagOf(s);
    if (load<u32>(t, T_DIRTY) == 0) store<u32>(t, 0, T_FID);
  }
}

/** Hands the ordered write log to the host, which applies it to the mappings. */
export function drainLog(): void {
  if (logUsed == 0) return;
  hostApplyLog(logBase, logUsed);
  logUsed = 0;
}

/**
 * Writes `length` bytes from `src` to a live file at byte `offset`: resident copies are updated,
 * and the bytes go to the mapping through the log, in order.
 */
export function writeThrough(fid: u32, offset: u32, src: usize, length: u32): void {
  let done: u32 = 0;
  while (done < length) {
    const at = offset + done;
    const inPage = at & (PAGE_BYTES - 1);
    const n = min(length - done, PAGE_BYTES - inPage);
    const resident = peek(fid, at >> PAGE_SHIFT);
    if (resident != 0) memory.copy(resident + inPage, src + done, n);
    done += n;
  }
  const need = LOG_RECORD_HEADER + ((length + 3) & ~3);
  if (need > LOG_BYTES) {
    drainLog();
    hostWriteRange(fid, offset, src, length);
    stats.logRecords += 1;
    return;
  }
  if (logUsed + need > LOG_BYTES) drainLog();
  const record = logBase + logUsed;
  store<u32>(record, fid);
  store<u32>(record + 4, offset);
  store<u32>(record + 8, length);
  memory.copy(record + LOG_RECORD_HEADER, src, length);
  logUsed += need;
  stats.logRecords += 1;
}

/**
 * A write of at most 4 bytes (`length` 1, 2 or 4, `offset` aligned to it) of the low bytes of
 * `value`: the host applies 2- and 4-byte records as one aligned store, so ctrl words and the
 * journal's commit word change atomically. Stores directly instead of copying, as these are most
 * of the log's records.
 */
// @ts-ignore: decorator
@inline function writeSmallThrough(fid: u32, offset: u32, value: u32, length: u32): void {
  const resident = peek(fid, offset >> PAGE_SHIFT);
  const inPage = offset & (PAGE_BYTES - 1);
  if (logUsed + LOG_RECORD_HEADER + 4 > LOG_BYTES) drainLog();
  const record = logBase + logUsed;
  store<u32>(record, fid);
  store<u32>(record + 4, offset);
  store<u32>(record + 8, length);
  store<u32>(record + LOG_RECORD_HEADER, value);
  if (length == 1) {
    if (resident != 0) store<u8>(resident + inPage, <u8>value);
  } else if (length == 2) {
    if (resident != 0) store<u16>(resident + inPage, <u16>value);
  } else {
    if (resident != 0) store<u32>(resident + inPage, value);
  }
  logUsed += LOG_RECORD_HEADER + 4;
  stats.logRecords += 1;
}

export function writeU8Through(fid: u32, offset: u32, value: u32): void {
  writeSmallThrough(fid, offset, value, 1);
}

/** A 2-byte write the host applies as one aligned store (ctrl words change atomically). */
export function writeU16Through(fid: u32, offset: u32, value: u32): void {
  writeSmallThrough(fid, offset, value, 2);
}

/** A 4-byte write the host applies as one aligned store. */
export function writeU32Through(fid: u32, offset: u32, value: u32): void {
  writeSmallThrough(fid, offset, value, 4);
}

/** The length field that marks a move record (a real length never comes near it). */
// @ts-ignore: decorator
@inline const LOG_MOVE: u32 = 0xffffffff;
// @ts-ignore: decorator
@inline const LOG_MOVE_BYTES: u32 = 24;

/**
 * Logs the move of a live index cell, whose resident copies the caller has already changed:
 *
 *   [ to fid | to page byte | LOG_MOVE | from fid | from page byte | to slot u8, from slot u8, ctrl u16 ]
 *
 * The host applies it as the four stores it stands for, in the order the host path makes them
 * (host/table.ts moveBetween): the 48 cell bytes, copied from the source cell in the mapping,
 * which the log keeps current; the extra byte; the destination's ctrl word; the source's ctrl
 * word set to 0. One record instead of four keeps a shift's cost near the host path's.
 */
export function logMove(toFid: u32, toPage: u32, toSlot: u32, fromFid: u32, fromPage: u32, fromSlot: u32, ctrl: u32): void {
  if (logUsed + LOG_MOVE_BYTES > LOG_BYTES) drainLog();
  const record = logBase + logUsed;
  store<u32>(record, toFid);
  store<u32>(record + 4, toPage << PAGE_SHIFT);
  store<u32>(record + 8, LOG_MOVE);
  store<u32>(record + 12, fromFid);
  store<u32>(record + 16, fromPage << PAGE_SHIFT);
  store<u32>(record + 20, toSlot | (fromSlot << 8) | (ctrl << 16));
  logUsed += LOG_MOVE_BYTES;
  stats.logRecords += 1;
}

/** Copies `length` bytes at file offset `offset` into `dst`, through the cache. */
export function readRange(fid: u32, offset: u32, dst: usize, length: u32): void {
  let done: u32 = 0;
  while (done < length) {
    const at = offset + done;
    const inPage = at & (PAGE_BYTES - 1);
    const n = min(length - done, PAGE_BYTES - inPage);
    memory.copy(dst + done, page(fid, at >> PAGE_SHIFT) + inPage, n);
    done += n;
  }
}

/** Copies `length` bytes from `src` into a file being built, through its cached pages. */
export function writeRangeBuilding(fid: u32, offset: u32, src: usize, length: u32): void {
  let done: u32 = 0;
  while (done < length) {
    const at = offset + done;
    const inPage = at & (PAGE_BYTES - 1);
    const n = min(length - done, PAGE_BYTES - inPage);
    const p = page(fid, at >> PAGE_SHIFT);
    memory.copy(p + inPage, src + done, n);
    markDirty(p);
    done += n;
  }
}
