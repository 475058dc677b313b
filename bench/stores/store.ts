/**
 * The one interface every store is driven through. Keys and values are passed as (buffer, offset)
 * into the workload's big buffers, so each adapter pays for exactly the slicing or copying its own
 * API needs, and the timed loops are the same code for every store.
 */

/** What a batched lookup reports for the key at index `j` of its batch. */
export type ReadCheck = (j: number, refCount: number, values: Uint8Array, offset: number) => void;

export interface Store {
  /** Opens (creates, or reopens from disk); resolves once the store can serve reads and writes. */
  open(): void | Promise<void>;
  /** Releases the store; for a persistent store everything written is in its files afterwards. */
  close(): void | Promise<void>;
  /** Runs up to one batch (10k) of writes the way the store groups them: a transaction, a batch, or plain calls. */
  writeBatch(writes: () => void): void | Promise<void>;
  /** Writes key → (16-byte value, refCount 1). */
  put(keys: Buffer, keyOffset: number, values: Buffer, valueOffset: number): void;
  /** Adds one to the refCount; returns the new refCount, or -1 if the key is absent. */
  addref(keys: Buffer, keyOffset: number): number;
  del(keys: Buffer, keyOffset: number): void;
  /** Copies the 16 value bytes into `out`; returns the refCount, -1 if absent, -2 if the value has the wrong shape. */
  get(keys: Buffer, keyOffset: number, out: Buffer): number;
  /**
   * Optional batched lookup of `count` keys packed back to back in `packed`: calls
   * `check(j, refCount, values, offset)` for each (refCount -1 if absent, -2 if the value has the
   * wrong shape). Stores without a synchronous batched read leave it out.
   */
  getMany?(packed: Buffer, count: number, check: ReadCheck): void;
  /**
   * Optional batched refCount change (+1 or -1) of `count` keys packed back to back in `packed`:
   * each key's new refCount goes to `refCounts` (-1 if absent). Stores without a synchronous
   * batched call leave it out.
   */
  adjustMany?(packed: Buffer, count: number, delta: 1 | -1, refCounts: Float64Array): void;
  /** Optional batched delete of `count` keys packed back to back in `packed`; returns how many were present. */
  delMany?(packed: Buffer, count: number): number;
  /** Optional: writes everything back to disk (untimed, before the batched update phases). */
  sync?(): void;
  /**
   * Optional: gives back the space of deleted entries the way the store offers it (bucket-map
   * `compact()`, LevelDB `compactRange`, SQLite `VACUUM`). Stores without one leave it out.
   */
  compact?(): void | Promise<void>;
  /** Store-specific counters worth keeping in results.json. */
  details?(): unknown;
}

export interface StoreSpec {
  name: string;
  /** npm package whose version the report names (bucket-map reports its own version and commit). */
  pkg: string;
  persistent: boolean;
  /** The API paths and durability settings used, printed in the report. */
  notes: string;
  create(dir: string): Promise<Store>;
}

/**
 * One reused 32-byte key, for libraries that read a key during the call and keep no reference to
 * it: copying the key into it costs less than a Buffer#subarray per operation (85–100 ns).
 */
export class KeyScratch {
  private readonly key = Buffer.alloc(32);

  of(keys: Buffer, offset: number): Buffer {
    const key = this.key;
    for (let k = 0; k < 32; k++) key[k] = keys[offset + k];
    return key;
  }
}

/** Values of the peers hold the 16 value bytes then the refCount as a u64 (little-endian). */
export const STORED_VALUE_BYTES = 24;

export function readRefCount(b: Uint8Array, offset: number): number {
  const lo = (b[offset] | (b[offset + 1] << 8) | (b[offset + 2] << 16) | (b[offset + 3] << 24)) >>> 0;
  const hi = (b[offset + 4] | (b[offset + 5] << 8) | (b[offset + 6] << 16) | (b[offset + 7] << 24)) >>> 0;
  return hi * 0x1_0000_0000 + lo;
}

export function writeRefCount(b: Uint8Array, offset: number, refCount: number): void {
  const hi = Math.floor(refCount / 0x1_0000_0000);
  const lo = refCount >>> 0;
  b[offset] = lo; b[offset + 1] = lo >>> 8; b[offset + 2] = lo >>> 16; b[offset + 3] = lo >>> 24;
  b[offset + 4] = hi; b[offset + 5] = hi >>> 8; b[offset + 6] = hi >>> 16; b[offset + 7] = hi >>> 24;
}
