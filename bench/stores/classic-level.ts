/**
 * classic-level (LevelDB). Writes go through batch() (LevelDB has no synchronous write in this
 * API); reads use getSync(), which classic-level 3 provides.
 */
import * as path from 'node:path';
import { ClassicLevel } from 'classic-level';
import { KeyScratch, STORED_VALUE_BYTES, readRefCount, writeRefCount, type Store } from './store.js';

type Op = { type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer };

class ClassicLevelStore implements Store {
  private readonly dir: string;
  private db: ClassicLevel<Buffer, Buffer> | null = null;
  private pending: Op[] = [];
  /** getSync reads its key during the call; a batched write keeps its key, so writes slice their own. */
  private readonly key = new KeyScratch();

  constructor(dir: string) {
    this.dir = path.join(dir, 'leveldb');
  }

  private get d(): ClassicLevel<Buffer, Buffer> {
    if (this.db === null) throw new Error('classic-level is not open');
    return this.db;
  }

  async open(): Promise<void> {
    const db = new ClassicLevel<Buffer, Buffer>(this.dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    await db.open();
    this.db = db;
  }

  async close(): Promise<void> {
    await this.d.close();
    this.db = null;
  }

  /** Every key is 32 bytes, so [32 zero bytes, 33 bytes of 0xff) covers them all. */
  async compact(): Promise<void> {
    await this.d.compactRange(Buffer.alloc(32, 0), Buffer.alloc(33, 0xff));
  }

  async writeBatch(writes: () => void): Promise<void> {
    this.pending = [];
    writes();
    await this.d.batch(this.pending);
    this.pending = [];
  }

  put(keys: Buffer, keyOffset: number, values: Buffer, valueOffset: number): void {
    // The batch keeps its values until it is written, so each put needs a buffer of its own.
    const value = Buffer.allocUnsafe(STORED_VALUE_BYTES);
    values.copy(value, 0, valueOffset, valueOffset + 16);
    writeRefCount(value, 16, 1);
    this.pending.push({ type: 'put', key: keys.subarray(keyOffset, keyOffset + 32), value });
  }

  addref(keys: Buffer, keyOffset: number): number {
    const key = keys.subarray(keyOffset, keyOffset + 32);
    const current = this.d.getSync(key);
    if (current === undefined) return -1;
    const value = Buffer.allocUnsafe(STORED_VALUE_BYTES);
    current.copy(value, 0, 0, STORED_VALUE_BYTES);
    const refCount = readRefCount(value, 16) + 1;
    writeRefCount(value, 16, refCount);
    this.pending.push({ type: 'put', key, value });
    return refCount;
  }

  del(keys: Buffer, keyOffset: number): void {
    this.pending.push({ type: 'del', key: keys.subarray(keyOffset, keyOffset + 32) });
  }

  get(keys: Buffer, keyOffset: number, out: Buffer): number {
    const v = this.d.getSync(this.key.of(keys, keyOffset));
    if (v === undefined) return -1;
    if (v.length !== STORED_VALUE_BYTES) return -2;
    v.copy(out, 0, 0, 16);
    return readRefCount(v, 16);
  }
}

export function createClassicLevel(dir: string): ClassicLevelStore {
  return new ClassicLevelStore(dir);
}
