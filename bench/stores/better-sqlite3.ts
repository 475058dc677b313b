/**
 * better-sqlite3: one WITHOUT ROWID table, WAL journal, prepared statements, writes in
 * transactions of one batch each.
 */
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { KeyScratch, STORED_VALUE_BYTES, readRefCount, writeRefCount, type Store } from './store.js';

/** The slice of better-sqlite3's API used here (the package ships no types, and @types is not a dependency). */
interface Statement {
  run(...params: unknown[]): { changes: number };
  get(...params: unknown[]): unknown;
  pluck(on?: boolean): Statement;
}
interface Database {
  pragma(source: string, options?: { simple?: boolean }): unknown;
  exec(source: string): Database;
  prepare(source: string): Statement;
  transaction<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void;
  close(): void;
}
type DatabaseConstructor = new (file: string) => Database;

const require = createRequire(import.meta.url);

interface Statements {
  insert: Statement;
  select: Statement;
  update: Statement;
  remove: Statement;
  batch: (writes: () => void) => void;
}

class SqliteStore implements Store {
  private readonly file: string;
  private db: Database | null = null;
  private st: Statements | null = null;
  /** better-sqlite3 binds blobs as transient (SQLite copies them), so one scratch buffer serves every write. */
  private readonly scratch = Buffer.alloc(STORED_VALUE_BYTES);
  /** Keys are bound the same way, so one scratch key serves every call too. */
  private readonly key = new KeyScratch();

  constructor(dir: string) {
    this.file = path.join(dir, 'kv.sqlite');
  }

  private get s(): Statements {
    if (this.st === null) throw new Error('better-sqlite3 is not open');
    return this.st;
  }

  open(): void {
    const Sqlite = require('better-sqlite3') as DatabaseConstructor;
    const db = new Sqlite(this.file);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID');
    this.st = {
      insert: db.prepare('INSERT INTO kv(k, v) VALUES (?, ?)'),
      select: db.prepare('SELECT v FROM kv WHERE k = ?').pluck(),
      update: db.prepare('UPDATE kv SET v = ? WHERE k = ?'),
      remove: db.prepare('DELETE FROM kv WHERE k = ?'),
      batch: db.transaction((writes: () => void) => writes()),
    };
    this.db = db;
  }

  close(): void {
    this.db?.close();
    this.db = null;
    this.st = null;
  }

  compact(): void {
    if (this.db === null) throw new Error('better-sqlite3 is not open');
    this.db.exec('VACUUM');
  }

  writeBatch(writes: () => void): void {
    this.s.batch(writes);
  }

  put(keys: Buffer, keyOffset: number, values: Buffer, valueOffset: number): void {
    values.copy(this.scratch, 0, valueOffset, valueOffset + 16);
    writeRefCount(this.scratch, 16, 1);
    this.s.insert.run(this.key.of(keys, keyOffset), this.scratch);
  }

  addref(keys: Buffer, keyOffset: number): number {
    const key = this.key.of(keys, keyOffset);
    const current = this.s.select.get(key) as Buffer | undefined;
    if (current === undefined) return -1;
    current.copy(this.scratch, 0, 0, STORED_VALUE_BYTES);
    const refCount = readRefCount(this.scratch, 16) + 1;
    writeRefCount(this.scratch, 16, refCount);
    this.s.update.run(this.scratch, key);
    return refCount;
  }

  del(keys: Buffer, keyOffset: number): void {
    this.s.remove.run(this.key.of(keys, keyOffset));
  }

  get(keys: Buffer, keyOffset: number, out: Buffer): number {
    const v = this.s.select.get(this.key.of(keys, keyOffset)) as Buffer | undefined;
    if (v === undefined) return -1;
    if (v.length !== STORED_VALUE_BYTES) return -2;
    v.copy(out, 0, 0, 16);
    return readRefCount(v, 16);
  }

  details(): unknown {
    if (this.db === null) return null;
    const pragma = (name: string): unknown => this.db?.pragma(name, { simple: true });
    return { journalMode: pragma('journal_mode'), synchronous: pragma('synchronous'), pageSize: pragma('page_size'), pageCount: pragma('page_count') };
  }
}

export function createBetterSqlite3(dir: string): SqliteStore {
  return new SqliteStore(dir);
}
