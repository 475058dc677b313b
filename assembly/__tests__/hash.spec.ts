import { halfSipHash, hashHi, hashKey } from '../hash';
import { hsip24Byte, keyHashByte, keyHashCount, keyHashKeyByte, keyHashSeedHi, keyHashSeedLo } from './fixtures';

function outputByte(lo: u32, hi: u32, b: u32): u32 {
  return b < 4 ? (lo >> (8 * b)) & 0xff : (hi >> (8 * (b - 4))) & 0xff;
}

describe('hash', () => {
  test('general HalfSipHash-2-4 reproduces the 64 official 64-bit vectors', () => {
    const msg = heap.alloc(64);
    for (let i: u32 = 0; i < 64; i++) store<u8>(msg + i, <u8>i);
    for (let len: u32 = 0; len < 64; len++) {
      const lo = halfSipHash(msg, len, 0x03020100, 0x07060504, 2, 4);
      const hi = hashHi;
      for (let b: u32 = 0; b < 8; b++) expect(outputByte(lo, hi, b)).toBe(hsip24Byte(len, b), `length ${len} byte ${b}`);
    }
    heap.free(msg);
  });

  test('hashKey matches every entry of tests/vectors/key-hash.json (the host path checks the same file)', () => {
    const key = heap.alloc(32);
    const n = keyHashCount();
    expect(n).toBeGreaterThanOrEqual(64);
    for (let i: u32 = 0; i < n; i++) {
      for (let b: u32 = 0; b < 32; b++) store<u8>(key + b, <u8>keyHashKeyByte(i, b));
      const lo = hashKey(key, keyHashSeedLo(i), keyHashSeedHi(i));
      const hi = hashHi;
      for (let b: u32 = 0; b < 8; b++) expect(outputByte(lo, hi, b)).toBe(keyHashByte(i, b), `vector ${i} byte ${b}`);
    }
    heap.free(key);
  });

  test('hashKey equals the general form with 1-3 rounds on a 32-byte message', () => {
    const key = heap.alloc(32);
    for (let i: u32 = 0; i < 32; i++) store<u8>(key + i, <u8>(i * 37 + 11));
    const fast = hashKey(key, 0xdeadbeef, 0x01234567);
    const fastHi = hashHi;
    const general = halfSipHash(key, 32, 0xdeadbeef, 0x01234567, 1, 3);
    expect(fast).toBe(general);
    expect(fastHi).toBe(hashHi);
    heap.free(key);
  });

  test('a different seed gives a different hash of the same key', () => {
    const key = heap.alloc(32);
    memory.fill(key, 7, 32);
    const a = hashKey(key, 1, 2);
    const b = hashKey(key, 1, 3);
    expect(a).not.toBe(b);
    heap.free(key);
  });
});
