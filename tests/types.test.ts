import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { removeDir, tempDir } from './helpers.js';

// What a TypeScript consumer compiles against is build/host/index.d.ts (package.json "types"),
// not the sources: these tests compile consumer code against the emitted declarations.
const here = path.dirname(fileURLToPath(import.meta.url));
const entry = path.resolve(here, '..', 'host', 'index.js');
const repo = path.resolve(here, '..', '..');

function diagnostics(source: string): string[] {
  const dir = tempDir('bm-types-');
  try {
    const file = path.join(dir, 'consumer.mts');
    fs.writeFileSync(file, source.replaceAll('BUCKET_MAP', JSON.stringify(entry)));
    const program = ts.createProgram([file], {
      target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
      lib: ['lib.es2023.d.ts', 'lib.esnext.disposable.d.ts'], types: ['node'], typeRoots: [path.join(repo, 'node_modules', '@types')],
      strict: true, noEmit: true, skipLibCheck: true,
    });
    return ts.getPreEmitDiagnostics(program)
      .filter((d) => d.file?.fileName === file)
      .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  } finally {
    removeDir(dir);
  }
}

test('the README examples and the documented signatures compile against the declarations', () => {
  const errors = diagnostics(`
    import { BucketMap, BucketMapError, codes, codecs, NoSpace, bytesToBase58, base58ToBytes, type Entry, type VerifyReport, type CompactReport, type BucketMapStats, type PackedKeys } from BUCKET_MAP;
    declare const pubkey: Uint8Array;
    declare const slotInfo: Uint8Array;
    const map = new BucketMap({ maxBuckets: 1024, restartFile: './index/restart' });
    map.insert(pubkey, [slotInfo]);
    const [slotList, refCount]: [Uint8Array[], number] = map.readValue(pubkey) ?? [[], 0];
    map.update(pubkey, (current) => current && [current[0], current[1] + 1]);
    const rc: number | undefined = map.addref(pubkey);
    const gone: boolean = map.deleteKey(pubkey);
    for (const [key, [list, n]] of map) { const k: Uint8Array = key; const l: Uint8Array[] = list; const c: number = n; }
    map.flush();
    map.flush({ durable: true });
    const ro = new BucketMap({ maxBuckets: 1024, restartFile: 'x', readOnly: true });
    const isRo: boolean = ro.readOnly;
    const keys = new Uint8Array(64);
    const slots = new Int32Array(2), refCounts = new Float64Array(2), values = new Uint8Array(32);
    const read: number = map.readManyInto(keys, values, slots, refCounts);
    const read2: number = map.readManyInto([pubkey, 'So11111111111111111111111111111111111111112', { toBytes: () => pubkey }], values, slots, null, 0);
    const many: Array<Entry<Uint8Array> | undefined> = map.getMany(keys);
    const has: boolean[] = map.hasMany(keys);
    map.insertMany(keys, [[slotInfo], []], 2);
    map.insertMany(keys, [[slotInfo], []], [1, 2]);
    map.insertMany([[pubkey, [slotInfo]], [pubkey, [], 3]]);
    const deleted: number = map.deleteMany(keys);
    const present: number = map.addrefMany(keys, refCounts) + map.unrefMany([pubkey]);
    const one: number = map.readInto(pubkey, values, 0) + map.lastRefCount;
    const view: PackedKeys<Uint8Array> = map.packed(keys);
    view.insert(0, [slotInfo], 1);
    const v: number = view.readInto(0, values, 0) + view.length + view.key(1).length + (view.addref(0) ?? 0) + (view.unref(0) ?? 0);
    const vb: boolean = view.has(0) && view.delete(1) && view.get(0) !== undefined;
    const set: BucketMap = map.set(pubkey, [[slotInfo], 1]);
    const noSpace: NoSpace | undefined = map.tryInsert(pubkey, [slotInfo], 1);
    if (noSpace !== undefined) map.grow(noSpace);
    const ix: number = map.bucketIx(pubkey) + map.numBuckets + map.size;
    const drives: readonly string[] = map.drives;
    const bucket = map.getBucket(pubkey);
    const b = map.getBucketFromIndex(0);
    const len: number = b.bucketLen() + b.keys().length + b.items().length;
    const item = b.items()[0]; const ik: Uint8Array = item.key; const il: Uint8Array[] = item.slotList; const ir: number = item.refCount;
    const bv: Entry<Uint8Array> | undefined = b.readValue(pubkey);
    b.insert(pubkey, [slotInfo], 2);
    const bn: NoSpace | undefined = b.tryWrite(pubkey, [slotInfo]);
    if (bn !== undefined) b.grow(bn);
    b.update(pubkey, () => undefined);
    const bd: boolean = b.deleteKey(pubkey);
    b.setAnticipatedCount(10);
    const dups: Array<[number, Uint8Array | undefined]> = bucket.batchInsertNonDuplicates([[pubkey, slotInfo]]);
    map.setAnticipatedCount(1000);
    const compacted: CompactReport = map.compact({ load: 0.85 });
    const freed: number = compacted.buckets + compacted.bytesFreed + compacted.ms;
    const stats: BucketMapStats = map.stats();
    const report: VerifyReport = map.verify();
    const ok: boolean = report.ok && report.problems.length === 0 && report.notes.length === 0;
    const closed: VerifyReport = BucketMap.verify({ restartFile: 'x', drives: ['y'] });
    map.close();
    map[Symbol.dispose]();
    { using scoped = new BucketMap({ maxBuckets: 1 }); }
    const big = new BucketMap<bigint>({ maxBuckets: 2, codec: codecs.u64 });
    big.insert(pubkey, [1n, 2n]);
    const bigEntry: Entry<bigint> | undefined = big.get(pubkey);
    const own = new BucketMap<number>({ maxBuckets: 2, codec: { size: 4, encode(v: number, t: Uint8Array, o: number) { t[o] = v; }, decode(s: Uint8Array, o: number) { return s[o]; } } });
    const text: string = bytesToBase58(base58ToBytes('So11111111111111111111111111111111111111112'));
    try { map.get(pubkey); } catch (err) { if (err instanceof BucketMapError && err.code === codes.CLOSED) { const f: string | undefined = err.file; } }
  `);
  assert.equal(errors, []);
});

test('the declarations offer no Bucket member the README does not document', () => {
  // These run without the guards the documented calls go through (closed map, read-only map,
  // reentrancy, argument checks): on a Bucket kept past close() they wrote files into the drive
  // of whichever map had it open next. They are for BucketMap and the batcher only.
  const errors = diagnostics(`
    import { BucketMap } from BUCKET_MAP;
    const b = new BucketMap({ maxBuckets: 1 }).getBucketFromIndex(0);
    // @ts-expect-error internal
    void b.readKey;
    // @ts-expect-error internal
    void b.removeKey;
    // @ts-expect-error internal
    void b.rewriteRef;
    // @ts-expect-error internal
    void b.writeEncoded;
    // @ts-expect-error internal
    void b.encode;
    // @ts-expect-error internal
    void b.decode;
    // @ts-expect-error internal
    void b.iterateKeys;
    // @ts-expect-error internal
    void b.iterateEntries;
  `);
  assert.equal(errors, []);
});

test.run();
