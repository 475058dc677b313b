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

  test('a single element keeps refCounts 1 to 256 in the index and moves to a data cell beyond', () => {
    const key = rng.key();
    const v = rng.bytes(16);
    map.insert(key, [v]);
    for (let rc = 2; rc <= 256; rc++) assert.is(map.addref(key), rc);
    assert.is(map.stats().data.cells, 0, 'refCounts up to 256 stay inline');
    assert.is(map.addref(key), 257);
    assert.is(map.stats().data.cells, 1, 'refCount 257 needs a data cell');
    assert.equal(map.readValue(key), [[v], 257]);
    assert.is(map.unref(key), 256);
    assert.is(map.stats().data.cells, 0, 'and it comes back inline');
    for (let rc = 255; rc >= 1; rc--) assert.is(map.unref(key), rc);
    assert.equal(map.readValue(key), [[v], 1]);
    assert.is(map.unref(key), 0);
    assert.is(map.stats().data.cells, 1, 'refCount 0 with an element is a data cell');
    assert.equal(map.readValue(key), [[v], 0]);
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
