/**
 * Raw TCP connector with mydog-style framing, on the I/O thread (node:net).
 *
 * Wire format: every frame is
 *
 *   [u32 BE length][u8 type][payload]      length = 1 + payload bytes (it counts the type byte)
 *
 * Types (TcpFrameType): 1 handshake, 2 message, 3 heartbeat, 4 kick (server → client, then the
 * server ends the socket; payload JSON `{"code":number,"reason":string,"error"?:string}`: `code`
 * is the WebSocket close code, `error` the stable RW_ERR_* code when the connector closed the
 * client for a protocol error).
 *
 * Protocol:
 * 1. The client's first frame is a handshake whose payload is JSON
 *    `{"path":"/chat/lobby","query"?:string,"headers"?:{name:value}}`. It must arrive within
 *    handshakeTimeoutMs and be at most maxHandshakeBytes (header included), else the server
 *    replies `{"code":408|413,"error":"RW_ERR_TCP_HANDSHAKE",...}` and closes.
 * 2. The server runs the upgrade hooks (`manager.addClient`) and replies with a handshake frame:
 *    `{"code":200,"session":{fd,handle},"routes":{event:id},"routeHash":hex,"codec":..,"heartbeat":ms}`
 *    or `{"code":status,"error":code,"message":text}` followed by close. Frames the client
 *    pipelined behind its handshake are handled once it is accepted.
 * 3. Then message frames flow both ways (payload = the module codec's bytes); a heartbeat frame
 *    from the client is echoed. After a send() that returned BACKPRESSURE, `manager.drain` is
 *    called once the socket's write queue is empty (the module's onDrain hooks run). A client
 *    that sends no byte for 2 × heartbeatMs is dropped (socket destroyed: the peer is presumed
 *    gone); bytes of a frame still arriving count, so a big frame may be uploaded slowly.
 *
 * Protocol errors (unknown type, length 0, bad handshake, oversized frame) close only that
 * connection, after `manager.reportError`: with a handshake reply `{code:400|413,error,...}`
 * before acceptance, with a kick (1002, or 1009 for an oversized frame) after it.
 *
 * Every client handed to `addClient` gets exactly one `removeClient`, as soon as it is gone for
 * this connector: its socket closed or its peer sent a FIN (1006 when the peer went away, else
 * the code the server closed it with), or the connector closed it itself (a protocol error, a
 * silent client, a refused handshake) without waiting for the peer's FIN, as uWS reports a
 * WebSocket it closes. A close with 1006 from the core (closeOnBackpressureLimit) destroys the
 * socket at once, with no kick frame.
 * A removal while `addClient` is pending aborts the upgrade (the core settles it with a refusal).
 */
import { createServer, connect as netConnect, type AddressInfo, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  SendStatus,
  type AddClientResult,
  type ClientManager,
  type ClientRequest,
  type ClientSession,
  type Connector,
  type ConnectorClient,
} from '../connector.js';
import { ClientClosedError, ListenError, ServerStateError, intOption, invalidOption, onlyKnownOptions } from '../../shared/errors.js';

export const TcpFrameType = { HANDSHAKE: 1, MESSAGE: 2, HEARTBEAT: 3, KICK: 4 } as const;
export type TcpFrameType = (typeof TcpFrameType)[keyof typeof TcpFrameType];

/** Bytes before the payload: u32 length + u8 type. */
export const TCP_HEADER_BYTES = 5;

/** Codes this connector passes to `manager.reportError`. */
export const TcpErrorCodes = {
  HANDSHAKE: 'RW_ERR_TCP_HANDSHAKE',
  HEARTBEAT: 'RW_ERR_TCP_HEARTBEAT',
  BAD_FRAME: 'RW_ERR_TCP_BAD_FRAME',
  FRAME_TOO_LARGE: 'RW_ERR_TCP_FRAME_TOO_LARGE',
} as const;
export type TcpErrorCode = (typeof TcpErrorCodes)[keyof typeof TcpErrorCodes];

export interface TcpFrame {
  readonly type: number;
  readonly payload: Buffer;
}

/** Why a TcpFrameDecoder stopped: a header announced length 0 or a payload over its limit. */
export interface TcpFrameError {
  readonly code: typeof TcpErrorCodes.BAD_FRAME | typeof TcpErrorCodes.FRAME_TOO_LARGE;
  readonly message: string;
}

/** One frame in one buffer (header and payload together, so a send is one write). */
export function encodeTcpFrame(type: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(TCP_HEADER_BYTES + payload.length);
  out.writeUInt32BE(payload.length + 1, 0);
  out[4] = type;
  out.set(payload, TCP_HEADER_BYTES);
  return out;
}

/** First allocation for a frame split across chunks; the buffer grows (doubling) as bytes arrive. */
const INITIAL_BODY_BYTES = 64 * 1024;

/**
 * Streaming decoder: `push(chunk)` returns the frames the chunk completes, in order. A frame
 * wholly inside one chunk is returned as a view of it (no copy); only a frame split across
 * chunks is assembled in its own buffer, sized by the bytes that have arrived (64 KiB at
 * first, doubling as more come: at most twice what arrived), never by what the header announces
 * alone: a peer that sends a header claiming maxPayloadBytes does not make the server reserve
 * them. A bad header is
 * reported as soon as it is read, before any of its body is buffered: `error` is set, the
 * frames before it are still returned, and every later push returns nothing.
 *
 * The first frame may have its own limit (the handshake's), applied to it alone even when
 * later frames arrive in the same chunk.
 */
export class TcpFrameDecoder {
  readonly maxPayloadBytes: number;
  /** Set once a bad header was read; the stream is unusable from there on. */
  error: TcpFrameError | null = null;
  /** Limit for the next header: the first frame's, then maxPayloadBytes. */
  #limit: number;
  #head = Buffer.allocUnsafe(TCP_HEADER_BYTES);
  #headLen = 0;
  #type = 0;
  /** The frame being assembled: grows up to #size bytes. */
  #body: Buffer | null = null;
  /** Payload bytes its header announced. */
  #size = 0;
  #bodyLen = 0;

  constructor(maxPayloadBytes: number, firstMaxPayloadBytes = maxPayloadBytes) {
    this.maxPayloadBytes = maxPayloadBytes;
    this.#limit = firstMaxPayloadBytes;
  }

  /** Bytes of the frame being assembled (header included) as far as known: its full size once the header is read. */
  get pendingBytes(): number {
    return this.#body === null ? this.#headLen : TCP_HEADER_BYTES + this.#size;
  }

  /** Bytes allocated for the frame being assembled (0 when none is). */
  get allocatedBytes(): number {
    return this.#body === null ? 0 : this.#body.length;
  }

  push(chunk: Buffer): TcpFrame[] {
    const frames: TcpFrame[] = [];
    if (this.error !== null) return frames;
    const end = chunk.length;
    let off = 0;
    while (off < end) {
      if (this.#body === null) {
        let length: number;
        let type: number;
        if (this.#headLen === 0 && end - off >= TCP_HEADER_BYTES) {
          length = chunk.readUInt32BE(off);
          type = chunk[off + 4]!;
          off += TCP_HEADER_BYTES;
        } else {
          const n = Math.min(TCP_HEADER_BYTES - this.#headLen, end - off);
          chunk.copy(this.#head, this.#headLen, off, off + n);
          this.#headLen += n;
          off += n;
          if (this.#headLen < TCP_HEADER_BYTES) break;
          this.#headLen = 0;
          length = this.#head.readUInt32BE(0);
          type = this.#head[4]!;
        }
        if (length === 0) {
          this.error = { code: TcpErrorCodes.BAD_FRAME, message: 'frame length 0 (it must count the type byte)' };
          return frames;
        }
        const size = length - 1;
        if (size > this.#limit) {
          this.error = { code: TcpErrorCodes.FRAME_TOO_LARGE, message: `frame payload of ${size} bytes exceeds ${this.#limit}` };
          return frames;
        }
        this.#limit = this.maxPayloadBytes;
        if (end - off >= size) {
          frames.push({ type, payload: chunk.subarray(off, off + size) });
          off += size;
          continue;
        }
        this.#type = type;
        this.#size = size;
        this.#body = Buffer.allocUnsafe(Math.min(size, Math.max(INITIAL_BODY_BYTES, end - off)));
        this.#bodyLen = 0;
      }
      let body = this.#body;
      const n = Math.min(this.#size - this.#bodyLen, end - off);
      if (this.#bodyLen + n > body.length) {
        // Capped at the announced size, so a complete frame's buffer is exactly its payload.
        const grown = Buffer.allocUnsafe(Math.min(this.#size, Math.max(2 * body.length, this.#bodyLen + n)));
        body.copy(grown, 0, 0, this.#bodyLen);
        this.#body = body = grown;
      }
      chunk.copy(body, this.#bodyLen, off, off + n);
      this.#bodyLen += n;
      off += n;
      if (this.#bodyLen === this.#size) {
        frames.push({ type: this.#type, payload: body });
        this.#body = null;
      }
    }
    return frames;
  }
}

export interface TcpConnectorOptions {
  /** Port to listen on; 0 picks a free one (read it back from `connector.port`). */
  port: number;
  /** Default '127.0.0.1'. */
  host?: string;
  /** Heartbeat period announced to clients; a client silent for twice this is dropped. Default 25000. */
  heartbeatMs?: number;
  /** Largest frame payload a client may send. Default 64 KiB. */
  maxFrameBytes?: number;
  /** Time a new connection has to deliver its handshake frame. Default 5000. */
  handshakeTimeoutMs?: number;
  /** Largest handshake frame, header included. Default 4096. */
  maxHandshakeBytes?: number;
  /**
   * Bytes queued for a client beyond which `send()` returns DROPPED. Default 1 MiB. The module's
   * `maxBackpressure` (and `closeOnBackpressureLimit`) apply first, in the core, as for a WebSocket.
   */
  maxBufferedBytes?: number;
}

type ResolvedOptions = Required<TcpConnectorOptions>;

const MAX_TIMER_MS = 2 ** 31 - 1;
/** After stop(): how long a closing client has to send its FIN before its socket is destroyed. */
const STOP_GRACE_MS = 1000;
/**
 * A socket closing (kicked, refused, or its peer sent its FIN) whose peer has not closed it this
 * long after is destroyed. The core no longer counts it (it left at once: maxConnections, fds), so
 * it must not hold its queued bytes (up to maxBufferedBytes) until the sweep's 2 × heartbeatMs; a
 * peer that reads has had time for the last frame and what was queued before it.
 */
const CLOSE_GRACE_MS = 4000;

const TCP_OPTIONS: readonly string[] = ['port', 'host', 'heartbeatMs', 'maxFrameBytes', 'handshakeTimeoutMs', 'maxHandshakeBytes', 'maxBufferedBytes'];

function resolveOptions(options: TcpConnectorOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  onlyKnownOptions(options, TCP_OPTIONS);
  if (options.port === undefined) throw invalidOption('port', 'an integer between 0 and 65535');
  const host = options.host ?? '127.0.0.1';
  if (typeof host !== 'string' || host.length === 0) throw invalidOption('host', 'a non-empty string');
  const maxFrameBytes = intOption(options.maxFrameBytes, 'maxFrameBytes', 64 * 1024, 1, 2 ** 30);
  return {
    port: intOption(options.port, 'port', 0, 0, 65535),
    host,
    heartbeatMs: intOption(options.heartbeatMs, 'heartbeatMs', 25_000, 1, Math.floor(MAX_TIMER_MS / 2)),
    maxFrameBytes,
    handshakeTimeoutMs: intOption(options.handshakeTimeoutMs, 'handshakeTimeoutMs', 5000, 1, MAX_TIMER_MS),
    maxHandshakeBytes: intOption(options.maxHandshakeBytes, 'maxHandshakeBytes', 4096, 16, 1024 * 1024),
    maxBufferedBytes: intOption(options.maxBufferedBytes, 'maxBufferedBytes', 1024 * 1024, 0, Number.MAX_SAFE_INTEGER),
  };
}

/** What the connections of one started connector share. */
interface Shared {
  readonly manager: ClientManager;
  readonly opts: ResolvedOptions;
  readonly conns: Set<TcpConnection>;
  stopped: boolean;
  /** Called when the last connection closes after stop(), to end the sweep. */
  onDrained: () => void;
}

// Connection states, in order: only ever move forward.
const AWAIT = 0; // connected, waiting for the handshake frame
const ADDING = 1; // handshake received, addClient in flight; socket paused
const OPEN = 2;
const CLOSING = 3; // we ended the socket; input is discarded
const CLOSED = 4;

const HEARTBEAT_FRAME = encodeTcpFrame(TcpFrameType.HEARTBEAT, new Uint8Array(0));

function jsonFrame(type: number, value: unknown): Buffer {
  return encodeTcpFrame(type, Buffer.from(JSON.stringify(value)));
}

/** The handshake payload as a ClientRequest, or why it is not one. */
function parseHandshake(payload: Buffer): ClientRequest | string {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    return 'handshake payload is not JSON';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'handshake payload must be a JSON object';
  const { path, query, headers } = value as Record<string, unknown>;
  if (typeof path !== 'string' || !path.startsWith('/')) return 'handshake "path" must be a string starting with "/"';
  if (query !== undefined && typeof query !== 'string') return 'handshake "query" must be a string';
  if (headers === undefined) return { path, query };
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) return 'handshake "headers" must be an object';
  // Null prototype: a "__proto__" header is data, not a prototype change.
  const lower: Record<string, string> = Object.create(null);
  for (const [name, v] of Object.entries(headers)) {
    if (typeof v !== 'string') return `handshake header ${JSON.stringify(name)} must be a string`;
    lower[name.toLowerCase()] = v;
  }
  return { path, query, headers: lower };
}

const kConn = Symbol('ringwire.tcpConnection');
type TaggedSocket = Socket & { [kConn]: TcpConnection };

// Socket listeners shared by every connection (`this` is the socket), so accepting a client
// creates no closures.
function onSocketData(this: TaggedSocket, chunk: Buffer): void {
  this[kConn].onData(chunk);
}
function onSocketClose(this: TaggedSocket): void {
  this[kConn].onClose();
}
function onSocketEnd(this: TaggedSocket): void {
  this[kConn].onEnd();
}
function onSocketError(): void {
  // 'close' follows every error; that is where the client is removed.
}

/** One TCP client as the core sees it. */
class TcpConnection implements ConnectorClient {
  readonly transport = 'tcp';
  session: ClientSession | null = null;
  readonly remoteAddress: string;
  state = AWAIT;
  /** performance.now() of the last chunk received once the handshake is in; the accept time before. */
  lastSeen = performance.now();
  readonly socket: Socket;
  readonly #shared: Shared;
  readonly #decoder: TcpFrameDecoder;
  /** Whether message payloads are binary (module codec other than 'json'). */
  #binary = true;
  #path = '';
  /** addClient was called and one removeClient is owed. */
  #owed = false;
  #closeCode = 1006;
  #closeReason = '';
  /** destroyAfterGrace's timer, cleared when the socket closes (it would hold the socket till it fires). */
  #grace: NodeJS.Timeout | null = null;
  /** Frames pipelined behind the handshake, handled once the client is accepted. */
  #stash: TcpFrame[] | null = null;
  /** A send() returned BACKPRESSURE: `manager.drain` is owed once the write queue is empty. */
  #drainOwed = false;
  /**
   * Write callback of sends and heartbeat echoes (one per connection, created on its first
   * write): the last write queued always carries it, so the queue emptying is always seen,
   * even when it never reached the socket's high-water mark (no 'drain' event then).
   */
  #written: (() => void) | null = null;
  /** close() called while addClient was pending and the client could not be answered yet. */
  #pendingClose: { code: number; reason: string } | null = null;

  constructor(socket: Socket, shared: Shared) {
    this.socket = socket;
    this.#shared = shared;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.#decoder = new TcpFrameDecoder(shared.opts.maxFrameBytes, shared.opts.maxHandshakeBytes - TCP_HEADER_BYTES);
  }

  send(data: Uint8Array, _binary: boolean): number {
    if (this.state !== OPEN) {
      if (this.state !== ADDING || this.session === null || this.#shared.stopped) return SendStatus.DROPPED;
      this.#open(this.session);
    }
    const socket = this.socket;
    if (socket.writableLength > this.#shared.opts.maxBufferedBytes) return SendStatus.DROPPED;
    socket.write(encodeTcpFrame(TcpFrameType.MESSAGE, data), this.#written ??= this.#onWritten.bind(this));
    // Like uWS: SUCCESS when the kernel took it all, BACKPRESSURE when some of it is queued
    // (then manager.drain follows once the queue is empty).
    if (socket.writableLength === 0) return SendStatus.SUCCESS;
    this.#drainOwed = true;
    return SendStatus.BACKPRESSURE;
  }

  /** A write completed (never synchronously within send()): tell the core once the queue is empty. */
  #onWritten(): void {
    if (!this.#drainOwed || this.socket.writableLength !== 0) return;
    this.#drainOwed = false;
    if (this.state === OPEN) this.#shared.manager.drain(this);
  }

  close(code: number, reason: string): void {
    if (this.state >= CLOSING) return;
    if (this.state === ADDING) {
      if (this.session === null || this.#shared.stopped) {
        // Not accepted (yet): #added answers the handshake (a refusal) and ends the socket.
        this.#pendingClose ??= { code, reason };
        return;
      }
      // Accepted, but addClient's resolution has not reached us: the client still gets its
      // handshake reply (and whatever was sent) before the kick, as a WebSocket would.
      this.#open(this.session);
    }
    if (code === 1006) {
      // The core cut the client off (closeOnBackpressureLimit: it reads nothing): a kick would
      // only queue behind what it does not read, so the socket is destroyed, as uWS closes such
      // a WebSocket without a close frame.
      this.state = CLOSING;
      this.#closeCode = code;
      this.#closeReason = reason;
      this.#stash = null;
      this.socket.destroy();
      return;
    }
    this.#end(jsonFrame(TcpFrameType.KICK, { code, reason }), code, reason);
  }

  bufferedAmount(): number {
    return this.socket.writableLength;
  }

  onData(chunk: Buffer): void {
    if (this.state >= CLOSING) return;
    // Any bytes show the peer is alive (a big frame uploaded slowly completes no frame for a
    // while). Before the handshake, lastSeen stays the accept time: the handshake deadline
    // counts from there, not from the last trickled byte.
    if (this.state !== AWAIT) this.lastSeen = performance.now();
    const decoder = this.#decoder;
    const frames = decoder.push(chunk);
    for (let i = 0; i < frames.length; i++) {
      const frame = frames[i]!;
      if (this.state === ADDING) (this.#stash ??= []).push(frame);
      else if (this.state < CLOSING) this.#onFrame(frame);
      else return;
    }
    const err = decoder.error;
    if (err === null) return;
    const tooLarge = err.code === TcpErrorCodes.FRAME_TOO_LARGE;
    if (tooLarge && this.state === AWAIT) {
      // Still the first frame: the handshake's limit applied.
      this.fail(TcpErrorCodes.HANDSHAKE, `handshake over ${this.#shared.opts.maxHandshakeBytes} bytes: ${err.message}`, 413);
    } else {
      this.fail(err.code, err.message, tooLarge ? 413 : 400);
    }
  }

  /**
   * The peer sent its FIN. It is gone for the core at once (1006, as uWS closes a WebSocket on a
   * FIN): otherwise one that half-closes while reading nothing, with data queued for it, would
   * stay live until the heartbeat timeout, since the socket cannot close before that data is
   * written. Node ends our side (allowHalfOpen is off), so what is queued still reaches a peer
   * that reads; one that does not is destroyed after a grace (destroyAfterGrace).
   */
  onEnd(): void {
    if (this.state !== ADDING && this.state !== OPEN) return;
    this.state = CLOSING;
    this.#stash = null;
    this.lastSeen = performance.now();
    this.#remove();
    this.destroyAfterGrace();
  }

  onClose(): void {
    const shared = this.#shared;
    shared.conns.delete(this);
    this.state = CLOSED;
    this.#stash = null;
    if (this.#grace !== null) {
      clearTimeout(this.#grace);
      this.#grace = null;
    }
    // The peer went away, even while its upgrade hooks run (the core aborts the upgrade then,
    // as for a WebSocket client: its fd is freed at once and no open hook runs for it).
    this.#remove();
    if (shared.stopped && shared.conns.size === 0) shared.onDrained();
  }

  /**
   * Report a protocol error and close: before the client is accepted with a handshake reply
   * carrying `status`, afterwards with a kick (1009 for an oversized frame, else 1002).
   */
  fail(code: TcpErrorCode, message: string, status: number): void {
    if (this.state >= CLOSING) return;
    this.#shared.manager.reportError(this, code, message);
    const wsCode = code === TcpErrorCodes.FRAME_TOO_LARGE ? 1009 : 1002;
    if (this.state === OPEN) this.#end(jsonFrame(TcpFrameType.KICK, { code: wsCode, reason: message, error: code }), wsCode, message);
    else this.#refuse(status, code, message, wsCode);
    // Gone for the core now (disconnect hooks, its place under maxConnections, sends to it), not
    // when the peer sends its FIN: one that never does would hold it for 2 × heartbeatMs.
    this.#remove();
  }

  /** The peer stopped sending: it is presumed gone, so the socket is destroyed rather than ended. */
  heartbeatTimeout(idleMs: number): void {
    this.#shared.manager.reportError(this, TcpErrorCodes.HEARTBEAT, `no frame for ${Math.round(idleMs)} ms`);
    this.state = CLOSING;
    this.#closeReason = 'heartbeat timeout';
    this.socket.destroy();
    this.#remove();
  }

  /** A client still waiting for its handshake when the connector stops; the core never saw it. */
  refuseClosing(): void {
    this.#refuse(503, 'RW_ERR_SERVER_STATE', 'server is closing', 1001);
  }

  #onFrame(frame: TcpFrame): void {
    if (this.state === AWAIT) {
      if (frame.type === TcpFrameType.HANDSHAKE) this.#handshake(frame.payload);
      else this.fail(TcpErrorCodes.BAD_FRAME, `expected a handshake frame, got type ${frame.type}`, 400);
      return;
    }
    if (frame.type === TcpFrameType.MESSAGE) {
      this.#shared.manager.handleMsg(this, frame.payload, this.#binary);
    } else if (frame.type === TcpFrameType.HEARTBEAT) {
      // Echoed only while the client reads what it is sent: one that sends heartbeats but never
      // reads must not grow this socket's write queue past maxBufferedBytes.
      // It carries the write callback too: it may be the last write queued after a send's backpressure.
      if (this.socket.writableLength <= this.#shared.opts.maxBufferedBytes) {
        this.socket.write(HEARTBEAT_FRAME, this.#written ??= this.#onWritten.bind(this));
      }
    } else {
      this.fail(TcpErrorCodes.BAD_FRAME, `unexpected frame type ${frame.type}`, 400);
    }
  }

  #handshake(payload: Buffer): void {
    const req = parseHandshake(payload);
    if (typeof req === 'string') {
      this.fail(TcpErrorCodes.BAD_FRAME, req, 400);
      return;
    }
    this.state = ADDING;
    this.#path = req.path;
    this.#owed = true;
    // Hold further input until the hooks answer: pipelined frames wait in the socket buffer.
    this.socket.pause();
    this.#shared.manager.addClient(this, req).then(
      (result) => this.#added(result),
      (err: unknown) => {
        const message = `addClient failed: ${err instanceof Error ? err.message : String(err)}`;
        this.#shared.manager.reportError(this, TcpErrorCodes.HANDSHAKE, message);
        this.#added({ ok: false, status: 500, code: TcpErrorCodes.HANDSHAKE, message });
      },
    );
  }

  #added(result: AddClientResult): void {
    if (this.state === ADDING) {
      const pc = this.#pendingClose;
      this.#pendingClose = null;
      if (!result.ok) this.#refuse(result.status, result.code, result.message, pc?.code ?? 1008);
      else if (this.#shared.stopped) this.#refuse(503, 'RW_ERR_SERVER_STATE', 'server is closing', pc?.code ?? 1001);
      else {
        this.#open(result.session);
        if (pc !== null) this.#end(jsonFrame(TcpFrameType.KICK, { code: pc.code, reason: pc.reason }), pc.code, pc.reason);
      }
    }
    if (this.state !== OPEN) {
      // Refused, or closed/failed while the hooks ran: only the removal is left to do (if the
      // peer left or the connector failed it meanwhile, it was removed then).
      this.#remove();
      return;
    }
    const stash = this.#stash;
    this.#stash = null;
    if (stash !== null) {
      for (let i = 0; i < stash.length && this.state === OPEN; i++) this.#onFrame(stash[i]!);
    }
    if (this.state === OPEN) this.socket.resume();
  }

  /**
   * Send the handshake reply and go live. Normally called when addClient resolves; `send()`
   * calls it first when the core addresses a client it has accepted before that resolution
   * reaches us, so the reply still precedes the message. Input stays paused until `#added`.
   */
  #open(session: ClientSession): void {
    const { manager, opts } = this.#shared;
    const table = manager.routes(this.#path);
    const codec = table?.codec ?? 'binary';
    this.#binary = codec !== 'json';
    this.state = OPEN;
    this.lastSeen = performance.now();
    this.socket.write(jsonFrame(TcpFrameType.HANDSHAKE, {
      code: 200,
      session: { fd: session.fd, handle: session.handle },
      routes: table?.routes ?? {},
      routeHash: table?.hash ?? '',
      codec,
      heartbeat: opts.heartbeatMs,
    }));
  }

  #refuse(status: number, error: string, message: string, closeCode: number): void {
    this.#end(jsonFrame(TcpFrameType.HANDSHAKE, { code: status, error, message }), closeCode, message);
  }

  /**
   * Write a last frame and end the socket. Reading goes on (discarding) so the peer's FIN is
   * seen and 'close' fires; a peer that never closes is destroyed after a grace (destroyAfterGrace).
   */
  #end(last: Buffer, code: number, reason: string): void {
    this.state = CLOSING;
    this.#closeCode = code;
    this.#closeReason = reason;
    this.#stash = null;
    this.lastSeen = performance.now();
    this.socket.end(last);
    this.socket.resume();
    // A peer that never sends its FIN must not hold the socket (nor, after stop(), the process)
    // for the sweep's 2 × heartbeatMs: it gets a grace, then the socket is destroyed.
    this.destroyAfterGrace();
  }

  /**
   * A closing socket: destroyed after a grace if its peer has not closed it by then (CLOSE_GRACE_MS,
   * or the shorter STOP_GRACE_MS once the connector is stopping; never longer than the sweep's
   * 2 × heartbeatMs). stop() calls it again for the connections already closing.
   */
  destroyAfterGrace(): void {
    const socket = this.socket;
    const shared = this.#shared;
    const ms = shared.stopped ? Math.min(STOP_GRACE_MS, shared.opts.heartbeatMs) : Math.min(CLOSE_GRACE_MS, 2 * shared.opts.heartbeatMs);
    if (this.#grace !== null) clearTimeout(this.#grace); // stop() shortens a running grace
    this.#grace = setTimeout(() => { socket.destroy(); }, ms).unref();
  }

  /**
   * The one removeClient, with the close code and reason. Never called from a method the core
   * called (close() leaves it to the socket's close: the core has done its part by then).
   */
  #remove(): void {
    if (this.#owed) {
      this.#owed = false;
      this.#shared.manager.removeClient(this, this.#closeCode, this.#closeReason);
    }
  }
}

/**
 * Raw TCP transport. Timers: one unref'd sweep interval per connector checks every
 * connection's handshake deadline and idle time (a number per connection, updated once per
 * received chunk), instead of one timer per client.
 */
export class TcpConnector implements Connector {
  readonly name = 'tcp';
  readonly #opts: ResolvedOptions;
  #server: Server | null = null;
  #shared: Shared | null = null;
  #sweep: NodeJS.Timeout | null = null;
  #port = 0;

  constructor(options: TcpConnectorOptions) {
    this.#opts = resolveOptions(options);
  }

  /** The bound port (useful with `port: 0`); 0 before `start()`. */
  get port(): number {
    return this.#port;
  }

  start(manager: ClientManager): Promise<void> {
    if (this.#shared !== null) return Promise.reject(new ServerStateError('TcpConnector already started'));
    const opts = this.#opts;
    const shared: Shared = {
      manager,
      opts,
      conns: new Set(),
      stopped: false,
      onDrained: () => this.#stopSweep(),
    };
    this.#shared = shared;
    const server = createServer({ noDelay: true }, (socket) => {
      const conn = new TcpConnection(socket, shared);
      (socket as TaggedSocket)[kConn] = conn;
      shared.conns.add(conn);
      socket.on('data', onSocketData);
      socket.on('end', onSocketEnd);
      socket.on('close', onSocketClose);
      socket.on('error', onSocketError);
    });
    this.#server = server;
    return new Promise((resolve, reject) => {
      const onListenError = (err: Error): void => {
        this.#server = null;
        this.#shared = null;
        reject(new ListenError(`tcp connector cannot listen on ${opts.host}:${opts.port}: ${err.message}`));
      };
      server.once('error', onListenError);
      server.listen(opts.port, opts.host, () => {
        server.off('error', onListenError);
        // Accept failures (EMFILE, ...) must not crash the process.
        server.on('error', (err) => manager.reportError(null, 'RW_ERR_LISTEN', `tcp connector: ${err.message}`));
        this.#port = (server.address() as AddressInfo).port;
        const period = Math.max(1, Math.floor(Math.min(2 * opts.heartbeatMs, opts.handshakeTimeoutMs) / 4));
        this.#sweep = setInterval(() => this.#check(shared), period).unref();
        resolve();
      });
    });
  }

  /**
   * Closes the listening socket and turns away clients still owing a handshake (the core never
   * saw them); sockets already closing get the same short grace for their peer's FIN. It does not wait for the server's 'close' event, which only fires after every
   * connection is gone: the core closes the accepted ones after this resolves. The sweep runs
   * on (unref'd) until the last connection closes.
   */
  async stop(): Promise<void> {
    const server = this.#server;
    const shared = this.#shared;
    if (server === null || shared === null) return;
    this.#server = null;
    shared.stopped = true;
    server.close();
    for (const conn of shared.conns) {
      if (conn.state === AWAIT) conn.refuseClosing(); // closes with the grace below
      else if (conn.state === CLOSING) conn.destroyAfterGrace(); // ended before stop(): same grace
    }
    if (shared.conns.size === 0) this.#stopSweep();
  }

  #stopSweep(): void {
    if (this.#sweep !== null) clearInterval(this.#sweep);
    this.#sweep = null;
  }

  #check(shared: Shared): void {
    const now = performance.now();
    const { handshakeTimeoutMs } = shared.opts;
    const idleLimit = 2 * shared.opts.heartbeatMs;
    for (const conn of shared.conns) {
      const idle = now - conn.lastSeen;
      if (conn.state === AWAIT) {
        if (idle >= handshakeTimeoutMs) conn.fail(TcpErrorCodes.HANDSHAKE, `no handshake within ${handshakeTimeoutMs} ms`, 408);
      } else if (idle >= idleLimit) {
        if (conn.state === OPEN) conn.heartbeatTimeout(idle);
        else if (conn.state === CLOSING) conn.socket.destroy();
      }
    }
  }
}

/** The server's handshake reply. */
export type TcpHandshakeReply =
  | {
    readonly code: 200;
    readonly session: { readonly fd: number; readonly handle: number };
    readonly routes: Readonly<Record<string, number>>;
    readonly routeHash: string;
    readonly codec: 'binary' | 'json' | 'raw';
    readonly heartbeat: number;
  }
  | { readonly code: number; readonly error: string; readonly message: string };

/** Minimal client for tests and examples: frames can be awaited in arrival order. */
export class TcpClient {
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>;
  #socket: Socket | null = null;
  readonly #decoder: TcpFrameDecoder;
  readonly #frames: TcpFrame[] = [];
  readonly #waiters: { resolve: (f: TcpFrame) => void; reject: (e: Error) => void }[] = [];
  #ended = false;
  /** The kick frame's close code and reason, once one arrived. */
  #kick: { code: number; reason: string } | null = null;
  #onClosed!: () => void;

  constructor(maxFrameBytes = 16 * 1024 * 1024) {
    this.#decoder = new TcpFrameDecoder(maxFrameBytes);
    this.closed = new Promise((resolve) => { this.#onClosed = resolve; });
  }

  /** The underlying socket (to write raw bytes in tests). */
  get socket(): Socket {
    if (this.#socket === null) throw new Error('TcpClient is not connected');
    return this.#socket;
  }

  connect(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ host, port, noDelay: true });
      this.#socket = socket;
      socket.once('connect', resolve);
      socket.once('error', reject);
      socket.on('error', onSocketError);
      socket.on('data', (chunk: Buffer) => {
        for (const frame of this.#decoder.push(chunk)) this.#deliver(frame);
        if (this.#decoder.error !== null) socket.destroy();
      });
      socket.on('close', () => {
        this.#ended = true;
        for (const w of this.#waiters.splice(0)) w.reject(this.#closedError());
        this.#onClosed();
      });
    });
  }

  /** Sends the handshake and resolves with the server's reply (whatever its code). */
  async handshake(path: string, query?: string, headers?: Record<string, string>): Promise<TcpHandshakeReply> {
    this.socket.write(jsonFrame(TcpFrameType.HANDSHAKE, { path, query, headers }));
    const frame = await this.next();
    if (frame.type !== TcpFrameType.HANDSHAKE) throw new Error(`expected a handshake reply, got frame type ${frame.type}`);
    return JSON.parse(frame.payload.toString('utf8')) as TcpHandshakeReply;
  }

  send(payload: Uint8Array): void {
    this.socket.write(encodeTcpFrame(TcpFrameType.MESSAGE, payload));
  }

  heartbeat(): void {
    this.socket.write(HEARTBEAT_FRAME);
  }

  /**
   * The next frame from the server; rejects once the connection has closed and no frame is left,
   * with a ClientClosedError (`code` RW_ERR_CLIENT_CLOSED; `closeCode`/`reason` of the kick, if one came).
   */
  next(): Promise<TcpFrame> {
    const frame = this.#frames.shift();
    if (frame !== undefined) return Promise.resolve(frame);
    if (this.#ended) return Promise.reject(this.#closedError());
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  end(): void {
    this.#socket?.end();
  }

  #closedError(): ClientClosedError {
    const k = this.#kick;
    return k === null ? new ClientClosedError('connection closed') : new ClientClosedError('connection closed', k.code, k.reason);
  }

  #deliver(frame: TcpFrame): void {
    if (frame.type === TcpFrameType.KICK) {
      try {
        const k = JSON.parse(frame.payload.toString('utf8')) as { code?: unknown; reason?: unknown };
        this.#kick = { code: typeof k.code === 'number' ? k.code : 1006, reason: typeof k.reason === 'string' ? k.reason : '' };
      } catch {
        // Not JSON: the close stays 1006.
      }
    }
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter.resolve(frame);
    else this.#frames.push(frame);
  }
}
