/** Imports the specs use to inspect the fake files of as-pect.config.js, and helpers on top. */

// @ts-ignore: decorator
@external("test", "createFile") export declare function createFile(fid: u32, size: u32): void;
// @ts-ignore: decorator
@external("test", "deleteFile") export declare function deleteFile(fid: u32): void;
// @ts-ignore: decorator
@external("test", "fileU8") export declare function fileU8(fid: u32, offset: u32): u32;
// @ts-ignore: decorator
@external("test", "fileU16") export declare function fileU16(fid: u32, offset: u32): u32;
// @ts-ignore: decorator
@external("test", "fileU32") export declare function fileU32(fid: u32, offset: u32): u32;
// @ts-ignore: decorator
@external("test", "setFileU8") export declare function setFileU8(fid: u32, offset: u32, value: u32): void;
// @ts-ignore: decorator
@external("test", "fetches") export declare function fetches(): u32;
// @ts-ignore: decorator
@external("test", "pageWrites") export declare function pageWrites(): u32;
// @ts-ignore: decorator
@external("test", "logApplies") export declare function logApplies(): u32;
// @ts-ignore: decorator
@external("test", "hsip24Byte") export declare function hsip24Byte(i: u32, b: u32): u32;
// @ts-ignore: decorator
@external("test", "keyHashCount") export declare function keyHashCount(): u32;
// @ts-ignore: decorator
@external("test", "keyHashKeyByte") export declare function keyHashKeyByte(i: u32, b: u32): u32;
// @ts-ignore: decorator
@external("test", "keyHashSeedLo") export declare function keyHashSeedLo(i: u32): u32;
// @ts-ignore: decorator
@external("test", "keyHashSeedHi") export declare function keyHashSeedHi(i: u32): u32;
// @ts-ignore: decorator
@external("test", "keyHashByte") export declare function keyHashByte(i: u32, b: u32): u32;

/** Deterministic pseudo-random numbers for specs (xorshift32). */
let state: u32 = 0x2545f491;
export function seedRandom(seed: u32): void {
  state = seed | 1;
}
export function nextRandom(): u32 {
  let x = state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  state = x;
  return x;
}

/** Fills 32 bytes at `ptr` with a pseudo-random key. */
export function randomKey(ptr: usize): void {
  for (let i: usize = 0; i < 32; i += 4) store<u32>(ptr + i, nextRandom());
}
