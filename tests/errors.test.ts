import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BucketMap, BucketMapError, NoSpace, codes, type BucketMapConfig } from '../host/index.js';
import { checkPlatform } from '../host/errors.js';
import { ENGINES, Rng, fingerprint, persistentConfig, removeDir, tempDir, thrownBy, withFsFunction } from './helpers.js';

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
    [{ cacheBytes: '1' }, TypeError, 'cacheBytes'],
    [{ segmentBytes: 2 ** 30 + 1024 }, RangeError, 'segmentBytes'],
    [{ maxBytes: 0 }, RangeError, 'maxBytes'],
    [{ maxBytes: 1.5 }, RangeError, 'maxBytes'],
    [{ maxBytes: Infinity }, RangeError, 'maxBytes'],
    [{ maxBytes: '1' }, TypeError, 'maxBytes'],
    [{ hugePages: 1 }, TypeError, 'hugePages'],
    [{ readOnly: 'yes' }, TypeError, 'readOnly'],
    [{ readOnly: true }, TypeError, 'restartFile'],
    [{ drives: Array.from({ length: 256 }, (_, i) => `/tmp/d${i}`) }, RangeError, 'drives'],
    [{ restartFile: '/tmp/a\0b' }, TypeError, 'restartFile'],
    [{ drives: ['/tmp/a\0b'] }, TypeError, 'drives[0]'],
  ];
  for (const [change, type, name] of cases) throwsNaming(() => new BucketMap({ ...base, ...change } as BucketMapConfig), type, name);
});

/** Runs `fn`, which must fail before the map touches `dir`: no restart file, lock or folder made. */
function refusedLeavingNothing(dir: string, fn: () => unknown, check: (e: Error) => boolean): void {
  assert.throws(fn, check);
  assert.equal(fs.readdirSync(dir), [], 'nothing left behind');
}

config('an option the config does not have is a TypeError naming it: a misspelt restartFile must not make a temporary map', () => {
  const dir = tempDir();
  try {
    const restartFile = path.join(dir, 'restart');
    for (const [typo, meant] of [['restartfile', 'restartFile'], ['readonly', 'readOnly'], ['maxbytes', 'maxBytes']]) {
      refusedLeavingNothing(dir, () => new BucketMap({ maxBuckets: 2, [typo]: restartFile } as never),
        (e) => e instanceof TypeError && e.message.includes(`'${typo}'`) && e.message.includes(`'${meant}'`));
    }
    refusedLeavingNothing(dir, () => new BucketMap({ maxBuckets: 2, restartFile, persistent: true } as never),
      (e) => e instanceof TypeError && e.message.includes("'persistent'") && e.message.includes('restartFile'));
    // Symbol keys and non-enumerable properties are not options anyone could have meant.
    const quiet = { maxBuckets: 2, restartFile, [Symbol('tag')]: 1 };
    Object.defineProperty(quiet, 'note', { value: 'x', enumerable: false });
    new BucketMap(quiet).close();
  } finally {
    removeDir(dir);
  }
});

config('each option is read once: a getter answering differently on a later read cannot slip past the checks', () => {
  const reads = new Map<string, number>();
  const config: Record<string, unknown> = {};
  const values: Record<string, unknown> = { maxBuckets: 2, maxSearch: 8, engine: 'host', maxBytes: 1, cacheBytes: 65536, segmentBytes: 65536, checkFilesAtOpen: false, hugePages: false };
  for (const [name, value] of Object.entries(values)) {
    Object.defineProperty(config, name, {
      enumerable: true,
      get: () => {
        const n = (reads.get(name) ?? 0) + 1;
        reads.set(name, n);
        return n === 1 ? value : 'changed'; // valid once, then a value no check would take
      },
    });
  }
  const map = new BucketMap(config as unknown as BucketMapConfig);
  try {
    for (const name of Object.keys(values)) assert.is(reads.get(name), 1, name);
    // maxBytes as checked (1): a later read's 'changed' compared false with every size and lifted the limit.
    assert.throws(() => map.insert(rng.key(), []), (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.SIZE_LIMIT);
  } finally {
    map.close();
  }
});

config('a value only Object.prototype holds (prototype pollution) is no option; a prototype of the config\'s own is', () => {
  const dir = tempDir();
  const polluted = { restartFile: path.join(dir, 'polluted'), drives: [path.join(dir, 'polluted-drive')], readOnly: true, maxSearch: 'x' };
  const proto = Object.prototype as Record<string, unknown>;
  try {
    Object.assign(proto, polluted);
    const map = new BucketMap({ maxBuckets: 2 });
    try {
      map.insert(rng.key(), []);
      assert.not.ok(map.readOnly);
      assert.ok(!map.drives[0].startsWith(dir), 'a temporary folder of its own');
    } finally {
      map.close();
    }
    assert.equal(fs.readdirSync(dir), [], 'nothing made where the polluted options point');
    // A config that inherits from an object of the caller's takes its options.
    const base = { maxBuckets: 2, restartFile: path.join(dir, 'inherited') };
    const inherited = new BucketMap(Object.create(base) as BucketMapConfig);
    inherited.close();
    assert.ok(fs.existsSync(base.restartFile));
  } finally {
    for (const name of Object.keys(polluted)) delete proto[name];
    removeDir(dir);
  }
});

config('a getter or Proxy trap that throws fails the open with its own error, leaving no file, folder or lock', () => {
  const dir = tempDir();
  try {
    const restartFile = path.join(dir, 'restart');
    const names = ['maxBuckets', 'drives', 'maxSearch', 'restartFile', 'codec', 'cacheBytes', 'engine', 'segmentBytes', 'maxBytes', 'checkFilesAtOpen', 'hugePages', 'readOnly'];
    for (const name of names) {
      const boom = new Error(`getter of ${name}`);
      const config: Record<string, unknown> = { maxBuckets: 2, restartFile, drives: [path.join(dir, 'drive')] };
      Object.defineProperty(config, name, { enumerable: true, get: () => { throw boom; } });
      refusedLeavingNothing(dir, () => new BucketMap(config as unknown as BucketMapConfig), (e) => e === boom);
      const trapped = new Proxy({ maxBuckets: 2, restartFile }, { get: (t, p, r) => { if (p === name) throw boom; return Reflect.get(t, p, r); } });
      refusedLeavingNothing(dir, () => new BucketMap(trapped), (e) => e === boom);
    }
    const ownKeys = new Proxy({ maxBuckets: 2, restartFile }, { ownKeys: () => { throw new Error('ownKeys'); } });
    refusedLeavingNothing(dir, () => new BucketMap(ownKeys), (e) => e.message === 'ownKeys');
    // A Proxy that answers plainly is a config like any other.
    const map = new BucketMap(new Proxy({ maxBuckets: 2, restartFile }, {}));
    map.insert(rng.key(), []);
    map.close();
    const again = new BucketMap({ maxBuckets: 2, restartFile });
    assert.is(again.size, 1);
    again.close();
  } finally {
    removeDir(dir);
  }
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

config('a drive that cannot be listed is IO, for a new map and for the sweep of a crashed one', () => {
  const dir = tempDir();
  try {
    const drive = path.join(dir, 'drive');
    const config = { maxBuckets: 2, restartFile: path.join(dir, 'restart'), drives: [drive] };
    const unlistable = <R>(body: () => R): R => withFsFunction('readdirSync', (original) => (...args: unknown[]) => {
      if (args[0] === drive) throw Object.assign(new Error(`EIO: i/o error, scandir '${drive}'`), { code: 'EIO' });
      return original(...args);
    }, body);
    const isIo = (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.IO && e.file === drive && (e.cause as { code?: string }).code === 'EIO';
    assert.throws(() => unlistable(() => new BucketMap({ maxBuckets: 2, drives: [drive] })), isIo);
    const map = new BucketMap(config);
    map.insert(rng.key(), []);
    map.close();
    fs.rmSync(path.join(dir, 'restart.closed')); // as a kill leaves it: the open sweeps the drives

    assert.throws(() => unlistable(() => new BucketMap(config)), isIo);
    const again = new BucketMap(config);
    assert.is(again.size, 1);
    again.close();
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

  test('flush and compact options are checked: a misspelt or non-boolean durable is a TypeError, not a flush without fsync', () => {
    const map = new BucketMap({ maxBuckets: 2, engine });
    const key = rng.key();
    map.insert(key, [rng.bytes(16)]);
    const flushes = (): number => map.stats().flush.count;
    const before = flushes();
    for (const bad of [{ durable: 1 }, { durable: 'yes' }, { durable: null }]) throwsNaming(() => map.flush(bad as never), TypeError, 'durable');
    throwsNaming(() => map.flush({ durible: true } as never), TypeError, "'durible'");
    throwsNaming(() => map.flush({ Durable: true } as never), TypeError, "'durable'");
    throwsNaming(() => map.compact({ laod: 0.5 } as never), TypeError, "'laod'");
    throwsNaming(() => map.compact({ load: '0.5' } as never), TypeError, 'load');
    for (const bad of [0, -1, 0.91, NaN]) throwsNaming(() => map.compact({ load: bad }), RangeError, 'load');
    assert.is(flushes(), before, 'no flush ran');
    map.flush({ durable: true });
    map.flush({ durable: false });
    map.flush({ durable: undefined });
    map.compact({ load: 0.9 });
    assert.is(flushes(), before + 3);
    assert.is(map.size, 1);
    map.close();
  });

  test('after close every call fails with CLOSED; close is idempotent; dispose closes', () => {
    const map = new BucketMap({ maxBuckets: 2, engine });
    const key = rng.key();
    map.insert(key, [rng.bytes(16)]);
    const iterator = map.keys();
    const bucket = map.getBucketFromIndex(0);
    const view = map.packed(key.slice());
    map.close();
    map.close();
    map[Symbol.dispose]();
    const calls: Array<() => unknown> = [
      () => map.readValue(key), () => map.insert(key, []), () => map.tryInsert(key, []), () => map.update(key, () => undefined),
      () => map.deleteKey(key), () => map.addref(key), () => map.unref(key), () => map.get(key), () => map.has(key),
      () => map.set(key, [[], 1]), () => map.delete(key), () => map.size, () => [...map.keys()], () => [...map.entries()],
      () => map.flush(), () => map.stats(), () => map.bucketIx(key), () => map.getBucket(key), () => map.getBucketFromIndex(0),
      () => iterator.next(), () => map.readInto(key, new Uint8Array(16)), () => map.getMany([key]), () => map.hasMany([key]),
      () => map.deleteMany([key]), () => map.insertMany([key], [[]]), () => map.readManyInto([key], new Uint8Array(16), new Int32Array(1)),
      () => map.addrefMany([key]), () => map.unrefMany([key]), () => map.verify(), () => map.compact(), () => map.setAnticipatedCount(10),
      () => map.grow(new NoSpace('index', 0, 80, 0)), () => map.packed(key), () => [...map.values()], () => [...map],
      () => map.flush({ durable: true }), () => bucket.bucketLen(), () => bucket.keys(), () => bucket.items(), () => bucket.readValue(key),
      () => bucket.insert(key, []), () => bucket.tryWrite(key, []), () => bucket.update(key, () => undefined), () => bucket.deleteKey(key),
      () => bucket.grow(new NoSpace('index', 0, 80, 0)), () => bucket.setAnticipatedCount(10), () => bucket.batchInsertNonDuplicates([[key, new Uint8Array(16)]]),
      () => view.get(0), () => view.has(0), () => view.readInto(0, new Uint8Array(16)), () => view.insert(0, []), () => view.addref(0),
      () => view.unref(0), () => view.delete(0),
    ];
    for (const call of calls) assert.throws(call, (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.CLOSED);
    const other = new BucketMap({ maxBuckets: 2, engine });
    const kept = other.getBucketFromIndex(1);
    other[Symbol.dispose]();
    assert.throws(() => kept.bucketLen(), (e: BucketMapError) => e.code === codes.CLOSED);
    other.close();
  });

  test('close() of a temporary map whose file cannot be removed still releases the rest, then reports IO once', () => {
    const drive = tempDir();
    try {
      const map = new BucketMap({ maxBuckets: 4, engine, drives: [drive] });
      for (let i = 0; i < 64; i++) map.insert(rng.key(), [rng.bytes(16)]);
      const files = fs.readdirSync(drive);
      assert.ok(files.length >= 2, 'several bucket files');
      const stuck = path.join(drive, files.sort()[0]);
      const err = withFsFunction('rmSync', (original) => (...args: unknown[]) => {
        if (args[0] === stuck) throw Object.assign(new Error(`EROFS: read-only file system, unlink '${stuck}'`), { code: 'EROFS', syscall: 'unlink', path: stuck });
        return original(...args);
      }, () => thrownBy(() => map.close()));
      assert.ok(err instanceof BucketMapError && err.code === codes.IO && err.file === stuck, String(err));
      assert.equal(fs.readdirSync(drive), [path.basename(stuck)], 'every other file removed');
      map.close(); // closed already: nothing more to report
      assert.throws(() => map.size, (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.CLOSED);
    } finally {
      removeDir(drive);
    }
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
