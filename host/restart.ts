/**
 * What a bucket needs to survive a restart beyond its files: the counts saved by flush(), the
 * clean/dirty state, and the repair of a bucket that was being changed when the process died.
 *
 * A bucket is marked dirty (one store into its index header) before its first change after a
 * flush, and marked clean by the next flush once its counts are written. Reopening a clean bucket
 * costs a header read. Reopening a dirty one replays its journal, rebuilds its index into a new
 * file (removing the duplicate a cut-short move can leave), frees data cells no entry points to
 * (a crash between writing a data cell and pointing at it leaks one) and recounts.
 */
import { crc32c } from './checksum.js';
import { corrupt } from './errors.js';
import {
  DATA_OCCUPIED, HEADER_BYTES, J_COMMIT, KIND_DATA, CTRL_KIND_SHIFT, M_COUNTS_CRC, M_COUNTS_END, M_DATA_COUNTS, M_LIVE_COUNT, M_STATE, SIZE_CLASSES,
  STATE_CLEAN, STATE_DIRTY,
} from './layout.js';
import type { MappedFile } from './storage.js';
import { Table } from './table.js';

export interface SavedCounts {
  count: number;
  dataCounts: number[];
}

/** The index file's header in its mapping (mapping the file if it was opened lazily): for writes. */
function headerBytes(index: MappedFile): Uint8Array {
  const b = index.segments[0];
  return new Uint8Array(b.buffer, b.byteOffset, HEADER_BYTES);
}

function wordsOf(header: Uint8Array): Uint32Array {
  return new Uint32Array(header.buffer, header.byteOffset, HEADER_BYTES >>> 2);
}

/** The counts of a cleanly flushed bucket, or null if it is dirty (or its counts fail their checksum). */
export function readSavedCounts(index: MappedFile): SavedCounts | null {
  // Read through peekHeader(): on a file opened lazily this must not map it.
  const bytes = index.peekHeader();
  const words = wordsOf(bytes);
  if (words[M_STATE >>> 2] !== STATE_CLEAN) return null;
  if (words[M_COUNTS_CRC >>> 2] !== crc32c(bytes, M_LIVE_COUNT, M_COUNTS_END)) return null;
  const dataCounts: number[] = [];
  for (let c = 0; c < SIZE_CLASSES; c++) dataCounts.push(words[(M_DATA_COUNTS >>> 2) + c]);
  return { count: words[M_LIVE_COUNT >>> 2], dataCounts };
}

/** Saves counts and marks the bucket clean: counts first, so a crash in between leaves it dirty. */
export function saveCounts(index: MappedFile, count: number, dataCounts: ArrayLike<number>): void {
  const bytes = headerBytes(index);
  const words = wordsOf(bytes);
  words[M_LIVE_COUNT >>> 2] = count;
  for (let c = 0; c < SIZE_CLASSES; c++) words[(M_DATA_COUNTS >>> 2) + c] = dataCounts[c];
  words[M_COUNTS_CRC >>> 2] = crc32c(bytes, M_LIVE_COUNT, M_COUNTS_END);
  words[M_STATE >>> 2] = STATE_CLEAN;
}

export function markDirty(index: MappedFile): void {
  wordsOf(headerBytes(index))[M_STATE >>> 2] = STATE_DIRTY;
}

export function journalCommitted(index: MappedFile): boolean {
  return wordsOf(index.peekHeader())[J_COMMIT >>> 2] !== 0;
}

/** Re-applies a committed journal record; throws CORRUPT if the record is damaged. */
export function replayJournal(index: MappedFile, table: Table): boolean {
  const result = table.replayJournal();
  if (result === 'invalid') throw corrupt(index.segmentPaths[0], 'journal record is committed but fails its check');
  return result === 'applied';
}

/**
 * After a rebuild: checks that every DATA entry points at an occupied cell of an existing data
 * file, frees occupied cells that nothing points at, and sets the table's data counts.
 * Returns the number of cells freed.
 */
export function collectDataCells(table: Table, file: string): number {
  const marks: Array<Uint8Array | null> = table.data.map((d) => (d === null ? null : new Uint8Array(d.capacity)));
  for (let c = 0; c < table.capacity; c++) {
    if (!table.isLive(c)) continue;
    const kind = table.ctrl(c) >>> CTRL_KIND_SHIFT;
    if (kind === 0) throw corrupt(file, `cell ${c} is live but has no kind`);
    if (kind !== KIND_DATA) continue;
    const ref = table.dataRef(c) as [number, number];
    const [sizeClass, cell] = ref;
    const data = sizeClass < SIZE_CLASSES ? table.data[sizeClass] : null;
    if (data === null || data === undefined) throw corrupt(file, `cell ${c} points into data class ${sizeClass}, which has no file`);
    if (!Number.isInteger(cell) || cell >= data.capacity) throw corrupt(file, `cell ${c} points past the end of data class ${sizeClass}`);
    if (!data.isOccupied(cell)) throw corrupt(file, `cell ${c} points at a free cell of data class ${sizeClass}`);
    (marks[sizeClass] as Uint8Array)[cell] = 1;
  }
  let freed = 0;
  for (let k = 0; k < SIZE_CLASSES; k++) {
    const data = table.data[k];
    const mark = marks[k];
    table.dataCount[k] = 0;
    if (data === null || mark === null) continue;
    for (let cell = 0; cell < data.capacity; cell++) {
      if (!data.isOccupied(cell)) continue;
      if (mark[cell] === 1) {
        table.dataCount[k]++;
        continue;
      }
      const s = data.segmentOf(cell);
      data.u8[s][data.offsetOf(cell, s) + 7] &= ~DATA_OCCUPIED;
      freed++;
    }
  }
  return freed;
}
