/**
 * The benchmark suite: every scenario against every peer (raw uWebSockets.js as the ceiling,
 * `ws`, socket.io, ringwire), plus the micro-benchmarks against their baselines.
 *
 *   node dist/bench/run.js --quick              (npm run bench; a few minutes at most)
 *   node dist/bench/run.js --full               (npm run bench:full; 3 runs of 5 s per cell)
 *   node dist/bench/run.js --scenario echo-32b,fanout [--quick|--full]
 *   node dist/bench/run.js --list
 *   options: --duration ms  --warmup ms  --runs n  (override the mode's timing)  --out DIR
 *
 * stdout: markdown (machine line, one section per scenario with its table and ratio line,
 * a summary table). stderr: progress lines. Files, in --out DIR (default bench/results/):
 * <scenario>.json and .svg, summary.json, and the micro-benchmarks' own fd.json, ring.json,
 * protocol.json, hooks.json. Every server and client runs in its own process; servers load
 * uWS through loadUws(), so a result from uWS's slow `ws` fallback is impossible.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadUws } from '../src/core/uws.js';
import { machineInfo } from './loadgen/scenarios.js';
import { killAllServers, stopAllServers } from './servers/launch.js';
import { calibrateWork } from './servers/work.js';
import { barChartSvg } from './report/svg.js';
import { int, mdTable, ratio, us } from './report/markdown.js';
import type { Mode, ScenarioDef, ScenarioResult, Summary, SuiteContext, Timing } from './suite/context.js';
import { PEERS, type PeerId } from './suite/peers.js';
import { ECHO_SCENARIOS } from './suite/scenarios/echo.js';
import { FANOUT } from './suite/scenarios/fanout.js';
import { FANOUT_CLUSTER } from './suite/scenarios/fanout-cluster.js';
import { ISOLATION } from './suite/scenarios/isolation.js';
import { IDLE_MEMORY } from './suite/scenarios/memory.js';
import { MICRO_SCENARIOS } from './suite/scenarios/micro.js';
import { STORM } from './suite/scenarios/storm.js';
import { SWEEP } from './suite/scenarios/sweep.js';

export const SCENARIOS: readonly ScenarioDef[] = [
  ...MICRO_SCENARIOS, ...ECHO_SCENARIOS, FANOUT, FANOUT_CLUSTER, ISOLATION, STORM, IDLE_MEMORY, SWEEP,
];

/** Names that select several scenarios. */
export const GROUPS: Readonly<Record<string, readonly string[]>> = {
  all: SCENARIOS.map((s) => s.name),
  micro: MICRO_SCENARIOS.map((s) => s.name),
  echo: ['echo-32b', 'echo-512b', 'echo-8kb', 'pingpong-32b'],
  e2e: SCENARIOS.filter((s) => !s.name.startsWith('micro-')).map((s) => s.name),
};

export const TIMING: Readonly<Record<Mode, Timing>> = {
  quick: { durationMs: 1000, warmupMs: 300, runs: 1 },
  full: { durationMs: 5000, warmupMs: 1000, runs: 3 },
};

export const DEFAULT_OUT = fileURLToPath(new URL('../../bench/results/', import.meta.url));

export interface RunArgs {
  mode: Mode;
  scenarios: string[];
  timing: Timing;
  out: string;
  list: boolean;
}

const USAGE = 'usage: run.js [--quick | --full] [--scenario NAME[,NAME...]] [--duration ms] [--warmup ms] [--runs n] [--out DIR] [--list]';

export function parseRunArgs(argv: readonly string[]): RunArgs {
  let mode: Mode = 'quick';
  let names: string[] | null = null;
  const over: Partial<Timing> = {};
  let out = DEFAULT_OUT;
  let list = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    const num = (min: number): number => {
      const n = Number(v);
      if (v === undefined || !Number.isInteger(n) || n < min) throw new RangeError(`${a} must be an integer >= ${min}`);
      i++;
      return n;
    };
    if (a === '--quick') mode = 'quick';
    else if (a === '--full') mode = 'full';
    else if (a === '--list') list = true;
    else if (a === '--scenario' && v !== undefined) { names = [...(names ?? []), ...v.split(',').filter((x) => x !== '')]; i++; }
    else if (a === '--duration') over.durationMs = num(100);
    else if (a === '--warmup') over.warmupMs = num(0);
    else if (a === '--runs') over.runs = num(1);
    else if (a === '--out' && v !== undefined) { out = resolve(v); i++; }
    else throw new TypeError(`unknown argument ${a}\n${USAGE}`);
  }
  const known = new Set(SCENARIOS.map((s) => s.name));
  const selected: string[] = [];
  for (const n of names ?? ['all']) {
    const expanded = GROUPS[n] ?? (known.has(n) ? [n] : null);
    if (expanded === null) {
      throw new TypeError(`unknown scenario "${n}"; scenarios: ${[...known].join(', ')}; groups: ${Object.keys(GROUPS).join(', ')}`);
    }
    for (const e of expanded) if (!selected.includes(e)) selected.push(e);
  }
  // Keep the suite's order whatever order they were named in.
  const ordered = SCENARIOS.map((s) => s.name).filter((n) => selected.includes(n));
  return { mode, scenarios: ordered, timing: { ...TIMING[mode], ...over }, out, list };
}

/** What one scenario gave: its result (null: it threw) and why it failed (empty: it passed). */
export interface ScenarioOutcome {
  result: ScenarioResult | null;
  failures: string[];
}

/**
 * Run one scenario. It fails when it throws, and when any of its load runs had errors or
 * connections that never got established (it says so through ctx.fail, measure.ts checkLoad):
 * then its result is still given back (written and shown, marked FAILED), and the run exits 1.
 */
export async function runScenario(def: ScenarioDef, ctx: Omit<SuiteContext, 'fail'>): Promise<ScenarioOutcome> {
  const failures: string[] = [];
  const scenarioCtx: SuiteContext = {
    ...ctx,
    fail: (reason: string) => {
      failures.push(reason);
      ctx.progress(`${def.name} FAILED: ${reason}`);
    },
  };
  try {
    return { result: await def.run(scenarioCtx), failures };
  } catch (err) {
    failures.push(err instanceof Error ? err.message : String(err));
    ctx.progress(`${def.name} FAILED: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    return { result: null, failures };
  }
}

/**
 * The suite's closing table, one line per scenario. A figure the load generator set (the scenario's
 * reported run was client-bound for that peer) says so here too: this table is what gets quoted,
 * and a ratio against a client-bound raw uWS overstates ringwire.
 */
export function summaryTable(results: readonly Pick<ScenarioResult, 'name' | 'summary'>[], failed: readonly string[]): string {
  const rows = results.map((r) => {
    const s: Summary = r.summary;
    const name = failed.includes(r.name) ? `${r.name} (FAILED)` : r.name;
    if (s.text !== undefined) return [name, s.metric, s.text, '', '', '', '', ''];
    const f = (id: PeerId, v: number | null): string =>
      (v === null ? '-' : v >= 1000 ? int(v) : us(v)) + (v !== null && s.clientBound?.includes(id) === true ? ' (client-bound)' : '');
    return [name, s.metric + (s.lowerIsBetter === true ? ' (lower is better)' : ''), f('ringwire', s.ringwire), f('uws', s.uws),
      f('ws', s.ws), f('socketio', s.socketio), ratio(s.ringwire, s.uws), ratio(s.ringwire, s.ws)];
  });
  return mdTable(['scenario', 'metric', 'ringwire>', 'raw uWS>', 'ws>', 'socket.io>', 'ringwire/raw-uWS>', 'ringwire/ws>'], rows);
}

export interface SummaryEntry {
  name: string; title: string; mode: Mode; date: string; summary: Summary; json: string; svg: string | null;
  /** Why the run that measured it failed (absent: it passed). */
  failures?: string[];
  /**
   * A later run of the scenario produced no figures (it threw): when, and why. The figures above are
   * still the older run's, so a reader is not shown them as current.
   */
  laterRunFailed?: { date: string; failures: string[] };
}

/**
 * summary.json keeps one entry per scenario across runs: a run of some scenarios replaces
 * their entries and keeps the others (each entry says when and in which mode it was measured).
 * `thrown`: scenarios of this run that produced no figures; their kept entries are marked
 * (laterRunFailed) instead of standing as if nothing had happened since.
 */
export function writeSummary(file: string, lastRun: Record<string, unknown>, entries: SummaryEntry[],
  thrown: ReadonlyMap<string, string[]> = new Map(), date = ''): void {
  let kept: SummaryEntry[] = [];
  if (existsSync(file)) {
    try {
      const old = JSON.parse(readFileSync(file, 'utf8')) as { scenarios?: unknown };
      if (Array.isArray(old.scenarios)) kept = (old.scenarios as SummaryEntry[]).filter((e) => typeof e?.name === 'string');
    } catch {
      kept = [];
    }
  }
  const byName = new Map(kept.map((e) => [e.name, e]));
  for (const [name, failures] of thrown) {
    const old = byName.get(name);
    if (old !== undefined) byName.set(name, { ...old, laterRunFailed: { date, failures } });
  }
  for (const e of entries) byName.set(e.name, e);
  const order = SCENARIOS.map((s) => s.name);
  const scenarios = [...byName.values()].filter((e) => order.includes(e.name)).sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  writeFileSync(file, JSON.stringify({ lastRun, scenarios }, null, 2) + '\n');
}

export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<number> {
  const args = parseRunArgs(argv);
  if (args.list) {
    for (const s of SCENARIOS) process.stdout.write(`${s.name.padEnd(16)} ${s.title}\n`);
    process.stdout.write(`groups: ${Object.entries(GROUPS).map(([k, v]) => `${k} (${v.length})`).join(', ')}\n`);
    return 0;
  }
  loadUws(); // refuse to start on the ws fallback (RW_ERR_UWS_FALLBACK) before anything is measured
  const t0 = performance.now();
  const progress = (line: string): void => {
    process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${line}\n`);
  };
  const work = calibrateWork(50);
  const machine = machineInfo();
  const ctx: Omit<SuiteContext, 'fail'> = {
    mode: args.mode,
    machine,
    env: { ...process.env, BENCH_WORK_ITERS: String(work.iterations) },
    work,
    peers: PEERS,
    timing: args.timing,
    progress,
    out: args.out,
  };
  mkdirSync(args.out, { recursive: true });
  const out = (s: string): void => { process.stdout.write(s + '\n'); };
  out(`## ringwire benchmark suite (${args.mode} mode)`);
  out('');
  out(`Node ${machine.node} (V8 ${machine.v8}), ${machine.platform}/${machine.arch}, CPU: ${machine.cpuModel}, ${machine.cores} cores, ` +
    `load avg ${machine.loadavg.join(' ')}, ${machine.date}.`);
  out(`Load runs: ${args.timing.runs} × ${args.timing.durationMs} ms after ${args.timing.warmupMs} ms warm-up per cell. ` +
    `Peers: ${PEERS.map((p) => p.name).join(', ')} (ringwire with default options). CPU-heavy work: ${work.iterations} ` +
    `iterations = ${work.micros.toFixed(1)} µs. Client and server CPU are % of one core; "limit" says whether the load ` +
    'generator (client) was the bottleneck.');
  out('Every server and every load-generator process runs in its own process; uWS is loaded natively (the `ws` fallback is ' +
    'refused). socket.io runs with the websocket transport only and is driven by the same raw-frame load generator, which ' +
    'speaks the engine.io/socket.io framing itself (`0{...}` / `40` handshake, then pre-built `42["echo",...]` frames); ' +
    'raw uWS and ws echo the same binary WireFrame bytes ringwire decodes.');
  progress(`${args.mode} mode: ${args.scenarios.join(', ')}`);
  const results: ScenarioResult[] = [];
  const failed: string[] = [];
  const failuresOf = new Map<string, string[]>();
  for (const name of args.scenarios) {
    const def = SCENARIOS.find((s) => s.name === name)!;
    const started = performance.now();
    const { result: r, failures } = await runScenario(def, ctx);
    if (failures.length > 0) {
      failed.push(name);
      failuresOf.set(name, failures);
    }
    if (r === null) {
      out('');
      out(`### ${def.title}\n\nFAILED: ${failures.join('; ')}`);
      await stopAllServers();
      continue;
    }
    results.push(r);
    const base = resolve(args.out, name);
    writeFileSync(`${base}.json`, JSON.stringify({
      scenario: name, title: r.title, mode: args.mode, machine, work, ...(failures.length > 0 ? { failures } : {}), data: r.data,
    }, null, 2) + '\n');
    if (r.chart !== null) writeFileSync(`${base}.svg`, barChartSvg(r.chart));
    out('');
    out(r.markdown);
    if (failures.length > 0) out(`\nFAILED (figures not valid): ${failures.join('; ')}`);
    progress(`${name} ${failures.length > 0 ? 'FAILED' : 'done'} in ${((performance.now() - started) / 1000).toFixed(1)} s ` +
      `(wrote ${base}.json${r.chart !== null ? ', .svg' : ''})`);
  }
  const elapsed = (performance.now() - t0) / 1000;
  out('');
  out('### Summary');
  out('');
  out(summaryTable(results, failed));
  out('');
  out(`${results.length} scenario(s) in ${elapsed.toFixed(0)} s${failed.length > 0 ? `; FAILED: ${failed.join(', ')}` : ''}. ` +
    `JSON and SVG in ${args.out}.`);
  writeSummary(resolve(args.out, 'summary.json'), {
    mode: args.mode, machine, timing: args.timing, work, elapsedSeconds: Math.round(elapsed), scenarios: args.scenarios, failed,
  }, results.map((r) => ({
    name: r.name, title: r.title, mode: args.mode, date: machine.date, summary: r.summary,
    json: `${r.name}.json`, svg: r.chart !== null ? `${r.name}.svg` : null,
    ...(failuresOf.has(r.name) ? { failures: failuresOf.get(r.name)! } : {}),
  })), new Map([...failuresOf].filter(([name]) => !results.some((r) => r.name === name))), machine.date);
  return failed.length > 0 ? 1 : 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.on('exit', killAllServers);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      killAllServers();
      process.exit(130);
    });
  }
  main().then((code) => { process.exitCode = code; }, (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
