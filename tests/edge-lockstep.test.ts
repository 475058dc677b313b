/**
 * Both engines in lockstep at the edges of the configuration and of the values, against a Map
 * model. Where tests/lockstep.test.ts covers the common ranges, each run here draws from the ends
 * of what the README allows: maxBuckets 1, 2 or 65,536; maxSearch 1, 2, 4, 32 or 255; elements of
 * codecs.bytes(1), bytes(16), bytes(17), bytes(4096), codecs.u64 or a custom 12-byte codec; 64 KiB,
 * 67 KiB or default segment files; the wasm cache at its smallest (64 KiB, or just under 128 KiB, which
 * rounds down to it); and, one run in four, a maxBytes ceiling from 1 byte to 60 KB. Values sit at
 * the edges too: slot lists of 0, 1, 2, the longest the element size allows and one more (a
 * RangeError, nothing written); refCounts 0, 1, 255–257 (the inline limit), 2^32 − 1, 2^32,
 * 2^53 − 1 and the invalid 2^53, −1 and 0.5; addref/unref across those, and at either end. Keys are
 * the all-zero and all-0xff keys, keys sharing their first four bytes (one bucket however many
 * there are), and keys aimed at one home cell: of the bucket's first index file one at a time, and
 * now and then a burst of 30–69 at one home cell of its index as it is then.
 *
 * Every bucket of both maps gets the same hash seed (bucket-storage's testHooks), so the two
 * engines must agree not only on every result and error (class and code) but on where each key
 * sits: the order of keys() is compared too, and a maxBytes ceiling must stop both at the same
 * call. (Where a list goes in a data file is drawn at random by each engine; with maxBytes the
 * runs use maxSearch 255, whose search covers every data file that fits under the ceiling, so
 * even that cannot make one engine grow a file where the other does not.) Every 200 steps both
 * maps' contents are compared with the model; once during the run and again at the end both maps
 * are closed and each one's files reopened by the other engine, compared again and verified; at
 * the very end each map's files are opened read-only by the engine that did not write them last.
 *
 * EDGE_RUNS=n (default 4) draws n configurations, EDGE_STEPS=n (default 500) sets the steps of
 * each. A failure names its configuration and step; TEST_SEED=n reproduces it as run 0.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setImmediate } from 'node:timers/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BucketMap, BucketMapError, codecs, codes, type BucketMapConfig, type ElementCodec, type EngineKind } from '../host/index.js';
import { testHooks } from '../host/bucket-storage.js';
import { hashKey } from '../host/hash.js';
import { maxSlotsFor } from '../host/layout.js';
import { hex, persistentConfig, removeDir, Rng, tempDir, testSeed, thrownBy, withSeed } from './helpers.js';

const RUNS = Number(process.env.EDGE_RUNS ?? 4);
const STEPS = Number(process.env.EDGE_STEPS ?? 500);
const MAX_RC = Number.MAX_SAFE_INTEGER;

type CodecKind = 'bytes1' | 'bytes16' | 'bytes17' | 'bytes4096' | 'u64' | 'custom';

interface Drawn {
  codec: CodecKind;
  maxSearch: number;
  maxBuckets: number;
  segmentBytes: number | undefined;
  cacheBytes: number;
  maxBytes: number | undefined;
}

/** Three u32s as an object: a codec of the caller's own, with a size no built-in one has. */
interface Triple { a: number; b: number; c: number }
const tripleCodec: ElementCodec<Triple> = {
  size: 12,
  encode(value, target, offset) {
    if (typeof value !== 'object' || value === null) throw new TypeError('a triple must be an object');
    const view = new DataView(target.buffer, target.byteOffset + offset, 12);
    view.setUint32(0, value.a, true);
    view.setUint32(4, value.b, true);
    view.setUint32(8, value.c, true);
  },
  decode(source, offset) {
    const view = new DataView(source.buffer, source.byteOffset + offset, 12);
    return { a: view.getUint32(0, true), b: view.getUint32(4, true), c: view.getUint32(8, true) };
  },
};

/** The codec of a kind, and how its values turn into the element bytes the model keeps, and back. */
function codecOf(kind: CodecKind): { codec: ElementCodec<unknown>; size: number; from: (bytes: Uint8Array) => unknown; to: (value: unknown) => Uint8Array } {
  if (kind === 'u64') {
    return {
      codec: codecs.u64 as ElementCodec<unknown>, size: 8,
      from: (b) => Buffer.from(b).readBigUInt64LE(0),
      to: (v) => {
        const out = Buffer.alloc(8);
        out.writeBigUInt64LE(v as bigint);
        return new Uint8Array(out);
      },
    };
  }
  if (kind === 'custom') {
    return {
      codec: tripleCodec as ElementCodec<unknown>, size: 12,
      from: (b) => tripleCodec.decode(b, 0),
      to: (v) => {
        const out = new Uint8Array(12);
        tripleCodec.encode(v as Triple, out, 0);
        return out;
      },
    };
  }
  const size = Number(kind.slice(5));
  return { codec: codecs.bytes(size) as ElementCodec<unknown>, size, from: (b) => b.slice(), to: (v) => v as Uint8Array };
}

function draw(rng: Rng): Drawn {
  const pick = <T>(choices: readonly T[]): T => choices[rng.below(choices.length)];
  const maxBytes = rng.chance(0.25) ? pick([1, 6000, 12000, 30000, 60000]) : undefined;
  return {
    codec: pick(['bytes1', 'bytes16', 'bytes17', 'bytes4096', 'u64', 'custom'] as const),
    // Under a ceiling, each engine's random start of a data-cell search must not decide whether a
    // file grows: at 255 the search spans every data file small enough to fit.
    maxSearch: maxBytes === undefined ? pick([1, 2, 4, 32, 255]) : 255,
    maxBuckets: pick([1, 2, 65536]),
    // The smallest segment, one that is no power of two (its records end short of a power-of-two boundary), or the default.
    segmentBytes: pick([64 * 1024, 67 * 1024, undefined]),
    cacheBytes: rng.chance(0.5) ? 64 * 1024 : 128 * 1024 - 1,
    maxBytes,
  };
}

function describe(d: Drawn): string {
  return `codec ${d.codec}, maxSearch ${d.maxSearch}, ${d.maxBuckets} bucket(s), ${d.segmentBytes === undefined ? 'default' : `${d.segmentBytes / 1024} KiB`} segments, cacheBytes ${d.cacheBytes}, maxBytes ${d.maxBytes ?? 'none'}`;
}

/** One of the two maps: the engine it runs on and whose files it has open (they swap). */
interface Side {
  engine: EngineKind;
  files: EngineKind;
  map: BucketMap<unknown>;
}

function run(seed: number): Promise<void> {
  return withSeed(async (rng) => {
    const d = draw(rng);
    const { codec, size, from, to } = codecOf(d.codec);
    const maxSlots = maxSlotsFor(size);
    const bits = Math.log2(d.maxBuckets);
    const hashSeed: [number, number] = [rng.u32() | 0, rng.u32() | 0];
    const dir = tempDir('bm-edge-lockstep-');
    const configFor = (engine: EngineKind, files: EngineKind): BucketMapConfig<unknown> => {
      fs.mkdirSync(path.join(dir, files), { recursive: true });
      return {
        ...persistentConfig(path.join(dir, files), engine),
        maxBuckets: d.maxBuckets, maxSearch: d.maxSearch, codec, cacheBytes: d.cacheBytes,
        ...(d.segmentBytes === undefined ? {} : { segmentBytes: d.segmentBytes }),
        ...(d.maxBytes === undefined ? {} : { maxBytes: d.maxBytes }),
      };
    };
    // Every new bucket takes hashSeed, and a reseed after an aimed overflow one other fixed seed:
    // the same in both maps, so their keys sit in the same cells.
    testHooks.fixedSeed = hashSeed;
    const reseed: [number, number] = [hashSeed[1] ^ 0x5bd1e995, hashSeed[0] ^ 0x27d4eb2d];
    testHooks.seedSource = () => reseed;
    const sides: Side[] = [];
    let step = 0;
    let doing = 'opening';
    const label = (s: Side): string => (s.files === s.engine ? s.engine : `${s.engine} on ${s.files}'s files`);
    try {
      for (const engine of ['host', 'wasm'] as const) sides.push({ engine, files: engine, map: new BucketMap(configFor(engine, engine)) });

      /** Runs `call` on both maps: they must return the same, or throw the same class and code. */
      const both = <R>(what: string, call: (map: BucketMap<unknown>) => R): R => {
        const outcomes = sides.map((s): { value?: R; error?: Error & { code?: string }; text: string } => {
          try {
            const value = call(s.map);
            return { value, text: typeof value === 'string' ? value : JSON.stringify(value, (_k, v: unknown) => (v === undefined ? '(undefined)' : v instanceof Uint8Array ? hex(v) : v)) };
          } catch (err) {
            const error = err as Error & { code?: string };
            return { error, text: `${error.constructor.name} ${error.code ?? ''} (${error.message})` };
          }
        });
        const [a, b] = outcomes;
        const same = a.error !== undefined && b.error !== undefined ? a.error.constructor === b.error.constructor && a.error.code === b.error.code : a.text === b.text;
        if (!same) assert.unreachable(`${what}: ${label(sides[0])} gave ${a.text.slice(0, 300)}, ${label(sides[1])} gave ${b.text.slice(0, 300)}`);
        if (a.error !== undefined) throw a.error;
        return a.value as R;
      };
      /** Like both(), but under a maxBytes ceiling BUCKET_MAP_SIZE_LIMIT on both maps is an answer too: it is returned. */
      const bothOr = <R>(what: string, call: (map: BucketMap<unknown>) => R): R | BucketMapError => {
        try {
          return both(what, call);
        } catch (err) {
          if (err instanceof BucketMapError && err.code === codes.SIZE_LIMIT && d.maxBytes !== undefined) return err;
          throw err;
        }
      };

      const model = new Map<string, string>();
      // An entry as text: its refCount, then its elements' bytes back to back in hex (one string,
      // so that lists of 1 MiB compare without a string per element).
      const entryValue = (list: readonly Uint8Array[], rc: number): string => `${rc} ${Buffer.concat(list).toString('hex')}`;
      const valueOf = (e: [unknown[], number] | undefined): string | undefined => (e === undefined ? undefined : entryValue(e[0].map(to), e[1]));
      /** The model's entry: its elements' bytes in hex, their count, its refCount. */
      const listed = (h: string): { bytes: string; n: number; rc: number } | undefined => {
        const v = model.get(h);
        if (v === undefined) return undefined;
        const space = v.indexOf(' ');
        const bytes = v.slice(space + 1);
        return { bytes, n: bytes.length / (2 * size), rc: Number(v.slice(0, space)) };
      };
      const withRc = (entry: { bytes: string }, rc: number): string => `${rc} ${entry.bytes}`;

      // ── keys ────────────────────────────────────────────────────────────────────────────────────
      const keys: Uint8Array[] = [new Uint8Array(32), new Uint8Array(32).fill(0xff)];
      const anchors: Uint8Array[] = [keys[0], keys[1], rng.key()];
      /** The seed and index capacity of an anchor's bucket now, read from the first map's record (internal; the maps agree). */
      const aimOf = (anchor: Uint8Array): { seedLo: number; seedHi: number; capacity: number } => {
        const ix = bits === 0 ? 0 : ((anchor[0] << 8) | anchor[1]) >>> (16 - bits);
        const { record } = (sides[0].map as unknown as { storages: Array<{ record?: { seedLo: number; seedHi: number; indexPages: number } }> }).storages[ix];
        if (record === undefined || record.indexPages === 0) return { seedLo: hashSeed[0], seedHi: hashSeed[1], capacity: 80 };
        return { seedLo: record.seedLo, seedHi: record.seedHi, capacity: record.indexPages * 20 };
      };
      // Single keys aimed at one home cell of the first index file (80 cells) in an anchor's bucket.
      const firstHome = rng.below(80);
      const aimed = (anchor: Uint8Array, at = { seedLo: hashSeed[0], seedHi: hashSeed[1], capacity: 80 }, home = firstHome): Uint8Array => {
        for (;;) {
          const k = rng.key();
          k.set(anchor.subarray(0, 4));
          if ((hashKey(k, 0, at.seedLo, at.seedHi) >>> 0) % at.capacity === home) return k;
        }
      };
      // maxSearch 1 needs an index large enough that no two keys share a home: aimed keys there
      // cost a growth each, so fewer of them.
      const aimedShare = d.maxSearch === 1 ? 0.02 : 0.15;
      const pickKey = (): Uint8Array => {
        if (keys.length > 2 && !rng.chance(0.3)) return keys[rng.below(keys.length)];
        const r = rng.u32() / 0x100000000;
        let k: Uint8Array;
        if (r < aimedShare) k = aimed(anchors[rng.below(anchors.length)]);
        else if (r < 0.5) {
          k = rng.key();
          k.set(anchors[rng.below(anchors.length)].subarray(0, 4));
        } else k = rng.key();
        keys.push(k);
        return k;
      };

      // ── values ──────────────────────────────────────────────────────────────────────────────────
      const elementBytes = (): Uint8Array => {
        const r = rng.below(8);
        if (r === 0) return new Uint8Array(size);
        if (r === 1) return new Uint8Array(size).fill(0xff);
        return rng.bytes(size);
      };
      /** A list as element bytes (the model's) and as codec values (the map's). */
      const pickList = (): { bytes: Uint8Array[]; values: unknown[] } => {
        const r = rng.below(100);
        let n: number;
        if (r < 25) n = 0;
        else if (r < 65) n = 1;
        else if (r < 85) n = 2 + rng.below(3);
        else if (r < 99) n = rng.below(Math.min(maxSlots, 64) + 1);
        else if (rng.chance(0.5)) n = maxSlots;
        else n = maxSlots + 1;
        if (n <= 64) {
          const bytes = Array.from({ length: n }, elementBytes);
          return { bytes, values: bytes.map(from) };
        }
        // The longest lists repeat seven elements: 65,536 fresh ones a list kept the collector busy.
        const few = Array.from({ length: 7 }, elementBytes);
        const values = few.map(from);
        return { bytes: Array.from({ length: n }, (_x, i) => few[i % 7]), values: Array.from({ length: n }, (_x, i) => values[i % 7]) };
      };
      const VALID_RC = [0, 1, 1, 1, 2, 255, 256, 257, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, MAX_RC - 1, MAX_RC];
      const pickRc = (): number => (rng.chance(0.04) ? [MAX_RC + 1, -1, 0.5][rng.below(3)] : VALID_RC[rng.below(VALID_RC.length)]);
      const validRc = (rc: number): boolean => Number.isSafeInteger(rc) && rc >= 0;

      // ── checks ──────────────────────────────────────────────────────────────────────────────────
      const compareAll = (): void => {
        const order = both('keys()', (m) => [...m.keys()].map(hex).join(','));
        assert.is(order.length === 0 ? 0 : order.split(',').length, model.size, 'keys() count');
        for (const s of sides) {
          assert.is(s.map.size, model.size, `${label(s)}: size`);
          let n = 0;
          for (const [k, e] of s.map.entries()) {
            n++;
            const h = hex(k);
            const got = valueOf(e);
            if (got !== model.get(h)) assert.unreachable(`${label(s)}: entry ${h} is ${got?.slice(0, 200)}, the model has ${model.get(h)?.slice(0, 200)}`);
          }
          assert.is(n, model.size, `${label(s)}: entries visited`);
        }
      };

      const reopen = async (readOnly = false): Promise<void> => {
        for (const s of sides) s.map.close();
        // Replaced files are unmapped only when the event loop turns.
        await setImmediate();
        for (const s of sides) {
          s.engine = s.engine === 'host' ? 'wasm' : 'host';
          s.map = new BucketMap({ ...configFor(s.engine, s.files), ...(readOnly ? { readOnly } : {}) });
        }
        compareAll();
        for (const s of sides) {
          const report = s.map.verify();
          assert.ok(report.ok, `${label(s)}: verify found ${JSON.stringify(report.problems.slice(0, 3))}`);
        }
      };

      // ── steps ───────────────────────────────────────────────────────────────────────────────────
      const insertStep = (): void => {
        const key = pickKey();
        const h = hex(key);
        const list = pickList();
        const rc = pickRc();
        const how = rng.below(3);
        doing = ['insert', 'set', 'update'][how];
        const call = (m: BucketMap<unknown>): unknown => {
          if (how === 0) return m.insert(key, list.values, rc);
          if (how === 1) return m.set(key, [list.values, rc]) === m;
          let seen: string | undefined;
          m.update(key, (current) => ((seen = valueOf(current)), [list.values, rc]));
          return seen;
        };
        if (list.bytes.length > maxSlots || !validRc(rc)) {
          const err = thrownBy(() => both(doing, call));
          assert.instance(err, RangeError, `${doing} of ${list.bytes.length} elements, refCount ${rc}`);
          assert.is(both('readValue', (m) => valueOf(m.readValue(key))), model.get(h), `a refused ${doing} wrote nothing`);
          return;
        }
        const got = bothOr(doing, call);
        if (got instanceof BucketMapError) {
          assert.is(both('readValue', (m) => valueOf(m.readValue(key))), model.get(h), `${doing} stopped by maxBytes wrote nothing`);
          return;
        }
        if (how === 2) assert.is(got, model.get(h), 'update saw');
        model.set(h, entryValue(list.bytes, rc));
      };

      const adjustStep = (): void => {
        const key = pickKey();
        const h = hex(key);
        const delta = rng.chance(0.5) ? 1 : -1;
        doing = delta > 0 ? 'addref' : 'unref';
        const entry = listed(h);
        // Now and then put the entry at an edge first, so the adjustment crosses it.
        if (entry !== undefined && rng.chance(0.3)) {
          const rc = [0, 1, 256, 257, 2 ** 32 - 1, 2 ** 32, MAX_RC][rng.below(7)];
          const all = new Uint8Array(Buffer.from(entry.bytes, 'hex'));
          const values = Array.from({ length: entry.n }, (_x, i) => from(all.subarray(i * size, (i + 1) * size)));
          if (bothOr('insert at an edge refCount', (m) => m.insert(key, values, rc)) instanceof BucketMapError) return;
          entry.rc = rc;
          model.set(h, withRc(entry, rc));
        }
        const call = (m: BucketMap<unknown>): number | undefined => (delta > 0 ? m.addref(key) : m.unref(key));
        if (entry !== undefined && entry.rc === (delta > 0 ? MAX_RC : 0)) {
          const err = thrownBy(() => both(doing, call));
          assert.instance(err, BucketMapError, `${doing} at refCount ${entry.rc}`);
          assert.is(err!.code, delta > 0 ? codes.REFCOUNT_OVERFLOW : codes.REFCOUNT_UNDERFLOW);
        } else {
          const got = bothOr(doing, call);
          if (!(got instanceof BucketMapError)) {
            assert.is(got, entry === undefined ? undefined : entry.rc + delta, doing);
            if (entry !== undefined) model.set(h, withRc(entry, entry.rc + delta));
          }
        }
        assert.is(both('readValue', (m) => valueOf(m.readValue(key))), model.get(h), `readValue after ${doing}`);
      };

      const readStep = (): void => {
        const key = pickKey();
        const h = hex(key);
        const op = rng.below(4);
        if (op === 0) {
          doing = 'readValue';
          assert.is(both(doing, (m) => valueOf(m.readValue(key))), model.get(h), doing);
        } else if (op === 1) {
          doing = 'has';
          assert.is(both(doing, (m) => m.has(key)), model.has(h), doing);
        } else {
          doing = 'readInto';
          const entry = listed(h);
          const need = entry === undefined ? 0 : entry.n * size;
          const offset = rng.below(3);
          const length = offset + need + (need > 0 && rng.chance(0.15) ? -1 : rng.below(3));
          const read = (m: BucketMap<unknown>): string => {
            const target = new Uint8Array(length).fill(0xaa);
            const n = m.readInto(key, target, offset);
            return `${n} ${n >= 0 ? m.lastRefCount : ''} ${hex(target)}`;
          };
          if (length < offset + need) {
            assert.instance(thrownBy(() => both(doing, read)), RangeError, 'readInto into a target a byte short');
            return;
          }
          const target = new Uint8Array(length).fill(0xaa);
          if (entry !== undefined) target.set(Buffer.from(entry.bytes, 'hex'), offset);
          assert.is(both(doing, read), `${entry === undefined ? -1 : entry.n} ${entry === undefined ? '' : entry.rc} ${hex(target)}`, doing);
        }
      };

      const deleteStep = (): void => {
        doing = 'deleteKey';
        const key = pickKey();
        const h = hex(key);
        assert.is(both(doing, (m) => m.deleteKey(key)), model.has(h), doing);
        model.delete(h);
      };

      /**
       * After a batch of distinct keys stopped by the ceiling: keys 0..p hold what the batch wrote,
       * keys p.. what they held before, for one p. The model takes that state.
       */
      const settlePrefix = (batch: Uint8Array[], written: Array<string | undefined>): void => {
        const now = both('getMany', (m) => m.getMany(batch).map(valueOf));
        let p = 0;
        while (p < batch.length && now[p] === written[p]) p++;
        for (let i = p; i < batch.length; i++) assert.is(now[i], model.get(hex(batch[i])), `${doing} stopped by maxBytes at keys[${p}] changed keys[${i}]`);
        for (let i = 0; i < p; i++) if (written[i] !== undefined) model.set(hex(batch[i]), written[i] as string);
      };

      const batchStep = (): void => {
        // Now and then a burst of keys aimed at one home cell of the anchor's bucket as it is now,
        // enough to overflow a window of up to 68 cells while the bucket is far from full: the
        // bucket must reseed (maxSearch 16 and up) or grow, the same way on both engines. maxSearch
        // 1 and 2 would need an index of some hundred thousand cells to part them, so they get
        // their aimed keys one at a time.
        const anchor = anchors[rng.below(anchors.length)];
        const now = aimOf(anchor);
        const burst = d.maxSearch >= 4 && now.capacity <= 20000 && rng.chance(0.05);
        const home = rng.below(now.capacity);
        const drawn = burst
          ? Array.from({ length: 30 + rng.below(40) }, () => {
            const k = aimed(anchor, now, home);
            keys.push(k);
            return k;
          })
          : Array.from({ length: 1 + rng.below(12) }, pickKey);
        // Distinct keys under a ceiling, so that what a stopped batch wrote is a plain leading run.
        const batch = d.maxBytes === undefined ? drawn : [...new Map(drawn.map((k) => [hex(k), k])).values()];
        const kind = burst ? 1 : rng.below(4);
        if (kind === 0) {
          doing = 'getMany';
          assert.equal(both(doing, (m) => m.getMany(batch).map(valueOf)), batch.map((k) => model.get(hex(k))), doing);
        } else if (kind === 1) {
          doing = 'insertMany';
          const lists = batch.map(() => {
            const l = pickList();
            return l.bytes.length > maxSlots ? { bytes: [], values: [] } : l;
          });
          const rcs = batch.map(() => VALID_RC[rng.below(VALID_RC.length)]);
          // Under a ceiling the batch may stop part way: a leading run of its keys written, none after.
          if (bothOr(doing, (m) => m.insertMany(batch, lists.map((l) => l.values), rcs)) instanceof BucketMapError) {
            settlePrefix(batch, batch.map((_k, i) => entryValue(lists[i].bytes, rcs[i])));
            return;
          }
          batch.forEach((k, i) => model.set(hex(k), entryValue(lists[i].bytes, rcs[i])));
        } else {
          const delta = kind === 2 ? 1 : -1;
          doing = delta > 0 ? 'addrefMany' : 'unrefMany';
          const out = new Float64Array(batch.length);
          const changed = new Map<string, { bytes: string; n: number; rc: number }>();
          const expected: number[] = [];
          let stop = -1;
          for (let i = 0; i < batch.length; i++) {
            const h = hex(batch[i]);
            const entry = changed.get(h) ?? listed(h);
            if (entry === undefined) {
              expected.push(-1);
              continue;
            }
            if (entry.rc === (delta > 0 ? MAX_RC : 0)) {
              stop = i;
              break;
            }
            changed.set(h, { ...entry, rc: entry.rc + delta });
            expected.push(entry.rc + delta);
          }
          const got = bothOr(doing, (m) => {
            out.fill(-7);
            try {
              return { present: delta > 0 ? m.addrefMany(batch, out) : m.unrefMany(batch, out), out: [...out] };
            } catch (err) {
              if (err instanceof BucketMapError && err.code !== codes.SIZE_LIMIT) return { code: err.code, out: [...out] };
              throw err;
            }
          });
          if (got instanceof BucketMapError) {
            settlePrefix(batch, batch.map((k) => {
              const entry = listed(hex(k));
              return entry === undefined ? undefined : withRc(entry, entry.rc + delta);
            }));
            return;
          }
          if (stop < 0) assert.is((got as { present: number }).present, expected.filter((rc) => rc >= 0).length, `${doing} count`);
          else assert.is((got as { code: string }).code, delta > 0 ? codes.REFCOUNT_OVERFLOW : codes.REFCOUNT_UNDERFLOW, `${doing} past the range`);
          assert.equal(got.out.slice(0, expected.length), expected, `${doing} refCounts`);
          for (const [h, entry] of changed) model.set(h, withRc(entry, entry.rc));
        }
      };

      const upkeepStep = (): void => {
        const op = rng.below(4);
        if (op === 0) {
          doing = 'compact';
          // Deterministic over the index; what it frees in data files depends on each engine's placement.
          const options = rng.chance(0.5) ? {} : { load: 0.5 + rng.below(40) / 100 };
          for (const s of sides) s.map.compact(options);
        } else if (op === 1) {
          doing = 'Bucket.setAnticipatedCount';
          const k = keys[rng.below(keys.length)];
          const count = rng.below(200);
          bothOr(doing, (m) => m.getBucket(k).setAnticipatedCount(count));
        } else {
          doing = 'flush';
          both(doing, (m) => m.flush());
        }
      };

      const swapAt = 1 + rng.below(STEPS);
      for (step = 1; step <= STEPS; step++) {
        const r = rng.below(100);
        if (r < 35) insertStep();
        else if (r < 55) adjustStep();
        else if (r < 72) readStep();
        else if (r < 80) deleteStep();
        else if (r < 97) batchStep();
        else upkeepStep();
        if (step === swapAt) {
          doing = "reopen with the other engine on each map's files";
          await reopen();
        }
        if (step % 200 === 0) {
          doing = 'full comparison';
          compareAll();
          await setImmediate();
        }
      }
      doing = 'final comparison';
      compareAll();
      doing = "final reopen with the other engine on each map's files";
      await reopen();
      doing = "read-only reopen with the other engine on each map's files";
      await reopen(true);
    } catch (err) {
      if (err instanceof Error) err.message = `${err.message}\n(${describe(d)}; step ${step}: ${doing})`;
      throw err;
    } finally {
      testHooks.fixedSeed = null;
      testHooks.seedSource = null;
      for (const s of sides) thrownBy(() => s.map.close());
      removeDir(dir);
    }
  }, seed);
}

const test = suite('both engines in lockstep at the edges of configuration and values');
const seed = testSeed();
for (let i = 0; i < RUNS; i++) {
  // Run 0 takes the seed itself, so the TEST_SEED a failure prints reproduces it.
  const runSeed = (seed + i * 0x9e3779b9) >>> 0;
  test(`run ${i} (seed ${runSeed})`, () => run(runSeed));
}
test.run();
