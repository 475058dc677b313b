/**
 * Batched operations: the host packs up to BATCH keys (and, for puts, their slot lists) into the
 * buffers below and crosses into the core once per batch.
 *
 * getMany hashes every key first and queues each home page with prefetch(), so all the pages the
 * batch is missing come in with one host call (fetchPending); only then does it probe; adjustMany
 * and removeMany do the same before they change entries. putMany
 * stops at the first entry that needs a file to grow, so the host can grow it and resume there.
 *
 *   keys      32 B × BATCH          buckets   u32 × BATCH (0xffffffff: bucket has no files)
 *   slots     u32 × BATCH (put)     refCounts f64 × BATCH (put; exact up to 2^53)
 *   listAt    u32 × BATCH (put: offset of the entry's elements in lists)   lists  MAX_LIST_BYTES
 *   status    u32 × BATCH (out)     outRc     f64 × BATCH (out)   outSlots u32 × BATCH (out)
 *   dataAt    u32 × BATCH (out: offset of the entry's elements in data)    data   MAX_LIST_BYTES
 */
import { hashHi, hashKey } from './hash';
import {
  OUT_FULL_CLASS, OUT_KIND, OUT_RC_HI, OUT_RC_LO, OUT_SLOTS, adjustFound, bindCurrent, copyElements, cur, locFid, locPage, locate,
  outPtr, probeHashed, putAt, readRecord, removeFound, seedHi, seedLo,
} from './bucket';
import { FOUND_CORRUPT, MAX_LIST_BYTES, PUT_NEW, PUT_UPDATED } from './layout';
import { drainLog, fetchPending, prefetch } from './page_cache';

// @ts-ignore: decorator
@inline export const BATCH: u32 = 1024;
// @ts-ignore: decorator
@inline const NO_BUCKET: u32 = 0xffffffff;

export let bKeys: usize = 0;
export let bBuckets: usize = 0;
export let bSlots: usize = 0;
export let bRefCounts: usize = 0;
export let bListAt: usize = 0;
export let bLists: usize = 0;
export let bStatus: usize = 0;
export let bOutRc: usize = 0;
export let bOutSlots: usize = 0;
export let bDataAt: usize = 0;
export let bData: usize = 0;
let bLo: usize = 0;
let bTag: usize = 0;
let record: usize = 0;

export function initBatch(): void {
  bKeys = heap.alloc(<usize>BATCH * 32);
  bBuckets = heap.alloc(<usize>BATCH << 2);
  bSlots = heap.alloc(<usize>BATCH << 2);
  bRefCounts = heap.alloc(<usize>BATCH << 3);
  bListAt = heap.alloc(<usize>BATCH << 2);
  bLists = heap.alloc(MAX_LIST_BYTES + 64);
  bStatus = heap.alloc(<usize>BATCH << 2);
  bOutRc = heap.alloc(<usize>BATCH << 3);
  bOutSlots = heap.alloc(<usize>BATCH << 2);
  bDataAt = heap.alloc(<usize>BATCH << 2);
  bData = heap.alloc(MAX_LIST_BYTES + 64);
  bLo = heap.alloc(<usize>BATCH << 2);
  bTag = heap.alloc(<usize>BATCH << 2);
  record = heap.alloc(32);
}

// @ts-ignore: decorator
@inline function at32(base: usize, i: u32): usize {
  return base + (<usize>i << 2);
}

/** Hashes keys [start, n) into bLo/bTag and brings every home page they miss in with one host call. */
function hashAndFetch(start: u32, n: u32): void {
  for (let i = start; i < n; i++) {
    const ix = load<u32>(at32(bBuckets, i));
    if (ix == NO_BUCKET) continue;
    bindCurrent(ix);
    const lo = hashKey(bKeys + <usize>i * 32, seedLo, seedHi);
    store<u32>(at32(bLo, i), lo);
    store<u32>(at32(bTag, i), hashHi >>> 26);
    locate(cur, lo % cur.capacity);
    prefetch(locFid, locPage);
  }
  fetchPending();
}

/**
 * Looks up keys [start, n). status: 0 absent, 1 found, 2 damaged (the cell number is at
 * OUT_FULL_CLASS and the batch stops after it). With `withValues`, refCounts, slot counts and
 * element bytes are written too. Returns the index it stopped at: below n when the data area is
 * full (the host calls again from there).
 */
export function getMany(start: u32, n: u32, withValues: u32): u32 {
  hashAndFetch(start, n);
  let used: u32 = 0;
  for (let i = start; i < n; i++) {
    const ix = load<u32>(at32(bBuckets, i));
    store<u32>(at32(bStatus, i), 0);
    if (ix == NO_BUCKET) continue;
    bindCurrent(ix);
    const c = probeHashed(cur, bKeys + <usize>i * 32, load<u32>(at32(bLo, i)), load<u32>(at32(bTag, i)));
    if (c == 0xffffffff) continue;
    if (withValues == 0) {
      store<u32>(at32(bStatus, i), 1);
      continue;
    }
    // The cell is checked before the space test: a damaged one is reported, never taken for one
    // that does not fit (the host would call again from it, for ever). A good one fits an empty area.
    const bytes = readRecord(c, record);
    if (bytes == 0xffffffff) {
      store<u32>(outPtr + OUT_FULL_CLASS, c);
      store<u32>(at32(bStatus, i), FOUND_CORRUPT);
      return i + 1;
    }
    const need = (bytes + 7) & ~7;
    if (used + need > MAX_LIST_BYTES) return i;
    copyElements(bData + used);
    store<u32>(at32(bStatus, i), 1);
    store<f64>(bOutRc + (<usize>i << 3), <f64>load<u32>(record + OUT_RC_LO) + <f64>load<u32>(record + OUT_RC_HI) * 4294967296.0);
    store<u32>(at32(bOutSlots, i), load<u32>(record + OUT_SLOTS));
    store<u32>(at32(bDataAt, i), used);
    used += need;
  }
  return n;
}

/**
 * Upserts entries [start, n). Stops at the first entry that needs growth or is damaged, without
 * writing it, and returns its index (n when all are written); its status goes to OUT_KIND, the
 * size class or damaged cell to OUT_FULL_CLASS. OUT_SLOTS counts the new keys.
 */
export function putMany(start: u32, n: u32): u32 {
  let added: u32 = 0;
  // Counted as they are added, not only at the end: a call that throws part way (a host callback
  // that overflows the stack) still leaves the host the number of keys it added.
  store<u32>(outPtr + OUT_SLOTS, 0);
  for (let i = start; i < n; i++) {
    bindCurrent(load<u32>(at32(bBuckets, i)));
    const rc = <u64>load<f64>(bRefCounts + (<usize>i << 3));
    const status = putAt(bKeys + <usize>i * 32, bLists + load<u32>(at32(bListAt, i)), load<u32>(at32(bSlots, i)), <u32>rc, <u32>(rc >> 32));
    if (status == PUT_NEW) {
      store<u32>(outPtr + OUT_SLOTS, ++added);
    } else if (status != PUT_UPDATED) {
      drainLog();
      store<u32>(outPtr + OUT_KIND, status);
      store<u32>(outPtr + OUT_SLOTS, added);
      return i;
    }
  }
  drainLog();
  store<u32>(outPtr + OUT_SLOTS, added);
  return n;
}

/**
 * Deletes keys [0, n). status: 0 absent, 1 removed, 2 damaged (the batch stops after it and
 * returns its index + 1). Returns how many keys were done.
 */
export function removeMany(n: u32): u32 {
  // A delete moves keys within their bucket and never reseeds it, so the hashes stay good.
  hashAndFetch(0, n);
  for (let i: u32 = 0; i < n; i++) {
    const ix = load<u32>(at32(bBuckets, i));
    let status: u32 = 0;
    if (ix != NO_BUCKET) {
      bindCurrent(ix);
      status = removeFound(probeHashed(cur, bKeys + <usize>i * 32, load<u32>(at32(bLo, i)), load<u32>(at32(bTag, i))));
    }
    store<u32>(at32(bStatus, i), status);
    if (status == FOUND_CORRUPT) {
      drainLog();
      return i + 1;
    }
  }
  drainLog();
  return n;
}

/**
 * Adds `delta` to the refCounts of keys [start, n) in turn, in place (the host's adjustRef).
 * status: 0 absent, or 1 with the new refCount in outRc. Stops at the first key whose entry must be
 * rewritten by the host (not INLINE, or the refCount would leave 1..256), without writing it, and
 * returns its index (n when all were done). A call with `start` > 0 resumes one that stopped: its
 * keys are already hashed (the host's rewrite updates an existing key, which moves no key and
 * keeps the seed), so hashing them again would make a batch of such entries quadratic.
 */
export function adjustMany(start: u32, n: u32, delta: i32): u32 {
  if (start == 0) hashAndFetch(0, n);
  for (let i = start; i < n; i++) {
    const ix = load<u32>(at32(bBuckets, i));
    let rc: i32 = -1;
    if (ix != NO_BUCKET) {
      bindCurrent(ix);
      rc = adjustFound(probeHashed(cur, bKeys + <usize>i * 32, load<u32>(at32(bLo, i)), load<u32>(at32(bTag, i))), delta);
    }
    if (rc == -2) {
      drainLog();
      return i;
    }
    store<u32>(at32(bStatus, i), rc > 0 ? 1 : 0);
    store<f64>(bOutRc + (<usize>i << 3), <f64>rc);
  }
  drainLog();
  return n;
}
