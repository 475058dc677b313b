/** The seeded operation sequence shared by the crash worker and the test that checks it. */
import { Rng } from './helpers.js';

export type CrashOp =
  | { kind: 'insert' | 'update'; key: Uint8Array; list: Uint8Array[]; refCount: number }
  | { kind: 'delete'; key: Uint8Array }
  /** compact() at `load`: changes no entry, only which files hold them. */
  | { kind: 'compact'; load: number };

/** Keys come from a fixed pool so that runs update and delete what earlier runs wrote. */
const POOL = (() => {
  const rng = new Rng(0xc0ffee);
  return Array.from({ length: 6000 }, () => rng.key());
})();

export function* crashWorkload(seed: number, ops: number): Generator<CrashOp> {
  const rng = new Rng(seed);
  for (let i = 0; i < ops; i++) {
    if (rng.chance(1 / 3000)) {
      yield { kind: 'compact', load: 0.5 + rng.below(41) / 100 };
      continue;
    }
    const key = POOL[rng.below(POOL.length)];
    const r = rng.below(10);
    if (r < 2) {
      yield { kind: 'delete', key };
      continue;
    }
    const list = Array.from({ length: rng.below(5) }, () => rng.bytes(16));
    const refCount = rng.chance(0.6) ? 1 : rng.below(4);
    yield { kind: r < 8 ? 'insert' : 'update', key, list, refCount };
  }
}
