/** A JS Map as the in-memory reference: latin1 strings of the key bytes, values copied out. */
import type { Store } from './store.js';

interface Value {
  bytes: Uint8Array;
  refCount: number;
}

class JsMapStore implements Store {
  private map = new Map<string, Value>();

  open(): void {
    this.map = new Map<string, Value>();
  }

  close(): void {
    this.map.clear();
  }

  writeBatch(writes: () => void): void {
    writes();
  }

  put(keys: Buffer, keyOffset: number, values: Buffer, valueOffset: number): void {
    // A copy, as a real store would keep: a view into the workload would make the Map look smaller.
    const bytes = new Uint8Array(16);
    bytes.set(values.subarray(valueOffset, valueOffset + 16));
    this.map.set(keys.toString('latin1', keyOffset, keyOffset + 32), { bytes, refCount: 1 });
  }

  addref(keys: Buffer, keyOffset: number): number {
    const v = this.map.get(keys.toString('latin1', keyOffset, keyOffset + 32));
    if (v === undefined) return -1;
    return ++v.refCount;
  }

  del(keys: Buffer, keyOffset: number): void {
    this.map.delete(keys.toString('latin1', keyOffset, keyOffset + 32));
  }

  get(keys: Buffer, keyOffset: number, out: Buffer): number {
    const v = this.map.get(keys.toString('latin1', keyOffset, keyOffset + 32));
    if (v === undefined) return -1;
    out.set(v.bytes);
    return v.refCount;
  }

  details(): unknown {
    return { size: this.map.size };
  }
}

export function createJsMap(): JsMapStore {
  return new JsMapStore();
}
