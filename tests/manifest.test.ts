import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BucketMapError, codes } from '../host/index.js';
import { HEADER_BYTES, MANIFEST_SLOT_BYTES } from '../host/layout.js';
import { Manifest, emptyRecord, type BucketRecord, type ManifestConfig } from '../host/manifest.js';
import { removeDir, tempDir, withFsFunction } from './helpers.js';

const test = suite('manifest');
let dir = '';
let file = '';
test.before.each(() => {
  dir = tempDir();
  file = path.join(dir, 'restart');
});
test.after.each(() => removeDir(dir));

const config: ManifestConfig = { maxBuckets: 8, elementSize: 16, maxSearch: 32, drives: 2, segmentBytes: 1 << 20, mapId: 0x1234abcd };
const { segmentBytes: _s, mapId: _m, ...userConfig } = config;

function record(gen: number): BucketRecord {
  const r = emptyRecord();
  r.seedLo = -5;
  r.seedHi = 0x7fffffff;
  r.indexGen = gen;
  r.indexPages = 10 * gen;
  r.drive = 1;
  r.dataGen[3] = gen + 1;
  r.dataPow2[3] = 7;
  return r;
}

function slotOffset(ix: number, slot: number): number {
  return HEADER_BYTES + ix * 2 * MANIFEST_SLOT_BYTES + slot * MANIFEST_SLOT_BYTES;
}

test('records written to a new restart file come back on open; unwritten buckets are unallocated', () => {
  const m = Manifest.create(file, config);
  m.set(2, record(1));
  m.set(5, record(3));
  m.close();
  assert.is(fs.statSync(file).size, Manifest.fileBytes(8));
  const again = Manifest.open(file, userConfig);
  assert.equal(again.config, config, 'segment size and map id are read from the file');
  assert.equal(again.get(2), record(1));
  assert.equal(again.get(5), record(3));
  assert.is(again.get(0), undefined);
  assert.equal([...again.allocated()].map(([ix]) => ix), [2, 5]);
  again.close();
});

test('updates alternate between the two slots; a torn newest slot leaves the previous state in force', () => {
  const m = Manifest.create(file, config);
  m.set(1, record(1));
  m.set(1, record(2));
  m.set(1, record(3));
  m.close();
  // Slot A holds generations 1 and 3, slot B holds 2: tear slot A (the newest).
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.alloc(40, 0xee), 0, 40, slotOffset(1, 0) + 60);
  fs.closeSync(fd);
  const again = Manifest.open(file, userConfig);
  assert.equal(again.get(1), record(2));
  again.set(1, record(4));
  again.close();
  assert.equal(Manifest.open(file, userConfig).get(1), record(4), 'the next update overwrites the torn slot');
});

test('a record damaged in both slots is CORRUPT', () => {
  const m = Manifest.create(file, config);
  m.set(3, record(1));
  m.set(3, record(2));
  m.close();
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Uint8Array.of(1), 0, 1, slotOffset(3, 0) + 20);
  fs.writeSync(fd, Uint8Array.of(1), 0, 1, slotOffset(3, 1) + 20);
  fs.closeSync(fd);
  assert.throws(() => Manifest.open(file, userConfig), (e: BucketMapError) => e.code === codes.CORRUPT && /bucket 3/.test(e.message));
});

test('a configuration that contradicts the file fails with CONFIG_MISMATCH and leaves it untouched', () => {
  Manifest.create(file, config).close();
  const before = fs.readFileSync(file);
  for (const [key, value] of [['maxBuckets', 16], ['elementSize', 8], ['maxSearch', 16], ['drives', 1]] as const) {
    assert.throws(
      () => Manifest.open(file, { ...userConfig, [key]: value }),
      (e: BucketMapError) => e.code === codes.CONFIG_MISMATCH && e.message.includes(key),
    );
  }
  assert.equal(fs.readFileSync(file), before);
});

test('a truncated or foreign restart file is CORRUPT', () => {
  Manifest.create(file, config).close();
  fs.truncateSync(file, Manifest.fileBytes(8) - 1);
  assert.throws(() => Manifest.open(file, userConfig), (e: BucketMapError) => e.code === codes.CORRUPT && /size is/.test(e.message));
  fs.writeFileSync(file, Buffer.alloc(5000, 1));
  assert.throws(() => Manifest.open(file, userConfig), (e: BucketMapError) => e.code === codes.CORRUPT && /bad magic/.test(e.message));
});

test('an oversized restart file is CORRUPT before it is read: no more than its header comes into memory', () => {
  Manifest.create(file, config).close();
  // Sparse, so the test costs no disk: past 2 GiB Node refuses to read a file whole (that was IO),
  // and below it the whole file was read before its size was compared.
  for (const size of [64 * 1024 * 1024, 3 * 2 ** 30]) {
    fs.truncateSync(file, size);
    let bytesRead = 0;
    let wholeReads = 0;
    const err = withFsFunction('readFileSync', (original) => (...args) => {
      if (args[0] === file) wholeReads++;
      return original(...args);
    }, () => withFsFunction('readSync', (original) => (...args) => {
      const n = original(...args) as number;
      bytesRead += n;
      return n;
    }, () => {
      try {
        Manifest.open(file, userConfig);
      } catch (e) {
        return e as BucketMapError;
      }
      return null;
    }));
    assert.instance(err, BucketMapError);
    assert.is(err?.code, codes.CORRUPT, String(err));
    assert.match(String(err?.message), `size is ${size} bytes`);
    assert.is(wholeReads, 0, 'not read whole');
    assert.ok(bytesRead <= HEADER_BYTES, `read ${bytesRead} bytes`);
  }
});

test('a record naming a drive that does not exist is CORRUPT', () => {
  const m = Manifest.create(file, config);
  const r = record(1);
  r.drive = 5;
  m.set(0, r);
  m.close();
  assert.throws(() => Manifest.open(file, userConfig), (e: BucketMapError) => e.code === codes.CORRUPT && /drive 5 does not exist/.test(e.message));
});

test('creating over an existing file fails instead of overwriting it', () => {
  fs.writeFileSync(file, 'keep me');
  assert.throws(() => Manifest.create(file, config), (e: BucketMapError) => e.code === codes.IO);
  assert.is(fs.readFileSync(file, 'utf8'), 'keep me');
});

test('a draft a killed creator left beside a missing restart file is removed by the next create, which writes the file whole', () => {
  const draft = `${file}.4242.abc123.new`;
  fs.writeFileSync(draft, Buffer.alloc(100));
  const m = Manifest.create(file, config);
  m.set(1, record(1));
  m.close();
  assert.equal(fs.readdirSync(dir).sort(), ['restart']);
  const again = Manifest.open(file, userConfig);
  assert.equal(again.get(1), record(1));
  again.close();
});

test('an in-memory manifest keeps records without a file', () => {
  const m = Manifest.inMemory(config);
  m.set(7, record(2));
  assert.equal(m.get(7), record(2));
  assert.is(m.file, null);
  m.sync();
  m.close();
});

test.run();
