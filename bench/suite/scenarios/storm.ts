/**
 * Connection storm: N clients connect at once (2 client processes, 128 upgrades in flight
 * each, 2 source addresses); the figure is upgrades per second until the last one is
 * established (socket.io: after its `40` namespace ack), plus connect → established latency.
 * Connections are held until all are up, then closed.
 */
import { openConnections, type HeldConnections, type HoldReport } from '../../loadgen/hold.js';
import { CpuSampler } from '../../servers/launch.js';
import { int, mdTable, pct, ratio, us } from '../../report/markdown.js';
import { medianItem } from '../../report/stats.js';
import { machineLine, summaryOf, type ScenarioDef } from '../context.js';
import { checkLoad, limitOf, ratioLine, startPeer } from '../measure.js';
import type { Peer } from '../peers.js';
import { takeSourceAddresses } from '../addresses.js';

interface StormRun { report: HoldReport; serverCpuPercent: number | null; otherCpuPercent: number | null; hostBusyPercent: number | null }

export const STORM: ScenarioDef = {
  name: 'storm',
  title: 'Connection storm (upgrades per second)',
  async run(ctx) {
    const n = ctx.mode === 'quick' ? 4000 : 12_000;
    const processes = 2;
    ctx.progress(`storm: ${n} connections per server`);
    const runs: StormRun[][] = ctx.peers.map(() => []);
    for (let run = 0; run < ctx.timing.runs; run++) {
      for (let i = 0; i < ctx.peers.length; i++) {
        const peer: Peer = ctx.peers[i]!;
        const server = await startPeer(ctx, peer);
        try {
          const sampler = new CpuSampler(server.pid, 100);
          const hs = peer.handshake('echo');
          let cpu: number | null = null;
          let host: number | null = null;
          let held: HeldConnections;
          try {
            held = await openConnections({
              url: `ws://127.0.0.1:${server.port}${peer.path('echo')}`, connections: n, processes, sourceAddresses: 2,
              firstSourceAddress: takeSourceAddresses(2), concurrency: 128,
              ...(hs !== undefined ? { handshake: hs } : {}),
            });
          } finally {
            cpu = sampler.stop();
            host = sampler.hostBusy();
          }
          await held.close();
          const r = held.result;
          const other = host === null || cpu === null ? null : Math.max(0, host - cpu - r.clientCpuPercent.reduce((a, b) => a + b, 0));
          checkLoad(ctx, `storm run ${run + 1} ${peer.name}`, r);
          runs[i]!.push({ report: r, serverCpuPercent: cpu, otherCpuPercent: other, hostBusyPercent: host });
          ctx.progress(`  storm [${run + 1}/${ctx.timing.runs}] ${peer.name}: ${int(r.upgradesPerSec)} upgrades/s, ` +
            `p50 ${us(r.latencyUs.p50)} µs, p99 ${us(r.latencyUs.p99)} µs, ${r.established}/${r.connections} up, ` +
            `server CPU ${pct(cpu)}%, client CPU ${r.clientCpuPercent.map((c) => c.toFixed(0)).join('+')}%${r.errors > 0 ? `, errors ${JSON.stringify(r.errorKinds)}` : ''}`);
        } finally {
          await server.stop();
        }
      }
    }
    const rows = ctx.peers.map((peer, i) => {
      return { peer, median: medianItem(runs[i]!, (x) => x.report.upgradesPerSec)!, all: runs[i]!.map((x) => Math.round(x.report.upgradesPerSec)) };
    });
    const u = rows.find((r) => r.peer.id === 'uws')?.median.report.upgradesPerSec;
    const w = rows.find((r) => r.peer.id === 'ws')?.median.report.upgradesPerSec;
    const table = mdTable(['server', 'upgrades/s>', 'p50 µs>', 'p90 µs>', 'p99 µs>', 'p99.9 µs>', 'server CPU %>', 'client CPU %>', 'limit',
      'vs uWS>', 'vs ws>', 'established>', 'errors>', 'runs upgrades/s'], rows.map((row) => {
      const r = row.median.report;
      const l = r.latencyUs;
      return [row.peer.name, int(r.upgradesPerSec), us(l.p50), us(l.p90), us(l.p99), us(l.p999), pct(row.median.serverCpuPercent),
        r.clientCpuPercent.map((c) => c.toFixed(0)).join('+'), limitOf({ clientBound: r.clientBound, clientSaturated: false }, row.median),
        ratio(r.upgradesPerSec, u), ratio(r.upgradesPerSec, w), `${r.established}/${r.connections}`, String(r.errors),
        row.all.length > 1 ? row.all.map(int).join(', ') : '-'];
    }));
    const md = [
      `### ${this.title}`,
      '',
      `${int(n)} connections opened at once per server by ${processes} client processes (128 upgrades in flight each, ` +
      `2 fresh source addresses per run), timed from the first connect() to the last established connection; latency = ` +
      `connect() → upgraded (socket.io: → namespace ack). ${ctx.timing.runs} run(s), median shown. ${machineLine(ctx)}.`,
      '',
      table,
      '',
      ratioLine(rows.map((r) => ({ peer: r.peer, value: r.median.report.upgradesPerSec })), 'upgrades/s'),
    ];
    const bound = rows.filter((r) => r.median.report.clientBound).map((r) => r.peer.name);
    if (bound.length > 0) md.push('', `Note: the storm client was the bottleneck for ${bound.join(', ')} (client above 90 % of a core).`);
    return {
      name: this.name,
      title: this.title,
      markdown: md.join('\n'),
      chart: {
        title: `${this.title}, ${int(n)} connections`,
        subtitle: `${machineLine(ctx)}, ${ctx.mode} mode`,
        yLabel: 'upgrades per second',
        xLabel: 'server',
        categories: rows.map((r) => r.peer.name),
        series: [{ name: 'upgrades/s', values: rows.map((r) => r.median.report.upgradesPerSec) }],
        notes: rows.map((r) => (r.median.report.clientBound ? 'client-bound' : r.median.report.errors > 0 ? `${r.median.report.errors} errors` : null)),
      },
      summary: summaryOf('upgrades/s', rows.map((r) => ({ peer: r.peer, value: r.median.report.upgradesPerSec, clientBound: r.median.report.clientBound }))),
      data: { connections: n, processes, runs: rows.map((r) => ({ server: r.peer.name, runsUpgradesPerSec: r.all, ...r.median })) },
    };
  },
};
