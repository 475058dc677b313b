/**
 * A user's codec runs in the middle of a map call: encode() while a write has keys loaded in the
 * engine's batch buffers, decode() while a read holds a value in a mapped file. A map call from
 * inside it would overwrite those buffers (values filed under keys the caller never gave) or grow
 * the file being read (on the host path, SIGBUS). Such a call fails with REENTRANT, as one from an
 * update() callback does, and the outer call goes on unharmed.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, BucketMapError, codes, type ElementCodec } from '../host/index.js';
import { ENGINES, Rng, hex } from './helpers.js';

/** A 16-byte codec that runs `during` (when set) inside every encode and decode and records what it threw. */
function meddlingCodec(): ElementCodec<Uint8Array> & { during: (() => unknown) | null; errors: unknown[] } {
  const codec = {
    size: 16,
    during: null as (() => unknown) | null,
    errors: [] as unknown[],
    meddle(): void {
      if (codec.during === null) return;
      try {
        codec.during();
        codec.errors.push('no error');
      } catch (err) {
        codec.errors.push(err);
      }
    },
    encode(value: Uint8Array, target: Uint8Array, offset: number): void {
      codec.meddle();
      target.set(value, offset);
    },
    decode(source: Uint8Array, offset: number): Uint8Array {
      codec.meddle();
      return source.slice(offset, offset + 16);
    },
  };
  return codec;
}

function assertAllReentrant(errors: unknown[]): void {
  assert.ok(errors.length > 0, 'the codec ran');
  for (const err of errors) {
    assert.instance(err, BucketMapError);
    assert.is((err as BucketMapError).code, codes.REENTRANT);
  }
}

/** A random key in the same bucket as `k`, however many buckets there are. */
function near(rng: Rng, k: Uint8Array): Uint8Array {
  const key = rng.key();
  key.set(k.subarray(0, 2));
  return key;
}

const value = (e: [Uint8Array[], number] | undefined): string | undefined => (e === undefined ? undefined : JSON.stringify([e[0].map(hex), e[1]]));

for (const engine of ENGINES) {
  const test = suite(`map calls from inside a codec [${engine}]`);

  test('decode() that writes (enough to grow the file it is read from) is refused; every read returns the stored value', () => {
    const codec = meddlingCodec();
    const map = new BucketMap({ maxBuckets: 4, engine, codec });
    const rng = new Rng(51);
    const keys = Array.from({ length: 50 }, () => rng.key());
    const lists = keys.map(() => [rng.bytes(16), rng.bytes(16)]);
    keys.forEach((k, i) => map.insert(k, lists[i], i));
    const expected = keys.map((_k, i) => JSON.stringify([lists[i].map(hex), i]));
    // Two-element lists into the same bucket until its data file would grow.
    codec.during = () => {
      for (let i = 0; i < 200; i++) map.insert(near(rng, keys[0]), [rng.bytes(16), rng.bytes(16)]);
    };
    assert.is(value(map.readValue(keys[0])), expected[0]);
    assert.is(value(map.get(keys[1])), expected[1]);
    assert.equal(map.getMany(keys).map(value), expected);
    assert.equal([...map.entries()].map(([k, e]) => [hex(k), value(e)]).sort(), keys.map((k, i) => [hex(k), expected[i]]).sort());
    assert.is(map.getBucket(keys[0]).items().length, map.getBucket(keys[0]).bucketLen());
    assertAllReentrant(codec.errors);
    codec.during = null;
    assert.is(map.size, 50, 'nothing was written from inside the codec');
    assert.ok(map.verify().ok);
    map.close();
  });

  test('encode() that reads or writes is refused; the outer write files every value under its own key', () => {
    const codec = meddlingCodec();
    const map = new BucketMap({ maxBuckets: 4, engine, codec });
    const rng = new Rng(52);
    const stranger = rng.key();
    codec.during = () => map.hasMany([stranger, rng.key()]);
    const keys = Array.from({ length: 30 }, () => rng.key());
    const lists = keys.map(() => [rng.bytes(16)]);
    map.insertMany(keys, lists, 3);
    map.insert(keys[0], lists[0], 3);
    map.packed(keys[1].slice()).insert(0, lists[1], 3);
    map.update(keys[2], () => [lists[2], 3]);
    const bucket = map.getBucket(keys[3]);
    const fresh = Array.from({ length: 5 }, () => near(rng, keys[3]));
    const freshLists = fresh.map(() => rng.bytes(16));
    assert.equal(bucket.batchInsertNonDuplicates(fresh.map((k, i) => [k, freshLists[i]])), []);
    codec.during = () => map.insert(stranger, []);
    map.insertMany(keys.slice(4, 8), lists.slice(4, 8), 3);
    assertAllReentrant(codec.errors);
    codec.during = null;
    assert.is(map.has(stranger), false);
    assert.is(map.size, 35);
    keys.forEach((k, i) => assert.is(value(map.readValue(k)), JSON.stringify([lists[i].map(hex), 3])));
    fresh.forEach((k, i) => assert.is(value(map.readValue(k)), JSON.stringify([[hex(freshLists[i])], 1])));
    map.close();
  });

  test('a codec that lets REENTRANT through fails the outer call, which changes nothing', () => {
    const map = new BucketMap({
      maxBuckets: 2,
      engine,
      codec: {
        size: 16,
        encode: (value: Uint8Array, target: Uint8Array, offset: number): void => {
          if (value[0] === 0xee) map.readValue(value.subarray(0, 0));
          target.set(value, offset);
        },
        decode: (source: Uint8Array, offset: number): Uint8Array => source.slice(offset, offset + 16),
      },
    });
    const rng = new Rng(53);
    const k = rng.key();
    const bad = new Uint8Array(16).fill(0xee);
    assert.throws(() => map.insert(k, [bad]), (e: unknown) => e instanceof BucketMapError && e.code === codes.REENTRANT && /codec/.test(e.message));
    assert.throws(() => map.insertMany([k], [[bad]]), (e: unknown) => e instanceof BucketMapError && e.code === codes.REENTRANT);
    assert.is(map.size, 0);
    map.close();
  });

  test.run();
}
