/**
 * Latency isolation: one server, two modules. A "heavy" client group hammers /heavy (~50 µs of
 * CPU per message, enough in flight to keep every worker busy) while a "light" group measures
 * ping-pong latency on /echo. The light group is first measured alone on the same server, so
 * the table shows what the heavy neighbour costs it.
 *
 * Both groups run in their own client processes; the light group's warm-up is longer, so its
 * measured window lies inside the heavy group's window (the heavy window is 1 s longer).
 */
import type { LaunchedServer } from '../../servers/launch.js';
import { int, mdTable, pct, us } from '../../report/markdown.js';
import { medianItem } from '../../report/stats.js';
import { machineLine, summaryOf, type ScenarioDef, type SuiteContext } from '../context.js';
import { checkLoad, limitOf, loadAgainst, ratioLine, startPeer, type LoadSpec, type Measurement } from '../measure.js';
import type { Peer } from '../peers.js';

const LIGHT: LoadSpec = { route: 'echo', connections: 8, inflight: 1, payloadBytes: 32 };
const HEAVY: LoadSpec = { route: 'heavy', connections: 32, inflight: 4, payloadBytes: 32 };

interface IsoRun { alone: Measurement; light: Measurement; heavy: Measurement }

/** The heavy run's "others" also counted the light group's client: take it out. */
function otherThanClients(r: IsoRun): number | null {
  const o = r.heavy.otherCpuPercent;
  return o === null ? null : Math.max(0, o - r.light.result.clientCpuPercent.reduce((a, b) => a + b, 0));
}

async function isoRun(ctx: SuiteContext, peer: Peer, server: LaunchedServer): Promise<IsoRun> {
  const d = ctx.timing.durationMs;
  const w = ctx.timing.warmupMs;
  const alone = await loadAgainst(server, peer, LIGHT, { durationMs: d, warmupMs: w });
  const [heavy, light] = await Promise.all([
    loadAgainst(server, peer, HEAVY, { durationMs: d + 1000, warmupMs: w }),
    loadAgainst(server, peer, LIGHT, { durationMs: d, warmupMs: w + 500 }, false),
  ]);
  return { alone, light, heavy };
}

export const ISOLATION: ScenarioDef = {
  name: 'isolation',
  title: 'Latency isolation: light module p99 while a heavy module saturates the server',
  async run(ctx) {
    ctx.progress(`isolation: ${this.title}`);
    const runs: IsoRun[][] = ctx.peers.map(() => []);
    for (let run = 0; run < ctx.timing.runs; run++) {
      for (let i = 0; i < ctx.peers.length; i++) {
        const peer = ctx.peers[i]!;
        const server = await startPeer(ctx, peer);
        try {
          const r = await isoRun(ctx, peer, server);
          runs[i]!.push(r);
          for (const k of ['alone', 'light', 'heavy'] as const) checkLoad(ctx, `isolation run ${run + 1} ${peer.name} ${k}`, r[k].result);
          ctx.progress(`  isolation [${run + 1}/${ctx.timing.runs}] ${peer.name}: light p99 alone ${us(r.alone.result.latencyUs?.p99)} µs, ` +
            `with heavy ${us(r.light.result.latencyUs?.p99)} µs; heavy ${int(r.heavy.result.messagesPerSec)} msg/s, ` +
            `server CPU ${pct(r.heavy.serverCpuPercent)}%`);
        } finally {
          await server.stop();
        }
      }
    }
    const p99 = (m: Measurement): number => m.result.latencyUs?.p99 ?? Infinity;
    const rows = ctx.peers.map((peer, i) => {
      return { peer, median: medianItem(runs[i]!, (r) => p99(r.light))!, all: runs[i]!.map((r) => p99(r.light)) };
    });
    const table = mdTable(['server', 'light alone p50 µs>', 'light alone p99 µs>', 'light+heavy p50 µs>', 'light+heavy p90 µs>',
      'light+heavy p99 µs>', 'light+heavy p99.9 µs>', 'p99 loaded/alone>', 'light msg/s>', 'heavy msg/s>', 'server CPU %>',
      'client CPU % (heavy+light)>', 'limit', 'errors>'], rows.map(({ peer, median: m }) => {
      const a = m.alone.result.latencyUs;
      const l = m.light.result.latencyUs;
      const clientBound = m.light.result.clientBound || m.heavy.result.clientBound;
      return [peer.name, us(a?.p50), us(a?.p99), us(l?.p50), us(l?.p90), us(l?.p99), us(l?.p999),
        a && l && a.p99 > 0 ? `${(l.p99 / a.p99).toFixed(1)}x` : '-', int(m.light.result.messagesPerSec), int(m.heavy.result.messagesPerSec),
        pct(m.heavy.serverCpuPercent),
        `${m.heavy.result.clientCpuPercent.map((c) => c.toFixed(0)).join('+')}+${m.light.result.clientCpuPercent.map((c) => c.toFixed(0)).join('+')}`,
        clientBound ? '**CLIENT-BOUND**' : limitOf(m.heavy.result, { ...m.heavy, otherCpuPercent: otherThanClients(m) }),
        String(m.alone.result.errors + m.light.result.errors + m.heavy.result.errors)];
    }));
    const t = ctx.timing;
    const md = [
      `### ${this.title}`,
      '',
      `Light group: ${LIGHT.connections} connections × ${LIGHT.inflight} in flight on /echo (ping-pong, ${LIGHT.payloadBytes} B). ` +
      `Heavy group: ${HEAVY.connections} connections × ${HEAVY.inflight} in flight on /heavy (${ctx.work.micros.toFixed(1)} µs ` +
      `of CPU per message). Same server process for both; light measured alone first, then during the heavy load. ` +
      `raw uWS, ws and socket.io run both on their one thread; ringwire's I/O thread hands both to its worker pool ` +
      `(connections are pinned round-robin, so light connections share workers with heavy ones). ${t.runs} run(s) of ` +
      `${t.durationMs} ms, median by loaded p99. ${machineLine(ctx)}.`,
      '',
      table,
      '',
      ratioLine(rows.map((r) => ({ peer: r.peer, value: r.median.light.result.latencyUs?.p99 ?? null })), 'light p99 under heavy load', true),
    ];
    return {
      name: this.name,
      title: this.title,
      markdown: md.join('\n'),
      chart: {
        title: 'Latency isolation: light module p99',
        subtitle: `${machineLine(ctx)}, ${ctx.mode} mode`,
        yLabel: 'light ping-pong p99 latency (µs)',
        xLabel: 'server',
        categories: rows.map((r) => r.peer.name),
        series: [
          { name: 'alone', values: rows.map((r) => r.median.alone.result.latencyUs?.p99 ?? null) },
          { name: 'with heavy load', values: rows.map((r) => r.median.light.result.latencyUs?.p99 ?? null) },
        ],
        notes: rows.map((r) => (r.median.light.result.clientBound || r.median.heavy.result.clientBound ? 'client-bound' : null)),
      },
      summary: summaryOf('light p99 µs under heavy load', rows.map((r) => ({
        peer: r.peer, value: r.median.light.result.latencyUs?.p99 ?? null,
        clientBound: r.median.light.result.clientBound || r.median.heavy.result.clientBound,
      })), true),
      data: { light: LIGHT, heavy: HEAVY, timing: t, rows: rows.map((r) => ({ server: r.peer.name, runsLoadedP99Us: r.all, ...r.median })) },
    };
  },
};
