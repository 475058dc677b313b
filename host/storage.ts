/**
 * Storage: one bucket file, mapped. The only module that imports mmap-io.
 *
 * mmap-io reads sizes and offsets as C ints, so one mapping must stay below 2 GiB and cannot start
 * at a file offset of 2 GiB or more. A file is therefore split into segment files of at most
 * `segmentBytes` (1 GiB by default), each mapped whole from offset 0; a bucket can grow past 2 GiB.
 * Every segment starts with its own header so that each can be checked on its own.
 *
 * Files are sized with ftruncate and then have their blocks reserved by writing zeros before they
 * are mapped (MAP_SHARED with the kernel's default readahead, and MADV_HUGEPAGE for `hugePages`
 * maps; the descriptor is closed once mapped). Not MADV_RANDOM: it makes every fault on a page not
 * in memory read that one 4 KiB page, so reading a reopened map after its pages left the page
 * cache (a reboot) took 46,091 synchronous reads for 3M keys in random order against 1,043 with
 * the default read-around, 2.3 times as long; the kernel stops reading around by itself for a
 * mapping whose read-around pages go unused, and with the pages in memory the two are the same. A purely sparse file would defer block allocation to the first store into
 * the mapping, and on a full disk that store kills the process with SIGBUS (measured on a full
 * tmpfs); reserving turns a full disk into an ENOSPC from write(), reported as a BucketMapError
 * while the map stays usable.
 * An existing file opened for writing gets the same before it is mapped if it has holes (a sparse
 * copy of the map): see fillHoles.
 * mmap-io cannot unmap: a mapping goes when its Buffer is collected, so `unlink` removes the files
 * at once and `release` drops our references. How many mappings may wait for that is bounded
 * (see `mappings`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { BucketMapError, codes, corrupt, ioError } from './errors.js';
import { checkFileHeader, encodeFileHeader, type FileSpec, type SegmentPlacement } from './format.js';
import { HEADER_BYTES } from './layout.js';

interface MmapBinding {
  map(size: number, protection: number, flags: number, fd: number, offset?: number, advise?: number): Buffer;
  advise(buffer: Buffer, advise: number): void;
  sync_lib_private__(buffer: Buffer, offset: number, size: number, blocking: boolean, invalidate: boolean): void;
  readonly PROT_READ: number;
  readonly PROT_WRITE: number;
  readonly MAP_SHARED: number;
  readonly MADV_NORMAL: number;
}

/**
 * mmap-io's own entry point finds its binary through node-pre-gyp, which parses the host
 * program's process.argv: an application started with `--dir X` fails to import it. The native
 * binding is therefore loaded from where node-pre-gyp (or a plain node-gyp build) puts it, and the
 * package's entry point is only the last resort.
 */
function loadMmap(): MmapBinding {
  const require = createRequire(import.meta.url);
  let root: string;
  try {
    root = path.dirname(require.resolve('mmap-io/package.json'));
  } catch {
    return requireAddon(require) as MmapBinding;
  }
  const abi = `node-v${process.versions.modules}-${process.platform}-${process.arch}`;
  for (const candidate of [path.join(root, 'build', 'binding', 'Release', abi, 'mmap_io.node'), path.join(root, 'build', 'Release', 'mmap_io.node')]) {
    if (fs.existsSync(candidate)) return require(candidate) as MmapBinding;
  }
  const viaPackage = requireAddon(require) as MmapBinding & { sync(b: Buffer, o: number, s: number, bl: boolean, i: boolean): void };
  return { ...viaPackage, sync_lib_private__: (b, o, s, bl, i) => viaPackage.sync(b, o, s, bl, i) };
}

/**
 * mmap-io through its entry point, or an error that says how to get it: its native addon is built
 * by an install script, which npm 12 skips unless the installing project approves it, and the bare
 * MODULE_NOT_FOUND for `mmap_io.node` that follows does not say so.
 */
function requireAddon(require: NodeJS.Require): unknown {
  try {
    return require('mmap-io');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
    throw new Error(
      'bucket-map: the native addon of mmap-io (npm:@riaskov/mmap-io) is not installed or was not built. ' +
        'Its install script builds it, and npm skips install scripts a project has not approved: run ' +
        '`npm approve-scripts @riaskov/mmap-io` (or add it to allowScripts in your package.json), then ' +
        '`npm rebuild mmap-io`. The build needs python3, make and a C++ compiler.',
      { cause: err },
    );
  }
}

const mmap = loadMmap();

/** Largest mapping mmap-io can make (its size argument is a C int). */
export const MAX_MAPPING_BYTES = 0x7fffffff;
const SEGMENT_ALIGN = 1024;

export function segmentPath(dir: string, name: string, segment: number): string {
  return path.join(dir, `${name}.${segment}.bkt`);
}

/**
 * Matches every segment file name the map creates: `<map id>-b<bucket>.<i|d<class>>.<generation>.<segment>.bkt`.
 * Cleaning a drive only ever removes names that match and carry the map's own id.
 */
export const BUCKET_FILE_PATTERN = /^([0-9a-f]{8})-b([0-9a-f]{4})\.(i|d\d{1,2})\.(\d{1,10})\.(\d{1,6})\.bkt$/;

/** Spare files (see SparePool): `<map id>-spare.<n>.bkt`. */
export const SPARE_FILE_PATTERN = /^([0-9a-f]{8})-spare\.(\d{1,10})\.bkt$/;

/**
 * Inodes kept for reuse. Creating a file costs ~760 µs on this project's ext4 test machines
 * against ~125 µs to rename, truncate and refill an existing one, and growth replaces files all
 * the time. (Their ext4 has no journal, and without one an inode allocation skips every inode freed
 * in the last minute; a journaled ext4 created one in under 0.08 ms here: bench/RESULTS.md, (c).)
 * A file that growth replaced (no longer referenced by the restart file) is truncated to
 * zero bytes and renamed to a spare name; the next file created in that folder takes a spare
 * instead of a new inode. Spares hold no data, match no bucket file name, and are removed on close
 * and on open.
 */
export class SparePool {
  private readonly mapId: string;
  private readonly spares = new Map<string, string[]>();
  private next = 0;
  static readonly MAX_PER_FOLDER = 64;

  constructor(mapId: number) {
    this.mapId = (mapId >>> 0).toString(16).padStart(8, '0');
  }

  /** A spare in `dir`, renamed to `target`, or null if there is none. */
  take(dir: string, target: string): boolean {
    const list = this.spares.get(dir);
    while (list !== undefined && list.length > 0) {
      const spare = list.pop() as string;
      try {
        fs.renameSync(spare, target);
        return true;
      } catch {
        // Gone or unusable: try another, or create.
      }
    }
    return false;
  }

  /**
   * Keeps a file no longer referenced as a spare (emptied), or deletes it if the pool is full. A
   * file with another name (a hard-linked copy of the folder) is not ours to empty: the copy would
   * lose its data, and whoever maps it there would SIGBUS. Deleting our name leaves it whole.
   */
  retire(file: string): void {
    const dir = path.dirname(file);
    const list = this.spares.get(dir) ?? [];
    if (list.length >= SparePool.MAX_PER_FOLDER || linkedElsewhere(file)) {
      fs.rmSync(file, { force: true });
      return;
    }
    const spare = path.join(dir, `${this.mapId}-spare.${this.next++}.bkt`);
    try {
      fs.truncateSync(file, 0);
      fs.renameSync(file, spare);
      list.push(spare);
      this.spares.set(dir, list);
    } catch {
      fs.rmSync(file, { force: true });
    }
  }

  /** Deletes every spare. */
  clear(): void {
    for (const list of this.spares.values()) for (const spare of list) fs.rmSync(spare, { force: true });
    this.spares.clear();
  }
}

/** Whether the file has a name besides this one (or cannot be checked: then it is not emptied). */
function linkedElsewhere(file: string): boolean {
  try {
    return fs.statSync(file).nlink > 1;
  } catch {
    return true;
  }
}

/** What the names of every file of map `mapId` start with (its bucket files and its spares). */
export function mapFilePrefix(mapId: number): string {
  return `${(mapId >>> 0).toString(16).padStart(8, '0')}-`;
}

export function bucketFileName(mapId: number, bucket: number, sizeClass: number | null, generation: number): string {
  const ix = bucket.toString(16).padStart(4, '0');
  return `${mapFilePrefix(mapId)}b${ix}.${sizeClass === null ? 'i' : `d${sizeClass}`}.${generation}`;
}

export function recordsPerSegmentFor(recordBytes: number, segmentBytes: number): number {
  return Math.max(1, Math.floor((segmentBytes - HEADER_BYTES) / recordBytes));
}

function placements(spec: FileSpec, segmentBytes: number): SegmentPlacement[] {
  return placementsOf(spec, recordsPerSegmentFor(spec.recordBytes, segmentBytes));
}

/** How many segment files a file of `spec` takes. */
export function segmentCountFor(spec: FileSpec, segmentBytes: number): number {
  return placements(spec, segmentBytes).length;
}

function placementsOf(spec: FileSpec, recordsPerSegment: number): SegmentPlacement[] {
  const segmentCount = Math.max(1, Math.ceil(spec.totalRecords / recordsPerSegment));
  const out: SegmentPlacement[] = [];
  for (let segment = 0; segment < segmentCount; segment++) {
    const recordsInSegment = Math.min(recordsPerSegment, spec.totalRecords - segment * recordsPerSegment);
    out.push({ segment, segmentCount, recordsPerSegment, recordsInSegment });
  }
  return out;
}

function segmentFileBytes(spec: FileSpec, place: SegmentPlacement): number {
  const raw = HEADER_BYTES + place.recordsInSegment * spec.recordBytes;
  return Math.ceil(raw / SEGMENT_ALIGN) * SEGMENT_ALIGN;
}

/** The test suite swaps this to simulate a full disk or a failing filesystem where it cannot mount one. */
export const faults = {
  /** Called before every file creation with the path; throw to make it fail. */
  beforeCreate: null as ((file: string, bytes: number) => void) | null,
};

/** The kernel's page, the unit of the zero-fill (see reserveBlocks). */
const OS_PAGE_BYTES = 4096;
/** x86-64's and arm64's (4 KiB granule) PMD size: the unit of the fill for `hugePages` maps. */
const HUGE_PAGE_BYTES = 2 * 1024 * 1024;
/** Linux's madvise advice; mmap-io exports only the five portable ones. */
const MADV_HUGEPAGE = 14;
const zeroBlocks = new Map<number, Uint8Array>();

/**
 * Writes zeros over [from, to) so every block exists before the file is mapped, one `unit` per
 * write(), aligned to the unit. The page cache sizes each folio by the write that creates it, and
 * on Linux 6.16+ ext4 keeps large folios: written 1 MiB at a time, a file was cached in folios of up
 * to 1 MiB, and the first store to a clean one dirtied the whole folio, which the kernel then wrote
 * back whole. Measured on this VM (scratch script, a 256 MiB file, 3,000 stores to random pages
 * after `sync`): with 1 MiB writes 224 MiB became dirty for 11.7 MiB of pages touched and each
 * store took 12–15 µs; with 16 KiB writes 43 MiB and 4.1 µs; with 4 KiB, 11.7 MiB and 3.0–3.9 µs.
 * Loading 100M keys, whose index passes the kernel's background dirty limit, the fifth tenth of the
 * keys went in at 29,000/s with 1 MiB writes, 59,000/s with 16 KiB and 100,000/s with 4 KiB.
 * Page-sized writes cost system calls (1.55 ms per MiB filled against 0.35), which 10M inserts,
 * filling ~2 GB of new files as they grow, pay for (bench/RESULTS.md, (i)). The default unit is
 * therefore the page; `hugePages` maps fill by HUGE_PAGE_BYTES instead (see MappedFile.create).
 */
export function reserveBlocks(fd: number, from: number, to: number, unit = OS_PAGE_BYTES): void {
  let zeros = zeroBlocks.get(unit);
  if (zeros === undefined) zeroBlocks.set(unit, (zeros = new Uint8Array(unit)));
  for (let at = from; at < to; ) {
    const n = Math.min(unit - (at % unit), to - at);
    at += fs.writeSync(fd, zeros, 0, n, at);
  }
}

/**
 * Reads `length` bytes at file position `position` into `target` from `offset`; a file that ends
 * sooner (it shrank meanwhile) is CORRUPT. Errors of the read itself are left to the caller.
 */
export function readExactly(fd: number, target: Uint8Array, offset: number, length: number, position: number, file: string): void {
  for (let done = 0; done < length; ) {
    const n = fs.readSync(fd, target, offset + done, length - done, position + done);
    if (n === 0) throw corrupt(file, `ends at ${position + done} bytes, before its size`);
    done += n;
  }
}

/** Filesystems (by device) on which a fill left a file as sparse as it was: see fillHoles. */
const keepsNoZeros = new Set<number>();
/** How much of a sparse file fillHoles reads at a time: a whole number of huge pages and of OS pages. */
const FILL_READ_BYTES = HUGE_PAGE_BYTES;

/**
 * Gives every block of an existing file that is about to be mapped for writing a place on disk,
 * without changing a byte of it. A file copied with `cp --sparse=always`, `rsync -S` or `tar -S`
 * (or restored by a backup tool that punches holes) has holes wherever its pages were zero, and
 * the first store into a hole would need a block: on a full disk that store is a SIGBUS, which the
 * blocks reserved at creation (reserveBlocks) exist to prevent.
 *
 * A file with a hole has fewer bytes allocated than its size (`blocks * 512 < size`: each hole
 * takes away at least one whole block of a size rounded up to blocks), and that is checked on the
 * fstat the open already made, so a file without holes costs nothing more. A sparse one is read
 * and every page that reads as zeros (the holes among them) is written back as zeros, page by page
 * as reserveBlocks does (for `hugePages` maps, whole 2 MiB units with any such page are written
 * back with the bytes just read, so its folios stay large); pages with data hold blocks already.
 * Nothing else writes the file meanwhile: this map holds the writer lock and has not mapped it yet,
 * and readers write nothing. A full disk is then an ENOSPC from write(), reported as BUCKET_MAP_IO
 * at the open or the bucket's first use, while the file's contents stay as they were.
 *
 * A filesystem that compresses or deduplicates zeros (ZFS with compression, say) leaves such a file
 * as sparse as before, and there the fill cannot reserve anything; so that it is not repeated for
 * every file, such a device is remembered for the rest of the process and its files are not filled.
 */
function fillHoles(fd: number, stat: fs.Stats, file: string, hugePages: boolean): void {
  const size = stat.size;
  if (stat.blocks * 512 >= size || keepsNoZeros.has(stat.dev)) return;
  try {
    const chunk = Buffer.allocUnsafe(Math.min(FILL_READ_BYTES, size));
    const unit = hugePages ? HUGE_PAGE_BYTES : OS_PAGE_BYTES;
    const zeros = Buffer.alloc(OS_PAGE_BYTES);
    for (let at = 0; at < size; at += FILL_READ_BYTES) {
      const length = Math.min(FILL_READ_BYTES, size - at);
      readExactly(fd, chunk, 0, length, at, file);
      // A huge unit only where a whole one fits (the tail goes page by page, as in MappedFile.create).
      const step = at + length === size && length % unit !== 0 ? OS_PAGE_BYTES : unit;
      for (let from = 0; from < length; from += step) {
        const to = Math.min(from + step, length);
        let zeroPage = false;
        for (let page = from; page < to && !zeroPage; page += OS_PAGE_BYTES) {
          const end = Math.min(page + OS_PAGE_BYTES, to);
          zeroPage = chunk.compare(zeros, 0, end - page, page, end) === 0;
        }
        if (!zeroPage) continue;
        if (step === OS_PAGE_BYTES) reserveBlocks(fd, at + from, at + to);
        else for (let done = from; done < to; ) done += fs.writeSync(fd, chunk, done, to - done, at + done);
      }
    }
    if (fs.fstatSync(fd).blocks * 512 < size) keepsNoZeros.add(stat.dev);
  } catch (err) {
    throw err instanceof BucketMapError ? err : ioError(`cannot allocate the holes of sparse file ${file} (${size} bytes, ${stat.blocks * 512} allocated)`, err, file);
  }
}

/** The kernel's cap on mappings per process (vm.max_map_count); Infinity where there is none to read. */
function kernelMappingCap(): number {
  try {
    const cap = Number(fs.readFileSync('/proc/sys/vm/max_map_count', 'utf8').trim());
    return Number.isSafeInteger(cap) && cap > 0 ? cap : Infinity;
  } catch {
    return Infinity;
  }
}

/**
 * The mappings this process holds through mmap-io, and how many it may hold.
 *
 * Linux caps the mappings of a process (vm.max_map_count, 65,530 by default) and past the cap every
 * mmap fails: ours with an error, but also V8's when it grows its heap, which aborts the process.
 * mmap-io unmaps a file only once its Buffer has been collected *and* the event loop has turned
 * (Node runs the release as a native immediate), so a synchronous stretch of work that never
 * awaits keeps every file that growth or compaction replaced mapped until it ends. Measured: one
 * such loop of inserts, deletes and compactions held 57,142 mappings after 34,333 growths, then
 * mmap failed with ENOMEM; a 100,000-step run of the differential test made V8 abort first
 * ("Committing semi space failed"). So mappings are counted (made, minus those whose Buffer was
 * collected) and a new one is refused with MAPPING_LIMIT at `budget`, which leaves a quarter of
 * the cap (at least 8,192) to V8, Node and the rest of the process. Tests lower `budget`.
 */
export const mappings = {
  live: 0,
  budget: budgetUnder(kernelMappingCap()),
};

/** The cap less what is left to the rest of the process: a quarter of it, at least 8,192. */
function budgetUnder(cap: number): number {
  return cap === Infinity ? Infinity : Math.max(0, cap - Math.max(8192, Math.floor(cap / 4)));
}
const collected = new FinalizationRegistry<number>(() => {
  mappings.live--;
});

function mapFd(fd: number, bytes: number, file: string, readOnly: boolean, hugePages: boolean): Buffer {
  if (bytes > MAX_MAPPING_BYTES) throw new BucketMapError(codes.CAPACITY, `${file}: ${bytes} bytes exceed the mapping limit`, { file });
  if (mappings.live >= mappings.budget) {
    throw new BucketMapError(codes.MAPPING_LIMIT, `cannot map ${file}: this process holds ${mappings.live} bucket file mappings, `
      + `the most bucket-map takes under the kernel's vm.max_map_count. Files replaced by growth or compaction are unmapped `
      + `only after the garbage collector frees them and the event loop turns: let it turn (await a setImmediate) between `
      + `long synchronous runs of writes, then retry; or raise vm.max_map_count`, { file });
  }
  let mapped: Buffer;
  try {
    const protection = readOnly ? mmap.PROT_READ : mmap.PROT_READ | mmap.PROT_WRITE;
    mapped = mmap.map(bytes, protection, mmap.MAP_SHARED, fd, 0, mmap.MADV_NORMAL);
  } catch (err) {
    throw ioError(`cannot map ${file}`, err, file);
  }
  if (hugePages && bytes >= HUGE_PAGE_BYTES && process.platform === 'linux') {
    // A hint: a kernel without transparent huge pages refuses it, and the map works as without.
    // Not on a smaller file, whose reads from disk would then come in large folios no PMD maps.
    try {
      mmap.advise(mapped, MADV_HUGEPAGE);
    } catch {
      /* the mapping stays as it is */
    }
  }
  // The ArrayBuffer, not the Buffer: views of it (the tables') keep the mapping alive after the
  // Buffer itself is gone.
  mappings.live++;
  collected.register(mapped.buffer, 0);
  return mapped;
}

/** Bytes a file of this spec takes on disk (all segments). */
export function fileBytesFor(spec: FileSpec, segmentBytes: number): number {
  let total = 0;
  for (const place of placements(spec, segmentBytes)) total += segmentFileBytes(spec, place);
  return total;
}

function notRegularFile(file: string): boolean {
  try {
    return !fs.lstatSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * Opens one segment file and reads its header, checking it is a regular file of exactly `bytes`
 * bytes first (mapping a shorter file would turn a later access into SIGBUS). Calls `use` with the
 * open descriptor and the header, and closes the descriptor whatever happens.
 */
function withCheckedSegment<R>(file: string, bytes: number, readOnly: boolean, use: (fd: number, header: Uint8Array, stat: fs.Stats) => R): R {
  let fd: number;
  try {
    // O_NONBLOCK: a read-only open of a FIFO would wait for a writer; this way it fails isFile().
    fd = fs.openSync(file, (readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR) | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new BucketMapError(codes.FILE_MISSING, `${file}: bucket file is missing`, { file, cause: err });
    if (code === 'ELOOP') throw corrupt(file, 'is a symbolic link; bucket files must be regular files inside the drives');
    if (code === 'EISDIR') throw corrupt(file, 'is not a regular file');
    // A socket cannot be opened at all (ENXIO): what is there decides, not how the open failed.
    if (code === 'ENXIO' && notRegularFile(file)) throw corrupt(file, 'is not a regular file');
    throw ioError(`cannot open ${file}`, err, file);
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw corrupt(file, 'is not a regular file');
    if (stat.size !== bytes) throw corrupt(file, `size is ${stat.size} bytes, expected ${bytes}`);
    const header = new Uint8Array(HEADER_BYTES);
    if (fs.readSync(fd, header, 0, HEADER_BYTES, 0) !== HEADER_BYTES) throw corrupt(file, 'header is truncated');
    return use(fd, header, stat);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * When an existing file is checked and mapped:
 * - `eager`: checked and mapped at open;
 * - `lazy`: checked at open, mapped on first use (its header must then be as it was at open);
 * - `deferred`: not touched at open at all; checked (type, size, header against the spec) and
 *   mapped on first use. Only for files whose state is vouched for otherwise (the close record).
 */
export type OpenMode = 'eager' | 'lazy' | 'deferred';

export class MappedFile {
  readonly dir: string;
  readonly name: string;
  readonly spec: FileSpec;
  readonly recordsPerSegment: number;
  /** Byte size of each segment file, as checked when it was created or opened. */
  readonly segmentSizes: readonly number[];
  private mapped: Buffer[] | null;
  /**
   * For a file opened but not mapped yet: each segment's header as checked at open. It stands in
   * for the mapping's header until the first use maps the file, which checks it is still the same.
   */
  private headers: Uint8Array[] | null;
  private readonly readOnly: boolean;
  private readonly hugePages: boolean;

  /** Neither `mapped` nor `headers`: opened `deferred`, nothing about the file checked yet. */
  private constructor(dir: string, name: string, spec: FileSpec, recordsPerSegment: number, sizes: number[], mapped: Buffer[] | null, headers: Uint8Array[] | null, readOnly: boolean, hugePages: boolean) {
    this.dir = dir;
    this.name = name;
    this.spec = spec;
    this.recordsPerSegment = recordsPerSegment;
    this.segmentSizes = sizes;
    this.mapped = mapped;
    this.headers = headers;
    this.readOnly = readOnly;
    this.hugePages = hugePages;
  }

  /** One Buffer per segment file, each mapping the whole file (header included); maps it on first use. */
  get segments(): Buffer[] {
    if (this.mapped === null) this.mapped = this.headers === null ? this.checkAndMap() : this.mapChecked();
    return this.mapped;
  }

  /**
   * The first segment's header: from the mapping, or, before the first use, as read at open. Only
   * for reading: a change must go through `segments`.
   */
  peekHeader(): Uint8Array {
    if (this.mapped === null && this.headers !== null) return this.headers[0];
    const b = this.segments[0];
    return new Uint8Array(b.buffer, b.byteOffset, HEADER_BYTES);
  }

  /**
   * Maps a file opened lazily. Mapping a file shorter than its mapping would turn a later access
   * into SIGBUS, so each segment's type, size and header are checked again first: they must be
   * exactly as at open (nothing of this map changes them in between; anything else is damage).
   */
  private mapChecked(): Buffer[] {
    const headers = this.headers as Uint8Array[];
    const out = this.segmentSizes.map((bytes, i) => {
      const file = segmentPath(this.dir, this.name, i);
      return withCheckedSegment(file, bytes, this.readOnly, (fd, header, stat) => {
        const before = headers[i];
        for (let k = 0; k < HEADER_BYTES; k++) if (header[k] !== before[k]) throw corrupt(file, 'header changed since the map was opened');
        if (!this.readOnly) fillHoles(fd, stat, file, this.hugePages);
        return mapFd(fd, bytes, file, this.readOnly, this.hugePages);
      });
    });
    this.headers = null;
    return out;
  }

  /** Checks each segment (type, size, header against the spec) and maps it while its descriptor is open. */
  private checkAndMap(): Buffer[] {
    return placementsOf(this.spec, this.recordsPerSegment).map((place, i) => {
      const file = segmentPath(this.dir, this.name, place.segment);
      return withCheckedSegment(file, this.segmentSizes[i], this.readOnly, (fd, header, stat) => {
        checkFileHeader(header, this.spec, place, file);
        if (!this.readOnly) fillHoles(fd, stat, file, this.hugePages);
        return mapFd(fd, this.segmentSizes[i], file, this.readOnly, this.hugePages);
      });
    });
  }

  /**
   * Creates every segment (sparse, zero-filled, header written) and maps it.
   *
   * With `hugePages` the zeros go in 2 MiB writes aligned to 2 MiB of the file, header included
   * (the tail past the last whole 2 MiB page by page), so ext4 (Linux 6.16+) caches the file in
   * PMD-sized folios, and the mapping (advised MADV_HUGEPAGE too, so that a read from disk brings in
   * such folios) maps each with one page table entry: one TLB entry then covers 2 MiB of the index
   * instead of 4 KiB. Per-key gets of a 10M map in 16 buckets ran 1.32× as fast on this VM
   * (bench/RESULTS.md, (j)). The cost is the one the page-sized fill avoids: the first store to a
   * written-back folio dirties all 2 MiB of it.
   */
  static create(dir: string, name: string, spec: FileSpec, segmentBytes: number, spares: SparePool | null = null, hugePages = false): MappedFile {
    const places = placements(spec, segmentBytes);
    const segments: Buffer[] = [];
    const created: string[] = [];
    try {
      for (const place of places) {
        const file = segmentPath(dir, name, place.segment);
        const bytes = segmentFileBytes(spec, place);
        let fd: number;
        try {
          // A spare inode (renamed into place, empty) is much cheaper than a new one.
          fd = spares !== null && spares.take(dir, file)
            ? fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_NOFOLLOW)
            : fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o644);
        } catch (err) {
          throw ioError(`cannot create ${file}`, err, file);
        }
        created.push(file);
        try {
          faults.beforeCreate?.(file, bytes);
          fs.ftruncateSync(fd, 0);
          fs.ftruncateSync(fd, bytes);
          // Zeros first, so the header's small write does not make the first folio a small one. A
          // part too short for a whole 2 MiB page goes page by page: a large folio that no PMD can
          // map would cost the writeback without saving a TLB miss.
          const hugeEnd = hugePages ? bytes - (bytes % HUGE_PAGE_BYTES) : 0;
          reserveBlocks(fd, 0, hugeEnd, HUGE_PAGE_BYTES);
          reserveBlocks(fd, hugeEnd, bytes, OS_PAGE_BYTES);
          fs.writeSync(fd, encodeFileHeader(spec, place), 0, HEADER_BYTES, 0);
          segments.push(mapFd(fd, bytes, file, false, hugePages));
        } catch (err) {
          throw err instanceof BucketMapError ? err : ioError(`cannot allocate ${bytes} bytes for ${file}`, err, file);
        } finally {
          fs.closeSync(fd);
        }
      }
    } catch (err) {
      for (const file of created) fs.rmSync(file, { force: true });
      throw err;
    }
    return new MappedFile(dir, name, spec, places[0].recordsPerSegment, segments.map((b) => b.length), segments, null, false, hugePages);
  }

  /**
   * Opens an existing file: each segment's type, size and header are checked against `spec` before
   * it is mapped, so a damaged or foreign file fails with a BucketMapError, never a SIGBUS.
   * With `lazy`, the mapping waits for the first use of `segments`: V8 counts every mapped byte as
   * external memory and collects garbage each time some 64 MiB more appears, so mapping every
   * bucket of a large map at open would cost more than the checks do. With `deferred` the checks
   * wait too (see OpenMode).
   */
  static open(dir: string, name: string, spec: FileSpec, segmentBytes: number, readOnly = false, mode: OpenMode = 'eager', hugePages = false): MappedFile {
    const places = placements(spec, segmentBytes);
    const sizes = places.map((place) => segmentFileBytes(spec, place));
    if (mode !== 'lazy') {
      // Deferred: checked and mapped on first use. Eager: the same, now.
      const file = new MappedFile(dir, name, spec, places[0].recordsPerSegment, sizes, null, null, readOnly, hugePages);
      if (mode === 'eager') void file.segments;
      return file;
    }
    // Lazy: checked now; the checked headers are kept for the first use to compare against.
    const headers = places.map((place, i) => {
      const file = segmentPath(dir, name, place.segment);
      return withCheckedSegment(file, sizes[i], readOnly, (_fd, header) => {
        checkFileHeader(header, spec, place, file);
        return header;
      });
    });
    return new MappedFile(dir, name, spec, places[0].recordsPerSegment, sizes, null, headers, readOnly, hugePages);
  }

  /** Total bytes of all segment files. */
  get bytes(): number {
    let total = 0;
    for (const size of this.segmentSizes) total += size;
    return total;
  }

  get segmentPaths(): string[] {
    return this.segmentSizes.map((_, i) => segmentPath(this.dir, this.name, i));
  }

  /** Writes dirty pages of every segment back to disk (msync MS_SYNC). */
  sync(): void {
    if (this.mapped === null) return;
    for (let i = 0; i < this.mapped.length; i++) {
      const segment = this.mapped[i];
      try {
        mmap.sync_lib_private__(segment, 0, segment.length, true, false);
      } catch (err) {
        throw ioError('msync failed', err, segmentPath(this.dir, this.name, i));
      }
    }
  }

  /** Removes the files (or keeps them as empty spares). The mappings stay valid until released and collected. */
  unlink(spares: SparePool | null = null): void {
    for (let i = 0; i < this.segmentSizes.length; i++) {
      const file = segmentPath(this.dir, this.name, i);
      if (spares !== null) spares.retire(file);
      else fs.rmSync(file, { force: true });
    }
  }

  /** Drops the mappings; the memory goes when the garbage collector frees the Buffers. */
  release(): void {
    this.mapped = [];
    this.headers = null;
  }
}

/** fsync a file or directory by path (used by durable flushes). */
export function fsyncPath(file: string): void {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY);
  } catch (err) {
    throw ioError(`cannot open ${file} for fsync`, err, file);
  }
  try {
    fs.fsyncSync(fd);
  } catch (err) {
    throw ioError(`fsync failed`, err, file);
  } finally {
    fs.closeSync(fd);
  }
}
