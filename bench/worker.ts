/**
 * One run of one store, in a fresh process so that no store inherits another's heap, mappings or
 * JIT state. Prints progress on stderr and one JSON line (RunResult, or an error) on stdout.
 *
 *   node --expose-gc build/bench/worker.js '{"store":"lmdb","n":50000,"seed":1,"dir":"/tmp/x","run":1,"cold":true}'
 */
import * as os from 'node:os';
import { buildWorkload, KEY_BYTES, sameValue, VALUE_BYTES, type Stream, type Workload } from './workload.js';
import { RssSampler, cpuSince, diskUse, dropPageCache, settle } from './measure.js';
import { storeSpec } from './stores/index.js';
import type { ReadCheck, Store } from './stores/store.js';
import type { OncePhase, PhaseResult, RatePhase, RunResult } from './result.js';

/** Writes are grouped in batches (transactions) of this many keys; reads use the same chunking. */
const CHUNK = 10_000;
/** Memory is sampled every this many chunks (~50k operations); one /proc read costs a fraction of a millisecond. */
const SAMPLE_EVERY_CHUNKS = 5;
/** Keys per call in the batched phases (getMany, getMany miss, addrefMany, unrefMany, deleteMany). */
const GET_MANY = 1024;

interface WorkerArgs {
  store: string;
  n: number;
  seed: number;
  dir: string;
  run: number;
  cold: boolean;
}

/**
 * The arguments come as one JSON string, not as flags: mmap-io loads its binding through
 * node-pre-gyp, which parses process.argv, and a `--dir X` there makes importing bucket-map fail.
 */
function parseWorkerArgs(argv: string[]): WorkerArgs {
  if (argv.length !== 1) throw new Error('worker: expected one JSON argument');
  const a = JSON.parse(argv[0]) as Partial<WorkerArgs>;
  const need = <K extends keyof WorkerArgs>(k: K, type: string): WorkerArgs[K] => {
    if (typeof a[k] !== type) throw new Error(`worker: argument ${k} must be a ${type}`);
    return a[k] as WorkerArgs[K];
  };
  return {
    store: need('store', 'string'), n: need('n', 'number'), seed: need('seed', 'number'),
    dir: need('dir', 'string'), run: need('run', 'number'), cold: need('cold', 'boolean'),
  };
}

class VerifyError extends Error {}

class Runner {
  readonly result: RunResult;
  private readonly sampler = new RssSampler();
  private readonly out = Buffer.alloc(VALUE_BYTES);

  constructor(
    private readonly args: WorkerArgs,
    private readonly w: Workload,
    private readonly store: Store,
    workloadMs: number,
  ) {
    const base = this.sampler.sample();
    this.result = {
      kind: 'bench-result', store: args.store, run: args.run, n: args.n, seed: args.seed,
      phases: {}, disk: null,
      memory: { baselineAnonKiB: base.anonKiB, baselineFileKiB: base.fileKiB, peakAnonKiB: 0, peakFileKiB: 0, vmHwmKiB: 0, samples: 0, samplingMs: 0 },
      dropCaches: null, loadAverage: { start: os.loadavg()[0], end: 0 }, workloadMs, details: { afterInsert: null, beforeClose: null },
    };
  }

  private progress(line: string): void {
    process.stderr.write(`[${this.args.store} #${this.args.run}] ${line}\n`);
  }

  private record(phase: RatePhase | OncePhase, ops: number, ms: number, cpu0: NodeJS.CpuUsage): void {
    const cpu = cpuSince(cpu0);
    this.sampler.sample();
    const r: PhaseResult = {
      ops, ms, opsPerSec: ops / (ms / 1000), cpuUserMs: cpu.userMs, cpuSystemMs: cpu.systemMs,
      peakAnonKiB: this.sampler.phaseAnonKiB, peakFileKiB: this.sampler.phaseFileKiB,
    };
    this.result.phases[phase] = r;
    const rate = ops > 1 ? ` (${Math.floor(r.opsPerSec).toLocaleString('en-US')}/s)` : '';
    this.progress(`${phase}: ${ops.toLocaleString('en-US')} op${ops > 1 ? 's' : ''} in ${ms.toFixed(1)} ms${rate}, cpu ${(cpu.userMs + cpu.systemMs).toFixed(0)} ms`);
  }

  /** Times `count` operations, handed to `chunk` in ranges of CHUNK. */
  async rate(phase: RatePhase, count: number, chunk: (from: number, to: number) => void | Promise<void>): Promise<void> {
    await settle();
    this.sampler.startPhase();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let chunks = 0;
    for (let from = 0; from < count; from += CHUNK) {
      const pending = chunk(from, Math.min(count, from + CHUNK));
      if (pending !== undefined) await pending;
      if (++chunks % SAMPLE_EVERY_CHUNKS === 0) this.sampler.sample();
    }
    const ms = performance.now() - t0;
    this.record(phase, count, ms, cpu0);
  }

  async once(phase: OncePhase, fn: () => void | Promise<void>): Promise<void> {
    await settle();
    this.sampler.startPhase();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const pending = fn();
    if (pending !== undefined) await pending;
    const ms = performance.now() - t0;
    this.record(phase, 1, ms, cpu0);
  }

  private fail(phase: string, i: number, got: number, what: string): never {
    throw new VerifyError(`${phase}: key #${i} ${what} (store returned ${got})`);
  }

  async insert(): Promise<void> {
    const { store } = this;
    const { keys, values } = this.w.insert;
    await this.rate('insert', this.w.insert.count, (from, to) => store.writeBatch(() => {
      for (let j = from; j < to; j++) store.put(keys, j * KEY_BYTES, values, j * VALUE_BYTES);
    }));
  }

  /** Reads keys [from, to) of the stream and checks each value and refCount against it. */
  private verifyRange(phase: string, s: Stream, from: number, to: number): void {
    const { store, out } = this;
    const { keys } = s;
    for (let j = from; j < to; j++) this.check(phase, s, j, store.get(keys, j * KEY_BYTES, out), out, 0);
  }

  /** Fails the run unless a read of the stream's key j found the refCount and value bytes it expects. */
  private check(phase: string, s: Stream, j: number, rc: number, value: Uint8Array, offset: number): void {
    if (rc !== s.refs[j]) this.fail(phase, s.ids[j], rc, `should have refCount ${s.refs[j]}`);
    if (!sameValue(s, j, value, offset)) this.fail(phase, s.ids[j], rc, 'has the wrong value bytes');
  }

  async get(): Promise<void> {
    const s = this.w.get;
    await this.rate('get', s.count, (from, to) => this.verifyRange('get', s, from, to));
  }

  /**
   * Times a phase of batched lookups (stores with getMany only): `count` keys of `keys`, GET_MANY
   * per call, each result handed to `check` with the key's index.
   */
  private async batched(phase: RatePhase, keys: Buffer, count: number, check: ReadCheck): Promise<void> {
    const { store } = this;
    if (store.getMany === undefined) return;
    const many = store.getMany.bind(store);
    await this.rate(phase, count, (from, to) => {
      for (let b = from; b < to; b += GET_MANY) {
        const end = Math.min(to, b + GET_MANY);
        many(keys.subarray(b * KEY_BYTES, end * KEY_BYTES), end - b, (k, rc, values, offset) => check(b + k, rc, values, offset));
      }
    });
  }

  /** Batched lookups of the get stream, every value checked. */
  async getMany(): Promise<void> {
    const s = this.w.get;
    await this.batched('getMany', s.keys, s.count, (j, rc, values, offset) => this.check('getMany', s, j, rc, values, offset));
  }

  async miss(): Promise<void> {
    const { store, out } = this;
    const { absent } = this.w;
    await this.rate('miss', this.w.n, (from, to) => {
      for (let i = from; i < to; i++) {
        const rc = store.get(absent, i * KEY_BYTES, out);
        if (rc !== -1) this.fail('miss', i, rc, 'of the absent set was found');
      }
    });
  }

  /** Batched lookups of the absent keys; each must be absent. */
  async missMany(): Promise<void> {
    await this.batched('missMany', this.w.absent, this.w.n, (i, rc) => {
      if (rc !== -1) this.fail('missMany', i, rc, 'of the absent set was found');
    });
  }

  /**
   * The workload that picks the default engine, run last: gets of live keys (the verify stream,
   * each checked) alternating one for one with inserts of fresh keys (the first half of the absent
   * set), as many operations as there are live keys. Last, so that the entries it adds (and the
   * index growth they cause) touch no other figure.
   */
  async mixed(): Promise<void> {
    const { store, out } = this;
    const { absent, values, live } = this.w;
    const pairs = this.mixedInserts;
    await this.rate('mixed', pairs * 2, (from, to) => store.writeBatch(() => {
      for (let j = from >> 1; j < to >> 1; j++) {
        this.check('mixed', live, j, store.get(live.keys, j * KEY_BYTES, out), out, 0);
        store.put(absent, j * KEY_BYTES, values, j * VALUE_BYTES);
      }
    }));
  }

  /** Fresh keys the mixed phase inserts: the first this many of the absent set. */
  private get mixedInserts(): number {
    return Math.floor(this.w.live.count / 2);
  }

  /**
   * After the mixed phase (stores with delMany only): the keys it inserted, deleted through the
   * batched call, GET_MANY per call; every one must be found. Last, so it changes no other figure.
   */
  async deleteMany(): Promise<void> {
    const { store } = this;
    if (store.delMany === undefined) return;
    const many = store.delMany.bind(store);
    const { absent } = this.w;
    await this.rate('deleteMany', this.mixedInserts, (from, to) => {
      for (let b = from; b < to; b += GET_MANY) {
        const end = Math.min(to, b + GET_MANY);
        const removed = many(absent.subarray(b * KEY_BYTES, end * KEY_BYTES), end - b);
        if (removed !== end - b) this.fail('deleteMany', b, removed, `starts a batch of ${end - b} inserted keys of which only some were found`);
      }
    });
  }

  async update(): Promise<void> {
    const { store } = this;
    const s = this.w.update;
    await this.rate('update', s.count, (from, to) => store.writeBatch(() => {
      for (let j = from; j < to; j++) {
        const rc = store.addref(s.keys, j * KEY_BYTES);
        if (rc !== s.refs[j]) this.fail('update', s.ids[j], rc, `should reach refCount ${s.refs[j]}`);
      }
    }));
  }

  /**
   * The update stream again through the batched call (stores with adjustMany only), GET_MANY keys
   * per call: `delta` +1 takes each key to one above what the update phase left, -1 back to it;
   * every refCount is checked. Before each, untimed, the store writes its files back (sync), so the
   * phase pays the first write to each clean page as the update phase does at 10M, which starts
   * more than 30 s after the inserts wrote those pages, past the kernel's dirty expiry.
   */
  async adjustMany(phase: 'addrefMany' | 'unrefMany', delta: 1 | -1): Promise<void> {
    const { store } = this;
    if (store.adjustMany === undefined) return;
    const many = store.adjustMany.bind(store);
    const s = this.w.update;
    const got = new Float64Array(GET_MANY);
    const offset = delta > 0 ? 1 : 0;
    store.sync?.();
    await this.rate(phase, s.count, (from, to) => {
      for (let b = from; b < to; b += GET_MANY) {
        const end = Math.min(to, b + GET_MANY);
        many(s.keys.subarray(b * KEY_BYTES, end * KEY_BYTES), end - b, delta, got);
        for (let j = b; j < end; j++) {
          if (got[j - b] !== s.refs[j] + offset) this.fail(phase, s.ids[j], got[j - b], `should reach refCount ${s.refs[j] + offset}`);
        }
      }
    });
  }

  async delete(): Promise<void> {
    const { store } = this;
    const { keys, count } = this.w.delete;
    await this.rate('delete', count, (from, to) => store.writeBatch(() => {
      for (let j = from; j < to; j++) store.del(keys, j * KEY_BYTES);
    }));
    this.checkDeletedAbsent('delete');
  }

  /** Untimed: every deleted key must read as absent. */
  checkDeletedAbsent(phase: string): void {
    const { store, out } = this;
    const s = this.w.delete;
    for (let j = 0; j < s.count; j++) {
      const rc = store.get(s.keys, j * KEY_BYTES, out);
      if (rc !== -1) this.fail(`${phase} (check)`, s.ids[j], rc, 'was deleted but is still found');
    }
  }

  /** Untimed: every live key reads its value and every deleted key is absent (after a compaction). */
  checkAll(phase: string): void {
    const s = this.w.live;
    this.verifyRange(phase, s, 0, s.count);
    this.checkDeletedAbsent(phase);
  }

  async verify(phase: 'verify' | 'coldVerify'): Promise<void> {
    const s = this.w.live;
    await this.rate(phase, s.count, (from, to) => this.verifyRange(phase, s, from, to));
    this.checkDeletedAbsent(phase);
  }

  details(): unknown {
    try {
      return this.store.details?.() ?? null;
    } catch (err) {
      return { error: (err as Error).message };
    }
  }

  finish(): RunResult {
    const m = this.result.memory;
    m.peakAnonKiB = this.sampler.peakAnonKiB;
    m.peakFileKiB = this.sampler.peakFileKiB;
    m.vmHwmKiB = RssSampler.vmHwmKiB();
    m.samples = this.sampler.samples;
    m.samplingMs = this.sampler.samplingMs;
    this.result.loadAverage.end = os.loadavg()[0];
    return this.result;
  }
}

/** What the store's folder holds on disk, and per live entry. */
function diskPerEntry(dir: string, entries: number): NonNullable<RunResult['disk']> {
  const use = diskUse(dir);
  return { ...use, entries, bytesPerEntry: use.bytes / entries };
}

async function main(): Promise<void> {
  const args = parseWorkerArgs(process.argv.slice(2));
  const spec = storeSpec(args.store);
  const t0 = performance.now();
  const w = buildWorkload(args.n, args.seed);
  const workloadMs = performance.now() - t0;
  const store = await spec.create(args.dir);
  await settle();
  const r = new Runner(args, w, store, workloadMs);

  await r.once('create', () => store.open());
  await r.insert();
  r.result.details.afterInsert = r.details();
  await r.get();
  await r.getMany();
  await r.miss();
  await r.missMany();
  await r.update();
  await r.adjustMany('addrefMany', 1);
  await r.adjustMany('unrefMany', -1);
  await r.delete();
  r.result.details.beforeClose = r.details();

  if (spec.persistent) {
    await r.once('close', () => store.close());
    r.result.disk = diskPerEntry(args.dir, w.live.count);
    await r.once('reopen', () => store.open());
    await r.verify('verify');
    await store.close();
    if (args.cold) {
      const dropped = await dropPageCache();
      r.result.dropCaches = dropped;
      if (dropped.done) {
        await r.once('coldReopen', () => store.open());
        await r.verify('coldVerify');
        await store.close();
      } else {
        process.stderr.write(`[${args.store} #${args.run}] cold reopen skipped: ${dropped.reason}\n`);
      }
    } else {
      r.result.dropCaches = { done: false, reason: '--no-cold given' };
    }
    await store.open();
    if (store.compact !== undefined) {
      await r.once('compact', () => store.compact!());
      await store.close();
      r.result.compactedDisk = diskPerEntry(args.dir, w.live.count);
      await store.open();
      r.checkAll('compact');
    }
  }
  await r.mixed();
  await r.deleteMany();
  await store.close();
  process.stdout.write(JSON.stringify(r.finish()) + '\n');
}

main().catch((err: unknown) => {
  const e = err as Error;
  const kind = err instanceof VerifyError ? 'verification failed' : 'error';
  process.stdout.write(JSON.stringify({ kind: 'bench-error', message: `${kind}: ${e.message}`, stack: e.stack ?? '' }) + '\n');
  process.exitCode = 1;
});
