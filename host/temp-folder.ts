/**
 * The folder of a temporary map (no restart file): made in the OS temp folder, removed on close,
 * and at exit if the map was never closed. Neither happens when the owner is killed, or is a worker
 * thread ended by `terminate()` (which runs no exit handlers), so each folder holds an owner lock,
 * and making a new one removes the folders whose owner is gone: a crashed run's temporary maps,
 * which can be gigabytes, do not pile up in /tmp.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MapLock } from './lock.js';

const PREFIX = 'bucket-map-';
const OWNER_FILE = 'owner.lock';

/** Folders of this isolate's open temporary maps, with their owner locks. */
const live = new Map<string, MapLock>();
let exitHookInstalled = false;

/** Removes the temporary map folders in `parent` whose owner lock names a process or thread that is gone. */
export function removeOrphanedTempFolders(parent = os.tmpdir()): number {
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    if (!name.startsWith(PREFIX)) continue;
    const dir = path.join(parent, name);
    if (!MapLock.isStale(path.join(dir, OWNER_FILE))) continue;
    try {
      fs.rmSync(dir, { recursive: true, force: true });
      removed++;
    } catch {
      // Another user's folder, or one removed meanwhile: not ours to insist on.
    }
  }
  return removed;
}

/** Makes a new temporary map folder owned by this thread. */
export function createTempFolder(): string {
  removeOrphanedTempFolders();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), PREFIX));
  live.set(dir, MapLock.acquire(path.join(dir, OWNER_FILE)));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const d of live.keys()) removeTempFolder(d);
    });
  }
  return dir;
}

export function removeTempFolder(dir: string): void {
  live.get(dir)?.release();
  live.delete(dir);
  fs.rmSync(dir, { recursive: true, force: true });
}
