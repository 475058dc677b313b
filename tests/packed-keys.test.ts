/**
 * map.packed(keys): per-key calls on keys packed in one buffer, addressed by index. A seeded random
 * walk drives one map through the view and checks every answer against a plain Map model and
 * against the same call with the key cut out; then the edges: bad indexes and buffers, a buffer
 * changed under the view, a closed map. TEST_SEED=n reproduces a run.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, BucketMapError, codes } from '../host/index.js';
import { ENGINES, hex, snapshot, withSeed } from './helpers.js';

for (const engine of ENGINES) {
  const test = suite(`packed keys [${engine}]`);

  test('every call through the view agrees with a Map model and with the same call on the key itself', () => {
    withSeed((rng) => {
      const map = new BucketMap({ maxBuckets: 8, engine, maxSearch: 8 });
      // 600 keys in a Buffer slice that starts at an odd address, as keys parsed out of a message would.
      const count = 600;
      const keys = Buffer.alloc(count * 32 + 5).subarray(5);
      for (let i = 0; i < count; i++) keys.set(rng.key(), i * 32);
      const view = map.packed(keys);
      assert.is(view.length, count);
      const model = new Map<string, [string[], number]>();
      const target = Buffer.alloc(4 * 16 + 3);
      for (let step = 0; step < 6000; step++) {
        const i = rng.below(count);
        const k = hex(view.key(i));
        assert.is(k, hex(keys.subarray(i * 32, i * 32 + 32)));
        const expected = model.get(k);
        const action = rng.below(8);
        if (action <= 1) {
          const list = Array.from({ length: rng.below(4) }, () => rng.bytes(16));
          const rc = 1 + rng.below(3);
          view.insert(i, list, rc);
          model.set(k, [list.map(hex), rc]);
        } else if (action === 2) {
          assert.is(view.delete(i), expected !== undefined, `delete at step ${step}`);
          model.delete(k);
        } else if (action === 3) {
          const rc = view.addref(i);
          assert.is(rc, expected === undefined ? undefined : expected[1] + 1, `addref at step ${step}`);
          if (expected !== undefined) expected[1]++;
        } else if (action === 4) {
          if (expected !== undefined && expected[1] === 0) continue;
          const rc = view.unref(i);
          assert.is(rc, expected === undefined ? undefined : expected[1] - 1, `unref at step ${step}`);
          if (expected !== undefined) expected[1]--;
        } else if (action === 5) {
          const offset = rng.below(4);
          const n = view.readInto(i, target, offset);
          assert.is(n, expected === undefined ? -1 : expected[0].length, `readInto at step ${step}`);
          if (expected !== undefined) {
            const got = Array.from({ length: n }, (_, e) => hex(target.subarray(offset + e * 16, offset + e * 16 + 16)));
            assert.equal(got, expected[0]);
            assert.is(map.lastRefCount, expected[1]);
          }
          assert.is(map.readInto(keys.subarray(i * 32, i * 32 + 32), target, offset), n);
        } else if (action === 6) {
          assert.is(view.has(i), expected !== undefined, `has at step ${step}`);
        } else {
          const got = view.get(i);
          assert.equal(got === undefined ? undefined : [got[0].map(hex), got[1]], expected, `get at step ${step}`);
        }
      }
      assert.is(map.size, model.size);
      assert.equal(snapshot(map), new Map([...model].map(([k, [list, rc]]) => [k, JSON.stringify([list, rc])])));
      map.close();
    });
  });

  test('the view reads the buffer at each call, and any number of views share a map', () => {
    withSeed((rng) => {
      const map = new BucketMap({ maxBuckets: 4, engine });
      const a = rng.key();
      const b = rng.key();
      map.insert(a, [rng.bytes(16)], 3);
      const keys = new Uint8Array(64);
      keys.set(a, 32);
      const view = map.packed(keys);
      const other = map.packed(keys.subarray(32));
      assert.is(view.has(0), false);
      assert.is(view.has(1), true);
      assert.is(other.get(0)?.[1], 3);
      keys.set(b, 32);
      assert.is(view.has(1), false, 'key 1 is now b, which is absent');
      view.insert(1, [], 7);
      assert.is(map.readValue(b)?.[1], 7);
      assert.is(other.delete(0), true);
      assert.is(map.has(b), false);
      assert.is(map.size, 1);
      map.close();
    });
  });

  test('bad buffers and indexes are refused with TypeError or RangeError, and change nothing', () => {
    const map = new BucketMap({ maxBuckets: 2, engine });
    assert.throws(() => map.packed('keys' as never), TypeError);
    assert.throws(() => map.packed([new Uint8Array(32)] as never), TypeError);
    assert.throws(() => map.packed(new Uint8Array(33)), RangeError);
    const view = map.packed(new Uint8Array(96));
    assert.is(map.packed(new Uint8Array(0)).length, 0);
    for (const bad of [3, -1, 1.5, NaN, Infinity, 2 ** 32]) {
      assert.throws(() => view.readInto(bad, new Uint8Array(16)), RangeError, `readInto(${bad})`);
      assert.throws(() => view.insert(bad, []), RangeError, `insert(${bad})`);
      assert.throws(() => view.has(bad), RangeError, `has(${bad})`);
    }
    for (const bad of ['0', null, undefined, {}]) {
      assert.throws(() => view.get(bad as never), TypeError);
      assert.throws(() => view.delete(bad as never), TypeError);
    }
    assert.throws(() => view.readInto(0, 'x' as never), TypeError);
    assert.throws(() => view.readInto(0, new Uint8Array(16), 17), RangeError);
    assert.is(map.size, 0);
    map.close();
  });

  test('a view whose buffer was transferred away refuses every call with TypeError, reading no key', () => {
    const map = new BucketMap({ maxBuckets: 2, engine });
    map.insert(new Uint8Array(32), [new Uint8Array(16).fill(9)]); // the all-zero key: what a detached buffer reads as
    const keys = new Uint8Array(64).fill(0xaa);
    const view = map.packed(keys);
    structuredClone(keys.buffer, { transfer: [keys.buffer] });
    for (const call of [() => view.readInto(1, new Uint8Array(16)), () => view.has(0), () => view.get(0), () => view.insert(1, []), () => view.addref(0), () => view.unref(0), () => view.delete(0), () => view.key(1)]) {
      assert.throws(call, (err: Error) => err instanceof TypeError && /detached/.test(err.message));
    }
    assert.is(map.size, 1);
    assert.is(map.readValue(new Uint8Array(32))![1], 1, 'the all-zero key untouched');
    map.close();
  });

  test('a view of a closed map throws CLOSED', () => {
    const map = new BucketMap({ maxBuckets: 2, engine });
    const view = map.packed(new Uint8Array(32));
    map.close();
    for (const call of [() => view.readInto(0, new Uint8Array(16)), () => view.has(0), () => view.get(0), () => view.insert(0, []), () => view.addref(0), () => view.delete(0)]) {
      try {
        call();
        assert.unreachable('a call on a closed map must throw');
      } catch (err) {
        assert.instance(err, BucketMapError);
        assert.is((err as BucketMapError).code, codes.CLOSED);
      }
    }
    assert.throws(() => map.packed(new Uint8Array(32)), (err: unknown) => err instanceof BucketMapError && err.code === codes.CLOSED);
  });

  test('a codec that calls get() of the view and swallows REENTRANT cannot move a write to another key', () => {
    // The view copies key i into one scratch key per call; get() copied before the map refused
    // it, so insert(0) and addref(0) went on with key 1 and wrote there.
    let view: ReturnType<BucketMap['packed']> | null = null;
    const errors: string[] = [];
    const meddling = {
      size: 16,
      encode: (v: Uint8Array, t: Uint8Array, o: number): void => {
        try {
          view?.get(1);
        } catch (err) {
          errors.push((err as BucketMapError).code);
        }
        t.set(v, o);
      },
      decode: (s: Uint8Array, o: number): Uint8Array => s.slice(o, o + 16),
    };
    const map = new BucketMap({ maxBuckets: 4, engine, codec: meddling });
    const keys = Buffer.alloc(64);
    keys.fill(1, 0, 32);
    keys.fill(2, 32, 64);
    const [k0, k1] = [keys.subarray(0, 32), keys.subarray(32, 64)];
    view = map.packed(keys);
    const el = new Uint8Array(16).fill(5);
    view.insert(0, [el], 256);
    assert.equal(errors, [codes.REENTRANT]);
    // At refCount 256 an addref cannot change the entry in place: it is rewritten, through the codec.
    assert.is(view.addref(0), 257);
    assert.ok(errors.length > 1 && errors.every((c) => c === codes.REENTRANT));
    assert.equal(map.readValue(k0), [[el], 257]);
    assert.is(map.has(k1), false);
    assert.is(map.size, 1);
    map.close();
  });

  test.run();
}
