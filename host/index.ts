/** bucket-map: a disk-backed, memory-mapped hash map keyed by 32-byte public keys. */
export { BucketMap, type BucketMapConfig, type CompactOptions, type CompactReport, type FlushOptions } from './bucket-map.js';
export { Bucket, NoSpace, type BucketItem, type Entry } from './bucket.js';
export { codecs, type ElementCodec } from './codecs.js';
export { BucketMapError, codes, type BucketMapErrorCode } from './errors.js';
export { bytesToBase58, base58ToBytes, type Key } from './keys.js';
export type { KeyBatch } from './batch.js';
export type { PackedKeys } from './packed-keys.js';
export type { BucketMapStats } from './stats.js';
export type { VerifyProblem, VerifyReport } from './verify.js';
export type { EngineKind } from './engine.js';
