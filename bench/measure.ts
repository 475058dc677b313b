/** What a worker measures besides wall time: resident memory, CPU time, disk use and the page cache. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';

export interface RssSample {
  anonKiB: number;
  fileKiB: number;
}

const RSS_ANON = /RssAnon:\s+(\d+) kB/;
const RSS_FILE = /RssFile:\s+(\d+) kB/;
const VM_HWM = /VmHWM:\s+(\d+) kB/;

function statusField(text: string, re: RegExp): number {
  const m = re.exec(text);
  return m === null ? -1 : Number(m[1]);
}

/**
 * Peak RSS split into anonymous and file-backed pages. The kernel keeps only the peak of the total
 * (VmHWM), so the split peaks come from samples: at phase boundaries and every ~50k operations.
 */
export class RssSampler {
  peakAnonKiB = 0;
  peakFileKiB = 0;
  phaseAnonKiB = 0;
  phaseFileKiB = 0;
  samples = 0;
  /** Time spent sampling, so a reader can check it stayed negligible. */
  samplingMs = 0;

  sample(): RssSample {
    const started = performance.now();
    const text = fs.readFileSync('/proc/self/status', 'latin1');
    const anonKiB = statusField(text, RSS_ANON);
    const fileKiB = statusField(text, RSS_FILE);
    if (anonKiB > this.peakAnonKiB) this.peakAnonKiB = anonKiB;
    if (fileKiB > this.peakFileKiB) this.peakFileKiB = fileKiB;
    if (anonKiB > this.phaseAnonKiB) this.phaseAnonKiB = anonKiB;
    if (fileKiB > this.phaseFileKiB) this.phaseFileKiB = fileKiB;
    this.samples++;
    this.samplingMs += performance.now() - started;
    return { anonKiB, fileKiB };
  }

  /** Starts a new per-phase peak from the current sample. */
  startPhase(): void {
    this.phaseAnonKiB = 0;
    this.phaseFileKiB = 0;
    this.sample();
  }

  /** The kernel's own high-water mark of the total RSS (anonymous + file + shmem). */
  static vmHwmKiB(): number {
    return statusField(fs.readFileSync('/proc/self/status', 'latin1'), VM_HWM);
  }
}

/**
 * Untimed, before every phase and before the memory baseline: two full GCs, then one event-loop
 * turn. V8 frees the memory of a dead ArrayBuffer on a background thread after the collection that
 * found it dead, so right after one gc() a buffer of hundreds of MB can still be resident (at 10M
 * the 305 MiB of keys the workload drops once its streams are built was counted in one worker's
 * baseline and hid its store's growth); a full GC first waits for the previous one's sweep. The
 * turn is for mmap-io, which releases a mapping only when its Buffer's free callback runs, on the
 * event loop: without it a store's replaced or closed file mappings would be charged to later phases.
 */
export async function settle(gc = (globalThis as { gc?: () => void }).gc): Promise<void> {
  if (gc !== undefined) {
    gc();
    gc();
  }
  await new Promise<void>((resolve) => setImmediate(resolve));
}

export interface DiskUse {
  /** Sum of st_blocks * 512: what the files really occupy. */
  bytes: number;
  /** Sum of st_size: larger than `bytes` for sparse files. */
  apparentBytes: number;
  files: number;
}

export function diskUse(dir: string): DiskUse {
  const use: DiskUse = { bytes: 0, apparentBytes: 0, files: 0 };
  const walk = (p: string): void => {
    const st = fs.lstatSync(p);
    use.bytes += st.blocks * 512;
    if (st.isDirectory()) {
      for (const name of fs.readdirSync(p)) walk(path.join(p, name));
    } else {
      use.apparentBytes += st.size;
      use.files++;
    }
  };
  walk(dir);
  return use;
}

export interface DropCaches {
  done: boolean;
  reason?: string;
}

/** Writes 3 to drop_caches: page cache, dentries and inodes (needs root). */
function writeDropCaches(): void {
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
}

/**
 * Writes back dirty pages, then asks the kernel to drop the page cache (needs root). The kernel
 * keeps every page a process still maps, and mmap-io unmaps a closed bucket-map's files only once
 * their Buffers are collected and the event loop turns, so settle() goes first: without it
 * bucket-map's cold reopen found all of its files still cached while the peers' were dropped.
 */
export async function dropPageCache(gc = (globalThis as { gc?: () => void }).gc, drop = writeDropCaches): Promise<DropCaches> {
  await settle(gc);
  try {
    execFileSync('sync', { stdio: 'ignore' });
  } catch (err) {
    return { done: false, reason: `sync failed: ${(err as Error).message}` };
  }
  try {
    drop();
    return { done: true };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { done: false, reason: `writing /proc/sys/vm/drop_caches failed: ${e.code ?? e.message}` };
  }
}

export interface CpuMs {
  userMs: number;
  systemMs: number;
}

export function cpuSince(start: NodeJS.CpuUsage): CpuMs {
  const d = process.cpuUsage(start);
  return { userMs: d.user / 1000, systemMs: d.system / 1000 };
}
