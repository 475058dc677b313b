/**
 * The core's exports: numbers in, numbers out. The host writes keys and slot lists into the
 * buffers whose addresses `layout` returns, calls an operation, and reads results from OUT.
 * Memory is allocated once by `init` and never grows afterwards, so the host's views stay valid.
 */
import { initBuckets, descBase, keyPtr, inPtr, outPtr, DESC_BYTES, OUT_ELEMENTS } from './bucket';
import { cacheSlots, drainLog, flushDirty, initCache, stats } from './page_cache';
import {
  CELL_BYTES, CELLS_PER_PAGE, HEADER_BYTES, J_BODY, J_CHECK, J_COMMIT, JOURNAL_SEED_HI, JOURNAL_SEED_LO,
  MAX_LIST_BYTES, PAGE_BYTES, PAGE_HEADER_BYTES, SIZE_CLASSES, LOAD_MAX_D, LOAD_MAX_N, DATA_SEARCH_FACTOR,
} from './layout';

export { get, put, remove, adjustRef, rehash, copyData } from './bucket';
export { getMany, putMany, removeMany, adjustMany } from './batch';
import {
  initBatch, bKeys, bBuckets, bSlots, bRefCounts, bListAt, bLists, bStatus, bOutRc, bOutSlots, bDataAt, bData, BATCH,
} from './batch';
export { invalidate, recover } from './page_cache';

/** Sets the map's parameters and allocates every buffer; `cacheSets` × 4 pages of cache. */
export function init(maxBuckets: u32, maxSearch: u32, elementSize: u32, cacheSets: u32, randomSeed: u32): void {
  initCache(cacheSets);
  initBuckets(maxBuckets, maxSearch, elementSize, randomSeed, MAX_LIST_BYTES);
  initBatch();
}

/** Writes back dirty pages and drains the write log. */
export function flush(): void {
  drainLog();
  flushDirty();
}

/**
 * Addresses of the host-visible buffers: 0 key, 1 input list, 2 output, 3 descriptors, 4 stats;
 * batches (batch.ts): 5 keys, 6 buckets, 7 slots, 8 refCounts, 9 listAt, 10 lists, 11 status,
 * 12 outRc, 13 outSlots, 14 dataAt, 15 data.
 */
export function layout(which: u32): usize {
  switch (which) {
    case 0: return keyPtr;
    case 1: return inPtr;
    case 2: return outPtr;
    case 3: return descBase;
    case 4: return changetype<usize>(stats);
    case 5: return bKeys;
    case 6: return bBuckets;
    case 7: return bSlots;
    case 8: return bRefCounts;
    case 9: return bListAt;
    case 10: return bLists;
    case 11: return bStatus;
    case 12: return bOutRc;
    case 13: return bOutSlots;
    case 14: return bDataAt;
    case 15: return bData;
  }
  return 0;
}

/** Format and tuning numbers compiled into the core, for the host to check against its own. */
export function layoutValue(which: u32): u32 {
  switch (which) {
    case 0: return PAGE_BYTES;
    case 1: return CELLS_PER_PAGE;
    case 2: return PAGE_HEADER_BYTES;
    case 3: return CELL_BYTES;
    case 4: return HEADER_BYTES;
    case 5: return SIZE_CLASSES;
    case 6: return MAX_LIST_BYTES;
    case 7: return J_COMMIT;
    case 8: return J_CHECK;
    case 9: return J_BODY;
    case 10: return JOURNAL_SEED_LO;
    case 11: return JOURNAL_SEED_HI;
    case 12: return DESC_BYTES;
    case 13: return OUT_ELEMENTS;
    case 14: return LOAD_MAX_N;
    case 15: return LOAD_MAX_D;
    case 16: return DATA_SEARCH_FACTOR;
    case 17: return cacheSlots();
    case 18: return BATCH;
  }
  return 0xffffffff;
}
