import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { BucketMap, BucketMapError, codecs, codes, type BucketMapConfig } from '../host/index.js';
import { ENGINES, Rng, fingerprint, listFiles, persistentConfig, removeDir, snapshot, tempDir } from './helpers.js';

const rng = new Rng(10);

/** Fills a map with every shape of entry, some deleted, across grown index and data files. */
function fill(map: BucketMap, n: number): void {
  const keys: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const key = rng.key();
    keys.push(key);
    const length = [0, 1, 1, 1, 2, 3, 5][i % 7];
    const rc = [1, 1, 0, 2, Number.MAX_SAFE_INTEGER][i % 5];
    map.insert(key, Array.from({ length }, () => rng.bytes(16)), rc);
  }
  for (let i = 0; i < n; i += 9) map.deleteKey(keys[i]);
}

for (const engine of ENGINES) {
  const test = suite(`persistence [${engine}]`);
  let dir = '';
  test.before.each(() => {
    dir = tempDir();
  });
  test.after.each(() => removeDir(dir));

  test('close and reopen restore every key, slot list and refCount', () => {
    const config = persistentConfig(dir, engine, { maxSearch: 8 });
    const map = new BucketMap(config);
    fill(map, 3000);
    const before = snapshot(map);
    const size = map.size;
    map.close();
    const again = new BucketMap(config);
    assert.is(again.size, size);
    assert.equal(snapshot(again), before);
    assert.is(again.stats().open.repairedBuckets, 0, 'a clean close needs no repair');
    again.close();
  });

  test('after many grows the drive holds exactly the files in use', () => {
    const config = persistentConfig(dir, engine, { maxBuckets: 2, maxSearch: 4 });
    const map = new BucketMap(config);
    fill(map, 2000);
    const stats = map.stats();
    assert.ok(stats.index.resizes > 5);
    map.close();
    const files = listFiles(config.drives![0]);
    assert.is(files.length, stats.index.files + stats.data.files);
    const reopened = (c: BucketMapConfig): Map<string, string> => {
      const m = new BucketMap(c);
      const snap = snapshot(m);
      m.close();
      return snap;
    };
    assert.equal(reopened(config), reopened({ ...config, engine: engine === 'wasm' ? 'host' : 'wasm' }));
  });

  test('a map written by one engine reopens identically with the other', () => {
    const config = persistentConfig(dir, engine);
    const map = new BucketMap(config);
    fill(map, 1500);
    const before = snapshot(map);
    map.close();
    const other = new BucketMap({ ...config, engine: engine === 'wasm' ? 'host' : 'wasm' });
    assert.equal(snapshot(other), before);
    // And keeps working there.
    const key = rng.key();
    other.insert(key, [rng.bytes(16)], 3);
    other.close();
    const back = new BucketMap(config);
    assert.is(back.readValue(key)?.[1], 3);
    back.close();
  });

  test('a configuration that contradicts the files fails with CONFIG_MISMATCH and changes nothing on disk', () => {
    const config = persistentConfig(dir, engine);
    const map = new BucketMap(config);
    fill(map, 300);
    const size = map.size;
    map.close();
    const before = fingerprint(dir);
    const wrong: Array<Partial<BucketMapConfig<unknown>>> = [
      { maxBuckets: 8 },
      { maxSearch: 16 },
      { codec: codecs.bytes(8) as never },
      { drives: [path.join(dir, 'drive'), path.join(dir, 'drive2')] },
    ];
    for (const change of wrong) {
      assert.throws(
        () => new BucketMap({ ...config, ...change } as BucketMapConfig),
        (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.CONFIG_MISMATCH,
      );
    }
    assert.not.ok(fs.existsSync(path.join(dir, 'drive2')), 'no folder made for the drive of a refused open');
    assert.equal(fingerprint(dir), before);
    const again = new BucketMap(config);
    assert.is(again.size, size, 'the right configuration still opens it');
    again.close();
  });

  test('a new map refused at open takes away the folders it made for itself, and only those', () => {
    const shared = path.join(dir, 'shared');
    fs.mkdirSync(shared);
    fs.symlinkSync(shared, path.join(dir, 'alias'));
    const nested = path.join(dir, 'new', 'deeper');
    const config = { ...persistentConfig(dir, engine), restartFile: path.join(nested, 'restart'), drives: [path.join(dir, 'fresh', 'drive'), shared, path.join(dir, 'alias')] };
    assert.throws(() => new BucketMap(config), (e: Error) => e instanceof RangeError && /same folder/.test(e.message));
    assert.equal(fs.readdirSync(dir).sort(), ['alias', 'shared'], 'the restart file\'s and the first drive\'s folders are gone');
    assert.equal(fs.readdirSync(shared), []);
  });

  test('drives given in another order are CONFIG_MISMATCH at open (after a clean close or a crash) and for verify, nothing changed; the right order opens everything', () => {
    const drives = ['d0', 'd1', 'd2'].map((d) => path.join(dir, d));
    const config = { ...persistentConfig(dir, engine), maxBuckets: 16, drives };
    const map = new BucketMap(config);
    fill(map, 400); // every bucket, spread over the three folders
    const expected = snapshot(map);
    map.close();
    for (const crashed of [false, true]) {
      if (crashed) fs.rmSync(`${config.restartFile}.closed`); // as after a kill: every bucket is opened at once
      const before = fingerprint(dir);
      for (const order of [[drives[1], drives[0], drives[2]], [drives[0], drives[2], drives[1]], [drives[2], drives[0], drives[1]]]) {
        const misordered = (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.CONFIG_MISMATCH && /another order/.test(e.message);
        assert.throws(() => new BucketMap({ ...config, drives: order }), misordered);
        // A reader of a crashed map stops earlier: it needs a writer's open first.
        const readerRefused = crashed ? (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.NEEDS_RECOVERY : misordered;
        assert.throws(() => new BucketMap({ ...config, drives: order, readOnly: true }), readerRefused);
        assert.throws(() => BucketMap.verify({ restartFile: config.restartFile!, drives: order }), misordered);
      }
      assert.equal(fingerprint(dir), before, 'nothing written, nothing removed');
    }
    const again = new BucketMap(config);
    assert.equal(snapshot(again), expected);
    again.close();
  });

  test('a missing bucket file fails with FILE_MISSING at open, or at its bucket\'s first use after a clean close, and deletes nothing', () => {
    const config = persistentConfig(dir, engine);
    const map = new BucketMap(config);
    fill(map, 200);
    const victimKey = map.keys().next().value as Uint8Array;
    const ix = map.bucketIx(victimKey);
    map.close();
    const file = listFiles(config.drives![0]).find((f) => new RegExp(`-b${ix.toString(16).padStart(4, '0')}\\.i\\.`).test(f))!;
    fs.rmSync(file);
    const missing = (e: BucketMapError): boolean => e.code === codes.FILE_MISSING && e.message.includes(path.basename(file));

    // The close record vouches for the files: the open does not look at them, the first use does.
    const before = fingerprint(dir);
    const opened = new BucketMap(config);
    assert.is(opened.stats().open.deferredBuckets, opened.stats().buckets.allocated);
    assert.throws(() => opened.readValue(victimKey), missing);
    assert.throws(() => opened.insert(victimKey, []), missing);
    opened.close();
    assert.ok(fs.existsSync(`${config.restartFile}.closed`));

    // Asked to, or without the record, the open checks every file.
    assert.throws(() => new BucketMap({ ...config, checkFilesAtOpen: true }), missing);
    assert.equal(fingerprint(dir), before);
    fs.rmSync(`${config.restartFile}.closed`);
    const without = fingerprint(dir);
    assert.throws(() => new BucketMap(config), missing);
    assert.equal(fingerprint(dir), without);
    for (const [name, digest] of without) assert.is(before.get(name), digest, `${name} is unchanged`);
  });

  test('files a crash left behind are removed on open, files of other maps in the drive are not', () => {
    const config = persistentConfig(dir, engine);
    const map = new BucketMap(config);
    fill(map, 200);
    map.close();
    const drive = config.drives![0];
    const index = listFiles(drive).find((f) => /\.i\.\d+\.0\.bkt$/.test(f))!;
    const stray = index.replace(/\.i\.(\d+)\.0\.bkt$/, (_, g) => `.i.${Number(g) + 7}.0.bkt`);
    fs.copyFileSync(index, stray);
    const foreign = path.join(drive, '00000001-b0000.i.1.0.bkt');
    fs.writeFileSync(foreign, 'another map');
    fs.writeFileSync(path.join(drive, 'notes.txt'), 'user file');
    const folder = index.replace(/\.i\.(\d+)\.0\.bkt$/, (_, g) => `.i.${Number(g) + 8}.0.bkt`);
    fs.mkdirSync(folder); // named like a stray, but the map makes no folders
    // A crash during growth comes after the map's first change, which removed the close record.
    fs.rmSync(`${config.restartFile}.closed`);
    const again = new BucketMap(config);
    assert.not.ok(fs.existsSync(stray));
    assert.is(again.stats().open.removedFiles, 1);
    assert.ok(fs.existsSync(foreign));
    assert.ok(fs.existsSync(path.join(drive, 'notes.txt')));
    assert.ok(fs.statSync(folder).isDirectory());
    again.close();
  });

  test('two drives that are one folder (through a symbolic link) are refused before any file is made or removed', () => {
    const real = path.join(dir, 'real');
    const alias = path.join(dir, 'alias');
    fs.mkdirSync(real);
    fs.symlinkSync(real, alias);
    const config: BucketMapConfig = { maxBuckets: 4, engine, restartFile: path.join(dir, 'restart'), drives: [real, alias] };
    assert.throws(() => new BucketMap(config), (err: Error) => err instanceof RangeError && /drives\[1\].*same folder as drives\[0\]/.test(err.message));
    assert.equal(listFiles(dir), [alias], 'no restart file, lock or bucket file');
    // A map made with two real folders, one later replaced by a link to the other: each folder's
    // files would be strays of the other's to the sweep that follows a crash. The open is refused
    // and removes nothing.
    const other = path.join(dir, 'other');
    const twoDrives: BucketMapConfig = { ...config, drives: [real, other] };
    const map = new BucketMap(twoDrives);
    fill(map, 200);
    map.close();
    for (const f of listFiles(other)) fs.renameSync(f, path.join(real, path.basename(f)));
    fs.rmdirSync(other);
    fs.symlinkSync(real, other);
    fs.rmSync(`${config.restartFile}.closed`); // as after a crash: the open would sweep the drives
    const before = fingerprint(real);
    assert.throws(() => new BucketMap(twoDrives), RangeError);
    assert.equal(fingerprint(real), before);
  });

  test('a FIFO in place of a map file fails fast (an open for writing, a reader, verify, the lock), never waits for a writer', () => {
    // In a child with a time limit: the failure this guards against is a hang, not an error.
    const config = persistentConfig(dir, engine);
    const script = `
      import { BucketMap } from ${JSON.stringify(new URL('../host/index.js', import.meta.url).href)};
      import * as fs from 'node:fs';
      import { execFileSync } from 'node:child_process';
      const config = JSON.parse(process.argv[1]);
      const outcome = (fn) => { try { fn(); return 'ok'; } catch (err) { return err.code ?? String(err); } };
      const key = new Uint8Array(32).fill(7);
      const write = () => { const m = new BucketMap(config); m.insert(key, [new Uint8Array(16)]); m.close(); };
      const fifo = (file) => { fs.rmSync(file); execFileSync('mkfifo', [file]); };
      const out = {};
      write();
      fifo(config.restartFile + '.closed');
      out.closeRecordReader = outcome(() => new BucketMap({ ...config, readOnly: true }).close());
      out.closeRecordWriter = outcome(() => { const m = new BucketMap(config); if (m.get(key) === undefined) throw new Error('lost'); m.close(); });
      const drive = config.drives[0];
      fifo(drive + '/' + fs.readdirSync(drive).find((f) => f.includes('.i.')));
      out.bucketVerify = outcome(() => { if (BucketMap.verify({ restartFile: config.restartFile, drives: config.drives }).ok) throw new Error('verify ok'); });
      out.bucketReader = outcome(() => { const m = new BucketMap({ ...config, readOnly: true }); try { m.get(key); } finally { m.close(); } });
      out.bucketWriter = outcome(() => { const m = new BucketMap(config); try { m.get(key); } finally { m.close(); } });
      execFileSync('mkfifo', [config.restartFile + '.lock']);
      out.lockWriter = outcome(() => new BucketMap(config).close());
      process.stdout.write(JSON.stringify(out));
    `;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(config)], { encoding: 'utf8', timeout: 30_000 });
    assert.is(child.signal, null, `the child was stopped after 30 s (a hang); stderr: ${child.stderr}`);
    assert.equal(JSON.parse(child.stdout), {
      closeRecordReader: codes.NEEDS_RECOVERY, // no usable record: a reader cannot vouch for the files
      closeRecordWriter: 'ok', // the record is ignored and every file checked
      bucketVerify: 'ok', // reported as a problem
      bucketReader: codes.CORRUPT,
      bucketWriter: codes.CORRUPT,
      lockWriter: codes.LOCKED, // read as an unfinished lock
    }, child.stderr);
  });

  test('growth empties only files it alone names: a hard-linked copy of the folder keeps every file whole', () => {
    const config = persistentConfig(dir, engine, { maxBuckets: 2 });
    const map = new BucketMap(config);
    fill(map, 300);
    map.close();
    const drive = config.drives![0];
    const copy = path.join(dir, 'copy');
    fs.mkdirSync(copy);
    const sizes = new Map<string, number>();
    for (const file of listFiles(drive)) {
      fs.linkSync(file, path.join(copy, path.basename(file)));
      sizes.set(path.basename(file), fs.statSync(file).size);
    }
    const again = new BucketMap(config);
    fill(again, 5000);
    const stats = again.stats();
    assert.ok(stats.index.resizes > 0 && stats.data.resizes > 0, 'index and data files were replaced');
    const expected = snapshot(again);
    again.close();
    // Emptied, a file of the copy would SIGBUS whoever maps it there.
    for (const [name, size] of sizes) assert.is(fs.statSync(path.join(copy, name)).size, size, name);
    const reopened = new BucketMap(config);
    assert.equal(snapshot(reopened), expected);
    reopened.close();
  });

  test('two maps can share a drive without touching each other', () => {
    const drive = path.join(dir, 'shared');
    const a: BucketMapConfig = { maxBuckets: 2, engine, drives: [drive], restartFile: path.join(dir, 'a') };
    const b: BucketMapConfig = { ...a, restartFile: path.join(dir, 'b') };
    const ma = new BucketMap(a);
    const mb = new BucketMap(b);
    fill(ma, 300);
    fill(mb, 300);
    const sa = snapshot(ma);
    const sb = snapshot(mb);
    ma.close();
    mb.close();
    const rb = new BucketMap(b);
    const ra = new BucketMap(a);
    assert.equal(snapshot(rb), sb);
    assert.equal(snapshot(ra), sa);
    rb.close();
    ra.close();
  });

  test('without a restart file the files are temporary: a default folder is removed on close, given drives are emptied', () => {
    const map = new BucketMap({ maxBuckets: 2, engine });
    fill(map, 100);
    const own = map.drives[0];
    assert.ok(listFiles(own).length > 0);
    map.close();
    assert.not.ok(fs.existsSync(own));

    const drive = path.join(dir, 'given');
    fs.mkdirSync(drive);
    fs.writeFileSync(path.join(drive, 'keep.txt'), 'mine');
    const m2 = new BucketMap({ maxBuckets: 2, engine, drives: [drive] });
    fill(m2, 100);
    assert.ok(listFiles(drive).length > 1);
    m2.close();
    assert.equal(listFiles(drive), [path.join(drive, 'keep.txt')]);
  });

  test('with a restart file and no drives, bucket files go next to it', () => {
    const restartFile = path.join(dir, 'state', 'index.restart');
    const map = new BucketMap({ maxBuckets: 2, engine, restartFile });
    fill(map, 100);
    const before = snapshot(map);
    map.close();
    assert.ok(listFiles(`${restartFile}.buckets`).length > 0);
    const again = new BucketMap({ maxBuckets: 2, engine, restartFile });
    assert.equal(snapshot(again), before);
    again.close();
  });

  test.run();
}
