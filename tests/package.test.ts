import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

// What `npm pack` would publish, listed without building (--ignore-scripts) or writing a tarball.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const packed = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' });
const files = new Set<string>(packed.status === 0 ? (JSON.parse(packed.stdout) as Array<{ files: Array<{ path: string }> }>)[0].files.map((f) => f.path) : []);

test('npm pack lists the package', () => {
  assert.is(packed.status, 0, packed.stderr);
});

test('the package ships every file its entry points, bin and the wasm engine load', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  const needed = [pkg.main, pkg.types, ...Object.values(pkg.bin as Record<string, string>), pkg.exports['.'].types, pkg.exports['.'].default, 'build/core.wasm'];
  for (const file of needed) assert.ok(files.has(path.posix.normalize(file)), `${file} is not in the package`);
  // Every module an entry point imports, transitively: a missing one fails only at a consumer's import.
  for (const file of files) {
    if (!file.endsWith('.js')) continue;
    for (const [, spec] of fs.readFileSync(path.join(root, file), 'utf8').matchAll(/from '(\.{1,2}\/[^']+)'/g)) {
      const target = path.posix.join(path.posix.dirname(file), spec);
      assert.ok(files.has(target), `${file} imports ${spec}, which is not in the package`);
    }
  }
});

test('the source maps the package ships point at sources it ships', () => {
  // node --enable-source-maps and debuggers show a frame's place in the source a map names; a
  // source left out of the package is a stack trace into a file that is not there.
  let maps = 0;
  for (const file of files) {
    if (!file.endsWith('.js.map')) continue;
    maps++;
    const map = JSON.parse(fs.readFileSync(path.join(root, file), 'utf8')) as { sources: string[]; sourcesContent?: unknown[] };
    if (map.sourcesContent !== undefined) continue;
    for (const source of map.sources) {
      const target = path.posix.join(path.posix.dirname(file), source);
      assert.ok(files.has(target), `${file} names ${source}, which is not in the package`);
    }
  }
  assert.ok(maps > 0, 'no source maps listed');
});

test('without mmap-io\'s native addon (npm skipped its install script), importing bucket-map says how to get it', () => {
  // A consumer's install as npm 12 leaves it by default: the package and its dependencies in place,
  // mmap-io unbuilt. The failure used to be a bare MODULE_NOT_FOUND for mmap_io.node.
  const consumer = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-consumer-'));
  try {
    const installed = path.join(consumer, 'node_modules', 'bucket-map');
    fs.mkdirSync(path.join(installed, 'build'), { recursive: true });
    fs.copyFileSync(path.join(root, 'package.json'), path.join(installed, 'package.json'));
    fs.cpSync(path.join(root, 'build', 'host'), path.join(installed, 'build', 'host'), { recursive: true });
    fs.copyFileSync(path.join(root, 'build', 'core.wasm'), path.join(installed, 'build', 'core.wasm'));
    const modules = path.join(root, 'node_modules');
    const mmapIo = fs.realpathSync(path.join(modules, 'mmap-io'));
    fs.cpSync(mmapIo, path.join(consumer, 'node_modules', 'mmap-io'), { recursive: true, filter: (from) => from !== path.join(mmapIo, 'build') });
    for (const dep of ['fs-native-extensions', '@assemblyscript', '@mapbox']) {
      fs.symlinkSync(path.join(modules, dep), path.join(consumer, 'node_modules', dep));
    }
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', "await import('bucket-map')"], { cwd: consumer, encoding: 'utf8' });
    assert.is.not(run.status, 0, 'the import fails');
    assert.match(run.stderr, /native addon of mmap-io/);
    assert.match(run.stderr, /npm approve-scripts @riaskov\/mmap-io/);
    assert.match(run.stderr, /npm rebuild mmap-io/);
  } finally {
    fs.rmSync(consumer, { recursive: true, force: true });
  }
});

test.run();
