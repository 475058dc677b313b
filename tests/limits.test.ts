/**
 * Resource limits: a configured ceiling on file bytes, a disk that really fills up, and the
 * kernel's cap on mappings. Growth past any of them fails with a BucketMapError; the map stays
 * usable and consistent, and reopens.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BucketMap, BucketMapError, codes, type BucketMapConfig } from '../host/index.js';
import { faults, mappings } from '../host/storage.js';
import type { WasmEngine } from '../host/wasm-engine.js';
import { ENGINES, Rng, collectUntil, entryValue, hex, persistentConfig, removeDir, snapshot, tempDir, thrownBy, withFsFunction } from './helpers.js';

/** Inserts until growth fails; returns the error and the model of what was written. */
function fillUntilError(map: BucketMap, rng: Rng, limit = 200000): [BucketMapError, Map<string, string>] {
  const model = new Map<string, string>();
  for (let i = 0; i < limit; i++) {
    const key = rng.key();
    const list = i % 5 === 0 ? [rng.bytes(16), rng.bytes(16)] : [rng.bytes(16)];
    try {
      map.insert(key, list);
    } catch (err) {
      assert.instance(err, BucketMapError);
      assert.is(map.has(key), false, 'the failed insert wrote nothing');
      return [err as BucketMapError, model];
    }
    model.set(hex(key), entryValue(list, 1));
  }
  throw new Error('the limit was never reached');
}

/** After a failed growth the map still reads, updates in place, deletes, flushes, and reopens (after `beforeReopen`). */
function stillUsable(map: BucketMap, model: Map<string, string>, config: BucketMapConfig, beforeReopen = (): void => {}): void {
  assert.is(map.size, model.size);
  assert.equal(snapshot(map), model);
  const [first] = model.keys();
  const key = Buffer.from(first, 'hex');
  const replacement = new Uint8Array(16).fill(7);
  map.insert(key, [replacement]);
  model.set(first, entryValue([replacement], 1));
  const [, second] = model.keys();
  map.deleteKey(Buffer.from(second, 'hex'));
  model.delete(second);
  map.flush();
  assert.equal(snapshot(map), model);
  map.close();
  beforeReopen();
  const again = new BucketMap(config);
  assert.equal(snapshot(again), model);
  again.close();
}

/** Files the wasm engine holds on to (internal: a file dropped by a failed growth must not stay). */
function registered(map: BucketMap): number {
  return (map as unknown as { ctx: { engine: WasmEngine } }).ctx.engine.registeredFiles();
}

const kernelBudget = mappings.budget;

for (const engine of ENGINES) {
  const test = suite(`resource limits [${engine}]`);
  let dir = '';
  test.before.each(() => {
    dir = tempDir();
  });
  test.after.each(() => {
    faults.beforeCreate = null;
    mappings.budget = kernelBudget;
    removeDir(dir);
  });

  test('every file mapping is counted, and uncounted once collected', async () => {
    const config = persistentConfig(dir, engine, { maxBuckets: 4 });
    const before = mappings.live;
    const map = new BucketMap(config);
    const rng = new Rng(35);
    while (map.stats().buckets.allocated < 4) map.insert(rng.key(), [rng.bytes(16)]);
    const s = map.stats();
    assert.is(s.index.resizes, 0);
    assert.is(mappings.live - before, s.index.files + s.data.files, 'one mapping per file made');
    assert.equal(s.mappings, { live: mappings.live, budget: kernelBudget });
    map.close();
    await collectUntil(() => mappings.live <= before, 20);
    assert.ok(mappings.live <= before, `${mappings.live} mappings held after close, ${before} before the map opened`);
  });

  test('past the mapping budget, growth and compaction fail with MAPPING_LIMIT and lose nothing; once the event loop turns they go on', async () => {
    const config = persistentConfig(dir, engine, { maxBuckets: 2 });
    const map = new BucketMap(config);
    // Room for the map's own files and a few dozen replaced ones: a synchronous run of inserts
    // keeps every replaced file mapped, as it would until the kernel's cap.
    mappings.budget = mappings.live + 40;
    const rng = new Rng(36);
    const [err, model] = fillUntilError(map, rng);
    assert.is(err.code, codes.MAPPING_LIMIT);
    assert.match(err.message, /vm\.max_map_count/);
    assert.ok(err.file !== undefined && err.file.startsWith(dir), `file ${err.file}`);
    assert.ok(map.stats().index.resizes > 10, `${map.stats().index.resizes} growths before the limit`);
    // A compaction needs new files too: refused before anything changes.
    const deleted = [...model.keys()].slice(0, Math.floor(model.size * 0.9));
    for (const h of deleted) {
      assert.is(map.deleteKey(Buffer.from(h, 'hex')), true);
      model.delete(h);
    }
    assert.is(thrownBy(() => map.compact())?.code, codes.MAPPING_LIMIT);
    assert.equal(snapshot(map), model);
    assert.is(map.verify().ok, true);
    await collectUntil(() => mappings.live < mappings.budget - 10, 20);
    assert.ok(mappings.live < mappings.budget - 10, `${mappings.live} mappings still held, budget ${mappings.budget}`);
    assert.ok(map.compact().bytesFreed > 0, 'the compaction goes through');
    const resizes = map.stats().index.resizes;
    while (map.stats().index.resizes === resizes) {
      const key = rng.key();
      const list = [rng.bytes(16)];
      map.insert(key, list);
      model.set(hex(key), entryValue(list, 1));
    }
    stillUsable(map, model, config);
  });

  test('maxBytes stops growth with SIZE_LIMIT; files stay under it and the map stays usable', () => {
    const maxBytes = 200 * 1024;
    const config = persistentConfig(dir, engine, { maxBuckets: 2, maxBytes });
    const map = new BucketMap(config);
    const [err, model] = fillUntilError(map, new Rng(30));
    assert.is(err.code, codes.SIZE_LIMIT);
    assert.match(err.message, /maxBytes/);
    const s = map.stats();
    assert.ok(s.index.bytes + s.data.bytes <= maxBytes, `${s.index.bytes + s.data.bytes} bytes`);
    assert.ok(model.size > 1000);
    stillUsable(map, model, config);
    const bigger = new BucketMap({ ...config, maxBytes: 10 * maxBytes });
    bigger.insert(new Rng(31).key(), [new Uint8Array(16)]);
    bigger.close();
  });

  test('a full disk (injected ENOSPC) fails growth with IO and the map stays usable', () => {
    const config = persistentConfig(dir, engine, { maxBuckets: 2 });
    const map = new BucketMap(config);
    let created = 0;
    faults.beforeCreate = () => {
      if (++created > 6) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    };
    const [err, model] = fillUntilError(map, new Rng(32));
    assert.is(err.code, codes.IO);
    assert.match(err.message, /no space left/);
    faults.beforeCreate = null;
    stillUsable(map, model, config);
  });

  for (const [kind, listLength] of [['index', 1], ['data', 3]] as const) {
    test(`a growth of the ${kind} whose restart-file write fails (injected ENOSPC): IO, no file left behind, and the next growth succeeds`, () => {
      const config = persistentConfig(dir, engine, { maxBuckets: 1 });
      const map = new BucketMap(config);
      const rng = new Rng(34);
      const model = new Map<string, string>();
      const insert = (): void => {
        const key = rng.key();
        const list = Array.from({ length: listLength }, () => rng.bytes(16));
        map.insert(key, list);
        model.set(hex(key), entryValue(list, 1));
      };
      insert();
      const drive = config.drives![0];
      // Spares are emptied files kept for reuse, not data.
      const files = (): string[] => fs.readdirSync(drive).filter((f) => !f.includes('-spare.')).sort();
      const before = files();
      const held = engine === 'wasm' ? registered(map) : 0;
      const resizes = (): number => map.stats()[kind].resizes;
      const restart = fs.statSync(config.restartFile as string).ino;
      const err = withFsFunction('writeSync', (original) => (fd, ...rest) => {
        if (fs.fstatSync(fd as number).ino === restart) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        return original(fd, ...rest);
      }, () => {
        for (let i = 0; i < 200000; i++) {
          const failed = thrownBy(insert);
          if (failed !== null) return failed;
        }
        throw new Error('no growth failed');
      });
      assert.instance(err, BucketMapError);
      assert.is(err.code, codes.IO);
      assert.is(map.size, model.size, 'the failed insert wrote nothing');
      assert.match(err.message, /restart file/);
      assert.equal(files(), before, 'the new file went with the failed growth');
      if (engine === 'wasm') assert.is(registered(map), held, 'the wasm engine let go of it too');
      const resized = resizes();
      while (resizes() === resized) insert();
      assert.ok(map.verify().ok);
      stillUsable(map, model, config);
    });
  }

  test('setAnticipatedCount on a full disk fails with IO, changes nothing and leaves no size behind', () => {
    // One bucket, so the growth checked below is the bucket whose presize failed.
    const config = persistentConfig(dir, engine, { maxBuckets: 1 });
    const map = new BucketMap(config);
    const rng = new Rng(33);
    const model = new Map<string, string>();
    for (let i = 0; i < 200; i++) {
      const key = rng.key();
      const list = [rng.bytes(16)];
      map.insert(key, list);
      model.set(hex(key), entryValue(list, 1));
    }
    const before = map.stats().index;
    faults.beforeCreate = () => {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    };
    const err = thrownBy(() => map.setAnticipatedCount(1000000));
    faults.beforeCreate = null;
    assert.is(err?.code, codes.IO);
    assert.equal(map.stats().index, before);
    // The next growth takes its usual step, not the size the failed call asked for.
    while (map.stats().index.resizes === before.resizes) {
      const key = rng.key();
      map.insert(key, [rng.bytes(16)]);
      model.set(hex(key), entryValue([map.readValue(key)![0][0]], 1));
    }
    assert.ok(map.stats().index.capacity < 100000, `capacity ${map.stats().index.capacity} after one growth`);
    stillUsable(map, model, config);
  });

  test('a filesystem that really fills up: no SIGBUS, an IO error with ENOSPC, and the map stays usable', () => {
    const mount = path.join(dir, 'small');
    const mounted = spawnSync('sh', ['-c', `mkdir -p ${mount} && mount -t tmpfs -o size=1m tmpfs ${mount}`]).status === 0;
    if (!mounted) {
      console.log('    (no permission to mount a small tmpfs here; the injected-ENOSPC test covers this case)');
      return;
    }
    try {
      // Ballast keeps a little room back so the map can be reopened once it is freed.
      const ballast = path.join(mount, 'ballast');
      fs.writeFileSync(ballast, Buffer.alloc(64 * 1024));
      const config: BucketMapConfig = { maxBuckets: 1, engine, restartFile: path.join(mount, 'restart'), drives: [path.join(mount, 'drive')] };
      const map = new BucketMap(config);
      const [err, model] = fillUntilError(map, new Rng(33));
      assert.is(err.code, codes.IO);
      assert.is((err.cause as NodeJS.ErrnoException).code, 'ENOSPC');
      assert.ok(model.size > 1000);
      stillUsable(map, model, config, () => fs.rmSync(ballast));
    } finally {
      // Lazy: the old mappings keep the filesystem busy until they are collected.
      spawnSync('umount', ['-l', mount]);
    }
  });

  test.run();
}
