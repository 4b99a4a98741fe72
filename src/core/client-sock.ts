/**
 * Connector clients behind the same face as a uWS WebSocket, so the command executor, the
 * session manager and shutdown drive every transport through one code path.
 *
 * `Sock` is the part of uWS's WebSocket the core uses. A ClientSock implements it over a
 * ConnectorClient; pub/sub for such clients goes through a TopicRegistry (uWS's own topic
 * tree only knows uWS sockets), and every publish reaches both.
 */
import type { WebSocket } from 'uWebSockets.js';
import type { ConnectorClient } from './connector.js';
import type { SocketData, SocketHolder } from './commands.js';
import type { Counters } from './stats.js';

/** The subset of a uWS WebSocket the core calls. */
export interface Sock {
  /** Its SocketData is `.rw` (see SocketHolder for why it is not the user data itself). */
  getUserData(): SocketHolder;
  send(message: Uint8Array, isBinary?: boolean): number;
  cork(cb: () => void): unknown;
  end(code?: number, shortMessage?: string): void;
  subscribe(topic: string): boolean;
  unsubscribe(topic: string): boolean;
  publish(topic: string, message: Uint8Array, isBinary?: boolean): boolean;
  getBufferedAmount(): number;
  /** uWS sockets only: a ping (its pong confirms a resumed session, see SessionManager.confirm). */
  ping?(message?: Uint8Array): number;
}

/** Type check: a uWS socket is a Sock. */
export function asSock(ws: WebSocket<SocketHolder>): Sock {
  return ws as unknown as Sock;
}

/** Topics of connector clients: topic → subscribers. */
export class TopicRegistry {
  readonly topics = new Map<string, Set<ClientSock>>();

  subscribe(topic: string, s: ClientSock): boolean {
    let set = this.topics.get(topic);
    if (set === undefined) {
      set = new Set();
      this.topics.set(topic, set);
    }
    if (set.has(s)) return false;
    set.add(s);
    s.topics.add(topic);
    return true;
  }

  unsubscribe(topic: string, s: ClientSock): boolean {
    const set = this.topics.get(topic);
    if (set === undefined || !set.delete(s)) return false;
    s.topics.delete(topic);
    if (set.size === 0) this.topics.delete(topic);
    return true;
  }

  /**
   * Deliver to every subscriber but `except`; returns how many got it. `onDropped` gets the
   * handle of each subscriber that refused it (over its backpressure limit).
   */
  publish(topic: string, data: Uint8Array, binary: boolean, except: Sock | null, onDropped: (handle: number) => void): number {
    const set = this.topics.get(topic);
    if (set === undefined) return 0;
    let n = 0;
    for (const s of set) {
      if (s === except) continue;
      if (s.sendUncounted(data, binary) === 2) onDropped(s.ud.handle);
      else n++;
    }
    return n;
  }

  count(topic: string): number {
    return this.topics.get(topic)?.size ?? 0;
  }

  removeAll(s: ClientSock): void {
    for (const t of s.topics) {
      const set = this.topics.get(t);
      if (set !== undefined) {
        set.delete(s);
        if (set.size === 0) this.topics.delete(t);
      }
    }
    s.topics.clear();
  }
}

/** What a ClientSock needs from the server. */
export interface ClientSockHost {
  readonly registry: TopicRegistry;
  /** Publish to uWS subscribers and connector subscribers except `from`. */
  publishFrom(from: Sock, topic: string, data: Uint8Array, binary: boolean): void;
  /** The core-side close (disconnect bookkeeping) of a connector client. */
  closed(s: ClientSock, code: number, reason: string): void;
  /** A connector client's close() threw (counted in connectorErrors and drops.connector). */
  closeFailed(s: ClientSock, err: unknown): void;
  /**
   * Where a held send the connector refuses (DROPPED) is counted: as a drop, and taken back from
   * messagesOut when its caller counted it there (a send, not a publish), so each message is
   * counted once, as a WebSocket send is.
   */
  readonly counters: Pick<Counters, 'drop' | 'messagesOut'>;
}

/**
 * The module's uWS backpressure options, which the core applies to connector clients as uWS
 * does to WebSockets: a send while more than `maxBackpressure` bytes are buffered (0: no limit)
 * is DROPPED, and with `closeOnBackpressureLimit` the client is also closed (1006, no close
 * frame: uWS cuts such a socket off).
 */
export interface BackpressureLimits {
  readonly maxBackpressure: number;
  readonly closeOnBackpressureLimit: boolean;
}

const NO_LIMITS: BackpressureLimits = { maxBackpressure: 0, closeOnBackpressureLimit: false };

/** uWS's close code for a socket it cuts off (closeOnBackpressureLimit, a FIN): no close frame. */
const ABNORMAL = 1006;

export class ClientSock implements Sock {
  readonly client: ConnectorClient;
  readonly ud: SocketData;
  private readonly holder: SocketHolder;
  readonly topics = new Set<string>();
  private readonly host: ClientSockHost;
  private readonly limits: BackpressureLimits;
  private ended = false;
  /** Over maxBackpressure with closeOnBackpressureLimit: its close is queued. */
  private cutOff = false;
  /**
   * Sends made before the connector has answered its client's handshake (the session frame,
   * a quick reply) are held here and flushed on the next turn of the event loop, after the
   * connector's addClient() continuation has written its handshake reply; or by end(), when
   * the core closes the client before that turn (an onConnect that sends, then closes).
   */
  private held: { data: Uint8Array; binary: boolean; counted: boolean }[] | null = [];

  constructor(client: ConnectorClient, ud: SocketData, host: ClientSockHost, limits: BackpressureLimits = NO_LIMITS) {
    this.client = client;
    this.ud = ud;
    this.holder = { rw: ud };
    this.host = host;
    this.limits = limits;
    setImmediate(this.activate);
  }

  private readonly activate = (): void => {
    // A client the core has closed meanwhile (its connector removed it: the peer went away)
    // gets none of them, as end() does for it: they would only come back DROPPED, counted as drops.
    if (this.ud.closed) this.held = null;
    else if (!this.ended) this.flush();
  };

  /**
   * Hands the held sends to the connector (once); each one refused is counted as a drop instead
   * of as sent (its caller counted it in messagesOut when it was held).
   */
  private flush(): void {
    const h = this.held;
    this.held = null;
    if (h === null) return;
    const c = this.host.counters;
    for (let i = 0; i < h.length; i++) {
      const m = h[i]!;
      if (this.deliver(m.data, m.binary) === 2) {
        if (m.counted) c.messagesOut--;
        c.drop('backpressure', this.ud.handle);
      }
    }
  }

  /**
   * One send to the connector, under the module's maxBackpressure as uWS applies it to a
   * WebSocket: refused while more than that is buffered, and with closeOnBackpressureLimit the
   * client is cut off once the current call has returned (uWS closes such a socket on its next
   * loop iteration, with 1006). The connector's own buffer limit applies as well.
   */
  private deliver(data: Uint8Array, binary: boolean): number {
    const max = this.limits.maxBackpressure;
    if (max !== 0 && this.client.bufferedAmount() > max) {
      if (this.limits.closeOnBackpressureLimit && !this.cutOff) {
        this.cutOff = true;
        queueMicrotask(this.cut);
      }
      return 2;
    }
    return this.client.send(data, binary);
  }

  private readonly cut = (): void => {
    if (!this.ud.closed) this.end(ABNORMAL, '');
  };

  /** The same face as a uWS socket's: the connection's SocketData is `.rw`. */
  getUserData(): SocketHolder {
    return this.holder;
  }

  /** A send its caller counts in messagesOut unless it returns DROPPED. */
  send(message: Uint8Array, isBinary = false): number {
    if (this.held !== null) {
      this.held.push({ data: message.slice(), binary: isBinary, counted: true });
      return 1;
    }
    return this.deliver(message, isBinary);
  }

  /** A send its caller does not count in messagesOut (a publish, the session frame). */
  sendUncounted(message: Uint8Array, isBinary: boolean): number {
    if (this.held !== null) {
      this.held.push({ data: message.slice(), binary: isBinary, counted: false });
      return 1;
    }
    return this.deliver(message, isBinary);
  }

  cork(cb: () => void): this {
    cb();
    return this;
  }

  /**
   * Like uWS's end(): the core's close bookkeeping runs now (synchronously, as uWS calls its
   * close handler inside end()), then the connector is told to close its transport. Sends
   * still held go to the connector first, so they precede the close as they would on uWS
   * (the connector answers its client's handshake before the first of them).
   */
  end(code = 1000, shortMessage = ''): void {
    if (this.ended) return;
    this.ended = true;
    if (!this.ud.closed) this.flush();
    else this.held = null;
    if (!this.ud.closed) this.host.closed(this, code, shortMessage);
    try {
      this.client.close(code, shortMessage);
    } catch (err) {
      // A connector's bug (say close(1006) passed to a WebSocket library that refuses it) must
      // not escape into whatever closed it (the command loop, a microtask): counted, not thrown.
      this.host.closeFailed(this, err);
    }
  }

  subscribe(topic: string): boolean {
    return this.host.registry.subscribe(topic, this);
  }

  unsubscribe(topic: string): boolean {
    return this.host.registry.unsubscribe(topic, this);
  }

  publish(topic: string, message: Uint8Array, isBinary = false): boolean {
    this.host.publishFrom(this, topic, message, isBinary);
    return true;
  }

  getBufferedAmount(): number {
    return this.client.bufferedAmount();
  }
}
