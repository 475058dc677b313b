/**
 * The manifest (restart file): which files each bucket uses, and its hash seed.
 *
 *   header (HEADER_BYTES) | bucket 0: slot A, slot B | bucket 1: slot A, slot B | …
 *
 * Each bucket has two 128-byte slots, each with a sequence number and a CRC-32C. An update writes
 * the slot that is not in force, with the next sequence number, in one pwrite; the slot in force is
 * the valid one with the higher number. A write torn by a crash fails its checksum, so the old slot
 * stays in force: a crash at any point leaves either the old or the new state referenced. Files a
 * new state replaces are unlinked only after the new slot is written.
 *
 * Without a restart file the same records live only in memory.
 */
import * as fs from 'node:fs';
import { crc32c } from './checksum.js';
import { BucketMapError, codes, corrupt, ioError } from './errors.js';
import { checkCommonHeader, writeMagicAndVersion } from './format.js';
import { readExactly, reserveBlocks } from './storage.js';
import { draftPath, linkDraft, removeDrafts } from './lock.js';
import {
  FILE_KIND_MANIFEST, HEADER_BYTES, H_CRC, MANIFEST_SLOT_BYTES, MH_DRIVES, MH_ELEMENT_SIZE, MH_MAX_BUCKETS,
  MH_MAX_SEARCH, MH_SEGMENT_BYTES, MH_SLOT_BYTES, MH_MAP_ID, SIZE_CLASSES, S_CRC, S_DATA_GEN, S_DATA_POW2, S_DRIVE,
  S_INDEX_GEN, S_INDEX_PAGES, S_SEED_HI, S_SEED_LO, S_SEQ, MAX_INDEX_PAGES, MAX_DATA_POW2,
} from './layout.js';

export interface BucketRecord {
  seedLo: number;
  seedHi: number;
  /** Generation of the index file; 0 while the bucket has never been written. */
  indexGen: number;
  indexPages: number;
  /** Index into the configured drives of the folder that holds all of this bucket's files. */
  drive: number;
  /** Per size class: generation of the data file (0 = none) and its capacity as a power of two. */
  dataGen: number[];
  dataPow2: number[];
}

export interface ManifestConfig {
  maxBuckets: number;
  elementSize: number;
  maxSearch: number;
  drives: number;
  segmentBytes: number;
  /** Random id written into every bucket file's name and header. */
  mapId: number;
}

export function emptyRecord(): BucketRecord {
  return {
    seedLo: 0, seedHi: 0, indexGen: 0, indexPages: 0, drive: 0,
    dataGen: new Array<number>(SIZE_CLASSES).fill(0), dataPow2: new Array<number>(SIZE_CLASSES).fill(0),
  };
}

export function copyRecord(r: BucketRecord): BucketRecord {
  return { ...r, dataGen: r.dataGen.slice(), dataPow2: r.dataPow2.slice() };
}

function encodeSlot(record: BucketRecord, seq: number): Uint8Array {
  const bytes = new Uint8Array(MANIFEST_SLOT_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint32(S_SEQ, seq, true);
  view.setUint32(S_SEED_LO, record.seedLo >>> 0, true);
  view.setUint32(S_SEED_HI, record.seedHi >>> 0, true);
  view.setUint32(S_INDEX_GEN, record.indexGen, true);
  view.setUint32(S_INDEX_PAGES, record.indexPages, true);
  bytes[S_DRIVE] = record.drive;
  for (let c = 0; c < SIZE_CLASSES; c++) {
    view.setUint32(S_DATA_GEN + 4 * c, record.dataGen[c], true);
    bytes[S_DATA_POW2 + c] = record.dataPow2[c];
  }
  view.setUint32(S_CRC, crc32c(bytes, 8), true);
  return bytes;
}

/** The slot at byte `at` of the restart file (`view` spans the whole file). */
function decodeSlot(view: DataView, at: number): BucketRecord {
  const record = emptyRecord();
  record.seedLo = view.getUint32(at + S_SEED_LO, true) | 0;
  record.seedHi = view.getUint32(at + S_SEED_HI, true) | 0;
  record.indexGen = view.getUint32(at + S_INDEX_GEN, true);
  record.indexPages = view.getUint32(at + S_INDEX_PAGES, true);
  record.drive = view.getUint8(at + S_DRIVE);
  for (let c = 0; c < SIZE_CLASSES; c++) {
    record.dataGen[c] = view.getUint32(at + S_DATA_GEN + 4 * c, true);
    record.dataPow2[c] = view.getUint8(at + S_DATA_POW2 + c);
  }
  return record;
}

export class Manifest {
  readonly file: string | null;
  readonly config: ManifestConfig;
  private fd: number | null;
  private readonly records: Array<BucketRecord | undefined>;
  private readonly seqs: Uint32Array;
  /** Which slot (0 = A, 1 = B) is in force for each bucket. */
  private readonly active: Uint8Array;

  private constructor(file: string | null, fd: number | null, config: ManifestConfig) {
    this.file = file;
    this.fd = fd;
    this.config = config;
    this.records = new Array(config.maxBuckets);
    this.seqs = new Uint32Array(config.maxBuckets);
    this.active = new Uint8Array(config.maxBuckets);
  }

  static inMemory(config: ManifestConfig): Manifest {
    return new Manifest(null, null, config);
  }

  static exists(file: string): boolean {
    return fs.existsSync(file);
  }

  /** Creates a new restart file with no bucket allocated. The caller has checked that none exists and holds the lock. */
  static create(file: string, config: ManifestConfig): Manifest {
    const header = new Uint8Array(HEADER_BYTES);
    const view = new DataView(header.buffer);
    writeMagicAndVersion(view, header, FILE_KIND_MANIFEST);
    view.setUint32(MH_SLOT_BYTES, MANIFEST_SLOT_BYTES, true);
    view.setUint32(MH_ELEMENT_SIZE, config.elementSize, true);
    view.setUint32(MH_MAX_SEARCH, config.maxSearch, true);
    view.setUint32(MH_MAX_BUCKETS, config.maxBuckets, true);
    view.setUint32(MH_DRIVES, config.drives, true);
    view.setUint32(MH_SEGMENT_BYTES, config.segmentBytes, true);
    view.setUint32(MH_MAP_ID, config.mapId >>> 0, true);
    view.setUint32(H_CRC, crc32c(header, 0, H_CRC), true);
    // Written whole under a draft name, then linked into place: a kill during a map's first open
    // must not leave a restart file no later open can read (one was left empty or zero-filled,
    // and every open after it was CORRUPT). The caller holds the map's lock, so no one else
    // writes this name, and any draft beside it was left by a kill.
    removeDrafts(file, false);
    const draft = draftPath(file);
    let fd: number;
    try {
      fd = fs.openSync(draft, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o644);
    } catch (err) {
      throw ioError(`cannot create restart file ${file}`, err, file);
    }
    try {
      // Blocks are reserved so that slot updates never need new ones (no ENOSPC mid-growth).
      fs.ftruncateSync(fd, Manifest.fileBytes(config.maxBuckets));
      fs.writeSync(fd, header, 0, HEADER_BYTES, 0);
      reserveBlocks(fd, HEADER_BYTES, Manifest.fileBytes(config.maxBuckets));
      // Where the file system has no hard links, a rename after a check: the lock makes it safe.
      const linked = linkDraft(draft, file);
      if (linked === false || (linked === null && fs.existsSync(file))) throw Object.assign(new Error(`EEXIST: ${file} exists`), { code: 'EEXIST' });
      if (linked === null) fs.renameSync(draft, file);
    } catch (err) {
      fs.closeSync(fd);
      throw ioError(`cannot write restart file ${file}`, err, file);
    } finally {
      fs.rmSync(draft, { force: true });
    }
    return new Manifest(file, fd, config);
  }

  /**
   * Opens and checks an existing restart file against the configuration. Nothing is written: a
   * mismatch fails with CONFIG_MISMATCH and leaves the file as it was. `segmentBytes` and `mapId`
   * are taken from the file, since they are part of how the bucket files are laid out and named.
   */
  static open(file: string, config: Omit<ManifestConfig, 'segmentBytes' | 'mapId'>): Manifest {
    const manifest = Manifest.read(file, config);
    try {
      manifest.fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_NOFOLLOW);
    } catch (err) {
      throw ioError(`cannot open restart file ${file} for writing`, err, file);
    }
    return manifest;
  }

  /** open() for a read-only map: checked against the configuration, never opened for writing. */
  static openReadOnly(file: string, config: Omit<ManifestConfig, 'segmentBytes' | 'mapId'>): Manifest {
    return Manifest.read(file, config);
  }

  /** Reads a restart file without opening it for writing; its configuration is taken as stored. */
  static inspect(file: string): Manifest {
    return Manifest.read(file, null);
  }

  private static read(file: string, config: Omit<ManifestConfig, 'segmentBytes' | 'mapId'> | null): Manifest {
    // The size is checked before the file is read: reading first made a 1.5 GiB file cost 1.5 GiB
    // of memory and seconds before CORRUPT, and one past 2 GiB fail as IO (Node refuses to read it
    // whole). The header is read alone, checked, and only then the rest, of the size it implies.
    let fd: number;
    try {
      // lstat first: a device or socket is refused without being opened.
      const stat = fs.lstatSync(file);
      if (stat.isSymbolicLink()) throw corrupt(file, 'restart file is a symbolic link');
      if (!stat.isFile()) throw corrupt(file, 'restart file is not a regular file');
      fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    } catch (err) {
      if (err instanceof BucketMapError) throw err;
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw corrupt(file, 'restart file is a symbolic link');
      // No map there: the code a read-only open gives for it, so callers test for one code only.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BucketMapError(codes.FILE_MISSING, `${file}: no map here (no restart file)`, { file, cause: err });
      throw ioError(`cannot read restart file ${file}`, err, file);
    }
    let bytes: Buffer;
    let stored: ManifestConfig;
    try {
      let size: number;
      let header: Buffer;
      try {
        // Checked again on the descriptor: the name may have been replaced since the lstat.
        const stat = fs.fstatSync(fd);
        if (!stat.isFile()) throw corrupt(file, 'restart file is not a regular file');
        size = stat.size;
        header = Buffer.alloc(Math.min(size, HEADER_BYTES));
        readExactly(fd, header, 0, header.length, 0, file);
      } catch (err) {
        if (err instanceof BucketMapError) throw err;
        throw ioError(`cannot read restart file ${file}`, err, file);
      }
      const view = checkCommonHeader(header, FILE_KIND_MANIFEST, file);
      if (view.getUint32(MH_SLOT_BYTES, true) !== MANIFEST_SLOT_BYTES) throw corrupt(file, 'unexpected record size');
      stored = {
        maxBuckets: view.getUint32(MH_MAX_BUCKETS, true),
        elementSize: view.getUint32(MH_ELEMENT_SIZE, true),
        maxSearch: view.getUint32(MH_MAX_SEARCH, true),
        drives: view.getUint32(MH_DRIVES, true),
        segmentBytes: view.getUint32(MH_SEGMENT_BYTES, true),
        mapId: view.getUint32(MH_MAP_ID, true),
      };
      for (const key of ['maxBuckets', 'elementSize', 'maxSearch', 'drives'] as const) {
        if (config !== null && stored[key] !== config[key]) {
          throw new BucketMapError(
            codes.CONFIG_MISMATCH,
            `${file}: the map was created with ${key} = ${stored[key]}, but the configuration says ${config[key]}`,
            { file },
          );
        }
      }
      if (stored.segmentBytes < 64 * 1024 || stored.segmentBytes > 0x7fffffff) throw corrupt(file, 'segment size out of range');
      if (stored.maxBuckets < 1 || stored.maxBuckets > 65536 || (stored.maxBuckets & (stored.maxBuckets - 1)) !== 0) {
        throw corrupt(file, `maxBuckets ${stored.maxBuckets} is not a power of two up to 65,536`);
      }
      const expected = Manifest.fileBytes(stored.maxBuckets);
      if (size !== expected) throw corrupt(file, `size is ${size} bytes, expected ${expected}`);
      try {
        bytes = Buffer.allocUnsafe(expected);
        header.copy(bytes, 0);
        readExactly(fd, bytes, HEADER_BYTES, expected - HEADER_BYTES, HEADER_BYTES, file);
      } catch (err) {
        if (err instanceof BucketMapError) throw err;
        throw ioError(`cannot read restart file ${file}`, err, file);
      }
    } finally {
      fs.closeSync(fd);
    }

    if (stored.elementSize < 1 || stored.elementSize > 4096 || stored.maxSearch < 1 || stored.maxSearch > 255 || stored.drives < 1 || stored.drives > 255) {
      throw corrupt(file, 'configuration fields out of range');
    }
    const manifest = new Manifest(file, null, stored);
    const whole = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let ix = 0; ix < stored.maxBuckets; ix++) manifest.loadBucket(bytes, whole, ix);
    return manifest;
  }

  static fileBytes(maxBuckets: number): number {
    return HEADER_BYTES + maxBuckets * 2 * MANIFEST_SLOT_BYTES;
  }

  private loadBucket(bytes: Uint8Array, view: DataView, ix: number): void {
    const file = this.file as string;
    const base = HEADER_BYTES + ix * 2 * MANIFEST_SLOT_BYTES;
    let best = -1;
    let bestSeq = 0;
    let damaged = false;
    for (let s = 0; s < 2; s++) {
      const at = base + s * MANIFEST_SLOT_BYTES;
      const end = at + MANIFEST_SLOT_BYTES;
      const seq = view.getUint32(at + S_SEQ, true);
      if (seq === 0) {
        for (let i = at; i < end; i++) if (bytes[i] !== 0) damaged = true;
        continue;
      }
      if (view.getUint32(at + S_CRC, true) !== crc32c(bytes, at + 8, end)) {
        damaged = true;
        continue;
      }
      if (seq > bestSeq) {
        best = s;
        bestSeq = seq;
      }
    }
    if (best < 0) {
      // Both slots blank is a bucket never written; a damaged slot with no valid twin is not.
      if (damaged) throw corrupt(file, `record of bucket ${ix} is damaged in both slots`);
      return;
    }
    const record = decodeSlot(view, base + best * MANIFEST_SLOT_BYTES);
    this.checkRecord(record, ix);
    this.records[ix] = record.indexGen === 0 ? undefined : record;
    this.seqs[ix] = bestSeq;
    this.active[ix] = best;
  }

  private checkRecord(r: BucketRecord, ix: number): void {
    const file = this.file as string;
    const bad = (what: string): never => {
      throw corrupt(file, `record of bucket ${ix}: ${what}`);
    };
    if (r.indexGen === 0) return;
    if (r.indexPages < 1 || r.indexPages > MAX_INDEX_PAGES) bad(`index size ${r.indexPages} pages is out of range`);
    if (r.drive >= this.config.drives) bad(`drive ${r.drive} does not exist`);
    for (let c = 0; c < SIZE_CLASSES; c++) {
      if (r.dataGen[c] !== 0 && r.dataPow2[c] > MAX_DATA_POW2) bad(`data class ${c} capacity 2^${r.dataPow2[c]} is out of range`);
    }
  }

  /** Sequence number of bucket `ix`'s record in force (0 if it never had one). */
  seq(ix: number): number {
    return this.seqs[ix];
  }

  get(ix: number): BucketRecord | undefined {
    return this.records[ix];
  }

  /** Buckets that have a record (allocated at some point and not cleared). */
  *allocated(): IterableIterator<[number, BucketRecord]> {
    for (let ix = 0; ix < this.records.length; ix++) {
      const r = this.records[ix];
      if (r !== undefined) yield [ix, r];
    }
  }

  /** Makes `record` the state in force for bucket `ix` (see the file comment for why it is safe). */
  set(ix: number, record: BucketRecord): void {
    const seq = this.seqs[ix] + 1;
    // Copied first: once the slot is written, nothing but stores may run before the view agrees
    // with it (a stop in between would leave the next write aiming at the slot in force).
    const copy = copyRecord(record);
    if (this.fd !== null) {
      const slot = this.records[ix] === undefined && this.seqs[ix] === 0 ? 0 : 1 - this.active[ix];
      const position = HEADER_BYTES + ix * 2 * MANIFEST_SLOT_BYTES + slot * MANIFEST_SLOT_BYTES;
      try {
        fs.writeSync(this.fd, encodeSlot(record, seq), 0, MANIFEST_SLOT_BYTES, position);
      } catch (err) {
        // Only the write's own failure (an error with a system code) says the slot was not written.
        // An error V8 raises (a stack overflow in fs's code after the write) leaves it unknown: it
        // goes on as it is, so that the caller keeps the new files for the repair instead of
        // dropping files in force.
        if (typeof (err as NodeJS.ErrnoException | null)?.code !== 'string') throw err;
        throw ioError(`cannot update restart file`, err, this.file as string);
      }
      this.active[ix] = slot;
    }
    this.seqs[ix] = seq;
    this.records[ix] = copy;
  }

  sync(): void {
    if (this.fd === null) return;
    try {
      fs.fsyncSync(this.fd);
    } catch (err) {
      throw ioError('cannot fsync restart file', err, this.file as string);
    }
  }

  close(): void {
    if (this.fd !== null) {
      fs.closeSync(this.fd);
      this.fd = null;
    }
  }
}
