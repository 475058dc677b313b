import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cell, times2 } from '../bench/report.js';
import { stat } from '../bench/summary.js';

// Every report says its figures are truncated, never rounded: a ratio shown must never exceed the
// measured one.

test('bench report: ratios are truncated to two decimals, not rounded', () => {
  assert.is(times2(4.399), '4.39×');
  assert.is(times2(3.8171), '3.81×');
  assert.is(times2(2), '2.00×');
  assert.is(cell(stat([1.816, 1.669, 1.919]), times2, 3), '1.81× (1.66×–1.91×)');
});

test.run();
