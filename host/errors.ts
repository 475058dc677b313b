/**
 * Runtime failures carry a stable `code`; wrong arguments throw plain TypeError/RangeError.
 * The codes are part of the public contract (listed in the README) and are never renamed.
 */
export const codes = Object.freeze({
  /** The map was closed; every later call fails with this code. */
  CLOSED: 'BUCKET_MAP_CLOSED',
  /** The files on disk were written with a different configuration (maxBuckets, element size…). */
  CONFIG_MISMATCH: 'BUCKET_MAP_CONFIG_MISMATCH',
  /** A file failed a check: magic, version, size, checksum or a value out of range. */
  CORRUPT: 'BUCKET_MAP_CORRUPT',
  /** The restart file names a bucket file that is not in the drives. */
  FILE_MISSING: 'BUCKET_MAP_FILE_MISSING',
  /** The operating system refused a file operation (permissions, disk full, …); see `cause`. */
  IO: 'BUCKET_MAP_IO',
  /** A bucket cannot grow any further (capacity or mapping limits). */
  CAPACITY: 'BUCKET_MAP_CAPACITY',
  /** Growing would take the bucket files past the configured maxBytes. */
  SIZE_LIMIT: 'BUCKET_MAP_SIZE_LIMIT',
  /** The map is already open (in this process or another). */
  LOCKED: 'BUCKET_MAP_LOCKED',
  /** addref would take a refCount past 2^53−1. */
  REFCOUNT_OVERFLOW: 'BUCKET_MAP_REFCOUNT_OVERFLOW',
  /** unref of an entry whose refCount is already 0. */
  REFCOUNT_UNDERFLOW: 'BUCKET_MAP_REFCOUNT_UNDERFLOW',
  /** A map method was called from inside an update() callback. */
  REENTRANT: 'BUCKET_MAP_REENTRANT',
  /**
   * The process holds as many file mappings as bucket-map takes under the kernel's cap
   * (vm.max_map_count): replaced files stay mapped until the event loop turns. Transient.
   */
  MAPPING_LIMIT: 'BUCKET_MAP_MAPPING_LIMIT',
  /** A write was asked of a map opened with `readOnly: true`. */
  READ_ONLY: 'BUCKET_MAP_READ_ONLY',
  /**
   * A read-only open found a map its last writer did not close cleanly (or a bucket whose header
   * disagrees with the close record): open it once for writing, which repairs it, then read-only.
   */
  NEEDS_RECOVERY: 'BUCKET_MAP_NEEDS_RECOVERY',
  /** The machine is big-endian: the files are little-endian and both engines read them as such. */
  UNSUPPORTED_PLATFORM: 'BUCKET_MAP_UNSUPPORTED_PLATFORM',
} as const);

export type BucketMapErrorCode = (typeof codes)[keyof typeof codes];

export class BucketMapError extends Error {
  readonly code: BucketMapErrorCode;
  /** The file the problem was found in, when there is one. */
  readonly file: string | undefined;

  constructor(code: BucketMapErrorCode, message: string, options: { cause?: unknown; file?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BucketMapError';
    this.code = code;
    this.file = options.file;
  }
}

/** Wraps an fs error so callers see one error type for runtime failures. */
export function ioError(what: string, cause: unknown, file?: string): BucketMapError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new BucketMapError(codes.IO, `${what}: ${detail}`, { cause, ...(file === undefined ? {} : { file }) });
}

export function corrupt(file: string, problem: string): BucketMapError {
  return new BucketMapError(codes.CORRUPT, `${file}: ${problem}`, { file });
}

/**
 * Both engines read the little-endian files through typed arrays, which use the machine's byte
 * order; on a big-endian machine they would misread every file, so opening is refused there.
 */
export function checkPlatform(endianness: 'LE' | 'BE'): void {
  if (endianness !== 'LE') {
    throw new BucketMapError(codes.UNSUPPORTED_PLATFORM, 'bucket-map needs a little-endian machine (x86-64, arm64, …); this one is big-endian');
  }
}
