/**
 * The tinybench / thread micro-benchmarks, each against its baseline, run as child processes
 * (a fresh V8 per bench, so one cannot skew another's JIT state): their own output goes to
 * stderr as progress, their JSON (<out>/<bench>.json: the suite's --out folder, bench/results/
 * by default) becomes a markdown table and a chart of ratios to the baseline.
 *
 *   micro-fd        fd allocator vs a Map-based allocator          (bench/fd/fd.bench.ts)
 *   micro-ring      SAB ring vs postMessage between threads        (bench/ring/ring.bench.ts)
 *   micro-protocol  wire codecs / in-ring writers vs JSON / copies (bench/protocol/protocol.bench.ts)
 *   micro-hooks     runMessage vs a for…await async chain          (bench/hooks/hooks.bench.ts)
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { int, mdTable } from '../../report/markdown.js';
import { machineLine, type ScenarioDef, type SuiteContext } from '../context.js';

interface MicroRow { case: string; impl: string; median: number; ratio: number; baseline: boolean }

interface MicroSpec {
  name: string;
  title: string;
  script: string;
  json: string;
  unit: string;
  baselineName: string;
  /** Rows that measure ringwire's own code (the summary's figures). */
  ours: (r: MicroRow) => boolean;
  oursName: string;
  args(quick: boolean): string[];
  rows(json: unknown): MicroRow[];
}

const distBench = (p: string): string => fileURLToPath(new URL(`../../${p}`, import.meta.url));

type Json = { results: Record<string, unknown>[] };
const num = (v: unknown): number => (typeof v === 'number' ? v : Number.NaN);
const str = (v: unknown): string => String(v);

const SPECS: readonly MicroSpec[] = [
  {
    name: 'micro-fd', title: 'fd allocator vs Map baseline', script: distBench('fd/fd.bench.js'), json: 'fd.json',
    unit: 'alloc+release pairs/s', baselineName: 'Map baseline', ours: (r) => r.impl === 'FdAllocator', oursName: 'FdAllocator',
    args: (q) => (q ? ['--quick'] : []),
    rows: (j) => (j as Json).results.map((r) => ({
      case: str(r['scenario']), impl: str(r['impl']), median: num(r['median']), ratio: num(r['ratioToMap']), baseline: r['impl'] === 'Map baseline',
    })),
  },
  {
    name: 'micro-ring', title: 'SAB ring vs postMessage (64 B records between threads)', script: distBench('ring/ring.bench.js'), json: 'ring.json',
    unit: 'records/s', baselineName: 'postMessage per record', ours: (r) => r.impl.startsWith('ring '), oursName: 'Ring',
    args: (q) => (q ? ['--quick', '--rounds', '1'] : []),
    rows: (j) => (j as Json).results.map((r) => ({
      case: '64 B records, thread to thread', impl: str(r['scenario']), median: num(r['median']), ratio: num(r['ratioToPostMessage']),
      baseline: str(r['scenario']) === 'postMessage per record',
    })),
  },
  {
    name: 'micro-protocol', title: 'Wire codecs and in-ring record writers vs JSON / copies', script: distBench('protocol/protocol.bench.js'),
    json: 'protocol.json', unit: 'ops/s', baselineName: 'JSON / raw copy (per group)',
    ours: (r) => /^(binary encodeFrame|binaryCodec\.decode|writeMessage|writeSendFrame)/.test(r.impl),
    oursName: 'binary codec and in-ring writers',
    args: (q) => (q ? ['--quick', '--rounds', '1'] : []),
    rows: (j) => (j as Json).results.map((r) => ({
      case: `${str(r['group'])} ${str(r['payloadBytes'])} B`, impl: str(r['task']), median: num(r['median']), ratio: num(r['ratioToBaseline']),
      baseline: r['baseline'] === true,
    })),
  },
  {
    name: 'micro-hooks', title: 'Hook runner (runMessage) vs for…await async chain', script: distBench('hooks/hooks.bench.js'), json: 'hooks.json',
    unit: 'messages/s', baselineName: 'for…await async chain', ours: (r) => r.impl.startsWith('runMessage'), oursName: 'runMessage',
    args: (q) => (q ? ['--quick'] : []),
    rows: (j) => (j as Json).results.map((r) => ({
      case: str(r['chain']), impl: str(r['impl']), median: num(r['median']), ratio: num(r['ratioToBaseline']), baseline: r['baseline'] === true,
    })),
  },
];

/** `p` relative to the working directory when it lies under it (bench/results/fd.json), else absolute. */
const shortPath = (p: string): string => {
  const r = relative(process.cwd(), p);
  return r.startsWith('..') || isAbsolute(r) ? p : r;
};

/**
 * How micro scenario `name` runs its bench: the script, its arguments (the mode's, then `--out`
 * the suite's results folder) and the JSON file it writes there and the scenario reads back.
 */
export function microPlan(name: string, ctx: Pick<SuiteContext, 'mode' | 'out'>): { script: string; args: string[]; json: string } {
  const spec = SPECS.find((s) => s.name === name);
  if (spec === undefined) throw new RangeError(`unknown micro scenario ${name}`);
  return { script: spec.script, args: [...spec.args(ctx.mode === 'quick'), '--out', ctx.out], json: join(ctx.out, spec.json) };
}

function runChild(ctx: SuiteContext, script: string, args: string[]): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.setEncoding('utf8');
    let buf = '';
    child.stdout.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        ctx.progress(`    ${buf.slice(0, nl)}`);
        buf = buf.slice(nl + 1);
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (buf !== '') ctx.progress(`    ${buf}`);
      if (code === 0) resolve();
      else reject(new Error(`${script} exited with ${code ?? signal}`));
    });
  });
}

function microScenario(spec: MicroSpec): ScenarioDef {
  return {
    name: spec.name,
    title: spec.title,
    async run(ctx) {
      const quick = ctx.mode === 'quick';
      const plan = microPlan(spec.name, ctx);
      ctx.progress(`${spec.name}: node ${plan.script.replace(/^.*\/dist\//, 'dist/')} ${plan.args.join(' ')}`);
      await runChild(ctx, plan.script, plan.args);
      const json = JSON.parse(readFileSync(plan.json, 'utf8')) as Json & { params?: unknown; env?: unknown };
      const rows = spec.rows(json);
      const table = mdTable(['case', 'implementation', `${spec.unit}>`, 'vs baseline>'], rows.map((r) => [
        r.case, r.impl === '' ? r.case : r.impl, int(r.median), r.baseline ? 'baseline' : `${r.ratio.toFixed(2)}x`,
      ]));
      const measured = rows.filter((r) => !r.baseline);
      const ourRatios = rows.filter(spec.ours).map((r) => r.ratio);
      return {
        name: spec.name,
        title: spec.title,
        markdown: [`### ${spec.title}`, '', `Baseline: ${spec.baselineName}. ${machineLine(ctx)}; ` +
          `${quick ? 'quick mode (1 round, short tasks)' : 'median of 3 rounds'}; details in ${shortPath(plan.json)}.`, '', table].join('\n'),
        chart: {
          title: `${spec.title}: ratio to baseline`,
          subtitle: `${machineLine(ctx)}, ${ctx.mode} mode`,
          yLabel: 'throughput / baseline (×)',
          xLabel: 'case',
          categories: measured.map((r) => (r.impl === '' ? r.case : `${r.case}: ${r.impl}`)),
          series: [{ name: '× baseline', values: measured.map((r) => r.ratio) }],
          reference: { value: 1, label: `baseline (${spec.baselineName}) = 1×` },
        },
        summary: {
          metric: `${spec.oursName} vs ${spec.baselineName}`,
          ringwire: null, uws: null, ws: null, socketio: null,
          text: ourRatios.length === 0 ? 'n/a'
            : `${Math.min(...ourRatios).toFixed(2)}x .. ${Math.max(...ourRatios).toFixed(2)}x the baseline over ${ourRatios.length} case(s)`,
        },
        data: { bench: spec.json, rows, params: json.params ?? null },
      };
    },
  };
}

export const MICRO_SCENARIOS: readonly ScenarioDef[] = SPECS.map(microScenario);
