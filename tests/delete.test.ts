import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap } from '../host/index.js';
import { ENGINES, Rng } from './helpers.js';

for (const engine of ENGINES) {
  const test = suite(`delete [${engine}]`);
  const rng = new Rng(3);

  test('insert, read, delete, read none, reinsert, delete (Agave test_delete / test_delete_2)', () => {
    for (const [keys, buckets] of [[10, 2], [100, 4]] as const) {
      const map = new BucketMap({ maxBuckets: buckets, engine });
      const all = Array.from({ length: keys }, () => rng.key());
      for (const [i, key] of all.entries()) {
        map.insert(key, [new Uint8Array(16).fill(i)]);
        assert.is(map.readValue(key)?.[0][0][0], i);
        assert.is(map.deleteKey(key), true);
        assert.is(map.readValue(key), undefined);
        map.insert(key, [new Uint8Array(16).fill(i)]);
        assert.is(map.readValue(key)?.[0][0][0], i);
        assert.is(map.deleteKey(key), true);
        assert.is(map.deleteKey(key), false);
      }
      assert.is(map.size, 0);
      map.close();
    }
  });

  test('deleting keys one at a time leaves the rest readable (Agave test_n_delete)', () => {
    const map = new BucketMap({ maxBuckets: 2, engine, maxSearch: 4 });
    const all = Array.from({ length: 400 }, () => rng.key());
    for (const key of all) map.insert(key, [key.subarray(0, 16)]);
    for (let i = 0; i < all.length; i++) {
      assert.is(map.deleteKey(all[i]), true);
      if (i % 40 === 0) for (let j = i + 1; j < all.length; j++) assert.ok(map.has(all[j]), `key ${j} after deleting ${i}`);
    }
    assert.is(map.size, 0);
    assert.equal([...map.keys()], []);
    map.close();
  });

  test('deleting entries with data cells frees them', () => {
    const map = new BucketMap({ maxBuckets: 1, engine });
    const all = Array.from({ length: 50 }, () => rng.key());
    for (const key of all) map.insert(key, [rng.bytes(16), rng.bytes(16)], 2);
    assert.is(map.stats().data.cells, 50);
    for (const key of all) map.deleteKey(key);
    assert.is(map.stats().data.cells, 0);
    map.close();
  });

  test.run();
}
