import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BucketMap, BucketMapError, codes, type BucketMapConfig } from '../host/index.js';
import { checkPlatform } from '../host/errors.js';
import { ENGINES, Rng, fingerprint, persistentConfig, removeDir, tempDir } from './helpers.js';

const rng = new Rng(11);

function throwsNaming(fn: () => unknown, type: new (...args: never[]) => Error, name: string): void {
  assert.throws(fn, (e: Error) => e instanceof type && !(e instanceof BucketMapError) && e.message.includes(name));
}

const config = suite('configuration');

config('maxBuckets must be a power of two from 1 to 65,536', () => {
  throwsNaming(() => new BucketMap(undefined as never), TypeError, 'config');
  throwsNaming(() => new BucketMap({} as never), TypeError, 'maxBuckets');
  for (const bad of [0, 3, 65537, 131072, 2.5, -4, NaN]) throwsNaming(() => new BucketMap({ maxBuckets: bad }), RangeError, 'maxBuckets');
  throwsNaming(() => new BucketMap({ maxBuckets: '4' as never }), TypeError, 'maxBuckets');
});

config('every optional field is checked and named', () => {
  const base: BucketMapConfig = { maxBuckets: 2 };
  const cases: Array<[Partial<Record<string, unknown>>, new (...args: never[]) => Error, string]> = [
    [{ maxSearch: 0 }, RangeError, 'maxSearch'],
    [{ maxSearch: 256 }, RangeError, 'maxSearch'],
    [{ maxSearch: 1.5 }, RangeError, 'maxSearch'],
    [{ drives: [] }, TypeError, 'drives'],
    [{ drives: 'x' }, TypeError, 'drives'],
    [{ drives: [''] }, TypeError, 'drives[0]'],
    [{ drives: ['/tmp/a', '/tmp/a'] }, RangeError, 'drives'],
    [{ restartFile: '' }, TypeError, 'restartFile'],
    [{ restartFile: 5 }, TypeError, 'restartFile'],
    [{ codec: { size: 4 } }, TypeError, 'codec'],
    [{ codec: { size: 0, encode() {}, decode() {} } }, RangeError, 'codec.size'],
    [{ cacheBytes: 10 }, RangeError, 'cacheBytes'],
    [{ cacheBytes: 2 ** 29 + 1 }, RangeError, 'cacheBytes'],
    [{ engine: 'gpu' }, TypeError, 'engine'],
    [{ segmentBytes: 1000 }, RangeError, 'segmentBytes'],
    [{ segmentBytes: 65 * 1024 + 1 }, RangeError, 'segmentBytes'],
    [{ checkFilesAtOpen: 'yes' }, TypeError, 'checkFilesAtOpen'],
  ];
  for (const [change, type, name] of cases) throwsNaming(() => new BucketMap({ ...base, ...change } as BucketMapConfig), type, name);
});

config('the largest cacheBytes the config takes opens a wasm map (1 GiB was past the core runtime\'s largest block)', () => {
  const map = new BucketMap({ maxBuckets: 2, engine: 'wasm', cacheBytes: 2 ** 29 });
  map.insert(new Uint8Array(32).fill(1), []);
  assert.ok(map.has(new Uint8Array(32).fill(1)));
  map.close();
});

config('a drive that cannot be used is a BucketMapError with code IO, and nothing is left behind', () => {
  const dir = tempDir();
  try {
    const blocker = path.join(dir, 'file');
    fs.writeFileSync(blocker, 'x');
    assert.throws(
      () => new BucketMap({ maxBuckets: 2, drives: [path.join(blocker, 'sub')], restartFile: path.join(dir, 'restart') }),
      (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.IO && e.message.includes('sub'),
    );
    assert.not.ok(fs.existsSync(path.join(dir, 'restart')));
  } finally {
    removeDir(dir);
  }
});

config('a big-endian machine is refused with UNSUPPORTED_PLATFORM; a little-endian one is not', () => {
  assert.throws(() => checkPlatform('BE'), (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.UNSUPPORTED_PLATFORM && /little-endian/.test(e.message));
  checkPlatform('LE');
});

config.run();

for (const engine of ENGINES) {
  const test = suite(`arguments and lifecycle [${engine}]`);

  test('wrong keys are TypeError or RangeError naming the key, and change nothing', () => {
    const map = new BucketMap({ maxBuckets: 2, engine });
    const good = rng.key();
    map.insert(good, [rng.bytes(16)]);
    for (const bad of [new Uint8Array(31), new Uint8Array(33), 'not base58 0OIl', 12, null, undefined, {}, [1, 2]]) {
      for (const call of [() => map.insert(bad as never, []), () => map.readValue(bad as never), () => map.deleteKey(bad as never), () => map.update(bad as never, () => undefined), () => map.addref(bad as never), () => map.bucketIx(bad as never)]) {
        assert.throws(call, (e: Error) => (e instanceof TypeError || e instanceof RangeError) && /key/.test(e.message));
      }
    }
    assert.is(map.size, 1);
    map.close();
  });

  test('refCounts must be integers from 0 to 2^53-1', () => {
    const map = new BucketMap({ maxBuckets: 2, engine });
    const key = rng.key();
    map.insert(key, [rng.bytes(16)], 5);
    for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 53]) throwsNaming(() => map.insert(key, [], bad), RangeError, 'refCount');
    throwsNaming(() => map.insert(key, [], '1' as never), TypeError, 'refCount');
    throwsNaming(() => map.tryInsert(key, [], -3), RangeError, 'refCount');
    assert.is(map.readValue(key)?.[1], 5);
    map.close();
  });

  test('after close every call fails with CLOSED; close is idempotent; dispose closes', () => {
    const map = new BucketMap({ maxBuckets: 2, engine });
    const key = rng.key();
    map.insert(key, [rng.bytes(16)]);
    const iterator = map.keys();
    map.close();
    map.close();
    const calls: Array<() => unknown> = [
      () => map.readValue(key), () => map.insert(key, []), () => map.tryInsert(key, []), () => map.update(key, () => undefined),
      () => map.deleteKey(key), () => map.addref(key), () => map.unref(key), () => map.get(key), () => map.has(key),
      () => map.set(key, [[], 1]), () => map.delete(key), () => map.size, () => [...map.keys()], () => [...map.entries()],
      () => map.flush(), () => map.stats(), () => map.bucketIx(key), () => map.getBucket(key), () => map.getBucketFromIndex(0),
      () => iterator.next(), () => map.readInto(key, new Uint8Array(16)), () => map.getMany([key]), () => map.hasMany([key]),
      () => map.deleteMany([key]), () => map.insertMany([key], [[]]), () => map.readManyInto([key], new Uint8Array(16), new Int32Array(1)),
      () => map.addrefMany([key]), () => map.unrefMany([key]), () => map.verify(),
    ];
    for (const call of calls) assert.throws(call, (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.CLOSED);
    const other = new BucketMap({ maxBuckets: 2, engine });
    const bucket = other.getBucketFromIndex(1);
    other[Symbol.dispose]();
    assert.throws(() => bucket.bucketLen(), (e: BucketMapError) => e.code === codes.CLOSED);
  });

  test('a bucket kept past close() never makes files, not even through its undocumented methods from plain JS', () => {
    const dir = tempDir();
    try {
      const config = persistentConfig(dir, engine);
      const first = new BucketMap(config);
      const kept = first.getBucketFromIndex(0) as unknown as { writeEncoded(k: Uint8Array, slots: number, refCount: number): void };
      first.close();
      const next = new BucketMap(config); // the same folders, open again
      const before = fingerprint(dir);
      assert.throws(() => kept.writeEncoded(rng.key(), 0, 1), (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.CLOSED);
      assert.equal(fingerprint(dir), before, 'no file appeared in the map open now');
      assert.is(next.size, 0);
      next.close();
    } finally {
      removeDir(dir);
    }
  });

  test.run();
}
