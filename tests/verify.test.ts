import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BucketMap, BucketMapError, codecs, codes, type BucketMapConfig, type VerifyReport } from '../host/index.js';
import { CELL_BYTES, CELLS_PER_PAGE, extraByte, HEADER_BYTES, M_COUNTS_CRC, M_COUNTS_END, M_LIVE_COUNT, PAGE_HEADER_BYTES } from '../host/layout.js';
import { crc32c } from '../host/checksum.js';
import { ENGINES, Rng, fingerprint, locateKey, persistentConfig, removeDir, tempDir, withFsFunction } from './helpers.js';

const CLI = new URL('../host/cli.js', import.meta.url).pathname;

function patch(file: string, at: number, bytes: number[]): void {
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Uint8Array.from(bytes), 0, bytes.length, at);
  fs.closeSync(fd);
}

function read(file: string, at: number, n: number): number[] {
  const fd = fs.openSync(file, 'r');
  const out = Buffer.alloc(n);
  fs.readSync(fd, out, 0, n, at);
  fs.closeSync(fd);
  return [...out];
}

function problems(report: VerifyReport): string {
  return report.problems.map((p) => p.problem).join('\n');
}

for (const engine of ENGINES) {
  const test = suite(`verify [${engine}]`);
  const rng = new Rng(40);
  let dir = '';
  let config: BucketMapConfig;
  let keys: Uint8Array[];
  test.before.each(() => {
    dir = tempDir();
    config = persistentConfig(dir, engine, { maxBuckets: 4, maxSearch: 8 });
    const map = new BucketMap(config);
    keys = [];
    for (let i = 0; i < 1500; i++) {
      const key = rng.key();
      keys.push(key);
      map.insert(key, Array.from({ length: i % 3 }, () => rng.bytes(16)), i % 7 === 0 ? 3 : 1);
    }
    for (let i = 0; i < 1500; i += 5) map.deleteKey(keys[i]);
    const report = map.verify();
    assert.ok(report.ok, problems(report));
    assert.is(report.entries, map.size);
    map.close();
  });
  test.after.each(() => removeDir(dir));

  test('a closed map verifies without being opened for writing, and nothing changes on disk', () => {
    const before = fingerprint(dir);
    const report = BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! });
    assert.ok(report.ok, problems(report));
    assert.is(report.buckets, 4);
    assert.is(report.entries, 1200);
    assert.ok(report.dataCells > 0);
    assert.equal(fingerprint(dir), before);
    assert.not.ok(fs.existsSync(`${config.restartFile}.lock`));
  });

  test('verifying from disk while the map is open fails with LOCKED', () => {
    const map = new BucketMap(config);
    assert.throws(() => BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! }), (e: BucketMapError) => e.code === codes.LOCKED);
    map.close();
  });

  test('verifying from disk holds the lock throughout: an open for writing meanwhile is LOCKED', () => {
    // Growth truncates the files it retires, so a writer let in mid-check could SIGBUS the
    // checker. The open is tried from inside the check, at its first bucket file.
    let during: string | undefined;
    const openTryingWriter = (open: (...args: unknown[]) => unknown) => (file: unknown, ...rest: unknown[]) => {
      if (during === undefined && String(file).endsWith('.bkt')) {
        try {
          new BucketMap(config).close();
          during = 'opened';
        } catch (e) {
          during = (e as BucketMapError).code;
        }
      }
      return open(file, ...rest);
    };
    const report = withFsFunction('openSync', openTryingWriter, () => BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! }));
    assert.is(during, codes.LOCKED);
    assert.ok(report.ok, problems(report));
    assert.not.ok(fs.existsSync(`${config.restartFile}.lock`), 'released after the check');
    new BucketMap(config).close();
  });

  test('where no lock file can be made (a read-only folder), verifying from disk still runs', () => {
    const readOnly = (write: (...args: unknown[]) => unknown) => (file: unknown, ...rest: unknown[]) => {
      if (String(file).endsWith('.new')) throw Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' });
      return write(file, ...rest);
    };
    const report = withFsFunction('writeFileSync', readOnly, () => BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! }));
    assert.ok(report.ok, problems(report));
    assert.is(report.entries, 1200);
  });

  test('a changed key byte is found (it no longer sits where its hash says)', () => {
    const spot = locateKey(config, keys[1]);
    patch(spot.file, spot.cellAt + 9, [read(spot.file, spot.cellAt + 9, 1)[0] ^ 0x40]);
    const report = BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! });
    assert.not.ok(report.ok);
    assert.match(problems(report), /home is cell|tag that does not match/);
    assert.ok(report.problems.every((p) => p.file.endsWith('.bkt')));
  });

  test('a ctrl word with a wrong distance or no kind is found', () => {
    const spot = locateKey(config, keys[2]);
    const [lo, hi] = read(spot.file, spot.ctrlAt, 2);
    patch(spot.file, spot.ctrlAt, [lo + 3, hi]);
    let report = BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! });
    assert.not.ok(report.ok);
    patch(spot.file, spot.ctrlAt, [lo, hi & 0x3f]);
    report = BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! });
    assert.match(problems(report), /no kind/);
  });

  test('a damaged data reference is CORRUPT on read, update and delete, and nothing changes', () => {
    const victim = keys.find((_, i) => i % 3 === 2 && i % 5 !== 0)!;
    const spot = locateKey(config, victim);
    patch(spot.file, spot.cellAt + 32 + 5, [15]);
    const report = BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! });
    assert.match(problems(report), /data class 15/);
    const map = new BucketMap(config);
    const before = fingerprint(path.join(dir, 'drive'));
    const isCorrupt = (e: BucketMapError): boolean => e instanceof BucketMapError && e.code === codes.CORRUPT && e.message.includes('.bkt');
    assert.throws(() => map.readValue(victim), isCorrupt);
    assert.throws(() => map.insert(victim, [rng.bytes(16)]), isCorrupt);
    assert.throws(() => map.deleteKey(victim), isCorrupt);
    assert.throws(() => map.addref(victim), isCorrupt);
    const other = keys.find((k, i) => i % 5 !== 0 && k !== victim)!;
    assert.ok(map.readValue(other), 'other entries are unaffected');
    map.close();
    assert.equal(fingerprint(path.join(dir, 'drive')), before, 'no content was written (the dirty mark is cleared by close)');
  });

  test('an INLINE cell in a map whose elements pass 16 bytes is damage: CORRUPT on read and addref, a problem for verify()', () => {
    // Such elements always go to data cells. Read as inline, an element of 100 bytes took the
    // 16-byte value and the next cell's bytes after it (the wasm core: whatever its cache held there).
    const wide = persistentConfig(path.join(dir, 'wide'), engine, { maxBuckets: 1, codec: codecs.bytes(100) });
    let map = new BucketMap(wide);
    const victim = rng.key();
    const other = rng.key();
    map.insert(victim, [new Uint8Array(100).fill(0xab)]);
    map.insert(other, [new Uint8Array(100).fill(0xcd)]);
    map.close();
    const spot = locateKey(wide, victim);
    const [lo, hi] = read(spot.file, spot.ctrlAt, 2);
    patch(spot.file, spot.ctrlAt, [lo, (hi & 0x3f) | 0x40]);
    assert.match(problems(BucketMap.verify({ restartFile: wide.restartFile!, drives: wide.drives! })), /inline/);
    map = new BucketMap(wide);
    try {
      const isCorrupt = (e: BucketMapError): boolean => e instanceof BucketMapError && e.code === codes.CORRUPT && e.message.includes('.bkt');
      assert.throws(() => map.readValue(victim), isCorrupt, 'readValue');
      assert.throws(() => map.readInto(victim, new Uint8Array(1000)), isCorrupt, 'readInto');
      assert.throws(() => map.getMany([other, victim]), isCorrupt, 'getMany');
      assert.throws(() => map.addref(victim), isCorrupt, 'addref');
      assert.equal(map.readValue(other), [[new Uint8Array(100).fill(0xcd)], 1], 'the other entry still reads');
    } finally {
      map.close();
    }
  });

  test('a refCount above 2^53 - 1 (in a ZERO entry or a data cell) is CORRUPT on read and addref/unref, not a number past the range', () => {
    const zero = keys.find((_, i) => i % 3 === 0 && i % 5 !== 0)!;
    const listed = keys.find((_, i) => i % 3 === 2 && i % 5 !== 0)!;
    const z = locateKey(config, zero);
    patch(z.file, z.cellAt + 32 + 4, [0, 0, 0x20, 0]); // high word 2^21: 2^53 + the low word
    const d = locateKey(config, listed);
    patch(d.dataFile!, d.dataAt + 4, [0, 0, 0x40]);
    assert.match(problems(BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! })), /refCount above 2\^53 - 1[^]*refCount above 2\^53 - 1/);
    const map = new BucketMap(config);
    try {
      const isCorrupt = (e: BucketMapError): boolean => e instanceof BucketMapError && e.code === codes.CORRUPT;
      for (const key of [zero, listed]) {
        assert.throws(() => map.readValue(key), isCorrupt, 'readValue');
        assert.throws(() => map.getMany([key]), isCorrupt, 'getMany');
        // unref wrote the damaged number back minus one (inexact past 2^53); addref said REFCOUNT_OVERFLOW.
        assert.throws(() => map.unref(key), isCorrupt, 'unref');
        assert.throws(() => map.addref(key), isCorrupt, 'addref');
      }
    } finally {
      map.close();
    }
  });

  test('a batch that meets a damaged cell part-way counts the keys it changed before it', () => {
    const victim = keys.find((_, i) => i % 3 === 2 && i % 5 !== 0)!;
    const spot = locateKey(config, victim);
    patch(spot.file, spot.cellAt + 32 + 5, [15]);
    const map = new BucketMap(config);
    const before = map.size;
    const present = keys.filter((k, i) => i % 5 !== 0 && k !== victim).slice(0, 3);
    const isCorrupt = (e: BucketMapError): boolean => e instanceof BucketMapError && e.code === codes.CORRUPT;
    const later = keys[1499]; // never deleted (1499 % 5 = 4), and not among the first three
    // A lookup first leaves every key's batch status set: the delete must not count what it did not reach.
    assert.equal(map.hasMany([...present, victim, later]), [true, true, true, true, true]);
    assert.throws(() => map.deleteMany([...present, victim, later]), isCorrupt);
    assert.equal(map.hasMany(present), [false, false, false], 'removed before the damaged cell');
    assert.is(map.has(later), true, 'not reached');
    assert.is(map.size, before - 3);
    assert.is([...map.keys()].length, map.size);
    const fresh = [rng.key(), rng.key()];
    assert.throws(() => map.insertMany([...fresh, victim], [[], [], []]), isCorrupt);
    assert.equal(map.hasMany(fresh), [true, true]);
    assert.is(map.size, before - 1);
    assert.is([...map.keys()].length, map.size);
    map.close();
  });

  test('an occupied data cell nothing points at, and a wrong saved count, are found in a clean bucket', () => {
    const victim = keys.find((_, i) => i % 3 === 2 && i % 5 !== 0)!;
    const spot = locateKey(config, victim);
    assert.ok(spot.dataFile !== null, 'a two-element entry has a data cell');
    // Free the entry's cell by hand, then occupy the next one: a leak and a dangling reference.
    patch(spot.dataFile!, spot.dataAt + 7, [0]);
    const report = BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! });
    assert.match(problems(report), /free cell|data count/);
  });

  test('a free cell inside a run (what a delete without its backward shift leaves) is found', () => {
    // A key one cell past its home whose home cell is freed: its lookup stops at the free cell,
    // though the cell it sits in is where its hash says.
    for (const key of keys.filter((_, i) => i % 5 !== 0)) {
      const spot = locateKey(config, key);
      const slot = (spot.cellAt - spot.ctrlAt - PAGE_HEADER_BYTES) / (CELL_BYTES - 2);
      if (slot === 0 || read(spot.file, spot.ctrlAt, 1)[0] !== 2) continue;
      patch(spot.file, spot.ctrlAt - 2, [0, 0]);
      const report = BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! });
      assert.match(problems(report), /breaks the Robin Hood order \(distance 1 after -1\)/);
      return;
    }
    assert.unreachable('no key one cell past its home, in the same page');
  });

  test('a key held twice (copied into the free cell after it) is found', () => {
    // What a crash in the middle of a move leaves, if reopening did not repair it: the same key in
    // two neighbouring cells of its home's run.
    for (const key of keys.filter((_, i) => i % 3 === 1 && i % 5 !== 0)) {
      const spot = locateKey(config, key);
      const slot = (spot.cellAt - spot.ctrlAt - PAGE_HEADER_BYTES) / (CELL_BYTES - 2);
      if (slot === CELLS_PER_PAGE - 1 || read(spot.file, spot.ctrlAt + 2, 2).some((b) => b !== 0)) continue;
      const pageAt = spot.ctrlAt - 2 * slot;
      const [lo, hi] = read(spot.file, spot.ctrlAt, 2);
      patch(spot.file, spot.cellAt + CELL_BYTES, read(spot.file, spot.cellAt, CELL_BYTES));
      patch(spot.file, extraByte(pageAt, slot + 1), read(spot.file, extraByte(pageAt, slot), 1));
      patch(spot.file, spot.ctrlAt + 2, [lo + 1, hi]);
      const report = BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! });
      assert.match(problems(report), /also in an earlier cell/);
      assert.not.match(problems(report), /home is cell|Robin Hood order/, 'the copy sits where its hash says');
      return;
    }
    assert.unreachable('no one-element entry with a free cell after it in its page');
  });

  test('a bucket left dirty by a killed process is noted, not reported, and reopening repairs it', () => {
    const script = `
      import { BucketMap } from ${JSON.stringify(new URL('../host/index.js', import.meta.url).href)};
      const map = new BucketMap(JSON.parse(process.argv[1]));
      for (let i = 0; i < 300; i++) map.insert(new Uint8Array(32).fill(i % 256).map((b, j) => j === 5 ? i >> 8 : b), [new Uint8Array(16)]);
      process.kill(process.pid, 'SIGKILL');`;
    spawnSync(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(config)]);
    fs.rmSync(`${config.restartFile}.lock`);
    const report = BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! });
    assert.ok(report.ok, problems(report));
    assert.ok(report.notes.some((n) => /repairs it/.test(n)));
    const map = new BucketMap(config);
    assert.ok(map.stats().open.repairedBuckets > 0);
    assert.ok(map.verify().ok);
    map.close();
  });

  test('a bucket whose header disagrees with a stale close record is reported by verify(), which writes nothing; its first use then repairs it', () => {
    const staleRecord = fs.readFileSync(`${config.restartFile}.closed`);
    let map = new BucketMap(config);
    const extra = rng.key();
    map.insert(extra, [rng.bytes(16)]); // one more entry, no growth: only the counts change
    map.close();
    fs.writeFileSync(`${config.restartFile}.closed`, staleRecord); // a backup's older record, say
    map = new BucketMap(config);
    const size = map.size;
    const before = fingerprint(dir);
    const report = map.verify();
    assert.not.ok(report.ok, 'the disagreement is reported');
    assert.is(report.problemCount, 1, problems(report));
    assert.match(problems(report), /close record/);
    assert.is(report.entries, 1201, 'the cells were still checked, as the files have them');
    assert.equal(fingerprint(dir), before, 'nothing on disk changed');
    assert.is(map.size, size);
    assert.is(map.stats().open.repairedBuckets, 0);
    assert.equal(map.verify(), report, 'verify() is repeatable');
    // The first real use repairs the bucket, as before; verify() is then clean.
    assert.ok(map.has(extra));
    assert.is(map.size, 1201);
    assert.is(map.stats().open.repairedBuckets, 1);
    assert.ok(map.verify().ok, problems(map.verify()));
    map.close();
  });

  test('a delete that would take a bucket\'s count below zero (counts damaged, checksum intact) is CORRUPT and changes nothing', () => {
    // The bucket's saved count rewritten to 0 with a valid checksum, and no close record to
    // disagree: the bucket opens on its header's word. Deleting its entries then made the count
    // wrap (the wasm core to 2^32 - 1, the host path to -1), and size with it.
    const victim = keys[1];
    const spot = locateKey(config, victim);
    const header = Buffer.from(read(spot.file, 0, HEADER_BYTES));
    header.writeUInt32LE(0, M_LIVE_COUNT);
    header.writeUInt32LE(crc32c(header, M_LIVE_COUNT, M_COUNTS_END), M_COUNTS_CRC);
    patch(spot.file, 0, [...header]);
    fs.rmSync(`${config.restartFile}.closed`);
    const map = new BucketMap(config);
    try {
      const size = map.size;
      assert.throws(() => map.deleteKey(victim), (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.CORRUPT);
      assert.throws(() => map.deleteMany([victim]), (e: BucketMapError) => e instanceof BucketMapError && e.code === codes.CORRUPT);
      assert.is(map.size, size, 'the count did not move');
      assert.ok(map.has(victim), 'the entry is still there');
      assert.not.ok(map.verify().ok, 'verify() reports the count');
    } finally {
      map.close();
    }
  });

  test('the command line verifies a folder and reports problems through its exit code', () => {
    const ok = spawnSync(process.execPath, [CLI, 'verify', config.restartFile!, '--drive', config.drives![0]], { encoding: 'utf8' });
    assert.is(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /1200 entries/);
    const spot = locateKey(config, keys[3]);
    patch(spot.file, spot.cellAt, [read(spot.file, spot.cellAt, 1)[0] ^ 1]);
    // Flags before the path too.
    const bad = spawnSync(process.execPath, [CLI, 'verify', '--json', '--drive', config.drives![0], config.restartFile!], { encoding: 'utf8' });
    assert.is(bad.status, 1);
    assert.is(JSON.parse(bad.stdout).ok, false);
    const told = spawnSync(process.execPath, [CLI, 'verify', config.restartFile!, '--drive', config.drives![0]], { encoding: 'utf8' });
    assert.is(told.status, 1);
    const count = JSON.parse(bad.stdout).problemCount as number;
    assert.ok(told.stdout.split('\n').includes(`${count} problem${count === 1 ? '' : 's'}`), told.stdout);
    // Everything that is not a verdict is exit code 2, never 1 ("problems found").
    for (const args of [['nonsense'], ['verify'], ['verify', ''], ['verify', '--json'], ['verify', path.join(dir, 'missing')]]) {
      const failed = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
      assert.is(failed.status, 2, `${args.join(' ')}: ${failed.stderr}`);
      assert.not.match(failed.stderr, /\n\s+at /, 'no stack trace');
      assert.match(failed.stderr, /^(usage: bucket-map verify|BUCKET_MAP_[A-Z_]+: )/);
    }
    // Help asked for is not an error: on standard output, exit code 0 (it was usage on stderr, exit 2).
    for (const args of [['--help'], ['-h'], ['help'], ['verify', '--help'], ['verify', config.restartFile!, '-h']]) {
      const help = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
      assert.is(help.status, 0, `${args.join(' ')}: ${help.stderr}`);
      assert.match(help.stdout, /^usage: bucket-map verify <restartFile>[^]*Exit code: 0/);
      assert.is(help.stderr, '');
    }
  });

  test('a drive folder that is not there is FILE_MISSING, not a report of every bucket missing (exit 2, not 1)', () => {
    // Forgetting --drive for a map made with drives of its own looked in <restartFile>.buckets: it
    // reported every bucket file missing with exit code 1, "problems found", as if the map were damaged.
    const before = fingerprint(dir);
    for (const drives of [undefined, [path.join(dir, 'elsewhere')]]) {
      try {
        BucketMap.verify({ restartFile: config.restartFile!, ...(drives === undefined ? {} : { drives }) });
        assert.unreachable('verified with no drive folder');
      } catch (err) {
        assert.instance(err, BucketMapError);
        assert.is((err as BucketMapError).code, codes.FILE_MISSING, (err as Error).message);
        assert.match((err as Error).message, drives === undefined ? /restart\.buckets/ : /elsewhere/);
      }
    }
    const cli = spawnSync(process.execPath, [CLI, 'verify', config.restartFile!], { encoding: 'utf8' });
    assert.is(cli.status, 2, cli.stdout);
    assert.match(cli.stderr, /^BUCKET_MAP_FILE_MISSING: /);
    assert.equal(fingerprint(dir), before, 'nothing made');
  });

  test('from disk, a bucket whose header disagrees with the close record is the problem verify() on the open map reports', () => {
    // The static check ignored the close record and said ok (exit 0), while verify() on the opened
    // map reported the bucket and a read-only open refused it (NEEDS_RECOVERY).
    const staleRecord = fs.readFileSync(`${config.restartFile}.closed`);
    let map = new BucketMap(config);
    map.insert(rng.key(), [rng.bytes(16)]);
    map.close();
    fs.writeFileSync(`${config.restartFile}.closed`, staleRecord);
    const before = fingerprint(dir);
    const report = BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! });
    assert.not.ok(report.ok, 'the disagreement is reported');
    assert.is(report.problemCount, 1, problems(report));
    assert.match(problems(report), /close record/);
    assert.is(report.entries, 1201, 'the cells were still checked, as the files have them');
    assert.equal(fingerprint(dir), before, 'nothing on disk changed');
    map = new BucketMap({ ...config, readOnly: true });
    try {
      assert.equal(map.verify().problems.map((p) => p.problem), report.problems.map((p) => p.problem), 'the open map says the same');
    } finally {
      map.close();
    }
    const cli = spawnSync(process.execPath, [CLI, 'verify', config.restartFile!, '--drive', config.drives![0]], { encoding: 'utf8' });
    assert.is(cli.status, 1, cli.stdout);
    // A record that does not vouch for the bucket (another map's, or a damaged one) is not used by an open: no problem.
    fs.writeFileSync(`${config.restartFile}.closed`, staleRecord.subarray(0, staleRecord.length - 1));
    assert.ok(BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! }).ok);
  });

  test('from disk, a map no close record vouches for is ok with a note saying a read-only open refuses it', () => {
    // "ok" and nothing else read as "opens read-only", which then failed with NEEDS_RECOVERY.
    assert.equal(BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! }).notes, [], 'closed cleanly: nothing to note');
    const record = fs.readFileSync(`${config.restartFile}.closed`);
    for (const damaged of [null, Buffer.concat([record, Buffer.alloc(1)])]) {
      if (damaged === null) fs.rmSync(`${config.restartFile}.closed`);
      else fs.writeFileSync(`${config.restartFile}.closed`, damaged);
      const report = BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! });
      assert.ok(report.ok, problems(report));
      assert.is(report.notes.length, 1, report.notes.join('\n'));
      assert.match(report.notes[0], /no valid close record.*read-only open refuses/);
      assert.throws(() => new BucketMap({ ...config, readOnly: true }), (e: BucketMapError) => e.code === codes.NEEDS_RECOVERY);
      const cli = spawnSync(process.execPath, [CLI, 'verify', config.restartFile!, '--drive', config.drives![0]], { encoding: 'utf8' });
      assert.is(cli.status, 0, cli.stderr);
      assert.match(cli.stdout, /^note: there is no valid close record/m);
    }
    new BucketMap(config).close();
    assert.equal(BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives! }).notes, [], 'an open for writing and a close write it again');
  });

  test('a problem in a cell names the segment file that holds the cell, not the first segment', () => {
    const segmented = persistentConfig(path.join(dir, 'segmented'), engine, { maxBuckets: 1, segmentBytes: 65536 });
    const map = new BucketMap(segmented);
    const many = Array.from({ length: 3000 }, () => rng.key());
    for (const [i, key] of many.entries()) map.insert(key, [rng.bytes(16), rng.bytes(16)], 1 + (i % 2));
    map.close();
    // A key and a data cell in later segments (files ending .<segment>.bkt, segment > 0).
    const spots = many.map((key) => locateKey(segmented, key));
    const inIndex = spots.find((s) => !s.file.endsWith('.0.bkt'))!;
    const inData = spots.find((s) => !s.dataFile!.endsWith('.0.bkt'))!;
    assert.ok(inIndex !== undefined && inData !== undefined, 'the map has several segments of each file');
    patch(inIndex.file, inIndex.cellAt + 3, [read(inIndex.file, inIndex.cellAt + 3, 1)[0] ^ 0x10]);
    patch(inData.dataFile!, inData.dataAt + 7, [read(inData.dataFile!, inData.dataAt + 7, 1)[0] | 0x40]);
    const report = BucketMap.verify({ restartFile: segmented.restartFile!, drives: segmented.drives! });
    const keyProblems = report.problems.filter((p) => /home is cell|tag that does not match/.test(p.problem));
    const flagProblems = report.problems.filter((p) => /unknown flag bits/.test(p.problem));
    assert.ok(keyProblems.length > 0 && flagProblems.length === 1, problems(report));
    for (const p of keyProblems) assert.is(p.file, inIndex.file);
    assert.is(flagProblems[0].file, inData.dataFile);
  });

  test('a map that is not there is FILE_MISSING, for BucketMap.verify as for a read-only open', () => {
    const missing = path.join(dir, 'missing', 'restart');
    for (const attempt of [() => BucketMap.verify({ restartFile: missing }), () => new BucketMap({ ...config, restartFile: missing, drives: undefined, readOnly: true })]) {
      try {
        attempt();
        assert.unreachable('opened a map that does not exist');
      } catch (err) {
        assert.instance(err, BucketMapError);
        assert.is((err as BucketMapError).code, codes.FILE_MISSING, (err as Error).message);
      }
    }
    assert.not.ok(fs.existsSync(path.join(dir, 'missing')), 'nothing made for a missing map');
  });

  test.run();
}
