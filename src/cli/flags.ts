/**
 * The `ringwire serve` flags, one table: parseArgs options, help text, and the mapping from
 * each flag to its createServer() option all come from here, so help and parser cannot drift.
 */
import type { CodecName, ServerOptions } from '../core/options.js';
import type { OptionSpecs } from './args.js';

export type ServeFlagKind = 'int' | 'bytes' | 'codec' | 'string' | 'file' | 'list' | 'rate';

export interface ServeFlag {
  /** Long flag name without dashes. */
  readonly name: string;
  readonly kind: ServeFlagKind;
  /** The createServer() option it sets (absent for CLI-only flags such as --port). */
  readonly option?: keyof ServerOptions;
  /** Placeholder shown in help. */
  readonly arg: string;
  readonly help: string;
  /** Default as shown in help. */
  readonly def: string;
}

export const CODECS: readonly CodecName[] = ['binary', 'json', 'raw'];

/** Longest `--stats` interval (one day); longer ones would overflow setInterval's 32-bit delay. */
export const MAX_STATS_SECONDS = 86_400;

export const SERVE_FLAGS: readonly ServeFlag[] = [
  { name: 'port', kind: 'int', arg: 'N', def: '9001 (env PORT)', help: 'TCP port to listen on; 0 picks a free port (the bound port is printed)' },
  { name: 'host', kind: 'string', arg: 'H', def: '127.0.0.1 (env HOST)', help: 'address to bind; 0.0.0.0 for every IPv4 interface' },
  { name: 'hooks', kind: 'file', option: 'hooks', arg: 'FILE', def: 'none', help: 'global hooks file (default-exports defineHooks); its hooks run before each module\'s (onError after)' },
  { name: 'codec', kind: 'codec', option: 'codec', arg: 'binary|json|raw', def: 'binary', help: 'wire codec for modules that do not name one' },
  // Tuning: threads and buffers (README "Tuning").
  { name: 'workers', kind: 'int', option: 'workers', arg: 'N', def: 'cores - 1 (at least 1)', help: 'worker threads running hooks and handlers; a connection stays on one worker' },
  { name: 'ring-bytes', kind: 'bytes', option: 'ringBytes', arg: 'N', def: '1M', help: 'bytes of each SharedArrayBuffer ring (one in, one out per worker); power of two; must hold the largest message' },
  { name: 'overflow-bytes', kind: 'bytes', option: 'overflowBytes', arg: 'N', def: '16M', help: 'per-worker I/O-side overflow used while its inbound ring is full; power of two; past it connections close with 1013' },
  { name: 'drain-batch', kind: 'int', option: 'drainBatch', arg: 'N', def: '4096', help: 'records a worker handles per batch before it rings the I/O thread' },
  { name: 'max-connections', kind: 'int', option: 'maxConnections', arg: 'N', def: '1048576', help: 'live connection cap (fd allocator); over it upgrades get 503' },
  { name: 'idle-spin-micros', kind: 'int', option: 'idleSpinMicros', arg: 'N', def: '0', help: 'an idle worker busy-polls this long before it sleeps (latency vs CPU)' },
  { name: 'idle-block-ms', kind: 'int', option: 'idleBlockMs', arg: 'N', def: '1', help: 'then blocks in Atomics.wait up to this long before sleeping on waitAsync' },
  { name: 'shutdown-timeout-ms', kind: 'int', option: 'shutdownTimeoutMs', arg: 'N', def: '10000', help: 'graceful close: how long to wait for in-flight work before forcing' },
  { name: 'start-timeout-ms', kind: 'int', option: 'startTimeoutMs', arg: 'N', def: '30000', help: 'start-up: loading the modules (and each start-up step) that takes longer fails with RW_ERR_HANDLER_TIMEOUT; 0 = off' },
  // Hardening and observability (README "Reliability").
  { name: 'upgrade-timeout-ms', kind: 'int', option: 'upgradeTimeoutMs', arg: 'N', def: '10000', help: 'an upgrade whose hooks have not answered by then gets 408' },
  { name: 'handler-timeout-ms', kind: 'int', option: 'handlerTimeoutMs', arg: 'N', def: '30000', help: 'a worker stuck this long in one record is replaced (its connections get 1011); 0 = off' },
  { name: 'async-timeout-ms', kind: 'int', option: 'asyncTimeoutMs', arg: 'N', def: '30000', help: 'an async hook or handler pending this long is abandoned (RW_ERR_HANDLER_TIMEOUT, close 1011); 0 = off' },
  { name: 'allowed-origins', kind: 'list', option: 'allowedOrigins', arg: 'A,B', def: 'any', help: 'comma-separated Origin values allowed to upgrade; others get 403' },
  { name: 'rate-limit', kind: 'rate', option: 'rateLimit', arg: 'N[/BURST][,shed[/SHEDBURST]|,close]', def: 'off', help: 'per-connection messages per second (token bucket, burst BURST, default N); over it the connection is closed with 1008 (,close, the default), or with ,shed that message alone gets an RW_ERR_RATE_LIMITED error reply (shed answers have their own bucket, same rate, burst SHEDBURST, default BURST; past it: 1008)' },
  { name: 'metrics-path', kind: 'string', option: 'metricsPath', arg: 'PATH', def: 'off', help: 'serve Prometheus text metrics on this HTTP path of the same port, e.g. /metrics' },
  // CLI only.
  { name: 'stats', kind: 'int', arg: 'S', def: '0 (off)', help: `print a stats line (connections, messages/s, ring use, drops) every S seconds (1 to ${MAX_STATS_SECONDS})` },
];

/** parseArgs options for `serve`: every table flag takes a value; plus --help. */
export function serveParseOptions(): OptionSpecs {
  const o: OptionSpecs = { help: { type: 'boolean', short: 'h' } };
  for (const f of SERVE_FLAGS) o[f.name] = { type: 'string' };
  return o;
}

/**
 * `--ring-bytes` for `ringBytes`, used to name the flag in createServer()'s option errors. A
 * nested option (`rateLimit.burst`) names the flag of its top-level option (`--rate-limit`).
 */
export function flagOfOption(option: string): string | undefined {
  const top = option.split('.')[0];
  const f = SERVE_FLAGS.find((x) => x.option === top);
  return f === undefined ? undefined : `--${f.name}`;
}
