import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, codecs, codes, type ElementCodec } from '../host/index.js';
import { ENGINES, Rng, hex, persistentConfig, removeDir, tempDir, thrownBy } from './helpers.js';

for (const engine of ENGINES) {
  const test = suite(`iteration [${engine}]`);
  const rng = new Rng(8);

  function filled(n: number, buckets = 8): [BucketMap, Map<string, string>] {
    const map = new BucketMap({ maxBuckets: buckets, engine });
    const model = new Map<string, string>();
    for (let i = 0; i < n; i++) {
      const key = rng.key();
      const list = Array.from({ length: i % 4 }, () => rng.bytes(16));
      map.insert(key, list, i % 3);
      model.set(hex(key), JSON.stringify([list.map(hex), i % 3]));
    }
    return [map, model];
  }

  test('keys, entries, values and the iterator visit every entry once, keys as 32-byte copies', () => {
    const [map, model] = filled(2000);
    const keys = [...map.keys()];
    assert.is(keys.length, 2000);
    assert.is(new Set(keys.map(hex)).size, 2000);
    for (const k of keys) assert.ok(model.has(hex(k)));
    const seen = new Map<string, string>();
    for (const [key, [list, rc]] of map) seen.set(hex(key), JSON.stringify([list.map(hex), rc]));
    assert.equal(seen, model);
    assert.is([...map.values()].length, 2000);
    keys[0].fill(0);
    assert.ok(map.has([...map.keys()][0]), 'mutating a yielded key does not touch the map');
    map.close();
  });

  test('per-bucket keys() and items() hold exactly that bucket, and routing uses the top bits', () => {
    const [map, model] = filled(1000, 4);
    let total = 0;
    for (let ix = 0; ix < 4; ix++) {
      const bucket = map.getBucketFromIndex(ix);
      const items = bucket.items();
      assert.is(items.length, bucket.bucketLen());
      assert.is(bucket.keys().length, items.length);
      for (const item of items) {
        assert.is(item.key[0] >> 6, ix);
        assert.is(JSON.stringify([item.slotList.map(hex), item.refCount]), model.get(hex(item.key)));
      }
      total += items.length;
    }
    assert.is(total, 1000);
    map.close();
  });

  test('changing the map while iterating: entries present throughout are visited exactly once', () => {
    const [map, model] = filled(3000, 2);
    const untouched = new Set(model.keys());
    const seen = new Map<string, number>();
    let step = 0;
    for (const [key] of map.entries()) {
      seen.set(hex(key), (seen.get(hex(key)) ?? 0) + 1);
      if (step++ % 3 === 0) {
        // Inserts shift runs right and can grow the index; deletes shift runs left.
        for (let i = 0; i < 5; i++) map.insert(rng.key(), [rng.bytes(16)]);
        const victim = [...untouched][rng.below(untouched.size)];
        untouched.delete(victim);
        map.deleteKey(Buffer.from(victim, 'hex'));
      }
    }
    for (const k of untouched) assert.is(seen.get(k), 1, `entry ${k.slice(0, 8)} seen ${seen.get(k) ?? 0} times`);
    for (const [k, n] of seen) assert.is(n, 1, `no entry is visited twice (${k.slice(0, 8)})`);
    map.close();
  });

  // Each write call on its own, so that one that forgot to tell iterators the bucket changed is
  // caught: an iterator that trusts a stale snapshot reads a cell a shift has since refilled.
  // Deleting writers take an untouched entry each step; inserting ones leave every entry in place.
  const writers: Record<string, [deletes: boolean, write: (map: BucketMap, victim: Uint8Array) => void]> = {
    deleteKey: [true, (map, victim) => assert.ok(map.deleteKey(victim))],
    deleteMany: [true, (map, victim) => assert.is(map.deleteMany([victim]), 1)],
    'packed delete': [true, (map, victim) => assert.ok(map.packed(victim).delete(0))],
    insert: [false, (map) => map.insert(rng.key(), [rng.bytes(16)])],
    insertMany: [false, (map) => map.insertMany([rng.key(), rng.key()], [[rng.bytes(16)], []])],
  };
  for (const [name, [deletes, write]] of Object.entries(writers)) {
    test(`${name} while iterating: every entry yielded carries its own value`, () => {
      const [map, model] = filled(1500, 2);
      const untouched = new Set(model.keys());
      const seen = new Set<string>();
      for (const [key, [list, rc]] of map.entries()) {
        const k = hex(key);
        assert.not.ok(seen.has(k), `entry ${k.slice(0, 8)} visited twice`);
        seen.add(k);
        if (untouched.has(k)) assert.is(JSON.stringify([list.map(hex), rc]), model.get(k), `value of ${k.slice(0, 8)}`);
        if (!deletes) {
          write(map, key);
        } else if (untouched.size > 0) {
          const victim = [...untouched][rng.below(untouched.size)];
          untouched.delete(victim);
          write(map, Buffer.from(victim, 'hex'));
        }
      }
      for (const k of untouched) assert.ok(seen.has(k), `entry ${k.slice(0, 8)} present throughout was visited`);
      map.close();
    });
  }

  test('an empty map and unallocated buckets yield nothing', () => {
    const map = new BucketMap({ maxBuckets: 16, engine });
    assert.equal([...map.keys()], []);
    assert.equal(map.getBucketFromIndex(3).items(), []);
    map.close();
  });

  test('an iterator stepped after close() throws CLOSED, also once a later open has grown the files it read', () => {
    const dir = tempDir();
    const config = persistentConfig(dir, engine, { maxBuckets: 2 });
    const map = new BucketMap(config);
    for (let i = 0; i < 200; i++) map.insert(rng.key(), [rng.bytes(16)]);
    const inBucket = map.getBucketFromIndex(0).bucketLen();
    const entries = map.entries();
    const keys = map.keys();
    const atBucketEnd = map.entries(); // its next step takes a new bucket's snapshot
    entries.next();
    keys.next();
    for (let i = 0; i < inBucket; i++) atBucketEnd.next();
    map.close();
    // Growth retires the files the old iterators read, truncated to nothing: reading their
    // mappings would be a SIGBUS, which kills this test.
    const again = new BucketMap(config);
    for (let i = 0; i < 20_000; i++) again.insert(rng.key(), [rng.bytes(16)]);
    assert.ok(again.stats().index.resizes > 0, 'the index grew');
    for (const it of [entries, keys, atBucketEnd]) assert.is(thrownBy(() => it.next())?.code, codes.CLOSED);
    again.close();
    removeDir(dir);
  });

  test('an iterator that has yielded the last entry, stepped after close() or inside a callback, throws as one half-way does', () => {
    // The last bucket holds entries, so the last entry comes from the last bucket's snapshot: its
    // next step found no bucket left to enter and answered done, on a closed map.
    for (const buckets of [1, 2]) {
      const make: Array<(map: BucketMap) => Iterator<unknown>> = [(m) => m.keys(), (m) => m.entries(), (m) => m.values(), (m) => m[Symbol.iterator]()];
      for (const iterate of make) {
        const map = new BucketMap({ maxBuckets: buckets, engine });
        const key = new Uint8Array(32).fill(0xff); // the last bucket
        map.insert(key, [key.subarray(0, 16)]);
        const outer = iterate(map);
        assert.is(outer.next().done, false);
        map.update(key, (current) => {
          assert.is(thrownBy(() => outer.next())?.code, codes.REENTRANT, 'stepped inside an update() callback');
          return current;
        });
        const it = iterate(map);
        assert.is(it.next().done, false);
        map.close();
        assert.is(thrownBy(() => it.next())?.code, codes.CLOSED, `${buckets} bucket(s)`);
        assert.is(it.next().done, true, 'and stays done');
      }
    }
  });

  // Two iterators stepped in turn while the caller makes changes that keep cells where they are
  // (addref, unref, update in place) and changes that move them or replace the files under the
  // bucket being iterated (setAnticipatedCount, a data file doubling, compact), with codecs whose
  // lists live in data cells: every entry yielded carries its value as of that step, and slot
  // lists and keys are the caller's own.
  const codecCases: Array<[string, ElementCodec<unknown>, (rng: Rng) => unknown, (v: unknown) => string]> = [
    ['u64', codecs.u64 as ElementCodec<unknown>, (r) => BigInt(r.u32()) * 4097n, (v) => String(v)],
    ['bytes(24)', codecs.bytes(24) as ElementCodec<unknown>, (r) => r.bytes(24), (v) => hex(v as Uint8Array)],
  ];
  for (const [codecName, codec, element, show] of codecCases) {
    test(`two iterators at once across in-place updates, index and data growth and compact (${codecName})`, () => {
      const map = new BucketMap<unknown>({ maxBuckets: 2, engine, codec });
      const model = new Map<string, string>();
      const value = (list: readonly unknown[], rc: number): string => JSON.stringify([list.map(show), rc]);
      const put = (key: Uint8Array, list: unknown[], rc: number): void => {
        map.insert(key, list, rc);
        model.set(hex(key), value(list, rc));
      };
      for (let i = 0; i < 600; i++) put(rng.key(), Array.from({ length: 1 + (i % 3) }, () => element(rng)), 1 + (i % 300));
      const present = new Set(model.keys()); // never deleted nor re-inserted during the iteration
      const entries = map.entries();
      const keys = map.keys();
      const seenEntries = new Set<string>();
      const seenKeys = new Set<string>();
      let entriesDone = false;
      let keysDone = false;
      for (let step = 0; !entriesDone || !keysDone; step++) {
        if (!entriesDone) {
          const r = entries.next();
          if (r.done === true) {
            entriesDone = true;
          } else {
            const [key, [list, rc]] = r.value;
            const k = hex(key);
            assert.not.ok(seenEntries.has(k), `entries() visited ${k.slice(0, 8)} twice`);
            seenEntries.add(k);
            assert.is(value(list, rc), model.get(k), `value of ${k.slice(0, 8)} at step ${step}`);
            key.fill(0xff); // the caller's copies: the map must not see these changes
            if (list[0] instanceof Uint8Array) list[0].fill(0xee);
          }
        }
        if (!keysDone && step % 2 === 0) {
          const r = keys.next();
          if (r.done === true) {
            keysDone = true;
          } else {
            const k = hex(r.value);
            assert.not.ok(seenKeys.has(k), `keys() visited ${k.slice(0, 8)} twice`);
            assert.ok(model.has(k), 'keys() yields only keys that are there');
            seenKeys.add(k);
          }
        }
        const target = [...present][rng.below(present.size)];
        const targetKey = Uint8Array.from(Buffer.from(target, 'hex'));
        const [list, rc] = JSON.parse(model.get(target)!) as [string[], number];
        switch (step % 7) {
          case 0: // in place: an inline-sized refCount change
            model.set(target, JSON.stringify([list, map.addref(targetKey)]));
            break;
          case 1:
            if (rc > 0) model.set(target, JSON.stringify([list, map.unref(targetKey)]));
            break;
          case 2: // a longer list: its data class fills and doubles
            put(targetKey, Array.from({ length: 5 + rng.below(3) }, () => element(rng)), rc);
            break;
          case 3:
            map.update(targetKey, (current) => current && [current[0], current[1] + 2]);
            model.set(target, JSON.stringify([list, rc + 2]));
            break;
          case 4: // new keys in both buckets: inserts shift runs, and sometimes grow the index
            for (let i = 0; i < 3; i++) put(rng.key(), [element(rng)], 1);
            break;
          case 5:
            if (step % 70 === 5) map.setAnticipatedCount(model.size * 4);
            break;
          default:
            if (step % 140 === 6) map.compact({ load: 0.9 });
        }
      }
      for (const k of present) {
        assert.ok(seenEntries.has(k), `entries() missed ${k.slice(0, 8)}, present throughout`);
        assert.ok(seenKeys.has(k), `keys() missed ${k.slice(0, 8)}, present throughout`);
      }
      const after = new Map<string, string>();
      for (const [key, [list, rc]] of map) after.set(hex(key), value(list, rc));
      assert.equal(after, model, 'the yielded copies were changed, the map was not');
      const s = map.stats();
      assert.ok(s.index.resizes > 0 && s.data.resizes > 0, 'the files grew under the iterators');
      map.close();
    });
  }

  test('an iterator abandoned mid-way (break, return()) leaves the map and later iterations whole', () => {
    const [map, model] = filled(800, 4);
    let n = 0;
    for (const _ of map.keys()) if (++n === 100) break;
    const it = map.entries();
    for (let i = 0; i < 250; i++) it.next();
    assert.equal(it.return!(undefined as never), { value: undefined, done: true });
    assert.is(it.next().done, true, 'a returned iterator stays done');
    for (let i = 0; i < 300; i++) map.insert(rng.key(), [rng.bytes(16)]);
    assert.is([...map.keys()].length, 1100);
    for (const [key, [list, rc]] of map) if (model.has(hex(key))) assert.is(JSON.stringify([list.map(hex), rc]), model.get(hex(key)));
    map.close();
  });

  // Calls that change no entry but replace the files of the bucket being iterated, each as the
  // first change since the iterator took its bucket's snapshot: a step that read the retired
  // (truncated) file would be a SIGBUS, which kills this test.
  const replacers: Record<string, (map: BucketMap, bucket: number) => void> = {
    'map.setAnticipatedCount': (map) => {
      const before = map.stats().index.resizes;
      map.setAnticipatedCount(map.size * 64);
      assert.ok(map.stats().index.resizes > before, 'the index grew');
    },
    'bucket.setAnticipatedCount': (map, ix) => {
      const before = map.stats().index.resizes;
      map.getBucketFromIndex(ix).setAnticipatedCount(map.size * 64);
      assert.ok(map.stats().index.resizes > before, 'the index grew');
    },
    compact: (map) => assert.ok(map.compact().buckets > 0, 'compact rebuilt the buckets'),
  };
  for (const [name, replace] of Object.entries(replacers)) {
    test(`${name} under an iteration: every later step yields the entry's value from the new files`, () => {
      const [map, model] = filled(3000, 2);
      // Deletes before the iteration leave files that compact() shrinks.
      const gone = [...model.keys()].slice(0, 2600);
      assert.is(map.deleteMany(gone.map((k) => Uint8Array.from(Buffer.from(k, 'hex')))), gone.length);
      for (const k of gone) model.delete(k);
      const seen = new Map<string, string>();
      let step = 0;
      let bucketOfFirst = -1;
      for (const [key, [list, rc]] of map.entries()) {
        if (step++ === 0) {
          bucketOfFirst = map.bucketIx(key);
          replace(map, bucketOfFirst);
        }
        assert.not.ok(seen.has(hex(key)), 'no entry twice');
        seen.set(hex(key), JSON.stringify([list.map(hex), rc]));
      }
      assert.is(bucketOfFirst, 0);
      assert.equal(seen, model);
      map.close();
    });
  }

  test('keys() runs no codec, also when the bucket changes under it: a decoder that throws stops entries(), not keys()', () => {
    let decodes = 0;
    let failing = false;
    const codec: ElementCodec<number> = {
      size: 8,
      encode: (v, buf, off) => new DataView(buf.buffer, buf.byteOffset).setFloat64(off, v, true),
      decode: (buf, off) => {
        decodes++;
        if (failing) throw new Error('decoder failed');
        return new DataView(buf.buffer, buf.byteOffset).getFloat64(off, true);
      },
    };
    const map = new BucketMap<number>({ maxBuckets: 1, engine, codec });
    const keys = Array.from({ length: 300 }, () => rng.key());
    keys.forEach((k, i) => map.insert(k, [i, i + 0.5]));
    decodes = 0;
    failing = true;
    const seen: string[] = [];
    let i = 0;
    for (const key of map.keys()) {
      seen.push(hex(key));
      // A change to the bucket being walked: later steps check each key is still there.
      if (i++ === 10) map.insert(rng.key(), [1]);
    }
    assert.is(decodes, 0, 'no slot list decoded to list keys');
    assert.ok(seen.length >= 300 && new Set(seen).size === seen.length, 'every key once');
    for (const k of keys) assert.ok(seen.includes(hex(k)));
    assert.throws(() => [...map.entries()], /decoder failed/);
    failing = false;
    map.close();
  });

  test.run();
}
