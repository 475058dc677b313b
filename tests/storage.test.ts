import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BucketMapError, codes } from '../host/index.js';
import type { FileSpec } from '../host/format.js';
import { CELL_BYTES, CELLS_PER_PAGE, FILE_KIND_DATA, FILE_KIND_INDEX, HEADER_BYTES, PAGE_BYTES } from '../host/layout.js';
import { MappedFile, faults, segmentPath } from '../host/storage.js';
import { removeDir, tempDir } from './helpers.js';

const test = suite('storage');
let dir = '';
test.before.each(() => {
  dir = tempDir();
});
test.after.each(() => {
  faults.beforeCreate = null;
  removeDir(dir);
});

function indexSpec(pages: number, extra: Partial<FileSpec> = {}): FileSpec {
  return {
    kind: FILE_KIND_INDEX, recordBytes: PAGE_BYTES, cellBytes: CELL_BYTES, elementSize: 16, maxSearch: 32, maxBuckets: 4,
    bucket: 1, generation: 3, totalRecords: pages, capacity: pages * CELLS_PER_PAGE, sizeClass: 0, capacityPow2: 0,
    seedLo: 11, seedHi: 22, mapId: 0xabcdef01, ...extra,
  };
}

const SEGMENT = 64 * 1024;

function expectCode(fn: () => unknown, code: string, pattern: RegExp): void {
  try {
    fn();
  } catch (err) {
    assert.instance(err, BucketMapError);
    assert.is((err as BucketMapError).code, code);
    assert.match((err as Error).message, pattern);
    return;
  }
  assert.unreachable('expected a BucketMapError');
}

test('a created file reopens with the same bytes', () => {
  const spec = indexSpec(4);
  const file = MappedFile.create(dir, 'f', spec, SEGMENT);
  assert.is(file.segments.length, 1);
  assert.is(file.bytes, HEADER_BYTES + 4 * PAGE_BYTES);
  file.segments[0][HEADER_BYTES + 5] = 0x42;
  file.release();
  const again = MappedFile.open(dir, 'f', spec, SEGMENT);
  assert.is(again.segments[0][HEADER_BYTES + 5], 0x42);
});

/** The VmFlags of each of this process's mappings of `file` (Linux). */
function vmFlagsOf(file: string): string[][] {
  const lines = fs.readFileSync('/proc/self/smaps', 'utf8').split('\n');
  const real = fs.realpathSync(file);
  const found: string[][] = [];
  let mine = false;
  for (const line of lines) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) mine = line.endsWith(` ${real}`);
    else if (mine && line.startsWith('VmFlags:')) found.push(line.slice('VmFlags:'.length).trim().split(/\s+/));
  }
  return found;
}

test('bucket files are mapped shared with the kernel\'s read-around, not MADV_RANDOM', () => {
  if (process.platform !== 'linux') return;
  // MADV_RANDOM ("rr") made each fault on a page not in memory read that one page: a reopened map
  // read after its pages left the page cache took 2.3 times as long (see host/storage.ts).
  const spec = indexSpec(4);
  const created = MappedFile.create(dir, 'f', spec, SEGMENT);
  const writer = MappedFile.open(dir, 'f', spec, SEGMENT);
  const reader = MappedFile.open(dir, 'f', spec, SEGMENT, true);
  const flags = vmFlagsOf(segmentPath(dir, 'f', 0));
  assert.is(flags.length, 3, `mappings of the segment: ${JSON.stringify(flags)}`);
  for (const f of flags) {
    assert.ok(f.includes('ms'), `not MAP_SHARED: ${f.join(' ')}`);
    assert.not.ok(f.includes('rr'), `random-read advice: ${f.join(' ')}`);
  }
  for (const file of [created, writer, reader]) file.release();
});

test('a file larger than the segment size is split into segment files, each with its own header', () => {
  const pagesPerSegment = Math.floor((SEGMENT - HEADER_BYTES) / PAGE_BYTES);
  const spec = indexSpec(pagesPerSegment * 2 + 5);
  const file = MappedFile.create(dir, 'big', spec, SEGMENT);
  assert.is(file.segments.length, 3);
  assert.is(file.recordsPerSegment, pagesPerSegment);
  for (let s = 0; s < 3; s++) assert.ok(fs.existsSync(segmentPath(dir, 'big', s)));
  assert.is(fs.statSync(segmentPath(dir, 'big', 2)).size, HEADER_BYTES + 5 * PAGE_BYTES);
  for (const segment of file.segments) assert.ok(segment.length <= SEGMENT);
  file.segments[2][HEADER_BYTES] = 9;
  file.release();
  assert.is(MappedFile.open(dir, 'big', spec, SEGMENT).segments[2][HEADER_BYTES], 9);
});

test('data files hold whole cells in every segment', () => {
  const cellBytes = 24;
  const spec: FileSpec = { ...indexSpec(0), kind: FILE_KIND_DATA, recordBytes: cellBytes, cellBytes, totalRecords: 8192, capacity: 8192, sizeClass: 0, capacityPow2: 13, seedLo: 0, seedHi: 0 };
  const file = MappedFile.create(dir, 'data', spec, SEGMENT);
  const perSegment = Math.floor((SEGMENT - HEADER_BYTES) / cellBytes);
  assert.is(file.recordsPerSegment, perSegment);
  assert.is(file.segments.length, Math.ceil(8192 / perSegment));
  for (const segment of file.segments) assert.is(segment.length % 1024, 0);
});

test('a truncated segment fails with CORRUPT naming the file and sizes, before any mapping', () => {
  const spec = indexSpec(4);
  MappedFile.create(dir, 'f', spec, SEGMENT).release();
  const file = segmentPath(dir, 'f', 0);
  fs.truncateSync(file, HEADER_BYTES + 2 * PAGE_BYTES);
  expectCode(() => MappedFile.open(dir, 'f', spec, SEGMENT), codes.CORRUPT, /f\.0\.bkt: size is 3072 bytes, expected 5120/);
});

test('a flipped header byte fails the header checksum', () => {
  const spec = indexSpec(2);
  MappedFile.create(dir, 'f', spec, SEGMENT).release();
  const file = segmentPath(dir, 'f', 0);
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Uint8Array.of(0x7f), 0, 1, 44);
  fs.closeSync(fd);
  expectCode(() => MappedFile.open(dir, 'f', spec, SEGMENT), codes.CORRUPT, /header checksum mismatch/);
});

test('a foreign file, a wrong version and a wrong kind are told apart', () => {
  const spec = indexSpec(2);
  fs.writeFileSync(segmentPath(dir, 'x', 0), Buffer.alloc(HEADER_BYTES + 2 * PAGE_BYTES, 0x41));
  expectCode(() => MappedFile.open(dir, 'x', spec, SEGMENT), codes.CORRUPT, /not a bucket-map file/);
  MappedFile.create(dir, 'v', spec, SEGMENT).release();
  const fd = fs.openSync(segmentPath(dir, 'v', 0), 'r+');
  fs.writeSync(fd, Uint8Array.of(9), 0, 1, 8);
  fs.closeSync(fd);
  expectCode(() => MappedFile.open(dir, 'v', spec, SEGMENT), codes.CORRUPT, /format version 9 is not supported/);
  MappedFile.create(dir, 'k', spec, SEGMENT).release();
  expectCode(() => MappedFile.open(dir, 'k', { ...spec, kind: FILE_KIND_DATA }, SEGMENT), codes.CORRUPT, /file kind is index, expected data/);
});

test('a file of another bucket or generation is rejected; another element size is a configuration mismatch', () => {
  const spec = indexSpec(2);
  MappedFile.create(dir, 'f', spec, SEGMENT).release();
  expectCode(() => MappedFile.open(dir, 'f', { ...spec, bucket: 2 }, SEGMENT), codes.CORRUPT, /bucket index is 1, expected 2/);
  expectCode(() => MappedFile.open(dir, 'f', { ...spec, generation: 4 }, SEGMENT), codes.CORRUPT, /generation is 3, expected 4/);
  expectCode(() => MappedFile.open(dir, 'f', { ...spec, elementSize: 8 }, SEGMENT), codes.CONFIG_MISMATCH, /element size is 16, expected 8/);
});

test('a missing segment is FILE_MISSING; a symlink or a folder in its place is refused', () => {
  const spec = indexSpec(2);
  expectCode(() => MappedFile.open(dir, 'nope', spec, SEGMENT), codes.FILE_MISSING, /nope\.0\.bkt: bucket file is missing/);
  MappedFile.create(dir, 'real', spec, SEGMENT).release();
  fs.symlinkSync(segmentPath(dir, 'real', 0), segmentPath(dir, 'link', 0));
  expectCode(() => MappedFile.open(dir, 'link', spec, SEGMENT), codes.CORRUPT, /symbolic link/);
  fs.mkdirSync(segmentPath(dir, 'folder', 0));
  expectCode(() => MappedFile.open(dir, 'folder', spec, SEGMENT), codes.CORRUPT, /not a regular file/);
});

test('unlink removes the files while the mapping stays readable until released', () => {
  const file = MappedFile.create(dir, 'f', indexSpec(2), SEGMENT);
  file.segments[0][HEADER_BYTES] = 5;
  file.unlink();
  assert.not.ok(fs.existsSync(segmentPath(dir, 'f', 0)));
  assert.is(file.segments[0][HEADER_BYTES], 5);
  file.release();
  assert.is(file.segments.length, 0);
});

test('a creation that fails part way leaves no files behind', () => {
  const pagesPerSegment = Math.floor((SEGMENT - HEADER_BYTES) / PAGE_BYTES);
  let calls = 0;
  faults.beforeCreate = () => {
    if (++calls === 2) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
  };
  assert.throws(() => MappedFile.create(dir, 'f', indexSpec(pagesPerSegment * 2), SEGMENT), /no space left/);
  assert.equal(fs.readdirSync(dir), []);
});

test("mmap-io loads whatever the program's own arguments are (node-pre-gyp reads --dir from argv)", () => {
  const script = `import { BucketMap } from ${JSON.stringify(new URL('../host/index.js', import.meta.url).href)};
    const m = new BucketMap({ maxBuckets: 1 }); m.insert(new Uint8Array(32), [new Uint8Array(16)]); m.flush({ durable: true });
    process.stdout.write(String(m.size)); m.close();`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script, '--', '--dir', '/nonexistent', '--directory', '/nowhere'], { encoding: 'utf8' });
  assert.is(child.status, 0, child.stderr);
  assert.is(child.stdout, '1');
});

test('sync flushes a mapping without error', () => {
  const file = MappedFile.create(dir, 'f', indexSpec(2), SEGMENT);
  file.segments[0][HEADER_BYTES + 1] = 1;
  file.sync();
  assert.is(fs.readFileSync(path.join(dir, 'f.0.bkt'))[HEADER_BYTES + 1], 1);
});

test.run();
