/**
 * Bucket algorithms in TypeScript, straight on the mapped files (the host path). The same
 * algorithms live in assembly/bucket.ts for the wasm core; the two must stay in step.
 *
 * The index is a Robin Hood linear-probing table: a key sits within `maxSearch` cells of its home
 * cell (hash mod capacity), and every run of cells is kept ordered by home, so that
 *  - a lookup stops at the first free cell or at the first resident closer to its own home than
 *    the probe is to the key's home: a miss costs a few cells, not the whole window;
 *  - the table fills to ~90% before a window overflows (plain linear probing overflows a 32-cell
 *    window at 45–65% on large tables).
 * Inserts shift the rest of a run one cell right; deletes shift it back (no tombstones).
 *
 * Crash ordering (stores reach the mapping in program order; a killed process loses none of them):
 *  - content is written only into free cells, and a cell becomes live by its ctrl store after;
 *  - a move writes the destination, makes it live, then frees the source (a crash leaves at most
 *    one duplicate, which reopening removes by rebuilding the bucket);
 *  - a live cell's value changes only through the journal (see layout.ts);
 *  - a data cell is written before the index points at it and freed after it no longer does.
 */
import { hashHi, hashKey, hashKeyWords } from './hash.js';
import type { MappedFile } from './storage.js';
import { corrupt } from './errors.js';
import {
  CELL_BYTES, CELLS_PER_PAGE, CTRL_KIND_SHIFT, DATA_FLAGS_OFFSET, DATA_HEADER_BYTES, DATA_OCCUPIED,
  DATA_SEARCH_FACTOR, HEADER_BYTES, J_BODY, J_CHECK, J_COMMIT, JOURNAL_SEED_HI, JOURNAL_SEED_LO, KIND_DATA,
  KIND_INLINE, KIND_ZERO, LOAD_MAX_D, LOAD_MAX_N, MAX_INLINE_ELEMENT, MAX_INLINE_REFCOUNT, PAGE_BYTES, SIZE_CLASSES,
  cellByte, ctrlHalf, extraByte, maxSlotsFor, sizeClassOf,
} from './layout.js';

export const PUT_NEW = 0;
export const PUT_UPDATED = 1;
export const INDEX_FULL = 2;
export const DATA_FULL = 3;

const TWO_32 = 0x100000000;
/** The high word of a refCount stays below this: refCounts go up to 2^53 - 1, which a double holds exactly. */
const MAX_REFCOUNT_HI = 2 ** 21;

/**
 * The cell a hash `lo` starts its probe at. Operands and result are all marked unsigned 32-bit so
 * that V8 divides integers: `(lo >>> 0) % capacity` compiled to the x87 fprem loop (a third of a
 * probe's time), and its double result turned every later `c % CELLS_PER_PAGE` into fprem too.
 */
function homeCell(lo: number, capacity: number): number {
  return ((lo >>> 0) % (capacity >>> 0)) >>> 0;
}

/**
 * Segment of index page `page`: nearly every index has one segment, and a compare is cheaper
 * than the integer division (tens of cycles) a probe would otherwise pay for it.
 */
function segmentOfPage(page: number, perSegment: number): number {
  return page < perSegment ? 0 : (page / perSegment) | 0;
}

/**
 * The ctrl word of cell `slot` of the page at byte `base`, read through the page's word view: one
 * view serves a whole probe (the u16 view is kept for stores, which must be single 16-bit writes).
 */
function ctrlIn(words: Int32Array, base: number, slot: number): number {
  return (words[(base >>> 2) + (slot >>> 1)] >>> ((slot & 1) << 4)) & 0xffff;
}

/** A cache line in 32-bit words: batch prefetches step through a probe's first cells this far. */
export const PREFETCH_STRIDE = 16;

/** One data file of a size class, with typed views over each segment. */
export class DataFile {
  readonly file: MappedFile;
  readonly pow2: number;
  readonly capacity: number;
  readonly cellBytes: number;
  readonly cellsPerSegment: number;
  readonly u8: Uint8Array[];
  readonly u32: Uint32Array[];
  readonly i32: Int32Array[];

  constructor(file: MappedFile) {
    this.file = file;
    this.pow2 = file.spec.capacityPow2;
    this.capacity = file.spec.capacity;
    this.cellBytes = file.spec.cellBytes;
    this.cellsPerSegment = file.recordsPerSegment;
    this.u8 = file.segments.map((b) => new Uint8Array(b.buffer, b.byteOffset, b.length));
    this.u32 = file.segments.map((b) => new Uint32Array(b.buffer, b.byteOffset, b.length >>> 2));
    this.i32 = file.segments.map((b) => new Int32Array(b.buffer, b.byteOffset, b.length >>> 2));
  }

  segmentOf(cell: number): number {
    return (cell / this.cellsPerSegment) | 0;
  }

  offsetOf(cell: number, segment: number): number {
    return HEADER_BYTES + (cell - segment * this.cellsPerSegment) * this.cellBytes;
  }

  isOccupied(cell: number): boolean {
    const s = this.segmentOf(cell);
    return (this.u8[s][this.offsetOf(cell, s) + DATA_FLAGS_OFFSET] & DATA_OCCUPIED) !== 0;
  }

  /** Copies cell `from` whole (header and elements) to cell `to` of `target`, a file of the same class. */
  copyCell(from: number, target: DataFile, to: number): void {
    const fs = this.segmentOf(from);
    const ts = target.segmentOf(to);
    const a = this.u32[fs];
    const b = target.u32[ts];
    const at = this.offsetOf(from, fs) >>> 2;
    const bt = target.offsetOf(to, ts) >>> 2;
    for (let i = 0; i < this.cellBytes >>> 2; i++) b[bt + i] = a[at + i];
  }
}

/** What a lookup found: where the element bytes are, and the refCount. Valid until the next call. */
export interface ValueRef {
  kind: number;
  refCount: number;
  slots: number;
  /** Bytes holding the elements (a mapped buffer or scratch); elements start at `off`. */
  buf: Uint8Array;
  /** A word view of the same bytes from the same start (byte `off` is in word `off >>> 2`). */
  words: Int32Array;
  off: number;
}

/*
 * Scratch shared by every table (calls never interleave). With 1,024 buckets, each table's own
 * scratch and views were a dozen objects per bucket that a get in a random bucket found cold:
 * chains of cache misses before the index was even reached. Shared, they stay in cache.
 * KEY_WORDS holds the words of the key being looked up (filled by the hash).
 */
const KEY_WORDS = new Int32Array(8);
const OUT: ValueRef = { kind: 0, refCount: 0, slots: 0, buf: new Uint8Array(0), words: new Int32Array(0), off: 0 };
const VALUE = new Uint8Array(16);
const VALUE_WORDS = new Int32Array(VALUE.buffer);
const JOURNAL_BODY = new Uint8Array(32);
const JOURNAL_BODY_WORDS = new Uint32Array(JOURNAL_BODY.buffer);

export class Table {
  // What a probe reads comes first, so that it shares the object's first cache lines. Segment 0's
  // views are held directly (nearly every index has one segment): a view in an array costs two
  // more dependent loads, each a likely cache miss with many buckets.
  seedLo = 0;
  seedHi = 0;
  capacity = 0;
  private pagesPerSegment = 1;
  private window = 0;
  private words0: Int32Array = new Int32Array(0);
  private bytes0: Uint8Array = new Uint8Array(0);
  private halves0: Uint16Array = new Uint16Array(0);
  // Where the last failed probe would insert, its distance, and whether a run must shift.
  private insAt = -1;
  private insDist = 0;
  private insShift = false;
  /** Segment, page (byte offset) and slot of insAt, so that an insert locates nothing again. */
  private insSeg = 0;
  private insBase = 0;
  private insSlot = 0;
  /**
   * A position the shifts walk cell by cell: cell, segment, page (byte offset) and slot. shiftEnd
   * leaves it on the free cell that ends the run, where shiftRight starts.
   */
  private walkC = 0;
  private walkSeg = 0;
  private walkBase = 0;
  private walkSlot = 0;
  private tag = 0;
  /** Sink of the early load of a probe's home cell (kept so it is not optimised away). */
  private warm = 0;
  /** Page (byte offset in segment `seg`) and slot of the cell the last probe found. */
  private hitBase = 0;
  private hitSlot = 0;
  /** Segment of the cell last located by pageOffset(). */
  seg = 0;

  readonly maxSearch: number;
  readonly elementSize: number;
  /** The longest slot list the element size allows (maxSlotsFor): a longer slot count is damage. */
  readonly maxSlots: number;
  index!: MappedFile;
  u8: Uint8Array[] = [];
  private u16: Uint16Array[] = [];
  u32: Uint32Array[] = [];
  private i32: Int32Array[] = [];
  readonly data: Array<DataFile | null> = new Array<DataFile | null>(SIZE_CLASSES).fill(null);

  /** Live entries, and occupied cells per data class (kept exact; saved by flush). */
  count = 0;
  readonly dataCount = new Int32Array(SIZE_CLASSES);
  /** Size class whose data file was missing or full, after put() returned DATA_FULL. */
  fullClass = 0;

  /** What the last readCell() found; shared by all tables, so valid until the next call. */
  get out(): ValueRef {
    return OUT;
  }

  private random = 0x9e3779b9;
  private journalSeq = 0;

  constructor(maxSearch: number, elementSize: number, randomSeed = 0x9e3779b9) {
    this.maxSearch = maxSearch;
    this.elementSize = elementSize;
    this.maxSlots = maxSlotsFor(elementSize);
    this.random = randomSeed | 1;
  }

  bindIndex(file: MappedFile, seedLo: number, seedHi: number): void {
    this.index = file;
    this.capacity = file.spec.capacity;
    this.pagesPerSegment = file.recordsPerSegment;
    this.window = Math.min(this.maxSearch, this.capacity);
    this.u8 = file.segments.map((b) => new Uint8Array(b.buffer, b.byteOffset, b.length));
    this.u16 = file.segments.map((b) => new Uint16Array(b.buffer, b.byteOffset, b.length >>> 1));
    this.u32 = file.segments.map((b) => new Uint32Array(b.buffer, b.byteOffset, b.length >>> 2));
    this.i32 = file.segments.map((b) => new Int32Array(b.buffer, b.byteOffset, b.length >>> 2));
    this.words0 = this.i32[0];
    this.bytes0 = this.u8[0];
    this.halves0 = this.u16[0];
    this.seedLo = seedLo | 0;
    this.seedHi = seedHi | 0;
  }

  bindData(sizeClass: number, file: MappedFile | null): void {
    this.data[sizeClass] = file === null ? null : new DataFile(file);
  }

  // ── cell addressing ────────────────────────────────────────────────────────────────────────────

  /** Byte offset of cell `c`'s page within its segment; sets `seg`. */
  private pageOffset(c: number): number {
    const page = (c / CELLS_PER_PAGE) | 0;
    const s = segmentOfPage(page, this.pagesPerSegment);
    this.seg = s;
    return HEADER_BYTES + (page - s * this.pagesPerSegment) * PAGE_BYTES;
  }

  /** Segment `s`'s views (segment 0's without going through the arrays). */
  bytesOf(s: number): Uint8Array {
    return s === 0 ? this.bytes0 : this.u8[s];
  }

  private wordsOf(s: number): Int32Array {
    return s === 0 ? this.words0 : this.i32[s];
  }

  private halvesOf(s: number): Uint16Array {
    return s === 0 ? this.halves0 : this.u16[s];
  }

  ctrl(c: number): number {
    const base = this.pageOffset(c);
    return ctrlIn(this.wordsOf(this.seg), base, c % CELLS_PER_PAGE);
  }

  private setCtrl(c: number, value: number): void {
    const base = this.pageOffset(c);
    this.halvesOf(this.seg)[ctrlHalf(base, c % CELLS_PER_PAGE)] = value;
  }

  /** Byte offset of cell `c` within its segment; sets `seg`. */
  cellOffset(c: number): number {
    return cellByte(this.pageOffset(c), c % CELLS_PER_PAGE);
  }

  cellSegment(c: number): Uint8Array {
    this.pageOffset(c);
    return this.bytesOf(this.seg);
  }

  /** Byte offset (within its segment, which goes to `seg`) of cell `c`'s extra-references byte. */
  extraOffset(c: number): number {
    return extraByte(this.pageOffset(c), c % CELLS_PER_PAGE);
  }

  // ── lookup ─────────────────────────────────────────────────────────────────────────────────────

  /**
   * Finds `key`; returns its cell or -1. On a miss, records where an insert would go
   * (insAt/insDist/insShift, insAt = -1 if the window has no room).
   */
  probe(key: Uint8Array, koff: number): number {
    const lo = hashKeyWords(key, koff, this.seedLo, this.seedHi, KEY_WORDS);
    return this.probeHashed(lo, hashHi >>> 26, KEY_WORDS, 0);
  }

  /**
   * Notes in entry `i` of a batch's prefetch lists where the probe of hash `lo` starts: the word
   * view of its segment, and in it the word holding the home cell's ctrl and the home cell's first
   * word, so that one tight loop can load every key's lines before any probe runs and the misses
   * overlap. The loop also loads the line after the cell (a probe walks 2.4 cells on average), so
   * the cell's word is pulled back where that would leave the segment.
   */
  locateHome(lo: number, i: number, views: Int32Array[], ctrlAt: Int32Array, cellAt: Int32Array): number {
    const c = homeCell(lo, this.capacity);
    const base = this.pageOffset(c);
    const slot = c % CELLS_PER_PAGE;
    const words = this.wordsOf(this.seg);
    views[i] = words;
    ctrlAt[i] = (base >>> 2) + (slot >>> 1);
    cellAt[i] = Math.min(cellByte(base, slot) >>> 2, words.length - PREFETCH_STRIDE - 1);
    return c;
  }

  /** probe() of the key held as eight words at `kw[ko..ko+8)` whose hash is (lo, tag). */
  probeHashed(lo: number, tag: number, kw: Int32Array, ko: number): number {
    return this.probeFrom(homeCell(lo, this.capacity), tag, kw, ko);
  }

  /**
   * probeHashed() from home cell `c` (a batch has it from locateHome). A hit leaves its page and
   * slot for readFound().
   */
  probeFrom(c: number, tag: number, kw: Int32Array, ko: number): number {
    this.tag = tag;
    const capacity = this.capacity;
    const perSegment = this.pagesPerSegment;
    // Walk the window page by page: one division to start, none per cell.
    const page = (c / CELLS_PER_PAGE) | 0;
    let slot = c - page * CELLS_PER_PAGE;
    let seg = segmentOfPage(page, perSegment);
    let pageInSeg = page - seg * perSegment;
    let base = HEADER_BYTES + pageInSeg * PAGE_BYTES;
    let words = this.wordsOf(seg);
    // Start loading the home cell's key now: its line and the ctrl line then miss together.
    this.warm = words[cellByte(base, slot) >>> 2];
    for (let d = 0; d < this.window; d++) {
      const ctl = ctrlIn(words, base, slot);
      const cd = ctl & 0xff;
      if (cd === 0 || cd - 1 < d) {
        this.insAt = c;
        this.insDist = d;
        this.insShift = cd !== 0;
        this.insSeg = seg;
        this.insBase = base;
        this.insSlot = slot;
        return -1;
      }
      if (((ctl >>> 8) & 63) === tag) {
        const w = cellByte(base, slot) >>> 2;
        if (words[w] === kw[ko] && words[w + 1] === kw[ko + 1] && words[w + 2] === kw[ko + 2] && words[w + 3] === kw[ko + 3] &&
          words[w + 4] === kw[ko + 4] && words[w + 5] === kw[ko + 5] && words[w + 6] === kw[ko + 6] && words[w + 7] === kw[ko + 7]) {
          this.seg = seg;
          this.hitBase = base;
          this.hitSlot = slot;
          return c;
        }
      }
      c++;
      slot++;
      if (c === capacity) {
        c = 0;
        slot = 0;
        seg = 0;
        pageInSeg = 0;
        base = HEADER_BYTES;
        words = this.words0;
      } else if (slot === CELLS_PER_PAGE) {
        slot = 0;
        base += PAGE_BYTES;
        if (++pageInSeg === perSegment) {
          seg++;
          pageInSeg = 0;
          base = HEADER_BYTES;
          words = this.i32[seg];
        }
      }
    }
    this.insAt = -1;
    return -1;
  }

  /** Reads the value of the key into `out`; false if absent. */
  read(key: Uint8Array, koff = 0): boolean {
    const c = this.probe(key, koff);
    if (c < 0) return false;
    this.readFound(c);
    return true;
  }

  /** Fills `out` from live cell `c`; a damaged cell is CORRUPT (nothing garbage is returned). */
  readCell(c: number): void {
    const slot = c % CELLS_PER_PAGE;
    this.readAt(c, this.pageOffset(c), slot);
  }

  /** readCell() of the cell the last probe found, without locating its page again. */
  readFound(c: number): void {
    this.readAt(c, this.hitBase, this.hitSlot);
  }

  /** readCell() of cell `c`, at `slot` of the page at byte `base` of segment `this.seg`. */
  private readAt(c: number, base: number, slot: number): void {
    const out = OUT;
    const kind = ctrlIn(this.wordsOf(this.seg), base, slot) >>> CTRL_KIND_SHIFT;
    const off = cellByte(base, slot) + 32;
    const bytes = this.bytesOf(this.seg);
    out.kind = kind;
    if (kind === KIND_INLINE) {
      // Elements over 16 bytes never go inline: read from here, one would take the bytes after the cell.
      if (this.elementSize > MAX_INLINE_ELEMENT) throw this.damaged(c, `is inline, but elements of ${this.elementSize} bytes are never stored inline`);
      out.refCount = 1 + bytes[extraByte(base, slot)];
      out.slots = 1;
      out.buf = bytes;
      out.words = this.wordsOf(this.seg);
      out.off = off;
    } else if (kind === KIND_ZERO) {
      const words = this.wordsOf(this.seg);
      const hi = words[(off >>> 2) + 1] >>> 0;
      if (hi >= MAX_REFCOUNT_HI) throw this.damaged(c, 'has a refCount above 2^53 - 1');
      out.refCount = (words[off >>> 2] >>> 0) + hi * TWO_32;
      out.slots = 0;
      out.buf = bytes;
      out.words = words;
      out.off = off;
    } else if (kind === KIND_DATA) {
      const slots = this.wordsOf(this.seg)[(off >>> 2) + 2] >>> 0;
      const cell = this.dataRefAt(c, bytes, off);
      if (slots === 0 || slots > 2 ** this.refClass || slots > this.maxSlots) {
        throw this.damaged(c, `holds ${slots} elements in size class ${this.refClass} (at most ${Math.min(2 ** this.refClass, this.maxSlots)})`);
      }
      const data = this.data[this.refClass] as DataFile;
      const s = data.segmentOf(cell);
      const at = data.offsetOf(cell, s);
      const dw = data.u32[s];
      const hi = dw[(at >>> 2) + 1] & 0xffffff;
      if (hi >= MAX_REFCOUNT_HI) throw this.damaged(c, `points at a data cell of class ${this.refClass} whose refCount is above 2^53 - 1`);
      out.refCount = dw[at >>> 2] + hi * TWO_32;
      out.slots = slots;
      out.buf = data.u8[s];
      out.words = data.i32[s];
      out.off = at + DATA_HEADER_BYTES;
    } else {
      throw this.damaged(c, 'is live but has no kind');
    }
  }

  damaged(c: number, problem: string): Error {
    return corrupt(this.index.segmentPaths[(((c / CELLS_PER_PAGE) | 0) / this.pagesPerSegment) | 0], `index cell ${c} ${problem}`);
  }

  // ── writes ─────────────────────────────────────────────────────────────────────────────────────

  /**
   * Upsert of `slots` elements (bytes at list[loff..loff+slots*elementSize)) with `refCount`. One
   * attempt: on INDEX_FULL / DATA_FULL nothing has been written.
   */
  put(key: Uint8Array, koff: number, list: Uint8Array, loff: number, slots: number, refCount: number): number {
    const lo = hashKeyWords(key, koff, this.seedLo, this.seedHi, KEY_WORDS);
    return this.putHashed(lo, hashHi >>> 26, KEY_WORDS, 0, list, loff, slots, refCount);
  }

  /** put() of a key whose hash is (lo, tag) and whose words are at kw[ko..ko+8). */
  putHashed(lo: number, tag: number, kw: Int32Array, ko: number, list: Uint8Array, loff: number, slots: number, refCount: number): number {
    const inline = slots === 1 && this.elementSize <= MAX_INLINE_ELEMENT && refCount >= 1 && refCount <= MAX_INLINE_REFCOUNT;
    const needsData = slots > 1 || (slots === 1 && !inline);
    const kind = slots === 0 ? KIND_ZERO : needsData ? KIND_DATA : KIND_INLINE;
    const sizeClass = needsData ? sizeClassOf(slots) : 0;
    if (needsData && this.data[sizeClass] === null) {
      this.fullClass = sizeClass;
      return DATA_FULL;
    }
    const found = this.probeHashed(lo, tag, kw, ko);
    if (found >= 0) return this.update(found, kind, sizeClass, list, loff, slots, refCount);

    if (this.insAt < 0 || (this.count + 1) * LOAD_MAX_D > this.capacity * LOAD_MAX_N) return INDEX_FULL;
    const at = this.insAt;
    const dist = this.insDist;
    let end = -1;
    if (this.insShift) {
      end = this.shiftEnd(at);
      if (end < 0) return INDEX_FULL;
    }
    let dataCell = -1;
    if (needsData) {
      dataCell = this.allocData(sizeClass);
      if (dataCell < 0) {
        this.fullClass = sizeClass;
        return DATA_FULL;
      }
      this.writeData(sizeClass, dataCell, list, loff, slots, refCount);
    }
    if (end >= 0) this.shiftRight(at, end);
    this.buildValue(kind, sizeClass, dataCell, list, loff, slots, refCount);
    // Twelve word stores (the key's words are in kw already) instead of 32 byte stores and a set():
    // the cell's line is usually not in cache yet, and fewer stores wait less for it.
    const s = this.insSeg;
    const base = this.insBase;
    const slot = this.insSlot;
    const words = this.wordsOf(s);
    const w = cellByte(base, slot) >>> 2;
    for (let i = 0; i < 8; i++) words[w + i] = kw[ko + i];
    const v = VALUE_WORDS;
    words[w + 8] = v[0];
    words[w + 9] = v[1];
    words[w + 10] = v[2];
    words[w + 11] = v[3];
    this.publishAt(s, base, slot, inline ? refCount - 1 : 0, (dist + 1) | (this.tag << 8) | (kind << CTRL_KIND_SHIFT));
    this.count++;
    return PUT_NEW;
  }

  private update(c: number, kind: number, sizeClass: number, list: Uint8Array, loff: number, slots: number, refCount: number): number {
    const oldCtrl = this.ctrl(c);
    const oldKind = oldCtrl >>> CTRL_KIND_SHIFT;
    // The old value is checked before anything is written.
    let oldData = -1;
    let oldClass = 0;
    if (oldKind === KIND_DATA) {
      const at = this.cellOffset(c) + 32;
      oldData = this.dataRefAt(c, this.bytesOf(this.seg), at);
      oldClass = this.refClass;
    } else if (oldKind === 0) {
      throw this.damaged(c, 'is live but has no kind');
    }
    let dataCell = -1;
    if (kind === KIND_DATA) {
      dataCell = this.allocData(sizeClass);
      if (dataCell < 0) {
        this.fullClass = sizeClass;
        return DATA_FULL;
      }
      this.writeData(sizeClass, dataCell, list, loff, slots, refCount);
    }
    this.buildValue(kind, sizeClass, dataCell, list, loff, slots, refCount);
    const newCtrl = (oldCtrl & 0x3fff) | (kind << CTRL_KIND_SHIFT);
    const extra = kind === KIND_INLINE ? refCount - 1 : 0;
    const off = this.cellOffset(c) + 32;
    const bytes = this.bytesOf(this.seg);
    if (newCtrl === oldCtrl && kind !== KIND_DATA) {
      let same = true;
      for (let i = 0; i < 16; i++) if (bytes[off + i] !== VALUE[i]) same = false;
      if (same) {
        // Only the refCount of an inline entry changes: one byte, one store, no journal.
        const at = this.extraOffset(c);
        if (bytes[at] !== extra) bytes[at] = extra;
        return PUT_UPDATED;
      }
    }
    this.journaledUpdate(c, newCtrl, extra);
    if (oldData >= 0) this.freeData(oldClass, oldData);
    return PUT_UPDATED;
  }

  /**
   * Adds `delta` to the refCount of an INLINE entry in place (one byte, one store): returns the
   * new refCount, -1 if the key is absent, or -2 if the entry is not inline or the result leaves
   * 1..256 (the caller then rewrites the entry).
   */
  adjustRef(key: Uint8Array, koff: number, delta: number): number {
    return this.adjustFound(this.probe(key, koff), delta);
  }

  /** adjustRef() of the key held as eight words at `kw[ko..ko+8)` whose hash has tag `tag` and home cell `home`. */
  adjustFrom(home: number, tag: number, kw: Int32Array, ko: number, delta: number): number {
    return this.adjustFound(this.probeFrom(home, tag, kw, ko), delta);
  }

  /** adjustRef() of the cell `c` the last probe found (-1: it missed). */
  private adjustFound(c: number, delta: number): number {
    if (c < 0) return -1;
    // The probe left the hit's page and slot: no need to locate the cell again.
    const base = this.hitBase;
    const slot = this.hitSlot;
    // A damaged INLINE cell (elements over 16 bytes) goes to the caller's rewrite, whose read reports it.
    if (ctrlIn(this.wordsOf(this.seg), base, slot) >>> CTRL_KIND_SHIFT !== KIND_INLINE || this.elementSize > MAX_INLINE_ELEMENT) return -2;
    const at = extraByte(base, slot);
    const bytes = this.bytesOf(this.seg);
    const rc = 1 + bytes[at] + delta;
    if (rc < 1 || rc > MAX_INLINE_REFCOUNT) return -2;
    bytes[at] = rc - 1;
    return rc;
  }

  /** Deletes `key`; false if it was absent. */
  remove(key: Uint8Array, koff = 0): boolean {
    return this.removeFound(this.probe(key, koff));
  }

  /** remove() of the key held as eight words at `kw[ko..ko+8)` whose hash has tag `tag` and home cell `home`. */
  removeFrom(home: number, tag: number, kw: Int32Array, ko: number): boolean {
    return this.removeFound(this.probeFrom(home, tag, kw, ko));
  }

  /** Deletes the live cell `c` the last probe found, at the page and slot it left (false if c < 0: the probe missed). */
  private removeFound(c: number): boolean {
    if (c < 0) return false;
    const s = this.seg;
    const base = this.hitBase;
    const slot = this.hitSlot;
    const kind = ctrlIn(this.wordsOf(s), base, slot) >>> CTRL_KIND_SHIFT;
    let oldData = -1;
    let oldClass = 0;
    if (kind === KIND_DATA) {
      oldData = this.dataRefAt(c, this.bytesOf(s), cellByte(base, slot) + 32);
      oldClass = this.refClass;
    } else if (kind === 0) {
      throw this.damaged(c, 'is live but has no kind');
    }
    // A live cell in a bucket counted empty: the counts are damaged, and the count would go below zero.
    if (this.count === 0) throw this.damaged(c, 'is live in a bucket whose count is 0');
    this.halvesOf(s)[ctrlHalf(base, slot)] = 0;
    this.shiftLeft(c, s, base, slot);
    this.count--;
    if (oldData >= 0) this.freeData(oldClass, oldData);
    return true;
  }

  /** Steps the walk position to the next cell, dividing only when it enters another page. */
  private stepForward(): void {
    const c = this.walkC + 1;
    if (++this.walkSlot === CELLS_PER_PAGE || c === this.capacity) {
      this.walkC = c === this.capacity ? 0 : c;
      this.walkSlot = 0;
      this.walkBase = this.pageOffset(this.walkC);
      this.walkSeg = this.seg;
    } else {
      this.walkC = c;
    }
  }

  /**
   * The first free cell of the run starting at insAt (`from`), or -1 if shifting it would push a
   * resident out of its window. Walks from the position the probe left, and leaves the walk on the
   * free cell for shiftRight.
   */
  private shiftEnd(from: number): number {
    const window = this.window;
    this.walkC = from;
    this.walkSeg = this.insSeg;
    this.walkBase = this.insBase;
    this.walkSlot = this.insSlot;
    for (let n = 0; n < this.capacity; n++) {
      const cd = ctrlIn(this.wordsOf(this.walkSeg), this.walkBase, this.walkSlot) & 0xff;
      if (cd === 0) return this.walkC;
      if (cd >= window) return -1;
      this.stepForward();
    }
    return -1;
  }

  /**
   * Moves cells [from, end) one to the right, last first, so every key stays reachable. Walks
   * back from the free cell shiftEnd left the walk on, dividing only when it enters another page.
   */
  private shiftRight(from: number, end: number): void {
    let j = end;
    let s = this.walkSeg;
    let b = this.walkBase;
    let sl = this.walkSlot;
    while (j !== from) {
      const p = j === 0 ? this.capacity - 1 : j - 1;
      let ps = s;
      let pb = b;
      let psl = sl - 1;
      if (psl < 0) {
        pb = this.pageOffset(p);
        ps = this.seg;
        psl = p % CELLS_PER_PAGE;
      }
      this.moveBetween(ps, pb, psl, s, b, sl, ctrlIn(this.wordsOf(ps), pb, psl) + 1);
      j = p;
      s = ps;
      b = pb;
      sl = psl;
    }
  }

  /**
   * Makes the cell at `slot` of the page at byte `base` of segment `s`, its content already
   * written, live: its extra byte, then its ctrl word last, so that a crash before the ctrl store
   * leaves a free cell whose content nothing reads.
   */
  private publishAt(s: number, base: number, slot: number, extra: number, ctrl: number): void {
    this.bytesOf(s)[extraByte(base, slot)] = extra;
    this.halvesOf(s)[ctrlHalf(base, slot)] = ctrl;
  }

  /**
   * Moves the live cell at slot `fslot` of the page at byte `fbase` of segment `fs` into the free
   * cell at `tslot` of `tbase` in `ts`, with ctrl `ctrl`: content and extra byte first, then the
   * destination becomes live, then the source is freed (a crash in between leaves a duplicate,
   * never a torn cell). Callers walk runs page by page and pass positions, not cell numbers.
   */
  private moveBetween(fs: number, fbase: number, fslot: number, ts: number, tbase: number, tslot: number, ctrl: number): void {
    const fw = this.wordsOf(fs);
    const tw = this.wordsOf(ts);
    const fc = cellByte(fbase, fslot) >>> 2;
    const tc = cellByte(tbase, tslot) >>> 2;
    for (let i = 0; i < CELL_BYTES / 4; i++) tw[tc + i] = fw[fc + i];
    this.publishAt(ts, tbase, tslot, this.bytesOf(fs)[extraByte(fbase, fslot)], ctrl);
    this.halvesOf(fs)[ctrlHalf(fbase, fslot)] = 0;
  }

  /**
   * Backward shift after freeing cell `hole` (at `slot` of the page at byte `base` of segment
   * `seg`): pulls the rest of the run one cell closer to home, walking it as shiftEnd does.
   */
  private shiftLeft(hole: number, seg: number, base: number, slot: number): void {
    this.walkC = hole;
    this.walkSeg = seg;
    this.walkBase = base;
    this.walkSlot = slot;
    for (let n = 0; n < this.capacity; n++) {
      const hs = this.walkSeg;
      const hb = this.walkBase;
      const hsl = this.walkSlot;
      this.stepForward();
      const ctl = ctrlIn(this.wordsOf(this.walkSeg), this.walkBase, this.walkSlot);
      if ((ctl & 0xff) <= 1) return;
      this.moveBetween(this.walkSeg, this.walkBase, this.walkSlot, hs, hb, hsl, ctl - 1);
    }
  }

  /** The 16-byte value of a cell into `VALUE`. */
  private buildValue(kind: number, sizeClass: number, dataCell: number, list: Uint8Array, loff: number, slots: number, refCount: number): void {
    const v = VALUE;
    const w = VALUE_WORDS;
    w[0] = 0; w[1] = 0; w[2] = 0; w[3] = 0;
    if (kind === KIND_INLINE) {
      for (let i = 0; i < this.elementSize; i++) v[i] = list[loff + i];
    } else if (kind === KIND_ZERO) {
      w[0] = refCount >>> 0;
      w[1] = Math.floor(refCount / TWO_32);
    } else {
      const data = this.data[sizeClass] as DataFile;
      w[0] = dataCell;
      v[4] = data.pow2;
      v[5] = sizeClass;
      w[2] = slots;
    }
  }

  /** Writes `VALUE`, `ctrl` and the extra byte into live cell `c` through the journal. */
  private journaledUpdate(c: number, ctrl: number, extra: number): void {
    const head = this.u8[0];
    const head32 = this.u32[0];
    const body = JOURNAL_BODY;
    const body32 = JOURNAL_BODY_WORDS;
    body32[0] = c;
    body32[1] = ctrl;
    body.set(VALUE, 8);
    // Never 0 (nor 2^32, stored as 0): a commit word of 0 means no record, so one numbered 0 would never be in force.
    this.journalSeq = this.journalSeq >= 0xffffffff ? 1 : this.journalSeq + 1;
    body32[6] = this.journalSeq;
    body32[7] = extra;
    head.set(body, J_BODY);
    head32[J_CHECK >>> 2] = hashKey(body, 0, JOURNAL_SEED_LO, JOURNAL_SEED_HI);
    head32[J_COMMIT >>> 2] = this.journalSeq;
    const off = this.cellOffset(c) + 32;
    this.bytesOf(this.seg).set(VALUE, off);
    this.bytesOf(this.seg)[this.extraOffset(c)] = extra;
    this.setCtrl(c, ctrl);
    head32[J_COMMIT >>> 2] = 0;
  }

  // ── resize ─────────────────────────────────────────────────────────────────────────────────────

  /**
   * Inserts every live cell of `src` into this table, which is bound to a fresh file with the same
   * seed. A key seen twice (a move cut short by a crash) is kept once. Returns false if some key
   * found no room, in which case the caller discards this file and tries a larger one.
   */
  rehashFrom(src: Table): boolean {
    for (let c = 0; c < src.capacity; c++) {
      const ctl = src.ctrl(c);
      if ((ctl & 0xff) === 0) continue;
      if (ctl >>> CTRL_KIND_SHIFT === 0) throw src.damaged(c, 'is live but has no kind');
      const off = src.cellOffset(c);
      const from = src.u32[src.seg];
      const fromBytes = src.u8[src.seg];
      if (this.probe(fromBytes, off) >= 0) continue;
      const at = this.insAt;
      if (at < 0) return false;
      if (this.insShift) {
        const end = this.shiftEnd(at);
        if (end < 0) return false;
        this.shiftRight(at, end);
      }
      const extra = src.u8[src.seg][src.extraOffset(c)];
      const s = this.insSeg;
      const base = this.insBase;
      const slot = this.insSlot;
      const to = cellByte(base, slot) >>> 2;
      const words = this.u32[s];
      for (let i = 0; i < CELL_BYTES / 4; i++) words[to + i] = from[(off >>> 2) + i];
      this.publishAt(s, base, slot, extra, (this.insDist + 1) | (this.tag << 8) | (ctl & 0xc000));
      this.count++;
    }
    for (let k = 0; k < SIZE_CLASSES; k++) this.dataCount[k] = src.dataCount[k];
    return true;
  }

  /** Copies every occupied cell j of this table's data class to cell j·2^Δ of `target` (a fresh, larger file). */
  copyDataInto(sizeClass: number, target: DataFile): void {
    const src = this.data[sizeClass] as DataFile;
    const shift = target.pow2 - src.pow2;
    for (let k = 0; k < src.capacity; k++) {
      if (src.isOccupied(k)) src.copyCell(k, target, k * 2 ** shift);
    }
  }

  /**
   * Copies the list of every DATA entry of `sizeClass` into `target` (a fresh file, smaller than
   * the class's current one) and points the entry there: the n-th of `entries` goes to cell
   * ⌊n · capacity / entries⌋, so free cells stay spread for allocData's bounded search. The index
   * cells are written in place, without the journal: only for an index no engine uses yet (one
   * that compaction is building). With `target` null (a class whose file goes) it only checks that
   * no entry is left in the class.
   */
  relocateData(sizeClass: number, target: DataFile | null, entries: number): void {
    const src = this.data[sizeClass] as DataFile;
    let n = 0;
    for (let c = 0; c < this.capacity; c++) {
      const ctl = this.ctrl(c);
      if ((ctl & 0xff) === 0 || ctl >>> CTRL_KIND_SHIFT !== KIND_DATA) continue;
      const off = this.cellOffset(c) + 32;
      const bytes = this.bytesOf(this.seg);
      if (bytes[off + 5] !== sizeClass) continue;
      const from = this.dataRefAt(c, bytes, off);
      if (n === entries || target === null) throw this.damaged(c, `is one more entry of data class ${sizeClass} than the ${entries} counted`);
      const cell = Math.floor((n++ * target.capacity) / entries);
      src.copyCell(from, target, cell);
      bytes[off] = cell;
      bytes[off + 1] = cell >>> 8;
      bytes[off + 2] = cell >>> 16;
      bytes[off + 3] = cell >>> 24;
      bytes[off + 4] = target.pow2;
    }
  }

  // ── scanning ───────────────────────────────────────────────────────────────────────────────────

  isLive(c: number): boolean {
    return (this.ctrl(c) & 0xff) !== 0;
  }

  /** Copies the key of cell `c` into `out[outOff..outOff+32)`. */
  copyKey(c: number, out: Uint8Array, outOff: number): void {
    const off = this.cellOffset(c);
    const bytes = this.bytesOf(this.seg);
    for (let i = 0; i < 32; i++) out[outOff + i] = bytes[off + i];
  }

  /** Where the DATA value of live cell `c` points: [sizeClass, current cell], or null for other kinds. */
  dataRef(c: number): [number, number] | null {
    if (this.ctrl(c) >>> CTRL_KIND_SHIFT !== KIND_DATA) return null;
    const off = this.cellOffset(c) + 32;
    const cell = this.dataRefAt(c, this.bytesOf(this.seg), off);
    return [this.refClass, cell];
  }

  /**
   * Re-applies a committed journal record (the process died between its commit and its clear).
   * The record is redo-only, so applying it twice is harmless.
   */
  replayJournal(): 'none' | 'applied' | 'invalid' {
    const head32 = this.u32[0];
    if (head32[J_COMMIT >>> 2] === 0) return 'none';
    const body = this.u8[0].slice(J_BODY, J_BODY + 32);
    if ((hashKey(body, 0, JOURNAL_SEED_LO, JOURNAL_SEED_HI) >>> 0) !== head32[J_CHECK >>> 2]) return 'invalid';
    const words = new Uint32Array(body.buffer);
    const cell = words[0];
    const ctrl = words[1];
    const extra = words[7];
    if (cell >= this.capacity || ctrl > 0xffff || (ctrl & 0xff) === 0 || ctrl >>> CTRL_KIND_SHIFT === 0 || extra > 255) return 'invalid';
    this.cellSegment(cell).set(body.subarray(8, 24), this.cellOffset(cell) + 32);
    this.bytesOf(this.seg)[this.extraOffset(cell)] = extra;
    this.setCtrl(cell, ctrl);
    head32[J_COMMIT >>> 2] = 0;
    return 'applied';
  }

  // ── data cells ─────────────────────────────────────────────────────────────────────────────────

  /** Size class of the last reference dataRefAt checked. */
  private refClass = 0;

  /**
   * The current data cell of the DATA value at `off` of cell `c` (files double; cell j moved to
   * j·2^Δ), after checking that it names an existing, occupied cell; sets refClass.
   */
  private dataRefAt(c: number, bytes: Uint8Array, off: number): number {
    const created = (bytes[off] | (bytes[off + 1] << 8) | (bytes[off + 2] << 16) | (bytes[off + 3] << 24)) >>> 0;
    const createdPow2 = bytes[off + 4];
    const sizeClass = bytes[off + 5];
    const data = sizeClass < SIZE_CLASSES ? this.data[sizeClass] : null;
    if (data === null) throw this.damaged(c, `points into data class ${sizeClass}, which has no file`);
    if (createdPow2 > data.pow2) throw this.damaged(c, `points into a data file larger than class ${sizeClass} has`);
    const cell = created * 2 ** (data.pow2 - createdPow2);
    if (cell >= data.capacity) throw this.damaged(c, `points past the end of data class ${sizeClass}`);
    if (!data.isOccupied(cell)) throw this.damaged(c, `points at a free cell of data class ${sizeClass}`);
    this.refClass = sizeClass;
    return cell;
  }

  private nextRandom(): number {
    let x = this.random;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.random = x;
    return x >>> 0;
  }

  /** A free cell of the class (searched from a random start), or -1 when the file should grow. */
  allocData(sizeClass: number): number {
    const data = this.data[sizeClass] as DataFile;
    const cap = data.capacity;
    if ((this.dataCount[sizeClass] + 1) * LOAD_MAX_D > cap * LOAD_MAX_N) return -1;
    const limit = Math.min(cap, this.maxSearch * DATA_SEARCH_FACTOR);
    let cell = this.nextRandom() & (cap - 1);
    for (let i = 0; i < limit; i++) {
      if (!data.isOccupied(cell)) return cell;
      cell = cell + 1 === cap ? 0 : cell + 1;
    }
    return -1;
  }

  private writeData(sizeClass: number, cell: number, list: Uint8Array, loff: number, slots: number, refCount: number): void {
    const data = this.data[sizeClass] as DataFile;
    const s = data.segmentOf(cell);
    const at = data.offsetOf(cell, s);
    const bytes = data.u8[s];
    const n = slots * this.elementSize;
    for (let i = 0; i < n; i++) bytes[at + DATA_HEADER_BYTES + i] = list[loff + i];
    const words = data.u32[s];
    words[at >>> 2] = refCount >>> 0;
    words[(at >>> 2) + 1] = Math.floor(refCount / TWO_32) | (DATA_OCCUPIED << 24);
    this.dataCount[sizeClass]++;
  }

  private freeData(sizeClass: number, cell: number): void {
    const data = this.data[sizeClass] as DataFile;
    const s = data.segmentOf(cell);
    data.u8[s][data.offsetOf(cell, s) + DATA_FLAGS_OFFSET] = 0;
    this.dataCount[sizeClass]--;
  }
}
