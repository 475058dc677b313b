import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, codes } from '../host/index.js';
import { ENGINES, Rng, hex, persistentConfig, removeDir, tempDir, thrownBy } from './helpers.js';

for (const engine of ENGINES) {
  const test = suite(`iteration [${engine}]`);
  const rng = new Rng(8);

  function filled(n: number, buckets = 8): [BucketMap, Map<string, string>] {
    const map = new BucketMap({ maxBuckets: buckets, engine });
    const model = new Map<string, string>();
    for (let i = 0; i < n; i++) {
      const key = rng.key();
      const list = Array.from({ length: i % 4 }, () => rng.bytes(16));
      map.insert(key, list, i % 3);
      model.set(hex(key), JSON.stringify([list.map(hex), i % 3]));
    }
    return [map, model];
  }

  test('keys, entries, values and the iterator visit every entry once, keys as 32-byte copies', () => {
    const [map, model] = filled(2000);
    const keys = [...map.keys()];
    assert.is(keys.length, 2000);
    assert.is(new Set(keys.map(hex)).size, 2000);
    for (const k of keys) assert.ok(model.has(hex(k)));
    const seen = new Map<string, string>();
    for (const [key, [list, rc]] of map) seen.set(hex(key), JSON.stringify([list.map(hex), rc]));
    assert.equal(seen, model);
    assert.is([...map.values()].length, 2000);
    keys[0].fill(0);
    assert.ok(map.has([...map.keys()][0]), 'mutating a yielded key does not touch the map');
    map.close();
  });

  test('per-bucket keys() and items() hold exactly that bucket, and routing uses the top bits', () => {
    const [map, model] = filled(1000, 4);
    let total = 0;
    for (let ix = 0; ix < 4; ix++) {
      const bucket = map.getBucketFromIndex(ix);
      const items = bucket.items();
      assert.is(items.length, bucket.bucketLen());
      assert.is(bucket.keys().length, items.length);
      for (const item of items) {
        assert.is(item.key[0] >> 6, ix);
        assert.is(JSON.stringify([item.slotList.map(hex), item.refCount]), model.get(hex(item.key)));
      }
      total += items.length;
    }
    assert.is(total, 1000);
    map.close();
  });

  test('changing the map while iterating: entries present throughout are visited exactly once', () => {
    const [map, model] = filled(3000, 2);
    const untouched = new Set(model.keys());
    const seen = new Map<string, number>();
    let step = 0;
    for (const [key] of map.entries()) {
      seen.set(hex(key), (seen.get(hex(key)) ?? 0) + 1);
      if (step++ % 3 === 0) {
        // Inserts shift runs right and can grow the index; deletes shift runs left.
        for (let i = 0; i < 5; i++) map.insert(rng.key(), [rng.bytes(16)]);
        const victim = [...untouched][rng.below(untouched.size)];
        untouched.delete(victim);
        map.deleteKey(Buffer.from(victim, 'hex'));
      }
    }
    for (const k of untouched) assert.is(seen.get(k), 1, `entry ${k.slice(0, 8)} seen ${seen.get(k) ?? 0} times`);
    for (const [k, n] of seen) assert.is(n, 1, `no entry is visited twice (${k.slice(0, 8)})`);
    map.close();
  });

  // Each write call on its own, so that one that forgot to tell iterators the bucket changed is
  // caught: an iterator that trusts a stale snapshot reads a cell a shift has since refilled.
  // Deleting writers take an untouched entry each step; inserting ones leave every entry in place.
  const writers: Record<string, [deletes: boolean, write: (map: BucketMap, victim: Uint8Array) => void]> = {
    deleteKey: [true, (map, victim) => assert.ok(map.deleteKey(victim))],
    deleteMany: [true, (map, victim) => assert.is(map.deleteMany([victim]), 1)],
    'packed delete': [true, (map, victim) => assert.ok(map.packed(victim).delete(0))],
    insert: [false, (map) => map.insert(rng.key(), [rng.bytes(16)])],
    insertMany: [false, (map) => map.insertMany([rng.key(), rng.key()], [[rng.bytes(16)], []])],
  };
  for (const [name, [deletes, write]] of Object.entries(writers)) {
    test(`${name} while iterating: every entry yielded carries its own value`, () => {
      const [map, model] = filled(1500, 2);
      const untouched = new Set(model.keys());
      const seen = new Set<string>();
      for (const [key, [list, rc]] of map.entries()) {
        const k = hex(key);
        assert.not.ok(seen.has(k), `entry ${k.slice(0, 8)} visited twice`);
        seen.add(k);
        if (untouched.has(k)) assert.is(JSON.stringify([list.map(hex), rc]), model.get(k), `value of ${k.slice(0, 8)}`);
        if (!deletes) {
          write(map, key);
        } else if (untouched.size > 0) {
          const victim = [...untouched][rng.below(untouched.size)];
          untouched.delete(victim);
          write(map, Buffer.from(victim, 'hex'));
        }
      }
      for (const k of untouched) assert.ok(seen.has(k), `entry ${k.slice(0, 8)} present throughout was visited`);
      map.close();
    });
  }

  test('an empty map and unallocated buckets yield nothing', () => {
    const map = new BucketMap({ maxBuckets: 16, engine });
    assert.equal([...map.keys()], []);
    assert.equal(map.getBucketFromIndex(3).items(), []);
    map.close();
  });

  test('an iterator stepped after close() throws CLOSED, also once a later open has grown the files it read', () => {
    const dir = tempDir();
    const config = persistentConfig(dir, engine, { maxBuckets: 2 });
    const map = new BucketMap(config);
    for (let i = 0; i < 200; i++) map.insert(rng.key(), [rng.bytes(16)]);
    const inBucket = map.getBucketFromIndex(0).bucketLen();
    const entries = map.entries();
    const keys = map.keys();
    const atBucketEnd = map.entries(); // its next step takes a new bucket's snapshot
    entries.next();
    keys.next();
    for (let i = 0; i < inBucket; i++) atBucketEnd.next();
    map.close();
    // Growth retires the files the old iterators read, truncated to nothing: reading their
    // mappings would be a SIGBUS, which kills this test.
    const again = new BucketMap(config);
    for (let i = 0; i < 20_000; i++) again.insert(rng.key(), [rng.bytes(16)]);
    assert.ok(again.stats().index.resizes > 0, 'the index grew');
    for (const it of [entries, keys, atBucketEnd]) assert.is(thrownBy(() => it.next())?.code, codes.CLOSED);
    again.close();
    removeDir(dir);
  });

  test.run();
}
