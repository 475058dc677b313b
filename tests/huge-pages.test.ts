/**
 * `hugePages`: bucket files cached and mapped in 2 MiB pages. The option changes how the files
 * are written (the zero-fill's unit) and mapped (MADV_HUGEPAGE), never what is in them: a map
 * written with it opens without it and the other way round, on both engines. Where the kernel can
 * map a file in 2 MiB pages (Linux, transparent huge pages not `never`, ext4 from 6.16 or XFS),
 * the index of a hugePages map is so mapped and a default map's is not.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { BucketMap, type BucketMapConfig } from '../host/index.js';
import { ENGINES, Rng, entryValue, hex, persistentConfig, removeDir, snapshot, tempDir, thrownBy, withSeed } from './helpers.js';

/** Enough keys in one bucket for an index of several 2 MiB pages and a partial last one. */
const KEYS = 90_000;

/** Bytes this process has mapped from files with PMD entries, or null where the kernel does not say. */
function filePmdMappedBytes(): number | null {
  try {
    const m = /^FilePmdMapped:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/self/smaps_rollup', 'utf8'));
    return m === null ? null : Number(m[1]) * 1024;
  } catch {
    return null;
  }
}

/** Whether this kernel caches files in `dir` in PMD-sized folios when they are written 2 MiB at a time. */
function kernelMapsFilesHuge(dir: string): boolean {
  if (process.platform !== 'linux' || filePmdMappedBytes() === null) return false;
  try {
    if (fs.readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8').includes('[never]')) return false;
  } catch {
    return false;
  }
  const [major, minor] = os.release().split('.').map(Number);
  const type = fs.statfsSync(dir).type;
  if (type === 0x58465342) return true; // XFS: large folios since 5.18
  return type === 0xef53 && (major > 6 || (major === 6 && minor >= 16)); // ext4: since 6.16
}

/** Inserts KEYS keys (every tenth with a two-element list, in a data file); returns the model. */
function fill(map: BucketMap, rng: Rng): Map<string, string> {
  const model = new Map<string, string>();
  for (let i = 0; i < KEYS; i++) {
    const key = rng.key();
    const list = i % 10 === 0 ? [rng.bytes(16), rng.bytes(16)] : [rng.bytes(16)];
    map.insert(key, list);
    model.set(hex(key), entryValue(list, 1));
  }
  return model;
}

const types = suite('hugePages: the option');

types('must be a boolean', () => {
  for (const bad of ['yes', 1, null]) {
    const err = thrownBy(() => new BucketMap({ maxBuckets: 1, hugePages: bad as unknown as boolean }));
    assert.instance(err, TypeError, `hugePages: ${String(bad)}`);
    assert.match(err!.message, 'hugePages must be a boolean');
  }
});

types.run();

const kernel = suite('hugePages: the kernel maps the index in 2 MiB pages');
let kernelDir = '';
kernel.before.each(() => {
  kernelDir = tempDir();
});
kernel.after.each(() => removeDir(kernelDir));

/** How many more bytes are PMD-mapped after a one-bucket map with `hugePages` is filled and read. */
function pmdBytesAdded(hugePages: boolean): number {
  const map = new BucketMap({ maxBuckets: 1, engine: 'host', drives: [kernelDir], hugePages });
  const before = filePmdMappedBytes() as number;
  const rng = new Rng(41);
  fill(map, rng);
  const added = (filePmdMappedBytes() as number) - before;
  map.close();
  return added;
}

kernel('a default map is mapped in 4 KiB pages, a hugePages map in 2 MiB ones', () => {
  if (!kernelMapsFilesHuge(kernelDir)) {
    console.log(`  (skipped: this kernel or file system (${os.release()}) does not map files in 2 MiB pages)`);
    return;
  }
  // The default first: a hugePages map's mappings may be collected while a later map is measured.
  assert.is(pmdBytesAdded(false), 0, 'the default map: page-sized folios, no 2 MiB mappings');
  const added = pmdBytesAdded(true);
  assert.ok(added >= 2 * 1024 * 1024, `the hugePages map's index is mapped in 2 MiB pages (${added} bytes were)`);
});

kernel.run();

for (const engine of ENGINES) {
  const test = suite(`hugePages: the same files either way [${engine}]`);
  let dir = '';
  test.before.each(() => {
    dir = tempDir();
  });
  test.after.each(() => removeDir(dir));

  test('a map written with hugePages reopens without it, and back, with every entry', () => withSeed((rng) => {
    const huge: BucketMapConfig = persistentConfig(dir, engine, { maxBuckets: 1, hugePages: true });
    const plain: BucketMapConfig = { ...huge, hugePages: false };
    const map = new BucketMap(huge);
    const model = fill(map, rng);
    assert.ok(map.stats().index.resizes > 0, 'the index grew through files created with the option');
    map.close();

    const reopened = new BucketMap(plain);
    assert.equal(snapshot(reopened), model);
    assert.equal(reopened.verify().problems, []);
    // Grows again, now into files written page by page.
    for (const [key, value] of fill(reopened, rng)) model.set(key, value);
    reopened.close();

    const back = new BucketMap({ ...huge, engine: engine === 'host' ? 'wasm' : 'host' });
    assert.equal(snapshot(back), model);
    assert.equal(back.verify().problems, []);
    back.close();
    assert.equal(BucketMap.verify({ restartFile: huge.restartFile as string, drives: huge.drives }).problems, []);
  }));

  test.run();
}
