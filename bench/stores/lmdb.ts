/**
 * lmdb-js on its synchronous paths: putSync/removeSync inside transactionSync, getBinaryFast for reads;
 * optionally with noSync, which leaves writing back to the kernel as bucket-map does.
 */
import * as path from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import { KeyScratch, STORED_VALUE_BYTES, readRefCount, writeRefCount, type Store } from './store.js';

/**
 * getBinaryFast hands back a shared buffer whose `length` lmdb-js overrides per read; Buffer#copy
 * on it throws inside a write transaction, so the few bytes are copied by hand.
 */
function copyBytes(source: Uint8Array, target: Uint8Array, count: number): void {
  for (let k = 0; k < count; k++) target[k] = source[k];
}

class LmdbStore implements Store {
  private readonly dir: string;
  private readonly useWritemap: boolean;
  private readonly noSync: boolean;
  private db: RootDatabase<Buffer, Buffer> | null = null;
  /** putSync copies the value into the transaction at once, so one scratch buffer serves every write. */
  private readonly scratch = Buffer.alloc(STORED_VALUE_BYTES);
  /** lmdb-js copies a key into its own buffer during the call, so one scratch key serves every call. */
  private readonly key = new KeyScratch();

  constructor(dir: string, useWritemap: boolean, noSync: boolean) {
    this.dir = path.join(dir, 'lmdb');
    this.useWritemap = useWritemap;
    this.noSync = noSync;
  }

  private get d(): RootDatabase<Buffer, Buffer> {
    if (this.db === null) throw new Error('lmdb is not open');
    return this.db;
  }

  open(): void {
    this.db = open<Buffer, Buffer>({
      path: this.dir,
      keyEncoding: 'binary',
      encoding: 'binary',
      // lmdb-js's own value cache would turn the read phases into a JS Map benchmark.
      cache: false,
      compression: false,
      useWritemap: this.useWritemap,
      noSync: this.noSync,
    });
  }

  async close(): Promise<void> {
    await this.d.close();
    this.db = null;
  }

  writeBatch(writes: () => void): void {
    this.d.transactionSync(writes);
  }

  put(keys: Buffer, keyOffset: number, values: Buffer, valueOffset: number): void {
    values.copy(this.scratch, 0, valueOffset, valueOffset + 16);
    writeRefCount(this.scratch, 16, 1);
    this.d.putSync(this.key.of(keys, keyOffset), this.scratch);
  }

  addref(keys: Buffer, keyOffset: number): number {
    const key = this.key.of(keys, keyOffset);
    const current = this.d.getBinaryFast(key);
    if (current === undefined) return -1;
    copyBytes(current, this.scratch, STORED_VALUE_BYTES);
    const refCount = readRefCount(this.scratch, 16) + 1;
    writeRefCount(this.scratch, 16, refCount);
    this.d.putSync(key, this.scratch);
    return refCount;
  }

  del(keys: Buffer, keyOffset: number): void {
    this.d.removeSync(this.key.of(keys, keyOffset));
  }

  get(keys: Buffer, keyOffset: number, out: Buffer): number {
    const v = this.d.getBinaryFast(this.key.of(keys, keyOffset));
    if (v === undefined) return -1;
    if (v.length !== STORED_VALUE_BYTES) return -2;
    copyBytes(v, out, 16);
    return readRefCount(v, 16);
  }

  details(): unknown {
    return this.db === null ? null : this.db.getStats();
  }
}

export function createLmdb(dir: string, useWritemap: boolean, noSync = false): LmdbStore {
  return new LmdbStore(dir, useWritemap, noSync);
}
