/**
 * Executes the commands a worker wrote into its outbound ring, on the I/O thread, in ring
 * order. Consecutive sends to the same socket run inside one `ws.cork()`: sends made outside
 * a uWS callback are not corked by uWS, so without it each one is a syscall.
 *
 * Every command names its target by handle (fd + generation). A handle that is no longer
 * current (closed, or its fd was recycled for a new connection) is dropped and counted:
 * a late reply can never reach the new owner of a recycled fd.
 */
import type { HttpResponse, TemplatedApp, us_socket_context_t } from 'uWebSockets.js';
import { RecordKind, type RecordReader } from '../shared/records.js';
import { ControlKind, CloseCode, cutCloseReason } from '../shared/constants.js';
import type { Ring } from '../shared/ring.js';
import { recordOk } from '../shared/verify.js';
import type { FdAllocator } from '../fd/index.js';
import type { Counters } from './stats.js';
import type { Slot } from './slot.js';
import type { CorkCarrier } from './cork-carrier.js';
import { ClientSock, type Sock, type TopicRegistry } from './client-sock.js';
import type { SessionManager, Session } from './sessions.js';
import type { AddClientResult, ConnectorClient } from './connector.js';

export interface SocketData {
  fd: number;
  handle: number;
  slot: number;
  slotGen: number;
  module: number;
  closed: boolean;
  /** Rate limit token bucket (only used when options.rateLimit is set). */
  tokens: number;
  refilledAt: number;
  /** Its second bucket, for shed answers (onExceed 'shed'). */
  shedTokens: number;
  shedAt: number;
  /** Connection record (server.connections()). */
  remoteAddress: string;
  url: string;
  connectedAt: number;
  handshakeMs: number;
  /** 'websocket' or the connector's name. */
  transport: string;
  /** ctx.bind() uid, rooms joined, resumable session (see sessions.ts). */
  uid: string | null;
  rooms: Set<string> | null;
  session: Session | null;
  /** Resume upgrade: the session this socket takes over when it opens. */
  resumeOf: Session | null;
  /** A resumed socket whose client has not shown it is there yet (SessionManager.confirm). */
  unconfirmed: boolean;
  /**
   * The id of the last sendAll that reached this connection (sent, or buffered for its session),
   * or of the last one issued before it opened: a sendAll reaches a connection at most once,
   * and never one opened after it (see SessionManager.runPaged).
   */
  sentAll: number;
}

/**
 * What a socket's getUserData() returns: its SocketData is `.rw`. uWS copies the properties of the
 * object given to res.upgrade() onto the WebSocket object itself, a C++ API object whose own
 * properties live in a dictionary, and getUserData() returns that object: every field read on the
 * message path (closed, handle, module, slot) was a dictionary lookup through V8's generic load IC
 * (Builtins_LoadIC ~4% of the I/O thread in a pipelined echo profile). With one property there,
 * the SocketData is a plain object whose fields V8 reads inline. Connector clients (ClientSock)
 * give the same shape.
 */
export interface SocketHolder {
  readonly rw: SocketData;
}

export interface PendingUpgrade {
  /** uWS upgrades: the HTTP response to upgrade or reject; null for connector clients. */
  res: HttpResponse | null;
  /** Connector clients: the client and the addClient() promise's resolver. */
  client: ConnectorClient | null;
  resolve: ((r: AddClientResult) => void) | null;
  /** Resume upgrade: the session it asked for. */
  resume: Session | null;
  key: string;
  protocol: string;
  extensions: string;
  context: us_socket_context_t | null;
  slot: number;
  slotGen: number;
  module: number;
  handle: number;
  aborted: boolean;
  timer: NodeJS.Timeout | null;
  remoteAddress: string;
  url: string;
  /** performance.now() when the upgrade request arrived. */
  startedAt: number;
}

/** uWS SendStatus: 0 BACKPRESSURE (buffered), 1 SUCCESS, 2 DROPPED (over maxBackpressure). */
const SEND_DROPPED = 2;
/** Give ring space back to the worker at least this often while draining a long batch. */
const RELEASE_EVERY = 256;

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 408: 'Request Timeout',
  405: 'Method Not Allowed', 409: 'Conflict', 410: 'Gone', 413: 'Payload Too Large', 429: 'Too Many Requests', 431: 'Request Header Fields Too Large', 500: 'Internal Server Error',
  501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable',
};
export function statusLine(status: number): string {
  return `${status} ${STATUS_TEXT[status] ?? 'Error'}`;
}

const utf8d = new TextDecoder();
const EMPTY = new Uint8Array(0);

/**
 * Reads the Send record at `off` (`length` bytes) into the reader's hbd fields; false when it is
 * malformed. The hot writers' layout is checked in place; any other goes through verifyRecord's checks first.
 */
function sendOk(rd: RecordReader, data: Uint8Array, off: number, length: number): boolean {
  if (rd.hbdHot(off, length)) return true;
  if (!recordOk(data, off, length)) return false;
  rd.hbd(off, true);
  return true;
}

/** Answer a pending upgrade that will not be accepted (HTTP response or addClient() result). */
export function refusePending(p: PendingUpgrade, status: number, body: string, code = 'RW_ERR_UPGRADE_REFUSED',
  names: readonly string[] = [], values: readonly string[] = []): void {
  if (p.resolve !== null) {
    p.resolve({ ok: false, status, code, message: body });
    p.resolve = null;
    return;
  }
  const res = p.res;
  if (res === null || p.aborted) return;
  res.cork(() => {
    res.writeStatus(statusLine(status));
    for (let i = 0; i < names.length; i++) res.writeHeader(names[i]!, values[i]!);
    res.end(body);
  });
}

/** What the executor needs from the server for connector clients and sessions. */
export interface ExecutorHost {
  readonly registry: TopicRegistry;
  readonly sessions: SessionManager;
  /** A connector client's upgrade was accepted: make it live. */
  acceptClient(p: PendingUpgrade, ud: SocketData): void;
  /** A resume upgrade ended without opening: the session's grace period goes on. */
  pendingGone(p: PendingUpgrade): void;
  /** Cross-node publish (cluster), null when not clustered. */
  clusterPublish: ((topic: string, data: Uint8Array, binary: boolean) => void) | null;
}

export class CommandExecutor {
  readonly app: TemplatedApp;
  readonly alloc: FdAllocator;
  readonly sockets: Map<number, Sock>;
  readonly pending: Map<number, PendingUpgrade>;
  readonly counters: Counters;
  /** Set by the server: is it shutting down (accepts become 503). */
  closing = false;
  /** Set by the server once listening: the socket whose cork wraps async upgrades. */
  carrier: CorkCarrier | null = null;
  /** Initial tokens of a new connection's rate-limit bucket, and of its shed bucket. */
  rateBurst = 0;
  shedBurst = 0;

  // State of the corked run (set before ws.cork, read by the bound runner: no closure per send).
  private runRing: Ring | null = null;
  private runReader: RecordReader | null = null;
  private runWs: Sock | null = null;
  host: ExecutorHost | null = null;
  private runHandle = 0;
  private readonly corkedRun: () => void;
  private acceptArgs: PendingUpgrade | null = null;
  private acceptData: SocketData | null = null;
  private readonly corkedAccept: () => void;

  constructor(app: TemplatedApp, alloc: FdAllocator, sockets: Map<number, Sock>,
    pending: Map<number, PendingUpgrade>, counters: Counters) {
    this.app = app;
    this.alloc = alloc;
    this.sockets = sockets;
    this.pending = pending;
    this.counters = counters;
    this.corkedRun = () => this.sendRun();
    this.corkedAccept = () => {
      const p = this.acceptArgs!;
      p.res!.upgrade<SocketHolder>({ rw: this.acceptData! }, p.key, p.protocol, p.extensions, p.context!);
    };
  }

  /** The live socket a handle names, or undefined (not counted). */
  private find(handle: number): Sock | undefined {
    return this.alloc.isCurrent(handle) ? this.sockets.get(this.alloc.fdOf(handle)) : undefined;
  }

  /** Drain everything the slot's worker has written so far. */
  drain(slot: Slot): void {
    const ring = slot.outbound;
    const rd = slot.reader;
    const data = ring.data;
    let n = 0;
    let off: number;
    while ((off = ring.peek()) >= 0) {
      const kind = data[off]! | (data[off + 1]! << 8) | (data[off + 2]! << 16) | (data[off + 3]! << 24);
      if (kind === RecordKind.Send) {
        if (!sendOk(rd, data, off, ring.peekLength)) {
          this.counters.drop('badCommand');
          ring.skip();
          continue;
        }
        const h = rd.hbdHandle;
        const ws = this.alloc.isCurrent(h) ? this.sockets.get(this.alloc.fdOf(h)) : undefined;
        if (ws === undefined) {
          this.sendMissed(h, data.subarray(rd.hbdStart, rd.hbdStart + rd.hbdLength), rd.hbdBinary);
          ring.skip();
        } else {
          this.runRing = ring;
          this.runReader = rd;
          this.runWs = ws;
          this.runHandle = h;
          ws.cork(this.corkedRun);
        }
      } else {
        // Verified before any reader follows its offsets (a record that is not what our writers
        // lay out: the generated readers would read outside it, throw, or loop on a huge vector
        // length); counted and skipped, so the ring stays in step and the thread never throws.
        if (kind === ControlKind.BarrierAck ? ring.peekLength >= 8 : recordOk(data, off, ring.peekLength)) {
          this.exec(slot, kind, off, rd);
        } else {
          this.counters.drop('badCommand');
        }
        ring.skip();
      }
      if (++n >= RELEASE_EVERY) {
        ring.release();
        n = 0;
      }
    }
    ring.release();
    this.runWs = null;
  }

  /** A Send to a handle with no live socket: a detached session buffers it; anything else is a stale handle. */
  private sendMissed(h: number, bytes: Uint8Array, binary: boolean): void {
    if (this.host === null || !this.host.sessions.deliver(h, bytes, binary)) this.counters.drop('staleHandle', h);
  }

  /** Inside ws.cork(): send the current Send and every following Send to the same handle. */
  private sendRun(): void {
    const ring = this.runRing!;
    const rd = this.runReader!;
    const ws = this.runWs!;
    const h = this.runHandle;
    const data = ring.data;
    const c = this.counters;
    let off = ring.peek();
    while (off >= 0) {
      // A bad record ends the run: drain() counts and skips it.
      if (!sendOk(rd, data, off, ring.peekLength) || rd.hbdHandle !== h) return;
      const start = rd.hbdStart;
      const st = ws.send(data.subarray(start, start + rd.hbdLength), rd.hbdBinary);
      if (st === SEND_DROPPED) c.drop('backpressure', h);
      else c.messagesOut++;
      ring.skip();
      off = ring.peek();
      if (off >= 0 && rd.kind(off) !== RecordKind.Send) return;
    }
  }

  private exec(slot: Slot, kind: number, off: number, rd: RecordReader): void {
    switch (kind) {
      case RecordKind.SendMany: {
        const m = rd.sendMany(off);
        const bytes = m.dataArray() ?? EMPTY;
        const bin = m.binary();
        const n = m.handlesLength();
        for (let i = 0; i < n; i++) {
          const h = m.handles(i)!;
          const ws = this.alloc.isCurrent(h) ? this.sockets.get(this.alloc.fdOf(h)) : undefined;
          if (ws === undefined) {
            if (this.host === null || !this.host.sessions.deliver(h, bytes, bin)) this.counters.drop('staleHandle', h);
            continue;
          }
          if (ws.send(bytes, bin) === SEND_DROPPED) this.counters.drop('backpressure', h);
          else this.counters.messagesOut++;
        }
        return;
      }
      case RecordKind.Publish: {
        const p = rd.publish(off);
        const topic = p.topic();
        if (topic === null) return this.counters.drop('badCommand'); // a field our writers always write
        const bytes = p.dataArray() ?? new Uint8Array(0);
        const ex = p.exclude();
        this.publish(topic, bytes, p.binary(), ex);
        const h = this.host;
        if (h !== null && h.clusterPublish !== null && topic.charCodeAt(0) !== 0) h.clusterPublish(topic, bytes, p.binary());
        return;
      }
      case RecordKind.Subscribe: {
        const s = rd.subscribe(off);
        const t = s.topic();
        if (t === null) return this.counters.drop('badCommand');
        const ws = this.find(s.handle());
        if (ws !== undefined) {
          ws.subscribe(t);
          this.host?.sessions.subscribed(ws.getUserData().rw, t);
          return;
        }
        // Detached: the session's topic set changes; the new socket subscribes on resume.
        const d = this.host?.sessions.detachedOf(s.handle());
        if (d !== undefined) this.host!.sessions.subscribed(d.ud, t);
        else this.counters.drop('staleHandle', s.handle());
        return;
      }
      case RecordKind.Unsubscribe: {
        const s = rd.unsubscribe(off);
        const t = s.topic();
        if (t === null) return this.counters.drop('badCommand');
        const ws = this.find(s.handle());
        if (ws !== undefined) {
          ws.unsubscribe(t);
          this.host?.sessions.unsubscribed(ws.getUserData().rw, t);
          return;
        }
        // Detached: the session's topic set changes; the new socket unsubscribes on resume.
        const d = this.host?.sessions.detachedOf(s.handle());
        if (d !== undefined) this.host!.sessions.unsubscribed(d.ud, t);
        else this.counters.drop('staleHandle', s.handle());
        return;
      }
      case RecordKind.Request:
        this.host?.sessions.request(slot, rd.request(off), this.subscribers);
        return;
      case RecordKind.CloseConn: {
        const c = rd.closeConn(off);
        const ws = this.find(c.handle());
        if (ws !== undefined) {
          ws.end(c.code(), cutCloseReason(c.reason() ?? ''));
          return;
        }
        // Detached: its session ends now (the disconnect hooks run with the code), no resume.
        const d = this.host?.sessions.detachedOf(c.handle());
        if (d !== undefined) this.host!.sessions.expire(d, c.reason() ?? '', c.code());
        else this.counters.drop('staleHandle', c.handle());
        return;
      }
      case RecordKind.Accept:
        this.accept(slot, rd.accept(off).handle());
        return;
      case RecordKind.Reject: {
        const r = rd.reject(off);
        const names: string[] = [];
        const values: string[] = [];
        // Values past their own vector (one shorter than the names) are not read: '' instead.
        const nv = r.headerValuesLength();
        for (let i = 0; i < r.headerNamesLength(); i++) {
          names.push(r.headerNames(i));
          values.push(i < nv ? r.headerValues(i) : '');
        }
        const body = r.bodyArray();
        this.reject(slot, r.handle(), r.status(), names, values, body === null ? '' : utf8d.decode(body));
        return;
      }
      case ControlKind.BarrierAck: {
        const d = slot.outbound.data;
        const seq = (d[off + 4]! | (d[off + 5]! << 8) | (d[off + 6]! << 16) | (d[off + 7]! << 24)) >>> 0;
        const w = slot.barrierWaiters.get(seq);
        if (w !== undefined) {
          slot.barrierWaiters.delete(seq);
          w();
        }
        return;
      }
      default:
        // A kind the I/O thread does not know: a bug, never client input. Count, do not crash.
        this.counters.drop('badCommand');
    }
  }

  /** Topic subscribers on this node: uWS sockets and connector clients. */
  readonly subscribers = (topic: string): number =>
    (this.app as unknown as { numSubscribers(t: string): number }).numSubscribers(topic) + (this.host?.registry.count(topic) ?? 0);

  /**
   * Publish to every local subscriber (uWS and connector clients) except handle `exclude`
   * (0 = nobody), and buffer it for detached sessions subscribed to the topic.
   */
  publish(topic: string, bytes: Uint8Array, binary: boolean, exclude: number): void {
    this.counters.publishes++;
    const ex = exclude !== 0 && this.alloc.isCurrent(exclude) ? this.sockets.get(this.alloc.fdOf(exclude)) : undefined;
    const h = this.host;
    // uWS's topic tree: ws.publish reaches every uWS subscriber except that socket.
    if (ex !== undefined && !(ex instanceof ClientSock)) ex.publish(topic, bytes, binary);
    else this.app.publish(topic, bytes, binary);
    // Connector clients' topics.
    if (h !== null && h.registry.topics.size !== 0) {
      h.registry.publish(topic, bytes, binary, ex instanceof ClientSock ? ex : null, this.onDropped);
    }
    if (h !== null && h.sessions.hasDetached) h.sessions.capturePublish(topic, bytes, binary, exclude);
  }

  private readonly onDropped = (handle: number): void => { this.counters.drop('backpressure', handle); };

  /**
   * Upgrades whose client went away (aborted, or 408) while their hooks still run in the worker,
   * by handle: their fd is free, but each still counts against maxConnections until
   * the worker's late answer arrives (the hooks are real work), and that answer is expected, not
   * a stale command.
   */
  readonly orphanedUpgrades = new Map<number, PendingUpgrade>();

  private takePending(handle: number): PendingUpgrade | undefined {
    const fd = this.alloc.fdOf(handle);
    const p = this.pending.get(fd);
    if (p === undefined || p.handle !== handle) {
      const o = this.orphanedUpgrades.size !== 0 ? this.orphanedUpgrades.get(handle) : undefined;
      if (o !== undefined) {
        // The answer of an orphaned upgrade: expected, not stale; a resume's session goes on.
        this.orphanedUpgrades.delete(handle);
        this.host?.pendingGone(o);
        return undefined;
      }
      this.counters.drop('staleHandle');
      return undefined;
    }
    this.pending.delete(fd);
    if (p.timer !== null) clearTimeout(p.timer);
    return p;
  }

  /** `sync`: called inside uWS's upgrade callback (no hook ran), so res.upgrade needs no cork. */
  accept(slot: Slot, handle: number, sync = false): void {
    const p = this.takePending(handle);
    if (p === undefined) return;
    if (p.aborted || this.closing) {
      // (an aborted upgrade was counted when it was reported)
      if (!p.aborted) this.counters.drop('shutdown', handle);
      refusePending(p, 503, 'server shutting down');
      this.alloc.release(this.alloc.fdOf(handle));
      this.host?.pendingGone(p);
      // The worker holds state for this handle: tell it the connection is gone.
      slot.close(handle, CloseCode.ABNORMAL, new Uint8Array(0));
      return;
    }
    const ud: SocketData = {
      fd: this.alloc.fdOf(handle), handle, slot: p.slot, slotGen: p.slotGen, module: p.module, closed: false,
      tokens: this.rateBurst, refilledAt: 0, shedTokens: this.shedBurst, shedAt: 0,
      remoteAddress: p.remoteAddress, url: p.url, connectedAt: Date.now(), handshakeMs: performance.now() - p.startedAt,
      transport: p.client === null ? 'websocket' : '', uid: null, rooms: null, session: null, resumeOf: p.resume, unconfirmed: false,
      sentAll: 0,
    };
    this.counters.upgradesAccepted++;
    if (p.client !== null) {
      this.host!.acceptClient(p, ud);
      return;
    }
    this.acceptArgs = p;
    this.acceptData = ud;
    // Not res.cork(): see cork-carrier.ts for the uWS bug that avoids.
    if (sync) this.corkedAccept();
    else if (this.carrier === null || !this.carrier.cork(this.corkedAccept)) p.res!.cork(this.corkedAccept);
    this.acceptArgs = null;
    this.acceptData = null;
    // uWS runs the open handler inside upgrade(); a resume that did not open (client gone) must not stay pending.
    if (p.resume !== null && p.resume.resuming) this.host?.pendingGone(p);
  }

  reject(_slot: Slot, handle: number, status: number, names: string[], values: string[], body: string): void {
    const p = this.takePending(handle);
    if (p === undefined) return;
    this.alloc.release(this.alloc.fdOf(handle));
    this.counters.upgradesRejected++;
    this.host?.pendingGone(p);
    refusePending(p, status, body, 'RW_ERR_UPGRADE_REJECTED', names, values);
  }
}
