/**
 * Messages that cross the process boundary between `runLoad` (parent) and `client.ts` (child).
 * Plain JSON-serialisable data only.
 */
import type { SparseHistogram } from './histogram.js';

export type LoadMode = 'echo' | 'count';

export type WindowPhase = 'start' | 'end';

/**
 * An application handshake spoken right after the WebSocket upgrade, before the connection
 * counts as established (socket.io: send `40`, then swallow the engine.io open packet `0{...}`
 * and the namespace ack `40{...}`). Messages swallowed here are never counted or timed.
 */
export interface Handshake {
  /** Text frames sent (masked, in this order) as soon as the upgrade succeeded. */
  sendText: string[];
  /** Server data messages to swallow before the connection is established (1..255). */
  expectMessages: number;
}

/** Configuration of one client process (argv[2] as JSON, or `{ type: 'config', config }` over IPC). */
export interface ClientConfig {
  host: string;
  port: number;
  /** Request path of the upgrade, e.g. `/` or `/echo?x=1`. */
  path: string;
  /** Connections opened by this process. */
  connections: number;
  /** Global index of this process's first connection (source-address spread, `senders`). Default 0. */
  connectionOffset?: number;
  /** Messages kept in flight per sending connection (echo: window; count: credit). */
  inflight: number;
  /** Payload bytes, base64 (or `payloadHex`). */
  payloadBase64?: string;
  payloadHex?: string;
  /** Binary frames (default true); text payloads must be valid UTF-8 or servers close with 1007. */
  binary?: boolean;
  durationMs: number;
  warmupMs?: number;
  /** Local (source) addresses spread over connections round-robin by global index; default: none given. */
  sourceAddresses?: string[];
  mode?: LoadMode;
  /** Only connections with global index < senders send (default: all). The rest only receive. */
  senders?: number;
  /** Connect + upgrade attempts kept in flight at once (default 256). */
  connectConcurrency?: number;
  /** Give up on connections not upgraded after this long (default 30000 ms). */
  connectTimeoutMs?: number;
  /** Application handshake after the upgrade (default none). */
  handshake?: Handshake;
  /** After the run, wait this long for close handshakes before destroying sockets (default 2000 ms). */
  closeTimeoutMs?: number;
  /**
   * The byte length every reply must have: echo mode, an echo of the request (or ringwire's
   * equal-sized reply frame); count mode, a delivery of what was published. A message of another
   * length (an error frame, a stray message) counts as an error (`echo:unexpected-reply`,
   * `count:unexpected-message`), not as an echo or a delivery. Default: not checked.
   */
  replyBytes?: number;
}

export interface ClientResult {
  pid: number;
  mode: LoadMode;
  connections: number;
  established: number;
  /** Measured window actually observed (ms). */
  windowMs: number;
  /** Messages received during the window (echo: replies; count: deliveries, every data message of the expected length). */
  messages: number;
  /** Messages sent during the window. */
  sent: number;
  /** Latency histogram (ns); empty in count mode. */
  histogram: SparseHistogram;
  errors: number;
  errorKinds: Record<string, number>;
  /** Close codes received from the server (including the end-of-run close handshakes). */
  closeCodes: Record<string, number>;
  /** CPU (user + system) over the window, % of one core. */
  cpuPercent: number;
  /** Event-loop utilisation over the window, 0..1. */
  elu: number;
}

export type ParentMessage =
  | { type: 'config'; config: ClientConfig }
  | { type: 'start' };

export type ChildMessage =
  | { type: 'ready'; established: number; errors: number }
  /** The measured window began (after the warm-up) or ended (before the closing handshakes). */
  | { type: 'window'; phase: WindowPhase }
  | { type: 'result'; result: ClientResult }
  | { type: 'fatal'; message: string };
