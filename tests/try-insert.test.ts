import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, NoSpace } from '../host/index.js';
import { ENGINES, Rng, persistentConfig, removeDir, tempDir } from './helpers.js';

for (const engine of ENGINES) {
  const test = suite(`tryInsert and grow [${engine}]`);
  const rng = new Rng(5);

  test('a missing data class fails before anything is written; grow then retry succeeds (Agave test_insert2)', () => {
    const map = new BucketMap({ maxBuckets: 1, engine });
    const key = rng.key();
    const v = rng.bytes(16);
    const first = map.tryInsert(key, [v], 0);
    assert.instance(first, NoSpace);
    assert.is(first!.kind, 'data');
    assert.is(first!.sizeClass, 0);
    assert.is(first!.capacity, 0);
    assert.is(map.readValue(key), undefined, 'no half entry');
    assert.is(map.size, 0);
    const again = map.tryInsert(key, [v], 0);
    assert.is(again?.kind, 'data', 'still missing');
    map.grow(first!);
    assert.is(map.tryInsert(key, [v], 0), undefined);
    assert.equal(map.readValue(key), [[v], 0]);
    map.close();
  });

  test('a full probe window returns an index NoSpace; growing serves it once and a stale request does nothing', () => {
    const map = new BucketMap({ maxBuckets: 1, engine, maxSearch: 2 });
    let noSpace: NoSpace | undefined;
    const keys: Uint8Array[] = [];
    for (let i = 0; i < 10000 && noSpace === undefined; i++) {
      const key = rng.key();
      noSpace = map.tryInsert(key, [rng.bytes(16)]);
      if (noSpace === undefined) keys.push(key);
      else assert.is(map.has(key), false, 'the failed key was not written');
    }
    assert.ok(noSpace, 'a window of 2 cells fills up');
    assert.is(noSpace!.kind, 'index');
    const bucket = map.getBucketFromIndex(0);
    assert.is(noSpace!.bucket, 0);
    const before = map.stats().index;
    bucket.grow(noSpace!);
    const after = map.stats().index;
    assert.is(after.resizes, before.resizes + 1);
    assert.ok(after.capacity > noSpace!.capacity);
    bucket.grow(noSpace!);
    map.grow(noSpace!);
    assert.is(map.stats().index.resizes, after.resizes, 'repeated requests coalesce');
    for (const key of keys) assert.ok(map.has(key));
    map.close();
  });

  test('grow rejects what is not a NoSpace of its bucket', () => {
    const map = new BucketMap({ maxBuckets: 2, engine });
    assert.throws(() => map.grow({ kind: 'index', bucket: 0, capacity: 1, sizeClass: 0 } as never), TypeError);
    const noSpace = map.getBucketFromIndex(0).tryWrite(rng.key(), [rng.bytes(16), rng.bytes(16)]);
    assert.instance(noSpace, NoSpace);
    assert.throws(() => map.getBucketFromIndex(1).grow(noSpace!), RangeError);
    map.close();
  });

  test('grow of a bucket the open left to its first use maps it first: it grows, and every entry stays', () => {
    const dir = tempDir();
    try {
      const config = persistentConfig(dir, engine, { maxBuckets: 1, maxSearch: 2 });
      let map = new BucketMap(config);
      const model = new Map<string, Uint8Array>();
      let full: NoSpace | undefined;
      while (full === undefined) {
        const key = rng.key();
        const v = rng.bytes(16);
        full = map.tryInsert(key, [v]);
        if (full === undefined) model.set(Buffer.from(key).toString('hex'), v);
      }
      const dataFull = map.tryInsert(rng.key(), [rng.bytes(16), rng.bytes(16)]);
      assert.is(full.kind, 'index');
      assert.is(dataFull?.kind, 'data');
      map.close();
      // The close record lets the reopen leave the bucket unmapped until its first use: here, grow.
      map = new BucketMap(config);
      map.grow(full);
      map.grow(dataFull!);
      const stats = map.stats();
      assert.ok(stats.index.capacity > full.capacity, 'the index grew');
      assert.is(stats.data.files, 1, 'the data class got its file');
      assert.is(map.size, model.size);
      for (const [hex, v] of model) assert.equal(map.readValue(Buffer.from(hex, 'hex')), [[v], 1]);
      map.close();
      map = new BucketMap(config);
      assert.is(map.size, model.size);
      for (const [hex, v] of model) assert.equal(map.readValue(Buffer.from(hex, 'hex')), [[v], 1]);
      assert.ok(map.verify().ok);
      map.close();
    } finally {
      removeDir(dir);
    }
  });

  test.run();
}
