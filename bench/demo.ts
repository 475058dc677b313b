/**
 * The main job (`npm start`): a persistent map in a temporary folder. Inserts N random keys
 * (default 1,000,000) with a progress bar, closes, reopens, verifies every entry, and prints the
 * throughput of each phase and the map's stats. Options: --n <count>, --engine wasm|host,
 * --buckets <power of two>.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomFillSync } from 'node:crypto';
import { BucketMap, type BucketMapConfig, type EngineKind } from '../host/index.js';
import { flagValue } from './options.js';

const option = (name: string, fallback: string): string => flagValue(process.argv, name, fallback);

const N = Number(option('n', '1000000'));
const engine = option('engine', 'host') as EngineKind;
const buckets = Number(option('buckets', '1024'));
if (!Number.isSafeInteger(N) || N < 1) throw new RangeError('--n must be a positive integer');

class Progress {
  private readonly label: string;
  private readonly total: number;
  private readonly tty = process.stderr.isTTY === true;
  private shown = -1;
  private lastTenth = -1;

  constructor(label: string, total: number) {
    this.label = label;
    this.total = total;
  }

  update(done: number): void {
    const percent = Math.floor((done / this.total) * 100);
    if (percent === this.shown) return;
    this.shown = percent;
    if (this.tty) {
      const width = 40;
      const filled = Math.round((percent / 100) * width);
      process.stderr.write(`\r${this.label.padEnd(8)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(percent).padStart(3)}%`);
    } else if (Math.floor(percent / 10) !== this.lastTenth) {
      this.lastTenth = Math.floor(percent / 10);
      process.stderr.write(`${this.label} ${this.lastTenth * 10}%\n`);
    }
  }

  done(): void {
    if (this.tty) process.stderr.write('\n');
  }
}

function valueOf(i: number, out: Uint8Array): Uint8Array {
  const view = new DataView(out.buffer, out.byteOffset, 16);
  view.setUint32(0, i, true);
  view.setUint32(4, 0, true);
  view.setUint32(8, Math.imul(i, 0x9e3779b1), true);
  view.setUint32(12, 0, true);
  return out;
}

interface Phase {
  name: string;
  ops: number;
  ms: number;
}

const phases: Phase[] = [];
function timed<R>(name: string, ops: number, fn: () => R): R {
  const started = performance.now();
  const result = fn();
  phases.push({ name, ops, ms: performance.now() - started });
  return result;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bucket-map-demo-'));
try {
  const config: BucketMapConfig = { maxBuckets: buckets, engine, restartFile: path.join(dir, 'restart'), drives: [path.join(dir, 'drive')] };
  console.log(`bucket-map demo: ${N.toLocaleString('en')} random 32-byte keys, ${buckets} buckets, ${engine} engine, files in ${dir}`);
  const keys = new Uint8Array(32 * N);
  randomFillSync(keys);
  const value = new Uint8Array(16);

  let map = new BucketMap(config);
  const insert = new Progress('insert', N);
  timed('insert', N, () => {
    for (let i = 0; i < N; i++) {
      map.insert(keys.subarray(32 * i, 32 * i + 32), [valueOf(i, value)]);
      if ((i & 0x3fff) === 0) insert.update(i);
    }
    insert.update(N);
  });
  insert.done();
  timed('close', 1, () => map.close());
  map = timed('reopen', 1, () => new BucketMap(config));

  const verify = new Progress('verify', N);
  const bad = timed('verify', N, () => {
    let wrong = 0;
    for (let i = 0; i < N; i++) {
      const got = map.readValue(keys.subarray(32 * i, 32 * i + 32));
      valueOf(i, value);
      if (got === undefined || got[1] !== 1 || got[0].length !== 1 || Buffer.compare(got[0][0], value) !== 0) wrong++;
      if ((i & 0x3fff) === 0) verify.update(i);
    }
    verify.update(N);
    return wrong;
  });
  verify.done();

  console.log('');
  console.log('phase     ops/s          time');
  for (const p of phases) {
    const rate = p.ops > 1 ? Math.round((p.ops / p.ms) * 1000).toLocaleString('en').padStart(12) : ''.padStart(12);
    console.log(`${p.name.padEnd(8)} ${rate}  ${p.ms.toFixed(1).padStart(9)} ms`);
  }
  console.log('');
  console.log(`entries after reopen: ${map.size.toLocaleString('en')}; entries that failed verification: ${bad}`);
  const stats = map.stats();
  const diskBytes = stats.index.bytes + stats.data.bytes;
  console.log(`files: ${stats.index.files} index (${(stats.index.bytes / 2 ** 20).toFixed(1)} MiB, load ${(stats.index.load * 100).toFixed(1)}%), ` +
    `${stats.data.files} data; ${(diskBytes / map.size).toFixed(1)} bytes per entry`);
  console.log('stats:', JSON.stringify(stats, null, 2));
  map.close();
  if (bad !== 0) process.exitCode = 1;
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
