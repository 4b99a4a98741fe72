import { availableParallelism } from 'node:os';
/**
 * Tuning sweep: ringwire `workers` × `ringBytes` × `drainBatch` on the pipelined (50 × 32) and
 * ping-pong (50 × 1) 32 B echo, then the idle policy (`idleBlockMs`, `idleSpinMicros`) on the
 * best of the grid. Each configuration is scored by the geometric mean of its pipelined and
 * ping-pong msg/s, each relative to the best configuration for that load; the recommended
 * defaults are the configuration with the highest score.
 */
import { Defaults } from '../../../src/shared/constants.js';
import { bytes, int, mdTable, us } from '../../report/markdown.js';
import { machineLine, type ScenarioDef } from '../context.js';
import { checkLoad, limitOf, measureLoad, type LoadSpec, type Measurement } from '../measure.js';
import { ringwirePeer } from '../peers.js';

export interface SweepConfig {
  workers: number;
  ringBytes: number;
  drainBatch: number;
  idleBlockMs: number;
  idleSpinMicros: number;
}

/** Defaults of src/core/options.ts (workers: cores - 1, at least 1). */
export const DEFAULT_CONFIG: SweepConfig = {
  workers: Math.max(1, availableParallelism() - 1), ringBytes: Defaults.ringBytes, drainBatch: Defaults.drainBatch, idleBlockMs: 1, idleSpinMicros: 0,
};

export function configLabel(c: SweepConfig): string {
  const idle = c.idleBlockMs === DEFAULT_CONFIG.idleBlockMs && c.idleSpinMicros === 0 ? '' : ` block${c.idleBlockMs} spin${c.idleSpinMicros}`;
  return `w${c.workers} ${bytes(c.ringBytes).replace(' ', '')} b${c.drainBatch}${idle}`;
}

function args(c: SweepConfig): string[] {
  return ['--workers', String(c.workers), '--ring', String(c.ringBytes), '--batch', String(c.drainBatch),
    '--block', String(c.idleBlockMs), '--spin', String(c.idleSpinMicros)];
}

export function grid(quick: boolean): SweepConfig[] {
  const workers = [1, 2];
  const rings = quick ? [1 << 16, 1 << 20] : [1 << 16, 1 << 18, 1 << 20, 1 << 22];
  const batches = quick ? [64, 4096] : [64, 512, 4096];
  const out: SweepConfig[] = [];
  for (const w of workers) for (const r of rings) for (const b of batches) out.push({ ...DEFAULT_CONFIG, workers: w, ringBytes: r, drainBatch: b });
  return out;
}

export function idleVariants(best: SweepConfig, quick: boolean): SweepConfig[] {
  const v = quick ? [{ idleBlockMs: 0, idleSpinMicros: 0 }]
    : [{ idleBlockMs: 0, idleSpinMicros: 0 }, { idleBlockMs: 1, idleSpinMicros: 50 }, { idleBlockMs: 5, idleSpinMicros: 0 }];
  return v.map((x) => ({ ...best, ...x }));
}

export interface SweepRow { config: SweepConfig; pipelined: Measurement; pingpong: Measurement; score: number }

/** Score = geometric mean of the two msg/s, each relative to the best row for that load. */
export function score(rows: { pipelined: number; pingpong: number }[]): number[] {
  const bp = Math.max(...rows.map((r) => r.pipelined), 1e-9);
  const bq = Math.max(...rows.map((r) => r.pingpong), 1e-9);
  return rows.map((r) => Math.sqrt((r.pipelined / bp) * (r.pingpong / bq)));
}

const PIPELINED: LoadSpec = { route: 'echo', connections: 50, inflight: 32, payloadBytes: 32 };
const PINGPONG: LoadSpec = { route: 'echo', connections: 50, inflight: 1, payloadBytes: 32 };

export const SWEEP: ScenarioDef = {
  name: 'sweep',
  title: 'ringwire tuning sweep: workers × ringBytes × drainBatch (+ idle policy)',
  async run(ctx) {
    const quick = ctx.mode === 'quick';
    // Full mode: 3 s cells (27 configurations × 2 loads); quick mode: the suite's quick timing.
    const timing = { ...ctx.timing, runs: 1, ...(quick ? {} : { durationMs: 3000, warmupMs: 1000 }) };
    const measured: { config: SweepConfig; pipelined: Measurement; pingpong: Measurement }[] = [];
    const measure = async (configs: SweepConfig[]): Promise<void> => {
      for (const c of configs) {
        const peer = ringwirePeer(args(c), `ringwire ${configLabel(c)}`);
        const pipelined = await measureLoad(ctx, peer, PIPELINED, timing);
        const pingpong = await measureLoad(ctx, peer, PINGPONG, timing);
        checkLoad(ctx, `sweep ${configLabel(c)} pipelined`, pipelined.result);
        checkLoad(ctx, `sweep ${configLabel(c)} ping-pong`, pingpong.result);
        measured.push({ config: c, pipelined, pingpong });
        ctx.progress(`  sweep ${configLabel(c)}: pipelined ${int(pipelined.result.messagesPerSec)} msg/s, ` +
          `ping-pong ${int(pingpong.result.messagesPerSec)} msg/s (p99 ${us(pingpong.result.latencyUs?.p99)} µs)`);
      }
    };
    const g = grid(quick);
    ctx.progress(`sweep: ${g.length} grid configurations × 2 loads`);
    await measure(g);
    const scoreNow = (): SweepRow[] => {
      const s = score(measured.map((m) => ({ pipelined: m.pipelined.result.messagesPerSec, pingpong: m.pingpong.result.messagesPerSec })));
      return measured.map((m, i) => ({ ...m, score: s[i]! }));
    };
    const bestGrid = [...scoreNow()].sort((a, b) => b.score - a.score)[0]!.config;
    await measure(idleVariants(bestGrid, quick));
    const rows = scoreNow();
    const best = [...rows].sort((a, b) => b.score - a.score)[0]!;
    const isDefault = (c: SweepConfig): boolean => configLabel(c) === configLabel(DEFAULT_CONFIG);
    const table = mdTable(['workers>', 'ringBytes>', 'drainBatch>', 'idleBlockMs>', 'idleSpinMicros>', 'pipelined msg/s>', 'pipelined p99 µs>',
      'ping-pong msg/s>', 'ping-pong p50 µs>', 'ping-pong p99 µs>', 'server CPU % (pipelined)>', 'client CPU % (pipelined / ping-pong)>',
      'limit', 'score>', ''], rows.map((r) => {
      const c = r.config;
      const pl = r.pipelined.result;
      const pp = r.pingpong.result;
      const flag = [r === best ? '**best**' : '', isDefault(c) ? 'current default' : ''].filter((x) => x !== '').join(', ');
      return [String(c.workers), bytes(c.ringBytes), String(c.drainBatch), String(c.idleBlockMs), String(c.idleSpinMicros),
        int(pl.messagesPerSec), us(pl.latencyUs?.p99), int(pp.messagesPerSec), us(pp.latencyUs?.p50), us(pp.latencyUs?.p99),
        int(r.pipelined.serverCpuPercent), `${pl.clientCpuPercent.map((c) => c.toFixed(0)).join('+')} / ${pp.clientCpuPercent.map((c) => c.toFixed(0)).join('+')}`,
        pl.clientBound || pp.clientBound ? '**CLIENT-BOUND**' : limitOf(pl, r.pipelined), r.score.toFixed(2), flag];
    }));
    const def = rows.find((r) => isDefault(r.config));
    const b = best.config;
    const rec = `**Recommended defaults from this run: workers ${b.workers}, ringBytes ${bytes(b.ringBytes)}, drainBatch ${b.drainBatch}, ` +
      `idleBlockMs ${b.idleBlockMs}, idleSpinMicros ${b.idleSpinMicros}** (score ${best.score.toFixed(2)}; the current defaults ` +
      `${configLabel(DEFAULT_CONFIG)} score ${def === undefined ? 'n/a (not in this sweep)' : def.score.toFixed(2)}).`;
    const md = [
      `### ${this.title}`,
      '',
      `ringwire only. Pipelined: ${PIPELINED.connections} × ${PIPELINED.inflight} in flight; ping-pong: ${PINGPONG.connections} × 1; ` +
      `32 B payload; one run of ${timing.durationMs} ms per cell after ${timing.warmupMs} ms warm-up. Score = geometric mean of ` +
      `pipelined and ping-pong msg/s, each relative to the best row. The idle-policy rows vary the best grid configuration. ` +
      `${machineLine(ctx)}.${quick ? ' Quick mode: a small grid and short single runs; differences under ~15 % are noise on this shared 2-core machine.' : ''}`,
      '',
      table,
      '',
      rec,
    ];
    return {
      name: this.name,
      title: this.title,
      markdown: md.join('\n'),
      chart: {
        title: 'ringwire tuning sweep: echo 32 B',
        subtitle: `${machineLine(ctx)}, ${ctx.mode} mode`,
        yLabel: 'messages per second',
        xLabel: 'configuration (workers, ringBytes, drainBatch, idle policy)',
        categories: rows.map((r) => configLabel(r.config)),
        series: [
          { name: 'pipelined 50×32', values: rows.map((r) => r.pipelined.result.messagesPerSec) },
          { name: 'ping-pong 50×1', values: rows.map((r) => r.pingpong.result.messagesPerSec) },
        ],
        notes: rows.map((r) => (r === best ? 'best' : isDefault(r.config) ? 'default' : null)),
      },
      summary: {
        metric: 'recommended settings', ringwire: null, uws: null, ws: null, socketio: null,
        text: `workers ${b.workers}, ringBytes ${bytes(b.ringBytes)}, drainBatch ${b.drainBatch}, idleBlockMs ${b.idleBlockMs}, ` +
          `idleSpinMicros ${b.idleSpinMicros} (pipelined ${int(best.pipelined.result.messagesPerSec)} msg/s, ping-pong ${int(best.pingpong.result.messagesPerSec)} msg/s)`,
      },
      data: { pipelined: PIPELINED, pingpong: PINGPONG, timing, rows, recommended: best.config, defaults: DEFAULT_CONFIG },
    };
  },
};
