/**
 * Bucket algorithms over the page cache: Robin Hood linear probing within `maxSearch` cells,
 * occupancy in page headers, backward-shift delete, data cells per size class, and the resize
 * copies. This is the same algorithm as host/table.ts (the host path), step for step, and it
 * writes in the same order, which crash safety relies on; see the comment at the top of that file.
 *
 * Bucket descriptors (DESC_BYTES each) are written by the host when a bucket's files change:
 *   ┌──────────┬───────┬────────────┬──────────┬────────┬────────┬───────┬─────────────┐
 *   │ indexFid │ pages │ pagesPerSeg│ capacity │ seedLo │ seedHi │ count │ journalSeq  │ (0..32)
 *   ├──────────┴───────┴────────────┴──────────┴────────┴────────┴───────┴─────────────┤
 *   │ per size class (17 × 16): dataFid │ pow2 │ cellsPerSeg │ count                   │ (32..304)
 *   └───────────────────────────────────────────────────────────────────────────────────┘
 * A file id of 0 means "no file". Segments of one file have consecutive ids.
 */
import {
  CELL_BYTES, CELLS_PER_PAGE, CORRUPT, FOUND_CORRUPT, SIZE_CLASSES, CTRL_KIND_SHIFT, DATA_FLAGS_OFFSET, DATA_FULL, DATA_HEADER_BYTES, DATA_OCCUPIED,
  DATA_SEARCH_FACTOR, HEADER_BYTES, INDEX_FULL, J_CHECK, J_COMMIT, JOURNAL_SEED_HI, JOURNAL_SEED_LO, KIND_DATA,
  KIND_INLINE, KIND_ZERO, LOAD_MAX_D, LOAD_MAX_N, MAX_INLINE_ELEMENT, MAX_INLINE_REFCOUNT, PAGE_BYTES, PAGE_EXTRA_OFFSET,
  MAX_LIST_BYTES, PAGE_HEADER_BYTES, PAGE_SHIFT,
  PUT_NEW, PUT_UPDATED, VALUE_OFFSET, dataCellBytes, sizeClassOf,
} from './layout';
import { hashHi, hashKey } from './hash';
import {
  drainLog, flushDirty, logMove, markDirty, page, readRange, writeRangeBuilding, writeThrough, writeU8Through, writeU16Through,
  writeU32Through,
} from './page_cache';

// @ts-ignore: decorator
@inline export const DESC_BYTES: u32 = 320;
// @ts-ignore: decorator
@inline export const D_INDEX_FID: u32 = 0;
// @ts-ignore: decorator
@inline export const D_PAGES: u32 = 4;
// @ts-ignore: decorator
@inline export const D_PAGES_PER_SEG: u32 = 8;
// @ts-ignore: decorator
@inline export const D_CAPACITY: u32 = 12;
// @ts-ignore: decorator
@inline export const D_SEED_LO: u32 = 16;
// @ts-ignore: decorator
@inline export const D_SEED_HI: u32 = 20;
// @ts-ignore: decorator
@inline export const D_COUNT: u32 = 24;
// @ts-ignore: decorator
@inline export const D_JOURNAL_SEQ: u32 = 28;
// @ts-ignore: decorator
@inline export const D_DATA: u32 = 32;
// @ts-ignore: decorator
@inline export const DD_FID: u32 = 0;
// @ts-ignore: decorator
@inline export const DD_POW2: u32 = 4;
// @ts-ignore: decorator
@inline export const DD_CELLS_PER_SEG: u32 = 8;
// @ts-ignore: decorator
@inline export const DD_COUNT: u32 = 12;
// @ts-ignore: decorator
@inline const NONE: u32 = 0xffffffff;
/** The high word of a refCount stays below this: refCounts go up to 2^53 - 1. */
// @ts-ignore: decorator
@inline const MAX_REFCOUNT_HI: u32 = 1 << 21;

// OUT region: results of get(), then element bytes at OUT_ELEMENTS.
// @ts-ignore: decorator
@inline export const OUT_KIND: u32 = 0;
// @ts-ignore: decorator
@inline export const OUT_RC_LO: u32 = 4;
// @ts-ignore: decorator
@inline export const OUT_RC_HI: u32 = 8;
// @ts-ignore: decorator
@inline export const OUT_SLOTS: u32 = 12;
// @ts-ignore: decorator
@inline export const OUT_FULL_CLASS: u32 = 16;
// @ts-ignore: decorator
@inline export const OUT_ELEMENTS: u32 = 32;

/** One index file as the algorithms see it. */
@unmanaged export class IndexView {
  fid: u32 = 0;
  pagesPerSeg: u32 = 1;
  capacity: u32 = 0;
  window: u32 = 0;
  /** 1 while the file is being built by a resize: writes go to dirty pages, not the log. */
  building: u32 = 0;
}

// Configuration and buffers, set by init().
let maxSearch: u32 = 32;
let elementSize: u32 = 16;
/** The longest slot list: 2^16 elements, and no more than MAX_LIST_BYTES (the list buffers' size). */
let maxSlots: u32 = 1 << 16;
export let descBase: usize = 0;
export let keyPtr: usize = 0;
export let inPtr: usize = 0;
export let outPtr: usize = 0;
let cellTmp: usize = 0;
let pageTmp: usize = 0;
let valueTmp: usize = 0;
let journalTmp: usize = 0;
let random: u32 = 0x9e3779b9;

// The key and slot list of the operation under way (keyPtr/inPtr, or a batch's entries).
let curKey: usize = 0;
let curList: usize = 0;

// The bucket being worked on.
export let cur: IndexView = changetype<IndexView>(0);
let target: IndexView = changetype<IndexView>(0);
let curDesc: usize = 0;
export let seedLo: u32 = 0;
export let seedHi: u32 = 0;

// Where the last failed probe would insert.
let insAt: u32 = NONE;
let insDist: u32 = 0;
let insShift: bool = false;
let probeTag: u32 = 0;
/** Cells examined by lookups so far (the specs use it to check that misses stop early). */
export let probeSteps: u32 = 0;

// Cell location, set by locate().
export let locFid: u32 = 0;
export let locPage: u32 = 0;
export let locSlot: u32 = 0;

export function initBuckets(maxBuckets: u32, search: u32, size: u32, seed: u32, listBytes: u32): void {
  maxSearch = search;
  elementSize = size;
  maxSlots = min(<u32>1 << (SIZE_CLASSES - 1), min(listBytes, MAX_LIST_BYTES) / max(size, 1));
  random = seed | 1;
  descBase = heap.alloc(<usize>maxBuckets * DESC_BYTES);
  memory.fill(descBase, 0, <usize>maxBuckets * DESC_BYTES);
  keyPtr = heap.alloc(64);
  inPtr = heap.alloc(listBytes + 64);
  outPtr = heap.alloc(OUT_ELEMENTS + listBytes + 64);
  cellTmp = heap.alloc(64);
  pageTmp = heap.alloc(PAGE_BYTES);
  valueTmp = heap.alloc(16);
  journalTmp = heap.alloc(64);
  cur = changetype<IndexView>(heap.alloc(offsetof<IndexView>()));
  target = changetype<IndexView>(heap.alloc(offsetof<IndexView>()));
}

export function bindCurrent(ix: u32): void {
  curDesc = descBase + <usize>ix * DESC_BYTES;
  cur.fid = load<u32>(curDesc + D_INDEX_FID);
  cur.pagesPerSeg = load<u32>(curDesc + D_PAGES_PER_SEG);
  cur.capacity = load<u32>(curDesc + D_CAPACITY);
  cur.window = min(maxSearch, cur.capacity);
  cur.building = 0;
  seedLo = load<u32>(curDesc + D_SEED_LO);
  seedHi = load<u32>(curDesc + D_SEED_HI);
}

// ── cell addressing ──────────────────────────────────────────────────────────────────────────────

// @ts-ignore: decorator
@inline export function locate(v: IndexView, c: u32): void {
  const p = c / CELLS_PER_PAGE;
  const seg = p / v.pagesPerSeg;
  locFid = v.fid + seg;
  locPage = 1 + p - seg * v.pagesPerSeg;
  locSlot = c - p * CELLS_PER_PAGE;
}

function ctrlOf(v: IndexView, c: u32): u32 {
  locate(v, c);
  return load<u16>(page(locFid, locPage) + (locSlot << 1));
}

function cellPtr(v: IndexView, c: u32): usize {
  locate(v, c);
  return page(locFid, locPage) + PAGE_HEADER_BYTES + locSlot * CELL_BYTES;
}

function setCtrl(v: IndexView, c: u32, value: u32): void {
  locate(v, c);
  if (v.building != 0) {
    const p = page(locFid, locPage);
    store<u16>(p + (locSlot << 1), <u16>value);
    markDirty(p);
  } else {
    writeU16Through(locFid, (locPage << PAGE_SHIFT) + (locSlot << 1), value);
  }
}

/** Writes `length` bytes at `offset` within cell `c`. */
function writeCell(v: IndexView, c: u32, offset: u32, src: usize, length: u32): void {
  locate(v, c);
  const within = PAGE_HEADER_BYTES + locSlot * CELL_BYTES + offset;
  if (v.building != 0) {
    const p = page(locFid, locPage);
    memory.copy(p + within, src, length);
    markDirty(p);
  } else {
    writeThrough(locFid, (locPage << PAGE_SHIFT) + within, src, length);
  }
}

/** The extra-references byte of cell `c` (refCount − 1 of an INLINE cell). */
function extraOf(v: IndexView, c: u32): u32 {
  locate(v, c);
  return <u32>load<u8>(page(locFid, locPage) + PAGE_EXTRA_OFFSET + locSlot);
}

function setExtra(v: IndexView, c: u32, value: u32): void {
  locate(v, c);
  if (v.building != 0) {
    const p = page(locFid, locPage);
    store<u8>(p + PAGE_EXTRA_OFFSET + locSlot, <u8>value);
    markDirty(p);
  } else {
    writeU8Through(locFid, (locPage << PAGE_SHIFT) + PAGE_EXTRA_OFFSET + locSlot, value);
  }
}

// @ts-ignore: decorator
@inline function next(v: IndexView, c: u32): u32 {
  return c + 1 == v.capacity ? 0 : c + 1;
}

// @ts-ignore: decorator
@inline function prev(v: IndexView, c: u32): u32 {
  return c == 0 ? v.capacity - 1 : c - 1;
}

// @ts-ignore: decorator
@inline function keyEquals(cell: usize, key: usize): bool {
  return load<u64>(cell) == load<u64>(key) && load<u64>(cell, 8) == load<u64>(key, 8)
    && load<u64>(cell, 16) == load<u64>(key, 16) && load<u64>(cell, 24) == load<u64>(key, 24);
}

// ── lookup ───────────────────────────────────────────────────────────────────────────────────────

/**
 * Finds the 32-byte key at `key`; returns its cell or NONE. On a miss, records where an insert
 * would go (insAt/insDist/insShift; insAt = NONE if the window has no room).
 */
function probe(v: IndexView, key: usize): u32 {
  const lo = hashKey(key, seedLo, seedHi);
  return probeHashed(v, key, lo, hashHi >>> 26);
}

/** probe() with the key's hash already known (batches hash every key first). */
export function probeHashed(v: IndexView, key: usize, lo: u32, tag: u32): u32 {
  probeTag = tag;
  const capacity = v.capacity;
  let c = lo % capacity;
  // Walk the window page by page: one cache lookup per page, not per cell.
  locate(v, c);
  let slot = locSlot;
  let p = page(locFid, locPage);
  for (let d: u32 = 0; d < v.window; d++) {
    probeSteps++;
    const ctl = <u32>load<u16>(p + (slot << 1));
    const cd = ctl & 0xff;
    if (cd == 0 || cd - 1 < d) {
      insAt = c;
      insDist = d;
      insShift = cd != 0;
      return NONE;
    }
    if (((ctl >> 8) & 63) == tag && keyEquals(p + PAGE_HEADER_BYTES + slot * CELL_BYTES, key)) return c;
    c = c + 1 == capacity ? 0 : c + 1;
    if (++slot == CELLS_PER_PAGE || c == 0) {
      locate(v, c);
      slot = locSlot;
      p = page(locFid, locPage);
    }
  }
  insAt = NONE;
  return NONE;
}

/** Looks up the key at keyPtr in bucket `ix`; fills OUT and returns 1, or returns 0 if absent. */
export function get(ix: u32): u32 {
  bindCurrent(ix);
  const c = probe(cur, keyPtr);
  if (c == NONE) return 0;
  return readCellTo(c, outPtr, outPtr + OUT_ELEMENTS) ? 1 : damaged(c, FOUND_CORRUPT);
}

/** Reports damage in cell `c` (its number goes to OUT_FULL_CLASS for the host's message). */
export function damaged(c: u32, status: u32): u32 {
  store<u32>(outPtr + OUT_FULL_CLASS, c);
  return status;
}

/**
 * Reads live cell `c`: kind, refCount (lo, hi) and slot count into the record at `rec` (the OUT
 * layout), the elements to `elements`. False if the cell is damaged (the record is then meaningless).
 */
export function readCellTo(c: u32, rec: usize, elements: usize): bool {
  if (readRecord(c, rec) == NONE) return false;
  copyElements(elements);
  return true;
}

// Where readRecord() found the elements, for copyElements(): an INLINE cell's value in the cache
// (elemPtr), or a DATA cell's elements at (elemFid, elemOff); elemBytes long.
let elemPtr: usize = 0;
let elemFid: u32 = 0;
let elemOff: u32 = 0;
let elemBytes: u32 = 0;

/**
 * Checks live cell `c` and reads its kind, refCount and slot count into the record at `rec`, but
 * not its elements: returns how many bytes they take (at most maxSlots × elementSize, so never
 * more than MAX_LIST_BYTES), or NONE if the cell is damaged. copyElements() then copies them; no
 * page may be brought into the cache in between (an INLINE cell's elements are read in place).
 */
export function readRecord(c: u32, rec: usize): u32 {
  const kind = ctrlOf(cur, c) >> CTRL_KIND_SHIFT;
  const value = cellPtr(cur, c) + VALUE_OFFSET;
  store<u32>(rec + OUT_KIND, kind);
  if (kind == KIND_INLINE) {
    // Elements over 16 bytes never go inline: copied from here, one would take the bytes after the cell.
    if (elementSize > MAX_INLINE_ELEMENT) return NONE;
    store<u32>(rec + OUT_RC_LO, 1 + extraOf(cur, c));
    store<u32>(rec + OUT_RC_HI, 0);
    store<u32>(rec + OUT_SLOTS, 1);
    elemPtr = value;
    elemBytes = elementSize;
    return elementSize;
  }
  elemPtr = 0;
  elemBytes = 0;
  if (kind == KIND_ZERO) {
    const hi = load<u32>(value, 4);
    // A refCount past 2^53 - 1 (a high word of 2^21 or more) is damage: the host cannot hold it exactly.
    if (hi >= MAX_REFCOUNT_HI) return NONE;
    store<u32>(rec + OUT_RC_LO, load<u32>(value));
    store<u32>(rec + OUT_RC_HI, hi);
    store<u32>(rec + OUT_SLOTS, 0);
    return 0;
  }
  if (kind != KIND_DATA) return NONE;
  const slots = load<u32>(value, 8);
  // A slot count beyond the longest list (maxSlots: 2^16 elements and MAX_LIST_BYTES) is damage
  // even within the class's 2^c: copying it would overrun OUT or the batch's data area.
  if (slots == 0 || slots > maxSlots) return NONE;
  const cell = dataRefOf(value);
  if (cell == NONE || slots > (<u32>1 << refClass)) return NONE;
  store<u32>(rec + OUT_SLOTS, slots);
  locateData(refClass, cell);
  readRange(dataFidAt, dataOffAt, cellTmp, DATA_HEADER_BYTES);
  const hi = load<u32>(cellTmp, 4) & 0xffffff;
  if (hi >= MAX_REFCOUNT_HI) return NONE;
  store<u32>(rec + OUT_RC_LO, load<u32>(cellTmp));
  store<u32>(rec + OUT_RC_HI, hi);
  elemFid = dataFidAt;
  elemOff = dataOffAt + DATA_HEADER_BYTES;
  elemBytes = slots * elementSize;
  return elemBytes;
}

/** Copies the elements of the cell the last readRecord() accepted to `elements`. */
export function copyElements(elements: usize): void {
  if (elemPtr != 0) {
    memory.copy(elements, elemPtr, elemBytes);
  } else if (elemBytes != 0) {
    readRange(elemFid, elemOff, elements, elemBytes);
  }
}

// ── writes ───────────────────────────────────────────────────────────────────────────────────────

/**
 * Upsert of the key at keyPtr with `slots` elements at inPtr and refCount (rcLo, rcHi). One
 * attempt: on INDEX_FULL / DATA_FULL nothing has been written (OUT_FULL_CLASS names the class).
 */
export function put(ix: u32, slots: u32, rcLo: u32, rcHi: u32): u32 {
  bindCurrent(ix);
  const result = putAt(keyPtr, inPtr, slots, rcLo, rcHi);
  drainLogAfterWrite();
  return result;
}

/** put() of the key at `key` with the elements at `list` into the bound bucket (no log drain). */
export function putAt(key: usize, list: usize, slots: u32, rcLo: u32, rcHi: u32): u32 {
  curKey = key;
  curList = list;
  return putCurrent(slots, rcLo, rcHi);
}

function putCurrent(slots: u32, rcLo: u32, rcHi: u32): u32 {
  const inline = slots == 1 && elementSize <= MAX_INLINE_ELEMENT && rcHi == 0 && rcLo >= 1 && rcLo <= MAX_INLINE_REFCOUNT;
  const needsData = slots > 1 || (slots == 1 && !inline);
  const kind = slots == 0 ? KIND_ZERO : needsData ? KIND_DATA : KIND_INLINE;
  const sizeClass = needsData ? sizeClassOf(slots) : 0;
  if (needsData && dataField(sizeClass, DD_FID) == 0) return dataFull(sizeClass);
  const found = probe(cur, curKey);
  if (found != NONE) return update(found, kind, sizeClass, slots, rcLo, rcHi);

  const count = load<u32>(curDesc + D_COUNT);
  if (insAt == NONE || <u64>(count + 1) * LOAD_MAX_D > <u64>cur.capacity * LOAD_MAX_N) return INDEX_FULL;
  const at = insAt;
  const dist = insDist;
  const tag = probeTag;
  let end = NONE;
  if (insShift) {
    end = shiftEnd(cur, at);
    if (end == NONE) return INDEX_FULL;
  }
  let dataCell = NONE;
  if (needsData) {
    dataCell = allocData(sizeClass);
    if (dataCell == NONE) return dataFull(sizeClass);
    writeData(sizeClass, dataCell, slots, rcLo, rcHi);
  }
  if (end != NONE) shiftRight(cur, at, end);
  buildValue(kind, sizeClass, dataCell, slots, rcLo, rcHi);
  writeCell(cur, at, 0, curKey, 32);
  writeCell(cur, at, VALUE_OFFSET, valueTmp, 16);
  setExtra(cur, at, inline ? rcLo - 1 : 0);
  setCtrl(cur, at, (dist + 1) | (tag << 8) | (kind << CTRL_KIND_SHIFT));
  store<u32>(curDesc + D_COUNT, count + 1);
  return PUT_NEW;
}

function dataFull(sizeClass: u32): u32 {
  store<u32>(outPtr + OUT_FULL_CLASS, sizeClass);
  return DATA_FULL;
}

function update(c: u32, kind: u32, sizeClass: u32, slots: u32, rcLo: u32, rcHi: u32): u32 {
  const oldCtrl = ctrlOf(cur, c);
  const oldKind = oldCtrl >> CTRL_KIND_SHIFT;
  // The old value is checked before anything is written.
  let oldData = NONE;
  let oldClass: u32 = 0;
  if (oldKind == KIND_DATA) {
    oldData = dataRefOf(cellPtr(cur, c) + VALUE_OFFSET);
    if (oldData == NONE) return damaged(c, CORRUPT);
    oldClass = refClass;
  } else if (oldKind == 0) {
    return damaged(c, CORRUPT);
  }
  let dataCell = NONE;
  if (kind == KIND_DATA) {
    dataCell = allocData(sizeClass);
    if (dataCell == NONE) return dataFull(sizeClass);
    writeData(sizeClass, dataCell, slots, rcLo, rcHi);
  }
  buildValue(kind, sizeClass, dataCell, slots, rcLo, rcHi);
  const newCtrl = (oldCtrl & 0x3fff) | (kind << CTRL_KIND_SHIFT);
  const extra: u32 = kind == KIND_INLINE ? rcLo - 1 : 0;
  const value = cellPtr(cur, c) + VALUE_OFFSET;
  if (newCtrl == oldCtrl && kind != KIND_DATA
    && load<u64>(value) == load<u64>(valueTmp) && load<u64>(value, 8) == load<u64>(valueTmp, 8)) {
    // Only the refCount of an inline entry changes: one byte, one store, no journal.
    if (extraOf(cur, c) != extra) setExtra(cur, c, extra);
    return PUT_UPDATED;
  }
  journaledUpdate(c, newCtrl, extra);
  if (oldData != NONE) freeData(oldClass, oldData);
  return PUT_UPDATED;
}

/**
 * Adds `delta` to the refCount of the INLINE entry of the key at keyPtr, in place (one byte):
 * returns the new refCount, -1 if absent, or -2 if the entry is not inline or the result leaves
 * 1..256 (the host then rewrites the entry).
 */
export function adjustRef(ix: u32, delta: i32): i32 {
  bindCurrent(ix);
  const rc = adjustFound(probe(cur, keyPtr), delta);
  if (rc > 0) drainLogAfterWrite();
  return rc;
}

/** adjustRef() of cell `c` of the bound bucket, which a probe returned (NONE: absent); no log drain. */
export function adjustFound(c: u32, delta: i32): i32 {
  if (c == NONE) return -1;
  // A damaged INLINE cell (elements over 16 bytes) goes to the host's rewrite, whose read reports it.
  if ((ctrlOf(cur, c) >> CTRL_KIND_SHIFT) != KIND_INLINE || elementSize > MAX_INLINE_ELEMENT) return -2;
  const rc = <i32>extraOf(cur, c) + 1 + delta;
  if (rc < 1 || rc > <i32>MAX_INLINE_REFCOUNT) return -2;
  setExtra(cur, c, <u32>(rc - 1));
  return rc;
}

/** Deletes the key at keyPtr from bucket `ix`; returns 1 if it was there. */
export function remove(ix: u32): u32 {
  bindCurrent(ix);
  const removed = removeFound(probe(cur, keyPtr));
  drainLogAfterWrite();
  return removed;
}

/** Deletes cell `c` of the bound bucket, which a probe returned (NONE: absent); no log drain. */
export function removeFound(c: u32): u32 {
  if (c == NONE) return 0;
  const kind = ctrlOf(cur, c) >> CTRL_KIND_SHIFT;
  let oldData = NONE;
  let oldClass: u32 = 0;
  if (kind == KIND_DATA) {
    oldData = dataRefOf(cellPtr(cur, c) + VALUE_OFFSET);
    if (oldData == NONE) return damaged(c, FOUND_CORRUPT);
    oldClass = refClass;
  } else if (kind == 0) {
    return damaged(c, FOUND_CORRUPT);
  }
  // A live cell in a bucket counted empty: the counts are damaged, and the count would wrap.
  const count = load<u32>(curDesc + D_COUNT);
  if (count == 0) return damaged(c, FOUND_CORRUPT);
  setCtrl(cur, c, 0);
  shiftLeft(cur, c);
  store<u32>(curDesc + D_COUNT, count - 1);
  if (oldData != NONE) freeData(oldClass, oldData);
  return 1;
}

/** The first free cell of the run starting at `from`, or NONE if shifting would push a resident out of its window. */
function shiftEnd(v: IndexView, from: u32): u32 {
  let c = from;
  for (let n: u32 = 0; n < v.capacity; n++) {
    const cd = ctrlOf(v, c) & 0xff;
    if (cd == 0) return c;
    if (cd >= v.window) return NONE;
    c = next(v, c);
  }
  return NONE;
}

/** Moves cells [from, end) one to the right, last first, so every key stays reachable. */
function shiftRight(v: IndexView, from: u32, end: u32): void {
  let j = end;
  while (j != from) {
    const p = prev(v, j);
    moveCell(v, p, j, ctrlOf(v, p) + 1);
    j = p;
  }
}

/**
 * Moves the live cell `from` into the free cell `to` with ctrl word `ctrl`, in the host path's
 * order (content and extra byte, then the destination's ctrl, then the source's ctrl cleared).
 */
function moveCell(v: IndexView, from: u32, to: u32, ctrl: u32): void {
  locate(v, from);
  const fromFid = locFid;
  const fromPage = locPage;
  const fromSlot = locSlot;
  const src = page(fromFid, fromPage);
  locate(v, to);
  // The source is now its set's most recently used page, so bringing in the destination cannot take its slot.
  const dst = page(locFid, locPage);
  const s = src + PAGE_HEADER_BYTES + fromSlot * CELL_BYTES;
  const d = dst + PAGE_HEADER_BYTES + locSlot * CELL_BYTES;
  // Word stores: memory.copy is a call out of the module, dearer than the copy at this size.
  for (let i: usize = 0; i < CELL_BYTES; i += 8) store<u64>(d + i, load<u64>(s + i));
  store<u8>(dst + PAGE_EXTRA_OFFSET + locSlot, load<u8>(src + PAGE_EXTRA_OFFSET + fromSlot));
  store<u16>(dst + (locSlot << 1), <u16>ctrl);
  store<u16>(src + (fromSlot << 1), 0);
  if (v.building != 0) {
    markDirty(dst);
    markDirty(src);
  } else {
    logMove(locFid, locPage, locSlot, fromFid, fromPage, fromSlot, ctrl);
  }
}

/** Backward-shift after freeing cell `hole`: pulls the rest of the run one cell closer to home. */
function shiftLeft(v: IndexView, hole: u32): void {
  let before = hole;
  let j = next(v, hole);
  for (let n: u32 = 0; n < v.capacity; n++) {
    const ctl = ctrlOf(v, j);
    if ((ctl & 0xff) <= 1) return;
    moveCell(v, j, before, ctl - 1);
    before = j;
    j = next(v, j);
  }
}

/** The 16-byte value of a cell into valueTmp. */
function buildValue(kind: u32, sizeClass: u32, dataCell: u32, slots: u32, rcLo: u32, rcHi: u32): void {
  memory.fill(valueTmp, 0, 16);
  if (kind == KIND_INLINE) {
    memory.copy(valueTmp, curList, elementSize);
  } else if (kind == KIND_ZERO) {
    store<u32>(valueTmp, rcLo);
    store<u32>(valueTmp, rcHi, 4);
  } else {
    store<u32>(valueTmp, dataCell);
    store<u8>(valueTmp, <u8>dataField(sizeClass, DD_POW2), 4);
    store<u8>(valueTmp, <u8>sizeClass, 5);
    store<u32>(valueTmp, slots, 8);
  }
}

/**
 * Writes valueTmp, `ctrl` and the extra byte into live cell `c` through the journal in the index
 * header: record (check + body), commit, the cell, then commit = 0. See host/layout.ts.
 */
function journaledUpdate(c: u32, ctrl: u32, extra: u32): void {
  // Never 0: a commit word of 0 means no record, so a record numbered 0 would never be in force.
  let seq = load<u32>(curDesc + D_JOURNAL_SEQ) + 1;
  if (seq == 0) seq = 1;
  store<u32>(curDesc + D_JOURNAL_SEQ, seq);
  const body = journalTmp + 4;
  store<u32>(body, c);
  store<u32>(body, ctrl, 4);
  memory.copy(body + 8, valueTmp, 16);
  store<u32>(body, seq, 24);
  store<u32>(body, extra, 28);
  store<u32>(journalTmp, hashKey(body, JOURNAL_SEED_LO, JOURNAL_SEED_HI));
  writeThrough(cur.fid, J_CHECK, journalTmp, 36);
  writeU32Through(cur.fid, J_COMMIT, seq);
  writeCell(cur, c, VALUE_OFFSET, valueTmp, 16);
  setExtra(cur, c, extra);
  setCtrl(cur, c, ctrl);
  writeU32Through(cur.fid, J_COMMIT, 0);
}

// ── data cells ───────────────────────────────────────────────────────────────────────────────────

let dataFidAt: u32 = 0;
let dataOffAt: u32 = 0;

// @ts-ignore: decorator
@inline function dataField(sizeClass: u32, field: u32): u32 {
  return load<u32>(curDesc + D_DATA + (sizeClass << 4) + field);
}

/** Sets dataFidAt/dataOffAt to where cell `cell` of the class lives. */
function locateData(sizeClass: u32, cell: u32): void {
  const perSeg = dataField(sizeClass, DD_CELLS_PER_SEG);
  const seg = cell / perSeg;
  dataFidAt = dataField(sizeClass, DD_FID) + seg;
  dataOffAt = HEADER_BYTES + (cell - seg * perSeg) * dataCellBytes(sizeClass, elementSize);
}

let refClass: u32 = 0;

/**
 * The current cell of a DATA value (files double; cell j moved to j·2^Δ), or NONE if the value
 * does not name an existing, occupied cell. Sets refClass.
 */
function dataRefOf(value: usize): u32 {
  const created = load<u32>(value);
  const createdPow2 = <u32>load<u8>(value, 4);
  const sizeClass = <u32>load<u8>(value, 5);
  if (sizeClass >= SIZE_CLASSES || dataField(sizeClass, DD_FID) == 0) return NONE;
  const pow2 = dataField(sizeClass, DD_POW2);
  if (createdPow2 > pow2) return NONE;
  const shift = pow2 - createdPow2;
  // The shifted cell must stay below the capacity 2^pow2 (and not overflow 32 bits).
  if (shift >= 32 || (<u64>created << shift) >= (<u64>1 << pow2)) return NONE;
  const cell = created << shift;
  if (!isOccupied(sizeClass, cell)) return NONE;
  refClass = sizeClass;
  return cell;
}

function isOccupied(sizeClass: u32, cell: u32): bool {
  locateData(sizeClass, cell);
  return (load<u8>(page(dataFidAt, dataOffAt >> PAGE_SHIFT) + (dataOffAt & (PAGE_BYTES - 1)) + DATA_FLAGS_OFFSET) & DATA_OCCUPIED) != 0;
}

function nextRandom(): u32 {
  let x = random;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  random = x;
  return x;
}

/** A free cell of the class (searched from a random start), or NONE when the file should grow. */
function allocData(sizeClass: u32): u32 {
  const cap: u32 = 1 << dataField(sizeClass, DD_POW2);
  if (<u64>(dataField(sizeClass, DD_COUNT) + 1) * LOAD_MAX_D > <u64>cap * LOAD_MAX_N) return NONE;
  const limit = min(cap, maxSearch * DATA_SEARCH_FACTOR);
  let cell = nextRandom() & (cap - 1);
  for (let i: u32 = 0; i < limit; i++) {
    if (!isOccupied(sizeClass, cell)) return cell;
    cell = cell + 1 == cap ? 0 : cell + 1;
  }
  return NONE;
}

function writeData(sizeClass: u32, cell: u32, slots: u32, rcLo: u32, rcHi: u32): void {
  locateData(sizeClass, cell);
  store<u32>(cellTmp, rcLo);
  store<u32>(cellTmp, rcHi | (DATA_OCCUPIED << 24), 4);
  const n = slots * elementSize;
  if (n != 0) writeThrough(dataFidAt, dataOffAt + DATA_HEADER_BYTES, curList, n);
  writeThrough(dataFidAt, dataOffAt, cellTmp, DATA_HEADER_BYTES);
  const field = curDesc + D_DATA + (sizeClass << 4) + DD_COUNT;
  store<u32>(field, load<u32>(field) + 1);
}

function freeData(sizeClass: u32, cell: u32): void {
  locateData(sizeClass, cell);
  writeU8Through(dataFidAt, dataOffAt + DATA_FLAGS_OFFSET, 0);
  const field = curDesc + D_DATA + (sizeClass << 4) + DD_COUNT;
  store<u32>(field, load<u32>(field) - 1);
}

// ── resize ───────────────────────────────────────────────────────────────────────────────────────

/**
 * Rehashes bucket `ix` into a fresh index file (first segment id `fid`) hashed with seed
 * (newSeedLo, newSeedHi): the bucket's own, or a new one when it is reseeded. Writes go through
 * dirty pages written back at the end. A key seen twice is kept once. Returns 1; 0 if some key
 * found no room (the caller discards the file and tries a larger one); CORRUPT if a live cell has
 * no kind.
 */
export function rehash(ix: u32, fid: u32, pages: u32, pagesPerSeg: u32, newSeedLo: u32, newSeedHi: u32): u32 {
  bindCurrent(ix);
  // The source is read cell by cell without hashing; only the target is probed, with its seed.
  seedLo = newSeedLo;
  seedHi = newSeedHi;
  target.fid = fid;
  target.pagesPerSeg = pagesPerSeg;
  target.capacity = pages * CELLS_PER_PAGE;
  target.window = min(maxSearch, target.capacity);
  target.building = 1;
  let inserted: u32 = 0;
  const pageCount = cur.capacity / CELLS_PER_PAGE;
  for (let p: u32 = 0; p < pageCount; p++) {
    // A private copy of the source page: probing the target may evict it from the cache.
    memory.copy(pageTmp, cellPtr(cur, p * CELLS_PER_PAGE) - PAGE_HEADER_BYTES, PAGE_BYTES);
    for (let s: u32 = 0; s < CELLS_PER_PAGE; s++) {
      const ctl = <u32>load<u16>(pageTmp + (s << 1));
      if ((ctl & 0xff) == 0) continue;
      if ((ctl >> CTRL_KIND_SHIFT) == 0) return damaged(p * CELLS_PER_PAGE + s, CORRUPT);
      const cell = pageTmp + PAGE_HEADER_BYTES + s * CELL_BYTES;
      if (probe(target, cell) != NONE) continue;
      const at = insAt;
      if (at == NONE) return 0;
      if (insShift) {
        const end = shiftEnd(target, at);
        if (end == NONE) return 0;
        shiftRight(target, at, end);
      }
      writeCell(target, at, 0, cell, CELL_BYTES);
      setExtra(target, at, <u32>load<u8>(pageTmp + PAGE_EXTRA_OFFSET + s));
      setCtrl(target, at, (insDist + 1) | (probeTag << 8) | (ctl & 0xc000));
      inserted++;
    }
  }
  flushDirty();
  store<u32>(curDesc + D_COUNT, inserted);
  return 1;
}

/**
 * Spaced copy of a data class of bucket `ix` into a fresh file of 2^pow2 cells (first segment id
 * `fid`): cell j goes to j·2^Δ, so index entries stay valid.
 */
export function copyData(ix: u32, sizeClass: u32, fid: u32, pow2: u32, cellsPerSeg: u32): void {
  bindCurrent(ix);
  const cellBytes = dataCellBytes(sizeClass, elementSize);
  const cap: u32 = 1 << dataField(sizeClass, DD_POW2);
  const shift = pow2 - dataField(sizeClass, DD_POW2);
  const buffer = outPtr;
  for (let k: u32 = 0; k < cap; k++) {
    if (!isOccupied(sizeClass, k)) continue;
    const to = k << shift;
    const seg = to / cellsPerSeg;
    const at = HEADER_BYTES + (to - seg * cellsPerSeg) * cellBytes;
    // A cell of the largest classes is bigger than the out buffer (2^14 elements of up to 4 KiB
    // against a 1 MiB list): copied whole it would overrun into the heap after it.
    for (let done: u32 = 0; done < cellBytes; done += MAX_LIST_BYTES) {
      const n = min(cellBytes - done, MAX_LIST_BYTES);
      readRange(dataFidAt, dataOffAt + done, buffer, n);
      writeRangeBuilding(fid + seg, at + done, buffer, n);
    }
  }
  flushDirty();
}

/** Every write operation ends by handing its log to the host (see page_cache.ts). */
// @ts-ignore: decorator
@inline function drainLogAfterWrite(): void {
  drainLog();
}
