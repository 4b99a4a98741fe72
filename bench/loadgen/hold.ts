/**
 * Open many WebSocket connections from several client processes (hold-client.ts), time how
 * fast they upgrade (connection storm), and keep them open, idle, until close() (idle memory).
 *
 *   const held = await openConnections({ url, connections: 10_000, processes: 2, sourceAddresses: 2 });
 *   held.result.upgradesPerSec; ...; await held.close();
 *
 * All processes get `start` in the same tick once every one of them has loaded, so process
 * start-up is never timed. Each process holds at most MAX_CONNECTIONS_PER_PROCESS connections
 * (the per-process fd limit here is 20,000).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { LatencyHistogram } from './histogram.js';
import { MAX_CONNECTIONS_PER_PROCESS, CLIENT_BOUND_CPU_PERCENT, type LatencySummaryUs } from './index.js';
import type { HoldChildMessage, HoldConfig, HoldParentMessage, HoldResult } from './hold-types.js';
import type { Handshake } from './types.js';

export const HOLD_CLIENT_SCRIPT = fileURLToPath(new URL('./hold-client.js', import.meta.url));

export interface OpenConnectionsOptions {
  /** `ws://127.x.y.z:port/path` (loopback: source addresses are 127.0.0.1..N). */
  url: string;
  connections: number;
  processes?: number;
  /** Loopback source addresses 127.0.0.1 .. 127.0.0.N (default 1). */
  sourceAddresses?: number;
  /** First source address index (default 1): a second batch can use 127.0.0.3.. and so on. */
  firstSourceAddress?: number;
  /** Connect + upgrade attempts in flight per process (default 128). */
  concurrency?: number;
  connectTimeoutMs?: number;
  handshake?: Handshake;
}

export interface HoldReport {
  connections: number;
  established: number;
  processes: number;
  /** Established connections / slowest process's connecting time. */
  upgradesPerSec: number;
  elapsedMs: number;
  /** connect() → established, µs. */
  latencyUs: LatencySummaryUs;
  errors: number;
  errorKinds: Record<string, number>;
  clientCpuPercent: number[];
  clientElu: number[];
  clientBound: boolean;
}

export interface HeldConnections {
  readonly result: HoldReport;
  /** Close every connection (1000) and wait for the client processes to exit. Returns connections the server dropped while held. */
  close(): Promise<number>;
}

function mergeHold(results: HoldResult[]): HoldReport {
  const h = new LatencyHistogram();
  const errorKinds: Record<string, number> = {};
  let established = 0, errors = 0, connections = 0, elapsed = 0;
  for (const r of results) {
    h.merge(r.histogram);
    established += r.established;
    errors += r.errors;
    connections += r.connections;
    elapsed = Math.max(elapsed, r.elapsedMs);
    for (const [k, v] of Object.entries(r.errorKinds)) errorKinds[k] = (errorKinds[k] ?? 0) + v;
  }
  const us = (ns: number): number => ns / 1000;
  const cpu = results.map((r) => r.cpuPercent);
  return {
    connections,
    established,
    processes: results.length,
    upgradesPerSec: elapsed > 0 ? (established / elapsed) * 1000 : 0,
    elapsedMs: elapsed,
    latencyUs: {
      p50: us(h.percentile(50)), p90: us(h.percentile(90)), p99: us(h.percentile(99)), p999: us(h.percentile(99.9)),
      mean: us(h.mean()), min: us(h.total === 0 ? 0 : h.min), max: us(h.max),
    },
    errors,
    errorKinds,
    clientCpuPercent: cpu,
    clientElu: results.map((r) => r.elu),
    clientBound: cpu.some((c) => c > CLIENT_BOUND_CPU_PERCENT),
  };
}

export async function openConnections(opts: OpenConnectionsOptions): Promise<HeldConnections> {
  const url = new URL(opts.url);
  const processes = opts.processes ?? 1;
  if (!Number.isInteger(opts.connections) || opts.connections < 1) throw new RangeError('options.connections must be an integer >= 1');
  if (!Number.isInteger(processes) || processes < 1 || processes > opts.connections) {
    throw new RangeError('options.processes must be an integer in 1..connections');
  }
  if (Math.ceil(opts.connections / processes) > MAX_CONNECTIONS_PER_PROCESS) {
    throw new RangeError(`options.processes must be >= ${Math.ceil(opts.connections / MAX_CONNECTIONS_PER_PROCESS)} for ${opts.connections} connections`);
  }
  const nSrc = opts.sourceAddresses ?? 1;
  const first = opts.firstSourceAddress ?? 1;
  if (!Number.isInteger(nSrc) || nSrc < 1 || !Number.isInteger(first) || first < 1 || first + nSrc - 1 > 254) {
    throw new RangeError('options.sourceAddresses/firstSourceAddress must stay within 127.0.0.1..254');
  }
  const sourceAddresses: string[] = [];
  for (let i = 0; i < nSrc; i++) sourceAddresses.push(`127.0.0.${first + i}`);
  const timeoutMs = opts.connectTimeoutMs ?? 60_000;

  const children: ChildProcess[] = [];
  const results: (HoldResult | undefined)[] = new Array<HoldResult | undefined>(processes);
  const closed: (number | undefined)[] = new Array<number | undefined>(processes);
  let closeWaiter: (() => void) | null = null;
  const killAll = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };

  try {
    await new Promise<void>((resolve, reject) => {
      let ready = 0, done = 0, settled = false;
      const fail = (e: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(e);
      };
      const timer = setTimeout(() => fail(new Error(`openConnections: not connected within ${timeoutMs + 15_000} ms`)), timeoutMs + 15_000);
      const base = Math.floor(opts.connections / processes);
      let offset = 0;
      for (let p = 0; p < processes; p++) {
        const n = base + (p < opts.connections % processes ? 1 : 0);
        const config: HoldConfig = {
          host: url.hostname, port: Number(url.port), path: url.pathname + url.search, connections: n,
          connectionOffset: offset, sourceAddresses, concurrency: opts.concurrency ?? 128, connectTimeoutMs: timeoutMs,
        };
        if (opts.handshake !== undefined) config.handshake = opts.handshake;
        offset += n;
        const child = fork(HOLD_CLIENT_SCRIPT, [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
        children.push(child);
        child.on('message', (m: HoldChildMessage) => {
          if (m.type === 'ready') {
            if (++ready === processes) for (const c of children) c.send({ type: 'start' } satisfies HoldParentMessage);
          } else if (m.type === 'connected') {
            results[p] = m.result;
            if (++done === processes && !settled) {
              settled = true;
              clearTimeout(timer);
              resolve();
            }
          } else if (m.type === 'closed') {
            closed[p] = m.lostWhileHeld;
            if (!closed.includes(undefined)) closeWaiter?.();
          } else if (m.type === 'fatal') {
            fail(new Error(`openConnections: client process ${p} failed: ${m.message}`));
          }
        });
        child.on('error', fail);
        child.on('exit', (code, signal) => {
          if (results[p] === undefined) fail(new Error(`openConnections: client process ${p} exited (${code ?? signal}) before connecting`));
          if (closed[p] === undefined) closed[p] = 0;
          if (!closed.includes(undefined)) closeWaiter?.();
        });
        child.send({ type: 'config', config } satisfies HoldParentMessage);
      }
    });
  } catch (e) {
    killAll();
    throw e;
  }
  const result = mergeHold(results as HoldResult[]);
  return {
    result,
    close: async (): Promise<number> => {
      const exited = children.map((c) => new Promise<void>((r) => {
        if (c.exitCode !== null || c.signalCode !== null) r();
        else c.once('exit', () => r());
      }));
      const all = new Promise<void>((r) => {
        closeWaiter = r;
        if (!closed.includes(undefined)) r();
      });
      for (const c of children) if (c.connected) c.send({ type: 'close' } satisfies HoldParentMessage);
      const t = setTimeout(killAll, 10_000);
      await all;
      await Promise.all(exited);
      clearTimeout(t);
      return closed.reduce<number>((a, b) => a + (b ?? 0), 0);
    },
  };
}
