/**
 * One load measurement against one peer: a fresh server process, the load generator in its own
 * process(es), the server's CPU sampled from /proc while it runs. Plus the interleaved
 * runs × peers loop that reports the median run per peer, and the echo-style table.
 */
import { availableParallelism } from 'node:os';
import { loadFailure, runLoad, formatLoadResult, type LoadResult } from '../loadgen/index.js';
import { CpuSampler, launchServer, type LaunchedServer } from '../servers/launch.js';
import type { RouteName } from '../servers/routes.js';
import { int, mdTable, pct, ratio, us } from '../report/markdown.js';
import type { SuiteContext, Timing } from './context.js';
import type { Peer } from './peers.js';
import { takeSourceAddresses } from './addresses.js';
import { medianItem } from '../report/stats.js';

export interface LoadSpec {
  route: RouteName;
  connections: number;
  /** Pipelining window (echo) or publisher credit (count). */
  inflight: number;
  /** Application payload bytes. */
  payloadBytes: number;
  mode?: 'echo' | 'count';
  senders?: number;
  processes?: number;
}

export interface Measurement {
  peer: string;
  result: Omit<LoadResult, 'histogram'>;
  /** Median of 200 ms /proc samples over the measured window, % of one core (ringwire: all its threads). */
  serverCpuPercent: number | null;
  /**
   * CPU the rest of the host used meanwhile (host busy − server − load generator), % of one core:
   * other processes on a shared machine. High values mean the figures are depressed.
   */
  otherCpuPercent: number | null;
  /** The whole host's busy CPU meanwhile (median sample), % of one core: up to cores × 100. */
  hostBusyPercent: number | null;
  /** Bytes of one client message as sent (the peer's framing of the payload). */
  wireBytes: number;
  /** What the server printed at start (ringwire: its resolved settings). */
  serverInfo: Record<string, unknown>;
}

export async function startPeer(ctx: SuiteContext, peer: Peer): Promise<LaunchedServer> {
  return launchServer(peer.script, peer.args, { env: ctx.env });
}

/** Run one load against an already started server. */
export async function loadAgainst(server: LaunchedServer, peer: Peer, spec: LoadSpec, timing: { durationMs: number; warmupMs: number },
  sampleCpu = true): Promise<Measurement> {
  const msg = peer.message(spec.route, spec.payloadBytes);
  // The server's CPU is sampled over the measured window only (not the clients' start-up,
  // connecting and warm-up): the sampler starts and stops with the load's window.
  let sampler: CpuSampler | null = null;
  // (`as`: assigned in stopSampler, so the compiler must not narrow them to null here)
  let cpu = null as number | null;
  let host = null as number | null;
  const stopSampler = (): void => {
    if (sampler === null) return;
    cpu = sampler.stop();
    host = sampler.hostBusy();
    sampler = null;
  };
  let r: LoadResult;
  try {
    const hs = peer.handshake(spec.route);
    r = await runLoad({
      url: `ws://127.0.0.1:${server.port}${peer.path(spec.route)}`,
      connections: spec.connections,
      inflight: spec.inflight,
      payload: msg.payload,
      binary: msg.binary,
      durationMs: timing.durationMs,
      warmupMs: timing.warmupMs,
      processes: spec.processes ?? 1,
      sourceAddresses: spec.processes ?? 1,
      firstSourceAddress: takeSourceAddresses(spec.processes ?? 1),
      mode: spec.mode ?? 'echo',
      ...(spec.senders !== undefined ? { senders: spec.senders } : {}),
      ...(hs !== undefined ? { handshake: hs } : {}),
      onWindow: (phase) => {
        if (phase === 'start' && sampleCpu) sampler = new CpuSampler(server.pid);
        else stopSampler();
      },
    });
  } finally {
    stopSampler();
  }
  const { histogram: _h, ...result } = r;
  const clients = r.clientCpuPercent.reduce((a, b) => a + b, 0);
  const other = host === null || cpu === null ? null : Math.max(0, host - cpu - clients);
  return {
    peer: peer.name, result, serverCpuPercent: cpu, otherCpuPercent: other, hostBusyPercent: host,
    wireBytes: msg.payload.length, serverInfo: server.info,
  };
}

/** Fresh server, one load, server stopped. */
export async function measureLoad(ctx: SuiteContext, peer: Peer, spec: LoadSpec, timing: Timing = ctx.timing): Promise<Measurement> {
  const server = await startPeer(ctx, peer);
  try {
    return await loadAgainst(server, peer, spec, timing);
  } finally {
    await server.stop();
  }
}

export interface PeerRow {
  peer: Peer;
  /** The run with the median msg/s. */
  median: Measurement;
  runsMsgPerSec: number[];
}

function oneLine(m: Measurement): string {
  const r = m.result;
  const l = r.latencyUs;
  return `${int(r.messagesPerSec)} msg/s` + (l === null ? '' : `, p50 ${us(l.p50)} µs, p99 ${us(l.p99)} µs`) +
    `, server CPU ${pct(m.serverCpuPercent)}%, others ${pct(m.otherCpuPercent)}%, client CPU ${r.clientCpuPercent.map((c) => c.toFixed(0)).join('+')}%` +
    `${r.clientBound ? ' CLIENT-BOUND' : ''}${r.errors > 0 ? `, ${r.errors} errors` : ''}`;
}

/**
 * Fails the scenario (ctx.fail) when a load run has errors or connections that never got
 * established; returns whether the run was clean. Every run is checked, not only the reported
 * median one: a run whose figures count error replies as echoes, or that ran on fewer
 * connections, is not a measurement of the scenario, whichever run the table shows.
 */
export function checkLoad(ctx: Pick<SuiteContext, 'fail'>, what: string,
  r: { errors: number; errorKinds: Record<string, number>; established: number; connections: number }): boolean {
  const why = loadFailure(r);
  if (why === null) return true;
  ctx.fail(`${what}: ${why}`);
  return false;
}

/** runs × peers, interleaved (run 1 of every peer, then run 2, ...); the median run per peer. */
export async function runPeers(ctx: SuiteContext, label: string, peers: readonly Peer[], spec: LoadSpec,
  timing: Timing = ctx.timing): Promise<PeerRow[]> {
  const all: Measurement[][] = peers.map(() => []);
  for (let run = 0; run < timing.runs; run++) {
    for (let i = 0; i < peers.length; i++) {
      const p = peers[i]!;
      const m = await measureLoad(ctx, p, spec, timing);
      all[i]!.push(m);
      ctx.progress(`  ${label} [${run + 1}/${timing.runs}] ${p.name}: ${oneLine(m)}`);
      if (!checkLoad(ctx, `${label} run ${run + 1} ${p.name}`, m.result)) ctx.progress(formatLoadResult({ ...m.result, histogram: { buckets: [], total: 0, min: 0, max: 0, sum: 0 } }));
    }
  }
  return peers.map((peer, i) => {
    const list = all[i]!;
    return { peer, median: medianItem(list, (m) => m.result.messagesPerSec)!, runsMsgPerSec: list.map((m) => Math.round(m.result.messagesPerSec)) };
  });
}

/** Other processes above this much CPU (% of one core) during a run: the host was shared. */
export const SHARED_HOST_PERCENT = 25;

/** CPU figures of one run, % of one core (null: unknown). */
export interface CpuFigures {
  serverCpuPercent: number | null;
  otherCpuPercent: number | null;
  hostBusyPercent: number | null;
}

const CORES = availableParallelism();

/**
 * What limited a run, as far as the load generator and /proc can tell, first match wins:
 *   **CLIENT-BOUND**             a load-generator process used > 90 % of a core
 *   client busy (ELU>0.95)       a load-generator event loop never idled (client-bound or starved)
 *   host shared (others N%)      other processes took > 25 % of a core meanwhile
 *   host CPU full (server N%)    the host had < 10 % of its cores idle (server and client share the cores)
 *   not server CPU (server N%)   the server had CPU to spare: latency, the client or the kernel limited it
 *   server                       none of the above
 */
export function limitOf(r: Pick<LoadResult, 'clientBound' | 'clientSaturated'>, cpu?: CpuFigures): string {
  if (r.clientBound) return '**CLIENT-BOUND**';
  if (r.clientSaturated) return 'client busy (ELU>0.95)';
  if (cpu === undefined) return 'server';
  const { serverCpuPercent: server, otherCpuPercent: other, hostBusyPercent: host } = cpu;
  if (other !== null && other > SHARED_HOST_PERCENT) return `host shared (others ${other.toFixed(0)}%)`;
  if (host !== null && host >= CORES * 90) return `host CPU full (server ${server === null ? '?' : server.toFixed(0)}%)`;
  if (server !== null && server < 60) return `not server CPU (server ${server.toFixed(0)}%)`;
  return 'server';
}

export function findPeer<T extends { peer: Peer }>(rows: readonly T[], id: Peer['id']): T | undefined {
  return rows.find((r) => r.peer.id === id);
}

/** The echo-style table: throughput, latency percentiles, both CPUs, the limit, ratios to uWS and ws. */
export function echoTable(rows: readonly PeerRow[], unit = 'msg/s'): string {
  const uws = findPeer(rows, 'uws')?.median.result.messagesPerSec;
  const ws = findPeer(rows, 'ws')?.median.result.messagesPerSec;
  const body = rows.map((row) => {
    const m = row.median;
    const r = m.result;
    const l = r.latencyUs;
    return [
      row.peer.name, int(r.messagesPerSec), us(l?.p50), us(l?.p90), us(l?.p99), us(l?.p999),
      pct(m.serverCpuPercent), r.clientCpuPercent.map((c) => c.toFixed(0)).join('+'), limitOf(r, m),
      ratio(r.messagesPerSec, uws), ratio(r.messagesPerSec, ws), String(r.errors),
      `${r.established}/${r.connections}`, row.runsMsgPerSec.length > 1 ? row.runsMsgPerSec.map(int).join(', ') : '-',
    ];
  });
  return mdTable(['server', `${unit}>`, 'p50 µs>', 'p90 µs>', 'p99 µs>', 'p99.9 µs>', 'server CPU %>', 'client CPU %>', 'limit',
    'vs uWS>', 'vs ws>', 'errors>', 'conns>', `runs ${unit}`], body);
}

/** "ringwire/raw-uWS 0.41x, ringwire/ws 5.2x (msg/s)". */
export function ratioLine(rows: readonly { peer: Peer; value: number | null }[], what: string, lowerIsBetter = false): string {
  const rw = rows.find((r) => r.peer.id === 'ringwire')?.value ?? null;
  const u = rows.find((r) => r.peer.id === 'uws')?.value ?? null;
  const w = rows.find((r) => r.peer.id === 'ws')?.value ?? null;
  return `**ringwire/raw-uWS = ${ratio(rw, u)}, ringwire/ws = ${ratio(rw, w)}** (${what}${lowerIsBetter ? ', lower is better' : ''})`;
}

export function clientBoundNote(rows: readonly PeerRow[]): string | null {
  const bound = rows.filter((r) => r.median.result.clientBound).map((r) => r.peer.name);
  if (bound.length === 0) return null;
  return `Note: the load generator was the bottleneck (a client process above 90 % of a core) for ${bound.join(', ')}: ` +
    'those figures are the client\'s limit, a lower bound for the server.';
}
