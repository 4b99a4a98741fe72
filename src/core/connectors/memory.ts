/**
 * In-process connector: clients are plain objects in the same process, no sockets. Useful in
 * tests, and the template for writing your own connector. What a connector must do:
 *
 * 1. Keep the ClientManager that `start()` receives; accept clients however the transport
 *    does, and call `manager.addClient(client, { path, query, headers })` for each one. Until
 *    it resolves `{ ok: true }` the client is not live: deliver nothing to `handleMsg`.
 * 2. Give the core a ConnectorClient per client (MemoryPeer below): `send()` delivers one
 *    server message (copy the bytes if you keep them) and says whether it was delivered
 *    (SUCCESS), queued (BACKPRESSURE) or refused because the client's queue is over its bound
 *    (DROPPED: the core counts it); `close()` ends the client.
 * 3. Pass each client message to `manager.handleMsg(client, bytes, binary)`.
 * 4. Call `manager.removeClient(client, code, reason)` exactly once per client handed to
 *    `addClient` (a flag makes that easy), whoever closed it. Never call back into the manager
 *    from inside a method the manager called (here, `close()` defers it to a microtask).
 * 5. `stop()` stops accepting; the core then closes the live clients itself.
 * 6. After a send that returned BACKPRESSURE, call `manager.drain(client)` once the queue has
 *    drained (here: when `next()` takes the last queued message), so onDrain hooks can pace
 *    streams.
 */
import {
  SendStatus,
  type ClientManager,
  type ClientSession,
  type Connector,
  type ConnectorClient,
} from '../connector.js';
import { ClientClosedError, intOption, onlyKnownOptions } from '../../shared/errors.js';
import { Defaults } from '../../shared/constants.js';

/** A refused `connect()`: the upgrade hooks' status and code (RW_ERR_*). */
export class MemoryConnectError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'MemoryConnectError';
    this.code = code;
    this.status = status;
  }
}

export interface MemoryMessage {
  readonly data: Uint8Array;
  readonly binary: boolean;
}

export interface MemoryClose {
  readonly code: number;
  readonly reason: string;
}

/** The server's view of a memory client. */
class MemoryPeer implements ConnectorClient {
  readonly transport = 'memory';
  readonly remoteAddress = 'memory';
  session: ClientSession | null = null;
  readonly #manager: ClientManager;
  readonly #client: MemoryClient;

  constructor(manager: ClientManager, client: MemoryClient) {
    this.#manager = manager;
    this.#client = client;
  }

  send(data: Uint8Array, binary: boolean): number {
    return this.#client.deliver(data, binary);
  }

  close(code: number, reason: string): void {
    // The core is mid-call: report the removal once this call has returned.
    if (this.#client.finish(code, reason)) queueMicrotask(() => this.#manager.removeClient(this, code, reason));
  }

  bufferedAmount(): number {
    return this.#client.queuedBytes;
  }
}

/** The client's end: what `MemoryConnector.connect()` resolves with. */
export class MemoryClient {
  /** Resolves when either side closes the client. */
  readonly closed: Promise<MemoryClose>;
  #session: ClientSession | null = null;
  readonly #manager: ClientManager;
  readonly #peer: MemoryPeer;
  readonly #queue: MemoryMessage[] = [];
  readonly #waiters: { resolve: (m: MemoryMessage) => void; reject: (e: Error) => void }[] = [];
  #queuedBytes = 0;
  readonly #maxQueuedBytes: number;
  /** A send was queued (BACKPRESSURE): `manager.drain` is owed once the queue is empty. */
  #drainOwed = false;
  #done = false;
  #close: MemoryClose = { code: 1006, reason: '' };
  #onClosed!: (c: MemoryClose) => void;

  /** Created by MemoryConnector.connect(); one constructed directly is connected to no server. */
  constructor(manager: ClientManager, maxQueuedBytes: number = Defaults.maxBackpressure) {
    this.#manager = manager;
    this.#maxQueuedBytes = maxQueuedBytes;
    this.#peer = new MemoryPeer(manager, this);
    this.closed = new Promise((resolve) => { this.#onClosed = resolve; });
  }

  /** What the core assigned on accept. */
  get session(): ClientSession {
    if (this.#session === null) throw new Error('MemoryClient was not accepted');
    return this.#session;
  }

  /** Bytes the server sent that `next()` has not taken yet. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** One message to the server (`binary` as a WebSocket frame type would say). False once closed. */
  send(data: Uint8Array, binary = true): boolean {
    if (this.#done) return false;
    this.#manager.handleMsg(this.#peer, data, binary);
    return true;
  }

  /**
   * The next message the server sent; rejects once the client is closed and none is left, with a
   * ClientClosedError (`code` RW_ERR_CLIENT_CLOSED, `closeCode` and `reason` of the close).
   */
  next(): Promise<MemoryMessage> {
    const msg = this.#queue.shift();
    if (msg !== undefined) {
      this.#queuedBytes -= msg.data.length;
      if (this.#queue.length === 0 && this.#drainOwed) {
        this.#drainOwed = false;
        if (!this.#done) this.#manager.drain(this.#peer);
      }
      return Promise.resolve(msg);
    }
    if (this.#done) return Promise.reject(this.#closedError());
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Client-initiated close. */
  close(code = 1000, reason = ''): void {
    if (this.finish(code, reason)) this.#manager.removeClient(this.#peer, code, reason);
  }

  /** @internal Runs addClient; resolves when accepted. */
  async open(path: string, query?: string, headers?: Readonly<Record<string, string>>): Promise<this> {
    let result;
    try {
      result = await this.#manager.addClient(this.#peer, { path, query, headers });
    } catch (err) {
      this.#refused(1011, 'addClient failed');
      throw err;
    }
    if (!result.ok) {
      this.#refused(1008, result.message);
      throw new MemoryConnectError(result.status, result.code, result.message);
    }
    this.#session = result.session;
    return this;
  }

  /** Nothing of a refused client is live, but every addClient gets its removeClient. */
  #refused(code: number, reason: string): void {
    if (this.finish(code, reason)) this.#manager.removeClient(this.#peer, code, reason);
  }

  /**
   * @internal A server message, copied since the core's bytes are only valid during send()
   * (`new Uint8Array(x)` copies; `Buffer#slice` would not). SUCCESS when a pending `next()`
   * takes it, BACKPRESSURE when it is queued, DROPPED when closed or when the queue already
   * holds more than maxQueuedBytes (like a TCP client over maxBufferedBytes).
   */
  deliver(data: Uint8Array, binary: boolean): number {
    if (this.#done) return SendStatus.DROPPED;
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      waiter.resolve({ data: new Uint8Array(data), binary });
      return SendStatus.SUCCESS;
    }
    if (this.#queuedBytes > this.#maxQueuedBytes) return SendStatus.DROPPED;
    this.#queue.push({ data: new Uint8Array(data), binary });
    this.#queuedBytes += data.length;
    this.#drainOwed = true;
    return SendStatus.BACKPRESSURE;
  }

  #closedError(): ClientClosedError {
    return new ClientClosedError('memory client closed', this.#close.code, this.#close.reason);
  }

  /** @internal Marks the client closed; true the first time only (that caller reports the removal). */
  finish(code: number, reason: string): boolean {
    if (this.#done) return false;
    this.#done = true;
    this.#close = { code, reason };
    for (const w of this.#waiters.splice(0)) w.reject(this.#closedError());
    this.#onClosed({ code, reason });
    return true;
  }
}

export interface MemoryConnectorOptions {
  /**
   * Bytes a client may have queued (sent by the server, not yet taken by `next()`) beyond which
   * the server's sends to it are DROPPED (counted in `stats().drops.backpressure`). Default
   * 1 MiB, the default of a module's `maxBackpressure`. The module's `maxBackpressure` (and
   * `closeOnBackpressureLimit`: closed with 1006) apply first, in the core, as for a WebSocket.
   */
  maxQueuedBytes?: number;
}

export class MemoryConnector implements Connector {
  readonly name = 'memory';
  readonly #maxQueuedBytes: number;
  #manager: ClientManager | null = null;
  #stopped = false;

  constructor(options: MemoryConnectorOptions = {}) {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    onlyKnownOptions(options, ['maxQueuedBytes']);
    this.#maxQueuedBytes = intOption(options.maxQueuedBytes, 'maxQueuedBytes', Defaults.maxBackpressure, 0, Number.MAX_SAFE_INTEGER);
  }

  start(manager: ClientManager): void {
    this.#manager = manager;
    this.#stopped = false;
  }

  stop(): void {
    this.#stopped = true;
  }

  /** A new client at `path`: resolves once the upgrade hooks accept it, rejects with MemoryConnectError otherwise. */
  connect(path: string, query?: string, headers?: Readonly<Record<string, string>>): Promise<MemoryClient> {
    const manager = this.#manager;
    if (manager === null || this.#stopped) {
      return Promise.reject(new MemoryConnectError(503, 'RW_ERR_SERVER_STATE', 'memory connector is not running'));
    }
    return new MemoryClient(manager, this.#maxQueuedBytes).open(path, query, headers);
  }
}
