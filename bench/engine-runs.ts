/**
 * What the scripts that run bucket-map alone (direct.ts, scale.ts) share: each run of each engine
 * in a fresh process of the same script, on a private copy of the build (so a rebuild meanwhile
 * cannot change what is measured), in a temporary folder removed after it. The script's child
 * takes its arguments as one JSON string and prints its result as one JSON line.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { bucketMapVersion, describeMachine, type Machine } from './machine.js';
import { snapshotBuild } from './snapshot.js';

export type Engine = 'host' | 'wasm';

export interface EngineRuns<R, E extends string = Engine> {
  /** The results of each engine (or store), in run order. */
  results: Map<E, R[]>;
  root: string;
  version: string;
  machine: Machine;
  started: Date;
}

export function parseEngines(text: string): Engine[] {
  const engines = text.split(',');
  for (const e of engines) if (e !== 'host' && e !== 'wasm') throw new RangeError(`--engines: unknown engine ${e}`);
  return engines as Engine[];
}

/** `--buckets`: maxBuckets, a power of two from 1 to 65,536. */
export function parseBuckets(text: string): number {
  const buckets = Number(text);
  if (!Number.isInteger(buckets) || buckets < 1 || buckets > 65536 || (buckets & (buckets - 1)) !== 0) {
    throw new RangeError('--buckets must be a power of two from 1 to 65536');
  }
  return buckets;
}

export function parseRuns(text: string): number {
  const runs = Number(text);
  if (!Number.isSafeInteger(runs) || runs < 1) throw new RangeError('--runs must be a positive integer');
  return runs;
}

/**
 * Runs `script` (the calling module's URL) once per run and engine, engines interleaved within
 * each run; `args(engine, dir)` gives the child its arguments, `dir` a fresh folder for its files.
 */
export function runEngines<R, E extends string = Engine>(scriptUrl: string, name: string, runs: number, engines: E[], tmpParent: string,
  args: (engine: E, dir: string) => object, progress: (run: number, engine: E) => string): EngineRuns<R, E> {
  const here = fileURLToPath(scriptUrl);
  const root = path.resolve(path.dirname(here), '..', '..');
  const snapshot = snapshotBuild(path.dirname(path.dirname(here)), path.join(root, 'bench', 'out'));
  const script = path.join(snapshot.dir, 'bench', path.basename(here));
  const version = bucketMapVersion(root, snapshot.fingerprint);
  const tmp = fs.mkdtempSync(path.join(tmpParent, `bucket-map-${name}-`));
  const machine = describeMachine(tmp);
  const started = new Date();
  const results = new Map<E, R[]>(engines.map((e) => [e, []]));
  try {
    for (let run = 1; run <= runs; run++) {
      for (const engine of engines) {
        const dir = path.join(tmp, `${engine}-${run}`);
        // Kept until the last run (the finally below), for the reason run.ts gives.
        fs.mkdirSync(dir);
        process.stderr.write(`${progress(run, engine)}\n`);
        const stdout = execFileSync(process.execPath, [script, JSON.stringify(args(engine, dir))], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 });
        results.get(engine)!.push(JSON.parse(stdout) as R);
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.rmSync(snapshot.dir, { recursive: true, force: true });
  }
  return { results, root, version, machine, started };
}

/** The script's entry point: a child when given one JSON argument, else the parent. */
export function scriptMain<A, R>(name: string, child: (a: A) => Promise<R>, parent: (argv: string[]) => void): void {
  const argv = process.argv.slice(2);
  const main = async (): Promise<void> => {
    if (argv.length === 1 && argv[0].startsWith('{')) {
      process.stdout.write(JSON.stringify(await child(JSON.parse(argv[0]) as A)) + '\n');
    } else {
      parent(argv);
    }
  };
  main().catch((err: unknown) => {
    process.stderr.write(`${name}: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
}
