import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, BucketMapError, codes, type Entry } from '../host/index.js';
import { ENGINES, Rng, hex } from './helpers.js';

for (const engine of ENGINES) {
  const test = suite(`update [${engine}]`);
  let map: BucketMap;
  const rng = new Rng(2);
  test.before.each(() => {
    map = new BucketMap({ maxBuckets: 2, engine });
  });
  test.after.each(() => map.close());

  test('update of an absent key sees undefined and creates the entry', () => {
    const key = rng.key();
    const v = rng.bytes(16);
    let seen: Entry<Uint8Array> | undefined | 'not called' = 'not called';
    map.update(key, (current) => {
      seen = current;
      return [[v], 1];
    });
    assert.is(seen, undefined);
    assert.equal(map.readValue(key)?.[0].map(hex), [hex(v)]);
  });

  test('update sees the current entry and replaces it (Agave test_update)', () => {
    const key = rng.key();
    map.insert(key, [rng.bytes(16)], 3);
    const next = [rng.bytes(16), rng.bytes(16)];
    map.update(key, (current) => {
      assert.is(current?.[1], 3);
      return [next, current![1] + 1];
    });
    assert.equal(map.readValue(key)?.[0].map(hex), next.map(hex));
    assert.is(map.readValue(key)?.[1], 4);
  });

  test('returning undefined deletes the entry', () => {
    const key = rng.key();
    map.insert(key, [rng.bytes(16)]);
    map.update(key, () => undefined);
    assert.is(map.has(key), false);
    assert.is(map.size, 0);
    map.update(key, () => undefined);
    assert.is(map.size, 0, 'deleting an absent key through update is a no-op');
  });

  test('a callback that throws propagates its error and leaves the map unchanged', () => {
    const key = rng.key();
    const v = rng.bytes(16);
    map.insert(key, [v], 2);
    assert.throws(() => map.update(key, () => { throw new Error('boom'); }), /boom/);
    assert.equal(map.readValue(key), [[v], 2]);
  });

  test('a callback result that is not [slotList, refCount] is a TypeError and changes nothing', () => {
    const key = rng.key();
    map.insert(key, [rng.bytes(16)], 2);
    const before = map.readValue(key);
    for (const bad of [null, 5, [[]], [[], 1, 2], { 0: [], 1: 1 }]) {
      assert.throws(() => map.update(key, () => bad as never), TypeError);
    }
    assert.throws(() => map.update(key, () => [[], -1]), RangeError);
    assert.throws(() => map.update(key, () => [[], 1.5]), RangeError);
    assert.throws(() => map.update(key, () => [[new Uint8Array(3)], 1]), RangeError);
    assert.equal(map.readValue(key), before);
    assert.throws(() => map.update(key, 'fn' as never), TypeError);
  });

  test('calling the map from inside the callback fails with REENTRANT and changes nothing', () => {
    const key = rng.key();
    const other = rng.key();
    map.insert(key, [rng.bytes(16)]);
    for (const call of [
      () => map.readValue(other),
      () => map.insert(other, []),
      () => map.deleteKey(key),
      () => map.update(other, () => undefined),
      () => map.size,
      () => map.getBucketFromIndex(0).bucketLen(),
      () => map.flush(),
      () => map.close(),
    ]) {
      let inner: unknown;
      map.update(key, (current) => {
        try {
          call();
        } catch (err) {
          inner = err;
        }
        return current;
      });
      assert.instance(inner, BucketMapError);
      assert.is((inner as BucketMapError).code, codes.REENTRANT);
    }
    assert.is(map.size, 1);
    assert.is(map.has(other), false);
    assert.is(map.has(key), true);
  });

  test('an iteration stepped from inside the callback fails with REENTRANT too', () => {
    const keys = Array.from({ length: 6 }, () => rng.key());
    for (const k of keys) map.insert(k, [rng.bytes(16)]);
    for (const make of [() => map.keys(), () => map.values(), () => map.entries()]) {
      // Started outside: the next step would come from the snapshot, without asking the map.
      const it: Iterator<unknown> = make();
      assert.not.ok(it.next().done);
      let inner: unknown;
      map.update(keys[0], (current) => {
        try {
          it.next();
        } catch (err) {
          inner = err;
        }
        return current;
      });
      assert.instance(inner, BucketMapError);
      assert.is((inner as BucketMapError).code, codes.REENTRANT);
    }
  });

  test.run();
}
