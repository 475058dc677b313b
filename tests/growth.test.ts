import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import { BucketMap, BucketMapError, codes } from '../host/index.js';
import { nextIndexPages, pagesFor } from '../host/bucket-storage.js';
import { CELLS_PER_PAGE, PAGE_BYTES } from '../host/layout.js';
import { ENGINES, Rng, collectUntil, hex, listFiles, persistentConfig, removeDir, tempDir, thrownBy } from './helpers.js';

for (const engine of ENGINES) {
  const test = suite(`growth [${engine}]`);
  const rng = new Rng(6);

  test('every earlier key reads back after each insert and every later key is absent (Agave test_grow_read)', () => {
    const map = new BucketMap({ maxBuckets: 1, engine });
    const keys = Array.from({ length: 300 }, () => rng.key());
    for (let i = 0; i < keys.length; i++) {
      map.insert(keys[i], [keys[i].subarray(0, 16)]);
      if (i % 10 !== 0) continue;
      for (let j = 0; j <= i; j++) assert.ok(map.has(keys[j]));
      for (let j = i + 1; j < keys.length; j++) assert.not.ok(map.has(keys[j]));
    }
    map.close();
  });

  test('index growth is geometric: 50,000 keys in one bucket take a logarithmic number of resizes', () => {
    const map = new BucketMap({ maxBuckets: 1, engine });
    for (let i = 0; i < 50000; i++) map.insert(rng.key(), [rng.bytes(16)]);
    const s = map.stats();
    // From 40 cells to ≥ 55,556 (90% load) by ×1.5 is 18 steps; allow a few for window overflows.
    assert.ok(s.index.resizes <= 24, `resizes: ${s.index.resizes}`);
    assert.ok(s.index.load <= 0.9 && s.index.load >= 0.4, `load ${s.index.load}`);
    map.close();
  });

  test('small indexes grow in few steps (x4 below 32 pages, x2 below 128, then x1.5), so disk stays bounded', () => {
    const map = new BucketMap({ maxBuckets: 1, engine });
    const pagesOf = (): number => map.stats().index.capacity / CELLS_PER_PAGE;
    const steps: Array<[number, number]> = [];
    let pages = 0;
    for (let i = 0; i < 6000; i++) {
      map.insert(rng.key(), [rng.bytes(16)]);
      const now = pagesOf();
      if (pages !== 0 && now !== pages) steps.push([pages, now]);
      pages = now;
      if (i === 1100) assert.ok(steps.length <= 2, `1,100 keys took ${steps.length} growths: ${JSON.stringify(steps)}`);
    }
    assert.ok(steps.length >= 4, JSON.stringify(steps));
    for (const [from, to] of steps) {
      const limit = from < 32 ? from * 4 : from < 128 ? from * 2 : Math.ceil(from * 1.5);
      assert.ok(to > from && to <= limit, `grew from ${from} to ${to} pages: ${JSON.stringify(steps)}`);
    }
    map.close();
  });

  test('setAnticipatedCount sizes the index once for a bulk load', () => {
    const map = new BucketMap({ maxBuckets: 1, engine });
    const bucket = map.getBucketFromIndex(0);
    bucket.setAnticipatedCount(20000);
    for (let i = 0; i < 20000; i++) bucket.insert(rng.key(), [rng.bytes(16)]);
    assert.is(map.stats().index.resizes, 0, 'the first file was already large enough');
    const grown = new BucketMap({ maxBuckets: 1, engine });
    const b2 = grown.getBucketFromIndex(0);
    for (let i = 0; i < 100; i++) b2.insert(rng.key(), [rng.bytes(16)]);
    const before = grown.stats().index.resizes;
    b2.setAnticipatedCount(20000);
    assert.is(grown.stats().index.resizes, before + 1, 'an allocated bucket grows at once, in one step');
    assert.throws(() => b2.setAnticipatedCount(-1), RangeError);
    map.close();
    grown.close();
  });

  test('the map-level setAnticipatedCount sizes every bucket for its share, so a bulk load grows nothing', () => {
    const dir = tempDir();
    // About 78 keys per bucket: the spread between buckets (±9 keys) is wider than the headroom
    // between the anticipated load and the growth trigger, so the share needs its margin.
    const config = persistentConfig(dir, engine, { maxBuckets: 256 });
    const map = new BucketMap(config);
    map.setAnticipatedCount(20000);
    const model = new Map<string, Uint8Array>();
    for (let i = 0; i < 20000; i++) {
      const key = rng.key();
      const element = rng.bytes(16);
      map.insert(key, [element]);
      model.set(hex(key), element);
    }
    assert.is(map.stats().index.resizes, 0, 'every first file was large enough for its bucket');
    assert.ok(map.stats().index.load > 0.5, `the share is not grossly oversized: load ${map.stats().index.load}`);
    map.close();
    const again = new BucketMap(config);
    assert.is(again.size, model.size);
    for (const [k, element] of model) assert.equal(again.readValue(Buffer.from(k, 'hex'))?.[0][0], element);
    // Buckets with files grow at once, each in one step, and keep every entry.
    const before = again.stats().index;
    again.setAnticipatedCount(80000);
    const after = again.stats().index;
    assert.is(after.resizes, before.resizes + 256);
    assert.ok(after.capacity >= 80000 / 0.8, `capacity ${after.capacity}`);
    for (const [k, element] of model) assert.equal(again.readValue(Buffer.from(k, 'hex'))?.[0][0], element);
    // A smaller count shrinks nothing.
    again.setAnticipatedCount(10);
    assert.is(again.stats().index.capacity, after.capacity);
    again.close();
    removeDir(dir);
  });

  test('a load through batchInsertNonDuplicates keeps the count the map anticipated: no bucket grows', () => {
    const map = new BucketMap({ maxBuckets: 1, engine });
    map.setAnticipatedCount(20_000);
    const bucket = map.getBucketFromIndex(0);
    for (let batch = 0; batch < 20; batch++) {
      // Each call anticipates only its own 1,000 items, a smaller count that must not replace the map's.
      bucket.batchInsertNonDuplicates(Array.from({ length: 1000 }, () => [rng.key(), rng.bytes(16)] as [Uint8Array, Uint8Array]));
    }
    assert.is(map.size, 20_000);
    assert.is(map.stats().index.resizes, 0);
    map.close();
  });

  test('setAnticipatedCount past maxBytes or the largest index is refused before anything changes', () => {
    const map = new BucketMap({ maxBuckets: 8, engine, maxBytes: 4 << 20 });
    for (let i = 0; i < 500; i++) map.insert(rng.key(), [rng.bytes(16)]);
    const before = map.stats().index;
    const err = thrownBy(() => map.setAnticipatedCount(200000));
    assert.instance(err, BucketMapError);
    assert.is(err?.code, codes.SIZE_LIMIT);
    const capacity = thrownBy(() => map.setAnticipatedCount(2 ** 45));
    assert.is(capacity?.code, codes.CAPACITY);
    assert.equal(map.stats().index, before, 'no bucket grew');
    // Nothing was left anticipated: inserts go on growing by the usual steps.
    for (let i = 0; i < 500; i++) map.insert(rng.key(), [rng.bytes(16)]);
    assert.is(map.size, 1000);
    assert.ok(map.stats().index.bytes < 4 << 20);
    map.close();
  });

  test('the maxBytes check of setAnticipatedCount counts the step each growth will really take', () => {
    const dir = tempDir();
    const config = persistentConfig(dir, engine, { maxBuckets: 2 });
    const map = new BucketMap(config);
    map.setAnticipatedCount(20000);
    for (let i = 0; i < 100; i++) map.insert(rng.key(), [rng.bytes(16)]);
    const { index, data } = map.stats();
    const pages = index.capacity / 2 / CELLS_PER_PAGE;
    assert.is(pages, pagesFor(Math.ceil(10000 + 3 * Math.sqrt(10000))), 'both first files sized for the share');
    map.close();
    // Room for one bucket's usual growth step but not for two: asking for a couple of pages more
    // per bucket still grows each by a whole step, so the call must be refused before either grows.
    const step = (nextIndexPages(pages) - pages) * PAGE_BYTES;
    const again = new BucketMap({ ...config, maxBytes: index.bytes + data.bytes + Math.floor(step * 1.5) });
    const before = again.stats().index;
    const err = thrownBy(() => again.setAnticipatedCount(20040));
    assert.is(err?.code, codes.SIZE_LIMIT);
    assert.equal(again.stats().index, before, 'no bucket grew');
    again.close();
    removeDir(dir);
  });

  test('on a map past a lowered maxBytes, a setAnticipatedCount that grows nothing is no SIZE_LIMIT; one that grows still is', () => {
    const dir = tempDir();
    const config = persistentConfig(dir, engine, { maxBuckets: 2 });
    const map = new BucketMap(config);
    for (let i = 0; i < 5000; i++) map.insert(rng.key(), [rng.bytes(16)]);
    const { index, data } = map.stats();
    map.close();
    const again = new BucketMap({ ...config, maxBytes: index.bytes + data.bytes - 1 });
    const sizes = (): number[] => [again.stats().index.capacity, again.stats().index.bytes, again.stats().index.resizes];
    again.setAnticipatedCount(100);
    again.setAnticipatedCount(again.size);
    assert.equal(sizes(), [index.capacity, index.bytes, 0], 'nothing grew');
    assert.is(thrownBy(() => again.setAnticipatedCount(4 * again.size))?.code, codes.SIZE_LIMIT);
    assert.equal(sizes(), [index.capacity, index.bytes, 0], 'nothing grew');
    again.close();
    removeDir(dir);
  });

  test('data files grow by doubling while entries stay valid', () => {
    const map = new BucketMap({ maxBuckets: 1, engine });
    const keys = Array.from({ length: 3000 }, () => rng.key());
    for (const key of keys) map.insert(key, [key.subarray(0, 16), key.subarray(16, 32)], 2);
    const s = map.stats();
    assert.ok(s.data.resizes >= 5, `data resizes ${s.data.resizes}`);
    assert.is(s.data.cells, 3000);
    for (const key of keys) {
      const got = map.readValue(key);
      assert.is(got?.[1], 2);
      assert.equal(Array.from(got![0][1]), Array.from(key.subarray(16, 32)));
    }
    map.close();
  });

  test('files replaced by growth are let go: after a collection none of them stays mapped', async () => {
    if (!fs.existsSync('/proc/self/maps')) return;
    const map = new BucketMap({ maxBuckets: 16, engine });
    for (let i = 0; i < 30000; i++) map.insert(rng.key(), i % 3 === 0 ? [rng.bytes(16), rng.bytes(16)] : [rng.bytes(16)]);
    assert.ok(map.stats().index.resizes > 30);
    const stale = (): number => fs.readFileSync('/proc/self/maps', 'utf8').split('\n')
      .filter((l) => l.includes(map.drives[0]) && l.includes('(deleted)')).length;
    await collectUntil(() => stale() === 0, 3);
    assert.is(stale(), 0, 'mappings of deleted files remain');
    map.close();
  });

  test('a bucket larger than one segment file spans several, and reopens', () => {
    const dir = tempDir();
    try {
      const config = persistentConfig(dir, engine, { maxBuckets: 1, segmentBytes: 64 * 1024 });
      const map = new BucketMap(config);
      const keys = Array.from({ length: 4000 }, () => rng.key());
      for (const key of keys) map.insert(key, [key.subarray(0, 16)]);
      map.close();
      const segments = listFiles(config.drives![0]).filter((f) => /\.i\.\d+\.\d+\.bkt$/.test(f));
      assert.ok(segments.length >= 3, `index segments: ${segments.length}`);
      for (const file of segments) assert.ok(fs.statSync(file).size <= 64 * 1024);
      const again = new BucketMap(config);
      for (const key of keys) assert.equal(Array.from(again.readValue(key)![0][0]), Array.from(key.subarray(0, 16)));
      again.close();
    } finally {
      removeDir(dir);
    }
  });

  test.run();
}
