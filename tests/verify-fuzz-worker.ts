/**
 * Runs verify fuzz cases in a child process (tests/verify-fuzz.test.ts starts it), so that a native
 * crash shows up as this process dying, with the last case it announced on stdout.
 *
 * Each case restores a small closed map (made by either engine), damages it, and checks it the way
 * a user would: `BucketMap.verify`, or for one case in twelve the command line. Whatever the
 * damage, the check must change no byte, and must either fail with a BucketMapError (exit code 2
 * and the error's code), report problems (exit code 1), or say ok (exit code 0), and then the map
 * must open for writing and hold the model's entries (and open read-only so too, unless verify
 * noted why not). Cell contents carry no checksum, so after a byte flip past a file's header the
 * values may differ (the keys may not); after any other damage the content must be the model's
 * exactly.
 *
 * Besides plain flips, some damage rewrites a field and then its checksum (a header field, a
 * restart-file slot, a bucket's saved counts, the close record's counts), so that what lies behind
 * the checksums is tried too: sizes of 2^32 - 1 included.
 *
 * argv: workDir firstCase cases seed
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { isDeepStrictEqual } from 'node:util';
import { BucketMap, BucketMapError, type BucketMapConfig, type EngineKind, type VerifyReport } from '../host/index.js';
import { testHooks } from '../host/bucket-storage.js';
import { crc32c } from '../host/checksum.js';
import { HEADER_BYTES, H_CRC, MANIFEST_SLOT_BYTES, M_COUNTS_CRC, M_COUNTS_END, M_LIVE_COUNT, S_CRC } from '../host/layout.js';
import { Rng, fingerprint, snapshot } from './helpers.js';

const [work, firstArg, countArg, seedArg] = process.argv.slice(2);
const first = Number(firstArg);
const count = Number(countArg);
const seed = Number(seedArg);
const CLI = new URL('../host/cli.js', import.meta.url).pathname;
const MAX_BUCKETS = 4;
const ENGINES: readonly EngineKind[] = ['host', 'wasm'];

function config(dir: string, engine: EngineKind): BucketMapConfig {
  return { maxBuckets: MAX_BUCKETS, maxSearch: 8, engine, restartFile: path.join(dir, 'restart'), drives: [path.join(dir, 'drive')] };
}

/** A closed map of 250 entries (lists of 0 to 3 elements, some refCounts above 1), and its content. */
function pristine(dir: string, engine: EngineKind): Map<string, string> {
  const rng = new Rng(911);
  const map = new BucketMap(config(dir, engine));
  const keys: Uint8Array[] = [];
  for (let i = 0; i < 300; i++) {
    const key = rng.key();
    keys.push(key);
    map.insert(key, Array.from({ length: i % 4 }, () => rng.bytes(16)), i % 5 === 0 ? 3 : 1);
  }
  for (let i = 0; i < keys.length; i += 6) map.deleteKey(keys[i]);
  const model = snapshot(map);
  map.close();
  return model;
}

/** Every file of a map folder, by path below it. */
function listTree(dir: string, below = ''): string[] {
  return fs.readdirSync(path.join(dir, below), { withFileTypes: true })
    .flatMap((entry) => (entry.isDirectory() ? listTree(dir, path.join(below, entry.name)) : [path.join(below, entry.name)]));
}

/** Puts the pristine files back in `dir` and removes any other (cheaper than copying the folder anew). */
function restore(files: Map<string, Buffer>, dir: string): void {
  fs.mkdirSync(path.join(dir, 'drive'), { recursive: true });
  for (const rel of listTree(dir)) if (!files.has(rel)) fs.rmSync(path.join(dir, rel), { force: true });
  for (const [rel, bytes] of files) {
    fs.rmSync(path.join(dir, rel), { force: true }); // a file the damage made a symbolic link, say
    fs.writeFileSync(path.join(dir, rel), bytes);
  }
}

function filesOf(dir: string): string[] {
  const drive = path.join(dir, 'drive');
  return [path.join(dir, 'restart'), path.join(dir, 'restart.closed'), ...fs.readdirSync(drive).sort().map((f) => path.join(drive, f))];
}

function readAll(file: string): Buffer {
  return fs.readFileSync(file);
}

const NASTY = [0, 1, 2, 0x7fffffff, 0x80000000, 0xffffffff, 0x10000, 1 << 24];

function nastyU32(rng: Rng, was: number): number {
  const r = rng.below(3);
  if (r === 0) return NASTY[rng.below(NASTY.length)];
  if (r === 1) return (was + (rng.chance(0.5) ? 1 : -1)) >>> 0;
  return rng.u32();
}

/** What a case did, and whether values may have changed unseen (a flip in cell contents). */
interface Damage {
  text: string;
  valuesMayChange: boolean;
}

function damage(dir: string, rng: Rng): Damage {
  const files = filesOf(dir);
  const file = files[rng.below(files.length)];
  const name = path.basename(file);
  const bytes = readAll(file);
  const isRestart = name === 'restart';
  const isRecord = name === 'restart.closed';
  const r = rng.below(100);
  if (r < 45) {
    // Byte flips: in the header, or anywhere (ctrl words, cells, data cells).
    const inHeader = rng.chance(0.4) || bytes.length <= HEADER_BYTES;
    const span = inHeader ? Math.min(bytes.length, isRecord ? 32 : HEADER_BYTES) : bytes.length;
    const from = inHeader ? 0 : Math.min(bytes.length - 1, isRecord ? 32 : HEADER_BYTES);
    const at: number[] = [];
    for (let i = 1 + rng.below(3); i > 0; i--) {
      const p = from + rng.below(span - from);
      bytes[p] ^= 1 << rng.below(8);
      at.push(p);
    }
    fs.writeFileSync(file, bytes);
    // Values in a bucket file's cells, and in the close record (counts a later open recounts), carry no checksum.
    return { text: `${name}: flip at ${at.join(',')}`, valuesMayChange: !inHeader && !isRestart && !isRecord };
  }
  if (r < 75 && bytes.length >= HEADER_BYTES && !isRecord) {
    // A field rewritten, then its checksum: what lies behind the checksums.
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (isRestart) {
      const ix = rng.below(MAX_BUCKETS);
      const field = 8 + 4 * rng.below((MANIFEST_SLOT_BYTES - 8) / 4);
      const value = nastyU32(rng, 0);
      for (const slot of [0, 1]) {
        const at = HEADER_BYTES + (ix * 2 + slot) * MANIFEST_SLOT_BYTES;
        if (view.getUint32(at, true) === 0) continue; // a slot never written must stay zero
        view.setUint32(at + field, field === 24 ? value & 0xff : value, true);
        view.setUint32(at + S_CRC, crc32c(bytes, at + 8, at + MANIFEST_SLOT_BYTES), true);
      }
      fs.writeFileSync(file, bytes);
      return { text: `restart: bucket ${ix} slot field ${field} = ${value}, checksum fixed`, valuesMayChange: false };
    }
    if (rng.chance(0.5)) {
      const field = 20 + 4 * rng.below((H_CRC - 20) / 4);
      const value = nastyU32(rng, view.getUint32(field, true));
      view.setUint32(field, value, true);
      view.setUint32(H_CRC, crc32c(bytes, 0, H_CRC), true);
      fs.writeFileSync(file, bytes);
      return { text: `${name}: header field ${field} = ${value}, checksum fixed`, valuesMayChange: false };
    }
    if (name.includes('.i.')) {
      const field = M_LIVE_COUNT + 4 * rng.below((M_COUNTS_END - M_LIVE_COUNT) / 4);
      const value = nastyU32(rng, view.getUint32(field, true));
      view.setUint32(field, value, true);
      view.setUint32(M_COUNTS_CRC, crc32c(bytes, M_LIVE_COUNT, M_COUNTS_END), true);
      fs.writeFileSync(file, bytes);
      return { text: `${name}: saved count at ${field} = ${value}, checksum fixed`, valuesMayChange: false };
    }
  }
  if (r < 82 && isRecord) {
    // A close record whose counts say otherwise, checksums fixed: a stale record.
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const at = 32 + 4 * rng.below((bytes.length - 32) / 4);
    view.setUint32(at, nastyU32(rng, view.getUint32(at, true)), true);
    view.setUint32(24, crc32c(bytes, 32), true);
    view.setUint32(28, crc32c(bytes, 0, 28), true);
    fs.writeFileSync(file, bytes);
    return { text: `${name}: word at ${at} rewritten, checksums fixed`, valuesMayChange: false };
  }
  if (r < 90) {
    const to = rng.chance(0.3) ? rng.below(Math.min(bytes.length, 1025)) : rng.below(bytes.length);
    fs.truncateSync(file, to);
    return { text: `${name}: truncated to ${to}`, valuesMayChange: false };
  }
  if (r < 95) {
    fs.appendFileSync(file, Buffer.alloc(1 + rng.below(3000), rng.below(256)));
    return { text: `${name}: extended`, valuesMayChange: false };
  }
  fs.rmSync(file);
  return { text: `${name}: removed`, valuesMayChange: false };
}

type Verdict = { kind: 'refused'; code: string } | { kind: 'reported' | 'ok'; report: VerifyReport };

function verifyInProcess(cfg: BucketMapConfig): Verdict {
  try {
    const report = BucketMap.verify({ restartFile: cfg.restartFile!, drives: cfg.drives! });
    if (report.ok !== (report.problemCount === 0) || report.problems.length !== Math.min(report.problemCount, 1000)) {
      throw new Error(`a report that contradicts itself: ok ${report.ok}, ${report.problemCount} problems, ${report.problems.length} listed`);
    }
    return { kind: report.ok ? 'ok' : 'reported', report };
  } catch (err) {
    if (err instanceof BucketMapError) return { kind: 'refused', code: err.code };
    throw err;
  }
}

function verifyByCommandLine(cfg: BucketMapConfig): Verdict {
  const run = spawnSync(process.execPath, [CLI, 'verify', cfg.restartFile!, '--drive', cfg.drives![0], '--json'], { encoding: 'utf8', timeout: 60_000 });
  if (run.signal !== null) throw new Error(`the command line died of ${run.signal}`);
  if (run.status === 2) {
    const code = /^(BUCKET_MAP_[A-Z_]+): /.exec(run.stderr);
    if (code === null) throw new Error(`exit code 2 without a BucketMapError code: ${run.stderr.slice(0, 300)}`);
    return { kind: 'refused', code: code[1] };
  }
  const report = JSON.parse(run.stdout) as VerifyReport;
  if (run.status === 0 && report.ok) return { kind: 'ok', report };
  if (run.status === 1 && !report.ok && report.problems.length > 0) return { kind: 'reported', report };
  throw new Error(`exit code ${run.status} with a report that says ok ${report.ok}: ${run.stderr.slice(0, 300)}`);
}

/** The map holds the model (its values unseen-changed only where the damage allows), or what differs. */
function compare(map: BucketMap, model: Map<string, string>, d: Damage): string | null {
  const got = snapshot(map);
  if (got.size !== map.size) return `the map iterates ${got.size} entries and its size is ${map.size}`;
  if (d.valuesMayChange) {
    if (!isDeepStrictEqual([...got.keys()].sort(), [...model.keys()].sort())) return 'the map holds other keys than the model';
  } else if (!isDeepStrictEqual(got, model)) {
    const differs = [...model].find(([k, v]) => got.get(k) !== v);
    return `the map holds ${got.size} entries unlike the model's ${model.size}${differs === undefined ? '' : ` (key ${differs[0].slice(0, 8)})`}`;
  }
  for (const k of [...got.keys()].slice(0, 20)) map.readValue(Buffer.from(k, 'hex'));
  return null;
}

/**
 * A map verify called ok must open for writing and hold the model. If verify noted nothing either,
 * a read-only open (which repairs nothing) must too: first, as it writes nothing.
 */
function checkOpens(cfg: BucketMapConfig, report: VerifyReport, model: Map<string, string>, d: Damage): string | null {
  const tries: Array<[string, BucketMapConfig]> = [['the open for writing', cfg]];
  if (report.notes.length === 0) tries.unshift(['the read-only open', { ...cfg, readOnly: true }]);
  for (const [what, c] of tries) {
    let map: BucketMap;
    try {
      map = new BucketMap(c);
    } catch (err) {
      return `verify said ok, but ${what} failed: ${(err as Error).message}`;
    }
    try {
      const failure = compare(map, model, d);
      if (failure !== null) return `verify said ok, but after ${what} ${failure}`;
    } catch (err) {
      return `verify said ok, but reading the map after ${what} threw ${(err as Error).message}`;
    } finally {
      map.close();
    }
  }
  return null;
}

// Bucket seeds drawn from the run's seed, so that a case's damage meets the same cells again.
const seeds = new Rng(seed);
testHooks.seedSource = () => [seeds.u32() | 0, seeds.u32() | 0];
const pristines = ENGINES.map((engine) => {
  const dir = path.join(work, `pristine-${engine}`);
  const model = pristine(dir, engine);
  return { engine, files: new Map(listTree(dir).map((rel) => [rel, fs.readFileSync(path.join(dir, rel))])), model };
});
const outcomes: Record<string, number> = {};
const failures: string[] = [];
for (let i = first; i < first + count; i++) {
  const rng = new Rng((seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0);
  const source = pristines[i % pristines.length];
  const dir = path.join(work, 'case');
  restore(source.files, dir);
  const d = damage(dir, rng);
  const byCli = i % 12 === 0;
  const label = `case ${i} (${source.engine} map, ${byCli ? 'command line' : 'BucketMap.verify'}): ${d.text}`;
  console.log(label); // the last line, should this process die
  const cfg = config(dir, ENGINES[rng.below(2)]);
  const before = fingerprint(dir);
  let verdict: Verdict;
  try {
    verdict = byCli ? verifyByCommandLine(cfg) : verifyInProcess(cfg);
  } catch (err) {
    failures.push(`${label}: ${(err as Error)?.stack ?? err}`);
    continue;
  }
  if (!isDeepStrictEqual(fingerprint(dir), before)) failures.push(`${label}: verify changed the files`);
  outcomes[verdict.kind] = (outcomes[verdict.kind] ?? 0) + 1;
  if (verdict.kind === 'reported' && verdict.report.problems.some((p) => typeof p.problem !== 'string' || p.problem === '' || !(p.bucket >= 0 && p.bucket < MAX_BUCKETS))) {
    failures.push(`${label}: a problem without a text or a bucket: ${JSON.stringify(verdict.report.problems[0])}`);
  }
  if (verdict.kind === 'ok') {
    const failure = checkOpens(cfg, verdict.report, source.model, d);
    if (failure !== null) failures.push(`${label}: ${failure}`);
  }
}
fs.rmSync(path.join(work, 'case'), { recursive: true, force: true });
console.log(`RESULT ${JSON.stringify({ outcomes, failures })}`);
