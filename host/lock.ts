/**
 * One open map per restart file. Node has no flock, so the lock is a file next to the restart
 * file, created with O_EXCL and holding the owner's pid and process start time, then (on Linux) the
 * owning thread's id and start time. A lock whose owner is gone (the process died, or its pid now
 * belongs to another process, or the worker thread that opened the map ended without closing it)
 * is stale and is taken over, which is what an OS lock released at exit would give. The thread
 * matters because a map lives in the isolate that opened it: once that worker has ended, no code
 * can write through its mappings, so its files are in the state a killed process leaves. Within
 * one isolate a set of held paths answers without touching the file. Taking over a stale lock is
 * safe against one concurrent opener doing the same (see acquire).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { BucketMapError, codes, ioError } from './errors.js';

const held = new Set<string>();

/** Start time in clock ticks since boot from a /proc stat file, or null if it cannot be read. */
function statStart(statFile: string): string | null {
  try {
    const stat = fs.readFileSync(statFile, 'utf8');
    // The command name (field 2) may contain spaces; fields after it are space-separated.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return null;
  }
}

/** Start time of a process (Linux), or '' where /proc is not available. */
function startTime(pid: number): string {
  return statStart(`/proc/${pid}/stat`) ?? '';
}

/** The OS thread running this isolate: '<tid> <start time>' (Linux), or '' where /proc has no thread-self. */
let thisThread: string | null = null;
function currentThread(): string {
  if (thisThread === null) {
    try {
      const link = fs.readlinkSync('/proc/thread-self'); // '<pid>/task/<tid>'
      const tid = Number(link.slice(link.lastIndexOf('/') + 1));
      const started = statStart(`/proc/${process.pid}/task/${tid}/stat`);
      thisThread = Number.isInteger(tid) && tid > 0 && started !== null ? `${tid} ${started}` : '';
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
  const now = statStart(`/proc/${owner.pid}/task/${owner.tid}/stat`);
  if (now === null) return !fs.existsSync(`/proc/${owner.pid}/task`); // no /proc here: assume alive
  return owner.threadStarted === '' || now === owner.threadStarted;
}

function readOwner(file: string): Owner | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  const [pid, started, host, tid, threadStarted] = text.trim().split(' ');
  const thread = Number(tid ?? 0);
  return {
    pid: Number(pid), started: started ?? '', host: host ?? '',
    tid: Number.isInteger(thread) && thread > 0 ? thread : 0, threadStarted: threadStarted ?? '',
  };
}

function describe(owner: Owner, sameHost: boolean): string {
  if (!Number.isInteger(owner.pid)) return 'another process';
  if (owner.pid === process.pid && sameHost) return `another thread of this process${owner.tid > 0 ? ` (thread ${owner.tid})` : ''}`;
  return `process ${owner.pid}${sameHost ? '' : ` on ${owner.host}`}`;
}

export class MapLock {
  readonly file: string;

  private constructor(file: string) {
    this.file = file;
  }

  /** Takes the lock or throws LOCKED naming the owner. */
  static acquire(file: string): MapLock {
    if (held.has(file)) {
      throw new BucketMapError(codes.LOCKED, `${file}: the map is already open in this process`, { file });
    }
    const thread = currentThread();
    const me = `${process.pid} ${startTime(process.pid)} ${os.hostname()}${thread === '' ? '' : ` ${thread}`}\n`;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o644);
        try {
          fs.writeSync(fd, me);
        } finally {
          fs.closeSync(fd);
        }
        held.add(file);
        return new MapLock(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError(`cannot create lock ${file}`, err, file);
      }
      const owner = readOwner(file);
      if (owner === null) continue;
      const sameHost = owner.host === '' || owner.host === os.hostname();
      if (!Number.isInteger(owner.pid) || owner.pid <= 0 || !sameHost || alive(owner)) {
        throw new BucketMapError(codes.LOCKED, `${file}: the map is open in ${describe(owner, sameHost)}`, { file });
      }
      // Stale: its owner is gone. Move it aside (atomic) and check that what moved is the stale
      // lock, not one a concurrent opener took in the meantime (that one goes back).
      const aside = `${file}.stale.${process.pid}.${Math.random().toString(36).slice(2)}`;
      try {
        fs.renameSync(file, aside);
      } catch {
        continue;
      }
      const moved = readOwner(aside);
      if (moved !== null && (moved.pid !== owner.pid || moved.started !== owner.started || moved.tid !== owner.tid)) {
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
    }
    throw new BucketMapError(codes.LOCKED, `${file}: could not take the lock`, { file });
  }

  /** Is the lock held by a live process (for read-only verification)? */
  static isHeld(file: string): boolean {
    if (held.has(file)) return true;
    const owner = readOwner(file);
    return owner !== null && Number.isInteger(owner.pid) && alive(owner);
  }

  /**
   * Does the lock file name an owner on this host that is gone? False when there is no lock file,
   * when it cannot be read or parsed (it may be being written), and for locks of other hosts.
   */
  static isStale(file: string): boolean {
    if (held.has(file)) return false;
    const owner = readOwner(file);
    if (owner === null || !Number.isInteger(owner.pid) || owner.pid <= 0) return false;
    if (owner.host !== '' && owner.host !== os.hostname()) return false;
    return !alive(owner);
  }

  release(): void {
    if (!held.delete(this.file)) return;
    const owner = readOwner(this.file);
    if (owner === null || owner.pid !== process.pid) return;
    const ownerThread = owner.tid === 0 ? '' : `${owner.tid} ${owner.threadStarted}`;
    if (ownerThread === currentThread()) fs.rmSync(this.file, { force: true });
  }
}
