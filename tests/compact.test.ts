/**
 * compact(): index files only grow, so after many deletes a map keeps the disk of its peak; compact
 * rebuilds each oversized index smaller. It must free that disk, keep every entry (and every
 * deleted key gone), survive a reopen, and refuse bad options before touching anything.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BucketMap, BucketMapError, codecs, codes, type BucketMapConfig, type EngineKind } from '../host/index.js';
import { CELLS_PER_PAGE } from '../host/layout.js';
import { SPARE_FILE_PATTERN } from '../host/storage.js';
import { ENGINES, Rng, entryValue, fingerprint, hex, listFiles, persistentConfig, removeDir, snapshot, tempDir, thrownBy, withSeed } from './helpers.js';

/** Runs `fn` with a seeded Rng and a persistent configuration in a fresh folder, removed afterwards. */
function withPersistentMap(engine: EngineKind, extra: Partial<BucketMapConfig>, fn: (rng: Rng, config: BucketMapConfig, dir: string) => void): void {
  withSeed((rng) => {
    const dir = tempDir();
    try {
      fn(rng, persistentConfig(dir, engine, extra), dir);
    } finally {
      removeDir(dir);
    }
  });
}

const bytesOnDisk = (dir: string): number => listFiles(dir).reduce((sum, f) => sum + fs.statSync(f).size, 0);
/** Contents of the map's files, without spares (emptied inodes a failed rehash attempt may leave for reuse). */
const mapFiles = (dir: string): Map<string, string> => new Map([...fingerprint(dir)].filter(([f]) => !SPARE_FILE_PATTERN.test(path.basename(f))));

for (const engine of ENGINES) {
  const test = suite(`compact [${engine}]`);

  test('gives back the disk of deleted entries; live entries read back, deleted keys stay gone, across a reopen', () => {
    withPersistentMap(engine, {}, (rng, config, dir) => {
      let map = new BucketMap(config);
      const keys = Array.from({ length: 20000 }, () => rng.key());
      for (const k of keys) map.insert(k, [k.subarray(8, 24)], 1 + rng.below(3));
      const deleted = keys.filter(() => rng.chance(0.8));
      for (const k of deleted) assert.ok(map.deleteKey(k));
      const before = snapshot(map);
      const statsBefore = map.stats();
      map.flush();
      const diskBefore = bytesOnDisk(dir);

      const report = map.compact();
      assert.is(report.buckets, 4, 'every bucket was oversized after deleting 80%');
      const statsAfter = map.stats();
      assert.is(report.bytesFreed, statsBefore.index.bytes - statsAfter.index.bytes);
      assert.ok(report.bytesFreed > statsBefore.index.bytes / 2, `freed ${report.bytesFreed} of ${statsBefore.index.bytes}`);
      assert.is(statsAfter.compactions.buckets, 4);
      assert.ok(statsAfter.index.load <= 0.85 && statsAfter.index.load > 0.75, `load after: ${statsAfter.index.load}`);
      map.flush();
      assert.ok(bytesOnDisk(dir) <= diskBefore - report.bytesFreed, 'the old files are gone from the drive');

      assert.equal(snapshot(map), before);
      for (const k of deleted) assert.is(map.get(k), undefined);
      assert.ok(map.verify().ok);

      map.close();
      map = new BucketMap(config);
      assert.equal(snapshot(map), before, 'after reopening');
      assert.is(map.stats().open.repairedBuckets, 0, 'a clean close after compact() reopens without repairs');
      assert.ok(map.verify().ok);
      // The compacted index grows again as keys arrive.
      const more = Array.from({ length: 10000 }, () => rng.key());
      for (const k of more) map.insert(k, [k.subarray(0, 16)]);
      for (const k of more) assert.equal(JSON.stringify(map.get(k)?.[0].map(hex)), JSON.stringify([hex(k.subarray(0, 16))]));
      assert.is(map.size, before.size + more.length);
      map.close();
    });
  });

  test('data files shrink too, and a list size whose entries are all gone loses its file', () => {
    withPersistentMap(engine, { maxBuckets: 1 }, (rng, config, dir) => {
      let map = new BucketMap(config);
      const list = (n: number): Uint8Array[] => Array.from({ length: n }, () => rng.bytes(16));
      const pairs = Array.from({ length: 3000 }, () => rng.key());
      const quads = Array.from({ length: 1000 }, () => rng.key());
      const singles = Array.from({ length: 2000 }, () => rng.key());
      for (const k of pairs) map.insert(k, list(2), 1 + rng.below(300));
      for (const k of quads) map.insert(k, list(3 + rng.below(2)));
      for (const k of singles) map.insert(k, list(1));
      assert.is(map.stats().data.files, 2, 'one data file for lists of 2, one for 3-4');
      for (const k of pairs.slice(300)) map.deleteKey(k);
      for (const k of quads) map.deleteKey(k);
      const before = snapshot(map);
      const statsBefore = map.stats();

      const report = map.compact();
      const statsAfter = map.stats();
      assert.is(report.buckets, 1);
      assert.is(report.bytesFreed, statsBefore.index.bytes + statsBefore.data.bytes - statsAfter.index.bytes - statsAfter.data.bytes);
      assert.is(statsAfter.data.files, 1, 'the 3-4 class has no entries left, so no file');
      assert.is(statsAfter.data.cells, 300);
      assert.ok(statsAfter.data.bytes * 4 < statsBefore.data.bytes, `data bytes ${statsBefore.data.bytes} → ${statsAfter.data.bytes}`);
      assert.equal(snapshot(map), before);
      assert.ok(map.verify().ok);

      // Lists of both sizes are written again: into the smaller file, and into a new one.
      const resizes = statsAfter.data.resizes;
      const fresh = Array.from({ length: 10 }, () => rng.key());
      for (const k of fresh) map.insert(k, list(2));
      assert.is(map.stats().data.resizes, resizes, 'the compacted file has room spread through it');
      map.insert(quads[0], list(4), 7);
      const expected = snapshot(map);
      map.close();
      map = new BucketMap(config);
      assert.equal(snapshot(map), expected, 'after reopening');
      assert.is(map.stats().open.repairedBuckets, 0);
      assert.ok(map.verify().ok);
      map.close();
    });
  });

  test('a compacted data file of over 2^16 cells keeps every reference whole', () => {
    // Entries point at data cells by a 4-byte cell number: past cell 65,535 its third byte counts.
    withPersistentMap(engine, { maxBuckets: 1 }, (rng, config) => {
      const map = new BucketMap(config);
      const keys = Array.from({ length: 200_000 }, () => rng.key());
      const lists = keys.map((_, i) => {
        const a = new Uint8Array(16);
        new DataView(a.buffer).setUint32(0, i, true);
        return [a, new Uint8Array(16).fill(i & 255)];
      });
      map.insertMany(keys, lists);
      map.deleteMany(keys.slice(0, 120_000));
      const capacityBefore = map.stats().data.bytes;
      assert.is(map.compact().buckets, 1);
      assert.ok(map.stats().data.bytes < capacityBefore, 'the data file shrank');
      assert.ok(map.stats().data.bytes > 65536 * 40, 'into a file of more than 2^16 cells');
      const got = map.getMany(keys.slice(120_000));
      got.forEach((e, j) => {
        const i = 120_000 + j;
        assert.ok(e !== undefined && new DataView(e[0][0].buffer, e[0][0].byteOffset).getUint32(0, true) === i && e[0][1][0] === (i & 255), `key ${i}`);
      });
      assert.ok(map.verify().ok);
      map.close();
    });
  });

  test('a higher load packs tighter; an index already small enough is left alone, file for file', () => {
    withPersistentMap(engine, { maxBuckets: 1 }, (rng, config, dir) => {
      const map = new BucketMap(config);
      const keys = Array.from({ length: 12000 }, () => rng.key());
      for (const k of keys) map.insert(k, [k.subarray(0, 16)]);
      for (const k of keys.slice(0, 8000)) map.deleteKey(k);
      const pages = (): number => map.stats().index.capacity / CELLS_PER_PAGE;
      const peak = pages();
      assert.is(map.compact({ load: 0.6 }).buckets, 1);
      const atSixty = pages();
      assert.ok(atSixty < peak);
      assert.ok(map.compact({ load: 0.9 }).buckets === 1 && pages() < atSixty, `${pages()} pages at 0.9, ${atSixty} at 0.6`);
      // At 0.9 a window may overflow; each retry is an eighth larger, so allow two.
      const load = 4000 / (pages() * CELLS_PER_PAGE);
      assert.ok(load > 0.7 && load <= 0.9, `load ${load}`);
      map.flush();
      const files = mapFiles(dir);
      const again = map.compact({ load: 0.9 });
      assert.equal([again.buckets, again.bytesFreed], [0, 0], 'nothing left to gain');
      assert.is(map.compact({ load: 0.5 }).buckets, 0, 'a lower load than the index has already');
      map.flush();
      assert.equal(mapFiles(dir), files, 'an index left alone keeps its file');
      for (const k of keys.slice(8000)) assert.ok(map.has(k));
      map.close();
    });
  });

  test('a window too narrow for the load: compaction settles on a larger size or none, and loses nothing', () => {
    withSeed((rng) => {
      // maxSearch 2 overflows long before 90% load, so the first sizes tried fail.
      const map = new BucketMap({ maxBuckets: 2, maxSearch: 2, engine });
      const keys = Array.from({ length: 3000 }, () => rng.key());
      for (const k of keys) map.insert(k, [k.subarray(0, 16)], 2);
      for (const k of keys.slice(0, 2000)) map.deleteKey(k);
      const before = snapshot(map);
      const capacity = map.stats().index.capacity;
      const report = map.compact({ load: 0.9 });
      const after = map.stats().index;
      assert.ok(after.capacity <= capacity && after.load < 0.9, `capacity ${capacity} → ${after.capacity}, load ${after.load}`);
      assert.is(report.bytesFreed === 0, report.buckets === 0);
      assert.equal(snapshot(map), before);
      assert.ok(map.verify().ok);
      map.close();
    });
  });

  test('an iteration in progress yields every entry once across compact()', () => {
    withSeed((rng) => {
      const map = new BucketMap({ maxBuckets: 2, engine });
      const keys = Array.from({ length: 4000 }, () => rng.key());
      for (const k of keys) map.insert(k, [k.subarray(0, 16)]);
      for (const k of keys.slice(0, 3000)) map.deleteKey(k);
      const seen = new Set<string>();
      let compacted = 0;
      for (const [key, [list]] of map.entries()) {
        assert.not.ok(seen.has(hex(key)), 'yielded twice');
        assert.is(hex(list[0]), hex(key.subarray(0, 16)), 'yielded with its own value');
        seen.add(hex(key));
        if (seen.size === 100) compacted = map.compact().buckets;
      }
      assert.is(compacted, 2);
      assert.equal([...seen].sort(), keys.slice(3000).map(hex).sort());
      map.close();
    });
  });

  test('a data file with fewer cells but as many bytes is not rebuilt; the report and stats agree, and an iteration goes on', () => {
    // One-byte elements: a list of two takes a 16-byte cell, so 2^5 and 2^6 cells both round up
    // to a 2 KiB file. A rebuild of it freed nothing, switched files under an iteration that did
    // not learn of it, and the iteration's next step read the emptied old file: SIGBUS.
    const map = new BucketMap({ maxBuckets: 1, engine, codec: codecs.bytes(1) });
    const rng = new Rng(41);
    const keys = Array.from({ length: 40 }, () => rng.key());
    for (const k of keys) map.insert(k, [k.subarray(0, 1), k.subarray(1, 2)]);
    for (const k of keys.slice(10)) map.deleteKey(k);
    const before = map.stats();
    const it = map.entries();
    const seen = [hex(it.next().value![0])];
    const report = map.compact();
    assert.equal([report.buckets, report.bytesFreed], [0, 0]);
    assert.is(map.stats().compactions.buckets, 0);
    assert.equal(map.stats().data, before.data);
    for (const [key, [list]] of { [Symbol.iterator]: () => it }) {
      assert.is(hex(list[0]) + hex(list[1]), hex(key.subarray(0, 2)));
      seen.push(hex(key));
    }
    assert.equal(seen.sort(), keys.slice(0, 10).map(hex).sort());
    map.close();
  });

  test('buckets left to first use by a close record are compacted too', () => {
    withPersistentMap(engine, {}, (rng, config, dir) => {
      let map = new BucketMap(config);
      const keys = Array.from({ length: 8000 }, () => rng.key());
      for (const k of keys) map.insert(k, [k.subarray(0, 16)]);
      for (const k of keys.slice(0, 6000)) map.deleteKey(k);
      const before = snapshot(map);
      map.close();
      map = new BucketMap(config);
      assert.is(map.stats().open.deferredBuckets, 4);
      assert.is(map.compact().buckets, 4);
      assert.equal(snapshot(map), before);
      map.close();
      map = new BucketMap(config);
      assert.equal(snapshot(map), before);
      assert.ok(map.verify().ok);
      map.close();
    });
  });

  for (const fraction of [1, 0.5]) {
    test(`a map reopened with maxBytes at ${fraction} of its size is compacted; growth past the ceiling is still refused`, () => {
      withPersistentMap(engine, { maxBuckets: 1 }, (rng, config) => {
        let map = new BucketMap(config);
        // A large index and a data file that shrinks by less than the new index takes: at the
        // map's own size, the data file was refused SIZE_LIMIT, made while the new index counted
        // beside the old one; below it, the first file compact() made was refused.
        const singles = Array.from({ length: 40000 }, () => rng.key());
        const pairs = Array.from({ length: 200 }, () => rng.key());
        map.insertMany(singles, singles.map((k) => [k.subarray(0, 16)]));
        map.insertMany(pairs, pairs.map((k) => [k.subarray(0, 16), k.subarray(16)]));
        map.deleteMany(singles.slice(0, 30000));
        map.deleteMany(pairs.slice(0, 150));
        const before = snapshot(map);
        const used = (): number => map.stats().index.bytes + map.stats().data.bytes;
        const peak = used();
        map.close();
        const maxBytes = Math.floor(peak * fraction);
        map = new BucketMap({ ...config, maxBytes });
        const report = map.compact();
        assert.is(report.buckets, 1);
        assert.ok(used() < peak / 4 && report.bytesFreed === peak - used(), `${used()} bytes after compact(), of ${peak}`);
        assert.is(map.stats().data.files, 1, 'the data file was rebuilt too');
        assert.equal(snapshot(map), before);
        assert.ok(map.verify().ok);
        map.close();
        map = new BucketMap({ ...config, maxBytes: Math.floor(peak / 4) });
        assert.equal(snapshot(map), before, 'after reopening');
        const more = Array.from({ length: map.stats().index.capacity }, () => rng.key());
        assert.is(thrownBy(() => map.insertMany(more, more.map(() => [])))?.code, codes.SIZE_LIMIT, 'growth past maxBytes');
        assert.ok(used() <= peak / 4);
        map.close();
      });
    });
  }

  test('a presized index is shrunk like any other, and the count anticipated still stands for the next growth', () => {
    withSeed((rng) => {
      const map = new BucketMap({ maxBuckets: 1, engine });
      map.insert(rng.key(), []); // a file to grow now
      map.setAnticipatedCount(20000);
      const presized = map.stats().index.capacity;
      assert.ok(presized >= 20000 / 0.8, `presized to ${presized} cells`);
      const keys = Array.from({ length: 99 }, () => rng.key());
      for (const k of keys) map.insert(k, [k.subarray(0, 16)]);
      const report = map.compact();
      assert.is(report.buckets, 1, 'nothing was deleted, yet the presized index is oversized');
      const small = map.stats().index.capacity;
      assert.ok(small < presized / 50, `compacted to ${small} cells`);
      const resizes = map.stats().index.resizes;
      while (map.stats().index.capacity === small) map.insert(rng.key(), []);
      assert.is(map.stats().index.capacity, presized, 'the first growth after it goes back to the anticipated size');
      assert.is(map.stats().index.resizes, resizes + 1);
      for (const k of keys) assert.ok(map.has(k));
      map.close();
    });
  });

  test('after a reopen, compact() maps only the buckets it rebuilds: the others stay left to first use', () => {
    withPersistentMap(engine, { maxBuckets: 64 }, (rng, config) => {
      let map = new BucketMap(config);
      const keys = Array.from({ length: 6400 }, () => rng.key());
      map.insertMany(keys, keys.map((k) => [k.subarray(0, 16), k.subarray(16)]));
      map.compact(); // leaves no bucket larger than it needs
      map.close();
      map = new BucketMap(config);
      assert.is(map.stats().open.deferredBuckets, 64);
      // Bucket 0 alone loses most of its entries (and is mapped for it).
      const gone = keys.filter((k) => map.bucketIx(k) === 0).slice(10);
      map.deleteMany(gone);
      // Not snapshot(map): iterating maps every bucket.
      const dropped = new Set(gone.map(hex));
      const before = new Map(keys.filter((k) => !dropped.has(hex(k))).map((k) => [hex(k), entryValue([k.subarray(0, 16), k.subarray(16)], 1)]));
      const mappings = map.stats().mappings.live;
      assert.is(map.compact().buckets, 1);
      // Bucket 0's old files stay mapped until a collection: its new ones are two more at most.
      assert.ok(map.stats().mappings.live <= mappings + 2, `${map.stats().mappings.live - mappings} more mappings`);
      const again = map.compact();
      assert.equal([again.buckets, again.bytesFreed], [0, 0]);
      assert.ok(map.stats().mappings.live <= mappings + 2, 'nothing left to compact maps nothing');
      map.close();
      map = new BucketMap(config);
      assert.equal(snapshot(map), before, 'after reopening');
      assert.ok(map.verify().ok);
      map.close();
    });
  });

  test('bad options are refused before anything changes; a closed map or a callback refuses the call', () => {
    const map = new BucketMap({ maxBuckets: 1, engine });
    const key = new Uint8Array(32).fill(7);
    map.insert(key, [key.subarray(0, 16)]);
    const capacity = map.stats().index.capacity;
    assert.throws(() => map.compact(null as never), (e: unknown) => e instanceof TypeError);
    assert.throws(() => map.compact('0.8' as never), (e: unknown) => e instanceof TypeError);
    assert.throws(() => map.compact({ load: '0.8' as never }), (e: unknown) => e instanceof TypeError);
    for (const load of [0, -0.5, 0.95, 1, NaN, Infinity]) {
      assert.throws(() => map.compact({ load }), (e: unknown) => e instanceof RangeError && /load/.test((e as Error).message), `load ${load}`);
    }
    assert.is(map.stats().index.capacity, capacity);
    map.update(key, (current) => {
      assert.throws(() => map.compact(), (e: unknown) => e instanceof BucketMapError && e.code === codes.REENTRANT);
      return current;
    });
    map.close();
    assert.throws(() => map.compact(), (e: unknown) => e instanceof BucketMapError && e.code === codes.CLOSED);
  });

  test.run();
}
