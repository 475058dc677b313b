import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Worker } from 'node:worker_threads';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { BucketMap, BucketMapError, codes } from '../host/index.js';
import { ENGINES, deadPid, fingerprint, killHard, persistentConfig, removeDir, startChild, tempDir, withFsFunction } from './helpers.js';

const HOST_INDEX = new URL('../host/index.js', import.meta.url).href;

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

function startWorker(config: object, probe = false): { worker: Worker; next: () => Promise<{ code: string; message?: string }> } {
  const worker = new Worker(WORKER, { eval: true, workerData: { index: HOST_INDEX, config, probe } });
  workers.add(worker);
  const inbox: Array<{ code: string; message?: string }> = [];
  const waiting: Array<(m: { code: string; message?: string }) => void> = [];
  worker.on('message', (m) => (waiting.length > 0 ? waiting.shift()!(m) : inbox.push(m)));
  worker.on('error', () => {});
  const next = () => new Promise<{ code: string; message?: string }>((resolve) => (inbox.length > 0 ? resolve(inbox.shift()!) : waiting.push(resolve)));
  return { worker, next };
}

const onLinux = process.platform === 'linux';

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

  test('a lock file left unfinished (empty, as a kill between create and write leaves one) holds for 10 s, then is taken over', () => {
    const config = persistentConfig(dir, engine);
    const map = new BucketMap(config);
    map.insert(new Uint8Array(32).fill(5), [new Uint8Array(16)]);
    map.close();
    const lockFile = `${config.restartFile}.lock`;
    fs.writeFileSync(lockFile, '');
    assert.throws(() => new BucketMap(config), (e: BucketMapError) => e.code === codes.LOCKED && /unfinished/.test(e.message));
    const past = new Date(Date.now() - 11_000);
    fs.utimesSync(lockFile, past, past);
    // And a draft of the lock, as a kill between writing one and linking it leaves it.
    const gone = deadPid();
    fs.writeFileSync(`${lockFile}.${gone}.x1y2.new`, `${gone} 1 ${os.hostname()}\n`);
    // And a restart-file draft, as a kill between linking it into place and removing its name leaves it.
    fs.copyFileSync(config.restartFile!, `${config.restartFile}.${gone}.z9.new`);
    const again = new BucketMap(config);
    assert.is(again.size, 1);
    assert.equal(fs.readdirSync(dir).filter((n) => n.endsWith('.new')), [], 'no draft (the dead opener\'s included) or moved-aside lock is left');
    again.close();
    assert.not.ok(fs.existsSync(lockFile));
  });

  test('a lock draft a killed opener left before linking it (so no lock, and no clean close) is removed by the next open', () => {
    const config = persistentConfig(dir, engine);
    const gone = deadPid();
    fs.writeFileSync(`${config.restartFile}.lock.${gone}.k3.new`, `${gone} 1 ${os.hostname()}\n`);
    const map = new BucketMap(config);
    assert.equal(fs.readdirSync(dir).filter((n) => n.endsWith('.new')), []);
    map.close();
  });

  test('where the file system has no hard links, the lock and the restart file are still created exclusively', () => {
    const config = persistentConfig(dir, engine);
    let refused = 0;
    const noLinks = () => () => {
      refused++;
      throw Object.assign(new Error('ENOTSUP: operation not supported'), { code: 'ENOTSUP' });
    };
    withFsFunction('linkSync', noLinks, () => {
      const map = new BucketMap(config);
      assert.ok(refused >= 2, 'both the lock and the restart file tried a link first');
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

  (onLinux ? test : test.skip)('a worker that ends without close (terminated, or by an uncaught error) leaves a lock the next open takes over', async () => {
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

  test.run();
}
