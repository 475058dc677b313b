/**
 * Iterators against a Map model, seeded: up to four iterators (entries(), keys(), values(), the map
 * itself) stay open at once while the map takes random writes (per key, batched, tryInsert + grow),
 * compact() at random loads up to 0.9, presizes of the map and of one bucket, flushes and, now and
 * then, a close and reopen of the same files, which every open iterator must meet with CLOSED.
 * Each step an iterator takes checks what README promises: a key is yielded at most once, only
 * while it is in the map, with its value as of that step; and one that finishes has yielded every
 * key present (never deleted nor inserted anew) from its start to its end. Slot lists of 0–4
 * elements put values in data cells, so compaction and growth move data files under the
 * iterators. TEST_SEED=n reproduces a run; ITER_DIFF_STEPS=n makes it longer.
 */
import { setImmediate } from 'node:timers/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, NoSpace, codes, type BucketMapConfig, type EngineKind, type Entry } from '../host/index.js';
import { testHooks } from '../host/bucket-storage.js';
import { ENGINES, Rng, entryValue, hex, persistentConfig, removeDir, snapshot, tempDir, testSeed, thrownBy, withSeed } from './helpers.js';

const STEPS = Number(process.env.ITER_DIFF_STEPS ?? 3000);

type Kind = 'entries' | 'keys' | 'values' | 'iterator';

interface Walker {
  kind: Kind;
  it: Iterator<unknown>;
  /** Keys in the map when the iterator was made. */
  start: Set<string>;
  /** Keys deleted or inserted anew since then: the promise says nothing of them. */
  disturbed: Set<string>;
  seen: Set<string>;
  /** values(): how many it yielded (its values carry no key). */
  yielded: number;
}

function run(engine: EngineKind, seed: number): Promise<void> {
  return withSeed(async (rng: Rng) => {
    // Hash seeds from the test's seed too, so that a run repeats step for step.
    const seeds = new Rng(rng.u32());
    testHooks.seedSource = () => [seeds.u32() | 0, seeds.u32() | 0];
    const dir = tempDir();
    const extra: Partial<BucketMapConfig> = {
      maxBuckets: [1, 2, 4, 16][rng.below(4)],
      maxSearch: [2, 8, 32][rng.below(3)],
      ...(rng.chance(0.3) ? { segmentBytes: 64 * 1024 } : {}),
    };
    const config = persistentConfig(dir, engine, extra);
    let map = new BucketMap(config);
    const model = new Map<string, string>();
    const keys: Uint8Array[] = [];
    let walkers: Walker[] = [];
    let finished = 0;
    let reopens = 0;
    let compactions = 0;
    const pickKey = (): Uint8Array => {
      if (keys.length === 0 || (keys.length < 1200 && rng.chance(0.35))) {
        const k = rng.key();
        keys.push(k);
        return k;
      }
      return keys[rng.below(keys.length)];
    };
    const list = (): Uint8Array[] => Array.from({ length: rng.below(5) }, () => rng.bytes(16));
    // Every change of the model goes through these, so that open iterators learn which keys
    // stopped being present throughout.
    const disturb = (k: string): void => {
      for (const w of walkers) w.disturbed.add(k);
    };
    // How many entries hold each value, for checking what values() yields.
    const valueCounts = new Map<string, number>();
    const count = (value: string | undefined, by: number): void => {
      if (value !== undefined) valueCounts.set(value, (valueCounts.get(value) ?? 0) + by);
    };
    const set = (k: string, value: string): void => {
      const old = model.get(k);
      if (old === undefined) disturb(k);
      count(old, -1);
      count(value, 1);
      model.set(k, value);
    };
    const remove = (k: string): boolean => {
      const old = model.get(k);
      if (old === undefined) return false;
      disturb(k);
      count(old, -1);
      model.delete(k);
      return true;
    };
    const open = (): void => {
      const kind = (['entries', 'keys', 'values', 'iterator'] as const)[rng.below(4)];
      const it = kind === 'entries' ? map.entries() : kind === 'keys' ? map.keys() : kind === 'values' ? map.values() : map[Symbol.iterator]();
      walkers.push({ kind, it, start: new Set(model.keys()), disturbed: new Set(), seen: new Set(), yielded: 0 });
    };
    const stepWalker = (w: Walker, step: number): boolean => {
      const r = w.it.next();
      if (r.done === true) {
        for (const k of w.kind === 'values' ? [] : w.start) {
          if (!w.disturbed.has(k) && !w.seen.has(k)) assert.unreachable(`${w.kind}() ended without ${k.slice(0, 8)}, present throughout (step ${step})`);
        }
        if (w.kind === 'values') {
          const throughout = [...w.start].filter((k) => !w.disturbed.has(k)).length;
          assert.ok(w.yielded >= throughout, `values() yielded ${w.yielded}, fewer than the ${throughout} entries present throughout (step ${step})`);
        }
        finished++;
        return false;
      }
      w.yielded++;
      if (w.kind === 'values') {
        const [lst, rc] = r.value as Entry<Uint8Array>;
        assert.ok((valueCounts.get(entryValue(lst, rc)) ?? 0) > 0, `values() yielded a value no entry has (step ${step})`);
        return true;
      }
      const key = (w.kind === 'keys' ? r.value : (r.value as [Uint8Array, Entry<Uint8Array>])[0]) as Uint8Array;
      assert.is(key.length, 32);
      const k = hex(key);
      assert.not.ok(w.seen.has(k), `${w.kind}() yielded ${k.slice(0, 8)} twice (step ${step})`);
      w.seen.add(k);
      assert.ok(model.has(k), `${w.kind}() yielded ${k.slice(0, 8)}, which is not in the map (step ${step})`);
      if (w.kind !== 'keys') {
        const [lst, rc] = (r.value as [Uint8Array, Entry<Uint8Array>])[1];
        assert.is(entryValue(lst, rc), model.get(k), `${w.kind}() value of ${k.slice(0, 8)} (step ${step})`);
      }
      return true;
    };
    const compare = (step: number): void => {
      assert.is(map.size, model.size, `size at step ${step}`);
      assert.equal(snapshot(map), model, `contents at step ${step}`);
      let total = 0;
      for (let ix = 0; ix < map.numBuckets; ix++) {
        const bucket = map.getBucketFromIndex(ix);
        const items = bucket.items();
        assert.is(items.length, bucket.bucketLen(), `bucket ${ix} items() against bucketLen() at step ${step}`);
        assert.is(bucket.keys().length, items.length, `bucket ${ix} keys() at step ${step}`);
        for (const item of items) {
          assert.is(map.bucketIx(item.key), ix);
          assert.is(entryValue(item.slotList, item.refCount), model.get(hex(item.key)), `bucket ${ix} items() at step ${step}`);
        }
        total += items.length;
      }
      assert.is(total, model.size, `per-bucket items() at step ${step}`);
    };
    try {
      for (let step = 1; step <= STEPS; step++) {
        const action = rng.below(100);
        if (action < 22) {
          const key = pickKey();
          const l = list();
          const rc = rng.below(4);
          map.insert(key, l, rc);
          set(hex(key), entryValue(l, rc));
        } else if (action < 32) {
          const key = pickKey();
          assert.is(map.deleteKey(key), remove(hex(key)), `deleteKey at step ${step}`);
        } else if (action < 36) {
          const key = pickKey();
          const k = hex(key);
          const l = list();
          const drop = rng.chance(0.3);
          map.update(key, (current) => {
            assert.is(current === undefined ? undefined : entryValue(current[0], current[1]), model.get(k));
            return drop ? undefined : [l, 7];
          });
          if (drop) remove(k);
          else set(k, entryValue(l, 7));
        } else if (action < 42) {
          const key = pickKey();
          const k = hex(key);
          const current = model.get(k);
          const up = rng.chance(0.5);
          if (current === undefined) {
            assert.is(up ? map.addref(key) : map.unref(key), undefined);
          } else {
            const [hexList, rc] = JSON.parse(current) as [string[], number];
            if (!up && rc === 0) continue;
            assert.is(up ? map.addref(key) : map.unref(key), rc + (up ? 1 : -1));
            set(k, JSON.stringify([hexList, rc + (up ? 1 : -1)]));
          }
        } else if (action < 48) {
          const batch = Array.from({ length: 1 + rng.below(60) }, () => pickKey());
          const lists = batch.map(() => list());
          map.insertMany(batch, lists, 1);
          batch.forEach((b, i) => set(hex(b), entryValue(lists[i], 1)));
        } else if (action < 52) {
          const batch = Array.from({ length: 1 + rng.below(60) }, () => pickKey());
          let present = 0;
          for (const h of new Set(batch.map(hex))) if (remove(h)) present++;
          assert.is(map.deleteMany(batch), present, `deleteMany at step ${step}`);
        } else if (action < 56) {
          const key = pickKey();
          const l = list();
          let noSpace: NoSpace | undefined;
          for (let attempt = 0; attempt < 100 && (noSpace = map.tryInsert(key, l, 2)) !== undefined; attempt++) {
            const got = map.readValue(key);
            assert.is(got === undefined ? undefined : entryValue(got[0], got[1]), model.get(hex(key)), 'a failed tryInsert wrote nothing');
            map.grow(noSpace);
            map.grow(noSpace); // served already: does nothing
          }
          assert.is(noSpace, undefined);
          set(hex(key), entryValue(l, 2));
        } else if (action < 58) {
          const load = [0.9, 0.5, 0.85, 0.3 + rng.below(61) / 100][rng.below(4)];
          const before = map.stats();
          const report = map.compact({ load });
          const after = map.stats();
          compactions++;
          assert.is(after.compactions.buckets - before.compactions.buckets, report.buckets, `compactions counted at step ${step}`);
          assert.is(before.index.bytes + before.data.bytes - after.index.bytes - after.data.bytes, report.bytesFreed, `bytes freed at step ${step}`);
          assert.ok(report.bytesFreed >= 0);
          assert.is(after.entries, model.size);
        } else if (action < 59) {
          const n = rng.below(2 * keys.length + 10);
          if (rng.chance(0.5)) map.setAnticipatedCount(n);
          else map.getBucketFromIndex(rng.below(map.numBuckets)).setAnticipatedCount(n);
        } else if (action < 61) {
          if (walkers.length < 4) open();
        } else if (action < 62) {
          if (walkers.length > 0) {
            const w = walkers.splice(rng.below(walkers.length), 1)[0];
            assert.equal(w.it.return?.(undefined), { value: undefined, done: true });
            assert.is(w.it.next().done, true, 'a returned iterator stays done');
          }
        } else if (action < 63 && step % 7 === 0) {
          map.flush();
        } else if (action < 64 && step % 5 === 0) {
          // A reopen of the same files: every iterator left half-way meets CLOSED, then stays done.
          map.close();
          for (const w of walkers) {
            assert.is(thrownBy(() => w.it.next())?.code, codes.CLOSED, `${w.kind}() stepped after close()`);
            assert.is(w.it.next().done, true);
          }
          walkers = [];
          map = new BucketMap(config);
          reopens++;
          compare(step);
          await setImmediate(); // unmaps the retired files
        } else {
          // Iterators step now and then, a few at a time.
          for (const w of [...walkers]) {
            for (let i = rng.chance(0.5) ? 1 : rng.below(40); i > 0; i--) {
              if (!stepWalker(w, step)) {
                walkers.splice(walkers.indexOf(w), 1);
                break;
              }
            }
          }
        }
        if (step % 1000 === 0) {
          compare(step);
          await setImmediate();
        }
      }
      // Each open iterator runs to its end, the map unchanged meanwhile.
      for (const w of walkers) while (stepWalker(w, STEPS));
      compare(STEPS);
      assert.ok(map.verify().ok);
      map.close();
      map = new BucketMap(config);
      compare(STEPS);
      map.close();
      if (process.env.ITER_DIFF_REPORT) console.log({ engine, seed, ...extra, finished, compactions, reopens, size: model.size });
      assert.ok(finished > 0 && compactions > 0, `iterators finished: ${finished}, compactions: ${compactions}, reopens: ${reopens}`);
    } finally {
      testHooks.seedSource = null;
      try {
        map.close();
      } finally {
        removeDir(dir);
      }
    }
  }, seed);
}

const test = suite('iteration differential');
const seed = testSeed();
for (const engine of ENGINES) {
  for (let i = 0; i < 2; i++) test(`${engine}, run ${i}`, () => run(engine, seed + i * 7919));
}
test.run();
