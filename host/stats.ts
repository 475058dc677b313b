/** Cheap counters kept while the map runs; `BucketMap.stats()` turns them into a snapshot. */
export class Counters {
  indexResizes = 0;
  failedIndexResizes = 0;
  reseeds = 0;
  indexResizeMs = 0;
  compactions = 0;
  compactMs = 0;
  dataResizes = 0;
  dataResizeMs = 0;
  filesCreated = 0;
  flushes = 0;
  flushMs = 0;
  lastFlushMs = 0;
  openMs = 0;
  repairedBuckets = 0;
  deferredBuckets = 0;
  removedFiles = 0;
  repairMs = 0;
  freedDataCells = 0;
  stoppedWrites = 0;
  stoppedWriteRepairs = 0;
  stoppedWriteMs = 0;
}

export interface BucketMapStats {
  engine: 'wasm' | 'host';
  entries: number;
  /**
   * Buckets, and how entries spread over them: the fullest and emptiest bucket. Keys sharing their
   * first bytes (vanity addresses) all go to one bucket; maxEntries / (entries / total) is the skew.
   */
  buckets: { total: number; allocated: number; minEntries: number; maxEntries: number };
  index: {
    resizes: number;
    failedResizes: number;
    /** Rehashes with a new seed after a probe window overflowed at low load (keys aimed at it). */
    reseeds: number;
    resizeMs: number;
    files: number;
    bytes: number;
    /** Cells of all index files together. */
    capacity: number;
    /** entries / capacity. */
    load: number;
  };
  data: { resizes: number; resizeMs: number; files: number; bytes: number; cells: number };
  /** Buckets whose files compact() rebuilt smaller, and the time compact() spent (attempts that gained nothing included). */
  compactions: { buckets: number; ms: number };
  /** Files created since open (first files of buckets and data classes, and every growth). */
  filesCreated: number;
  cache: { hits: number; misses: number; pagesIn: number; pagesOut: number; writeRecords: number };
  flush: { count: number; totalMs: number; lastMs: number };
  /**
   * deferredBuckets: buckets whose files the open left unopened until their first use, on the
   * close record's word (see host/close-record.ts). removedFiles: files of this map that no record
   * names (left by a crash during growth), removed by the open; an open on a close record that
   * vouches for every bucket does not look for them (none can exist).
   */
  open: { ms: number; repairedBuckets: number; deferredBuckets: number; removedFiles: number; repairMs: number; freedDataCells: number };
  /**
   * Bucket file mappings held by this process, all maps together, counting those of replaced files
   * not yet released (see BUCKET_MAP_MAPPING_LIMIT), and the most it may hold (Infinity where the
   * kernel sets no cap).
   */
  mappings: { live: number; budget: number };
  /**
   * Writes an error V8 raised itself stopped part way (the call stack exhausted, say, in a map
   * called from deep recursion), noticed and repaired by the map's next call: how many, the
   * buckets repaired, and the time the repairs took.
   */
  stoppedWrites: { count: number; repairedBuckets: number; ms: number };
}
