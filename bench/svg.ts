/** results.svg: grouped bars of ops/s per phase and store on a log scale, with min–max whiskers. */
import { PHASE_LABELS, RATE_PHASES } from './result.js';
import type { Report } from './report.js';

const COLORS = ['#1f77b4', '#6baed6', '#d62728', '#ff9896', '#2ca02c', '#9467bd', '#7f7f7f', '#8c564b', '#e377c2', '#bcbd22'];

const W = 1100;
const H = 520;
const M = { left: 78, right: 20, top: 58, bottom: 100 };

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function decadeLabel(exp: number): string {
  const units = ['', 'k', 'M', 'G'];
  const u = Math.min(units.length - 1, Math.floor(exp / 3));
  return `${10 ** (exp - u * 3)}${units[u]}`;
}

const f1 = (x: number): string => x.toFixed(1);

export function renderSvg(r: Report): string {
  const phases = RATE_PHASES.filter((p) => r.stores.some((s) => s.summary.rate[p] !== undefined));
  const all = r.stores.flatMap((s) => phases.flatMap((p) => {
    const st = s.summary.rate[p];
    return st === undefined ? [] : [st.min, st.max];
  })).filter((v) => v > 0);
  const lo = all.length === 0 ? 3 : Math.floor(Math.log10(Math.min(...all)));
  const hi = all.length === 0 ? 7 : Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...all))));
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const y = (v: number): number => M.top + plotH * (1 - (Math.log10(v) - lo) / (hi - lo));
  const groupW = plotW / Math.max(1, phases.length);
  const barW = (groupW * 0.82) / Math.max(1, r.stores.length);

  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  o.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  const date = r.generated.slice(0, 10);
  o.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">Operations per second by phase (log scale)</text>`);
  o.push(`<text x="${W / 2}" y="44" text-anchor="middle" fill="#444">N = ${r.options.n.toLocaleString('en-US')} keys; median of ${r.options.runs} run${r.options.runs > 1 ? 's' : ''}, whiskers min–max; ${esc(r.machine.cpu)}, ${r.machine.cores} cores, Node ${esc(r.machine.node)}; ${date}</text>`);

  for (let e = lo; e <= hi; e++) {
    const yy = f1(y(10 ** e));
    o.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${yy}" y2="${yy}" stroke="#ddd"/>`);
    o.push(`<text x="${M.left - 8}" y="${yy}" dy="4" text-anchor="end" fill="#444">${decadeLabel(e)}</text>`);
  }
  o.push(`<text transform="translate(18 ${M.top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#444">ops/s</text>`);

  phases.forEach((phase, g) => {
    const gx = M.left + g * groupW + groupW * 0.09;
    r.stores.forEach((s, k) => {
      const st = s.summary.rate[phase];
      const x = gx + k * barW;
      if (st === undefined) return;
      const top = y(st.median);
      const color = COLORS[k % COLORS.length];
      o.push(`<rect x="${f1(x)}" y="${f1(top)}" width="${f1(barW * 0.9)}" height="${f1(M.top + plotH - top)}" fill="${color}"><title>${esc(s.name)} ${esc(PHASE_LABELS[phase])}: ${Math.floor(st.median).toLocaleString('en-US')} ops/s (min ${Math.floor(st.min).toLocaleString('en-US')}, max ${Math.floor(st.max).toLocaleString('en-US')})</title></rect>`);
      if (st.count > 1) {
        const cx = f1(x + barW * 0.45);
        const w = barW * 0.2;
        o.push(`<path d="M${cx} ${f1(y(st.min))}V${f1(y(st.max))}M${f1(x + barW * 0.45 - w)} ${f1(y(st.min))}h${f1(2 * w)}M${f1(x + barW * 0.45 - w)} ${f1(y(st.max))}h${f1(2 * w)}" stroke="#000" stroke-width="1" fill="none"/>`);
      }
    });
    o.push(`<text x="${f1(M.left + (g + 0.5) * groupW)}" y="${M.top + plotH + 18}" text-anchor="middle">${esc(PHASE_LABELS[phase])}</text>`);
  });
  o.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${M.top + plotH}" y2="${M.top + plotH}" stroke="#000"/>`);

  const perRow = 4;
  const colW = plotW / perRow;
  r.stores.forEach((s, k) => {
    const lx = M.left + (k % perRow) * colW;
    const ly = M.top + plotH + 46 + Math.floor(k / perRow) * 22;
    o.push(`<rect x="${f1(lx)}" y="${ly - 11}" width="14" height="14" fill="${COLORS[k % COLORS.length]}"/>`);
    o.push(`<text x="${f1(lx + 20)}" y="${ly}">${esc(s.name)} ${esc(s.version.replace(/ \(.*$/, ""))}${s.failures.length === 0 ? '' : ` (failed ${s.failures.length}/${r.options.runs})`}</text>`);
  });
  o.push('</svg>');
  return o.join('\n') + '\n';
}
