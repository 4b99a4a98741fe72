/**
 * Connectors: pluggable transports on the I/O thread (mydog's "custom connector" contract).
 *
 * A connector accepts clients by whatever means it likes (uWS WebSocket is built in; raw TCP
 * ships in ./connectors/tcp.ts; an in-memory one in ./connectors/memory.ts) and hands each one
 * to the core through the ClientManager it receives in `start()`:
 *
 *   manager.addClient(client, { path, query, headers })   → upgrade hooks run in a worker;
 *                                                            resolves { ok, handle } or { ok: false, status, ... }
 *   manager.handleMsg(client, bytes, binary)              → one client message (the module codec's bytes)
 *   manager.removeClient(client, code, reason)            → the client went away (disconnect hooks run)
 *   manager.drain(client)                                 → its send buffer drained after a send()
 *                                                            returned BACKPRESSURE (onDrain hooks run)
 *
 * The core drives each accepted client through the ConnectorClient methods: `send()` for every
 * message the handlers address to it (replies, publishes to topics it joined, broadcasts),
 * `close()` when a handler, the server or a policy closes it. Every connector shares the fd
 * allocator, the worker pipeline, the modules, the hook order and pub/sub with the others:
 * one module serves WebSocket and TCP clients alike.
 *
 * Threading: everything here runs on the I/O thread. A connector must never block it.
 */

/** mydog's `session`: what the core assigned to an accepted client. */
export interface ClientSession {
  /** Swoole-style fd, unique among live connections of this server (1..2^24-1). */
  readonly fd: number;
  /** fd + generation: names this connection for ever (see src/fd). */
  readonly handle: number;
  /** Path of the module serving it. */
  readonly path: string;
}

/** uWS SendStatus values, which `ConnectorClient.send` returns too. */
export const SendStatus = { BACKPRESSURE: 0, SUCCESS: 1, DROPPED: 2 } as const;

/** One client of a connector, as the core sees it. */
export interface ConnectorClient {
  /** The transport's name as `server.connections()` reports it ('tcp', 'memory', ...). */
  readonly transport?: string;
  /** Remote address as text (IPv4/IPv6 literal, or a connector-defined name). */
  readonly remoteAddress: string;
  /** Set by the core when the upgrade hooks accept the client; null before and after. */
  session: ClientSession | null;
  /**
   * Deliver one server message (bytes already encoded with the module's codec; `binary` tells
   * whether a WebSocket would send it as a binary or text message). Returns a SendStatus:
   * SUCCESS, BACKPRESSURE (queued; call `manager.drain(client)` once the queue has drained),
   * or DROPPED (the client is over its buffer limit; the core counts it under
   * `drops.backpressure`). The core applies the module's `maxBackpressure` itself, as uWS does to
   * a WebSocket: while `bufferedAmount()` is over it, the core refuses the send without calling
   * this (and with `closeOnBackpressureLimit` closes the client with 1006); a connector's own
   * limit is an extra bound. It may be called before `addClient` has resolved (an open hook that
   * sends at once): `client.session` is set by then, and the connector answers its client's
   * handshake first. The bytes are only valid during the call: copy what you queue.
   */
  send(data: Uint8Array, binary: boolean): number;
  /**
   * Close the client with a WebSocket close code and reason (a connector maps them onto its
   * transport). The connector must then call `manager.removeClient` exactly once. Code 1006
   * (never sent on the wire) means the core cuts the client off, as uWS drops a WebSocket past
   * `maxBackpressure` with `closeOnBackpressureLimit`: the client reads nothing, so a goodbye
   * would only queue behind what it does not read; drop the transport at once.
   */
  close(code: number, reason: string): void;
  /** Bytes queued for this client but not yet written. */
  bufferedAmount(): number;
}

/** What a client asks for when it connects (the equivalent of an HTTP upgrade request). */
export interface ClientRequest {
  /** Path of a mounted module, e.g. '/chat/lobby' (matched against '/chat/:room'). */
  readonly path: string;
  /** Query string without '?'. */
  readonly query?: string;
  /** Request headers (lower-case names). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** The upgrade hooks' verdict on a client. */
export type AddClientResult =
  | { readonly ok: true; readonly session: ClientSession }
  | {
    readonly ok: false;
    /**
     * HTTP-style status: the reject() status of a hook, 404 no module, 503 busy/limit, 500 hook
     * failure, 499 the client was removed (removeClient) before its hooks answered.
     */
    readonly status: number;
    /** Stable error code (RW_ERR_*). */
    readonly code: string;
    readonly message: string;
  };

/** A module's route table: event names to the numeric ids the binary codec accepts. */
export interface RouteTable {
  readonly path: string;
  readonly codec: 'binary' | 'json' | 'raw';
  /** event name → id (1-based, declaration order). */
  readonly routes: Readonly<Record<string, number>>;
  /** Hex digest of the table, so clients can cache it across connections. */
  readonly hash: string;
}

/** The core's side of the contract, handed to `Connector.start()`. */
export interface ClientManager {
  /**
   * A new client: allocates an fd, picks its worker and runs the upgrade hooks of the module
   * mounted at `req.path`. On `ok` the client is live (open hooks are queued, messages may
   * flow, `client.session` is set); otherwise nothing of it remains in the core.
   */
  addClient(client: ConnectorClient, req: ClientRequest): Promise<AddClientResult>;
  /** One message from a live client (bytes in the module's codec; copied before this returns). */
  handleMsg(client: ConnectorClient, data: Uint8Array, binary: boolean): void;
  /** The client is gone; safe to call for a client that was never accepted or already removed. */
  removeClient(client: ConnectorClient, code: number, reason: string): void;
  /**
   * The client's send buffer drained after a `send()` returned BACKPRESSURE (uWS's drain
   * event): the module's `onDrain(ctx, client.bufferedAmount())` hooks run, in order with the
   * connection's other records. Call it once per backpressure episode, when what was queued has
   * been written (or has fallen under a low-water mark of the connector's choosing), never from
   * inside a method the core called. Ignored for a client that is not live. A connector whose
   * `send()` never returns BACKPRESSURE need not call it; one that does must, or a module that
   * paces a stream with onDrain stalls.
   */
  drain(client: ConnectorClient): void;
  /** The route table of the module that serves `path`, or null when no module matches. */
  routes(path: string): RouteTable | null;
  /**
   * Count a transport-level error (bad frame, oversized frame, heartbeat or handshake timeout)
   * under `stats().drops.connector` and publish it on the `ringwire:drop` diagnostics channel.
   */
  reportError(client: ConnectorClient | null, code: string, message: string): void;
}

/** A transport. `start` is called once the server listens; `stop` when it closes (before the core closes the clients). */
export interface Connector {
  readonly name: string;
  start(manager: ClientManager): void | Promise<void>;
  /**
   * Stop accepting new clients. The core closes the live ones (close(1001, ...)) afterwards.
   * It can be called while start() still runs (close() or startTimeoutMs stopped waiting for it);
   * the core then calls it again once that start() has resolved, so stop() should be idempotent.
   */
  stop(): void | Promise<void>;
}
