/**
 * createServer() options: validation and defaults. Bad options throw TypeError/RangeError
 * naming the option ("options.workers must be ...").
 */
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { availableParallelism } from 'node:os';
import { intOption, invalidOption, onlyKnownOptions } from '../shared/errors.js';
import { Defaults } from '../shared/constants.js';
import type { ModuleDescriptor } from '../shared/tasks.js';
import { FD_MAX } from '../fd/index.js';
import type { Connector } from './connector.js';

export type CodecName = 'binary' | 'json' | 'raw';
/** @inline */
type MaybePromise<T> = T | Promise<T>;

/** Server lifecycle hooks (Ts.ED ServerLoader style). They run on the I/O thread, never on the hot path. */
export interface LifecycleHooks {
  onInit?: () => MaybePromise<void>;
  onMountingModules?: (modules: readonly ModuleDescriptor[]) => MaybePromise<void>;
  afterRoutesInit?: () => MaybePromise<void>;
  onReady?: (info: { port: number; host: string }) => MaybePromise<void>;
  onServerInitError?: (err: Error) => MaybePromise<void>;
  onShutdown?: () => MaybePromise<void>;
}

/** What createServer() takes: `modules` is required, every other option has a default. Misspelt names throw a TypeError. */
export interface ServerOptions {
  /** Module files (each default-exports defineModule), paths or file URLs. Module id = index. */
  modules: readonly (string | URL)[];
  /** Global hooks file (default-exports defineHooks). */
  hooks?: string | URL;
  /** Worker threads (piscina pool size). Default: cores − 1 (at least 1). */
  workers?: number;
  /** Bytes of each SharedArrayBuffer ring (one inbound, one outbound per worker); power of two. Default 1 MiB. */
  ringBytes?: number;
  /** Bytes of each worker's I/O-side overflow buffer used when its inbound ring is full. Default 16 MiB. */
  overflowBytes?: number;
  /** Cap on live connections, detached sessions and upgrades in progress; over it upgrades get 503 (a detached session's resume is still served). */
  maxConnections?: number;
  /** Highest fd before wrapping (default FD_MAX = 16,777,215); lower it only for tests. */
  maxFd?: number;
  /** Default wire codec for modules that do not name one. Default 'binary'. */
  codec?: CodecName;
  /** Records a worker handles per drain batch. Default 4096. */
  drainBatch?: number;
  /**
   * Worker idle policy. When its ring is empty a worker spins `idleSpinMicros` (default 0),
   * then blocks in Atomics.wait for up to `idleBlockMs` (default 1; only while none of its
   * hooks is awaiting, since it holds the worker's event loop), then sleeps on
   * Atomics.waitAsync. The blocking step cuts the wake-up latency of request/response traffic.
   */
  idleSpinMicros?: number;
  /** See idleSpinMicros: how long an idle worker blocks in Atomics.wait before it sleeps. Default 1. */
  idleBlockMs?: number;
  /** An upgrade whose hooks have not answered after this long gets 408 and its fd back. Default 10 s. */
  upgradeTimeoutMs?: number;
  /**
   * A worker whose current record (hook or handler) has run this long is terminated and
   * replaced; its connections are closed with 1011. 0 disables. Default 30 s. Only synchronous
   * work can trip it: an awaiting handler does not hold its worker.
   */
  handlerTimeoutMs?: number;
  /**
   * An async hook or handler (its promise) that has not settled after this long is abandoned:
   * `onError(err, stage)` gets RW_ERR_HANDLER_TIMEOUT, a message gets that error reply, and the
   * connection is closed with 1011 (a failed upgrade gets HTTP 500), so its queued records,
   * its close and graceful shutdown are not held forever. 0 disables. Default 30 s.
   */
  asyncTimeoutMs?: number;
  /** Only these Origin header values may upgrade (others, and a request without Origin, get 403); compared case-insensitively. Default: any. */
  allowedOrigins?: readonly string[];
  /**
   * Per-connection message rate limit (token bucket; `burst` defaults to messagesPerSecond).
   * A message over it: `onExceed: 'close'` (default) closes the connection with 1008;
   * `'shed'` keeps the connection and answers that message alone with an RW_ERR_RATE_LIMITED
   * error reply (carrying its ref, in order with the other replies), running no hook or handler.
   * Shed answers have a bucket of their own (same rate, burst `shedBurst`, default `burst`): a
   * client that empties that one too (sending at over twice the rate, sustained) is closed with
   * 1008, so a flooder cannot keep its worker decoding and answering without bound.
   * Either way counted in `stats().drops.rateLimited`.
   */
  rateLimit?: { messagesPerSecond: number; burst?: number; onExceed?: 'close' | 'shed'; shedBurst?: number };
  /** Serve Prometheus text metrics on this HTTP path of the same port (e.g. '/metrics'). Off by default. */
  metricsPath?: string;
  /** Graceful close: how long to wait for in-flight work before forcing. Default 10 s. */
  shutdownTimeoutMs?: number;
  /**
   * listen(): each start-up step (a lifecycle hook, loading the modules in a worker, the cluster's
   * and each connector's start) that has not settled after this long fails listen() with
   * RW_ERR_HANDLER_TIMEOUT naming the step (fastify's pluginTimeout habit), so a hook that never
   * settles cannot hang start-up; onServerInitError is waited for as long, no longer. 0 disables. Default 30 s. A close() during
   * start-up stops waiting at once either way (listen() rejects with RW_ERR_SERVER_STATE; onShutdown
   * runs once the interrupted step has settled, bounded by shutdownTimeoutMs).
   */
  startTimeoutMs?: number;
  /** Server lifecycle hooks (onInit, onReady, onShutdown, ...), run on the I/O thread. */
  lifecycle?: LifecycleHooks;
  /**
   * uid affinity (Swoole dispatch_mode 5): read the uid from this query parameter or header of
   * the upgrade request and serve every connection of one uid by the same worker.
   */
  uidAffinity?: { query?: string; header?: string };
  /** Extra transports next to the built-in uWS WebSocket one (see src/core/connector.ts). */
  connectors?: readonly Connector[];
  /** Join a cluster of ringwire servers through Redis pub/sub (see src/core/cluster.ts). Off by default. */
  cluster?: ClusterOptions;
}

export interface ClusterOptions {
  /** redis://host:port URL of the Redis server. */
  url: string;
  /** This node's id (unique in the cluster); default: random. Handles are unique across nodes as `${nodeId}:${handle}`. */
  nodeId?: string;
  /** Redis key and channel prefix. Default 'rw'. */
  prefix?: string;
  /**
   * Node liveness TTL in ms (default 15,000): this long after a node stops (crash, SIGKILL, cut off
   * from Redis) without removing its presence, the other nodes remove its room members and send
   * their local members the leaves. Refreshed every third of it.
   */
  nodeTtlMs?: number;
}

export interface ResolvedOptions {
  readonly modules: readonly string[];
  readonly hooks: string | null;
  readonly workers: number;
  readonly ringBytes: number;
  readonly overflowBytes: number;
  readonly maxConnections: number;
  readonly maxFd: number;
  readonly codec: CodecName;
  readonly drainBatch: number;
  readonly idleSpinMicros: number;
  readonly idleBlockMs: number;
  readonly shutdownTimeoutMs: number;
  readonly startTimeoutMs: number;
  readonly metricsPath: string | null;
  readonly upgradeTimeoutMs: number;
  readonly handlerTimeoutMs: number;
  readonly asyncTimeoutMs: number;
  readonly allowedOrigins: ReadonlySet<string> | null;
  readonly rateLimit: { readonly perMs: number; readonly burst: number; readonly shed: boolean; readonly shedBurst: number } | null;
  readonly lifecycle: LifecycleHooks;
  readonly uidAffinity: { readonly query: string | null; readonly header: string | null } | null;
  readonly connectors: readonly Connector[];
  readonly cluster: ClusterOptions | null;
}

const LIFECYCLE = ['onInit', 'onMountingModules', 'afterRoutesInit', 'onReady', 'onServerInitError', 'onShutdown'] as const;

/** Every option name, per object: a misspelt one (`worker: 2`) is an error, not silently ignored. */
const KNOWN: Readonly<Record<string, readonly string[]>> = {
  '': ['modules', 'hooks', 'workers', 'ringBytes', 'overflowBytes', 'maxConnections', 'maxFd', 'codec', 'drainBatch',
    'idleSpinMicros', 'idleBlockMs', 'upgradeTimeoutMs', 'handlerTimeoutMs', 'asyncTimeoutMs', 'allowedOrigins', 'rateLimit',
    'metricsPath', 'shutdownTimeoutMs', 'startTimeoutMs', 'lifecycle', 'uidAffinity', 'connectors', 'cluster'],
  'rateLimit.': ['messagesPerSecond', 'burst', 'onExceed', 'shedBurst'],
  'lifecycle.': LIFECYCLE,
  'uidAffinity.': ['query', 'header'],
  'cluster.': ['url', 'nodeId', 'prefix', 'nodeTtlMs'],
};

/** Throws a TypeError naming the first key of `o` that is not an option (with the closest known name). */
function onlyKnown(o: object, prefix: keyof typeof KNOWN): void {
  onlyKnownOptions(o, KNOWN[prefix]!, prefix);
}

function fileUrl(v: unknown, name: string): string {
  if (v instanceof URL) {
    if (v.protocol !== 'file:') throw invalidOption(name, 'a file path or file: URL');
    return v.href;
  }
  if (typeof v !== 'string' || v.length === 0) throw invalidOption(name, 'a file path or file: URL');
  if (v.startsWith('file:')) return v;
  return pathToFileURL(isAbsolute(v) ? v : resolve(v)).href;
}

function powerOfTwo(v: unknown, name: string, def: number, min: number, max: number): number {
  const n = intOption(v, name, def, min, max);
  if ((n & (n - 1)) !== 0) throw invalidOption(name, `a power of two between ${min} and ${max}, got ${n}`, 'range');
  return n;
}

export function resolveOptions(o: ServerOptions): ResolvedOptions {
  if (o === null || typeof o !== 'object') throw new TypeError('options must be an object');
  onlyKnown(o, '');
  if (!Array.isArray(o.modules) || o.modules.length === 0) {
    throw invalidOption('modules', 'a non-empty array of module file paths');
  }
  const modules = o.modules.map((m, i) => fileUrl(m, `modules[${i}]`));
  const hooks = o.hooks === undefined ? null : fileUrl(o.hooks, 'hooks');
  // Default: one core for the I/O thread, the others for workers (the sweep in bench/ measured
  // 1 worker ahead of 2 on a 2-core machine in every pipelined cell).
  const workers = intOption(o.workers, 'workers', Math.max(1, Math.min(availableParallelism() - 1, 64)), 1, 256);
  const ringBytes = powerOfTwo(o.ringBytes, 'ringBytes', Defaults.ringBytes, 1 << 12, 1 << 30);
  const overflowBytes = powerOfTwo(o.overflowBytes, 'overflowBytes', Defaults.overflowBytes, 1 << 12, 1 << 30);
  const maxFd = intOption(o.maxFd, 'maxFd', FD_MAX, 1, FD_MAX);
  const maxConnections = intOption(o.maxConnections, 'maxConnections', Math.min(Defaults.maxConnections, maxFd), 1, maxFd);
  const codec = o.codec ?? 'binary';
  if (codec !== 'binary' && codec !== 'json' && codec !== 'raw') throw invalidOption('codec', '"binary", "json" or "raw"');
  const drainBatch = intOption(o.drainBatch, 'drainBatch', Defaults.drainBatch, 1, 1 << 20);
  const idleSpinMicros = intOption(o.idleSpinMicros, 'idleSpinMicros', 0, 0, 1_000_000);
  const idleBlockMs = intOption(o.idleBlockMs, 'idleBlockMs', 1, 0, 1000);
  const shutdownTimeoutMs = intOption(o.shutdownTimeoutMs, 'shutdownTimeoutMs', 10_000, 0, 3_600_000);
  const startTimeoutMs = intOption(o.startTimeoutMs, 'startTimeoutMs', 30_000, 0, 3_600_000);
  const metricsPath = o.metricsPath ?? null;
  if (metricsPath !== null && (typeof metricsPath !== 'string' || !/^\/[\w./-]*$/.test(metricsPath))) {
    throw invalidOption('metricsPath', 'an HTTP path such as "/metrics"');
  }
  const upgradeTimeoutMs = intOption(o.upgradeTimeoutMs, 'upgradeTimeoutMs', 10_000, 1, 3_600_000);
  const handlerTimeoutMs = intOption(o.handlerTimeoutMs, 'handlerTimeoutMs', 30_000, 0, 3_600_000);
  const asyncTimeoutMs = intOption(o.asyncTimeoutMs, 'asyncTimeoutMs', 30_000, 0, 3_600_000);
  let allowedOrigins: Set<string> | null = null;
  if (o.allowedOrigins !== undefined) {
    if (!Array.isArray(o.allowedOrigins) || !o.allowedOrigins.every((x) => typeof x === 'string')) {
      throw invalidOption('allowedOrigins', 'an array of Origin strings');
    }
    // Scheme and host are case-insensitive, and browsers send them lower-case (RFC 6454 §6.2):
    // 'https://App.example' must admit the Origin 'https://app.example' (compared lower-cased).
    allowedOrigins = new Set(o.allowedOrigins.map((x) => x.toLowerCase()));
  }
  let rateLimit: { perMs: number; burst: number; shed: boolean; shedBurst: number } | null = null;
  if (o.rateLimit !== undefined) {
    if (o.rateLimit === null || typeof o.rateLimit !== 'object') throw invalidOption('rateLimit', 'an object { messagesPerSecond, burst?, onExceed?, shedBurst? }');
    onlyKnown(o.rateLimit, 'rateLimit.');
    // Required: without it the bucket would never refill (every connection closed on its first messages).
    if (o.rateLimit.messagesPerSecond === undefined) throw invalidOption('rateLimit.messagesPerSecond', 'an integer between 1 and 10000000 (required)');
    const rate = intOption(o.rateLimit.messagesPerSecond, 'rateLimit.messagesPerSecond', 0, 1, 10_000_000);
    const burst = intOption(o.rateLimit.burst, 'rateLimit.burst', rate, 1, 100_000_000);
    const onExceed = o.rateLimit.onExceed ?? 'close';
    if (onExceed !== 'close' && onExceed !== 'shed') throw invalidOption('rateLimit.onExceed', "'close' or 'shed'");
    const shedBurst = intOption(o.rateLimit.shedBurst, 'rateLimit.shedBurst', burst, 1, 100_000_000);
    if (o.rateLimit.shedBurst !== undefined && onExceed !== 'shed') throw invalidOption('rateLimit.shedBurst', "used only with onExceed: 'shed'");
    rateLimit = { perMs: rate / 1000, burst, shed: onExceed === 'shed', shedBurst };
  }
  const lifecycle = o.lifecycle ?? {};
  if (lifecycle === null || typeof lifecycle !== 'object') throw invalidOption('lifecycle', 'an object of hook functions');
  onlyKnown(lifecycle, 'lifecycle.');
  for (const k of LIFECYCLE) {
    if (lifecycle[k] !== undefined && typeof lifecycle[k] !== 'function') throw invalidOption(`lifecycle.${k}`, 'a function');
  }
  let uidAffinity: { query: string | null; header: string | null } | null = null;
  if (o.uidAffinity !== undefined) {
    const a = o.uidAffinity;
    if (a === null || typeof a !== 'object' || (typeof a.query !== 'string' && typeof a.header !== 'string')) {
      throw invalidOption('uidAffinity', 'an object { query?: string, header?: string } naming at least one');
    }
    onlyKnown(a, 'uidAffinity.');
    for (const k of ['query', 'header'] as const) {
      if (a[k] !== undefined && (typeof a[k] !== 'string' || a[k] === '')) throw invalidOption(`uidAffinity.${k}`, 'a non-empty string');
    }
    uidAffinity = { query: a.query ?? null, header: a.header?.toLowerCase() ?? null };
  }
  const connectors = o.connectors ?? [];
  if (!Array.isArray(connectors) || !connectors.every((c) => c !== null && typeof c === 'object' && typeof c.start === 'function' && typeof c.stop === 'function' && typeof c.name === 'string')) {
    throw invalidOption('connectors', 'an array of Connector objects ({ name, start(manager), stop() })');
  }
  let cluster: ClusterOptions | null = null;
  if (o.cluster !== undefined) {
    if (o.cluster === null || typeof o.cluster !== 'object' || typeof o.cluster.url !== 'string' || !o.cluster.url.startsWith('redis://')) {
      throw invalidOption('cluster', 'an object { url: "redis://host:port", nodeId?, prefix? }');
    }
    onlyKnown(o.cluster, 'cluster.');
    if (o.cluster.nodeId !== undefined && (typeof o.cluster.nodeId !== 'string' || !/^[\w-]{1,64}$/.test(o.cluster.nodeId))) {
      throw invalidOption('cluster.nodeId', 'a string of 1-64 letters, digits, _ or -');
    }
    intOption(o.cluster.nodeTtlMs, 'cluster.nodeTtlMs', 15_000, 100, 3_600_000);
    cluster = o.cluster;
  }
  return { uidAffinity, connectors, cluster, modules, hooks, workers, ringBytes, overflowBytes, maxConnections, maxFd, codec, drainBatch, idleSpinMicros, idleBlockMs, shutdownTimeoutMs, startTimeoutMs, metricsPath, upgradeTimeoutMs, handlerTimeoutMs, asyncTimeoutMs, allowedOrigins, rateLimit, lifecycle };
}
