/**
 * docs/FORMAT.md taken at its word: a reader written from the document alone (its own CRC-32C and
 * HalfSipHash-1-3, no import of the map's parsing or layout code) parses maps both engines wrote
 * and must recover every key, slot list and refCount and each bucket's saved state. Then fields the
 * document says are checked at open are damaged, and the open must fail with the documented code.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as net from 'node:net';
import * as os from 'node:os';
import osModule from 'node:os';
import { syncBuiltinESMExports } from 'node:module';
import { BucketMap, codecs, type BucketMapConfig } from '../host/index.js';
import { ENGINES, Rng, hex, removeDir, snapshot, tempDir, testSeed, thrownBy } from './helpers.js';

// ── primitives, as the document names them ─────────────────────────────────────────────────────

/** CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, init and final xor 0xffffffff. */
const CRC_TABLE = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  return c >>> 0;
});
function crc32c(b: Uint8Array, start: number, end: number): number {
  let crc = 0xffffffff;
  for (let i = start; i < end; i++) crc = (CRC_TABLE[(crc ^ b[i]) & 0xff] ^ (crc >>> 8)) >>> 0;
  return (crc ^ 0xffffffff) >>> 0;
}

/** HalfSipHash-1-3, 64-bit output, of a message of whole little-endian u32 words: [lo, hi]. */
function halfSip13(msg: Uint8Array, k0: number, k1: number): [number, number] {
  const rotl = (x: number, b: number): number => ((x << b) | (x >>> (32 - b))) >>> 0;
  let v0 = k0 >>> 0;
  let v1 = (k1 ^ 0xee) >>> 0;
  let v2 = (0x6c796765 ^ k0) >>> 0;
  let v3 = (0x74656462 ^ k1) >>> 0;
  const round = (): void => {
    v0 = (v0 + v1) >>> 0; v1 = rotl(v1, 5); v1 = (v1 ^ v0) >>> 0; v0 = rotl(v0, 16);
    v2 = (v2 + v3) >>> 0; v3 = rotl(v3, 8); v3 = (v3 ^ v2) >>> 0;
    v0 = (v0 + v3) >>> 0; v3 = rotl(v3, 7); v3 = (v3 ^ v0) >>> 0;
    v2 = (v2 + v1) >>> 0; v1 = rotl(v1, 13); v1 = (v1 ^ v2) >>> 0; v2 = rotl(v2, 16);
  };
  const dv = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  for (let i = 0; i < msg.length; i += 4) {
    const m = dv.getUint32(i, true);
    v3 = (v3 ^ m) >>> 0;
    round();
    v0 = (v0 ^ m) >>> 0;
  }
  const b = (msg.length << 24) >>> 0;
  v3 = (v3 ^ b) >>> 0;
  round();
  v0 = (v0 ^ b) >>> 0;
  v2 = (v2 ^ 0xee) >>> 0;
  round(); round(); round();
  const lo = (v1 ^ v3) >>> 0;
  v1 = (v1 ^ 0xdd) >>> 0;
  round(); round(); round();
  return [lo, (v1 ^ v3) >>> 0];
}

const u32 = (b: Uint8Array, at: number): number => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at, true);
const u16 = (b: Uint8Array, at: number): number => b[at] | (b[at + 1] << 8);
const ascii = (b: Uint8Array, at: number, n: number): string => String.fromCharCode(...b.subarray(at, at + n));
const pad = (n: number, width: number): string => n.toString(16).padStart(width, '0');

function expect(ok: boolean, what: string): void {
  if (!ok) throw new Error(`format-doc reader: ${what}`);
}

// ── the reader ─────────────────────────────────────────────────────────────────────────────────

interface Slot {
  seq: number;
  seedLo: number;
  seedHi: number;
  indexGen: number;
  indexPages: number;
  drive: number;
  dataGen: number[];
  dataPow2: number[];
}

interface Restart {
  elementSize: number;
  maxSearch: number;
  maxBuckets: number;
  drives: number;
  segmentBytes: number;
  mapId: number;
  /** The slot in force of each bucket (null: both blank). */
  slots: Array<Slot | null>;
}

function readCommonHeader(b: Uint8Array, kind: number, file: string): void {
  expect(ascii(b, 0, 8) === 'BUCKTMAP', `${file}: magic`);
  expect(u32(b, 8) === 1, `${file}: version`);
  expect(u32(b, 12) === kind, `${file}: kind`);
  expect(u32(b, 16) === 1024, `${file}: header bytes`);
  expect(u32(b, 124) === crc32c(b, 0, 124), `${file}: header CRC`);
}

function readRestart(file: string): Restart {
  const b = new Uint8Array(fs.readFileSync(file));
  readCommonHeader(b, 3, file);
  expect(u32(b, 20) === 128 && u32(b, 24) === 0, 'slot bytes / reserved');
  const r: Restart = {
    elementSize: u32(b, 28), maxSearch: u32(b, 32), maxBuckets: u32(b, 36), drives: u32(b, 40),
    segmentBytes: u32(b, 44), mapId: u32(b, 48), slots: [],
  };
  for (let i = 52; i < 124; i++) expect(b[i] === 0, `restart header reserved byte ${i}`);
  for (let i = 128; i < 1024; i++) expect(b[i] === 0, `restart header reserved byte ${i}`);
  expect(b.length === 1024 + r.maxBuckets * 256, 'restart file size');
  for (let ix = 0; ix < r.maxBuckets; ix++) {
    let best: Slot | null = null;
    for (let s = 0; s < 2; s++) {
      const at = 1024 + ix * 256 + s * 128;
      const seq = u32(b, at);
      if (seq === 0) {
        for (let i = at; i < at + 128; i++) expect(b[i] === 0, `bucket ${ix} blank slot ${s} not all zero`);
        continue;
      }
      expect(u32(b, at + 4) === crc32c(b, at + 8, at + 128), `bucket ${ix} slot ${s} CRC`);
      for (let i = 25; i < 32; i++) expect(b[at + i] === 0, 'slot reserved 25-31');
      for (let i = 117; i < 128; i++) expect(b[at + i] === 0, 'slot reserved 117-127');
      if (best !== null && best.seq > seq) continue;
      const dataGen: number[] = [];
      const dataPow2: number[] = [];
      for (let c = 0; c < 17; c++) {
        dataGen.push(u32(b, at + 32 + 4 * c));
        dataPow2.push(b[at + 100 + c]);
      }
      best = { seq, seedLo: u32(b, at + 8), seedHi: u32(b, at + 12), indexGen: u32(b, at + 16), indexPages: u32(b, at + 20), drive: b[at + 24], dataGen, dataPow2 };
    }
    // A bucket's first record goes to slot A.
    if (best !== null && best.seq === 1) expect(u32(b, 1024 + ix * 256) === 1, `bucket ${ix}: first record not in slot A`);
    r.slots.push(best);
  }
  return r;
}

/** The segment files of one bucket file, header-checked field by field against the document. */
function readFile(
  r: Restart, dir: string, ix: number, kind: 1 | 2, sizeClass: number, gen: number, recordBytes: number, cellBytes: number,
  totalRecords: number, capacity: number, pow2: number, seedLo: number, seedHi: number,
): { segments: Uint8Array[]; perSegment: number } {
  const perSegment = Math.max(1, Math.floor((r.segmentBytes - 1024) / recordBytes));
  const count = Math.max(1, Math.ceil(totalRecords / perSegment));
  const segments: Uint8Array[] = [];
  for (let s = 0; s < count; s++) {
    const name = `${pad(r.mapId, 8)}-b${pad(ix, 4)}.${kind === 1 ? 'i' : `d${sizeClass}`}.${gen}.${s}.bkt`;
    const file = path.join(dir, name);
    const b = new Uint8Array(fs.readFileSync(file));
    const inSegment = Math.min(perSegment, totalRecords - s * perSegment);
    expect(b.length === Math.ceil((1024 + inSegment * recordBytes) / 1024) * 1024, `${name}: size ${b.length}`);
    readCommonHeader(b, kind, name);
    const fields: Array<[number, number]> = [
      [20, recordBytes], [24, cellBytes], [28, r.elementSize], [32, r.maxSearch], [36, r.maxBuckets], [40, ix], [44, gen],
      [48, s], [52, count], [56, perSegment], [60, inSegment], [64, totalRecords], [68, capacity], [72, sizeClass],
      [76, pow2], [80, seedLo], [84, seedHi], [88, r.mapId],
    ];
    for (const [at, want] of fields) expect(u32(b, at) === want >>> 0, `${name}: header field at ${at} is ${u32(b, at)}, expected ${want}`);
    for (let i = 92; i < 124; i++) expect(b[i] === 0, `${name}: reserved header byte ${i}`);
    segments.push(b);
  }
  return { segments, perSegment };
}

interface BucketState {
  /** The index header's saved state and counts (bytes 128-211 of segment 0). */
  clean: boolean;
  countsValid: boolean;
  savedLive: number;
  savedData: number[];
  journalCommit: number;
  /** What the cells themselves hold. */
  live: number;
  dataOccupied: number[];
}

interface Parsed {
  restart: Restart;
  /** hex key → JSON [slot list in hex, refCount], the shape tests/helpers snapshot() gives. */
  entries: Map<string, string>;
  buckets: Map<number, BucketState>;
}

function parseMap(restartFile: string, drives: readonly string[]): Parsed {
  const restart = readRestart(restartFile);
  const { elementSize, maxSearch, maxBuckets } = restart;
  const bits = Math.log2(maxBuckets);
  const entries = new Map<string, string>();
  const buckets = new Map<number, BucketState>();
  restart.slots.forEach((slot, ix) => {
    if (slot === null || slot.indexGen === 0) return;
    expect(slot.drive < restart.drives, 'drive');
    const dir = drives[slot.drive];
    const capacity = slot.indexPages * 20;
    const index = readFile(restart, dir, ix, 1, 0, slot.indexGen, 1024, 48, slot.indexPages, capacity, 0, slot.seedLo, slot.seedHi);
    const data: Array<{ segments: Uint8Array[]; perSegment: number; cellBytes: number; pow2: number } | null> = [];
    for (let c = 0; c < 17; c++) {
      if (slot.dataGen[c] === 0) {
        data.push(null);
        continue;
      }
      const cellBytes = (8 + 2 ** c * elementSize + 7) & ~7;
      const cap = 2 ** slot.dataPow2[c];
      data.push({ ...readFile(restart, dir, ix, 2, c, slot.dataGen[c], cellBytes, cellBytes, cap, cap, slot.dataPow2[c], 0, 0), cellBytes, pow2: slot.dataPow2[c] });
    }
    const dataCell = (c: number, cell: number): Uint8Array => {
      const d = data[c]!;
      const s = Math.floor(cell / d.perSegment);
      const at = 1024 + (cell - s * d.perSegment) * d.cellBytes;
      return d.segments[s].subarray(at, at + d.cellBytes);
    };
    const head = index.segments[0];
    const state: BucketState = {
      clean: u32(head, 128) === 1,
      countsValid: u32(head, 132) === crc32c(head, 136, 212),
      savedLive: u32(head, 136),
      savedData: Array.from({ length: 17 }, (_, c) => u32(head, 144 + 4 * c)),
      journalCommit: u32(head, 256),
      live: 0,
      dataOccupied: new Array<number>(17).fill(0),
    };
    const referenced = new Set<string>();
    const window = Math.min(maxSearch, capacity);
    let prevDist = -1;
    for (let n = 0; n < capacity; n++) {
      const p = Math.floor(n / 20);
      const slotIx = n % 20;
      const s = Math.floor(p / index.perSegment);
      const page = 1024 + (p - s * index.perSegment) * 1024;
      const seg = index.segments[s];
      const ctrl = u16(seg, page + 2 * slotIx);
      const extra = seg[page + 40 + slotIx];
      if ((ctrl & 0xff) === 0) {
        prevDist = -1;
        continue;
      }
      const dist = (ctrl & 0xff) - 1;
      const tag = (ctrl >>> 8) & 63;
      const kind = ctrl >>> 14;
      const cell = seg.subarray(page + 64 + 48 * slotIx, page + 64 + 48 * (slotIx + 1));
      const key = cell.slice(0, 32);
      const value = cell.subarray(32, 48);
      const [lo, hi] = halfSip13(key, slot.seedLo, slot.seedHi);
      expect((lo % capacity + dist) % capacity === n, `bucket ${ix} cell ${n}: dist ${dist} does not lead from home ${lo % capacity}`);
      expect(dist < window, `bucket ${ix} cell ${n}: dist ${dist} outside the window ${window}`);
      expect(tag === hi >>> 26, `bucket ${ix} cell ${n}: tag`);
      expect(prevDist < 0 || dist <= prevDist + 1, `bucket ${ix} cell ${n}: Robin Hood order (${prevDist} then ${dist})`);
      prevDist = dist;
      const bucketOfKey = bits === 0 ? 0 : ((key[0] << 8) | key[1]) >>> (16 - bits);
      expect(bucketOfKey === ix, `key ${hex(key)} is in bucket ${ix}, its leading bits say ${bucketOfKey}`);
      let list: string[];
      let refCount: number;
      if (kind === 1) {
        expect(elementSize <= 16, 'INLINE entry with elements over 16 bytes');
        for (let i = elementSize; i < 16; i++) expect(value[i] === 0, 'INLINE padding');
        list = [hex(value.subarray(0, elementSize))];
        refCount = 1 + extra;
      } else if (kind === 2) {
        expect(extra === 0, 'extra of a ZERO entry');
        for (let i = 8; i < 16; i++) expect(value[i] === 0, 'ZERO bytes 8-15');
        refCount = u32(value, 0) + u32(value, 4) * 2 ** 32;
        expect(refCount <= Number.MAX_SAFE_INTEGER, 'ZERO refCount');
        list = [];
      } else {
        expect(kind === 3, `bucket ${ix} cell ${n}: kind ${kind}`);
        expect(extra === 0, 'extra of a DATA entry');
        const created = u32(value, 0);
        const createdPow2 = value[4];
        const c = value[5];
        const slots = u32(value, 8);
        expect(u16(value, 6) === 0 && u32(value, 12) === 0, 'DATA zero fields');
        const d = data[c];
        expect(d !== null && d !== undefined, `DATA entry names class ${c}, which has no file`);
        const at = created * 2 ** (d!.pow2 - createdPow2);
        expect(slots >= 1 && slots <= Math.min(2 ** c, 65536, Math.floor(2 ** 20 / elementSize)), 'slot count');
        const dc = dataCell(c, at);
        expect((dc[7] & 1) === 1 && (dc[7] & 0xfe) === 0, 'data cell flags');
        refCount = u32(dc, 0) + (u32(dc, 4) & 0xffffff) * 2 ** 32;
        expect(refCount <= Number.MAX_SAFE_INTEGER, 'data refCount');
        list = [];
        for (let e = 0; e < slots; e++) list.push(hex(dc.subarray(8 + e * elementSize, 8 + (e + 1) * elementSize)));
        // An entry needs a data cell only for these (else it would be INLINE or ZERO).
        expect(slots > 1 || refCount === 0 || refCount > 256 || elementSize > 16, 'DATA entry that fits INLINE');
        referenced.add(`${c}:${at}`);
      }
      expect(!entries.has(hex(key)), `key ${hex(key)} twice`);
      entries.set(hex(key), JSON.stringify([list, refCount]));
      state.live++;
    }
    for (let c = 0; c < 17; c++) {
      const d = data[c];
      if (d === null) continue;
      for (let cell = 0; cell < 2 ** d.pow2; cell++) {
        if ((dataCell(c, cell)[7] & 1) === 0) continue;
        state.dataOccupied[c]++;
        expect(referenced.has(`${c}:${cell}`), `bucket ${ix} class ${c} cell ${cell} occupied but unreferenced`);
      }
    }
    buckets.set(ix, state);
  });
  return { restart, entries, buckets };
}

/** The close record, parsed and checked as the document describes (null if absent). */
function readCloseRecord(restartFile: string, r: Restart): Array<{ seq: number; live: number; data: number[] }> | null {
  const file = `${restartFile}.closed`;
  if (!fs.existsSync(file)) return null;
  const b = new Uint8Array(fs.readFileSync(file));
  expect(b.length === 32 + r.maxBuckets * 76, 'close record size');
  expect(ascii(b, 0, 8) === 'BUCKTCLS', 'close record magic');
  expect(u32(b, 8) === 1 && u32(b, 12) === r.maxBuckets && u32(b, 16) === r.mapId && u32(b, 20) === 76, 'close record header');
  expect(u32(b, 24) === crc32c(b, 32, b.length), 'close record body CRC');
  expect(u32(b, 28) === crc32c(b, 0, 28), 'close record header CRC');
  const out = [];
  for (let ix = 0; ix < r.maxBuckets; ix++) {
    const at = 32 + 76 * ix;
    out.push({ seq: u32(b, at), live: u32(b, at + 4), data: Array.from({ length: 17 }, (_, c) => u32(b, at + 8 + 4 * c)) });
  }
  return out;
}

// ── maps to read ───────────────────────────────────────────────────────────────────────────────

function configFor(dir: string, engine: 'wasm' | 'host', elementSize: number, extra: Partial<BucketMapConfig> = {}): BucketMapConfig {
  return {
    engine, maxBuckets: 2, maxSearch: 16, segmentBytes: 65536, codec: codecs.bytes(elementSize),
    restartFile: path.join(dir, 'restart'), drives: [path.join(dir, 'd0'), path.join(dir, 'd1')], ...extra,
  };
}

/** Every shape of entry: empty lists, inline and data lists (several classes), refCounts at the edges, deletes and updates. */
function fill(map: BucketMap, rng: Rng, n: number, elementSize: number): Uint8Array[] {
  const keys: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const key = rng.key();
    keys.push(key);
    // One list of 5,000 elements: a cell larger than a 64 KiB segment, so each takes a segment of its own.
    const length = i === 5 ? 5000 : i % 97 === 0 ? 300 : [0, 1, 1, 1, 2, 3, 5, 9][i % 8];
    const rc = [1, 1, 0, 2, 256, 257, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER][i % 8 === 1 ? (i >>> 3) % 8 : i % 8];
    map.insert(key, Array.from({ length }, () => rng.bytes(elementSize)), rc);
  }
  for (let i = 0; i < n; i += 7) map.deleteKey(keys[i]);
  for (let i = 3; i < n; i += 11) map.insert(keys[i], [rng.bytes(elementSize)], 1 + (i % 300));
  return keys;
}

function checkAgainstMap(parsed: Parsed, expected: Map<string, string>, close: ReturnType<typeof readCloseRecord>, closed: boolean): void {
  assert.is(parsed.entries.size, expected.size, 'entries read from the files');
  for (const [k, v] of expected) assert.is(parsed.entries.get(k), v, `key ${k}`);
  for (const [ix, b] of parsed.buckets) {
    assert.is(b.journalCommit, 0, `bucket ${ix}: no journal record in force`);
    if (!closed) continue;
    assert.ok(b.clean && b.countsValid, `bucket ${ix}: clean with valid counts after close`);
    assert.is(b.savedLive, b.live, `bucket ${ix}: saved live count`);
    assert.equal(b.savedData, b.dataOccupied, `bucket ${ix}: saved data counts`);
    assert.ok(close !== null, 'a clean close leaves a close record');
    const entry = close![ix];
    assert.is(entry.seq, parsed.restart.slots[ix]!.seq, `bucket ${ix}: close record names the slot in force`);
    assert.is(entry.live, b.live, `bucket ${ix}: close record live count`);
    assert.equal(entry.data, b.dataOccupied, `bucket ${ix}: close record data counts`);
  }
}

for (const engine of ENGINES) {
  const test = suite(`format-doc reader [${engine}]`);
  let dir = '';
  test.before.each(() => {
    dir = tempDir();
  });
  test.after.each(() => removeDir(dir));

  for (const elementSize of [16, 24, 8]) {
    test(`a reader written from FORMAT.md recovers every entry and each bucket's state (${elementSize}-byte elements)`, () => {
      const seed = testSeed();
      const rng = new Rng(seed);
      const config = configFor(dir, engine, elementSize);
      const map = new BucketMap(config);
      let open = true;
      try {
        fill(map, rng, 3200, elementSize);
        map.flush();
        let expected = snapshot(map);
        // Open and flushed: the files already say everything, each bucket clean.
        let parsed = parseMap(config.restartFile!, config.drives!);
        checkAgainstMap(parsed, expected, null, false);
        for (const [ix, b] of parsed.buckets) assert.ok(b.clean && b.countsValid && b.savedLive === b.live, `bucket ${ix} clean after flush (seed ${seed})`);
        // One change marks its bucket dirty in the file before anything else.
        const key = rng.key();
        map.insert(key, [rng.bytes(elementSize)], 1);
        const ix = map.bucketIx(key);
        parsed = parseMap(config.restartFile!, config.drives!);
        assert.is(parsed.buckets.get(ix)!.clean, false, 'a changed bucket is dirty on disk');
        expected = snapshot(map);
        map.close();
        open = false;
        parsed = parseMap(config.restartFile!, config.drives!);
        const close = readCloseRecord(config.restartFile!, parsed.restart);
        checkAgainstMap(parsed, expected, close, true);
        assert.is(parsed.restart.elementSize, elementSize);
        assert.is(parsed.restart.segmentBytes, 65536);
        // The map has to have used what the reader exercises: several index segments, both drives.
        const pages = parsed.restart.slots.map((s) => s?.indexPages ?? 0);
        assert.ok(Math.max(...pages) > 63, `an index spans several segments (${pages})`);
        assert.ok(parsed.restart.slots.some((s) => s !== null && s.dataGen[13] !== 0), 'a data class whose cells exceed a segment');
      } catch (err) {
        (err as Error).message += ` (TEST_SEED=${seed})`;
        throw err;
      } finally {
        if (open) map.close();
      }
    });
  }

  test.run();
}

{
  const test = suite('format-doc lock and reader files');
  let dir = '';
  test.before.each(() => {
    dir = tempDir();
  });
  test.after.each(() => removeDir(dir));

  test('the writer and each reader name themselves in an owner line; close removes them', () => {
    const config = configFor(dir, 'host', 16);
    const lock = `${config.restartFile}.lock`;
    const line = (file: string): string[] => {
      const text = fs.readFileSync(file, 'utf8');
      assert.ok(text.endsWith('\n') && text.indexOf('\n') === text.length - 1, 'one line');
      const fields = text.slice(0, -1).split(' ');
      assert.is(fields.length, 7, text);
      assert.is(fields[0], String(process.pid));
      assert.is(fields[2], os.hostname());
      assert.ok(/^\d+$/.test(fields[3]) && /^\d+$/.test(fields[6]), text);
      let ns = '-';
      try {
        ns = fs.readlinkSync('/proc/self/ns/pid');
      } catch {
        // not Linux
      }
      assert.is(fields[5], ns);
      return fields;
    };
    const writer = new BucketMap(config);
    line(lock);
    writer.close();
    assert.not.ok(fs.existsSync(lock), 'close removes the lock file');
    const readers = [new BucketMap({ ...config, readOnly: true }), new BucketMap({ ...config, readOnly: true })];
    const names = fs.readdirSync(`${lock}.readers`);
    assert.is(names.length, 2);
    for (const name of names) {
      assert.match(name, new RegExp(`^${process.pid}\\.[0-9a-z]+$`));
      line(path.join(`${lock}.readers`, name));
    }
    for (const r of readers) r.close();
    assert.not.ok(fs.existsSync(`${lock}.readers`), 'the last reader removes the folder');
  });

  test.run();
}

{
  const test = suite('format-doc byte order');
  test('a big-endian machine is refused before any file is read: an open and the static verify', () => {
    const dir = tempDir();
    const config = configFor(dir, 'host', 16);
    new BucketMap(config).close();
    const real = osModule.endianness;
    osModule.endianness = () => 'BE';
    syncBuiltinESMExports();
    try {
      for (const run of [() => new BucketMap(config).close(), () => BucketMap.verify({ restartFile: config.restartFile!, drives: config.drives })]) {
        assert.is(thrownBy(run)?.code, 'BUCKET_MAP_UNSUPPORTED_PLATFORM', run.toString());
      }
    } finally {
      osModule.endianness = real;
      syncBuiltinESMExports();
      removeDir(dir);
    }
  });
  test.run();
}

// ── damage the document says is checked ────────────────────────────────────────────────────────

/** Rewrites the u32 at `at` of `file`; with `crc` = [from, to, crcAt] the covering CRC-32C is recomputed. */
function setU32(file: string, at: number, value: number, crc?: [number, number, number]): void {
  const b = new Uint8Array(fs.readFileSync(file));
  const dv = new DataView(b.buffer);
  dv.setUint32(at, value >>> 0, true);
  if (crc !== undefined) dv.setUint32(crc[2], crc32c(b, crc[0], crc[1]), true);
  fs.writeFileSync(file, b);
}
function setU8(file: string, at: number, value: number, crc?: [number, number, number]): void {
  const b = new Uint8Array(fs.readFileSync(file));
  b[at] = value;
  if (crc !== undefined) new DataView(b.buffer).setUint32(crc[2], crc32c(b, crc[0], crc[1]), true);
  fs.writeFileSync(file, b);
}
const HEADER_CRC: [number, number, number] = [0, 124, 124];

interface Made {
  config: BucketMapConfig;
  parsed: Parsed;
  expected: Map<string, string>;
  /** Segment paths of bucket `ix`'s index, and of its data file of class `c`. */
  index(ix: number): string[];
  data(ix: number, c: number): string[];
  /** Byte offset in the restart file of bucket `ix`'s slot in force. */
  slotAt(ix: number): number;
  /** A key of bucket `ix`. */
  keyOf(ix: number): Uint8Array;
}

/** A closed map of maxBuckets 4 with keys in buckets 0 and 1 only (2 and 3 never written). */
function makeMap(dir: string, engine: 'wasm' | 'host', rng: Rng): Made {
  const config = configFor(dir, engine, 16, { maxBuckets: 4 });
  const map = new BucketMap(config);
  const keys: Uint8Array[] = [];
  for (let i = 0; i < 1600; i++) {
    const key = rng.key();
    key[0] &= 0x7f; // buckets 0 and 1
    keys.push(key);
    const length = i % 50 === 0 ? 200 : [0, 1, 2, 5][i % 4];
    map.insert(key, Array.from({ length }, () => rng.bytes(16)), 1 + (i % 3));
  }
  const expected = snapshot(map);
  map.close();
  const parsed = parseMap(config.restartFile!, config.drives!);
  const r = parsed.restart;
  const seg = (ix: number, kind: string, gen: number, recordBytes: number, total: number): string[] => {
    const slot = r.slots[ix]!;
    const per = Math.max(1, Math.floor((r.segmentBytes - 1024) / recordBytes));
    const count = Math.max(1, Math.ceil(total / per));
    return Array.from({ length: count }, (_, s) => path.join(config.drives![slot.drive], `${pad(r.mapId, 8)}-b${pad(ix, 4)}.${kind}.${gen}.${s}.bkt`));
  };
  return {
    config, parsed, expected,
    index: (ix) => seg(ix, 'i', r.slots[ix]!.indexGen, 1024, r.slots[ix]!.indexPages),
    data: (ix, c) => seg(ix, `d${c}`, r.slots[ix]!.dataGen[c], (8 + 2 ** c * 16 + 7) & ~7, 2 ** r.slots[ix]!.dataPow2[c]),
    slotAt: (ix) => {
      const b = fs.readFileSync(config.restartFile!);
      const a = 1024 + ix * 256;
      return b.readUInt32LE(a) > b.readUInt32LE(a + 128) ? a : a + 128;
    },
    keyOf: (ix) => keys.find((k) => (k[0] >>> 6) === ix)!,
  };
}

/** Opening (and reading every entry of) the map fails with `code`, and the message matches `message`. */
function refused(config: BucketMapConfig, code: string | string[], message?: RegExp, what = ''): void {
  const err = thrownBy(() => {
    const map = new BucketMap(config);
    try {
      snapshot(map);
    } finally {
      map.close();
    }
  });
  assert.ok(err !== null, `${what}: expected ${code}, the map opened and read`);
  if (Array.isArray(code)) assert.ok(code.includes(err!.code!), `${what}: ${err!.code} ${err!.message}`);
  else assert.is(err!.code, code, `${what}: ${err!.message}`);
  if (message !== undefined) assert.match(err!.message, message);
}

function opensIntact(m: Made, extra: Partial<BucketMapConfig> = {}): BucketMap {
  const map = new BucketMap({ ...m.config, ...extra });
  assert.equal(snapshot(map), m.expected);
  return map;
}

for (const engine of ENGINES) {
  const test = suite(`format-doc damage [${engine}]`);
  let dir = '';
  let m: Made;
  let seed = 0;
  test.before.each(() => {
    dir = tempDir();
    seed = testSeed();
    m = makeMap(dir, engine, new Rng(seed));
  });
  test.after.each(() => removeDir(dir));
  const CORRUPT = 'BUCKET_MAP_CORRUPT';
  const MISMATCH = 'BUCKET_MAP_CONFIG_MISMATCH';
  const RECOVERY = 'BUCKET_MAP_NEEDS_RECOVERY';

  test('the map as made: buckets 2 and 3 never written, 0 and 1 with data files', () => {
    assert.is(m.parsed.restart.slots[2], null);
    assert.is(m.parsed.restart.slots[3], null);
    assert.ok(m.parsed.restart.slots[0]!.dataGen[8] !== 0 && m.parsed.restart.slots[1]!.dataGen[1] !== 0, `seed ${seed}`);
    opensIntact(m).close();
  });

  test('restart file: magic, future version, kind, header bytes, slot bytes, header CRC', () => {
    const f = m.config.restartFile!;
    const original = fs.readFileSync(f);
    const cases: Array<[() => void, string, RegExp?]> = [
      [() => setU8(f, 0, 'X'.charCodeAt(0)), CORRUPT, /magic/],
      [() => setU8(f, 7, 'S'.charCodeAt(0), HEADER_CRC), CORRUPT, /magic/],
      [() => setU32(f, 8, 2, HEADER_CRC), CORRUPT, /format version 2 is not supported/],
      // Version is checked before the CRC: a future version whose header CRC differs says so.
      [() => setU32(f, 8, 2), CORRUPT, /format version 2 is not supported/],
      [() => setU32(f, 12, 1, HEADER_CRC), CORRUPT, /kind/],
      [() => setU32(f, 16, 2048, HEADER_CRC), CORRUPT, /header size/],
      [() => setU32(f, 20, 64, HEADER_CRC), CORRUPT],
      [() => setU8(f, 60, 1), CORRUPT, /checksum/],
      [() => setU8(f, 123, 1), CORRUPT, /checksum/],
      [() => setU32(f, 124, 0x12345678), CORRUPT, /checksum/],
      [() => setU32(f, 28, 8, HEADER_CRC), MISMATCH, /elementSize/],
      [() => setU32(f, 32, 17, HEADER_CRC), MISMATCH, /maxSearch/],
      [() => setU32(f, 36, 8, HEADER_CRC), MISMATCH, /maxBuckets/],
      [() => setU32(f, 40, 3, HEADER_CRC), MISMATCH, /drives/],
      [() => setU32(f, 44, 65535, HEADER_CRC), CORRUPT, /segment size/],
      [() => setU32(f, 44, 0x80000000, HEADER_CRC), CORRUPT, /segment size/],
      [() => fs.appendFileSync(f, Buffer.alloc(1)), CORRUPT, /size is/],
      [() => fs.truncateSync(f, original.length - 256), CORRUPT, /size is/],
    ];
    for (const [i, [damage, code, message]] of cases.entries()) {
      fs.writeFileSync(f, original);
      damage();
      refused(m.config, code, message, `case ${i}`);
    }
    // Bytes 128-1023 are covered by no CRC: a change there is not noticed.
    fs.writeFileSync(f, original);
    setU8(f, 500, 7);
    opensIntact(m).close();
  });

  test('restart file slots: CRC coverage, blank slots, the slot in force and its ranges', () => {
    const f = m.config.restartFile!;
    const original = fs.readFileSync(f);
    const inForce = m.slotAt(0);
    const other = inForce === 1024 ? 1024 + 128 : 1024;
    const slotCrc = (at: number): [number, number, number] => [at + 8, at + 128, at + 4];
    const cases: Array<[() => void, string, RegExp?]> = [
      // A blank bucket's slot with a byte set is damage, with no valid twin.
      [() => setU8(f, 1024 + 3 * 256 + 128 + 50, 1), CORRUPT, /bucket 3 is damaged in both slots/],
      [() => setU8(f, 1024 + 2 * 256 + 4, 1), CORRUPT, /bucket 2 is damaged in both slots/],
      // Reserved bytes 25-31 and 117-127 are under the slot's CRC: with both slots damaged, nothing is left.
      [() => { setU8(f, inForce + 25, 1); setU8(f, other + 127, 1); }, CORRUPT, /damaged in both slots/],
      [() => { setU8(f, inForce + 4, 0); setU8(f, other + 117, 1); }, CORRUPT, /damaged in both slots/],
      // The slot in force is checked, with no fallback to the other one.
      [() => setU32(f, inForce + 20, 0, slotCrc(inForce)), CORRUPT, /index size 0 pages/],
      [() => setU32(f, inForce + 20, 214748365, slotCrc(inForce)), CORRUPT, /index size/],
      [() => setU8(f, inForce + 24, 2, slotCrc(inForce)), CORRUPT, /drive 2 does not exist/],
      [() => setU8(f, inForce + 108, 32, slotCrc(inForce)), CORRUPT, /data class 8 capacity 2\^32/],
    ];
    for (const [i, [damage, code, message]] of cases.entries()) {
      fs.writeFileSync(f, original);
      damage();
      refused(m.config, code, message, `case ${i}`);
    }
    // The older record names a file since replaced (FILE_MISSING) or lacks a data class the
    // entries use (CORRUPT on reading one), depending on what the last update changed.
    const olderTaken = ['BUCKET_MAP_FILE_MISSING', CORRUPT];
    // The higher sequence number wins: the older slot, made newer, is taken.
    fs.writeFileSync(f, original);
    setU32(f, other, original.readUInt32LE(inForce) + 1);
    refused(m.config, olderTaken, undefined, 'older slot renumbered');
    // Equal sequence numbers: slot A is taken.
    fs.writeFileSync(f, original);
    setU32(f, other, original.readUInt32LE(inForce));
    if (other === 1024) refused(m.config, olderTaken, undefined, 'equal numbers, older in A');
    else opensIntact(m).close();
    // A torn slot in force (CRC fails) leaves the other in force: the same older record.
    fs.writeFileSync(f, original);
    setU8(f, inForce + 30, 1);
    refused(m.config, olderTaken, undefined, 'torn slot in force');
  });

  for (const where of ['at open', 'on first use'] as const) {
    test(`index and data files: magic, future version, header CRC and fields (${where})`, () => {
      if (where === 'at open') m.config = { ...m.config, checkFilesAtOpen: true };
      const files = [...m.index(0), ...m.data(1, 1), m.index(1).at(-1)!, m.data(0, 8)[0]];
      assert.ok(m.index(0).length > 1, 'the index of bucket 0 has several segments');
      for (const file of files) {
        const original = fs.readFileSync(file);
        const cases: Array<[() => void, string, RegExp?]> = [
          [() => setU8(file, 3, 0), CORRUPT, /magic/],
          [() => setU32(file, 8, 2, HEADER_CRC), CORRUPT, /format version 2 is not supported/],
          [() => setU32(file, 12, 3, HEADER_CRC), CORRUPT, /kind/],
          [() => setU8(file, 100, 1), CORRUPT, /checksum/],
          [() => setU32(file, 44, original.readUInt32LE(44) + 1, HEADER_CRC), CORRUPT, /generation/],
          [() => setU32(file, 76, original.readUInt32LE(76) + 1, HEADER_CRC), CORRUPT, /pow2/],
          [() => setU32(file, 60, original.readUInt32LE(60) - 1, HEADER_CRC), CORRUPT, /records in segment/],
          [() => setU32(file, 88, original.readUInt32LE(88) ^ 1, HEADER_CRC), CORRUPT, /map id/],
          [() => setU32(file, 80, original.readUInt32LE(80) ^ 1, HEADER_CRC), CORRUPT, /seed/],
          [() => setU32(file, 28, 8, HEADER_CRC), MISMATCH, /element size/],
          [() => setU32(file, 32, 17, HEADER_CRC), MISMATCH, /maxSearch/],
          [() => fs.appendFileSync(file, Buffer.alloc(1024)), CORRUPT, /size is/],
          [() => fs.rmSync(file), 'BUCKET_MAP_FILE_MISSING'],
        ];
        for (const [i, [damage, code, message]] of cases.entries()) {
          fs.writeFileSync(file, original);
          damage();
          refused(m.config, code, message, `${path.basename(file)} case ${i}`);
        }
        fs.writeFileSync(file, original);
      }
      opensIntact(m).close();
    });
  }

  test('a socket in place of a bucket segment is CORRUPT (not a regular file), at open and on first use', async () => {
    const file = m.data(1, 1)[0];
    fs.rmSync(file);
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(file, resolve));
    try {
      for (const checkFilesAtOpen of [true, false]) refused({ ...m.config, checkFilesAtOpen }, CORRUPT, /not a regular file/, `checkFilesAtOpen ${checkFilesAtOpen}`);
      fs.rmSync(`${m.config.restartFile}.closed`);
      refused(m.config, CORRUPT, /not a regular file/, 'no close record');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('index header: counts CRC and state; a dirty bucket is repaired, or NEEDS_RECOVERY for a reader', () => {
    const head = m.index(1)[0];
    const original = fs.readFileSync(head);
    const countsCrc: [number, number, number] = [136, 212, 132];
    const pristine = `${dir}.pristine`;
    fs.cpSync(dir, pristine, { recursive: true });
    try {
      const cases: Array<() => void> = [
        () => setU8(head, 140, 1), // reserved, but under the counts CRC
        () => setU8(head, 211, 1),
        () => setU8(head, 136, original[136] ^ 1),
        () => setU32(head, 132, original.readUInt32LE(132) ^ 1),
        () => setU32(head, 128, 0),
        () => setU32(head, 128, 2),
        // Clean with a valid CRC, but not the close record's count: only a vouched bucket notices.
        () => setU32(head, 136, original.readUInt32LE(136) + 1, countsCrc),
      ];
      for (const [i, damage] of cases.entries()) {
        for (const closeRecord of [true, false]) {
          fs.rmSync(dir, { recursive: true });
          fs.cpSync(pristine, dir, { recursive: true });
          damage();
          if (closeRecord) {
            for (const checkFilesAtOpen of [false, true]) refused({ ...m.config, readOnly: true, checkFilesAtOpen }, RECOVERY, undefined, `case ${i}`);
          } else {
            fs.rmSync(`${m.config.restartFile}.closed`);
          }
          const map = opensIntact(m);
          const repaired = map.stats().open.repairedBuckets;
          map.close();
          // The last case is a header that passes its own checks: without a close record it is taken as it says.
          assert.is(repaired, closeRecord || i < cases.length - 1 ? 1 : 0, `case ${i}, close record ${closeRecord}`);
          assert.equal(parseMap(m.config.restartFile!, m.config.drives!).entries, m.expected, `case ${i}`);
        }
      }
    } finally {
      fs.rmSync(pristine, { recursive: true, force: true });
    }
  });

  test('index header: bytes 212-255 and 296-1023 are under no check', () => {
    const head = m.index(1)[0];
    setU8(head, 230, 9);
    setU8(head, 600, 9);
    const map = opensIntact(m, { checkFilesAtOpen: true });
    assert.is(map.stats().open.repairedBuckets, 0);
    map.close();
  });

  test('journal: a committed record that fails its check is CORRUPT in a dirty bucket', () => {
    const head = m.index(1)[0];
    setU32(head, 128, 0);
    setU32(head, 256, 7);
    setU32(head, 260, 0x1234);
    refused(m.config, CORRUPT, /journal/);
  });

  test('journal: a committed record with a valid check is replayed', () => {
    const head = m.index(1)[0];
    const key = m.keyOf(1);
    // Find the key's cell the way the document says, then journal a new refCount for it.
    const slot = m.parsed.restart.slots[1]!;
    const capacity = slot.indexPages * 20;
    const [lo] = halfSip13(key, slot.seedLo, slot.seedHi);
    const files = m.index(1).map((f) => new Uint8Array(fs.readFileSync(f)));
    const per = Math.floor((m.parsed.restart.segmentBytes - 1024) / 1024);
    let cell = lo % capacity;
    const locate = (n: number): [Uint8Array, number, number] => {
      const p = Math.floor(n / 20);
      const s = Math.floor(p / per);
      return [files[s], 1024 + (p - s * per) * 1024, n % 20];
    };
    for (;;) {
      const [seg, page, sl] = locate(cell);
      if (hex(seg.subarray(page + 64 + 48 * sl, page + 64 + 48 * sl + 32)) === hex(key)) break;
      cell = (cell + 1) % capacity;
    }
    const [seg, page, sl] = locate(cell);
    const ctrl = u16(seg, page + 2 * sl);
    const body = new Uint8Array(32);
    const dv = new DataView(body.buffer);
    dv.setUint32(0, cell, true);
    // A ZERO entry with refCount 12345.
    dv.setUint32(4, (ctrl & 0x3fff) | (2 << 14), true);
    dv.setUint32(8, 12345, true);
    dv.setUint32(24, 99, true);
    const b = new Uint8Array(fs.readFileSync(head));
    const hv = new DataView(b.buffer);
    b.set(body, 264);
    hv.setUint32(260, halfSip13(body, 0x6a6f7572, 0x6e616c31)[0], true);
    hv.setUint32(256, 99, true);
    hv.setUint32(128, 0, true);
    fs.writeFileSync(head, b);
    const map = new BucketMap(m.config);
    try {
      assert.equal(map.get(key), [[], 12345]);
    } finally {
      map.close();
    }
  });

  test('close record: magic, future version, CRCs and entries; ignored by a writer, NEEDS_RECOVERY for a reader', () => {
    const f = `${m.config.restartFile}.closed`;
    const original = fs.readFileSync(f);
    const headCrc: [number, number, number] = [0, 28, 28];
    const bodyCrc: [number, number, number] = [32, original.length, 24];
    const seq0 = original.readUInt32LE(32);
    const cases: Array<[() => void, number]> = [
      [() => setU8(f, 5, 0, headCrc), 0],
      [() => setU32(f, 8, 2, headCrc), 0],
      [() => setU32(f, 20, 80, headCrc), 0],
      [() => setU32(f, 16, original.readUInt32LE(16) ^ 1, headCrc), 0],
      [() => setU8(f, 3, 0), 0],
      [() => setU8(f, 40, original[40] ^ 1), 0],
      [() => setU32(f, 24, 0), 0],
      [() => fs.appendFileSync(f, Buffer.alloc(1)), 0],
      // An entry for another sequence number: only that bucket is checked at open.
      // (The header CRC covers the body CRC at 24, so both are recomputed.)
      [() => { setU32(f, 32, seq0 + 1, bodyCrc); setU32(f, 0, original.readUInt32LE(0), headCrc); }, 1],
    ];
    for (const [i, [damage, deferred]] of cases.entries()) {
      fs.writeFileSync(f, original);
      damage();
      refused({ ...m.config, readOnly: true }, RECOVERY, undefined, `case ${i}`);
      fs.writeFileSync(f, original);
      damage();
      const map = opensIntact(m);
      assert.is(map.stats().open.deferredBuckets, deferred, `case ${i}`);
      map.close();
    }
  });

  test.run();
}
