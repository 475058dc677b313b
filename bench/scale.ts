/**
 * bucket-map at scale (`npm run bench:scale -- --n 100M`): the README says the map holds hundreds
 * of millions of entries without touching the JS heap; this run shows it, with numbers.
 *
 * The main benchmark (run.ts) holds its whole workload in memory before timing, about 60 bytes
 * per key in each of several streams, which stops it near 10M–50M keys on this machine. Here keys
 * are computed from their numbers (workload.ts `countedKeys`), 65,536 at a time, before each
 * chunk's timed calls, so the process holds no key set and its anonymous memory is the map's own.
 * One persistent map; phases, each over every key unless said:
 *   insert (insertMany, 1,024 per call, growing as it goes, or presized with --presize),
 *   close, reopen, get (readInto through a packed() view), getMany (readManyInto, 1,024 per call),
 *   miss and hasMany miss (a tenth as many absent keys), addrefMany and deleteMany (a tenth each),
 *   close and reopen again, a read of every 101st key, close, and `BucketMap.verify` over the files.
 * Every read is checked against the key's value and refCount.
 *
 * Options: --n N (default 100M), --runs R (default 1), --engines host,wasm (default host),
 * --buckets B (default 1024), --presize, --seed S, --tmp DIR.
 * Results go to the `<N> scale` section of bench/RESULTS.md.
 */
import { setImmediate } from 'node:timers/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { countedKeys, DEFAULT_SEED, KEY_BYTES, VALUE_BYTES, valueOf } from './workload.js';
import { flagValue, parseCount } from './options.js';
import { parseBuckets, parseEngines, parseRuns, runEngines, scriptMain, type Engine } from './engine-runs.js';
import { writebackSettings } from './machine.js';
import { cpuSince, diskUse, RssSampler } from './measure.js';
import { cell, dec1, int, machineLine, runStamp, sizeLabel, table, writeMarkdown } from './report.js';
import { stat } from './summary.js';

const CHUNK = 65_536;
const BATCH = 1_024;
const SAMPLE_STRIDE = 101;

const RATES = ['insert', 'insertFirstTenth', 'insertLastTenth', 'get', 'getMany', 'miss', 'hasManyMiss', 'addrefMany', 'deleteMany'] as const;
const TIMES = ['close', 'reopen', 'reopenAfterChanges', 'sampleRead', 'verify'] as const;
type RatePhase = (typeof RATES)[number];
type TimePhase = (typeof TIMES)[number];

interface ScaleArgs { engine: Engine; n: number; buckets: number; seed: number; presize: boolean; dir: string }

interface ScaleRun {
  rate: Record<RatePhase, number>;
  ms: Record<TimePhase, number>;
  /** RssAnon before the map opened, and the highest RssAnon and RssFile sampled after. */
  anonBaseKiB: number;
  anonPeakKiB: number;
  filePeakKiB: number;
  diskBytesLoaded: number;
  diskBytesEnd: number;
  indexLoad: number;
  indexResizes: number;
  resizeMs: number;
  insertCpu: { userMs: number; systemMs: number };
  verifiedEntries: number;
}

function sameBytes(a: Uint8Array, ao: number, b: Uint8Array, bo: number, len: number): boolean {
  for (let k = 0; k < len; k++) if (a[ao + k] !== b[bo + k]) return false;
  return true;
}

/** One run in a fresh process: every phase on one engine. */
async function child(a: ScaleArgs): Promise<ScaleRun> {
  const { BucketMap } = await import('../host/index.js');
  const { n, seed } = a;
  const tenth = Math.floor(n / 10);
  const keys = Buffer.alloc(CHUNK * KEY_BYTES);
  const values = Buffer.alloc(CHUNK * VALUE_BYTES);
  const rss = new RssSampler();
  const log = (text: string): void => { process.stderr.write(`[scale ${a.engine}] ${text}\n`); };
  const fail = (what: string, i: number): never => { throw new Error(`${what} wrong for key ${i}`); };

  /**
   * Calls `timed(count, first)` for each chunk of keys first … end − 1, keys (and values) made
   * untimed before it. The event loop turns between chunks, untimed, as in an application: files
   * replaced by growth are unmapped only then (see BUCKET_MAP_MAPPING_LIMIT in the README).
   */
  const overChunks = async (first: number, end: number, timed: (count: number, from: number) => void, withValues = false): Promise<number> => {
    let ms = 0;
    for (let from = first; from < end; from += CHUNK) {
      await setImmediate();
      const count = Math.min(CHUNK, end - from);
      countedKeys(from, count, seed, keys);
      if (withValues) for (let j = 0; j < count; j++) valueOf(from + j, values, j * VALUE_BYTES);
      const t = performance.now();
      timed(count, from);
      ms += performance.now() - t;
      rss.sample();
    }
    return ms;
  };
  const rate: Partial<Record<RatePhase, number>> = {};
  const ms: Partial<Record<TimePhase, number>> = {};
  const record = (phase: RatePhase, ops: number, took: number): void => {
    rate[phase] = ops / (took / 1000);
    log(`${phase}: ${int(rate[phase]!)}/s (${int(took)} ms)`);
  };
  const timeOnce = <R>(phase: TimePhase, fn: () => R): R => {
    const t = performance.now();
    const r = fn();
    ms[phase] = performance.now() - t;
    log(`${phase}: ${ms[phase]!.toFixed(1)} ms`);
    return r;
  };

  const anonBaseKiB = rss.sample().anonKiB;
  const restartFile = path.join(a.dir, 'restart');
  const config = { maxBuckets: a.buckets, engine: a.engine, restartFile } as const;
  let map = new BucketMap(config);

  // Insert, growing as it goes (or presized): a progress line and a rate per tenth of N.
  const cpu = process.cpuUsage();
  let insertMs = 0;
  const t0 = performance.now();
  if (a.presize) {
    const t = performance.now();
    map.setAnticipatedCount(n);
    insertMs += performance.now() - t;
  }
  const tenthRates: number[] = [];
  for (let part = 0; part < 10; part++) {
    const from = Math.floor((n * part) / 10);
    const end = Math.floor((n * (part + 1)) / 10);
    const took = await overChunks(from, end, (count) => {
      for (let j = 0; j < count; j += BATCH) {
        const m = Math.min(BATCH, count - j);
        const lists = new Array<Uint8Array[]>(m);
        for (let k = 0; k < m; k++) lists[k] = [values.subarray((j + k) * VALUE_BYTES, (j + k + 1) * VALUE_BYTES)];
        map.insertMany(keys.subarray(j * KEY_BYTES, (j + m) * KEY_BYTES), lists);
      }
    }, true);
    insertMs += took;
    tenthRates.push((end - from) / (took / 1000));
    const s = map.stats();
    log(`insert ${(part + 1) * 10}%: ${int(tenthRates[part])}/s over this tenth, index load ${s.index.load.toFixed(3)}, ${int((performance.now() - t0) / 1000)} s`);
  }
  const insertCpu = cpuSince(cpu);
  record('insert', n, insertMs);
  rate.insertFirstTenth = tenthRates[0];
  rate.insertLastTenth = tenthRates[9];
  if (map.size !== n) throw new Error(`size ${map.size} after the inserts, expected ${n}`);
  const loaded = map.stats();
  timeOnce('close', () => map.close());
  const diskBytesLoaded = diskUse(a.dir).bytes;
  map = timeOnce('reopen', () => new BucketMap(config));

  const out = new Uint8Array(BATCH * VALUE_BYTES);
  const slots = new Int32Array(BATCH);
  const refCounts = new Float64Array(BATCH);
  record('get', n, await overChunks(0, n, (count, from) => {
    const view = map.packed(keys.subarray(0, count * KEY_BYTES));
    for (let j = 0; j < count; j++) {
      if (view.readInto(j, out) !== 1 || map.lastRefCount !== 1 || !sameBytes(out, 0, values, j * VALUE_BYTES, VALUE_BYTES)) fail('get', from + j);
    }
  }, true));
  record('getMany', n, await overChunks(0, n, (count, from) => {
    for (let j = 0; j < count; j += BATCH) {
      const m = Math.min(BATCH, count - j);
      if (map.readManyInto(keys.subarray(j * KEY_BYTES, (j + m) * KEY_BYTES), out, slots, refCounts) !== m) fail('getMany count', from + j);
      for (let k = 0; k < m; k++) {
        if (slots[k] !== 1 || refCounts[k] !== 1 || !sameBytes(out, k * VALUE_BYTES, values, (j + k) * VALUE_BYTES, VALUE_BYTES)) fail('getMany', from + j + k);
      }
    }
  }, true));
  // Absent keys are numbers n … n + tenth − 1: word 0 is a bijection of the number, so none is present.
  record('miss', tenth, await overChunks(n, n + tenth, (count, from) => {
    const view = map.packed(keys.subarray(0, count * KEY_BYTES));
    for (let j = 0; j < count; j++) if (view.readInto(j, out) !== -1) fail('miss', from + j);
  }));
  record('hasManyMiss', tenth, await overChunks(n, n + tenth, (count, from) => {
    for (let j = 0; j < count; j += BATCH) {
      const found = map.hasMany(keys.subarray(j * KEY_BYTES, Math.min(count, j + BATCH) * KEY_BYTES));
      for (let k = 0; k < found.length; k++) if (found[k]) fail('hasMany miss', from + j + k);
    }
  }));
  // The first tenth gets refCount 2, the last tenth is deleted; both start from files written back.
  map.flush({ durable: true });
  record('addrefMany', tenth, await overChunks(0, tenth, (count, from) => {
    for (let j = 0; j < count; j += BATCH) {
      const m = Math.min(BATCH, count - j);
      if (map.addrefMany(keys.subarray(j * KEY_BYTES, (j + m) * KEY_BYTES), refCounts) !== m) fail('addrefMany count', from + j);
      for (let k = 0; k < m; k++) if (refCounts[k] !== 2) fail('addrefMany', from + j + k);
    }
  }));
  map.flush({ durable: true });
  record('deleteMany', tenth, await overChunks(n - tenth, n, (count, from) => {
    for (let j = 0; j < count; j += BATCH) {
      const m = Math.min(BATCH, count - j);
      if (map.deleteMany(keys.subarray(j * KEY_BYTES, (j + m) * KEY_BYTES)) !== m) fail('deleteMany', from + j);
    }
  }));
  const live = n - tenth;
  if (map.size !== live) throw new Error(`size ${map.size} after the deletes, expected ${live}`);
  map.close();

  map = timeOnce('reopenAfterChanges', () => new BucketMap(config));
  if (map.size !== live) throw new Error(`size ${map.size} after reopening, expected ${live}`);
  const one = Buffer.alloc(KEY_BYTES);
  const expected = Buffer.alloc(VALUE_BYTES);
  timeOnce('sampleRead', () => {
    for (let i = 0; i < n; i += SAMPLE_STRIDE) {
      countedKeys(i, 1, seed, one);
      const got = map.readInto(one, out);
      if (i >= n - tenth) {
        if (got !== -1) fail('a deleted key after reopening', i);
        continue;
      }
      valueOf(i, expected, 0);
      if (got !== 1 || map.lastRefCount !== (i < tenth ? 2 : 1) || !sameBytes(out, 0, expected, 0, VALUE_BYTES)) fail('a read after reopening', i);
    }
  });
  const end = map.stats();
  map.close();
  const report = timeOnce('verify', () => BucketMap.verify({ restartFile }));
  if (!report.ok) throw new Error(`verify found ${report.problemCount} problems: ${JSON.stringify(report.problems.slice(0, 3))}`);
  if (report.entries !== live) throw new Error(`verify counted ${report.entries} entries, expected ${live}`);
  rss.sample();
  return {
    rate: rate as Record<RatePhase, number>,
    ms: ms as Record<TimePhase, number>,
    anonBaseKiB,
    anonPeakKiB: rss.peakAnonKiB,
    filePeakKiB: rss.peakFileKiB,
    diskBytesLoaded,
    diskBytesEnd: diskUse(a.dir).bytes,
    indexLoad: end.index.load,
    indexResizes: loaded.index.resizes,
    resizeMs: loaded.index.resizeMs,
    insertCpu,
    verifiedEntries: report.entries,
  };
}

const RATE_LABELS: Record<RatePhase, string> = {
  insert: 'insert (insertMany)', insertFirstTenth: 'insert, first tenth', insertLastTenth: 'insert, last tenth',
  get: 'get hit (readInto)', getMany: 'getMany hit (readManyInto)', miss: 'get miss (readInto, N/10)',
  hasManyMiss: 'hasMany miss (N/10)', addrefMany: 'addrefMany (N/10)', deleteMany: 'deleteMany (N/10)',
};
const TIME_LABELS: Record<TimePhase, string> = {
  close: 'close after the inserts', reopen: 'reopen, ready to serve', reopenAfterChanges: 'reopen after the changes',
  sampleRead: `read every ${SAMPLE_STRIDE}st key after it (each bucket mapped at its first read)`, verify: '`BucketMap.verify` of the files',
};

function parent(argv: string[]): void {
  const n = parseCount(flagValue(argv, 'n', '100M'));
  const runs = parseRuns(flagValue(argv, 'runs', '1'));
  const engines = parseEngines(flagValue(argv, 'engines', 'host'));
  const buckets = parseBuckets(flagValue(argv, 'buckets', '1024'));
  const seed = Number(flagValue(argv, 'seed', String(DEFAULT_SEED)));
  const presize = argv.includes('--presize');
  if (n * 1.1 > 2 ** 32) throw new RangeError('--n: keys are numbered in 32 bits, so at most 3.9 billion');
  const writeback = writebackSettings();
  const { results, root, version, machine, started } = runEngines<ScaleRun>(import.meta.url, 'scale', runs, engines, flagValue(argv, 'tmp', os.tmpdir()),
    (engine, dir): ScaleArgs => ({ engine, n, buckets, seed, presize, dir }), (run, engine) => `scale: run ${run}/${runs}, ${engine}, N = ${n.toLocaleString('en-US')}`);
  const live = n - Math.floor(n / 10);
  const figure = (pick: (r: ScaleRun) => number, fmt: (x: number) => string) =>
    engines.map((e) => cell(stat(results.get(e)!.map(pick)), fmt, runs));
  const rows: string[][] = [
    ...RATES.map((p) => [`${RATE_LABELS[p]}, /s`, ...figure((r) => r.rate[p], int)]),
    ...TIMES.map((p) => [`${TIME_LABELS[p]}, ms`, ...figure((r) => r.ms[p], dec1)]),
    ['CPU time of the inserts, user + system, s', ...figure((r) => (r.insertCpu.userMs + r.insertCpu.systemMs) / 1000, dec1)],
    ['of it system time, s', ...figure((r) => r.insertCpu.systemMs / 1000, dec1)],
    ['index growths during the inserts', ...figure((r) => r.indexResizes, int)],
    ['time in index growths, s', ...figure((r) => r.resizeMs / 1000, dec1)],
    ['disk after the inserts, bytes per entry', ...figure((r) => r.diskBytesLoaded / n, dec1)],
    ['disk at the end, bytes per live entry', ...figure((r) => r.diskBytesEnd / live, dec1)],
    ['index load at the end', ...figure((r) => r.indexLoad, (x) => (Math.floor(x * 1000) / 1000).toFixed(3))],
    ['RssAnon before the map opened, MiB', ...figure((r) => r.anonBaseKiB / 1024, dec1)],
    ['RssAnon, highest sample after, MiB', ...figure((r) => r.anonPeakKiB / 1024, dec1)],
    ['RssAnon growth, MiB', ...figure((r) => (r.anonPeakKiB - r.anonBaseKiB) / 1024, dec1)],
    ['RssFile, highest sample, MiB', ...figure((r) => r.filePeakKiB / 1024, dec1)],
  ];
  const flags = [`--n ${sizeLabel(n)}`, ...(runs !== 1 ? [`--runs ${runs}`] : []), ...(engines.join(',') !== 'host' ? [`--engines ${engines.join(',')}`] : []),
    ...(buckets !== 1024 ? [`--buckets ${buckets}`] : []), ...(presize ? ['--presize'] : [])];
  const variant = `${buckets !== 1024 ? `, ${buckets} bucket${buckets === 1 ? "" : "s"}` : ''}${presize ? ', presized' : ''}${writeback.tuned ? ', writeback tuned' : ''}`;
  const label = `${sizeLabel(n)} scale${variant}`;
  const section = `## bucket-map at scale, ${n.toLocaleString('en-US')} keys${variant}: run of ${runStamp(started)}

${runs} run${runs === 1 ? '' : 's'} per engine, each in a fresh process${runs === 1 ? '' : '; median (min–max)'}. Seed 0x${seed.toString(16)}. Written by \`npm run bench:scale -- ${flags.join(' ')}\`.

${machineLine(machine)}
- bucket-map ${version}, maxBuckets ${buckets}, default codec bytes(16), one persistent map (restart file) per run
- Kernel writeback: ${writeback.text}${writeback.tuned ? ' (not the defaults)' : ' (the defaults)'}

${table(['', ...engines.map((e) => `bucket-map-${e}`)], rows)}

Keys are computed from their numbers 65,536 at a time, untimed, before each chunk's calls (word 0 is a bijection of the number, so the keys are distinct by construction); the process holds no key set, so RssAnon is the map's own. The inserts go through \`insertMany\`, 1,024 keys per call, ${presize ? 'into a map presized by `setAnticipatedCount(N)` (timed with them)' : 'into a map that grows as it goes'}; the first and last tenth show how the rate changes as the map grows. Every get and getMany read is compared with its value and refCount; every absent key must miss. addrefMany (the first tenth of the keys, each must reach refCount 2) and deleteMany (the last tenth, each must be found) each start from files written back by an untimed \`flush({ durable: true })\`. After a second close and reopen, every ${SAMPLE_STRIDE}st key is read back (deleted keys must miss), and after the last close \`BucketMap.verify\` reads every file and must report no problem and ${live.toLocaleString('en-US')} entries. Disk is the files' allocated blocks. RssFile counts a file's resident pages once per mapping of it, and the mappings of a closed map go only when the collector frees their Buffers (mmap-io cannot unmap), so after a reopen the same pages can be counted twice. Figures are truncated, not rounded.`;
  writeMarkdown(path.join(root, 'bench', 'RESULTS.md'), label, section);
  process.stdout.write(`${section}\n`);
}

scriptMain('bench:scale', child, parent);
