/** What every scenario gets (SuiteContext) and gives back (ScenarioResult). */
import type { MachineInfo } from '../loadgen/scenarios.js';
import type { BarChart } from '../report/svg.js';
import type { Peer } from './peers.js';

export type Mode = 'quick' | 'full';

export interface Timing {
  /** Measured window per load run. */
  durationMs: number;
  warmupMs: number;
  /** Runs per (scenario, server); the median run is reported. Runs are interleaved over servers. */
  runs: number;
}

export interface SuiteContext {
  readonly mode: Mode;
  readonly machine: MachineInfo;
  /** Environment for server processes (carries BENCH_WORK_ITERS). */
  readonly env: NodeJS.ProcessEnv;
  readonly work: { readonly iterations: number; readonly micros: number };
  /** The peers compared, raw uWS first (the ceiling), then ws, socket.io, ringwire. */
  readonly peers: readonly Peer[];
  readonly timing: Timing;
  /** One progress line on stderr. */
  progress(line: string): void;
  /**
   * Marks the running scenario failed (a load run with errors or missing connections, see
   * measure.ts checkLoad): its results are still written, but the suite reports it FAILED and
   * exits non-zero.
   */
  fail(reason: string): void;
  /** Where results go (--out): micro-benchmarks write their JSON there and the scenario reads it back. */
  readonly out: string;
}

export interface ScenarioResult {
  name: string;
  title: string;
  /** Markdown: what was measured, the table(s), the ratio line(s), notes. */
  markdown: string;
  /** One chart per scenario (bench/results/<name>.svg). */
  chart: BarChart | null;
  /** Everything measured (bench/results/<name>.json). */
  data: unknown;
  /** One line of the suite's summary table. */
  summary: Summary;
}

/** A scenario's headline figure per peer (null: not measured / not applicable). */
export interface Summary {
  metric: string;
  ringwire: number | null;
  uws: number | null;
  ws: number | null;
  socketio: number | null;
  lowerIsBetter?: boolean;
  /** Replaces the figures (sweep: the recommended settings). */
  text?: string;
  /**
   * Peers whose figure the load generator set (a client process above 90 % of a core): that figure
   * is the client's limit, and a ratio against it is not the server's. Absent: none.
   */
  clientBound?: Peer['id'][];
}

/** Summary from rows that carry a peer, a value, and whether the load generator set that value. */
export function summaryOf(metric: string, rows: readonly { peer: Peer; value: number | null; clientBound?: boolean }[],
  lowerIsBetter = false): Summary {
  const v = (id: Peer['id']): number | null => rows.find((r) => r.peer.id === id)?.value ?? null;
  const bound = rows.filter((r) => r.clientBound === true).map((r) => r.peer.id);
  return {
    metric, ringwire: v('ringwire'), uws: v('uws'), ws: v('ws'), socketio: v('socketio'), lowerIsBetter,
    ...(bound.length > 0 ? { clientBound: bound } : {}),
  };
}

export interface ScenarioDef {
  readonly name: string;
  readonly title: string;
  run(ctx: SuiteContext): Promise<ScenarioResult>;
}

/** "Node 20.20.2, AMD EPYC, 2 cores": the machine line every table and chart carries. */
export function machineLine(ctx: SuiteContext): string {
  const m = ctx.machine;
  return `Node ${m.node}, ${m.cpuModel}, ${m.cores} cores`;
}
