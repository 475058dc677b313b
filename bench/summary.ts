/** Reduces several runs of one store to median and min–max per figure. */
import { ONCE_PHASES, RATE_PHASES, type OncePhase, type Phase, type RatePhase, type RunResult } from './result.js';

export interface Stat {
  median: number;
  min: number;
  max: number;
  /** Runs that produced this figure. */
  count: number;
}

export interface StoreSummary {
  /** ops/s of each per-key phase. */
  rate: Partial<Record<RatePhase, Stat>>;
  /** Wall milliseconds of each one-off phase. */
  ms: Partial<Record<OncePhase, Stat>>;
  /** CPU milliseconds (user + system, all threads) of every phase. */
  cpuMs: Partial<Record<Phase, Stat>>;
  bytesPerEntry: Stat | null;
  diskBytes: Stat | null;
  /** Disk per live entry after the store's own compaction (null for stores without one). */
  bytesPerEntryCompacted: Stat | null;
  peakAnonKiB: Stat | null;
  peakFileKiB: Stat | null;
  baselineAnonKiB: Stat | null;
  vmHwmKiB: Stat | null;
}

/** Median (the mean of the two middle values for an even count), min and max; null for no values. */
export function stat(values: number[]): Stat | null {
  if (values.length === 0) return null;
  const v = [...values].sort((a, b) => a - b);
  const mid = v.length >> 1;
  const median = v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  return { median, min: v[0], max: v[v.length - 1], count: v.length };
}

function put<K extends string>(target: Partial<Record<K, Stat>>, key: K, values: number[]): void {
  const s = stat(values);
  if (s !== null) target[key] = s;
}

export function summarise(runs: RunResult[]): StoreSummary {
  const s: StoreSummary = {
    rate: {}, ms: {}, cpuMs: {},
    bytesPerEntry: stat(runs.flatMap((r) => (r.disk === null ? [] : [r.disk.bytesPerEntry]))),
    diskBytes: stat(runs.flatMap((r) => (r.disk === null ? [] : [r.disk.bytes]))),
    bytesPerEntryCompacted: stat(runs.flatMap((r) => (r.compactedDisk == null ? [] : [r.compactedDisk.bytesPerEntry]))),
    peakAnonKiB: stat(runs.map((r) => r.memory.peakAnonKiB)),
    peakFileKiB: stat(runs.map((r) => r.memory.peakFileKiB)),
    baselineAnonKiB: stat(runs.map((r) => r.memory.baselineAnonKiB)),
    vmHwmKiB: stat(runs.map((r) => r.memory.vmHwmKiB)),
  };
  const values = (phase: Phase, pick: (p: NonNullable<RunResult['phases'][Phase]>) => number): number[] =>
    runs.flatMap((r) => {
      const p = r.phases[phase];
      return p === undefined ? [] : [pick(p)];
    });
  for (const phase of RATE_PHASES) put(s.rate, phase, values(phase, (p) => p.opsPerSec));
  for (const phase of ONCE_PHASES) put(s.ms, phase, values(phase, (p) => p.ms));
  for (const phase of [...RATE_PHASES, ...ONCE_PHASES]) put(s.cpuMs, phase, values(phase, (p) => p.cpuUserMs + p.cpuSystemMs));
  return s;
}
