import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, codecs } from '../host/index.js';
import { ENGINES } from './helpers.js';
import { checkCodec } from '../host/codecs.js';

test('codecs.bytes(n) copies n bytes in and out, and the decoded copy does not alias the source', () => {
  const codec = codecs.bytes(5);
  const target = new Uint8Array(12);
  codec.encode(Uint8Array.of(1, 2, 3, 4, 5), target, 3);
  assert.equal(Array.from(target), [0, 0, 0, 1, 2, 3, 4, 5, 0, 0, 0, 0]);
  const out = codec.decode(target, 3);
  assert.equal(Array.from(out), [1, 2, 3, 4, 5]);
  target[3] = 99;
  assert.is(out[0], 1);
});

test('codecs.bytes rejects wrong element types and sizes', () => {
  const codec = codecs.bytes(4);
  assert.throws(() => codec.encode(Uint8Array.of(1, 2, 3), new Uint8Array(8), 0), (e: Error) => e instanceof RangeError && /4 bytes, got 3/.test(e.message));
  assert.throws(() => codec.encode('abcd' as never, new Uint8Array(8), 0), TypeError);
  assert.throws(() => codecs.bytes(0), RangeError);
  assert.throws(() => codecs.bytes(1.5), RangeError);
  assert.throws(() => codecs.bytes(1 << 20), RangeError);
});

test('codecs.bytes copies an element as long as it really is: a subclass whose length lies, or a Proxy, is refused, never stored with another entry\'s bytes', () => {
  class Liar extends Uint8Array {
    override get length(): number {
      return 16;
    }
  }
  const codec = codecs.bytes(16);
  assert.throws(() => codec.encode(new Liar(8), new Uint8Array(16), 0), (e: Error) => e instanceof RangeError && /16 bytes, got 8/.test(e.message));
  const proxy = new Proxy(new Uint8Array(8), { get: (t, p) => (p === 'length' ? 16 : Reflect.get(t, p)) });
  assert.throws(() => codec.encode(proxy, new Uint8Array(16), 0), TypeError);
  assert.throws(() => codec.encode(new Proxy(new Uint8Array(16), {}), new Uint8Array(16), 0), TypeError);
  // Through a map: the element before the liar left its bytes in the engine's input buffer.
  for (const engine of ENGINES) {
    const map = new BucketMap({ maxBuckets: 1, engine });
    map.insert(new Uint8Array(32).fill(1), [new Uint8Array(16).fill(0xaa)]);
    const liarKey = new Uint8Array(32).fill(2);
    assert.throws(() => map.insert(liarKey, [new Liar(8).fill(0x55)]), RangeError);
    assert.is(map.has(liarKey), false);
    const subclass = new (class extends Uint8Array {})(16).fill(0x55);
    map.insert(liarKey, [subclass]);
    assert.equal(Array.from(map.readValue(liarKey)![0][0]), new Array(16).fill(0x55), 'an honest subclass is taken');
    map.close();
  }
});

test('codecs.u64 stores bigints little-endian across the whole range', () => {
  const codec = codecs.u64;
  const buf = new Uint8Array(8);
  for (const v of [0n, 1n, 255n, 0x1_0000_0000n, 0x0123_4567_89ab_cdefn, (1n << 64n) - 1n]) {
    codec.encode(v, buf, 0);
    assert.is(Buffer.from(buf).readBigUInt64LE(0), v);
    assert.is(codec.decode(buf, 0), v);
  }
  assert.throws(() => codec.encode(-1n, buf, 0), RangeError);
  assert.throws(() => codec.encode(1n << 64n, buf, 0), RangeError);
  assert.throws(() => codec.encode(5 as never, buf, 0), TypeError);
});

test('checkCodec rejects codecs without the needed shape', () => {
  assert.throws(() => checkCodec(null), TypeError);
  assert.throws(() => checkCodec({ size: 4 }), TypeError);
  assert.throws(() => checkCodec({ size: 0, encode() {}, decode() {} }), RangeError);
  assert.throws(() => checkCodec({ size: 2.5, encode() {}, decode() {} }), RangeError);
  // A user's codec is taken as checked: its size read once, its methods called on it.
  let size = 3;
  const ok = {
    get size(): number {
      return size;
    },
    encode(this: unknown, _v: unknown, target: Uint8Array, offset: number): void {
      assert.is(this, ok);
      target[offset] = 7;
    },
    decode(this: unknown, source: Uint8Array, offset: number): number {
      assert.is(this, ok);
      return source[offset];
    },
  };
  const checked = checkCodec(ok);
  size = 9;
  assert.is(checked.size, 3);
  const bytes = new Uint8Array(4);
  checked.encode(0, bytes, 1);
  assert.is(checked.decode(bytes, 1), 7);
  assert.is(checkCodec(codecs.u64), codecs.u64, 'ours as they are');
});

test.run();
