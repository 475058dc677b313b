/**
 * verify(): walks every cell of a bucket's files and reports what is wrong, changing nothing.
 * It checks what opening does not (opening only reads headers): each live cell's ctrl, that its
 * key sits where its hash and distance say, the Robin Hood order, duplicate keys, the padding of
 * values, every data reference, that each occupied data cell is referenced exactly once, and the
 * saved counts and journal of a cleanly closed bucket.
 */
import { hashHi, hashKeyWords } from './hash.js';
import {
  CTRL_KIND_SHIFT, DATA_FLAGS_OFFSET, DATA_OCCUPIED, KIND_DATA, KIND_INLINE, KIND_ZERO, MAX_INLINE_ELEMENT, SIZE_CLASSES,
} from './layout.js';
import type { SavedCounts } from './restart.js';
import type { Table } from './table.js';

export interface VerifyProblem {
  /** The file the problem is in: the segment file that holds the cell, else the file's first segment (its header). */
  file: string;
  bucket: number;
  /** Index cell or data cell number, when the problem is in one cell. */
  cell?: number;
  problem: string;
}

export interface VerifyReport {
  ok: boolean;
  /** Buckets with files that were checked. */
  buckets: number;
  /** Live entries found. */
  entries: number;
  /** Occupied data cells found. */
  dataCells: number;
  /** The first problems found (at most 1,000), and how many there were in all. */
  problems: VerifyProblem[];
  problemCount: number;
  /** Facts that are not damage, such as a bucket left dirty by a crash (reopening repairs it). */
  notes: string[];
}

const MAX_REPORTED = 1000;
/** The key being checked, as the words the lookup compares. */
const KEY_WORDS = new Int32Array(8);

export function emptyReport(): VerifyReport {
  return { ok: true, buckets: 0, entries: 0, dataCells: 0, problems: [], problemCount: 0, notes: [] };
}

export function addProblem(report: VerifyReport, problem: VerifyProblem): void {
  report.ok = false;
  report.problemCount++;
  if (report.problems.length < MAX_REPORTED) report.problems.push(problem);
}

/**
 * A bucket the close record vouches for whose header says otherwise: an open takes the record's
 * counts and repairs the bucket on first use (a reader refuses it), so it is reported, not noted.
 */
export function staleRecordProblem(vouched: SavedCounts, header: SavedCounts | null): string {
  const found = header === null ? 'its header says it was being changed (dirty)' : `its header counts ${header.count} entries`;
  return `the close record vouches for ${vouched.count} entries, but ${found}: the record is stale or the files changed after it `
    + 'was written. Nothing was changed; its first use in a map open for writing repairs it (as after a crash), a read-only open refuses it';
}

export interface BucketToVerify {
  bucket: number;
  table: Table;
  /** Counts saved by the last flush, or null if the bucket is dirty. */
  saved: SavedCounts | null;
  /** Counts the open map holds (verify() on an open map), checked instead of saved ones. */
  live: { count: number; dataCounts: ArrayLike<number> } | null;
  /** Whether the journal's commit word is set. */
  journalCommitted: boolean;
}

export function verifyBucket(b: BucketToVerify, report: VerifyReport): void {
  const { table, bucket } = b;
  // Named by the segment that holds the cell: with several segments, the first one sent a user to
  // the wrong file.
  const indexFiles = table.index.segmentPaths;
  const indexFile = indexFiles[0] ?? table.index.name;
  let cellFile = indexFile;
  const problem = (cell: number | undefined, text: string, file = cell === undefined ? indexFile : cellFile): void =>
    addProblem(report, { file, bucket, ...(cell === undefined ? {} : { cell }), problem: text });
  const capacity = table.capacity;
  const window = Math.min(table.maxSearch, capacity);
  const es = table.elementSize;
  const references = table.data.map((d) => (d === null ? null : new Uint8Array(d.capacity)));
  let live = 0;
  let previousDist = -1;
  const firstDist = (table.ctrl(capacity - 1) & 0xff) - 1;
  previousDist = firstDist;

  for (let c = 0; c < capacity; c++) {
    const ctl = table.ctrl(c);
    cellFile = indexFiles[table.seg] ?? indexFile;
    const dist = (ctl & 0xff) - 1;
    const kind = ctl >>> CTRL_KIND_SHIFT;
    if (dist < 0) {
      previousDist = -1;
      continue;
    }
    live++;
    if (dist >= window) problem(c, `sits ${dist} cells from its home, past maxSearch ${table.maxSearch}`);
    if (dist > previousDist + 1) problem(c, `breaks the Robin Hood order (distance ${dist} after ${previousDist})`);
    previousDist = dist;
    const off = table.cellOffset(c);
    const bytes = table.u8[table.seg];
    const key = bytes.slice(off, off + 32);
    const lo = hashKeyWords(key, 0, table.seedLo, table.seedHi, KEY_WORDS);
    const tag = hashHi >>> 26;
    const home = (lo >>> 0) % capacity;
    if ((c - home + capacity) % capacity !== dist) problem(c, `holds a key whose home is cell ${home}, not ${(c - dist + capacity) % capacity}`);
    if (((ctl >>> 8) & 63) !== tag) problem(c, 'has a tag that does not match its key');
    // The lookup finds a key's first copy from its home, so finding another cell means this one
    // is a second copy. (A Set of every key seen stopped at 2^24 keys, and a bucket can hold more.)
    const found = table.probeHashed(lo, tag, KEY_WORDS, 0);
    if (found >= 0 && found !== c) problem(c, 'holds a key that is also in an earlier cell');
    const value = off + 32;
    const extraAt = table.extraOffset(c);
    const extra = table.u8[table.seg][extraAt];
    if (kind !== KIND_INLINE && extra !== 0) problem(c, `has extra references ${extra} but is not an inline entry`);
    if (kind === KIND_INLINE && es > MAX_INLINE_ELEMENT) {
      problem(c, `is inline, but elements of ${es} bytes are never stored inline`);
    } else if (kind === KIND_INLINE) {
      for (let i = es; i < 16; i++) if (bytes[value + i] !== 0) { problem(c, 'has non-zero padding after its element'); break; }
    } else if (kind === KIND_ZERO) {
      const hi = bytes[value + 4] | (bytes[value + 5] << 8) | (bytes[value + 6] << 16) | (bytes[value + 7] << 24);
      if (hi >>> 0 >= 1 << 21) problem(c, 'has a refCount above 2^53 - 1');
      for (let i = 8; i < 16; i++) if (bytes[value + i] !== 0) { problem(c, 'has non-zero bytes after its refCount'); break; }
    } else if (kind === KIND_DATA) {
      let ref: [number, number] | null = null;
      try {
        ref = table.dataRef(c);
      } catch (err) {
        problem(c, (err as Error).message.replace(/^.*?: /, ''));
      }
      if (ref !== null) {
        const [sizeClass, cell] = ref;
        const slots = (bytes[value + 8] | (bytes[value + 9] << 8) | (bytes[value + 10] << 16) | (bytes[value + 11] << 24)) >>> 0;
        // At most 2^c in class c, and never more than the longest list the element size allows.
        const most = Math.min(2 ** sizeClass, table.maxSlots);
        if (slots === 0 || slots > most) problem(c, `holds ${slots} elements in size class ${sizeClass} (at most ${most})`);
        const marks = references[sizeClass] as Uint8Array;
        if (marks[cell] !== 0) problem(c, `points at data cell ${cell} of class ${sizeClass}, which another entry points at too`);
        marks[cell] = 1;
      }
    } else {
      problem(c, 'is live but has no kind');
    }
  }
  report.entries += live;

  let occupiedTotal = 0;
  const occupied = new Array<number>(SIZE_CLASSES).fill(0);
  for (let k = 0; k < SIZE_CLASSES; k++) {
    const data = table.data[k];
    if (data === null) continue;
    const dataFiles = data.file.segmentPaths;
    const dataFile = dataFiles[0] ?? data.file.name;
    const marks = references[k] as Uint8Array;
    let leaked = 0;
    for (let cell = 0; cell < data.capacity; cell++) {
      const s = data.segmentOf(cell);
      const at = data.offsetOf(cell, s);
      const flags = data.u8[s][at + DATA_FLAGS_OFFSET];
      if ((flags & ~DATA_OCCUPIED) !== 0) problem(cell, `data cell of class ${k} has unknown flag bits ${flags.toString(2)}`, dataFiles[s] ?? dataFile);
      if ((flags & DATA_OCCUPIED) === 0) continue;
      occupied[k]++;
      if ((data.u32[s][(at >>> 2) + 1] & 0xffffff) >= 1 << 21) problem(cell, `data cell of class ${k} has a refCount above 2^53 - 1`, dataFiles[s] ?? dataFile);
      if (marks[cell] === 0) leaked++;
    }
    occupiedTotal += occupied[k];
    if (leaked > 0) {
      if (b.saved !== null || b.live !== null) problem(undefined, `${leaked} occupied data cells of class ${k} are not referenced by any entry`, dataFile);
      else report.notes.push(`bucket ${bucket}: ${leaked} data cells of class ${k} were left by an interrupted change; reopening frees them`);
    }
  }
  report.dataCells += occupiedTotal;

  const expected = b.live ?? b.saved;
  if (expected !== null) {
    if (expected.count !== live) problem(undefined, `the entry count says ${expected.count}, the index holds ${live}`);
    for (let k = 0; k < SIZE_CLASSES; k++) {
      if (expected.dataCounts[k] !== occupied[k]) problem(undefined, `the data count of class ${k} says ${expected.dataCounts[k]}, the file holds ${occupied[k]}`);
    }
    if (b.journalCommitted) problem(undefined, 'a journal record is committed in a bucket marked clean');
  } else {
    report.notes.push(`bucket ${bucket} was being changed when its process stopped; reopening repairs it`);
  }
  report.buckets++;
}
