/**
 * as-pect runs the core's specs (assembly/__tests__). The core imports its page shuttle from the
 * host; here the "files" are plain byte arrays and the shuttle does what host/wasm-engine.ts does
 * with mapped files, so the specs can check what reached a file and in which order.
 */
import { readFileSync } from 'node:fs';

const hsip24 = JSON.parse(readFileSync(new URL('./tests/vectors/halfsiphash-2-4-64.json', import.meta.url), 'utf8'));
const keyHash = JSON.parse(readFileSync(new URL('./tests/vectors/key-hash.json', import.meta.url), 'utf8'));
const hexByte = (hex, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16);
// The index page's layout (host/layout.ts), for applying move records.
const PAGE_HEADER_BYTES = 64, PAGE_EXTRA_OFFSET = 40, CELL_BYTES = 48;

export default {
  entries: ['assembly/__tests__/**/*.spec.ts'],
  include: [],
  disclude: [/node_modules/],
  async instantiate(memory, createImports, instantiate, binary) {
    const files = new Map();
    const counters = { fetches: 0, pageWrites: 0, logApplies: 0, rangeWrites: 0 };
    // The spec module exports its own memory; it is known once instantiated.
    let own = memory;
    const bytes = () => new Uint8Array(own.buffer);
    const words = () => new Uint32Array(own.buffer);
    const fileOf = (fid) => {
      const file = files.get(fid);
      if (file === undefined) throw new Error(`no test file ${fid}`);
      return file;
    };
    const host = {
      fetchPage(fid, page, dst) {
        counters.fetches++;
        bytes().set(fileOf(fid).subarray(page * 1024, page * 1024 + 1024), dst);
      },
      fetchPages(list, count) {
        const w = words();
        for (let i = 0; i < count; i++) {
          const at = (list >>> 2) + 3 * i;
          counters.fetches++;
          bytes().set(fileOf(w[at]).subarray(w[at + 1] * 1024, w[at + 1] * 1024 + 1024), w[at + 2]);
        }
      },
      writePages(list, count) {
        const w = words();
        for (let i = 0; i < count; i++) {
          const at = (list >>> 2) + 3 * i;
          const file = files.get(w[at]);
          counters.pageWrites++;
          if (file === undefined) continue;
          file.set(bytes().subarray(w[at + 2], w[at + 2] + 1024), w[at + 1] * 1024);
        }
      },
      applyLog(log, length) {
        counters.logApplies++;
        const w = words();
        const b = bytes();
        for (let p = log; p < log + length;) {
          const fid = w[p >>> 2], off = w[(p >>> 2) + 1], len = w[(p >>> 2) + 2];
          const file = files.get(fid);
          if (len === 0xffffffff) {
            // A move record (page_cache.ts logMove): cell, extra byte, destination ctrl, source ctrl.
            const from = files.get(w[(p >>> 2) + 3]), fromBase = w[(p >>> 2) + 4], packed = w[(p >>> 2) + 5];
            const toSlot = packed & 0xff, fromSlot = (packed >>> 8) & 0xff, ctrl = packed >>> 16;
            if (file !== undefined && from !== undefined) {
              const cell = fromBase + PAGE_HEADER_BYTES + fromSlot * CELL_BYTES;
              file.set(from.subarray(cell, cell + CELL_BYTES), off + PAGE_HEADER_BYTES + toSlot * CELL_BYTES);
              file[off + PAGE_EXTRA_OFFSET + toSlot] = from[fromBase + PAGE_EXTRA_OFFSET + fromSlot];
              file[off + 2 * toSlot] = ctrl & 0xff;
              file[off + 2 * toSlot + 1] = ctrl >>> 8;
              from[fromBase + 2 * fromSlot] = 0;
              from[fromBase + 2 * fromSlot + 1] = 0;
            }
            p += 24;
            continue;
          }
          if (file !== undefined) file.set(b.subarray(p + 12, p + 12 + len), off);
          p += 12 + ((len + 3) & ~3);
        }
      },
      writeRange(fid, off, src, len) {
        counters.rangeWrites++;
        fileOf(fid).set(bytes().subarray(src, src + len), off);
      },
    };
    const test = {
      createFile(fid, size) { files.set(fid, new Uint8Array(size)); },
      deleteFile(fid) { files.delete(fid); },
      fileU8(fid, off) { return fileOf(fid)[off]; },
      fileU16(fid, off) { const f = fileOf(fid); return f[off] | (f[off + 1] << 8); },
      fileU32(fid, off) { const f = fileOf(fid); return (f[off] | (f[off + 1] << 8) | (f[off + 2] << 16) | (f[off + 3] << 24)) >>> 0; },
      setFileU8(fid, off, value) { fileOf(fid)[off] = value; },
      fetches() { return counters.fetches; },
      pageWrites() { return counters.pageWrites; },
      logApplies() { return counters.logApplies; },
      hsip24Byte(i, b) { return hexByte(hsip24.vectors[i], b); },
      keyHashCount() { return keyHash.vectors.length; },
      keyHashKeyByte(i, b) { return hexByte(keyHash.vectors[i].key, b); },
      keyHashSeedLo(i) { return keyHash.vectors[i].seedLo; },
      keyHashSeedHi(i) { return keyHash.vectors[i].seedHi; },
      keyHashByte(i, b) { return hexByte(keyHash.vectors[i].hash, b); },
    };
    const result = await instantiate(binary, createImports({ env: { memory }, host, test }));
    own = result.exports.memory ?? memory;
    return result;
  },
  outputBinary: false,
};
