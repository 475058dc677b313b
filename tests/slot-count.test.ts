/**
 * A DATA entry's slot count comes from the file: one above the longest list (2^16 elements and
 * 1 MiB, maxSlotsFor) is damage even when the cell's size class has room for it. Every read path
 * reports it as CORRUPT (none loops, none returns an oversized list, the wasm core copies nothing
 * past its buffers), and verify() reports it.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import { BucketMap, BucketMapError, codecs, codes, type BucketMapConfig } from '../host/index.js';
import { Batcher, type BatchHost } from '../host/batch.js';
import { BATCH } from '../host/engine.js';
import { ENGINES, Rng, locateKey, persistentConfig, removeDir, tempDir } from './helpers.js';

/** Writes `slots` as the slot count of the key's DATA cell (value bytes 8..11). */
function setSlotCount(config: BucketMapConfig, key: Uint8Array, slots: number): void {
  const { file, cellAt } = locateKey(config, key);
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, slots, true);
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, bytes, 0, 4, cellAt + 32 + 8);
  fs.closeSync(fd);
}

const isCorrupt = (e: unknown): boolean => e instanceof BucketMapError && e.code === codes.CORRUPT;

/** Every way of reading `victim` fails with CORRUPT; `other` still reads. */
function assertCorruptEverywhere(map: BucketMap<Uint8Array>, victim: Uint8Array, other: Uint8Array, size: number): void {
  assert.throws(() => map.readValue(victim), isCorrupt, 'readValue');
  assert.throws(() => map.get(victim), isCorrupt, 'get');
  assert.throws(() => map.readInto(victim, new Uint8Array(4 << 20)), isCorrupt, 'readInto');
  assert.throws(() => map.getMany([victim]), isCorrupt, 'getMany of the damaged key alone');
  assert.throws(() => map.getMany([other, victim]), isCorrupt, 'getMany after a good key');
  const slots = new Int32Array(2);
  assert.throws(() => map.readManyInto([victim], new Uint8Array(4 << 20), slots), isCorrupt, 'readManyInto alone');
  assert.throws(() => map.readManyInto([other, victim], new Uint8Array(4 << 20), slots), isCorrupt, 'readManyInto after a good key');
  assert.throws(() => {
    for (const _ of map.entries()) { /* walk */ }
  }, isCorrupt, 'entries()');
  const good = map.getMany([other]);
  assert.ok(good[0] !== undefined && good[0][0].length === 2 && good[0][0][0].length === size, 'the other entry still reads');
}

for (const engine of ENGINES) {
  const test = suite(`slot counts [${engine}]`);
  let dir = '';
  test.before.each(() => {
    dir = tempDir();
  });
  test.after.each(() => removeDir(dir));

  test('a slot count far above its size class is CORRUPT on every read path; getMany and readManyInto do not loop', () => {
    const rng = new Rng(71);
    // 32-byte elements: 100,000 of them are 3.2 MiB, more than a batch's whole data area.
    const config = persistentConfig(dir, engine, { maxBuckets: 1, codec: codecs.bytes(32) });
    let map = new BucketMap(config);
    const victim = rng.key();
    const other = rng.key();
    map.insert(victim, [rng.bytes(32), rng.bytes(32)]);
    map.insert(other, [rng.bytes(32), rng.bytes(32)]);
    map.close();
    setSlotCount(config, victim, 100_000);
    assert.match(BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! }).problems.map((p) => p.problem).join('\n'), /holds 100000 elements in size class 1/);
    map = new BucketMap(config);
    try {
      assertCorruptEverywhere(map, victim, other, 32);
    } finally {
      map.close();
    }
  });

  test('a slot count above the longest list the element size allows, within 2^class, is damage: CORRUPT on use, a problem for verify()', () => {
    const rng = new Rng(72);
    // 24-byte elements: a list stops at floor(1 MiB / 24) = 43,690 elements, in size class 16,
    // whose cells hold 65,536 of them.
    const config = persistentConfig(dir, engine, { maxBuckets: 1, codec: codecs.bytes(24) });
    const most = Math.floor((1 << 20) / 24);
    let map = new BucketMap(config);
    const victim = rng.key();
    const other = rng.key();
    const fill = new Uint8Array(24).fill(0xab);
    map.insert(victim, Array.from({ length: most }, () => fill));
    map.insert(other, [rng.bytes(24), rng.bytes(24)]);
    assert.throws(() => map.insert(rng.key(), Array.from({ length: most + 1 }, () => fill)), (e: unknown) => e instanceof RangeError);
    assert.is(map.readValue(victim)![0].length, most, 'the longest list reads back whole');
    map.close();
    assert.ok(BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! }).ok, 'the longest list is no problem');
    for (const slots of [most + 1, 65_536]) {
      setSlotCount(config, victim, slots);
      const report = BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! });
      assert.is(report.ok, false, `verify() with ${slots} elements`);
      assert.match(report.problems.map((p) => p.problem).join('\n'), new RegExp(`holds ${slots} elements in size class 16`));
      map = new BucketMap(config);
      try {
        // Before the fix, wasm copied slots × 24 bytes into its 1 MiB OUT buffer and over the batch
        // buffers after it: mark the batch keys, and check a failed read leaves them alone.
        const batch = (map as unknown as { ctx: { engine: { batch: { keys: Uint8Array } } } }).ctx.engine.batch;
        batch.keys.fill(0x11);
        assert.throws(() => map.readValue(victim), isCorrupt, `readValue with ${slots} elements`);
        assert.ok(batch.keys.every((b) => b === 0x11), 'nothing was written past the read buffer');
        assertCorruptEverywhere(map, victim, other, 24);
      } finally {
        map.close();
      }
    }
    setSlotCount(config, victim, most);
    map = new BucketMap(config);
    assert.is(map.readValue(victim)![0].length, most, 'the entry reads again once its count is back in range');
    map.close();
  });

  test.run();
}

{
  const test = suite('slot counts: the batcher never retries a lookup that made no progress');

  test('an engine whose getMany stops where it started gets CORRUPT, not an endless loop', () => {
    let calls = 0;
    const data = new Uint8Array(1 << 20);
    const batch = {
      keys: new Uint8Array(BATCH * 32), buckets: new Uint32Array(BATCH), status: new Uint32Array(BATCH),
      outRefCounts: new Float64Array(BATCH), outSlots: new Uint32Array(BATCH), dataAt: new Uint32Array(BATCH),
      data, dataWords: new Int32Array(data.buffer),
    };
    const engine = {
      batch,
      getMany(start: number): number {
        // Never anything done: the behaviour of the wasm core before the fix on a huge slot count.
        if (++calls > 1000) throw new Error('getMany was retried 1000 times without progress');
        return start;
      },
    };
    const host = {
      ctx: { engine },
      storages: [{ allocated: true }],
      codec: codecs.bytes(32),
      guard: {},
      bits: 0,
      rewriteRef: () => undefined,
    } as unknown as BatchHost<Uint8Array>;
    const batcher = new Batcher(host);
    assert.throws(() => batcher.getMany([new Uint8Array(32)]), isCorrupt);
    assert.throws(() => batcher.readManyInto([new Uint8Array(32)], new Uint8Array(64), new Int32Array(1), null, 0), isCorrupt);
    assert.ok(calls <= 2, `called ${calls} times`);
  });

  test.run();
}
