import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import * as fs from 'node:fs';
import { dropPageCache, RssSampler, settle } from '../bench/measure.js';
import { createBucketMap } from '../bench/stores/bucket-map.js';
import { buildWorkload, KEY_BYTES, VALUE_BYTES } from '../bench/workload.js';
import { tempDir } from './helpers.js';

// The benchmark's memory figures are peaks over a baseline taken after the workload is built: any
// of the workload's garbage still resident then is counted as the harness's, and hides the store's
// own growth.

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

test('bench settle: a dropped buffer of 128 MiB is no longer resident afterwards', async () => {
  const sampler = new RssSampler();
  const size = 128 << 20;
  // V8 frees a large buffer's memory on a background thread after one collection; about half the
  // time it is still resident right after one gc() and a turn, so eight rounds catch that.
  // As buildWorkload drops its keys in index order once the streams are copied from them, each
  // round keeps a small buffer made alongside the garbage (without one, V8 frees it at once here).
  const kept: Buffer[] = [];
  for (let round = 0; round < 8; round++) {
    await settle(gc);
    const before = sampler.sample().anonKiB;
    kept.push((() => {
      const garbage = Buffer.allocUnsafeSlow(size);
      garbage.fill(round + 1);
      return Buffer.from(garbage.subarray(0, 4096));
    })());
    await settle(gc);
    const after = sampler.sample().anonKiB;
    assert.ok(after - before < size / 1024 / 4, `round ${round}: RssAnon ${before} KiB before the buffer, ${after} KiB after it was dropped and settle() ran`);
  }
});

test('bench dropPageCache: a closed bucket-map store no longer maps its files when the cache is dropped', async () => {
  // drop_caches leaves every page a process still maps in the cache, and mmap-io unmaps a closed
  // store's files only once their Buffers are collected and the event loop turns: dropped right
  // after close(), bucket-map's "cold" reopen found all of its files still cached.
  const dir = tempDir('bench-drop-');
  try {
    const w = buildWorkload(2_000, 1);
    const store = createBucketMap('host', dir);
    store.open();
    for (let j = 0; j < w.insert.count; j++) store.put(w.insert.keys, j * KEY_BYTES, w.insert.values, j * VALUE_BYTES);
    store.close();
    const mapped = (): number => fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes(dir)).length;
    let atDrop = -1;
    const result = await dropPageCache(gc, () => { atDrop = mapped(); });
    assert.equal(result, { done: true });
    assert.is(atDrop, 0, `mappings of the store's files when the cache was dropped`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
