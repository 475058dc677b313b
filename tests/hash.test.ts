import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { halfSipHash, hashKey, hashHi } from '../host/hash.js';
import { withSeed } from './helpers.js';

const vectorsPath = (name: string): URL => new URL(`../../tests/vectors/${name}`, import.meta.url);
const official = JSON.parse(readFileSync(vectorsPath('halfsiphash-2-4-64.json'), 'utf8')) as { vectors: string[] };
const keyHash = JSON.parse(readFileSync(vectorsPath('key-hash.json'), 'utf8')) as {
  vectors: Array<{ key: string; seedLo: number; seedHi: number; hash: string }>;
};

function le64(lo: number, hi: number): string {
  const out = Buffer.alloc(8);
  out.writeUInt32LE(lo >>> 0, 0);
  out.writeUInt32LE(hi >>> 0, 4);
  return out.toString('hex');
}

test('general HalfSipHash-2-4 reproduces the 64 official 64-bit vectors', () => {
  assert.is(official.vectors.length, 64);
  for (let len = 0; len < 64; len++) {
    const msg = Uint8Array.from({ length: len }, (_, i) => i);
    const [lo, hi] = halfSipHash(msg, 0x03020100, 0x07060504, 2, 4);
    assert.is(le64(lo, hi), official.vectors[len], `message length ${len}`);
  }
});

test('hashKey matches every entry of key-hash.json (the core checks the same file)', () => {
  assert.ok(keyHash.vectors.length >= 64);
  for (const [i, v] of keyHash.vectors.entries()) {
    const lo = hashKey(Buffer.from(v.key, 'hex'), 0, v.seedLo | 0, v.seedHi | 0);
    assert.is(le64(lo, hashHi), v.hash, `vector ${i}`);
  }
});

test('hashKey equals the general 1-3 form at any offset, for random keys and seeds', () => {
  withSeed((rng) => {
    for (let i = 0; i < 500; i++) {
      const buf = rng.bytes(40);
      const off = rng.below(9);
      const k0 = rng.u32() | 0;
      const k1 = rng.u32() | 0;
      const lo = hashKey(buf, off, k0, k1);
      const [glo, ghi] = halfSipHash(buf.subarray(off, off + 32), k0, k1, 1, 3);
      assert.is(lo >>> 0, glo);
      assert.is(hashHi >>> 0, ghi);
    }
  });
});

test('the seed changes the hash of the same key', () => {
  const key = new Uint8Array(32).fill(9);
  assert.is.not(hashKey(key, 0, 1, 2), hashKey(key, 0, 1, 3));
});

test.run();
