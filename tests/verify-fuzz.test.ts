/**
 * Damaged copies of a small map checked by `BucketMap.verify` and the command line
 * (tests/verify-fuzz-worker.ts), in a child process so that a SIGBUS or SIGSEGV fails the test and
 * names its case. VERIFY_FUZZ_CASES sets the number of cases (default 200), TEST_SEED the seed.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { removeDir, tempDir, testSeed } from './helpers.js';

const CASES = Number(process.env.VERIFY_FUZZ_CASES ?? 200);
const WORKER = new URL('./verify-fuzz-worker.js', import.meta.url).pathname;

test(`${CASES} damaged copies: verify changes nothing, and fails with a BucketMapError, reports the damage, or says ok of a map that opens whole`, () => {
  const dir = tempDir('bm-verify-fuzz-');
  const seed = testSeed();
  try {
    const child = spawnSync(process.execPath, [WORKER, dir, '0', String(CASES), String(seed)], { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    const lines = child.stdout.trim().split('\n');
    const last = lines[lines.length - 1] ?? '';
    if (!last.startsWith('RESULT ')) {
      assert.unreachable(`the worker died (${child.signal ?? `exit ${child.status}`}) during "${last}"\n${child.stderr}\n(reproduce with TEST_SEED=${seed})`);
    }
    const { outcomes, failures } = JSON.parse(last.slice(7)) as { outcomes: Record<string, number>; failures: string[] };
    const line = Object.entries(outcomes).map(([k, v]) => `${k} ${v}`).join(', ');
    console.log(`    verify fuzz: ${CASES} cases (seed ${seed}): ${line}`);
    assert.is(failures.length, 0, `${failures.slice(0, 5).join('\n')}\n(reproduce with TEST_SEED=${seed})`);
    assert.ok((outcomes.refused ?? 0) > 0 && (outcomes.reported ?? 0) > 0 && (outcomes.ok ?? 0) > 0, `every verdict met: ${line}`);
  } finally {
    removeDir(dir);
  }
});

test.run();
