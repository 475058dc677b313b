/**
 * The line between the bucket layer (files, growth, codecs, the public API) and the bucket
 * algorithms. Two engines implement it over the same files: the wasm core, which works on copies
 * of file pages in its own memory, and the host path, which works on the mapped buffers directly.
 */
import type { MappedFile } from './storage.js';
import { DataFile, PREFETCH_STRIDE, PUT_NEW, PUT_UPDATED, Table, type ValueRef } from './table.js';
import { hashHi, hashWords } from './hash.js';
import { copyToWords } from './copy.js';
import { MAX_LIST_BYTES, SIZE_CLASSES } from './layout.js';

export type EngineKind = 'wasm' | 'host';

/** Keys a batch may hold (the core's BATCH). */
export const BATCH = 1024;
/**
 * Batched lookups hash, locate and load this many keys' lines, then probe them, then the next
 * group: the loads of a group are in flight together, and its lines (and their TLB entries) are
 * still in cache when its probes run. With groups of 1,024 (every key of a batch loaded before any
 * probe) hasMany misses ran at 0.71 of this rate at 5M keys, in both of two in-process runs: their
 * lines were evicted before their probes came. getMany moved less (0.83 and 1.04).
 */
const PREFETCH_GROUP = 16;
/** A batch entry whose bucket has no files yet. */
export const NO_BUCKET = 0xffffffff;

/**
 * Buffers a batched call exchanges with the engine, owned by the engine and reused: for the wasm
 * engine they are views of the core's memory, so a batch crosses into the core once.
 */
export interface BatchBuffers {
  /** Keys, 32 bytes each, and the bucket of each (NO_BUCKET: its bucket has no files). */
  readonly keys: Uint8Array;
  readonly buckets: Uint32Array;
  /** Puts: slot count, refCount and the offset of the elements in `lists`, per entry. */
  readonly slots: Uint32Array;
  readonly refCounts: Float64Array;
  readonly listAt: Uint32Array;
  readonly lists: Uint8Array;
  /** Results: 0 absent, 1 found or removed; refCount, slot count and offset of the elements in `data`. */
  readonly status: Uint32Array;
  readonly outRefCounts: Float64Array;
  readonly outSlots: Uint32Array;
  readonly dataAt: Uint32Array;
  readonly data: Uint8Array;
  /** A word view of `data` from the same start. */
  readonly dataWords: Int32Array;
}

function batchBuffers(): BatchBuffers {
  const data = new Uint8Array(MAX_LIST_BYTES);
  return {
    keys: new Uint8Array(BATCH * 32), buckets: new Uint32Array(BATCH), slots: new Uint32Array(BATCH),
    refCounts: new Float64Array(BATCH), listAt: new Uint32Array(BATCH), lists: new Uint8Array(MAX_LIST_BYTES),
    status: new Uint32Array(BATCH), outRefCounts: new Float64Array(BATCH), outSlots: new Uint32Array(BATCH),
    dataAt: new Uint32Array(BATCH), data, dataWords: new Int32Array(data.buffer),
  };
}

/** A bucket's current files and the state the engine needs to work on them. */
export interface BucketFiles {
  index: MappedFile;
  data: Array<MappedFile | null>;
  seedLo: number;
  seedHi: number;
  count: number;
  dataCounts: ArrayLike<number>;
}

export interface EngineStats {
  cacheHits: number;
  cacheMisses: number;
  pagesIn: number;
  pagesOut: number;
  writeRecords: number;
}

export interface Engine {
  readonly kind: EngineKind;
  /** The bucket layer encodes a slot list here before put(); MAX_LIST_BYTES long. */
  readonly input: Uint8Array;
  /** Size class that put() found missing or full, after it returned DATA_FULL. */
  readonly fullClass: number;
  /** (Re)binds a bucket after it is opened, allocated or grown. */
  bind(ix: number, files: BucketFiles): void;
  unbind(ix: number): void;
  /** Lets go of a file no bucket uses (one dropped after a failed growth): nothing if it was never handed over. */
  forget(file: MappedFile): void;
  /**
   * Completes what a call that threw part way left undone, so that the files hold every store the
   * engine made before it stopped (a stopped write is repaired from them).
   */
  settle(): void;
  /**
   * Looks the key at `key[koff, koff + 32)` up in bucket `ix`: its value, null if absent, or
   * undefined if the bucket is not bound (it has no files yet, or is opened lazily and not yet
   * mapped: ask BucketStorage.allocated).
   */
  read(ix: number, key: Uint8Array, koff: number): ValueRef | null | undefined;
  /** Upsert from `input`; returns PUT_NEW, PUT_UPDATED, INDEX_FULL or DATA_FULL (table.ts). */
  put(ix: number, key: Uint8Array, slots: number, refCount: number): number;
  remove(ix: number, key: Uint8Array): boolean;
  /** Table.adjustRef: the new refCount, -1 if absent, -2 if the entry must be rewritten instead. */
  adjustRef(ix: number, key: Uint8Array, delta: number): number;
  count(ix: number): number;
  dataCounts(ix: number): ArrayLike<number>;
  /**
   * Rehashes the bucket's live cells into `target`, a fresh file whose header carries the seed to
   * hash with (the same seed, or a new one when the bucket is reseeded); false if some key found no room.
   */
  rehashInto(ix: number, target: MappedFile): boolean;
  /** Spaced copy of a data class into `target` (fresh, larger). */
  copyDataInto(ix: number, sizeClass: number, target: MappedFile): void;
  readonly batch: BatchBuffers;
  /**
   * Looks up batch keys [start, n); with `withValues` fills refCounts, slot counts and elements.
   * Returns where it stopped: below n when the data area is full. A damaged cell throws CORRUPT.
   */
  getMany(start: number, n: number, withValues: boolean): number;
  /**
   * Upserts batch entries [start, n). Returns the index of the first entry not written (n when
   * all were): its status (INDEX_FULL or DATA_FULL) is `batchStatus`, and `fullClass` names the
   * class for DATA_FULL. `batchAdded` counts the keys that were new.
   */
  putMany(start: number, n: number): number;
  readonly batchStatus: number;
  readonly batchAdded: number;
  /**
   * Deletes batch keys [0, n); status per key. A damaged cell throws CORRUPT, with the status of
   * every key before it set (the caller zeroes them first, so the rest read as not removed).
   */
  removeMany(n: number): void;
  /**
   * adjustRef() of batch keys [start, n) in turn: status 0 absent, or 1 and the new refCount in
   * outRefCounts. Stops at the first key whose entry must be rewritten instead (not INLINE, or the
   * refCount would leave 1..256) and returns its index, with nothing written for it (n when all
   * were done). A call with `start` > 0 resumes the one that stopped there, once the caller has
   * rewritten that entry.
   */
  adjustMany(start: number, n: number, delta: number): number;
  stats(): EngineStats;
  close(): void;
}

/** The host path: the TypeScript table straight on the mapped buffers (zero copy). */
export class HostEngine implements Engine {
  readonly kind = 'host' as const;
  readonly input = new Uint8Array(MAX_LIST_BYTES);
  readonly batch = batchBuffers();
  batchStatus = 0;
  batchAdded = 0;
  /** The batch's keys as little-endian words (the same memory as batch.keys). */
  private readonly batchKeyWords = new Int32Array(this.batch.keys.buffer, 0, BATCH * 8);
  private readonly batchLo = new Int32Array(BATCH);
  private readonly batchTag = new Uint8Array(BATCH);
  /** Home cell of each batch entry, from locateHome. */
  private readonly batchHome = new Int32Array(BATCH);
  private readonly homeViews = new Array<Int32Array>(PREFETCH_GROUP);
  private readonly homeCtrlAt = new Int32Array(PREFETCH_GROUP);
  private readonly homeCellAt = new Int32Array(PREFETCH_GROUP);
  /** Keeps the prefetch loop's loads from being optimised away. */
  private sink = 0;

  /**
   * Hashes batch entries [start, n) (at most PREFETCH_GROUP) into batchLo/batchTag and notes where
   * each probe starts; then loads all those lines in one loop short enough per key that the CPU
   * keeps many misses in flight, so the probes that follow find them in cache. The loop reads all
   * of a key's lines through one word view: each view costs a map and bounds check per load.
   */
  private hashAndPrefetch(start: number, n: number): void {
    const b = this.batch;
    const kw = this.batchKeyWords;
    const { batchLo, batchTag, batchHome, homeViews, homeCtrlAt, homeCellAt } = this;
    let count = 0;
    for (let i = start; i < n; i++) {
      const ix = b.buckets[i];
      if (ix === NO_BUCKET) continue;
      const table = this.tables[ix] as Table;
      batchLo[i] = hashWords(kw, i * 8, table.seedLo, table.seedHi);
      batchTag[i] = hashHi >>> 26;
      batchHome[i] = table.locateHome(batchLo[i], count++, homeViews, homeCtrlAt, homeCellAt);
    }
    const stride = PREFETCH_STRIDE;
    let sink = 0;
    for (let j = 0; j < count; j++) {
      const words = homeViews[j];
      const at = homeCellAt[j];
      sink ^= words[homeCtrlAt[j]] ^ words[at] ^ words[at + stride];
    }
    this.sink = sink;
  }

  private readonly tables: Array<Table | undefined>;
  private readonly maxSearch: number;
  private readonly elementSize: number;
  private lastFullClass = 0;

  constructor(maxBuckets: number, maxSearch: number, elementSize: number) {
    this.tables = new Array<Table | undefined>(maxBuckets);
    this.maxSearch = maxSearch;
    this.elementSize = elementSize;
  }

  get fullClass(): number {
    return this.lastFullClass;
  }

  bind(ix: number, files: BucketFiles): void {
    const table = new Table(this.maxSearch, this.elementSize, (Math.random() * 0x7fffffff) | 1);
    table.bindIndex(files.index, files.seedLo, files.seedHi);
    for (let c = 0; c < SIZE_CLASSES; c++) {
      table.bindData(c, files.data[c]);
      table.dataCount[c] = files.dataCounts[c];
    }
    table.count = files.count;
    this.tables[ix] = table;
  }

  unbind(ix: number): void {
    this.tables[ix] = undefined;
  }

  forget(): void {
    // A table is built over a bucket's files only when it is bound; nothing else holds on to them.
  }

  settle(): void {
    // Every store goes straight to the mapping: a call that stopped left nothing elsewhere.
  }

  read(ix: number, key: Uint8Array, koff: number): ValueRef | null | undefined {
    const table = this.tables[ix];
    if (table === undefined) return undefined;
    return table.read(key, koff) ? table.out : null;
  }

  put(ix: number, key: Uint8Array, slots: number, refCount: number): number {
    const table = this.tables[ix] as Table;
    const status = table.put(key, 0, this.input, 0, slots, refCount);
    this.lastFullClass = table.fullClass;
    return status;
  }

  remove(ix: number, key: Uint8Array): boolean {
    return (this.tables[ix] as Table).remove(key, 0);
  }

  adjustRef(ix: number, key: Uint8Array, delta: number): number {
    return (this.tables[ix] as Table).adjustRef(key, 0, delta);
  }

  count(ix: number): number {
    return (this.tables[ix] as Table).count;
  }

  dataCounts(ix: number): ArrayLike<number> {
    return (this.tables[ix] as Table).dataCount;
  }

  rehashInto(ix: number, target: MappedFile): boolean {
    const source = this.tables[ix] as Table;
    const fresh = new Table(this.maxSearch, this.elementSize);
    fresh.bindIndex(target, target.spec.seedLo, target.spec.seedHi);
    return fresh.rehashFrom(source);
  }

  copyDataInto(ix: number, sizeClass: number, target: MappedFile): void {
    (this.tables[ix] as Table).copyDataInto(sizeClass, new DataFile(target));
  }

  getMany(start: number, n: number, withValues: boolean): number {
    const b = this.batch;
    const kw = this.batchKeyWords;
    const tables = this.tables;
    const { batchHome, batchTag } = this;
    let used = 0;
    let prefetched = start;
    for (let i = start; i < n; i++) {
      if (i === prefetched) {
        prefetched = Math.min(n, i + PREFETCH_GROUP);
        this.hashAndPrefetch(i, prefetched);
      }
      b.status[i] = 0;
      const ix = b.buckets[i];
      if (ix === NO_BUCKET) continue;
      const table = tables[ix] as Table;
      const c = table.probeFrom(batchHome[i], batchTag[i], kw, i * 8);
      if (c < 0) continue;
      if (!withValues) {
        b.status[i] = 1;
        continue;
      }
      table.readFound(c);
      const ref = table.out;
      const bytes = ref.slots * this.elementSize;
      const need = (bytes + 7) & ~7;
      if (used + need > b.data.length) return i;
      copyToWords(ref.buf, ref.words, ref.off, b.data, b.dataWords, used, bytes);
      b.status[i] = 1;
      b.outRefCounts[i] = ref.refCount;
      b.outSlots[i] = ref.slots;
      b.dataAt[i] = used;
      used += need;
    }
    return n;
  }

  putMany(start: number, n: number): number {
    const b = this.batch;
    const kw = this.batchKeyWords;
    const { batchLo, batchTag } = this;
    // Each table stays as it is until this call returns, so the hashes stay valid; a call after
    // growth hashes again.
    let added = 0;
    let prefetched = start;
    try {
      for (let i = start; i < n; i++) {
        if (i === prefetched) {
          prefetched = Math.min(n, i + PREFETCH_GROUP);
          this.hashAndPrefetch(i, prefetched);
        }
        const table = this.tables[b.buckets[i]] as Table;
        const status = table.putHashed(batchLo[i], batchTag[i], kw, i * 8, b.lists, b.listAt[i], b.slots[i], b.refCounts[i]);
        if (status === PUT_NEW) {
          added++;
        } else if (status !== PUT_UPDATED) {
          this.batchStatus = status;
          this.lastFullClass = table.fullClass;
          return i;
        }
      }
      return n;
    } finally {
      // Also when a damaged cell throws: the keys added before it count in the map's size.
      this.batchAdded = added;
    }
  }

  removeMany(n: number): void {
    const b = this.batch;
    const kw = this.batchKeyWords;
    const { batchHome, batchTag } = this;
    // Deletes move cells but not keys' home cells, so a group's stay valid through its deletes.
    let prefetched = 0;
    for (let i = 0; i < n; i++) {
      if (i === prefetched) {
        prefetched = Math.min(n, i + PREFETCH_GROUP);
        this.hashAndPrefetch(i, prefetched);
      }
      const ix = b.buckets[i];
      b.status[i] = ix !== NO_BUCKET && (this.tables[ix] as Table).removeFrom(batchHome[i], batchTag[i], kw, i * 8) ? 1 : 0;
    }
  }

  adjustMany(start: number, n: number, delta: number): number {
    const b = this.batch;
    const kw = this.batchKeyWords;
    const { batchHome, batchTag } = this;
    // In-place adjustments move no cell, so a group's home cells stay valid through them, and
    // through the rewrite of an existing key that a resumed call (start > 0) follows: such a call
    // hashes nothing before the next group, or a batch of rewritten entries would hash each group
    // up to 16 times.
    let prefetched = start === 0 ? 0 : Math.min(n, Math.ceil(start / PREFETCH_GROUP) * PREFETCH_GROUP);
    for (let i = start; i < n; i++) {
      if (i === prefetched) {
        prefetched = Math.min(n, i + PREFETCH_GROUP);
        this.hashAndPrefetch(i, prefetched);
      }
      const ix = b.buckets[i];
      const rc = ix === NO_BUCKET ? -1 : (this.tables[ix] as Table).adjustFrom(batchHome[i], batchTag[i], kw, i * 8, delta);
      if (rc === -2) return i;
      b.status[i] = rc < 0 ? 0 : 1;
      b.outRefCounts[i] = rc;
    }
    return n;
  }

  stats(): EngineStats {
    return { cacheHits: 0, cacheMisses: 0, pagesIn: 0, pagesOut: 0, writeRecords: 0 };
  }

  close(): void {
    this.tables.fill(undefined);
  }
}
