/**
 * One open map per restart file, held by a kernel lock. The lock file `<restartFile>.lock` is
 * opened, and its holder keeps an open file description (OFD) lock on one byte of it (F_OFD_SETLK
 * on Linux, flock on macOS, LockFileEx on Windows, through fs-native-extensions): exclusive for the
 * writer, and each reader keeps one on a file of its own. The kernel releases such a lock when the
 * last descriptor of its open file goes, so when its process dies, whatever the process's pid
 * namespace or hostname: a dead owner's lock never needs to be judged stale, and two live owners
 * can never both hold it (OFD locks conflict between two opens of one process too, so threads
 * exclude one another like processes). The file's text only names the holder, for messages and for
 * that case too: a worker thread that ends without closing its map has its descriptors closed by
 * Node (the Worker option trackUnmanagedFds, on by default), which releases its lock; its mappings
 * die with its isolate, so nothing can write through them afterwards. A descriptor number an owner
 * line names is never acted on: by then it may be another file's. Within one isolate a set of held
 * paths answers first.
 *
 * The writer locks, then checks that the path still names the file it locked (a closing writer
 * removes the file while it holds it, so a lock on a removed file is retried), then writes its
 * owner line. A line found there already was left by a writer that did not close: `tookOver`.
 *
 * Read-only opens share the map: each puts a reader file (its owner line) in the folder
 * `<lock>.readers`, locked before it is renamed into place, and they never exclude one another. A
 * writer and a reader each publish themselves first and look for the other second, so when both
 * open at once at least one of them sees the other and backs off (both may: LOCKED either way,
 * never both in). A reader file nobody holds a lock on was left by a dead process and is removed by
 * the next writer that finds it, as is one whose thread ended.
 *
 * Once its restart file exists, each holder also locks that file the same way (guard()): files
 * beside a map get removed by hand, and the restart file is the one that cannot be.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { BucketMapError, codes, corrupt, ioError } from './errors.js';

/** fs-native-extensions: OFD locks on byte ranges (the parts of its API used here). */
interface NativeLocks {
  tryLock(fd: number, offset: number, length: number, opts?: { shared?: boolean }): boolean;
  unlock(fd: number, offset: number, length: number): void;
}
const native = createRequire(import.meta.url)('fs-native-extensions') as NativeLocks;

/**
 * The byte a holder locks: far past any text in the file (Windows's byte-range locks are
 * mandatory, and would otherwise stop others reading the owner line).
 */
const HOLD = 2 ** 30;

const held = new Set<string>();

/** How old an empty owner file must be before a temporary folder's sweep takes it as abandoned (see isStale). */
const UNFINISHED_LOCK_MS = 10_000;


/**
 * Takes (true) or finds taken (false) an OFD lock on byte `at` of `fd`. A file system without
 * such locks is an IO error: there is no safe way to hold the map there.
 */
function tryLockByte(fd: number, at: number, shared: boolean, file: string): boolean {
  try {
    return native.tryLock(fd, at, 1, { shared });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EAGAIN' || code === 'EACCES' || code === 'EWOULDBLOCK') return false;
    throw ioError(`cannot lock ${file} (the file system must support file locks)`, err, file);
  }
}

function unlockByte(fd: number, at: number): void {
  try {
    native.unlock(fd, at, 1);
  } catch {
    // Closing the descriptor releases it anyway.
  }
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // Already closed.
  }
}

/** From a /proc stat file: the task's start time in clock ticks since boot; null if the file cannot be read. */
function readStat(statFile: string): { started: string } | null {
  let stat: string;
  try {
    stat = fs.readFileSync(statFile, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces; the fields after it are space-separated,
  // from field 3 (state); starttime is field 22.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { started: fields[19] ?? '' };
}

/** Start time of a process (Linux), or '' where /proc is not available. */
function startTime(pid: number): string {
  return readStat(`/proc/${pid}/stat`)?.started ?? '';
}

/** This process's pid namespace ('pid:[inode]', Linux), or '' where /proc does not say. */
let thisNamespace: string | null = null;
function pidNamespace(): string {
  if (thisNamespace === null) {
    try {
      thisNamespace = fs.readlinkSync('/proc/self/ns/pid');
    } catch {
      thisNamespace = '';
    }
  }
  return thisNamespace;
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

/** Is there a process with this pid in our pid namespace? Used only for drafts' names (see removeDrafts). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  return true;
}

interface Owner {
  /** The file's text, which a takeover compares to make sure nothing changed meanwhile. */
  text: string;
  /** False for an empty or garbled file: no owner can be named. */
  parsed: boolean;
  /** Milliseconds since the file last changed. */
  ageMs: number;
  pid: number;
  started: string;
  host: string;
  /** The owning thread's OS id, or 0 when the lock does not say (other systems). */
  tid: number;
  threadStarted: string;
  /** The owner's pid namespace ('' where unknown). */
  namespace: string;
  /** The owner's descriptor holding the lock (-1 where unknown). */
  fd: number;
}

/** What a lock or reader file says about this thread holding it through `fd`. */
function ownerText(fd: number): string {
  const [tid, threadStarted] = (currentThread() || '0 -').split(' ');
  const field = (s: string) => (s === '' ? '-' : s);
  return `${process.pid} ${field(startTime(process.pid))} ${os.hostname()} ${tid} ${field(threadStarted)} ${field(pidNamespace())} ${fd}\n`;
}

function parseOwner(text: string, ageMs: number): Owner {
  const [pid, started, host, tid, threadStarted, namespace, fd] = text.trim().split(' ');
  const field = (s: string | undefined) => (s === undefined || s === '-' ? '' : s);
  const thread = Number(tid ?? 0);
  const owner = Number(pid);
  const desc = Number(fd ?? -1);
  return {
    text, ageMs, parsed: /^\d+$/.test(pid ?? '') && owner > 0,
    pid: owner, started: field(started), host: field(host),
    tid: Number.isInteger(thread) && thread > 0 ? thread : 0, threadStarted: field(threadStarted),
    namespace: field(namespace), fd: Number.isInteger(desc) && desc >= 0 ? desc : -1,
  };
}

/** The owner line in open file `fd`. */
function readOwnerFd(fd: number): Owner {
  const buf = Buffer.alloc(1024);
  let n = 0;
  try {
    n = fs.readSync(fd, buf, 0, buf.length, 0);
  } catch {
    n = 0;
  }
  let ageMs = 0;
  try {
    ageMs = Date.now() - fs.fstatSync(fd).mtimeMs;
  } catch {
    // Age unknown: counts as new.
  }
  return parseOwner(buf.toString('utf8', 0, n), ageMs);
}

function writeOwnerFd(fd: number, text: string): void {
  fs.ftruncateSync(fd, 0);
  fs.writeSync(fd, text, 0);
}

/** Does the owner line name this process (the same pid, start time and pid namespace)? */
function thisProcess(owner: Owner): boolean {
  if (!owner.parsed || owner.pid !== process.pid) return false;
  if (owner.namespace !== pidNamespace()) return false;
  const started = startTime(process.pid);
  return owner.started === started && (owner.namespace !== '' || owner.host === os.hostname());
}

/** Does `file` still name the file open as `fd` (a closing writer removes its lock file while holding it)? */
function stillNamed(fd: number, file: string): boolean {
  try {
    const a = fs.fstatSync(fd);
    const b = fs.lstatSync(file);
    return a.dev === b.dev && a.ino === b.ino;
  } catch {
    return false;
  }
}

/** Waits `ms` milliseconds without returning to the event loop. */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Opens `file` to look at its lock: null if there is none. O_NONBLOCK: a FIFO in its place does
 * not hang; O_NOFOLLOW: a link is refused.
 */
function openToProbe(file: string, write: boolean): number | null {
  try {
    return fs.openSync(file, (write ? fs.constants.O_RDWR : fs.constants.O_RDONLY) | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw ioError(`cannot open lock ${file}`, err, file);
  }
}

function isRegular(fd: number): boolean {
  try {
    return fs.fstatSync(fd).isFile();
  } catch {
    return false;
  }
}

/**
 * Who holds `file`'s lock, looked at through descriptor `fd`: null when nobody does (it can be
 * taken), else the owner line. A shared probe, so readers probing never stop one another.
 */
function holderOf(fd: number, file: string): Owner | null {
  if (!isRegular(fd)) return parseOwner('', 0); // held by nobody we could name: never taken
  if (tryLockByte(fd, HOLD, true, file)) {
    unlockByte(fd, HOLD);
    return null;
  }
  return readOwnerFd(fd);
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
  for (const d of draftsOf(file)) if (!deadOnly || !processAlive(d.pid)) fs.rmSync(d.path, { force: true });
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

function describe(owner: Owner): string {
  if (!owner.parsed) return 'another process (its lock file does not name it yet, or is not a regular file)';
  if (thisProcess(owner)) {
    if (owner.tid > 0 && `${owner.tid} ${owner.threadStarted}` === currentThread()) return 'this thread';
    return `another thread of this process${owner.tid > 0 ? ` (thread ${owner.tid})` : ''}`;
  }
  const host = owner.host !== '' && owner.host !== os.hostname() ? ` on ${owner.host}` : '';
  const namespace = owner.namespace !== '' && pidNamespace() !== '' && owner.namespace !== pidNamespace() ? ' (a pid of another pid namespace)' : '';
  return `process ${owner.pid}${host}${namespace}`;
}

/** The folder of reader files beside lock `file`. */
function readersDir(file: string): string {
  return `${file}.readers`;
}

/**
 * The live readers of lock `file`. Reader files nobody holds (their process or thread died) and
 * drafts nobody holds are removed on the way.
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
    const fd = openToProbe(at, false);
    if (fd === null) continue;
    let owner: Owner | null;
    try {
      owner = holderOf(fd, at);
    } finally {
      closeQuietly(fd);
    }
    if (owner === null) {
      // Nobody holds it: its process died (or, for a draft, a reader is between making it and
      // locking it, and retries when its rename finds it gone). One this process may not remove
      // (a killed reader of another user's, in a folder that user made) is no reader either: it
      // had made every writer's open fail until someone removed it by hand. Left in place, the
      // next writer finds it unheld again.
      removeQuietly(at);
    } else if (name.endsWith('.new')) {
      // A draft not published yet: not a reader.
    } else {
      live.push(owner);
    }
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
 * Publishes a reader file for this thread in the readers folder of `file`, locked before it takes
 * its name: its path and the descriptor holding it, or null where no file can be made there (see
 * NO_LOCK_HERE).
 */
function publishReader(file: string): { path: string; fd: number } | null {
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
    let fd = -1;
    try {
      fs.writeFileSync(draft, '', { flag: 'wx', mode: 0o644 });
      fd = fs.openSync(draft, fs.constants.O_RDWR | fs.constants.O_NOFOLLOW);
      if (!tryLockByte(fd, HOLD, false, draft)) throw Object.assign(new Error('reader draft locked by another'), { code: 'ENOENT' });
      writeOwnerFd(fd, ownerText(fd));
      fs.renameSync(draft, reader);
      return { path: reader, fd };
    } catch (err) {
      if (fd >= 0) closeQuietly(fd);
      // Quietly: where the draft could not be made (a file in place of the folder: ENOTDIR) its
      // removal fails too, and that raw error hid the reason the open goes on without a file.
      removeQuietly(draft);
      // The last reader removed the folder, or a writer our unlocked draft: make it again.
      if (code(err) === 'ENOENT' && attempt < 3) continue;
      removeIfEmpty(dir);
      if (NO_LOCK_HERE.includes(code(err))) return null;
      if (err instanceof BucketMapError) throw err;
      throw ioError(`cannot register a reader of ${file}`, err, file);
    }
  }
}

function removeQuietly(file: string): void {
  try {
    fs.rmSync(file, { force: true });
  } catch {
    // Never made, or not ours to remove.
  }
}

function removeIfEmpty(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    // Other readers remain (or it is gone already).
  }
}

/** Removes reader file `reader`, releases its lock, and removes its folder if it was the last one there. */
function withdrawReader(reader: { path: string; fd: number }): void {
  try {
    fs.rmSync(reader.path, { force: true });
  } finally {
    // Whatever the removal did: a file left behind unheld is a dead reader's to the next writer,
    // where one still held kept the map from every writer until this process exited.
    closeQuietly(reader.fd);
  }
  removeIfEmpty(path.dirname(reader.path));
}

function describeReaders(readers: Owner[]): string {
  const more = readers.length > 1 ? ` and ${readers.length - 1} other reader${readers.length > 2 ? 's' : ''}` : '';
  return `${describe(readers[0])}${more}`;
}

/** How often, and how far apart, a writer that finds the lock held looks again (a reader's probe holds it for microseconds). */
const HELD_RETRIES = 5;
const HELD_RETRY_MS = 2;

export class MapLock {
  readonly file: string;

  /** The last writer did not close (it died, or its thread ended): what a crash leaves beside it may be there. */
  readonly tookOver: boolean;

  /** The descriptor holding the lock: the writer's on the lock file, a reader's on its reader file; -1 for a reader without one. */
  private fd: number;

  /** For a read-only (shared) hold, this reader's file ('' where none could be made, see NO_LOCK_HERE); null for the writer's lock. */
  private readonly reader: string | null;

  /** The descriptor holding the second lock, on the restart file itself (see guard()); -1 until taken. */
  private guardFd = -1;

  private constructor(file: string, tookOver: boolean, fd: number, reader: string | null = null) {
    this.file = file;
    this.tookOver = tookOver;
    this.fd = fd;
    this.reader = reader;
  }

  /** Takes the lock or throws LOCKED naming the owner. */
  static acquire(file: string): MapLock {
    if (held.has(file)) {
      throw new BucketMapError(codes.LOCKED, `${file}: the map is already open in this process`, { file });
    }
    let owner: Owner | null = null;
    for (let attempt = 0; attempt < HELD_RETRIES + 3; attempt++) {
      let fd: number;
      try {
        fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW, 0o644);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // A directory or symlink where the lock goes: as for any lock that is not a regular file.
        if (code === 'EISDIR' || code === 'ELOOP') throw new BucketMapError(codes.LOCKED, `${file}: the lock is not a regular file; remove it`, { file });
        throw ioError(`cannot create lock ${file}`, err, file);
      }
      let keep = false;
      try {
        if (!isRegular(fd)) {
          throw new BucketMapError(codes.LOCKED, `${file}: the lock is not a regular file; remove it`, { file });
        }
        if (tryLockByte(fd, HOLD, false, file)) {
          // Locked: check that it is still the file the path names (a closing writer removes it).
          if (!stillNamed(fd, file)) continue;
          const previous = readOwnerFd(fd);
          // Published first (the owner line), readers looked for second (see the header).
          writeOwnerFd(fd, ownerText(fd));
          // Back off as we came, also when the look fails: a dead writer's line stays for the next
          // writer to find, and ours must not stay to be taken for one.
          const backOff = () => {
            if (previous.parsed) writeOwnerFd(fd, previous.text);
            else fs.rmSync(file, { force: true });
          };
          let readers: Owner[];
          try {
            readers = liveReaders(file);
          } catch (err) {
            backOff();
            throw err;
          }
          if (readers.length > 0) {
            backOff();
            throw new BucketMapError(codes.LOCKED, `${file}: the map is open read-only in ${describeReaders(readers)}`, { file });
          }
          keep = true;
          held.add(file);
          return new MapLock(file, previous.parsed, fd);
        }
        owner = readOwnerFd(fd);
      } finally {
        if (!keep) closeQuietly(fd);
      }
      // Held by a live owner, or probed by a reader for a moment: look again shortly.
      if (attempt >= 2) pause(HELD_RETRY_MS);
    }
    throw new BucketMapError(codes.LOCKED, `${file}: the map is open in ${describe(owner ?? parseOwner('', 0))}`, { file });
  }

  /**
   * Takes a read-only (shared) hold: any number at once, none while a writer holds the lock.
   * Throws LOCKED naming the writer. A dead writer's lock file is left for the next writer.
   */
  static acquireShared(file: string): MapLock {
    if (held.has(file)) {
      throw new BucketMapError(codes.LOCKED, `${file}: the map is open for writing in this thread`, { file });
    }
    const reader = publishReader(file);
    // Published first, the writer looked for second (see the header).
    let writer: Owner | null = null;
    try {
      const fd = openToProbe(file, false);
      if (fd !== null) {
        try {
          writer = holderOf(fd, file);
        } finally {
          closeQuietly(fd);
        }
      }
    } catch (err) {
      if (reader !== null) withdrawReader(reader);
      throw err;
    }
    if (writer !== null) {
      if (reader !== null) withdrawReader(reader);
      throw new BucketMapError(codes.LOCKED, `${file}: the map is open for writing in ${describe(writer)}`, { file });
    }
    return new MapLock(file, false, reader?.fd ?? -1, reader?.path ?? '');
  }

  /**
   * Is the lock file there and held by nobody (its owner died)? An empty file is stale only once UNFINISHED_LOCK_MS old: its owner may be between
   * creating and locking it. False when there is no lock file. (Temporary folders' sweep.)
   */
  static isStale(file: string): boolean {
    if (held.has(file)) return false;
    let fd: number | null;
    try {
      fd = openToProbe(file, true);
    } catch {
      return false;
    }
    if (fd === null) return false;
    try {
      const owner = holderOf(fd, file);
      if (owner === null) {
        const line = readOwnerFd(fd);
        return line.parsed || line.ageMs >= UNFINISHED_LOCK_MS;
      }
      return false; // held: its owner is alive
    } catch {
      return false;
    } finally {
      closeQuietly(fd);
    }
  }

  /**
   * Also locks the restart file itself, on the same byte: exclusively for the writer, shared for a
   * reader. The lock file and reader files can be removed by hand while their map is open (a habit
   * after crashes, `rm *.lock`), and a second writer would then make a new lock file and hold that;
   * the restart file cannot go without losing the map, so its lock still stands between them.
   * Taken once the restart file exists (before any bucket file is mapped); the lock file still
   * answers first, and names the holder.
   */
  guard(restartFile: string): void {
    if (this.guardFd >= 0) return;
    const shared = this.reader !== null;
    let fd: number;
    try {
      fd = fs.openSync(restartFile, (shared ? fs.constants.O_RDONLY : fs.constants.O_RDWR) | fs.constants.O_NOFOLLOW);
    } catch (err) {
      // As the restart file's own check says it (BucketMap.verify locks it before reading it).
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw corrupt(restartFile, 'restart file is a symbolic link');
      throw ioError(`cannot open restart file ${restartFile} to lock it`, err, restartFile);
    }
    let locked = false;
    try {
      locked = tryLockByte(fd, HOLD, shared, restartFile);
    } finally {
      if (!locked) closeQuietly(fd);
    }
    if (!locked) {
      const where = shared ? 'open for writing elsewhere' : 'open elsewhere';
      throw new BucketMapError(
        codes.LOCKED,
        `${restartFile}: the map is ${where}, though ${this.file} did not say so (was it removed by hand while the map was open?)`,
        { file: restartFile },
      );
    }
    this.guardFd = fd;
  }

  release(): void {
    // The restart file's lock first: a writer that takes the lock file next must find it free.
    if (this.guardFd >= 0) {
      closeQuietly(this.guardFd);
      this.guardFd = -1;
    }
    if (this.reader !== null) {
      if (this.reader !== '') withdrawReader({ path: this.reader, fd: this.fd });
      this.fd = -1;
      return;
    }
    if (!held.delete(this.file) || this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    try {
      // Still holding it: nobody else can have the file, so removing it races no one (a waiting
      // opener that locked the removed file sees that it is no longer named, and retries).
      fs.ftruncateSync(fd, 0);
      if (stillNamed(fd, this.file)) fs.rmSync(this.file, { force: true });
    } catch {
      // Left behind, empty: the next writer takes it as it is.
    } finally {
      closeQuietly(fd);
    }
  }
}
