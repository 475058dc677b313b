/**
 * A write that an error V8 raises itself stops part way, between two of its stores: the call stack
 * exhausted (a map called from deep recursion) can do it at any call inside the map's own code, on
 * either engine. The bucket is then as a crash at that point would leave it. The map must notice
 * at its next call and repair the bucket before anything reads it: the stopped write's keys read
 * as before it or as after it, every other entry as it was, the size agrees with the entries, the
 * files verify, and a close records the map clean, so the reopen finds it as the model has it.
 *
 * Faults are injected deterministically (a throw at the nth store step of the host path's table,
 * at the nth host callback of the wasm core), then for real: writes at every stack depth near the
 * limit.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BucketMap, codecs, codes, type BucketMapConfig, type Entry } from '../host/index.js';
import type { EngineKind } from '../host/engine.js';
import { Table } from '../host/table.js';
import { ENGINES, Rng, entryValue, hex, persistentConfig, removeDir, strayFiles, tempDir, thrownBy, withFsFunction, withSeed } from './helpers.js';

const test = suite('a write stopped part way by an error V8 raises');

type Value = [Uint8Array[], number];

/** Table methods of the host path that each make one or more stores of a write. */
const TABLE_STEPS = ['setCtrl', 'publishAt', 'moveBetween', 'shiftLeft', 'writeData', 'freeData', 'journaledUpdate'] as const;
/** Host callbacks the wasm core makes in the middle of a write (its page fetches and log). */
const CORE_CALLBACKS = ['fetchPage', 'fetchPages', 'applyLog', 'writePages'] as const;

/** A RangeError at the nth step from now, as a stack overflow there would throw; then steps work again. */
function armFault(map: BucketMap, engine: EngineKind, nth: number): { fired: () => boolean; disarm: () => void } {
  let calls = 0;
  let fired = false;
  const restores: Array<() => void> = [];
  const wrap = (owner: Record<string, unknown>, name: string, own: boolean): void => {
    const original = owner[name] as (...args: unknown[]) => unknown;
    assert.type(original, 'function', `no ${name} to inject into`);
    owner[name] = function (this: unknown, ...args: unknown[]): unknown {
      if (!fired && ++calls === nth) {
        fired = true;
        throw new RangeError('Maximum call stack size exceeded (injected)');
      }
      return original.apply(this, args);
    };
    restores.push(own ? () => delete owner[name] : () => (owner[name] = original));
  };
  if (engine === 'host') {
    for (const name of TABLE_STEPS) wrap(Table.prototype as unknown as Record<string, unknown>, name, false);
  } else {
    const core = (map as unknown as { ctx: { engine: Record<string, unknown> } }).ctx.engine;
    for (const name of CORE_CALLBACKS) wrap(core, name, true);
  }
  return { fired: () => fired, disarm: () => restores.reverse().forEach((r) => r()) };
}

const shown = (v: Value | Entry<Uint8Array> | undefined): string | undefined => (v === undefined ? undefined : entryValue(v[0], v[1]));

interface Subject {
  config: BucketMapConfig;
  map: BucketMap;
  keys: Uint8Array[];
  model: Map<string, Value>;
}

function subject(rng: Rng, dir: string, engine: EngineKind): Subject {
  // Two buckets and the wasm engine's smallest cache: writes fetch pages, so a fault can land in
  // the middle of one.
  const config = persistentConfig(dir, engine, { maxBuckets: 2, codec: codecs.bytes(8), cacheBytes: 64 * 1024 });
  const map = new BucketMap(config);
  const keys = Array.from({ length: 3000 }, () => rng.key());
  const lists = keys.map(() => randomList(rng));
  map.insertMany(keys, lists, 5);
  const model = new Map<string, Value>();
  keys.forEach((k, i) => model.set(hex(k), [lists[i], 5]));
  return { config, map, keys, model };
}

/** 0 to 3 elements: inline values and data cells of two sizes. */
function randomList(rng: Rng): Uint8Array[] {
  return Array.from({ length: rng.below(4) }, () => rng.bytes(8));
}

/** Every key as the model has it, the size, an iteration and verify() all agree. */
function agrees(s: Subject, what: string): void {
  for (const k of s.keys) assert.is(shown(s.map.readValue(k)), shown(s.model.get(hex(k))), `${what}: readValue(${hex(k)})`);
  let n = 0;
  for (const [k, e] of s.map.entries()) {
    n++;
    assert.is(shown(e), shown(s.model.get(hex(k))), `${what}: iterated ${hex(k)}`);
  }
  assert.is(n, s.model.size, `${what}: entries iterated`);
  assert.is(s.map.size, s.model.size, `${what}: size`);
  const report = s.map.verify();
  assert.ok(report.ok, `${what}: verify: ${JSON.stringify(report.problems).slice(0, 400)}`);
}

/** A write and the value each key it touches has after it (undefined: absent). */
interface Write {
  name: string;
  run: () => void;
  after: Map<string, Value | undefined>;
}

function randomWrite(s: Subject, rng: Rng): Write {
  const { map, keys, model } = s;
  const existing = (): Uint8Array => keys[rng.below(keys.length)];
  const fresh = (): Uint8Array => {
    const k = rng.key();
    keys.push(k);
    return k;
  };
  const after = new Map<string, Value | undefined>();
  const several = (pick: () => Uint8Array): Uint8Array[] => {
    const seen = new Set<string>();
    const out: Uint8Array[] = [];
    while (out.length < 40) {
      const k = pick();
      if (seen.has(hex(k))) continue;
      seen.add(hex(k));
      out.push(k);
    }
    return out;
  };
  switch (rng.below(7)) {
    case 0: {
      const k = fresh();
      const list = randomList(rng);
      after.set(hex(k), [list, 2]);
      return { name: 'insert of a new key', run: () => map.insert(k, list, 2), after };
    }
    case 1: {
      const k = existing();
      const list = randomList(rng);
      after.set(hex(k), [list, 3]);
      return { name: 'insert over a key', run: () => map.insert(k, list, 3), after };
    }
    case 2: {
      const k = existing();
      after.set(hex(k), undefined);
      return { name: 'deleteKey', run: () => map.deleteKey(k), after };
    }
    case 3: {
      const k = existing();
      const v = model.get(hex(k));
      after.set(hex(k), v === undefined ? undefined : [v[0], v[1] + 1]);
      return { name: 'addref', run: () => map.addref(k), after };
    }
    case 4: {
      const batch = several(() => (rng.chance(0.5) ? fresh() : existing()));
      const lists = batch.map(() => randomList(rng));
      batch.forEach((k, i) => after.set(hex(k), [lists[i], 4]));
      return { name: 'insertMany', run: () => map.insertMany(batch, lists, 4), after };
    }
    case 5: {
      const batch = several(existing);
      for (const k of batch) after.set(hex(k), undefined);
      return { name: 'deleteMany', run: () => map.deleteMany(batch), after };
    }
    default: {
      const batch = several(existing);
      for (const k of batch) {
        const v = model.get(hex(k));
        after.set(hex(k), v === undefined ? undefined : [v[0], v[1] + 1]);
      }
      return { name: 'addrefMany', run: () => map.addrefMany(batch), after };
    }
  }
}

/**
 * After a write that threw: each key it touched reads as before or as after it (the first read
 * is the map's next call, which repairs); the model takes what the map kept.
 */
function settleModel(s: Subject, write: Write, what: string): void {
  for (const [h, next] of write.after) {
    const k = Uint8Array.from(Buffer.from(h, 'hex'));
    const read = s.map.readValue(k);
    const before = s.model.get(h);
    const got = shown(read);
    assert.ok(got === shown(before) || got === shown(next), `${what}: ${h} reads ${got}, neither before (${shown(before)}) nor after (${shown(next)})`);
    if (read === undefined) s.model.delete(h);
    else s.model.set(h, [read[0], read[1]]);
  }
}

function applyModel(s: Subject, write: Write): void {
  for (const [h, next] of write.after) {
    if (next === undefined) s.model.delete(h);
    else s.model.set(h, next);
  }
}

/** The map reopened with `engine`: as the model has it, and closed clean (the open repaired nothing). */
function reopenAgrees(s: Subject, engine: EngineKind, what: string): void {
  s.map = new BucketMap({ ...s.config, engine });
  try {
    assert.is(s.map.stats().open.repairedBuckets, 0, `${what}: the close left a bucket to repair`);
    agrees(s, what);
  } finally {
    s.map.close();
  }
}

for (const engine of ENGINES) {
  test(`${engine}: writes stopped at injected points are repaired by the next call, and the map reopens as the model has it`, () => {
    withSeed((rng) => {
      const dir = tempDir();
      try {
        const s = subject(rng, dir, engine);
        let stopped = 0;
        try {
          s.map.flush();
          for (let round = 0; round < 160; round++) {
            const write = randomWrite(s, rng);
            const fault = armFault(s.map, engine, 1 + rng.below(engine === 'host' ? 12 : 4));
            let err: Error | null;
            try {
              err = thrownBy(write.run);
            } finally {
              fault.disarm();
            }
            const what = `round ${round}, ${write.name}`;
            if (err === null) {
              assert.not.ok(fault.fired(), `${what}: the fault fired but the write returned`);
              applyModel(s, write);
            } else {
              assert.ok(fault.fired() && err instanceof RangeError, `${what}: ${err}`);
              stopped++;
              settleModel(s, write, what);
            }
            if (round % 40 === 39) agrees(s, `after ${what}`);
          }
          assert.ok(stopped >= 40, `only ${stopped} of 160 writes were stopped`);
          // A stop in a write's lookup (before its first store) has nothing to repair.
          const counted = s.map.stats().stoppedWrites;
          assert.ok(counted.count >= stopped / 2 && counted.count <= stopped, `stats().stoppedWrites.count ${counted.count} of ${stopped} stopped`);
          assert.ok(counted.repairedBuckets >= counted.count, `${counted.repairedBuckets} buckets repaired`);
          agrees(s, 'after the last round');
        } finally {
          s.map.close();
        }
        for (const reopened of ENGINES) reopenAgrees(s, reopened, `reopened with ${reopened}`);
      } finally {
        removeDir(dir);
      }
    });
  });

  test(`${engine}: close() right after a stopped write repairs it first and records the map clean`, () => {
    withSeed((rng) => {
      const dir = tempDir();
      try {
        const s = subject(rng, dir, engine);
        let write: Write;
        for (;;) {
          write = randomWrite(s, rng);
          const fault = armFault(s.map, engine, 1);
          const err = thrownBy(write.run);
          fault.disarm();
          if (err === null) {
            applyModel(s, write);
            continue;
          }
          assert.instance(err, RangeError);
          break;
        }
        s.map.close();
        // The map's next call was close(): what it kept of the stopped write is read after reopening.
        s.map = new BucketMap(s.config);
        try {
          assert.is(s.map.stats().open.repairedBuckets, 0, 'the close left a bucket to repair');
          settleModel(s, write, 'after reopening');
          agrees(s, 'after reopening');
        } finally {
          s.map.close();
        }
      } finally {
        removeDir(dir);
      }
    });
  });

  test(`${engine}: writes at every stack depth near the limit leave each key as before or after its write`, () => {
    withSeed((rng) => {
      const dir = tempDir();
      try {
        const s = subject(rng, dir, engine);
        try {
          const at = (depth: number, fn: () => unknown): unknown => (depth === 0 ? fn() : [at(depth - 1, fn)]);
          const probe = (depth: number): boolean => thrownBy(() => at(depth, () => s.map.has(s.keys[0]))) === null;
          // The deepest depth at which a lookup still returns, coarsely then in steps of 64.
          let top = 1;
          while (probe(top * 2)) top *= 2;
          top *= 2;
          while (top > 0 && !probe(top)) top -= 64;
          let overflowed = 0;
          let returned = 0;
          for (let depth = top + 200; depth > 0 && returned < 150; depth--) {
            const write = randomWrite(s, rng);
            const err = thrownBy(() => at(depth, write.run));
            if (err === null) {
              returned++;
              applyModel(s, write);
            } else {
              assert.instance(err, RangeError);
              overflowed++;
              settleModel(s, write, `a write at depth ${depth}`);
            }
          }
          assert.ok(overflowed > 0, 'no write overflowed the stack');
          agrees(s, 'after the writes near the limit');
        } finally {
          s.map.close();
        }
        reopenAgrees(s, engine, 'reopened');
      } finally {
        removeDir(dir);
      }
    });
  });
}

/** Throws a RangeError from the engine's next bind(), the last call of a switch to new files before the old ones go. */
function armBind(map: BucketMap): { fired: () => boolean; disarm: () => void } {
  const engine = (map as unknown as { ctx: { engine: Record<string, unknown> } }).ctx.engine;
  const original = engine.bind as (...args: unknown[]) => unknown;
  let fired = false;
  engine.bind = function (this: unknown, ...args: unknown[]): unknown {
    if (!fired) {
      fired = true;
      throw new RangeError('Maximum call stack size exceeded (injected)');
    }
    return original.apply(this, args);
  };
  return { fired: () => fired, disarm: () => delete engine.bind };
}

/** The switches of a bucket to new files, each with a step that makes one happen sooner or later. */
const SWITCHES: ReadonlyArray<[string, (map: BucketMap, rng: Rng) => void]> = [
  ['first file', (map, rng) => map.insert(rng.key(), [], 1)],
  ['index growth', (map, rng) => map.insert(rng.key(), [], 1)],
  ['data growth', (map, rng) => map.insert(rng.key(), [rng.bytes(8), rng.bytes(8)], 1)],
  ['compaction', (map) => void map.compact()],
];

/**
 * For each switch but those `skip` names: a one-bucket map made ready for it, then `stop`, which
 * runs the switch's step until the fault it arms fires and says whether it did; the map's next
 * call repairs, `check` looks at the repaired map, and after close no file is left that the
 * restart file does not name, and the reopen opens clean with the same entries.
 */
function afterStoppedSwitch(engine: EngineKind, skip: readonly string[], stop: (map: BucketMap, attempt: () => void) => boolean, check: (map: BucketMap, name: string) => void = () => {}): void {
  for (const [name, step] of SWITCHES) {
    if (skip.includes(name)) continue;
    withSeed((rng) => {
      const dir = tempDir();
      try {
        const config = persistentConfig(dir, engine, { maxBuckets: 1, codec: codecs.bytes(8) });
        const map = new BucketMap(config);
        let size = 0;
        try {
          if (name !== 'first file') for (let i = 0; i < 10; i++) map.insert(rng.key(), [rng.bytes(8), rng.bytes(8)], 1);
          if (name === 'compaction') {
            const keys = Array.from({ length: 3000 }, () => rng.key());
            map.insertMany(keys, keys.map(() => [rng.bytes(8), rng.bytes(8)]));
            map.deleteMany(keys.slice(100));
          }
          assert.ok(stop(map, () => void thrownBy(() => step(map, rng))), `${name}: the fault never fired`);
          size = map.size; // the repair
          assert.ok(map.verify().ok, `${name}: verify`);
          check(map, name);
        } finally {
          map.close();
        }
        assert.is(strayFiles(config), 0, `${name}: files the restart file does not name`);
        const reopened = new BucketMap(config);
        try {
          assert.is(reopened.stats().open.repairedBuckets, 0, `${name}: the close left a bucket to repair`);
          assert.is(reopened.size, size, `${name}: size after reopening`);
          assert.ok(reopened.verify().ok, `${name}: verify after reopening`);
        } finally {
          reopened.close();
        }
      } finally {
        removeDir(dir);
      }
    });
  }
}

for (const engine of ENGINES) {
  test(`${engine}: a switch to new files stopped before the old ones go leaves none behind`, () => {
    // The bucket's first files exist: the fault lands in a switch from old files to new.
    afterStoppedSwitch(engine, ['first file'], (map, attempt) => {
      const fault = armBind(map);
      try {
        for (let i = 0; i < 5000 && !fault.fired(); i++) attempt();
      } finally {
        fault.disarm();
      }
      return fault.fired();
    }, (map, name) => {
      const stats = map.stats();
      const usage = (map as unknown as { ctx: { usage: { bytes: number } } }).ctx.usage.bytes;
      assert.is(usage, stats.index.bytes + stats.data.bytes, `${name}: bytes counted against maxBytes`);
    });
  });
}


test('wasm: insertMany stopped as it reads how many keys the engine added counts them', () => {
  withSeed((rng) => {
    const dir = tempDir();
    try {
      const map = new BucketMap(persistentConfig(dir, 'wasm', { maxBuckets: 2, codec: codecs.bytes(8) }));
      try {
        const before = Array.from({ length: 20 }, () => rng.key());
        map.insertMany(before, before.map(() => []));
        // The getter runs right after putMany returns: a call that can overflow the stack as any other.
        const engine = (map as unknown as { ctx: { engine: object } }).ctx.engine;
        let armed = true;
        Object.defineProperty(engine, 'batchAdded', {
          configurable: true,
          get(): number {
            armed = false;
            throw new RangeError('Maximum call stack size exceeded (injected)');
          },
        });
        const keys = Array.from({ length: 10 }, () => rng.key());
        const err = thrownBy(() => map.insertMany(keys, keys.map(() => [])));
        delete (engine as { batchAdded?: number }).batchAdded;
        assert.ok(!armed && err instanceof RangeError, String(err));
        let n = 0;
        for (const _ of map.keys()) n++;
        assert.is(map.size, n);
      } finally {
        map.close();
      }
    } finally {
      removeDir(dir);
    }
  });
});

for (const engine of ENGINES) {
  test(`${engine}: a restart-file update stopped after its write is repaired, and the map reopens`, () => {
    // The stop comes from fs.writeSync's own code after the write (as a stack overflow there
    // would): the slot on disk names the new files, the map's view of the restart file does not.
    afterStoppedSwitch(engine, [], (map, attempt) => {
      const manifest = (map as unknown as { ctx: { manifest: { fd: number } } }).ctx.manifest;
      let fired = false;
      withFsFunction('writeSync', (original) => function (this: unknown, ...args: unknown[]): unknown {
        const written = original.apply(this, args);
        if (!fired && args[0] === manifest.fd) {
          fired = true;
          throw new RangeError('Maximum call stack size exceeded (injected)');
        }
        return written;
      }, () => {
        for (let i = 0; i < 5000 && !fired; i++) attempt();
      });
      return fired;
    });
  });
}

for (const engine of ENGINES) {
  test(`${engine}: a growth that meets a leftover it cannot remove fails with IO, and the next call serves the bucket as it was`, () => {
    withSeed((rng) => {
      const dir = tempDir();
      try {
        const config = persistentConfig(dir, engine, { maxBuckets: 1 });
        const map = new BucketMap(config);
        try {
          const keys = [rng.key()];
          map.insert(keys[0], [], 1);
          const drive = (config.drives as string[])[0];
          const index = fs.readdirSync(drive).find((name) => /\.i\.\d+\.0\.bkt$/.test(name)) as string;
          const generation = Number(/\.i\.(\d+)\.0\.bkt$/.exec(index)?.[1]);
          // A folder where the next index generation's file goes: the leftover sweep cannot remove it.
          const blocker = path.join(drive, index.replace(/\.i\.\d+\.0\.bkt$/, `.i.${generation + 1}.0.bkt`));
          fs.mkdirSync(blocker);
          fs.writeFileSync(path.join(blocker, 'x'), 'x');
          let err: (Error & { code?: string }) | null = null;
          while (err === null) {
            const k = rng.key();
            err = thrownBy(() => map.insert(k, [], 1));
            if (err === null) keys.push(k);
          }
          assert.is(err.code, codes.IO, String(err));
          // Before the fix the error was fs's own, the write mark stayed set, and every later call
          // repaired the bucket into the same name and failed alike.
          assert.is(map.size, keys.length);
          for (const k of keys) assert.ok(map.has(k));
          assert.is(map.stats().stoppedWrites.count, 0);
          fs.rmSync(blocker, { recursive: true });
          for (let i = 0; i < 200; i++) map.insert(rng.key(), [], 1);
          assert.is(map.size, keys.length + 200);
          assert.ok(map.verify().ok);
        } finally {
          map.close();
        }
      } finally {
        removeDir(dir);
      }
    });
  });
}

test.run();
