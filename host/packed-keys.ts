/**
 * Per-key calls on keys packed back to back in one buffer (key i at bytes [32i, 32i + 32)),
 * addressed by index, as the batched calls take them. What the view saves is cutting each key out
 * of the buffer first: a Buffer#subarray costs 85–100 ns, about a tenth of a get in a map of 10M
 * entries. Reads (readInto, has) hash the key where it lies; the calls that change the map copy it
 * to a scratch key first, which costs less than a subarray.
 *
 * The view reads the buffer at each call, so changing its bytes changes its keys. It keeps nothing
 * else: any number of views may share a buffer or a map, and a view of a closed map throws CLOSED.
 */
import type { Entry } from './bucket.js';
import { types } from 'node:util';
import { byteLength, KEY_BYTES, plainBytes } from './keys.js';

/** What a view needs from its map: the two offset-aware reads, and the map for the rest. */
export interface PackedHost<T> {
  readInto(keys: Uint8Array, koff: number, target: Uint8Array, offset: number): number;
  has(keys: Uint8Array, koff: number): boolean;
  /** Refuses a call on a closed map, or from code a map call runs (REENTRANT). */
  enter(): void;
  /** Refuses a write on a read-only or closed map, before the index is looked at. */
  enterWrite(): void;
  readonly map: {
    readValue(key: Uint8Array): Entry<T> | undefined;
    insert(key: Uint8Array, slotList: readonly T[], refCount?: number): void;
    addref(key: Uint8Array): number | undefined;
    unref(key: Uint8Array): number | undefined;
    deleteKey(key: Uint8Array): boolean;
  };
}

export class PackedKeys<T> {
  /** The packed keys (not a copy). */
  readonly keys: Uint8Array;
  /** How many keys the buffer holds. */
  readonly length: number;
  private readonly host: PackedHost<T>;
  private readonly scratch = new Uint8Array(KEY_BYTES);

  constructor(host: PackedHost<T>, keys: Uint8Array) {
    if (!types.isUint8Array(keys)) throw new TypeError('keys must be a Uint8Array of packed 32-byte keys');
    const packed = plainBytes(keys); // no getter of a subclass runs when a call reads it
    if (packed.length % KEY_BYTES !== 0) throw new RangeError(`keys must be a multiple of 32 bytes long, got ${packed.length}`);
    this.host = host;
    this.keys = packed;
    this.length = packed.length / KEY_BYTES;
  }

  /** Byte offset of key `i`, or a TypeError/RangeError naming the bad index. */
  private at(i: number): number {
    // The buffer's own length too: one whose ArrayBuffer was transferred since reads as empty, and
    // a view that trusted its length would read (and insert) the all-zero key. byteLength(), not
    // .length, which optimised code can report unchanged after a transfer (see byteLength()).
    if (i >>> 0 === i && i < this.length && (i + 1) * KEY_BYTES <= byteLength(this.keys)) return i * KEY_BYTES;
    if (typeof i !== 'number') throw new TypeError(`key index must be a number, got ${typeof i}`);
    if (i >>> 0 === i && i < this.length) {
      throw new TypeError(`the keys buffer holds ${byteLength(this.keys)} bytes now, not ${this.length * KEY_BYTES}: it was detached (transferred) or shrunk after the view was made`);
    }
    throw new RangeError(`key index must be an integer from 0 to ${this.length - 1}, got ${i}`);
  }

  /** Key `i` copied into the scratch key (valid until the next call of this view). */
  private copy(i: number): Uint8Array {
    const from = this.at(i);
    const keys = this.keys;
    const k = this.scratch;
    for (let j = 0; j < KEY_BYTES; j++) k[j] = keys[from + j];
    return k;
  }

  /** A fresh copy of key `i`. */
  key(i: number): Uint8Array {
    const from = this.at(i);
    return this.keys.slice(from, from + KEY_BYTES);
  }

  /** BucketMap.readInto() of key `i`: its element count or -1, the refCount in `map.lastRefCount`. */
  readInto(i: number, target: Uint8Array, offset = 0): number {
    return this.host.readInto(this.keys, this.at(i), target, offset);
  }

  has(i: number): boolean {
    return this.host.has(this.keys, this.at(i));
  }

  get(i: number): Entry<T> | undefined {
    // Refused before the scratch key is overwritten: a call of this view in progress (insert,
    // addref) routes by that key after running a codec, which may call get() and swallow the
    // REENTRANT error; the call then wrote under the key get() asked for.
    this.host.enter();
    return this.host.map.readValue(this.copy(i));
  }

  insert(i: number, slotList: readonly T[], refCount = 1): void {
    this.host.enterWrite();
    this.host.map.insert(this.copy(i), slotList, refCount);
  }

  addref(i: number): number | undefined {
    this.host.enterWrite();
    return this.host.map.addref(this.copy(i));
  }

  unref(i: number): number | undefined {
    this.host.enterWrite();
    return this.host.map.unref(this.copy(i));
  }

  delete(i: number): boolean {
    this.host.enterWrite();
    return this.host.map.deleteKey(this.copy(i));
  }
}
