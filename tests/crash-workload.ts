/**
 * The seeded operation sequence shared by the crash worker and the test that checks it, and the
 * model of what each operation does to the map, replayed by the test from the state the worker
 * started from. The fuzz worker runs it too, on the keys of each damaged map it opens.
 */
import { BucketMap, BucketMapError, codes } from '../host/index.js';
import { Rng, entryValue, hex, packKeys } from './helpers.js';

export interface CrashEntry { key: Uint8Array; list: Uint8Array[]; refCount: number }

export type CrashOp =
  | ({ kind: 'insert' | 'update' } & CrashEntry)
  | { kind: 'delete' | 'addref' | 'unref'; key: Uint8Array }
  /** One call for the whole batch; `packed` passes the keys in one buffer instead of an array. */
  | { kind: 'insertMany'; entries: CrashEntry[]; packed: boolean }
  | { kind: 'deleteMany' | 'addrefMany' | 'unrefMany'; keys: Uint8Array[]; packed: boolean }
  /** compact() at `load`: changes no entry, only which files hold them. */
  | { kind: 'compact'; load: number }
  /** setAnticipatedCount(total): grows files now, changes no entry. */
  | { kind: 'anticipate'; total: number };

/** Keys come from a fixed pool so that runs update and delete what earlier runs wrote. */
const POOL = (() => {
  const rng = new Rng(0xc0ffee);
  return Array.from({ length: 6000 }, () => rng.key());
})();

function entry(rng: Rng, key: Uint8Array): CrashEntry {
  const list = Array.from({ length: rng.below(5) }, () => rng.bytes(16));
  // Mostly 1 (an inline refCount); 0 and 2–3 too, so that unref and addref cross between the
  // inline form and a data cell.
  const refCount = rng.chance(0.6) ? 1 : rng.below(4);
  return { key, list, refCount };
}

/** `ops` operations drawn from `seed`, on keys from `pool` (by default a fixed pool of 6,000). */
export function* crashWorkload(seed: number, ops: number, pool: readonly Uint8Array[] = POOL): Generator<CrashOp> {
  const rng = new Rng(seed);
  const poolKey = (): Uint8Array => pool[rng.below(pool.length)];
  // Batches may list a key twice: each call applies its keys in order.
  const batch = (): Uint8Array[] => Array.from({ length: 1 + rng.below(32) }, poolKey);
  for (let i = 0; i < ops; i++) {
    if (rng.chance(1 / 3000)) {
      yield { kind: 'compact', load: 0.5 + rng.below(41) / 100 };
      continue;
    }
    if (rng.chance(1 / 3000)) {
      yield { kind: 'anticipate', total: 1000 + rng.below(20000) };
      continue;
    }
    const r = rng.below(100);
    const packed = rng.chance(0.5);
    if (r < 14) yield { kind: 'delete', key: poolKey() };
    else if (r < 56) yield { kind: 'insert', ...entry(rng, poolKey()) };
    else if (r < 70) yield { kind: 'update', ...entry(rng, poolKey()) };
    else if (r < 78) yield { kind: 'addref', key: poolKey() };
    else if (r < 84) yield { kind: 'unref', key: poolKey() };
    else if (r < 90) yield { kind: 'insertMany', entries: batch().map((key) => entry(rng, key)), packed };
    else if (r < 93) yield { kind: 'deleteMany', keys: batch(), packed };
    else if (r < 97) yield { kind: 'addrefMany', keys: batch(), packed };
    else yield { kind: 'unrefMany', keys: batch(), packed };
  }
}

/** unref at refCount 0 is refused, changing nothing (a batch keeps the keys before it changed). */
function refusingUnderflow(call: () => unknown): void {
  try {
    call();
  } catch (err) {
    if (!(err instanceof BucketMapError && err.code === codes.REFCOUNT_UNDERFLOW)) throw err;
  }
}

/** Runs `op` on `map` through the public API, as applyCrashOp models it. */
export function runCrashOp(map: BucketMap, op: CrashOp): void {
  const keysOf = (keys: Uint8Array[], packed: boolean): Uint8Array | Uint8Array[] => (packed ? packKeys(keys) : keys);
  switch (op.kind) {
    case 'insert': map.insert(op.key, op.list, op.refCount); break;
    case 'update': map.update(op.key, () => [op.list, op.refCount]); break;
    case 'delete': map.deleteKey(op.key); break;
    case 'addref': map.addref(op.key); break;
    case 'unref': refusingUnderflow(() => map.unref(op.key)); break;
    case 'insertMany':
      map.insertMany(keysOf(op.entries.map((e) => e.key), op.packed), op.entries.map((e) => e.list), op.entries.map((e) => e.refCount));
      break;
    case 'deleteMany': map.deleteMany(keysOf(op.keys, op.packed)); break;
    case 'addrefMany': map.addrefMany(keysOf(op.keys, op.packed)); break;
    case 'unrefMany': refusingUnderflow(() => map.unrefMany(keysOf(op.keys, op.packed))); break;
    case 'compact': map.compact({ load: op.load }); break;
    case 'anticipate': map.setAnticipatedCount(op.total);
  }
}

function withRefCount(value: string, delta: number): string | null {
  const [list, refCount] = JSON.parse(value) as [string[], number];
  // unref at 0 throws BUCKET_MAP_REFCOUNT_UNDERFLOW and changes nothing.
  return refCount + delta < 0 ? null : JSON.stringify([list, refCount + delta]);
}

/**
 * Applies `op` to `model` (hex key → entryValue) as the map applies it, and returns each key it
 * changed with the value it left, in order. The worker's unref calls throw at refCount 0 and it
 * carries on; a batched unref stops at that key, with the keys before it changed.
 */
export function applyCrashOp(model: Map<string, string>, op: CrashOp): Array<[string, string | undefined]> {
  const changes: Array<[string, string | undefined]> = [];
  const put = (k: string, v: string | undefined): void => {
    if (v === undefined) model.delete(k);
    else model.set(k, v);
    changes.push([k, v]);
  };
  const adjust = (key: Uint8Array, delta: number): boolean => {
    const k = hex(key);
    const v = model.get(k);
    if (v === undefined) return true;
    const next = withRefCount(v, delta);
    if (next === null) return false;
    put(k, next);
    return true;
  };
  switch (op.kind) {
    case 'insert': case 'update': put(hex(op.key), entryValue(op.list, op.refCount)); break;
    case 'delete': if (model.has(hex(op.key))) put(hex(op.key), undefined); break;
    case 'addref': adjust(op.key, 1); break;
    case 'unref': adjust(op.key, -1); break;
    case 'insertMany': for (const e of op.entries) put(hex(e.key), entryValue(e.list, e.refCount)); break;
    case 'deleteMany': for (const key of op.keys) if (model.has(hex(key))) put(hex(key), undefined); break;
    case 'addrefMany': for (const key of op.keys) adjust(key, 1); break;
    case 'unrefMany': for (const key of op.keys) if (!adjust(key, -1)) break; break;
    case 'compact': case 'anticipate': break;
  }
  return changes;
}

/**
 * The host path's Table methods that each make one group of stores to the mappings (host/table.ts):
 * a cell moved in a shift, a written cell made live, a data cell written or freed, a journaled
 * update. The step-by-step crash test kills before a call of each.
 */
export const TABLE_STORE_GROUPS = ['moveBetween', 'publishAt', 'writeData', 'freeData', 'journaledUpdate'] as const;

/** How many operations of stepWorkload the step-by-step crash worker runs between two flushes. */
export const STEP_FLUSH_EVERY = 60;

/**
 * A short script for the step-by-step crash test: random operations with a presize and a
 * compaction at fixed places, so that every kind of file change (first files, growth of index
 * and data files, a presize, a compaction) happens in a few hundred operations.
 */
export function* stepWorkload(seed: number): Generator<CrashOp> {
  yield* crashWorkload(seed, 300);
  yield { kind: 'anticipate', total: 2500 };
  yield* crashWorkload(seed + 1, 300);
  yield { kind: 'compact', load: 0.6 };
  yield* crashWorkload(seed + 2, 150);
}

/** What a map killed part-way through `ops` (run on a map holding `base`) may hold, key by key. */
export interface KillExpectation {
  /** Each key's value at the last completed flush (after `lastFlush` operations). */
  atFlush: Map<string, string>;
  /** Each key's value after the `lastAt` operations known to be done. */
  atReport: Map<string, string>;
  /** Every value each key was given from the last flush on (undefined: deleted). */
  later: Map<string, Set<string | undefined>>;
  /** The index of the last operation that changed each key. */
  lastTouch: Map<string, number>;
}

export function expectAfterKill(base: Map<string, string>, ops: readonly CrashOp[], lastFlush: number, lastAt: number): KillExpectation {
  const model = new Map(base);
  const atFlush = new Map(base);
  const atReport = new Map(base);
  const lastTouch = new Map<string, number>();
  const later = new Map<string, Set<string | undefined>>();
  ops.forEach((op, i) => {
    for (const [k, v] of applyCrashOp(model, op)) {
      if (i < lastFlush) v === undefined ? atFlush.delete(k) : atFlush.set(k, v);
      if (i < lastAt) v === undefined ? atReport.delete(k) : atReport.set(k, v);
      if (i >= lastFlush) (later.get(k) ?? later.set(k, new Set()).get(k)!).add(v);
      lastTouch.set(k, i);
    }
  });
  return { atFlush, atReport, later, lastTouch };
}

/**
 * The first key of `got` (a reopened map's content) that breaks the crash promise: a value the key
 * never had since the last flush, or a change completed before the kill (`lastAt`) that is lost.
 */
export function brokenPromise(got: Map<string, string>, expected: KillExpectation, lastAt: number): { key: string; why: string } | null {
  const { atFlush, atReport, later, lastTouch } = expected;
  for (const k of new Set([...got.keys(), ...atFlush.keys(), ...later.keys()])) {
    const g = got.get(k);
    if (g !== atFlush.get(k) && !(later.get(k)?.has(g) ?? false)) return { key: k, why: `reads ${g?.slice(0, 30)}, a value it never had since the last flush` };
    if ((lastTouch.get(k) ?? -1) < lastAt && g !== atReport.get(k)) return { key: k, why: `reads ${g?.slice(0, 30)}: a completed change to ${atReport.get(k)?.slice(0, 30)} is lost` };
  }
  return null;
}
