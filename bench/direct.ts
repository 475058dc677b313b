/**
 * bucket-map alone, keys in hand (`npm run bench:direct -- --n 10M`): what a caller pays per
 * operation when its keys already sit in one buffer, read in order, as after parsing a block.
 *
 * The main benchmark (run.ts) drives every store through one adapter interface and a shared
 * harness (a key slice, a value check, batches of 10k); this script calls the library directly,
 * with no adapter between, which is the library's own cost: per-key calls index a packed() view of
 * the key buffer, batched calls take slices of it. The table's positions are random
 * either way (keys are hashed), so the map gets no help from the order of the keys. Every read is
 * checked; each run is a fresh process.
 *
 * Options: --n N (default 10M), --runs R (default 3), --engines host,wasm, --seed S, --buckets B
 * (maxBuckets, default 1024), --huge-pages (the `hugePages` option). Results go to the
 * `<N> direct` section of bench/RESULTS.md (a section of its own for other buckets or huge pages).
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { buildWorkload, DEFAULT_SEED, KEY_BYTES, VALUE_BYTES, sameValue } from './workload.js';
import { flagValue, parseCount } from './options.js';
import { parseBuckets, parseEngines, parseRuns, runEngines, scriptMain, type Engine } from './engine-runs.js';
import { cell, int, machineLine, runStamp, sizeLabel, table, writeMarkdown } from './report.js';
import { stat } from './summary.js';

const PHASES = ['insert', 'insertMany', 'get', 'getMany', 'miss', 'hasManyMiss', 'addref', 'addrefMany', 'delete', 'deleteMany', 'insertPresized', 'insertManyPresized'] as const;
type DirectPhase = (typeof PHASES)[number];
const LABELS: Record<DirectPhase, string> = {
  insert: 'insert', insertMany: 'insertMany', get: 'get hit (readInto)', getMany: 'getMany hit (readManyInto)',
  miss: 'get miss (readInto)', hasManyMiss: 'hasMany miss', addref: 'addref (50%)', addrefMany: 'addrefMany (50%)', delete: 'delete (10%)', deleteMany: 'deleteMany (10%)',
  insertPresized: 'insert, presized', insertManyPresized: 'insertMany, presized',
};
const BATCH = 1024;

interface ChildArgs { engine: Engine; n: number; seed: number; dir: string; buckets: number; hugePages: boolean }

/** One run: every phase on one engine. Arguments come as one JSON string (see worker.ts for why). */
async function child(a: ChildArgs): Promise<Record<DirectPhase, number>> {
  const { BucketMap } = await import('../host/index.js');
  const { n } = a;
  const w = buildWorkload(n, a.seed);
  // One buffer of keys read front to back: the insert stream, whose order is random but irrelevant.
  const keys = w.insert.keys;
  const value = (i: number): Buffer => w.insert.values.subarray(i * VALUE_BYTES, (i + 1) * VALUE_BYTES);
  const rate: Partial<Record<DirectPhase, number>> = {};
  const time = (phase: DirectPhase, ops: number, fn: () => void): void => {
    const t = performance.now();
    fn();
    rate[phase] = ops / ((performance.now() - t) / 1000);
    process.stderr.write(`[direct ${a.engine}] ${phase}: ${Math.round(rate[phase]!).toLocaleString('en-US')}/s\n`);
  };
  const fail = (what: string, i: number): never => { throw new Error(`${what} wrong for key ${i}`); };
  const config = (folder: string) => ({ maxBuckets: a.buckets, engine: a.engine, drives: [path.join(a.dir, folder)], hugePages: a.hugePages });
  // Slot lists are made per call or per batch, as a caller would: holding N of them would give the
  // collector tens of millions of objects to trace and slow every phase.
  const listsFrom = (i: number, end: number): Uint8Array[][] => {
    const lists = new Array<Uint8Array[]>(end - i);
    for (let j = i; j < end; j++) lists[j - i] = [value(j)];
    return lists;
  };

  // Per-key calls index a packed() view of the key buffer, as a caller holding packed keys would.
  const batched = new BucketMap(config('many'));
  time('insertMany', n, () => {
    for (let i = 0; i < n; i += BATCH) {
      const end = Math.min(n, i + BATCH);
      batched.insertMany(keys.subarray(i * KEY_BYTES, end * KEY_BYTES), listsFrom(i, end));
    }
  });
  batched.close();

  const map = new BucketMap(config('one'));
  const view = map.packed(keys);
  time('insert', n, () => { for (let i = 0; i < n; i++) view.insert(i, [value(i)]); });
  const target = new Uint8Array(VALUE_BYTES);
  time('get', n, () => {
    for (let i = 0; i < n; i++) if (view.readInto(i, target) !== 1 || !sameValue(w.insert, i, target)) fail('get', i);
  });
  const out = new Uint8Array(BATCH * VALUE_BYTES);
  const slots = new Int32Array(BATCH);
  time('getMany', n, () => {
    for (let i = 0; i < n; i += BATCH) {
      const count = Math.min(BATCH, n - i);
      if (map.readManyInto(keys.subarray(i * KEY_BYTES, (i + count) * KEY_BYTES), out, slots) !== count) fail('getMany count', i);
      for (let j = 0; j < count; j++) if (slots[j] !== 1 || !sameValue(w.insert, i + j, out, j * VALUE_BYTES)) fail('getMany', i + j);
    }
  });
  const absent = w.absent;
  const absentView = map.packed(absent);
  time('miss', n, () => {
    for (let i = 0; i < n; i++) if (absentView.readInto(i, target) !== -1) fail('miss', i);
  });
  time('hasManyMiss', n, () => {
    for (let i = 0; i < n; i += BATCH) {
      const found = map.hasMany(absent.subarray(i * KEY_BYTES, Math.min(n, i + BATCH) * KEY_BYTES));
      for (let j = 0; j < found.length; j++) if (found[j]) fail('hasMany miss', i + j);
    }
  });
  // Both refCount phases start from files written back (untimed): the first write to each clean
  // page of a mapping then traps into the file system, as in the harness's update phase at 10M,
  // which starts after the kernel's dirty expiry.
  const half = Math.ceil(n / 2);
  map.flush({ durable: true });
  time('addref', half, () => { for (let i = 0; i < n; i += 2) if (view.addref(i) !== 2) fail('addref', i); });
  const evens = Buffer.alloc(half * KEY_BYTES);
  for (let i = 0; i < half; i++) keys.copy(evens, i * KEY_BYTES, 2 * i * KEY_BYTES, (2 * i + 1) * KEY_BYTES);
  const refCounts = new Float64Array(BATCH);
  map.flush({ durable: true });
  time('addrefMany', half, () => {
    for (let i = 0; i < half; i += BATCH) {
      const end = Math.min(half, i + BATCH);
      map.addrefMany(evens.subarray(i * KEY_BYTES, end * KEY_BYTES), refCounts);
      for (let j = 0; j < end - i; j++) if (refCounts[j] !== 3) fail('addrefMany', 2 * (i + j));
    }
  });
  const tenth = Math.floor(n / 10);
  time('delete', tenth, () => { for (let i = 0; i < tenth; i++) if (!view.delete(i)) fail('delete', i); });
  time('deleteMany', tenth, () => {
    for (let i = tenth; i < 2 * tenth; i += BATCH) {
      const end = Math.min(2 * tenth, i + BATCH);
      if (map.deleteMany(keys.subarray(i * KEY_BYTES, end * KEY_BYTES)) !== end - i) fail('deleteMany', i);
    }
  });
  if (map.size !== n - 2 * tenth) throw new Error(`size ${map.size}, expected ${n - 2 * tenth}`);
  map.close();

  // A caller that knows how many keys it loads says so first (setAnticipatedCount, timed with the
  // inserts, into a fresh map). Run last, so the phases above stay comparable with older runs.
  const presized = (phase: DirectPhase, fill: (m: InstanceType<typeof BucketMap>) => void): void => {
    const m = new BucketMap(config(phase));
    time(phase, n, () => {
      m.setAnticipatedCount(n);
      fill(m);
    });
    if (m.size !== n) throw new Error(`${phase}: size ${m.size}, expected ${n}`);
    const check = m.packed(keys);
    for (let i = 0; i < n; i += 997) if (check.readInto(i, target) !== 1 || !sameValue(w.insert, i, target)) fail(phase, i);
    process.stderr.write(`[direct ${a.engine}] ${phase}: ${m.stats().index.resizes} index growths\n`);
    m.close();
  };
  presized('insertPresized', (m) => {
    const v = m.packed(keys);
    for (let i = 0; i < n; i++) v.insert(i, [value(i)]);
  });
  presized('insertManyPresized', (m) => {
    for (let i = 0; i < n; i += BATCH) {
      const end = Math.min(n, i + BATCH);
      m.insertMany(keys.subarray(i * KEY_BYTES, end * KEY_BYTES), listsFrom(i, end));
    }
  });
  return rate as Record<DirectPhase, number>;
}

function parent(argv: string[]): void {
  const n = parseCount(flagValue(argv, 'n', '10M'));
  const runs = parseRuns(flagValue(argv, 'runs', '3'));
  const engines = parseEngines(flagValue(argv, 'engines', 'host,wasm'));
  const seed = Number(flagValue(argv, 'seed', String(DEFAULT_SEED)));
  const buckets = parseBuckets(flagValue(argv, 'buckets', '1024'));
  const hugePages = argv.includes('--huge-pages');
  const variant = `${buckets === 1024 ? '' : ` --buckets ${buckets}`}${hugePages ? ' --huge-pages' : ''}`;
  const { results, root, version, machine, started } = runEngines<Record<DirectPhase, number>>(import.meta.url, 'direct', runs, engines, os.tmpdir(),
    (engine, dir) => ({ engine, n, seed, dir, buckets, hugePages }), (run, engine) => `direct: run ${run}/${runs}, ${engine}${variant}`);
  const rows = engines.map((e) => [`bucket-map-${e}`, ...PHASES.map((p) => cell(stat(results.get(e)!.map((r) => r[p])), int, runs))]);
  const label = `${sizeLabel(n)} direct${buckets === 1024 ? '' : `, ${buckets} buckets`}${hugePages ? ', hugePages' : ''}`;
  const section = `## bucket-map alone, keys in hand${variant === '' ? '' : ` (${variant.trim()})`}: run of ${runStamp(started)}

N = ${n.toLocaleString('en-US')} keys, ${runs} runs per engine, each in a fresh process; operations per second, median (min–max). Seed 0x${seed.toString(16)}. Written by \`npm run bench:direct -- --n ${sizeLabel(n)} --runs ${runs}${engines.join(',') === 'host,wasm' ? '' : ` --engines ${engines.join(',')}`}${variant}\`.

${machineLine(machine)}
- bucket-map ${version}, maxBuckets ${buckets}${hugePages ? ', hugePages' : ''}, default codec bytes(16), temporary maps (no restart file)

${table(['engine', ...PHASES.map((p) => LABELS[p])], rows)}

Keys are read in the order they sit in one buffer (insert order); the table positions they hash to are random. The per-key calls (insert, readInto, addref, delete) index a \`packed()\` view of that buffer. Each get and getMany read is compared with its value; each miss must miss; addref must return 2 and addrefMany, on the same keys (packed into a buffer of their own beforehand, untimed, ${BATCH} per call), 3; both start from files written back by an untimed \`flush({ durable: true })\`; deletes must find their key; the size is checked at the end. insertMany fills a separate map in batches of ${BATCH}; getMany and hasMany pass ${BATCH} keys per call as one packed buffer. The presized phases run last, each into a fresh map told the count first (\`setAnticipatedCount(N)\`, timed with the inserts); each checks the size and every 997th value. Figures are truncated, not rounded.`;
  writeMarkdown(path.join(root, 'bench', 'RESULTS.md'), label, section);
  process.stdout.write(`${section}\n`);
}

scriptMain('bench:direct', child, parent);
