/**
 * Hostile keys. Keys sharing their first bytes (vanity-ground addresses) all route to one bucket:
 * that is Agave's top-bits bucket_ix, the skew shows in stats, and inserting stays amortised.
 * Keys aimed at one probe window under a known seed overflow it at low load: the bucket is then
 * reseeded instead of grown, so the attack buys no unbounded growth.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap } from '../host/index.js';
import { testHooks } from '../host/bucket-storage.js';
import { hashHi, hashKey } from '../host/hash.js';
import { ENGINES, Rng } from './helpers.js';

for (const engine of ENGINES) {
  const test = suite(`hostile keys [${engine}]`);
  test.after.each(() => {
    testHooks.fixedSeed = null;
  });

  test('keys sharing their first bytes land in one bucket; the skew is reported and inserts stay amortised', () => {
    const rng = new Rng(50);
    const map = new BucketMap({ maxBuckets: 256, engine });
    const keys: Uint8Array[] = [];
    for (let i = 0; i < 20000; i++) {
      const key = rng.key();
      key[0] = 0x42; // a vanity prefix: every key has the same top byte
      keys.push(key);
      map.insert(key, [key.subarray(0, 16)]);
    }
    const s = map.stats();
    assert.is(s.buckets.allocated, 1);
    assert.is(s.buckets.maxEntries, 20000);
    assert.is(s.buckets.minEntries, 0);
    const skew = s.buckets.maxEntries / (s.entries / s.buckets.total);
    assert.is(skew, 256, 'all entries in one bucket of 256');
    assert.ok(s.index.resizes <= 16, `geometric growth of the one bucket: ${s.index.resizes} resizes`);
    for (const key of keys) assert.ok(map.has(key));
    // Random keys spread: the fullest bucket holds about the mean.
    const spread = new BucketMap({ maxBuckets: 256, engine });
    for (let i = 0; i < 20000; i++) spread.insert(rng.key(), [rng.bytes(16)]);
    const r = spread.stats();
    assert.ok(r.buckets.maxEntries / (r.entries / 256) < 1.6, `random keys skew ${r.buckets.maxEntries / (r.entries / 256)}`);
    map.close();
    spread.close();
  });

  test('keys aimed at one window under a known seed make the bucket reseed, not grow without bound', () => {
    const seed: [number, number] = [0x1234567, 0x7654321];
    testHooks.fixedSeed = seed;
    const rng = new Rng(51);
    // The first index file has 80 cells: find keys whose home under the known seed is cell 7.
    const aimed: Uint8Array[] = [];
    while (aimed.length < 3000) {
      const key = rng.key();
      if ((hashKey(key, 0, seed[0], seed[1]) >>> 0) % 80 === 7) aimed.push(key);
    }
    const map = new BucketMap({ maxBuckets: 1, engine });
    for (const key of aimed) map.insert(key, [key.subarray(0, 16)]);
    const s = map.stats();
    assert.ok(s.index.reseeds >= 1, 'the overflow at low load reseeded the bucket');
    // Without reseeding, keys aimed at one home need ~3000/32 windows: about 10,240 cells (29% full).
    assert.ok(s.index.capacity <= 3000 / 0.45, `capacity ${s.index.capacity} for 3,000 keys`);
    assert.ok(s.index.resizes <= 10, `${s.index.resizes} resizes`);
    for (const key of aimed) assert.ok(map.has(key));
    map.close();
  });

  test('keys that differ only in their last bytes, with one home and one tag, stay two keys', () => {
    const seed: [number, number] = [0x2345678, 0x6543210];
    testHooks.fixedSeed = seed;
    // The first index file has 80 cells. A key whose last four bytes differ from the first's, yet
    // hashes to the same home cell and 6-bit tag, is told apart by its last key word alone.
    const first = new Rng(52).key();
    const home = (hashKey(first, 0, seed[0], seed[1]) >>> 0) % 80;
    const tag = hashHi >>> 26;
    const twin = first.slice();
    const view = new DataView(twin.buffer);
    for (let n = 1; ; n++) {
      view.setUint32(28, n, true);
      if ((hashKey(twin, 0, seed[0], seed[1]) >>> 0) % 80 === home && hashHi >>> 26 === tag && view.getUint32(28, true) !== new DataView(first.buffer).getUint32(28, true)) break;
    }
    const map = new BucketMap({ maxBuckets: 1, engine });
    map.insert(first, [new Uint8Array(16).fill(1)]);
    assert.is(map.has(twin), false);
    assert.is(map.readValue(twin), undefined);
    map.insert(twin, [new Uint8Array(16).fill(2)], 3);
    assert.is(map.size, 2);
    assert.equal(map.readValue(first), [[new Uint8Array(16).fill(1)], 1]);
    assert.equal(map.readValue(twin), [[new Uint8Array(16).fill(2)], 3]);
    assert.ok(map.deleteKey(first));
    assert.is(map.has(first), false);
    assert.equal(map.readValue(twin), [[new Uint8Array(16).fill(2)], 3]);
    map.close();
  });

  test.run();
}
