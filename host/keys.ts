/**
 * Keys are 32-byte public keys. Callers hold them as raw bytes, as base58 address strings
 * (@solana/kit's `Address`) or as objects with `toBytes()` (web3.js `PublicKey`); all three are
 * accepted without depending on any Solana package.
 */
import { types } from 'node:util';

export const KEY_BYTES = 32;

export type Key = Uint8Array | string | { toBytes(): Uint8Array };

const ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
const DIGIT = (() => {
  const map = new Int8Array(128).fill(-1);
  for (let i = 0; i < ALPHABET.length; i++) map[ALPHABET.charCodeAt(i)] = i;
  return map;
})();

/** Decodes a base58 address into exactly 32 bytes, or throws naming `argName`. */
export function base58ToBytes(text: string, argName = 'key'): Uint8Array {
  // 32 bytes are at most 44 base58 digits; anything longer cannot be a key.
  if (text.length === 0 || text.length > 44) {
    throw new RangeError(`${argName} must be a base58 address of a 32-byte key (got a string of length ${text.length})`);
  }
  const out = new Uint8Array(KEY_BYTES);
  let leadingZeros = 0;
  while (leadingZeros < text.length && text.charCodeAt(leadingZeros) === 49 /* '1' */) leadingZeros++;
  // Big-endian base conversion into `out`, least significant byte last.
  let length = 0;
  for (let i = leadingZeros; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const digit = code < 128 ? DIGIT[code] : -1;
    if (digit < 0) throw new TypeError(`${argName} is not base58: invalid character ${JSON.stringify(text[i])} at ${i}`);
    let carry = digit;
    for (let j = 0; j < length; j++) {
      const k = KEY_BYTES - 1 - j;
      carry += out[k] * 58;
      out[k] = carry & 0xff;
      carry >>= 8;
    }
    while (carry > 0) {
      if (length >= KEY_BYTES) throw new RangeError(`${argName} decodes to more than 32 bytes`);
      out[KEY_BYTES - 1 - length] = carry & 0xff;
      length++;
      carry >>= 8;
    }
  }
  if (leadingZeros + length !== KEY_BYTES) {
    throw new RangeError(`${argName} decodes to ${leadingZeros + length} bytes, not 32`);
  }
  return out;
}

/** Encodes 32 key bytes as a base58 address (for display and for tests). */
export function bytesToBase58(bytes: Uint8Array): string {
  const digits: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    let carry = bytes[i];
    for (let j = 0; j < digits.length; j++) {
      carry += digits[j] << 8;
      digits[j] = carry % 58;
      carry = (carry / 58) | 0;
    }
    while (carry > 0) {
      digits.push(carry % 58);
      carry = (carry / 58) | 0;
    }
  }
  let out = '';
  for (let i = 0; i < bytes.length && bytes[i] === 0; i++) out += '1';
  for (let i = digits.length - 1; i >= 0; i--) out += ALPHABET[digits[i]];
  return out;
}

/**
 * Returns the key as 32 bytes. A Uint8Array of the right length is returned as is (no copy: the
 * map never keeps a reference to it past the call).
 */
export function toKeyBytes(key: Key, argName = 'key', guard?: UserCodeFlag): Uint8Array {
  // util.types, not instanceof: a Proxy passes instanceof, and its traps would run the caller's
  // code while the map copies the key in the middle of a call.
  if (types.isUint8Array(key)) {
    const bytes = byteLength(key);
    if (bytes !== KEY_BYTES) throw new RangeError(`${argName} must be 32 bytes, got ${bytes}`);
    return key;
  }
  if (typeof key === 'string') return base58ToBytes(key, argName);
  if (key !== null && typeof key === 'object') {
    // toBytes() and a Proxy's traps are the caller's code: while they run, a map call is REENTRANT
    // and close() refused, or the call would go on with a map they closed.
    const was = guard?.userCode ?? false;
    if (guard !== undefined) guard.userCode = true;
    let bytes: unknown;
    try {
      const toBytes = (key as { toBytes?: unknown }).toBytes;
      if (typeof toBytes !== 'function') throw new TypeError(`${argName} must be a 32-byte Uint8Array, a base58 string or an object with toBytes()`);
      bytes = toBytes.call(key);
    } finally {
      if (guard !== undefined) guard.userCode = was;
    }
    if (!types.isUint8Array(bytes)) throw new TypeError(`${argName}.toBytes() must return a Uint8Array`);
    const n = byteLength(bytes);
    if (n !== KEY_BYTES) throw new RangeError(`${argName}.toBytes() must return 32 bytes, got ${n}`);
    return bytes;
  }
  throw new TypeError(`${argName} must be a 32-byte Uint8Array, a base58 string or an object with toBytes()`);
}

/** The part of a map's guard that marks the caller's code running inside a map call. */
export interface UserCodeFlag {
  userCode: boolean;
}

/**
 * The top `bits` bits of the key's first 8 bytes read big-endian, as Agave's `bucket_ix`.
 * With at most 65,536 buckets only the first two bytes matter.
 */
export function bucketIndexOf(key: Uint8Array, bits: number): number {
  return bucketIndexAt(key, 0, bits);
}

/** bucketIndexOf() of the key at `keys[koff, koff + 32)`. */
export function bucketIndexAt(keys: Uint8Array, koff: number, bits: number): number {
  if (bits === 0) return 0;
  return ((keys[koff] << 8) | keys[koff + 1]) >>> (16 - bits);
}

const typedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object;
const intrinsic = (name: string): ((this: unknown) => unknown) => Object.getOwnPropertyDescriptor(typedArrayPrototype, name)!.get as (this: unknown) => unknown;
const bufferOf = intrinsic('buffer');
const byteOffsetOf = intrinsic('byteOffset');
const byteLengthOf = intrinsic('byteLength');

/**
 * The bytes a typed array (any kind, checked by the caller) spans now, through the built-in getter.
 * Not `.length`: a subclass's getter could lie about it, or run the caller's code in the middle of
 * a call, and on Node 20 optimised code can report the old `.length` of an array whose buffer was
 * transferred since (seen once a length-tracking view of a resizable buffer had been used), where
 * every read of it gives undefined: a key that read as 32 zero bytes.
 */
export function byteLength(view: ArrayBufferView): number {
  return byteLengthOf.call(view) as number;
}

/**
 * Throws unless `key` (a 32-byte key toKeyBytes returned) still spans 32 bytes. A per-key write
 * uses the caller's key without a copy (no allocation per call), and the slot list's getters and
 * the codec run after it was checked: one that transferred or shrank its buffer would leave a key
 * that reads as zeros, written as the all-zero key.
 */
export function keptWhole(key: Uint8Array, argName = 'key'): void {
  if (byteLength(key) !== KEY_BYTES) {
    throw new TypeError(`${argName}: its buffer was transferred or shrunk while the slot list was read`);
  }
}

/** Whether two typed arrays (checked by the caller) share bytes of one buffer, through the built-in getters. */
export function overlaps(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (bufferOf.call(a) !== bufferOf.call(b)) return false;
  const aStart = byteOffsetOf.call(a) as number;
  const bStart = byteOffsetOf.call(b) as number;
  return aStart < bStart + byteLength(b) && bStart < aStart + byteLength(a);
}

/**
 * A plain Uint8Array over the same bytes as `bytes` (a Uint8Array, Buffer or subclass, checked by
 * the caller), read through the built-in getters: no getter or species constructor of a subclass
 * runs when the map later reads it in the middle of a call. Its length is fixed now; if the
 * buffer shrinks or is transferred, it reads as empty.
 */
export function plainBytes(bytes: Uint8Array, argName = 'keys'): Uint8Array {
  const buffer = bufferOf.call(bytes) as ArrayBuffer;
  try {
    return new Uint8Array(buffer, byteOffsetOf.call(bytes) as number, byteLengthOf.call(bytes) as number);
  } catch {
    // The one way a view of a typed array's own buffer fails: the buffer was detached. V8's
    // message ("Cannot perform Construct on a detached ArrayBuffer") names neither the argument
    // nor what the caller did.
    throw new TypeError(`${argName}: its ArrayBuffer was transferred (detached), so it holds no keys`);
  }
}
