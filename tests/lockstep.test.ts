/**
 * Both engines in lockstep against a plain Map model, over the configurations
 * tests/differential.test.ts keeps fixed: each run draws an element size (1, 3, 8, 16, 17, 100 or
 * 4,096 bytes), maxSearch (2, 3, 8, 32 or 255), maxBuckets (1, 2, 4, 16 or 256), 64 KiB or default
 * segment files, and a persistent or temporary map; the wasm map has the smallest cache (64 KiB). A host map and a wasm map then take the same
 * seeded steps: per-key calls (keys sometimes at odd offsets of a larger buffer), packed() views,
 * Bucket-level calls and batchInsertNonDuplicates, every batched call (keys as an array or packed
 * at an odd offset, now and then past one 1,024-key chunk), readManyInto into targets too small to
 * take everything, resumed until done, and iterations interleaved with the writes. refCounts sit
 * at 0, 1, 255–257 and 2^53 − 2 / 2^53 − 1, so that adjustments cross the inline limit and hit
 * both ends of the range; slot lists are 0–4 elements long, at power-of-two boundaries, and about
 * one step in 500 the longest list the element size allows (such lists, in cells larger than
 * 1 MiB, found a heap overrun in the wasm core's copy of a growing data file). After each step the
 * two engines must have returned the same, or thrown the same error class and code, and agreed
 * with the model; every 250 steps both maps' full contents are compared with it. A persistent run
 * is closed and reopened once, and once each engine reopens the other's files.
 *
 * LOCKSTEP_RUNS=n (default 6) draws n configurations, LOCKSTEP_STEPS=n (default 1,500) sets the
 * steps of each. A failure names its configuration and step; TEST_SEED=n reproduces it as run 0.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setImmediate } from 'node:timers/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, BucketMapError, codecs, codes, NoSpace, type BucketMapConfig, type EngineKind, type Entry, type KeyBatch } from '../host/index.js';
import { element, entryValue, hex, persistentConfig, removeDir, Rng, snapshot, tempDir, testSeed, thrownBy, withSeed } from './helpers.js';

const RUNS = Number(process.env.LOCKSTEP_RUNS ?? 6);
const STEPS = Number(process.env.LOCKSTEP_STEPS ?? 1500);
const MAX_RC = Number.MAX_SAFE_INTEGER;
const BOUNDARIES = [7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65];

interface Drawn {
  elementSize: number;
  maxSearch: number;
  maxBuckets: number;
  segmentBytes: number | undefined;
  persistent: boolean;
}

function draw(rng: Rng): Drawn {
  const pick = <T>(choices: readonly T[]): T => choices[rng.below(choices.length)];
  return {
    elementSize: pick([1, 3, 8, 16, 17, 100, 4096]),
    maxSearch: pick([2, 3, 8, 32, 255]),
    maxBuckets: pick([1, 2, 4, 16, 256]),
    segmentBytes: rng.chance(0.5) ? 64 * 1024 : undefined,
    persistent: rng.chance(0.5),
  };
}

function describe(d: Drawn): string {
  const segments = d.segmentBytes === undefined ? 'default' : '64 KiB';
  return `element size ${d.elementSize}, maxSearch ${d.maxSearch}, ${d.maxBuckets} bucket(s), ${segments} segments, ${d.persistent ? 'persistent' : 'temporary'}`;
}

/** A result as text: bytes as hex and typed arrays as arrays, so results compare as strings; undefined stays apart from null. */
function shown(value: unknown): string {
  const replacer = (_key: string, v: unknown): unknown => {
    if (v instanceof Uint8Array) return hex(v);
    if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<number>);
    return v === undefined ? '(undefined)' : v;
  };
  // Most results are already model-style strings (entryValue): no need to quote them again.
  return typeof value === 'string' ? value : JSON.stringify(value, replacer);
}

/** `text` cut to where it first differs from `other`: whole lists of 1 MiB would bury the message. */
function clip(text: string | undefined, other: string | undefined = ''): string {
  if (text === undefined || text.length <= 300) return String(text);
  let at = 0;
  while (at < text.length && text[at] === other[at]) at++;
  const from = Math.max(0, at - 100);
  return `(${text.length} chars, first difference at ${at}) …${text.slice(from, from + 200)}…`;
}

/** One of the two maps: the engine it runs on and whose files it has open (they swap once). */
interface Side {
  engine: EngineKind;
  files: EngineKind;
  map: BucketMap;
}

/** An iteration in progress on both maps, with what the model says it must visit. */
interface Iteration {
  iterators: Array<Iterator<[Uint8Array, Entry<Uint8Array>]>>;
  present: Set<string>;
  removed: Set<string>;
  seen: Array<Set<string>>;
  done: boolean[];
}

function run(seed: number): Promise<void> {
  return withSeed(async (rng) => {
    const d = draw(rng);
    const size = d.elementSize;
    const maxSlots = Math.min(65536, Math.floor(2 ** 20 / size));
    const bits = Math.log2(d.maxBuckets);
    const dir = tempDir('bm-lockstep-');
    const configFor = (engine: EngineKind, files: EngineKind): BucketMapConfig => {
      // The smallest wasm cache (64 pages of 1 KiB): most of these maps outgrow it, so the core
      // evicts and fetches pages again, and resizes write pages back; the default 64 MiB holds them whole.
      const extra = {
        maxBuckets: d.maxBuckets, maxSearch: d.maxSearch, codec: codecs.bytes(size), cacheBytes: 64 * 1024,
        ...(d.segmentBytes === undefined ? {} : { segmentBytes: d.segmentBytes }),
      };
      if (!d.persistent) return { ...extra, engine };
      fs.mkdirSync(path.join(dir, files), { recursive: true });
      return persistentConfig(path.join(dir, files), engine, extra);
    };
    const sides: Side[] = [];
    let step = 0;
    let doing = 'opening';
    try {
      for (const engine of ['host', 'wasm'] as const) sides.push({ engine, files: engine, map: new BucketMap(configFor(engine, engine)) });
      const label = (s: Side): string => (s.files === s.engine ? s.engine : `${s.engine} on ${s.files}'s files`);

      /**
       * Runs `call` on both maps: they must return the same, or throw the same class and code.
       * Returns the first's result or throws its error. Only for results the contract fixes: where
       * a key sits, and so the order of iteration and when a file is full, hangs on each bucket's
       * random hash seed, which differs between the two maps.
       */
      const both = <R>(what: string, call: (map: BucketMap, side: number) => R): R => {
        const outcomes = sides.map((s, i): { value?: R; error?: Error & { code?: string }; text: string } => {
          try {
            const value = call(s.map, i);
            return { value, text: shown(value) };
          } catch (err) {
            const error = err as Error & { code?: string };
            return { error, text: `${error.constructor.name} ${error.code ?? ''} (${error.message})` };
          }
        });
        const [a, b] = outcomes;
        const same = a.error !== undefined && b.error !== undefined ? a.error.constructor === b.error.constructor && a.error.code === b.error.code : a.text === b.text;
        if (!same) assert.unreachable(`${what}: ${label(sides[0])} gave ${clip(a.text, b.text)}, ${label(sides[1])} gave ${clip(b.text, a.text)}`);
        if (a.error !== undefined) throw a.error;
        return a.value as R;
      };

      const model = new Map<string, string>();
      const iterations: Iteration[] = [];
      const listed = (h: string): [string[], number] | undefined => {
        const v = model.get(h);
        return v === undefined ? undefined : (JSON.parse(v) as [string[], number]);
      };
      const valueOf = (e: Entry<Uint8Array> | undefined): string | undefined => (e === undefined ? undefined : entryValue(e[0], e[1]));
      // Every removal goes through here: a live iteration need not visit a key removed meanwhile.
      const forget = (h: string): boolean => {
        for (const it of iterations) it.removed.add(h);
        return model.delete(h);
      };
      const setRc = (h: string, entry: [string[], number], rc: number): void => void model.set(h, JSON.stringify([entry[0], rc]));

      const keys: Uint8Array[] = [];
      const bucketOf = (k: Uint8Array): number => (bits === 0 ? 0 : ((k[0] << 8) | k[1]) >>> (16 - bits));
      // A key sharing its first two bytes with `near` lands in near's bucket however many there are.
      const newKey = (near?: Uint8Array): Uint8Array => {
        const k = rng.key();
        if (near !== undefined) k.set(near.subarray(0, 2));
        keys.push(k);
        return k;
      };
      // Some new keys crowd an existing key's bucket, so that 256 buckets still see full probe windows.
      const pickKey = (): Uint8Array => {
        if (keys.length === 0 || rng.chance(0.3)) return newKey(keys.length > 0 && rng.chance(0.2) ? keys[rng.below(keys.length)] : undefined);
        return keys[rng.below(keys.length)];
      };
      /** The key itself, or a copy at an odd offset of a larger buffer: the library must honour byteOffset. */
      const asArg = (k: Uint8Array): Uint8Array => {
        if (!rng.chance(0.25)) return k;
        const offset = 1 + 2 * rng.below(4);
        const buffer = new Uint8Array(offset + 40);
        buffer.set(k, offset);
        return buffer.subarray(offset, offset + 32);
      };
      const pickList = (short = false): Uint8Array[] => {
        const r = rng.below(20);
        let n: number;
        if (r < 5) n = 0;
        else if (r < 12) n = 1;
        else if (r < 16 || short) n = 2 + rng.below(3);
        else if (r < 19) n = BOUNDARIES[rng.below(BOUNDARIES.length)];
        else n = rng.below(Math.min(maxSlots, 1000) + 1);
        // Lists past 8 KiB are kept one time in 16: with 4 KiB elements every boundary length is
        // one, and a map of them would take minutes to compare.
        if (n * size > 8192 && !rng.chance(1 / 16)) n = rng.below(Math.floor(8192 / size) + 1);
        return Array.from({ length: Math.min(n, maxSlots) }, () => element(rng, size));
      };
      const pickRc = (): number => {
        const r = rng.below(12);
        if (r < 3) return 1;
        return [0, 2, 255, 256, 257, MAX_RC - 1, MAX_RC, 3 + rng.below(1000), rng.below(MAX_RC + 1)][r - 3];
      };
      /** What `readInto` leaves in a target of `length` bytes filled with 0xaa: the entry's elements at `offset`. */
      const expectedTarget = (entry: [string[], number] | undefined, length: number, offset: number): Uint8Array => {
        const target = new Uint8Array(length).fill(0xaa);
        if (entry !== undefined) target.set(Buffer.from(entry[0].join(''), 'hex'), offset);
        return target;
      };

      // ── checks shared by several steps ──────────────────────────────────────────────────────────

      const checkGet = (key: Uint8Array, what = 'readValue'): void => {
        const arg = asArg(key);
        assert.is(both(what, (m) => valueOf(rng.chance(0.5) ? m.readValue(arg) : m.get(arg))), model.get(hex(key)), what);
      };

      /** addref/unref through `call`: the new refCount, undefined if absent, or the error at either end of the range. */
      const adjust = (h: string, delta: 1 | -1, what: string, call: (m: BucketMap) => number | undefined): void => {
        const entry = listed(h);
        if (entry !== undefined && entry[1] === (delta > 0 ? MAX_RC : 0)) {
          const err = thrownBy(() => both(what, call));
          assert.instance(err, BucketMapError, `${what} at refCount ${entry[1]}`);
          assert.is(err!.code, delta > 0 ? codes.REFCOUNT_OVERFLOW : codes.REFCOUNT_UNDERFLOW);
          return;
        }
        assert.is(both(what, call), entry === undefined ? undefined : entry[1] + delta, what);
        if (entry !== undefined) setRc(h, entry, entry[1] + delta);
      };

      /** readInto through `call` into a target that fits exactly, has room to spare, or (throwing RangeError) is a byte short. */
      const checkReadInto = (h: string, what: string, call: (m: BucketMap, target: Uint8Array, offset: number) => number): void => {
        const entry = listed(h);
        const need = entry === undefined ? 0 : entry[0].length * size;
        const offset = rng.below(9);
        if (need > 0 && rng.chance(0.1)) {
          const err = thrownBy(() => both(what, (m) => call(m, new Uint8Array(offset + need - 1), offset)));
          assert.instance(err, RangeError, `${what} into a target a byte short`);
          return;
        }
        const length = offset + need + (rng.chance(0.5) ? 0 : rng.below(5));
        const got = both(what, (m) => {
          const target = new Uint8Array(length).fill(0xaa);
          const n = call(m, target, offset);
          return [n, n >= 0 ? m.lastRefCount : null, target];
        });
        assert.is(shown(got), shown([entry === undefined ? -1 : entry[0].length, entry === undefined ? null : entry[1], expectedTarget(entry, length, offset)]), what);
      };

      /**
       * tryInsert/tryWrite on each map, growing what its NoSpace names, until the entry is written.
       * Each map on its own: whether a probe window or size class is full depends on its hash seeds.
       */
      const insertByAttempts = (key: Uint8Array, what: string, attempt: (m: BucketMap) => NoSpace | undefined, grow: (m: BucketMap, noSpace: NoSpace) => void): void => {
        const before = model.get(hex(key));
        for (const s of sides) {
          for (let tries = 0; ; tries++) {
            assert.ok(tries < 100, `${label(s)}: ${what} still finds no space after 100 growths`);
            const noSpace = attempt(s.map);
            if (noSpace === undefined) break;
            assert.instance(noSpace, NoSpace);
            assert.is(valueOf(s.map.readValue(key)), before, `${label(s)}: a ${what} that found no space wrote nothing`);
            grow(s.map, noSpace);
          }
        }
      };

      /** addrefMany/unrefMany against the model applied key by key: a refCount leaving its range throws there, the keys before it changed. */
      const adjustMany = (batch: Uint8Array[], keysArg: KeyBatch, delta: 1 | -1): void => {
        const withOut = rng.chance(0.8);
        const expected: number[] = [];
        const changed = new Map<string, [string[], number]>();
        let stop = -1;
        for (let i = 0; i < batch.length; i++) {
          const h = hex(batch[i]);
          const entry = changed.get(h) ?? listed(h);
          if (entry === undefined) {
            expected.push(-1);
            continue;
          }
          if (entry[1] === (delta > 0 ? MAX_RC : 0)) {
            stop = i;
            break;
          }
          changed.set(h, [entry[0], entry[1] + delta]);
          expected.push(entry[1] + delta);
        }
        const what = delta > 0 ? 'addrefMany' : 'unrefMany';
        const got = both(what, (m) => {
          const out = withOut ? new Float64Array(batch.length).fill(-7) : null;
          try {
            const present = delta > 0 ? m.addrefMany(keysArg, out) : m.unrefMany(keysArg, out);
            return { present, out };
          } catch (err) {
            if (!(err instanceof BucketMapError)) throw err;
            return { code: err.code, message: err.message, out };
          }
        }) as { present?: number; code?: string; message?: string; out: Float64Array | null };
        if (stop < 0) {
          assert.is(got.present, expected.filter((rc) => rc >= 0).length, `${what} count`);
        } else {
          assert.is(got.code, delta > 0 ? codes.REFCOUNT_OVERFLOW : codes.REFCOUNT_UNDERFLOW, `${what} past the range at keys[${stop}]`);
          assert.match(got.message!, `keys[${stop}]`);
        }
        if (got.out !== null) assert.equal([...got.out.subarray(0, expected.length)], expected, `${what} refCounts`);
        for (const [h, entry] of changed) setRc(h, entry, entry[1]);
      };

      /** readManyInto in rounds into a small target, each round taking the keys the last did not reach. */
      const readManyInRounds = (batch: Uint8Array[], keysFrom: (from: number) => KeyBatch, large: boolean): void => {
        // Each round looks up a chunk of keys again: a batch past one chunk gets room for many entries a round.
        let room = (large ? 1 << 18 : 0) + (rng.below(4) === 0 ? 0 : rng.below(400) * size + rng.below(size + 1));
        const withRefCounts = rng.chance(0.8);
        for (let from = 0, rounds = 0; from < batch.length; rounds++) {
          assert.ok(rounds <= 2 * batch.length, 'readManyInto makes progress');
          const offset = rng.below(5);
          const rest = batch.length - from;
          const keysArg = keysFrom(from);
          const got = both('readManyInto', (m) => {
            const target = new Uint8Array(offset + room).fill(0xaa);
            const slots = new Int32Array(rest).fill(-5);
            const refCounts = withRefCounts ? new Float64Array(rest).fill(-5) : null;
            return { read: m.readManyInto(keysArg, target, slots, refCounts, offset), slots, refCounts, target };
          });
          // The model: absent keys cost nothing, present ones their elements, up to the first that does not fit.
          const target = new Uint8Array(offset + room).fill(0xaa);
          const slots: number[] = [];
          const refCounts: number[] = [];
          let at = offset;
          for (let i = from; i < batch.length; i++) {
            const entry = listed(hex(batch[i]));
            if (entry !== undefined) {
              const bytes = Buffer.from(entry[0].join(''), 'hex');
              if (at + bytes.length > target.length) break;
              target.set(bytes, at);
              at += bytes.length;
            }
            slots.push(entry === undefined ? -1 : entry[0].length);
            refCounts.push(entry === undefined ? -1 : entry[1]);
          }
          assert.is(got.read, slots.length, `readManyInto from key ${from} into ${room} bytes`);
          assert.equal([...got.slots.subarray(0, got.read)], slots, 'readManyInto slots');
          if (got.refCounts !== null) assert.equal([...got.refCounts.subarray(0, got.read)], refCounts, 'readManyInto refCounts');
          assert.is(hex(got.target), hex(target), 'readManyInto target');
          if (got.read === 0) {
            // The next entry alone is larger than the target: the caller must offer one that fits.
            room = listed(hex(batch[from]))![0].length * size;
          }
          from += got.read;
        }
      };

      const compareAll = (): void => {
        for (const s of sides) {
          assert.is(s.map.size, model.size, `${label(s)}: size`);
          let perBucket = 0;
          for (let ix = 0; ix < d.maxBuckets; ix++) perBucket += s.map.getBucketFromIndex(ix).bucketLen();
          assert.is(perBucket, model.size, `${label(s)}: bucket lengths`);
          const contents = snapshot(s.map);
          assert.is(contents.size, model.size, `${label(s)}: entries iterated`);
          for (const [h, v] of model) {
            if (contents.get(h) !== v) assert.unreachable(`${label(s)}: key ${h} holds ${clip(contents.get(h), v)}, the model ${clip(v, contents.get(h))}`);
          }
        }
      };

      /** Closes both maps and opens them again, with the other engine on each map's files if `swap`. */
      const reopen = (swap: boolean): void => {
        for (const s of sides) s.map.close();
        // An iteration stepped after close() may end, but must not read the closed map.
        for (const it of iterations.splice(0)) {
          sides.forEach((s, i) => {
            if (it.done[i]) return;
            const err = thrownBy(() => assert.ok(it.iterators[i].next().done, `${label(s)}: an iterator stepped after close() yielded`));
            if (err !== null) assert.is(err.code, codes.CLOSED, `${label(s)}: an iterator stepped after close(): ${err.message}`);
          });
        }
        for (const s of sides) {
          if (swap) s.engine = s.engine === 'host' ? 'wasm' : 'host';
          s.map = new BucketMap(configFor(s.engine, s.files));
        }
        compareAll();
      };

      // ── the steps ───────────────────────────────────────────────────────────────────────────────

      const perKey = (): void => {
        const key = pickKey();
        const h = hex(key);
        const arg = asArg(key);
        const op = rng.below(12);
        if (op <= 1) {
          doing = 'insert';
          const list = pickList();
          const rc = pickRc();
          if (op === 0) both('insert', (m) => m.insert(arg, list, rc));
          else assert.ok(both('set', (m) => m.set(arg, [list, rc]) === m));
          model.set(h, entryValue(list, rc));
        } else if (op === 2) {
          doing = 'update';
          const mode = rng.below(3); // replace, write back what is there, delete
          const list = pickList();
          const rc = pickRc();
          const saw = both('update', (m) => {
            let current: string | undefined;
            m.update(arg, (c) => {
              current = valueOf(c);
              return mode === 0 ? [list, rc] : mode === 1 ? c : undefined;
            });
            return current;
          });
          assert.is(saw, model.get(h), 'update callback saw');
          if (mode === 0) model.set(h, entryValue(list, rc));
          else if (mode === 2) forget(h);
        } else if (op === 3) {
          doing = 'deleteKey';
          const viaDelete = rng.chance(0.5);
          assert.is(both('deleteKey', (m) => (viaDelete ? m.delete(arg) : m.deleteKey(arg))), forget(h));
        } else if (op <= 6) {
          doing = 'addref/unref';
          const delta = op === 4 ? 1 : -1;
          adjust(h, delta, delta > 0 ? 'addref' : 'unref', (m) => (delta > 0 ? m.addref(arg) : m.unref(arg)));
        } else if (op <= 8) {
          doing = 'reads';
          checkGet(key);
          assert.is(both('has', (m) => m.has(arg)), model.has(h), 'has');
          checkReadInto(h, 'readInto', (m, target, offset) => m.readInto(arg, target, offset));
        } else if (op === 9) {
          doing = 'tryInsert + grow';
          const list = pickList();
          const rc = pickRc();
          insertByAttempts(key, 'tryInsert', (m) => m.tryInsert(arg, list, rc), (m, noSpace) => m.grow(noSpace));
          model.set(h, entryValue(list, rc));
        } else {
          doing = 'packed view';
          packedStep();
        }
      };

      const packedStep = (): void => {
        const picked = Array.from({ length: 1 + rng.below(6) }, pickKey);
        const offset = rng.below(8);
        const buffer = new Uint8Array(offset + picked.length * 32 + rng.below(4));
        picked.forEach((k, i) => buffer.set(k, offset + i * 32));
        const view = buffer.subarray(offset, offset + picked.length * 32);
        const i = rng.below(picked.length);
        const h = hex(picked[i]);
        assert.is(both('packed key', (m) => hex(m.packed(view).key(i))), h);
        const op = rng.below(7);
        if (op === 0) {
          const list = pickList();
          const rc = pickRc();
          both('packed insert', (m) => m.packed(view).insert(i, list, rc));
          model.set(h, entryValue(list, rc));
        } else if (op === 1) {
          assert.is(both('packed get', (m) => valueOf(m.packed(view).get(i))), model.get(h), 'packed get');
          assert.is(both('packed has', (m) => m.packed(view).has(i)), model.has(h), 'packed has');
        } else if (op === 2) {
          assert.is(both('packed delete', (m) => m.packed(view).delete(i)), forget(h));
        } else if (op <= 4) {
          checkReadInto(h, 'packed readInto', (m, target, at) => m.packed(view).readInto(i, target, at));
        } else {
          const delta = op === 5 ? 1 : -1;
          adjust(h, delta, delta > 0 ? 'packed addref' : 'packed unref', (m) => (delta > 0 ? m.packed(view).addref(i) : m.packed(view).unref(i)));
        }
      };

      const bucketStep = (): void => {
        const key = pickKey();
        const h = hex(key);
        const arg = asArg(key);
        const ix = bucketOf(key);
        assert.is(both('bucketIx', (m) => m.bucketIx(arg)), ix, 'bucketIx');
        const viaIndex = rng.chance(0.5);
        const bucket = (m: BucketMap) => (viaIndex ? m.getBucketFromIndex(ix) : m.getBucket(arg));
        const op = rng.below(5);
        const list = pickList();
        const rc = pickRc();
        if (op === 0) {
          doing = 'Bucket.insert';
          both('Bucket.insert', (m) => bucket(m).insert(arg, list, rc));
          model.set(h, entryValue(list, rc));
        } else if (op === 1) {
          doing = 'Bucket.readValue';
          assert.is(both('Bucket.readValue', (m) => valueOf(bucket(m).readValue(arg))), model.get(h), 'Bucket.readValue');
        } else if (op === 2) {
          doing = 'Bucket.deleteKey';
          assert.is(both('Bucket.deleteKey', (m) => bucket(m).deleteKey(arg)), forget(h));
        } else if (op === 3) {
          doing = 'Bucket.update';
          assert.is(both('Bucket.update', (m) => {
            let current: string | undefined;
            bucket(m).update(arg, (c) => ((current = valueOf(c)), [list, rc]));
            return current;
          }), model.get(h), 'Bucket.update callback saw');
          model.set(h, entryValue(list, rc));
        } else {
          doing = 'Bucket.tryWrite + grow';
          insertByAttempts(key, 'Bucket.tryWrite', (m) => bucket(m).tryWrite(arg, list, rc), (m, noSpace) => bucket(m).grow(noSpace));
          model.set(h, entryValue(list, rc));
        }
      };

      const batchInsertNonDuplicatesStep = (): void => {
        doing = 'batchInsertNonDuplicates';
        const anchor = pickKey();
        const ix = bucketOf(anchor);
        const items: Array<[Uint8Array, Uint8Array]> = [];
        for (let n = rng.below(30); items.length < n; ) {
          const k = pickKey();
          items.push([bucketOf(k) === ix ? k : newKey(anchor), element(rng, size)]);
        }
        // Present before, or earlier in the batch: reported with the first element kept; else written with refCount 1.
        const expected: Array<[number, string | undefined]> = [];
        items.forEach(([k, el], i) => {
          const h = hex(k);
          const entry = listed(h);
          if (entry !== undefined) expected.push([i, entry[0][0]]);
          else model.set(h, entryValue([el], 1));
        });
        const got = both('batchInsertNonDuplicates', (m) => m.getBucketFromIndex(ix).batchInsertNonDuplicates(items));
        assert.is(shown(got), shown(expected), 'batchInsertNonDuplicates duplicates');
      };

      const batchStep = (): void => {
        // Now and then past one 1,024-key chunk, with short lists so the batch stays small in bytes.
        const large = rng.chance(0.04);
        const batch = Array.from({ length: large ? 1000 + rng.below(400) : rng.below(41) }, pickKey);
        const packed = rng.chance(0.5);
        const offset = rng.below(8);
        const buffer = new Uint8Array(offset + batch.length * 32 + 3);
        batch.forEach((k, i) => buffer.set(k, offset + i * 32));
        const packedKeys = buffer.subarray(offset, offset + batch.length * 32);
        const args = batch.map(asArg);
        const keysFrom = (from: number): KeyBatch => (packed ? packedKeys.subarray(from * 32) : args.slice(from));
        const kind = rng.below(7);
        if (kind === 0) {
          doing = 'getMany';
          assert.equal(both('getMany', (m) => m.getMany(keysFrom(0)).map(valueOf)), batch.map((k) => model.get(hex(k))), 'getMany');
        } else if (kind === 1) {
          doing = 'hasMany';
          assert.equal(both('hasMany', (m) => m.hasMany(keysFrom(0))), batch.map((k) => model.has(hex(k))), 'hasMany');
        } else if (kind === 2) {
          doing = 'insertMany';
          const lists = batch.map(() => pickList(large));
          const one = rng.chance(0.3) ? pickRc() : undefined;
          const rcs = batch.map(() => one ?? pickRc());
          if (!packed && rng.chance(0.3)) {
            const triples = batch.map((_k, i): [Uint8Array, Uint8Array[]] | [Uint8Array, Uint8Array[], number] => (rcs[i] === 1 && rng.chance(0.5) ? [args[i], lists[i]] : [args[i], lists[i], rcs[i]]));
            both('insertMany of triples', (m) => m.insertMany(triples));
          } else {
            both('insertMany', (m) => m.insertMany(keysFrom(0), lists, one ?? rcs));
          }
          // A key listed twice keeps its last entry.
          batch.forEach((k, i) => model.set(hex(k), entryValue(lists[i], rcs[i])));
        } else if (kind === 3) {
          doing = 'deleteMany';
          const distinct = new Set(batch.map(hex));
          const present = [...distinct].filter((h) => model.has(h)).length;
          assert.is(both('deleteMany', (m) => m.deleteMany(keysFrom(0))), present, 'deleteMany');
          for (const h of distinct) forget(h);
        } else if (kind <= 5) {
          doing = kind === 4 ? 'addrefMany' : 'unrefMany';
          adjustMany(batch, keysFrom(0), kind === 4 ? 1 : -1);
        } else {
          doing = 'readManyInto';
          readManyInRounds(batch, keysFrom, large);
        }
        if (kind !== 0 && rng.chance(large ? 0.05 : 0.3)) {
          doing = 'getMany after a batch';
          assert.equal(both('getMany', (m) => m.getMany(keysFrom(0)).map(valueOf)), batch.map((k) => model.get(hex(k))), 'getMany after a batch');
        }
      };

      // Each map is stepped on its own: the two visit their keys in different orders.
      const iterationStep = (): void => {
        doing = 'iteration';
        if (iterations.length < 3 && (iterations.length === 0 || rng.chance(0.3))) {
          const values = rng.chance(0.5);
          iterations.push({
            iterators: sides.map((s) => (values ? s.map.entries() : s.map[Symbol.iterator]())),
            present: new Set(model.keys()),
            removed: new Set(),
            seen: sides.map(() => new Set()),
            done: sides.map(() => false),
          });
          return;
        }
        const it = iterations[rng.below(iterations.length)];
        const steps = 1 + rng.below(40);
        sides.forEach((s, i) => {
          const seen = it.seen[i];
          for (let n = 0; n < steps && !it.done[i]; n++) {
            const r = it.iterators[i].next();
            if (r.done) {
              it.done[i] = true;
              for (const h of it.present) if (!it.removed.has(h)) assert.ok(seen.has(h), `${label(s)}: an iteration missed ${h}, present throughout`);
              break;
            }
            const h = hex(r.value[0]);
            assert.not.ok(seen.has(h), `${label(s)}: an iteration visited ${h} twice`);
            seen.add(h);
            const value = entryValue(r.value[1][0], r.value[1][1]);
            if (value !== model.get(h)) assert.unreachable(`${label(s)}: an iteration visited ${h} with ${clip(value, model.get(h))}, the model has ${clip(model.get(h), value)}`);
          }
        });
        if (it.done.every(Boolean)) iterations.splice(iterations.indexOf(it), 1);
      };

      const bucketContentsStep = (): void => {
        doing = 'Bucket.items/keys';
        const ix = rng.below(d.maxBuckets);
        const byKey = (a: string[], b: string[]): number => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
        const inBucket = [...model].filter(([h]) => bucketOf(Buffer.from(h, 'hex')) === ix).sort(byKey);
        // items() decodes the whole bucket: past 1 MiB of text it is left to the full comparisons.
        const small = inBucket.reduce((bytes, [, v]) => bytes + v.length, 0) < 1 << 20;
        for (const s of sides) {
          const bucket = s.map.getBucketFromIndex(ix);
          const keyList = bucket.keys().map(hex);
          assert.equal([...keyList].sort(), inBucket.map(([h]) => h), `${label(s)}: Bucket.keys`);
          if (!small) continue;
          const items = bucket.items().map((it) => [hex(it.key), entryValue(it.slotList, it.refCount)]);
          assert.equal(items.map(([h]) => h), keyList, `${label(s)}: Bucket.items in the order of keys`);
          assert.equal(items.sort(byKey), inBucket, `${label(s)}: Bucket.items`);
        }
        assert.is(both('Bucket.bucketLen', (m) => m.getBucketFromIndex(ix).bucketLen()), inBucket.length);
      };

      const upkeepStep = (): void => {
        const op = rng.below(16);
        if (op <= 3) {
          doing = 'compact';
          const load = rng.chance(0.5) ? {} : { load: 0.3 + rng.below(61) / 100 };
          // What it frees depends on how each map's files grew: only the entries must stay.
          for (const s of sides) s.map.compact(load);
        } else if (op <= 7) {
          doing = 'setAnticipatedCount';
          const total = rng.below(3 * keys.length + 10);
          both('setAnticipatedCount', (m) => m.setAnticipatedCount(total));
        } else if (op <= 14) {
          doing = 'Bucket.setAnticipatedCount';
          const ix = rng.below(d.maxBuckets);
          const count = rng.below(2 * keys.length / d.maxBuckets + 10);
          both('Bucket.setAnticipatedCount', (m) => m.getBucketFromIndex(ix).setAnticipatedCount(count));
        } else {
          doing = 'flush';
          const durable = rng.chance(0.05);
          both('flush', (m) => m.flush({ durable }));
        }
      };

      /** The longest list the element size allows, written by one of the write paths. */
      let lastLongKey: Uint8Array | undefined;
      const longestListStep = (): void => {
        doing = 'longest list';
        // Half of them join the last one's bucket: a second such list there grows the data file of their size class.
        const key = lastLongKey !== undefined && rng.chance(0.5) ? newKey(lastLongKey) : pickKey();
        lastLongKey = key;
        const h = hex(key);
        const list = Array.from({ length: maxSlots }, () => element(rng, size));
        const rc = pickRc();
        const path = rng.below(4);
        if (path === 0) {
          both('insert of the longest list', (m) => m.insert(key, list, rc));
        } else if (path === 1) {
          const batch = Array.from({ length: 2 + rng.below(4) }, pickKey);
          const lists = batch.map(() => pickList(true));
          const at = rng.below(batch.length + 1);
          batch.splice(at, 0, key);
          lists.splice(at, 0, list);
          both('insertMany with the longest list', (m) => m.insertMany(batch, lists, rc));
          // The key may be listed again after the longest list (pickKey drew it): that later listing is kept.
          batch.forEach((k, i) => model.set(hex(k), entryValue(lists[i], rc)));
          assert.equal(both('getMany', (m) => m.getMany(batch).map(valueOf)), batch.map((k) => model.get(hex(k))), 'getMany after insertMany with the longest list');
        } else if (path === 2) {
          insertByAttempts(key, 'tryInsert of the longest list', (m) => m.tryInsert(key, list, rc), (m, noSpace) => m.grow(noSpace));
        } else {
          both('Bucket.insert of the longest list', (m) => m.getBucketFromIndex(bucketOf(key)).insert(key, list, rc));
        }
        if (path !== 1) model.set(h, entryValue(list, rc));
        checkGet(key, 'readValue of the longest list');
      };

      const reopenAt = 1 + rng.below(STEPS);
      const swapAt = 1 + rng.below(STEPS);
      for (step = 1; step <= STEPS; step++) {
        const r = rng.below(100);
        if (rng.chance(1 / 500)) longestListStep();
        else if (r < 42) perKey();
        else if (r < 52) bucketStep();
        else if (r < 55) batchInsertNonDuplicatesStep();
        else if (r < 82) batchStep();
        else if (r < 94) iterationStep();
        else if (r < 97) bucketContentsStep();
        else upkeepStep();
        if (d.persistent && step === reopenAt) {
          doing = 'close and reopen';
          reopen(false);
        }
        if (d.persistent && step === swapAt) {
          doing = "reopen with the other engine on each map's files";
          reopen(true);
        }
        if (step % 250 === 0) {
          doing = 'full comparison';
          compareAll();
          // Files replaced by growth and compaction are unmapped only when the event loop turns.
          await setImmediate();
        }
      }
      doing = 'final comparison';
      compareAll();
      for (const s of sides) {
        const report = s.map.verify();
        assert.ok(report.ok, `${label(s)}: verify found ${JSON.stringify(report.problems.slice(0, 3))}`);
      }
    } catch (err) {
      if (err instanceof Error) err.message = `${err.message}\n(${describe(d)}; step ${step}: ${doing})`;
      throw err;
    } finally {
      // Closed even after a failure, so the folder can go; an error here would hide the first one.
      for (const s of sides) thrownBy(() => s.map.close());
      removeDir(dir);
    }
  }, seed);
}

const test = suite('host and wasm engines in lockstep against a Map model');
const seed = testSeed();
for (let i = 0; i < RUNS; i++) {
  // Run 0 takes the seed itself, so the TEST_SEED a failure prints reproduces it.
  const runSeed = (seed + i * 0x9e3779b9) >>> 0;
  test(`run ${i} (seed ${runSeed})`, () => run(runSeed));
}
test.run();
