import { types } from 'node:util';
import { byteLength } from './keys.js';

/**
 * Slot-list elements are fixed-size records. A codec turns one element into `size` bytes and back;
 * the map stores the bytes (little-endian where it has numbers) and never looks inside them.
 */
export interface ElementCodec<T> {
  readonly size: number;
  /** Writes `value` into `target[offset .. offset+size)`; throws TypeError/RangeError if it cannot. */
  encode(value: T, target: Uint8Array, offset: number): void;
  /** Reads one element from `source[offset .. offset+size)`; the result must not alias `source`. */
  decode(source: Uint8Array, offset: number): T;
}

/** The codecs this module made: frozen and checked already, so checkCodec takes them as they are. */
const builtIn = new WeakSet<object>();

/** Elements of exactly `n` bytes, returned as fresh Uint8Array copies. */
function bytes(n: number): ElementCodec<Uint8Array> {
  if (!Number.isInteger(n) || n < 1 || n > MAX_ELEMENT_SIZE) {
    throw new RangeError(`codecs.bytes(n): n must be an integer from 1 to ${MAX_ELEMENT_SIZE}, got ${n}`);
  }
  const codec = Object.freeze({
    size: n,
    encode(value: Uint8Array, target: Uint8Array, offset: number): void {
      // A Proxy passes instanceof and a subclass may override length, but set() copies the
      // array's own bytes: an element shorter than it claimed left the bytes of the element
      // encoded before it (another entry's) in its place.
      if (!types.isUint8Array(value)) throw new TypeError(`slot-list element must be a Uint8Array of ${n} bytes`);
      const length = byteLength(value); // the array's own length, whatever a subclass's getter says
      if (length !== n) throw new RangeError(`slot-list element must be ${n} bytes, got ${length}`);
      target.set(value, offset);
    },
    decode(source: Uint8Array, offset: number): Uint8Array {
      return source.slice(offset, offset + n);
    },
  });
  builtIn.add(codec);
  return codec;
}

const U64_MAX = (1n << 64n) - 1n;

/** Unsigned 64-bit integers as bigint, stored little-endian. */
const u64: ElementCodec<bigint> = Object.freeze({
  size: 8,
  encode(value: bigint, target: Uint8Array, offset: number): void {
    if (typeof value !== 'bigint') throw new TypeError(`slot-list element must be a bigint, got ${typeof value}`);
    if (value < 0n || value > U64_MAX) throw new RangeError(`slot-list element ${value} is outside the u64 range`);
    const lo = Number(value & 0xffffffffn);
    const hi = Number(value >> 32n);
    target[offset] = lo; target[offset + 1] = lo >>> 8; target[offset + 2] = lo >>> 16; target[offset + 3] = lo >>> 24;
    target[offset + 4] = hi; target[offset + 5] = hi >>> 8; target[offset + 6] = hi >>> 16; target[offset + 7] = hi >>> 24;
  },
  decode(source: Uint8Array, offset: number): bigint {
    const lo = (source[offset] | (source[offset + 1] << 8) | (source[offset + 2] << 16) | (source[offset + 3] << 24)) >>> 0;
    const hi = (source[offset + 4] | (source[offset + 5] << 8) | (source[offset + 6] << 16) | (source[offset + 7] << 24)) >>> 0;
    return (BigInt(hi) << 32n) | BigInt(lo);
  },
});

/** The largest element the format stores (a data-file cell must fit the scratch buffers). */
export const MAX_ELEMENT_SIZE = 4096;

builtIn.add(u64);

export const codecs = Object.freeze({ bytes, u64 });

/** Checks that a user-supplied codec has the shape the map relies on. */
export function checkCodec(codec: unknown): ElementCodec<unknown> {
  if (codec === null || typeof codec !== 'object') throw new TypeError('codec must be an object with size, encode and decode');
  // Each member read once: a getter answering differently later would break the file layout or
  // call what was never checked.
  const { size, encode, decode } = codec as Partial<ElementCodec<unknown>>;
  if (typeof encode !== 'function' || typeof decode !== 'function') {
    throw new TypeError('codec must have encode(value, target, offset) and decode(source, offset) functions');
  }
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 1 || size > MAX_ELEMENT_SIZE) {
    throw new RangeError(`codec.size must be an integer from 1 to ${MAX_ELEMENT_SIZE}, got ${String(size)}`);
  }
  if (builtIn.has(codec)) return codec as ElementCodec<unknown>;
  return Object.freeze({
    size,
    encode: (value: unknown, target: Uint8Array, offset: number): void => encode.call(codec, value, target, offset),
    decode: (source: Uint8Array, offset: number): unknown => decode.call(codec, source, offset),
  });
}
