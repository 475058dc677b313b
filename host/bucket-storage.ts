/**
 * The files of one bucket: its index and one data file per size class in use. This layer creates
 * them (lazily, on the bucket's first write), reopens and repairs them, grows them, and keeps the
 * manifest pointing at them. Growth builds the new file completely, then switches the manifest
 * record, then unlinks the old file, so a crash at any point leaves one complete state referenced.
 */
import { randomBytes } from 'node:crypto';
import { BucketMapError, codes, ioError } from './errors.js';
import type { Engine } from './engine.js';
import type { FileSpec } from './format.js';
import {
  CELL_BYTES, CELLS_PER_PAGE, DATA_INITIAL_MAX_BYTES, DATA_INITIAL_POW2, FILE_KIND_DATA, FILE_KIND_INDEX,
  GROW_D, GROW_DOUBLE_BELOW_PAGES, GROW_N, GROW_QUADRUPLE_BELOW_PAGES, INITIAL_INDEX_PAGES, RESEED_BELOW_LOAD, RESEED_MIN_SEARCH, LOAD_MAX_D, LOAD_MAX_N, ANTICIPATED_LOAD, MAX_DATA_POW2, MAX_INDEX_PAGES,
  PAGE_BYTES, SIZE_CLASSES, dataCellBytes,
} from './layout.js';
import { copyRecord, emptyRecord, type BucketRecord, type Manifest } from './manifest.js';
import { collectDataCells, journalCommitted, markDirty, readSavedCounts, replayJournal, saveCounts, type SavedCounts } from './restart.js';
import type { BucketToVerify } from './verify.js';
import type { Counters } from './stats.js';
import { MappedFile, bucketFileName, fileBytesFor, fsyncPath, segmentCountFor, segmentPath, type OpenMode, type SparePool } from './storage.js';
import { DataFile, Table } from './table.js';
import * as fs from 'node:fs';

/** What names and shapes a map's files: enough to open them (the read-only verifier needs no more). */
export interface FileLayout {
  readonly maxBuckets: number;
  readonly maxSearch: number;
  readonly elementSize: number;
  readonly segmentBytes: number;
  readonly mapId: number;
  readonly drives: readonly string[];
  /** Cache and map the files in 2 MiB pages (the config option; not part of the format). */
  readonly hugePages: boolean;
}

export function indexSpec(layout: FileLayout, ix: number, record: BucketRecord, generation: number, pages: number): FileSpec {
  return {
    kind: FILE_KIND_INDEX, recordBytes: PAGE_BYTES, cellBytes: CELL_BYTES, elementSize: layout.elementSize,
    maxSearch: layout.maxSearch, maxBuckets: layout.maxBuckets, bucket: ix, generation,
    totalRecords: pages, capacity: pages * CELLS_PER_PAGE, sizeClass: 0, capacityPow2: 0,
    seedLo: record.seedLo, seedHi: record.seedHi, mapId: layout.mapId,
  };
}

export function dataSpec(layout: FileLayout, ix: number, sizeClass: number, generation: number, pow2: number): FileSpec {
  const cellBytes = dataCellBytes(sizeClass, layout.elementSize);
  return {
    kind: FILE_KIND_DATA, recordBytes: cellBytes, cellBytes, elementSize: layout.elementSize,
    maxSearch: layout.maxSearch, maxBuckets: layout.maxBuckets, bucket: ix, generation,
    totalRecords: 2 ** pow2, capacity: 2 ** pow2, sizeClass, capacityPow2: pow2, seedLo: 0, seedHi: 0,
    mapId: layout.mapId,
  };
}

/**
 * Refuses drives given in another order than the map's: the restart file names each bucket's folder
 * by its position, so a swap made every moved bucket FILE_MISSING on first use, and new buckets
 * placed under the swap went missing once the right order was back. For each position that holds
 * a bucket, the first such bucket's index file is looked for there; found only in another of the
 * drives, the order is wrong. A stat per drive, at open: buckets opened lazily are not mapped.
 */
export function checkDriveOrder(layout: FileLayout, allocated: Iterable<[number, BucketRecord]>, file: string): void {
  if (layout.drives.length < 2) return;
  const checked = new Set<number>();
  for (const [ix, record] of allocated) {
    if (checked.has(record.drive)) continue;
    checked.add(record.drive);
    const name = bucketFileName(layout.mapId, ix, null, record.indexGen);
    if (fs.existsSync(segmentPath(layout.drives[record.drive], name, 0))) continue;
    const at = layout.drives.findIndex((dir, i) => i !== record.drive && fs.existsSync(segmentPath(dir, name, 0)));
    if (at < 0) continue; // missing everywhere: that bucket's first use says so
    throw new BucketMapError(
      codes.CONFIG_MISMATCH,
      `${file}: the drives are given in another order than the map's: bucket ${ix}'s files are in ${layout.drives[at]}, given as drives[${at}], ` +
        `which the map has as drives[${record.drive}]; give the drives in the order the map was created with`,
      { file },
    );
  }
}

/** Opens the files a manifest record names (checked before mapping); read-only for the verifier. */
export function openBucketFiles(layout: FileLayout, ix: number, record: BucketRecord, readOnly: boolean, mode: OpenMode = 'eager'): { index: MappedFile; data: Array<MappedFile | null> } {
  const dir = layout.drives[record.drive];
  const opened: MappedFile[] = [];
  try {
    const index = MappedFile.open(dir, bucketFileName(layout.mapId, ix, null, record.indexGen), indexSpec(layout, ix, record, record.indexGen, record.indexPages), layout.segmentBytes, readOnly, mode, layout.hugePages);
    opened.push(index);
    const data = new Array<MappedFile | null>(SIZE_CLASSES).fill(null);
    for (let c = 0; c < SIZE_CLASSES; c++) {
      if (record.dataGen[c] === 0) continue;
      data[c] = MappedFile.open(dir, bucketFileName(layout.mapId, ix, c, record.dataGen[c]), dataSpec(layout, ix, c, record.dataGen[c], record.dataPow2[c]), layout.segmentBytes, readOnly, mode, layout.hugePages);
      opened.push(data[c] as MappedFile);
    }
    return { index, data };
  } catch (err) {
    for (const file of opened) file.release();
    throw err;
  }
}

/** What every bucket shares with the map that owns it. */
export interface MapContext extends FileLayout {
  readonly manifest: Manifest;
  readonly engine: Engine;
  readonly counters: Counters;
  /** Bytes of all bucket files, and the configured ceiling (Infinity when none). */
  readonly usage: { bytes: number; maxBytes: number };
  /** Inodes of replaced files, kept to make the next file cheaper to create. */
  readonly spares: SparePool;
  /** Called before anything is written to a file (removes the close record on the first call). */
  readonly beforeChange: () => void;
  /** Corrects the map's entry count after a bucket opened on the close record's word is recounted. */
  readonly adjustEntries: (delta: number) => void;
  /**
   * 1 where a bucket is bound to the engine and already marked dirty, so that a write can go
   * straight to the engine: with many buckets, the bucket's own objects are cache misses that a
   * write would otherwise pay on top of its index line. Set by markDirty(), cleared when the
   * bucket is saved clean or closed.
   */
  readonly writable: Uint8Array;
  /** Per bucket, bumped by every change: iterators compare it to know whether their snapshot holds. */
  readonly versions: Float64Array;
  /** Opened with `readOnly: true`: files mapped read-only, and every write refused before it starts. */
  readonly readOnly: boolean;
  /**
   * The write under way: the bucket it changes, BATCH_WRITE, or NO_WRITE. Set before a write's
   * first store and cleared after its last, not in a catch or finally: an error V8 raises itself
   * (the call stack exhausted, in a map called from deep recursion) can stop the map's own code
   * between two stores, with no room left to run one. A mark the map's next call finds still set
   * is a write that never finished: its buckets are repaired then (BucketStorage.repairStopped).
   */
  writing: number;
  /** With BATCH_WRITE: the batch's first this many entries name the buckets the write changes. */
  writingBatch: number;
}

/** What BucketStorage.compact(load) rebuilds (see compactionPlan). */
interface CompactionPlan {
  count: number;
  dataCounts: number[];
  /** The index's size now and the size it is rebuilt at, in pages. */
  current: number;
  target: number;
  /** Data classes to copy, with the capacity each gets (-1: an empty class whose file goes). */
  dataPlan: Map<number, number>;
}

/** `MapContext.writing` when no write is under way. */
export const NO_WRITE = -1;
/** `MapContext.writing` while the engine runs a batched write. */
export const BATCH_WRITE = -2;

/**
 * Whether a change that threw `err` stopped cleanly. The map's own errors are raised before a
 * change's first store or after its last (a damaged cell is met before anything is changed; growth
 * drops the file it was building; the restart file's update fails only by its write's own error);
 * anything else, an error V8 raises itself, may have stopped it between two.
 */
function stoppedCleanly(err: unknown): boolean {
  return err instanceof BucketMapError;
}

/** A write under the mark threw `err`: a clean stop clears the mark, any other leaves it for the next call to repair. */
export function markAfterError(ctx: MapContext, err: unknown): void {
  if (stoppedCleanly(err)) ctx.writing = NO_WRITE;
}

/** Runs `change` to bucket `ix` under the write mark (see MapContext.writing). */
export function underMark<R>(ctx: MapContext, ix: number, change: () => R): R {
  ctx.writing = ix;
  let result: R;
  try {
    result = change();
  } catch (err) {
    markAfterError(ctx, err);
    throw err;
  }
  ctx.writing = NO_WRITE;
  return result;
}

/** READ_ONLY: the public calls refuse writes first; these checks stand behind them, before any byte. */
export function readOnlyError(): BucketMapError {
  return new BucketMapError(codes.READ_ONLY, 'the map was opened with readOnly: true; open it without to change it');
}

/**
 * Lets tests pin the seed of new buckets (to aim keys at a window), or draw every seed from a
 * source of their own (to make a run repeat step for step); never set otherwise.
 */
export const testHooks = { fixedSeed: null as [number, number] | null, seedSource: null as (() => [number, number]) | null };

function randomSeed(): [number, number] {
  if (testHooks.seedSource !== null) return testHooks.seedSource();
  const seed = randomBytes(8);
  return [seed.readInt32LE(0), seed.readInt32LE(4)];
}

export function nextIndexPages(pages: number): number {
  if (pages < GROW_QUADRUPLE_BELOW_PAGES) return pages * 4;
  if (pages < GROW_DOUBLE_BELOW_PAGES) return pages * 2;
  return Math.max(pages + 1, Math.ceil((pages * GROW_N) / GROW_D));
}

/** The first capacity (pow2) of a data file: 2^5 cells, fewer if that would pass DATA_INITIAL_MAX_BYTES. */
function initialDataPow2(cellBytes: number): number {
  let pow2 = DATA_INITIAL_POW2;
  while (pow2 > 0 && 2 ** pow2 * cellBytes > DATA_INITIAL_MAX_BYTES) pow2--;
  return pow2;
}

/** Index sizes compaction tries, smallest first: an eighth more each time, then `current` if the data files need a new index anyway. */
function* compactionSizes(target: number, current: number, rebuildAnyway: boolean): Generator<number> {
  for (let pages = target; pages < current; pages += Math.ceil(pages / 8)) yield pages;
  if (rebuildAnyway) yield current;
}

/** Pages that hold `entries` at the anticipated load. */
export function pagesFor(entries: number): number {
  return Math.ceil(entries / ANTICIPATED_LOAD / CELLS_PER_PAGE);
}

export function tableOverFiles(layout: FileLayout, record: BucketRecord, index: MappedFile, data: ReadonlyArray<MappedFile | null>): Table {
  const table = new Table(layout.maxSearch, layout.elementSize);
  table.bindIndex(index, record.seedLo, record.seedHi);
  for (let c = 0; c < SIZE_CLASSES; c++) table.bindData(c, data[c]);
  return table;
}

export function sameCounts(a: SavedCounts | null, b: SavedCounts): boolean {
  if (a === null || a.count !== b.count) return false;
  for (let c = 0; c < SIZE_CLASSES; c++) if (a.dataCounts[c] !== b.dataCounts[c]) return false;
  return true;
}

export class BucketStorage {
  readonly ix: number;
  private readonly ctx: MapContext;
  record: BucketRecord | undefined;
  index: MappedFile | null = null;
  readonly data: Array<MappedFile | null> = new Array<MappedFile | null>(SIZE_CLASSES).fill(null);

  private closed = false;

  /** Changed since the last flush: its header says dirty and its counts must be saved. */
  dirty = false;
  /** Changed since the last durable flush: its files must be synced by the next one. */
  unsynced = false;
  /** Entries the caller expects (setAnticipatedCount); the next growth sizes for at least this. */
  anticipated = 0;
  /** Capacity at which the bucket was last reseeded (a second overflow there grows instead). */
  private reseededAt = -1;
  /**
   * The saved counts of a clean bucket whose files are opened and checked but not yet mapped nor
   * given to the engine; that happens on its first use (see `allocated`).
   */
  private pending: SavedCounts | null = null;
  /** The pending counts come from the close record, not yet from the bucket's own header. */
  private vouched = false;
  /**
   * Files the bucket's fields no longer name, not yet dropped: a switch to new files that stopped
   * before its drop (see MapContext.writing) leaves them, and the repair's own switch drops them
   * once the engine is bound to the repaired files. Without this list they stayed on disk (a clean
   * close vouches for every bucket, so no open looked for stray files again) and mapped.
   */
  private retired: MappedFile[] = [];

  constructor(ctx: MapContext, ix: number) {
    this.ctx = ctx;
    this.ix = ix;
  }

  /**
   * Whether the bucket has files. Every use of a bucket's engine state asks this first, so a bucket
   * opened lazily is mapped and bound here, on its first use.
   */
  get allocated(): boolean {
    if (this.pending !== null) this.bindPending();
    return this.index !== null;
  }

  /** Whether the bucket has files, without mapping a lazily opened one. */
  get hasFiles(): boolean {
    return this.index !== null;
  }

  /** Live entries, without mapping a lazily opened bucket. */
  entryCount(): number {
    if (this.pending !== null) return this.pending.count;
    return this.index === null ? 0 : this.ctx.engine.count(this.ix);
  }

  /** Live data cells per size class, without mapping a lazily opened bucket. */
  dataCellCounts(): ArrayLike<number> {
    if (this.pending !== null) return this.pending.dataCounts;
    return this.ctx.engine.dataCounts(this.ix);
  }

  private bindPending(): void {
    const saved = this.pending as SavedCounts;
    // Stays pending if mapping fails (a file damaged since open), so every later use fails alike.
    if (this.vouched && !sameCounts(readSavedCounts(this.index as MappedFile), saved)) {
      // The header is dirty or disagrees with the close record: repair as after a crash. A repair
      // that fails leaves the bucket pending too, so the next use tries again.
      this.repairAfterCrash();
      this.pending = null;
      this.vouched = false;
      this.ctx.adjustEntries(this.ctx.engine.count(this.ix) - saved.count);
      return;
    }
    this.bindEngine(saved.count, saved.dataCounts);
    this.pending = null;
    this.vouched = false;
  }

  get capacity(): number {
    return this.index === null ? 0 : this.index.spec.capacity;
  }

  private dir(): string {
    return this.ctx.drives[(this.record as BucketRecord).drive];
  }

  private indexSpec(generation: number, pages: number, seed: BucketRecord = this.record as BucketRecord): FileSpec {
    return indexSpec(this.ctx, this.ix, seed, generation, pages);
  }

  private dataSpec(sizeClass: number, generation: number, pow2: number): FileSpec {
    return dataSpec(this.ctx, this.ix, sizeClass, generation, pow2);
  }

  private name(sizeClass: number | null, generation: number): string {
    return bucketFileName(this.ctx.mapId, this.ix, sizeClass, generation);
  }

  /**
   * Creates a file of a generation no record names. A leftover of that name (from a crash during
   * growth) is not referenced by anything, so it is removed and the creation retried.
   */
  private createFile(sizeClass: number | null, generation: number, spec: FileSpec, replaces: MappedFile | null): MappedFile {
    // The documented calls refuse a closed map first; this stops a Bucket kept past close() and
    // driven through its undocumented methods, whose file would land among the next open's.
    if (this.closed) throw new BucketMapError(codes.CLOSED, `bucket ${this.ix}: the map is closed`);
    if (this.ctx.readOnly) throw readOnlyError();
    this.ctx.beforeChange();
    const name = this.name(sizeClass, generation);
    const bytes = fileBytesFor(spec, this.ctx.segmentBytes);
    const usage = this.ctx.usage;
    const after = usage.bytes - (replaces === null ? 0 : replaces.bytes) + bytes;
    // Only a file larger than the one it replaces counts against the ceiling. A compaction's files
    // are smaller, but its data files are made while its new index is counted beside the old one,
    // and a map reopened with a lower maxBytes is past it already: compact() (and a repair at the
    // same size) would be refused the very disk it gives back.
    if (after > usage.maxBytes && after > usage.bytes) {
      throw new BucketMapError(
        codes.SIZE_LIMIT,
        `bucket ${this.ix}: growing would take the bucket files to ${after} bytes, past maxBytes (${usage.maxBytes})`,
      );
    }
    let file: MappedFile;
    try {
      file = MappedFile.create(this.dir(), name, spec, this.ctx.segmentBytes, this.ctx.spares, this.ctx.hugePages);
    } catch (err) {
      if ((err as { cause?: { code?: string } }).cause?.code !== 'EEXIST') throw err;
      // A name the restart file does not hold yet: what stands there is a killed growth's or
      // compaction's leftover. It retires its segments in order, so any of them may be gone and a
      // later one still there: clear every segment the new file takes, not only a run from 0.
      const segments = segmentCountFor(spec, this.ctx.segmentBytes);
      for (let s = 0; s < segments; s++) {
        const leftover = segmentPath(this.dir(), name, s);
        try {
          fs.rmSync(leftover, { force: true });
        } catch (cause) {
          // A BucketMapError: nothing is in force yet, so the growth fails cleanly (a raw error
          // would leave the write mark set, and the repair would meet the same leftover).
          throw ioError('cannot remove a file left by a crash', cause, leftover);
        }
      }
      file = MappedFile.create(this.dir(), name, spec, this.ctx.segmentBytes, this.ctx.spares, this.ctx.hugePages);
    }
    usage.bytes += file.bytes;
    this.ctx.counters.filesCreated++;
    return file;
  }

  /** Deletes a file that is no longer (or was never) referenced, and forgets its bytes. */
  private dropFile(file: MappedFile): void {
    const bytes = file.bytes;
    this.ctx.engine.forget(file);
    file.unlink(this.ctx.spares);
    file.release();
    // Last: a drop stopped before it is dropped again (dropRetired), and must not count twice.
    this.ctx.usage.bytes -= bytes;
  }

  /**
   * A file that a failed switch made: dropped after the map's own error (the restart file does
   * not name it), else retired for the repair to drop once its record is in force. Any other
   * error may have stopped the restart file's update after its write, with the file in force.
   */
  private dropMade(file: MappedFile, err: unknown): void {
    if (stoppedCleanly(err)) this.dropFile(file);
    else this.retired[this.retired.length] = file;
  }

  /** Drops the retired files; the engine must be bound to the bucket's current files. */
  private dropRetired(): void {
    const files = this.retired;
    while (files.length > 0) {
      this.dropFile(files[files.length - 1]);
      files.length--;
    }
  }

  private bindEngine(count: number, dataCounts: ArrayLike<number>): void {
    // New files: an iteration in progress must stop trusting cells it found in the old ones (they
    // are truncated once retired, and a read of them would SIGBUS), whatever the caller did.
    this.ctx.versions[this.ix]++;
    const record = this.record as BucketRecord;
    this.ctx.engine.bind(this.ix, {
      index: this.index as MappedFile, data: this.data, seedLo: record.seedLo, seedHi: record.seedHi, count, dataCounts,
    });
  }

  /** Counts as the engine has them now (the engine is authoritative while the map is open). */
  private liveCounts(): [number, number[]] {
    return [this.ctx.engine.count(this.ix), Array.from(this.ctx.engine.dataCounts(this.ix))];
  }

  // ── opening ────────────────────────────────────────────────────────────────────────────────────

  /**
   * Opens the files the manifest names; a bucket left dirty by a crash is repaired first. With
   * counts from the close record (`vouched`), the files are not even opened until first use.
   */
  open(record: BucketRecord, vouched: SavedCounts | null = null): void {
    this.record = copyRecord(record);
    const files = openBucketFiles(this.ctx, this.ix, record, this.ctx.readOnly, vouched === null ? 'lazy' : 'deferred');
    this.index = files.index;
    for (let c = 0; c < SIZE_CLASSES; c++) this.data[c] = files.data[c];
    for (const file of this.files()) this.ctx.usage.bytes += file.bytes;
    if (vouched !== null) {
      this.pending = vouched;
      this.vouched = true;
      return;
    }
    const saved = readSavedCounts(this.index);
    if (saved !== null) {
      this.pending = saved;
      return;
    }
    this.repairAfterCrash();
  }

  private repairAfterCrash(): void {
    const started = performance.now();
    this.ctx.counters.freedDataCells += this.repair();
    this.ctx.counters.repairedBuckets++;
    this.ctx.counters.repairMs += performance.now() - started;
  }

  /**
   * After a write that stopped part way (see MapContext.writing), once the engine has settled: the
   * bucket's files are as a crash at that point would leave them, so they are repaired as an open
   * after a crash repairs them, and the engine is bound to the result. The stopped write's key
   * reads as before it or as after it; every other entry is as it was. Returns whether there was
   * anything to repair.
   */
  repairStopped(): boolean {
    // Pending: no write reached it (a write binds its bucket first). No index: none was made.
    if (this.pending !== null || this.index === null || this.closed) return false;
    // The engine's copies of these files' pages may predate the repair's stores (it frees data
    // cells in place): it lets go of the files, and the repair's rebind registers them afresh.
    for (const file of this.files()) this.ctx.engine.forget(file);
    this.repair();
    // The repaired index's header is clean: the next change must mark it dirty again.
    this.dirty = false;
    this.ctx.writable[this.ix] = 0;
    return true;
  }

  /**
   * Replays the journal, rebuilds the index into a new file, frees orphaned data cells, recounts.
   * Returns the data cells freed.
   */
  private repair(): number {
    if (this.ctx.readOnly) {
      throw new BucketMapError(codes.NEEDS_RECOVERY, `bucket ${this.ix} needs repair (its header is dirty or disagrees with the close record): open the map for writing once, then read-only`);
    }
    this.ctx.beforeChange();
    const record = this.record as BucketRecord;
    const old = this.index as MappedFile;
    const source = this.tableOver(old);
    replayJournal(old, source);
    // Past any retired index: one a stopped switch made may hold the next generation's name, and
    // dropping it after the repair would empty the repaired file in its place.
    let generation = record.indexGen + 1;
    for (const file of this.retired) if (file.spec.kind === FILE_KIND_INDEX && file.spec.generation >= generation) generation = file.spec.generation + 1;
    for (let pages = record.indexPages; ; pages = this.checkedPages(nextIndexPages(pages))) {
      const built = this.buildIndexFrom(source, generation, pages);
      if (built === null) continue;
      let freed: number;
      try {
        freed = collectDataCells(built.table, old.segmentPaths[0]);
      } catch (err) {
        this.dropFile(built.file);
        throw err;
      }
      saveCounts(built.file, built.table.count, built.table.dataCount);
      this.switchIndex(built.file, generation, pages, built.table.count, built.table.dataCount);
      this.unsynced = true;
      return freed;
    }
  }

  /** A TypeScript table over this bucket's files (used to repair, scan and verify with either engine). */
  tableOver(index: MappedFile = this.index as MappedFile): Table {
    return tableOverFiles(this.ctx, this.record as BucketRecord, index, this.data);
  }

  /**
   * For verify(), which must write nothing: a bucket still pending on the close record's word whose
   * header disagrees with the record would be repaired by its first use (a new index generation,
   * the record removed). Instead this returns the disagreement, and the bucket as its files have
   * it, to check against its header's counts, and leaves it pending: its first real use repairs it
   * as before. Null for any other bucket (verify() binds it as usual, which writes nothing). Maps
   * the files (checked as on first use), so a damaged file throws its BucketMapError here.
   */
  vouchedMismatch(): { header: SavedCounts | null; vouched: SavedCounts; verify: BucketToVerify } | null {
    if (this.pending === null || !this.vouched) return null;
    const index = this.index as MappedFile;
    const header = readSavedCounts(index);
    if (sameCounts(header, this.pending)) return null;
    return {
      header,
      vouched: this.pending,
      verify: { bucket: this.ix, table: this.tableOver(), saved: header, live: null, journalCommitted: journalCommitted(index) },
    };
  }

  /** What verify() needs to check this open bucket against the engine's live counts. */
  toVerify(): BucketToVerify {
    const table = this.tableOver();
    return {
      bucket: this.ix, table, saved: null, journalCommitted: journalCommitted(this.index as MappedFile),
      live: { count: this.ctx.engine.count(this.ix), dataCounts: this.ctx.engine.dataCounts(this.ix) },
    };
  }

  // ── allocation and growth ──────────────────────────────────────────────────────────────────────

  /** Creates the bucket's first index file, sized for the anticipated count if one was given. */
  allocate(): void {
    underMark(this.ctx, this.ix, () => this.createFirstFile());
  }

  private createFirstFile(): void {
    const record = emptyRecord();
    [record.seedLo, record.seedHi] = testHooks.fixedSeed ?? randomSeed();
    record.drive = Math.floor(Math.random() * this.ctx.drives.length);
    record.indexGen = 1;
    record.indexPages = this.firstIndexPages(this.anticipated);
    this.record = record;
    const file = this.createFile(null, 1, this.indexSpec(1, record.indexPages), null);
    try {
      this.ctx.manifest.set(this.ix, record);
    } catch (err) {
      if (!stoppedCleanly(err)) {
        // Maybe in force (see dropMade): the bucket takes it, and the repair rewrites its record.
        this.index = file;
        throw err;
      }
      this.dropFile(file);
      this.record = undefined;
      throw err;
    }
    this.index = file;
    this.dirty = true;
    this.unsynced = true;
    this.bindEngine(0, new Array<number>(SIZE_CLASSES).fill(0));
  }

  /** The size of a bucket's first index file, given the entries it expects. */
  private firstIndexPages(anticipated: number): number {
    return this.checkedPages(Math.max(INITIAL_INDEX_PAGES, pagesFor(anticipated)));
  }

  /**
   * The index pages this bucket has after anticipate(count): its first file's size if it has none
   * yet, the growth's target if its index is too small, null if its index is large enough. A count
   * past the largest index throws BUCKET_MAP_CAPACITY.
   */
  private pagesToAnticipate(count: number): number | null {
    if (this.index === null) return this.firstIndexPages(count);
    if (this.checkedPages(pagesFor(count)) <= this.index.spec.totalRecords) return null;
    // The growth takes at least its usual step.
    return this.targetPages(count, this.entryCount());
  }

  /**
   * Index bytes this bucket would add if sized for `count` entries now (0 if it is that big
   * already), for a caller checking maxBytes before it sizes many buckets.
   */
  bytesToAnticipate(count: number): number {
    const pages = this.pagesToAnticipate(count);
    if (pages === null) return 0;
    const spec = indexSpec(this.ctx, this.ix, this.record ?? emptyRecord(), 1, pages);
    return fileBytesFor(spec, this.ctx.segmentBytes) - (this.index === null ? 0 : this.index.bytes);
  }

  /**
   * Expects `count` entries: a bucket with files grows to hold them now, one without creates its
   * first file that large. Returns whether it grew. A count past the largest index is refused
   * (BUCKET_MAP_CAPACITY) before anything changes.
   */
  anticipate(count: number): boolean {
    const pages = this.pagesToAnticipate(count);
    const before = this.anticipated;
    // Never lowered: batchInsertNonDuplicates anticipates its own batch, which must not undo a
    // larger count the map was given for the whole load before the bucket had a file.
    this.anticipated = Math.max(before, count);
    try {
      // Decided on the file's size first, so a bucket opened lazily is not mapped for nothing.
      if (this.index === null || pages === null || !this.allocated) return false;
      this.growIndex(this.capacity, 'anticipated');
      return true;
    } catch (err) {
      // A growth that failed (a full disk) must not leave every later growth aiming at this size.
      this.anticipated = before;
      throw err;
    }
  }

  private checkedPages(pages: number): number {
    if (pages > MAX_INDEX_PAGES) {
      throw new BucketMapError(codes.CAPACITY, `bucket ${this.ix}: the index cannot grow past ${MAX_INDEX_PAGES * CELLS_PER_PAGE} cells`);
    }
    return pages;
  }

  /** The size the next index growth aims for, with `count` entries in the bucket. */
  private targetPages(anticipated = this.anticipated, count = this.ctx.engine.count(this.ix)): number {
    const current = (this.index as MappedFile).spec.totalRecords;
    const forLoad = Math.ceil(((count + 1) * LOAD_MAX_D) / LOAD_MAX_N / CELLS_PER_PAGE) + 1;
    return this.checkedPages(Math.max(nextIndexPages(current), pagesFor(anticipated), forLoad));
  }

  /**
   * Grows the index if it still has `observedCapacity` cells (a request made against an older
   * capacity has been served already: repeated requests coalesce). If a wide probe window
   * overflowed at low load, keys were aimed at it: the bucket is rehashed at the same size with a
   * new random seed instead, once per capacity.
   */
  growIndex(observedCapacity: number, reason: 'overflow' | 'anticipated' = 'overflow'): void {
    if (this.index === null || this.index.spec.capacity !== observedCapacity) return;
    underMark(this.ctx, this.ix, () => this.rebuildIndex(observedCapacity, reason));
  }

  private rebuildIndex(observedCapacity: number, reason: 'overflow' | 'anticipated'): void {
    const started = performance.now();
    const count = this.ctx.engine.count(this.ix);
    const reseed = reason === 'overflow' && this.ctx.maxSearch >= RESEED_MIN_SEARCH
      && count < observedCapacity * RESEED_BELOW_LOAD && this.reseededAt !== observedCapacity;
    const seed = copyRecord(this.record as BucketRecord);
    let pages = (this.index as MappedFile).spec.totalRecords;
    if (reseed) {
      [seed.seedLo, seed.seedHi] = randomSeed();
      this.reseededAt = observedCapacity;
      this.ctx.counters.reseeds++;
    } else {
      pages = this.targetPages();
    }
    const generation = seed.indexGen + 1;
    for (;;) {
      const file = this.createFile(null, generation, this.indexSpec(generation, pages, seed), this.index);
      let ok: boolean;
      let counts: [number, number[]];
      try {
        ok = this.ctx.engine.rehashInto(this.ix, file);
        counts = this.liveCounts();
      } catch (err) {
        this.dropFile(file);
        throw err;
      }
      if (ok) {
        this.switchIndex(file, generation, pages, counts[0], counts[1]); // past here the new file is the map's
        break;
      }
      this.ctx.counters.failedIndexResizes++;
      this.dropFile(file);
      pages = this.checkedPages(nextIndexPages(pages));
    }
    this.dirty = true;
    this.unsynced = true;
    this.ctx.counters.indexResizes++;
    this.ctx.counters.indexResizeMs += performance.now() - started;
  }

  /**
   * Rebuilds the bucket's files at `load` (live entries per cell) where that makes them smaller:
   * files never shrink on their own, so after many deletes this is how their disk comes back. The
   * index is rehashed into fewer pages; a data class whose lists fit a smaller file is copied into
   * one, with the new index pointing at the copies, and an empty class's file goes. Everything new
   * is complete before one write of the restart file switches to it, as for growth. Rehashing can
   * fail at a high load (a window overflows); each retry adds an eighth, and the index keeps its
   * size once a retry would be no smaller (and its file, unless a data file shrinks). Works on the
   * files with TypeScript tables for either engine, as repair does. Returns the bytes freed.
   */
  compact(load: number): number {
    // Decided on the files' sizes and the counts first, so a bucket opened lazily is not mapped
    // (and checked) for nothing: a compact() after a reopen would otherwise bind every bucket.
    if (!this.hasFiles || this.compactionPlan(load) === null || !this.allocated) return 0;
    // Mapping it may have repaired it (a header that disagreed with the close record): plan on
    // the counts it has now.
    const plan = this.compactionPlan(load);
    if (plan === null) return 0;
    return underMark(this.ctx, this.ix, () => this.rebuildSmaller(plan));
  }

  private rebuildSmaller(plan: CompactionPlan): number {
    const { count, dataCounts, target, current, dataPlan } = plan;
    const old = this.index as MappedFile;
    const started = performance.now();
    const generation = (this.record as BucketRecord).indexGen + 1;
    const source = this.tableOver(old);
    let built: { file: MappedFile; table: Table; pages: number } | null = null;
    for (const pages of compactionSizes(target, current, dataPlan.size > 0)) {
      built = this.buildIndexFrom(source, generation, pages);
      if (built !== null) break;
    }
    const bytes = (): number => this.files().reduce((sum, file) => sum + file.bytes, 0);
    const before = bytes();
    if (built !== null) {
      this.switchCompacted(built, generation, dataPlan, count, dataCounts);
      this.ctx.counters.compactions++;
    }
    const freed = before - bytes();
    this.ctx.counters.compactMs += performance.now() - started;
    return freed;
  }

  /**
   * What compact(load) would rebuild: the index's target size and the data classes to copy (with
   * the capacity each gets, -1 for an empty class whose file goes); null if nothing would shrink.
   * Reads no mapping, so it may be asked of a bucket opened lazily.
   */
  private compactionPlan(load: number): CompactionPlan | null {
    const current = (this.index as MappedFile).spec.totalRecords;
    const count = this.entryCount();
    const dataCounts = Array.from(this.dataCellCounts());
    const target = Math.max(INITIAL_INDEX_PAGES, Math.ceil(count / load / CELLS_PER_PAGE));
    const dataPlan = new Map<number, number>();
    for (let c = 0; c < SIZE_CLASSES; c++) {
      const file = this.data[c];
      if (file === null) continue;
      let pow2 = dataCounts[c] === 0 ? -1 : initialDataPow2(file.spec.cellBytes);
      while (pow2 >= 0 && 2 ** pow2 * load < dataCounts[c]) pow2++;
      // Fewer cells need not mean fewer bytes (files are whole pages): such a rebuild gives nothing back.
      const smaller = pow2 < 0 || fileBytesFor(this.dataSpec(c, file.spec.generation, pow2), this.ctx.segmentBytes) < file.bytes;
      if (pow2 < file.spec.capacityPow2 && smaller) dataPlan.set(c, pow2);
    }
    if (target >= current && dataPlan.size === 0) return null;
    return { count, dataCounts, target, current, dataPlan };
  }

  /** Rehashes `source` into a new index file of `pages` pages, or returns null (file gone) if some key found no room. */
  private buildIndexFrom(source: Table, generation: number, pages: number): { file: MappedFile; table: Table; pages: number } | null {
    const file = this.createFile(null, generation, this.indexSpec(generation, pages), this.index);
    try {
      const table = this.tableOver(file);
      if (table.rehashFrom(source)) return { file, table, pages };
    } catch (err) {
      this.dropFile(file);
      throw err;
    }
    this.dropFile(file);
    return null;
  }

  /**
   * Completes a compaction whose index `built` holds: copies the data classes of `dataPlan` into
   * their smaller files and points the new index at them, then switches the restart file to the
   * new files in one write (the commit point) and drops the old ones.
   */
  private switchCompacted(built: { file: MappedFile; table: Table; pages: number }, generation: number, dataPlan: Map<number, number>, count: number, dataCounts: number[]): void {
    const record = copyRecord(this.record as BucketRecord);
    record.indexGen = generation;
    record.indexPages = built.pages;
    const created: MappedFile[] = [built.file];
    const newData = new Map<number, MappedFile | null>();
    try {
      for (const [c, pow2] of dataPlan) {
        const gen = pow2 < 0 ? 0 : record.dataGen[c] + 1;
        const file = pow2 < 0 ? null : this.createFile(c, gen, this.dataSpec(c, gen, pow2), this.data[c]);
        if (file !== null) created.push(file);
        built.table.relocateData(c, file === null ? null : new DataFile(file), dataCounts[c]);
        record.dataGen[c] = gen;
        record.dataPow2[c] = Math.max(pow2, 0);
        newData.set(c, file);
      }
      this.ctx.manifest.set(this.ix, record);
    } catch (err) {
      for (const file of created) this.dropMade(file, err);
      throw err;
    }
    const classes = [...newData.keys()];
    const files = [...newData.values()];
    const retired: MappedFile[] = [...this.retired, this.index as MappedFile];
    for (const c of classes) if (this.data[c] !== null) retired.push(this.data[c] as MappedFile);
    // No call until the bucket's fields all name the new files: a write stopped in between is
    // repaired from them (see MapContext.writing), and must not find old and new mixed.
    this.retired = retired;
    this.record = record;
    this.index = built.file;
    for (let i = 0; i < classes.length; i++) this.data[classes[i]] = files[i];
    this.bindEngine(count, dataCounts);
    this.dropRetired();
    this.dirty = true;
    this.unsynced = true;
  }

  /**
   * Puts `file` in force: the restart file names it, the engine reads it, and only then is the old
   * index retired. Retiring truncates it, so an engine still bound to it would SIGBUS on its next read.
   */
  private switchIndex(file: MappedFile, generation: number, pages: number, count: number, dataCounts: ArrayLike<number>): void {
    const record = copyRecord(this.record as BucketRecord);
    record.indexGen = generation;
    record.indexPages = pages;
    record.seedLo = file.spec.seedLo;
    record.seedHi = file.spec.seedHi;
    try {
      this.ctx.manifest.set(this.ix, record);
    } catch (err) {
      // Not in force: the file goes, and the bucket carries on with the index it has.
      this.dropMade(file, err);
      throw err;
    }
    // No call until the old index is listed as retired and the fields name the new one.
    this.retired[this.retired.length] = this.index as MappedFile;
    this.record = record;
    this.index = file;
    this.bindEngine(count, dataCounts);
    this.dropRetired();
  }

  /**
   * Creates the data file of a size class, or doubles it with a spaced copy (cell j → 2j, so the
   * index entries stay valid). `observedPow2` is the capacity the caller saw (-1: no file yet).
   */
  growData(sizeClass: number, observedPow2: number): void {
    const current = this.data[sizeClass];
    const currentPow2 = current === null ? -1 : current.spec.capacityPow2;
    if (this.index === null || currentPow2 !== observedPow2) return;
    underMark(this.ctx, this.ix, () => this.replaceData(sizeClass, current));
  }

  private replaceData(sizeClass: number, current: MappedFile | null): void {
    const currentPow2 = current === null ? -1 : current.spec.capacityPow2;
    const started = performance.now();
    const cellBytes = dataCellBytes(sizeClass, this.ctx.elementSize);
    let pow2: number;
    if (current === null) {
      pow2 = initialDataPow2(cellBytes);
    } else {
      pow2 = currentPow2 + 1;
    }
    if (pow2 > MAX_DATA_POW2) {
      throw new BucketMapError(codes.CAPACITY, `bucket ${this.ix}: data class ${sizeClass} cannot grow past 2^${MAX_DATA_POW2} cells`);
    }
    const record = copyRecord(this.record as BucketRecord);
    const generation = record.dataGen[sizeClass] + 1;
    const file = this.createFile(sizeClass, generation, this.dataSpec(sizeClass, generation, pow2), current);
    let counts: [number, number[]];
    try {
      if (current !== null) this.ctx.engine.copyDataInto(this.ix, sizeClass, file);
      counts = this.liveCounts();
      record.dataGen[sizeClass] = generation;
      record.dataPow2[sizeClass] = pow2;
      this.ctx.manifest.set(this.ix, record);
    } catch (err) {
      this.dropMade(file, err);
      throw err;
    }
    const [count, dataCounts] = counts;
    // No call until the bucket's fields name the new file (see switchCompacted).
    if (current !== null) this.retired[this.retired.length] = current;
    this.record = record;
    this.data[sizeClass] = file;
    this.bindEngine(count, dataCounts);
    this.dropRetired();
    if (current !== null) {
      this.ctx.counters.dataResizes++;
      // Only the resizes counted: a class's first file is no resize (as a bucket's first index isn't).
      this.ctx.counters.dataResizeMs += performance.now() - started;
    }
    this.dirty = true;
    this.unsynced = true;
  }

  // ── flushing ───────────────────────────────────────────────────────────────────────────────────

  /** Called before the first change after a flush: the header says dirty until counts are saved. */
  markDirty(): void {
    if (this.ctx.readOnly) throw readOnlyError();
    if (!this.dirty) {
      this.ctx.beforeChange();
      markDirty(this.index as MappedFile);
      this.dirty = true;
      this.unsynced = true;
    }
    if (this.pending === null && this.index !== null) this.ctx.writable[this.ix] = 1;
  }

  /** msync and fsync this bucket's files if it changed since the last durable flush. */
  syncFiles(): void {
    if (!this.unsynced) return;
    for (const file of this.files()) {
      file.sync();
      for (const p of file.segmentPaths) fsyncPath(p);
    }
    this.unsynced = false;
  }

  /** Saves counts and marks the bucket clean. */
  saveCounts(): void {
    if (!this.dirty || this.index === null) return;
    const [count, dataCounts] = this.liveCounts();
    saveCounts(this.index, count, dataCounts);
    this.dirty = false;
    this.ctx.writable[this.ix] = 0;
  }

  files(): MappedFile[] {
    const out: MappedFile[] = [];
    if (this.index !== null) out.push(this.index);
    for (const d of this.data) if (d !== null) out.push(d);
    return out;
  }

  /** Drops the mappings; with `remove`, deletes the files too (maps without a restart file). */
  close(remove: boolean): void {
    this.closed = true;
    this.ctx.writable[this.ix] = 0;
    this.pending = null;
    this.vouched = false;
    // Retired files too: a stopped switch that no repair followed (close() of a map without a
    // restart file runs no flush) leaves them.
    for (const file of [...this.files(), ...this.retired]) {
      if (remove) {
        this.ctx.usage.bytes -= file.bytes;
        file.unlink();
      }
      file.release();
    }
    this.index = null;
    this.data.fill(null);
    this.retired = [];
  }
}
