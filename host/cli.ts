#!/usr/bin/env node
/**
 * bucket-map command line. `bucket-map verify <restartFile> [--drive <folder>]... [--json]` checks
 * a map on disk without opening it for writing. Exit code: 0 no problem, 1 problems, 2 error.
 */
import { BucketMap } from './bucket-map.js';
import { BucketMapError } from './errors.js';

const USAGE = 'usage: bucket-map verify <restartFile> [--drive <folder>]... [--json]';
const HELP = `${USAGE}

Checks every cell of a map on disk, changing nothing. Give --drive for each drive folder, in the
map's order, if the map was made with drives of its own. --json prints the whole report.
Exit code: 0 no problem, 1 problems found, 2 anything else (a bad argument, a missing or locked map).`;

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/**
 * Runs the command and returns its exit code. The caller sets process.exitCode rather than calling
 * process.exit(): output to a pipe can be written asynchronously (macOS), and exiting at once could
 * cut a report short.
 */
function main(argv: readonly string[]): number {
  // Flags anywhere after the command; the one other argument is the restart file.
  const [command, ...args] = argv;
  // Asked for, help is the answer, not a mistake: standard output and exit code 0.
  if (argv.some((a) => a === '--help' || a === '-h') || (command === 'help' && args.length === 0)) {
    console.log(HELP);
    return 0;
  }
  const drives: string[] = [];
  let json = false;
  let restartFile: string | undefined;
  let understood = command === 'verify';
  for (let i = 0; understood && i < args.length; i++) {
    if (args[i] === '--json') json = true;
    else if (args[i] === '--drive' && i + 1 < args.length) drives.push(args[++i]);
    else if (!args[i].startsWith('--') && args[i] !== '' && restartFile === undefined) restartFile = args[i];
    else understood = false;
  }
  if (!understood || restartFile === undefined) {
    console.error(USAGE);
    return 2;
  }
  try {
    const report = BucketMap.verify({ restartFile, ...(drives.length > 0 ? { drives } : {}) });
    if (json) {
      console.log(JSON.stringify(report, null, 2));
    } else {
      console.log(`${plural(report.buckets, 'bucket')}, ${plural(report.entries, 'entry', 'entries')}, ${plural(report.dataCells, 'data cell')} checked`);
      for (const note of report.notes) console.log(`note: ${note}`);
      for (const p of report.problems) console.log(`problem: bucket ${p.bucket}${p.cell === undefined ? '' : `, cell ${p.cell}`}: ${p.problem} (${p.file})`);
      if (report.problemCount > report.problems.length) console.log(`… and ${plural(report.problemCount - report.problems.length, 'more problem')}`);
      console.log(report.ok ? 'ok' : plural(report.problemCount, 'problem'));
    }
    return report.ok ? 0 : 1;
  } catch (err) {
    // Exit code 1 means problems found: anything else that goes wrong must not read as that.
    if (err instanceof BucketMapError) console.error(`${err.code}: ${err.message}`);
    else if (err instanceof TypeError || err instanceof RangeError) console.error(`bad argument: ${err.message}`);
    else console.error(err);
    return 2;
  }
}

process.exitCode = main(process.argv.slice(2));
