/**
 * The folder of a temporary map (no restart file): made in the OS temp folder, removed on close,
 * and at exit if the map was never closed. A temporary map in drives the caller gave has its own
 * files (named by its map id) removed at exit the same way. Neither happens when the owner is
 * killed, or is a worker thread ended by `terminate()` (which runs no exit handlers), so each
 * folder holds an owner lock, and making a new one removes the folders whose owner is gone: a
 * crashed run's temporary maps, which can be gigabytes, do not pile up in /tmp. The sweep reads
 * only the per-user folder the maps are made in, never the rest of the temp folder.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ioError } from './errors.js';
import { MapLock } from './lock.js';

const OWNER_FILE = 'owner.lock';
const MAP_PREFIX = 'map-';

/** Folders of this isolate's open temporary maps, with their owner locks and the per-user folder they are in. */
const live = new Map<string, { lock: MapLock; parent: string | null }>();
/** Open temporary maps in drives the caller gave: their drives and the map id their file names start with. */
const liveFiles = new Map<number, { drives: readonly string[]; prefix: string }>();
let nextFilesToken = 0;
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const d of live.keys()) removeTempFolder(d);
    for (const { drives, prefix } of liveFiles.values()) removeMapFiles(drives, prefix);
  });
}

/** Removes the files of one map (`<prefix>…`) from `drives`, leaving everything else there. */
function removeMapFiles(drives: readonly string[], prefix: string): void {
  for (const drive of drives) {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(drive, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const entry of entries) {
      // The map makes only files; a folder of that name is someone else's.
      if (entry.isDirectory() || !entry.name.startsWith(prefix)) continue;
      try {
        fs.rmSync(path.join(drive, entry.name), { force: true });
      } catch {
        // Exiting: one file that cannot go must not keep the others.
      }
    }
  }
}

/**
 * Has the files a temporary map makes in `drives` (names starting with `prefix`, its map id)
 * removed at exit unless the returned function is called first (by close(), which removes them).
 */
export function scheduleFileRemoval(drives: readonly string[], prefix: string): () => void {
  const token = nextFilesToken++;
  liveFiles.set(token, { drives: [...drives], prefix });
  installExitHook();
  return () => void liveFiles.delete(token);
}

/**
 * The folder temporary maps are made in: one per user in the OS temp folder, so that looking for
 * orphans reads only folders of ours. Null when it cannot be trusted (another user made it, or a
 * link stands in its place): maps then go straight into the temp folder, and nothing is swept.
 */
export function tempParent(): string | null {
  const uid = typeof process.getuid === 'function' ? process.getuid() : null;
  const parent = path.join(os.tmpdir(), `bucket-map-${uid ?? 'maps'}`);
  try {
    fs.mkdirSync(parent, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return null;
  }
  try {
    const st = fs.lstatSync(parent);
    if (!st.isDirectory() || (uid !== null && st.uid !== uid) || (st.mode & 0o022) !== 0) return null;
  } catch {
    return null;
  }
  return parent;
}

/** Removes the temporary map folders in `parent` whose owner lock names a process or thread that is gone. */
export function removeOrphanedTempFolders(parent: string): number {
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    if (!name.startsWith(MAP_PREFIX)) continue;
    const dir = path.join(parent, name);
    if (!MapLock.isStale(path.join(dir, OWNER_FILE))) continue;
    try {
      fs.rmSync(dir, { recursive: true, force: true });
      removed++;
    } catch {
      // Removed meanwhile by another sweeper: nothing to insist on.
    }
  }
  return removed;
}

/** Makes a new temporary map folder owned by this thread. */
export function createTempFolder(): string {
  let dir = '';
  let parent: string | null = null;
  for (let attempt = 0; dir === ''; attempt++) {
    parent = tempParent();
    if (parent !== null) removeOrphanedTempFolders(parent);
    const template = parent !== null ? path.join(parent, MAP_PREFIX) : path.join(os.tmpdir(), 'bucket-map-');
    try {
      dir = fs.mkdtempSync(template);
    } catch (err) {
      // Another process removed the emptied parent between our mkdir and mkdtemp: make it again.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt === 2) {
        throw ioError(`cannot make a temporary map folder in ${path.dirname(template)}`, err, path.dirname(template));
      }
    }
  }
  let lock: MapLock;
  try {
    lock = MapLock.acquire(path.join(dir, OWNER_FILE));
  } catch (err) {
    // A folder without an owner lock is never swept (it could be one being made): it goes now.
    removeFolder(dir, parent);
    throw err;
  }
  live.set(dir, { lock, parent });
  installExitHook();
  return dir;
}

export function removeTempFolder(dir: string): void {
  const entry = live.get(dir);
  live.delete(dir);
  entry?.lock.release();
  removeFolder(dir, entry?.parent ?? null);
}

function removeFolder(dir: string, parent: string | null): void {
  fs.rmSync(dir, { recursive: true, force: true });
  if (parent === null) return;
  // The per-user folder goes with its last map (rmdir refuses while others remain).
  try {
    fs.rmdirSync(parent);
  } catch {
    // Not empty, or already gone.
  }
}
