/**
 * Room fan-out: 1 publisher and 1,000 subscribers on /fanout. The publisher keeps `credit`
 * messages in flight (load generator count mode: each message it receives back returns one
 * credit); every connection counts what it receives. The figure is deliveries per second
 * (each publish reaches all 1,001 connections, the publisher included); count mode measures
 * no latency.
 */
import { int, mdTable, pct, ratio } from '../../report/markdown.js';
import { machineLine, summaryOf, type ScenarioDef } from '../context.js';
import { clientBoundNote, findPeer, limitOf, ratioLine, runPeers, type LoadSpec } from '../measure.js';

const SUBSCRIBERS = 1000;

export const FANOUT: ScenarioDef = {
  name: 'fanout',
  title: 'Room fan-out, 1 publisher → 1,000 subscribers',
  async run(ctx) {
    ctx.progress(`fanout: ${this.title}`);
    const spec: LoadSpec = {
      route: 'fanout', connections: SUBSCRIBERS + 1, inflight: 16, payloadBytes: 32, mode: 'count', senders: 1, processes: 2,
    };
    const rows = await runPeers(ctx, 'fanout', ctx.peers, spec);
    const uws = findPeer(rows, 'uws')?.median.result.messagesPerSec;
    const ws = findPeer(rows, 'ws')?.median.result.messagesPerSec;
    const table = mdTable(['server', 'deliveries/s>', 'publishes/s>', 'server CPU %>', 'client CPU %>', 'limit', 'vs uWS>', 'vs ws>',
      'errors>', 'conns>', 'runs deliveries/s'], rows.map((row) => {
      const r = row.median.result;
      return [row.peer.name, int(r.messagesPerSec), int(r.messagesPerSec / (SUBSCRIBERS + 1)), pct(row.median.serverCpuPercent),
        r.clientCpuPercent.map((c) => c.toFixed(0)).join('+'), limitOf(r, row.median), ratio(r.messagesPerSec, uws), ratio(r.messagesPerSec, ws),
        String(r.errors), `${r.established}/${r.connections}`, row.runsMsgPerSec.length > 1 ? row.runsMsgPerSec.map(int).join(', ') : '-'];
    }));
    const t = ctx.timing;
    const md = [
      `### ${this.title}`,
      '',
      `${SUBSCRIBERS + 1} connections over 2 client processes; connection 0 publishes with ${spec.inflight} messages of credit ` +
      `(${spec.payloadBytes} B payload), every connection (publisher included) is subscribed and counts deliveries. ` +
      `${t.runs} run(s) of ${t.durationMs} ms after ${t.warmupMs} ms warm-up. ${machineLine(ctx)}.`,
      '',
      table,
      '',
      ratioLine(rows.map((r) => ({ peer: r.peer, value: r.median.result.messagesPerSec })), 'deliveries/s'),
    ];
    const note = clientBoundNote(rows);
    if (note !== null) md.push('', note);
    return {
      name: this.name,
      title: this.title,
      markdown: md.join('\n'),
      chart: {
        title: `${this.title}: deliveries per second`,
        subtitle: `${machineLine(ctx)}, ${ctx.mode} mode`,
        yLabel: 'messages delivered per second',
        xLabel: 'server',
        categories: rows.map((r) => r.peer.name),
        series: [{ name: 'deliveries/s', values: rows.map((r) => r.median.result.messagesPerSec) }],
        notes: rows.map((r) => (r.median.result.clientBound ? 'client-bound' : null)),
      },
      summary: summaryOf('deliveries/s', rows.map((r) => ({ peer: r.peer, value: r.median.result.messagesPerSec, clientBound: r.median.result.clientBound }))),
      data: { spec, subscribers: SUBSCRIBERS, timing: t, rows: rows.map((r) => ({ server: r.peer.name, runsDeliveriesPerSec: r.runsMsgPerSec, ...r.median })) },
    };
  },
};
