/**
 * The crash promise at every file operation, not at random moments. tests/crash-steps-worker.ts
 * runs a short script (first files, growth of index and data files, a presize, a compaction,
 * flushes, close) that repeats step for step, and kills itself just before its k-th change to a
 * file or folder; this test lists the steps once, then kills a run at each chosen step and checks
 * what is left: the map reopens, removes what the kill left unreferenced, verifies, and holds every
 * flushed change and every completed one, each key otherwise at a value it had since the flush.
 *
 * Three starting points: no map yet (the first open and first files), a map closed cleanly (the
 * open on its close record, growth of full files, compaction of a populated map), and a map left
 * by a kill (so that kills land inside the open's repair too). Zero-fill writes that continue
 * another to the same file are sampled one in four; every other step is a kill point.
 * CRASH_STEPS=all kills at every step; CRASH_STEPS=n kills at every n-th listed step (default 40,
 * starting at an offset taken from the seed, so that successive runs cover different steps).
 *
 * The test also kills between two writes to the mappings, at CRASH_STORES steps per start drawn
 * at random (default 6): on the wasm engine between two records of the core's write log, on the
 * host path before a group of stores (see the worker): inside a Robin Hood shift, a delete's
 * backward shift, an insert between its cell's content and its ctrl word, a journaled update.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BucketMap, type BucketMapConfig, type EngineKind } from '../host/index.js';
import { TABLE_STORE_GROUPS, brokenPromise, expectAfterKill, stepWorkload } from './crash-workload.js';
import { ENGINES, Rng, removeDir, snapshot, strayFiles, tempDir, testSeed } from './helpers.js';

const WORKER = new URL('./crash-steps-worker.js', import.meta.url).pathname;
const STRIDE = process.env.CRASH_STEPS === 'all' ? 1 : Number(process.env.CRASH_STEPS ?? 40);
const CONTINUATION_STRIDE = process.env.CRASH_STEPS === 'all' ? 1 : 4;
const STORE_POINTS = Number(process.env.CRASH_STORES ?? 6);
const STORE_CALLS = new Set<string>(['record', 'range', ...TABLE_STORE_GROUPS]);

interface Step { n: number; phase: string; done: number; flushed: number; call: string; target: string }

interface RunEnd { killed: Step | null; steps: number }

const STEP_LINE = /^(?:step (\d+)|killed) (\S+) done (\d+) flushed (\d+) before (\S+) (.*)$/;

function parseStep(line: string, n: number): Step {
  const m = STEP_LINE.exec(line);
  if (m === null) throw new Error(`unexpected worker line: ${line}`);
  // The file name without what differs from run to run: the folder, the map id, a pid.
  const target = path.basename(m[6]).replace(/^[0-9a-f]{8}-/, '').replace(/^restart\.\d+\.\w+\.new$/, 'restart.new');
  return { n: m[1] === undefined ? n : Number(m[1]), phase: m[2], done: Number(m[3]), flushed: Number(m[4]), call: m[5], target };
}

/** What counts as a step: file operations only, or (wasm engine) each write-log record too. */
type Mode = 'files' | 'stores';

/** Runs the worker to step `killAt` (0: to the end, listing every step). */
function runWorker(config: BucketMapConfig, seed: number, killAt: number, mode: Mode = 'files'): Promise<{ end: RunEnd; trace: Step[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER, JSON.stringify(config), String(seed), String(killAt), mode]);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('close', (code, signal) => {
      const lines = out.split('\n').filter(Boolean);
      const last = lines[lines.length - 1] ?? '';
      const trace = lines.filter((l) => l.startsWith('step ')).map((l) => parseStep(l, 0));
      if (signal === 'SIGKILL' && last.startsWith('killed ')) return resolve({ end: { killed: parseStep(last, killAt), steps: killAt }, trace });
      const finished = /^finished steps (\d+)/.exec(last);
      if (code === 0 && finished !== null) return resolve({ end: { killed: null, steps: Number(finished[1]) }, trace });
      reject(new Error(`crash-steps worker exited ${code} ${signal} at step ${killAt}: ${last}\n${err}`));
    });
  });
}

/** The file steps to kill at: all but most zero-fill writes that continue one to the same file. */
function fileSteps(trace: readonly Step[], offset: number): number[] {
  const chosen: number[] = [];
  let continuations = 0;
  trace.forEach((step, i) => {
    const prev = trace[i - 1];
    const continuation = prev !== undefined && step.call === 'writeSync' && prev.call === 'writeSync' && prev.target === step.target && prev.phase === step.phase;
    if (continuation && continuations++ % CONTINUATION_STRIDE !== 0) return;
    chosen.push(step.n);
  });
  return chosen.filter((_, i) => i % STRIDE === offset % STRIDE);
}

/** The segment size of the test's maps, set from its seed: 64 KiB segments (so files of several segment files) for odd seeds, the default for even ones. */
let segmentBytes: number | undefined;

function configIn(dir: string, engine: EngineKind): BucketMapConfig {
  return { maxBuckets: 2, maxSearch: 4, engine, restartFile: path.join(dir, 'restart'), drives: [path.join(dir, 'drive')], segmentBytes };
}

/** Opens the map in `dir` for writing (repairing it if a kill left it so), and returns its content. */
function contentOf(dir: string, engine: EngineKind): Map<string, string> {
  const map = new BucketMap(configIn(dir, engine));
  try {
    return snapshot(map);
  } finally {
    map.close();
  }
}

interface Start { name: string; dir: string | null; base: Map<string, string> }

interface Tally { points: number; storePoints: number; byPhase: Map<string, number>; repairs: number; keysChecked: number }

/** Runs `work` on every item, `width` at a time; after a failure starts no more, and throws it once all have stopped. */
async function pool<T>(items: readonly T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const lanes = await Promise.allSettled(Array.from({ length: width }, async () => {
    while (!failed && next < items.length) {
      try {
        await work(items[next++]);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  }));
  for (const lane of lanes) if (lane.status === 'rejected') throw lane.reason;
}

/**
 * `count` steps that write to the mappings, drawn at random (by `seed`) from the listing, as many
 * of each kind as there are (growth's rehash publishes thousands of cells; a journaled update is rarer).
 */
function storeSteps(trace: readonly Step[], seed: number, count: number): number[] {
  const byCall = new Map<string, number[]>();
  for (const s of trace) if (STORE_CALLS.has(s.call)) (byCall.get(s.call) ?? byCall.set(s.call, []).get(s.call)!).push(s.n);
  const rng = new Rng(seed);
  const chosen = new Set<number>();
  const groups = [...byCall.values()];
  const total = groups.reduce((n, g) => n + g.length, 0);
  for (let i = 0; chosen.size < Math.min(count, total); i++) {
    const group = groups[i % groups.length];
    chosen.add(group[rng.below(group.length)]);
  }
  return [...chosen].sort((a, b) => a - b);
}

/** Kills runs of `seed` from `start` at the steps `choose` picks from the listing, and checks each map they leave. */
async function killAtSteps(engine: EngineKind, start: Start, seed: number, mode: Mode, choose: (trace: readonly Step[]) => number[], scratch: string, tally: Tally): Promise<void> {
  const copy = (to: string): BucketMapConfig => {
    if (start.dir !== null) fs.cpSync(start.dir, to, { recursive: true });
    else fs.mkdirSync(to);
    return configIn(to, engine);
  };
  const traceDir = path.join(scratch, `${start.name}-${mode}-trace`, 'map');
  fs.mkdirSync(path.dirname(traceDir));
  const { end, trace } = await runWorker(copy(traceDir), seed, 0, mode);
  removeDir(path.dirname(traceDir));
  assert.is(trace.length, end.steps, 'the listing run reported every step');
  const ops = [...stepWorkload(seed)];
  await pool(choose(trace), 2, async (k) => {
    // Every run's folder has the same name, which the steps' targets show.
    const dir = path.join(scratch, `${start.name}-${mode}-${k}`, 'map');
    fs.mkdirSync(path.dirname(dir));
    const config = copy(dir);
    const { end: run } = await runWorker(config, seed, k, mode);
    const at = run.killed;
    assert.ok(at !== null, `${engine} ${start.name}: step ${k} of ${end.steps} was reached`);
    assert.equal(at, { ...trace[k - 1] }, `${engine} ${start.name}: the run repeated step for step up to step ${k}`);
    const where = `${engine}, from ${start.name}, seed ${seed}, killed before step ${k} (${at.call} ${at.target}, in ${at.phase} after ${at.done} operations)`;

    const map = new BucketMap(config);
    let got: Map<string, string>;
    try {
      got = snapshot(map);
      tally.repairs += map.stats().open.repairedBuckets;
      assert.is(strayFiles(config), 0, `${where}: the open removed every file the kill left unreferenced`);
      const report = map.verify();
      assert.ok(report.ok, `${where}: verify found ${report.problems.map((p) => p.problem).join('; ')}`);
      assert.is(map.size, got.size, `${where}: size`);
    } finally {
      map.close();
    }
    const litter = fs.readdirSync(dir).filter((name) => !['drive', 'restart', 'restart.closed'].includes(name));
    assert.equal(litter, [], `${where}: nothing but the map is left beside the restart file`);
    const expected = expectAfterKill(start.base, ops, at.flushed, at.done);
    const broken = brokenPromise(got, expected, at.done);
    assert.is(broken, null, `${where}: key ${broken?.key.slice(0, 8)} ${broken?.why}`);
    tally.keysChecked += got.size;
    tally.points++;
    if (mode === 'stores') tally.storePoints++;
    tally.byPhase.set(at.phase, (tally.byPhase.get(at.phase) ?? 0) + 1);
    removeDir(path.dirname(dir));
  });
}

function copyOf(from: string, to: string): string {
  fs.cpSync(from, to, { recursive: true });
  return to;
}

for (const engine of ENGINES) {
  test(`${engine}: a kill before any file operation of open, work, flush, growth, compaction or close keeps the flush promise`, async () => {
    const seed = testSeed();
    segmentBytes = seed % 2 === 1 ? 65536 : undefined;
    const scratch = tempDir('bm-steps-');
    const tally: Tally = { points: 0, storePoints: 0, byPhase: new Map(), repairs: 0, keysChecked: 0 };
    try {
      // A map closed cleanly by a whole run, and one left by a kill half-way through another run.
      const clean = path.join(scratch, 'clean');
      fs.mkdirSync(clean);
      assert.is((await runWorker(configIn(clean, engine), seed + 1, Number.MAX_SAFE_INTEGER)).end.killed, null, 'a whole run');
      const probe = copyOf(clean, path.join(scratch, 'probe'));
      const { steps } = (await runWorker(configIn(probe, engine), seed + 2, Number.MAX_SAFE_INTEGER)).end;
      removeDir(probe);
      const crashed = copyOf(clean, path.join(scratch, 'crashed'));
      assert.ok((await runWorker(configIn(crashed, engine), seed + 2, Math.floor(steps / 2))).end.killed !== null, 'a run killed half-way');

      // Their content, read from copies (opening the crashed map repairs it).
      const starts: Start[] = [
        { name: 'nothing', dir: null, base: new Map() },
        { name: 'a clean close', dir: clean, base: contentOf(copyOf(clean, path.join(scratch, 'clean-content')), engine) },
        { name: 'a kill', dir: crashed, base: contentOf(copyOf(crashed, path.join(scratch, 'crashed-content')), engine) },
      ];
      for (const [i, start] of starts.entries()) {
        await killAtSteps(engine, start, seed + 3 + i, 'files', (trace) => fileSteps(trace, seed), scratch, tally);
        await killAtSteps(engine, start, seed + 3 + i, 'stores', (trace) => storeSteps(trace, seed + i, STORE_POINTS), scratch, tally);
      }
    } catch (err) {
      if (err instanceof Error) err.message += `\n(reproduce with TEST_SEED=${seed})`;
      throw err;
    } finally {
      removeDir(scratch);
    }
    const phases = [...tally.byPhase].map(([phase, n]) => `${n} in ${phase}`).join(', ');
    const stores = ` (${tally.storePoints} of them between two ${engine === 'wasm' ? 'write-log records' : 'groups of stores'})`;
    console.log(`    crash (steps, ${engine}): ${tally.points} kill points${stores}, one in ${STRIDE} of the listed file steps (seed ${seed}, ${segmentBytes === undefined ? 'default' : '64 KiB'} segments): ${phases}; ` +
      `${tally.repairs} bucket repairs; ${tally.keysChecked} keys checked`);
    assert.ok(tally.points > 0);
  });
}

test.run();
