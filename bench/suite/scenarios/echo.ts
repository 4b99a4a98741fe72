/**
 * Echo scenarios (32 B, 512 B, 8 KB pipelined; 32 B ping-pong) and the CPU-heavy handler:
 * every peer, the same load generator, runs interleaved, the median run reported.
 */
import { bytes } from '../../report/markdown.js';
import { machineLine, summaryOf, type ScenarioDef, type SuiteContext } from '../context.js';
import { clientBoundNote, echoTable, ratioLine, runPeers, type LoadSpec } from '../measure.js';
import { SOCKETIO } from '../peers.js';

function wireNote(spec: LoadSpec, ctx: SuiteContext): string {
  const rw = ctx.peers.find((p) => p.id === 'ringwire')?.message(spec.route, spec.payloadBytes).payload.length;
  const sio = SOCKETIO.message(spec.route, spec.payloadBytes).payload.length;
  return `message on the wire: ${rw ?? '?'} B binary WireFrame for ringwire, raw uWS and ws (same bytes), ${sio} B text for socket.io`;
}

function echoLike(name: string, title: string, spec: LoadSpec, what: (ctx: SuiteContext) => string): ScenarioDef {
  return {
    name,
    title,
    async run(ctx) {
      ctx.progress(`${name}: ${title}`);
      const rows = await runPeers(ctx, name, ctx.peers, spec);
      const t = ctx.timing;
      const md = [
        `### ${title}`,
        '',
        `${what(ctx)} ${spec.connections} connections × ${spec.inflight} in flight, ${bytes(spec.payloadBytes)} payload ` +
        `(${wireNote(spec, ctx)}); ${t.runs} run(s) of ${t.durationMs} ms after ${t.warmupMs} ms warm-up, median run shown. ` +
        `${machineLine(ctx)}.`,
        '',
        echoTable(rows),
        '',
        ratioLine(rows.map((r) => ({ peer: r.peer, value: r.median.result.messagesPerSec })), 'msg/s'),
      ];
      const note = clientBoundNote(rows);
      if (note !== null) md.push('', note);
      return {
        name,
        title,
        markdown: md.join('\n'),
        chart: {
          title: `${title}: throughput`,
          subtitle: `${machineLine(ctx)}, ${ctx.mode} mode`,
          yLabel: 'messages per second',
          xLabel: 'server',
          categories: rows.map((r) => r.peer.name),
          series: [{ name: 'msg/s', values: rows.map((r) => r.median.result.messagesPerSec) }],
          notes: rows.map((r) => (r.median.result.clientBound ? 'client-bound' : r.median.result.errors > 0 ? `${r.median.result.errors} errors` : null)),
        },
        summary: summaryOf('msg/s', rows.map((r) => ({ peer: r.peer, value: r.median.result.messagesPerSec, clientBound: r.median.result.clientBound }))),
        data: { spec, timing: t, rows: rows.map((r) => ({ server: r.peer.name, runsMsgPerSec: r.runsMsgPerSec, ...r.median })) },
      };
    },
  };
}

const PIPE = 'Echo, pipelined:';

export const ECHO_SCENARIOS: readonly ScenarioDef[] = [
  echoLike('echo-32b', 'Echo 32 B, pipelined', { route: 'echo', connections: 50, inflight: 32, payloadBytes: 32 }, () => PIPE),
  echoLike('echo-512b', 'Echo 512 B, pipelined', { route: 'echo', connections: 50, inflight: 32, payloadBytes: 512 }, () => PIPE),
  echoLike('echo-8kb', 'Echo 8 KB, pipelined', { route: 'echo', connections: 50, inflight: 8, payloadBytes: 8192 }, () => PIPE),
  echoLike('pingpong-32b', 'Echo 32 B, ping-pong', { route: 'echo', connections: 50, inflight: 1, payloadBytes: 32 },
    () => 'Echo, one message in flight per connection (latency-bound):'),
  echoLike('cpu-heavy', 'CPU-heavy handler (~50 µs per message)', { route: 'heavy', connections: 32, inflight: 4, payloadBytes: 32 },
    (ctx) => `Each message costs work(${ctx.work.iterations}) = ${ctx.work.micros.toFixed(1)} µs of CPU on this machine ` +
      '(the same fixed work in every server: on the uWS, ws and socket.io thread, in ringwire\'s workers), then is echoed.'),
];
