/**
 * A call into the wasm core that throws part way: a host callback that overflows the stack (a map
 * called from deep recursion) stops the core wherever it is. Before the engine recovered from it,
 * a batched lookup stopped in its page fetch left cache slots tagged with pages never copied in:
 * later lookups answered from the slots' old bytes (present keys read as absent), and writes
 * built on them put keys in the wrong cells of the files. A log stopped part way was applied again
 * from its start, replaying cell moves over cells moved since; and a stopped insertMany counted
 * the keys of an earlier call in the map's size.
 *
 * The faults are injected into the engine's callbacks (deterministic), and once for real: reads
 * at every stack depth near the limit.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, codecs, type Entry } from '../host/index.js';
import { Rng, entryValue, hex, thrownBy, withSeed } from './helpers.js';

const test = suite('wasm engine: a call into the core that throws part way');

type Callbacks = Record<'fetchPage' | 'fetchPages' | 'applyMove', (...args: number[]) => void>;

/** The engine's callbacks, to make one throw as a stack overflow would. */
function callbacks(map: BucketMap): Callbacks {
  return (map as unknown as { ctx: { engine: Callbacks } }).ctx.engine;
}

/** Makes `name` throw a RangeError at its `nth` call from now (before doing anything), then work again. */
function failAt(map: BucketMap, name: keyof Callbacks, nth: number): { fired: () => boolean } {
  const engine = callbacks(map);
  const original = engine[name];
  let calls = 0;
  let fired = false;
  engine[name] = function (this: unknown, ...args: number[]): void {
    if (!fired && ++calls === nth) {
      fired = true;
      delete (engine as Partial<Callbacks>)[name];
      throw new RangeError('Maximum call stack size exceeded (injected)');
    }
    original.apply(this, args);
  };
  return { fired: () => fired };
}

function restore(map: BucketMap, name: keyof Callbacks): void {
  delete (callbacks(map) as Partial<Callbacks>)[name];
}

interface Loaded {
  map: BucketMap;
  keys: Uint8Array[];
  model: Map<string, string>;
}

/** A one-bucket wasm map of `n` keys with lists of 0 to 3 elements (some in data cells). */
function loaded(rng: Rng, n: number, cacheBytes: number, maxSearch = 32): Loaded {
  const map = new BucketMap({ maxBuckets: 1, maxSearch, engine: 'wasm', cacheBytes, codec: codecs.bytes(8) });
  const keys = Array.from({ length: n }, () => rng.key());
  const lists = keys.map(() => Array.from({ length: rng.below(4) }, () => rng.bytes(8)));
  map.insertMany(keys, lists, 7);
  const model = new Map<string, string>();
  keys.forEach((k, i) => model.set(hex(k), entryValue(lists[i], 7)));
  return { map, keys, model };
}

const shown = (e: Entry<Uint8Array> | undefined): string | undefined => (e === undefined ? undefined : entryValue(e[0], e[1]));

/** Every key reads as the model says, one at a time and batched; the files verify; iteration agrees. */
function agrees(t: Loaded, what: string): void {
  for (const k of t.keys) assert.is(shown(t.map.readValue(k)), t.model.get(hex(k)), `${what}: readValue(${hex(k)})`);
  const many = t.map.getMany(t.keys);
  t.keys.forEach((k, i) => assert.is(shown(many[i]), t.model.get(hex(k)), `${what}: getMany, key ${i}`));
  const report = t.map.verify();
  assert.ok(report.ok, `${what}: verify: ${JSON.stringify(report.problems).slice(0, 400)}`);
  let n = 0;
  for (const [k, e] of t.map.entries()) {
    n++;
    assert.is(shown(e), t.model.get(hex(k)), `${what}: iterated ${hex(k)}`);
  }
  assert.is(n, t.model.size, `${what}: entries iterated`);
}

/** Per-key and batched writes after the fault, kept in the model. */
function writes(t: Loaded, rng: Rng): void {
  const gone = t.keys.filter(() => rng.chance(0.2));
  t.map.deleteMany(gone);
  for (const k of gone) t.model.delete(hex(k));
  for (let i = 0; i < 200; i++) {
    const k = t.keys[rng.below(t.keys.length)];
    if (rng.chance(0.5)) {
      t.map.deleteKey(k);
      t.model.delete(hex(k));
    } else {
      const list = Array.from({ length: rng.below(4) }, () => rng.bytes(8));
      t.map.insert(k, list, 3);
      t.model.set(hex(k), entryValue(list, 3));
    }
  }
  const fresh = Array.from({ length: 1500 }, () => rng.key());
  const lists = fresh.map(() => [rng.bytes(8)]);
  t.map.insertMany(fresh, lists, 2);
  t.keys.push(...fresh);
  fresh.forEach((k, i) => t.model.set(hex(k), entryValue(lists[i], 2)));
}

test('a batched lookup whose page fetch throws: later lookups and writes see the files, not stale slots', () => {
  withSeed((rng) => {
    // 4,000 keys take about 220 index pages: far more than the 64 of the smallest cache.
    const t = loaded(rng, 4000, 64 * 1024);
    try {
      const fault = failAt(t.map, 'fetchPages', 1);
      assert.throws(() => t.map.getMany(t.keys.slice(0, 1024)), (err: Error) => err instanceof RangeError);
      assert.ok(fault.fired());
      agrees(t, 'after the fault');
      writes(t, rng);
      agrees(t, 'after writes');
    } finally {
      t.map.close();
    }
  });
});

test('a stopped call with no stack left to recover in is recovered from at the next call', () => {
  withSeed((rng) => {
    const t = loaded(rng, 4000, 64 * 1024);
    try {
      const engine = callbacks(t.map) as unknown as { stop: (err: unknown) => never };
      // The stack overflowed deep in a callback and again in the engine's handler of it.
      engine.stop = (): never => {
        throw new RangeError('Maximum call stack size exceeded (injected, in the handler)');
      };
      failAt(t.map, 'fetchPages', 1);
      assert.throws(() => t.map.getMany(t.keys.slice(0, 1024)), (err: Error) => err instanceof RangeError);
      delete (engine as Partial<typeof engine>).stop;
      agrees(t, 'after the fault');
      writes(t, rng);
      agrees(t, 'after writes');
    } finally {
      t.map.close();
    }
  });
});

test('a batched lookup stopped in a single page fetch leaves lookups right too', () => {
  withSeed((rng) => {
    const t = loaded(rng, 4000, 64 * 1024);
    try {
      for (const nth of [1, 5, 40]) {
        // getMany fetches single pages when a probe leaves the page its batch fetch brought in.
        const fault = failAt(t.map, 'fetchPage', nth);
        thrownBy(() => t.map.getMany(t.keys));
        restore(t.map, 'fetchPage');
        if (fault.fired()) agrees(t, `after a fault at fetch ${nth}`);
      }
      writes(t, rng);
      agrees(t, 'after writes');
    } finally {
      t.map.close();
    }
  });
});

test('a log whose application throws part way is applied once, from where it stopped', () => {
  withSeed((rng) => {
    // A cache that holds the whole map: a delete fetches nothing, so its log is applied only at its
    // end, and the delete is complete in the cache when the application throws. Its third cell
    // move throws: replayed from the start, the first move would copy the cell the second moved.
    const t = loaded(rng, 3000, 4 * 1024 * 1024, 255);
    try {
      t.map.getMany(t.keys); // every page resident
      let struck = false;
      for (const k of t.keys.slice()) {
        const fault = failAt(t.map, 'applyMove', 3);
        const err = thrownBy(() => t.map.deleteKey(k));
        restore(t.map, 'applyMove');
        if (!fault.fired()) {
          assert.is(err, null);
          t.model.delete(hex(k));
          continue;
        }
        assert.instance(err, RangeError);
        t.model.delete(hex(k)); // complete in the cache: the rest of its log reaches the files
        struck = true;
        break;
      }
      assert.ok(struck, 'no delete moved three cells');
      agrees(t, 'after the fault');
      writes(t, rng);
      agrees(t, 'after writes');
    } finally {
      t.map.close();
    }
  });
});

test('an insertMany stopped part way counts the keys it added in the map size', () => {
  withSeed((rng) => {
    const t = loaded(rng, 2000, 64 * 1024);
    try {
      // A call that adds keys first, so a stale count would be this call's.
      const first = Array.from({ length: 700 }, () => rng.key());
      t.map.insertMany(first, first.map(() => []), 1);
      const fresh = Array.from({ length: 1000 }, () => rng.key());
      const fault = failAt(t.map, 'fetchPage', 100);
      assert.throws(() => t.map.insertMany(fresh, fresh.map(() => []), 1), (err: Error) => err instanceof RangeError);
      assert.ok(fault.fired());
      let n = 0;
      for (const _ of t.map.keys()) n++;
      assert.is(t.map.size, n, 'size against the keys held');
      assert.ok(n > 2700 && n < 3700, `${n} keys`);
    } finally {
      t.map.close();
    }
  });
});

test('lookups at every stack depth near the limit leave the map as it was', () => {
  withSeed((rng) => {
    const t = loaded(rng, 4000, 64 * 1024);
    try {
      const at = (depth: number, fn: () => unknown): unknown => (depth === 0 ? fn() : [at(depth - 1, fn)]);
      const batch = t.keys.slice(0, 1024);
      const call = (depth: number): Error | null => thrownBy(() => at(depth, () => (depth % 2 === 0 ? t.map.getMany(batch) : t.map.hasMany(batch))));
      // Coarsely down to a depth where the call returns, then one by one from above it: the calls
      // overflow ever later, inside the core and its callbacks, until they stop overflowing.
      let top = 1;
      while (call(top * 2) === null) top *= 2;
      top *= 2;
      while (top > 0 && call(top) !== null) top -= 64;
      let overflowed = 0;
      let returned = 0;
      for (let depth = top + 256; depth > 0 && returned < 300; depth--) {
        const err = call(depth);
        if (err === null) {
          returned++;
        } else {
          assert.instance(err, RangeError);
          overflowed++;
        }
        // Single-key lookups at the top: they must not answer from slots the stopped call left.
        for (let i = 0; i < 64; i++) {
          const k = batch[(depth * 7 + i * 131) % batch.length];
          assert.is(shown(t.map.readValue(k)), t.model.get(hex(k)), `readValue after a call at depth ${depth}`);
        }
      }
      assert.ok(overflowed > 0, 'no call overflowed the stack');
      writes(t, rng);
      agrees(t, 'after writes');
    } finally {
      t.map.close();
    }
  });
});

test.run();
