/**
 * BucketMap: the facade (Agave's BucketMap). It validates the configuration, owns the drives, the
 * restart file and the engine, routes each key to its bucket, and adds Map-style conveniences on
 * top of the same code paths.
 */
import { types } from 'node:util';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Bucket, NoSpace, checkRefCount, encodeSlotList, putMarked, removeMarked, type Entry, type MapGuard } from './bucket.js';
import { BATCH_WRITE, BucketStorage, NO_WRITE, checkDriveOrder, markAfterError, openBucketFiles, readOnlyError, sameCounts, tableOverFiles, type FileLayout, type MapContext } from './bucket-storage.js';
import { Batcher, checkOffset, type KeyBatch } from './batch.js';
import { checkCodec, codecs, type ElementCodec } from './codecs.js';
import { HostEngine, NO_BUCKET, type Engine, type EngineKind } from './engine.js';
import { BucketMapError, checkPlatform, codes, ioError } from './errors.js';
import { bucketIndexAt, bucketIndexOf, byteLength, keptWhole, toKeyBytes, type Key } from './keys.js';
import { PackedKeys, type PackedHost } from './packed-keys.js';
import { COMPACT_LOAD, DEFAULT_SEGMENT_BYTES, LOAD_MAX_D, LOAD_MAX_N, SIZE_CLASSES, maxSlotsFor } from './layout.js';
import { Manifest } from './manifest.js';
import { CloseRecord } from './close-record.js';
import { Counters, type BucketMapStats } from './stats.js';
import { PUT_NEW, PUT_UPDATED, type ValueRef } from './table.js';
import { BUCKET_FILE_PATTERN, SPARE_FILE_PATTERN, SparePool, fsyncPath, mapFilePrefix, mappings } from './storage.js';
import { MapLock, removeDrafts } from './lock.js';
import { createTempFolder, removeTempFolder, scheduleFileRemoval } from './temp-folder.js';
import { journalCommitted, readSavedCounts } from './restart.js';
import { addProblem, emptyReport, staleRecordProblem, verifyBucket, type VerifyReport } from './verify.js';
import { WasmEngine, DEFAULT_CACHE_BYTES, MIN_CACHE_BYTES, MAX_CACHE_BYTES } from './wasm-engine.js';
import { copyToBytes } from './copy.js';

export interface BucketMapConfig<T = Uint8Array> {
  /** Number of buckets (shards): a power of two from 1 to 65,536. Required. */
  maxBuckets: number;
  /** Folders for the bucket files. Default: next to restartFile, or a new temporary folder. */
  drives?: readonly string[];
  /** How many cells from its home cell a key may sit (1..255, default 32). */
  maxSearch?: number;
  /** When set, the map is persistent: reopening with the same configuration restores everything. */
  restartFile?: string;
  /** Element codec of slot lists; default codecs.bytes(16). */
  codec?: ElementCodec<T>;
  /** Page-cache budget of the wasm engine, in bytes (default 64 MiB). */
  cacheBytes?: number;
  /** 'host' (TypeScript on the mapped files, the default) or 'wasm' (the AssemblyScript core). */
  engine?: EngineKind;
  /** Advanced: size of the segment files a bucket file is split into (default 1 GiB). */
  segmentBytes?: number;
  /** Ceiling on the bytes of all bucket files; growth past it fails with BUCKET_MAP_SIZE_LIMIT. */
  maxBytes?: number;
  /**
   * Check every bucket file (type, size, header, saved counts) at open even after a clean close,
   * so that a damaged or missing file fails the open rather than its bucket's first use. Default
   * false: after a clean close the open reads the close record instead (README, Persistence).
   */
  checkFilesAtOpen?: boolean;
  /**
   * Linux: have the kernel cache and map the bucket files in 2 MiB pages where it can (ext4 and
   * others with large folios, transparent huge pages not `never`), so random accesses to a large
   * index miss the TLB far less: on the host path, per-key gets 1.32× as fast at 10M keys in 16
   * buckets (bench/RESULTS.md, (j); the wasm engine, which copies pages into its own cache, gained
   * nothing measurable), and a map read back from disk loads 2 MiB per fault. It needs index
   * files of 2 MiB or more. The price: the first store to a 2 MiB page the kernel has written back
   * dirties all of it, so random writes to an index larger than the kernel's dirty limits slow down
   * (README, Performance). Not part of the format: a map opens with either setting. Default false.
   */
  hugePages?: boolean;
  /**
   * Open an existing persistent map for reading only (needs `restartFile`): any number of
   * read-only opens, in threads or processes, share the map at once, and none while it is open for
   * writing (LOCKED either way). Files are mapped read-only and every write throws READ_ONLY. The
   * map must have been closed cleanly by its last writer (else NEEDS_RECOVERY: open it for writing
   * once). Default false.
   */
  readOnly?: boolean;
}

export interface FlushOptions {
  /** Also msync every mapping and fsync files and folders, so the state survives power loss. */
  durable?: boolean;
}

export interface CompactOptions {
  /**
   * Live entries per cell to size each file for (index cells, and data cells of each list size),
   * above 0 and at most 0.9 (where growth starts); default 0.85. The closer to 0.9, the less disk
   * and the sooner the next growth.
   */
  load?: number;
}

/** What compact() did. */
export interface CompactReport {
  /** Buckets whose files were rebuilt smaller. */
  buckets: number;
  /** Bytes of bucket files given back (the files' sizes before less after). */
  bytesFreed: number;
  ms: number;
}

const DEFAULT_MAX_SEARCH = 32;
const MIN_SEGMENT_BYTES = 64 * 1024;

interface ResolvedConfig {
  maxBuckets: number;
  maxSearch: number;
  restartFile: string | null;
  codec: ElementCodec<unknown>;
  cacheBytes: number;
  engine: EngineKind;
  segmentBytes: number;
  maxBytes: number;
  drives: string[] | null;
  checkFilesAtOpen: boolean;
  hugePages: boolean;
  readOnly: boolean;
}

const CONFIG_OPTIONS: ReadonlyArray<keyof BucketMapConfig> = [
  'maxBuckets', 'drives', 'maxSearch', 'restartFile', 'codec', 'cacheBytes', 'engine', 'segmentBytes', 'maxBytes',
  'checkFilesAtOpen', 'hugePages', 'readOnly',
];

/**
 * An options object's own enumerable keys must all be options: a misspelt `restartFile` would
 * leave a map temporary (its files removed at close) that was meant to persist, a misspelt
 * `readOnly` would open it for writing, a misspelt `durable` would skip the fsync.
 */
function checkOptionNames(options: object, known: readonly string[], what: string): void {
  for (const name of Object.keys(options)) {
    if (known.includes(name)) continue;
    const near = known.find((k) => k.toLowerCase() === name.toLowerCase());
    throw new TypeError(`${what} has no option '${name}'${near === undefined ? `; its options are ${known.join(', ')}` : ` (did you mean '${near}'?)`}`);
  }
}

/**
 * Each option of `options`, read once: a getter or Proxy answering differently on a second read
 * cannot slip a value past the checks. A value found only on Object.prototype is prototype
 * pollution, not the caller's option, and counts as absent.
 */
function readOptions<K extends string>(options: object, names: readonly K[]): Record<K, unknown> {
  const out = {} as Record<K, unknown>;
  for (const name of names) out[name] = pollutedOnly(options, name) ? undefined : Reflect.get(options, name);
  return out;
}

function pollutedOnly(options: object, name: string): boolean {
  if (!Object.prototype.hasOwnProperty.call(Object.prototype, name)) return false;
  for (let o: object | null = options; o !== null && o !== Object.prototype; o = Reflect.getPrototypeOf(o)) {
    if (Object.prototype.hasOwnProperty.call(o, name)) return false;
  }
  return true;
}

const FLUSH_OPTIONS: ReadonlyArray<keyof FlushOptions> = ['durable'];
const COMPACT_OPTIONS: ReadonlyArray<keyof CompactOptions> = ['load'];

function resolveConfig(config: unknown): ResolvedConfig {
  if (config === null || typeof config !== 'object') throw new TypeError('config must be an object');
  checkOptionNames(config, CONFIG_OPTIONS, 'config');
  const c = readOptions(config, CONFIG_OPTIONS);
  const integer = (name: string, value: unknown, min: number, max: number): number => {
    if (typeof value !== 'number') throw new TypeError(`${name} must be a number, got ${typeof value}`);
    if (!Number.isInteger(value) || value < min || value > max) throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${value}`);
    return value;
  };
  const maxBuckets = integer('maxBuckets', c.maxBuckets, 1, 65536);
  if ((maxBuckets & (maxBuckets - 1)) !== 0) throw new RangeError(`maxBuckets must be a power of two, got ${maxBuckets}`);
  const maxSearch = c.maxSearch === undefined ? DEFAULT_MAX_SEARCH : integer('maxSearch', c.maxSearch, 1, 255);
  let restartFile: string | null = null;
  if (c.restartFile !== undefined) {
    if (typeof c.restartFile !== 'string' || c.restartFile.length === 0) throw new TypeError('restartFile must be a non-empty string');
    if (c.restartFile.includes('\0')) throw new TypeError('restartFile must not contain a NUL character');
    restartFile = path.resolve(c.restartFile);
  }
  let drives: string[] | null = null;
  if (c.drives !== undefined) {
    if (!Array.isArray(c.drives)) throw new TypeError('drives must be a non-empty array of folder paths');
    const given: unknown[] = Array.from(c.drives as unknown[]); // its length and each element read once
    if (given.length === 0) throw new TypeError('drives must be a non-empty array of folder paths');
    if (given.length > 255) throw new RangeError('drives may name at most 255 folders');
    drives = given.map((d: unknown, i: number) => {
      if (typeof d !== 'string' || d.length === 0) throw new TypeError(`drives[${i}] must be a non-empty string`);
      if (d.includes('\0')) throw new TypeError(`drives[${i}] must not contain a NUL character`);
      return path.resolve(d);
    });
    if (new Set(drives).size !== drives.length) throw new RangeError('drives must not name the same folder twice');
  }
  const codec = c.codec === undefined ? codecs.bytes(16) : checkCodec(c.codec);
  const cacheBytes = c.cacheBytes === undefined ? DEFAULT_CACHE_BYTES : integer('cacheBytes', c.cacheBytes, MIN_CACHE_BYTES, MAX_CACHE_BYTES);
  // The default is the engine the benchmark found faster on mixed gets and inserts (bench/RESULTS.md).
  let engine: EngineKind = 'host';
  if (c.engine !== undefined) {
    if (c.engine !== 'wasm' && c.engine !== 'host') throw new TypeError(`engine must be 'wasm' or 'host', got ${String(c.engine)}`);
    engine = c.engine;
  }
  let segmentBytes = DEFAULT_SEGMENT_BYTES;
  if (c.segmentBytes !== undefined) {
    segmentBytes = integer('segmentBytes', c.segmentBytes, MIN_SEGMENT_BYTES, DEFAULT_SEGMENT_BYTES);
    if (segmentBytes % 1024 !== 0) throw new RangeError('segmentBytes must be a multiple of 1024');
  }
  let maxBytes = Infinity;
  if (c.maxBytes !== undefined) {
    if (typeof c.maxBytes !== 'number') throw new TypeError(`maxBytes must be a number, got ${typeof c.maxBytes}`);
    if (!Number.isSafeInteger(c.maxBytes) || c.maxBytes < 1) throw new RangeError(`maxBytes must be a positive integer, got ${c.maxBytes}`);
    maxBytes = c.maxBytes;
  }
  if (c.checkFilesAtOpen !== undefined && typeof c.checkFilesAtOpen !== 'boolean') {
    throw new TypeError(`checkFilesAtOpen must be a boolean, got ${typeof c.checkFilesAtOpen}`);
  }
  const checkFilesAtOpen = c.checkFilesAtOpen === true;
  if (c.hugePages !== undefined && typeof c.hugePages !== 'boolean') throw new TypeError(`hugePages must be a boolean, got ${typeof c.hugePages}`);
  const hugePages = c.hugePages === true;
  if (c.readOnly !== undefined && typeof c.readOnly !== 'boolean') throw new TypeError(`readOnly must be a boolean, got ${typeof c.readOnly}`);
  const readOnly = c.readOnly === true;
  if (readOnly && restartFile === null) throw new TypeError('readOnly needs a restartFile: it opens an existing persistent map');
  return { maxBuckets, maxSearch, restartFile, codec, cacheBytes, engine, segmentBytes, maxBytes, drives, checkFilesAtOpen, hugePages, readOnly };
}

/**
 * Makes `dir` if needed and checks it can be written. Folders it made are added to `made` (deepest
 * last), for an open that fails to take away again.
 */
function ensureWritableDir(dir: string, made: string[]): void {
  try {
    const first = fs.mkdirSync(dir, { recursive: true });
    if (first !== undefined) {
      const start = made.length;
      for (let d = dir; ; d = path.dirname(d)) {
        made.splice(start, 0, d);
        if (d === first || d === path.dirname(d)) break;
      }
    }
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (err) {
    throw ioError(`drive ${dir} cannot be used`, err, dir);
  }
  if (!fs.statSync(dir).isDirectory()) throw new BucketMapError(codes.IO, `drive ${dir} is not a directory`, { file: dir });
}

/** A read-only map's drive must exist (nothing is created for a reader). */
function checkExistingDir(dir: string): void {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BucketMapError(codes.FILE_MISSING, `drive ${dir} does not exist`, { file: dir });
    throw ioError(`drive ${dir} cannot be used`, err, dir);
  }
  if (!stat.isDirectory()) throw new BucketMapError(codes.IO, `drive ${dir} is not a directory`, { file: dir });
}

/**
 * Drives must be different folders, not only different paths: through a symbolic link, a bind
 * mount or a case-insensitive file system two paths can name one folder, and then each drive's
 * files would look like strays of the other's to the sweep after a crash, which removes them.
 */
function checkDistinctDrives(drives: readonly string[]): void {
  if (drives.length < 2) return;
  const seen = new Map<string, number>();
  drives.forEach((dir, i) => {
    let dev: bigint, ino: bigint;
    try {
      ({ dev, ino } = fs.statSync(dir, { bigint: true }));
    } catch (err) {
      throw ioError(`drive ${dir} cannot be used`, err, dir);
    }
    const first = seen.get(`${dev}:${ino}`);
    if (first !== undefined) throw new RangeError(`drives[${i}] (${dir}) is the same folder as drives[${first}] (${drives[first]})`);
    seen.set(`${dev}:${ino}`, i);
  });
}

/**
 * The close record of a read-only open, which must vouch for every bucket: a reader repairs nothing,
 * so a map whose last writer did not close it cleanly is refused.
 */
function cleanCloseRecord(restartFile: string, manifest: Manifest, maxBuckets: number): CloseRecord {
  const { record } = CloseRecord.read(restartFile, manifest.config.mapId, maxBuckets);
  const unclean = (why: string) => new BucketMapError(codes.NEEDS_RECOVERY, `${restartFile}: ${why}; open it for writing once (that repairs it), then read-only`, { file: restartFile });
  if (record === null) throw unclean('the map was not closed cleanly (no valid close record)');
  for (const [ix] of manifest.allocated()) {
    if (record.countsFor(ix, manifest.seq(ix)) === null) throw unclean(`bucket ${ix} changed after the close record was written`);
  }
  return record;
}

/** A drive's entries; a folder that cannot be listed is BUCKET_MAP_IO, as any refused file operation. */
function listDrive(dir: string): fs.Dirent[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    throw ioError(`cannot list drive ${dir}`, err, dir);
  }
}

function mapIdInUse(drives: readonly string[], mapId: number): boolean {
  const prefix = mapFilePrefix(mapId);
  return drives.some((d) => listDrive(d).some((entry) => entry.name.startsWith(prefix)));
}

/** The steps of a release, each run whatever the ones before did; the first failure is kept. */
class ReleaseSteps {
  failed = false;
  private failure: unknown;

  run(step: () => void): void {
    try {
      step();
    } catch (err) {
      if (this.failed) return;
      this.failed = true;
      this.failure = err;
    }
  }

  /** Throws the first failure, if any: an operating system's refusal (it names its system call) as IO. */
  throwFirst(what: string): void {
    if (!this.failed) return;
    const err = this.failure;
    const refused = !(err instanceof BucketMapError) && typeof (err as NodeJS.ErrnoException | null)?.syscall === 'string';
    throw refused ? ioError(what, err, (err as NodeJS.ErrnoException).path) : err;
  }
}

export class BucketMap<T = Uint8Array> implements Iterable<[Uint8Array, Entry<T>]> {
  private readonly ctx: MapContext;
  private readonly storages: BucketStorage[];
  private readonly buckets: Array<Bucket<T> | undefined>;
  private readonly codec: ElementCodec<T>;
  /** Most elements a slot list can hold with this codec. */
  private readonly maxSlots: number;
  private readonly bits: number;
  private readonly batcher: Batcher<T>;
  private readonly packedHost: PackedHost<T>;
  /** The refCount found by the last readInto() that found its key. */
  lastRefCount = 0;
  private readonly persistent: boolean;
  private readonly ownedTempDir: string | null;
  /** A temporary map in drives the caller gave: stops its files' removal at exit (close() removes them). */
  private forgetFilesAtExit: (() => void) | null = null;
  private readonly guard: MapGuard;
  private readonly lock: MapLock | null;
  private closed = false;
  /** A close record exists beside the restart file: the first change must remove it. */
  private closeRecordPresent = false;

  constructor(config: BucketMapConfig<T>) {
    const started = performance.now();
    checkPlatform(os.endianness());
    const cfg = resolveConfig(config);
    this.guard = {
      enter: () => this.enter(),
      enterWrite: () => this.enterWrite(),
      runCallback: <R>(fn: () => R): R => this.runCallback(fn),
      userCode: false,
      entries: 0,
    };
    // A codec runs only where the caller's code is flagged (guard.userCode): encodeSlotList,
    // Bucket.decode and the batched calls, so a map call from inside it is REENTRANT.
    this.codec = cfg.codec as ElementCodec<T>;
    this.maxSlots = maxSlotsFor(this.codec.size);
    this.bits = Math.log2(cfg.maxBuckets);
    this.persistent = cfg.restartFile !== null;

    let drives = cfg.drives;
    let ownedTempDir: string | null = null;
    if (drives === null) {
      if (cfg.restartFile !== null) {
        drives = [`${cfg.restartFile}.buckets`];
      } else {
        ownedTempDir = createTempFolder();
        drives = [ownedTempDir];
      }
    }
    this.ownedTempDir = ownedTempDir;
    let manifest: Manifest | null = null;
    let lock: MapLock | null = null;
    let storages: BucketStorage[] = [];
    let createdRestartFile = false;
    // Folders this open made (drives, the restart file's), removed if it fails: a refused open
    // (CONFIG_MISMATCH, drives that are one folder) changes nothing on disk.
    const madeDirs: string[] = [];
    let engine: Engine | null = null;
    const self = this;
    // The restart file of a read-only open (resolveConfig requires one), else null.
    const readerOf = cfg.readOnly ? cfg.restartFile : null;
    try {
      if (readerOf !== null) {
        // A reader writes nothing of the map's: it takes a shared hold and removes no drafts.
        lock = MapLock.acquireShared(`${readerOf}.lock`);
      } else if (cfg.restartFile !== null) {
        ensureWritableDir(path.dirname(cfg.restartFile), madeDirs);
        lock = MapLock.acquire(`${cfg.restartFile}.lock`);
        // Drafts a kill left beside the restart file (of it, or of the lock: see lock.ts). Looked
        // for only when the last session did not end in a clean close, so that a clean reopen does
        // not list the folder. Restart-file drafts are written only by a lock holder, so all go.
        if (lock.tookOver || !fs.existsSync(CloseRecord.path(cfg.restartFile))) {
          removeDrafts(cfg.restartFile, false);
          removeDrafts(`${cfg.restartFile}.lock`, true);
        }
      }
      for (const d of drives) {
        if (cfg.readOnly) checkExistingDir(d);
        else ensureWritableDir(d, madeDirs);
      }
      checkDistinctDrives(drives);
      const base = { maxBuckets: cfg.maxBuckets, elementSize: cfg.codec.size, maxSearch: cfg.maxSearch, drives: drives.length };
      if (readerOf !== null) {
        if (!Manifest.exists(readerOf)) throw new BucketMapError(codes.FILE_MISSING, `${readerOf}: no map to open read-only`, { file: readerOf });
        manifest = Manifest.openReadOnly(readerOf, base);
      } else if (cfg.restartFile !== null && Manifest.exists(cfg.restartFile)) {
        manifest = Manifest.open(cfg.restartFile, base);
      } else {
        let mapId = 0;
        do mapId = randomBytes(4).readUInt32LE(0); while (mapId === 0 || mapIdInUse(drives, mapId));
        const full = { ...base, segmentBytes: cfg.segmentBytes, mapId };
        if (cfg.restartFile !== null) {
          manifest = Manifest.create(cfg.restartFile, full);
          createdRestartFile = true;
        } else {
          manifest = Manifest.inMemory(full);
        }
      }
      if (lock !== null && cfg.restartFile !== null) lock.guard(cfg.restartFile);
      let closeRecord: CloseRecord | null = null;
      if (readerOf !== null) {
        closeRecord = cleanCloseRecord(readerOf, manifest, cfg.maxBuckets);
        this.closeRecordPresent = true;
      } else if (cfg.restartFile !== null) {
        const found = CloseRecord.read(cfg.restartFile, manifest.config.mapId, cfg.maxBuckets);
        if (!createdRestartFile && !cfg.checkFilesAtOpen) closeRecord = found.record;
        this.closeRecordPresent = found.present;
      }
      const restartFile = cfg.restartFile;
      engine = cfg.engine === 'wasm'
        ? new WasmEngine({ maxBuckets: cfg.maxBuckets, maxSearch: cfg.maxSearch, elementSize: cfg.codec.size, cacheBytes: cfg.cacheBytes })
        : new HostEngine(cfg.maxBuckets, cfg.maxSearch, cfg.codec.size);
      this.ctx = {
        maxBuckets: cfg.maxBuckets, maxSearch: cfg.maxSearch, elementSize: cfg.codec.size,
        segmentBytes: manifest.config.segmentBytes, mapId: manifest.config.mapId, drives: Object.freeze(drives.slice()), hugePages: cfg.hugePages,
        manifest, engine, counters: new Counters(), usage: { bytes: 0, maxBytes: cfg.maxBytes },
        spares: new SparePool(manifest.config.mapId),
        beforeChange: () => {
          if (cfg.readOnly) throw readOnlyError();
          if (!self.closeRecordPresent || restartFile === null) return;
          CloseRecord.remove(restartFile);
          self.closeRecordPresent = false;
        },
        adjustEntries: (delta: number) => {
          self.guard.entries += delta;
        },
        writable: new Uint8Array(cfg.maxBuckets),
        versions: new Float64Array(cfg.maxBuckets),
        readOnly: cfg.readOnly,
        writing: NO_WRITE,
        writingBatch: 0,
      };
      if (manifest.file !== null) checkDriveOrder(this.ctx, manifest.allocated(), manifest.file);
      if (!this.persistent && ownedTempDir === null) this.forgetFilesAtExit = scheduleFileRemoval(drives, mapFilePrefix(manifest.config.mapId));
      storages = new Array<BucketStorage>(cfg.maxBuckets);
      for (let ix = 0; ix < cfg.maxBuckets; ix++) storages[ix] = new BucketStorage(this.ctx, ix);
      this.storages = storages;
      this.buckets = new Array<Bucket<T> | undefined>(cfg.maxBuckets);
      let everyBucketVouched = closeRecord !== null;
      for (const [ix, record] of manifest.allocated()) {
        const vouched = closeRecord === null ? null : closeRecord.countsFor(ix, manifest.seq(ix));
        storages[ix].open(record, vouched);
        if (vouched !== null) this.ctx.counters.deferredBuckets++;
        else everyBucketVouched = false;
        this.guard.entries += storages[ix].entryCount();
      }
      // Files no record names come only from a crash, and every crash that can leave one (during
      // growth, a change) came after the close record was removed: a record that vouches for every
      // bucket means the open that preceded it already cleared the folders, and close() removes
      // its spares before writing the record. Scanning a drive of 1,024 files was the slowest step
      // of such an open.
      if (this.persistent && !everyBucketVouched) this.removeStrayFiles();
      // checkFilesAtOpen on a reader: map and check every bucket now (a header that disagrees with
      // the close record is NEEDS_RECOVERY) instead of at first use.
      // None is then left to first use, as for a writer with checkFilesAtOpen (which reads no record).
      if (cfg.readOnly && cfg.checkFilesAtOpen) {
        for (const storage of storages) void storage.allocated;
        this.ctx.counters.deferredBuckets = 0;
      }
    } catch (err) {
      // Every step runs, and none replaces the open's own error: a reader file that cannot be
      // removed would otherwise turn NEEDS_RECOVERY into IO and leave the folders made behind.
      // What a failed step left is what a crash leaves, and the next open clears it.
      const undo = new ReleaseSteps();
      for (const s of storages) undo.run(() => s.close(false));
      undo.run(() => engine?.close());
      undo.run(() => manifest?.close());
      if (createdRestartFile && cfg.restartFile !== null) undo.run(() => fs.rmSync(cfg.restartFile!, { force: true }));
      if (ownedTempDir !== null) undo.run(() => removeTempFolder(ownedTempDir!));
      undo.run(() => lock?.release());
      // Only if empty (rmdir): whatever another process put there stays.
      for (let i = madeDirs.length - 1; i >= 0; i--) undo.run(() => fs.rmdirSync(madeDirs[i]));
      throw err;
    }
    this.lock = lock;
    this.packedHost = {
      map: this,
      readInto: (keys, koff, target, offset) => {
        self.enter();
        return self.readIntoAt(keys, koff, target, offset);
      },
      has: (keys, koff) => {
        self.enter();
        return self.lookup(keys, koff) !== null;
      },
      enter: () => self.enter(),
      enterWrite: () => self.enterWrite(),
    };
    this.batcher = new Batcher<T>({
      ctx: this.ctx, storages: this.storages, codec: this.codec, guard: this.guard, bits: this.bits,
      rewriteRef: (ix, k, delta) => this.bucketAt(ix).rewriteRef(k, delta),
    });
    this.ctx.counters.openMs = performance.now() - started;
  }

  /** Removes this map's files that no record references (left by a crash during growth). */
  private removeStrayFiles(): void {
    // Referenced files by folder and name (segment and extension stripped), with their segment
    // counts: no path is built for the files kept, which are nearly all of them.
    const keep = new Map<string, number>();
    for (const storage of this.storages) for (const file of storage.files()) keep.set(`${file.dir}\0${file.name}`, file.segmentSizes.length);
    for (const dir of this.ctx.drives) {
      for (const entry of listDrive(dir)) {
        if (entry.isDirectory()) continue; // not ours, whatever its name: the map makes only files
        const name = entry.name;
        const bucketFile = BUCKET_FILE_PATTERN.exec(name);
        const m = bucketFile ?? SPARE_FILE_PATTERN.exec(name);
        if (m === null || parseInt(m[1], 16) !== this.ctx.mapId) continue;
        if (bucketFile !== null) {
          const [, id, ix, kind, generation, segment] = bucketFile;
          const segments = keep.get(`${dir}\0${id}-b${ix}.${kind}.${generation}`) ?? 0;
          if (String(Number(segment)) === segment && Number(segment) < segments) continue;
        }
        try {
          fs.rmSync(path.join(dir, name), { force: true });
        } catch (err) {
          throw ioError('cannot remove a file left by a crash', err, path.join(dir, name));
        }
        this.ctx.counters.removedFiles++;
      }
    }
  }

  // ── guards ─────────────────────────────────────────────────────────────────────────────────────

  private enter(): void {
    if (this.closed) throw new BucketMapError(codes.CLOSED, 'the map is closed');
    if (this.guard.userCode) throw new BucketMapError(codes.REENTRANT, 'map methods cannot be called from code a map call runs: an update() callback, a codec, a getter of an argument');
    if (this.ctx.writing !== NO_WRITE) this.repairStoppedWrite();
  }

  /**
   * A write stopped part way (see MapContext.writing): repairs its buckets before anything reads
   * them, as an open after a crash at that point would, and recounts the map. A repair that fails
   * leaves the mark, so every later call (close() too, through its flush) tries again and fails
   * alike rather than serve the half-written bucket; the bucket's header stays dirty, and the next
   * open repairs it.
   */
  private repairStoppedWrite(): void {
    const ctx = this.ctx;
    const started = performance.now();
    ctx.engine.settle();
    const buckets = new Set<number>();
    if (ctx.writing === BATCH_WRITE) {
      const named = ctx.engine.batch.buckets;
      for (let i = 0; i < ctx.writingBatch; i++) if (named[i] !== NO_BUCKET) buckets.add(named[i]);
    } else {
      buckets.add(ctx.writing);
    }
    let repaired = 0;
    for (const ix of buckets) if (this.storages[ix].repairStopped()) repaired++;
    let entries = 0;
    for (const storage of this.storages) entries += storage.entryCount();
    this.guard.entries = entries;
    ctx.writing = NO_WRITE;
    ctx.counters.stoppedWrites++;
    ctx.counters.stoppedWriteRepairs += repaired;
    ctx.counters.stoppedWriteMs += performance.now() - started;
  }

  /** enter() for a call that writes: refused on a read-only map before its arguments are read. */
  private enterWrite(): void {
    this.enter();
    if (this.ctx.readOnly) throw readOnlyError();
  }

  private runCallback<R>(fn: () => R): R {
    const was = this.guard.userCode;
    this.guard.userCode = true;
    try {
      return fn();
    } finally {
      this.guard.userCode = was;
    }
  }

  private bucketFor(k: Uint8Array): Bucket<T> {
    return this.bucketAt(bucketIndexOf(k, this.bits));
  }

  private bucketAt(ix: number): Bucket<T> {
    let bucket = this.buckets[ix];
    if (bucket === undefined) {
      bucket = new Bucket<T>(this.ctx, this.storages[ix], this.codec, this.guard);
      this.buckets[ix] = bucket;
    }
    return bucket;
  }

  // ── routing ────────────────────────────────────────────────────────────────────────────────────

  /** Whether the map was opened with `readOnly: true`. */
  get readOnly(): boolean {
    return this.ctx.readOnly;
  }

  get numBuckets(): number {
    return this.ctx.maxBuckets;
  }

  /** The folders holding the bucket files (a temporary folder when none was configured). */
  get drives(): readonly string[] {
    return this.ctx.drives;
  }

  /** The bucket a key belongs to: the top log2(maxBuckets) bits of its first bytes. */
  bucketIx(key: Key): number {
    this.enter();
    return bucketIndexOf(toKeyBytes(key, 'key', this.guard), this.bits);
  }

  getBucket(key: Key): Bucket<T> {
    this.enter();
    return this.bucketFor(toKeyBytes(key, 'key', this.guard));
  }

  getBucketFromIndex(ix: number): Bucket<T> {
    this.enter();
    if (typeof ix !== 'number') throw new TypeError(`bucket index must be a number, got ${typeof ix}`);
    if (!Number.isInteger(ix) || ix < 0 || ix >= this.ctx.maxBuckets) {
      throw new RangeError(`bucket index must be an integer from 0 to ${this.ctx.maxBuckets - 1}, got ${ix}`);
    }
    return this.bucketAt(ix);
  }

  /**
   * Expects `total` entries in all: sizes every bucket's index for its share of them, so that a bulk
   * load of that many keys grows no file on the way. Keys are taken to spread over the buckets as
   * public keys do (evenly at random), and each share has room for three standard deviations of
   * that spread. Buckets with files grow now; the others create their first file that large. Refused
   * before anything changes if a share is past the largest index (BUCKET_MAP_CAPACITY) or the index
   * files, every bucket at its share, would pass maxBytes (BUCKET_MAP_SIZE_LIMIT). A growth that
   * fails (a full disk) stops the call; buckets grown before it keep their larger files.
   */
  setAnticipatedCount(total: number): void {
    this.enterWrite();
    if (typeof total !== 'number') throw new TypeError(`total must be a number, got ${typeof total}`);
    if (!Number.isSafeInteger(total) || total < 0) throw new RangeError(`total must be a non-negative integer, got ${total}`);
    const share = total / this.ctx.maxBuckets;
    const perBucket = total === 0 ? 0 : Math.ceil(share + 3 * Math.sqrt(share));
    let bytes = 0;
    for (const storage of this.storages) bytes += storage.bytesToAnticipate(perBucket);
    const { usage } = this.ctx;
    // Only bytes it adds count: a map reopened with a maxBytes below its files may still presize for what it has.
    if (bytes > 0 && usage.bytes + bytes > usage.maxBytes) {
      throw new BucketMapError(codes.SIZE_LIMIT, `sizing every bucket for ${perBucket} entries would take the bucket files to ${usage.bytes + bytes} bytes, past maxBytes (${usage.maxBytes})`);
    }
    for (let ix = 0; ix < this.storages.length; ix++) if (this.storages[ix].anticipate(perBucket)) this.ctx.versions[ix]++;
  }

  // ── entries ────────────────────────────────────────────────────────────────────────────────────

  readValue(key: Key): Entry<T> | undefined {
    this.enter();
    const k = toKeyBytes(key, 'key', this.guard);
    return this.bucketFor(k).readKey(k);
  }

  insert(key: Key, slotList: readonly T[], refCount = 1): void {
    this.enterWrite();
    const k = toKeyBytes(key, 'key', this.guard);
    const rc = checkRefCount(refCount);
    const ctx = this.ctx;
    // Encoded first: the caller's code it may run cannot change the key once it is routed.
    const slots = encodeSlotList(this.guard, this.codec, this.maxSlots, ctx.engine.input, slotList);
    keptWhole(k);
    const ix = bucketIndexOf(k, this.bits);
    if (ctx.writable[ix] === 1) {
      // Straight to the engine; only an insert that needs a file grown goes through the bucket.
      const status = putMarked(ctx, this.guard, ix, k, slots, rc);
      if (status === PUT_NEW || status === PUT_UPDATED) return;
    }
    this.bucketAt(ix).writeEncoded(k, slots, rc);
  }

  tryInsert(key: Key, slotList: readonly T[], refCount = 1): NoSpace | undefined {
    this.enterWrite();
    const k = toKeyBytes(key, 'key', this.guard); // once: a toBytes() answering differently the second time would misroute
    return this.bucketFor(k).tryWrite(k, slotList, refCount);
  }

  /** Grows what a NoSpace from tryInsert names. */
  grow(noSpace: NoSpace): void {
    this.enterWrite();
    if (!(noSpace instanceof NoSpace)) throw new TypeError('grow(noSpace) takes the NoSpace a tryInsert returned');
    this.getBucketFromIndex(noSpace.bucket).grow(noSpace);
  }

  update(key: Key, fn: (current: Entry<T> | undefined) => Entry<T> | undefined): void {
    this.enterWrite();
    const k = toKeyBytes(key, 'key', this.guard);
    this.bucketFor(k).update(k, fn);
  }

  deleteKey(key: Key): boolean {
    this.enterWrite();
    const k = toKeyBytes(key, 'key', this.guard);
    const ix = bucketIndexOf(k, this.bits);
    if (this.ctx.writable[ix] !== 1) return this.bucketAt(ix).removeKey(k);
    return removeMarked(this.ctx, this.guard, ix, k);
  }

  /** Adds one reference; returns the new refCount, or undefined if the key is absent. */
  addref(key: Key): number | undefined {
    return this.adjustRef(key, +1);
  }

  /** Drops one reference; returns the new refCount, or undefined if the key is absent. */
  unref(key: Key): number | undefined {
    return this.adjustRef(key, -1);
  }

  private adjustRef(key: Key, delta: 1 | -1): number | undefined {
    this.enterWrite();
    const k = toKeyBytes(key, 'key', this.guard);
    const ix = bucketIndexOf(k, this.bits);
    if (this.ctx.writable[ix] !== 1) {
      const storage = this.storages[ix];
      if (!storage.allocated) return undefined;
      storage.markDirty();
    }
    // An inline entry staying within refCounts 1..256 changes one byte in place.
    this.ctx.writing = ix;
    let inPlace: number;
    try {
      inPlace = this.ctx.engine.adjustRef(ix, k, delta);
    } catch (err) {
      markAfterError(this.ctx, err);
      throw err;
    }
    this.ctx.writing = NO_WRITE;
    if (inPlace === -1) return undefined;
    if (inPlace >= 0) {
      this.ctx.versions[ix]++;
      return inPlace;
    }
    return this.bucketAt(ix).rewriteRef(k, delta);
  }

  /**
   * Reads without allocating: copies the key's elements (their encoded bytes, `codec.size` each)
   * into `target` at `offset` and returns how many there are, or -1 if the key is absent; the
   * refCount is then in `lastRefCount`. Throws RangeError if `target` is too small.
   */
  readInto(key: Key, target: Uint8Array, offset = 0): number {
    this.enter();
    return this.readIntoAt(toKeyBytes(key, 'key', this.guard), 0, target, offset);
  }

  /** readInto() of the key at `keys[koff, koff + 32)`, once the map is known open. */
  private readIntoAt(keys: Uint8Array, koff: number, target: Uint8Array, offset: number): number {
    // Nothing of the caller's may run between the lookup and the copy: the value may sit in a
    // mapped file that a write would retire (SIGBUS). util.types refuses a Proxy, which passes
    // instanceof and would trap the copy's stores; the length comes from the built-in getter, so a
    // subclass's runs nowhere (run here, it could transfer the key's buffer, read then as zeros).
    if (!types.isUint8Array(target)) throw new TypeError('target must be a Uint8Array');
    const room = byteLength(target);
    checkOffset(offset, room);
    const ref = this.lookup(keys, koff);
    if (ref === null) return -1;
    const bytes = ref.slots * this.codec.size;
    if (offset + bytes > room) {
      throw new RangeError(`target has room for ${room - offset} bytes from offset ${offset}; the entry needs ${bytes}`);
    }
    copyToBytes(ref.buf, ref.words, ref.off, target, offset, bytes);
    this.lastRefCount = ref.refCount;
    return ref.slots;
  }

  /**
   * Looks up many keys at once (an array of keys, or keys packed back to back in one buffer):
   * one crossing into the wasm core per 1,024 keys, misses overlapped on the host path.
   */
  getMany(keys: KeyBatch): Array<Entry<T> | undefined> {
    this.enter();
    return this.batcher.getMany(keys);
  }

  /**
   * getMany without allocating: key i's elements are copied into `target` right after those of
   * the keys before it (starting at `offset`), slots[i] gets their count (-1 if the key is absent)
   * and refCounts[i], when given, its refCount. Stops before the first entry that does not fit and
   * returns how many keys it read (all of them unless `target` filled up): call again with the rest.
   */
  readManyInto(keys: KeyBatch, target: Uint8Array, slots: Int32Array, refCounts: Float64Array | null = null, offset = 0): number {
    this.enter();
    return this.batcher.readManyInto(keys, target, slots, refCounts, offset);
  }

  hasMany(keys: KeyBatch): boolean[] {
    this.enter();
    return this.batcher.hasMany(keys);
  }

  /** Deletes many keys at once; returns how many were present. */
  deleteMany(keys: KeyBatch): number {
    this.enterWrite();
    return this.batcher.deleteMany(keys);
  }

  /**
   * addref() of many keys (an array of keys, or keys packed back to back in one buffer), in order:
   * one crossing into the wasm core per 1,024 keys, misses overlapped on the host path. Returns how
   * many keys were present; `refCounts[i]`, when given, receives key i's new refCount (-1: absent).
   * A key listed twice gains two. A refCount already at 2^53 − 1 throws REFCOUNT_OVERFLOW, whose
   * message names the key's index: the keys before it were adjusted, none after it.
   */
  addrefMany(keys: KeyBatch, refCounts: Float64Array | null = null): number {
    this.enterWrite();
    return this.batcher.adjustMany(keys, +1, refCounts);
  }

  /** unref() of many keys, as addrefMany(); a refCount already at 0 throws REFCOUNT_UNDERFLOW. */
  unrefMany(keys: KeyBatch, refCounts: Float64Array | null = null): number {
    this.enterWrite();
    return this.batcher.adjustMany(keys, -1, refCounts);
  }

  /**
   * Upserts many entries at once: `insertMany([[key, slotList, refCount?], …])`, or
   * `insertMany(keys, slotLists, refCounts = 1)` with keys packed in one buffer or in an array.
   * Every argument is checked before anything is written.
   */
  insertMany(entries: ReadonlyArray<readonly [Key, readonly T[]] | readonly [Key, readonly T[], number]>): void;
  insertMany(keys: KeyBatch, slotLists: ReadonlyArray<readonly T[]>, refCounts?: number | ArrayLike<number>): void;
  insertMany(first: unknown, slotLists?: ReadonlyArray<readonly T[]>, refCounts?: number | ArrayLike<number>): void {
    this.enterWrite();
    if (slotLists !== undefined) {
      this.batcher.insertMany(first as KeyBatch, slotLists, refCounts === undefined ? 1 : refCounts); // null is a TypeError, as for insert()
      return;
    }
    if (!Array.isArray(first)) throw new TypeError('insertMany takes an array of [key, slotList, refCount?] entries, or keys and slotLists');
    const keys: Key[] = [];
    const lists: Array<readonly T[]> = [];
    const rcs: number[] = [];
    for (let i = 0; i < first.length; i++) { // not forEach: it skips a sparse array's holes
      const entry: unknown = first[i];
      if (!Array.isArray(entry) || entry.length < 2 || entry.length > 3) throw new TypeError(`entries[${i}] must be [key, slotList] or [key, slotList, refCount]`);
      keys.push(entry[0] as Key);
      lists.push(entry[1] as readonly T[]);
      rcs.push(entry.length === 3 && entry[2] !== undefined ? (entry[2] as number) : 1); // as insert()'s default
    }
    this.batcher.insertMany(keys, lists, rcs);
  }

  /**
   * Per-key calls on keys packed back to back in `keys` (32 bytes each), by index: `readInto`,
   * `has`, `get`, `insert`, `addref`, `unref` and `delete` of key i, with no key cut out per call.
   */
  packed(keys: Uint8Array): PackedKeys<T> {
    this.enter();
    return new PackedKeys(this.packedHost, keys);
  }

  /** Map-style read (same as readValue). */
  get(key: Key): Entry<T> | undefined {
    return this.readValue(key);
  }

  /** Whether `key` is present: a probe only, the value is neither decoded nor copied. */
  has(key: Key): boolean {
    this.enter();
    return this.lookup(toKeyBytes(key, 'key', this.guard)) !== null;
  }

  /**
   * Where the value of the key at `keys[koff, koff + 32)` is (valid until the next call into the
   * engine), or null if absent.
   */
  private lookup(keys: Uint8Array, koff = 0): ValueRef | null {
    const ix = bucketIndexAt(keys, koff, this.bits);
    // The engine answers for a bound bucket without this layer's per-bucket object (a cache miss
    // per get with many buckets); only an unbound one needs allocated(), which binds a lazy bucket.
    const ref = this.ctx.engine.read(ix, keys, koff);
    if (ref !== undefined) return ref;
    return this.storages[ix].allocated ? (this.ctx.engine.read(ix, keys, koff) as ValueRef | null) : null;
  }

  /** Map-style write of [slotList, refCount]; returns the map. */
  set(key: Key, value: Entry<T>): this {
    this.enterWrite();
    if (!Array.isArray(value) || value.length !== 2) throw new TypeError('value must be [slotList, refCount]');
    this.insert(key, value[0], value[1]);
    return this;
  }

  /** Map-style delete (same as deleteKey). */
  delete(key: Key): boolean {
    return this.deleteKey(key);
  }

  get size(): number {
    this.enter();
    return this.guard.entries;
  }

  /**
   * Every key once, bucket by bucket. The map may change during iteration: entries present for the
   * whole iteration are visited exactly once; entries added or removed meanwhile may or may not be.
   */
  *keys(): IterableIterator<Uint8Array> {
    this.enter();
    for (let ix = 0; ix < this.ctx.maxBuckets; ix++) {
      this.enter(); // resumed after close(): CLOSED, not a quiet end
      if (this.storages[ix].allocated) yield* this.bucketAt(ix).iterateKeys();
    }
    this.enter(); // resumed past the last entry after close(): CLOSED too, as at every other step
  }

  *entries(): IterableIterator<[Uint8Array, Entry<T>]> {
    this.enter();
    for (let ix = 0; ix < this.ctx.maxBuckets; ix++) {
      this.enter(); // resumed after close(): CLOSED, not a quiet end
      if (this.storages[ix].allocated) yield* this.bucketAt(ix).iterateEntries();
    }
    this.enter(); // resumed past the last entry after close(): CLOSED too, as at every other step
  }

  *values(): IterableIterator<Entry<T>> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): IterableIterator<[Uint8Array, Entry<T>]> {
    return this.entries();
  }

  // ── lifecycle ──────────────────────────────────────────────────────────────────────────────────

  /**
   * Every change made so far is in the files when this returns (it survives the process being
   * killed); with `durable`, it is also on disk (it survives power loss).
   */
  flush(options: FlushOptions = {}): void {
    this.enter();
    if (options === null || typeof options !== 'object') throw new TypeError('flush options must be an object');
    checkOptionNames(options, FLUSH_OPTIONS, 'flush options');
    const { durable } = readOptions(options, FLUSH_OPTIONS);
    // Anything but true would be a flush without the fsync the caller asked for.
    if (durable !== undefined && typeof durable !== 'boolean') throw new TypeError(`durable must be a boolean, got ${typeof durable}`);
    if (this.ctx.readOnly) return; // a reader has written nothing
    const started = performance.now();
    for (const storage of this.storages) storage.saveCounts();
    if (durable === true) {
      for (const storage of this.storages) storage.syncFiles();
      this.ctx.manifest.sync();
      for (const dir of this.ctx.drives) fsyncPath(dir);
      if (this.ctx.manifest.file !== null) fsyncPath(path.dirname(this.ctx.manifest.file));
    }
    const ms = performance.now() - started;
    this.ctx.counters.flushes++;
    this.ctx.counters.flushMs += ms;
    this.ctx.counters.lastFlushMs = ms;
  }

  /**
   * Gives back the disk that deletes left behind: files only grow, so a bucket that once held more
   * entries keeps its larger files. This rebuilds every bucket whose index, or whose data file of
   * some list size, is larger than its live entries need at `load`, into smaller files (a data file
   * whose lists are all gone is removed). The new files are complete before the restart file
   * switches to them in one write, as for growth, so a crash leaves the old files or the new ones in
   * force, never a mix. Takes about as long as rehashing the entries it moves; iterators in progress
   * carry on.
   */
  compact(options: CompactOptions = {}): CompactReport {
    this.enterWrite();
    if (options === null || typeof options !== 'object') throw new TypeError('compact options must be an object');
    checkOptionNames(options, COMPACT_OPTIONS, 'compact options');
    const given = readOptions(options, COMPACT_OPTIONS).load;
    let load = COMPACT_LOAD;
    if (given !== undefined) {
      if (typeof given !== 'number') throw new TypeError(`load must be a number, got ${typeof given}`);
      if (!(given > 0 && given * LOAD_MAX_D <= LOAD_MAX_N)) {
        throw new RangeError(`load must be above 0 and at most ${LOAD_MAX_N / LOAD_MAX_D}, got ${given}`);
      }
      load = given;
    }
    const started = performance.now();
    const report: CompactReport = { buckets: 0, bytesFreed: 0, ms: 0 };
    for (const storage of this.storages) {
      const freed = storage.compact(load);
      if (freed === 0) continue;
      report.buckets++;
      report.bytesFreed += freed;
    }
    report.ms = performance.now() - started;
    return report;
  }

  /** Flushes and releases everything. Idempotent; later calls to other methods throw CLOSED. */
  close(): void {
    if (this.closed) return;
    if (this.guard.userCode) throw new BucketMapError(codes.REENTRANT, 'close() cannot be called from code a map call runs: an update() callback, a codec, a getter of an argument');
    // The first failure is reported, after every step has run: once closed, close() does nothing,
    // so a step skipped now (the lock's release, say) would never run.
    const steps = new ReleaseSteps();
    steps.run(() => {
      if (this.persistent && !this.ctx.readOnly) {
        this.flush();
        // Before the record: an open that finds one does not look for files to remove.
        this.ctx.spares.clear();
        this.writeCloseRecord();
      }
    });
    this.closed = true;
    // An iterator trusts its snapshot's cells while its bucket's version holds. NaN equals no
    // version, so an iterator stepped after close() meets enter() and CLOSED, instead of reading
    // mappings of files that a later writer may truncate (a SIGBUS).
    this.ctx.versions.fill(NaN);
    for (const storage of this.storages) steps.run(() => storage.close(!this.persistent));
    steps.run(() => this.ctx.spares.clear());
    steps.run(() => this.ctx.engine.close());
    steps.run(() => this.ctx.manifest.close());
    steps.run(() => this.lock?.release());
    if (this.ownedTempDir !== null) steps.run(() => removeTempFolder(this.ownedTempDir!));
    // Files left in drives the caller gave stay on the exit's list, which tries them again.
    if (!steps.failed) this.forgetFilesAtExit?.();
    steps.throwFirst('close() could not release everything');
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * After close()'s flush: lets the next open skip every bucket's files until first use. A failure
   * only costs that speed-up (the next open checks every file), so it is not reported.
   */
  private writeCloseRecord(): void {
    const restartFile = this.ctx.manifest.file;
    if (restartFile === null) return;
    const none = new Array<number>(SIZE_CLASSES).fill(0);
    try {
      CloseRecord.write(restartFile, this.ctx.mapId, this.ctx.maxBuckets, (ix) => {
        const storage = this.storages[ix];
        const seq = this.ctx.manifest.seq(ix);
        if (!storage.hasFiles) return { seq, count: 0, dataCounts: none };
        return { seq, count: storage.entryCount(), dataCounts: storage.dataCellCounts() };
      });
      this.closeRecordPresent = true;
    } catch (err) {
      if (!(err instanceof BucketMapError)) throw err;
    }
  }

  /**
   * Walks every cell and data cell of every bucket and reports what is wrong; changes nothing.
   * Opening checks headers, sizes and checksums only, so this is how to check a map's cells.
   * A bucket whose header disagrees with the close record it was opened on is reported, not
   * repaired (its first real use repairs it), and its cells are checked as its files have them.
   */
  verify(): VerifyReport {
    this.enter();
    const report = emptyReport();
    for (const storage of this.storages) {
      let allocated: boolean;
      try {
        const mismatch = storage.vouchedMismatch();
        if (mismatch !== null) {
          addProblem(report, { file: storage.index?.segmentPaths[0] ?? '', bucket: storage.ix, problem: staleRecordProblem(mismatch.vouched, mismatch.header) });
          verifyBucket(mismatch.verify, report);
          continue;
        }
        allocated = storage.allocated;
      } catch (err) {
        // A bucket mapped on first use can find its file damaged since the open: a problem to report.
        if (!(err instanceof BucketMapError)) throw err;
        addProblem(report, { file: err.file ?? '', bucket: storage.ix, problem: err.message });
        continue;
      }
      if (allocated) verifyBucket(storage.toVerify(), report);
    }
    return report;
  }

  /**
   * Verifies a map on disk without opening it for writing: the restart file is read and every
   * bucket file is mapped read-only; nothing is repaired or created. A file that cannot be opened
   * is reported as a problem. Fails with BUCKET_MAP_LOCKED while a live process has the map open.
   */
  static verify(options: { restartFile: string; drives?: readonly string[] }): VerifyReport {
    if (options === null || typeof options !== 'object') throw new TypeError('verify options must be an object');
    // It reads the files through typed arrays as an open does: on a big-endian machine every
    // field would be misread and reported as damage.
    checkPlatform(os.endianness());
    if (typeof options.restartFile !== 'string' || options.restartFile.length === 0) throw new TypeError('restartFile must be a non-empty string');
    if (options.drives !== undefined && (!Array.isArray(options.drives) || options.drives.some((d) => typeof d !== 'string'))) {
      throw new TypeError('drives must be an array of folder paths');
    }
    const restartFile = path.resolve(options.restartFile);
    // A shared hold, as a read-only open takes, for the whole check: a writer opening meanwhile
    // could retire a file the check has mapped, and growth truncates retired files (SparePool),
    // which would be SIGBUS on the next read. Where no reader file can be made (a read-only or
    // missing folder) only a live writer's lock is refused, and a missing map is reported below.
    let lock: MapLock;
    try {
      lock = MapLock.acquireShared(`${restartFile}.lock`);
    } catch (err) {
      if (err instanceof BucketMapError && err.code === codes.LOCKED) {
        throw new BucketMapError(codes.LOCKED, `${restartFile}: the map is open for writing; verify it through that map, or close it first`, { file: restartFile });
      }
      throw err;
    }
    try {
      if (fs.existsSync(restartFile)) lock.guard(restartFile);
      return BucketMap.verifyClosed(restartFile, options.drives);
    } finally {
      lock.release();
    }
  }

  private static verifyClosed(restartFile: string, givenDrives: readonly string[] | undefined): VerifyReport {
    const manifest = Manifest.inspect(restartFile);
    const drives = (givenDrives ?? [`${restartFile}.buckets`]).map((d) => path.resolve(d));
    if (drives.length !== manifest.config.drives) {
      throw new BucketMapError(codes.CONFIG_MISMATCH, `${restartFile}: the map uses ${manifest.config.drives} drives, ${drives.length} were given`, { file: restartFile });
    }
    // As for a read-only open: without this, drives forgotten or mistyped made every bucket file a
    // "missing" problem, and the command line's exit code 1 said the map was damaged.
    for (const d of drives) checkExistingDir(d);
    // The static verifier takes no map configuration, so it maps the files plainly.
    const layout: FileLayout = { ...manifest.config, drives, hugePages: false };
    checkDriveOrder(layout, manifest.allocated(), restartFile);
    // The record an open would take each bucket's counts from. It used to be ignored, so a stale
    // one was "ok" here while verify() on the opened map reported it and a reader refused it.
    const { record: closeRecord } = CloseRecord.read(restartFile, manifest.config.mapId, manifest.config.maxBuckets);
    const report = emptyReport();
    // Not damage, but "ok" alone read as "opens read-only", which refuses a map no record vouches for.
    const unvouched = [...manifest.allocated()].filter(([ix]) => closeRecord !== null && closeRecord.countsFor(ix, manifest.seq(ix)) === null).map(([ix]) => ix);
    const refused = 'a read-only open refuses the map until it is opened for writing once';
    if (closeRecord === null) report.notes.push(`there is no valid close record (the map was not closed cleanly, or the record is damaged): ${refused}`);
    else if (unvouched.length > 0) report.notes.push(`the close record does not cover bucket${unvouched.length === 1 ? '' : 's'} ${unvouched.slice(0, 10).join(', ')}${unvouched.length > 10 ? ', …' : ''} (changed after it was written): ${refused}`);
    for (const [ix, record] of manifest.allocated()) {
      let files: ReturnType<typeof openBucketFiles>;
      try {
        files = openBucketFiles(layout, ix, record, true);
      } catch (err) {
        if (!(err instanceof BucketMapError)) throw err;
        addProblem(report, { file: err.file ?? restartFile, bucket: ix, problem: err.message });
        continue;
      }
      try {
        const table = tableOverFiles(layout, record, files.index, files.data);
        const saved = readSavedCounts(files.index);
        const vouched = closeRecord === null ? null : closeRecord.countsFor(ix, manifest.seq(ix));
        if (vouched !== null && !sameCounts(saved, vouched)) {
          addProblem(report, { file: files.index.segmentPaths[0], bucket: ix, problem: staleRecordProblem(vouched, saved) });
        }
        verifyBucket({ bucket: ix, table, saved, live: null, journalCommitted: journalCommitted(files.index) }, report);
      } finally {
        files.index.release();
        for (const d of files.data) d?.release();
      }
    }
    return report;
  }

  stats(): BucketMapStats {
    this.enter();
    const c = this.ctx.counters;
    let allocated = 0;
    let indexFiles = 0;
    let indexBytes = 0;
    let capacity = 0;
    let dataFiles = 0;
    let dataBytes = 0;
    let dataCells = 0;
    let minEntries = Infinity;
    let maxEntries = 0;
    for (const storage of this.storages) {
      const n = storage.entryCount();
      minEntries = Math.min(minEntries, n);
      maxEntries = Math.max(maxEntries, n);
      if (!storage.hasFiles) continue;
      allocated++;
      const index = storage.index!;
      indexFiles++;
      indexBytes += index.bytes;
      capacity += index.spec.capacity;
      const counts = storage.dataCellCounts();
      for (let k = 0; k < SIZE_CLASSES; k++) {
        const d = storage.data[k];
        if (d === null) continue;
        dataFiles++;
        dataBytes += d.bytes;
        dataCells += counts[k];
      }
    }
    const e = this.ctx.engine.stats();
    return {
      engine: this.ctx.engine.kind,
      entries: this.guard.entries,
      buckets: { total: this.ctx.maxBuckets, allocated, minEntries, maxEntries },
      index: {
        resizes: c.indexResizes, failedResizes: c.failedIndexResizes, reseeds: c.reseeds, resizeMs: c.indexResizeMs,
        files: indexFiles, bytes: indexBytes, capacity, load: capacity === 0 ? 0 : this.guard.entries / capacity,
      },
      data: { resizes: c.dataResizes, resizeMs: c.dataResizeMs, files: dataFiles, bytes: dataBytes, cells: dataCells },
      compactions: { buckets: c.compactions, ms: c.compactMs },
      filesCreated: c.filesCreated,
      cache: { hits: e.cacheHits, misses: e.cacheMisses, pagesIn: e.pagesIn, pagesOut: e.pagesOut, writeRecords: e.writeRecords },
      flush: { count: c.flushes, totalMs: c.flushMs, lastMs: c.lastFlushMs },
      open: { ms: c.openMs, repairedBuckets: c.repairedBuckets, deferredBuckets: c.deferredBuckets, removedFiles: c.removedFiles, repairMs: c.repairMs, freedDataCells: c.freedDataCells },
      stoppedWrites: { count: c.stoppedWrites, repairedBuckets: c.stoppedWriteRepairs, ms: c.stoppedWriteMs },
      mappings: { live: mappings.live, budget: mappings.budget },
    };
  }
}
