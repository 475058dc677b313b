import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Worker } from 'node:worker_threads';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { BucketMap, BucketMapError, codes } from '../host/index.js';
import { createRequire } from 'node:module';
import { ENGINES, deadPid, fingerprint, killHard, persistentConfig, removeDir, startChild, tempDir, withFsFunction } from './helpers.js';

const HOST_INDEX = new URL('../host/index.js', import.meta.url).href;
const nativeLocks = createRequire(import.meta.url)('fs-native-extensions') as { tryLock(fd: number, offset: number, length: number, opts?: { shared?: boolean }): boolean };

/**
 * A worker thread that opens the map, inserts key 3 and flushes, then reports; on 'insert' it
 * inserts key 4 without flushing, on 'throw' it dies of an uncaught error, on 'close' it closes.
 * With `probe` it only tries to open and reports the error code and message.
 */
const WORKER = `
  const { parentPort, workerData } = require('node:worker_threads');
  import(workerData.index).then(({ BucketMap }) => {
    let map;
    try {
      map = new BucketMap(workerData.config);
    } catch (e) {
      parentPort.postMessage({ code: e.code, message: e.message });
      return;
    }
    if (workerData.probe) {
      map.close();
      parentPort.postMessage({ code: 'opened' });
      return;
    }
    map.insert(new Uint8Array(32).fill(3), [new Uint8Array(16).fill(3)]);
    map.flush();
    parentPort.on('message', (m) => {
      if (m === 'insert') map.insert(new Uint8Array(32).fill(4), [new Uint8Array(16).fill(4)]);
      if (m === 'throw') throw new Error('the worker dies without closing its map');
      if (m === 'close') map.close();
      parentPort.postMessage({ code: 'done' });
    });
    parentPort.postMessage({ code: 'open' });
  });`;

/** Every worker a test started, so that a failed assertion does not leave one keeping the process alive. */
const workers = new Set<Worker>();

async function stopWorkers(): Promise<void> {
  await Promise.all([...workers].map((w) => w.terminate()));
  workers.clear();
}

function startWorker(config: object, probe = false, trackUnmanagedFds = true): { worker: Worker; next: () => Promise<{ code: string; message?: string }> } {
  const worker = new Worker(WORKER, { eval: true, workerData: { index: HOST_INDEX, config, probe }, trackUnmanagedFds });
  workers.add(worker);
  const inbox: Array<{ code: string; message?: string }> = [];
  const waiting: Array<(m: { code: string; message?: string }) => void> = [];
  worker.on('message', (m) => (waiting.length > 0 ? waiting.shift()!(m) : inbox.push(m)));
  worker.on('error', () => {});
  const next = () => new Promise<{ code: string; message?: string }>((resolve) => (inbox.length > 0 ? resolve(inbox.shift()!) : waiting.push(resolve)));
  return { worker, next };
}

const onLinux = process.platform === 'linux';

/** A child that opens the map given as its argument for writing and holds it. */
const HOLDER = `
  import { BucketMap } from ${JSON.stringify(HOST_INDEX)};
  const map = new BucketMap(JSON.parse(process.argv[1]));
  if (map.size === 0) map.insert(new Uint8Array(32).fill(2), [new Uint8Array(16)]);
  map.flush();
  process.stdout.write('open\\n');
  setInterval(() => {}, 1000);`;

/** A child that tries to open the map for writing and writes 'opened' or the error code to the file given second; it holds what it opened. */
const MARKER_HOLDER = `
  import * as fs from 'node:fs';
  import { BucketMap } from ${JSON.stringify(HOST_INDEX)};
  let status = 'opened';
  try { new BucketMap(JSON.parse(process.argv[1])); } catch (e) { status = e.code ?? String(e); }
  fs.writeFileSync(process.argv[2] + '.tmp', status);
  fs.renameSync(process.argv[2] + '.tmp', process.argv[2]);
  setInterval(() => {}, 1000);`;

/** Can this process make a pid namespace (root, or user namespaces allowed)? */
const canUnshare = onLinux && spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']).status === 0;

for (const engine of ENGINES) {
  const test = suite(`one open per map [${engine}]`);
  let dir = '';
  test.before.each(() => {
    dir = tempDir();
  });
  test.after.each(async () => {
    await stopWorkers();
    removeDir(dir);
  });

  test('a second open in the same process fails with LOCKED and changes nothing; close releases it', () => {
    const config = persistentConfig(dir, engine);
    const map = new BucketMap(config);
    map.insert(new Uint8Array(32).fill(1), [new Uint8Array(16)]);
    map.flush();
    const before = fingerprint(dir);
    assert.throws(() => new BucketMap(config), (e: BucketMapError) => e.code === codes.LOCKED && /already open in this process/.test(e.message));
    assert.throws(() => new BucketMap({ ...config, engine: engine === 'wasm' ? 'host' : 'wasm' }), (e: BucketMapError) => e.code === codes.LOCKED);
    assert.equal(fingerprint(dir), before);
    assert.is(map.size, 1, 'the first map is unaffected');
    map.close();
    const again = new BucketMap(config);
    assert.is(again.size, 1);
    again.close();
  });

  test('a map open in another process is LOCKED; a crashed owner leaves a stale lock that is taken over', async () => {
    const config = persistentConfig(dir, engine);
    const script = `
      import { BucketMap } from ${JSON.stringify(HOST_INDEX)};
      const map = new BucketMap(JSON.parse(process.argv[1]));
      map.insert(new Uint8Array(32).fill(2), [new Uint8Array(16)]);
      map.flush();
      process.stdout.write('open\\n');
      setInterval(() => {}, 1000);`;
    const child = await startChild(script, JSON.stringify(config), 'open');
    assert.throws(() => new BucketMap(config), (e: BucketMapError) => e.code === codes.LOCKED && e.message.includes(`process ${child.pid}`));
    await killHard(child);
    assert.ok(fs.existsSync(`${config.restartFile}.lock`), 'a killed process cannot remove its lock file');
    const map = new BucketMap(config);
    assert.is(map.size, 1, 'the stale lock was taken over and the data is there');
    map.close();
    assert.not.ok(fs.existsSync(`${config.restartFile}.lock`), 'close removes the lock');
  });

  test('a lock naming a pid that now belongs to an unrelated process is stale', () => {
    const config = persistentConfig(dir, engine);
    new BucketMap(config).close();
    fs.writeFileSync(`${config.restartFile}.lock`, `${deadPid()} 1 ${os.hostname()}\n`);
    const map = new BucketMap(config);
    map.close();
  });

  test('a lock file nobody holds (empty, or naming an owner that is gone) is taken over at once, and the drafts a kill left go', () => {
    const config = persistentConfig(dir, engine);
    const map = new BucketMap(config);
    map.insert(new Uint8Array(32).fill(5), [new Uint8Array(16)]);
    map.close();
    const lockFile = `${config.restartFile}.lock`;
    fs.writeFileSync(lockFile, '');
    new BucketMap(config).close();
    const gone = deadPid();
    fs.writeFileSync(lockFile, `${gone} 1 ${os.hostname()}\n`);
    // And a lock draft of an older version, as a kill between writing one and linking it leaves it.
    fs.writeFileSync(`${lockFile}.${gone}.x1y2.new`, `${gone} 1 ${os.hostname()}\n`);
    // And a restart-file draft, as a kill between linking it into place and removing its name leaves it.
    fs.copyFileSync(config.restartFile!, `${config.restartFile}.${gone}.z9.new`);
    const again = new BucketMap(config);
    assert.is(again.size, 1);
    assert.equal(fs.readdirSync(dir).filter((n) => n.endsWith('.new')), [], 'no draft (the dead opener\'s included) is left');
    again.close();
    assert.not.ok(fs.existsSync(lockFile));
  });

  test('a writer alive in another pid namespace (its pid means nothing here) holds the map: writers, readers and verify are LOCKED', async () => {
    const config = persistentConfig(dir, engine);
    new BucketMap(config).close();
    const child = await startChild(HOLDER, JSON.stringify(config), 'open');
    try {
      // What a writer in another container sharing this hostname writes: it is pid 1 there, and
      // our pid 1 started at another time, so pid checks alone took the lock for stale.
      const lockFile = `${config.restartFile}.lock`;
      fs.writeFileSync(lockFile, `1 4242 ${os.hostname()} 1 4242 pid:[4026530000] 21\n`);
      assert.throws(() => new BucketMap(config), (e: BucketMapError) => e.code === codes.LOCKED && /process 1/.test(e.message));
      assert.throws(() => new BucketMap({ ...config, readOnly: true }), (e: BucketMapError) => e.code === codes.LOCKED);
      assert.throws(() => BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives }), (e: BucketMapError) => e.code === codes.LOCKED);
    } finally {
      await killHard(child);
    }
    const map = new BucketMap(config);
    assert.is(map.size, 1, 'once its holder is gone the map opens');
    map.close();
  });

  (canUnshare ? test : test.skip)('a writer in a real other pid namespace, same hostname, holds the map (unshare --pid)', async () => {
    const config = persistentConfig(dir, engine);
    new BucketMap(config).close();
    const child = spawn('unshare', ['--pid', '--fork', '--kill-child', '--mount-proc', process.execPath, '--input-type=module', '-e', HOLDER, JSON.stringify(config)]);
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d) => String(d).includes('open') && resolve());
        child.on('exit', (code) => reject(new Error(`child exited ${code}`)));
      });
      assert.match(fs.readFileSync(`${config.restartFile}.lock`, 'utf8'), /^1 /, 'the holder is pid 1 in its namespace');
      assert.throws(() => new BucketMap(config), (e: BucketMapError) => e.code === codes.LOCKED && /another pid namespace/.test(e.message));
    } finally {
      child.kill('SIGKILL');
      await new Promise((resolve) => child.exitCode !== null || child.signalCode !== null ? resolve(null) : child.once('exit', resolve));
    }
    // The kernel released the holder's lock with its process: no staleness to judge.
    const started = Date.now();
    let map: BucketMap | null = null;
    while (map === null) {
      try {
        map = new BucketMap(config);
      } catch (e) {
        if (Date.now() - started > 5000) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    assert.is(map.size, 1);
    map.close();
  });

  test('a lock left by a writer under another hostname (a recreated container, a renamed host) is taken over once nobody holds it', () => {
    const config = persistentConfig(dir, engine);
    const first = new BucketMap(config);
    first.insert(new Uint8Array(32).fill(7), [new Uint8Array(16)]);
    first.close();
    const lockFile = `${config.restartFile}.lock`;
    for (const line of [`${deadPid()} 1 old-container-7f3a\n`, `1 77 old-container-7f3a 1 77 pid:[4026530001] 20\n`]) {
      fs.writeFileSync(lockFile, line);
      assert.ok(BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives }).ok, 'verify runs');
      const reader = new BucketMap({ ...config, readOnly: true });
      assert.is(reader.size, 1, 'a read-only open runs');
      reader.close();
      const map = new BucketMap(config);
      assert.is(map.size, 1, 'a writer takes it over');
      map.close();
      assert.not.ok(fs.existsSync(lockFile));
    }
  });

  test('taking over a stale lock while two more openers arrive: never two writers (injected at the takeover\'s rename, where the old scheme raced)', async () => {
    const config = persistentConfig(dir, engine);
    new BucketMap(config).close();
    const lockFile = `${config.restartFile}.lock`;
    fs.writeFileSync(lockFile, `${deadPid()} 1 ${os.hostname()}\n`);
    const marker = `${dir}/a-status`;
    let a: ChildProcess | null = null;
    const startA = () => {
      a = spawn(process.execPath, ['--input-type=module', '-e', MARKER_HOLDER, JSON.stringify(config), marker]);
      const until = Date.now() + 20_000;
      while (!fs.existsSync(marker) && Date.now() < until) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
      return fs.readFileSync(marker, 'utf8');
    };
    let aStatus = '';
    let c: BucketMap | null = null;
    let b: BucketMap | null = null;
    // B has judged the lock stale: A takes it over first, then C opens while B acts on what it judged.
    const race = (rename: (...args: unknown[]) => unknown) => (from: unknown, ...rest: unknown[]) => {
      if (aStatus === '' && String(from) === lockFile) {
        aStatus = startA();
        const result = rename(from, ...rest);
        try {
          c = new BucketMap(config);
        } catch {
          // Refused: what should happen.
        }
        return result;
      }
      return rename(from, ...rest);
    };
    try {
      withFsFunction('renameSync', race, () => {
        try {
          b = new BucketMap(config);
        } catch {
          // Refused.
        }
      });
      if (aStatus === '') {
        // This scheme never renames a lock: the same three openers, A and C after B.
        aStatus = startA();
        try {
          c = new BucketMap(config);
        } catch {
          // Refused.
        }
      }
      const writers = [aStatus === 'opened' ? 'A' : '', b !== null ? 'B' : '', c !== null ? 'C' : ''].filter((w) => w !== '');
      assert.equal(writers.length, 1, `writers at once: ${writers.join(', ')} (A: ${aStatus})`);
    } finally {
      if (a !== null) await killHard(a);
      (b as BucketMap | null)?.close();
      (c as BucketMap | null)?.close();
    }
  });

  test('a lock draft a killed opener left before linking it (so no lock, and no clean close) is removed by the next open', () => {
    const config = persistentConfig(dir, engine);
    const gone = deadPid();
    fs.writeFileSync(`${config.restartFile}.lock.${gone}.k3.new`, `${gone} 1 ${os.hostname()}\n`);
    const map = new BucketMap(config);
    assert.equal(fs.readdirSync(dir).filter((n) => n.endsWith('.new')), []);
    map.close();
  });

  test('where the file system has no hard links, the restart file is still created exclusively, and the lock still excludes', () => {
    const config = persistentConfig(dir, engine);
    let refused = 0;
    const noLinks = () => () => {
      refused++;
      throw Object.assign(new Error('ENOTSUP: operation not supported'), { code: 'ENOTSUP' });
    };
    withFsFunction('linkSync', noLinks, () => {
      const map = new BucketMap(config);
      assert.ok(refused >= 1, 'the restart file tried a link first');
      map.insert(new Uint8Array(32).fill(6), [new Uint8Array(16)]);
      assert.throws(() => new BucketMap(config), (e: BucketMapError) => e.code === codes.LOCKED);
      map.close();
      const again = new BucketMap(config);
      assert.is(again.size, 1);
      again.close();
    });
    assert.equal(fs.readdirSync(dir).filter((n) => n.endsWith('.new')), []);
  });

  test('a map open in a worker thread is LOCKED to the main thread, and the main thread\'s to a worker', async () => {
    const config = persistentConfig(dir, engine);
    const { worker, next } = startWorker(config);
    assert.is((await next()).code, 'open');
    assert.throws(() => new BucketMap(config), (e: BucketMapError) => e.code === codes.LOCKED && /another thread of this process/.test(e.message));
    worker.postMessage('close');
    assert.is((await next()).code, 'done');
    await worker.terminate();
    const map = new BucketMap(config);
    assert.is(map.size, 1);
    const probe = startWorker(config, true);
    const refused = await probe.next();
    assert.is(refused.code, codes.LOCKED);
    assert.match(refused.message ?? '', /another thread of this process/);
    await probe.worker.terminate();
    map.close();
    const after = startWorker(config, true);
    assert.is((await after.next()).code, 'opened', 'close released the lock for other threads');
    await after.worker.terminate();
  });

  test('a worker that ends without close (terminated, or by an uncaught error) leaves a lock the next open takes over: Node closes its descriptors', async () => {
    const config = persistentConfig(dir, engine);
    for (const ending of ['terminate', 'throw']) {
      const { worker, next } = startWorker(config);
      assert.is((await next()).code, 'open', ending);
      worker.postMessage('insert');
      assert.is((await next()).code, 'done', ending);
      if (ending === 'terminate') {
        await worker.terminate();
      } else {
        const exited = new Promise((resolve) => worker.once('exit', resolve));
        worker.postMessage('throw');
        await exited;
      }
      assert.ok(fs.existsSync(`${config.restartFile}.lock`), 'a worker that did not close cannot remove its lock');
      assert.ok(BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives }).ok, `${ending}: verify no longer sees the map as open, and its files are whole`);
      const map = new BucketMap(config);
      const flushed = map.readValue(new Uint8Array(32).fill(3));
      assert.ok(flushed !== undefined && flushed[0][0][0] === 3, `${ending}: the flushed entry is there`);
      const unflushed = map.readValue(new Uint8Array(32).fill(4));
      assert.ok(unflushed === undefined || unflushed[0][0][0] === 4, `${ending}: the unflushed entry reads back whole or not at all`);
      map.deleteKey(new Uint8Array(32).fill(4));
      map.close();
    }
  });

  test('a lock that is not a regular file (a folder, a symlink, a FIFO) is LOCKED, naming what to do', () => {
    const config = persistentConfig(dir, engine);
    const lockFile = `${config.restartFile}.lock`;
    new BucketMap(config).close();
    const makers: Array<() => void> = [() => fs.mkdirSync(lockFile), () => fs.symlinkSync(`${dir}/elsewhere`, lockFile)];
    if (onLinux) makers.push(() => spawnSync('mkfifo', [lockFile]));
    for (const make of makers) {
      make();
      assert.throws(() => new BucketMap(config), (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.LOCKED && /remove it/.test(e.message));
      fs.rmSync(lockFile, { recursive: true, force: true });
    }
    new BucketMap(config).close();
  });

  test('a restart file that is a symbolic link is CORRUPT to a writer, a reader and verify alike, and nothing is written', () => {
    const config = persistentConfig(dir, engine);
    new BucketMap(config).close();
    const link = `${dir}/link`;
    fs.symlinkSync(config.restartFile!, link);
    const before = fingerprint(dir);
    const symlinkRefused = (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.CORRUPT && /symbolic link/.test(e.message);
    assert.throws(() => new BucketMap({ ...config, restartFile: link }), symlinkRefused);
    assert.throws(() => new BucketMap({ ...config, restartFile: link, readOnly: true }), symlinkRefused);
    // verify locks the restart file before reading it: that open had failed as IO (ELOOP).
    assert.throws(() => BucketMap.verify({ restartFile: link, drives: config.drives }), symlinkRefused);
    assert.equal(fingerprint(dir), before);
  });

  test('a dead worker\'s lock line names a descriptor number since reused: a writer that finds the lock held a moment never takes it for the dead worker\'s', async () => {
    const config = persistentConfig(dir, engine);
    const lockFile = `${config.restartFile}.lock`;
    const dead = startWorker(config);
    assert.is((await dead.next()).code, 'open');
    await dead.worker.terminate();
    // A reader's probe in flight (a shared hold on the lock byte) on the very descriptor number
    // the dead worker's line names, which Node closed when the worker ended.
    const named = Number(fs.readFileSync(lockFile, 'utf8').trim().split(' ')[6]);
    assert.ok(Number.isInteger(named) && named > 2, `the line names a descriptor (${named})`);
    const spare: number[] = [];
    let probe = fs.openSync(lockFile, 'r');
    while (probe < named && spare.length < 1000) {
      spare.push(probe);
      probe = fs.openSync(lockFile, 'r');
    }
    for (const fd of spare) fs.closeSync(fd);
    assert.is(probe, named, 'the probe got the dead worker\'s descriptor number');
    assert.ok(nativeLocks.tryLock(probe, 2 ** 30, 1, { shared: true }));
    try {
      const during = startWorker(config, true);
      const refused = await during.next();
      assert.is(refused.code, codes.LOCKED, 'held (by the probe): no writer, whatever the line says');
      assert.ok(fs.fstatSync(probe).isFile(), 'the probe\'s descriptor was left alone');
    } finally {
      fs.closeSync(probe);
    }
    const writer = startWorker(config);
    assert.is((await writer.next()).code, 'open', 'free once the probe is gone');
    const second = startWorker(config, true);
    assert.is((await second.next()).code, codes.LOCKED, 'and then held by that writer alone');
    writer.worker.postMessage('close');
    assert.is((await writer.next()).code, 'done');
  });

  test('a worker started with trackUnmanagedFds: false that ends without close keeps the map locked until the process exits, never shared', async () => {
    const config = persistentConfig(dir, engine);
    const kept = startWorker(config, false, false);
    assert.is((await kept.next()).code, 'open');
    await kept.worker.terminate();
    assert.throws(() => new BucketMap(config), (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.LOCKED);
    assert.throws(() => new BucketMap({ ...config, readOnly: true }), (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.LOCKED);
  });

  test('a lock file removed by hand while its map is open lets no second writer, reader or verify in: the restart file is locked too', async () => {
    const config = persistentConfig(dir, engine);
    const child = await startChild(HOLDER, JSON.stringify(config), 'open');
    try {
      fs.rmSync(`${config.restartFile}.lock`);
      const before = fingerprint(dir);
      const removedByHand = (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.LOCKED && /removed by hand/.test(e.message);
      assert.throws(() => new BucketMap(config), removedByHand);
      assert.throws(() => new BucketMap({ ...config, readOnly: true }), removedByHand);
      assert.throws(() => BucketMap.verify({ restartFile: config.restartFile! }), (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.LOCKED);
      assert.equal(fingerprint(dir), before, 'the refused opens left nothing behind, not even a lock file');
    } finally {
      await killHard(child);
    }
    const map = new BucketMap(config);
    assert.is(map.size, 1, 'free once its holder is gone, with its data');
    map.close();
  });

  test('reader files removed by hand while a reader is open let no writer in: the reader holds the restart file shared', async () => {
    const config = persistentConfig(dir, engine);
    const seed = new BucketMap(config);
    seed.insert(new Uint8Array(32).fill(3), [new Uint8Array(16)]);
    seed.close();
    const reader = await startChild(`
      import { BucketMap } from ${JSON.stringify(HOST_INDEX)};
      const map = new BucketMap({ ...JSON.parse(process.argv[1]), readOnly: true });
      process.stdout.write(map.size === 1 ? 'open\\n' : 'wrong size\\n');
      setInterval(() => {}, 1000);`, JSON.stringify(config), 'open');
    try {
      fs.rmSync(`${config.restartFile}.lock.readers`, { recursive: true });
      assert.throws(() => new BucketMap(config), (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.LOCKED && /removed by hand/.test(e.message));
      const other = new BucketMap({ ...config, readOnly: true });
      assert.is(other.size, 1, 'readers still share it');
      other.close();
    } finally {
      await killHard(reader);
    }
    const map = new BucketMap(config);
    assert.is(map.size, 1);
    map.close();
  });

  test.run();
}
