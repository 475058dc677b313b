import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { BucketMap, BucketMapError, codes } from '../host/index.js';
import { ENGINES, fingerprint, persistentConfig, removeDir, tempDir } from './helpers.js';

const HOST_INDEX = new URL('../host/index.js', import.meta.url).href;

for (const engine of ENGINES) {
  const test = suite(`one open per map [${engine}]`);
  let dir = '';
  test.before.each(() => {
    dir = tempDir();
  });
  test.after.each(() => removeDir(dir));

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
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(config)]);
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d) => String(d).includes('open') && resolve());
      child.on('exit', (code) => reject(new Error(`child exited ${code}`)));
    });
    assert.throws(() => new BucketMap(config), (e: BucketMapError) => e.code === codes.LOCKED && e.message.includes(`process ${child.pid}`));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.on('close', resolve));
    assert.ok(fs.existsSync(`${config.restartFile}.lock`), 'a killed process cannot remove its lock file');
    const map = new BucketMap(config);
    assert.is(map.size, 1, 'the stale lock was taken over and the data is there');
    map.close();
    assert.not.ok(fs.existsSync(`${config.restartFile}.lock`), 'close removes the lock');
  });

  test('a lock naming a pid that now belongs to an unrelated process is stale', () => {
    const config = persistentConfig(dir, engine);
    new BucketMap(config).close();
    // A short-lived process: its pid is free (or reused with another start time) afterwards.
    const done = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    fs.writeFileSync(`${config.restartFile}.lock`, `${done.stdout} 1 ${os.hostname()}\n`);
    const map = new BucketMap(config);
    map.close();
  });

  test.run();
}
