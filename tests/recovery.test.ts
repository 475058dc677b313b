/**
 * Kill -9 and reopen. A child process runs a seeded workload against a persistent map and is
 * killed; the parent replays the same seed to know what the map must hold and reopens the files.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { BucketMap, type BucketMapConfig } from '../host/index.js';
import { ENGINES, Rng, hex, persistentConfig, removeDir, snapshot, tempDir } from './helpers.js';

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
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', childScript(), JSON.stringify([config, seed, ops, 2500, true])], { encoding: 'utf8' });
    assert.is(child.signal, 'SIGKILL', child.stderr);
    assert.match(child.stdout, /flushed/);
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

  test('a process killed at an arbitrary moment keeps everything flushed, and each key holds a value it was given', async () => {
    const work = await loadWorkload();
    for (const [seed, delayMs] of [[7, 60], [8, 140], [9, 260]] as const) {
      const sub = path.join(dir, String(seed));
      const config: BucketMapConfig = persistentConfig(sub, engine, { maxBuckets: 4, maxSearch: 4 });
      const ops = 40000;
      const flushAt = 1500;
      const child = spawn(process.execPath, ['--input-type=module', '-e', childScript(), JSON.stringify([config, seed, ops, flushAt, false])]);
      let out = '';
      child.stdout.on('data', (d) => { out += d; });
      await new Promise<void>((resolve) => {
        const poll = setInterval(() => {
          if (out.includes('flushed')) {
            clearInterval(poll);
            setTimeout(() => { child.kill('SIGKILL'); resolve(); }, delayMs);
          }
        }, 5);
      });
      await new Promise((resolve) => child.on('close', resolve));
      const lastDone = Math.max(flushAt, ...[...out.matchAll(/done (\d+)/g)].map((m) => Number(m[1])));
      // Every value each key held from the flush on: the reopened map must show one of them.
      const flushed = replay(work(seed, ops), flushAt);
      const allowed = new Map<string, Set<string | undefined>>();
      for (const [k, v] of flushed) allowed.set(k, new Set([v]));
      const lastTouch = new Map<string, number>();
      let i = 0;
      for (const op of work(seed, ops)) {
        lastTouch.set(hex(op[1]), i);
        if (i++ < flushAt) continue;
        const k = hex(op[1]);
        if (!allowed.has(k)) allowed.set(k, new Set([undefined]));
        allowed.get(k)!.add(op[0] === 'insert' ? JSON.stringify([op[2].map(hex), op[3]]) : undefined);
      }
      const map = new BucketMap(config);
      const got = snapshot(map);
      assert.is(map.size, got.size, 'size agrees with the entries');
      for (const [k, v] of got) assert.ok(allowed.get(k)?.has(v), `key ${k.slice(0, 8)} holds a value it never had`);
      for (const [k, v] of flushed) {
        if (!got.has(k)) assert.ok(allowed.get(k)!.has(undefined), `flushed key ${k.slice(0, 8)} vanished without being deleted`);
        else assert.ok(allowed.get(k)!.has(got.get(k)), v);
      }
      // A kill loses no completed operation: keys last changed before the last progress report
      // hold exactly their final value.
      const reported = replay(work(seed, ops), lastDone);
      for (const [k, last] of lastTouch) {
        if (last < lastDone) assert.is(got.get(k), reported.get(k), `key ${k.slice(0, 8)} last changed at op ${last}`);
      }
      map.close();
    }
  });

  test.run();
}
