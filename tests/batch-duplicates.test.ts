/**
 * Batched calls whose keys repeat, many times and across 1,024-key chunks, mixed with per-key calls
 * and packed views, against a Map model on both engines. The map starts empty with a short probe
 * window, so index and data files grow (and buckets reseed) in the middle of batches, between a
 * key's first listing and its next. The model: insertMany keeps a key's last listing,
 * deleteMany counts a key once, addrefMany/unrefMany change a key once per listing, in order.
 * Seeded (TEST_SEED=n reproduces a run; DUP_STEPS=n makes it longer).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, BucketMapError, codes, type KeyBatch } from '../host/index.js';
import { ENGINES, Rng, entryValue, hex, packKeys, snapshot, withSeed } from './helpers.js';

const STEPS = Number(process.env.DUP_STEPS ?? 120);

const valueOf = (e: [Uint8Array[], number] | undefined): string | undefined => (e === undefined ? undefined : entryValue(e[0], e[1]));

for (const engine of ENGINES) {
  const test = suite(`batches with repeated keys against a model [${engine}]`);

  test('every batched call, array and packed, with keys listed many times, agrees with the model', () => {
    withSeed((rng: Rng) => {
      const map = new BucketMap({ maxBuckets: 4, engine, maxSearch: 6 });
      const model = new Map<string, string>();
      const pool: Uint8Array[] = [];
      // Keys of one batch: a quarter repeat a key listed earlier in it, a third are known keys,
      // the rest new. Now and then more than two chunks' worth.
      const drawBatch = (): Uint8Array[] => {
        const n = rng.chance(0.15) ? 1024 + rng.below(1800) : rng.below(60);
        const batch: Uint8Array[] = [];
        for (let i = 0; i < n; i++) {
          if (batch.length > 0 && rng.chance(0.25)) batch.push(batch[rng.below(batch.length)]);
          else if (pool.length > 0 && rng.chance(0.45)) batch.push(pool[rng.below(pool.length)]);
          else {
            const k = rng.key();
            pool.push(k);
            batch.push(k);
          }
        }
        return batch;
      };
      // 0–3 elements (an empty list, inline, data cells), refCounts at and around the in-place range's ends.
      const pickList = (): Uint8Array[] => Array.from({ length: rng.below(4) }, () => rng.bytes(16));
      const pickRc = (): number => [0, 1, 2, 255, 256, 257, 1000][rng.below(7)];
      const asKeys = (batch: Uint8Array[]): KeyBatch => (rng.chance(0.5) ? packKeys(batch) : batch);

      const adjust = (batch: Uint8Array[], delta: 1 | -1, step: number): void => {
        const expected = new Float64Array(batch.length).fill(-1);
        let present = 0;
        let stop = batch.length;
        const changed = new Map<string, string>();
        for (let i = 0; i < batch.length; i++) {
          const h = hex(batch[i]);
          const current = changed.get(h) ?? model.get(h);
          if (current === undefined) continue;
          const [list, rc] = JSON.parse(current) as [string[], number];
          if (delta < 0 && rc === 0) {
            stop = i;
            break;
          }
          changed.set(h, JSON.stringify([list, rc + delta]));
          expected[i] = rc + delta;
          present++;
        }
        const got = new Float64Array(batch.length).fill(-7);
        const keys = asKeys(batch);
        const call = (): number => (delta > 0 ? map.addrefMany(keys, got) : map.unrefMany(keys, got));
        if (stop === batch.length) {
          assert.is(call(), present, `adjust count at step ${step}`);
          assert.equal([...got], [...expected], `adjust refCounts at step ${step}`);
        } else {
          let err: unknown;
          try {
            call();
          } catch (e) {
            err = e;
          }
          assert.instance(err, BucketMapError, `unrefMany at step ${step} should stop at key ${stop}`);
          assert.is((err as BucketMapError).code, codes.REFCOUNT_UNDERFLOW);
          assert.match((err as Error).message, `keys[${stop}]`);
          assert.equal([...got.subarray(0, stop)], [...expected.subarray(0, stop)], `refCounts before the stop at step ${step}`);
        }
        for (const [h, v] of changed) model.set(h, v);
      };

      for (let step = 0; step < STEPS; step++) {
        const kind = rng.below(8);
        const batch = drawBatch();
        if (kind <= 1) {
          const lists = batch.map(pickList);
          const rcs = batch.map(pickRc);
          map.insertMany(asKeys(batch), lists, rcs);
          batch.forEach((k, i) => model.set(hex(k), entryValue(lists[i], rcs[i])));
        } else if (kind === 2) {
          const distinct = new Set(batch.map(hex));
          const present = [...distinct].filter((h) => model.has(h)).length;
          assert.is(map.deleteMany(asKeys(batch)), present, `deleteMany at step ${step}`);
          for (const h of distinct) model.delete(h);
        } else if (kind === 3 || kind === 4) {
          adjust(batch, kind === 3 ? 1 : -1, step);
        } else if (kind === 5) {
          assert.equal(map.getMany(asKeys(batch)).map(valueOf), batch.map((k) => model.get(hex(k))), `getMany at step ${step}`);
          assert.equal(map.hasMany(asKeys(batch)), batch.map((k) => model.has(hex(k))), `hasMany at step ${step}`);
        } else if (kind === 6) {
          // readManyInto into a target with room for all.
          const target = new Uint8Array(batch.length * 3 * 16);
          const slots = new Int32Array(batch.length);
          const refCounts = new Float64Array(batch.length);
          assert.is(map.readManyInto(asKeys(batch), target, slots, refCounts), batch.length);
          let at = 0;
          batch.forEach((k, i) => {
            const want = model.get(hex(k));
            if (want === undefined) return assert.is(slots[i], -1, `readManyInto slots[${i}] at step ${step}`);
            const list = Array.from({ length: slots[i] }, (_, j) => target.slice(at + j * 16, at + j * 16 + 16));
            at += slots[i] * 16;
            assert.is(entryValue(list, refCounts[i]), want, `readManyInto key ${i} at step ${step}`);
          });
        } else {
          // The same keys per key, through a packed view, in order.
          const view = map.packed(packKeys(batch));
          for (let i = 0; i < batch.length; i++) {
            const h = hex(batch[i]);
            const op = rng.below(4);
            if (op === 0) {
              const list = pickList();
              const rc = pickRc();
              view.insert(i, list, rc);
              model.set(h, entryValue(list, rc));
            } else if (op === 1) {
              assert.is(view.delete(i), model.delete(h), `packed delete at step ${step}`);
            } else if (op === 2) {
              const current = model.get(h);
              const got = view.addref(i);
              if (current === undefined) assert.is(got, undefined);
              else {
                const [list, rc] = JSON.parse(current) as [string[], number];
                assert.is(got, rc + 1, `packed addref at step ${step}`);
                model.set(h, JSON.stringify([list, rc + 1]));
              }
            } else {
              assert.is(valueOf(view.get(i)), model.get(h), `packed get at step ${step}`);
            }
          }
        }
        assert.is(map.size, model.size, `size at step ${step}`);
        if (step % 20 === 19) assert.equal(snapshot(map), model, `contents at step ${step}`);
      }
      assert.equal(snapshot(map), model, 'contents at the end');
      assert.ok(map.stats().index.resizes > 0, 'the index grew during the run');
      assert.ok(map.verify().ok);
      map.close();
    });
  });

  test.run();
}
