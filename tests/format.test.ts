import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { crc32c } from '../host/checksum.js';
import { BucketMapError, codes } from '../host/index.js';
import { checkFileHeader, encodeFileHeader, type FileSpec } from '../host/format.js';
import { CELL_BYTES, FILE_KIND_INDEX, HEADER_BYTES, H_CRC, H_MAGIC, PAGE_BYTES } from '../host/layout.js';

test('CRC-32C matches the standard check value and detects a single bit flip', () => {
  assert.is(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  assert.is(crc32c(new Uint8Array(0)), 0);
  const data = new Uint8Array(100).fill(0x5a);
  const before = crc32c(data);
  data[37] ^= 4;
  assert.is.not(crc32c(data), before);
});

const spec: FileSpec = {
  kind: FILE_KIND_INDEX, recordBytes: PAGE_BYTES, cellBytes: CELL_BYTES, elementSize: 16, maxSearch: 32, maxBuckets: 1024,
  bucket: 513, generation: 9, totalRecords: 77, capacity: 1540, sizeClass: 0, capacityPow2: 0, seedLo: -123, seedHi: 0x7654321, mapId: 0xfeedface,
};
const place = { segment: 1, segmentCount: 3, recordsPerSegment: 40, recordsInSegment: 37 };

test('a header is little-endian, checksummed, and checks against its own spec', () => {
  const header = encodeFileHeader(spec, place);
  assert.is(header.length, HEADER_BYTES);
  assert.is(new TextDecoder().decode(header.subarray(H_MAGIC, H_MAGIC + 8)), 'BUCKTMAP');
  const view = new DataView(header.buffer);
  assert.is(view.getUint32(8, true), 1, 'format version');
  assert.is(view.getUint32(40, true), 513, 'bucket');
  assert.is(view.getUint32(80, true), (-123) >>> 0, 'seed low word as unsigned');
  assert.is(view.getUint32(H_CRC, true), crc32c(header, 0, H_CRC));
  checkFileHeader(header, spec, place, 'f');
});

test('every header field is checked; user-settable ones report a configuration mismatch', () => {
  const header = encodeFileHeader(spec, place);
  for (const [field, code] of [
    ['elementSize', codes.CONFIG_MISMATCH], ['maxSearch', codes.CONFIG_MISMATCH], ['maxBuckets', codes.CONFIG_MISMATCH],
    ['bucket', codes.CORRUPT], ['generation', codes.CORRUPT], ['totalRecords', codes.CORRUPT], ['capacity', codes.CORRUPT],
    ['seedLo', codes.CORRUPT], ['seedHi', codes.CORRUPT], ['mapId', codes.CORRUPT], ['cellBytes', codes.CORRUPT],
  ] as const) {
    const other = { ...spec, [field]: (spec[field] as number) + 1 };
    assert.throws(() => checkFileHeader(header, other, place, 'f'), (e: BucketMapError) => e.code === code, field);
  }
  assert.throws(() => checkFileHeader(header, spec, { ...place, segment: 2 }, 'f'), (e: BucketMapError) => /segment number/.test(e.message));
  assert.throws(() => checkFileHeader(header, spec, { ...place, recordsInSegment: 36 }, 'f'), (e: BucketMapError) => /records in segment/.test(e.message));
  assert.throws(() => checkFileHeader(header.subarray(0, 100), spec, place, 'f'), (e: BucketMapError) => /header is 100 bytes/.test(e.message));
});

test.run();
