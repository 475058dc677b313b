import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { RssSampler, settle } from '../bench/measure.js';

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

test.run();
