/** I/O-thread counters and the `stats()` snapshot shape. */
import { dropChannel } from '../shared/diagnostics.js';

export interface DropStats {
  /** Commands addressed to a handle that is no longer current (closed or fd recycled). */
  staleHandle: number;
  /** Messages refused because their worker's ring and overflow were full (or the connection's overflow share was used up). */
  inboundFull: number;
  /** Connections closed with 1013 because of that, or because their Open found ring and overflow full. */
  busyCloses: number;
  /** Outbound records of an unknown kind, or malformed (a bug; never client input): skipped. */
  badCommand: number;
  /** A send refused: the client was over the module's maxBackpressure (any transport), or over its connector's own buffer limit. */
  backpressure: number;
  /** Upgrades refused with 503: maxConnections reached (fd allocator exhausted). */
  connLimit: number;
  /** Upgrades refused with 503: no live worker, or the worker's ring was full. */
  workerUnavailable: number;
  /** Upgrades whose client went away before the hooks answered. */
  upgradeAborted: number;
  /** Upgrades whose hooks did not answer within upgradeTimeoutMs (408). */
  upgradeTimeout: number;
  /** Upgrades refused with 403: Origin not in allowedOrigins. */
  originRejected: number;
  /** Upgrades refused with 431: more than 100 headers, or more than 16 KiB of them (names and values). */
  headersTooLarge: number;
  /** Connections closed with 1009: a message over the module's maxPayloadLength. */
  tooBig: number;
  /** Connections closed with 1008: over the per-connection rate limit. */
  rateLimited: number;
  /** Workers terminated because a record ran past handlerTimeoutMs. */
  handlerTimeout: number;
  /** Upgrades refused (503) because the server was shutting down: still in their hooks when close() ran, or accepted by a hook after it. */
  shutdown: number;
  /** Commands dropped on the worker side because its outbound ring was closed (shutdown). */
  workerShutdown: number;
  /** Messages for a detached session past its buffer bounds (the resume then reports recovered: false). */
  resumeOverflow: number;
  /** Messages buffered for a detached session that ended without a resume (grace passed, uid kicked, worker died, shutdown). */
  sessionEnded: number;
  /** Resume upgrades refused: unknown or expired token (HTTP 410), or another resume of the session still in its hooks (409). */
  resumeRefused: number;
  /** sendToUid to a uid no connection is bound to. */
  uidOffline: number;
  /** Transport-level errors reported by connectors (bad or oversized frames, heartbeat/handshake timeouts); by code in `connectorErrors`. */
  connector: number;
  /** Cross-node messages that could not be published because the cluster bus was down. */
  cluster: number;
  /**
   * I/O → worker notices larger than the worker's ring can ever hold (a reply listing a huge room):
   * the worker's request rejects with RW_ERR_RECORD_TOO_LARGE instead.
   */
  noticeTooLarge: number;
  /** `ctx.sendAll` calls refused because 64 MiB of earlier ones were still waiting for their pages. */
  sendAllOverflow: number;
}

export interface WorkerStats {
  slot: number;
  alive: boolean;
  restarts: number;
  /** ms a pending restart still waits out (crash-loop back-off); 0 when none is pending. */
  restartBackoffMs: number;
  connections: number;
  ringCapacity: number;
  inboundUsed: number;
  outboundUsed: number;
  overflowUsed: number;
  /** Records that went through the overflow because the ring was full. */
  overflowed: number;
  messages: number;
  handlerErrors: number;
  hookErrors: number;
  badFrames: number;
  unknownEvents: number;
  outboundFullWaits: number;
  /** Async hooks/handlers abandoned after `asyncTimeoutMs` (their connections closed with 1011). */
  asyncTimeouts: number;
  /**
   * Messages that reached the worker after their connection started closing (closed by a handler,
   * by a failed or timed-out hook, or 1013 for a full handler backlog): counted, no hook ran.
   */
  discarded: number;
  /**
   * Promise rejections no code handled (an un-awaited `ctx.join()` after its connection closed, say):
   * reported to `onError` with stage `'unhandled'`; the worker and its connections go on.
   */
  unhandledRejections: number;
  /**
   * Replies not sent because their message was answered already (a second `reply()`, a `reply()`
   * after `deferReply()`, a `deferReply()` function called again); each is reported to `onError`.
   */
  duplicateReplies: number;
  /**
   * Replies not sent because no message was being handled for them: a `ctx.reply()` in a
   * non-message hook (`onConnect`, `onResume`, ...) or from a timer or callback that ran after its
   * message's chain ended; each is reported to `onError` (`RW_ERR_NO_MESSAGE`).
   */
  strayReplies: number;
}

export interface ServerStats {
  connections: number;
  /** fds currently allocated (open connections plus upgrades in progress). */
  liveFds: number;
  /**
   * Upgrades whose client went away (aborted, or 408) while their hooks still run in a worker:
   * their fd is free, but they count against maxConnections until the worker answers.
   */
  orphanedUpgrades: number;
  upgradesAccepted: number;
  /** Upgrades rejected by an upgrade hook (the server's own refusals are in drops, by reason). */
  upgradesRejected: number;
  messagesIn: number;
  messagesOut: number;
  publishes: number;
  drops: DropStats;
  workerRestarts: number;
  /** Sessions resumed on a new socket. */
  resumes: number;
  /** Worker restarts that were delayed because the worker kept dying (crash-loop back-off). */
  workerBackoffs: number;
  /** Connections detached (socket dropped) and waiting for a resume. */
  detached: number;
  /** Connector error counts by code (RW_ERR_TCP_BAD_FRAME, ...). */
  connectorErrors: Record<string, number>;
  /** Cluster bus state, when the server runs with `cluster` options. */
  cluster: {
    nodeId: string; connected: boolean; published: number; received: number; dropped: number; reconnects: number;
    /** Retries of a room's first read of the other nodes' members, after that read failed (see README "Cluster"). */
    presenceRetries: number;
  } | null;
  workers: WorkerStats[];
}

export class Counters {
  connections = 0;
  upgradesAccepted = 0;
  upgradesRejected = 0;
  messagesIn = 0;
  messagesOut = 0;
  publishes = 0;
  workerRestarts = 0;
  resumes = 0;
  workerBackoffs = 0;
  /** Cluster: retried first reads of a room's other-node members (SessionManager.retryFirstRead). */
  presenceRetries = 0;
  readonly connectorErrors: Record<string, number> = {};
  readonly drops: DropStats = {
    staleHandle: 0, inboundFull: 0, busyCloses: 0, badCommand: 0, backpressure: 0, connLimit: 0, workerUnavailable: 0,
    upgradeAborted: 0, upgradeTimeout: 0, originRejected: 0, headersTooLarge: 0, tooBig: 0, rateLimited: 0, handlerTimeout: 0, shutdown: 0, workerShutdown: 0,
    resumeOverflow: 0, sessionEnded: 0, resumeRefused: 0, uidOffline: 0, connector: 0, cluster: 0, noticeTooLarge: 0, sendAllOverflow: 0,
  };

  /** Count a drop, and publish it on 'ringwire:drop' when someone listens. */
  drop(reason: keyof DropStats, handle = 0): void {
    this.drops[reason]++;
    if (dropChannel.hasSubscribers) dropChannel.publish({ reason, handle });
  }
}

/** One open connection as `server.connections()` reports it. */
export interface ConnectionInfo {
  fd: number;
  handle: number;
  remoteAddress: string;
  /** The request URL the connection upgraded on. */
  url: string;
  /** The module's route pattern, e.g. '/chat/:room'. */
  module: string;
  /** Worker slot that owns the connection. */
  worker: number;
  /** Date.now() when the WebSocket opened. */
  connectedAt: number;
  /** Upgrade request to open, including the upgrade hooks in the worker, in ms. */
  handshakeMs: number;
  /** Bytes uWS holds for this connection (backpressure). */
  bufferedAmount: number;
  /** 'websocket', or the name of the connector that accepted it ('tcp', 'memory', ...). */
  transport: string;
  /** The uid bound with ctx.bind(), or null. */
  uid: string | null;
  /** Cluster node id ('' when not clustered): `${node}:${handle}` is unique across the cluster. */
  node: string;
  /** The socket dropped and the session waits for a resume (see README "Resume"). */
  detached: boolean;
  /** Rooms joined with ctx.join(). */
  rooms: string[];
}
