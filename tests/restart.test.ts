import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BucketMap, BucketMapError, codes } from '../host/index.js';
import { hashKey } from '../host/hash.js';
import {
  CELL_BYTES, CELLS_PER_PAGE, FILE_KIND_INDEX, J_BODY, J_CHECK, J_COMMIT, JOURNAL_SEED_HI, JOURNAL_SEED_LO, M_COUNTS_CRC,
  PAGE_BYTES, SIZE_CLASSES,
} from '../host/layout.js';
import { markDirty, readSavedCounts, replayJournal, saveCounts } from '../host/restart.js';
import { MappedFile } from '../host/storage.js';
import { Table } from '../host/table.js';
import { ENGINES, Rng, persistentConfig, removeDir, tempDir } from './helpers.js';

const test = suite('restart state');
let dir = '';
let file: MappedFile;
test.before.each(() => {
  dir = tempDir();
  file = MappedFile.create(dir, 'i', {
    kind: FILE_KIND_INDEX, recordBytes: PAGE_BYTES, cellBytes: CELL_BYTES, elementSize: 16, maxSearch: 32, maxBuckets: 1,
    bucket: 0, generation: 1, totalRecords: 4, capacity: 4 * CELLS_PER_PAGE, sizeClass: 0, capacityPow2: 0, seedLo: 1, seedHi: 2, mapId: 3,
  }, 1 << 20);
});
test.after.each(() => {
  file.release();
  removeDir(dir);
});

test('a new file is dirty; saved counts read back until the bucket is marked dirty again', () => {
  assert.is(readSavedCounts(file), null);
  const data = Array.from({ length: SIZE_CLASSES }, (_, i) => i * 3);
  saveCounts(file, 1234, data);
  assert.equal(readSavedCounts(file), { count: 1234, dataCounts: data });
  markDirty(file);
  assert.is(readSavedCounts(file), null);
});

test('counts whose checksum fails are not trusted', () => {
  saveCounts(file, 5, new Array(SIZE_CLASSES).fill(0));
  file.segments[0][M_COUNTS_CRC] ^= 1;
  assert.is(readSavedCounts(file), null);
});

test('a committed journal record is re-applied to its cell; a cleared one is ignored', () => {
  const table = new Table(32, 16);
  table.bindIndex(file, 1, 2);
  const key = new Rng(1).key();
  const value = new Uint8Array(16).fill(0x11);
  assert.is(table.put(key, 0, value, 0, 1, 1), 0);
  assert.ok(table.read(key));
  let cell = -1;
  for (let c = 0; c < table.capacity; c++) if (table.isLive(c)) cell = c;
  const ctrl = table.ctrl(cell);
  // A crash between the commit and the cell write: the record is in force, the cell still old.
  const body = new Uint8Array(32);
  const words = new Uint32Array(body.buffer);
  words[0] = cell;
  words[1] = ctrl;
  body.fill(0x22, 8, 24);
  words[6] = 7;
  words[7] = 4; // the extra byte: an inline refCount of 5, which the record must carry too
  const head = file.segments[0];
  head.set(body, J_BODY);
  new DataView(head.buffer, head.byteOffset).setUint32(J_CHECK, hashKey(body, 0, JOURNAL_SEED_LO, JOURNAL_SEED_HI) >>> 0, true);
  new DataView(head.buffer, head.byteOffset).setUint32(J_COMMIT, 7, true);
  assert.is(replayJournal(file, table), true);
  assert.ok(table.read(key));
  assert.is(table.out.buf[table.out.off], 0x22);
  assert.is(table.out.refCount, 5);
  assert.is(new DataView(head.buffer, head.byteOffset).getUint32(J_COMMIT, true), 0, 'cleared once applied');
  assert.is(replayJournal(file, table), false);
});

test('a committed record that fails its check is CORRUPT', () => {
  const table = new Table(32, 16);
  table.bindIndex(file, 1, 2);
  const head = file.segments[0];
  new DataView(head.buffer, head.byteOffset).setUint32(J_COMMIT, 3, true);
  new DataView(head.buffer, head.byteOffset).setUint32(J_CHECK, 12345, true);
  assert.throws(() => replayJournal(file, table), (e: BucketMapError) => e.code === codes.CORRUPT && /journal/.test(e.message));
});

for (const engine of ENGINES) {
  test(`[${engine}] the journal's sequence number skips 0 when it wraps: a record numbered 0 would never be committed`, () => {
    const home = tempDir();
    const config = persistentConfig(home, engine, { maxBuckets: 1 });
    const map = new BucketMap(config);
    try {
      const key = new Rng(3).key();
      map.insert(key, [new Uint8Array(16).fill(1)]);
      // The number the next journaled update takes follows this one (2^32 updates of one bucket).
      const core = (map as unknown as { ctx: { engine: Record<string, unknown> } }).ctx.engine;
      if (engine === 'wasm') {
        const memory = (core.core as { memory: WebAssembly.Memory }).memory;
        new DataView(memory.buffer).setUint32((core.descAt as number) + 28, 0xffffffff, true);
      } else {
        ((core.tables as Array<Record<string, number>>)[0]).journalSeq = 0xffffffff;
      }
      map.insert(key, [new Uint8Array(16).fill(2)]); // a new value: through the journal
      const drive = config.drives![0];
      const index = fs.readdirSync(drive).find((name) => /\.i\./.test(name))!;
      const head = fs.readFileSync(path.join(drive, index)).subarray(0, 1024);
      const view = new DataView(head.buffer, head.byteOffset);
      // The commit word took the record's number, and was cleared after the cell was written:
      // with number 0 the record was never in force, and a crash in between left a torn cell.
      assert.is(view.getUint32(J_BODY + 24, true), 1, 'the record after 2^32 - 1 is numbered 1');
      assert.is(view.getUint32(J_COMMIT, true), 0);
      assert.equal(map.readValue(key), [[new Uint8Array(16).fill(2)], 1]);
    } finally {
      map.close();
      removeDir(home);
    }
  });
}

test.run();
