/**
 * Every store the suite knows. Adapters are imported only when a worker creates one, so a peer
 * that fails to install or load fails its own runs and nothing else.
 */
import type { StoreSpec } from './store.js';

/** Each store's notes stand alone: a run may include one variant without the other. */
const BUCKET_MAP_NOTES = 'maxBuckets 1024, default codec bytes(16); per-key calls through packed() views of the key buffers (no key sliced per call): insert(), readInto() (allocation-free read), addref(), delete(); readManyInto() of 1,024 keys for getMany; addrefMany()/unrefMany() of 1,024 keys for the batched updates, after an untimed flush({ durable: true }); deleteMany() of 1,024 keys for the batched delete; compact(); close() flushes without fsync';
const LMDB_CALLS = 'binary keys and values (24 B: value + u64 refCount), cache off; putSync/removeSync in transactionSync of 10k; getBinaryFast; update = read-modify-write in transactionSync; each key copied into one reused key buffer (lmdb-js copies it during the call)';
const LMDB_NOTES = `${LMDB_CALLS}; default sync settings (every commit flushed to disk, in the background with overlappingSync)`;

export const STORES: readonly StoreSpec[] = [
  {
    name: 'bucket-map-wasm',
    pkg: 'bucket-map',
    persistent: true,
    notes: `engine 'wasm', ${BUCKET_MAP_NOTES}`,
    create: async (dir) => (await import('./bucket-map.js')).createBucketMap('wasm', dir),
  },
  {
    name: 'bucket-map-host',
    pkg: 'bucket-map',
    persistent: true,
    notes: `engine 'host', ${BUCKET_MAP_NOTES}`,
    create: async (dir) => (await import('./bucket-map.js')).createBucketMap('host', dir),
  },
  {
    name: 'lmdb',
    pkg: 'lmdb',
    persistent: true,
    notes: LMDB_NOTES,
    create: async (dir) => (await import('./lmdb.js')).createLmdb(dir, false),
  },
  {
    name: 'lmdb-writemap',
    pkg: 'lmdb',
    persistent: true,
    notes: `useWritemap: true; otherwise ${LMDB_NOTES}`,
    create: async (dir) => (await import('./lmdb.js')).createLmdb(dir, true),
  },
  {
    // The two above flush every commit to disk; bucket-map (close() without fsync) and the other
    // peers do not, and at 1M that flush made lmdb-writemap's writes 2.6-7x slower.
    name: 'lmdb-nosync',
    pkg: 'lmdb',
    persistent: true,
    notes: `useWritemap: true, noSync: true (no flush to disk: the kernel writes the map back, as for bucket-map; survives a crash of the process, not of the machine); otherwise ${LMDB_CALLS}`,
    create: async (dir) => (await import('./lmdb.js')).createLmdb(dir, true, true),
  },
  {
    name: 'classic-level',
    pkg: 'classic-level',
    persistent: true,
    notes: "buffer encodings, 24 B values; writes via batch() of 10k (async, sync: false); reads via getSync() of a reused key buffer (writes slice each key: a batch keeps its keys); update = getSync + batched put; compaction = compactRange over every key",
    create: async (dir) => (await import('./classic-level.js')).createClassicLevel(dir),
  },
  {
    name: 'better-sqlite3',
    pkg: 'better-sqlite3',
    persistent: true,
    notes: "kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID, journal_mode=WAL, synchronous left at better-sqlite3's WAL default (NORMAL; the value is in results.json), prepared statements, keys bound from one reused key buffer, transactions of 10k; update = SELECT + UPDATE; compaction = VACUUM",
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
