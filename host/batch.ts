/**
 * Batched calls: getMany, hasMany, deleteMany, insertMany, addrefMany and unrefMany. Keys come as an array of keys or
 * packed back to back in one Uint8Array (32 bytes each). They are copied into the engine's batch
 * buffers a chunk at a time, so a chunk of up to BATCH keys crosses into the wasm core once (and
 * the host path overlaps the cache misses of a chunk). Arguments are checked in full before
 * anything is written: a bad entry anywhere leaves the map unchanged.
 */
import { types } from 'node:util';
import type { Entry, MapGuard } from './bucket.js';
import { checkRefCount } from './bucket.js';
import { BATCH_WRITE, NO_WRITE, markAfterError, type BucketStorage, type MapContext } from './bucket-storage.js';
import type { ElementCodec } from './codecs.js';
import { BATCH, NO_BUCKET } from './engine.js';
import { BucketMapError, codes } from './errors.js';
import { byteLength, KEY_BYTES, overlaps, plainBytes, toKeyBytes, type Key, type UserCodeFlag } from './keys.js';
import { copyToBytes } from './copy.js';
import { DATA_FULL, INDEX_FULL } from './table.js';
import { maxSlotsFor, MAX_LIST_BYTES } from './layout.js';

/** Marks a batched write of the engine batch's first `n` entries under way (see MapContext.writing). */
function markBatch(ctx: MapContext, n: number): void {
  ctx.writingBatch = n;
  ctx.writing = BATCH_WRITE;
}

/** Keys for a batched call: an array of keys, or keys packed back to back (32 bytes each). */
export type KeyBatch = readonly Key[] | Uint8Array;

/** What the batcher needs from the map. */
export interface BatchHost<T> {
  readonly ctx: MapContext;
  readonly storages: readonly BucketStorage[];
  readonly codec: ElementCodec<T>;
  readonly guard: MapGuard;
  readonly bits: number;
  /** Bucket.rewriteRef of bucket `ix`: a refCount change the engine cannot make in place. */
  rewriteRef(ix: number, k: Uint8Array, delta: 1 | -1): number | undefined;
}

/** A checked key batch: keys packed back to back. */
type Keys = Uint8Array;

/**
 * Checks a key batch: packed keys as they are, an array's keys copied back to back into a new
 * buffer as each is checked. The copy is what the call then reads: code of the caller's that runs
 * later in the call (a getter of another argument, toBytes() of a later key, a codec) may transfer
 * or shrink a key's buffer, which then reads as zeros, and the call would have written or read the
 * all-zero key in its place.
 */
export function batchKeys(keys: KeyBatch, argName: string, guard: UserCodeFlag): Keys {
  if (types.isUint8Array(keys)) {
    const packed = plainBytes(keys, argName);
    if (packed.length % KEY_BYTES !== 0) {
      throw new RangeError(`${argName} packed in one buffer must be a multiple of 32 bytes long, got ${packed.length}`);
    }
    return packed;
  }
  if (!Array.isArray(keys)) throw new TypeError(`${argName} must be an array of keys or a Uint8Array of packed 32-byte keys`);
  // An index loop, not map or forEach: they skip the holes of a sparse array, which would pass unchecked.
  const total = keys.length;
  const packed = new Uint8Array(total * KEY_BYTES);
  // An array's getters and its keys' toBytes() are the caller's code: see toKeyBytes.
  const was = guard.userCode;
  guard.userCode = true;
  try {
    for (let i = 0; i < total; i++) {
      const k: unknown = keys[i];
      // The name is built only for a key that fails: a template per key cost more than the copy.
      const bytes = types.isUint8Array(k) && byteLength(k) === KEY_BYTES ? k : toKeyBytes(k as Key, `${argName}[${i}]`);
      packed.set(bytes, i * KEY_BYTES);
    }
  } finally {
    guard.userCode = was;
  }
  return packed;
}

/** Checks where in a target of `room` bytes a read starts writing. */
export function checkOffset(offset: number, room: number): void {
  if (typeof offset !== 'number') throw new TypeError(`offset must be a number, got ${typeof offset}`);
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > room) throw new RangeError(`offset must be an integer from 0 to ${room}, got ${offset}`);
}

/** Checks an optional output array of one refCount per key. */
function checkRefCountsOut(refCounts: Float64Array | null, total: number): void {
  if (refCounts === null) return;
  if (!types.isFloat64Array(refCounts)) throw new TypeError('refCounts must be a Float64Array');
  const room = byteLength(refCounts) / 8; // not .length: see byteLength()
  if (room < total) throw new RangeError(`refCounts has room for ${room} keys, got ${total}`);
}

/**
 * A caller's packed buffer transferred or shrunk since the call began (by the caller's code it
 * ran) reads short: a chunk would go on with the keys an earlier call left in the batch buffer.
 */
function checkKeysHeld(keys: Keys, count: number): void {
  const held = byteLength(keys);
  if (held < count * KEY_BYTES) throw new TypeError(`the keys buffer holds ${held} bytes now, fewer than the ${count * KEY_BYTES} it held: it was transferred or shrunk during the call`);
}

function keyCount(keys: Keys): number {
  return keys.length / KEY_BYTES;
}

export class Batcher<T> {
  private readonly host: BatchHost<T>;

  constructor(host: BatchHost<T>) {
    this.host = host;
  }

  /** Copies keys [from, from + n) into the engine's batch and sets each one's bucket. */
  private load(keys: Keys, from: number, n: number, allocate: boolean): void {
    const { ctx, storages, bits } = this.host;
    const b = ctx.engine.batch;
    checkKeysHeld(keys, from + n);
    b.keys.set(keys.subarray(from * KEY_BYTES, (from + n) * KEY_BYTES));
    const packed = b.keys;
    for (let i = 0; i < n; i++) {
      const at = i * KEY_BYTES;
      const ix = bits === 0 ? 0 : ((packed[at] << 8) | packed[at + 1]) >>> (16 - bits);
      const storage = storages[ix];
      if (allocate && !storage.allocated) storage.allocate();
      b.buckets[i] = storage.allocated ? ix : NO_BUCKET;
    }
  }

  /** load() for a write to keys already there: marks every bucket of the chunk that has files dirty first. */
  private loadMarked(keys: Keys, from: number, n: number): void {
    this.load(keys, from, n, false);
    const { ctx, storages } = this.host;
    const b = ctx.engine.batch;
    for (let i = 0; i < n; i++) {
      const ix = b.buckets[i];
      if (ix !== NO_BUCKET && ctx.writable[ix] !== 1) storages[ix].markDirty();
    }
  }

  /**
   * Looks the keys up a chunk at a time and hands each run of results (entries [start, done) of
   * the engine's batch, for keys from + start onwards) to `take`, which returns how many of them
   * it used; fewer than offered stops the walk. Returns how many keys were used in all.
   */
  private lookUp(list: Keys, take: (from: number, start: number, done: number) => number): number {
    const total = keyCount(list);
    const engine = this.host.ctx.engine;
    for (let from = 0; from < total; from += BATCH) {
      const n = Math.min(BATCH, total - from);
      this.load(list, from, n, false);
      for (let start = 0; start < n; ) {
        const done = engine.getMany(start, n, true);
        // Each call starts with an empty data area, which any good entry fits: no progress means
        // the engine took a damaged entry for one too long to fit. Calling again would loop for ever.
        if (done === start) {
          throw new BucketMapError(codes.CORRUPT, `keys[${from + start}]: its entry does not fit in an empty batch data area (a damaged slot count)`);
        }
        const used = take(from, start, done);
        if (used < done - start) return from + start + used;
        start = done;
      }
    }
    return total;
  }

  getMany(keys: KeyBatch): Array<Entry<T> | undefined> {
    const list = batchKeys(keys, 'keys', this.host.guard);
    const out = new Array<Entry<T> | undefined>(keyCount(list));
    const { ctx, codec, guard } = this.host;
    const b = ctx.engine.batch;
    const size = codec.size;
    // A user's codec runs while the chunk's results sit in the engine's batch buffers.
    this.lookUp(list, (from, start, done) => guard.runCallback(() => {
      for (let i = start; i < done; i++) {
        if (b.status[i] !== 1) {
          out[from + i] = undefined;
          continue;
        }
        const slots = b.outSlots[i];
        const elements = new Array<T>(slots);
        const at = b.dataAt[i];
        for (let k = 0; k < slots; k++) elements[k] = codec.decode(b.data, at + k * size);
        out[from + i] = [elements, b.outRefCounts[i]];
      }
      return done - start;
    }));
    return out;
  }

  /**
   * Batched readInto: key i's elements go to `target` right after key i-1's (from `offset`), their
   * count to slots[i] (-1: absent) and its refCount to refCounts[i]. Stops before the first entry
   * that does not fit; returns how many keys it read.
   */
  readManyInto(keys: KeyBatch, target: Uint8Array, slots: Int32Array, refCounts: Float64Array | null, offset: number): number {
    let list = batchKeys(keys, 'keys', this.host.guard);
    const total = keyCount(list);
    // util.types checks, not instanceof: a Proxy passes instanceof and would run the caller's code
    // in the middle of the copy. Each length is read once, before any lookup, through the built-in
    // getter (byteLength()), so no getter of a subclass runs.
    if (!types.isUint8Array(target)) throw new TypeError('target must be a Uint8Array');
    if (!types.isInt32Array(slots)) throw new TypeError('slots must be an Int32Array');
    const room = byteLength(target);
    const slotRoom = byteLength(slots) / 4;
    if (slotRoom < total) throw new RangeError(`slots has room for ${slotRoom} keys, got ${total}`);
    checkRefCountsOut(refCounts, total);
    checkOffset(offset, room);
    // Keys are read a chunk at a time, so values written over the packed keys of a later chunk
    // would change the keys it looks up: they are read as they were when the call began.
    if (overlaps(list, target) || overlaps(list, slots) || (refCounts !== null && overlaps(list, refCounts))) list = list.slice();
    const b = this.host.ctx.engine.batch;
    const size = this.host.codec.size;
    let at = offset;
    return this.lookUp(list, (from, start, done) => {
      for (let i = start; i < done; i++) {
        if (b.status[i] !== 1) {
          slots[from + i] = -1;
          if (refCounts !== null) refCounts[from + i] = -1; // as addrefMany: no stale value from a reused array
          continue;
        }
        const bytes = b.outSlots[i] * size;
        if (at + bytes > room) return i - start; // 0 for keys[0]: the caller must offer more room
        copyToBytes(b.data, b.dataWords, b.dataAt[i], target, at, bytes);
        at += bytes;
        slots[from + i] = b.outSlots[i];
        if (refCounts !== null) refCounts[from + i] = b.outRefCounts[i];
      }
      return done - start;
    });
  }

  hasMany(keys: KeyBatch): boolean[] {
    const list = batchKeys(keys, 'keys', this.host.guard);
    const total = keyCount(list);
    const out = new Array<boolean>(total);
    const b = this.host.ctx.engine.batch;
    for (let from = 0; from < total; from += BATCH) {
      const n = Math.min(BATCH, total - from);
      this.load(list, from, n, false);
      this.host.ctx.engine.getMany(0, n, false);
      for (let i = 0; i < n; i++) out[from + i] = b.status[i] === 1;
    }
    return out;
  }

  /** Deletes the keys; returns how many were present. */
  deleteMany(keys: KeyBatch): number {
    const list = batchKeys(keys, 'keys', this.host.guard);
    const total = keyCount(list);
    const { ctx, guard } = this.host;
    const b = ctx.engine.batch;
    let removed = 0;
    for (let from = 0; from < total; from += BATCH) {
      const n = Math.min(BATCH, total - from);
      this.loadMarked(list, from, n);
      b.status.fill(0, 0, n);
      let inChunk = 0;
      try {
        markBatch(ctx, n);
        ctx.engine.removeMany(n);
        ctx.writing = NO_WRITE;
      } catch (err) {
        markAfterError(ctx, err);
        throw err;
      } finally {
        // Also when a damaged cell stops the chunk: the keys removed before it leave the map's
        // size, and iterations of their buckets learn of it.
        for (let i = 0; i < n; i++) {
          if (b.status[i] !== 1) continue;
          inChunk++;
          ctx.versions[b.buckets[i]]++;
        }
        guard.entries -= inChunk;
      }
      removed += inChunk;
    }
    return removed;
  }

  /**
   * Adds `delta` to the refCount of each key in turn; returns how many were present. refCounts[i],
   * when given, gets key i's new refCount (-1: absent). A refCount that would leave its range
   * throws, with the keys before it adjusted and none after it.
   */
  adjustMany(keys: KeyBatch, delta: 1 | -1, refCounts: Float64Array | null): number {
    let list = batchKeys(keys, 'keys', this.host.guard);
    const total = keyCount(list);
    checkRefCountsOut(refCounts, total);
    if (refCounts !== null && overlaps(list, refCounts)) list = list.slice(); // as readManyInto
    const { ctx } = this.host;
    const b = ctx.engine.batch;
    let found = 0;
    for (let from = 0; from < total; from += BATCH) {
      const n = Math.min(BATCH, total - from);
      this.loadMarked(list, from, n);
      for (let start = 0; start < n; ) {
        markBatch(ctx, n);
        let stop: number;
        try {
          stop = ctx.engine.adjustMany(start, n, delta);
        } catch (err) {
          markAfterError(ctx, err);
          throw err;
        }
        ctx.writing = NO_WRITE;
        for (let i = start; i < stop; i++) {
          const present = b.status[i] === 1;
          if (present) {
            found++;
            ctx.versions[b.buckets[i]]++;
          }
          if (refCounts !== null) refCounts[from + i] = present ? b.outRefCounts[i] : -1;
        }
        if (stop === n) break;
        // The engine stopped at an entry it cannot change in place: rewrite it, then go on after it.
        let rc: number | undefined;
        try {
          rc = this.host.rewriteRef(b.buckets[stop], b.keys.slice(stop * KEY_BYTES, (stop + 1) * KEY_BYTES), delta);
        } catch (err) {
          if (err instanceof BucketMapError) err.message = `keys[${from + stop}]: ${err.message} (the keys before it were adjusted, none after it)`;
          throw err;
        }
        if (rc !== undefined) found++;
        if (refCounts !== null) refCounts[from + stop] = rc ?? -1;
        start = stop + 1;
      }
    }
    return found;
  }

  /**
   * Upserts entries. `slotLists[i]` and `refCounts[i]` (or one refCount for all) go with key i.
   * Everything is checked before anything is written.
   */
  insertMany(keys: KeyBatch, slotLists: ReadonlyArray<readonly T[]>, refCounts: number | ArrayLike<number> = 1): void {
    const list = batchKeys(keys, 'keys', this.host.guard);
    const total = keyCount(list);
    if (!Array.isArray(slotLists)) throw new TypeError('slotLists must be an array with one slot list per key');
    if (slotLists.length !== total) throw new RangeError(`${total} keys but ${slotLists.length} slot lists`);
    const single = typeof refCounts === 'number';
    if (!single && (refCounts === null || typeof refCounts !== 'object')) throw new TypeError('refCounts must be a number or one refCount per key');
    if (!single && (refCounts as ArrayLike<number>).length !== total) throw new RangeError(`${total} keys but ${(refCounts as ArrayLike<number>).length} refCounts`);
    const { ctx, storages, codec, guard } = this.host;
    const size = codec.size;
    const maxSlots = maxSlotsFor(size);
    // Each list is read and encoded once, here, before anything is written, at an 8-byte aligned
    // offset of one staging buffer: a codec that throws (or answers differently the second time)
    // cannot stop the batch half-way, and a chunk is then one copy into the engine's list area.
    // Reading the arguments may run the caller's code (getters, a Proxy, the codec): it runs as
    // an update() callback does, unable to call the map, and what it answers is read only once.
    const counts = new Uint32Array(total);
    const starts = new Float64Array(total + 1);
    const rcs = new Float64Array(total);
    const staged = guard.runCallback((): Uint8Array => {
      const lists = new Array<readonly T[]>(total);
      for (let i = 0; i < total; i++) {
        rcs[i] = checkRefCount(single ? (refCounts as number) : (refCounts as ArrayLike<number>)[i], `refCounts[${i}]`);
        const slots = slotLists[i];
        if (!Array.isArray(slots)) throw new TypeError(`slotLists[${i}] must be an array`);
        const n = slots.length;
        if (n > maxSlots) throw new RangeError(`slotLists[${i}] has ${n} elements; at most ${maxSlots} fit`);
        lists[i] = slots;
        counts[i] = n;
        starts[i + 1] = starts[i] + ((n * size + 7) & ~7);
      }
      const encoded = new Uint8Array(starts[total]);
      for (let i = 0; i < total; i++) {
        const slots = lists[i];
        for (let k = 0; k < counts[i]; k++) {
          try {
            codec.encode(slots[k], encoded, starts[i] + k * size);
          } catch (err) {
            if (err instanceof Error) err.message = `slotLists[${i}][${k}]: ${err.message}`;
            throw err;
          }
        }
      }
      return encoded;
    });
    const b = ctx.engine.batch;
    let from = 0;
    while (from < total) {
      // A chunk ends at BATCH entries or when its elements fill the list area.
      let n = 0;
      while (from + n < total && n < BATCH && starts[from + n + 1] - starts[from] <= MAX_LIST_BYTES) n++;
      this.load(list, from, n, true);
      const base = starts[from];
      b.lists.set(staged.subarray(base, starts[from + n]), 0);
      for (let i = 0; i < n; i++) {
        b.slots[i] = counts[from + i];
        b.refCounts[i] = rcs[from + i];
        b.listAt[i] = starts[from + i] - base;
        const ix = b.buckets[i];
        if (ctx.writable[ix] !== 1) storages[ix].markDirty();
        ctx.versions[ix]++;
      }
      for (let start = 0; start < n; ) {
        let next: number;
        try {
          markBatch(ctx, n);
          next = ctx.engine.putMany(start, n);
        } catch (err) {
          guard.entries += ctx.engine.batchAdded; // also the keys added before a damaged cell
          markAfterError(ctx, err);
          throw err;
        }
        // Counted under the mark: batchAdded is a getter on the wasm engine, a call that can stop
        // too, and a stop there with the mark cleared left the map's size short of its entries.
        guard.entries += ctx.engine.batchAdded;
        ctx.writing = NO_WRITE;
        if (next === n) break;
        const storage = storages[b.buckets[next]];
        const status = ctx.engine.batchStatus;
        if (status === INDEX_FULL) {
          storage.growIndex(storage.capacity);
        } else if (status === DATA_FULL) {
          const sizeClass = ctx.engine.fullClass;
          const file = storage.data[sizeClass];
          storage.growData(sizeClass, file === null ? -1 : file.spec.capacityPow2);
        }
        start = next;
      }
      from += n;
    }
  }
}
