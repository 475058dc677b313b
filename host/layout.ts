/**
 * Byte layouts of format v1, the numbers docs/FORMAT.md describes. assembly/layout.ts holds the
 * same values for the core; tests/layout.test.ts checks that the two agree.
 *
 * Every file (each segment of it) starts with a HEADER_BYTES header; records follow.
 *
 * Index page (PAGE_BYTES = 1024), the record of an index file:
 *   ┌────────────────────────┬─────────────────────┬─────────┬───────────────────────────────────────┐
 *   │ ctrl u16 × 20 (0..40)  │ extra u8 × 20 (..60)│ 0 (..64)│ 20 cells × 48 B: key[32] value[16]    │
 *   └────────────────────────┴─────────────────────┴─────────┴───────────────────────────────────────┘
 * ctrl (little-endian u16):
 *   bits 0–7   dist + 1, where dist = cells from the key's home cell; 0 means the cell is free
 *   bits 8–13  tag: the top 6 bits of the hash's high word (filters key compares)
 *   bits 14–15 kind: 1 INLINE, 2 ZERO, 3 DATA (see below)
 * extra: for an INLINE cell, refCount − 1 (so refCounts 1..256 stay in the index); 0 otherwise.
 * value (16 B):
 *   INLINE  one element (size ≤ 16), refCount 1 + extra: the element bytes, zero-padded
 *   ZERO    an empty slot list: refCount as u64 LE in bytes 0..8
 *   DATA    the list lives in a data file: u32 cell index at creation | u8 created pow2 |
 *           u8 size class | u16 0 | u32 slot count | u32 0
 *
 * Data cell (size class c holds lists of up to 2^c elements; CELL = align8(8 + 2^c × elementSize)):
 *   ┌────────────────────────────┬──────────────┬──────────────────────────┐
 *   │ refCount, 56-bit LE (0..7) │ flags (7)    │ elements (8..)           │
 *   └────────────────────────────┴──────────────┴──────────────────────────┘
 *   flags bit 0 = occupied.
 */

export const FORMAT_VERSION = 1;
export const MAGIC = 'BUCKTMAP';

export const FILE_KIND_INDEX = 1;
export const FILE_KIND_DATA = 2;
export const FILE_KIND_MANIFEST = 3;

export const HEADER_BYTES = 1024;
export const PAGE_BYTES = 1024;
export const CELLS_PER_PAGE = 20;
export const PAGE_HEADER_BYTES = 64;
/** Byte offset in a page of the per-cell extra references of INLINE cells. */
export const PAGE_EXTRA_OFFSET = 40;
/** An INLINE entry keeps refCounts 1..256 (extra = refCount − 1 in one byte). */
export const MAX_INLINE_REFCOUNT = 256;
export const CELL_BYTES = 48;
export const KEY_BYTES = 32;
export const VALUE_BYTES = 16;

/** Byte offset of the cell at `slot` of the page at byte `base` (see the page box above). */
export function cellByte(base: number, slot: number): number {
  return base + PAGE_HEADER_BYTES + slot * CELL_BYTES;
}

/** Byte offset of that cell's extra-references byte in the page header. */
export function extraByte(base: number, slot: number): number {
  return base + PAGE_EXTRA_OFFSET + slot;
}

/** Index of that cell's ctrl word in a 16-bit view of the file (stores must be single 16-bit writes). */
export function ctrlHalf(base: number, slot: number): number {
  return (base >>> 1) + slot;
}

export const CTRL_DIST_MASK = 0xff;
export const CTRL_TAG_SHIFT = 8;
export const CTRL_KIND_SHIFT = 14;

export const KIND_INLINE = 1;
export const KIND_ZERO = 2;
export const KIND_DATA = 3;

export const DATA_HEADER_BYTES = 8;
export const DATA_FLAGS_OFFSET = 7;
export const DATA_OCCUPIED = 1;

/** Size classes 0..MAX_SIZE_CLASS; a list of n elements goes to class ceil(log2(n)) (0 for n ≤ 1). */
export const SIZE_CLASSES = 17;
export const MAX_SIZE_CLASS = SIZE_CLASSES - 1;
export const MAX_SLOTS = 1 << MAX_SIZE_CLASS;
/** A slot list is at most this many bytes, whatever the element size (bounds the scratch buffers). */
export const MAX_LIST_BYTES = 1 << 20;
export const MAX_INLINE_ELEMENT = VALUE_BYTES;

export const MAX_REFCOUNT = Number.MAX_SAFE_INTEGER;

// File header fields (byte offsets). The fixed part [0, HEADER_CRC) is covered by HEADER_CRC.
export const H_MAGIC = 0;
export const H_VERSION = 8;
export const H_KIND = 12;
export const H_HEADER_BYTES = 16;
export const H_RECORD_BYTES = 20;
export const H_CELL_BYTES = 24;
export const H_ELEMENT_SIZE = 28;
export const H_MAX_SEARCH = 32;
export const H_MAX_BUCKETS = 36;
export const H_BUCKET = 40;
export const H_GENERATION = 44;
export const H_SEGMENT = 48;
export const H_SEGMENT_COUNT = 52;
export const H_RECORDS_PER_SEGMENT = 56;
export const H_RECORDS_IN_SEGMENT = 60;
export const H_TOTAL_RECORDS = 64;
export const H_CAPACITY = 68;
export const H_SIZE_CLASS = 72;
export const H_CAPACITY_POW2 = 76;
export const H_SEED_LO = 80;
export const H_SEED_HI = 84;
/** Random id of the map the file belongs to (also in its name), so maps can share a drive. */
export const H_MAP_ID = 88;
export const H_CRC = 124;
export const H_FIXED_BYTES = 128;

// Mutable part of an index file's first segment: counts saved by flush, and the update journal.
export const M_STATE = 128;
export const M_COUNTS_CRC = 132;
export const M_LIVE_COUNT = 136;
export const M_DATA_COUNTS = 144;
export const M_COUNTS_END = M_DATA_COUNTS + 4 * SIZE_CLASSES;
export const STATE_DIRTY = 0;
export const STATE_CLEAN = 1;

/**
 * The journal makes an in-place change of a live cell atomic: body first, then `commit`, then the
 * cell, then `commit` = 0. Reopening a bucket whose `commit` is set re-applies the body.
 *   J_COMMIT u32 | J_CHECK u32 | body: cell u32, ctrl u32, value[16], seq u32, extra u32
 * J_CHECK is the low word of HalfSipHash-1-3(body) under JOURNAL_SEED.
 */
export const J_COMMIT = 256;
export const J_CHECK = 260;
export const J_BODY = 264;
export const J_BODY_BYTES = 32;
export const JOURNAL_SEED_LO = 0x6a6f7572; // "jour"
export const JOURNAL_SEED_HI = 0x6e616c31; // "nal1"

// Manifest (restart file): header, then two record slots per bucket.
export const MANIFEST_SLOT_BYTES = 128;
export const MH_SLOT_BYTES = 20;
export const MH_ELEMENT_SIZE = 28;
export const MH_MAX_SEARCH = 32;
export const MH_MAX_BUCKETS = 36;
export const MH_DRIVES = 40;
export const MH_SEGMENT_BYTES = 44;
export const MH_MAP_ID = 48;
// Slot fields.
export const S_SEQ = 0;
export const S_CRC = 4;
export const S_SEED_LO = 8;
export const S_SEED_HI = 12;
export const S_INDEX_GEN = 16;
export const S_INDEX_PAGES = 20;
export const S_DRIVE = 24;
export const S_DATA_GEN = 32;
export const S_DATA_POW2 = 100;

// Growth policy (tuning, not format).
/** Pages of a bucket's first index file (80 cells, 5 KiB). */
export const INITIAL_INDEX_PAGES = 4;
/** An insert that would fill more than LOAD_MAX_N/LOAD_MAX_D of the cells grows the index first. */
export const LOAD_MAX_N = 9;
export const LOAD_MAX_D = 10;
/**
 * Growth quadruples the smallest indexes and doubles small ones: a small growth costs some 0.4 ms,
 * mostly file operations (take a spare inode, size it, reserve its blocks, map it, retire the old
 * file) rather than rehashing its few hundred keys, so few steps matter more than space there.
 * Large indexes grow by GROW_N/GROW_D, which keeps disk per entry low. From the first 4 pages the
 * steps are 4, 16, 64, 128: at most 32 KiB per bucket over doubling (64 pages where doubling has
 * 32). At 1M keys in 1,024 buckets it halves the growths (4,096 to 2,048) and made inserts
 * 1.23-1.40x as fast (bench/RESULTS.md, (c)).
 */
export const GROW_QUADRUPLE_BELOW_PAGES = 32;
export const GROW_DOUBLE_BELOW_PAGES = 128;
export const GROW_N = 3;
export const GROW_D = 2;
/**
 * A probe window of at least RESEED_MIN_SEARCH cells that overflows below this load is not bad
 * luck but keys aimed at it: the bucket is rehashed with a new random seed instead of grown.
 */
export const RESEED_BELOW_LOAD = 0.5;
export const RESEED_MIN_SEARCH = 16;
/** setAnticipatedCount(n) sizes the index for n entries at this load. */
export const ANTICIPATED_LOAD = 0.8;
/** compact() sizes each index for its live entries at this load unless told otherwise. */
export const COMPACT_LOAD = 0.85;
/** A data file starts with 2^5 cells, fewer if that would exceed DATA_INITIAL_MAX_BYTES. */
export const DATA_INITIAL_POW2 = 5;
export const DATA_INITIAL_MAX_BYTES = 1 << 20;
/** Free data cells are searched from a random start for at most this many × maxSearch cells. */
export const DATA_SEARCH_FACTOR = 10;
export const MAX_DATA_POW2 = 31;
/** Index capacity stays below 2^32 cells (cell numbers are u32). */
export const MAX_INDEX_PAGES = Math.floor(0xffffffff / CELLS_PER_PAGE);

/** Segment files stay below mmap-io's 2 GiB mapping limit. */
export const DEFAULT_SEGMENT_BYTES = 1 << 30;

export function sizeClassOf(slots: number): number {
  return slots <= 1 ? 0 : 32 - Math.clz32(slots - 1);
}

export function dataCellBytes(sizeClass: number, elementSize: number): number {
  return (DATA_HEADER_BYTES + (1 << sizeClass) * elementSize + 7) & ~7;
}

/** Longest slot list the map stores for this element size. */
export function maxSlotsFor(elementSize: number): number {
  return Math.min(MAX_SLOTS, Math.floor(MAX_LIST_BYTES / elementSize));
}
