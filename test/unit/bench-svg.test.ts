import { test } from 'node:test';
import assert from 'node:assert/strict';
import { barChartSvg, escapeXml, formatCompact, niceCeil, type BarChart } from '../../bench/report/svg.js';

interface Element { name: string; attrs: Record<string, string>; text: string; children: Element[] }

/**
 * A minimal XML parser, enough to prove well-formedness of what the SVG writer emits: one root,
 * properly nested and closed tags, quoted attributes without raw '<' or '&', only the five
 * predefined entities (or numeric ones) in text and attributes. Throws on anything else.
 */
function parseXml(src: string): Element {
  let i = 0;
  const fail = (msg: string): never => { throw new Error(`${msg} at ${i}: ${JSON.stringify(src.slice(i, i + 40))}`); };
  const checkEntities = (s: string): string => {
    const bad = /&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.exec(s);
    if (bad !== null) fail(`bad entity in ${JSON.stringify(s)}`);
    return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
  };
  if (src.startsWith('<?xml')) {
    const end = src.indexOf('?>');
    if (end < 0) fail('unterminated XML declaration');
    i = end + 2;
  }
  const skipWs = (): void => { while (i < src.length && /\s/.test(src[i]!)) i++; };
  const parseElement = (): Element => {
    if (src[i] !== '<') fail('expected <');
    i++;
    const nm = /^[A-Za-z_][\w.:-]*/.exec(src.slice(i));
    if (nm === null) return fail('bad tag name');
    const el: Element = { name: nm[0], attrs: {}, text: '', children: [] };
    i += nm[0].length;
    for (;;) {
      skipWs();
      if (src.startsWith('/>', i)) { i += 2; return el; }
      if (src[i] === '>') { i++; break; }
      const an = /^([A-Za-z_][\w.:-]*)\s*=\s*"([^"]*)"/.exec(src.slice(i));
      if (an === null) return fail('bad attribute');
      if (an[2]!.includes('<')) fail('raw < in attribute');
      if (an[1]! in el.attrs) fail(`duplicate attribute ${an[1]}`);
      el.attrs[an[1]!] = checkEntities(an[2]!);
      i += an[0].length;
    }
    for (;;) {
      const lt = src.indexOf('<', i);
      if (lt < 0) fail(`unclosed <${el.name}>`);
      el.text += checkEntities(src.slice(i, lt));
      i = lt;
      if (src.startsWith('</', i)) {
        const close = `</${el.name}>`;
        if (!src.startsWith(close, i)) fail(`expected ${close}`);
        i += close.length;
        return el;
      }
      el.children.push(parseElement());
    }
  };
  skipWs();
  const root = parseElement();
  skipWs();
  if (i !== src.length) fail('content after the root element');
  return root;
}

function all(el: Element, pred: (e: Element) => boolean, out: Element[] = []): Element[] {
  if (pred(el)) out.push(el);
  for (const c of el.children) all(c, pred, out);
  return out;
}
const byClass = (root: Element, cls: string): Element[] => all(root, (e) => e.attrs['class'] === cls);

const MACHINE = 'Node 20.20.2, AMD EPYC, 2 cores, quick mode';

const chart: BarChart = {
  title: 'Echo 32 B, pipelined: throughput',
  subtitle: MACHINE,
  yLabel: 'messages per second',
  xLabel: 'server',
  categories: ['uWS (raw)', 'ws', 'socket.io', 'ringwire'],
  series: [{ name: 'msg/s', values: [1_121_069, 108_680, 98_708, 592_239] }],
  notes: [null, null, 'client-bound', null],
};

test('barChartSvg: well-formed SVG with one bar and one label per server, labelled axes, machine in the title', () => {
  const svg = barChartSvg(chart);
  const root = parseXml(svg);
  assert.equal(root.name, 'svg');
  assert.equal(root.attrs['xmlns'], 'http://www.w3.org/2000/svg');
  const bars = byClass(root, 'bar');
  assert.equal(bars.length, 4);
  assert.deepStrictEqual(bars.map((b) => b.attrs['data-category']), chart.categories);
  assert.deepStrictEqual(bars.map((b) => Number(b.attrs['data-value'])), chart.series[0]!.values);
  // Taller bar for the larger value: heights are proportional.
  const h = bars.map((b) => Number(b.attrs['height']));
  assert.ok(h[0]! > h[3]! && h[3]! > h[1]! && h[1]! > h[2]!, `heights ${h.join(',')}`);
  assert.ok(h.every((x) => x > 0));
  assert.deepStrictEqual(byClass(root, 'category').map((e) => e.text), chart.categories);
  assert.deepStrictEqual(byClass(root, 'note').map((e) => e.text), ['client-bound']);
  assert.equal(byClass(root, 'ylabel')[0]?.text, 'messages per second');
  assert.equal(byClass(root, 'xlabel')[0]?.text, 'server');
  assert.equal(byClass(root, 'title')[0]?.text, chart.title);
  assert.equal(byClass(root, 'subtitle')[0]?.text, MACHINE);
  const title = root.children.find((c) => c.name === 'title');
  assert.ok(title !== undefined && title.text.includes('Node 20.20.2') && title.text.includes('2 cores'));
  assert.ok(byClass(root, 'tick').length >= 2, 'y axis has tick labels');
  assert.equal(byClass(root, 'legend').length, 0, 'no legend for a single series');
});

test('barChartSvg: several series, null values, and hostile labels stay well-formed', () => {
  const svg = barChartSvg({
    title: 'a <b> & "c"',
    yLabel: "KiB'",
    categories: ['x<y', 'a & b', 'a very long configuration label w2 1MiB b4096 block0 spin0'],
    series: [
      { name: '10k', values: [1.5, null, 3] },
      { name: '19k & more', values: [2, 4, 0] },
    ],
  });
  const root = parseXml(svg);
  const bars = byClass(root, 'bar');
  assert.equal(bars.length, 5, 'one bar per non-null value');
  assert.deepStrictEqual(byClass(root, 'category').map((e) => e.text), ['x<y', 'a & b', 'a very long configuration label w2 1MiB b4096 block0 spin0']);
  assert.deepStrictEqual(byClass(root, 'legend').map((e) => e.text), ['10k', '19k & more']);
  assert.equal(byClass(root, 'title')[0]?.text, 'a <b> & "c"');
  // Long labels are slanted.
  assert.ok(byClass(root, 'category').every((e) => (e.attrs['transform'] ?? '').startsWith('rotate(')));
  assert.equal(all(root, (e) => e.name === 'text' && e.text === 'n/a').length, 1);
});

test('barChartSvg: a reference line sits at its value on the same scale as the bars', () => {
  const root = parseXml(barChartSvg({
    title: 'ratio', yLabel: 'x', categories: ['a', 'b'], series: [{ name: 's', values: [2, 0.5] }],
    reference: { value: 1, label: 'baseline = 1x' },
  }));
  const line = byClass(root, 'reference')[0]!;
  const bars = byClass(root, 'bar');
  const bottom = Number(bars[0]!.attrs['y']) + Number(bars[0]!.attrs['height']);
  const topOf2 = Number(bars[0]!.attrs['y']);
  // value 1 is halfway between 0 (bottom) and 2 (top of the first bar)
  assert.ok(Math.abs(Number(line.attrs['y1']) - (bottom + topOf2) / 2) < 0.02, `reference at ${line.attrs['y1']}`);
  assert.equal(byClass(root, 'reference-label')[0]?.text, 'baseline = 1x');
});

test('barChartSvg: rejects series whose length does not match the categories', () => {
  assert.throws(() => barChartSvg({ title: 't', yLabel: 'y', categories: ['a', 'b'], series: [{ name: 's', values: [1] }] }), RangeError);
  assert.throws(() => barChartSvg({ title: 't', yLabel: 'y', categories: [], series: [] }), RangeError);
});

test('svg helpers: escaping, 1-2-5 axis maximum, compact numbers', () => {
  assert.equal(escapeXml(`<a href="x">&'</a>`), '&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;');
  assert.deepStrictEqual([0, 0.3, 1, 1.01, 3, 7, 1_121_069].map(niceCeil), [1, 0.5, 1, 2, 5, 10, 2_000_000]);
  assert.deepStrictEqual([0, 0.001234, 0.5, 0.42, 2.5, 7, 100, 1234, 56_000, 800_000, 2_000_000, 5_600_000].map(formatCompact),
    ['0', '0.0012', '0.5', '0.42', '2.5', '7', '100', '1234', '56k', '800k', '2M', '5.6M']);
});
