/**
 * Arguments that run the caller's code when the map reads them: getters, Proxies, Uint8Array
 * subclasses, toBytes() that answers differently, buffers that shrink in the middle of a call.
 * The map reads each argument once, before it starts work that such code could disturb; code run
 * in the middle of a call cannot call the map (REENTRANT); and nothing ends in a native crash, a
 * damaged cell, or an entry filed under a key the map routes elsewhere.
 */
import { spawnSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, BucketMapError, codes } from '../host/index.js';
import { ENGINES, Rng, hex, packKeys, thrownBy } from './helpers.js';

const value = (e: [Uint8Array[], number] | undefined): string | undefined => (e === undefined ? undefined : JSON.stringify([e[0].map(hex), e[1]]));

/** ES2024's resizable ArrayBuffer (Node 20 has it; the TypeScript lib here predates it). */
const ResizableBuffer = ArrayBuffer as unknown as new (bytes: number, options: { maxByteLength: number }) => ArrayBuffer & { resize(bytes: number): void };

/** Detaches `bytes`' buffer, as a transfer to a worker does: every read of it then gives undefined. */
const rngKey = (): Uint8Array => new Rng(70).key();

function transferAway(bytes: Uint8Array): void {
  if (bytes.byteLength > 0) structuredClone(bytes.buffer, { transfer: [bytes.buffer as ArrayBuffer] });
}

/**
 * A child's script that optimises the map's key check (toKeyBytes) and a packed view's index check
 * (PackedKeys#at) having seen, among others, a view of a resizable buffer and a transferred array,
 * then hands each a transferred array: Node 20's optimised code then read the array's old .length,
 * and the key, read as zeros, was inserted as the all-zero key. Natives syntax makes the
 * optimisation happen at once rather than after some hundred thousand calls.
 */
function staleLengthScript(engine: string): string {
  const url = (p: string): string => JSON.stringify(new URL(p, import.meta.url).href);
  return `
    const { BucketMap } = await import(${url('../host/index.js')});
    const { toKeyBytes } = await import(${url('../host/keys.js')});
    const { PackedKeys } = await import(${url('../host/packed-keys.js')});
    const transferAway = (u8) => structuredClone(u8.buffer, { transfer: [u8.buffer] });
    const map = new BucketMap({ maxBuckets: 4, engine: '${engine}' });
    const out = {};
    const key = new Uint8Array(32).fill(1);
    const resizable = new Uint8Array(new ArrayBuffer(32, { maxByteLength: 32 }));
    const gone = new Uint8Array(32);
    transferAway(gone);
    %PrepareFunctionForOptimization(toKeyBytes);
    for (const k of [key, resizable, gone]) try { toKeyBytes(k); } catch {}
    %OptimizeFunctionOnNextCall(toKeyBytes);
    toKeyBytes(key);
    try { map.insert(gone, []); out.insert = 'written'; } catch (e) { out.insert = e.name; }
    const views = [map.packed(new Uint8Array(64)), map.packed(new Uint8Array(new ArrayBuffer(64, { maxByteLength: 64 }))), map.packed(new Uint8Array(64))];
    transferAway(views[2].keys);
    const at = PackedKeys.prototype.at;
    %PrepareFunctionForOptimization(at);
    for (const v of views) try { v.has(1); } catch {}
    %OptimizeFunctionOnNextCall(at);
    views[0].has(1);
    try { views[2].insert(1, []); out.packed = 'written'; } catch (e) { out.packed = e.name; }
    out.size = map.size;
    map.close();
    console.log(JSON.stringify(out));
  `;
}

/** A key in bucket `ix` of a 256-bucket map. */
function keyIn(rng: Rng, ix: number): Uint8Array {
  const k = rng.key();
  k[0] = ix;
  return k;
}

/** Inserts two-element lists into bucket `ix` until its data file grows once. */
function growData(map: BucketMap, rng: Rng, ix: number): void {
  const before = map.stats().data.resizes;
  while (map.stats().data.resizes === before) map.insert(keyIn(rng, ix), [rng.bytes(16), rng.bytes(16)]);
}

for (const engine of ENGINES) {
  const test = suite(`arguments that run the caller's code [${engine}]`);

  test('readInto into a Proxy is a TypeError; a subclass whose length getter grows the map reads the value it found', () => {
    const map = new BucketMap({ maxBuckets: 256, engine });
    const rng = new Rng(61);
    const k = keyIn(rng, 1);
    const list = [rng.bytes(16), rng.bytes(16)];
    map.insert(k, list, 4);
    // A Proxy that answers as the array it wraps, but whose traps could run anything mid-copy.
    const proxy = (): Uint8Array => {
      const inner = new Uint8Array(64);
      return new Proxy(inner, { get: (t, p) => (p === 'length' ? inner.length : Reflect.get(t, p)) });
    };
    assert.throws(() => map.readInto(k, proxy()), TypeError);
    assert.throws(() => map.packed(k.slice()).readInto(0, proxy()), TypeError);
    assert.throws(() => map.readManyInto([k], proxy(), new Int32Array(1)), TypeError);
    let reads = 0;
    class Target extends Uint8Array {
      override get length(): number {
        // The map used to read it again after the lookup: growth then retired the file the value
        // was in, and the copy read the truncated mapping (SIGBUS on the host path).
        if (++reads === 2) growData(map, rng, 1);
        return super.length;
      }
    }
    const target = new Target(64);
    assert.is(map.readInto(k, target), 2);
    assert.is(hex(target.subarray(0, 32)), hex(list[0]) + hex(list[1]));
    assert.is(map.lastRefCount, 4);
    map.close();
  });

  test('insertMany reads each refCount and slot list once; a getter that calls the map is REENTRANT and nothing is written', () => {
    const map = new BucketMap({ maxBuckets: 4, engine });
    const rng = new Rng(63);
    const keys = [rng.key(), rng.key()];
    let reads = 0;
    const refCounts = { length: 2, get 0(): number { return reads++ === 0 ? 5 : -1; }, 1: 6 };
    const lists = [[rng.bytes(16)], [rng.bytes(16)]];
    let listReads = 0;
    const slotLists = new Proxy(lists, {
      get: (t, p, r) => (p === '0' && listReads++ > 0 ? [rng.bytes(16), rng.bytes(16), rng.bytes(16)] : Reflect.get(t, p, r)),
    });
    map.insertMany(keys, slotLists, refCounts);
    assert.is(value(map.readValue(keys[0])), JSON.stringify([lists[0].map(hex), 5]));
    assert.is(value(map.readValue(keys[1])), JSON.stringify([lists[1].map(hex), 6]));
    assert.ok(map.verify().ok);
    const stranger = rng.key();
    const meddling = new Proxy([[rng.bytes(16)]], { get: (t, p, r) => (p === '0' ? (map.hasMany([stranger]), Reflect.get(t, p, r)) : Reflect.get(t, p, r)) });
    const err = thrownBy(() => map.insertMany([rng.key()], meddling));
    assert.instance(err, BucketMapError);
    assert.is(err!.code, codes.REENTRANT);
    assert.is(map.size, 2);
    map.close();
  });

  test('update() and tryInsert() write under the key they routed, whatever the callback or toBytes() does to it', () => {
    const map = new BucketMap({ maxBuckets: 256, engine });
    const rng = new Rng(64);
    const k = keyIn(rng, 10);
    const original = k.slice();
    const el = rng.bytes(16);
    map.update(k, () => {
      k[0] = 20; // a callback reusing the caller's key buffer
      return [[el], 1];
    });
    assert.is(value(map.readValue(original)), JSON.stringify([[hex(el)], 1]));
    assert.is(map.has(k), false);
    assert.equal(map.getBucketFromIndex(10).keys().map(hex), [hex(original)]);
    let calls = 0;
    const [first, second] = [keyIn(rng, 30), keyIn(rng, 40)];
    assert.is(map.tryInsert({ toBytes: () => (calls++ === 0 ? first : second) }, [el]), undefined);
    assert.is(calls, 1, 'toBytes() asked once');
    assert.ok(map.has(first));
    // A slot list whose getter changes the key: the entry is routed by the key as written.
    const moving = keyIn(rng, 50);
    const list: Uint8Array[] = [];
    Object.defineProperty(list, 0, { get: () => ((moving[0] = 60), el), enumerable: true });
    map.insert(moving, list);
    assert.is(value(map.readValue(moving)), JSON.stringify([[hex(el)], 1]));
    assert.is(map.bucketIx(moving), 60);
    assert.equal(map.getBucketFromIndex(60).keys().map(hex), [hex(moving)]);
    assert.equal(map.getBucketFromIndex(50).keys(), []);
    map.close();
  });

  test('packed keys that shrink or are transferred are a TypeError, never a partly read or stale key', () => {
    const map = new BucketMap({ maxBuckets: 4, engine });
    const rng = new Rng(65);
    const keys = [rng.key(), rng.key()];
    const buffer = new ResizableBuffer(64, { maxByteLength: 64 });
    const packed = new Uint8Array(buffer);
    packed.set(packKeys(keys));
    const view = map.packed(packed);
    buffer.resize(40);
    assert.throws(() => view.key(1), TypeError);
    assert.throws(() => view.insert(1, []), TypeError);
    assert.is(map.size, 0);
    // Shrunk in the middle of a batch (by a getter of the slot lists): the batch stops before writing.
    const other = [rng.key(), rng.key()];
    map.hasMany(other); // leaves these keys in the engine's batch buffer
    const growing = new ResizableBuffer(64, { maxByteLength: 64 });
    new Uint8Array(growing).set(packKeys(keys));
    const lists = [[rng.bytes(16)], [rng.bytes(16)]];
    Object.defineProperty(lists, 1, { get: () => (growing.resize(0), [rng.bytes(16)]) });
    assert.throws(() => map.insertMany(new Uint8Array(growing), lists), TypeError);
    assert.is(map.size, 0, 'nothing written, and no stale key of the earlier call');
    // Transferred before the call: a TypeError that says so, not V8's "Cannot perform Construct".
    const gone = packKeys(keys);
    transferAway(gone);
    const transferred = (e: Error): boolean => e instanceof TypeError && /keys: its ArrayBuffer was transferred/.test(e.message);
    assert.throws(() => map.hasMany(gone), transferred);
    assert.throws(() => map.insertMany(gone, []), transferred);
    assert.throws(() => map.readManyInto(gone, new Uint8Array(64), new Int32Array(2)), transferred);
    assert.throws(() => map.packed(gone), transferred);
    assert.is(map.size, 0);
    map.close();
  });

  test('a key is measured by its bytes: a Uint8Array subclass whose length getter says 32 is refused', () => {
    const map = new BucketMap({ maxBuckets: 4, engine });
    class Lying extends Uint8Array {
      override get length(): number {
        return 32;
      }
    }
    const short = new Lying(4).fill(9);
    const padded = new Uint8Array(32);
    padded.set([9, 9, 9, 9]);
    // Read as 32 bytes, the 28 missing ones are undefined, stored as zeros: another key.
    assert.throws(() => map.insert(short, []), (e: Error) => e instanceof RangeError && /32 bytes, got 4/.test(e.message));
    assert.throws(() => map.insertMany([short], [[]]), RangeError);
    assert.throws(() => map.insertMany([[rngKey(), []], [short, []]]), (e: Error) => e instanceof RangeError && /keys\[1\]/.test(e.message));
    assert.throws(() => map.has(short), RangeError);
    assert.throws(() => map.getMany([short]), RangeError);
    assert.throws(() => map.insert({ toBytes: () => short }, []), RangeError);
    assert.is(map.size, 0);
    assert.is(map.has(padded), false);
    map.close();
  });

  test('readInto runs no getter of its target: one that transfers the key\'s buffer cannot make it read the all-zero key', () => {
    const map = new BucketMap({ maxBuckets: 4, engine });
    const rng = new Rng(69);
    map.insert(new Uint8Array(32), [new Uint8Array(16).fill(0xee)], 77);
    const [k1, k2] = [rng.key(), rng.key()];
    const el = rng.bytes(16);
    map.insert(k1, [el], 3);
    map.insert(k2, [el, el], 4);
    let victim: Uint8Array = new Uint8Array(0);
    class Target extends Uint8Array {
      override get length(): number {
        transferAway(victim);
        return super.length;
      }
    }
    victim = k1.slice();
    assert.is(map.readInto(victim, new Target(64)), 1);
    assert.is(map.lastRefCount, 3);
    victim = packKeys([k1, k2]);
    const view = map.packed(victim);
    const target = new Target(64);
    assert.is(view.readInto(1, target), 2);
    assert.is(map.lastRefCount, 4);
    assert.is(hex(target.subarray(16, 32)), hex(el));
    map.close();
  });

  test('keys whose buffer was transferred are refused by optimised code too (Node 20 read a stale length)', () => {
    const child = spawnSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', staleLengthScript(engine)], { encoding: 'utf8' });
    assert.is(child.status, 0, child.stderr);
    assert.equal(JSON.parse(child.stdout), { insert: 'RangeError', packed: 'TypeError', size: 0 });
  });

  /** A map whose codec calls `meddle` (when set) from decode, and whose all-zero key has refCount 77. */
  function meddlingMap(): { map: BucketMap; setMeddle(fn: (() => void) | null): void } {
    let meddle: (() => void) | null = null;
    const codec = {
      size: 16,
      encode: (v: Uint8Array, t: Uint8Array, o: number): void => t.set(v, o),
      decode: (s: Uint8Array, o: number): Uint8Array => {
        meddle?.();
        return s.slice(o, o + 16);
      },
    };
    const map = new BucketMap({ maxBuckets: 16, engine, codec });
    map.insert(new Uint8Array(32), [new Uint8Array(16).fill(0xee)], 77);
    return { map, setMeddle: (fn) => void (meddle = fn) };
  }

  test('insertMany writes each key of an array as listed, even if a getter later transfers or shrinks its buffer', () => {
    const { map } = meddlingMap();
    const rng = new Rng(66);
    const transferred = rng.key();
    const shrunk = new Uint8Array(new ResizableBuffer(32, { maxByteLength: 32 }));
    shrunk.set(rng.key());
    const [transferredBytes, shrunkBytes] = [transferred.slice(), shrunk.slice()];
    const el = rng.bytes(16);
    const lists = [[el], [el], [el]];
    // Such a key reads as zeros (undefined) afterwards: it was written as the all-zero key.
    Object.defineProperty(lists, 2, { get: () => (transferAway(transferred), (shrunk.buffer as unknown as { resize(n: number): void }).resize(8), [el]) });
    map.insertMany([transferred, shrunk, rng.key()], lists);
    assert.is(value(map.readValue(transferredBytes)), JSON.stringify([[hex(el)], 1]), 'the transferred key is written under its bytes');
    assert.is(value(map.readValue(shrunkBytes)), JSON.stringify([[hex(el)], 1]), 'the shrunk key is written whole');
    assert.is(map.readValue(new Uint8Array(32))![1], 77, 'the all-zero key is untouched');
    assert.is(map.size, 4);
    map.close();
  });

  test('a per-key insert whose slot list transfers or shrinks the key is a TypeError, never the all-zero key', () => {
    const map = new BucketMap({ maxBuckets: 4, engine });
    const rng = new Rng(72);
    const el = rng.bytes(16);
    const gone = rng.key();
    const shrunk = new Uint8Array(new ResizableBuffer(32, { maxByteLength: 32 }));
    shrunk.set(rng.key());
    const meddle = (act: () => void): Uint8Array[] => {
      const list: Uint8Array[] = [];
      Object.defineProperty(list, 0, { get: () => (act(), el), enumerable: true });
      return list;
    };
    const refused = (e: Error): boolean => e instanceof TypeError && /key: its buffer was transferred or shrunk/.test(e.message);
    assert.throws(() => map.insert(gone, meddle(() => transferAway(gone))), refused);
    assert.throws(() => map.insert(shrunk, meddle(() => (shrunk.buffer as unknown as { resize(n: number): void }).resize(8))), refused);
    const bucketKey = rng.key();
    const bucket = map.getBucketFromIndex(map.bucketIx(bucketKey));
    assert.throws(() => bucket.insert(bucketKey, meddle(() => transferAway(bucketKey))), refused);
    assert.is(map.has(new Uint8Array(32)), false, 'the all-zero key was not written');
    assert.is(map.size, 0);
    map.close();
  });

  test('toBytes() and array getters that close the map or call it are REENTRANT; the call goes on with the map open', () => {
    const map = new BucketMap({ maxBuckets: 4, engine });
    const rng = new Rng(74);
    const el = rng.bytes(16);
    const held = rng.key();
    const fresh = rng.key();
    map.insert(held, [el]);
    const inner: string[] = [];
    const attempt = (fn: () => unknown): void => {
      try {
        fn();
        inner.push('none');
      } catch (e) {
        inner.push((e as BucketMapError).code);
      }
    };
    /** A key object whose toBytes() tries close() and a read first. */
    const meddling = (bytes: Uint8Array) => ({ toBytes: () => (attempt(() => map.close()), attempt(() => map.has(held)), bytes) });
    const arrayMeddling = (bytes: Uint8Array): unknown[] => {
      const list: unknown[] = [held];
      Object.defineProperty(list, 1, { get: () => (attempt(() => map.close()), bytes), enumerable: true });
      return list;
    };
    const calls: Array<[string, () => unknown, unknown]> = [
      ['get', () => value(map.readValue(meddling(held))), JSON.stringify([[hex(el)], 1])],
      ['has', () => map.has(meddling(held)), true],
      ['insert', () => map.insert(meddling(fresh), [el]), undefined],
      ['addref', () => map.addref(meddling(fresh)), 2],
      ['getMany', () => map.getMany([meddling(fresh)]).map(value), [JSON.stringify([[hex(el)], 2])]],
      ['hasMany', () => map.hasMany(arrayMeddling(fresh) as Uint8Array[]), [true, true]],
      ['addrefMany', () => map.addrefMany(arrayMeddling(fresh) as Uint8Array[]), undefined],
      ['deleteMany', () => map.deleteMany(arrayMeddling(fresh) as Uint8Array[]), 2],
    ];
    for (const [name, call, expected] of calls) {
      inner.length = 0;
      const got = call();
      if (expected !== undefined) assert.equal(got, expected, name);
      assert.ok(inner.length > 0 && inner.every((code) => code === codes.REENTRANT), `${name}: the caller's code met ${inner.join(', ')}`);
      assert.not.throws(() => map.size, `${name}: the map is still open`);
    }
    assert.is(map.size, 0, 'held (refCount 2 after addrefMany) and fresh deleted by deleteMany');
    map.close();
  });

  test('getMany and addrefMany use each key of an array as listed, whatever a codec run by an earlier chunk does to its buffer', () => {
    const { map, setMeddle } = meddlingMap();
    const rng = new Rng(68);
    const el = rng.bytes(16);
    const keys = Array.from({ length: 1100 }, () => rng.key());
    map.insertMany(keys, keys.map(() => [el]), 2);
    // getMany: decoding the first chunk's values transfers a key of the second chunk.
    const late = keys[1099].slice();
    setMeddle(() => transferAway(late));
    const got = map.getMany([...keys.slice(0, 1099), late]);
    setMeddle(null);
    assert.is(value(got[1099]), JSON.stringify([[hex(el)], 2]), 'getMany answers for the key as listed, not the all-zero key');
    // addrefMany: rewriting an entry at refCount 256 (not changeable in place) runs the codec,
    // which transfers a key of a later chunk.
    map.insert(keys[0], [el], 256);
    const later = keys[1050].slice();
    setMeddle(() => transferAway(later));
    const refCounts = new Float64Array(1100);
    assert.is(map.addrefMany([...keys.slice(0, 1050), later, ...keys.slice(1051)], refCounts), 1100);
    setMeddle(null);
    assert.is(refCounts[0], 257);
    assert.is(refCounts[1050], 3);
    assert.is(map.readValue(keys[1050])![1], 3, 'the listed key gained the reference');
    assert.is(map.readValue(new Uint8Array(32))![1], 77, 'the all-zero key did not');
    assert.ok(map.verify().ok);
    map.close();
  });

  test.run();
}
