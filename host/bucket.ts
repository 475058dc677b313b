/**
 * Bucket: one shard's public API (Agave's BucketApi). Public methods validate and normalise their
 * arguments, encode the slot list with the map's codec, then call the engine; capacity problems
 * come back as NoSpace and are fixed by growing the files.
 */
import { NO_WRITE, markAfterError, type BucketStorage, type MapContext } from './bucket-storage.js';
import type { ElementCodec } from './codecs.js';
import { BucketMapError, codes } from './errors.js';
import { keptWhole, toKeyBytes, type Key } from './keys.js';
import { MAX_REFCOUNT, SIZE_CLASSES, maxSlotsFor } from './layout.js';
import { DATA_FULL, INDEX_FULL, PUT_NEW, PUT_UPDATED, type ValueRef } from './table.js';

/** A value: the slot list and its reference count. */
export type Entry<T> = [slotList: T[], refCount: number];

/** What a failed tryWrite/tryInsert needs grown. Hand it to `grow` (or `BucketMap.grow`). */
export class NoSpace {
  /** 'index' when the key's probe window is full, 'data' when the size class has no free cell. */
  readonly kind: 'index' | 'data';
  readonly bucket: number;
  /** Cells the file had when the attempt failed (0 for a data class that has no file yet). */
  readonly capacity: number;
  /** For 'data': the size class (lists of up to 2^sizeClass elements). */
  readonly sizeClass: number;

  constructor(kind: 'index' | 'data', bucket: number, capacity: number, sizeClass: number) {
    if (kind !== 'index' && kind !== 'data') throw new TypeError(`NoSpace kind must be 'index' or 'data', got ${String(kind)}`);
    this.kind = kind;
    this.bucket = bucket;
    this.capacity = capacity;
    this.sizeClass = sizeClass;
    Object.freeze(this);
  }
}

export interface BucketItem<T> {
  key: Uint8Array;
  slotList: T[];
  refCount: number;
}

/** Runs user callbacks and guards every call; implemented by BucketMap. */
export interface MapGuard {
  /** Throws CLOSED after close(), REENTRANT while the caller's code runs inside a map call (userCode). */
  enter(): void;
  /** enter() for a call that writes: READ_ONLY too on a map opened read-only. */
  enterWrite(): void;
  runCallback<R>(fn: () => R): R;
  /**
   * True while the caller's code runs inside a map call (an update() callback, a codec, a getter
   * of an argument being read): a map call from it would find the engine's buffers, or a mapped
   * value, in use by the outer call, so enter() refuses it with REENTRANT.
   */
  userCode: boolean;
  /** Live entries of the whole map, kept by every write. */
  entries: number;
}

/** Entries of one bucket captured for iteration: keys, the cell each was in, and the bucket's version. */
interface Snapshot {
  keys: Uint8Array;
  cells: Uint32Array; // cells past 2^31 (a bucket may have up to 2^32)
  length: number;
  version: number;
}

export function checkRefCount(refCount: unknown, argName = 'refCount'): number {
  if (typeof refCount !== 'number') throw new TypeError(`${argName} must be a number, got ${typeof refCount}`);
  if (!Number.isSafeInteger(refCount) || refCount < 0) {
    throw new RangeError(`${argName} must be an integer from 0 to 2^53-1, got ${refCount}`);
  }
  return refCount;
}

/** Encodes a slot list into `input` (the engine's input buffer); returns its length. */
export function encodeSlotList<T>(guard: MapGuard, codec: ElementCodec<T>, maxSlots: number, input: Uint8Array, slotList: readonly T[]): number {
  if (!Array.isArray(slotList)) throw new TypeError('slotList must be an array');
  // Reading the list may run the caller's code (a getter, a Proxy), as the codec may.
  const was = guard.userCode;
  guard.userCode = true;
  try {
    const n = slotList.length;
    if (n > maxSlots) throw new RangeError(`slotList has ${n} elements; at most ${maxSlots} fit (element size ${codec.size})`);
    const size = codec.size;
    for (let i = 0; i < n; i++) codec.encode(slotList[i], input, i * size);
    return n;
  } finally {
    guard.userCode = was;
  }
}

/**
 * The engine's put into bucket `ix`, already marked dirty, with what every write must also do: a
 * new entry counts in the map's size, and any change bumps the bucket's iterator version. Returns
 * the engine's status (nothing is written on INDEX_FULL or DATA_FULL). Bucket and the map's fast
 * path (which skips this bucket's objects) both write through it.
 */
export function putMarked(ctx: MapContext, guard: MapGuard, ix: number, k: Uint8Array, slots: number, refCount: number): number {
  ctx.writing = ix;
  let status: number;
  try {
    status = ctx.engine.put(ix, k, slots, refCount);
  } catch (err) {
    markAfterError(ctx, err);
    throw err;
  }
  ctx.writing = NO_WRITE;
  if (status === PUT_NEW) guard.entries++;
  if (status === PUT_NEW || status === PUT_UPDATED) ctx.versions[ix]++;
  return status;
}

/** The engine's remove from bucket `ix`, already marked dirty, with the same bookkeeping as putMarked. */
export function removeMarked(ctx: MapContext, guard: MapGuard, ix: number, k: Uint8Array): boolean {
  ctx.writing = ix;
  let removed: boolean;
  try {
    removed = ctx.engine.remove(ix, k);
  } catch (err) {
    markAfterError(ctx, err);
    throw err;
  }
  ctx.writing = NO_WRITE;
  if (removed) {
    guard.entries--;
    ctx.versions[ix]++;
  }
  return removed;
}

export class Bucket<T> {
  readonly index: number;
  private readonly ctx: MapContext;
  private readonly storage: BucketStorage;
  private readonly codec: ElementCodec<T>;
  private readonly guard: MapGuard;
  private readonly maxSlots: number;

  constructor(ctx: MapContext, storage: BucketStorage, codec: ElementCodec<T>, guard: MapGuard) {
    this.ctx = ctx;
    this.storage = storage;
    this.index = storage.ix;
    this.codec = codec;
    this.guard = guard;
    this.maxSlots = maxSlotsFor(codec.size);
  }

  /** Number of entries in this bucket. */
  bucketLen(): number {
    this.guard.enter();
    return this.storage.allocated ? this.ctx.engine.count(this.index) : 0;
  }

  readValue(key: Key): Entry<T> | undefined {
    this.guard.enter();
    return this.readKey(toKeyBytes(key, 'key', this.guard));
  }

  /** Upsert; grows the bucket's files as needed. */
  insert(key: Key, slotList: readonly T[], refCount = 1): void {
    this.guard.enterWrite();
    const k = toKeyBytes(key, 'key', this.guard);
    const rc = checkRefCount(refCount);
    const slots = this.encode(slotList);
    keptWhole(k);
    this.writeEncoded(k, slots, rc);
  }

  /** One attempt, never a partial write: returns what must grow, or undefined when written. */
  tryWrite(key: Key, slotList: readonly T[], refCount = 1): NoSpace | undefined {
    this.guard.enterWrite();
    // A copy: the caller's code run while encoding cannot change the key after the map routed it.
    const k = toKeyBytes(key, 'key', this.guard).slice();
    const rc = checkRefCount(refCount);
    const slots = this.encode(slotList);
    if (!this.storage.allocated) this.storage.allocate();
    return this.attempt(k, slots, rc);
  }

  /** Grows what `noSpace` names; a request that is stale (already served) does nothing. */
  grow(noSpace: NoSpace): void {
    this.guard.enterWrite();
    if (!(noSpace instanceof NoSpace)) throw new TypeError('grow(noSpace) takes the NoSpace a tryWrite/tryInsert returned');
    if (noSpace.bucket !== this.index) throw new RangeError(`noSpace is for bucket ${noSpace.bucket}, not ${this.index}`);
    // `allocated` maps a bucket the open left to its first use (a NoSpace kept from before a
    // reopen): growing files the engine has not loaded rehashed nothing into the new index on the
    // wasm engine (every entry lost) and failed on the host path. No files: nothing to grow.
    if (!this.storage.allocated) return;
    this.growFor(noSpace);
  }

  /** Reads the entry, passes it to `fn`, and writes what `fn` returns (undefined deletes). */
  update(key: Key, fn: (current: Entry<T> | undefined) => Entry<T> | undefined): void {
    this.guard.enterWrite();
    // A copy: `fn` may reuse the caller's key buffer, but the entry goes under the key it was given.
    const k = toKeyBytes(key, 'key', this.guard).slice();
    if (typeof fn !== 'function') throw new TypeError('update(key, fn): fn must be a function');
    const current = this.readKey(k);
    const next = this.guard.runCallback(() => fn(current));
    if (next === undefined) {
      if (current !== undefined) this.removeKey(k);
      return;
    }
    if (!Array.isArray(next) || next.length !== 2) {
      throw new TypeError('update callback must return [slotList, refCount] or undefined');
    }
    const rc = checkRefCount(next[1], 'refCount returned by the update callback');
    const slots = this.encode(next[0]);
    this.writeEncoded(k, slots, rc);
  }

  deleteKey(key: Key): boolean {
    this.guard.enterWrite();
    return this.removeKey(toKeyBytes(key, 'key', this.guard));
  }

  /** Sizes the index for `count` entries now, so a following bulk load does not grow step by step. */
  setAnticipatedCount(count: number): void {
    this.guard.enterWrite();
    if (typeof count !== 'number') throw new TypeError(`count must be a number, got ${typeof count}`);
    if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`count must be a non-negative integer, got ${count}`);
    if (this.storage.anticipate(count)) this.ctx.versions[this.index]++;
  }

  /**
   * Startup bulk load of one-element entries with refCount 1. Entries whose key already exists
   * (in the bucket, or earlier in `items`) are not written; for each, the result holds the input
   * index and the first element of the entry that is kept (undefined if its list is empty).
   */
  batchInsertNonDuplicates(items: ReadonlyArray<readonly [Key, T]>): Array<[number, T | undefined]> {
    this.guard.enterWrite();
    if (!Array.isArray(items)) throw new TypeError('items must be an array of [key, element] pairs');
    // Every item is checked and encoded before anything is written: a bad one fails the whole
    // batch, and the codec is not asked again half-way through.
    const size = this.codec.size;
    const staged = new Uint8Array(items.length * size);
    // Reading the items may run the caller's code: see insertMany.
    const keys = this.guard.runCallback(() => Array.from(items, (item, i) => { // not map: it skips a sparse array's holes
      if (!Array.isArray(item) || item.length !== 2) throw new TypeError(`items[${i}] must be a [key, element] pair`);
      const key = toKeyBytes(item[0], `items[${i}][0]`).slice();
      try {
        this.codec.encode(item[1], staged, i * size);
      } catch (err) {
        if (err instanceof Error) err.message = `items[${i}][1]: ${err.message}`;
        throw err;
      }
      return key;
    }));
    this.setAnticipatedCount(this.bucketLen() + keys.length);
    const duplicates: Array<[number, T | undefined]> = []; // undefined: the entry kept has an empty list
    const input = this.ctx.engine.input;
    for (let i = 0; i < keys.length; i++) {
      const existing = this.readKey(keys[i]);
      if (existing !== undefined) {
        duplicates.push([i, existing[0][0]]);
        continue;
      }
      input.set(staged.subarray(i * size, (i + 1) * size), 0);
      this.writeEncoded(keys[i], 1, 1);
    }
    return duplicates;
  }

  keys(): Uint8Array[] {
    this.guard.enter();
    const out: Uint8Array[] = [];
    for (const key of this.iterateKeys()) out.push(key);
    return out;
  }

  items(): Array<BucketItem<T>> {
    this.guard.enter();
    const out: Array<BucketItem<T>> = [];
    for (const [key, [slotList, refCount]] of this.iterateEntries()) out.push({ key, slotList, refCount });
    return out;
  }

  // ── internals shared with BucketMap ───────────────────────────────────────────────────────────
  // @internal (tsconfig stripInternal) keeps these out of the published declarations: they skip the
  // guards of the documented calls (closed, read-only, reentrant, argument checks), which their
  // callers have already passed.

  /** @internal */
  readKey(k: Uint8Array): Entry<T> | undefined {
    if (!this.storage.allocated) return undefined;
    const ref = this.ctx.engine.read(this.index, k, 0);
    return ref == null ? undefined : this.decode(ref);
  }

  /** @internal Whether the key is in the bucket, without decoding its value (no codec runs). */
  holdsKey(k: Uint8Array): boolean {
    return this.storage.allocated && this.ctx.engine.read(this.index, k, 0) != null;
  }

  /** @internal */
  removeKey(k: Uint8Array): boolean {
    if (!this.storage.allocated) return false;
    this.storage.markDirty();
    return removeMarked(this.ctx, this.guard, this.index, k);
  }

  /**
   * @internal
   * adjustRef() of an entry the engine cannot change in place (not INLINE, or its refCount would
   * leave 1..256): writes the entry again with the new refCount. Returns it, or undefined if the
   * key is absent.
   */
  rewriteRef(k: Uint8Array, delta: 1 | -1): number | undefined {
    const current = this.readKey(k);
    if (current === undefined) return undefined;
    const [slotList, refCount] = current;
    if (delta > 0 && refCount >= MAX_REFCOUNT) {
      throw new BucketMapError(codes.REFCOUNT_OVERFLOW, `refCount is already ${refCount}, the largest storable`);
    }
    if (delta < 0 && refCount === 0) throw new BucketMapError(codes.REFCOUNT_UNDERFLOW, 'refCount is already 0');
    this.writeEncoded(k, this.encode(slotList), refCount + delta);
    return refCount + delta;
  }

  /** @internal Encodes a slot list into the engine's input buffer; returns its length. */
  encode(slotList: readonly T[]): number {
    return encodeSlotList(this.guard, this.codec, this.maxSlots, this.ctx.engine.input, slotList);
  }

  /** @internal */
  decode(ref: ValueRef): Entry<T> {
    const size = this.codec.size;
    const list = new Array<T>(ref.slots);
    // A user's codec runs here, while `ref` points into a mapped file: as in encodeSlotList.
    const was = this.guard.userCode;
    this.guard.userCode = true;
    try {
      for (let i = 0; i < ref.slots; i++) list[i] = this.codec.decode(ref.buf, ref.off + i * size);
    } finally {
      this.guard.userCode = was;
    }
    return [list, ref.refCount];
  }

  /** @internal Writes an encoded value, growing until it fits. */
  writeEncoded(k: Uint8Array, slots: number, refCount: number): void {
    if (!this.storage.allocated) this.storage.allocate();
    for (;;) {
      const noSpace = this.attempt(k, slots, refCount);
      if (noSpace === undefined) return;
      this.growFor(noSpace);
    }
  }

  private attempt(k: Uint8Array, slots: number, refCount: number): NoSpace | undefined {
    this.storage.markDirty();
    const status = putMarked(this.ctx, this.guard, this.index, k, slots, refCount);
    if (status === INDEX_FULL) return new NoSpace('index', this.index, this.storage.capacity, 0);
    if (status === DATA_FULL) {
      const sizeClass = this.ctx.engine.fullClass;
      const file = this.storage.data[sizeClass];
      return new NoSpace('data', this.index, file === null ? 0 : file.spec.capacity, sizeClass);
    }
    return undefined;
  }

  private growFor(noSpace: NoSpace): void {
    if (noSpace.kind === 'index') {
      this.storage.growIndex(noSpace.capacity);
    } else {
      if (!Number.isInteger(noSpace.sizeClass) || noSpace.sizeClass < 0 || noSpace.sizeClass >= SIZE_CLASSES) {
        throw new RangeError(`noSpace.sizeClass ${noSpace.sizeClass} is out of range`);
      }
      const observedPow2 = noSpace.capacity === 0 ? -1 : Math.log2(noSpace.capacity);
      this.storage.growData(noSpace.sizeClass, observedPow2);
    }
    this.ctx.versions[this.index]++;
  }

  // ── iteration ──────────────────────────────────────────────────────────────────────────────────

  /**
   * Captures the bucket's keys (and their cells) so that iteration yields every entry present
   * throughout exactly once, even though inserts and deletes shift entries between cells.
   */
  private snapshot(): Snapshot | null {
    if (!this.storage.allocated) return null;
    const table = this.storage.tableOver();
    const count = this.ctx.engine.count(this.index);
    const keys = new Uint8Array(count * 32);
    const cells = new Uint32Array(count);
    let n = 0;
    for (let c = 0; c < table.capacity && n < count; c++) {
      if (!table.isLive(c)) continue;
      table.copyKey(c, keys, n * 32);
      cells[n++] = c;
    }
    return { keys, cells, length: n, version: this.ctx.versions[this.index] };
  }

  /** @internal */
  *iterateKeys(): Generator<Uint8Array> {
    const snap = this.snapshot();
    if (snap === null) return;
    for (let i = 0; i < snap.length; i++) {
      // Every step, even one served from the snapshot: CLOSED after close(), REENTRANT inside an
      // update() callback, whichever path the step takes.
      this.guard.enter();
      const key = snap.keys.slice(i * 32, i * 32 + 32);
      // Changed since the snapshot: yield the key only if it is still there.
      if (snap.version !== this.ctx.versions[this.index] && !this.holdsKey(key)) continue;
      yield key;
    }
  }

  /** @internal */
  *iterateEntries(): Generator<[Uint8Array, Entry<T>]> {
    const snap = this.snapshot();
    if (snap === null) return;
    const table = this.storage.tableOver();
    for (let i = 0; i < snap.length; i++) {
      this.guard.enter(); // as in iterateKeys
      const key = snap.keys.slice(i * 32, i * 32 + 32);
      if (snap.version === this.ctx.versions[this.index]) {
        // Unchanged since the snapshot: the entry is still in its cell.
        table.readCell(snap.cells[i]);
        yield [key, this.decode(table.out)];
        continue;
      }
      const entry = this.readKey(key);
      if (entry !== undefined) yield [key, entry];
    }
  }
}
