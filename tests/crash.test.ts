/**
 * The crash promise, checked at many kill points: after flush() returns, every change before it
 * survives a kill -9 at any later moment; a change after the last flush may be lost, but each key
 * then reads back the value it had at the flush or one it was given later, never anything else,
 * and the map always reopens (and verifies). Runs are chained: each run starts from the state the
 * previous kill left, reopened and repaired. CRASH_POINTS sets the number (default 200).
 *
 * The same chains also run the workload in a worker thread of this process and end it with
 * `worker.terminate()` at a random moment (a quarter as many points): the thread dies where it
 * stands, as a killed process does, its lock must read as stale, and the promise must hold alike.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BucketMap, type BucketMapConfig, type EngineKind } from '../host/index.js';
import { applyCrashOp, brokenPromise, crashWorkload, expectAfterKill, type CrashOp } from './crash-workload.js';
import { ENGINES, Rng, hex, removeDir, snapshot, strayFiles, tempDir, testSeed } from './helpers.js';

const POINTS = Number(process.env.CRASH_POINTS ?? 200);
const THREAD_POINTS = Math.ceil(POINTS / 4);
const WORKER = new URL('./crash-worker.js', import.meta.url).pathname;
const OPS = 40000;
const FLUSH_EVERY = 150;

interface Tally {
  points: number;
  duringFlush: number;
  duringGrowth: number;
  /** Kills that landed inside compact() (its "C" log line without the "c" after it). */
  duringCompact: number;
  compactions: number;
  duringWork: number;
  afterFinish: number;
  keysChecked: number;
  opsAfterFlush: number;
  /** insertMany, deleteMany, addrefMany and unrefMany calls the worker reported done. */
  batchedCalls: number;
  /** setAnticipatedCount calls the worker reported done. */
  presizes: number;
  repairs: number;
  /** Kill points whose worker opened the map on a close record (some bucket left to first use). */
  onCloseRecord: number;
}

/** What each operation did to key `k`, replayed from `base`, to show with a failure. */
function historyOf(k: string, base: Map<string, string>, ops: CrashOp[]): string[] {
  const model = new Map(base);
  const out: string[] = [];
  ops.forEach((op, i) => {
    for (const [key, v] of applyCrashOp(model, op)) if (key === k) out.push(`${i}:${op.kind} ${v?.slice(0, 12) ?? 'gone'}`);
  });
  return out;
}

/** How the workload's owner dies: SIGKILL to a child process, or terminate() of a worker thread. */
type Ending = 'kill' | 'terminate';

function runChild(config: BucketMapConfig, seed: number, logFile: string, delayMs: number, ending: Ending): Promise<{ lastAt: number; finished: boolean; deferred: number }> {
  return new Promise((resolve, reject) => {
    const args = [JSON.stringify(config), String(seed), String(OPS), String(FLUSH_EVERY), logFile];
    const progress = new Int32Array(new SharedArrayBuffer(8));
    const child = ending === 'kill' ? spawn(process.execPath, [WORKER, ...args]) : new Worker(WORKER, { argv: args, workerData: { progress }, stdout: true, stderr: true });
    const stop = () => (child instanceof Worker ? void child.terminate() : child.kill('SIGKILL'));
    let out = '';
    let timer: NodeJS.Timeout | null = null;
    child.stdout!.on('data', (d) => {
      out += d;
      if (timer === null && out.includes('ready')) timer = setTimeout(stop, delayMs);
    });
    let err = '';
    child.stderr!.on('data', (d) => { err += d; });
    const ended = () => {
      const ats = [...out.matchAll(/at (\d+)/g)].map((m) => Number(m[1]));
      const deferred = Number(/ready deferred (\d+)/.exec(out)?.[1] ?? 0);
      if (child instanceof Worker) resolve({ lastAt: Atomics.load(progress, 0), finished: Atomics.load(progress, 1) === 1, deferred });
      else resolve({ lastAt: ats.length === 0 ? 0 : ats[ats.length - 1], finished: out.includes('finished'), deferred });
    };
    if (child instanceof Worker) {
      child.on('error', (e) => reject(new Error(`worker thread failed: ${e.stack ?? e}`)));
      child.on('exit', () => (timer === null ? reject(new Error(`worker thread exited before it was stopped: ${err}`)) : ended()));
      return;
    }
    child.on('close', (code, signal) => {
      if (signal !== 'SIGKILL') return reject(new Error(`worker exited ${code} ${signal}: ${err}`));
      ended();
    });
  });
}

async function chain(engine: EngineKind, seed: number, points: number, tally: Tally, ending: Ending): Promise<void> {
  const dir = tempDir('bm-crash-');
  try {
    let config: BucketMapConfig = { maxBuckets: 2 };
    let base = new Map<string, string>();
    const rng = new Rng(seed);
    for (let point = 0; point < points; point++) {
      // A fresh map every 8 points, so that kills keep landing while files grow.
      if (point % 8 === 0) {
        const sub = path.join(dir, `map-${point}`);
        config = { maxBuckets: 2, maxSearch: 4, engine, restartFile: path.join(sub, 'restart'), drives: [path.join(sub, 'drive')] };
        base = new Map();
      }
      const runSeed = rng.u32();
      const logFile = path.join(dir, `log-${point}`);
      fs.mkdirSync(path.dirname(config.restartFile!), { recursive: true });
      fs.writeFileSync(logFile, '');
      // Kill anywhere from before the first operation to long into the workload.
      const delay = rng.chance(0.15) ? 150 + rng.below(600) : rng.below(150);
      const { lastAt, finished, deferred } = await runChild(config, runSeed, logFile, delay, ending);
      if (deferred > 0) tally.onCloseRecord++;
      const log = fs.readFileSync(logFile, 'utf8').split('\n').filter(Boolean);
      const flushed = log.filter((l) => l.startsWith('F ')).map((l) => Number(l.split(' ')[1]));
      if (log.length > 0 && log[log.length - 1].startsWith('S ')) tally.duringFlush++;
      if (log.length > 0 && log[log.length - 1].startsWith('C ')) tally.duringCompact++;
      tally.compactions += log.filter((l) => l.startsWith('C ')).length;
      if (strayFiles(config) > 0) tally.duringGrowth++;
      const lastFlush = flushed.length === 0 ? 0 : flushed[flushed.length - 1];
      // The flush log is appended before the next operation runs, so no operation past the next
      // flush point ran (stdout progress lags and is only a lower bound).
      const ops = [...crashWorkload(runSeed, Math.min(OPS, lastFlush + FLUSH_EVERY))];
      for (const op of ops.slice(0, lastAt)) {
        if (op.kind.endsWith('Many')) tally.batchedCalls++;
        if (op.kind === 'anticipate') tally.presizes++;
      }
      // The state at the last flush, every value each key was given after it, and the state after
      // the last operation the worker reported done, replayed from the state the worker started on.
      const expected = expectAfterKill(base, ops, lastFlush, lastAt);

      const map = new BucketMap(config);
      const got = snapshot(map);
      tally.repairs += map.stats().open.repairedBuckets;
      assert.is(strayFiles(config), 0, `kill point ${point}: the open removed every file the kill left unreferenced`);
      const report = map.verify();
      assert.ok(report.ok, `kill point ${point}: verify found ${report.problems.map((p) => p.problem).join('; ')}`);
      assert.is(map.size, got.size);
      map.close();

      const broken = brokenPromise(got, expected, lastAt);
      if (broken !== null) {
        console.log(`point ${point} lastFlush ${lastFlush} lastAt ${lastAt} finished ${finished} flushes ${flushed.join(',')}`);
        console.log(`atFlush ${expected.atFlush.get(broken.key)?.slice(0, 60)}\n base ${base.get(broken.key)?.slice(0, 60)}\n history ${historyOf(broken.key, base, ops).join(' | ')}`);
      }
      assert.is(broken, null, `kill point ${point} (${engine}, seed ${runSeed}): key ${broken?.key.slice(0, 8)} ${broken?.why}`);
      const keys = new Set([...got.keys(), ...expected.atFlush.keys(), ...expected.later.keys()]);
      tally.opsAfterFlush += Math.max(0, lastAt - lastFlush);
      tally.keysChecked += keys.size;
      tally.points++;
      if (finished) tally.afterFinish++;
      else tally.duringWork++;
      base = got;
    }
  } finally {
    removeDir(dir);
  }
}

async function crashChains(ending: Ending, points: number): Promise<void> {
  const seed = testSeed();
  const tally: Tally = { points: 0, duringFlush: 0, duringGrowth: 0, duringCompact: 0, compactions: 0, duringWork: 0, afterFinish: 0, keysChecked: 0, opsAfterFlush: 0, batchedCalls: 0, presizes: 0, repairs: 0, onCloseRecord: 0 };
  try {
    await Promise.all(ENGINES.map((engine, i) => chain(engine, seed + i, Math.ceil(points / ENGINES.length), tally, ending)));
  } catch (err) {
    if (err instanceof Error) err.message += `\n(reproduce with TEST_SEED=${seed})`;
    throw err;
  }
  const what = ending === 'kill' ? 'kill points' : 'worker threads terminated';
  console.log(`    ${ending === 'kill' ? 'crash' : 'crash (threads)'}: ${tally.points} ${what} (seed ${seed}), ${tally.duringWork} mid-workload (${tally.duringFlush} during a flush, ` +
    `${tally.duringGrowth} during a growth, ${tally.duringCompact} inside compact() of ${tally.compactions} started), ${tally.afterFinish} after it; ${tally.onCloseRecord} opened on a close record; ` +
    `${tally.repairs} bucket repairs; ${tally.batchedCalls} batched calls and ${tally.presizes} presizes done; ${tally.keysChecked} key checks passed; ${tally.opsAfterFlush} completed unflushed operations all kept`);
  assert.ok(tally.points >= points);
  // Every kill point but a fresh map's first starts from a map this test closed cleanly.
  assert.ok(tally.onCloseRecord > 0, 'some workers opened on a close record');
  assert.ok(tally.batchedCalls > 0, 'the workers got as far as batched calls');
}

test(`${POINTS} kill -9 points across both engines keep the flush promise`, () => crashChains('kill', POINTS));

test(`${THREAD_POINTS} worker threads terminated at random keep it too, and leave a lock the next open takes over`, () => crashChains('terminate', THREAD_POINTS));

test.run();
