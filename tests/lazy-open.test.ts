/**
 * Reopening maps a clean bucket only on its first use: after a clean close (a close record beside
 * the restart file) it does not even open the bucket's files before then ('deferred'); without
 * one it checks every file at open ('lazy'). These tests pin what neither may change: counts are
 * right before any use, and a file damaged between the open and the first use is a BucketMapError
 * naming it, never a SIGBUS or a wrong answer.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import { BucketMap, BucketMapError, codes } from '../host/index.js';
import { ENGINES, Rng, hex, listFiles, persistentConfig, removeDir, snapshot, tempDir } from './helpers.js';

const KEYS = 800;

for (const [engine, mode] of ENGINES.flatMap((e) => [[e, 'lazy'], [e, 'deferred']] as const)) {
  const test = suite(`lazy open [${engine}, ${mode}]`);
  let dir = '';
  let keys: Uint8Array[] = [];
  const config = () => persistentConfig(dir, engine);

  test.before.each(() => {
    dir = tempDir();
    const rng = new Rng(44);
    keys = Array.from({ length: KEYS }, () => rng.key());
    const map = new BucketMap(config());
    keys.forEach((key, i) => map.insert(key, i % 3 === 0 ? [rng.bytes(16), rng.bytes(16)] : [rng.bytes(16)], 1 + (i % 4)));
    map.close();
    if (mode === 'lazy') fs.rmSync(`${config().restartFile}.closed`);
  });
  test.after.each(() => removeDir(dir));

  /** The index file of bucket `ix` (its generation is whatever growth left). */
  const indexFile = (ix: number): string => {
    const name = listFiles(config().drives![0]).find((f) => new RegExp(`-b${ix.toString(16).padStart(4, '0')}\\.i\\.`).test(f));
    assert.ok(name, `index file of bucket ${ix}`);
    return name as string;
  };

  const expectError = (fn: () => unknown, code: string, file: string): void => {
    try {
      fn();
    } catch (err) {
      assert.instance(err, BucketMapError);
      assert.is((err as BucketMapError).code, code);
      assert.ok((err as Error).message.includes(file), `the message names ${file}: ${(err as Error).message}`);
      return;
    }
    assert.unreachable(`expected ${code}`);
  };

  test('size and per-bucket stats are right before any bucket is used, and stay so', () => {
    const map = new BucketMap(config());
    assert.is(map.stats().open.deferredBuckets, mode === 'deferred' ? map.stats().buckets.allocated : 0);
    assert.is(map.size, KEYS);
    const before = map.stats();
    const content = snapshot(map);
    assert.is(content.size, KEYS);
    const after = map.stats();
    assert.equal(before.buckets, after.buckets);
    assert.equal(before.data, after.data);
    assert.is(before.index.files, after.index.files);
    map.close();
  });

  test('a file truncated after open fails on first use with CORRUPT; other buckets still serve', () => {
    const map = new BucketMap(config());
    const victim = map.bucketIx(keys[0]);
    const file = indexFile(victim);
    fs.truncateSync(file, fs.statSync(file).size - 1024);
    expectError(() => map.readValue(keys[0]), codes.CORRUPT, file);
    expectError(() => map.insert(keys[0], [new Uint8Array(16)]), codes.CORRUPT, file);
    everyReadRefused(map, keys[0], file);
    let served = 0;
    for (const key of keys) {
      if (map.bucketIx(key) === victim) continue;
      assert.ok(map.readValue(key) !== undefined, `key ${hex(key)} of a sound bucket`);
      served++;
    }
    assert.ok(served > 0);
    const report = map.verify();
    assert.is(report.ok, false);
    assert.ok(report.problems.some((p) => p.bucket === victim && p.file === file), 'verify() reports the damaged bucket and names its file');
    map.close();
  });

  /** A failed first use leaves the bucket unused: each later read fails the same way, never an answer. */
  const everyReadRefused = (map: BucketMap, key: Uint8Array, file: string): void => {
    for (let round = 0; round < 2; round++) {
      expectError(() => map.has(key), codes.CORRUPT, file);
      expectError(() => map.readInto(key, new Uint8Array(64)), codes.CORRUPT, file);
      expectError(() => map.hasMany([key]), codes.CORRUPT, file);
      expectError(() => map.getMany([key]), codes.CORRUPT, file);
      expectError(() => map.addrefMany([key]), codes.CORRUPT, file);
    }
  };

  test('a data file truncated after open fails every later use of its bucket with CORRUPT, inline entries too', () => {
    const map = new BucketMap(config());
    const withList = keys[0]; // i % 3 === 0: a two-element list, in a data file
    const ix = map.bucketIx(withList);
    const inline = keys.find((key, i) => i % 3 !== 0 && map.bucketIx(key) === ix)!;
    const file = listFiles(config().drives![0]).find((f) => new RegExp(`-b${ix.toString(16).padStart(4, '0')}\\.d1\\.`).test(f))!;
    assert.ok(file, 'the bucket has a data file of two-element lists');
    fs.truncateSync(file, 1024);
    everyReadRefused(map, inline, file);
    everyReadRefused(map, withList, file);
    map.close();
  });

  const rewrite = (file: string, at: number): void => {
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4, at);
    fs.closeSync(fd);
  };

  test('a header rewritten after open fails on first use with CORRUPT', () => {
    const map = new BucketMap(config());
    const file = indexFile(map.bucketIx(keys[1]));
    rewrite(file, 40); // the bucket number, under the header checksum
    expectError(() => map.readValue(keys[1]), codes.CORRUPT, file);
    map.close();
  });

  if (mode === 'lazy') {
    test('saved counts rewritten after a lazy open fail on first use with CORRUPT (the header changed)', () => {
      const map = new BucketMap(config());
      const file = indexFile(map.bucketIx(keys[1]));
      rewrite(file, 200);
      expectError(() => map.readValue(keys[1]), codes.CORRUPT, file);
      map.close();
    });
  }

  test('a file removed after open fails on first use with FILE_MISSING', () => {
    const map = new BucketMap(config());
    const file = indexFile(map.bucketIx(keys[2]));
    fs.rmSync(file);
    expectError(() => map.deleteKey(keys[2]), codes.FILE_MISSING, file);
    map.close();
  });

  test('a bucket used for the first time after reopen reads, writes and survives another reopen', () => {
    const map = new BucketMap(config());
    const expected = snapshot(map);
    map.deleteKey(keys[3]);
    expected.delete(hex(keys[3]));
    map.close();
    const again = new BucketMap(config());
    assert.equal(snapshot(again), expected);
    again.close();
  });

  test.run();
}
