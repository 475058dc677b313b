/**
 * Copying a slot list out of the map. A byte loop costs ~30 ns per 16-byte element on this
 * project's machine; reading whole words costs 5–8 ns word to word and 11–19 ns when the words are
 * stored back as bytes (a scratch micro-benchmark). Every source here has a word view starting where
 * its byte view does, and slot lists sit at word-aligned offsets whenever the element size allows.
 * Word order is little-endian, which BucketMap checks at open.
 */

/** Copies `n` bytes from `src` (word view `srcWords`) at `from` to `dst` at `to`, which may have any alignment. */
export function copyToBytes(src: Uint8Array, srcWords: Int32Array, from: number, dst: Uint8Array, to: number, n: number): void {
  if (((from | n) & 3) !== 0) {
    for (let k = 0; k < n; k++) dst[to + k] = src[from + k];
    return;
  }
  const f = from >>> 2;
  for (let k = 0; k < n >>> 2; k++) {
    const w = srcWords[f + k];
    const o = to + 4 * k;
    dst[o] = w;
    dst[o + 1] = w >>> 8;
    dst[o + 2] = w >>> 16;
    dst[o + 3] = w >>> 24;
  }
}

/** The same between two buffers that both have word views: whole words when both ends and `n` allow. */
export function copyToWords(src: Uint8Array, srcWords: Int32Array, from: number, dst: Uint8Array, dstWords: Int32Array, to: number, n: number): void {
  if (((from | to | n) & 3) !== 0) {
    for (let k = 0; k < n; k++) dst[to + k] = src[from + k];
    return;
  }
  const f = from >>> 2;
  const t = to >>> 2;
  for (let k = 0; k < n >>> 2; k++) dstWords[t + k] = srcWords[f + k];
}
