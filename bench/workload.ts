/**
 * The benchmark workload, built entirely before any timing starts so that every store pays the
 * same per-operation cost (a key slice and a value check, both read front to back) and none pays
 * for generating data.
 */

export const KEY_BYTES = 32;
export const VALUE_BYTES = 16;
export const DEFAULT_SEED = 0x5eed_b0c4;
/** N of a plain `npm run bench`: its chart and JSON are `results.svg` and `results.json`. */
export const DEFAULT_N = 1_000_000;

/** xoshiro128**: 128 bits of state, so 2M windows of eight outputs cannot realistically repeat. */
export class Prng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    // splitmix32 spreads a small seed over the whole state (xoshiro must not start all-zero).
    let x = seed >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next() | 1;
  }

  u32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Integer in [0, n); the bias of scaling one u32 is far below anything a shuffle could show. */
  below(n: number): number {
    return Math.floor((this.u32() / 0x1_0000_0000) * n);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** A 32-bit finaliser (murmur3 fmix32); gives the "info" half of each value. */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * One phase's operands, copied before timing into the order the phase visits them, so that its
 * timed loop reads keys and expected values front to back. Read in a shuffled order straight from
 * the key set instead, every operation would also pay two random reads of the harness's own
 * buffers (hundreds of MB at 10M): a cache and TLB miss each, charged alike to every store but
 * belonging to none of them, which compressed every ratio between stores.
 */
export interface Stream {
  count: number;
  /** Workload index of operand j: what error messages name. */
  ids: Uint32Array;
  /** Key j at [32j, 32j+32). */
  keys: Buffer;
  /** Value of key j at [16j, 16j+16). */
  values: Buffer;
  /** The refCount a read of key j in this phase must see (0: the key must be absent). */
  refs: Uint8Array;
}

export interface Workload {
  n: number;
  seed: number;
  /** n keys that are never inserted, key i at [32i, 32i+32); the mixed phase inserts the first half. */
  absent: Buffer;
  /** Value i (u64 slot = i, u64 info = hash of i, little-endian) at [16i, 16i+16). */
  values: Buffer;
  /** All n keys in random order. */
  insert: Stream;
  /** All n keys in a second random order (refCount 1). */
  get: Stream;
  /** Half of the keys, from a third permutation: their refCount goes to 2. */
  update: Stream;
  /** A tenth of the keys, from a fourth permutation (overlaps the updated keys at random). */
  delete: Stream;
  /** The keys left after the deletes, in a fifth random order, with their final refCounts. */
  live: Stream;
}

function fillRandom(prng: Prng, target: Buffer): void {
  for (let off = 0; off < target.length; off += 4) target.writeUInt32LE(prng.u32(), off);
}

function permutation(prng: Prng, n: number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = prng.below(i + 1);
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

export function valueOf(i: number, target: Buffer, offset: number): void {
  // slot = i as u64 (i < 2^32 for any N this harness can hold), info = two mixes of i.
  target.writeUInt32LE(i >>> 0, offset);
  target.writeUInt32LE(Math.floor(i / 0x1_0000_0000), offset + 4);
  target.writeUInt32LE(mix32(i ^ 0x243f6a88), offset + 8);
  target.writeUInt32LE(mix32(i + 0x9e3779b9), offset + 12);
}

function stream(ids: Uint32Array, keys: Buffer, values: Buffer, refOf: (i: number) => number): Stream {
  const count = ids.length;
  const s: Stream = {
    count, ids,
    keys: Buffer.allocUnsafeSlow(count * KEY_BYTES),
    values: Buffer.allocUnsafeSlow(count * VALUE_BYTES),
    refs: new Uint8Array(count),
  };
  for (let j = 0; j < count; j++) {
    const i = ids[j];
    // Byte loops: Buffer#copy's call costs more than copying 32 bytes, times 10M keys per stream.
    for (let k = 0, from = i * KEY_BYTES, to = j * KEY_BYTES; k < KEY_BYTES; k++) s.keys[to + k] = keys[from + k];
    for (let k = 0, from = i * VALUE_BYTES, to = j * VALUE_BYTES; k < VALUE_BYTES; k++) s.values[to + k] = values[from + k];
    s.refs[j] = refOf(i);
  }
  return s;
}

export function buildWorkload(n: number, seed: number): Workload {
  const prng = new Prng(seed);
  const keys = Buffer.allocUnsafeSlow(n * KEY_BYTES);
  const absent = Buffer.allocUnsafeSlow(n * KEY_BYTES);
  fillRandom(prng, keys);
  fillRandom(prng, absent);
  const values = Buffer.allocUnsafeSlow(n * VALUE_BYTES);
  for (let i = 0; i < n; i++) valueOf(i, values, i * VALUE_BYTES);
  const insertOrder = permutation(prng, n);
  const getOrder = permutation(prng, n);
  const updateOrder = permutation(prng, n).slice(0, Math.floor(n / 2));
  const deleteOrder = permutation(prng, n).slice(0, Math.floor(n / 10));
  const finalRef = new Uint8Array(n).fill(1);
  for (const i of updateOrder) finalRef[i] = 2;
  for (const i of deleteOrder) finalRef[i] = 0;
  const liveOrder = permutation(prng, n).filter((i) => finalRef[i] !== 0);
  // `keys` in index order is dropped here: no phase reads it.
  return {
    n, seed, absent, values,
    insert: stream(insertOrder, keys, values, () => 1),
    get: stream(getOrder, keys, values, () => 1),
    update: stream(updateOrder, keys, values, () => 2),
    delete: stream(deleteOrder, keys, values, () => 0),
    live: stream(liveOrder, keys, values, (i) => finalRef[i]),
  };
}

/** True when the value bytes at `actual` equal the value of the stream's key j. */
export function sameValue(s: Stream, j: number, actual: Uint8Array, offset = 0): boolean {
  const v = s.values;
  const o = j * VALUE_BYTES;
  for (let k = 0; k < VALUE_BYTES; k++) if (actual[offset + k] !== v[o + k]) return false;
  return true;
}

/**
 * Keys first … first + count − 1 of a key set too large to hold (bench/scale.ts), written back to
 * back into `target`: computed from their numbers, so a run of hundreds of millions of keys can
 * regenerate any chunk of them for each phase. Word 0 of key i is `mix32(i ^ seed)`, a bijection
 * of i (xor with a constant and murmur3's finaliser both are), so keys 0 … 2^32 − 1 are distinct
 * by construction, not by chance; the other seven words mix i with the word's position, so the
 * key's bytes look random.
 */
export function countedKeys(first: number, count: number, seed: number, target: Uint8Array): void {
  if (target.length < count * KEY_BYTES) throw new RangeError(`countedKeys: ${count} keys need ${count * KEY_BYTES} bytes, got ${target.length}`);
  const words = new DataView(target.buffer, target.byteOffset, count * KEY_BYTES);
  const seed2 = Math.imul(seed, 0x9e3779b9);
  for (let j = 0; j < count; j++) {
    const i = first + j;
    const at = j * KEY_BYTES;
    words.setUint32(at, mix32((i ^ seed) >>> 0), true);
    for (let w = 1; w < KEY_BYTES / 4; w++) words.setUint32(at + w * 4, mix32((Math.imul(i, 8) + w) ^ seed2), true);
  }
}
