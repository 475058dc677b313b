import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { storeSpec } from '../bench/stores/index.js';

// lmdb-nosync is the peer with bucket-map's durability (the kernel writes the files back, nothing
// is flushed per commit): its runs must pass every check of the workload like any other store's.

const worker = fileURLToPath(new URL('../bench/worker.js', import.meta.url));

test('bench store lmdb-nosync: a worker run passes every phase and check, and the report says noSync', () => {
  const spec = storeSpec('lmdb-nosync');
  assert.ok(spec.persistent);
  assert.match(spec.notes, /noSync: true/);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-stores-'));
  try {
    const out = execFileSync(process.execPath, ['--expose-gc', worker, JSON.stringify({ store: 'lmdb-nosync', n: 2_000, seed: 7, dir, run: 1, cold: false })],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const result = JSON.parse(out.trim().split('\n').pop()!) as { kind: string; message?: string; phases: Record<string, { ops: number }> };
    assert.is(result.kind, 'bench-result', result.message);
    for (const phase of ['insert', 'get', 'miss', 'update', 'delete', 'reopen', 'verify', 'mixed']) assert.ok(result.phases[phase] !== undefined, phase);
    assert.is(result.phases.verify.ops, 1_800);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
