/**
 * A private copy of the compiled code the workers run. Other work in the same checkout (a test run
 * rebuilding build/) must not change the code under measurement halfway through a benchmark.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';

export interface Snapshot {
  dir: string;
  /** First 12 hex digits of the SHA-256 over build/host and build/core.wasm as copied. */
  fingerprint: string;
}

function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((rel) => fs.statSync(path.join(dir, rel)).isFile())
    .sort();
}

/**
 * Copies build/host, build/core.wasm and build/bench into a fresh folder under `parent`, which must
 * sit inside the repository so that the copy still finds node_modules and package.json ("type": "module").
 */
export function snapshotBuild(buildDir: string, parent: string): Snapshot {
  fs.mkdirSync(parent, { recursive: true });
  const dir = fs.mkdtempSync(path.join(parent, 'build-'));
  const hash = createHash('sha256');
  for (const part of ['host', 'bench']) fs.cpSync(path.join(buildDir, part), path.join(dir, part), { recursive: true });
  fs.copyFileSync(path.join(buildDir, 'core.wasm'), path.join(dir, 'core.wasm'));
  for (const rel of filesUnder(path.join(dir, 'host'))) {
    hash.update(`host/${rel}\0`).update(fs.readFileSync(path.join(dir, 'host', rel)));
  }
  hash.update('core.wasm\0').update(fs.readFileSync(path.join(dir, 'core.wasm')));
  return { dir, fingerprint: hash.digest('hex').slice(0, 12) };
}
