/**
 * Fuzzing of every file kind: thousands of damaged copies of a valid map (tests/fuzz-worker.ts),
 * run in child processes so that a SIGBUS, SIGSEGV or hang fails the test and names its case.
 * FUZZ_CASES sets the number of cases (default 2,000), TEST_SEED the seed.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { BucketMap } from '../host/index.js';
import { Rng, removeDir, tempDir, testSeed } from './helpers.js';

const CASES = Number(process.env.FUZZ_CASES ?? 2000);
const WORKER = new URL('./fuzz-worker.js', import.meta.url).pathname;
const CHUNK = 500;

function pristineMap(dir: string): void {
  const rng = new Rng(77);
  const map = new BucketMap({ maxBuckets: 4, maxSearch: 8, engine: 'host', restartFile: path.join(dir, 'restart'), drives: [path.join(dir, 'drive')] });
  const keys: Uint8Array[] = [];
  for (let i = 0; i < 400; i++) {
    const key = rng.key();
    keys.push(key);
    const length = [0, 1, 1, 2, 3, 5][i % 6];
    map.insert(key, Array.from({ length }, () => rng.bytes(16)), i % 4 === 0 ? 2 : 1);
  }
  for (let i = 0; i < keys.length; i += 6) map.deleteKey(keys[i]);
  map.close();
}

test(`${CASES} damaged copies of a valid map: each is refused with a BucketMapError, or opens and is consistent or reported`, () => {
  const dir = tempDir('bm-fuzz-');
  const seed = testSeed();
  try {
    const pristine = path.join(dir, 'pristine');
    pristineMap(pristine);
    const totals: Record<string, number> = {};
    const failures: string[] = [];
    for (let first = 0; first < CASES; first += CHUNK) {
      const count = Math.min(CHUNK, CASES - first);
      const child = spawnSync(process.execPath, [WORKER, pristine, dir, String(first), String(count), String(seed)], {
        encoding: 'utf8', timeout: 180_000, maxBuffer: 64 * 1024 * 1024,
      });
      const lines = child.stdout.trim().split('\n');
      const last = lines[lines.length - 1] ?? '';
      if (!last.startsWith('RESULT ')) {
        const died = child.signal ?? `exit ${child.status}`;
        assert.unreachable(`the fuzz worker died (${died}) during "${last}"\n${child.stderr}\n(reproduce with TEST_SEED=${seed})`);
      }
      const result = JSON.parse(last.slice(7)) as { outcomes: Record<string, number>; failures: string[] };
      for (const [k, v] of Object.entries(result.outcomes)) totals[k] = (totals[k] ?? 0) + v;
      failures.push(...result.failures);
    }
    const line = Object.entries(totals).map(([k, v]) => `${k} ${v}`).join(', ');
    console.log(`    fuzz: ${CASES} cases (seed ${seed}): ${line}`);
    assert.is(failures.length, 0, `${failures.slice(0, 5).join('\n')}\n(reproduce with TEST_SEED=${seed})`);
    assert.ok((totals.refused ?? 0) > 0 && (totals.consistent ?? 0) + (totals.detected ?? 0) > 0, line);
  } finally {
    removeDir(dir);
  }
});

test.run();
