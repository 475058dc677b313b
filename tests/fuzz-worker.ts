/**
 * Runs fuzz cases in a child process (tests/fuzz.test.ts starts it), so that a native crash or a
 * hang shows up as this process dying, with the last case it announced on stdout.
 *
 * Each case copies a pristine map, damages it (byte flips in headers, ctrl words, cells, the
 * restart file or the close record; truncation; extension; deletion; a symbolic link in place of a
 * file), then opens it. The case passes if opening fails with a BucketMapError, or if the map opens and either
 * verify() reports the damage or the whole map is consistent (iteration, lookups and size agree).
 * Then every kind of write, per key and batched, a compaction and batched reads run on it: on a
 * map with reported damage each call returns or throws a BucketMapError; on a consistent one they
 * change it as the crash test's model says and it reopens so, unless a call reports damage that
 * verify() had not seen ("detected in use"). Anything else (another exception, an inconsistency
 * verify() missed) is a failure. Before all that, each case is opened read-only (readOnlyCase).
 *
 * argv: pristineDir workDir firstCase cases seed
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { BucketMap, BucketMapError, codes, type BucketMapConfig, type EngineKind } from '../host/index.js';
import { applyCrashOp, crashWorkload, runCrashOp, type CrashOp } from './crash-workload.js';
import { Rng, entryValue, fingerprint, hex, packKeys, snapshot } from './helpers.js';

const [pristine, work, firstArg, countArg, seedArg] = process.argv.slice(2);
const first = Number(firstArg);
const count = Number(countArg);
const seed = Number(seedArg);

function config(dir: string, engine: EngineKind): BucketMapConfig {
  return { maxBuckets: 4, maxSearch: 8, engine, restartFile: path.join(dir, 'restart'), drives: [path.join(dir, 'drive')] };
}

function filesOf(dir: string): string[] {
  const drive = path.join(dir, 'drive');
  const closeRecord = path.join(dir, 'restart.closed');
  const beside = fs.existsSync(closeRecord) ? [closeRecord] : [];
  return [path.join(dir, 'restart'), ...beside, ...fs.readdirSync(drive).sort().map((f) => path.join(drive, f))];
}

function flip(file: string, rng: Rng, region: 'header' | 'ctrl' | 'anywhere'): string {
  const size = fs.statSync(file).size;
  if (size === 0) return 'empty file';
  const fd = fs.openSync(file, 'r+');
  const flips = 1 + rng.below(4);
  const done: number[] = [];
  for (let i = 0; i < flips; i++) {
    let at: number;
    if (region === 'header') at = rng.below(Math.min(size, 1024));
    else if (region === 'ctrl' && size > 2048) at = 1024 + rng.below(Math.floor((size - 1024) / 1024)) * 1024 + rng.below(40);
    else at = rng.below(size);
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] ^= 1 << rng.below(8);
    fs.writeSync(fd, b, 0, 1, at);
    done.push(at);
  }
  fs.closeSync(fd);
  return `flip ${region} at ${done.join(',')}`;
}

function damage(dir: string, rng: Rng): string {
  const files = filesOf(dir);
  const file = files[rng.below(files.length)];
  const name = path.basename(file);
  const r = rng.below(100);
  if (r < 25) return `${name}: ${flip(file, rng, 'header')}`;
  if (r < 45) return `${name}: ${flip(file, rng, 'ctrl')}`;
  if (r < 70) return `${name}: ${flip(file, rng, 'anywhere')}`;
  if (r < 82) {
    const size = fs.statSync(file).size;
    const to = rng.chance(0.3) ? rng.below(1025) : rng.below(size);
    fs.truncateSync(file, to);
    return `${name}: truncate to ${to}`;
  }
  if (r < 88) {
    fs.appendFileSync(file, Buffer.alloc(1 + rng.below(3000), rng.below(256)));
    return `${name}: extend`;
  }
  if (r < 94) {
    fs.rmSync(file);
    return `${name}: delete`;
  }
  const outside = path.join(dir, 'outside');
  fs.copyFileSync(file, outside);
  fs.rmSync(file);
  fs.symlinkSync(outside, file);
  return `${name}: symlink to a copy outside the drives`;
}

/** Operations each opened map runs after the reads: the crash test's mix, then a compaction. */
const WRITES = 40;

/**
 * Runs every kind of write (per key and batched), a compaction and batched reads on the map, on up
 * to 48 of its keys and 16 fresh ones. Each call must return or throw a BucketMapError. Given the
 * map's content as `model`, the calls must change it as the model says, and the map must reopen so.
 */
function exercise(map: BucketMap, keys: Uint8Array[], rng: Rng, model: Map<string, string> | null, reopen: () => BucketMap): { detected: boolean; failure: string | null } {
  const pool = [...keys.slice(0, 48), ...Array.from({ length: 16 }, () => rng.key())];
  let detected = false;
  const ops: CrashOp[] = [...crashWorkload(rng.u32(), WRITES, pool), { kind: 'compact', load: 0.85 }];
  for (const op of ops) {
    try {
      runCrashOp(map, op);
      if (model !== null) applyCrashOp(model, op);
    } catch (err) {
      if (!(err instanceof BucketMapError)) return { detected, failure: `${op.kind} threw ${(err as Error)?.stack ?? err}` };
      detected = true;
    }
  }
  let got: Array<string | undefined>;
  let present: boolean[];
  try {
    got = map.getMany(pool).map((e) => (e === undefined ? undefined : entryValue(e[0], e[1])));
    present = map.hasMany(packKeys(pool));
  } catch (err) {
    if (!(err instanceof BucketMapError)) return { detected, failure: `a batched read threw ${(err as Error)?.stack ?? err}` };
    return { detected: true, failure: null };
  }
  // After a call that reported damage the model no longer says what the map holds.
  if (model === null || detected) return { detected, failure: null };
  for (let i = 0; i < pool.length; i++) {
    const want = model.get(hex(pool[i]));
    if (got[i] !== want || present[i] !== (want !== undefined)) return { detected, failure: `after the writes key ${hex(pool[i]).slice(0, 8)} reads ${got[i]?.slice(0, 40)}, the model ${want?.slice(0, 40)}` };
  }
  const after = snapshot(map);
  if (!isDeepStrictEqual(after, model)) return { detected, failure: `after the writes the map holds ${after.size} entries unlike the model's ${model.size}` };
  map.close();
  const again = reopen();
  try {
    if (!isDeepStrictEqual(snapshot(again), model)) return { detected, failure: 'after the writes the map reopened with other entries' };
  } finally {
    again.close();
  }
  return { detected, failure: null };
}

/**
 * Opens the damaged copy read-only: it must be refused with a BucketMapError, or read (verify,
 * every entry, batched reads) with results or BucketMapErrors, refuse every write with READ_ONLY,
 * and leave every file byte for byte as it found it. Its files are mapped read-only, so a write
 * that got past the refusals would kill this process (SIGSEGV), which the test reports.
 */
function readOnlyCase(dir: string, engine: EngineKind, rng: Rng): { outcome: string; failure: string | null } {
  const before = fingerprint(dir);
  const unexpected = (what: string, err: unknown) => ({ outcome: 'crashed', failure: `read-only: ${what} threw ${(err as Error)?.stack ?? err}` });
  let map: BucketMap;
  try {
    map = new BucketMap({ ...config(dir, engine), readOnly: true });
  } catch (err) {
    if (err instanceof BucketMapError) return { outcome: 'read-only refused', failure: null };
    return unexpected('open', err);
  }
  try {
    const keys: Uint8Array[] = [];
    try {
      map.verify();
      for (const [key] of map.entries()) {
        map.readValue(key);
        keys.push(key);
      }
    } catch (err) {
      if (!(err instanceof BucketMapError)) return unexpected('a read', err);
    }
    const pool = [...keys.slice(0, 32), ...Array.from({ length: 8 }, () => rng.key())];
    try {
      map.getMany(pool);
      map.hasMany(packKeys(pool));
    } catch (err) {
      if (!(err instanceof BucketMapError)) return unexpected('a batched read', err);
    }
    for (const op of crashWorkload(rng.u32(), 20, pool)) {
      try {
        runCrashOp(map, op);
        return { outcome: 'crashed', failure: `read-only: ${op.kind} was not refused` };
      } catch (err) {
        if (!(err instanceof BucketMapError && err.code === codes.READ_ONLY)) return unexpected(op.kind, err);
      }
    }
  } finally {
    try {
      map.close();
    } catch (err) {
      if (!(err instanceof BucketMapError)) throw err;
    }
  }
  if (!isDeepStrictEqual(fingerprint(dir), before)) return { outcome: 'crashed', failure: 'read-only: the files changed' };
  return { outcome: 'read-only opened', failure: null };
}

/** Returns null if the case passes, or what went wrong. */
function runCase(dir: string, engine: EngineKind, rng: Rng): { outcome: string; failure: string | null } {
  let map: BucketMap;
  try {
    map = new BucketMap(config(dir, engine));
  } catch (err) {
    if (err instanceof BucketMapError) return { outcome: 'refused', failure: null };
    return { outcome: 'crashed', failure: `open threw ${(err as Error)?.stack ?? err}` };
  }
  try {
    const report = map.verify();
    if (!report.ok) {
      // Detected. Reads and writes must still be safe: results, or BucketMapErrors.
      const keys: Uint8Array[] = [];
      try {
        for (const [key] of map.entries()) {
          map.readValue(key);
          keys.push(key);
        }
      } catch (err) {
        if (!(err instanceof BucketMapError)) return { outcome: 'crashed', failure: `read after detection threw ${(err as Error).stack}` };
      }
      const { failure } = exercise(map, keys, rng, null, () => map);
      return { outcome: failure === null ? 'detected' : 'crashed', failure };
    }
    const seen = snapshot(map);
    if (seen.size !== map.size) return { outcome: 'inconsistent', failure: `size ${map.size} but ${seen.size} entries iterated` };
    for (const [k, v] of seen) {
      const got = map.readValue(Buffer.from(k, 'hex'));
      const g = got === undefined ? 'absent' : entryValue(got[0], got[1]);
      if (g !== v) return { outcome: 'inconsistent', failure: `entry ${k.slice(0, 8)} iterates as ${v.slice(0, 40)} but reads as ${g.slice(0, 40)}` };
    }
    const keys = [...seen.keys()].map((k) => Buffer.from(k, 'hex'));
    const { detected, failure } = exercise(map, keys, rng, seen, () => new BucketMap(config(dir, engine)));
    if (failure !== null) return { outcome: 'inconsistent', failure };
    return { outcome: detected ? 'detected in use' : 'consistent', failure: null };
  } catch (err) {
    if (err instanceof BucketMapError) return { outcome: 'detected', failure: null };
    return { outcome: 'crashed', failure: `${(err as Error)?.stack ?? err}` };
  } finally {
    try {
      map.close();
    } catch (err) {
      if (!(err instanceof BucketMapError)) throw err;
    }
  }
}

const outcomes: Record<string, number> = {};
const failures: string[] = [];
for (let i = first; i < first + count; i++) {
  const rng = new Rng(seed + i * 7919);
  const dir = path.join(work, `case-${i}`);
  fs.cpSync(pristine, dir, { recursive: true });
  const what = damage(dir, rng);
  const engine: EngineKind = i % 2 === 0 ? 'wasm' : 'host';
  process.stdout.write(`case ${i} ${engine} ${what}\n`);
  for (const { outcome, failure } of [readOnlyCase(dir, engine, rng), runCase(dir, engine, rng)]) {
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    if (failure !== null) failures.push(`case ${i} (${engine}, ${what}): ${failure}`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
}
process.stdout.write(`RESULT ${JSON.stringify({ outcomes, failures })}\n`);
