import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Worker } from 'node:worker_threads';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BucketMap, BucketMapError, codes, type BucketMapConfig } from '../host/index.js';
import { ENGINES, deadPid, entryValue, fingerprint, hex, killHard, packKeys, persistentConfig, removeDir, snapshot, startChild, tempDir, thrownBy, withFsFunction, withSeed, type Rng } from './helpers.js';

const HOST_INDEX = new URL('../host/index.js', import.meta.url).href;

/** The model of what the writer left: hex key → entryValue. */
type Model = Map<string, string>;

/**
 * Writes a map a reader can check everything of: one-element and longer slot lists (data cells),
 * refCounts above 1, deleted keys, and buckets left empty; closes it cleanly.
 */
function writeMap(config: BucketMapConfig, rng: Rng, n: number): { model: Model; keys: Uint8Array[]; absent: Uint8Array[] } {
  const map = new BucketMap(config);
  const model: Model = new Map();
  const keys: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const key = rng.key();
    const list = Array.from({ length: i % 7 === 0 ? 1 + rng.below(5) : 1 }, () => rng.bytes(16));
    const refCount = i % 5 === 0 ? 2 + rng.below(1000) : 1;
    map.insert(key, list, refCount);
    model.set(hex(key), entryValue(list, refCount));
    keys.push(key);
  }
  for (let i = 0; i < n; i += 10) {
    map.deleteKey(keys[i]);
    model.delete(hex(keys[i]));
  }
  map.close();
  const absent = Array.from({ length: 200 }, () => rng.key());
  return { model, keys, absent };
}

/** Every call that changes a map, on the map, on a bucket and on a packed view. */
function writeCalls(map: BucketMap, key: Uint8Array): Record<string, () => unknown> {
  const list = [new Uint8Array(16).fill(9)];
  const packed = map.packed(packKeys([key]));
  return {
    insert: () => map.insert(key, list),
    set: () => map.set(key, [list, 1]),
    tryInsert: () => map.tryInsert(key, list),
    update: () => map.update(key, (e) => e),
    deleteKey: () => map.deleteKey(key),
    delete: () => map.delete(key),
    addref: () => map.addref(key),
    unref: () => map.unref(key),
    insertMany: () => map.insertMany([[key, list]]),
    insertManyPacked: () => map.insertMany(packKeys([key]), [list]),
    deleteMany: () => map.deleteMany([key]),
    addrefMany: () => map.addrefMany(packKeys([key])),
    unrefMany: () => map.unrefMany([key]),
    // Empty batches touch no bucket, so only the call's own check can refuse them.
    insertManyEmpty: () => map.insertMany([]),
    deleteManyEmpty: () => map.deleteMany([]),
    addrefManyEmpty: () => map.addrefMany([]),
    unrefManyEmpty: () => map.unrefMany(new Uint8Array(0)),
    setAnticipatedCount: () => map.setAnticipatedCount(1_000_000),
    compact: () => map.compact(),
    bucketInsert: () => map.getBucket(key).insert(key, list),
    bucketTryWrite: () => map.getBucket(key).tryWrite(key, list),
    bucketUpdate: () => map.getBucket(key).update(key, () => undefined),
    bucketDeleteKey: () => map.getBucket(key).deleteKey(key),
    bucketSetAnticipatedCount: () => map.getBucket(key).setAnticipatedCount(100_000),
    bucketBatchInsert: () => map.getBucket(key).batchInsertNonDuplicates([[key, list[0]]]),
    packedInsert: () => packed.insert(0, list),
    packedAddref: () => packed.addref(0),
    packedUnref: () => packed.unref(0),
    packedDelete: () => packed.delete(0),
    badArguments: () => map.insert(null as unknown as Uint8Array, list),
    packedBadIndex: () => packed.insert(5, list),
    packedBadIndexType: () => packed.delete('0' as never),
  };
}

/**
 * A reader in a worker thread: opens the map read-only, reads the packed keys it is sent with
 * readManyInto and answers with the slot counts and refCounts; 'close' closes it.
 */
const READER = `
  const { parentPort, workerData } = require('node:worker_threads');
  import(workerData.index).then(({ BucketMap }) => {
    let map;
    try {
      map = new BucketMap({ ...workerData.config, readOnly: true });
    } catch (e) {
      parentPort.postMessage({ code: e.code, message: e.message });
      return;
    }
    parentPort.on('message', (m) => {
      if (m === 'close') {
        map.close();
        parentPort.postMessage({ code: 'closed' });
        return;
      }
      const n = m.length / 32;
      const slots = new Int32Array(n), refCounts = new Float64Array(n), values = new Uint8Array(n * 16 * 5);
      const read = map.readManyInto(m, values, slots, refCounts);
      parentPort.postMessage({ code: 'read', read, slots, refCounts });
    });
    parentPort.postMessage({ code: 'open' });
  });`;

type Reply = { code: string; message?: string; read?: number; slots?: Int32Array; refCounts?: Float64Array };

const workers = new Set<Worker>();

function startReader(config: BucketMapConfig): { worker: Worker; next: () => Promise<Reply> } {
  const worker = new Worker(READER, { eval: true, workerData: { index: HOST_INDEX, config } });
  workers.add(worker);
  const inbox: Reply[] = [];
  const waiting: Array<(m: Reply) => void> = [];
  worker.on('message', (m: Reply) => (waiting.length > 0 ? waiting.shift()!(m) : inbox.push(m)));
  worker.on('error', () => {});
  const next = () => new Promise<Reply>((resolve) => (inbox.length > 0 ? resolve(inbox.shift()!) : waiting.push(resolve)));
  return { worker, next };
}

const readersOf = (config: BucketMapConfig) => `${config.restartFile}.lock.readers`;
/** An rmSync that fails with EROFS for the files of a map's readers folder. */
const refuseInReaders = (config: BucketMapConfig) => (rm: (...args: unknown[]) => unknown) => (file: unknown, ...rest: unknown[]) => {
  if (String(file).startsWith(readersOf(config))) throw Object.assign(new Error(`EROFS: read-only file system, unlink '${String(file)}'`), { code: 'EROFS', syscall: 'unlink' });
  return rm(file, ...rest);
};

for (const engine of ENGINES) {
  const test = suite(`read-only opens [${engine}]`);
  let dir = '';
  let config: BucketMapConfig;
  test.before.each(() => {
    dir = tempDir();
    config = persistentConfig(dir, engine, { maxBuckets: 8 });
  });
  test.after.each(async () => {
    await Promise.all([...workers].map((w) => w.terminate()));
    workers.clear();
    removeDir(dir);
  });

  test('a read-only open reads what the writer left through every read call, and changes no byte on disk', () => {
    withSeed((rng) => {
      const { model, keys, absent } = writeMap(config, rng, 3000);
      const before = fingerprint(dir);
      for (const checkFilesAtOpen of [false, true]) {
        const map = new BucketMap({ ...config, readOnly: true, checkFilesAtOpen });
        assert.ok(map.readOnly);
        assert.is(map.size, model.size);
        assert.equal(snapshot(map), model);
        const target = new Uint8Array(16 * 5);
        for (const key of keys.slice(0, 500)) {
          const want = model.get(hex(key));
          const got = map.get(key);
          assert.is(got === undefined ? undefined : entryValue(got[0], got[1]), want);
          assert.is(map.has(key), want !== undefined);
          const slots = map.readInto(key, target);
          assert.is(slots === -1 ? undefined : entryValue(Array.from({ length: slots }, (_, i) => target.slice(i * 16, i * 16 + 16)), map.lastRefCount), want);
        }
        for (const key of absent) assert.is(map.get(key), undefined);
        const all = [...keys, ...absent];
        const many = map.getMany(packKeys(all));
        all.forEach((key, i) => assert.is(many[i] === undefined ? undefined : entryValue(many[i]![0], many[i]![1]), model.get(hex(key))));
        assert.equal(map.hasMany(all), all.map((key) => model.has(hex(key))));
        const packed = map.packed(packKeys(all));
        for (let i = 0; i < all.length; i += 7) assert.is(packed.has(i), model.has(hex(all[i])));
        const report = map.verify();
        assert.ok(report.ok);
        assert.is(report.entries, model.size);
        assert.is(map.stats().entries, model.size);
        map.flush();
        map.flush({ durable: true });
        map.close();
        map.close();
        assert.equal(fingerprint(dir), before, 'a reader writes nothing, not even the close record');
      }
      const writer = new BucketMap(config);
      assert.is(writer.stats().open.deferredBuckets, [...new Set(keys.map((k) => writer.bucketIx(k)))].length, 'the close record still vouches for every bucket');
      assert.equal(snapshot(writer), model);
      writer.close();
    });
  });

  test('every write is refused with READ_ONLY before it starts; reads go on and the files stay byte for byte', () => {
    withSeed((rng) => {
      const { model, keys, absent } = writeMap(config, rng, 500);
      const before = fingerprint(dir);
      const map = new BucketMap({ ...config, readOnly: true });
      for (const key of [keys[1], keys[0], absent[0]]) {
        for (const [name, call] of Object.entries(writeCalls(map, key))) {
          const err = thrownBy(call);
          assert.ok(err instanceof BucketMapError && err.code === codes.READ_ONLY, `${name}: ${err === null ? 'no error' : `${err.code}: ${err.message}`}`);
        }
      }
      assert.equal(snapshot(map), model);
      assert.ok(map.verify().ok);
      map.close();
      assert.equal(fingerprint(dir), before);
    });
  });

  test('readers share the map, in one thread and in worker threads; a writer is LOCKED until the last reader closes, and a reader while the writer is open', async () => {
    await withSeed(async (rng) => {
      const { model, keys } = writeMap(config, rng, 2000);
      const first = new BucketMap({ ...config, readOnly: true });
      const second = new BucketMap({ ...config, readOnly: true });
      const workerReaders = [startReader(config), startReader(config)];
      for (const r of workerReaders) assert.is((await r.next()).code, 'open');
      // Both workers read every key at once, each through its own mappings of the same files.
      const packed = packKeys(keys);
      for (const r of workerReaders) r.worker.postMessage(packed);
      for (const r of workerReaders) {
        const reply = await r.next();
        assert.is(reply.read, keys.length);
        keys.forEach((key, i) => {
          const want = model.get(hex(key));
          const [list, refCount] = want === undefined ? [[], -1] : (JSON.parse(want) as [string[], number]);
          assert.is(reply.slots![i] === -1 ? -1 : reply.refCounts![i], refCount);
          assert.is(reply.slots![i], want === undefined ? -1 : list.length);
        });
      }
      assert.equal(snapshot(first), model);
      const writerRefused = () => {
        const err = thrownBy(() => new BucketMap(config));
        assert.ok(err instanceof BucketMapError && err.code === codes.LOCKED && /open read-only in /.test(err.message), String(err));
        assert.not.ok(fs.existsSync(`${config.restartFile}.lock`), 'the refused writer took its lock back');
      };
      writerRefused();
      first.close();
      writerRefused();
      second.close();
      writerRefused();
      for (const r of workerReaders) {
        r.worker.postMessage('close');
        assert.is((await r.next()).code, 'closed');
      }
      assert.not.ok(fs.existsSync(readersOf(config)), 'the last reader removes the readers folder');
      const writer = new BucketMap(config);
      const readerRefused = thrownBy(() => new BucketMap({ ...config, readOnly: true }));
      assert.ok(readerRefused instanceof BucketMapError && readerRefused.code === codes.LOCKED && /open for writing in this thread/.test(readerRefused.message));
      const inWorker = startReader(config);
      const reply = await inWorker.next();
      assert.is(reply.code, codes.LOCKED);
      assert.match(reply.message!, /open for writing in another thread of this process/);
      assert.not.ok(fs.existsSync(readersOf(config)), 'a refused reader withdraws');
      writer.close();
      new BucketMap({ ...config, readOnly: true }).close();
    });
  });

  test('when a writer and a reader open at once, the one that looks second backs off: never both', () => {
    withSeed((rng) => {
      writeMap(config, rng, 100);
      const lockFile = `${config.restartFile}.lock`;
      // The writer has made its lock and is about to look for readers when a reader publishes itself.
      let readerDuring: string | undefined;
      const readerArrives = (readdir: (...args: unknown[]) => unknown) => (target: unknown, ...rest: unknown[]) => {
        if (readerDuring === undefined && String(target).endsWith('.lock.readers')) {
          readerDuring = thrownBy(() => new BucketMap({ ...config, readOnly: true }).close())?.message ?? 'opened';
        }
        return readdir(target, ...rest);
      };
      const writer = withFsFunction('readdirSync', readerArrives, () => new BucketMap(config));
      // The reader saw the writer's lock and withdrew, so the writer found no reader.
      assert.match(readerDuring!, /open for writing in this thread/);
      writer.close();
      // The reader has published itself and is about to read the lock when a writer opens.
      let writerDuring: string | undefined;
      const writerArrives = (open: (...args: unknown[]) => unknown) => (target: unknown, ...rest: unknown[]) => {
        if (writerDuring === undefined && String(target) === lockFile) {
          writerDuring = 'opening'; // the writer's own close reads its lock
          writerDuring = thrownBy(() => new BucketMap(config).close())?.message ?? 'opened';
        }
        return open(target, ...rest);
      };
      const reader = withFsFunction('openSync', writerArrives, () => new BucketMap({ ...config, readOnly: true }));
      assert.match(writerDuring!, /open read-only in this thread/);
      assert.not.ok(fs.existsSync(lockFile));
      assert.ok(reader.size > 0);
      reader.close();
    });
  });

  test('a reader that was killed, or whose worker was terminated, does not hold the map: the next writer clears it', async () => {
    await withSeed(async (rng) => {
      const { model } = writeMap(config, rng, 300);
      const script = `
        import { BucketMap } from ${JSON.stringify(HOST_INDEX)};
        const map = new BucketMap({ ...JSON.parse(process.argv[1]), readOnly: true });
        process.stdout.write('open ' + map.size + '\\n');
        setInterval(() => {}, 1000);`;
      const child = await startChild(script, JSON.stringify(config), `open ${model.size}`);
      const held = thrownBy(() => new BucketMap(config));
      assert.ok(held instanceof BucketMapError && held.code === codes.LOCKED && held.message.includes(`process ${child.pid}`), String(held));
      await killHard(child);
      assert.is(fs.readdirSync(readersOf(config)).length, 1, 'a killed reader leaves its file');
      // A reader killed while writing its file leaves a draft under its pid, never published.
      fs.writeFileSync(path.join(readersOf(config), `${deadPid()}.abc123.new`), '');
      if (process.platform === 'linux') {
        const reader = startReader(config);
        assert.is((await reader.next()).code, 'open');
        await reader.worker.terminate();
      }
      const writer = new BucketMap(config);
      assert.equal(snapshot(writer), model);
      assert.not.ok(fs.existsSync(readersOf(config)), 'the writer removed the dead readers\' files');
      writer.close();
    });
  });

  test('a dead reader\'s file the writer may not remove (another user\'s, in a folder that user made) does not stop the writer', () => {
    withSeed((rng) => {
      const { model } = writeMap(config, rng, 200);
      // What `sudo bucket-map verify` stopped by Ctrl-C leaves for a service running as another
      // user: a reader file nobody holds, in a readers folder only root may change.
      fs.mkdirSync(readersOf(config));
      const stale = path.join(readersOf(config), `${deadPid()}.abc123`);
      fs.writeFileSync(stale, `${deadPid()} - otherhost 0 - - 3\n`);
      const notOurs = (rm: (...args: unknown[]) => unknown) => (file: unknown, ...rest: unknown[]) => {
        if (String(file).startsWith(readersOf(config))) throw Object.assign(new Error(`EACCES: permission denied, unlink '${String(file)}'`), { code: 'EACCES', syscall: 'unlink' });
        return rm(file, ...rest);
      };
      withFsFunction('rmSync', notOurs, () => {
        const writer = new BucketMap(config);
        assert.equal(snapshot(writer), model);
        writer.insert(rng.key(), [rng.bytes(16)]);
        writer.close();
      });
      assert.ok(fs.existsSync(stale), 'the file it could not remove stays, and means nothing');
      // One it may not even open cannot be judged: the open fails, and leaves no owner line of its
      // own for the next writer to take for a dead writer's.
      const unreadable = (open: (...args: unknown[]) => unknown) => (file: unknown, ...rest: unknown[]) => {
        if (String(file) === stale) throw Object.assign(new Error(`EACCES: permission denied, open '${stale}'`), { code: 'EACCES', syscall: 'open' });
        return open(file, ...rest);
      };
      withFsFunction('openSync', unreadable, () => {
        const err = thrownBy(() => new BucketMap(config));
        assert.ok(err instanceof BucketMapError && err.code === codes.IO && err.file === stale, String(err));
      });
      assert.not.ok(fs.existsSync(`${config.restartFile}.lock`), 'the failed open left its lock line');
      // The lock file is gone with the writer's clean close: no later open takes it for a dead writer's.
      assert.not.ok(fs.existsSync(`${config.restartFile}.lock`));
      const reader = new BucketMap({ ...config, readOnly: true });
      assert.is(reader.size, model.size + 1);
      const refused = thrownBy(() => new BucketMap(config));
      assert.ok(refused instanceof BucketMapError && refused.code === codes.LOCKED, String(refused));
      reader.close();
    });
  });

  test('a reader whose file cannot be removed at close() still lets go of the map: close() reports IO, the next writer opens', () => {
    withSeed((rng) => {
      const { model } = writeMap(config, rng, 200);
      const reader = new BucketMap({ ...config, readOnly: true });
      const err = withFsFunction('rmSync', refuseInReaders(config), () => thrownBy(() => reader.close()));
      assert.ok(err instanceof BucketMapError && err.code === codes.IO, String(err));
      assert.ok(thrownBy(() => reader.size)?.code === codes.CLOSED);
      // Its file stayed, but nobody holds it any more: the next writer takes it for a dead reader's.
      const writer = new BucketMap(config);
      assert.equal(snapshot(writer), model);
      writer.close();
    });
  });

  test('a refused reader whose file cannot be removed reports why it was refused, not the removal', () => {
    withSeed((rng) => {
      const { model } = writeMap(config, rng, 200);
      const err = withFsFunction('rmSync', refuseInReaders(config), () => thrownBy(() => new BucketMap({ ...config, maxBuckets: config.maxBuckets * 2, readOnly: true })));
      assert.ok(err instanceof BucketMapError && err.code === codes.CONFIG_MISMATCH, String(err));
      const writer = new BucketMap(config);
      assert.equal(snapshot(writer), model);
      writer.close();
    });
  });

  test('a file in place of the readers folder: readers open as where none can be made, and a writer is still LOCKED while one is open', () => {
    withSeed((rng) => {
      const { model } = writeMap(config, rng, 200);
      fs.writeFileSync(readersOf(config), 'not a folder');
      const reader = new BucketMap({ ...config, readOnly: true });
      assert.equal(snapshot(reader), model);
      assert.is(BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives }).ok, true);
      const refused = thrownBy(() => new BucketMap(config));
      assert.ok(refused instanceof BucketMapError && refused.code === codes.LOCKED, String(refused));
      reader.close();
      assert.is(fs.readFileSync(readersOf(config), 'utf8'), 'not a folder');
      new BucketMap(config).close();
    });
  });

  test('a map its writer did not close cleanly is NEEDS_RECOVERY to a reader, which writes nothing; a writer\'s open repairs it', async () => {
    await withSeed(async (rng) => {
      const { model } = writeMap(config, rng, 300);
      const script = `
        import { BucketMap } from ${JSON.stringify(HOST_INDEX)};
        const map = new BucketMap(JSON.parse(process.argv[1]));
        map.insert(new Uint8Array(32).fill(7), [new Uint8Array(16).fill(7)]);
        map.flush();
        process.stdout.write('written\\n');
        setInterval(() => {}, 1000);`;
      await killHard(await startChild(script, JSON.stringify(config), 'written'));
      const before = fingerprint(dir);
      const err = thrownBy(() => new BucketMap({ ...config, readOnly: true }));
      assert.ok(err instanceof BucketMapError && err.code === codes.NEEDS_RECOVERY && /not closed cleanly/.test(err.message), String(err));
      assert.equal(fingerprint(dir), before, 'the refused reader changed nothing (the dead writer\'s lock stays for the next writer)');
      new BucketMap(config).close();
      const map = new BucketMap({ ...config, readOnly: true });
      model.set(hex(new Uint8Array(32).fill(7)), entryValue([new Uint8Array(16).fill(7)], 1));
      assert.equal(snapshot(map), model);
      map.close();
    });
  });

  test('a close record older than the files is NEEDS_RECOVERY to a reader: at open if a bucket grew since, at first use if only its counts moved', () => {
    withSeed((rng) => {
      const { model } = writeMap(config, rng, 300);
      const record = `${config.restartFile}.closed`;
      const stale = fs.readFileSync(record);
      // Keys of bucket 5 (of 8: the top three bits of the first byte), one more than the record knows.
      const inBucket5 = () => {
        const key = rng.key();
        key[0] = (5 << 5) | (key[0] & 31);
        return key;
      };
      const writer = new BucketMap(config);
      writer.insert(inBucket5(), [new Uint8Array(16)]);
      writer.close();
      fs.writeFileSync(record, stale);
      const before = fingerprint(dir);
      const lazy = new BucketMap({ ...config, readOnly: true });
      const other = [...model.keys()].map((k) => Uint8Array.from(Buffer.from(k, 'hex'))).find((k) => lazy.bucketIx(k) !== 5)!;
      assert.is(entryValue(...lazy.get(other)!), model.get(hex(other)), 'other buckets serve');
      const atUse = thrownBy(() => lazy.get(inBucket5()));
      assert.ok(atUse instanceof BucketMapError && atUse.code === codes.NEEDS_RECOVERY && /bucket 5 needs repair/.test(atUse.message), String(atUse));
      lazy.close();
      const eager = thrownBy(() => new BucketMap({ ...config, readOnly: true, checkFilesAtOpen: true }));
      assert.ok(eager instanceof BucketMapError && eager.code === codes.NEEDS_RECOVERY, String(eager));
      assert.equal(fingerprint(dir), before);
      // Growth gives the bucket a new restart record, which the stale close record does not name.
      const grower = new BucketMap(config);
      for (let i = 0; i < 2000; i++) grower.insert(inBucket5(), [new Uint8Array(16)]);
      assert.ok(grower.stats().index.resizes > 0);
      grower.close();
      fs.writeFileSync(record, stale);
      const atOpen = thrownBy(() => new BucketMap({ ...config, readOnly: true }));
      assert.ok(atOpen instanceof BucketMapError && atOpen.code === codes.NEEDS_RECOVERY && atOpen.message.includes('bucket 5 changed after the close record'), String(atOpen));
      assert.not.ok(fs.existsSync(readersOf(config)));
      new BucketMap(config).close();
      const reader = new BucketMap({ ...config, readOnly: true, checkFilesAtOpen: true });
      assert.is(reader.size, model.size + 2001);
      reader.close();
    });
  });

  test('configuration: readOnly needs a restartFile and a boolean; a missing map is FILE_MISSING and nothing is created', () => {
    assert.throws(() => new BucketMap({ maxBuckets: 4, engine, readOnly: true }), (e: Error) => e instanceof TypeError && /needs a restartFile/.test(e.message));
    assert.throws(() => new BucketMap({ ...config, readOnly: 'yes' as unknown as boolean }), (e: Error) => e instanceof TypeError);
    const err = thrownBy(() => new BucketMap({ ...config, readOnly: true }));
    assert.ok(err instanceof BucketMapError && err.code === codes.FILE_MISSING, String(err));
    assert.equal(fs.readdirSync(dir), [], 'no drive, restart file or readers folder was made');
    const nowhere = path.join(dir, 'no', 'such', 'folder', 'restart');
    const deep = thrownBy(() => new BucketMap({ maxBuckets: 4, engine, restartFile: nowhere, readOnly: true }));
    assert.ok(deep instanceof BucketMapError && deep.code === codes.FILE_MISSING, String(deep));
    assert.not.ok(fs.existsSync(path.join(dir, 'no')));
  });

  test('where no reader file can be made (a read-only folder), a read-only open still reads, and still refuses while a writer holds the map', () => {
    withSeed((rng) => {
      const { model } = writeMap(config, rng, 200);
      const readOnlyFolder = (write: (...args: unknown[]) => unknown) => (file: unknown, ...rest: unknown[]) => {
        if (String(file).endsWith('.new')) throw Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' });
        return write(file, ...rest);
      };
      withFsFunction('writeFileSync', readOnlyFolder, () => {
        const map = new BucketMap({ ...config, readOnly: true });
        assert.equal(snapshot(map), model);
        map.close();
      });
      assert.not.ok(fs.existsSync(readersOf(config)));
      const writer = new BucketMap(config);
      withFsFunction('writeFileSync', readOnlyFolder, () => {
        const err = thrownBy(() => new BucketMap({ ...config, readOnly: true }));
        assert.ok(err instanceof BucketMapError && err.code === codes.LOCKED, String(err));
      });
      writer.close();
    });
  });

  test.run();
}
