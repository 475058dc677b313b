import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap } from '../host/index.js';
import { ENGINES, Rng, hex } from './helpers.js';

for (const engine of ENGINES) {
  const test = suite(`batchInsertNonDuplicates [${engine}]`);
  const rng = new Rng(7);

  test('inserts new keys and reports each duplicate with the value that is kept', () => {
    const map = new BucketMap({ maxBuckets: 1, engine });
    const bucket = map.getBucketFromIndex(0);
    const existing = rng.key();
    const kept = rng.bytes(16);
    bucket.insert(existing, [kept]);
    const items: Array<[Uint8Array, Uint8Array]> = Array.from({ length: 500 }, () => [rng.key(), rng.bytes(16)]);
    items.splice(100, 0, [existing, rng.bytes(16)]);
    items.push([items[3][0], rng.bytes(16)]);
    const duplicates = bucket.batchInsertNonDuplicates(items);
    assert.equal(duplicates.map(([i]) => i), [100, 501]);
    assert.is(hex(duplicates[0][1]!), hex(kept));
    assert.is(hex(duplicates[1][1]!), hex(items[3][1]), 'a key repeated in the batch keeps its first value');
    assert.is(bucket.bucketLen(), 501);
    for (const [i, [key, value]] of items.entries()) {
      if (i === 100 || i === 501) continue;
      assert.equal(map.readValue(key), [[value], 1]);
    }
    assert.is(map.stats().index.resizes, 1, 'one growth, sized for the whole batch up front');
    map.close();
  });

  test('a duplicate of an entry whose slot list is empty reports undefined as its element', () => {
    const map = new BucketMap({ maxBuckets: 1, engine });
    const bucket = map.getBucketFromIndex(0);
    const k = rng.key();
    bucket.insert(k, [], 7);
    assert.equal(bucket.batchInsertNonDuplicates([[k, rng.bytes(16)]]), [[0, undefined]]);
    assert.equal(map.readValue(k), [[], 7], 'kept as it was');
    map.close();
  });

  test('works after deletes (the original only allowed it before any delete)', () => {
    const map = new BucketMap({ maxBuckets: 1, engine });
    const bucket = map.getBucketFromIndex(0);
    const k = rng.key();
    bucket.insert(k, [rng.bytes(16)]);
    bucket.deleteKey(k);
    assert.equal(bucket.batchInsertNonDuplicates([[k, rng.bytes(16)]]), []);
    assert.is(bucket.bucketLen(), 1);
    map.close();
  });

  test('rejects malformed items before writing anything', () => {
    const map = new BucketMap({ maxBuckets: 1, engine });
    const bucket = map.getBucketFromIndex(0);
    assert.throws(() => bucket.batchInsertNonDuplicates('x' as never), TypeError);
    assert.throws(() => bucket.batchInsertNonDuplicates([[rng.key(), rng.bytes(16)], [new Uint8Array(3), rng.bytes(16)]]), (e: Error) => /items\[1\]\[0\]/.test(e.message));
    assert.is(bucket.bucketLen(), 0);
    const good = Array.from({ length: 50 }, () => [rng.key(), rng.bytes(16)] as [Uint8Array, Uint8Array]);
    assert.throws(() => bucket.batchInsertNonDuplicates([...good, [rng.key(), new Uint8Array(15)]]), (e: Error) => e instanceof RangeError && /items\[50\]\[1\]/.test(e.message));
    assert.is(bucket.bucketLen(), 0, 'a bad element at the end writes none of the batch');
    map.close();
  });

  test.run();
}
