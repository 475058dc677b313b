/**
 * RESULTS.md and results.json. The markdown section sits between two markers so that text others
 * write around it survives a rerun. Shown figures are the measured values truncated, never
 * rounded, to the precision shown; results.json keeps the raw values.
 */
import * as fs from 'node:fs';
import type { Machine } from './machine.js';
import { ONCE_PHASES, PHASE_LABELS, RATE_PHASES, type RunResult } from './result.js';
import type { Stat, StoreSummary } from './summary.js';
import type { DropCaches } from './measure.js';
import { DEFAULT_N } from './workload.js';
import { STORES } from './stores/index.js';

/**
 * The stores of a run of only some of them, in the suite's order; null for a run of every store.
 * Such a run gets a section and files of its own, so that it never replaces a full run of its N.
 */
function someStores(stores: readonly string[]): string[] | null {
  const chosen = STORES.map((s) => s.name).filter((name) => stores.includes(name));
  return chosen.length === STORES.length ? null : chosen;
}

/**
 * `results.<ext>` for a full run at the default N, `results-<N>.<ext>` at any other, and
 * `results-<N>-<store>+<store>.<ext>` for a run of some of the stores.
 */
export function resultsFile(n: number, ext: 'svg' | 'json', stores: readonly string[] = STORES.map((s) => s.name)): string {
  const some = someStores(stores);
  if (some !== null) return `results-${sizeLabel(n)}-${some.join('+')}.${ext}`;
  return n === DEFAULT_N ? `results.${ext}` : `results-${sizeLabel(n)}.${ext}`;
}

/** The RESULTS.md section of a run: `1M`, or `1M bucket-map-host, lmdb` for a run of some of the stores. */
export function runLabel(n: number, stores: readonly string[]): string {
  const some = someStores(stores);
  return some === null ? sizeLabel(n) : `${sizeLabel(n)} ${some.join(', ')}`;
}

/** A run's name in file names and markers: its N, as in `1M`, `10M`, `50k`. */
export function sizeLabel(n: number): string {
  if (n % 1_000_000 === 0) return `${n / 1_000_000}M`;
  if (n % 1_000 === 0) return `${n / 1_000}k`;
  return String(n);
}

export const startMarker = (label: string): string => `<!-- results ${label}:start -->`;
export const endMarker = (label: string): string => `<!-- results ${label}:end -->`;

export interface Failure {
  run: number;
  message: string;
}

export interface StoreReport {
  name: string;
  version: string;
  persistent: boolean;
  notes: string;
  runs: RunResult[];
  failures: Failure[];
  summary: StoreSummary;
}

export interface Report {
  generated: string;
  command: string;
  options: { n: number; runs: number; seed: number; stores: string[]; cold: boolean };
  machine: Machine;
  /** 1-minute load average when the runs started and when they ended: a busy machine shows here. */
  loadAverage: { start: number; end: number };
  stores: StoreReport[];
}

export const int = (x: number): string => Math.floor(x).toLocaleString('en-US');
/** One decimal, truncated: toFixed alone would round, and could round a figure up. */
export const dec1 = (x: number): string => (Math.floor(x * 10) / 10).toFixed(1);
/** A ratio to two decimals, truncated as every other figure: `1.81×`. */
export const times2 = (x: number): string => `${(Math.floor(x * 100) / 100).toFixed(2)}×`;
/** A run's start as it heads its section: `2026-11-27 11:05:19 UTC`. */
export const runStamp = (d: Date): string => `${d.toISOString().replace('T', ' ').slice(0, 19)} UTC`;
/** The machine line of a bucket-map-only section (bench:direct, bench:scale). */
export const machineLine = (m: Machine): string =>
  `- Machine: ${m.cpu}, ${m.cores} cores, ${dec1(m.ramGiB)} GiB RAM, ${m.kernel}, Node ${m.node}; files on ${m.fs}`;
const mib = (kib: number): string => dec1(kib / 1024);

export function cell(s: Stat | null | undefined, fmt: (x: number) => string, runs: number): string {
  if (s === null || s === undefined) return '—';
  const range = s.count > 1 ? ` (${fmt(s.min)}–${fmt(s.max)})` : '';
  const partial = s.count < runs ? ` [${s.count} of ${runs} runs]` : '';
  return `${fmt(s.median)}${range}${partial}`;
}

/**
 * A store's name as its table rows show it: with the count of its failed runs, since a store whose
 * runs all failed has only "—" cells, as a phase a store does not have.
 */
function rowName(s: StoreReport, runs: number): string {
  return s.failures.length === 0 ? s.name : `${s.name} (failed in ${s.failures.length} of ${runs} runs)`;
}

export function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map((_, k) => (k === 0 ? '---' : '---:'))), ...rows.map(line)].join('\n');
}

function coldNote(stores: StoreReport[]): string {
  const seen: DropCaches[] = stores.flatMap((s) => s.runs.flatMap((r) => (r.dropCaches === null ? [] : [r.dropCaches])));
  if (seen.length === 0) return 'Cold reopen: not run (no persistent store ran).';
  const skipped = seen.filter((d) => !d.done);
  if (skipped.length === 0) return 'Cold reopen: before each, the worker ran `sync` and wrote 3 to /proc/sys/vm/drop_caches (page cache, dentries and inodes dropped).';
  const reasons = [...new Set(skipped.map((d) => d.reason ?? 'unknown'))].join('; ');
  return `Cold reopen: skipped in ${skipped.length} of ${seen.length} runs: ${reasons}.`;
}

export function renderMarkdown(r: Report): string {
  const { n, runs, seed } = r.options;
  const m = r.machine;
  const date = r.generated.replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  const out: string[] = [];
  out.push(`## Run of ${date}`, '');
  out.push(`N = ${int(n)} keys, ${runs} run${runs > 1 ? 's' : ''} per store, each in a fresh process; every cell is the median` +
    `${runs > 1 ? ' with the min–max over runs in parentheses' : ''}. Seed 0x${seed.toString(16)}.`, '');
  out.push(`- Machine: ${m.cpu}, ${m.cores} cores, ${dec1(m.ramGiB)} GiB RAM, ${m.kernel}, Node ${m.node}`);
  out.push(`- Stores' files: ${m.fs}`);
  const loads = r.stores.flatMap((s) => s.runs.flatMap((run) => [run.loadAverage.start, run.loadAverage.end]));
  const loadRange = loads.length === 0 ? '' : `, ${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)} at the starts and ends of the runs`;
  out.push(`- 1-minute load average: ${r.loadAverage.start.toFixed(2)} before the first run${loadRange}, ${r.loadAverage.end.toFixed(2)} after the last ` +
    '(the benchmark itself keeps about one core busy; more means other work shared the machine)');
  out.push(`- Versions: ${r.stores.map((s) => `${s.name} ${s.version}`).join('; ')}`);
  out.push('');

  out.push('### Throughput (operations per second, higher is better)', '');
  out.push(table(['store', ...RATE_PHASES.map((p) => PHASE_LABELS[p])],
    r.stores.map((s) => [rowName(s, runs), ...RATE_PHASES.map((p) => cell(s.summary.rate[p], int, runs))])));
  out.push('');

  out.push('### Open, close, disk and memory', '');
  out.push(table(
    ['store', ...ONCE_PHASES.map((p) => `${PHASE_LABELS[p]} ms`), 'disk B/entry', 'disk MiB', 'disk B/entry after compact', 'peak RssAnon MiB', 'peak RssFile MiB'],
    r.stores.map((s) => [
      rowName(s, runs),
      ...ONCE_PHASES.map((p) => cell(s.summary.ms[p], dec1, runs)),
      cell(s.summary.bytesPerEntry, dec1, runs),
      cell(s.summary.diskBytes, (b) => dec1(b / 2 ** 20), runs),
      cell(s.summary.bytesPerEntryCompacted, dec1, runs),
      cell(s.summary.peakAnonKiB, mib, runs),
      cell(s.summary.peakFileKiB, mib, runs),
    ])));
  out.push('');
  const base = r.stores.map((s) => s.summary.baselineAnonKiB).filter((b): b is Stat => b !== null);
  if (base.length > 0) {
    const lo = Math.min(...base.map((b) => b.min));
    const hi = Math.max(...base.map((b) => b.max));
    out.push(`Peak RSS includes the workload's own buffers (each phase's keys and expected values, the absent keys): RssAnon was ${mib(lo)}–${mib(hi)} MiB ` +
      'in every worker before its store opened. Disk is the sum of st_blocks × 512 over the store\'s folder after the first close, ' +
      `divided by the ${int(n - Math.floor(n / 10))} entries then live. "After compact" is the same measure after the store's own way of giving back ` +
      'the space of deleted entries, run once after the reopens (bucket-map `compact()` at its default load, classic-level `compactRange` over every key, ' +
      'better-sqlite3 `VACUUM`; lmdb has no in-place compaction, and the JS Map no files). RssFile also counts Node\'s own binary and libraries (~40 MiB).', '');
  }

  out.push('### CPU time per phase (ms, user + system, all threads of the process)', '');
  const cpuPhases = [...RATE_PHASES, 'reopen', 'coldReopen', 'compact'] as const;
  out.push(table(['store', ...cpuPhases.map((p) => PHASE_LABELS[p])],
    r.stores.map((s) => [rowName(s, runs), ...cpuPhases.map((p) => cell(s.summary.cpuMs[p], dec1, runs))])));
  out.push('');

  out.push('### How each store was driven', '');
  for (const s of r.stores) out.push(`- **${s.name}**: ${s.notes}`);
  out.push('');
  out.push('Every read in the get, update and verify phases is checked against the expected value and refCount, every absent key must miss, ' +
    'and every deleted key is checked to be gone after the delete phase and after each reopen; a run that fails a check is reported below and contributes no figures.', '');
  out.push(coldNote(r.stores), '');

  const failures = r.stores.flatMap((s) => s.failures.map((f) => `- ${s.name}, run ${f.run}: ${f.message}`));
  out.push(failures.length === 0 ? 'Failures: none.' : ['Failures:', ...failures].join('\n'), '');

  out.push('### How to reproduce', '');
  out.push('```sh', 'npm ci', r.command, '```', '');
  out.push(`Every figure shown is the measured value truncated (never rounded) to the precision shown; \`bench/${resultsFile(r.options.n, 'json', r.options.stores)}\` holds every raw figure of every run.`);
  return out.join('\n');
}

const HEADER = `# Benchmark results

Written by \`npm run bench\` (see [README.md](README.md) for the workload and the options). Each
run replaces the part between the \`results\` markers of its N (a new N adds a part at the end);
anything outside them is kept.

`;

/** Replaces the section of `file` marked for `label`, keeping the rest; creates the file if needed. */
export function writeMarkdown(file: string, label: string, section: string): void {
  const start = startMarker(label);
  const end = endMarker(label);
  const block = `${start}\n${section}\n${end}`;
  let text: string;
  if (!fs.existsSync(file)) {
    text = `${HEADER}${block}\n`;
  } else {
    const old = fs.readFileSync(file, 'utf8');
    // The last start marker and the first end marker after it: a start marker left without its end
    // (by a hand edit) then stays as it is, instead of a later run replacing everything from it to
    // the end marker of the section appended after it, other sections included.
    const i = old.lastIndexOf(start);
    const j = i < 0 ? -1 : old.indexOf(end, i + start.length);
    text = i >= 0 && j > i
      ? old.slice(0, i) + block + old.slice(j + end.length)
      : `${old.replace(/\n*$/, '\n\n')}${block}\n`;
  }
  fs.writeFileSync(file, text);
}

export function writeJson(file: string, report: Report): void {
  fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
}
