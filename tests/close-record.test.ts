/**
 * The close record (host/close-record.ts): a clean close lets the next open leave every bucket's
 * files alone until first use. What it must never do is vouch for files that changed after it was
 * written: the first change removes it, a crash after that opens the slow way with repairs, and a
 * record that is damaged, foreign or stale is ignored or caught bucket by bucket on first use.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BucketMap, BucketMapError, codes, type BucketMapConfig } from '../host/index.js';
import { M_LIVE_COUNT } from '../host/layout.js';
import { faults } from '../host/storage.js';
import { ENGINES, entryValue, Rng, hex, listFiles, persistentConfig, removeDir, snapshot, strayFiles, tempDir, withSeed } from './helpers.js';

const KEYS = 600;

for (const engine of ENGINES) {
  const test = suite(`close record [${engine}]`);
  let dir = '';
  let config: BucketMapConfig;
  let record = '';
  let model = new Map<string, string>();
  let keys: Uint8Array[] = [];

  const open = (c: BucketMapConfig = config): BucketMap => new BucketMap(c);

  /**
   * Random inserts, updates and deletes, mirrored in `model`. Lists of two elements go to data files
   * (a new data file changes the bucket's manifest record); maxList 1 keeps every list in the index.
   */
  const churn = (map: BucketMap, rng: Rng, ops: number, maxList = 2): void => {
    for (let i = 0; i < ops; i++) {
      const r = rng.below(10);
      if (r < 5) {
        const key = rng.key();
        keys.push(key);
        const list = Array.from({ length: rng.below(maxList + 1) }, () => rng.bytes(16));
        map.insert(key, list, 1);
        model.set(hex(key), entryValue(list, 1));
      } else {
        const key = keys[rng.below(keys.length)];
        if (r < 8) {
          map.deleteKey(key);
          model.delete(hex(key));
        } else {
          const list = [rng.bytes(16)];
          map.insert(key, list, 3);
          model.set(hex(key), entryValue(list, 3));
        }
      }
    }
  };

  /** What a kill -9 would leave: the files as they are now (the lock is the dead process's). */
  const crashCopy = (to: string): BucketMapConfig => {
    fs.cpSync(dir, to, { recursive: true, filter: (src) => !src.endsWith('.lock') });
    return persistentConfig(to, engine, { maxBuckets: 16 });
  };

  /** Rewrites the live count saved in the header of `key`'s bucket (its counts checksum then fails). */
  const damageLiveCountOf = (key: Uint8Array): void => {
    const probe = open();
    const ix = probe.bucketIx(key);
    probe.close();
    const file = listFiles(config.drives![0]).find((f) => new RegExp(`-b${ix.toString(16).padStart(4, '0')}\\.i\\.`).test(f)) as string;
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from([9, 9, 9, 9]), 0, 4, M_LIVE_COUNT);
    fs.closeSync(fd);
  };

  test.before.each(() => {
    dir = tempDir();
    config = persistentConfig(dir, engine, { maxBuckets: 16 });
    record = `${config.restartFile}.closed`;
    model = new Map();
    keys = [];
    const rng = new Rng(77);
    const map = open();
    for (let i = 0; i < KEYS; i++) {
      const key = rng.key();
      keys.push(key);
      const list = [rng.bytes(16)];
      map.insert(key, list, 1 + (i % 3));
      model.set(hex(key), entryValue(list, 1 + (i % 3)));
    }
    map.close();
  });
  test.after.each(() => {
    removeDir(dir);
    removeDir(`${dir}-copy`);
  });

  test('a clean close writes it; the next open leaves every bucket unopened until its first use; the first change removes it', () => {
    assert.ok(fs.existsSync(record));
    let map = open();
    const stats = map.stats();
    assert.is(stats.buckets.allocated, 16);
    assert.is(stats.open.deferredBuckets, 16);
    assert.is(map.size, KEYS);
    for (const key of keys) {
      const [list, rc] = map.readValue(key) ?? [[], -1];
      assert.is(entryValue(list, rc), model.get(hex(key)));
    }
    assert.ok(fs.existsSync(record), 'reads change nothing it vouches for');
    const key = new Uint8Array(32).fill(5);
    map.insert(key, [], 2);
    model.set(hex(key), entryValue([], 2));
    assert.not.ok(fs.existsSync(record), 'the first change removed it');
    map.close();
    assert.ok(fs.existsSync(record));
    map = open();
    assert.is(map.stats().open.deferredBuckets, 16);
    assert.equal(snapshot(map), model);
    assert.is(map.size, model.size);
    map.close();
    map = open({ ...config, checkFilesAtOpen: true });
    assert.is(map.stats().open.deferredBuckets, 0, 'checkFilesAtOpen checks every file at open');
    assert.is(map.size, model.size);
    assert.equal(snapshot(map), model);
    map.close();
  });

  test('a close writes its record afresh: a symbolic link left under the draft\'s name is replaced, not written through', () => {
    const other = path.join(dir, 'other-file');
    fs.writeFileSync(other, 'not the map\'s');
    const map = open();
    map.insert(new Uint8Array(32).fill(5), [], 2); // removes the record
    fs.symlinkSync(other, `${record}.tmp`);
    map.close();
    assert.is(fs.readFileSync(other, 'utf8'), 'not the map\'s');
    assert.ok(fs.lstatSync(record).isFile(), 'the record is a regular file');
    assert.not.ok(fs.existsSync(`${record}.tmp`));
    const again = open();
    assert.is(again.stats().open.deferredBuckets, 16, 'the record is used');
    again.close();
  });

  test('a clean close leaves only the files the record names, so an open on it does not scan the drives', () => withSeed((rng) => {
    const map = open();
    // Enough growth that replaced files are kept as spares while the map runs.
    churn(map, rng, 3000);
    map.close();
    assert.is(strayFiles(config), 0, 'close left no spares and no unreferenced file');
    // A later generation of a file the record names: what a kill during growth would leave.
    const named = listFiles(config.drives![0])[0];
    const planted = named.replace(/\.(i|d\d+)\.(\d+)\.(\d+\.bkt)$/, (_, kind, g, rest) => `.${kind}.${Number(g) + 9}.${rest}`);
    assert.is.not(planted, named);
    fs.writeFileSync(planted, 'not a file any crash could leave beside a close record');
    let reopened = open();
    assert.is(reopened.stats().open.deferredBuckets, 16);
    assert.is(reopened.stats().open.removedFiles, 0);
    assert.ok(fs.existsSync(planted), 'the open on the record did not list the drive');
    assert.equal(snapshot(reopened), model);
    reopened.close();
    reopened = open({ ...config, checkFilesAtOpen: true });
    assert.is(reopened.stats().open.removedFiles, 1, 'an open that checks every file also clears the drives');
    assert.not.ok(fs.existsSync(planted));
    reopened.close();
  }));

  test('changes made on its word and cut off by a crash are repaired at the next open', () => withSeed((rng) => {
    const map = open();
    churn(map, rng, 400);
    assert.not.ok(fs.existsSync(record));
    const copy = crashCopy(`${dir}-copy`);
    map.close();
    const reopened = open(copy);
    const stats = reopened.stats();
    assert.is(stats.open.deferredBuckets, 0);
    assert.ok(stats.open.repairedBuckets > 0, 'the buckets the crash left dirty were repaired');
    assert.is(strayFiles(copy), 0, 'the spares and stray files the crash left were removed');
    assert.is(reopened.size, model.size);
    assert.equal(snapshot(reopened), model);
    assert.ok(reopened.verify().ok);
    reopened.close();
  }));

  test('a stale record put back after a crash cannot hide the changes: each bucket is checked against it on first use', () => withSeed((rng) => {
    const stale = path.join(dir, 'stale');
    fs.copyFileSync(record, stale);
    const map = open();
    churn(map, rng, 400, 1);
    // One bucket gets a data file, so a new manifest record: its entry in the stale record no longer applies.
    const key = rng.key();
    const list = [rng.bytes(16), rng.bytes(16)];
    map.insert(key, list, 1);
    model.set(hex(key), entryValue(list, 1));
    const copy = crashCopy(`${dir}-copy`);
    map.close();
    fs.copyFileSync(stale, `${copy.restartFile}.closed`);
    const reopened = open(copy);
    assert.is(reopened.stats().open.deferredBuckets, 15, 'buckets whose manifest record did not change are taken on its word');
    assert.is(reopened.stats().open.repairedBuckets, 1, 'the other is checked, and repaired, at open');
    assert.equal(snapshot(reopened), model);
    assert.is(reopened.size, model.size, 'the size is corrected as buckets are recounted');
    assert.is(reopened.stats().open.repairedBuckets, 16, 'every bucket changed since the record and is repaired');
    assert.ok(reopened.verify().ok);
    reopened.close();
  }));

  test('a damaged, truncated or foreign record is ignored: every file is checked at open', () => withSeed((rng) => {
    const other = persistentConfig(path.join(dir, 'other'), engine, { maxBuckets: 16 });
    const foreign = open(other);
    foreign.insert(rng.key(), [], 1);
    foreign.close();
    const good = fs.readFileSync(record);
    const flipped = Buffer.from(good);
    flipped[rng.below(flipped.length)] ^= 1 << rng.below(8);
    const damages: Array<[string, Uint8Array]> = [
      ['flipped', flipped], ['truncated', good.subarray(0, good.length - 4)], ['empty', new Uint8Array(0)],
      ['foreign', fs.readFileSync(`${other.restartFile}.closed`)],
    ];
    for (const [what, bytes] of damages) {
      fs.writeFileSync(record, bytes);
      const map = open();
      assert.is(map.stats().open.deferredBuckets, 0, what);
      assert.is(map.size, KEYS, what);
      assert.equal(snapshot(map), model, what);
      map.close();
      assert.equal(fs.readFileSync(record), good, `${what}: close wrote it anew`);
    }
  }));

  test('saved counts damaged in a bucket header behind the record are recounted on first use', () => {
    damageLiveCountOf(keys[0]);
    const map = open();
    assert.is(map.stats().open.deferredBuckets, 16);
    assert.ok(map.readValue(keys[0]) !== undefined);
    assert.is(map.stats().open.repairedBuckets, 1);
    assert.is(map.size, KEYS);
    assert.equal(snapshot(map), model);
    map.close();
  });

  test('a repair on first use that fails (disk full) fails that call; the next use tries again', () => {
    damageLiveCountOf(keys[0]);
    const map = open();
    faults.beforeCreate = () => {
      throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    };
    try {
      assert.throws(() => map.readValue(keys[0]), (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.IO);
      assert.throws(() => map.readValue(keys[0]), (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.IO, 'still pending: tried again');
    } finally {
      faults.beforeCreate = null;
    }
    assert.ok(map.readValue(keys[0]) !== undefined);
    assert.is(map.size, KEYS);
    assert.equal(snapshot(map), model);
    map.close();
  });

  test.run();
}
