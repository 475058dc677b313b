/**
 * The benchmark workload, built entirely before any timing starts so that every store pays the
 * same per-operation cost (a key slice and a value check) and none pays for generating data.
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

export interface Workload {
  n: number;
  seed: number;
  /** n present keys, key i at [32i, 32i+32). */
  keys: Buffer;
  /** n keys that are never inserted. */
  absent: Buffer;
  /** Value i (u64 slot = i, u64 info = hash of i, little-endian) at [16i, 16i+16). */
  values: Buffer;
  insertOrder: Uint32Array;
  getOrder: Uint32Array;
  /** The first n/2 of a third permutation: keys whose refCount goes to 2. */
  updateOrder: Uint32Array;
  /** The first n/10 of a fourth permutation (overlaps the updated keys at random). */
  deleteOrder: Uint32Array;
  /** The keys left after phase 5, in a fifth random order: what each verify pass reads. */
  liveOrder: Uint32Array;
  /** Expected refCount of key i after phases 4 and 5 (0 = deleted). */
  finalRef: Uint8Array;
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
  return { n, seed, keys, absent, values, insertOrder, getOrder, updateOrder, deleteOrder, liveOrder, finalRef };
}

/** True when value bytes at `actual` equal value i. */
export function sameValue(w: Workload, i: number, actual: Uint8Array, offset = 0): boolean {
  const v = w.values;
  const o = i * VALUE_BYTES;
  for (let k = 0; k < VALUE_BYTES; k++) if (actual[offset + k] !== v[o + k]) return false;
  return true;
}
