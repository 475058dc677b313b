/**
 * The process tests/crash.test.ts kills. It opens a persistent map and runs a seeded mixed workload
 * (inserts and updates with slot lists of 0–4 elements, deletes, addrefs and unrefs, the batched
 * forms of each, enough keys to grow index and data files), flushing every `flushEvery` operations (every fourth flush durable). After each
 * flush it appends "S <ops done>" to the log, and "F <ops done>" once the flush returns; every 25
 * operations it writes "at <ops done>" to stdout. Around a compaction it appends "C <ops done>" and
 * "c <ops done>" to the log. The parent kills it with SIGKILL at random.
 *
 * argv: configJson seed ops flushEvery logFile
 */
import * as fs from 'node:fs';
import { BucketMap, BucketMapError, codes } from '../host/index.js';
import { crashWorkload, packKeys } from './crash-workload.js';

const [configJson, seedArg, opsArg, flushEveryArg, logFile] = process.argv.slice(2);
const map = new BucketMap(JSON.parse(configJson));
const flushEvery = Number(flushEveryArg);
// How many buckets the open left to first use on the close record's word (0 after a crash).
process.stdout.write(`ready deferred ${map.stats().open.deferredBuckets}\n`);
/** unref at refCount 0 is refused, changing nothing (a batch keeps the keys before it changed). */
function refusingUnderflow(call: () => unknown): void {
  try {
    call();
  } catch (err) {
    if (!(err instanceof BucketMapError && err.code === codes.REFCOUNT_UNDERFLOW)) throw err;
  }
}
const keysOf = (keys: Uint8Array[], packed: boolean): Uint8Array | Uint8Array[] => (packed ? packKeys(keys) : keys);
let done = 0;
let flushes = 0;
for (const op of crashWorkload(Number(seedArg), Number(opsArg))) {
  switch (op.kind) {
    case 'insert': map.insert(op.key, op.list, op.refCount); break;
    case 'update': map.update(op.key, () => [op.list, op.refCount]); break;
    case 'delete': map.deleteKey(op.key); break;
    case 'addref': map.addref(op.key); break;
    case 'unref': refusingUnderflow(() => map.unref(op.key)); break;
    case 'insertMany':
      map.insertMany(keysOf(op.entries.map((e) => e.key), op.packed), op.entries.map((e) => e.list), op.entries.map((e) => e.refCount));
      break;
    case 'deleteMany': map.deleteMany(keysOf(op.keys, op.packed)); break;
    case 'addrefMany': map.addrefMany(keysOf(op.keys, op.packed)); break;
    case 'unrefMany': refusingUnderflow(() => map.unrefMany(keysOf(op.keys, op.packed))); break;
    case 'compact':
      fs.appendFileSync(logFile, `C ${done}\n`);
      map.compact({ load: op.load });
      fs.appendFileSync(logFile, `c ${done}\n`);
  }
  done++;
  if (done % flushEvery === 0) {
    fs.appendFileSync(logFile, `S ${done}\n`);
    map.flush({ durable: ++flushes % 4 === 0 });
    fs.appendFileSync(logFile, `F ${done}\n`);
  }
  if (done % 25 === 0) process.stdout.write(`at ${done}\n`);
}
process.stdout.write('finished\n');
setInterval(() => {}, 1000);
