import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { base58ToBytes, bucketIndexOf, bytesToBase58, toKeyBytes } from '../host/keys.js';
import { withSeed } from './helpers.js';

test('base58 decodes well-known Solana addresses to their 32 bytes', () => {
  assert.equal(base58ToBytes('11111111111111111111111111111111'), new Uint8Array(32));
  // The wrapped-SOL mint and the SPL token program: fixed addresses with known bytes.
  const wsol = base58ToBytes('So11111111111111111111111111111111111111112');
  assert.is(Buffer.from(wsol).toString('hex'), '069b8857feab8184fb687f634618c035dac439dc1aeb3b5598a0f00000000001');
  const token = base58ToBytes('TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA');
  assert.is(Buffer.from(token).toString('hex'), '06ddf6e1d765a193d9cbe146ceeb79ac1cb485ed5f5b37913a8cf5857eff00a9');
});

test('base58 round-trips random keys, including ones with leading zero bytes', () => {
  withSeed((rng) => {
    for (let i = 0; i < 300; i++) {
      const key = rng.key();
      const zeros = rng.below(4);
      key.fill(0, 0, zeros);
      const text = bytesToBase58(key);
      assert.ok(text.length <= 44);
      assert.equal(base58ToBytes(text), key);
    }
  });
});

test('base58 rejects bad characters and lengths with errors naming the argument', () => {
  assert.throws(() => base58ToBytes('0OIl' + '1'.repeat(30), 'key'), (e: Error) => e instanceof TypeError && /key is not base58/.test(e.message));
  assert.throws(() => base58ToBytes(''), RangeError);
  assert.throws(() => base58ToBytes('1'.repeat(45)), RangeError);
  assert.throws(() => base58ToBytes('2'), (e: Error) => e instanceof RangeError && /decodes to 1 bytes/.test(e.message));
  assert.throws(() => base58ToBytes('z'.repeat(44)), (e: Error) => e instanceof RangeError && /more than 32/.test(e.message));
});

test('toKeyBytes accepts bytes, base58 strings and objects with toBytes()', () => {
  const bytes = new Uint8Array(32).fill(7);
  assert.is(toKeyBytes(bytes), bytes, 'a 32-byte array is used as is');
  assert.equal(toKeyBytes(bytesToBase58(bytes)), bytes);
  assert.equal(toKeyBytes({ toBytes: () => bytes.slice() }), bytes);
  assert.equal(Array.from(toKeyBytes(Buffer.from(bytes))), Array.from(bytes), "a Buffer is a Uint8Array");
});

test('toKeyBytes rejects wrong types and lengths', () => {
  assert.throws(() => toKeyBytes(new Uint8Array(31)), (e: Error) => e instanceof RangeError && /key must be 32 bytes, got 31/.test(e.message));
  assert.throws(() => toKeyBytes(42 as never), TypeError);
  assert.throws(() => toKeyBytes(null as never), TypeError);
  assert.throws(() => toKeyBytes({ toBytes: () => 'x' } as never), TypeError);
  assert.throws(() => toKeyBytes({ toBytes: () => new Uint8Array(33) }), RangeError);
  assert.throws(() => toKeyBytes(new Uint8Array(33), 'items[3][0]'), (e: Error) => /items\[3\]\[0\]/.test(e.message));
});

test('bucketIndexOf takes the top bits of the first bytes, big-endian', () => {
  const key = new Uint8Array(32);
  key[0] = 0b1011_0000;
  key[1] = 0b1100_0000;
  assert.is(bucketIndexOf(key, 0), 0);
  assert.is(bucketIndexOf(key, 1), 1);
  assert.is(bucketIndexOf(key, 4), 0b1011);
  assert.is(bucketIndexOf(key, 10), 0b1011_0000_11);
  assert.is(bucketIndexOf(key, 16), 0b1011_0000_1100_0000);
});

test.run();
