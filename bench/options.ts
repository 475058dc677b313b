/** Command-line options of `npm run bench` (node build/bench/run.js). */
import { DEFAULT_N, DEFAULT_SEED } from './workload.js';
import { STORES } from './stores/index.js';

export interface Options {
  n: number;
  runs: number;
  stores: string[];
  seed: number;
  quick: boolean;
  cold: boolean;
  /** Where RESULTS.md and the chart and JSON (results.* at the default N, results-<N>.* else) go; null = bench/ (or bench/out/ with --quick). */
  out: string | null;
  /** Parent folder of the per-run store folders. */
  tmp: string | null;
  /** Re-render RESULTS.md and results.svg from this results.json instead of running anything. */
  fromJson: string | null;
}

/** The value after `--name` in `argv`, or `fallback`: for the scripts with a few plain flags (demo, direct). */
export function flagValue(argv: readonly string[], name: string, fallback: string): string {
  const at = argv.indexOf(`--${name}`);
  return at >= 0 && at + 1 < argv.length ? argv[at + 1] : fallback;
}

export const USAGE = `usage: npm run bench -- [options]
  --n N          keys per run (default 1M); accepts 1000000, 1e6, 1M, 500k, 10M
  --runs K       runs per store (default 3); figures are the median and min-max
  --stores a,b   stores to run (default all): ${STORES.map((s) => s.name).join(', ')}
  --seed S       PRNG seed (default 0x${DEFAULT_SEED.toString(16)})
  --quick        smoke run: N=50k, 1 run, results into bench/out/ unless --out is given
  --no-cold      skip the reopen after dropping the page cache
  --out DIR      folder for RESULTS.md and the chart and JSON (results.* at 1M, results-<N>.* else) (default bench/)
  --tmp DIR      folder for the stores' files (default the OS temp folder)
  --from-json F  run nothing: rewrite RESULTS.md and the SVG (in --out) from a saved results JSON F
  --help`;

const SUFFIX: Record<string, number> = { k: 1e3, K: 1e3, m: 1e6, M: 1e6, g: 1e9, G: 1e9 };

/** Parses 10000000, 1e7, 10M, 10m, 500k, 1_000_000. */
export function parseCount(text: string): number {
  const t = text.replace(/_/g, '').trim();
  const m = /^(\d+(?:\.\d+)?(?:e\d+)?)([kKmMgG]?)$/.exec(t);
  if (m === null) throw new Error(`not a count: ${JSON.stringify(text)} (try 1000000, 1e6 or 1M)`);
  const value = Number(m[1]) * (m[2] === '' ? 1 : SUFFIX[m[2]]);
  if (!Number.isSafeInteger(value) || value < 10) throw new Error(`count must be a whole number of at least 10, got ${text}`);
  return value;
}

function parseRuns(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 1000) throw new Error(`runs must be an integer from 1 to 1000, got ${text}`);
  return value;
}

function parseSeed(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new Error(`seed must be an integer from 0 to 2^32-1, got ${text}`);
  return value;
}

export function parseOptions(argv: string[]): Options | 'help' {
  const o: Options = { n: DEFAULT_N, runs: 3, stores: STORES.map((s) => s.name), seed: DEFAULT_SEED, quick: false, cold: true, out: null, tmp: null, fromJson: null };
  let nGiven = false;
  let runsGiven = false;
  for (let k = 0; k < argv.length; k++) {
    const arg = argv[k];
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      if (eq > 0) return arg.slice(eq + 1);
      if (k + 1 >= argv.length) throw new Error(`${flag} needs a value`);
      return argv[++k];
    };
    switch (flag) {
      case '--n': o.n = parseCount(value()); nGiven = true; break;
      case '--runs': o.runs = parseRuns(value()); runsGiven = true; break;
      case '--stores': {
        const names = value().split(',').map((s) => s.trim()).filter((s) => s.length > 0);
        for (const name of names) {
          if (!STORES.some((s) => s.name === name)) throw new Error(`unknown store ${name}; known: ${STORES.map((s) => s.name).join(', ')}`);
        }
        if (names.length === 0) throw new Error('--stores names no store');
        o.stores = [...new Set(names)];
        break;
      }
      case '--seed': o.seed = parseSeed(value()); break;
      case '--quick': o.quick = true; break;
      case '--no-cold': o.cold = false; break;
      case '--out': o.out = value(); break;
      case '--tmp': o.tmp = value(); break;
      case '--from-json': o.fromJson = value(); break;
      case '--help': case '-h': return 'help';
      default: throw new Error(`unknown option ${arg}\n${USAGE}`);
    }
  }
  if (o.quick) {
    if (!nGiven) o.n = 50_000;
    if (!runsGiven) o.runs = 1;
  }
  return o;
}
