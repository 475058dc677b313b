import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { cell, endMarker, renderMarkdown, startMarker, times2, writeMarkdown, type Report } from '../bench/report.js';
import { renderSvg } from '../bench/svg.js';
import { stat } from '../bench/summary.js';
import { STORES } from '../bench/stores/index.js';
import { tempDir } from './helpers.js';

// Every report says its figures are truncated, never rounded: a ratio shown must never exceed the
// measured one.

test('bench report: ratios are truncated to two decimals, not rounded', () => {
  assert.is(times2(4.399), '4.39×');
  assert.is(times2(3.8171), '3.81×');
  assert.is(times2(2), '2.00×');
  assert.is(cell(stat([1.816, 1.669, 1.919]), times2, 3), '1.81× (1.66×–1.91×)');
});

const runScript = fileURLToPath(new URL('../bench/run.js', import.meta.url));

function report(stores: string[]): Report {
  return {
    generated: '2026-11-28T00:00:00.000Z',
    command: 'npm run bench -- --n 1000000',
    options: { n: 1_000_000, runs: 1, seed: 1, stores, cold: false },
    machine: { cpu: 'cpu', cores: 2, ramGiB: 1, kernel: 'Linux', node: 'v20', fs: 'ext4' },
    loadAverage: { start: 0, end: 0 },
    stores: stores.map((name) => ({
      name, version: '1', persistent: true, notes: `notes of ${name}`, runs: [], failures: [],
      summary: { rate: {}, ms: {}, cpuMs: {}, bytesPerEntry: null, diskBytes: null, bytesPerEntryCompacted: null, peakAnonKiB: null, peakFileKiB: null, baselineAnonKiB: null, vmHwmKiB: null },
    })),
  };
}

test('bench report: a run of some of the stores keeps the full run of the same N (section and chart)', () => {
  // `npm run bench -- --n 10M --stores bucket-map-wasm,lmdb` (the README's own example) replaced
  // the section, chart and JSON of the full 10M run with a two-store one.
  const dir = tempDir('bench-report-');
  try {
    const all = STORES.map((s) => s.name);
    const full = path.join(dir, 'full.json');
    const some = path.join(dir, 'some.json');
    fs.writeFileSync(full, JSON.stringify(report(all)));
    fs.writeFileSync(some, JSON.stringify(report(['lmdb'])));
    const rerender = (file: string): void => {
      execFileSync(process.execPath, [runScript, '--from-json', file, '--out', dir], { stdio: 'ignore' });
    };
    rerender(full);
    const fullSvg = fs.readFileSync(path.join(dir, 'results.svg'), 'utf8');
    rerender(some);
    const md = fs.readFileSync(path.join(dir, 'RESULTS.md'), 'utf8');
    for (const name of all) assert.ok(md.includes(`notes of ${name}`), `the full run's section still names ${name}`);
    assert.is(fs.readFileSync(path.join(dir, 'results.svg'), 'utf8'), fullSvg, "the full run's chart is kept");
    const svgs = fs.readdirSync(dir).filter((f) => f.endsWith('.svg'));
    assert.is(svgs.length, 2, `a chart of its own for the partial run: ${svgs.join(', ')}`);
    // Each section names the JSON file its own run wrote.
    const partial = renderMarkdown(report(['lmdb']));
    assert.match(partial, '`bench/results-1M-lmdb.json` holds every raw figure');
    assert.match(renderMarkdown(report(all)), '`bench/results.json` holds every raw figure');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('bench report: a store whose runs all failed is named as failed in every table and in the chart', () => {
  // Its cells are all "—", as for a phase a store does not have: without a word by its name, a
  // reader of a table or of the chart would take it for a store that ran.
  const r = report(['lmdb', 'js-map']);
  r.options.runs = 3;
  r.stores[1].failures = [1, 2, 3].map((run) => ({ run, message: 'worker killed by SIGKILL' }));
  const md = renderMarkdown(r);
  const rows = md.split('\n').filter((l) => l.startsWith('| js-map'));
  assert.is(rows.length, 3, 'one row in each of the three tables');
  for (const row of rows) assert.match(row, /failed in 3 of 3 runs/);
  for (const row of md.split('\n').filter((l) => l.startsWith('| lmdb'))) assert.not.match(row, /failed/);
  assert.match(renderSvg(r), /js-map 1 \(failed 3\/3\)/);
});

test('bench writeMarkdown: a section whose end marker was lost never takes the sections after it', () => {
  // RESULTS.md is edited by hand between the sections. With the 1M end marker gone, the first run
  // appended a new 1M section; the next replaced everything from the old start marker to the new
  // end marker, the 10M section between them included.
  const dir = tempDir('bench-markers-');
  try {
    const file = path.join(dir, 'RESULTS.md');
    fs.writeFileSync(file, `# results\n\n${startMarker('1M')}\nold 1M\n\ntext by hand\n\n${startMarker('10M')}\nthe 10M run\n${endMarker('10M')}\n\nmore text\n`);
    writeMarkdown(file, '1M', 'first rerun');
    writeMarkdown(file, '1M', 'second rerun');
    const text = fs.readFileSync(file, 'utf8');
    for (const kept of ['text by hand', 'the 10M run', 'more text', 'second rerun']) assert.ok(text.includes(kept), `${kept}:\n${text}`);
    assert.not.ok(text.includes('first rerun'), 'the second run replaced the first');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
