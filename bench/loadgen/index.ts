/**
 * End-to-end WebSocket load generator: spawns `processes` client processes (client.ts), each
 * opening its share of the connections, starts them together, and merges their results
 * (histogram buckets are added, never percentiles).
 *
 * The per-process fd limit here is 20,000 and each loopback source address has ~28k ephemeral
 * ports, so tens of thousands of connections need several processes and source addresses
 * (127.0.0.1, 127.0.0.2, ...; the destination stays whatever the URL says).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { LatencyHistogram, type SparseHistogram } from './histogram.js';
import type { ChildMessage, ClientConfig, ClientResult, Handshake, LoadMode, ParentMessage, WindowPhase } from './types.js';

export type { LoadMode, ClientConfig, ClientResult, Handshake, WindowPhase } from './types.js';
export { LatencyHistogram, type SparseHistogram } from './histogram.js';

export const CLIENT_SCRIPT = fileURLToPath(new URL('./client.js', import.meta.url));

/** Connections one client process may hold (fd limit 20,000 minus headroom). */
export const MAX_CONNECTIONS_PER_PROCESS = 19_000;
/** Connections per loopback source address when `sourceAddresses` is not given. */
const CONNECTIONS_PER_SOURCE = 25_000;
/** A client process above this CPU share (of one core) may have limited the measurement. */
export const CLIENT_BOUND_CPU_PERCENT = 90;
/**
 * A client event loop busier than this (ELU) was never idle: either client-bound, or starved of
 * CPU by other processes (ELU near 1 with CPU well below 90 % means the machine was overloaded).
 */
export const CLIENT_SATURATED_ELU = 0.95;

export interface RunLoadOptions {
  /** `ws://host:port/path`. */
  url: string;
  connections: number;
  /** Messages in flight per sending connection (echo: pipelining window; count: credit). */
  inflight: number;
  payload: Uint8Array;
  /** Binary frames (default true). Text payloads must be valid UTF-8. */
  binary?: boolean;
  durationMs: number;
  warmupMs?: number;
  /** Client processes (default 1). */
  processes?: number;
  /** Loopback source addresses 127.0.0.1 .. 127.0.0.N (default: 1 per 25,000 connections; loopback only). */
  sourceAddresses?: number;
  /**
   * First loopback source address (default 1: 127.0.0.1). A benchmark that runs many loads in a
   * row moves on to fresh addresses, because each address's ports left in TIME_WAIT make the
   * kernel's bind() port search (bind-before-connect) slower and slower.
   */
  firstSourceAddress?: number;
  /** `echo` (default): one reply per message, latency measured. `count`: count received messages only. */
  mode?: LoadMode;
  /** Only the first `senders` connections send (default all); count mode fan-out uses this. */
  senders?: number;
  connectConcurrency?: number;
  connectTimeoutMs?: number;
  /** Application handshake after the upgrade (socket.io's `40`), see Handshake. */
  handshake?: Handshake;
  /**
   * The byte length every reply (echo mode) or delivery (count mode) must have; a message of
   * another length counts as an error (`echo:unexpected-reply`, `count:unexpected-message`), not
   * as an echo or a delivery. Default: the payload's length (every bench server echoes, and
   * fans out, a message of the request's size); null: not checked.
   */
  replyBytes?: number | null;
  /**
   * Called with 'start' once every client process began its measured window (connected, warm-up
   * over) and with 'end' as soon as one ended it: the span all of them measured. Server-side
   * samplers (CPU) start and stop here, so start-up and warm-up stay out of their figures.
   */
  onWindow?: (phase: WindowPhase) => void;
}

export interface LatencySummaryUs {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  mean: number;
  min: number;
  max: number;
}

export interface LoadResult {
  url: string;
  mode: LoadMode;
  processes: number;
  connections: number;
  established: number;
  inflight: number;
  payloadBytes: number;
  /** Mean measured window over the processes (ms). */
  durationMs: number;
  messages: number;
  sent: number;
  /** Sum over processes of messages / own window. */
  messagesPerSec: number;
  /** Null in count mode. */
  latencyUs: LatencySummaryUs | null;
  errors: number;
  errorKinds: Record<string, number>;
  closeCodes: Record<string, number>;
  clientCpuPercent: number[];
  clientElu: number[];
  maxClientCpuPercent: number;
  /** Some client process used more than CLIENT_BOUND_CPU_PERCENT of a core: the result may be the client's limit. */
  clientBound: boolean;
  /** Some client event loop had ELU > CLIENT_SATURATED_ELU (client-bound or CPU-starved): treat figures with care. */
  clientSaturated: boolean;
  /** Merged latency histogram (ns). */
  histogram: SparseHistogram;
}

function isLoopback(host: string): boolean {
  return /^127\.\d+\.\d+\.\d+$/.test(host) || host === 'localhost';
}

function checkInt(name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new RangeError(`options.${name} must be an integer >= ${min}`);
  }
  return v;
}

function checkHandshake(h: Handshake): Handshake {
  if (h === null || typeof h !== 'object' || !Array.isArray(h.sendText) || !h.sendText.every((t) => typeof t === 'string')) {
    throw new TypeError('options.handshake.sendText must be an array of strings');
  }
  const n = checkInt('handshake.expectMessages', h.expectMessages, 1);
  if (n > 255) throw new RangeError('options.handshake.expectMessages must be an integer in 1..255');
  return { sendText: [...h.sendText], expectMessages: n };
}

/** Validate options and split them into one ClientConfig per process. */
export function planLoad(opts: RunLoadOptions): ClientConfig[] {
  let url: URL;
  try {
    url = new URL(opts.url);
  } catch {
    throw new TypeError('options.url must be a ws:// URL');
  }
  if (url.protocol !== 'ws:') throw new TypeError('options.url must be a ws:// URL (no TLS)');
  const connections = checkInt('connections', opts.connections, 1);
  const mode: LoadMode = opts.mode ?? 'echo';
  if (mode !== 'echo' && mode !== 'count') throw new TypeError("options.mode must be 'echo' or 'count'");
  const inflight = checkInt('inflight', opts.inflight, mode === 'echo' ? 1 : 0);
  if (!(opts.payload instanceof Uint8Array)) throw new TypeError('options.payload must be a Uint8Array');
  if (!(typeof opts.durationMs === 'number' && opts.durationMs > 0)) throw new RangeError('options.durationMs must be > 0');
  const warmupMs = opts.warmupMs ?? 0;
  if (!(typeof warmupMs === 'number' && warmupMs >= 0)) throw new RangeError('options.warmupMs must be >= 0');
  const processes = checkInt('processes', opts.processes ?? 1, 1);
  if (processes > connections) throw new RangeError('options.processes must be <= options.connections');
  if (Math.ceil(connections / processes) > MAX_CONNECTIONS_PER_PROCESS) {
    throw new RangeError(`options.processes must be >= ${Math.ceil(connections / MAX_CONNECTIONS_PER_PROCESS)} ` +
      `for ${connections} connections (fd limit: ${MAX_CONNECTIONS_PER_PROCESS} connections per process)`);
  }
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  let sourceAddresses: string[] | undefined;
  if (opts.sourceAddresses !== undefined || isLoopback(host)) {
    const nSrc = opts.sourceAddresses ?? Math.ceil(connections / CONNECTIONS_PER_SOURCE);
    checkInt('sourceAddresses', nSrc, 1);
    const first = checkInt('firstSourceAddress', opts.firstSourceAddress ?? 1, 1);
    if (first + nSrc - 1 > 254) throw new RangeError('options.sourceAddresses must be an integer in 1..254 (counted from firstSourceAddress)');
    if (!isLoopback(host) && nSrc > 0) throw new RangeError('options.sourceAddresses needs a loopback url host');
    sourceAddresses = [];
    for (let i = first; i < first + nSrc; i++) sourceAddresses.push(`127.0.0.${i}`);
  }
  const replyBytes = opts.replyBytes === null ? undefined
    : opts.replyBytes === undefined ? opts.payload.byteLength : checkInt('replyBytes', opts.replyBytes, 0);
  const payloadBase64 = Buffer.from(opts.payload.buffer, opts.payload.byteOffset, opts.payload.byteLength).toString('base64');
  const configs: ClientConfig[] = [];
  const base = Math.floor(connections / processes);
  let offset = 0;
  for (let p = 0; p < processes; p++) {
    const n = base + (p < connections % processes ? 1 : 0);
    const cfg: ClientConfig = {
      host: host === 'localhost' ? '127.0.0.1' : host,
      port: url.port === '' ? 80 : Number(url.port),
      path: (url.pathname === '' ? '/' : url.pathname) + url.search,
      connections: n,
      connectionOffset: offset,
      inflight,
      payloadBase64,
      binary: opts.binary ?? true,
      durationMs: opts.durationMs,
      warmupMs,
      mode,
    };
    if (sourceAddresses !== undefined) cfg.sourceAddresses = sourceAddresses;
    if (replyBytes !== undefined) cfg.replyBytes = replyBytes;
    if (opts.senders !== undefined) cfg.senders = checkInt('senders', opts.senders, 0);
    if (opts.connectConcurrency !== undefined) cfg.connectConcurrency = checkInt('connectConcurrency', opts.connectConcurrency, 1);
    if (opts.connectTimeoutMs !== undefined) cfg.connectTimeoutMs = checkInt('connectTimeoutMs', opts.connectTimeoutMs, 1);
    if (opts.handshake !== undefined) cfg.handshake = checkHandshake(opts.handshake);
    configs.push(cfg);
    offset += n;
  }
  return configs;
}

function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const k of Object.keys(from)) into[k] = (into[k] ?? 0) + (from[k] ?? 0);
}

/** Merge per-process results (bucket-wise histogram merge). */
export function mergeResults(url: string, opts: { inflight: number; payloadBytes: number; connections: number },
  results: ClientResult[]): LoadResult {
  const hist = new LatencyHistogram();
  const errorKinds: Record<string, number> = {};
  const closeCodes: Record<string, number> = {};
  let established = 0, messages = 0, sent = 0, errors = 0, rate = 0, windowSum = 0;
  for (const r of results) {
    hist.merge(r.histogram);
    addCounts(errorKinds, r.errorKinds);
    addCounts(closeCodes, r.closeCodes);
    established += r.established;
    messages += r.messages;
    sent += r.sent;
    errors += r.errors;
    windowSum += r.windowMs;
    if (r.windowMs > 0) rate += (r.messages / r.windowMs) * 1000;
  }
  const mode = results[0]?.mode ?? 'echo';
  const cpu = results.map((r) => r.cpuPercent);
  const maxCpu = cpu.length === 0 ? 0 : Math.max(...cpu);
  const us = (ns: number): number => ns / 1000;
  return {
    url,
    mode,
    processes: results.length,
    connections: opts.connections,
    established,
    inflight: opts.inflight,
    payloadBytes: opts.payloadBytes,
    durationMs: results.length === 0 ? 0 : windowSum / results.length,
    messages,
    sent,
    messagesPerSec: rate,
    latencyUs: mode === 'echo' ? {
      p50: us(hist.percentile(50)),
      p90: us(hist.percentile(90)),
      p99: us(hist.percentile(99)),
      p999: us(hist.percentile(99.9)),
      mean: us(hist.mean()),
      min: us(hist.total === 0 ? 0 : hist.min),
      max: us(hist.max),
    } : null,
    errors,
    errorKinds,
    closeCodes,
    clientCpuPercent: cpu,
    clientElu: results.map((r) => r.elu),
    maxClientCpuPercent: maxCpu,
    clientBound: maxCpu > CLIENT_BOUND_CPU_PERCENT,
    clientSaturated: results.some((r) => r.elu > CLIENT_SATURATED_ELU),
    histogram: hist.toSparse(),
  };
}

/**
 * Fork one client process per config, start them together (a barrier on 'ready'), and collect
 * their results in config order. `who` names the caller in errors.
 */
export async function runClients(configs: readonly ClientConfig[], opts: RunLoadOptions, who = 'runLoad'): Promise<ClientResult[]> {
  const children: ChildProcess[] = [];
  const results: (ClientResult | undefined)[] = new Array<ClientResult | undefined>(configs.length);
  const connectMs = opts.connectTimeoutMs ?? 30_000;
  const deadlineMs = connectMs + (opts.warmupMs ?? 0) + opts.durationMs + 15_000;

  try {
    await new Promise<void>((resolve, reject) => {
      let ready = 0;
      let done = 0;
      let windowsStarted = 0;
      let windowEnded = false;
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err);
      };
      const timer = setTimeout(() => fail(new Error(`${who}: client processes did not finish within ${deadlineMs} ms`)), deadlineMs);
      configs.forEach((config, i) => {
        const child = fork(CLIENT_SCRIPT, [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
        children.push(child);
        child.on('message', (msg: ChildMessage) => {
          if (msg.type === 'ready') {
            if (++ready === configs.length) for (const c of children) c.send({ type: 'start' } satisfies ParentMessage);
          } else if (msg.type === 'window') {
            // 'start' when the last one started, 'end' when the first one ended; neither when they never overlapped.
            if (msg.phase === 'start') {
              if (++windowsStarted === configs.length && !windowEnded) opts.onWindow?.('start');
            } else if (!windowEnded) {
              windowEnded = true;
              if (windowsStarted === configs.length) opts.onWindow?.('end');
            }
          } else if (msg.type === 'result') {
            results[i] = msg.result;
            if (++done === configs.length && !settled) {
              settled = true;
              clearTimeout(timer);
              resolve();
            }
          } else if (msg.type === 'fatal') {
            fail(new Error(`${who}: client process ${i} failed: ${msg.message}`));
          }
        });
        child.on('error', fail);
        child.on('close', (code, signal) => {
          if (results[i] === undefined) fail(new Error(`${who}: client process ${i} exited (${code ?? signal}) before reporting`));
        });
        child.send({ type: 'config', config } satisfies ParentMessage);
      });
    });
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null && results.includes(undefined)) c.kill('SIGKILL');
  }
  return results as ClientResult[];
}

/**
 * Why a load's figures are not a measurement of what was asked, null when they are: any error
 * (a reply that was not the echo, a connection the server closed or reset, ...), or connections
 * that never got established (the load ran on fewer). Works on LoadResult and HoldReport alike.
 */
export function loadFailure(r: { errors: number; errorKinds: Record<string, number>; established: number; connections: number }): string | null {
  const why: string[] = [];
  if (r.established < r.connections) why.push(`${r.established}/${r.connections} connections established`);
  if (r.errors > 0) {
    const kinds = Object.entries(r.errorKinds).map(([k, v]) => `${k}=${v}`).join(', ');
    why.push(`${r.errors} error${r.errors === 1 ? '' : 's'}${kinds === '' ? '' : ` (${kinds})`}`);
  }
  return why.length === 0 ? null : why.join(', ');
}

/** Run one load: spawn the client processes, start them together, merge their results. */
export async function runLoad(opts: RunLoadOptions): Promise<LoadResult> {
  const results = await runClients(planLoad(opts), opts);
  return mergeResults(opts.url, {
    inflight: opts.inflight, payloadBytes: opts.payload.byteLength, connections: opts.connections,
  }, results);
}

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function fmtUs(n: number): string {
  return n >= 100 ? fmtInt(n) : n.toFixed(1);
}

/** One human-readable paragraph for a result. */
export function formatLoadResult(r: LoadResult): string {
  const lines: string[] = [];
  lines.push(`${r.mode} ${r.url}  ${r.established}/${r.connections} connections x ${r.inflight} in flight, ` +
    `${r.payloadBytes} B payload, ${r.processes} client process(es), ${(r.durationMs / 1000).toFixed(2)} s`);
  lines.push(`  ${fmtInt(r.messagesPerSec)} msg/s (${fmtInt(r.messages)} messages, ${fmtInt(r.sent)} sent)`);
  if (r.latencyUs !== null) {
    const l = r.latencyUs;
    lines.push(`  latency us: p50 ${fmtUs(l.p50)}  p90 ${fmtUs(l.p90)}  p99 ${fmtUs(l.p99)}  p99.9 ${fmtUs(l.p999)}` +
      `  mean ${fmtUs(l.mean)}  max ${fmtUs(l.max)}`);
  }
  const kinds = Object.entries(r.errorKinds).map(([k, v]) => `${k}=${v}`).join(', ');
  const codes = Object.entries(r.closeCodes).map(([k, v]) => `${k}x${v}`).join(', ');
  lines.push(`  errors ${r.errors}${kinds === '' ? '' : ` (${kinds})`}; close codes ${codes === '' ? 'none' : codes}`);
  lines.push(`  client CPU ${r.clientCpuPercent.map((c) => `${c.toFixed(0)}%`).join(' ')} of a core, ` +
    `ELU ${r.clientElu.map((e) => e.toFixed(2)).join(' ')}${r.clientBound ? '  ** CLIENT-BOUND: result may be the client\'s limit **' : ''}` +
    `${!r.clientBound && r.clientSaturated ? '  ** client event loop saturated: client-bound or CPU-starved **' : ''}`);
  return lines.join('\n');
}
