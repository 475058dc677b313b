/**
 * A million entries survive close and reopen: every key is read back and checked, with the engine
 * that wrote them and with the other one.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, type BucketMapConfig } from '../host/index.js';
import { Rng, persistentConfig, removeDir, tempDir } from './helpers.js';

const N = Number(process.env.REOPEN_ENTRIES ?? 1_000_000);

function valueOf(i: number, out: Uint8Array): Uint8Array {
  const view = new DataView(out.buffer, out.byteOffset, 16);
  view.setUint32(0, i, true);
  view.setUint32(4, Math.imul(i, 0x9e3779b1), true);
  view.setUint32(8, ~i, true);
  view.setUint32(12, i ^ 0x5bd1e995, true);
  return out;
}

function fail(message: string): never {
  assert.unreachable(message);
  throw new Error(message);
}

function verifyAll(map: BucketMap, keys: Uint8Array, deleted: (i: number) => boolean): void {
  const expected = new Uint8Array(16);
  for (let i = 0; i < N; i++) {
    const got = map.readValue(keys.subarray(32 * i, 32 * i + 32));
    if (deleted(i)) {
      if (got !== undefined) fail(`entry ${i} was deleted but reads back`);
      continue;
    }
    if (got === undefined) fail(`entry ${i} is missing`);
    const rc = i % 100 === 0 ? 2 : 1;
    if (got[1] !== rc || got[0].length !== 1) fail(`entry ${i}: refCount ${got[1]}, ${got[0].length} elements`);
    valueOf(i, expected);
    const e = got[0][0];
    for (let b = 0; b < 16; b++) if (e[b] !== expected[b]) fail(`entry ${i}: wrong bytes`);
  }
}

test(`${N.toLocaleString('en')} entries reopen and verify completely, with both engines`, () => {
  const dir = tempDir();
  try {
    const config: BucketMapConfig = persistentConfig(dir, 'wasm', { maxBuckets: 1024 });
    const rng = new Rng(20261121);
    const keys = rng.bytes(32 * N);
    const value = new Uint8Array(16);
    const map = new BucketMap(config);
    for (let i = 0; i < N; i++) map.insert(keys.subarray(32 * i, 32 * i + 32), [valueOf(i, value)], i % 100 === 0 ? 2 : 1);
    const deleted = (i: number): boolean => i % 1000 === 7;
    for (let i = 7; i < N; i += 1000) map.deleteKey(keys.subarray(32 * i, 32 * i + 32));
    const size = map.size;
    assert.is(size, N - Math.ceil((N - 7) / 1000));
    map.close();

    const started = performance.now();
    const again = new BucketMap(config);
    const openMs = performance.now() - started;
    assert.is(again.size, size);
    assert.is(again.stats().open.repairedBuckets, 0);
    verifyAll(again, keys, deleted);
    again.close();

    const other = new BucketMap({ ...config, engine: 'host' });
    assert.is(other.size, size);
    verifyAll(other, keys, deleted);
    other.close();
    console.log(`    reopen of ${N.toLocaleString('en')} entries took ${openMs.toFixed(1)} ms`);
  } finally {
    removeDir(dir);
  }
});

test.run();
