import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildWorkload, countedKeys, KEY_BYTES, sameValue, VALUE_BYTES, valueOf, type Stream } from '../bench/workload.js';
import { hex } from './helpers.js';

// The benchmark's figures are only as good as its workload: every phase must visit the keys it
// claims to, with the values and refCounts the checks expect, whatever order the streams hold.

const N = 5_000;
const SEED = 0x5eed_b0c4;
const keyHex = (keys: Uint8Array, j: number): string => hex(keys.subarray(j * KEY_BYTES, (j + 1) * KEY_BYTES));

function keysById(s: Stream): Map<number, string> {
  const m = new Map<number, string>();
  for (let j = 0; j < s.count; j++) m.set(s.ids[j], keyHex(s.keys, j));
  return m;
}

test('bench streams: insert and get visit every key once, in different orders, with its own value', () => {
  const w = buildWorkload(N, SEED);
  const byId = keysById(w.insert);
  assert.is(byId.size, N, 'the insert stream holds each id once');
  assert.is(new Set(byId.values()).size, N, 'the keys are distinct');
  const getIds = new Set(w.get.ids);
  assert.is(getIds.size, N, 'the get stream holds each id once');
  let samePosition = 0;
  for (let j = 0; j < N; j++) if (w.get.ids[j] === w.insert.ids[j]) samePosition++;
  assert.ok(samePosition < 10, `get order is a different shuffle (${samePosition} ids at the same position)`);
  const expected = Buffer.alloc(VALUE_BYTES);
  for (const s of [w.insert, w.get, w.update, w.delete, w.live]) {
    assert.is(s.keys.length, s.count * KEY_BYTES);
    assert.is(s.values.length, s.count * VALUE_BYTES);
    for (let j = 0; j < s.count; j++) {
      const i = s.ids[j];
      assert.is(keyHex(s.keys, j), byId.get(i), `stream key ${j} is key ${i}`);
      valueOf(i, expected, 0);
      assert.ok(sameValue(s, j, expected), `stream value ${j} is value ${i}`);
    }
  }
});

test('bench streams: the refCounts each phase expects follow from the updates and deletes', () => {
  const w = buildWorkload(N, SEED);
  const updated = new Set(w.update.ids);
  const deleted = new Set(w.delete.ids);
  assert.is(updated.size, N / 2);
  assert.is(deleted.size, N / 10);
  assert.ok(w.get.refs.every((r) => r === 1));
  assert.ok(w.update.refs.every((r) => r === 2));
  const overlap = [...deleted].filter((i) => updated.has(i)).length;
  assert.ok(overlap > N / 40 && overlap < (3 * N) / 40, `deletes overlap updates at random (${overlap} of ${N / 10})`);
  assert.is(w.live.count, N - deleted.size, 'the live stream is every key not deleted');
  for (let j = 0; j < w.live.count; j++) {
    const i = w.live.ids[j];
    assert.not.ok(deleted.has(i), `live id ${i} was deleted`);
    assert.is(w.live.refs[j], updated.has(i) ? 2 : 1, `final refCount of ${i}`);
  }
});

test('bench workload: the absent keys are never among the present ones, and a seed reproduces it', () => {
  const w = buildWorkload(N, SEED);
  const present = new Set(keysById(w.insert).values());
  for (let i = 0; i < N; i++) assert.not.ok(present.has(keyHex(w.absent, i)), `absent key ${i} is present`);
  const again = buildWorkload(N, SEED);
  assert.ok(again.get.keys.equals(w.get.keys) && again.live.ids.every((id, j) => id === w.live.ids[j]), 'same seed, same workload');
  const other = buildWorkload(N, SEED + 1);
  assert.not.ok(other.insert.keys.equals(w.insert.keys), 'another seed, other keys');
});

test('bench sameValue rejects a value that differs in any one byte', () => {
  const w = buildWorkload(100, SEED);
  const got = Buffer.from(w.get.values.subarray(7 * VALUE_BYTES, 8 * VALUE_BYTES));
  assert.ok(sameValue(w.get, 7, got));
  for (let k = 0; k < VALUE_BYTES; k++) {
    got[k] ^= 1;
    assert.not.ok(sameValue(w.get, 7, got), `byte ${k} flipped`);
    got[k] ^= 1;
  }
  assert.ok(sameValue(w.get, 7, Buffer.concat([Buffer.alloc(3), got]), 3), 'at an offset');
});

test('bench:scale keys: a chunk holds the keys made one at a time, all distinct, reproducible from the seed', () => {
  // The scale run regenerates each chunk of keys for every phase, and takes numbers n and beyond as
  // absent keys: wrong keys there would read as misses, or absent keys as hits.
  const count = 20_000;
  const chunk = Buffer.alloc(count * KEY_BYTES);
  countedKeys(1_000, count, SEED, chunk);
  const one = Buffer.alloc(KEY_BYTES);
  const seen = new Set<string>();
  for (let j = 0; j < count; j++) {
    countedKeys(1_000 + j, 1, SEED, one);
    assert.is(hex(one), keyHex(chunk, j), `key ${1_000 + j} alone and in its chunk`);
    seen.add(hex(one));
  }
  assert.is(seen.size, count, 'distinct keys');
  // Word 0 is a bijection of the number: keys far apart, and near the 32-bit end, differ there too.
  const words0 = new Set<number>();
  for (const i of [0, 1, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1, 123_456_789]) {
    countedKeys(i, 1, SEED, one);
    words0.add(one.readUInt32LE(0));
  }
  assert.is(words0.size, 6);
  const other = Buffer.alloc(count * KEY_BYTES);
  countedKeys(1_000, count, SEED + 1, other);
  for (let j = 0; j < count; j++) assert.not.ok(seen.has(keyHex(other, j)), `another seed gives other keys (key ${j})`);
  assert.throws(() => countedKeys(0, count + 1, SEED, chunk), (e: unknown) => e instanceof RangeError);
});

test.run();
