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
 * With mode `stores`, writes to the mappings are steps too. On the wasm engine each record of the
 * core's write log is one: the engine applies a call's records one by one, in order, so a kill
 * between two of them leaves what a kill between those two stores of the core leaves (a move
 * record's four stores are applied together). On the host path each call of a table method that
 * makes one group of ordered stores is one (TABLE_STORE_GROUPS: a cell moved in a shift, a cell
 * published, a data cell written or freed, a journaled update).
 *
 * argv: configJson seed killAt [files|stores]
 */
import fsModule from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { BucketMap } from '../host/index.js';
import { testHooks } from '../host/bucket-storage.js';
import { WasmEngine, logRecordBytes } from '../host/wasm-engine.js';
import { Table } from '../host/table.js';
import { Rng } from './helpers.js';
import { STEP_FLUSH_EVERY, TABLE_STORE_GROUPS, runCrashOp, stepWorkload } from './crash-workload.js';

const [configJson, seedArg, killAtArg, mode = 'files'] = process.argv.slice(2);
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
/** Counts a step, and kills the process before step `killAt` (listing each one when `killAt` is 0). */
function step(name: string, target: () => string): void {
  const where = (): string => `${phase} done ${done} flushed ${flushed} before ${name} ${target()}`;
  if (++steps === killAt) {
    writeOut(1, `killed ${where()}\n`);
    process.kill(process.pid, 'SIGKILL');
  }
  if (killAt === 0) writeOut(1, `step ${steps} ${where()}\n`);
}

const fsTable = fsModule as unknown as Record<string, (...args: unknown[]) => unknown>;
for (const name of STEPS) {
  const original = fsTable[name];
  fsTable[name] = function counted(this: unknown, ...args: unknown[]): unknown {
    if (name !== 'openSync' || opensForChange(args[1])) {
      step(name, () => (typeof args[0] === 'string' ? args[0].split('/').slice(-2).join('/') : `fd ${String(args[0])}`));
    }
    return original.apply(this, args);
  };
}
syncBuiltinESMExports();

if (mode === 'stores') {
  type LogApplier = { u32: Uint32Array; applyLog(log: number, bytes: number): void; writeRange(fid: number, offset: number, src: number, length: number): void };
  const engine = WasmEngine.prototype as unknown as LogApplier;
  const applyLog = engine.applyLog;
  const writeRange = engine.writeRange;
  engine.applyLog = function recordByRecord(this: LogApplier, log: number, bytes: number): void {
    for (let at = log, size = 0; at < log + bytes; at += size) {
      size = logRecordBytes(this.u32, at);
      step('record', () => `file ${this.u32[at >>> 2]} at ${this.u32[(at >>> 2) + 1]}`);
      applyLog.call(this, at, size);
    }
  };
  engine.writeRange = function counted(this: LogApplier, fid: number, offset: number, src: number, length: number): void {
    step('range', () => `file ${fid} at ${offset}`);
    writeRange.call(this, fid, offset, src, length);
  };
  // The host path stores straight into the mappings; its stores come in groups, one method each,
  // in the order the crash rules need: a kill before each group is a kill between two of them.
  const table = Table.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const name of TABLE_STORE_GROUPS) {
    const original = table[name];
    table[name] = function counted(this: unknown, ...args: unknown[]): unknown {
      step(name, () => `cell group ${String(args[0])}`);
      return original.apply(this, args);
    };
  }
}

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
