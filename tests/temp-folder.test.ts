import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BucketMap, BucketMapError, codes } from '../host/index.js';
import { tempParent } from '../host/temp-folder.js';
import { ENGINES, thrownBy, withFsFunction } from './helpers.js';

const HOST_INDEX = new URL('../host/index.js', import.meta.url).href;

/**
 * A script that opens a temporary map (in `drive` if given), fills it a little, prints its folder
 * and how many entries that folder holds, then waits or exits without close().
 */
function childScript(engine: string, then: 'wait' | 'exit', drive?: string): string {
  return `
    import { BucketMap } from ${JSON.stringify(HOST_INDEX)};
    import * as fs from 'node:fs';
    const map = new BucketMap({ maxBuckets: 4, engine: ${JSON.stringify(engine)}${drive === undefined ? '' : `, drives: [${JSON.stringify(drive)}]`} });
    for (let i = 0; i < 100; i++) map.insert(new Uint8Array(32).fill(i), [new Uint8Array(16)]);
    process.stdout.write(map.drives[0] + ' ' + fs.readdirSync(map.drives[0]).length + '\\n');
    ${then === 'wait' ? 'setInterval(() => {}, 1000);' : 'process.exit(0);'}`;
}

/** The folder and entry count a child running childScript printed. */
function childReport(stdout: string): { folder: string; entries: number } {
  const line = stdout.trim();
  const at = line.lastIndexOf(' ');
  return { folder: line.slice(0, at), entries: Number(line.slice(at + 1)) };
}

function newTempMap(engine: 'wasm' | 'host'): void {
  new BucketMap({ maxBuckets: 2, engine }).close();
}

for (const engine of ENGINES) {
  const test = suite(`temporary map folders [${engine}]`);

  test('a process that exits without close() removes its folder', () => {
    const out = spawnSync(process.execPath, ['--input-type=module', '-e', childScript(engine, 'exit')], { encoding: 'utf8' });
    const { folder } = childReport(out.stdout);
    assert.ok(folder.startsWith(path.join(os.tmpdir(), 'bucket-map-')), out.stderr);
    assert.is(path.dirname(folder), tempParent(), 'temporary maps are made in the per-user folder');
    assert.not.ok(fs.existsSync(folder));
  });

  test('a process that exits without close() removes a temporary map\'s files from drives it was given, and nothing else there', () => {
    const drive = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-given-'));
    try {
      fs.writeFileSync(path.join(drive, 'keep.txt'), 'not the map\'s');
      const neighbour = { maxBuckets: 2, engine, restartFile: path.join(drive, 'neighbour'), drives: [drive] };
      const persistent = new BucketMap(neighbour);
      persistent.insert(new Uint8Array(32).fill(7), [new Uint8Array(16).fill(7)]);
      persistent.close();
      const before = fs.readdirSync(drive);
      const out = spawnSync(process.execPath, ['--input-type=module', '-e', childScript(engine, 'exit', drive)], { encoding: 'utf8' });
      assert.ok(childReport(out.stdout).entries > before.length, `the temporary map made files in the drive: ${out.stderr}`);
      assert.equal(fs.readdirSync(drive).sort(), before.sort(), 'its files went at exit; the other map\'s files and the folder\'s own stayed');
      const reopened = new BucketMap(neighbour);
      assert.equal(reopened.get(new Uint8Array(32).fill(7)), [[new Uint8Array(16).fill(7)], 1]);
      reopened.close();
    } finally {
      fs.rmSync(drive, { recursive: true, force: true });
    }
  });

  test('a killed owner\'s folder is removed by the next temporary map; a live owner\'s is kept', async () => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', childScript(engine, 'wait')]);
    const folder = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d) => resolve(childReport(String(d)).folder));
      child.on('exit', (code) => reject(new Error(`child exited ${code}`)));
    });
    try {
      newTempMap(engine);
      assert.ok(fs.existsSync(folder), 'the folder of a live map stays');
    } finally {
      child.kill('SIGKILL');
      await new Promise((resolve) => child.on('close', resolve));
    }
    assert.ok(fs.existsSync(folder), 'a killed process cannot remove its folder');
    newTempMap(engine);
    assert.not.ok(fs.existsSync(folder), 'the next temporary map removed it');
  });

  (process.platform === 'linux' ? test : test.skip)('a terminated worker\'s folder is removed by the next temporary map', async () => {
    const worker = new Worker(`
      const { parentPort } = require('node:worker_threads');
      import(${JSON.stringify(HOST_INDEX)}).then(({ BucketMap }) => {
        const map = new BucketMap({ maxBuckets: 4, engine: ${JSON.stringify(engine)} });
        map.insert(new Uint8Array(32).fill(1), [new Uint8Array(16)]);
        parentPort.postMessage(map.drives[0]);
        setInterval(() => {}, 1000); // alive until terminated: ending by itself would run the exit handler
      });`, { eval: true });
    const folder = await new Promise<string>((resolve) => worker.once('message', resolve));
    await worker.terminate();
    assert.ok(fs.existsSync(folder), 'terminate() runs no exit handler');
    newTempMap(engine);
    assert.not.ok(fs.existsSync(folder));
  });

  test('only lock-holding folders in the per-user folder are swept: one without a lock, and the temp folder\'s other entries, stay', () => {
    // A TMPDIR of its own: the last check needs the per-user folder to hold this test's maps only,
    // not the temporary maps of other processes this user runs meanwhile.
    const savedTmp = process.env.TMPDIR;
    const privateTmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-tmpdir-'));
    process.env.TMPDIR = privateTmp;
    try {
      lockHoldingOnly();
    } finally {
      if (savedTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmp;
      fs.rmSync(privateTmp, { recursive: true, force: true });
    }
  });

  /** Runs `body` with a TMPDIR of its own, `privateTmp`, removed after. */
  function withPrivateTmp(body: (privateTmp: string) => void): void {
    const savedTmp = process.env.TMPDIR;
    const privateTmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-tmpdir-'));
    process.env.TMPDIR = privateTmp;
    try {
      body(privateTmp);
    } finally {
      if (savedTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmp;
      fs.rmSync(privateTmp, { recursive: true, force: true });
    }
  }

  test('a temp folder that cannot be used is BUCKET_MAP_IO; an owner lock that cannot be taken leaves no folder behind', () => {
    withPrivateTmp((privateTmp) => {
      const missing = path.join(privateTmp, 'missing');
      process.env.TMPDIR = missing;
      assert.throws(() => newTempMap(engine), (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.IO && e.message.includes(missing));
      assert.not.ok(fs.existsSync(missing));
      process.env.TMPDIR = privateTmp;
      // Out of descriptors when the owner lock is opened: the folder made for it must not stay,
      // as a folder without a lock is never swept.
      const emfile = Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' });
      const refused = withFsFunction('openSync', (original) => (...args: unknown[]) => {
        if (String(args[0]).endsWith('owner.lock')) throw emfile;
        return original(...args);
      }, () => thrownBy(() => newTempMap(engine)));
      assert.ok(refused !== null, 'the open failed');
      assert.equal(fs.readdirSync(privateTmp), [], 'no map folder, and no per-user folder, left');
      newTempMap(engine);
    });
  });

  function lockHoldingOnly(): void {
    const map = new BucketMap({ maxBuckets: 2, engine });
    const parent = path.dirname(map.drives[0]);
    assert.is(parent, tempParent());
    assert.is(fs.statSync(parent).mode & 0o777, 0o700, 'the per-user folder is private');
    const unlocked = fs.mkdtempSync(path.join(parent, 'map-'));
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'bucket-map-'));
    for (const d of [unlocked, outside]) fs.writeFileSync(path.join(d, 'owner.lock'), d === outside ? '1 1\n' : '');
    try {
      newTempMap(engine);
      assert.ok(fs.existsSync(path.join(unlocked, 'owner.lock')), 'a lock being written (empty) is not stale');
      assert.ok(fs.existsSync(path.join(outside, 'owner.lock')), 'nothing outside the per-user folder is read');
    } finally {
      fs.rmSync(unlocked, { recursive: true, force: true });
      fs.rmSync(outside, { recursive: true, force: true });
      map.close();
    }
    assert.not.ok(fs.existsSync(parent), 'the per-user folder goes with its last map');
  }

  test.run();
}
