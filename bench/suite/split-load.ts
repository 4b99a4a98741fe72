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
import { mergeResults, planLoad, runClients, type ClientResult, type LoadResult, type RunLoadOptions } from '../loadgen/index.js';

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
  const perProcess = await runClients(configs, opts, 'runSplitLoad');
  const url = new URL(opts.url);
  const merged = mergeResults(`ws://${url.hostname}:{${ports.join(',')}}${url.pathname}`, {
    inflight: opts.inflight, payloadBytes: opts.payload.byteLength, connections: opts.connections,
  }, perProcess);
  return { merged, perProcess, ports: [...ports] };
}
