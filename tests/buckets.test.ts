import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap } from '../host/index.js';
import { ENGINES, Rng } from './helpers.js';

for (const engine of ENGINES) {
  const test = suite(`buckets [${engine}]`);
  const rng = new Rng(9);

  test('numBuckets, bucketIx and getBucket route by the top bits of the key', () => {
    const map = new BucketMap({ maxBuckets: 256, engine });
    assert.is(map.numBuckets, 256);
    for (let i = 0; i < 200; i++) {
      const key = rng.key();
      assert.is(map.bucketIx(key), key[0]);
      assert.is(map.getBucket(key).index, key[0]);
    }
    const one = new BucketMap({ maxBuckets: 1, engine });
    assert.is(one.bucketIx(rng.key()), 0);
    one.close();
    map.close();
  });

  test('a caller can choose the bucket itself; the map routes by key bits only', () => {
    const map = new BucketMap({ maxBuckets: 4, engine });
    const key = rng.key();
    key[0] = 0; // belongs to bucket 0 by its bits
    const bucket = map.getBucketFromIndex(3);
    bucket.insert(key, [rng.bytes(16)], 5);
    assert.is(bucket.readValue(key)?.[1], 5);
    assert.is(bucket.bucketLen(), 1);
    assert.is(map.readValue(key), undefined, 'the map looks in bucket 0');
    assert.is(map.size, 1, 'size counts every bucket');
    assert.is(bucket.deleteKey(key), true);
    map.close();
  });

  test('bucket methods mirror the map methods (n_drives: 100 keys across 4 buckets)', () => {
    const map = new BucketMap({ maxBuckets: 4, engine });
    const keys = Array.from({ length: 100 }, () => rng.key());
    for (const key of keys) map.getBucket(key).insert(key, [key.subarray(0, 16)]);
    for (const key of keys) assert.equal(Array.from(map.getBucket(key).readValue(key)![0][0]), Array.from(key.subarray(0, 16)));
    let total = 0;
    for (let ix = 0; ix < 4; ix++) total += map.getBucketFromIndex(ix).bucketLen();
    assert.is(total, 100);
    for (const key of keys) map.getBucket(key).update(key, ([list, rc] = [[], 0]) => [list, rc + 1]);
    assert.is(map.readValue(keys[0])?.[1], 2);
    map.close();
  });

  test('getBucketFromIndex rejects indexes out of range', () => {
    const map = new BucketMap({ maxBuckets: 4, engine });
    assert.throws(() => map.getBucketFromIndex(4), RangeError);
    assert.throws(() => map.getBucketFromIndex(-1), RangeError);
    assert.throws(() => map.getBucketFromIndex(1.5), RangeError);
    assert.throws(() => map.getBucketFromIndex('1' as never), TypeError);
    map.close();
  });

  test.run();
}
