/**
 * Cross-node fan-out next to single-node fan-out: the same 1 publisher → 1,000 subscribers load as
 * the `fanout` scenario (1,001 connections on /fanout over 2 client processes, connection 0
 * publishes with 16 messages of credit, 32 B payload, every connection subscribed and counting
 * deliveries), measured in the same run with the same load generator against three setups:
 *
 *   1 node               one ringwire server, all 1,001 connections on it (the fanout row, re-run)
 *   1 node + Redis bus   the same, with `cluster` on: every publish also goes out to Redis
 *                        (nobody else listens; the node ignores its own echo) — the bus's cost
 *                        on the publishing node
 *   2 nodes via Redis    servers A and B joined through one redis-server; client process 0
 *                        (the publisher + 500 subscribers) on A, client process 1 (500
 *                        subscribers) on B: every delivery on B crossed Redis (one PUBLISH per
 *                        message, fanned out locally by B)
 *
 * The publisher's credit comes back from its own node (A), so B is not flow-controlled: a B that
 * cannot keep up shows as B's deliveries/s below A's, a growing Redis output buffer (peak pubsub
 * omem) and, past Redis's client-output-buffer-limit, a dropped subscription (bus reconnects).
 * The bench's redis-server runs with `client-output-buffer-limit pubsub 256mb 64mb 60` so that a
 * burst does not disconnect B (Redis's default is 32mb 8mb 60).
 *
 * redis-server comes from test/support/redis.ts (PATH or $REDIS_SERVER, a free loopback port, no
 * persistence); without it the scenario reports "skipped: redis-server not installed".
 * Cluster counters come from each server's stats() (ringwire-server.js --stats-file, written on
 * SIGTERM, so they cover the whole load: warm-up, window and close).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { ServerStats } from '../../../src/core/stats.js';
import { startRedis as startTestRedis, type RedisProc } from '../../../test/support/redis.js';
import type { LoadResult } from '../../loadgen/index.js';
import { CpuSampler, launchServer, type LaunchedServer } from '../../servers/launch.js';
import { int, mdTable, pct, ratio } from '../../report/markdown.js';
import { takeSourceAddresses } from '../addresses.js';
import type { ScenarioDef, ScenarioResult, SuiteContext, Timing } from '../context.js';
import { checkLoad, limitOf, type LoadSpec } from '../measure.js';
import { medianItem, medianOrNull } from '../../report/stats.js';
import { RINGWIRE } from '../peers.js';
import { processRate, runSplitLoad } from '../split-load.js';

export const SUBSCRIBERS = 1000;
/** The fanout scenario's load (bench/suite/scenarios/fanout.ts), unchanged. */
export const CLUSTER_SPEC: LoadSpec = {
  route: 'fanout', connections: SUBSCRIBERS + 1, inflight: 16, payloadBytes: 32, mode: 'count', senders: 1, processes: 2,
};
/** Applied with CONFIG SET before the first measurement (Redis default: pubsub 32mb 8mb 60). */
export const REDIS_PUBSUB_LIMIT = 'pubsub 256mb 64mb 60';
export const SKIP_TEXT = 'skipped: redis-server not installed';

export type SetupId = 'single' | 'single-bus' | 'cross';
export const SETUPS: readonly { id: SetupId; label: string }[] = [
  { id: 'single', label: 'ringwire 1 node' },
  { id: 'single-bus', label: 'ringwire 1 node + Redis bus' },
  { id: 'cross', label: 'ringwire 2 nodes via Redis' },
];

export type BusStats = NonNullable<ServerStats['cluster']>;

/** One server process of a measurement. */
export interface NodeFigures {
  /** 'A' (the publisher's node) or 'B'. */
  node: string;
  /** Load-generator connections on this node (A includes the publisher). */
  connections: number;
  /** Deliveries counted by the client process(es) connected to this node. */
  deliveriesPerSec: number;
  /** Median /proc sample over the load, % of one core (all threads). */
  serverCpuPercent: number | null;
  /** stats().cluster at shutdown (null: not clustered, or no stats file). */
  bus: BusStats | null;
  /** stats().drops.cluster at shutdown: cross-node messages not handed to Redis. */
  clusterDrops: number | null;
  /** stats().publishes at shutdown: publishes fanned out by this node (its own and, on B, those from the bus). */
  publishes: number | null;
}

export interface ClusterMeasurement {
  setup: SetupId;
  label: string;
  result: Omit<LoadResult, 'histogram'>;
  nodes: NodeFigures[];
  /** redis-server CPU (INFO cpu, median 200 ms sample), % of one core; null without Redis in the setup. */
  redisCpuPercent: number | null;
  /** Largest output buffer of a Redis pub/sub client seen while loading (CLIENT LIST omem), bytes. */
  peakPubsubOmem: number | null;
  hostBusyPercent: number | null;
  /** Host busy − servers − Redis − load generator, % of one core. */
  otherCpuPercent: number | null;
}

export interface ClusterRow {
  setup: SetupId;
  label: string;
  median: ClusterMeasurement;
  runsDeliveriesPerSec: number[];
}

export interface RedisMeta {
  version: string;
  outputBufferLimit: string;
  /** Lines of the redis-server log about clients closed for their output buffer. */
  bufferLimitLog: string[];
}

// ------------------------------------------------------------------------------------------ report

const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);

/** Deliveries per publish on the publisher's node A: its connections (all of them subscribed). */
export function publishesPerSec(m: ClusterMeasurement): number {
  const a = m.nodes[0];
  return a === undefined || a.connections === 0 ? 0 : a.deliveriesPerSec / a.connections;
}

function busSum(m: ClusterMeasurement, key: 'published' | 'received' | 'dropped' | 'reconnects'): number | null {
  const bus = m.nodes.map((n) => n.bus).filter((b): b is BusStats => b !== null);
  return bus.length === 0 ? null : sum(bus.map((b) => b[key]));
}

function limitFor(m: ClusterMeasurement): string {
  const cpus = m.nodes.map((n) => n.serverCpuPercent).filter((c): c is number => c !== null);
  return limitOf(m.result, {
    serverCpuPercent: cpus.length === 0 ? null : Math.max(...cpus),
    otherCpuPercent: m.otherCpuPercent,
    hostBusyPercent: m.hostBusyPercent,
  });
}

const perNode = <T>(m: ClusterMeasurement, f: (n: NodeFigures) => T, fmt: (v: T) => string): string =>
  m.nodes.length === 1 ? fmt(f(m.nodes[0]!)) : m.nodes.map((n) => `${n.node} ${fmt(f(n))}`).join(' / ');

/** The side-by-side table: one row per setup, ratios to the 1-node row. */
export function clusterTable(rows: readonly ClusterRow[]): string {
  const single = rows.find((r) => r.setup === 'single')?.median.result.messagesPerSec;
  return mdTable(['setup', 'connections per node', 'deliveries/s>', 'vs 1 node>', 'deliveries/s per node>', 'publishes/s>',
    'server CPU %>', 'Redis CPU %>', 'peak Redis pubsub buffer>', 'client CPU %>', 'limit', 'bus published>', 'bus received>',
    'bus dropped>', 'errors>', 'conns>', 'runs deliveries/s'], rows.map((row) => {
    const m = row.median;
    const r = m.result;
    const bus = (k: 'published' | 'received' | 'dropped'): string => { const v = busSum(m, k); return v === null ? '-' : int(v); };
    return [row.label, perNode(m, (n) => n.connections, int), int(r.messagesPerSec), ratio(r.messagesPerSec, single),
      perNode(m, (n) => n.deliveriesPerSec, int), int(publishesPerSec(m)), perNode(m, (n) => n.serverCpuPercent, pct),
      pct(m.redisCpuPercent), m.peakPubsubOmem === null ? '-' : `${int(m.peakPubsubOmem)} B`, r.clientCpuPercent.map((c) => c.toFixed(0)).join('+'), limitFor(m), bus('published'), bus('received'),
      bus('dropped'), String(r.errors), `${r.established}/${r.connections}`,
      row.runsDeliveriesPerSec.length > 1 ? row.runsDeliveriesPerSec.map(int).join(', ') : '-'];
  }));
}

/** Per-node cluster counters of the clustered setups (median runs). */
export function nodeTable(rows: readonly ClusterRow[]): string {
  const body: string[][] = [];
  for (const row of rows) {
    for (const n of row.median.nodes) {
      if (n.bus === null) continue;
      body.push([row.label, `${n.node} (${n.bus.nodeId})`, int(n.connections), int(n.deliveriesPerSec), pct(n.serverCpuPercent),
        int(n.publishes), int(n.bus.published), int(n.bus.received), int(n.bus.dropped), int(n.clusterDrops), int(n.bus.reconnects),
        n.bus.connected ? 'yes' : 'NO']);
    }
  }
  return mdTable(['setup', 'node', 'connections>', 'deliveries/s>', 'server CPU %>', 'publishes fanned out>', 'bus published>',
    'bus received>', 'bus dropped>', 'drops.cluster>', 'bus reconnects>', 'connected at end'], body);
}

/** Warnings about the cross-node run: B behind A, lost bus messages, a dropped subscription. */
export function crossNotes(rows: readonly ClusterRow[]): string[] {
  const cross = rows.find((r) => r.setup === 'cross')?.median;
  if (cross === undefined) return [];
  const out: string[] = [];
  const [a, b] = cross.nodes;
  if (a !== undefined && b !== undefined && a.connections > 0 && b.connections > 0) {
    const perConnA = a.deliveriesPerSec / a.connections;
    const perConnB = b.deliveriesPerSec / b.connections;
    if (perConnA > 0 && perConnB < perConnA * 0.95) {
      out.push(`Note: node B delivered ${(100 * perConnB / perConnA).toFixed(0)} % of node A's rate per connection: B (or Redis) ` +
        'did not keep up with the publisher, whose credit comes back from A; the backlog waits in Redis and B\'s socket buffers.');
    }
    if (a.bus !== null && b.bus !== null && b.bus.received < a.bus.published) {
      out.push(`Note: B received ${int(b.bus.received)} of the ${int(a.bus.published)} messages A published to Redis ` +
        `(${int(a.bus.published - b.bus.received)} missing at shutdown).`);
    }
  }
  const dropped = busSum(cross, 'dropped') ?? 0;
  const reconnects = busSum(cross, 'reconnects') ?? 0;
  if (dropped > 0) out.push(`Note: ${int(dropped)} bus message(s) dropped (Redis away, or more than maxQueue unacknowledged publishes).`);
  if (reconnects > 0) out.push(`Note: the bus reconnected ${reconnects} time(s) during the run (e.g. Redis closed a subscriber over its output-buffer limit).`);
  return out;
}

/** The scenario's result from measured rows (exported for tests). */
export function clusterResult(def: { name: string; title: string }, ctx: Pick<SuiteContext, 'mode' | 'machine' | 'timing'>,
  rows: readonly ClusterRow[], redis: RedisMeta): ScenarioResult {
  const m = ctx.machine;
  const machine = `Node ${m.node}, ${m.cpuModel}, ${m.cores} cores`; // machineLine(ctx) of the other scenarios
  const single = rows.find((r) => r.setup === 'single')?.median.result.messagesPerSec ?? null;
  const bus = rows.find((r) => r.setup === 'single-bus')?.median.result.messagesPerSec ?? null;
  const cross = rows.find((r) => r.setup === 'cross')?.median.result.messagesPerSec ?? null;
  const t = ctx.timing;
  const spec = CLUSTER_SPEC;
  const md = [
    `### ${def.title}`,
    '',
    `The fanout load (${spec.connections} connections over 2 client processes; connection 0 publishes with ${spec.inflight} ` +
    `messages of credit, ${spec.payloadBytes} B payload; every connection, publisher included, is subscribed and counts ` +
    'deliveries) against one ringwire node, one node with the Redis bus on, and two nodes joined through Redis. ' +
    'Two nodes: client process 0 (the publisher + 500 subscribers) on node A, client process 1 (500 subscribers) on node B, ' +
    'so every delivery on B crossed Redis (one PUBLISH per message, fanned out by B). ' +
    `redis-server ${redis.version} on loopback, client-output-buffer-limit ${redis.outputBufferLimit}. ` +
    `${t.runs} run(s) of ${t.durationMs} ms after ${t.warmupMs} ms warm-up, setups interleaved; median run shown. ${machine}.`,
    '',
    clusterTable(rows),
    '',
    `**cross-node/single-node = ${ratio(cross, single)}** (deliveries/s, 2 nodes via Redis / 1 node), ` +
    `1 node + Redis bus / 1 node = ${ratio(bus, single)}.`,
    '',
    'Cluster counters per node (stats() at shutdown, so warm-up and window included; "publishes fanned out" is stats().publishes, ' +
    'which on B counts the publishes that arrived over the bus; "bus received" counts messages from other nodes only; ' +
    '"peak Redis pubsub buffer" is the largest CLIENT LIST omem of a subscriber connection, sampled every 200 ms):',
    '',
    nodeTable(rows),
  ];
  const notes = crossNotes(rows);
  if (m.cores < 8) {
    notes.push(`Note: all processes (${rows.some((r) => r.setup === 'cross') ? 'two servers, ' : ''}redis-server, two client ` +
      `processes) share this host's ${m.cores} cores, so the 2-node row shows the cost of the Redis hop and of a second node ` +
      'on the same CPUs, not the scale-out of nodes on separate machines.');
  }
  if (redis.bufferLimitLog.length > 0) notes.push(`Redis closed clients over their output-buffer limit: ${redis.bufferLimitLog.join(' | ')}`);
  if (rows.some((r) => r.median.result.clientBound)) {
    notes.push('Note: the load generator was the bottleneck (a client process above 90 % of a core) in some setup: those figures ' +
      'are a lower bound for the server.');
  }
  if (notes.length > 0) md.push('', ...notes);
  const text = cross === null || single === null ? 'not measured'
    : `2 nodes via Redis ${int(cross)} vs 1 node ${int(single)} deliveries/s = ${ratio(cross, single)}`;
  return {
    name: def.name,
    title: def.title,
    markdown: md.join('\n'),
    chart: {
      title: `${def.title}: deliveries per second`,
      subtitle: `${machine}, ${ctx.mode} mode`,
      yLabel: 'messages delivered per second',
      xLabel: 'setup',
      categories: rows.map((r) => r.label),
      series: [{ name: 'deliveries/s', values: rows.map((r) => r.median.result.messagesPerSec) }],
      notes: rows.map((r) => (r.setup === 'cross' ? `A ${int(r.median.nodes[0]?.deliveriesPerSec)} + B ${int(r.median.nodes[1]?.deliveriesPerSec)}`
        : r.median.result.clientBound ? 'client-bound' : null)),
      ...(single !== null ? { reference: { value: single, label: '1 node' } } : {}),
    },
    summary: { metric: 'deliveries/s (2 nodes via Redis vs 1 node)', ringwire: cross, uws: null, ws: null, socketio: null, text },
    data: {
      spec, subscribers: SUBSCRIBERS, timing: t, split: { A: 'publisher + 500 subscribers (client process 0)', B: '500 subscribers (client process 1)' },
      redis, ratios: { crossOverSingle: single !== null && cross !== null ? cross / single : null, busOverSingle: single !== null && bus !== null ? bus / single : null },
      rows: rows.map((r) => ({ runsDeliveriesPerSec: r.runsDeliveriesPerSec, ...r.median })),
    },
  };
}

/** What the scenario reports when there is no redis-server. */
export function skippedResult(def: { name: string; title: string }): ScenarioResult {
  return {
    name: def.name,
    title: def.title,
    markdown: `### ${def.title}\n\n${SKIP_TEXT} (install redis-server, or point $REDIS_SERVER at the binary).`,
    chart: null,
    data: { skipped: SKIP_TEXT },
    summary: { metric: 'deliveries/s', ringwire: null, uws: null, ws: null, socketio: null, text: SKIP_TEXT },
  };
}

// ------------------------------------------------------------------------------------------ measurement

/**
 * redis-server's CPU (INFO cpu: used_cpu_user + used_cpu_sys) and the largest output buffer of
 * its pub/sub clients (CLIENT LIST TYPE pubsub, omem), every 200 ms while a load runs.
 */
class RedisSampler {
  private readonly cpu: number[] = [];
  private peakOmem = 0;
  private last: { t: number; cpuS: number } | null = null;
  private busy = false;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly conn: Redis, intervalMs = 200) {
    void this.tick();
    this.timer = setInterval(() => { void this.tick(); }, intervalMs);
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const [info, list] = await Promise.all([this.conn.info('cpu'), this.conn.call('CLIENT', 'LIST', 'TYPE', 'pubsub')]);
      const t = performance.now();
      const field = (k: string): number => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN);
      const cpuS = field('used_cpu_user') + field('used_cpu_sys');
      if (this.last !== null && Number.isFinite(cpuS) && t > this.last.t) this.cpu.push(((cpuS - this.last.cpuS) / ((t - this.last.t) / 1000)) * 100);
      if (Number.isFinite(cpuS)) this.last = { t, cpuS };
      for (const m of String(list).matchAll(/\bomem=(\d+)/g)) this.peakOmem = Math.max(this.peakOmem, Number(m[1]));
    } catch {
      // a failed sample is skipped
    } finally {
      this.busy = false;
    }
  }

  stop(): { cpuPercent: number | null; peakOmem: number } {
    clearInterval(this.timer);
    return { cpuPercent: medianOrNull(this.cpu), peakOmem: this.peakOmem };
  }
}

interface RedisEnv {
  proc: RedisProc;
  admin: Redis;
  prefixBase: string;
  seq: number;
}

function readStats(file: string): ServerStats | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as ServerStats;
  } catch {
    return null;
  }
}

async function measureSetup(ctx: SuiteContext, setup: SetupId, label: string, redis: RedisEnv, dir: string,
  timing: Timing): Promise<ClusterMeasurement> {
  const nodes = setup === 'cross' ? ['A', 'B'] : ['A'];
  const prefix = `${redis.prefixBase}-${++redis.seq}`;
  const statsFiles = nodes.map((n) => join(dir, `${prefix}-${n}.json`));
  const servers: LaunchedServer[] = [];
  try {
    for (let i = 0; i < nodes.length; i++) {
      const args = ['--stats-file', statsFiles[i]!];
      if (setup !== 'single') args.push('--cluster-url', redis.proc.url, '--node-id', `bench-${nodes[i]!.toLowerCase()}`, '--cluster-prefix', prefix);
      servers.push(await launchServer(RINGWIRE.script, [...RINGWIRE.args, ...args], { env: ctx.env }));
    }
    const spec = CLUSTER_SPEC;
    const msg = RINGWIRE.message(spec.route, spec.payloadBytes);
    // Server and Redis CPU are sampled over the measured window only (not start-up and warm-up).
    let samplers: CpuSampler[] | null = null;
    let redisSampler: RedisSampler | null = null;
    let cpus: (number | null)[] = servers.map(() => null);
    // (`as`: assigned in stopSamplers, so the compiler must not narrow them to null here)
    let host = null as number | null;
    let redisFig = null as { cpuPercent: number | null; peakOmem: number } | null;
    const stopSamplers = (): void => {
      if (samplers === null) return;
      cpus = samplers.map((s) => s.stop());
      host = samplers[0]!.hostBusy();
      redisFig = redisSampler?.stop() ?? null;
      samplers = null;
      redisSampler = null;
    };
    // Client process i → ports[i]: both on A for one node, A then B for two.
    const ports = [servers[0]!.port, servers[servers.length - 1]!.port];
    let load: Awaited<ReturnType<typeof runSplitLoad>>;
    try {
      load = await runSplitLoad({
        url: `ws://127.0.0.1:${ports[0]}${RINGWIRE.path(spec.route)}`,
        connections: spec.connections,
        inflight: spec.inflight,
        payload: msg.payload,
        binary: msg.binary,
        durationMs: timing.durationMs,
        warmupMs: timing.warmupMs,
        processes: 2,
        sourceAddresses: 2,
        firstSourceAddress: takeSourceAddresses(2),
        mode: 'count',
        senders: 1,
        onWindow: (phase) => {
          if (phase === 'start') {
            samplers = servers.map((s) => new CpuSampler(s.pid));
            redisSampler = setup === 'single' ? null : new RedisSampler(redis.admin);
          } else {
            stopSamplers();
          }
        },
      }, ports);
    } finally {
      stopSamplers();
    }
    await Promise.all(servers.map((s) => s.stop()));
    const { histogram: _h, ...result } = load.merged;
    const figures: NodeFigures[] = nodes.map((node, i) => {
      const procs = load.perProcess.filter((_, p) => ports[p] === servers[i]!.port);
      const stats = readStats(statsFiles[i]!);
      return {
        node,
        connections: sum(procs.map((p) => p.connections)),
        deliveriesPerSec: sum(procs.map(processRate)),
        serverCpuPercent: cpus[i] ?? null,
        bus: stats?.cluster ?? null,
        clusterDrops: stats?.drops.cluster ?? null,
        publishes: stats?.publishes ?? null,
      };
    });
    const known = [...cpus, redisFig?.cpuPercent ?? 0];
    const other = host === null || known.some((c) => c === null) ? null
      : Math.max(0, host - sum(known as number[]) - sum(result.clientCpuPercent));
    return {
      setup, label, result, nodes: figures, redisCpuPercent: redisFig?.cpuPercent ?? null,
      peakPubsubOmem: redisFig === null ? null : redisFig.peakOmem, hostBusyPercent: host, otherCpuPercent: other,
    };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

function oneLine(m: ClusterMeasurement): string {
  const r = m.result;
  const bus = (k: 'published' | 'received' | 'dropped'): string => { const v = busSum(m, k); return v === null ? '-' : int(v); };
  return `${int(r.messagesPerSec)} deliveries/s` +
    (m.nodes.length > 1 ? ` (${m.nodes.map((n) => `${n.node} ${int(n.deliveriesPerSec)}`).join(', ')})` : '') +
    `, server CPU ${m.nodes.map((n) => pct(n.serverCpuPercent)).join('/')}%, Redis CPU ${pct(m.redisCpuPercent)}%` +
    `, client CPU ${r.clientCpuPercent.map((c) => c.toFixed(0)).join('+')}%` +
    (m.setup === 'single' ? '' : `, bus published ${bus('published')} received ${bus('received')} dropped ${bus('dropped')}` +
      `, peak pubsub omem ${int(m.peakPubsubOmem)} B`) +
    `${r.clientBound ? ' CLIENT-BOUND' : ''}${r.errors > 0 ? `, ${r.errors} errors ${JSON.stringify(r.errorKinds)}` : ''}`;
}

export interface FanoutClusterDeps {
  /** Start a throwaway redis-server; null when none is installed (default: test/support/redis.ts). */
  startRedis?: () => Promise<RedisProc | null>;
}

export function fanoutClusterScenario(deps: FanoutClusterDeps = {}): ScenarioDef {
  const start = deps.startRedis ?? startTestRedis;
  return {
    name: 'fanout-cluster',
    title: 'Cross-node fan-out through Redis vs one node, 1 publisher → 1,000 subscribers',
    async run(ctx) {
      ctx.progress(`fanout-cluster: ${this.title}`);
      const proc = await start();
      if (proc === null) {
        ctx.progress(`fanout-cluster: ${SKIP_TEXT}`);
        return skippedResult(this);
      }
      const dir = mkdtempSync(join(tmpdir(), 'rw-bench-cluster-'));
      const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
      process.once('exit', removeDir); // SIGINT: bench/run.ts exits; test/support/redis.ts kills redis-server on exit too
      const admin = new Redis(proc.url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: true });
      try {
        await admin.connect();
        await admin.call('CONFIG', 'SET', 'client-output-buffer-limit', REDIS_PUBSUB_LIMIT);
        const limit = (await admin.call('CONFIG', 'GET', 'client-output-buffer-limit') as string[])[1] ?? '?';
        const version = /^redis_version:(.+)$/m.exec(await admin.info('server'))?.[1]?.trim() ?? '?';
        const pubsub = /pubsub \d+ \d+ \d+/.exec(limit)?.[0] ?? limit;
        const redis: RedisEnv = { proc, admin, prefixBase: `rwbench-${process.pid}`, seq: 0 };
        const t = ctx.timing;
        const all: ClusterMeasurement[][] = SETUPS.map(() => []);
        for (let run = 0; run < t.runs; run++) {
          for (let i = 0; i < SETUPS.length; i++) {
            const s = SETUPS[i]!;
            const m = await measureSetup(ctx, s.id, s.label, redis, dir, t);
            all[i]!.push(m);
            checkLoad(ctx, `fanout-cluster run ${run + 1} ${s.label}`, m.result);
            ctx.progress(`  fanout-cluster [${run + 1}/${t.runs}] ${s.label}: ${oneLine(m)}`);
          }
        }
        const rows: ClusterRow[] = SETUPS.map((s, i) => {
          const list = all[i]!;
          return {
            setup: s.id, label: s.label, median: medianItem(list, (m) => m.result.messagesPerSec)!,
            runsDeliveriesPerSec: list.map((m) => Math.round(m.result.messagesPerSec)),
          };
        });
        const bufferLimitLog = proc.log().split('\n').filter((l) => /output buffer|closed ASAP/i.test(l)).map((l) => l.trim()).slice(-5);
        return clusterResult(this, ctx, rows, { version, outputBufferLimit: pubsub, bufferLimitLog });
      } finally {
        await admin.quit().catch(() => admin.disconnect());
        await proc.stop();
        removeDir();
        process.removeListener('exit', removeDir);
      }
    },
  };
}

export const FANOUT_CLUSTER: ScenarioDef = fanoutClusterScenario();
