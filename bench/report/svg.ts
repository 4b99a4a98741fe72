/**
 * Bar charts as standalone SVG, written by hand (no browser, no dependency): one chart per
 * benchmark scenario, bars per server (optionally several series side by side), labelled axes,
 * a title and a subtitle naming Node version, CPU model and core count.
 *
 *   writeFileSync('echo-32b.svg', barChartSvg({ title, subtitle, yLabel, categories, series }));
 *
 * Every bar is a `<rect class="bar">` carrying data-category / data-series / data-value and a
 * `<title>` tooltip; null values draw no bar and print "n/a". Notes (e.g. "client-bound") are
 * printed under the category label.
 */

export interface BarSeries {
  name: string;
  values: readonly (number | null)[];
}

export interface BarChart {
  title: string;
  /** Second title line: machine (Node, CPU, cores) and run mode. */
  subtitle?: string;
  yLabel: string;
  xLabel?: string;
  /** One group of bars per category (server, configuration, ...). */
  categories: readonly string[];
  /** One bar per category in each series; values.length must equal categories.length. */
  series: readonly BarSeries[];
  /** Per-category note printed under its label (null: none). */
  notes?: readonly (string | null)[];
  /** A dashed horizontal line (e.g. the baseline at 1×). */
  reference?: { value: number; label: string };
  width?: number;
  height?: number;
}

const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#9c755f'] as const;

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** 1-2-5 rounding up: the axis maximum for `max`. */
export function niceCeil(max: number): number {
  if (!(max > 0) || !Number.isFinite(max)) return 1;
  const exp = Math.floor(Math.log10(max));
  const base = 10 ** exp;
  for (const m of [1, 2, 2.5, 5, 10]) if (m * base >= max * (1 - 1e-9)) return m * base;
  return 10 * base;
}

/** Compact number: 1234 → "1.23k", 5600000 → "5.6M", 0.42 → "0.42". */
export function formatCompact(v: number): string {
  const a = Math.abs(v);
  // Trailing zeros go only after a decimal point ("2.50" → "2.5", "800" stays).
  const fix = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)).replace(/\.(\d*?)0+$/, '.$1').replace(/\.$/, '');
  if (a >= 1e9) return fix(v / 1e9) + 'G';
  if (a >= 1e6) return fix(v / 1e6) + 'M';
  if (a >= 1e4) return fix(v / 1e3) + 'k';
  if (a >= 0.01) return fix(v);
  if (a === 0) return '0';
  return v.toPrecision(2);
}

function fmtAttr(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}

export function barChartSvg(c: BarChart): string {
  const nCat = c.categories.length;
  const nSer = c.series.length;
  if (nCat === 0) throw new RangeError('chart.categories must not be empty');
  if (nSer === 0) throw new RangeError('chart.series must not be empty');
  for (const s of c.series) {
    if (s.values.length !== nCat) throw new RangeError(`series "${s.name}" has ${s.values.length} values for ${nCat} categories`);
  }
  const W0 = c.width ?? Math.max(640, 110 + nCat * Math.max(70, 26 * nSer + 24));
  const H0 = c.height ?? 440;
  const legend = nSer > 1;
  const right = legend ? 170 : 24;
  const top = c.subtitle === undefined ? 52 : 70;
  // Labels wider than their group (about 6.5 px per character at 12 px) are slanted; the first
  // one then reaches left of its bar (cos 30° ≈ 0.87), so the picture grows to the left.
  const longest = Math.max(...c.categories.map((s) => s.length));
  const rotate = longest * 6.5 > (W0 - 84 - right) / nCat - 4;
  const extraLeft = rotate ? Math.max(0, Math.ceil(longest * 6.5 * 0.87) - 70) : 0;
  const left = 84 + extraLeft;
  const W = W0 + extraLeft;
  const bottom = rotate ? Math.min(220, 40 + Math.ceil(longest * 6.5 * 0.5)) + 30 : 72;
  const plotW = W - left - right;
  // Slanted labels need room below the plot: grow the picture rather than squash the bars.
  const H = rotate ? H0 + bottom - 72 : H0;
  const plotH = H - top - bottom;
  let max = 0;
  for (const s of c.series) for (const v of s.values) if (v !== null && Number.isFinite(v) && v > max) max = v;
  if (c.reference !== undefined && c.reference.value > max) max = c.reference.value;
  const yMax = niceCeil(max);
  const ticks = 5;
  const y = (v: number): number => top + plotH - (Math.max(0, v) / yMax) * plotH;
  const out: string[] = [];
  const titleText = c.subtitle === undefined ? c.title : `${c.title} (${c.subtitle})`;
  out.push(`<?xml version="1.0" encoding="UTF-8"?>`);
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
    `font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<title>${escapeXml(titleText)}</title>`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text class="title" x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(c.title)}</text>`);
  if (c.subtitle !== undefined) {
    out.push(`<text class="subtitle" x="${W / 2}" y="44" text-anchor="middle" font-size="12" fill="#555555">${escapeXml(c.subtitle)}</text>`);
  }
  // Grid and y axis ticks.
  for (let i = 0; i <= ticks; i++) {
    const v = (yMax * i) / ticks;
    const yy = fmtAttr(y(v));
    out.push(`<line x1="${left}" y1="${yy}" x2="${left + plotW}" y2="${yy}" stroke="#e0e0e0"/>`);
    out.push(`<text class="tick" x="${left - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle">${escapeXml(formatCompact(v))}</text>`);
  }
  out.push(`<line class="axis" x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#333333"/>`);
  out.push(`<line class="axis" x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}" stroke="#333333"/>`);
  const yMid = fmtAttr(top + plotH / 2);
  const yl = left - 66;
  out.push(`<text class="ylabel" x="${yl}" y="${yMid}" text-anchor="middle" transform="rotate(-90 ${yl} ${yMid})">${escapeXml(c.yLabel)}</text>`);
  if (c.xLabel !== undefined) {
    out.push(`<text class="xlabel" x="${fmtAttr(left + plotW / 2)}" y="${H - 10}" text-anchor="middle">${escapeXml(c.xLabel)}</text>`);
  }
  // Bars.
  const groupW = plotW / nCat;
  const pad = Math.min(24, groupW * 0.2);
  const barW = (groupW - pad) / nSer;
  for (let ci = 0; ci < nCat; ci++) {
    const gx = left + ci * groupW + pad / 2;
    for (let si = 0; si < nSer; si++) {
      const s = c.series[si]!;
      const v = s.values[ci]!;
      const x = gx + si * barW;
      const cx = fmtAttr(x + barW / 2);
      if (v === null || !Number.isFinite(v)) {
        out.push(`<text class="value" x="${cx}" y="${fmtAttr(top + plotH - 4)}" text-anchor="middle" fill="#999999">n/a</text>`);
        continue;
      }
      const yy = y(v);
      const h = top + plotH - yy;
      out.push(`<rect class="bar" x="${fmtAttr(x + 1)}" y="${fmtAttr(yy)}" width="${fmtAttr(Math.max(1, barW - 2))}" height="${fmtAttr(h)}" ` +
        `fill="${PALETTE[si % PALETTE.length]}" data-category="${escapeXml(c.categories[ci]!)}" data-series="${escapeXml(s.name)}" ` +
        `data-value="${v}"><title>${escapeXml(`${c.categories[ci]!} / ${s.name}: ${formatCompact(v)}`)}</title></rect>`);
      out.push(`<text class="value" x="${cx}" y="${fmtAttr(yy - 4)}" text-anchor="middle" font-size="10">${escapeXml(formatCompact(v))}</text>`);
    }
    const lx = fmtAttr(gx + (groupW - pad) / 2);
    const ly = top + plotH + 18;
    const note = c.notes?.[ci];
    const hasNote = note !== null && note !== undefined && note !== '';
    if (rotate) {
      // Long labels: slanted, ending under their bars; the note goes under the label's start.
      out.push(`<text class="category" x="${lx}" y="${ly}" text-anchor="end" transform="rotate(-30 ${lx} ${ly})">${escapeXml(c.categories[ci]!)}</text>`);
      if (hasNote) {
        out.push(`<text class="note" x="${lx}" y="${top + 12}" text-anchor="middle" font-size="10" fill="#c0392b">${escapeXml(note)}</text>`);
      }
    } else {
      out.push(`<text class="category" x="${lx}" y="${ly}" text-anchor="middle">${escapeXml(c.categories[ci]!)}</text>`);
      if (hasNote) {
        out.push(`<text class="note" x="${lx}" y="${ly + 16}" text-anchor="middle" font-size="10" fill="#c0392b">${escapeXml(note)}</text>`);
      }
    }
  }
  if (c.reference !== undefined) {
    const ry = fmtAttr(y(c.reference.value));
    out.push(`<line class="reference" x1="${left}" y1="${ry}" x2="${left + plotW}" y2="${ry}" stroke="#c0392b" stroke-dasharray="6 4"/>`);
    // The label may cross a bar: a translucent white box (about 5.5 px per character at 10 px) keeps it readable.
    const lw = Math.ceil(c.reference.label.length * 5.5) + 6;
    out.push(`<rect class="reference-box" x="${fmtAttr(left + plotW - 2 - lw)}" y="${fmtAttr(y(c.reference.value) - 15)}" ` +
      `width="${lw}" height="13" fill="#ffffff" fill-opacity="0.85"/>`);
    out.push(`<text class="reference-label" x="${left + plotW - 4}" y="${fmtAttr(y(c.reference.value) - 4)}" text-anchor="end" ` +
      `font-size="10" fill="#c0392b">${escapeXml(c.reference.label)}</text>`);
  }
  if (legend) {
    const lx = left + plotW + 16;
    for (let si = 0; si < nSer; si++) {
      const ly = top + 8 + si * 20;
      out.push(`<rect class="legend-swatch" x="${lx}" y="${ly}" width="12" height="12" fill="${PALETTE[si % PALETTE.length]}"/>`);
      out.push(`<text class="legend" x="${lx + 18}" y="${ly + 10}">${escapeXml(c.series[si]!.name)}</text>`);
    }
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
