import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, BucketMapError, codes } from '../host/index.js';
import { ENGINES, Rng, hex } from './helpers.js';

for (const engine of ENGINES) {
  const test = suite(`addref and unref [${engine}]`);
  let map: BucketMap;
  const rng = new Rng(4);
  test.before.each(() => {
    map = new BucketMap({ maxBuckets: 2, engine });
  });
  test.after.each(() => map.close());

  test('addref and unref return the new refCount and keep the slot list', () => {
    const key = rng.key();
    const list = [rng.bytes(16), rng.bytes(16)];
    map.insert(key, list, 1);
    assert.is(map.addref(key), 2);
    assert.is(map.addref(key), 3);
    assert.is(map.unref(key), 2);
    assert.is(map.unref(key), 1);
    assert.is(map.unref(key), 0);
    assert.equal(map.readValue(key)?.[0].map(hex), list.map(hex));
    assert.is(map.readValue(key)?.[1], 0);
  });

  test('a single inline element moves to a data cell and back as its refCount leaves and returns to 1', () => {
    const key = rng.key();
    const v = rng.bytes(16);
    map.insert(key, [v]);
    map.addref(key);
    assert.is(map.stats().data.cells, 1);
    map.unref(key);
    assert.is(map.stats().data.cells, 0);
    assert.equal(map.readValue(key), [[v], 1]);
  });

  test('absent keys give undefined', () => {
    assert.is(map.addref(rng.key()), undefined);
    assert.is(map.unref(rng.key()), undefined);
    assert.is(map.size, 0);
  });

  test('unref at 0 fails with REFCOUNT_UNDERFLOW; addref at 2^53-1 with REFCOUNT_OVERFLOW; nothing changes', () => {
    const a = rng.key();
    map.insert(a, [], 0);
    assert.throws(() => map.unref(a), (e: BucketMapError) => e.code === codes.REFCOUNT_UNDERFLOW);
    assert.is(map.readValue(a)?.[1], 0);
    const b = rng.key();
    map.insert(b, [rng.bytes(16)], Number.MAX_SAFE_INTEGER);
    assert.throws(() => map.addref(b), (e: BucketMapError) => e.code === codes.REFCOUNT_OVERFLOW);
    assert.is(map.readValue(b)?.[1], Number.MAX_SAFE_INTEGER);
  });

  test.run();
}
