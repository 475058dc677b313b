/**
 * Every public method with bad arguments: wrong types, wrong key lengths, NaN, negative,
 * fractional and too-large refCounts, oversized slot lists, elements the codec rejects, malformed
 * callbacks and options. Each must throw TypeError or RangeError (or a BucketMapError with a code
 * for runtime conditions) and leave the map exactly as it was.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, BucketMapError, NoSpace, type Bucket } from '../host/index.js';
import { ENGINES, Rng, snapshot } from './helpers.js';

const rng = new Rng(60);
const element = rng.bytes(16);
const goodKey = rng.key();

const badKeys: unknown[] = [
  undefined, null, 0, 1.5, NaN, true, {}, [], Symbol('k'), 'x', '', '0OIl0OIl0OIl0OIl0OIl0OIl0OIl0OIl', '1'.repeat(45),
  new Uint8Array(0), new Uint8Array(31), new Uint8Array(33), new Uint16Array(16), new ArrayBuffer(32),
  { toBytes: () => null }, { toBytes: () => new Uint8Array(5) }, { toBytes: 'no' },
];
const badLists: unknown[] = [
  undefined, null, 5, 'abc', {}, [1], [null], [undefined], [new Uint8Array(15)], [new Uint8Array(17)], [element, 'x'],
  new Array(65537).fill(element),
];
const badRefCounts: unknown[] = [-1, -0.5, 1.5, NaN, Infinity, -Infinity, 2 ** 53, 2 ** 60, '1', null, {}, 1n];
const badIndexes: unknown[] = [-1, 4, 4.5, 1.5, NaN, Infinity, '0', null, undefined, {}];
// 2^40 entries is past the largest index (BUCKET_MAP_CAPACITY).
const badCounts: unknown[] = [-1, 1.5, NaN, Infinity, '5', null, 2 ** 53, 2 ** 40];
const badUpdates: unknown[] = [null, 5, 'fn', {}];
const badResults: unknown[] = [null, 5, 'x', [], [[]], [[], 1, 2], [[element], -1], [[element], 1.5], [[new Uint8Array(3)], 1], [5, 1], { 0: [], 1: 1 }];

type Call = [string, (map: BucketMap, bucket: Bucket<Uint8Array>) => unknown];

function calls(): Call[] {
  const out: Call[] = [];
  for (const k of badKeys) {
    const key = k as never;
    out.push(
      ['readValue', (m) => m.readValue(key)], ['get', (m) => m.get(key)], ['has', (m) => m.has(key)],
      ['insert', (m) => m.insert(key, [element])], ['set', (m) => m.set(key, [[element], 1])],
      ['tryInsert', (m) => m.tryInsert(key, [element])], ['update', (m) => m.update(key, () => [[element], 1])],
      ['deleteKey', (m) => m.deleteKey(key)], ['delete', (m) => m.delete(key)], ['addref', (m) => m.addref(key)],
      ['unref', (m) => m.unref(key)], ['bucketIx', (m) => m.bucketIx(key)], ['getBucket', (m) => m.getBucket(key)],
      ['bucket.readValue', (_, b) => b.readValue(key)], ['bucket.insert', (_, b) => b.insert(key, [element])],
      ['bucket.tryWrite', (_, b) => b.tryWrite(key, [element])], ['bucket.update', (_, b) => b.update(key, () => undefined)],
      ['bucket.deleteKey', (_, b) => b.deleteKey(key)], ['bucket.batchInsertNonDuplicates', (_, b) => b.batchInsertNonDuplicates([[goodKey, element], [key, element]])],
      ['readInto', (m) => m.readInto(key, new Uint8Array(64))],
      // A bad key after a good one: batches check every key before touching any.
      ['getMany', (m) => m.getMany([goodKey, key])], ['hasMany', (m) => m.hasMany([goodKey, key])],
      ['deleteMany', (m) => m.deleteMany([goodKey, key])], ['insertMany', (m) => m.insertMany([[goodKey, [element]], [key, [element]]])],
      ['addrefMany', (m) => m.addrefMany([goodKey, key])], ['unrefMany', (m) => m.unrefMany([goodKey, key])],
      ['readManyInto', (m) => m.readManyInto([goodKey, key], new Uint8Array(64), new Int32Array(2))],
    );
  }
  // A sparse array whose hole lies past the first chunk of 1,024 keys: the chunks before it must not run.
  const sparse = <E>(fill: E): E[] => {
    const out = new Array<E>(1500);
    for (let i = 0; i < 1500; i++) if (i !== 1200) out[i] = fill;
    return out;
  };
  for (const b of [5, 'keys', null, new Uint8Array(33), new Uint8Array(31), new Uint16Array(16), [goodKey, undefined], sparse(goodKey)]) {
    const batch = b as never;
    const lists = Array.isArray(b) ? Array.from(b, () => [element]) : [[element], [element]];
    out.push(
      ['getMany batch', (m) => m.getMany(batch)], ['hasMany batch', (m) => m.hasMany(batch)], ['deleteMany batch', (m) => m.deleteMany(batch)],
      ['addrefMany batch', (m) => m.addrefMany(batch)], ['unrefMany batch', (m) => m.unrefMany(batch)],
      ['insertMany batch', (m) => m.insertMany(batch, lists)],
      ['readManyInto batch', (m) => m.readManyInto(batch, new Uint8Array(64), new Int32Array(2))],
    );
  }
  const keys2 = [goodKey, goodKey];
  for (const [target, offset] of [[null, 0], [[0, 0], 0], [new Uint8Array(64), -1], [new Uint8Array(64), 65], [new Uint8Array(64), 1.5], [new Uint8Array(8), 0]]) {
    out.push(['readInto target', (m) => m.readInto(goodKey, target as never, offset as never)]);
    if (!(target instanceof Uint8Array && target.length === 8)) {
      out.push(['readManyInto target', (m) => m.readManyInto(keys2, target as never, new Int32Array(2), null, offset as never)]);
    }
  }
  for (const rcs of [[1, 1], new Float64Array(1), new Int32Array(2), 'x']) {
    out.push(['addrefMany refCounts', (m) => m.addrefMany(keys2, rcs as never)], ['unrefMany refCounts', (m) => m.unrefMany(keys2, rcs as never)]);
  }
  for (const [slots, rcs] of [[null, null], [new Int32Array(1), null], [new Uint32Array(2), null], [new Int32Array(2), new Float64Array(1)], [new Int32Array(2), [1, 1]]]) {
    out.push(['readManyInto slots', (m) => m.readManyInto(keys2, new Uint8Array(64), slots as never, rcs as never)]);
  }
  for (const [lists, rcs] of [[null, 1], [[[element]], 1], [[[element], 'x'], 1], [[[element], [element]], [1]], [[[element], [element]], -1], [[[element], [element]], 'x'], [[[element], [element]], null]]) {
    out.push(['insertMany lists', (m) => m.insertMany(keys2, lists as never, rcs as never)]);
  }
  for (const l of badLists) {
    const list = l as never;
    out.push(
      ['insert list', (m) => m.insert(goodKey, list)], ['tryInsert list', (m) => m.tryInsert(goodKey, list)],
      ['set list', (m) => m.set(goodKey, [list, 1])], ['bucket.insert list', (_, b) => b.insert(goodKey, list)],
      ['bucket.tryWrite list', (_, b) => b.tryWrite(goodKey, list)], ['update returns list', (m) => m.update(goodKey, () => [list, 1])],
    );
  }
  for (const r of badRefCounts) {
    const rc = r as never;
    out.push(
      ['insert refCount', (m) => m.insert(goodKey, [element], rc)], ['tryInsert refCount', (m) => m.tryInsert(goodKey, [element], rc)],
      ['set refCount', (m) => m.set(goodKey, [[element], rc])], ['bucket.insert refCount', (_, b) => b.insert(goodKey, [element], rc)],
      ['update returns refCount', (m) => m.update(goodKey, () => [[element], rc])],
    );
  }
  for (const i of badIndexes) out.push(['getBucketFromIndex', (m) => m.getBucketFromIndex(i as never)]);
  for (const c of badCounts) {
    out.push(['setAnticipatedCount', (m) => m.setAnticipatedCount(c as never)], ['bucket.setAnticipatedCount', (_, b) => b.setAnticipatedCount(c as never)]);
  }
  for (const f of badUpdates) out.push(['update fn', (m) => m.update(goodKey, f as never)]);
  for (const r of badResults) out.push(['update result', (m) => m.update(goodKey, () => r as never)]);
  for (const g of [undefined, null, {}, { kind: 'index', bucket: 0, capacity: 80, sizeClass: 0 }]) {
    out.push(['grow', (m) => m.grow(g as never)], ['bucket.grow', (_, b) => b.grow(g as never)]);
  }
  for (const o of [null, 5, 'x']) out.push(['flush options', (m) => m.flush(o as never)]);
  out.push(['insertMany entries', (m) => m.insertMany(sparse([goodKey, [element]] as const))]);
  for (const items of ['x', [1], [[goodKey]], [[goodKey, element, 3]], [[goodKey, new Uint8Array(2)]], sparse([goodKey, element] as const)]) {
    out.push(['batchInsertNonDuplicates items', (_, b) => b.batchInsertNonDuplicates(items as never)]);
  }
  return out;
}

for (const engine of ENGINES) {
  const test = suite(`bad input [${engine}]`);

  test('every public method rejects bad arguments with a clear error and leaves the map unchanged', () => {
    const map = new BucketMap({ maxBuckets: 4, engine });
    const bucket = map.getBucketFromIndex(0);
    for (let i = 0; i < 200; i++) map.insert(rng.key(), Array.from({ length: i % 4 }, () => rng.bytes(16)), i % 3);
    bucket.insert(goodKey, [element], 2);
    const before = snapshot(map);
    const size = map.size;
    let tried = 0;
    for (const [name, call] of calls()) {
      let error: unknown = null;
      try {
        call(map, bucket);
      } catch (err) {
        error = err;
      }
      assert.ok(error !== null, `${name}: no error`);
      const ok = error instanceof TypeError || error instanceof RangeError || (error instanceof BucketMapError && typeof error.code === 'string');
      assert.ok(ok, `${name}: threw ${String(error)}`);
      assert.ok((error as Error).message.length > 10, `${name}: a message that says what is wrong`);
      tried++;
    }
    assert.is(map.size, size);
    assert.equal(snapshot(map), before);
    assert.ok(map.verify().ok);
    console.log(`    ${tried} bad calls rejected (${engine}), map unchanged`);
    map.close();
  });

  test('an argument of the wrong type is a TypeError, one of the right type out of range a RangeError', () => {
    const map = new BucketMap({ maxBuckets: 4, engine });
    const target = new Uint8Array(64);
    const isType = (e: Error): boolean => e instanceof TypeError;
    const isRange = (e: Error): boolean => e instanceof RangeError;
    for (const offset of ['1', null, 1n, {}]) {
      assert.throws(() => map.readInto(goodKey, target, offset as never), isType, `readInto offset ${String(offset)}`);
      assert.throws(() => map.readManyInto([goodKey], target, new Int32Array(1), null, offset as never), isType, `readManyInto offset ${String(offset)}`);
      assert.throws(() => map.packed(goodKey).readInto(0, target, offset as never), isType, `packed readInto offset ${String(offset)}`);
    }
    for (const offset of [-1, 65, 1.5, NaN]) {
      assert.throws(() => map.readInto(goodKey, target, offset), isRange, `readInto offset ${offset}`);
      assert.throws(() => map.readManyInto([goodKey], target, new Int32Array(1), null, offset), isRange, `readManyInto offset ${offset}`);
    }
    for (const kind of ['Index', '', undefined, 0]) {
      assert.throws(() => new NoSpace(kind as never, 0, 80, 0), isType, `NoSpace kind ${String(kind)}`);
    }
    map.close();
  });

  test.run();
}
