import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, type BucketMapConfig } from '../host/index.js';
import { ENGINES, Rng, persistentConfig, removeDir, tempDir } from './helpers.js';

for (const engine of ENGINES) {
  const test = suite(`stats [${engine}]`);
  const rng = new Rng(12);

  test('stats report entries, files, bytes, resizes, cache and flush activity', () => {
    const dir = tempDir();
    try {
      const map = new BucketMap(persistentConfig(dir, engine, { maxBuckets: 8 }));
      const empty = map.stats();
      assert.is(empty.engine, engine);
      assert.is(empty.entries, 0);
      assert.is(empty.buckets.total, 8);
      assert.is(empty.buckets.allocated, 0);
      for (let i = 0; i < 2000; i++) map.insert(rng.key(), i % 10 === 0 ? [rng.bytes(16), rng.bytes(16)] : [rng.bytes(16)]);
      for (let i = 0; i < 500; i++) map.readValue(rng.key());
      map.flush();
      const s = map.stats();
      assert.is(s.entries, 2000);
      assert.is(s.buckets.allocated, 8);
      assert.is(s.index.files, 8);
      assert.ok(s.index.bytes > 2000 * 48);
      assert.ok(s.index.capacity >= 2000 / 0.9);
      assert.ok(s.index.resizes > 0);
      assert.is(s.data.cells, 200);
      assert.ok(s.data.files >= 8 && s.data.bytes > 0);
      assert.ok(s.filesCreated >= s.index.files + s.data.files);
      assert.is(s.flush.count, 1);
      assert.ok(s.flush.lastMs >= 0);
      if (engine === 'wasm') {
        assert.ok(s.cache.hits + s.cache.misses > 2500, 'every lookup goes through the page cache');
        assert.ok(s.cache.pagesIn > 0 && s.cache.writeRecords > 0);
      } else {
        assert.is(s.cache.hits + s.cache.misses, 0, 'the host path has no page cache');
      }
      map.close();
    } finally {
      removeDir(dir);
    }
  });

  test('open.deferredBuckets counts the buckets the open left unopened: none when checkFilesAtOpen checked them all, writer or reader', () => {
    const dir = tempDir();
    try {
      const config = persistentConfig(dir, engine, { maxBuckets: 4 });
      const map = new BucketMap(config);
      for (let i = 0; i < 400; i++) map.insert(rng.key(), [rng.bytes(16)]);
      map.close();
      const cases: Array<[Partial<BucketMapConfig>, number]> = [
        [{}, 4],
        [{ checkFilesAtOpen: true }, 0],
        [{ readOnly: true }, 4],
        [{ readOnly: true, checkFilesAtOpen: true }, 0],
      ];
      for (const [extra, deferred] of cases) {
        const opened = new BucketMap({ ...config, ...extra });
        const s = opened.stats();
        assert.is(s.open.deferredBuckets, deferred, JSON.stringify(extra));
        assert.is(s.entries, 400, JSON.stringify(extra));
        opened.close();
      }
    } finally {
      removeDir(dir);
    }
  });

  test('data.resizeMs is the time of the data resizes counted, as index.resizeMs is: a first data file is no resize', () => {
    const map = new BucketMap({ maxBuckets: 1, engine });
    const two = (): Uint8Array[] => [rng.bytes(16), rng.bytes(16)];
    for (let i = 0; i < 10; i++) map.insert(rng.key(), two());
    let s = map.stats();
    assert.is(s.data.files, 1, 'the lists of two elements have their data file');
    assert.is(s.data.resizes, 0);
    assert.is(s.data.resizeMs, 0, 'creating the first data file is not a resize');
    assert.is(s.index.resizes, 0);
    assert.is(s.index.resizeMs, 0, 'nor is creating the first index file');
    for (let i = 0; i < 100; i++) map.insert(rng.key(), two());
    s = map.stats();
    assert.ok(s.data.resizes > 0, 'the data file doubled');
    assert.ok(s.data.resizeMs > 0);
    map.close();
  });

  test.run();
}
