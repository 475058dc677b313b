/**
 * Runs fuzz cases in a child process (tests/fuzz.test.ts starts it), so that a native crash or a
 * hang shows up as this process dying, with the last case it announced on stdout.
 *
 * Each case copies a pristine map, damages it (byte flips in headers, ctrl words, cells, the
 * restart file or the close record; truncation; extension; deletion; a symbolic link in place of a
 * file), then opens it. The case passes if opening fails with a BucketMapError, or if the map opens and either
 * verify() reports the damage or the whole map is consistent (iteration, lookups and size agree).
 * Anything else (another exception, an inconsistency verify() missed) is a failure.
 *
 * argv: pristineDir workDir firstCase cases seed
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BucketMap, BucketMapError, type BucketMapConfig, type EngineKind } from '../host/index.js';
import { Rng, hex } from './helpers.js';

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

/** Returns null if the case passes, or what went wrong. */
function runCase(dir: string, engine: EngineKind): { outcome: string; failure: string | null } {
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
      // Detected. Reads must still be safe: values, or BucketMapErrors.
      try {
        for (const [key] of map.entries()) map.readValue(key);
      } catch (err) {
        if (!(err instanceof BucketMapError)) return { outcome: 'crashed', failure: `read after detection threw ${(err as Error).stack}` };
      }
      return { outcome: 'detected', failure: null };
    }
    const seen = new Map<string, string>();
    for (const [key, [list, rc]] of map.entries()) seen.set(hex(key), JSON.stringify([list.map(hex), rc]));
    if (seen.size !== map.size) return { outcome: 'inconsistent', failure: `size ${map.size} but ${seen.size} entries iterated` };
    for (const [k, v] of seen) {
      const got = map.readValue(Buffer.from(k, 'hex'));
      const g = got === undefined ? 'absent' : JSON.stringify([got[0].map(hex), got[1]]);
      if (g !== v) return { outcome: 'inconsistent', failure: `entry ${k.slice(0, 8)} iterates as ${v.slice(0, 40)} but reads as ${g.slice(0, 40)}` };
    }
    return { outcome: 'consistent', failure: null };
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
  const { outcome, failure } = runCase(dir, engine);
  outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
  if (failure !== null) failures.push(`case ${i} (${engine}, ${what}): ${failure}`);
  fs.rmSync(dir, { recursive: true, force: true });
}
process.stdout.write(`RESULT ${JSON.stringify({ outcomes, failures })}\n`);
