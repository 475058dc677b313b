/**
 * HalfSipHash (Aumasson & Bernstein's SipHash on 32-bit words) with a 64-bit output.
 *
 * Why this hash: it is keyed (each bucket has a random 64-bit seed, so keys crafted without the seed
 * cannot be aimed at one probe window), it uses only 32-bit additions, rotations and xors, so this
 * TypeScript copy matches the AssemblyScript core bit for bit without BigInt, and the 1-3 round
 * variant is what Linux uses for its hash tables (hsiphash). `halfSipHash` is the general form,
 * checked against the official 2-4 vectors; `hashKey` is the product's 1-3 form unrolled for a
 * 32-byte key. Both engines must agree with tests/vectors/key-hash.json.
 */

const rotl = (x: number, b: number): number => (x << b) | (x >>> (32 - b));

/** General HalfSipHash-c-d over any message, 64-bit output as [lo, hi] (unsigned). */
export function halfSipHash(msg: Uint8Array, k0: number, k1: number, c: number, d: number): [number, number] {
  let v0 = k0 | 0;
  let v1 = (k1 ^ 0xee) | 0;
  let v2 = (0x6c796765 ^ k0) | 0;
  let v3 = (0x74656462 ^ k1) | 0;
  const round = (): void => {
    v0 = (v0 + v1) | 0; v1 = rotl(v1, 5); v1 ^= v0; v0 = rotl(v0, 16);
    v2 = (v2 + v3) | 0; v3 = rotl(v3, 8); v3 ^= v2;
    v0 = (v0 + v3) | 0; v3 = rotl(v3, 7); v3 ^= v0;
    v2 = (v2 + v1) | 0; v1 = rotl(v1, 13); v1 ^= v2; v2 = rotl(v2, 16);
  };
  const n = msg.length;
  const end = n - (n & 3);
  for (let i = 0; i < end; i += 4) {
    const m = msg[i] | (msg[i + 1] << 8) | (msg[i + 2] << 16) | (msg[i + 3] << 24);
    v3 ^= m;
    for (let r = 0; r < c; r++) round();
    v0 ^= m;
  }
  let b = n << 24;
  const left = n & 3;
  if (left >= 3) b |= msg[end + 2] << 16;
  if (left >= 2) b |= msg[end + 1] << 8;
  if (left >= 1) b |= msg[end];
  v3 ^= b;
  for (let r = 0; r < c; r++) round();
  v0 ^= b;
  v2 ^= 0xee;
  for (let r = 0; r < d; r++) round();
  const lo = (v1 ^ v3) >>> 0;
  v1 ^= 0xdd;
  for (let r = 0; r < d; r++) round();
  const hi = (v1 ^ v3) >>> 0;
  return [lo, hi];
}

/** High half of the last `hashKey` result (the low half is its return value). */
export let hashHi = 0;

/**
 * HalfSipHash-1-3 of the 32 bytes at `key[off..off+32)` under seed (k0, k1). Returns the low 32 bits
 * as a signed int (so V8 never boxes it) and leaves the high 32 bits in `hashHi`.
 */
export function hashKey(key: Uint8Array, off: number, k0: number, k1: number): number {
  return hashKeyWords(key, off, k0, k1, SCRATCH_WORDS);
}

const SCRATCH_WORDS = new Int32Array(8);

/**
 * hashKey that also leaves the key's eight little-endian words in `words`, so a lookup can
 * compare keys a word at a time without reading the key again.
 */
export function hashKeyWords(key: Uint8Array, off: number, k0: number, k1: number, words: Int32Array): number {
  // Keys come at any alignment, so there is no word view: gather the words, then hash them.
  for (let w = 0; w < 8; w++) {
    const i = off + 4 * w;
    words[w] = key[i] | (key[i + 1] << 8) | (key[i + 2] << 16) | (key[i + 3] << 24);
  }
  return hashWords(words, 0, k0, k1);
}

/**
 * hashKey of a key already held as eight little-endian words at `words[off..off+8)`; batches
 * hash straight from their packed, aligned key buffer this way (a third faster than from bytes
 * in a micro-benchmark: 33 against 52 ns per key).
 *
 * The nine compression rounds (eight message words, then the length block 32 << 24) are written
 * out rather than looped: with the loop, hashKeyWords took 59–72 ns per key in a micro-benchmark
 * where this form takes 45–48 (bench/RESULTS.md, (a)); a loop with the length block after
 * it measured no better than the old loop. The repeated round is deliberate: one round function
 * over module-level state, which would write it once, measured four times slower.
 */
export function hashWords(words: Int32Array, off: number, k0: number, k1: number): number {
  let v0 = k0 | 0;
  let v1 = (k1 ^ 0xee) | 0;
  let v2 = (0x6c796765 ^ k0) | 0;
  let v3 = (0x74656462 ^ k1) | 0;
  let m = words[off];
  v3 ^= m;
  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  v0 ^= m;
  m = words[off + 1];
  v3 ^= m;
  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  v0 ^= m;
  m = words[off + 2];
  v3 ^= m;
  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  v0 ^= m;
  m = words[off + 3];
  v3 ^= m;
  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  v0 ^= m;
  m = words[off + 4];
  v3 ^= m;
  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  v0 ^= m;
  m = words[off + 5];
  v3 ^= m;
  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  v0 ^= m;
  m = words[off + 6];
  v3 ^= m;
  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  v0 ^= m;
  m = words[off + 7];
  v3 ^= m;
  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  v0 ^= m;
  m = 32 << 24;
  v3 ^= m;
  v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
  v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
  v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
  v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  v0 ^= m;
  return finish(v0, v1, v2, v3);
}

/** Finalisation: three rounds give the low word, three more (after v1 ^= 0xdd) the high word. */
function finish(v0: number, v1: number, v2: number, v3: number): number {
  v2 ^= 0xee;
  for (let r = 0; r < 3; r++) {
    v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
    v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
    v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
    v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  }
  const lo = v1 ^ v3;
  v1 ^= 0xdd;
  for (let r = 0; r < 3; r++) {
    v0 = (v0 + v1) | 0; v1 = (v1 << 5) | (v1 >>> 27); v1 ^= v0; v0 = (v0 << 16) | (v0 >>> 16);
    v2 = (v2 + v3) | 0; v3 = (v3 << 8) | (v3 >>> 24); v3 ^= v2;
    v0 = (v0 + v3) | 0; v3 = (v3 << 7) | (v3 >>> 25); v3 ^= v0;
    v2 = (v2 + v1) | 0; v1 = (v1 << 13) | (v1 >>> 19); v1 ^= v2; v2 = (v2 << 16) | (v2 >>> 16);
  }
  hashHi = v1 ^ v3;
  return lo;
}
