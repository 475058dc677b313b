/**
 * Kill -9 after the last operation and reopen: nothing is lost and dirty buckets are repaired.
 * (Kills at random moments, during growth and flush, are tests/crash.test.ts.)
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BucketMap, type BucketMapConfig } from '../host/index.js';
import { ENGINES, Rng, hex, persistentConfig, removeDir, snapshot, tempDir, testSeed } from './helpers.js';

const HOST_INDEX = new URL('../host/index.js', import.meta.url).href;
const HELPERS = new URL('./helpers.js', import.meta.url).href;

/** The workload both sides run: `ops` steps from `seed`, flushing after `flushAt` of them. */
const WORKLOAD = `
export function* workload(Rng, seed, ops) {
  const rng = new Rng(seed);
  const keys = [];
  for (let i = 0; i < ops; i++) {
    const r = rng.below(10);
    if (r < 6 || keys.length === 0) {
      const key = rng.key();
      keys.push(key);
      const list = Array.from({ length: rng.below(5) }, () => rng.bytes(16));
      yield ['insert', key, list, rng.chance(0.7) ? 1 : rng.below(4)];
    } else if (r < 8) {
      const key = keys[rng.below(keys.length)];
      const list = Array.from({ length: rng.below(5) }, () => rng.bytes(16));
      yield ['insert', key, list, rng.below(3)];
    } else {
      yield ['delete', keys[rng.below(keys.length)]];
    }
  }
}`;

function childScript(): string {
  return `
import { BucketMap } from ${JSON.stringify(HOST_INDEX)};
import { Rng } from ${JSON.stringify(HELPERS)};
${WORKLOAD}
const [config, seed, ops, flushAt, killAtEnd] = JSON.parse(process.argv[1]);
const map = new BucketMap(config);
let i = 0;
for (const op of workload(Rng, seed, ops)) {
  if (op[0] === 'insert') map.insert(op[1], op[2], op[3]); else map.deleteKey(op[1]);
  if (++i === flushAt) { map.flush(); process.stdout.write('flushed\\n'); }
  if (i % 1000 === 0) process.stdout.write('done ' + i + '\\n');
}
process.stdout.write('all\\n');
if (killAtEnd) process.kill(process.pid, 'SIGKILL');
setInterval(() => {}, 1000);
`;
}

type Op = ['insert', Uint8Array, Uint8Array[], number] | ['delete', Uint8Array];

/** Runs the workload in a child that flushes after `flushAt` operations and kills itself after the last; returns its output. */
function killedRun(config: BucketMapConfig, seed: number, ops: number, flushAt: number): string {
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', childScript(), JSON.stringify([config, seed, ops, flushAt, true])], { encoding: 'utf8' });
  assert.is(child.signal, 'SIGKILL', child.stderr);
  return child.stdout;
}

async function loadWorkload(): Promise<(seed: number, ops: number) => Generator<Op>> {
  const url = `data:text/javascript,${encodeURIComponent(WORKLOAD)}`;
  const mod = (await import(url)) as { workload: (R: typeof Rng, seed: number, ops: number) => Generator<Op> };
  return (seed, ops) => mod.workload(Rng, seed, ops);
}

/** The model after each op: hex key → JSON value, plus every value each key ever had. */
function replay(work: Generator<Op>, upTo: number): Map<string, string> {
  const model = new Map<string, string>();
  let i = 0;
  for (const op of work) {
    if (i++ === upTo) break;
    if (op[0] === 'insert') model.set(hex(op[1]), JSON.stringify([op[2].map(hex), op[3]]));
    else model.delete(hex(op[1]));
  }
  return model;
}

for (const engine of ENGINES) {
  const test = suite(`recovery after kill -9 [${engine}]`);
  let dir = '';
  test.before.each(() => {
    dir = tempDir();
  });
  test.after.each(() => removeDir(dir));

  test('a process killed after its last operation loses nothing; dirty buckets are repaired on reopen', async () => {
    const config: BucketMapConfig = persistentConfig(dir, engine, { maxBuckets: 8, maxSearch: 8 });
    const seed = 4242;
    const ops = 6000;
    assert.match(killedRun(config, seed, ops, 2500), /flushed/);
    const work = await loadWorkload();
    const expected = replay(work(seed, ops), ops);
    const map = new BucketMap(config);
    assert.ok(map.stats().open.repairedBuckets > 0, 'the buckets changed after the flush were dirty');
    assert.is(map.size, expected.size);
    assert.equal(snapshot(map), expected);
    map.close();
    const clean = new BucketMap(config);
    assert.is(clean.stats().open.repairedBuckets, 0, 'after a repair and a clean close, nothing to repair');
    clean.close();
  });

  test('a repair whose new index file has segments a killed growth left, with a gap before them, takes their place', async () => {
    // 64 KiB segments: the index is several segment files. A killed growth or compaction retires
    // its new file's segments in order, so it can leave segment 1 of a generation without segment 0.
    const config: BucketMapConfig = persistentConfig(dir, engine, { maxBuckets: 1, segmentBytes: 65536 });
    const seed = 99;
    const ops = 6000;
    killedRun(config, seed, ops, 5000);
    const drive = config.drives![0];
    const index = fs.readdirSync(drive).map((name) => /^([0-9a-f]{8})-b0000\.i\.(\d+)\.(\d+)\.bkt$/.exec(name)).filter((m) => m !== null);
    assert.ok(index.some((m) => m[3] === '1'), 'the index has a second segment file');
    const generation = Math.max(...index.map((m) => Number(m[2])));
    const stray = path.join(drive, `${index[0][1]}-b0000.i.${generation + 1}.1.bkt`);
    fs.copyFileSync(path.join(drive, `${index[0][1]}-b0000.i.${generation}.1.bkt`), stray);
    const work = await loadWorkload();
    const map = new BucketMap(config);
    assert.ok(map.stats().open.repairedBuckets > 0, 'the bucket was dirty, so the open rebuilt its index');
    assert.equal(snapshot(map), replay(work(seed, ops), ops));
    assert.ok(map.verify().ok);
    map.close();
  });

  test('a first open killed at random moments leaves a map the next open creates, and no draft behind', async () => {
    // 65,536 buckets: a 16 MiB restart file, so the kills land while it is being written.
    const seed = testSeed();
    const rng = new Rng(seed);
    const script = `
      import { BucketMap } from ${JSON.stringify(HOST_INDEX)};
      const config = JSON.parse(process.argv[1]);
      process.stdout.write('go\\n');
      new BucketMap(config);
      process.stdout.write('open\\n');
      setInterval(() => {}, 1000);`;
    let duringOpen = 0;
    for (let i = 0; i < 6; i++) {
      const sub = path.join(dir, `first-${i}`);
      const config = persistentConfig(sub, engine, { maxBuckets: 65536 });
      fs.mkdirSync(sub);
      const child = spawn(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(config)]);
      let out = '';
      const delay = rng.below(120);
      child.stdout.on('data', (d) => {
        if (!out.includes('go') && String(d).includes('go')) setTimeout(() => child.kill('SIGKILL'), delay);
        out += d;
      });
      await new Promise((resolve) => child.on('close', resolve));
      if (!out.includes('open')) duringOpen++;
      const map = new BucketMap(config);
      assert.is(map.size, 0, `seed ${seed}, kill ${i} after ${delay} ms`);
      map.close();
      assert.equal(fs.readdirSync(sub).filter((n) => n.endsWith('.new')), [], `seed ${seed}, kill ${i}: no draft is left`);
    }
    assert.ok(duringOpen > 0, `seed ${seed}: some kills landed before the first open returned`);
  });

  test.run();
}
