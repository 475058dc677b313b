/**
 * Concurrent readers (`npm run bench:readers -- --n 3M`): gets per second from 1, 2, … worker
 * threads reading one map at once, each with its own read-only open (bucket-map's `readOnly: true`,
 * lmdb's `readOnly: true`), against the same store read by one thread in the same process.
 *
 * Each run is a fresh process per store: it writes N keys of the usual workload (untimed), closes
 * the store, then for each reader count R starts R workers that open the store, read the first
 * WARM_UP keys of their slice (so the code is compiled) and wait; on one
 * signal they read N keys between them (worker r the r-th slice of the keys, per key, checking
 * every value) and the time is taken from the signal to the last worker's end. Keys and values
 * reach the workers in SharedArrayBuffers, so no worker copies or generates data while timed.
 *
 * Options: --n N (default 3M), --runs R (default 3), --readers 1,2 (default: 1 up to the machine's
 * cores), --stores host,wasm,lmdb (default host,lmdb), --seed S. Results go to the `<N> readers`
 * section of bench/RESULTS.md.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { buildWorkload, DEFAULT_SEED, KEY_BYTES, VALUE_BYTES } from './workload.js';
import { flagValue, parseCount } from './options.js';
import { parseRuns, runEngines, scriptMain } from './engine-runs.js';
import { cell, int, machineLine, runStamp, sizeLabel, table, times2, writeMarkdown } from './report.js';
import { stat } from './summary.js';
import { STORED_VALUE_BYTES, writeRefCount } from './stores/store.js';

const STORES = ['host', 'wasm', 'lmdb'] as const;
type ReaderStore = (typeof STORES)[number];
const LABELS: Record<ReaderStore, string> = { host: 'bucket-map-host', wasm: 'bucket-map-wasm', lmdb: 'lmdb' };
const BATCH = 1024;
/** Keys each worker reads before it says it is ready (they are read again when timed). */
const WARM_UP = 20_000;

interface ChildArgs { store: ReaderStore; n: number; seed: number; dir: string; readers: number[] }
/** Gets per second by reader count (as a string key, for JSON). */
type ChildResult = Record<string, number>;

interface ReaderData { store: ReaderStore; dir: string; keys: SharedArrayBuffer; values: SharedArrayBuffer; from: number; to: number }

const mapConfig = (store: ReaderStore, dir: string) => ({ maxBuckets: 1024, engine: store === 'wasm' ? 'wasm' as const : 'host' as const, restartFile: path.join(dir, 'map') });
const lmdbOptions = (dir: string) => ({ path: path.join(dir, 'lmdb'), keyEncoding: 'binary' as const, encoding: 'binary' as const, cache: false, compression: false });

/** Writes the N keys (untimed) and closes the store. */
async function writeStore(store: ReaderStore, dir: string, keys: Buffer, values: Buffer, n: number): Promise<void> {
  if (store === 'lmdb') {
    const { open } = await import('lmdb');
    const db = open<Buffer, Buffer>(lmdbOptions(dir));
    const value = Buffer.alloc(STORED_VALUE_BYTES);
    for (let i = 0; i < n; i += 10_000) {
      db.transactionSync(() => {
        for (let j = i; j < Math.min(n, i + 10_000); j++) {
          values.copy(value, 0, j * VALUE_BYTES, (j + 1) * VALUE_BYTES);
          writeRefCount(value, 16, 1);
          db.putSync(keys.subarray(j * KEY_BYTES, (j + 1) * KEY_BYTES), value);
        }
      });
    }
    await db.close();
    return;
  }
  const { BucketMap } = await import('../host/index.js');
  const map = new BucketMap(mapConfig(store, dir));
  for (let i = 0; i < n; i += BATCH) {
    const end = Math.min(n, i + BATCH);
    const lists: Uint8Array[][] = [];
    for (let j = i; j < end; j++) lists.push([values.subarray(j * VALUE_BYTES, (j + 1) * VALUE_BYTES)]);
    map.insertMany(keys.subarray(i * KEY_BYTES, end * KEY_BYTES), lists);
  }
  map.close();
}

/** A worker: opens the store read-only, says 'ready', and on 'go' reads its slice, checking each value. */
async function reader(d: ReaderData): Promise<void> {
  const keys = Buffer.from(d.keys);
  const values = new Uint8Array(d.values);
  const port = parentPort!;
  const fail = (i: number): never => { throw new Error(`reader: wrong value for key ${i}`); };
  const same = (i: number, actual: Uint8Array): boolean => {
    for (let k = 0, o = i * VALUE_BYTES; k < VALUE_BYTES; k++) if (actual[k] !== values[o + k]) return false;
    return true;
  };
  let read: (from: number, to: number) => void;
  let close: () => Promise<void>;
  if (d.store === 'lmdb') {
    const { open } = await import('lmdb');
    const db = open<Buffer, Buffer>({ ...lmdbOptions(d.dir), readOnly: true });
    const key = Buffer.alloc(KEY_BYTES);
    read = (from, to) => {
      for (let i = from; i < to; i++) {
        for (let k = 0, o = i * KEY_BYTES; k < KEY_BYTES; k++) key[k] = keys[o + k];
        const v = db.getBinaryFast(key);
        if (v === undefined || !same(i, v)) fail(i);
      }
    };
    close = () => db.close();
  } else {
    const { BucketMap } = await import('../host/index.js');
    // Every bucket mapped at open, as a server that opened the map a while ago has them.
    const map = new BucketMap({ ...mapConfig(d.store, d.dir), readOnly: true, checkFilesAtOpen: true });
    const view = map.packed(keys);
    const target = new Uint8Array(VALUE_BYTES);
    read = (from, to) => {
      for (let i = from; i < to; i++) if (view.readInto(i, target) !== 1 || !same(i, target)) fail(i);
    };
    close = async () => map.close();
  }
  // Untimed: the code a read runs is compiled before the signal, in every worker.
  read(d.from, Math.min(d.to, d.from + WARM_UP));
  port.on('message', (m: string) => {
    if (m === 'go') {
      read(d.from, d.to);
      port.postMessage('done');
    } else {
      void close().then(() => port.postMessage('closed'));
    }
  });
  port.postMessage('ready');
}

/** Waits for the next message of each worker. */
const each = (workers: Worker[]): Promise<unknown[]> => Promise.all(workers.map((w) => new Promise((resolve, reject) => {
  w.once('message', resolve);
  w.once('error', reject);
})));

async function child(a: ChildArgs): Promise<ChildResult> {
  const w = buildWorkload(a.n, a.seed);
  const keys = w.insert.keys;
  const values = w.insert.values;
  await writeStore(a.store, a.dir, keys, values, a.n);
  const sharedKeys = new SharedArrayBuffer(keys.length);
  new Uint8Array(sharedKeys).set(keys);
  const sharedValues = new SharedArrayBuffer(values.length);
  new Uint8Array(sharedValues).set(values);
  const result: ChildResult = {};
  const script = fileURLToPath(import.meta.url);
  for (const r of a.readers) {
    const workers: Worker[] = [];
    for (let k = 0; k < r; k++) {
      const data: ReaderData = {
        store: a.store, dir: a.dir, keys: sharedKeys, values: sharedValues,
        from: Math.floor((k * a.n) / r), to: Math.floor(((k + 1) * a.n) / r),
      };
      workers.push(new Worker(script, { workerData: data }));
    }
    await each(workers);
    const started = performance.now();
    for (const worker of workers) worker.postMessage('go');
    await each(workers);
    const rate = a.n / ((performance.now() - started) / 1000);
    for (const worker of workers) worker.postMessage('close');
    await each(workers);
    await Promise.all(workers.map((worker) => worker.terminate()));
    result[String(r)] = rate;
    process.stderr.write(`[readers ${a.store}] ${r} reader${r === 1 ? '' : 's'}: ${Math.round(rate).toLocaleString('en-US')} gets/s\n`);
  }
  return result;
}

function parseReaders(text: string): number[] {
  const counts = text.split(',').map(Number);
  if (counts.some((c) => !Number.isInteger(c) || c < 1 || c > 64)) throw new RangeError('--readers must list thread counts from 1 to 64, e.g. 1,2');
  return counts;
}

function parseStores(text: string): ReaderStore[] {
  const stores = text.split(',');
  for (const s of stores) if (!(STORES as readonly string[]).includes(s)) throw new RangeError(`--stores: unknown store ${s} (host, wasm, lmdb)`);
  return stores as ReaderStore[];
}

function parent(argv: string[]): void {
  const n = parseCount(flagValue(argv, 'n', '3M'));
  const runs = parseRuns(flagValue(argv, 'runs', '3'));
  const readers = parseReaders(flagValue(argv, 'readers', Array.from({ length: os.availableParallelism() }, (_, i) => i + 1).join(',')));
  const stores = parseStores(flagValue(argv, 'stores', 'host,lmdb'));
  const seed = Number(flagValue(argv, 'seed', String(DEFAULT_SEED)));
  const { results, root, version, machine, started } = runEngines<ChildResult, ReaderStore>(import.meta.url, 'readers', runs, stores, os.tmpdir(),
    (store, dir) => ({ store, n, seed, dir, readers }), (run, store) => `readers: run ${run}/${runs}, ${store}`);
  const rows = stores.map((s) => {
    const rates = results.get(s)!;
    const ratios = readers.slice(1).map((r) => cell(stat(rates.map((x) => x[String(r)] / x[String(readers[0])])), times2, runs));
    return [LABELS[s], ...readers.map((r) => cell(stat(rates.map((x) => x[String(r)])), int, runs)), ...ratios];
  });
  const header = ['store', ...readers.map((r) => `${r} reader${r === 1 ? '' : 's'}`), ...readers.slice(1).map((r) => `${r} against ${readers[0]}`)];
  const section = `## Concurrent readers: run of ${runStamp(started)}

N = ${n.toLocaleString('en-US')} keys, ${runs} runs per store, each in a fresh process; gets per second by all readers together, median (min–max); the ratios are taken within each run. Seed 0x${seed.toString(16)}. Written by \`npm run bench:readers -- --n ${sizeLabel(n)} --runs ${runs} --readers ${readers.join(',')} --stores ${stores.join(',')}\`.

${machineLine(machine)}
- bucket-map ${version}, maxBuckets 1024, default codec bytes(16), a persistent map opened with \`readOnly: true\` in each worker; lmdb with \`readOnly: true\`, binary keys and values, no cache, no compression, read by \`getBinaryFast\`

${table(header, rows)}

Each run writes the N keys once (untimed), closes the store, and then, for each reader count R, starts R worker threads that each open the store (bucket-map with \`checkFilesAtOpen: true\`, so every bucket is mapped before the clock starts, as in a server that opened the map earlier), read the first ${WARM_UP.toLocaleString('en-US')} keys of their slice untimed (so the code is compiled), and wait. On one signal they read the N keys between them, worker r the r-th slice, one key per call (bucket-map: \`readInto\` through a \`packed()\` view of the shared key buffer; lmdb: \`getBinaryFast\` of a 32-byte key copied into one scratch buffer), each value compared with the workload's; the time runs from the signal to the last worker's end. The reader counts run in the order given, in one process, with the files in the page cache. Figures are truncated, not rounded.`;
  writeMarkdown(path.join(root, 'bench', 'RESULTS.md'), `${sizeLabel(n)} readers`, section);
  process.stdout.write(`${section}\n`);
}

// A worker's failure (a wrong value, an open refused) surfaces as its 'error' event in the run.
if (isMainThread) scriptMain('bench:readers', child, parent);
else void reader(workerData as ReaderData);
