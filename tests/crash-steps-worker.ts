/**
 * The process tests/crash-steps.test.ts kills at a chosen step. Every node:fs call that changes a
 * file or folder is a step (an open that may create or truncate, write, truncate, rename, link,
 * unlink, rm, mkdir); the worker counts them, and just before step `killAt` it reports
 * where it is on stdout and sends itself SIGKILL. What it wrote to its mappings before that call
 * is in the page cache, as a killed process leaves it, so the steps cut the run into every state a
 * kill can leave between two file operations. It opens the map, runs `stepWorkload(seed)` with a
 * flush every STEP_FLUSH_EVERY operations (every other one durable) and closes the map; with `killAt`
 * past the end it prints "finished" and its step count instead; with `killAt` 0 it also lists
 * every step as it goes.
 *
 * argv: configJson seed killAt
 */
import fsModule from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { BucketMap } from '../host/index.js';
import { testHooks } from '../host/bucket-storage.js';
import { Rng } from './helpers.js';
import { STEP_FLUSH_EVERY, runCrashOp, stepWorkload } from './crash-workload.js';

const [configJson, seedArg, killAtArg] = process.argv.slice(2);
const killAt = Number(killAtArg);
const writeOut = fsModule.writeSync;

let steps = 0;
let phase = 'open';
let done = 0;
let flushed = 0;

/** An open that may create or truncate a file changes the folder; one for reading or in place does not. */
function opensForChange(flags: unknown): boolean {
  if (typeof flags === 'string') return /[wa]/.test(flags);
  if (typeof flags === 'number') return (flags & (fsModule.constants.O_CREAT | fsModule.constants.O_TRUNC)) !== 0;
  return false;
}

// fsync is not a step: a killed process leaves the page cache as it was, synced or not.
const STEPS = ['writeSync', 'writeFileSync', 'appendFileSync', 'ftruncateSync', 'truncateSync', 'renameSync', 'linkSync', 'unlinkSync', 'rmSync', 'rmdirSync', 'mkdirSync', 'mkdtempSync', 'copyFileSync', 'openSync'] as const;
const fsTable = fsModule as unknown as Record<string, (...args: unknown[]) => unknown>;
for (const name of STEPS) {
  const original = fsTable[name];
  fsTable[name] = function step(this: unknown, ...args: unknown[]): unknown {
    if (name !== 'openSync' || opensForChange(args[1])) {
      const where = (): string => `${phase} done ${done} flushed ${flushed} before ${name} ${typeof args[0] === 'string' ? args[0].split('/').slice(-2).join('/') : `fd ${String(args[0])}`}`;
      if (++steps === killAt) {
        writeOut(1, `killed ${where()}\n`);
        process.kill(process.pid, 'SIGKILL');
      }
      if (killAt === 0) writeOut(1, `step ${steps} ${where()}\n`);
    }
    return original.apply(this, args);
  };
}
syncBuiltinESMExports();

// Hash seeds and the data files' random starts drawn from the run's seed make the run, and so
// what each step number stands for, the same every time.
const seedRng = new Rng(Number(seedArg) ^ 0x5eed);
testHooks.seedSource = () => [seedRng.u32() | 0, seedRng.u32() | 0];
Math.random = () => seedRng.u32() / 2 ** 32;
const map = new BucketMap(JSON.parse(configJson));
phase = 'work';
let flushes = 0;
for (const op of stepWorkload(Number(seedArg))) {
  phase = op.kind;
  runCrashOp(map, op);
  done++;
  if (done % STEP_FLUSH_EVERY === 0) {
    phase = 'flush';
    map.flush({ durable: ++flushes % 2 === 0 });
    flushed = done;
  }
}
phase = 'close';
map.close();
writeOut(1, `finished steps ${steps} done ${done}\n`);
