// Runs the core's as-pect specs and the host's uvu tests, streaming their output, and ends with
// one line counting both ("N passed, N failed"), which neither runner prints on its own.
// Exit code: 0 only if both runners ran and nothing failed.
import { spawn } from 'node:child_process';
import * as path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const bin = (name) => path.join(root, 'node_modules', '.bin', name);
const strip = (text) => text.replace(/\x1b\[[0-9;]*m/g, '');

function run(command, args) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: root, env: { ...process.env, FORCE_COLOR: '0' } });
    let output = '';
    child.stdout.on('data', (chunk) => { output += chunk; process.stdout.write(chunk); });
    child.stderr.on('data', (chunk) => { output += chunk; process.stderr.write(chunk); });
    child.on('close', (status) => resolve({ output: strip(output), status }));
  });
}

function coreCounts({ output, status }) {
  const m = /\[Tests\]:\s*(\d+)\s*\/\s*(\d+)/.exec(output);
  if (m === null) return { passed: 0, failed: 1, ok: false, why: 'as-pect printed no test summary (compile error?)' };
  const passed = Number(m[1]);
  const failed = Number(m[2]) - passed;
  return { passed, failed, ok: status === 0 && failed === 0 };
}

function hostCounts({ output, status }) {
  const total = /Total:\s+(\d+)/.exec(output);
  const passed = /Passed:\s+(\d+)/.exec(output);
  if (total === null || passed === null) return { passed: 0, failed: 1, ok: false, why: 'uvu printed no totals' };
  const p = Number(passed[1]);
  const f = Number(total[1]) - p;
  return { passed: p, failed: f, ok: status === 0 && f === 0 };
}

const core = coreCounts(await run(bin('asp'), ['--summary', '--no-logo']));
const host = hostCounts(await run(bin('uvu'), ['build/tests', '\\.test\\.js$']));
for (const [name, r] of [['as-pect', core], ['uvu', host]]) if (r.why) console.error(`${name}: ${r.why}`);
console.log(`\ncore (as-pect): ${core.passed} passed, ${core.failed} failed; host (uvu): ${host.passed} passed, ${host.failed} failed`);
console.log(`${core.passed + host.passed} passed, ${core.failed + host.failed} failed`);
process.exit(core.ok && host.ok ? 0 : 1);
