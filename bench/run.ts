/**
 * `npm run bench`: runs every chosen store K times, each run in a fresh worker process, one at a
 * time (the machine has two cores; parallel runs would measure each other), then writes
 * RESULTS.md, results.svg and results.json (results-<N>.* for a non-default N).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseOptions, USAGE, type Options } from './options.js';
import { STORES } from './stores/index.js';
import { describeMachine, packageVersion, bucketMapVersion } from './machine.js';
import { summarise } from './summary.js';
import { renderMarkdown, resultsFile, runLabel, writeJson, writeMarkdown, type Failure, type Report, type StoreReport } from './report.js';
import { renderSvg } from './svg.js';
import { snapshotBuild } from './snapshot.js';
import type { RunResult } from './result.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** build/bench/run.js → the repository root. */
const root = path.resolve(here, '..', '..');

interface WorkerOutcome {
  result: RunResult | null;
  failure: string | null;
}

function runWorker(workerScript: string, args: { store: string; n: number; seed: number; dir: string; run: number; cold: boolean }): Promise<WorkerOutcome> {
  return new Promise((resolve) => {
    // A large heap limit only matters to js-map at 10M+ keys; every worker gets the same flags.
    const child = spawn(process.execPath, ['--expose-gc', '--max-old-space-size=16384', workerScript, JSON.stringify(args)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    const stderrTail: string[] = [];
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      process.stderr.write(d);
      stderrTail.push(...d.split('\n').filter((l) => l.length > 0));
      stderrTail.splice(0, Math.max(0, stderrTail.length - 20));
    });
    child.on('error', (err) => resolve({ result: null, failure: `could not start the worker: ${err.message}` }));
    child.on('close', (code, signal) => {
      const last = stdout.trim().split('\n').pop() ?? '';
      try {
        const parsed = JSON.parse(last) as { kind?: string; message?: string };
        if (parsed.kind === 'bench-result' && code === 0) return resolve({ result: parsed as RunResult, failure: null });
        if (parsed.kind === 'bench-error') return resolve({ result: null, failure: parsed.message ?? 'unknown error' });
      } catch {
        // Not JSON: the worker died before printing its result; report how.
      }
      const how = signal !== null ? `killed by ${signal}` : `exited with code ${code}`;
      resolve({ result: null, failure: `worker ${how}; last output: ${stderrTail.slice(-5).join(' / ') || '(none)'}` });
    });
  });
}

function commandLine(o: Options): string {
  const parts = ['npm run bench --'];
  parts.push(`--n ${o.n}`, `--runs ${o.runs}`);
  if (o.stores.length !== STORES.length) parts.push(`--stores ${o.stores.join(',')}`);
  parts.push(`--seed 0x${o.seed.toString(16)}`);
  if (!o.cold) parts.push('--no-cold');
  return parts.join(' ');
}

async function main(): Promise<void> {
  let options: Options | 'help';
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  if (options === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const o = options;
  const outDir = path.resolve(o.out ?? (o.quick ? path.join(root, 'bench', 'out') : path.join(root, 'bench')));
  fs.mkdirSync(outDir, { recursive: true });
  if (o.fromJson !== null) {
    rerender(o.fromJson, outDir);
    return;
  }
  const tmpRoot = fs.mkdtempSync(path.join(o.tmp ?? os.tmpdir(), 'bucket-map-bench-'));
  const snapshot = snapshotBuild(path.dirname(here), path.join(root, 'bench', 'out'));
  const workerScript = path.join(snapshot.dir, 'bench', 'worker.js');
  const cleanup = (): void => {
    fs.rmSync(tmpRoot, { recursive: true, force: true });
    fs.rmSync(snapshot.dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  // Versions are taken now: the checkout may move on while the runs go.
  const versions = new Map(o.stores.map((name) => {
    const spec = STORES.find((s) => s.name === name)!;
    const version = spec.pkg === 'bucket-map' ? bucketMapVersion(root, snapshot.fingerprint)
      : spec.pkg === '' ? `Node ${process.version}` : packageVersion(root, spec.pkg);
    return [name, version];
  }));
  const machine = describeMachine(tmpRoot);
  process.stderr.write(`bench: N=${o.n.toLocaleString('en-US')}, ${o.runs} run(s), seed 0x${o.seed.toString(16)}, stores ${o.stores.join(', ')}\n` +
    `bench: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}; store files under ${tmpRoot}; results into ${outDir}\n`);

  const collected = new Map<string, { runs: RunResult[]; failures: Failure[] }>(o.stores.map((s) => [s, { runs: [], failures: [] }]));
  const started = Date.now();
  const loadAtStart = os.loadavg()[0];
  try {
    // Runs are interleaved (all stores, then all stores again) so slow drift of the machine spreads evenly.
    for (let run = 1; run <= o.runs; run++) {
      for (const store of o.stores) {
        const dir = path.join(tmpRoot, `${store}-${run}`);
        fs.mkdirSync(dir);
        const elapsed = ((Date.now() - started) / 1000).toFixed(0);
        process.stderr.write(`bench: run ${run}/${o.runs}, ${store} (${elapsed} s so far)\n`);
        // The run's folder stays until every run is done (cleanup() removes them all): on ext4
        // without a journal, as on this project's VM, a file created within a minute of another's
        // deletion skips each recently freed inode, so deleting a run's files here could make the
        // next run's creates far slower than a user's (bench/RESULTS.md, (c)).
        const outcome = await runWorker(workerScript, { store, n: o.n, seed: o.seed, dir, run, cold: o.cold });
        const c = collected.get(store)!;
        if (outcome.result !== null) c.runs.push(outcome.result);
        else {
          c.failures.push({ run, message: outcome.failure ?? 'unknown' });
          process.stderr.write(`bench: ${store} run ${run} FAILED: ${outcome.failure}\n`);
        }
      }
    }
  } finally {
    cleanup();
  }

  const stores: StoreReport[] = o.stores.map((name) => {
    const spec = STORES.find((s) => s.name === name)!;
    const c = collected.get(name)!;
    return { name, version: versions.get(name)!, persistent: spec.persistent, notes: spec.notes, runs: c.runs, failures: c.failures, summary: summarise(c.runs) };
  });
  const report: Report = {
    generated: new Date().toISOString(),
    command: commandLine(o),
    options: { n: o.n, runs: o.runs, seed: o.seed, stores: o.stores, cold: o.cold },
    machine,
    loadAverage: { start: loadAtStart, end: os.loadavg()[0] },
    stores,
  };
  writeJson(path.join(outDir, resultsFile(o.n, 'json', o.stores)), report);
  writeReports(report, outDir, `RESULTS.md, ${resultsFile(o.n, 'svg', o.stores)} and ${resultsFile(o.n, 'json', o.stores)}`);
  if (stores.some((s) => s.failures.length > 0)) process.exitCode = 1;
}

function writeReports(report: Report, outDir: string, written: string): void {
  const markdown = renderMarkdown(report);
  const { n, stores } = report.options;
  writeMarkdown(path.join(outDir, 'RESULTS.md'), runLabel(n, stores), markdown);
  fs.writeFileSync(path.join(outDir, resultsFile(n, 'svg', stores)), renderSvg(report));
  process.stdout.write(`${markdown}\n\nbench: wrote ${written} in ${outDir}\n`);
}

/** Renders the reports again from a saved results.json, recomputing the summaries from its raw runs. */
function rerender(jsonFile: string, outDir: string): void {
  const report = JSON.parse(fs.readFileSync(jsonFile, 'utf8')) as Report;
  for (const s of report.stores) s.summary = summarise(s.runs);
  writeReports(report, outDir, `RESULTS.md and ${resultsFile(report.options.n, 'svg', report.options.stores)}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
