/**
 * The line between the bucket layer (files, growth, codecs, the public API) and the bucket
 * algorithms. Two engines implement it over the same files: the wasm core, which works on copies
 * of file pages in its own memory, and the host path, which works on the mapped buffers directly.
 */
import type { MappedFile } from './storage.js';
import { DataFile, Table, type ValueRef } from './table.js';
import { MAX_LIST_BYTES, SIZE_CLASSES } from './layout.js';

export type EngineKind = 'wasm' | 'host';

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
  read(ix: number, key: Uint8Array): ValueRef | null;
  /** Upsert from `input`; returns PUT_NEW, PUT_UPDATED, INDEX_FULL or DATA_FULL (table.ts). */
  put(ix: number, key: Uint8Array, slots: number, refCount: number): number;
  remove(ix: number, key: Uint8Array): boolean;
  count(ix: number): number;
  dataCounts(ix: number): ArrayLike<number>;
  /**
   * Rehashes the bucket's live cells into `target`, a fresh file whose header carries the seed to
   * hash with (the same seed, or a new one when the bucket is reseeded); false if some key found no room.
   */
  rehashInto(ix: number, target: MappedFile): boolean;
  /** Spaced copy of a data class into `target` (fresh, larger). */
  copyDataInto(ix: number, sizeClass: number, target: MappedFile): void;
  stats(): EngineStats;
  close(): void;
}

/** The host path: the TypeScript table straight on the mapped buffers (zero copy). */
export class HostEngine implements Engine {
  readonly kind = 'host' as const;
  readonly input = new Uint8Array(MAX_LIST_BYTES);
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

  read(ix: number, key: Uint8Array): ValueRef | null {
    const table = this.tables[ix] as Table;
    return table.read(key, 0) ? table.out : null;
  }

  put(ix: number, key: Uint8Array, slots: number, refCount: number): number {
    const table = this.tables[ix] as Table;
    const status = table.put(key, 0, this.input, slots, refCount);
    this.lastFullClass = table.fullClass;
    return status;
  }

  remove(ix: number, key: Uint8Array): boolean {
    return (this.tables[ix] as Table).remove(key, 0);
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

  stats(): EngineStats {
    return { cacheHits: 0, cacheMisses: 0, pagesIn: 0, pagesOut: 0, writeRecords: 0 };
  }

  close(): void {
    this.tables.fill(undefined);
  }
}
