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

const [command, restartFile, ...rest] = process.argv.slice(2);
if (command !== 'verify' || restartFile === undefined) usage();
const drives: string[] = [];
let json = false;
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === '--json') json = true;
  else if (rest[i] === '--drive' && i + 1 < rest.length) drives.push(rest[++i]);
  else usage();
}
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
  if (!(err instanceof BucketMapError)) throw err;
  console.error(`${err.code}: ${err.message}`);
  process.exit(2);
}
