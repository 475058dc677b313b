import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, bytesToBase58, codecs } from '../host/index.js';
import { ENGINES, Rng, hex } from './helpers.js';

for (const engine of ENGINES) {
  const test = suite(`insert and read [${engine}]`);
  let map: BucketMap;
  const rng = new Rng(1);
  test.before.each(() => {
    map = new BucketMap({ maxBuckets: 4, engine });
  });
  test.after.each(() => map.close());

  test('a one-element list with refCount 1 reads back as a copy', () => {
    const key = rng.key();
    const value = rng.bytes(16);
    map.insert(key, [value]);
    const got = map.readValue(key);
    assert.ok(got);
    assert.equal(got[0].map(hex), [hex(value)]);
    assert.is(got[1], 1);
    got[0][0][0] ^= 0xff;
    assert.equal(map.readValue(key)?.[0].map(hex), [hex(value)], 'the returned element does not alias the map');
    assert.is(map.size, 1);
  });

  test('insert is an upsert: a second insert replaces list and refCount', () => {
    const key = rng.key();
    map.insert(key, [rng.bytes(16)], 1);
    const next = [rng.bytes(16), rng.bytes(16)];
    map.insert(key, next, 7);
    const got = map.readValue(key);
    assert.equal(got?.[0].map(hex), next.map(hex));
    assert.is(got?.[1], 7);
    assert.is(map.size, 1);
  });

  test('every list length and refCount reads back exactly', () => {
    const refCounts = [0, 1, 2, 3, 255, 2 ** 32, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER];
    const written: Array<[Uint8Array, Uint8Array[], number]> = [];
    for (const length of [0, 1, 2, 3, 4, 5, 8, 9, 17, 100, 1000]) {
      for (const rc of refCounts) {
        const key = rng.key();
        const list = Array.from({ length }, () => rng.bytes(16));
        map.insert(key, list, rc);
        written.push([key, list, rc]);
      }
    }
    for (const [key, list, rc] of written) {
      const got = map.readValue(key);
      assert.ok(got, 'present');
      assert.is(got[1], rc);
      assert.equal(got[0].map(hex), list.map(hex));
    }
    assert.is(map.size, written.length);
  });

  test('an entry moves between inline, empty and data forms and back (Agave update_to_0_len)', () => {
    const key = rng.key();
    const v = rng.bytes(16);
    const steps: Array<[Uint8Array[], number]> = [[[v], 1], [[], 1], [[], 2], [[v], 2], [[v], 1], [[v, v], 1], [[], 0], [[v], 1]];
    for (const [list, rc] of steps) {
      map.insert(key, list, rc);
      const got = map.readValue(key);
      assert.equal(got?.[0].map(hex), list.map(hex));
      assert.is(got?.[1], rc);
    }
    assert.is(map.size, 1);
    assert.is(map.stats().data.cells, 0, 'every data cell the entry used was freed');
  });

  test('absent keys read as undefined; Map-style get/has/set/delete use the same paths', () => {
    const key = rng.key();
    assert.is(map.readValue(key), undefined);
    assert.is(map.get(key), undefined);
    assert.is(map.has(key), false);
    assert.is(map.set(key, [[rng.bytes(16)], 4]), map);
    assert.is(map.has(key), true);
    assert.is(map.get(key)?.[1], 4);
    assert.is(map.delete(key), true);
    assert.is(map.delete(key), false);
    assert.is(map.has(key), false);
  });

  test('a key given as bytes, base58 or an object with toBytes() is the same entry', () => {
    const key = rng.key();
    map.insert(bytesToBase58(key), [rng.bytes(16)], 3);
    assert.is(map.readValue(key)?.[1], 3);
    assert.is(map.readValue({ toBytes: () => key.slice() })?.[1], 3);
  });

  test('a slot list too long for the element size is a RangeError and changes nothing', () => {
    const key = rng.key();
    map.insert(key, [rng.bytes(16)], 2);
    assert.throws(() => map.insert(key, new Array(65537).fill(new Uint8Array(16))), (e: Error) => e instanceof RangeError && /at most 65536/.test(e.message));
    assert.is(map.readValue(key)?.[1], 2);
  });

  test('an element the codec rejects is an error and the old value stays', () => {
    const key = rng.key();
    const v = rng.bytes(16);
    map.insert(key, [v]);
    assert.throws(() => map.insert(key, [new Uint8Array(15)]), RangeError);
    assert.throws(() => map.insert(key, [v, 'x' as never]), TypeError);
    assert.throws(() => map.insert(key, 'not a list' as never), TypeError);
    assert.equal(map.readValue(key)?.[0].map(hex), [hex(v)]);
  });

  test.run();

  const big = suite(`element codecs and sizes [${engine}]`);
  big('bigint elements with codecs.u64', () => {
    const m = new BucketMap({ maxBuckets: 2, engine, codec: codecs.u64 });
    try {
      const key = rng.key();
      m.insert(key, [1n]);
      assert.equal(m.readValue(key), [[1n], 1]);
      m.insert(key, [0n, (1n << 64n) - 1n, 12345678901234567890n], 9);
      assert.equal(m.readValue(key), [[0n, (1n << 64n) - 1n, 12345678901234567890n], 9]);
    } finally {
      m.close();
    }
  });

  big('elements larger than the inline area live in data cells, up to the longest list', () => {
    const m = new BucketMap({ maxBuckets: 1, engine, codec: codecs.bytes(4096) });
    try {
      const one = rng.key();
      const e = rng.bytes(4096);
      m.insert(one, [e]);
      assert.equal(m.readValue(one)?.[0].map(hex), [hex(e)]);
      const many = rng.key();
      const list = Array.from({ length: 256 }, (_, i) => new Uint8Array(4096).fill(i));
      m.insert(many, list, 2);
      const got = m.readValue(many);
      assert.is(got?.[0].length, 256);
      assert.is(got?.[0][255][4095], 255);
      assert.throws(() => m.insert(many, new Array(257).fill(e)), RangeError);
    } finally {
      m.close();
    }
  });

  big('the longest list of 16-byte elements (65,536, 1 MiB) round-trips', () => {
    const m = new BucketMap({ maxBuckets: 1, engine });
    try {
      const key = rng.key();
      const list = Array.from({ length: 65536 }, (_, i) => {
        const b = new Uint8Array(16);
        new DataView(b.buffer).setUint32(0, i, true);
        return b;
      });
      m.insert(key, list);
      const got = m.readValue(key);
      assert.is(got?.[0].length, 65536);
      assert.is(new DataView(got![0][65535].buffer).getUint32(0, true), 65535);
    } finally {
      m.close();
    }
  });

  big('the longest list keeps its last bytes when its data file grows', () => {
    // A 1 MiB list and its 8-byte header fill a cell 8 bytes past 1 MiB: the growth copy, made in
    // 1 MiB pieces, must take those last 8 bytes from the cell's second piece.
    const m = new BucketMap({ maxBuckets: 1, engine });
    try {
      const list = (seed: number) => Array.from({ length: 65536 }, (_, i) => {
        const b = new Uint8Array(16);
        const v = new DataView(b.buffer);
        v.setUint32(0, i, true);
        v.setUint32(12, seed * 65536 + i, true);
        return b;
      });
      const keys = [rng.key(), rng.key(), rng.key()];
      keys.forEach((key, i) => m.insert(key, list(i + 1), 7)); // the class's file: one cell, then grown
      for (const [i, key] of keys.entries()) {
        const got = m.readValue(key);
        assert.is(got?.[0].length, 65536);
        assert.is(got?.[1], 7);
        assert.equal([...got![0][65535]], [...list(i + 1)[65535]], `key ${i}'s last element`);
      }
      assert.ok(m.verify().ok);
    } finally {
      m.close();
    }
  });

  big('lists in data cells larger than 1 MiB survive the growth of their data file, per key and in a batch', () => {
    // 10,485 elements of 100 bytes (just under 1 MiB) fall in the class of 2^14-element cells,
    // 1.6 MiB each: the wasm core once copied such a cell whole through a 1 MiB buffer, into the
    // batch it was inserting.
    const m = new BucketMap({ maxBuckets: 1, engine, codec: codecs.bytes(100) });
    try {
      const list = (n: number, seed: number) => Array.from({ length: n }, (_, i) => new Uint8Array(100).fill((seed + i) & 255));
      const model = new Map<string, string>();
      const put = (key: Uint8Array, l: Uint8Array[], rc: number) => model.set(hex(key), JSON.stringify([l.map(hex), rc]));
      const first = rng.key();
      m.insert(first, list(10485, 1), 1); // the class's first file: one cell
      put(first, list(10485, 1), 1);
      const batch = [rng.key(), rng.key(), rng.key()];
      const lists = [list(1, 2), list(10485, 3), list(2, 4)];
      m.insertMany(batch, lists, 3); // grows that file while the batch is in the core
      batch.forEach((key, i) => put(key, lists[i], 3));
      const last = rng.key();
      m.insert(last, list(10485, 5), 2); // and again, per key
      put(last, list(10485, 5), 2);
      assert.is(m.size, 5);
      for (const [key, [l, rc]] of m.entries()) assert.is(JSON.stringify([l.map(hex), rc]), model.get(hex(key)), hex(key));
      assert.ok(m.verify().ok);
    } finally {
      m.close();
    }
  });

  big.run();
}
