/**
 * One open map per restart file. Node has no flock, so the lock is a file next to the restart
 * file, made only where none exists and holding the owner's pid and process start time, then (on
 * Linux) the owning thread's id and start time. A lock whose owner is gone (the process died, or its pid now
 * belongs to another process, or the worker thread that opened the map ended without closing it)
 * is stale and is taken over, which is what an OS lock released at exit would give. The thread
 * matters because a map lives in the isolate that opened it: once that worker has ended, no code
 * can write through its mappings, so its files are in the state a killed process leaves. Within
 * one isolate a set of held paths answers without touching the file. Taking over a stale lock is
 * safe against one concurrent opener doing the same (see acquire).
 *
 * A lock file appears whole: it is written under a name of its own and hard-linked into place,
 * so a kill at any moment leaves either no lock or a complete one (plain O_EXCL create-then-write
 * left an empty file to a kill between the two, and every later open was LOCKED by "process 0").
 * Where hard links are not supported the create-then-write remains; a lock that does not parse is
 * therefore taken as stale only once it has not changed for UNFINISHED_LOCK_MS.
 *
 * Read-only opens share the map: each puts a reader file (the same owner text) in the folder
 * `<lock>.readers`, under a name of its own, and they never exclude one another. A writer and a
 * reader each publish themselves first and look for the other second, so when both open at once at
 * least one of them sees the other and backs off (both may: LOCKED either way, never both in).
 * Reader files of owners that are gone are removed by the next writer that finds them.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BucketMapError, codes, ioError } from './errors.js';

const held = new Set<string>();

/** How old an unreadable (empty or garbled) lock file must be before it is taken as abandoned. */
const UNFINISHED_LOCK_MS = 10_000;

/** The kernel's per-task flag set from the first step of its exit (include/linux/sched.h). */
const PF_EXITING = 0x4;

/**
 * From a /proc stat file: the task's start time in clock ticks since boot, and whether it is
 * exiting or exited (a zombie, or past the start of its exit, which a thread is when joining it
 * returns: the kernel wakes the joiner before it removes the thread from /proc). Null if the file
 * cannot be read.
 */
function readStat(statFile: string): { started: string; exiting: boolean } | null {
  let stat: string;
  try {
    stat = fs.readFileSync(statFile, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces; the fields after it are space-separated,
  // from field 3 (state); flags is field 9, starttime field 22.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = fields[0] ?? '';
  const flags = Number(fields[6] ?? 0);
  return { started: fields[19] ?? '', exiting: state === 'Z' || state === 'X' || (flags & PF_EXITING) !== 0 };
}

/** Start time of a process (Linux), or '' where /proc is not available. */
function startTime(pid: number): string {
  return readStat(`/proc/${pid}/stat`)?.started ?? '';
}

/** The OS thread running this isolate: '<tid> <start time>' (Linux), or '' where /proc has no thread-self. */
let thisThread: string | null = null;
function currentThread(): string {
  if (thisThread === null) {
    try {
      const link = fs.readlinkSync('/proc/thread-self'); // '<pid>/task/<tid>'
      const tid = Number(link.slice(link.lastIndexOf('/') + 1));
      const stat = readStat(`/proc/${process.pid}/task/${tid}/stat`);
      thisThread = Number.isInteger(tid) && tid > 0 && stat !== null ? `${tid} ${stat.started}` : '';
    } catch {
      thisThread = '';
    }
  }
  return thisThread;
}

function processAlive(pid: number, started: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  // The pid exists; it is the owner unless it was reused by a process started at another time.
  const now = startTime(pid);
  return now === '' || started === '' || now === started;
}

interface Owner {
  /** The file's text, which a takeover compares to make sure it moved the lock it judged. */
  text: string;
  /** False for an empty or garbled file: no owner can be named or checked. */
  parsed: boolean;
  /** Milliseconds since the file last changed. */
  ageMs: number;
  pid: number;
  started: string;
  host: string;
  /** The owning thread's OS id, or 0 when the lock does not say (other systems, older locks). */
  tid: number;
  threadStarted: string;
}

function alive(owner: Owner): boolean {
  if (!processAlive(owner.pid, owner.started)) return false;
  // A main thread lives as long as its process; a lock without a thread is the process's.
  if (owner.tid === 0 || owner.tid === owner.pid) return true;
  const now = readStat(`/proc/${owner.pid}/task/${owner.tid}/stat`);
  if (now === null) return !fs.existsSync(`/proc/${owner.pid}/task`); // no /proc here: assume alive
  // A thread past the start of its exit runs no more JavaScript (not so a process: its other
  // threads may still be running, so a process counts until it is gone).
  return !now.exiting && (owner.threadStarted === '' || now.started === owner.threadStarted);
}

function readOwner(file: string): Owner | null {
  let text: string;
  let ageMs: number;
  try {
    // O_NONBLOCK: a FIFO in the lock's place reads as empty (an unfinished lock), not a hang.
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    try {
      text = fs.readFileSync(fd, 'utf8');
      ageMs = Date.now() - fs.fstatSync(fd).mtimeMs;
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return null;
  }
  const [pid, started, host, tid, threadStarted] = text.trim().split(' ');
  const thread = Number(tid ?? 0);
  const owner = Number(pid);
  return {
    text, ageMs, parsed: /^\d+$/.test(pid ?? '') && owner > 0,
    pid: owner, started: started ?? '', host: host ?? '',
    tid: Number.isInteger(thread) && thread > 0 ? thread : 0, threadStarted: threadStarted ?? '',
  };
}

/** Is the lock's owner gone? An unreadable lock counts as gone once it has stood unchanged long enough. */
function abandoned(owner: Owner): boolean {
  if (!owner.parsed) return owner.ageMs >= UNFINISHED_LOCK_MS;
  if (owner.host !== '' && owner.host !== os.hostname()) return false;
  return !alive(owner);
}

/**
 * A name to write `file` under before it is linked or renamed into place (`<file>.<pid>.<random>.new`),
 * so that the file itself only ever appears whole.
 */
export function draftPath(file: string): string {
  return `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.new`;
}

/** The drafts of `file` in its folder (and locks moved aside), each with the pid that made it. */
function draftsOf(file: string): Array<{ path: string; pid: number }> {
  const prefix = `${path.basename(file)}.`;
  const dir = path.dirname(file);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const drafts: Array<{ path: string; pid: number }> = [];
  for (const name of names) {
    const m = name.startsWith(prefix) ? /^(\d+)\.[0-9a-z]+\.new$/.exec(name.slice(prefix.length)) : null;
    if (m !== null) drafts.push({ path: path.join(dir, name), pid: Number(m[1]) });
  }
  return drafts;
}

/** Removes the drafts of `file` (and locks moved aside) that a kill left: all of them, or with `deadOnly` those whose pid is gone. */
export function removeDrafts(file: string, deadOnly: boolean): void {
  for (const d of draftsOf(file)) if (!deadOnly || !processAlive(d.pid, '')) fs.rmSync(d.path, { force: true });
}

/**
 * Gives a finished draft the name `file` by a hard link, which never replaces an existing file:
 * true when linked, false when `file` exists, null when the file system has no hard links. The
 * draft's own name stays for the caller to remove.
 */
export function linkDraft(draft: string, file: string): boolean | null {
  try {
    fs.linkSync(draft, file);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS') return null;
    throw err;
  }
}

/** Creates `file` holding `text` if no such file exists (false if one does): whole, or not at all. */
function createWhole(file: string, text: string): boolean {
  const draft = draftPath(file);
  try {
    fs.writeFileSync(draft, text, { flag: 'wx', mode: 0o644 });
  } catch (err) {
    throw ioError(`cannot create lock ${file}`, err, file);
  }
  let linked: boolean | null;
  try {
    linked = linkDraft(draft, file);
  } catch (err) {
    throw ioError(`cannot create lock ${file}`, err, file);
  } finally {
    fs.rmSync(draft, { force: true });
  }
  if (linked !== null) return linked;
  // No hard links on this file system: create, then write (see UNFINISHED_LOCK_MS).
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw ioError(`cannot create lock ${file}`, err, file);
  }
  try {
    fs.writeSync(fd, text);
  } finally {
    fs.closeSync(fd);
  }
  return true;
}

function describe(owner: Owner, sameHost: boolean): string {
  if (!owner.parsed) return `another process (its lock file is unfinished: being written, or left so by a crash; it counts as abandoned after ${UNFINISHED_LOCK_MS / 1000} s)`;
  if (owner.pid === process.pid && sameHost) {
    if (owner.tid > 0 && `${owner.tid} ${owner.threadStarted}` === currentThread()) return 'this thread';
    return `another thread of this process${owner.tid > 0 ? ` (thread ${owner.tid})` : ''}`;
  }
  return `process ${owner.pid}${sameHost ? '' : ` on ${owner.host}`}`;
}

/** What a lock or reader file says about this thread: pid, start time, host, then thread on Linux. */
function ownerText(): string {
  const thread = currentThread();
  return `${process.pid} ${startTime(process.pid)} ${os.hostname()}${thread === '' ? '' : ` ${thread}`}\n`;
}

/** The folder of reader files beside lock `file`. */
function readersDir(file: string): string {
  return `${file}.readers`;
}

/**
 * The live readers of lock `file`; reader files whose owner is gone (and drafts of dead
 * processes) are removed on the way.
 */
function liveReaders(file: string): Owner[] {
  const dir = readersDir(file);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const live: Owner[] = [];
  for (const name of names) {
    const at = path.join(dir, name);
    if (name.endsWith('.new')) {
      // A reader file being written: published only once renamed, so not a reader yet.
      if (!processAlive(Number(name.split('.')[0]), '')) fs.rmSync(at, { force: true });
      continue;
    }
    const owner = readOwner(at);
    if (owner === null) continue;
    if (abandoned(owner)) fs.rmSync(at, { force: true });
    else live.push(owner);
  }
  if (live.length === 0) removeIfEmpty(dir);
  return live;
}

/**
 * Where no reader file can be made (a read-only or missing folder), no writer can make its lock
 * either, unless it has rights this process lacks: a reader then only checks the writer's lock.
 */
const NO_LOCK_HERE = ['EROFS', 'EACCES', 'EPERM', 'ENOENT', 'ENOTDIR'];

/**
 * Publishes a reader file for this thread in the readers folder of `file`: its path, or null where
 * no file can be made there (see NO_LOCK_HERE).
 */
function publishReader(file: string): string | null {
  const dir = readersDir(file);
  const reader = path.join(dir, `${process.pid}.${Math.random().toString(36).slice(2)}`);
  const draft = `${reader}.new`;
  const code = (err: unknown) => (err as NodeJS.ErrnoException).code ?? '';
  for (let attempt = 0; ; attempt++) {
    try {
      fs.mkdirSync(dir); // not recursive: a missing map's folder is not made
    } catch (err) {
      if (NO_LOCK_HERE.includes(code(err))) return null;
      if (code(err) !== 'EEXIST') throw ioError(`cannot register a reader of ${file}`, err, file);
    }
    try {
      fs.writeFileSync(draft, ownerText(), { flag: 'wx', mode: 0o644 });
      fs.renameSync(draft, reader);
      return reader;
    } catch (err) {
      fs.rmSync(draft, { force: true });
      // The last reader removed the folder between our mkdir and write: make it again.
      if (code(err) === 'ENOENT' && attempt < 3) continue;
      removeIfEmpty(dir);
      if (NO_LOCK_HERE.includes(code(err))) return null;
      throw ioError(`cannot register a reader of ${file}`, err, file);
    }
  }
}

function removeIfEmpty(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    // Other readers remain (or it is gone already).
  }
}

/** Removes reader file `reader`, and its folder if it was the last one there. */
function withdrawReader(reader: string): void {
  fs.rmSync(reader, { force: true });
  removeIfEmpty(path.dirname(reader));
}

function describeReaders(readers: Owner[]): string {
  const first = readers[0];
  const sameHost = first.host === '' || first.host === os.hostname();
  const more = readers.length > 1 ? ` and ${readers.length - 1} other reader${readers.length > 2 ? 's' : ''}` : '';
  return `${describe(first, sameHost)}${more}`;
}

export class MapLock {
  readonly file: string;

  /** The lock was taken over from an owner that died: what a crash leaves beside it may be there. */
  readonly tookOver: boolean;

  /**
   * For a read-only (shared) hold, this reader's file ('' where none could be made, see
   * NO_LOCK_HERE); null for the writer's lock.
   */
  private readonly reader: string | null;

  private constructor(file: string, tookOver: boolean, reader: string | null = null) {
    this.file = file;
    this.tookOver = tookOver;
    this.reader = reader;
  }

  /** Takes the lock or throws LOCKED naming the owner. */
  static acquire(file: string): MapLock {
    if (held.has(file)) {
      throw new BucketMapError(codes.LOCKED, `${file}: the map is already open in this process`, { file });
    }
    const me = ownerText();
    let tookOver = false;
    for (let attempt = 0; attempt < 3; attempt++) {
      if (createWhole(file, me)) {
        // Published first, readers looked for second (see the header).
        const readers = liveReaders(file);
        if (readers.length > 0) {
          fs.rmSync(file, { force: true });
          throw new BucketMapError(codes.LOCKED, `${file}: the map is open read-only in ${describeReaders(readers)}`, { file });
        }
        held.add(file);
        return new MapLock(file, tookOver);
      }
      const owner = readOwner(file);
      if (owner === null) continue;
      const sameHost = owner.host === '' || owner.host === os.hostname();
      if (!abandoned(owner)) {
        throw new BucketMapError(codes.LOCKED, `${file}: the map is open in ${describe(owner, sameHost)}`, { file });
      }
      // Stale: its owner is gone. Move it aside (atomic) and check that what moved is the stale
      // lock, not one a concurrent opener took in the meantime (that one goes back). The name
      // aside is a draft's, so that one a kill leaves here is removed like a draft.
      const aside = draftPath(file);
      try {
        fs.renameSync(file, aside);
      } catch {
        continue;
      }
      const moved = readOwner(aside);
      if (moved !== null && moved.text !== owner.text) {
        try {
          fs.linkSync(aside, file);
        } catch {
          // Someone created a lock meanwhile; theirs stands.
        }
        fs.rmSync(aside, { force: true });
        const movedHere = moved.host === '' || moved.host === os.hostname();
        throw new BucketMapError(codes.LOCKED, `${file}: the map is open in ${describe(moved, movedHere)}`, { file });
      }
      fs.rmSync(aside, { force: true });
      tookOver = true;
    }
    throw new BucketMapError(codes.LOCKED, `${file}: could not take the lock`, { file });
  }

  /**
   * Takes a read-only (shared) hold: any number at once, none while a writer holds the lock.
   * Throws LOCKED naming the writer. A stale writer's lock is left for the next writer to take over.
   */
  static acquireShared(file: string): MapLock {
    if (held.has(file)) {
      throw new BucketMapError(codes.LOCKED, `${file}: the map is open for writing in this thread`, { file });
    }
    const reader = publishReader(file);
    // Published first, the writer looked for second (see the header).
    const owner = readOwner(file);
    if (owner !== null && !abandoned(owner)) {
      if (reader !== null) withdrawReader(reader);
      const sameHost = owner.host === '' || owner.host === os.hostname();
      throw new BucketMapError(codes.LOCKED, `${file}: the map is open for writing in ${describe(owner, sameHost)}`, { file });
    }
    return new MapLock(file, false, reader ?? '');
  }

  /**
   * Does the lock file name an owner on this host that is gone, or is it unfinished and old (see
   * UNFINISHED_LOCK_MS)? False when there is no lock file and for locks of other hosts.
   */
  static isStale(file: string): boolean {
    if (held.has(file)) return false;
    const owner = readOwner(file);
    return owner !== null && abandoned(owner);
  }

  release(): void {
    if (this.reader !== null) {
      if (this.reader !== '') withdrawReader(this.reader);
      return;
    }
    if (!held.delete(this.file)) return;
    const owner = readOwner(this.file);
    if (owner === null || !owner.parsed || owner.pid !== process.pid) return;
    const ownerThread = owner.tid === 0 ? '' : `${owner.tid} ${owner.threadStarted}`;
    if (ownerThread === currentThread()) fs.rmSync(this.file, { force: true });
  }
}
