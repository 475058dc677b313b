/**
 * Every store the suite knows. Adapters are imported only when a worker creates one, so a peer
 * that fails to install or load fails its own runs and nothing else.
 */
import type { StoreSpec } from './store.js';

export const STORES: readonly StoreSpec[] = [
  {
    name: 'bucket-map-wasm',
    pkg: 'bucket-map',
    persistent: true,
    notes: "engine 'wasm', maxBuckets 1024, default codec bytes(16); insert(), readInto() (allocation-free read), readManyInto() of 1,024 keys for getMany, addref(), deleteKey(); close() flushes without fsync",
    create: async (dir) => (await import('./bucket-map.js')).createBucketMap('wasm', dir),
  },
  {
    name: 'bucket-map-host',
    pkg: 'bucket-map',
    persistent: true,
    notes: "engine 'host', otherwise as bucket-map-wasm",
    create: async (dir) => (await import('./bucket-map.js')).createBucketMap('host', dir),
  },
  {
    name: 'lmdb',
    pkg: 'lmdb',
    persistent: true,
    notes: 'binary keys and values (24 B: value + u64 refCount), cache off, default sync settings (every commit flushed to disk, in the background with overlappingSync); putSync/removeSync in transactionSync of 10k; getBinaryFast; update = read-modify-write in transactionSync',
    create: async (dir) => (await import('./lmdb.js')).createLmdb(dir, false),
  },
  {
    name: 'lmdb-writemap',
    pkg: 'lmdb',
    persistent: true,
    notes: 'as lmdb, with useWritemap: true',
    create: async (dir) => (await import('./lmdb.js')).createLmdb(dir, true),
  },
  {
    name: 'classic-level',
    pkg: 'classic-level',
    persistent: true,
    notes: "buffer encodings, 24 B values; writes via batch() of 10k (async, sync: false); reads via getSync(); update = getSync + batched put",
    create: async (dir) => (await import('./classic-level.js')).createClassicLevel(dir),
  },
  {
    name: 'better-sqlite3',
    pkg: 'better-sqlite3',
    persistent: true,
    notes: "kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID, journal_mode=WAL, synchronous left at better-sqlite3's WAL default (NORMAL; the value is in results.json), prepared statements, transactions of 10k; update = SELECT + UPDATE",
    create: async (dir) => (await import('./better-sqlite3.js')).createBetterSqlite3(dir),
  },
  {
    name: 'js-map',
    pkg: '',
    persistent: false,
    notes: 'in memory: Map<latin1 string of the key, { bytes: Uint8Array(16) copy, refCount }>; no reopen',
    create: async () => (await import('./js-map.js')).createJsMap(),
  },
];

export function storeSpec(name: string): StoreSpec {
  const spec = STORES.find((s) => s.name === name);
  if (spec === undefined) throw new Error(`unknown store ${JSON.stringify(name)}; known: ${STORES.map((s) => s.name).join(', ')}`);
  return spec;
}
