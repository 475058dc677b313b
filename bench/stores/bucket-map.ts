/** bucket-map itself, on either engine, persistent (restart file + one drive in the run's folder). */
import * as path from 'node:path';
import { BucketMap, type BucketMapConfig, type EngineKind, type PackedKeys } from '../../host/index.js';
import type { Store } from './store.js';

class BucketMapStore implements Store {
  private readonly config: BucketMapConfig;
  private map: BucketMap | null = null;
  private slots = new Int32Array(0);
  private refCounts = new Float64Array(0);
  private values = new Uint8Array(0);
  /**
   * The per-key calls go through packed-keys views of the workload's key buffers. Two are kept:
   * the mixed phase alternates gets of one buffer with inserts from another.
   */
  private view: PackedKeys<Uint8Array> | null = null;
  private otherView: PackedKeys<Uint8Array> | null = null;

  constructor(engine: EngineKind, dir: string) {
    this.config = {
      maxBuckets: 1024,
      engine,
      restartFile: path.join(dir, 'restart'),
      drives: [path.join(dir, 'drives')],
    };
  }

  private get m(): BucketMap {
    if (this.map === null) throw new Error('bucket-map is not open');
    return this.map;
  }

  open(): void {
    this.map = new BucketMap(this.config);
    this.view = null;
    this.otherView = null;
  }

  close(): void {
    this.m.close();
    this.map = null;
    this.view = null;
    this.otherView = null;
  }

  /** The view of `keys`, made when neither kept view is of it. */
  private packed(keys: Buffer): PackedKeys<Uint8Array> {
    const view = this.view;
    if (view !== null && view.keys === keys) return view;
    const other = this.otherView;
    this.otherView = view;
    this.view = other !== null && other.keys === keys ? other : this.m.packed(keys);
    return this.view;
  }

  compact(): void {
    this.m.compact();
  }

  adjustMany(packed: Buffer, count: number, delta: 1 | -1, refCounts: Float64Array): void {
    const keys = packed.subarray(0, count * 32);
    if (delta > 0) this.m.addrefMany(keys, refCounts);
    else this.m.unrefMany(keys, refCounts);
  }

  delMany(packed: Buffer, count: number): number {
    return this.m.deleteMany(packed.subarray(0, count * 32));
  }

  sync(): void {
    this.m.flush({ durable: true });
  }

  writeBatch(writes: () => void): void {
    writes();
  }

  put(keys: Buffer, keyOffset: number, values: Buffer, valueOffset: number): void {
    this.packed(keys).insert(keyOffset >>> 5, [values.subarray(valueOffset, valueOffset + 16)], 1);
  }

  addref(keys: Buffer, keyOffset: number): number {
    return this.packed(keys).addref(keyOffset >>> 5) ?? -1;
  }

  del(keys: Buffer, keyOffset: number): void {
    this.packed(keys).delete(keyOffset >>> 5);
  }

  /** readInto through the packed view: the allocation-free read, what a caller after speed uses. */
  get(keys: Buffer, keyOffset: number, out: Buffer): number {
    const found = this.packed(keys).readInto(keyOffset >>> 5, out);
    if (found === -1) return -1;
    return found === 1 ? this.m.lastRefCount : -2;
  }

  /** readManyInto: the allocation-free batched read, into buffers reused from call to call. */
  getMany(packed: Buffer, count: number, check: (j: number, refCount: number, values: Uint8Array, offset: number) => void): void {
    if (this.slots.length < count) {
      this.slots = new Int32Array(count);
      this.refCounts = new Float64Array(count);
      this.values = new Uint8Array(count * 16);
    }
    const read = this.m.readManyInto(packed.subarray(0, count * 32), this.values, this.slots, this.refCounts);
    if (read !== count) throw new Error(`readManyInto read ${read} of ${count} keys into room for ${count} one-element lists`);
    let at = 0;
    for (let j = 0; j < count; j++) {
      const slots = this.slots[j];
      if (slots === -1) {
        check(j, -1, packed, 0);
      } else if (slots !== 1) {
        check(j, -2, packed, 0);
        at += slots * 16;
      } else {
        check(j, this.refCounts[j], this.values, at);
        at += 16;
      }
    }
  }

  details(): unknown {
    return this.map === null ? null : this.map.stats();
  }
}

export function createBucketMap(engine: EngineKind, dir: string): BucketMapStore {
  return new BucketMapStore(engine, dir);
}
