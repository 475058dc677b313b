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
    text = fs.readFileSync(file, 'utf8');
    ageMs = Date.now() - fs.statSync(file).mtimeMs;
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
  if (owner.pid === process.pid && sameHost) return `another thread of this process${owner.tid > 0 ? ` (thread ${owner.tid})` : ''}`;
  return `process ${owner.pid}${sameHost ? '' : ` on ${owner.host}`}`;
}

export class MapLock {
  readonly file: string;

  /** The lock was taken over from an owner that died: what a crash leaves beside it may be there. */
  readonly tookOver: boolean;

  private constructor(file: string, tookOver: boolean) {
    this.file = file;
    this.tookOver = tookOver;
  }

  /** Takes the lock or throws LOCKED naming the owner. */
  static acquire(file: string): MapLock {
    if (held.has(file)) {
      throw new BucketMapError(codes.LOCKED, `${file}: the map is already open in this process`, { file });
    }
    const thread = currentThread();
    const me = `${process.pid} ${startTime(process.pid)} ${os.hostname()}${thread === '' ? '' : ` ${thread}`}\n`;
    let tookOver = false;
    for (let attempt = 0; attempt < 3; attempt++) {
      if (createWhole(file, me)) {
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

  /** Is the lock held by a live process (for read-only verification)? */
  static isHeld(file: string): boolean {
    if (held.has(file)) return true;
    const owner = readOwner(file);
    return owner !== null && !abandoned(owner);
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
    if (!held.delete(this.file)) return;
    const owner = readOwner(this.file);
    if (owner === null || !owner.parsed || owner.pid !== process.pid) return;
    const ownerThread = owner.tid === 0 ? '' : `${owner.tid} ${owner.threadStarted}`;
    if (ownerThread === currentThread()) fs.rmSync(this.file, { force: true });
  }
}
