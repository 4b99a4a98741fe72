/**
 * Scenario runner for end-to-end comparisons: every scenario against every server with the same
 * load generator in the same run, a fresh server process per measurement, runs interleaved
 * (run 1 of every server, then run 2, ...) so background noise spreads over all of them.
 * The first server is the baseline the ratios refer to.
 */
import { cpus, loadavg } from 'node:os';
import { formatLoadResult, loadFailure, runLoad, type LoadResult } from './index.js';
import { medianItem } from '../report/stats.js';

/** A server under test. `start` must return once it listens on 127.0.0.1:port. */
export interface ServerEntry {
  name: string;
  start(): Promise<{ port: number; stop(): Promise<void> }>;
  /** Replaces the scenario payload (e.g. a server that needs its own wire codec). */
  payload?: Uint8Array;
  /** Upgrade path (default `/`). */
  path?: string;
  /** Overrides the scenario's frame type. */
  binary?: boolean;
}

export interface Scenario {
  name: string;
  connections: number;
  inflight: number;
  payload: Uint8Array;
  binary?: boolean;
  processes?: number;
  mode?: 'echo' | 'count';
}

export interface MachineInfo {
  node: string;
  v8: string;
  platform: string;
  arch: string;
  cpuModel: string;
  cores: number;
  loadavg: number[];
  date: string;
}

export interface ScenarioRow {
  scenario: string;
  server: string;
  /** The run with the median msg/s (full result, histogram omitted). */
  result: Omit<LoadResult, 'histogram'>;
  /** msg/s of every run, in run order. */
  runsMsgPerSec: number[];
  /** Median msg/s relative to the baseline server in the same scenario (null for failed baselines). */
  ratio: number | null;
  /** Runs that had errors or connections never established ("run 2: 3 errors (...)"); empty: all clean. */
  failures: string[];
}

export interface ScenarioReport {
  machine: MachineInfo;
  durationMs: number;
  warmupMs: number;
  runs: number;
  baseline: string;
  rows: ScenarioRow[];
  /**
   * "scenario / server: run N: why" for every failed run. Any failed run fails the report, not only
   * a failed median run: a run that counted error replies as echoes, or ran on fewer connections,
   * did not measure the scenario.
   */
  failed: string[];
}

/** Why runs of one (scenario, server) cell are not valid measurements, one entry per failed run (run numbers from 1). */
export function runFailures(runs: readonly Pick<LoadResult, 'errors' | 'errorKinds' | 'established' | 'connections'>[]): string[] {
  const out: string[] = [];
  runs.forEach((r, i) => {
    const why = loadFailure(r);
    if (why !== null) out.push(`run ${i + 1}: ${why}`);
  });
  return out;
}

/** Exit status of a benchmark that produced `report`: 1 when any run failed, else 0. */
export function reportExitCode(report: Pick<ScenarioReport, 'failed'>): number {
  return report.failed.length > 0 ? 1 : 0;
}

export interface RunScenariosOptions {
  durationMs: number;
  warmupMs?: number;
  runs?: number;
  /** Called after each measurement (progress output). */
  onMeasurement?: (scenario: string, server: string, run: number, r: LoadResult) => void;
}

export function machineInfo(): MachineInfo {
  const c = cpus();
  return {
    node: process.versions.node,
    v8: process.versions.v8,
    platform: process.platform,
    arch: process.arch,
    cpuModel: c[0]?.model.trim() ?? 'unknown',
    cores: c.length,
    loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
    date: new Date().toISOString(),
  };
}

async function measure(server: ServerEntry, s: Scenario, durationMs: number, warmupMs: number): Promise<LoadResult> {
  const started = await server.start();
  try {
    return await runLoad({
      url: `ws://127.0.0.1:${started.port}${server.path ?? '/'}`,
      connections: s.connections,
      inflight: s.inflight,
      payload: server.payload ?? s.payload,
      binary: server.binary ?? s.binary ?? true,
      durationMs,
      warmupMs,
      processes: s.processes ?? 1,
      mode: s.mode ?? 'echo',
    });
  } finally {
    await started.stop();
  }
}

export async function runScenarios(servers: readonly ServerEntry[], scenarios: readonly Scenario[],
  opts: RunScenariosOptions): Promise<ScenarioReport> {
  if (servers.length === 0) throw new RangeError('servers must not be empty');
  const runs = opts.runs ?? 1;
  const warmupMs = opts.warmupMs ?? 1000;
  const all: LoadResult[][][] = scenarios.map(() => servers.map(() => []));
  for (let run = 0; run < runs; run++) {
    for (let si = 0; si < scenarios.length; si++) {
      const s = scenarios[si]!;
      for (let vi = 0; vi < servers.length; vi++) {
        const v = servers[vi]!;
        const r = await measure(v, s, opts.durationMs, warmupMs);
        all[si]![vi]!.push(r);
        opts.onMeasurement?.(s.name, v.name, run, r);
      }
    }
  }
  const rows: ScenarioRow[] = [];
  const failed: string[] = [];
  for (let si = 0; si < scenarios.length; si++) {
    let baseRate: number | null = null;
    for (let vi = 0; vi < servers.length; vi++) {
      const list = all[si]![vi]!;
      const median = medianItem(list, (r) => r.messagesPerSec)!;
      const { histogram: _h, ...result } = median;
      if (vi === 0 && median.messagesPerSec > 0) baseRate = median.messagesPerSec;
      const failures = runFailures(list);
      for (const f of failures) failed.push(`${scenarios[si]!.name} / ${servers[vi]!.name}: ${f}`);
      rows.push({
        scenario: scenarios[si]!.name,
        server: servers[vi]!.name,
        result,
        runsMsgPerSec: list.map((r) => Math.round(r.messagesPerSec)),
        ratio: baseRate === null ? null : median.messagesPerSec / baseRate,
        failures,
      });
    }
  }
  return { machine: machineInfo(), durationMs: opts.durationMs, warmupMs, runs, baseline: servers[0]!.name, rows, failed };
}

function int(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function us(n: number | undefined): string {
  if (n === undefined) return '-';
  return n >= 100 ? int(n) : n.toFixed(1);
}

/** Markdown: machine line, then one table row per (scenario, server). */
export function formatScenarioTable(report: ScenarioReport): string {
  const m = report.machine;
  const out: string[] = [];
  out.push(`Node ${m.node} (V8 ${m.v8}), ${m.platform}/${m.arch}, CPU: ${m.cpuModel}, ${m.cores} cores, ` +
    `load avg ${m.loadavg.join(' ')}, ${m.date}`);
  out.push(`${report.runs} run(s) of ${report.durationMs} ms after ${report.warmupMs} ms warm-up; ` +
    `median run shown; ratio = msg/s / ${report.baseline} msg/s.`);
  out.push('');
  out.push('| scenario | server | msg/s | p50 µs | p99 µs | client CPU % | ratio to ' + report.baseline + ' | errors | runs msg/s |');
  out.push('|---|---|---:|---:|---:|---:|---:|---:|---|');
  for (const row of report.rows) {
    const r = row.result;
    const cpu = r.clientCpuPercent.map((c) => c.toFixed(0)).join('+') + (r.clientBound ? ' (client-bound!)' : r.clientSaturated ? ' (client ELU>0.95)' : '');
    out.push(`| ${row.scenario} | ${row.server} | ${int(r.messagesPerSec)} | ${us(r.latencyUs?.p50)} | ` +
      `${us(r.latencyUs?.p99)} | ${cpu} | ${row.ratio === null ? '-' : row.ratio.toFixed(2) + 'x'} | ` +
      `${r.errors} | ${row.runsMsgPerSec.map(int).join(', ')} |`);
  }
  if (report.failed.length > 0) {
    out.push('');
    out.push(`FAILED (runs with errors or missing connections; figures not valid): ${report.failed.join('; ')}`);
  }
  return out.join('\n');
}

export { formatLoadResult };
