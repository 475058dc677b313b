/** Shared test helpers: seeded randomness, temporary folders, and the engines every suite runs on. */
import * as fs from 'node:fs';
import fsModule from 'node:fs';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { syncBuiltinESMExports } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { BucketMap, type BucketMapConfig, type EngineKind } from '../host/index.js';
import { Manifest } from '../host/manifest.js';
import { openBucketFiles, tableOverFiles } from '../host/bucket-storage.js';
import { bucketFileName } from '../host/storage.js';
import { setTimeout as sleep } from 'node:timers/promises';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

export const ENGINES: readonly EngineKind[] = ['wasm', 'host'];

/** xorshift128: small, fast, reproducible from a 32-bit seed. */
export class Rng {
  readonly seed: number;
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    this.a = this.seed || 1;
    this.b = 0x9e3779b9;
    this.c = 0x243f6a88;
    this.d = 0xb7e15162;
    for (let i = 0; i < 16; i++) this.u32();
  }

  u32(): number {
    let t = this.d;
    const s = this.a;
    this.d = this.c;
    this.c = this.b;
    this.b = s;
    t ^= t << 11;
    t ^= t >>> 8;
    this.a = (t ^ s ^ (s >>> 19)) >>> 0;
    return this.a;
  }

  /** Integer in [0, n). */
  below(n: number): number {
    return Math.floor((this.u32() / 0x100000000) * n);
  }

  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p;
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const x = this.u32();
      for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = x >>> (8 * j);
    }
    return out;
  }

  key(): Uint8Array {
    return this.bytes(32);
  }
}

/** A seed from the environment (TEST_SEED) or a fresh one; failures print it to reproduce. */
export function testSeed(): number {
  const fromEnv = process.env.TEST_SEED;
  return fromEnv !== undefined ? Number(fromEnv) >>> 0 : (Math.random() * 0x100000000) >>> 0;
}

/** Runs `fn` with a seeded Rng; on failure the error message gains the seed. */
export function withSeed<R>(fn: (rng: Rng) => R, seed = testSeed()): R {
  const rng = new Rng(seed);
  const annotate = (err: unknown): never => {
    if (err instanceof Error) err.message = `${err.message}\n(reproduce with TEST_SEED=${seed})`;
    throw err;
  };
  try {
    const result = fn(rng);
    // An async test fails later, by rejection: it names its seed too.
    return (result instanceof Promise ? result.catch(annotate) : result) as R;
  } catch (err) {
    return annotate(err);
  }
}

export function tempDir(prefix = 'bm-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** A persistent configuration in a fresh folder. */
export function persistentConfig(dir: string, engine: EngineKind, extra: Partial<BucketMapConfig> = {}): BucketMapConfig {
  return { maxBuckets: 4, engine, restartFile: path.join(dir, 'restart'), drives: [path.join(dir, 'drive')], ...extra };
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Keys back to back in one buffer, the packed form the batched calls take. */
export function packKeys(keys: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(keys.length * 32);
  keys.forEach((k, i) => out.set(k, i * 32));
  return out;
}

/** The error `fn` throws, or null if it returns. */
export function thrownBy(fn: () => unknown): (Error & { code?: string }) | null {
  try {
    fn();
  } catch (err) {
    return err as Error & { code?: string };
  }
  return null;
}

/** An entry as the tests compare it: JSON of [slot list in hex, refCount]. */
export const entryValue = (list: readonly Uint8Array[], refCount: number): string => JSON.stringify([list.map(hex), refCount]);

/** The map's whole content as a Map of hex key → entryValue. */
export function snapshot(map: BucketMap): Map<string, string> {
  const out = new Map<string, string>();
  for (const [key, [list, rc]] of map.entries()) out.set(hex(key), entryValue(list, rc));
  return out;
}

export function element(rng: Rng, size = 16): Uint8Array {
  return rng.bytes(size);
}

/** Files below `dir` (recursively), for checking what a map leaves behind. */
export function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(full));
    else out.push(full);
  }
  return out.sort();
}

/**
 * Files in the map's first drive that its restart file does not reference (a kill during growth
 * leaves the new file; a kill while the map runs leaves its spares).
 */
export function strayFiles(config: BucketMapConfig): number {
  const manifest = Manifest.inspect(config.restartFile!);
  const referenced = new Set<string>();
  for (const [ix, r] of manifest.allocated()) {
    referenced.add(bucketFileName(manifest.config.mapId, ix, null, r.indexGen));
    r.dataGen.forEach((g, c) => g !== 0 && referenced.add(bucketFileName(manifest.config.mapId, ix, c, g)));
  }
  const drive = config.drives![0];
  return fs.existsSync(drive) ? fs.readdirSync(drive).filter((f) => !referenced.has(f.replace(/\.\d+\.bkt$/, ''))).length : 0;
}

/** Bytes of every file below `dir`, to prove an operation changed nothing on disk. */
export function fingerprint(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const file of listFiles(dir)) out.set(file, fs.readFileSync(file).toString('base64'));
  return out;
}

/**
 * A full garbage collection. Node exposes `gc` only under --expose-gc, which uvu's process does not
 * have: the flag is set at run time and the function taken from a fresh context.
 */
function collectGarbage(): void {
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
}

/**
 * Collects garbage and lets the event loop turn, at most `rounds` times, until `done()`: mmap-io
 * unmaps a collected mapping only when the loop turns.
 */
export async function collectUntil(done: () => boolean, rounds: number): Promise<void> {
  for (let round = 0; round < rounds && !done(); round++) {
    collectGarbage();
    await sleep(20);
  }
}

type FsFunction = 'linkSync' | 'openSync' | 'rmSync' | 'writeFileSync' | 'writeSync' | 'readFileSync' | 'readdirSync' | 'readSync' | 'fstatSync' | 'renameSync';

/**
 * Runs `body` with one node:fs function replaced, as the library (which imports the ESM namespace)
 * sees it: `replace` gets the original and returns the stand-in. The original is put back after.
 */
export function withFsFunction<R>(name: FsFunction, replace: (original: (...args: unknown[]) => unknown) => (...args: unknown[]) => unknown, body: () => R): R {
  const original = fsModule[name] as (...args: unknown[]) => unknown;
  (fsModule as unknown as Record<string, unknown>)[name] = replace(original);
  syncBuiltinESMExports();
  try {
    return body();
  } finally {
    (fsModule as unknown as Record<string, unknown>)[name] = original;
    syncBuiltinESMExports();
  }
}

/**
 * Runs `script` (an ES module as text) in a child Node process with `arg` as its argument, and
 * resolves once its output shows `ready`: the child holds whatever it opened until killHard().
 */
export async function startChild(script: string, arg: string, ready: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, arg]);
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d) => String(d).includes(ready) && resolve());
    child.on('exit', (code) => reject(new Error(`child exited ${code}`)));
  });
  return child;
}

/** Kills a child as a crash would (SIGKILL: no exit handler runs) and waits until it is gone. */
export async function killHard(child: ChildProcess): Promise<void> {
  const closed = new Promise((resolve) => child.on('close', resolve));
  child.kill('SIGKILL');
  await closed;
}

/** The pid of a process that has already exited: free now, or reused with another start time. */
export function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
}

/**
 * Where a key sits on disk in a closed map: its index cell (segment file and byte offset), its ctrl
 * word, and its data cell if it has one. For tests that damage a chosen entry.
 */
export function locateKey(config: BucketMapConfig, key: Uint8Array): { file: string; cellAt: number; ctrlAt: number; dataFile: string | null; dataAt: number } {
  const manifest = Manifest.inspect(config.restartFile!);
  const layout = { ...manifest.config, drives: config.drives!, hugePages: false };
  for (const [ix, record] of manifest.allocated()) {
    const files = openBucketFiles(layout, ix, record, true);
    const table = tableOverFiles(layout, record, files.index, files.data);
    const cell = table.probe(key, 0);
    if (cell < 0) continue;
    const cellAt = table.cellOffset(cell);
    const file = files.index.segmentPaths[table.seg];
    const slot = cell % 20;
    const ctrlAt = cellAt - 64 - slot * 48 + slot * 2;
    const ref = table.dataRef(cell);
    let dataFile: string | null = null;
    let dataAt = 0;
    if (ref !== null) {
      const data = table.data[ref[0]]!;
      const s = data.segmentOf(ref[1]);
      dataFile = data.file.segmentPaths[s];
      dataAt = data.offsetOf(ref[1], s);
    }
    return { file, cellAt, ctrlAt, dataFile, dataAt };
  }
  throw new Error('key not found');
}
