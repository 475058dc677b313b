/**
 * The close record: what a clean close() knew about every bucket, so that the next open can skip
 * opening and checking each bucket's files (four system calls each; 1,024 buckets took 11–26 ms of
 * system calls alone) and do it on the bucket's first use instead.
 *
 * It lives beside the restart file as `<restartFile>.closed`. close() writes it after its flush
 * (to a temporary name, then renamed, so it is whole or absent). It vouches for the files only as
 * long as nothing changes, so the first change after an open removes it (and syncs the folder)
 * before anything is written. A crash after that finds no record and opens the slow way, with
 * repairs; a crash before that changed nothing the record describes.
 *
 * Each bucket's entry names the manifest record it was written against (its sequence number): an
 * entry whose sequence is not the one in force is ignored, and that bucket is opened the slow way.
 * On first use a bucket's index header is checked against the entry (clean, same counts); if it
 * disagrees (power lost after a close that was not durable, or a file changed by hand) the bucket
 * is repaired, as a crash would have it, and the map's size corrected.
 *
 *   ┌────────────────┬─────────┬────────────┬────────┬─────────────┬──────────┬────────────┐
 *   │ magic BUCKTCLS │ version │ maxBuckets │ map id │ entry bytes │ body CRC │ header CRC │
 *   │ 0..8           │ 8 u32   │ 12 u32     │ 16 u32 │ 20 u32 (76) │ 24 u32   │ 28 u32     │
 *   └────────────────┴─────────┴────────────┴────────┴─────────────┴──────────┴────────────┘
 *   then one entry per bucket, from 32:
 *   ┌──────────────────────┬───────────┬──────────────────────────────────────┐
 *   │ manifest seq u32     │ count u32 │ live data cells per size class u32×17│
 *   └──────────────────────┴───────────┴──────────────────────────────────────┘
 * All little-endian. The header CRC (CRC-32C) covers bytes 0..28, the body CRC bytes 32..end.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { crc32c } from './checksum.js';
import { ioError } from './errors.js';
import { SIZE_CLASSES } from './layout.js';
import type { SavedCounts } from './restart.js';
import { fsyncPath } from './storage.js';

const MAGIC = 'BUCKTCLS';
export const CLOSE_RECORD_VERSION = 1;
// Header fields (byte offsets, see the box above).
const C_VERSION = 8;
const C_MAX_BUCKETS = 12;
const C_MAP_ID = 16;
const C_ENTRY_BYTES = 20;
const C_BODY_CRC = 24;
const C_HEADER_CRC = 28;
const HEADER = 32;
const ENTRY_WORDS = 2 + SIZE_CLASSES;
export const CLOSE_ENTRY_BYTES = ENTRY_WORDS * 4;

/** What close() writes for one bucket. */
export interface ClosedBucket {
  seq: number;
  count: number;
  dataCounts: ArrayLike<number>;
}

export class CloseRecord {
  private readonly words: Uint32Array;

  private constructor(words: Uint32Array) {
    this.words = words;
  }

  static path(restartFile: string): string {
    return `${restartFile}.closed`;
  }

  /**
   * The record beside `restartFile` if it is whole and written for this map (`record`, else null),
   * and whether a file of that name exists at all (`present`: it must then be removed before the
   * first change, whether or not it was usable).
   */
  static read(restartFile: string, mapId: number, maxBuckets: number): { record: CloseRecord | null; present: boolean } {
    const expected = HEADER + maxBuckets * CLOSE_ENTRY_BYTES;
    let fd: number;
    try {
      // Like the restart file, never through a symbolic link; O_NONBLOCK so that a FIFO put in its
      // place fails the isFile() check below instead of blocking the open for a writer forever.
      fd = fs.openSync(CloseRecord.path(restartFile), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    } catch (err) {
      return { record: null, present: (err as NodeJS.ErrnoException).code !== 'ENOENT' };
    }
    try {
      const stat = fs.fstatSync(fd);
      if (!stat.isFile() || stat.size !== expected) return { record: null, present: true };
      const bytes = new Uint8Array(expected);
      if (fs.readSync(fd, bytes, 0, expected, 0) !== expected) return { record: null, present: true };
      return { record: CloseRecord.decode(bytes, mapId, maxBuckets), present: true };
    } catch {
      return { record: null, present: true };
    } finally {
      fs.closeSync(fd);
    }
  }

  private static decode(bytes: Uint8Array, mapId: number, maxBuckets: number): CloseRecord | null {
    if (bytes.length !== HEADER + maxBuckets * CLOSE_ENTRY_BYTES) return null;
    for (let i = 0; i < MAGIC.length; i++) if (bytes[i] !== MAGIC.charCodeAt(i)) return null;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (view.getUint32(C_HEADER_CRC, true) !== crc32c(bytes, 0, C_HEADER_CRC)) return null;
    if (view.getUint32(C_VERSION, true) !== CLOSE_RECORD_VERSION || view.getUint32(C_MAX_BUCKETS, true) !== maxBuckets) return null;
    if (view.getUint32(C_MAP_ID, true) !== mapId >>> 0 || view.getUint32(C_ENTRY_BYTES, true) !== CLOSE_ENTRY_BYTES) return null;
    if (view.getUint32(C_BODY_CRC, true) !== crc32c(bytes, HEADER)) return null;
    return new CloseRecord(new Uint32Array(bytes.buffer, bytes.byteOffset + HEADER, maxBuckets * ENTRY_WORDS));
  }

  /** The counts saved for bucket `ix`, if they were written against manifest record `seq`. */
  countsFor(ix: number, seq: number): SavedCounts | null {
    const at = ix * ENTRY_WORDS;
    if (this.words[at] !== seq >>> 0) return null;
    // A plain loop: a subarray and Array.from per bucket were a visible share of a cold open.
    const dataCounts = new Array<number>(SIZE_CLASSES);
    for (let c = 0; c < SIZE_CLASSES; c++) dataCounts[c] = this.words[at + 2 + c];
    return { count: this.words[at + 1], dataCounts };
  }

  /** Writes the record for `maxBuckets` buckets (whole or not at all: a temporary file, renamed). */
  static write(restartFile: string, mapId: number, maxBuckets: number, bucket: (ix: number) => ClosedBucket): void {
    const bytes = new Uint8Array(HEADER + maxBuckets * CLOSE_ENTRY_BYTES);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < MAGIC.length; i++) bytes[i] = MAGIC.charCodeAt(i);
    view.setUint32(C_VERSION, CLOSE_RECORD_VERSION, true);
    view.setUint32(C_MAX_BUCKETS, maxBuckets, true);
    view.setUint32(C_MAP_ID, mapId >>> 0, true);
    view.setUint32(C_ENTRY_BYTES, CLOSE_ENTRY_BYTES, true);
    for (let ix = 0; ix < maxBuckets; ix++) {
      const b = bucket(ix);
      const at = HEADER + ix * CLOSE_ENTRY_BYTES;
      view.setUint32(at, b.seq, true);
      view.setUint32(at + 4, b.count, true);
      for (let c = 0; c < SIZE_CLASSES; c++) view.setUint32(at + 8 + c * 4, b.dataCounts[c], true);
    }
    view.setUint32(C_BODY_CRC, crc32c(bytes, HEADER), true);
    view.setUint32(C_HEADER_CRC, crc32c(bytes, 0, C_HEADER_CRC), true);
    const file = CloseRecord.path(restartFile);
    const temporary = `${file}.tmp`;
    try {
      // Made afresh (O_EXCL does not follow a symbolic link), so whatever was left under the
      // draft's name, a link to another file included, is replaced and never written through.
      fs.rmSync(temporary, { force: true });
      fs.writeFileSync(temporary, bytes, { flag: 'wx' });
      fs.renameSync(temporary, file);
    } catch (err) {
      fs.rmSync(temporary, { force: true });
      throw ioError('cannot write the close record', err, file);
    }
  }

  /**
   * Removes the record and syncs its folder, so that no change can reach the disk while a record
   * that no longer describes the files could still be found after a crash or power loss.
   */
  static remove(restartFile: string): void {
    const file = CloseRecord.path(restartFile);
    try {
      fs.rmSync(file, { force: true });
    } catch (err) {
      throw ioError('cannot remove the close record', err, file);
    }
    fsyncPath(path.dirname(file));
  }
}
