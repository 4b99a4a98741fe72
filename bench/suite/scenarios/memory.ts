/**
 * Idle memory: server RSS (from /proc) before any connection, with 10,000 and with 19,000 idle
 * connections (the per-process fd limit is 20,000, so 19k is about the most one server process
 * can hold). Connections come from 4 client processes over 4 fresh source addresses (127.0.0.2 up) and stay
 * idle; per connection = (RSS with N − RSS idle) / N. No forced GC: RSS is what the OS sees.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { openConnections, type HeldConnections } from '../../loadgen/hold.js';
import { processRssBytes } from '../../servers/launch.js';
import { int, mdTable, ratio } from '../../report/markdown.js';
import { machineLine, summaryOf, type ScenarioDef } from '../context.js';
import { checkLoad, ratioLine, startPeer } from '../measure.js';
import { takeSourceAddresses } from '../addresses.js';

const STAGES: readonly number[] = [10_000, 19_000];
const SETTLE_MS = 500;

interface MemRow {
  server: string;
  idleRss: number | null;
  rss: (number | null)[];
  perConnBytes: (number | null)[];
  established: number[];
  errors: number;
  lostWhileHeld: number;
  upgradesPerSec: number[];
  /** Load-generator CPU while connecting each stage, % of one core per process. */
  clientCpuPercent: number[][];
}

const mib = (b: number | null): string => (b === null ? '-' : (b / (1 << 20)).toFixed(1));
const kib = (b: number | null): string => (b === null ? '-' : (b / 1024).toFixed(2));

/**
 * The idle-memory scenario over `stages` cumulative connection counts (default 10k, 19k; tests use
 * small ones). A connection the server dropped while held fails it: the per-connection figure
 * divides the RSS by connections that were no longer there.
 */
export function idleMemoryScenario(stages: readonly number[] = STAGES): ScenarioDef {
  const last = stages.length - 1;
  const k = (n: number): string => `${n / 1000}k`;
  return {
    name: 'idle-memory',
    title: `Idle memory per connection (${stages.map(k).join(' and ')} connections)`,
    async run(ctx) {
      const rows: MemRow[] = [];
      for (const peer of ctx.peers) {
        ctx.progress(`idle-memory: ${peer.name}`);
        const server = await startPeer(ctx, peer);
        const held: HeldConnections[] = [];
        const row: MemRow = { server: peer.name, idleRss: null, rss: [], perConnBytes: [], established: [], errors: 0, lostWhileHeld: 0, upgradesPerSec: [], clientCpuPercent: [] };
        try {
          await sleep(SETTLE_MS);
          row.idleRss = processRssBytes(server.pid);
          let have = 0;
          for (let s = 0; s < stages.length; s++) {
            const add = stages[s]! - have;
            const hs = peer.handshake('echo');
            // 2 processes and 2 fresh source addresses per stage (4 per server).
            const h = await openConnections({
              url: `ws://127.0.0.1:${server.port}${peer.path('echo')}`, connections: add, processes: 2,
              sourceAddresses: 2, firstSourceAddress: takeSourceAddresses(2), concurrency: 128, ...(hs !== undefined ? { handshake: hs } : {}),
            });
            held.push(h);
            have += h.result.established;
            row.errors += h.result.errors;
            checkLoad(ctx, `idle-memory ${peer.name} stage ${s + 1}`, h.result);
            row.upgradesPerSec.push(Math.round(h.result.upgradesPerSec));
            row.clientCpuPercent.push(h.result.clientCpuPercent.map((c) => Math.round(c)));
            await sleep(SETTLE_MS);
            const rss = processRssBytes(server.pid);
            row.rss.push(rss);
            row.established.push(have);
            row.perConnBytes.push(rss === null || row.idleRss === null || have === 0 ? null : (rss - row.idleRss) / have);
            ctx.progress(`  ${peer.name}: ${int(have)} connections, RSS ${mib(rss)} MiB (idle ${mib(row.idleRss)} MiB), ` +
              `${kib(row.perConnBytes[s] ?? null)} KiB/connection${h.result.errors > 0 ? `, errors ${JSON.stringify(h.result.errorKinds)}` : ''}`);
          }
        } finally {
          for (const h of held) row.lostWhileHeld += await h.close();
          await server.stop();
        }
        if (row.lostWhileHeld > 0) {
          ctx.fail(`idle-memory ${peer.name}: the server dropped ${row.lostWhileHeld} connection(s) while they were held idle ` +
            '(the RSS per connection counts connections that were gone)');
        }
        rows.push(row);
      }
      const u = rows.find((r) => r.server === ctx.peers.find((p) => p.id === 'uws')?.name);
      const table = mdTable(['server', 'RSS idle MiB>', ...stages.flatMap((n) => [`RSS @${k(n)} MiB>`, `KiB/conn @${k(n)}>`]),
        `vs uWS @${k(stages[last]!)}>`, 'established>', 'upgrades/s per stage>', 'client CPU % while connecting>', 'errors>', 'dropped while idle>'],
      rows.map((r) => [
        r.server, mib(r.idleRss), ...stages.flatMap((_, i) => [mib(r.rss[i] ?? null), kib(r.perConnBytes[i] ?? null)]),
        ratio(r.perConnBytes[last] ?? null, u?.perConnBytes[last] ?? null), r.established.map(int).join(' / '), r.upgradesPerSec.map(int).join(' / '),
        r.clientCpuPercent.map((c) => c.join('+')).join(' / '), String(r.errors), String(r.lostWhileHeld),
      ]));
      const byPeer = ctx.peers.map((peer, i) => ({ peer, value: rows[i]!.perConnBytes[last] ?? null }));
      const md = [
        `### ${this.title}`,
        '',
        `Server RSS (VmRSS) idle, then with ${stages.map(int).join(' and ')} idle connections (each stage opened by 2 client ` +
        `processes; 4 source addresses per server, from 127.0.0.2 up), ${SETTLE_MS} ms after the last one was established. ` +
        `KiB/conn = (RSS − idle RSS) / connections. ${machineLine(ctx)}.`,
        '',
        table,
        '',
        ratioLine(byPeer, `KiB per connection at ${int(stages[last]!)}`, true),
      ];
      return {
        name: this.name,
        title: this.title,
        markdown: md.join('\n'),
        chart: {
          title: 'Idle memory per connection',
          subtitle: `${machineLine(ctx)}, ${ctx.mode} mode`,
          yLabel: 'KiB of server RSS per connection',
          xLabel: 'server',
          categories: rows.map((r) => r.server),
          series: stages.map((n, i) => ({
            name: `${int(n)} connections`,
            values: rows.map((r) => { const b = r.perConnBytes[i]; return b === null || b === undefined ? null : b / 1024; }),
          })),
          notes: rows.map((r) => (r.errors > 0 ? `${r.errors} errors` : null)),
        },
        summary: summaryOf(`KiB/conn @${k(stages[last]!)} idle`, byPeer.map((r) => ({ peer: r.peer, value: r.value === null ? null : r.value / 1024 })), true),
        data: { stages, settleMs: SETTLE_MS, rows },
      };
    },
  };
}

export const IDLE_MEMORY: ScenarioDef = idleMemoryScenario();
