/**
 * runLoad (bench/loadgen/index.ts) with each client process connected to its own server: client
 * process i opens its share of the connections to `ports[i]`. Same client processes (client.ts),
 * same split of the connections (planLoad), same start barrier and merge (mergeResults) as runLoad;
 * only the destination port differs per process, and the per-process results are kept (the
 * cluster fan-out scenario reports the deliveries counted on each node).
 *
 * Connection numbering is global as in runLoad: with `senders: 1` the one sender is connection 0,
 * which is in process 0, i.e. connected to ports[0].
 */
import { fork, type ChildProcess } from 'node:child_process';
import { CLIENT_SCRIPT, mergeResults, planLoad, type ClientResult, type LoadResult, type RunLoadOptions } from '../loadgen/index.js';
import type { ChildMessage, ParentMessage } from '../loadgen/types.js';

export interface SplitLoadResult {
  /** All processes merged, exactly as runLoad reports it. */
  merged: LoadResult;
  /** One result per client process, in process order (process i talked to ports[i]). */
  perProcess: ClientResult[];
  ports: number[];
}

/** Deliveries (count mode) or replies (echo mode) per second of one client process. */
export function processRate(r: ClientResult): number {
  return r.windowMs > 0 ? (r.messages / r.windowMs) * 1000 : 0;
}

/** `opts.processes` must equal `ports.length`; the port in `opts.url` is replaced per process. */
export async function runSplitLoad(opts: RunLoadOptions, ports: readonly number[]): Promise<SplitLoadResult> {
  if ((opts.processes ?? 1) !== ports.length) throw new RangeError('runSplitLoad: options.processes must equal ports.length');
  for (const p of ports) if (!Number.isInteger(p) || p < 1 || p > 65535) throw new RangeError(`runSplitLoad: bad port ${p}`);
  const configs = planLoad(opts);
  configs.forEach((c, i) => { c.port = ports[i]!; });
  const children: ChildProcess[] = [];
  const results: (ClientResult | undefined)[] = new Array<ClientResult | undefined>(configs.length);
  const connectMs = opts.connectTimeoutMs ?? 30_000;
  const deadlineMs = connectMs + (opts.warmupMs ?? 0) + opts.durationMs + 15_000;
  try {
    await new Promise<void>((resolve, reject) => {
      let ready = 0;
      let done = 0;
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err);
      };
      const timer = setTimeout(() => fail(new Error(`runSplitLoad: client processes did not finish within ${deadlineMs} ms`)), deadlineMs);
      configs.forEach((config, i) => {
        const child = fork(CLIENT_SCRIPT, [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
        children.push(child);
        child.on('message', (msg: ChildMessage) => {
          if (msg.type === 'ready') {
            if (++ready === configs.length) for (const c of children) c.send({ type: 'start' } satisfies ParentMessage);
          } else if (msg.type === 'result') {
            results[i] = msg.result;
            if (++done === configs.length && !settled) {
              settled = true;
              clearTimeout(timer);
              resolve();
            }
          } else if (msg.type === 'fatal') {
            fail(new Error(`runSplitLoad: client process ${i} failed: ${msg.message}`));
          }
        });
        child.on('error', fail);
        child.on('close', (code, signal) => {
          if (results[i] === undefined) fail(new Error(`runSplitLoad: client process ${i} exited (${code ?? signal}) before reporting`));
        });
        child.send({ type: 'config', config } satisfies ParentMessage);
      });
    });
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null && results.includes(undefined)) c.kill('SIGKILL');
  }
  const perProcess = results as ClientResult[];
  const url = new URL(opts.url);
  const merged = mergeResults(`ws://${url.hostname}:{${ports.join(',')}}${url.pathname}`, {
    inflight: opts.inflight, payloadBytes: opts.payload.byteLength, connections: opts.connections,
  }, perProcess);
  return { merged, perProcess, ports: [...ports] };
}
