/**
 * The wasm engine: the AssemblyScript core (build/core.wasm) driven from the host.
 *
 * The core cannot map files (wasm memory cannot be backed by a file), so the host shuttles pages:
 * it gives every mapped segment file an id, copies 1 KiB pages into the core's cache when the
 * core asks (`fetchPage`), writes dirty pages back (`writePages`), and applies the core's ordered
 * write log to the mappings (`applyLog`, `writeRange`). The module is compiled once per process
 * and instantiated synchronously, so opening a map needs no `await`.
 */
import * as fs from 'node:fs';
import { instantiateSync } from '@assemblyscript/loader';
import { BATCH, type BatchBuffers, type BucketFiles, type Engine, type EngineStats } from './engine.js';
import { BucketMapError, codes, corrupt } from './errors.js';
import { CELL_BYTES, CELLS_PER_PAGE, MAX_LIST_BYTES, PAGE_BYTES, SIZE_CLASSES, cellByte, ctrlHalf, extraByte } from './layout.js';
import type { MappedFile } from './storage.js';
import type { ValueRef } from './table.js';

export const DEFAULT_CACHE_BYTES = 64 * 1024 * 1024;
export const MIN_CACHE_BYTES = 64 * 1024;
/** The core allocates the cache's pages as one block, and the runtime's largest block is just under 1 GiB. */
export const MAX_CACHE_BYTES = 512 * 1024 * 1024;

const DESC_BYTES = 320;
const D_INDEX_FID = 0;
const D_PAGES = 4;
const D_PAGES_PER_SEG = 8;
const D_CAPACITY = 12;
const D_SEED_LO = 16;
const D_SEED_HI = 20;
const D_COUNT = 24;
const D_DATA = 32;
const OUT_KIND = 0;
const OUT_RC_LO = 4;
const OUT_RC_HI = 8;
const OUT_SLOTS = 12;
const OUT_FULL_CLASS = 16;
const OUT_ELEMENTS = 32;
const FOUND_CORRUPT = 2;
const PUT_CORRUPT = 4;
const TWO_32 = 0x100000000;
/** The write log's move record: its mark in the length field and its size (assembly/page_cache.ts logMove). */
const LOG_MOVE = 0xffffffff;
const LOG_MOVE_BYTES = 24;

/** @internal The size of the write-log record at byte `at` of `words`' memory (tests apply a log record by record). */
export function logRecordBytes(words: Uint32Array, at: number): number {
  const length = words[(at >>> 2) + 2];
  return length === LOG_MOVE ? LOG_MOVE_BYTES : 12 + ((length + 3) & ~3);
}

interface CoreExports {
  memory: WebAssembly.Memory;
  init(maxBuckets: number, maxSearch: number, elementSize: number, cacheSets: number, randomSeed: number): void;
  layout(which: number): number;
  layoutValue(which: number): number;
  get(ix: number): number;
  put(ix: number, slots: number, rcLo: number, rcHi: number): number;
  remove(ix: number): number;
  adjustRef(ix: number, delta: number): number;
  rehash(ix: number, fid: number, pages: number, pagesPerSeg: number, seedLo: number, seedHi: number): number;
  copyData(ix: number, sizeClass: number, fid: number, pow2: number, cellsPerSeg: number): void;
  getMany(start: number, n: number, withValues: number): number;
  putMany(start: number, n: number): number;
  removeMany(n: number): number;
  adjustMany(start: number, n: number, delta: number): number;
  flush(): void;
  invalidate(fidFrom: number, fidTo: number): void;
  recover(): void;
}

let compiled: WebAssembly.Module | null = null;

function coreModule(): WebAssembly.Module {
  if (compiled === null) {
    const url = new URL('../core.wasm', import.meta.url);
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(url);
    } catch (err) {
      throw new BucketMapError(codes.IO, `cannot load the wasm core (${url.pathname}); run npm run build`, { cause: err });
    }
    compiled = new WebAssembly.Module(bytes);
  }
  return compiled;
}

export interface WasmEngineOptions {
  maxBuckets: number;
  maxSearch: number;
  elementSize: number;
  cacheBytes: number;
}

/** Sets of 4 pages that fit `cacheBytes` (a power of two, at least 1). */
export function cacheSetsFor(cacheBytes: number): number {
  const sets = Math.max(1, Math.floor(cacheBytes / PAGE_BYTES / 4));
  return 2 ** Math.floor(Math.log2(sets));
}

export class WasmEngine implements Engine {
  readonly kind = 'wasm' as const;
  readonly input: Uint8Array;
  private readonly core: CoreExports;
  private readonly mem: Buffer;
  private readonly u8: Uint8Array;
  private readonly u16: Uint16Array;
  private readonly u32: Uint32Array;
  private readonly keyAt: number;
  private readonly outAt: number;
  private readonly descAt: number;
  private readonly stats64: Float64Array;
  readonly batch: BatchBuffers;
  private readonly ref: ValueRef;
  /** Mapped segment Buffers by file id, with 16- and 32-bit views for single-store writes. */
  private files: Array<Buffer | undefined> = [undefined];
  private files16: Array<Uint16Array | undefined> = [undefined];
  private files32: Array<Uint32Array | undefined> = [undefined];
  /** First file id and segment count of each registered file (its segments may be released first). */
  private readonly fidOf = new Map<MappedFile, { first: number; count: number }>();
  /** Files bound to each bucket, to release the ids of files a bucket no longer uses. */
  private readonly bound: Array<MappedFile[] | undefined>;
  /**
   * Set while a call into the core is under way, and left set by one that threw part way (a stack
   * overflow in a callback, as in a map used from deep recursion) until the core has recovered:
   * its cache may then hold slots tagged for pages never copied in, and its log records the files
   * lack. Every call into the core recovers first.
   */
  private stopped = false;
  /** How far into the log the last applyLog got before it threw (0 when it finished): it resumes there. */
  private logDone = 0;

  constructor(options: WasmEngineOptions) {
    const imports = {
      host: {
        fetchPage: (fid: number, page: number, dst: number): void => this.fetchPage(fid, page, dst),
        fetchPages: (list: number, count: number): void => this.fetchPages(list, count),
        writePages: (list: number, count: number): void => this.writePages(list, count),
        applyLog: (log: number, bytes: number): void => this.applyLog(log, bytes),
        writeRange: (fid: number, offset: number, src: number, length: number): void => this.writeRange(fid, offset, src, length),
      },
    };
    const { instance } = instantiateSync(coreModule(), imports);
    this.core = instance.exports as unknown as CoreExports;
    this.core.init(options.maxBuckets, options.maxSearch, options.elementSize, cacheSetsFor(options.cacheBytes), (Math.random() * 0xffffffff) >>> 0);
    // Memory never grows after init, so these views stay valid.
    const buffer = this.core.memory.buffer;
    this.mem = Buffer.from(buffer);
    this.u8 = new Uint8Array(buffer);
    this.u16 = new Uint16Array(buffer);
    this.u32 = new Uint32Array(buffer);
    this.keyAt = this.core.layout(0);
    this.input = new Uint8Array(buffer, this.core.layout(1), MAX_LIST_BYTES);
    this.outAt = this.core.layout(2);
    this.descAt = this.core.layout(3);
    this.stats64 = new Float64Array(buffer, this.core.layout(4), 5);
    this.ref = { kind: 0, refCount: 0, slots: 0, buf: this.u8, words: new Int32Array(buffer), off: this.outAt + OUT_ELEMENTS };
    if (this.core.layoutValue(18) !== BATCH) throw new Error('the wasm core was built with another batch size');
    const at = (which: number): number => this.core.layout(which);
    this.batch = {
      keys: new Uint8Array(buffer, at(5), BATCH * 32), buckets: new Uint32Array(buffer, at(6), BATCH),
      slots: new Uint32Array(buffer, at(7), BATCH), refCounts: new Float64Array(buffer, at(8), BATCH),
      listAt: new Uint32Array(buffer, at(9), BATCH), lists: new Uint8Array(buffer, at(10), MAX_LIST_BYTES),
      status: new Uint32Array(buffer, at(11), BATCH), outRefCounts: new Float64Array(buffer, at(12), BATCH),
      outSlots: new Uint32Array(buffer, at(13), BATCH), dataAt: new Uint32Array(buffer, at(14), BATCH),
      data: new Uint8Array(buffer, at(15), MAX_LIST_BYTES), dataWords: new Int32Array(buffer, at(15), MAX_LIST_BYTES >>> 2),
    };
    this.bound = new Array<MappedFile[] | undefined>(options.maxBuckets);
  }

  /** A number compiled into the core (tests compare them with host/layout.ts). */
  layoutValue(which: number): number {
    return this.core.layoutValue(which) >>> 0;
  }

  get fullClass(): number {
    return this.u32[(this.outAt + OUT_FULL_CLASS) >>> 2];
  }

  // ── host side of the shuttle ───────────────────────────────────────────────────────────────────

  private fetchPage(fid: number, page: number, dst: number): void {
    const file = this.files[fid];
    if (file === undefined) throw new Error(`bucket-map core asked for page ${page} of unknown file ${fid}`);
    const off = page * PAGE_BYTES;
    file.copy(this.mem, dst, off, off + PAGE_BYTES);
  }

  /** Copies in every page of a batch's list of [fid, page, dst] in one call from the core. */
  private fetchPages(list: number, count: number): void {
    const words = this.u32;
    for (let i = 0; i < count; i++) {
      const w = (list >>> 2) + 3 * i;
      const file = this.files[words[w]];
      if (file === undefined) throw new Error(`bucket-map core asked for a page of unknown file ${words[w]}`);
      const off = words[w + 1] * PAGE_BYTES;
      file.copy(this.mem, words[w + 2], off, off + PAGE_BYTES);
    }
  }

  private writePages(list: number, count: number): void {
    const words = this.u32;
    for (let i = 0; i < count; i++) {
      const w = (list >>> 2) + 3 * i;
      const file = this.files[words[w]];
      // A file discarded after a failed resize may still have dirty pages; they are dropped.
      if (file === undefined) continue;
      const src = words[w + 2];
      this.mem.copy(file, words[w + 1] * PAGE_BYTES, src, src + PAGE_BYTES);
    }
  }

  private applyLog(log: number, bytes: number): void {
    const words = this.u32;
    const u8 = this.u8;
    // Applied again from the start, a move record would copy a cell that a later record has
    // moved since; a record stopped part way is one whose stores may run again.
    let p = log + this.logDone;
    const end = log + bytes;
    while (p < end) {
      this.logDone = p - log;
      const w = p >>> 2;
      const fid = words[w];
      const off = words[w + 1];
      const length = words[w + 2];
      const src = p + 12;
      const file = this.files[fid];
      if (length === LOG_MOVE) {
        if (file !== undefined) this.applyMove(fid, off, words[w + 3], words[w + 4], words[w + 5]);
        p += LOG_MOVE_BYTES;
        continue;
      }
      if (file !== undefined) {
        if (length === 2 && (off & 1) === 0) {
          (this.files16[fid] as Uint16Array)[off >>> 1] = this.u16[src >>> 1];
        } else if ((off & 3) === 0 && (length & 3) === 0 && length <= 64) {
          // Cells (48 bytes) and u32 fields, word by word: a quarter of the stores of a byte loop.
          const file32 = this.files32[fid] as Uint32Array;
          const to = off >>> 2;
          const from = src >>> 2;
          for (let i = 0; i < length >>> 2; i++) file32[to + i] = words[from + i];
        } else if (length <= 64) {
          for (let i = 0; i < length; i++) file[off + i] = u8[src + i];
        } else {
          this.mem.copy(file, off, src, src + length);
        }
      }
      p = src + ((length + 3) & ~3);
    }
    this.logDone = 0;
  }

  /**
   * A move record (assembly/page_cache.ts logMove): the cell at slot `(packed >>> 8) & 0xff` of the
   * page at `fromBase` goes to slot `packed & 0xff` of the page at `toBase` with ctrl `packed >>> 16`,
   * in the host path's order: cell bytes, extra byte, destination ctrl, source ctrl cleared.
   */
  private applyMove(toFid: number, toBase: number, fromFid: number, fromBase: number, packed: number): void {
    const toSlot = packed & 0xff;
    const fromSlot = (packed >>> 8) & 0xff;
    const to32 = this.files32[toFid] as Uint32Array;
    const from32 = this.files32[fromFid] as Uint32Array;
    const to = cellByte(toBase, toSlot) >>> 2;
    const from = cellByte(fromBase, fromSlot) >>> 2;
    for (let i = 0; i < CELL_BYTES / 4; i++) to32[to + i] = from32[from + i];
    (this.files[toFid] as Buffer)[extraByte(toBase, toSlot)] = (this.files[fromFid] as Buffer)[extraByte(fromBase, fromSlot)];
    (this.files16[toFid] as Uint16Array)[ctrlHalf(toBase, toSlot)] = packed >>> 16;
    (this.files16[fromFid] as Uint16Array)[ctrlHalf(fromBase, fromSlot)] = 0;
  }

  private writeRange(fid: number, offset: number, src: number, length: number): void {
    const file = this.files[fid];
    if (file !== undefined) this.mem.copy(file, offset, src, src + length);
  }

  // ── files ──────────────────────────────────────────────────────────────────────────────────────

  /** The id of the file's first segment (segments have consecutive ids), registering it if new. */
  private register(file: MappedFile): number {
    const known = this.fidOf.get(file);
    if (known !== undefined) return known.first;
    const first = this.files.length;
    for (const segment of file.segments) {
      this.files.push(segment);
      this.files16.push(new Uint16Array(segment.buffer, segment.byteOffset, segment.length >>> 1));
      this.files32.push(new Uint32Array(segment.buffer, segment.byteOffset, segment.length >>> 2));
    }
    this.fidOf.set(file, { first, count: file.segments.length });
    return first;
  }

  /** Forgets a file's segments so their mappings can be collected (they may be released already). */
  private release(file: MappedFile): void {
    const known = this.fidOf.get(file);
    if (known === undefined) return;
    for (let i = known.first; i < known.first + known.count; i++) {
      this.files[i] = undefined;
      this.files16[i] = undefined;
      this.files32[i] = undefined;
    }
    this.fidOf.delete(file);
  }

  bind(ix: number, files: BucketFiles): void {
    const now = [files.index, ...files.data.filter((d): d is MappedFile => d !== null)];
    const before = this.bound[ix] ?? [];
    // Registering maps and checks each file, which throws for a damaged or missing one: all of
    // them first, so a failed bind leaves the bucket as it was (unbound on first use) rather than
    // marked bound over a half-written descriptor that later reads would trust.
    try {
      for (const file of now) this.register(file);
    } catch (err) {
      for (const file of now) if (!before.includes(file)) this.release(file);
      throw err;
    }
    for (const old of before) if (!now.includes(old)) this.release(old);
    this.bound[ix] = now;
    const d = (this.descAt + ix * DESC_BYTES) >>> 2;
    const w = this.u32;
    const spec = files.index.spec;
    w[d + D_INDEX_FID / 4] = this.register(files.index);
    w[d + D_PAGES / 4] = spec.totalRecords;
    w[d + D_PAGES_PER_SEG / 4] = files.index.recordsPerSegment;
    w[d + D_CAPACITY / 4] = spec.capacity;
    w[d + D_SEED_LO / 4] = files.seedLo;
    w[d + D_SEED_HI / 4] = files.seedHi;
    w[d + D_COUNT / 4] = files.count;
    for (let c = 0; c < SIZE_CLASSES; c++) {
      const at = d + D_DATA / 4 + 4 * c;
      const data = files.data[c];
      w[at] = data === null ? 0 : this.register(data);
      w[at + 1] = data === null ? 0 : data.spec.capacityPow2;
      w[at + 2] = data === null ? 0 : data.recordsPerSegment;
      w[at + 3] = files.dataCounts[c];
    }
  }

  unbind(ix: number): void {
    for (const file of this.bound[ix] ?? []) this.release(file);
    this.bound[ix] = undefined;
    this.u8.fill(0, this.descAt + ix * DESC_BYTES, this.descAt + (ix + 1) * DESC_BYTES);
  }

  forget(file: MappedFile): void {
    const known = this.fidOf.get(file);
    if (known === undefined) return;
    // No recovery first: forgetting a file needs none, and a failing one would hide why the file goes.
    this.core.invalidate(known.first, known.first + known.count);
    this.release(file);
  }

  // ── operations ─────────────────────────────────────────────────────────────────────────────────

  /**
   * Before a call into the core: recovers from one that threw part way, and marks this one under
   * way. The mark is set before the call and cleared after it returns, not in a catch: a call that
   * overflows the stack may leave no room to run one.
   */
  private enter(): void {
    this.settle();
    this.stopped = true;
  }

  settle(): void {
    if (!this.stopped) return;
    this.core.recover();
    this.stopped = false;
  }

  /**
   * A call into the core threw: recovers at once if it can, so the files have every store the
   * core made before the iterators, flush or compact read them (else the next call recovers), and
   * rethrows.
   */
  private stop(err: unknown): never {
    try {
      this.core.recover();
      this.stopped = false;
    } catch {
      /* the next call into the core recovers */
    }
    throw err;
  }

  private setKey(key: Uint8Array, koff = 0): void {
    const u8 = this.u8;
    const at = this.keyAt;
    for (let i = 0; i < 32; i++) u8[at + i] = key[koff + i];
  }

  /** The error for a damaged cell the core reported (its number is at OUT_FULL_CLASS). */
  private damaged(ix: number): BucketMapError {
    const cell = this.u32[(this.outAt + OUT_FULL_CLASS) >>> 2];
    const index = (this.bound[ix] as MappedFile[])[0];
    const segment = Math.floor(cell / CELLS_PER_PAGE / index.recordsPerSegment);
    return corrupt(index.segmentPaths[segment] ?? index.name, `index cell ${cell} is damaged (a live cell without a valid kind, data reference or slot count)`);
  }

  read(ix: number, key: Uint8Array, koff: number): ValueRef | null | undefined {
    if (this.bound[ix] === undefined) return undefined;
    this.setKey(key, koff);
    this.enter();
    let found: number;
    try {
      found = this.core.get(ix);
    } catch (err) {
      return this.stop(err);
    }
    this.stopped = false;
    if (found === 0) return null;
    if (found === FOUND_CORRUPT) throw this.damaged(ix);
    const w = this.u32;
    const o = this.outAt >>> 2;
    const ref = this.ref;
    ref.kind = w[o + OUT_KIND / 4];
    ref.refCount = w[o + OUT_RC_LO / 4] + w[o + OUT_RC_HI / 4] * TWO_32;
    ref.slots = w[o + OUT_SLOTS / 4];
    return ref;
  }

  put(ix: number, key: Uint8Array, slots: number, refCount: number): number {
    this.setKey(key);
    this.enter();
    let status: number;
    try {
      status = this.core.put(ix, slots, refCount >>> 0, Math.floor(refCount / TWO_32));
    } catch (err) {
      return this.stop(err);
    }
    this.stopped = false;
    if (status === PUT_CORRUPT) throw this.damaged(ix);
    return status;
  }

  remove(ix: number, key: Uint8Array): boolean {
    this.setKey(key);
    this.enter();
    let removed: number;
    try {
      removed = this.core.remove(ix);
    } catch (err) {
      return this.stop(err);
    }
    this.stopped = false;
    if (removed === FOUND_CORRUPT) throw this.damaged(ix);
    return removed === 1;
  }

  adjustRef(ix: number, key: Uint8Array, delta: number): number {
    this.setKey(key);
    this.enter();
    let rc: number;
    try {
      rc = this.core.adjustRef(ix, delta);
    } catch (err) {
      return this.stop(err);
    }
    this.stopped = false;
    return rc;
  }

  count(ix: number): number {
    return this.u32[((this.descAt + ix * DESC_BYTES) >>> 2) + D_COUNT / 4];
  }

  dataCounts(ix: number): ArrayLike<number> {
    const at = ((this.descAt + ix * DESC_BYTES) >>> 2) + D_DATA / 4;
    const out = new Array<number>(SIZE_CLASSES);
    for (let c = 0; c < SIZE_CLASSES; c++) out[c] = this.u32[at + 4 * c + 3];
    return out;
  }

  rehashInto(ix: number, target: MappedFile): boolean {
    const fid = this.register(target);
    this.enter();
    let status: number;
    try {
      status = this.core.rehash(ix, fid, target.spec.totalRecords, target.recordsPerSegment, target.spec.seedLo, target.spec.seedHi);
    } catch (err) {
      return this.stop(err);
    }
    this.stopped = false;
    if (status !== 1) {
      this.forget(target);
      if (status === PUT_CORRUPT) throw this.damaged(ix);
    }
    return status === 1;
  }

  copyDataInto(ix: number, sizeClass: number, target: MappedFile): void {
    const fid = this.register(target);
    this.enter();
    try {
      this.core.copyData(ix, sizeClass, fid, target.spec.capacityPow2, target.recordsPerSegment);
    } catch (err) {
      this.stop(err);
    }
    this.stopped = false;
  }

  getMany(start: number, n: number, withValues: boolean): number {
    this.enter();
    let done: number;
    try {
      done = this.core.getMany(start, n, withValues ? 1 : 0);
    } catch (err) {
      return this.stop(err);
    }
    this.stopped = false;
    if (done > start && this.batch.status[done - 1] === FOUND_CORRUPT) throw this.damaged(this.batch.buckets[done - 1]);
    return done;
  }

  get batchStatus(): number {
    return this.u32[(this.outAt + OUT_KIND) >>> 2];
  }

  get batchAdded(): number {
    return this.u32[(this.outAt + OUT_SLOTS) >>> 2];
  }

  putMany(start: number, n: number): number {
    this.enter();
    let next: number;
    try {
      next = this.core.putMany(start, n);
    } catch (err) {
      return this.stop(err);
    }
    this.stopped = false;
    if (next < n && this.batchStatus === PUT_CORRUPT) throw this.damaged(this.batch.buckets[next]);
    return next;
  }

  removeMany(n: number): void {
    this.enter();
    let done: number;
    try {
      done = this.core.removeMany(n);
    } catch (err) {
      return this.stop(err);
    }
    this.stopped = false;
    if (done > 0 && this.batch.status[done - 1] === FOUND_CORRUPT) throw this.damaged(this.batch.buckets[done - 1]);
  }

  adjustMany(start: number, n: number, delta: number): number {
    this.enter();
    let stop: number;
    try {
      stop = this.core.adjustMany(start, n, delta);
    } catch (err) {
      return this.stop(err);
    }
    this.stopped = false;
    return stop;
  }

  /** Registered files (for tests: files a bucket no longer uses must not stay registered). */
  registeredFiles(): number {
    return this.fidOf.size;
  }

  stats(): EngineStats {
    const s = this.stats64;
    return { cacheHits: s[0], cacheMisses: s[1], pagesIn: s[2], pagesOut: s[3], writeRecords: s[4] };
  }

  close(): void {
    this.enter();
    this.core.flush();
    this.stopped = false;
    this.files = [undefined];
    this.files16 = [undefined];
    this.files32 = [undefined];
    this.fidOf.clear();
  }
}
