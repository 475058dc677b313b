/**
 * A map copied sparsely (`cp --sparse=always`, `rsync -S`, `tar -S`, a backup tool that punches
 * holes) has holes wherever its files' pages were zero. The first store into a hole needs a block,
 * and on a full disk that store is a SIGBUS. So a file opened for writing has its holes filled
 * before it is mapped, with its bytes unchanged, and a full disk is BUCKET_MAP_IO (ENOSPC) at the
 * open or the bucket's first use instead. A read-only open writes nothing, holes included.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BucketMap, type BucketMapConfig } from '../host/index.js';
import { ENGINES, Rng, entryValue, hex, listFiles, removeDir, snapshot, tempDir, withFsFunction } from './helpers.js';

const PAGE = 4096;
const HOST_INDEX = fileURLToPath(new URL('../host/index.js', import.meta.url));

/** Copies `from` into `to` as `cp --sparse=always` would: pages of zeros become holes. */
function sparseCopy(from: string, to: string): void {
  fs.mkdirSync(to, { recursive: true });
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    const target = path.join(to, entry.name);
    if (entry.isDirectory()) {
      sparseCopy(source, target);
      continue;
    }
    const bytes = fs.readFileSync(source);
    const fd = fs.openSync(target, 'w');
    try {
      fs.ftruncateSync(fd, bytes.length);
      const zeros = Buffer.alloc(PAGE);
      for (let at = 0; at < bytes.length; at += PAGE) {
        const end = Math.min(at + PAGE, bytes.length);
        if (bytes.compare(zeros, 0, end - at, at, end) !== 0) fs.writeSync(fd, bytes, at, end - at, at);
      }
    } finally {
      fs.closeSync(fd);
    }
  }
}

const bucketFiles = (config: BucketMapConfig): string[] => listFiles(config.drives![0]).filter((f) => f.endsWith('.bkt')).sort();
const allocated = (file: string): number => fs.statSync(file).blocks * 512;
const contents = (files: string[]): Map<string, Buffer> => new Map(files.map((f) => [f, fs.readFileSync(f)]));

/** A closed map with a roomy (so mostly zero) index in a folder of its own; returns its model. */
function makeMap(config: BucketMapConfig, keys: number, seed: number, anticipated = 20000): Map<string, string> {
  const rng = new Rng(seed);
  const model = new Map<string, string>();
  const map = new BucketMap(config);
  map.setAnticipatedCount(anticipated);
  for (let i = 0; i < keys; i++) {
    const key = rng.key();
    const list = i % 3 === 0 ? [rng.bytes(16), rng.bytes(16)] : [rng.bytes(16)];
    map.insert(key, list);
    model.set(hex(key), entryValue(list, 1));
  }
  map.close();
  return model;
}

const configIn = (dir: string, engine: BucketMapConfig['engine'], extra: Partial<BucketMapConfig> = {}): BucketMapConfig => ({
  maxBuckets: 4, engine, restartFile: path.join(dir, 'restart'), drives: [path.join(dir, 'drive')], ...extra,
});

for (const engine of ENGINES) {
  for (const mode of ['deferred', 'lazy', 'checkFilesAtOpen', 'hugePages'] as const) {
    const test = suite(`sparse copy [${engine}, ${mode}]`);
    let dir = '';
    test.before.each(() => {
      dir = tempDir();
    });
    test.after.each(() => removeDir(dir));

    const extra: Partial<BucketMapConfig> = mode === 'checkFilesAtOpen' ? { checkFilesAtOpen: true } : mode === 'hugePages' ? { hugePages: true } : {};

    test('opened for writing, a sparse copy gets every block allocated before it is mapped, its bytes unchanged', () => {
      // hugePages: an index of several 2 MiB units and a tail, so both ways of filling run.
      const model = makeMap(configIn(path.join(dir, 'src'), engine, extra), 300, 61, mode === 'hugePages' ? 150000 : 20000);
      sparseCopy(path.join(dir, 'src'), path.join(dir, 'copy'));
      const config = configIn(path.join(dir, 'copy'), engine, extra);
      if (mode === 'lazy') fs.rmSync(`${config.restartFile}.closed`);
      const files = bucketFiles(config);
      const sparse = files.filter((f) => allocated(f) < fs.statSync(f).size);
      assert.ok(sparse.length > 0, 'the copy has holes');
      const before = contents(files);

      const map = new BucketMap(config);
      assert.equal(snapshot(map), model, 'reads as the original');
      for (const f of files) {
        assert.ok(allocated(f) >= fs.statSync(f).size, `${path.basename(f)}: ${allocated(f)} bytes allocated of ${fs.statSync(f).size}`);
      }
      assert.equal(contents(files), before, 'not a byte changed');

      const rng = new Rng(62);
      for (let i = 0; i < 500; i++) {
        const key = rng.key();
        const list = [rng.bytes(16)];
        map.insert(key, list);
        model.set(hex(key), entryValue(list, 1));
      }
      map.close();
      const again = new BucketMap(config);
      assert.equal(snapshot(again), model);
      assert.ok(again.verify().ok);
      again.close();
    });

    test('a file without holes costs nothing more: nothing is written and no more than headers are read', () => {
      const model = makeMap(configIn(path.join(dir, 'src'), engine, extra), 300, 65, mode === 'hugePages' ? 150000 : 20000);
      const config = configIn(path.join(dir, 'src'), engine, extra);
      if (mode === 'lazy') fs.rmSync(`${config.restartFile}.closed`);
      const files = bucketFiles(config);
      for (const f of files) assert.ok(allocated(f) >= fs.statSync(f).size, 'a map written in place has no holes');
      let read = 0;
      let writes = 0;
      const others = [config.restartFile as string, `${config.restartFile}.closed`].filter((f) => fs.existsSync(f)).reduce((n, f) => n + fs.statSync(f).size, 0);
      withFsFunction('readSync', (original) => (...args) => {
        const n = original(...args) as number;
        read += n;
        return n;
      }, () => withFsFunction('writeSync', (original) => (...args) => {
        writes++;
        return original(...args);
      }, () => {
        const map = new BucketMap(config);
        assert.equal(snapshot(map), model);
        map.close();
      }));
      // Each segment's header is read at most twice (checked at open, again when mapped).
      assert.ok(read <= others + files.length * 2 * 1024, `read ${read} bytes`);
      // close() writes its close record (two writes here); a fill would write every page of zeros.
      assert.ok(writes <= 4, `${writes} writes`);
    });

    if (mode === 'deferred') {
      test('opened read-only, a sparse copy is read and left exactly as it was, holes included', () => {
        const model = makeMap(configIn(path.join(dir, 'src'), engine), 300, 63);
        sparseCopy(path.join(dir, 'src'), path.join(dir, 'copy'));
        const config = configIn(path.join(dir, 'copy'), engine, { readOnly: true });
        const files = bucketFiles(config);
        const blocks = files.map(allocated);
        const before = contents(files);
        const map = new BucketMap(config);
        assert.equal(snapshot(map), model);
        assert.ok(map.verify().ok);
        map.close();
        assert.equal(files.map(allocated), blocks, 'no block allocated');
        assert.equal(contents(files), before);
      });
    }

    test.run();
  }

  const full = suite(`sparse copy on a full disk [${engine}]`);
  let dir = '';
  full.before.each(() => {
    dir = tempDir();
  });
  full.after.each(() => removeDir(dir));

  full('a filesystem that really is full: the fill fails with BUCKET_MAP_IO (ENOSPC), never a SIGBUS, and the map works once there is room', () => {
    const mount = path.join(dir, 'small');
    const mounted = spawnSync('sh', ['-c', `mkdir -p ${mount} && mount -t tmpfs -o size=4m tmpfs ${mount}`]).status === 0;
    if (!mounted) {
      console.log('    (no permission to mount a small tmpfs here; the other sparse-copy tests check that holes are filled)');
      return;
    }
    try {
      const model = makeMap(configIn(path.join(dir, 'src'), engine, { maxBuckets: 1 }), 200, 64);
      sparseCopy(path.join(dir, 'src'), mount);
      const config = configIn(mount, engine, { maxBuckets: 1 });
      const index = bucketFiles(config).find((f) => /\.i\.\d+\.\d+\.bkt$/.test(f)) as string;
      assert.ok(allocated(index) < fs.statSync(index).size, 'the copy has holes');
      // Fill the filesystem, then give back 16 KiB: room for the lock, not for the holes.
      const filler = path.join(mount, 'filler');
      const fd = fs.openSync(filler, 'w');
      try {
        const block = Buffer.alloc(64 * 1024, 1);
        for (;;) fs.writeSync(fd, block);
      } catch (err) {
        assert.is((err as NodeJS.ErrnoException).code, 'ENOSPC');
      } finally {
        fs.closeSync(fd);
      }
      fs.truncateSync(filler, Math.max(0, fs.statSync(filler).size - 16 * 1024));

      // In a child: before holes were filled, this was a SIGBUS, which would take the test runner down.
      const script = `
        import * as fs from 'node:fs';
        import { BucketMap } from ${JSON.stringify(HOST_INDEX)};
        const config = JSON.parse(process.argv[1]);
        const filler = process.argv[2];
        const key = (i) => { const k = new Uint8Array(32); k.fill(0xa5); new DataView(k.buffer).setUint32(0, i); return k; };
        const value = (i) => { const v = new Uint8Array(16); new DataView(v.buffer).setUint32(0, i); return v; };
        const report = (e) => ({ code: e.code, cause: e.cause?.code, message: e.message });
        let map;
        let first = null;
        try { map = new BucketMap(config); } catch (e) { first = report(e); }
        if (map !== undefined) {
          try { for (let i = 0; i < 2000; i++) map.insert(key(i), [value(i)]); } catch (e) { first = report(e); }
        }
        fs.rmSync(filler);
        if (map === undefined) map = new BucketMap(config);
        for (let i = 0; i < 2000; i++) map.insert(key(i), [value(i)]);
        map.close();
        console.log(JSON.stringify({ first }));
      `;
      const child = spawnSync(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(config), filler], { encoding: 'utf8', timeout: 120000 });
      assert.is(child.signal, null, `child killed by ${child.signal}: ${child.stderr}`);
      assert.is(child.status, 0, child.stderr);
      const { first } = JSON.parse(child.stdout.trim().split('\n').pop() as string);
      assert.ok(first !== null, 'the full disk was reported');
      assert.is(first.code, 'BUCKET_MAP_IO', first.message);
      assert.is(first.cause, 'ENOSPC', first.message);

      for (let i = 0; i < 2000; i++) {
        const k = new Uint8Array(32).fill(0xa5);
        new DataView(k.buffer).setUint32(0, i);
        const v = new Uint8Array(16);
        new DataView(v.buffer).setUint32(0, i);
        model.set(hex(k), entryValue([v], 1));
      }
      const again = new BucketMap(config);
      assert.equal(snapshot(again), model);
      assert.ok(again.verify().ok);
      again.close();
    } finally {
      spawnSync('umount', ['-l', mount]);
    }
  });

  full.run();
}
