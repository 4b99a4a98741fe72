/**
 * Messages between `openConnections` (hold.ts, parent) and `hold-client.ts` (child): the
 * connection-storm and idle-memory client. Plain JSON-serialisable data only.
 */
import type { SparseHistogram } from './histogram.js';
import type { Handshake } from './types.js';

export interface HoldConfig {
  host: string;
  port: number;
  /** Upgrade request path, e.g. `/echo`. */
  path: string;
  connections: number;
  /** Global index of this process's first connection (source-address spread). */
  connectionOffset: number;
  /** Local addresses, round-robin by global connection index. */
  sourceAddresses?: string[];
  /** Connect + upgrade attempts in flight at once. */
  concurrency: number;
  connectTimeoutMs: number;
  handshake?: Handshake;
}

export interface HoldResult {
  pid: number;
  connections: number;
  established: number;
  /** From `start` to the last connection settling (established or failed), ms. */
  elapsedMs: number;
  /** Connect start → established (after the handshake, if any), ns. */
  histogram: SparseHistogram;
  errors: number;
  errorKinds: Record<string, number>;
  /** CPU (user + system) while connecting, % of one core. */
  cpuPercent: number;
  /** Event-loop utilisation while connecting, 0..1. */
  elu: number;
}

export type HoldParentMessage =
  | { type: 'config'; config: HoldConfig }
  | { type: 'start' }
  | { type: 'close' };

export type HoldChildMessage =
  | { type: 'ready' }
  | { type: 'connected'; result: HoldResult }
  | { type: 'closed'; lostWhileHeld: number }
  | { type: 'fatal'; message: string };
