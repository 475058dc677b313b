/** The JSON a worker prints for one run of one store, and the names of the phases in it. */
import type { DiskUse, DropCaches } from './measure.js';

/** Timed phases that do one operation per key; their figure is ops/s. */
export const RATE_PHASES = [
  'insert', 'get', 'getMany', 'miss', 'missMany', 'update', 'addrefMany', 'unrefMany', 'delete', 'verify', 'coldVerify', 'mixed', 'deleteMany',
] as const;
/** Timed phases that happen once; their figure is milliseconds. */
export const ONCE_PHASES = ['create', 'close', 'reopen', 'coldReopen', 'compact'] as const;

export type RatePhase = (typeof RATE_PHASES)[number];
export type OncePhase = (typeof ONCE_PHASES)[number];
export type Phase = RatePhase | OncePhase;

export const PHASE_LABELS: Record<Phase, string> = {
  insert: 'insert',
  get: 'get hit',
  getMany: 'getMany hit',
  miss: 'get miss',
  missMany: 'getMany miss',
  mixed: 'mixed get/insert',
  update: 'update',
  addrefMany: 'update, batched (+1)',
  unrefMany: 'update, batched (−1)',
  delete: 'delete',
  deleteMany: 'delete, batched',
  verify: 'verify (warm)',
  coldVerify: 'verify (cold)',
  create: 'create',
  close: 'close',
  reopen: 'reopen (warm)',
  coldReopen: 'reopen (cold)',
  compact: 'compact',
};

export interface PhaseResult {
  ops: number;
  ms: number;
  opsPerSec: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  /** Peaks over this phase's samples, in KiB. */
  peakAnonKiB: number;
  peakFileKiB: number;
}

export interface RunResult {
  kind: 'bench-result';
  store: string;
  run: number;
  n: number;
  seed: number;
  phases: Partial<Record<Phase, PhaseResult>>;
  /** After the first close: N - deleted entries live. */
  disk: (DiskUse & { entries: number; bytesPerEntry: number }) | null;
  /** The same, after the store's own compaction (stores without one: null; absent in results from before it was measured). */
  compactedDisk?: (DiskUse & { entries: number; bytesPerEntry: number }) | null;
  memory: {
    /** After the workload is built and before the store opens: what every store starts from. */
    baselineAnonKiB: number;
    baselineFileKiB: number;
    peakAnonKiB: number;
    peakFileKiB: number;
    vmHwmKiB: number;
    samples: number;
    samplingMs: number;
  };
  dropCaches: DropCaches | null;
  /** 1-minute load average when this run started and ended: other work on the machine shows here. */
  loadAverage: { start: number; end: number };
  workloadMs: number;
  details: { afterInsert: unknown; beforeClose: unknown };
}
