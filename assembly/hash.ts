/**
 * HalfSipHash with a 64-bit output (Aumasson & Bernstein), as host/hash.ts: `halfSipHash` is the
 * general c-d form (checked against the official 2-4 vectors), `hashKey` the product's 1-3 form for
 * a 32-byte key. Loads are little-endian, which is how host/hash.ts assembles its words.
 */

/** High half of the last hashKey/halfSipHash result (the low half is the return value). */
export let hashHi: u32 = 0;

export function hashKey(ptr: usize, k0: u32, k1: u32): u32 {
  let v0 = k0;
  let v1 = k1 ^ 0xee;
  let v2 = k0 ^ 0x6c796765;
  let v3 = k1 ^ 0x74656462;
  // Eight message words, then the length block (32 << 24): one compression round each.
  for (let w: u32 = 0; w < 9; w++) {
    const m: u32 = w < 8 ? load<u32>(ptr + (<usize>w << 2)) : <u32>32 << 24;
    v3 ^= m;
    v0 += v1; v1 = rotl<u32>(v1, 5); v1 ^= v0; v0 = rotl<u32>(v0, 16);
    v2 += v3; v3 = rotl<u32>(v3, 8); v3 ^= v2;
    v0 += v3; v3 = rotl<u32>(v3, 7); v3 ^= v0;
    v2 += v1; v1 = rotl<u32>(v1, 13); v1 ^= v2; v2 = rotl<u32>(v2, 16);
    v0 ^= m;
  }
  // Finalisation: three rounds give the low word, three more (after v1 ^= 0xdd) the high word.
  v2 ^= 0xee;
  let lo: u32 = 0;
  for (let r = 0; r < 6; r++) {
    if (r == 3) {
      lo = v1 ^ v3;
      v1 ^= 0xdd;
    }
    v0 += v1; v1 = rotl<u32>(v1, 5); v1 ^= v0; v0 = rotl<u32>(v0, 16);
    v2 += v3; v3 = rotl<u32>(v3, 8); v3 ^= v2;
    v0 += v3; v3 = rotl<u32>(v3, 7); v3 ^= v0;
    v2 += v1; v1 = rotl<u32>(v1, 13); v1 ^= v2; v2 = rotl<u32>(v2, 16);
  }
  hashHi = v1 ^ v3;
  return lo;
}

/** General HalfSipHash-c-d over `len` bytes at `ptr` (used by the specs against official vectors). */
export function halfSipHash(ptr: usize, len: u32, k0: u32, k1: u32, c: u32, d: u32): u32 {
  let v0 = k0;
  let v1 = k1 ^ 0xee;
  let v2 = k0 ^ 0x6c796765;
  let v3 = k1 ^ 0x74656462;
  const end = len & ~3;
  for (let i: u32 = 0; i <= end; i += 4) {
    let m: u32;
    if (i < end) {
      m = load<u32>(ptr + i);
    } else {
      // The last block: length in the top byte, then the 0–3 tail bytes.
      m = len << 24;
      const left = len & 3;
      if (left >= 3) m |= <u32>load<u8>(ptr + end + 2) << 16;
      if (left >= 2) m |= <u32>load<u8>(ptr + end + 1) << 8;
      if (left >= 1) m |= <u32>load<u8>(ptr + end);
    }
    v3 ^= m;
    for (let r: u32 = 0; r < c; r++) {
      v0 += v1; v1 = rotl<u32>(v1, 5); v1 ^= v0; v0 = rotl<u32>(v0, 16);
      v2 += v3; v3 = rotl<u32>(v3, 8); v3 ^= v2;
      v0 += v3; v3 = rotl<u32>(v3, 7); v3 ^= v0;
      v2 += v1; v1 = rotl<u32>(v1, 13); v1 ^= v2; v2 = rotl<u32>(v2, 16);
    }
    v0 ^= m;
  }
  v2 ^= 0xee;
  let lo: u32 = 0;
  for (let r: u32 = 0; r < 2 * d; r++) {
    if (r == d) {
      lo = v1 ^ v3;
      v1 ^= 0xdd;
    }
    v0 += v1; v1 = rotl<u32>(v1, 5); v1 ^= v0; v0 = rotl<u32>(v0, 16);
    v2 += v3; v3 = rotl<u32>(v3, 8); v3 ^= v2;
    v0 += v3; v3 = rotl<u32>(v3, 7); v3 ^= v0;
    v2 += v1; v1 = rotl<u32>(v1, 13); v1 ^= v2; v2 = rotl<u32>(v2, 16);
  }
  hashHi = v1 ^ v3;
  return lo;
}
