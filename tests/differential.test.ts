/**
 * Differential test against a plain Map, in the spirit of Agave's hashmap_compare: thousands of
 * seeded random steps (insert, insert via update, update, delete, addref, unref, tryInsert + grow,
 * readValue, has, getMany, insertMany, deleteMany, addrefMany, unrefMany), slot lists of 0–4 elements, refCounts 0, 1, 2
 * and large; every 250 steps, at random, a compact() at a random load, and between them now and
 * then a setAnticipatedCount() for up to twice the keys seen so far; every 1,000 steps the size
 * and the full contents are compared and the event loop turns, and halfway the map is closed, read
 * back by a read-only open and reopened. TEST_SEED=n reproduces a run.
 */
import { setImmediate } from 'node:timers/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, BucketMapError, NoSpace, codes, type EngineKind } from '../host/index.js';
import { ENGINES, entryValue, Rng, hex, persistentConfig, removeDir, snapshot, tempDir, testSeed, withSeed } from './helpers.js';

const STEPS = Number(process.env.DIFF_STEPS ?? 10000);

function refCount(rng: Rng): number {
  const r = rng.below(10);
  if (r < 5) return 1;
  if (r < 6) return 0;
  if (r < 7) return 2;
  return 1 + rng.below(Number.MAX_SAFE_INTEGER - 1);
}

function run(engine: EngineKind, buckets: number, maxSearch: number, seed: number, segmentBytes?: number): Promise<void> {
  return withSeed(async (rng) => {
    const dir = tempDir();
    const config = persistentConfig(dir, engine, { maxBuckets: buckets, maxSearch, ...(segmentBytes === undefined ? {} : { segmentBytes }) });
    let map = new BucketMap(config);
    const model = new Map<string, string>();
    const keys: Uint8Array[] = [];
    const pickKey = (): Uint8Array => {
      if (keys.length === 0 || rng.chance(0.4)) {
        const k = rng.key();
        keys.push(k);
        return k;
      }
      return keys[rng.below(keys.length)];
    };
    const compare = (step: number): void => {
      assert.is(map.size, model.size, `size at step ${step}`);
      let perBucket = 0;
      for (let ix = 0; ix < buckets; ix++) perBucket += map.getBucketFromIndex(ix).bucketLen();
      assert.is(perBucket, model.size, `bucket lengths at step ${step}`);
      assert.equal(snapshot(map), model, `contents at step ${step}`);
    };
    // addrefMany/unrefMany against the model applied key by key: a refCount that would leave its
    // range must throw there, with the keys before it adjusted and none after it.
    const adjustMany = (batch: Uint8Array[], delta: 1 | -1, step: number): void => {
      const expected = new Float64Array(batch.length).fill(-1);
      let present = 0;
      let stop = batch.length;
      const changed = new Map<string, string>();
      for (let i = 0; i < batch.length && stop === batch.length; i++) {
        const h = hex(batch[i]);
        const current = changed.get(h) ?? model.get(h);
        if (current === undefined) continue;
        const [hexList, oldRc] = JSON.parse(current) as [string[], number];
        if ((delta < 0 && oldRc === 0) || (delta > 0 && oldRc === Number.MAX_SAFE_INTEGER)) {
          stop = i;
          break;
        }
        changed.set(h, JSON.stringify([hexList, oldRc + delta]));
        expected[i] = oldRc + delta;
        present++;
      }
      const got = new Float64Array(batch.length).fill(-7);
      const call = (): number => (delta > 0 ? map.addrefMany(batch, got) : map.unrefMany(batch, got));
      if (stop === batch.length) {
        assert.is(call(), present, `adjustMany count at step ${step}`);
        assert.equal([...got], [...expected], `adjustMany refCounts at step ${step}`);
      } else {
        try {
          call();
          assert.unreachable(`adjustMany at step ${step} should stop at key ${stop}`);
        } catch (err) {
          assert.instance(err, BucketMapError);
          assert.is((err as BucketMapError).code, delta > 0 ? codes.REFCOUNT_OVERFLOW : codes.REFCOUNT_UNDERFLOW);
          assert.match((err as Error).message, `keys[${stop}]`);
        }
      }
      for (const [h, v] of changed) model.set(h, v);
    };
    try {
      for (let step = 1; step <= STEPS; step++) {
        const key = pickKey();
        const k = hex(key);
        const list = Array.from({ length: rng.below(5) }, () => rng.bytes(16));
        const rc = refCount(rng);
        const action = rng.below(10);
        if (action <= 1) {
          map.insert(key, list, rc);
          model.set(k, entryValue(list, rc));
        } else if (action === 2) {
          map.update(key, (current) => {
            assert.is(current === undefined ? undefined : entryValue(current[0], current[1]), model.get(k));
            return [list, rc];
          });
          model.set(k, entryValue(list, rc));
        } else if (action === 3) {
          assert.is(map.deleteKey(key), model.delete(k));
        } else if (action === 4 || action === 5) {
          const current = model.get(k);
          const delta = action === 4 ? 1 : -1;
          if (current === undefined) {
            assert.is(delta > 0 ? map.addref(key) : map.unref(key), undefined);
          } else {
            const [hexList, oldRc] = JSON.parse(current) as [string[], number];
            if ((delta < 0 && oldRc === 0) || (delta > 0 && oldRc === Number.MAX_SAFE_INTEGER)) continue;
            assert.is(delta > 0 ? map.addref(key) : map.unref(key), oldRc + delta);
            model.set(k, JSON.stringify([hexList, oldRc + delta]));
          }
        } else if (action === 6) {
          let noSpace: NoSpace | undefined;
          for (let attempt = 0; attempt < 100 && (noSpace = map.tryInsert(key, list, rc)) !== undefined; attempt++) {
            assert.is(map.readValue(key) === undefined ? undefined : entryValue(...map.readValue(key)!), model.get(k) ?? undefined, 'a failed tryInsert wrote nothing');
            map.grow(noSpace);
          }
          assert.is(noSpace, undefined);
          model.set(k, entryValue(list, rc));
        } else if (action === 7) {
          const got = map.readValue(key);
          assert.is(got === undefined ? undefined : entryValue(got[0], got[1]), model.get(k));
        } else if (action === 8) {
          // A batch: getMany, or insertMany (duplicates in a batch keep the last), or deleteMany,
          // or addrefMany/unrefMany (duplicates adjusted once per listing).
          const batch = Array.from({ length: 1 + rng.below(40) }, () => pickKey());
          const kind = rng.below(5);
          if (kind === 0) {
            const got = map.getMany(batch).map((e) => (e === undefined ? undefined : entryValue(e[0], e[1])));
            assert.equal(got, batch.map((b) => model.get(hex(b))), `getMany at step ${step}`);
          } else if (kind === 1) {
            const lists = batch.map(() => Array.from({ length: rng.below(5) }, () => rng.bytes(16)));
            const rcs = batch.map(() => refCount(rng));
            map.insertMany(batch, lists, rcs);
            batch.forEach((b, i) => model.set(hex(b), entryValue(lists[i], rcs[i])));
          } else if (kind >= 3) {
            adjustMany(batch, kind === 3 ? 1 : -1, step);
          } else {
            const distinct = new Set(batch.map(hex));
            const present = [...distinct].filter((h) => model.has(h)).length;
            assert.is(map.deleteMany(batch), present, `deleteMany at step ${step}`);
            for (const h of distinct) model.delete(h);
          }
        } else {
          assert.is(map.has(key), model.has(k), `has at step ${step}`);
        }
        if (step % 250 === 0 && rng.chance(0.5)) map.compact({ load: 0.5 + rng.below(41) / 100 });
        // A presize for up to twice the keys seen so far: grows files now, changes no entry.
        if (step % 250 === 125 && rng.chance(0.3)) map.setAnticipatedCount(rng.below(2 * keys.length + 1));
        if (step % 1000 === 0) {
          compare(step);
          // As a long-running application must: files replaced by growth and compaction are
          // unmapped only when the event loop turns (a 100,000-step run that never let it turn kept
          // them all mapped until V8 could not map its own heap and aborted).
          await setImmediate();
        }
        if (step === Math.floor(STEPS / 2)) {
          map.close();
          // Read back first by a read-only open, with either engine (the files are the same).
          map = new BucketMap({ ...config, readOnly: true, engine: rng.chance(0.5) ? 'host' : 'wasm' });
          compare(step);
          map.close();
          map = new BucketMap(config);
          compare(step);
        }
      }
      map.close();
    } finally {
      removeDir(dir);
    }
  }, seed);
}

const test = suite('differential against a Map model');
const seed = testSeed();
for (const engine of ENGINES) {
  for (const buckets of [1, 2, 16]) {
    for (const maxSearch of [2, 32]) {
      test(`${engine}, ${buckets} bucket(s), maxSearch ${maxSearch}`, () => run(engine, buckets, maxSearch, seed + buckets * 100 + maxSearch));
    }
  }
  // Index and data files split into 64 KiB segments (the smallest allowed): probes, shifts and moves cross segment files,
  // which the engines address apart from the first segment.
  test(`${engine}, 1 bucket, 64 KiB segments`, () => run(engine, 1, 32, seed + 7, 64 * 1024));
}
test.run();
