/**
 * File headers of format v1: building them, and checking one read from disk against what the
 * restart file and the configuration say it must be. Layout constants live in layout.ts.
 */
import { crc32c } from './checksum.js';
import { corrupt, BucketMapError, codes } from './errors.js';
import {
  FORMAT_VERSION, MAGIC, HEADER_BYTES, H_MAGIC, H_VERSION, H_KIND, H_HEADER_BYTES, H_RECORD_BYTES, H_CELL_BYTES,
  H_ELEMENT_SIZE, H_MAX_SEARCH, H_MAX_BUCKETS, H_BUCKET, H_GENERATION, H_SEGMENT, H_SEGMENT_COUNT,
  H_RECORDS_PER_SEGMENT, H_RECORDS_IN_SEGMENT, H_TOTAL_RECORDS, H_CAPACITY, H_SIZE_CLASS, H_CAPACITY_POW2,
  H_SEED_LO, H_SEED_HI, H_MAP_ID, H_CRC, FILE_KIND_INDEX, FILE_KIND_DATA, FILE_KIND_MANIFEST,
} from './layout.js';

/** What identifies one bucket file; every field is written into each of its segment headers. */
export interface FileSpec {
  kind: typeof FILE_KIND_INDEX | typeof FILE_KIND_DATA;
  /** Bytes per record: an index page, or a data cell. */
  recordBytes: number;
  /** Bytes per cell (48 for the index, recordBytes for data). */
  cellBytes: number;
  elementSize: number;
  maxSearch: number;
  maxBuckets: number;
  bucket: number;
  generation: number;
  /** Records in the whole file (all segments). */
  totalRecords: number;
  /** Cells in the whole file. */
  capacity: number;
  sizeClass: number;
  capacityPow2: number;
  seedLo: number;
  seedHi: number;
  mapId: number;
}

export interface SegmentPlacement {
  segment: number;
  segmentCount: number;
  recordsPerSegment: number;
  recordsInSegment: number;
}

const FIELDS: ReadonlyArray<[keyof FileSpec, number, string]> = [
  ['recordBytes', H_RECORD_BYTES, 'record size'],
  ['cellBytes', H_CELL_BYTES, 'cell size'],
  ['elementSize', H_ELEMENT_SIZE, 'element size'],
  ['maxSearch', H_MAX_SEARCH, 'maxSearch'],
  ['maxBuckets', H_MAX_BUCKETS, 'maxBuckets'],
  ['bucket', H_BUCKET, 'bucket index'],
  ['generation', H_GENERATION, 'generation'],
  ['totalRecords', H_TOTAL_RECORDS, 'record count'],
  ['capacity', H_CAPACITY, 'capacity'],
  ['sizeClass', H_SIZE_CLASS, 'size class'],
  ['capacityPow2', H_CAPACITY_POW2, 'capacity pow2'],
  ['seedLo', H_SEED_LO, 'hash seed'],
  ['seedHi', H_SEED_HI, 'hash seed'],
  ['mapId', H_MAP_ID, 'map id'],
];

function writeMagicAndVersion(view: DataView, bytes: Uint8Array, kind: number): void {
  for (let i = 0; i < 8; i++) bytes[H_MAGIC + i] = MAGIC.charCodeAt(i);
  view.setUint32(H_VERSION, FORMAT_VERSION, true);
  view.setUint32(H_KIND, kind, true);
  view.setUint32(H_HEADER_BYTES, HEADER_BYTES, true);
}

export function encodeFileHeader(spec: FileSpec, place: SegmentPlacement): Uint8Array {
  const bytes = new Uint8Array(HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  writeMagicAndVersion(view, bytes, spec.kind);
  for (const [field, offset] of FIELDS) view.setUint32(offset, (spec[field] as number) >>> 0, true);
  view.setUint32(H_SEGMENT, place.segment, true);
  view.setUint32(H_SEGMENT_COUNT, place.segmentCount, true);
  view.setUint32(H_RECORDS_PER_SEGMENT, place.recordsPerSegment, true);
  view.setUint32(H_RECORDS_IN_SEGMENT, place.recordsInSegment, true);
  view.setUint32(H_CRC, crc32c(bytes, 0, H_CRC), true);
  return bytes;
}

/** Checks magic, version, kind and the header checksum: what every file kind has in common. */
export function checkCommonHeader(bytes: Uint8Array, kind: number, file: string): DataView {
  if (bytes.length < HEADER_BYTES) throw corrupt(file, `header is ${bytes.length} bytes, expected ${HEADER_BYTES}`);
  for (let i = 0; i < 8; i++) {
    if (bytes[H_MAGIC + i] !== MAGIC.charCodeAt(i)) throw corrupt(file, 'not a bucket-map file (bad magic)');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(H_VERSION, true);
  if (version !== FORMAT_VERSION) {
    throw corrupt(file, `format version ${version} is not supported (this build reads version ${FORMAT_VERSION})`);
  }
  if (view.getUint32(H_CRC, true) !== crc32c(bytes, 0, H_CRC)) throw corrupt(file, 'header checksum mismatch');
  const found = view.getUint32(H_KIND, true);
  if (found !== kind) throw corrupt(file, `file kind is ${kindName(found)}, expected ${kindName(kind)}`);
  if (view.getUint32(H_HEADER_BYTES, true) !== HEADER_BYTES) throw corrupt(file, 'unexpected header size');
  return view;
}

/** Checks a segment header against the file it must belong to. Throws CORRUPT naming the field. */
export function checkFileHeader(bytes: Uint8Array, spec: FileSpec, place: SegmentPlacement, file: string): void {
  const view = checkCommonHeader(bytes, spec.kind, file);
  for (const [field, offset, name] of FIELDS) {
    const found = view.getUint32(offset, true);
    if (found !== (spec[field] as number) >>> 0) {
      const problem = `${name} is ${found}, expected ${spec[field]}`;
      // A configuration the user can change is a mismatch, not damage.
      if (field === 'elementSize' || field === 'maxSearch' || field === 'maxBuckets') {
        throw new BucketMapError(codes.CONFIG_MISMATCH, `${file}: ${problem}`, { file });
      }
      throw corrupt(file, problem);
    }
  }
  const placed: Array<[number, number, string]> = [
    [H_SEGMENT, place.segment, 'segment number'],
    [H_SEGMENT_COUNT, place.segmentCount, 'segment count'],
    [H_RECORDS_PER_SEGMENT, place.recordsPerSegment, 'records per segment'],
    [H_RECORDS_IN_SEGMENT, place.recordsInSegment, 'records in segment'],
  ];
  for (const [offset, expected, name] of placed) {
    const found = view.getUint32(offset, true);
    if (found !== expected) throw corrupt(file, `${name} is ${found}, expected ${expected}`);
  }
}

export function kindName(kind: number): string {
  if (kind === FILE_KIND_INDEX) return 'index';
  if (kind === FILE_KIND_DATA) return 'data';
  if (kind === FILE_KIND_MANIFEST) return 'manifest';
  return `unknown (${kind})`;
}

export { writeMagicAndVersion };
