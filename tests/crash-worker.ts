/**
 * The process tests/crash.test.ts kills. It opens a persistent map and runs a seeded mixed workload
 * (inserts and updates with slot lists of 0–4 elements, deletes, addrefs and unrefs, the batched
 * forms of each, enough keys to grow index and data files, now and then a presize by
 * setAnticipatedCount), flushing every `flushEvery` operations (every fourth flush durable).
 * After each flush it appends "S <ops done>" to the log, and "F <ops done>" once the flush returns;
 * every 25 operations it writes "at <ops done>" to stdout. Around a compaction it appends
 * "C <ops done>" and "c <ops done>" to the log. The parent kills it with SIGKILL at random.
 *
 * Run as a worker thread instead (the parent then ends it with terminate()), it also keeps the ops
 * done and a finished flag in `workerData.progress`, a shared Int32Array: a terminated thread's
 * last stdout lines may never reach the parent, its stores to shared memory do.
 *
 * argv: configJson seed ops flushEvery logFile
 */
import * as fs from 'node:fs';
import { isMainThread, workerData } from 'node:worker_threads';
import { BucketMap } from '../host/index.js';
import { crashWorkload, runCrashOp } from './crash-workload.js';

const [configJson, seedArg, opsArg, flushEveryArg, logFile] = process.argv.slice(2);
const map = new BucketMap(JSON.parse(configJson));
const flushEvery = Number(flushEveryArg);
const progress: Int32Array | null = isMainThread ? null : (workerData as { progress: Int32Array }).progress;
// How many buckets the open left to first use on the close record's word (0 after a crash).
process.stdout.write(`ready deferred ${map.stats().open.deferredBuckets}\n`);
let done = 0;
let flushes = 0;
for (const op of crashWorkload(Number(seedArg), Number(opsArg))) {
  if (op.kind === 'compact') fs.appendFileSync(logFile, `C ${done}\n`);
  runCrashOp(map, op);
  if (op.kind === 'compact') fs.appendFileSync(logFile, `c ${done}\n`);
  done++;
  if (done % flushEvery === 0) {
    fs.appendFileSync(logFile, `S ${done}\n`);
    map.flush({ durable: ++flushes % 4 === 0 });
    fs.appendFileSync(logFile, `F ${done}\n`);
  }
  if (progress !== null) Atomics.store(progress, 0, done);
  if (done % 25 === 0) process.stdout.write(`at ${done}\n`);
}
if (progress !== null) Atomics.store(progress, 1, 1);
process.stdout.write('finished\n');
setInterval(() => {}, 1000);
