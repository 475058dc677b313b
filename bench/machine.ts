/** The facts a result is only meaningful with: machine, kernel, Node, and the version of every store. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';

export interface Machine {
  cpu: string;
  cores: number;
  ramGiB: number;
  kernel: string;
  node: string;
  /** Filesystem type and device under the stores' folder. */
  fs: string;
}

function readOr(file: string, fallback: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

/** The mount holding `dir`: the longest mount point that prefixes it. */
function filesystemOf(dir: string): string {
  let best = { point: '', text: 'unknown' };
  for (const line of readOr('/proc/mounts', '').split('\n')) {
    const [dev, point, type] = line.split(' ');
    if (point === undefined || type === undefined) continue;
    const prefix = point.endsWith('/') ? point : point + '/';
    if ((dir === point || dir.startsWith(prefix)) && point.length > best.point.length) best = { point, text: `${type} on ${dev} (${point})` };
  }
  return best.text;
}

export function describeMachine(storeDir: string): Machine {
  const cpuinfo = readOr('/proc/cpuinfo', '');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  return {
    cpu: model,
    cores: os.availableParallelism(),
    ramGiB: os.totalmem() / 2 ** 30,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    fs: filesystemOf(path.resolve(storeDir)),
  };
}

/** Installed version of a package, read from its package.json under the repository's node_modules. */
export function packageVersion(root: string, name: string): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'not installed';
  }
}

/** bucket-map's own version, the checkout's commit (and whether host/ or assembly/ had changes), and the build measured. */
export function bucketMapVersion(root: string, buildFingerprint: string): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'host', 'assembly'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return `${pkg.version} (commit ${commit}${dirty.length > 0 ? ' with uncommitted changes in host/ or assembly/' : ''}, build ${buildFingerprint})`;
  } catch {
    return `${pkg.version} (build ${buildFingerprint})`;
  }
}

/** The kernel's writeback settings, which bound writes once a map's index passes the background dirty limit (RESULTS.md, (i)). */
const WRITEBACK_DEFAULTS = { dirty_background_ratio: 10, dirty_background_bytes: 0, dirty_ratio: 20, dirty_bytes: 0, dirty_expire_centisecs: 3000 };

export function writebackSettings(): { text: string; tuned: boolean } {
  const read = (name: string): number => Number(readOr(`/proc/sys/vm/${name}`, 'NaN').trim());
  const values = Object.entries(WRITEBACK_DEFAULTS).map(([name, fallback]) => ({ name, value: read(name), fallback }));
  return {
    text: values.map((v) => `vm.${v.name} ${Number.isNaN(v.value) ? 'unknown' : v.value}`).join(', '),
    tuned: values.some((v) => !Number.isNaN(v.value) && v.value !== v.fallback),
  };
}
