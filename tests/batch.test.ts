import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, BucketMapError, codecs, codes } from '../host/index.js';
import { ENGINES, Rng, hex, packKeys, snapshot } from './helpers.js';

const value = (e: [Uint8Array[], number] | undefined): string | undefined => (e === undefined ? undefined : JSON.stringify([e[0].map(hex), e[1]]));

for (const engine of ENGINES) {
  const test = suite(`batched calls [${engine}]`);
  const rng = new Rng(70);

  function filled(n: number): [BucketMap, Uint8Array[]] {
    const map = new BucketMap({ maxBuckets: 16, engine });
    const keys: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      const key = rng.key();
      keys.push(key);
      map.insert(key, Array.from({ length: i % 5 }, () => rng.bytes(16)), [1, 1, 0, 7, 300][i % 5]);
    }
    return [map, keys];
  }

  test('getMany answers like readValue for present and absent keys, in arrays or packed, across chunks', () => {
    const [map, keys] = filled(3000);
    const asked = [...keys.slice(0, 2500), ...Array.from({ length: 700 }, () => rng.key())];
    for (let i = asked.length - 1; i > 0; i--) {
      const j = rng.below(i + 1);
      [asked[i], asked[j]] = [asked[j], asked[i]];
    }
    const expected = asked.map((k) => value(map.readValue(k)));
    assert.equal(map.getMany(asked).map(value), expected);
    const packed = packKeys(asked);
    assert.equal(map.getMany(packed).map(value), expected);
    assert.equal(map.hasMany(packed), expected.map((v) => v !== undefined));
    assert.equal(map.getMany([]), []);
    map.close();
  });

  test('getMany resumes when the values of one chunk do not fit the data area at once', () => {
    const map = new BucketMap({ maxBuckets: 2, engine });
    const keys = Array.from({ length: 5 }, () => rng.key());
    const lists = keys.map((_, i) => Array.from({ length: 40000 }, () => new Uint8Array(16).fill(i)));
    keys.forEach((k, i) => map.insert(k, lists[i]));
    const got = map.getMany(keys);
    got.forEach((e, i) => {
      assert.is(e?.[0].length, 40000);
      assert.is(e?.[0][39999][15], i);
    });
    map.close();
  });

  test('readManyInto counts the keys read before the target fills, also when the data area filled first', () => {
    // Each entry takes most of the engine's 1 MiB data area, so every key is its own engine call
    // within one chunk: the target running out at the third key must report two keys read, not
    // the count of the engine call it stopped in.
    const map = new BucketMap({ maxBuckets: 2, engine });
    const keys = Array.from({ length: 4 }, () => rng.key());
    keys.forEach((k, i) => map.insert(k, Array.from({ length: 40000 }, () => new Uint8Array(16).fill(i + 1))));
    const target = new Uint8Array(2.5 * 40000 * 16);
    const slots = new Int32Array(keys.length).fill(99);
    assert.is(map.readManyInto(keys, target, slots), 2);
    assert.equal([...slots.subarray(0, 2)], [40000, 40000]);
    assert.is(target[0], 1);
    assert.is(target[40000 * 16], 2);
    assert.is(map.readManyInto(keys.slice(2), target, slots), 2);
    assert.is(target[40000 * 16 + 15], 4);
    map.close();
  });

  test('readManyInto copies what getMany returns into caller buffers, and resumes when the target fills', () => {
    const [map, keys] = filled(2500);
    const asked = [...keys.slice(0, 2000), ...Array.from({ length: 300 }, () => rng.key())];
    const expected = map.getMany(asked);
    // Room for about half the elements: the first call stops early, the second reads the rest.
    const totalBytes = expected.reduce((sum, e) => sum + (e === undefined ? 0 : e[0].length * 16), 0);
    const target = new Uint8Array(Math.floor(totalBytes / 2) + 5);
    const slots = new Int32Array(asked.length).fill(99);
    const refCounts = new Float64Array(asked.length).fill(99); // a reused array: nothing stale may stay
    const got: Array<string | undefined> = [];
    for (let from = 0; from < asked.length; ) {
      const read = map.readManyInto(asked.slice(from), target, slots, refCounts);
      assert.ok(read > 0 && read <= asked.length - from);
      if (from + read < asked.length) assert.ok(read < asked.length - from && from === 0, 'only the first call runs out of room');
      let at = 0;
      for (let i = 0; i < read; i++) {
        if (slots[i] < 0) {
          assert.is(refCounts[i], -1, 'an absent key\'s refCount');
          got.push(undefined);
          continue;
        }
        const elements = Array.from({ length: slots[i] }, (_, k) => target.slice(at + k * 16, at + k * 16 + 16));
        at += slots[i] * 16;
        got.push(value([elements, refCounts[i]]));
      }
      from += read;
    }
    assert.equal(got, expected.map(value));
    // Packed keys, an offset, and no refCounts.
    const packed = packKeys([keys[3], rng.key(), keys[8]]);
    const small = new Uint8Array(4 + 32 * 16);
    assert.is(map.readManyInto(packed, small, slots, null, 4), 3);
    assert.equal([...slots.subarray(0, 3)], [3, -1, 3]);
    assert.is(hex(small.subarray(4, 20)), hex(map.readValue(keys[3])![0][0]));
    assert.is(hex(small.subarray(4 + 48, 4 + 64)), hex(map.readValue(keys[8])![0][0]));
    assert.throws(() => map.readManyInto(packed, small, new Int32Array(2)), RangeError);
    assert.throws(() => map.readManyInto(packed, small, slots, new Float64Array(1)), RangeError);
    assert.throws(() => map.readManyInto(packed, [] as unknown as Uint8Array, slots), TypeError);
    assert.throws(() => map.readManyInto(packed, small, slots, null, small.length + 1), RangeError);
    map.close();
  });

  test('insertMany writes entries of every shape, grows files as it goes, and counts new keys', () => {
    const map = new BucketMap({ maxBuckets: 4, engine, maxSearch: 8 });
    const keys = Array.from({ length: 5000 }, () => rng.key());
    const lists = keys.map((_, i) => Array.from({ length: i % 4 }, () => rng.bytes(16)));
    const rcs = keys.map((_, i) => [1, 2, 0, 900][i % 4]);
    map.insertMany(keys, lists, rcs);
    assert.is(map.size, 5000);
    assert.ok(map.stats().index.resizes > 0);
    keys.forEach((k, i) => assert.is(value(map.readValue(k)), JSON.stringify([lists[i].map(hex), rcs[i]])));
    // Upserts and the entry form; a key twice in one batch keeps the later value.
    const again = rng.bytes(16);
    map.insertMany([[keys[0], [again]], [keys[1], [], 5], [keys[0], [again, again], 3]]);
    assert.is(value(map.readValue(keys[0])), JSON.stringify([[hex(again), hex(again)], 3]));
    assert.is(value(map.readValue(keys[1])), JSON.stringify([[], 5]));
    map.insertMany([[keys[2], [again], undefined]] as never); // an undefined refCount defaults as insert()'s does
    assert.is(value(map.readValue(keys[2])), JSON.stringify([[hex(again)], 1]));
    assert.is(map.size, 5000);
    const fresh = [rng.key(), rng.key(), rng.key()];
    const packed = packKeys(fresh);
    map.insertMany(packed, [[again], [again], [again]]);
    assert.is(map.size, 5003);
    assert.ok(map.verify().ok);
    map.close();
  });

  test('insertMany checks everything before writing anything', () => {
    const [map] = filled(200);
    const before = snapshot(map);
    const keys = Array.from({ length: 50 }, () => rng.key());
    const lists = keys.map(() => [rng.bytes(16)]);
    assert.throws(() => map.insertMany(keys, [...lists.slice(0, 49), [new Uint8Array(3)]]), (e: Error) => e instanceof RangeError && /slotLists\[49\]\[0\]/.test(e.message));
    assert.throws(() => map.insertMany([...keys.slice(0, 49), new Uint8Array(31)], lists), (e: Error) => /keys\[49\]/.test(e.message));
    assert.throws(() => map.insertMany(keys, lists.slice(1)), RangeError);
    assert.throws(() => map.insertMany(keys, lists, keys.map((_, i) => (i === 30 ? -1 : 1))), (e: Error) => /refCounts\[30\]/.test(e.message));
    assert.throws(() => map.insertMany(new Uint8Array(33), [[]]), RangeError);
    assert.throws(() => map.insertMany([[keys[0]]] as never), TypeError);
    assert.equal(snapshot(map), before);
    map.close();
  });

  test('an insertMany that fails growing a file has written a leading run of its keys, in order, and none after', () => {
    // Growth of a full file fails at a key in the middle of a chunk (4 buckets); a bucket's first
    // file fails while a chunk's buckets are being set up, before any of its keys (256 buckets).
    for (const [maxBuckets, count] of [[4, 20_000], [256, 3_000]]) {
      const map = new BucketMap({ maxBuckets, engine, maxBytes: 400_000 });
      const keys = Array.from({ length: count }, () => rng.key());
      const lists = keys.map(() => [rng.bytes(16), rng.bytes(16)]);
      // The first key again at the end, with another value: never reached, so it keeps its first.
      let err: unknown;
      try {
        map.insertMany([...keys, keys[0]], [...lists, []], [...keys.map(() => 3), 9]);
      } catch (e) {
        err = e;
      }
      assert.instance(err, BucketMapError);
      assert.is((err as BucketMapError).code, codes.SIZE_LIMIT);
      const present = map.hasMany(keys);
      const written = present.indexOf(false);
      assert.ok(written >= 0 && written < keys.length, `stopped part-way (at ${written})`);
      assert.ok(present.slice(written).every((p) => !p), `no key after ${written} written`);
      assert.is(map.size, written);
      if (written > 0) assert.is(value(map.readValue(keys[0])), JSON.stringify([lists[0].map(hex), 3]));
      assert.ok(map.verify().ok);
      map.close();
    }
  });

  test('insertMany and batchInsertNonDuplicates ask the codec once per element', () => {
    // A codec that gives each value one encoding only (it consumes a stream, say): asked twice, it
    // threw half-way through a batch that had already been checked.
    const used = new Set<unknown>();
    const once = {
      size: 8,
      encode(value: Uint8Array, target: Uint8Array, offset: number): void {
        if (used.has(value)) throw new Error('encoded twice');
        used.add(value);
        target.set(value, offset);
      },
      decode: (source: Uint8Array, offset: number): Uint8Array => source.slice(offset, offset + 8),
    };
    const map = new BucketMap({ maxBuckets: 4, engine, codec: once });
    const keys = Array.from({ length: 3000 }, () => rng.key());
    const lists = keys.map((_, i) => Array.from({ length: i % 3 }, () => rng.bytes(8)));
    map.insertMany(keys, lists, 2);
    keys.forEach((k, i) => assert.is(value(map.readValue(k)), JSON.stringify([lists[i].map(hex), 2])));
    const items = Array.from({ length: 300 }, (): [Uint8Array, Uint8Array] => [rng.key(), rng.bytes(8)]);
    const bucket = map.getBucketFromIndex(0);
    const mine = items.filter(([k]) => map.bucketIx(k) === 0);
    assert.equal(bucket.batchInsertNonDuplicates(mine), []);
    for (const [k, el] of mine) assert.is(value(map.readValue(k)), JSON.stringify([[hex(el)], 1]));
    map.close();
  });

  test('deleteMany removes present keys, counts them, and leaves the rest', () => {
    const [map, keys] = filled(3000);
    const absent = Array.from({ length: 100 }, () => rng.key());
    assert.is(map.deleteMany([...keys.slice(0, 1500), ...absent]), 1500);
    assert.is(map.size, 1500);
    for (const k of keys.slice(0, 1500)) assert.not.ok(map.has(k));
    for (const k of keys.slice(1500)) assert.ok(map.has(k));
    assert.is([...map.keys()].length, 1500);
    assert.is(map.stats().data.cells, map.getMany(keys.slice(1500)).filter((e) => e !== undefined && (e[0].length > 1 || e[1] === 0 || e[1] > 256)).length);
    assert.ok(map.verify().ok);
    map.close();
  });

  test('addrefMany and unrefMany adjust every kind of entry in order, across chunks, and report each refCount', () => {
    const map = new BucketMap({ maxBuckets: 16, engine });
    const keys: Uint8Array[] = [];
    const start: number[] = [];
    // Inline entries in the middle and at both ends of the in-place range (1..256), entries
    // with a data cell (refCount 0 or above 256, several elements) and with an empty list.
    const shapes: Array<[number, number]> = [[1, 1], [1, 100], [1, 256], [1, 0], [1, 257], [0, 5], [3, 1], [2, 9]];
    for (let i = 0; i < 2600; i++) {
      const [slots, rc] = shapes[i % shapes.length];
      const key = rng.key();
      keys.push(key);
      start.push(rc);
      map.insert(key, Array.from({ length: slots }, (_, j) => new Uint8Array(16).fill(i + j)), rc);
    }
    const before = keys.map((k) => map.readValue(k)![0].map(hex));
    const absent = Array.from({ length: 200 }, () => rng.key());
    // Every key twice (so the second listing sees the first's change), absent keys mixed in.
    const asked = [...keys, ...absent, ...keys];
    const packed = packKeys(asked);
    const refCounts = new Float64Array(asked.length);
    assert.is(map.addrefMany(packed, refCounts), 2 * keys.length);
    assert.equal([...refCounts.subarray(0, keys.length)], start.map((rc) => rc + 1));
    assert.ok(refCounts.subarray(keys.length, keys.length + absent.length).every((rc) => rc === -1));
    assert.equal([...refCounts.subarray(keys.length + absent.length)], start.map((rc) => rc + 2));
    assert.is(map.unrefMany(keys), keys.length, 'without a refCounts array');
    keys.forEach((k, i) => {
      const [list, rc] = map.readValue(k)!;
      assert.is(rc, start[i] + 1);
      assert.equal(list.map(hex), before[i], 'the slot list is untouched');
    });
    assert.is(map.unrefMany(absent), 0);
    assert.is(map.size, keys.length);
    assert.ok(map.verify().ok);
    map.close();
  });

  test('unrefMany stops at a refCount of 0 with the keys before it adjusted and none after it', () => {
    const map = new BucketMap({ maxBuckets: 4, engine });
    const keys = Array.from({ length: 1500 }, () => rng.key());
    keys.forEach((k, i) => map.insert(k, [new Uint8Array(16).fill(i)], i === 1200 ? 0 : 2));
    const refCounts = new Float64Array(keys.length).fill(-7);
    try {
      map.unrefMany(keys, refCounts);
      assert.unreachable('should throw');
    } catch (err) {
      assert.instance(err, BucketMapError);
      assert.is((err as BucketMapError).code, codes.REFCOUNT_UNDERFLOW);
      assert.match((err as Error).message, 'keys[1200]');
    }
    keys.forEach((k, i) => assert.is(map.readValue(k)![1], i < 1200 ? 1 : i === 1200 ? 0 : 2, `key ${i}`));
    assert.ok(refCounts.subarray(0, 1200).every((rc) => rc === 1));
    assert.ok(refCounts.subarray(1200).every((rc) => rc === -7), 'nothing reported past the failing key');
    map.close();
  });

  test('addrefMany and unrefMany check their arguments before changing anything', () => {
    const [map, keys] = filled(50);
    const snap = snapshot(map);
    assert.throws(() => map.addrefMany(keys, new Float64Array(49)), RangeError);
    assert.throws(() => map.unrefMany(keys, new Int32Array(50) as unknown as Float64Array), TypeError);
    assert.throws(() => map.addrefMany([...keys, new Uint8Array(31)]), RangeError);
    assert.throws(() => map.addrefMany([...keys, 42 as unknown as Uint8Array]), TypeError);
    assert.throws(() => map.unrefMany(new Uint8Array(33)), RangeError);
    assert.throws(() => map.addrefMany('keys' as unknown as Uint8Array), TypeError);
    assert.equal(snapshot(map), snap);
    map.close();
    assert.throws(() => map.addrefMany(keys), (err: unknown) => err instanceof BucketMapError && err.code === codes.CLOSED);
  });

  test('readManyInto and addrefMany read packed keys as they were at the call, when their outputs overwrite them', () => {
    // Keys past the first 1,024 are read after the first chunk's results are written: into the
    // buffer holding them, those results turned later keys into others (reported absent).
    const map = new BucketMap({ maxBuckets: 16, engine });
    const keys = Array.from({ length: 2048 }, () => rng.key());
    const lists = keys.map((_, i) => Array.from({ length: 4 }, (_e, j) => new Uint8Array(16).fill(i + j)));
    map.insertMany(keys, lists, 5);
    const buffer = new Uint8Array(keys.length * 64);
    buffer.set(packKeys(keys));
    const slots = new Int32Array(keys.length);
    assert.is(map.readManyInto(buffer.subarray(0, keys.length * 32), buffer, slots), keys.length);
    assert.ok(slots.every((n) => n === 4), 'every key found');
    assert.is(hex(buffer.subarray(2047 * 64, 2048 * 64)), lists[2047].map(hex).join(''));
    // refCounts laid over the second chunk's keys: writing the first chunk's would have added
    // references to keys never listed.
    const shared = new ArrayBuffer(keys.length * 32);
    const packed = new Uint8Array(shared);
    packed.set(packKeys(keys));
    const refCounts = new Float64Array(shared, 1024 * 32, keys.length);
    const before = snapshot(map);
    assert.is(map.addrefMany(packed, refCounts), keys.length);
    assert.ok(refCounts.every((rc) => rc === 6));
    keys.forEach((k, i) => assert.is(map.readValue(k)![1], 6, `key ${i}`));
    assert.is(map.size, before.size);
    map.close();
  });

  test('readInto copies the encoded elements without allocating and reports the refCount', () => {
    const map = new BucketMap({ maxBuckets: 2, engine });
    const key = rng.key();
    const list = [rng.bytes(16), rng.bytes(16), rng.bytes(16)];
    map.insert(key, list, 4);
    const target = new Uint8Array(64);
    assert.is(map.readInto(key, target, 8), 3);
    assert.is(map.lastRefCount, 4);
    assert.equal(Array.from(target.subarray(8, 56)), list.flatMap((e) => Array.from(e)));
    map.insert(key, [list[0]], 200);
    assert.is(map.readInto(key, target), 1);
    assert.is(map.lastRefCount, 200);
    assert.is(map.readInto(rng.key(), target), -1);
    assert.throws(() => map.readInto(key, new Uint8Array(15)), RangeError);
    assert.throws(() => map.readInto(key, target, 60), RangeError);
    assert.throws(() => map.readInto(key, 'x' as never), TypeError);
    map.close();
  });

  test('reads copy elements of any size to any target offset, from the index and from data files', () => {
    // 5-byte elements cannot be copied a word at a time; 8-byte ones can, into targets at odd addresses.
    for (const size of [5, 8]) {
      const map = new BucketMap({ maxBuckets: 4, engine, codec: codecs.bytes(size) });
      const keys = Array.from({ length: 300 }, () => rng.key());
      const lists = keys.map((_, i) => Array.from({ length: i % 4 }, () => rng.bytes(size)));
      keys.forEach((k, i) => map.insert(k, lists[i], 1 + (i % 3)));
      const flat = (list: Uint8Array[]): number[] => list.flatMap((e) => Array.from(e));
      // A Buffer slice with an odd byteOffset, written from odd offsets.
      const target = Buffer.alloc(3 * size + 8).subarray(3);
      keys.forEach((k, i) => {
        const offset = 1 + (i % 3);
        assert.is(map.readInto(k, target, offset), lists[i].length);
        assert.equal(Array.from(target.subarray(offset, offset + lists[i].length * size)), flat(lists[i]));
        assert.is(map.lastRefCount, 1 + (i % 3));
      });
      const packed = packKeys(keys);
      const many = Buffer.alloc(keys.length * 3 * size + 8).subarray(1);
      const slots = new Int32Array(keys.length);
      assert.is(map.readManyInto(packed, many, slots, null, 3), keys.length);
      assert.equal([...slots], lists.map((l) => l.length));
      assert.equal(Array.from(many.subarray(3, 3 + lists.reduce((n, l) => n + l.length, 0) * size)), lists.flatMap(flat));
      assert.equal(map.getMany(packed).map((e) => e?.[0].map(hex)), lists.map((l) => l.map(hex)));
      map.close();
    }
  });

  test.run();
}
