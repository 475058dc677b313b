/**
 * The first change to a bucket after a flush marks it dirty again, whichever call makes it: the
 * per-key writes go straight to the engine once their bucket is marked, and a mark that outlived a
 * flush would leave a bucket saying "clean" over counts that no longer hold, so a crash would
 * reopen it without repair.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { BucketMap } from '../host/index.js';
import { ENGINES, persistentConfig, removeDir, snapshot, tempDir } from './helpers.js';

const HOST_INDEX = new URL('../host/index.js', import.meta.url).href;
const HELPERS = new URL('./helpers.js', import.meta.url).href;

/** Each write call, as it runs on bucket `b` (keys of bucket b have b in their top 4 bits). */
const WRITES = [
  'insert', 'insert-existing', 'deleteKey', 'addref', 'unref', 'update', 'packed-insert', 'packed-delete', 'insertMany', 'deleteMany',
  'addrefMany', 'unrefMany',
] as const;

/**
 * The child fills 16 buckets and flushes; runs each write twice in bucket i (the first marks the
 * bucket, the second takes the path that skips the mark) and flushes again; then runs each write
 * twice in the first `lastRound` buckets, prints what the map holds, and is killed.
 */
function childScript(): string {
  return `
import { BucketMap } from ${JSON.stringify(HOST_INDEX)};
import { snapshot } from ${JSON.stringify(HELPERS)};
const [config, writes, lastRound] = JSON.parse(process.argv[1]);
const map = new BucketMap(config);
let serial = 0;
const key = (b) => { const k = new Uint8Array(32); k[0] = b << 4; k[1] = 1; k[2] = serial >> 8; k[3] = serial++ & 255; return k; };
const value = (n) => [new Uint8Array(16).fill(n & 255)];
const present = Array.from({ length: 16 }, () => []);
for (let b = 0; b < 16; b++) for (let i = 0; i < 20; i++) { const k = key(b); map.insert(k, value(i)); present[b].push(k); }
map.flush();
const write = (name, b) => {
  const ks = present[b];
  switch (name) {
    case 'insert': { const k = key(b); map.insert(k, value(7)); ks.push(k); break; }
    case 'insert-existing': map.insert(ks[0], value(serial), 2); break;
    case 'deleteKey': if (!map.deleteKey(ks.pop())) throw new Error('absent'); break;
    case 'addref': if (map.addref(ks[1]) === undefined) throw new Error('absent'); break;
    case 'unref': if (map.unref(ks[2]) === undefined) throw new Error('absent'); map.addref(ks[2]); break;
    case 'update': map.update(ks[4], (cur) => [cur[0], cur[1] + 3]); break;
    case 'packed-insert': { const k = key(b); map.packed(k).insert(0, value(9)); ks.push(k); break; }
    case 'packed-delete': if (!map.packed(ks.pop()).delete(0)) throw new Error('absent'); break;
    case 'insertMany': { const k = key(b); map.insertMany([k], [value(5)]); ks.push(k); break; }
    case 'deleteMany': if (map.deleteMany([ks.pop()]) !== 1) throw new Error('absent'); break;
    case 'addrefMany': if (map.addrefMany([ks[1]]) !== 1) throw new Error('absent'); break;
    case 'unrefMany': map.addref(ks[2]); if (map.unrefMany([ks[2]]) !== 1) throw new Error('absent'); break;
  }
};
for (let b = 0; b < writes.length; b++) { write(writes[b], b); write(writes[b], b); }
map.flush();
for (let b = 0; b < lastRound; b++) { write(writes[b], b); write(writes[b], b); }
process.stdout.write(JSON.stringify([...snapshot(map)]) + '\\n');
process.kill(process.pid, 'SIGKILL');
`;
}

for (const engine of ENGINES) {
  const test = suite(`dirty mark after a flush [${engine}]`);
  let dir = '';
  test.before.each(() => {
    dir = tempDir();
  });
  test.after.each(() => removeDir(dir));

  for (const lastRound of [WRITES.length, 3]) {
    test(`a kill after writes in ${lastRound} buckets since the last flush repairs exactly those buckets, and loses nothing`, () => {
      const config = persistentConfig(dir, engine, { maxBuckets: 16 });
      const child = spawnSync(process.execPath, ['--input-type=module', '-e', childScript(), JSON.stringify([config, WRITES, lastRound])], { encoding: 'utf8' });
      assert.is(child.signal, 'SIGKILL', child.stderr);
      const expected = new Map<string, string>(JSON.parse(child.stdout) as Array<[string, string]>);
      const map = new BucketMap(config);
      try {
        assert.is(map.stats().open.repairedBuckets, lastRound, 'the buckets written since the flush, and only those');
        assert.is(map.size, expected.size);
        assert.equal(snapshot(map), expected);
      } finally {
        map.close();
      }
    });
  }

  test.run();
}
