/**
 * Format v1 and tuning numbers, the same values as host/layout.ts (tests/layout.test.ts checks the
 * two agree through `layoutValue`). See docs/FORMAT.md for the byte-by-byte description.
 *
 * Index page (PAGE_BYTES), the unit the page cache moves:
 *   ┌────────────────────────┬─────────────────────┬─────────┬───────────────────────────────────────┐
 *   │ ctrl u16 × 20 (0..40)  │ extra u8 × 20 (..60)│ 0 (..64)│ 20 cells × 48 B: key[32] value[16]    │
 *   └────────────────────────┴─────────────────────┴─────────┴───────────────────────────────────────┘
 * ctrl: bits 0–7 dist+1 (0 = free) │ bits 8–13 tag │ bits 14–15 kind (1 INLINE, 2 ZERO, 3 DATA)
 * extra: refCount − 1 of an INLINE cell (refCounts 1..256 stay in the index); 0 otherwise.
 *
 * Data cell: refCount 56-bit LE (0..7) │ flags (7, bit 0 occupied) │ elements (8..)
 */

// @ts-ignore: decorator
@inline export const HEADER_BYTES: u32 = 1024;
// @ts-ignore: decorator
@inline export const PAGE_BYTES: u32 = 1024;
// @ts-ignore: decorator
@inline export const PAGE_SHIFT: u32 = 10;
// @ts-ignore: decorator
@inline export const CELLS_PER_PAGE: u32 = 20;
// @ts-ignore: decorator
@inline export const PAGE_HEADER_BYTES: u32 = 64;
// @ts-ignore: decorator
@inline export const PAGE_EXTRA_OFFSET: u32 = 40;
// @ts-ignore: decorator
@inline export const MAX_INLINE_REFCOUNT: u32 = 256;
// @ts-ignore: decorator
@inline export const CELL_BYTES: u32 = 48;
// @ts-ignore: decorator
@inline export const VALUE_OFFSET: u32 = 32;
// @ts-ignore: decorator
@inline export const CTRL_KIND_SHIFT: u32 = 14;
// @ts-ignore: decorator
@inline export const KIND_INLINE: u32 = 1;
// @ts-ignore: decorator
@inline export const KIND_ZERO: u32 = 2;
// @ts-ignore: decorator
@inline export const KIND_DATA: u32 = 3;
// @ts-ignore: decorator
@inline export const MAX_INLINE_ELEMENT: u32 = 16;
// @ts-ignore: decorator
@inline export const DATA_HEADER_BYTES: u32 = 8;
// @ts-ignore: decorator
@inline export const DATA_FLAGS_OFFSET: u32 = 7;
// @ts-ignore: decorator
@inline export const DATA_OCCUPIED: u32 = 1;
// @ts-ignore: decorator
@inline export const SIZE_CLASSES: u32 = 17;
// @ts-ignore: decorator
@inline export const MAX_LIST_BYTES: u32 = 1 << 20;
// @ts-ignore: decorator
@inline export const MAX_ELEMENT_SIZE: u32 = 4096;

// Journal in the index header (first segment); see host/layout.ts for the protocol.
// @ts-ignore: decorator
@inline export const J_COMMIT: u32 = 256;
// @ts-ignore: decorator
@inline export const J_CHECK: u32 = 260;
// @ts-ignore: decorator
@inline export const J_BODY: u32 = 264;
// @ts-ignore: decorator
@inline export const JOURNAL_SEED_LO: u32 = 0x6a6f7572;
// @ts-ignore: decorator
@inline export const JOURNAL_SEED_HI: u32 = 0x6e616c31;

// Tuning.
// @ts-ignore: decorator
@inline export const LOAD_MAX_N: u32 = 9;
// @ts-ignore: decorator
@inline export const LOAD_MAX_D: u32 = 10;
// @ts-ignore: decorator
@inline export const DATA_SEARCH_FACTOR: u32 = 10;

// put() results (the same numbers as host/table.ts).
// @ts-ignore: decorator
@inline export const PUT_NEW: u32 = 0;
// @ts-ignore: decorator
@inline export const PUT_UPDATED: u32 = 1;
// @ts-ignore: decorator
@inline export const INDEX_FULL: u32 = 2;
// @ts-ignore: decorator
@inline export const DATA_FULL: u32 = 3;
/** put() and rehash() found a damaged cell and wrote nothing. */
// @ts-ignore: decorator
@inline export const CORRUPT: u32 = 4;
/** get() and remove() result for a damaged cell (0 = absent, 1 = found/removed). */
// @ts-ignore: decorator
@inline export const FOUND_CORRUPT: u32 = 2;

export function sizeClassOf(slots: u32): u32 {
  return slots <= 1 ? 0 : 32 - clz<u32>(slots - 1);
}

export function dataCellBytes(sizeClass: u32, elementSize: u32): u32 {
  return (DATA_HEADER_BYTES + (<u32>1 << sizeClass) * elementSize + 7) & ~7;
}
