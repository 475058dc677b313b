#!/usr/bin/env node
/**
 * bucket-map command line. `bucket-map verify <restartFile> [--drive <folder>]... [--json]` checks
 * a map on disk without opening it for writing. Exit code: 0 no problem, 1 problems, 2 error.
 */
import { BucketMap } from './bucket-map.js';
import { BucketMapError } from './errors.js';

function usage(): never {
  console.error('usage: bucket-map verify <restartFile> [--drive <folder>]... [--json]');
  process.exit(2);
}

// Flags anywhere after the command; the one other argument is the restart file.
const [command, ...args] = process.argv.slice(2);
if (command !== 'verify') usage();
const drives: string[] = [];
let json = false;
let restartFile: string | undefined;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--json') json = true;
  else if (args[i] === '--drive' && i + 1 < args.length) drives.push(args[++i]);
  else if (!args[i].startsWith('--') && args[i] !== '' && restartFile === undefined) restartFile = args[i];
  else usage();
}
if (restartFile === undefined) usage();
try {
  const report = BucketMap.verify({ restartFile, ...(drives.length > 0 ? { drives } : {}) });
  if (json) {
    console.log(JSON.stringify(report, null, 2));
  } else {
    console.log(`${report.buckets} buckets, ${report.entries} entries, ${report.dataCells} data cells checked`);
    for (const note of report.notes) console.log(`note: ${note}`);
    for (const p of report.problems) console.log(`problem: bucket ${p.bucket}${p.cell === undefined ? '' : `, cell ${p.cell}`}: ${p.problem} (${p.file})`);
    if (report.problemCount > report.problems.length) console.log(`… and ${report.problemCount - report.problems.length} more problems`);
    console.log(report.ok ? 'ok' : `${report.problemCount} problems`);
  }
  process.exit(report.ok ? 0 : 1);
} catch (err) {
  // Exit code 1 means problems found: anything else that goes wrong must not read as that.
  if (err instanceof BucketMapError) console.error(`${err.code}: ${err.message}`);
  else if (err instanceof TypeError || err instanceof RangeError) console.error(`bad argument: ${err.message}`);
  else console.error(err);
  process.exit(2);
}
