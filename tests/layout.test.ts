import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as L from '../host/layout.js';
import { WasmEngine } from '../host/wasm-engine.js';

// The host and the core each compile the format's numbers in; a drift would corrupt files.
test('the core and the host agree on every format and tuning number', () => {
  const engine = new WasmEngine({ maxBuckets: 1, maxSearch: 32, elementSize: 16, cacheBytes: 1 << 20 });
  const expected: Array<[number, number, string]> = [
    [0, L.PAGE_BYTES, 'PAGE_BYTES'],
    [1, L.CELLS_PER_PAGE, 'CELLS_PER_PAGE'],
    [2, L.PAGE_HEADER_BYTES, 'PAGE_HEADER_BYTES'],
    [3, L.CELL_BYTES, 'CELL_BYTES'],
    [4, L.HEADER_BYTES, 'HEADER_BYTES'],
    [5, L.SIZE_CLASSES, 'SIZE_CLASSES'],
    [6, L.MAX_LIST_BYTES, 'MAX_LIST_BYTES'],
    [7, L.J_COMMIT, 'J_COMMIT'],
    [8, L.J_CHECK, 'J_CHECK'],
    [9, L.J_BODY, 'J_BODY'],
    [10, L.JOURNAL_SEED_LO, 'JOURNAL_SEED_LO'],
    [11, L.JOURNAL_SEED_HI, 'JOURNAL_SEED_HI'],
    [14, L.LOAD_MAX_N, 'LOAD_MAX_N'],
    [15, L.LOAD_MAX_D, 'LOAD_MAX_D'],
    [16, L.DATA_SEARCH_FACTOR, 'DATA_SEARCH_FACTOR'],
  ];
  for (const [which, value, name] of expected) assert.is(engine.layoutValue(which), value, name);
  engine.close();
});

test('page geometry: 20 cells and their ctrl words fill a page exactly', () => {
  assert.ok(L.CELLS_PER_PAGE * 2 <= L.PAGE_HEADER_BYTES);
  assert.is(L.PAGE_HEADER_BYTES + L.CELLS_PER_PAGE * L.CELL_BYTES, L.PAGE_BYTES);
  assert.is(L.KEY_BYTES + L.VALUE_BYTES, L.CELL_BYTES);
  assert.is(L.M_COUNTS_END <= L.J_COMMIT, true, 'saved counts and the journal do not overlap');
  assert.is(L.J_BODY + L.J_BODY_BYTES <= L.HEADER_BYTES, true);
});

test('size classes and data cells', () => {
  assert.is(L.sizeClassOf(0), 0);
  assert.is(L.sizeClassOf(1), 0);
  assert.is(L.sizeClassOf(2), 1);
  assert.is(L.sizeClassOf(3), 2);
  assert.is(L.sizeClassOf(2 ** 16), 16);
  assert.is(L.sizeClassOf(2 ** 16 + 1), 17);
  assert.is(L.dataCellBytes(0, 16), 24);
  assert.is(L.dataCellBytes(2, 3), 24, 'rounded up to 8 bytes');
  assert.is(L.maxSlotsFor(16), 65536);
  assert.is(L.maxSlotsFor(4096), 256);
});

test.run();
