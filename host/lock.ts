/**
 * One open map per restart file. Node has no flock, so the lock is a file next to the restart
 * file, created with O_EXCL and holding the owner's pid and process start time. A lock whose owner
 * is gone (the process died, or its pid now belongs to another process) is stale and is taken
 * over, which is what an OS lock released at exit would give. Within one process a set of held
 * paths answers without touching the file. Taking over a stale lock is safe against one concurrent
 * opener doing the same (see acquire).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { BucketMapError, codes, ioError } from './errors.js';

const held = new Set<string>();

/** Start time of a process in clock ticks since boot (Linux), or '' where /proc is not available. */
function startTime(pid: number): string {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces; fields after it are space-separated.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

function alive(pid: number, started: string): boolean {
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
}

function readOwner(file: string): Owner | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  const [pid, started, host] = text.trim().split(' ');
  return { pid: Number(pid), started: started ?? '', host: host ?? '' };
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
    const me = `${process.pid} ${startTime(process.pid)} ${os.hostname()}\n`;
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
      if (!Number.isInteger(owner.pid) || owner.pid <= 0 || !sameHost || alive(owner.pid, owner.started)) {
        const who = Number.isInteger(owner.pid) ? `process ${owner.pid}${sameHost ? '' : ` on ${owner.host}`}` : 'another process';
        throw new BucketMapError(codes.LOCKED, `${file}: the map is open in ${who}`, { file });
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
      if (moved !== null && (moved.pid !== owner.pid || moved.started !== owner.started)) {
        try {
          fs.linkSync(aside, file);
        } catch {
          // Someone created a lock meanwhile; theirs stands.
        }
        fs.rmSync(aside, { force: true });
        throw new BucketMapError(codes.LOCKED, `${file}: the map is open in process ${moved.pid}`, { file });
      }
      fs.rmSync(aside, { force: true });
    }
    throw new BucketMapError(codes.LOCKED, `${file}: could not take the lock`, { file });
  }

  /** Is the lock held by a live process (for read-only verification)? */
  static isHeld(file: string): boolean {
    if (held.has(file)) return true;
    const owner = readOwner(file);
    return owner !== null && Number.isInteger(owner.pid) && alive(owner.pid, owner.started);
  }

  release(): void {
    if (!held.delete(this.file)) return;
    const owner = readOwner(this.file);
    if (owner !== null && owner.pid === process.pid) fs.rmSync(this.file, { force: true });
  }
}
