/**
 * Load-generator child process: `node dist/bench/loadgen/client.js '<ClientConfig JSON>'`, or
 * forked by `runLoad` and configured over IPC.
 *
 * Written so the client is never the bottleneck (uWebSockets' load-generator style):
 * - raw TCP sockets, the HTTP/1.1 upgrade done by hand, frames masked once up front;
 * - one shared read buffer for every socket (`onread`), no Buffer per read;
 * - a fixed window of `inflight` messages per connection: each read that completes k replies
 *   sends k pre-built frames in ONE write (a subarray of the pre-built window, no copy);
 * - per-connection state in typed arrays indexed by connection id, module-level listeners
 *   that find the id through a symbol: no closure per connection or per message;
 * - one clock read per socket read; latency = read time − send time (FIFO per connection).
 * It reports its own CPU use and event-loop utilisation over the measured window.
 *
 * With `handshake` (socket.io), each connection sends the handshake's text frames right after
 * the upgrade and swallows `expectMessages` server messages before it counts as established.
 *
 * IPC protocol: parent → {config}; child connects, → {ready}; parent → {start}; child runs
 * warm-up, → {window start}, window, → {window end}, closes with 1000, → {result}; exits. With argv config it starts as soon
 * as it is connected and prints the result as one JSON line on stdout.
 */
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import {
  FrameParser, type FrameSink, Opcode, buildCloseFrame, buildFrameWindow, buildMaskedFrame,
  buildUpgradeRequest, feedUpgradeResponse, expectedAccept, maskedFrameLength, newWebSocketKey,
} from './frames.js';
import { LatencyHistogram } from './histogram.js';
import type { ChildMessage, ClientConfig, ClientResult, LoadMode, ParentMessage, WindowPhase } from './types.js';

// Connection states (Uint8Array per connection).
// 0: not yet connecting (the zero-filled initial state)
const C_UPGRADING = 1;
const C_OPEN = 2;
const C_CLOSING = 3; // we sent close, waiting for the server
const C_CLOSED = 4;
const C_HANDSHAKE = 5; // upgraded, application handshake (config.handshake) not finished yet

// Process phases.
const P_CONNECTING = 0;
const P_READY = 1;
const P_WARMUP = 2;
const P_MEASURING = 3;
const P_DONE = 4;

const kId = Symbol('loadgen.conn');
type IdSocket = net.Socket & { [kId]: number };

const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

class LoadClient implements FrameSink {
  readonly n: number;
  readonly mode: LoadMode;
  readonly inflight: number;
  readonly frameLen: number;
  /** The length every reply (echo) or delivery (count) must have (-1: any). */
  readonly replyBytes: number;
  readonly window: Buffer;
  readonly closeFrame: Buffer;
  /** Pre-built masked handshake frames (null: no handshake). */
  readonly handshakeFrames: Buffer | null;
  readonly handshakeExpect: number;
  readonly maskKey = randomBytes(4);
  readonly hostHeader: string;

  readonly sockets: (IdSocket | null)[];
  readonly parsers: (FrameParser | null)[];
  readonly state: Uint8Array;
  readonly isSender: Uint8Array;
  /** Handshake messages still to swallow per connection. */
  readonly handshakeLeft: Uint8Array;
  readonly upgradeBuf: (Buffer | null)[];
  readonly accept: (string | null)[];
  /** FIFO of send timestamps (ms, performance.now()) per connection, capacity fifoCap each. */
  readonly fifoCap: number;
  readonly fifoTs: Float64Array;
  readonly fifoHead: Uint32Array;
  readonly fifoLen: Uint32Array;
  /** count mode: messages sent and not yet credited back by a received message. */
  readonly outstanding: Uint32Array;

  phase = P_CONNECTING;
  nextToConnect = 0;
  pendingConnects = 0;
  live = 0;
  established = 0;
  connectTimer: NodeJS.Timeout | null = null;
  closeTimer: NodeJS.Timeout | null = null;

  // Per-read scratch, set before each parser.push.
  now = 0;
  replies = 0;

  // Measurement.
  readonly hist = new LatencyHistogram();
  messages = 0;
  sent = 0;
  errors = 0;
  readonly errorKinds: Record<string, number> = {};
  readonly closeCodes: Record<string, number> = {};
  windowStart = 0;
  windowMs = 0;
  cpuStart: NodeJS.CpuUsage | null = null;
  cpuPercent = 0;
  eluStart: ReturnType<typeof performance.eventLoopUtilization> | null = null;
  elu = 0;

  constructor(readonly cfg: ClientConfig, private readonly onReady: () => void,
    private readonly onResult: (r: ClientResult) => void, private readonly onWindow: (phase: WindowPhase) => void = () => {}) {
    const n = cfg.connections;
    this.n = n;
    this.mode = cfg.mode ?? 'echo';
    this.inflight = cfg.inflight;
    const payload = cfg.payloadHex !== undefined ? Buffer.from(cfg.payloadHex, 'hex')
      : Buffer.from(cfg.payloadBase64 ?? '', 'base64');
    const opcode = cfg.binary === false ? Opcode.TEXT : Opcode.BINARY;
    this.frameLen = maskedFrameLength(payload.length);
    this.replyBytes = cfg.replyBytes ?? -1;
    this.window = buildFrameWindow(opcode, payload, this.maskKey, Math.max(1, this.inflight));
    this.closeFrame = buildCloseFrame(1000, this.maskKey);
    const hs = cfg.handshake;
    this.handshakeExpect = hs === undefined ? 0 : hs.expectMessages;
    this.handshakeFrames = hs === undefined || hs.expectMessages === 0 ? null
      : Buffer.concat(hs.sendText.map((t) => buildMaskedFrame(Opcode.TEXT, Buffer.from(t, 'utf8'), this.maskKey)));
    this.hostHeader = cfg.host.includes(':') ? `[${cfg.host}]:${cfg.port}` : `${cfg.host}:${cfg.port}`;
    this.sockets = new Array<IdSocket | null>(n).fill(null);
    this.parsers = new Array<FrameParser | null>(n).fill(null);
    this.upgradeBuf = new Array<Buffer | null>(n).fill(null);
    this.accept = new Array<string | null>(n).fill(null);
    this.state = new Uint8Array(n);
    this.handshakeLeft = new Uint8Array(n);
    this.isSender = new Uint8Array(n);
    const offset = cfg.connectionOffset ?? 0;
    const senders = cfg.senders ?? Infinity;
    for (let i = 0; i < n; i++) this.isSender[i] = offset + i < senders && this.inflight > 0 ? 1 : 0;
    this.fifoCap = this.mode === 'echo' ? nextPow2(Math.max(1, this.inflight)) : 1;
    this.fifoTs = new Float64Array(this.mode === 'echo' ? n * this.fifoCap : 0);
    this.fifoHead = new Uint32Array(n);
    this.fifoLen = new Uint32Array(n);
    this.outstanding = new Uint32Array(n);
  }

  error(kind: string): void {
    this.errors++;
    this.errorKinds[kind] = (this.errorKinds[kind] ?? 0) + 1;
  }

  // -------------------------------------------------------------------------------- connect

  connectAll(): void {
    const conc = Math.max(1, this.cfg.connectConcurrency ?? 256);
    this.connectTimer = setTimeout(() => this.connectTimedOut(), this.cfg.connectTimeoutMs ?? 30_000);
    while (this.nextToConnect < this.n && this.pendingConnects < conc) this.connectOne();
    this.maybeReady();
  }

  connectOne(): void {
    const id = this.nextToConnect++;
    const addrs = this.cfg.sourceAddresses;
    const g = (this.cfg.connectionOffset ?? 0) + id;
    const opts: net.NetConnectOpts = {
      host: this.cfg.host,
      port: this.cfg.port,
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: onSocketRead },
    };
    if (addrs !== undefined && addrs.length > 0) opts.localAddress = addrs[g % addrs.length]!;
    const key = newWebSocketKey();
    this.accept[id] = expectedAccept(key);
    const sock = net.connect(opts) as IdSocket;
    sock[kId] = id;
    this.sockets[id] = sock;
    this.state[id] = C_UPGRADING;
    this.pendingConnects++;
    this.live++;
    sock.on('error', onSocketError);
    sock.on('close', onSocketClose);
    sock.write(buildUpgradeRequest(this.hostHeader, this.cfg.path, key));
  }

  /** A connection left the UPGRADING state (either way): start the next one. */
  connectSettled(): void {
    this.pendingConnects--;
    if (this.phase === P_CONNECTING && this.nextToConnect < this.n) this.connectOne();
    this.maybeReady();
  }

  maybeReady(): void {
    if (this.phase !== P_CONNECTING || this.pendingConnects > 0 || this.nextToConnect < this.n) return;
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    this.phase = P_READY;
    this.onReady();
  }

  connectTimedOut(): void {
    this.connectTimer = null;
    this.nextToConnect = this.n; // stop opening more
    for (let id = 0; id < this.n; id++) {
      const st = this.state[id];
      if (st === C_UPGRADING || st === C_HANDSHAKE) {
        this.error(st === C_UPGRADING ? 'connect:timeout' : 'handshake:timeout');
        this.state[id] = C_CLOSED;
        this.pendingConnects--;
        this.sockets[id]!.destroy();
      }
    }
    this.maybeReady();
  }

  upgradeData(id: number, sock: IdSocket, nread: number): void {
    const chunk = Buffer.from(READ_BUFFER.subarray(0, nread)); // READ_BUFFER is reused: copy
    const { r, buf } = feedUpgradeResponse(this.upgradeBuf, this.accept, id, chunk);
    if (r.kind === 'incomplete') return;
    if (r.kind === 'error') {
      this.error(r.reason);
      this.state[id] = C_CLOSED;
      sock.destroy();
      this.connectSettled();
      return;
    }
    const parser = new FrameParser(this, id);
    this.parsers[id] = parser;
    if (this.handshakeFrames !== null) {
      // Established (and settled) once the handshake's messages arrived: see handshakeMessage.
      this.state[id] = C_HANDSHAKE;
      this.handshakeLeft[id] = this.handshakeExpect;
      sock.write(this.handshakeFrames);
    } else {
      this.state[id] = C_OPEN;
      this.established++;
    }
    if (r.headerEnd < buf.length) {
      this.now = performance.now();
      this.replies = 0;
      parser.push(buf, r.headerEnd, buf.length);
    }
    if (this.handshakeFrames === null) this.connectSettled();
  }

  /** A server message during the handshake: swallowed; the last one establishes the connection. */
  handshakeMessage(id: number): void {
    const left = this.handshakeLeft[id]! - 1;
    this.handshakeLeft[id] = left;
    if (left > 0) return;
    this.state[id] = C_OPEN;
    this.established++;
    this.connectSettled();
  }

  // -------------------------------------------------------------------------------- run

  start(): void {
    if (this.phase !== P_READY) return;
    const warmup = this.cfg.warmupMs ?? 0;
    this.phase = P_WARMUP;
    const now = performance.now();
    for (let id = 0; id < this.n; id++) {
      if (this.state[id] !== C_OPEN || this.isSender[id] === 0) continue;
      this.sendFrames(id, this.inflight, now);
    }
    if (warmup > 0) setTimeout(() => this.beginWindow(), warmup);
    else this.beginWindow();
  }

  beginWindow(): void {
    this.phase = P_MEASURING;
    this.hist.reset();
    this.messages = 0;
    this.sent = 0;
    this.cpuStart = process.cpuUsage();
    this.eluStart = performance.eventLoopUtilization();
    this.windowStart = performance.now();
    setTimeout(() => this.endWindow(), this.cfg.durationMs);
    this.onWindow('start');
  }

  endWindow(): void {
    const end = performance.now();
    this.phase = P_DONE;
    this.windowMs = end - this.windowStart;
    const cpu = process.cpuUsage(this.cpuStart ?? undefined);
    this.cpuPercent = ((cpu.user + cpu.system) / 1000 / this.windowMs) * 100;
    this.elu = performance.eventLoopUtilization(this.eluStart ?? undefined).utilization;
    this.onWindow('end');
    this.closeAll();
  }

  closeAll(): void {
    for (let id = 0; id < this.n; id++) {
      const st = this.state[id];
      const sock = this.sockets[id];
      if (sock === null || sock === undefined) continue;
      if (st === C_OPEN) {
        this.state[id] = C_CLOSING;
        sock.write(this.closeFrame);
      } else if (st === C_UPGRADING || st === C_HANDSHAKE) {
        sock.destroy();
      }
    }
    if (this.live === 0) {
      this.finish();
      return;
    }
    this.closeTimer = setTimeout(() => {
      for (let id = 0; id < this.n; id++) {
        if (this.state[id] !== C_CLOSED && this.sockets[id] !== null) {
          this.error('close:timeout');
          this.sockets[id]!.destroy();
        }
      }
    }, this.cfg.closeTimeoutMs ?? 2000);
  }

  finish(): void {
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    this.closeTimer = null;
    this.onResult({
      pid: process.pid,
      mode: this.mode,
      connections: this.n,
      established: this.established,
      windowMs: this.windowMs,
      messages: this.messages,
      sent: this.sent,
      histogram: this.hist.toSparse(),
      errors: this.errors,
      errorKinds: this.errorKinds,
      closeCodes: this.closeCodes,
      cpuPercent: this.cpuPercent,
      elu: this.elu,
    });
  }

  /** Send `k` pre-built frames on `id` in one write, stamping them with `now`. */
  sendFrames(id: number, k: number, now: number): void {
    const sock = this.sockets[id]!;
    sock.write(k === this.inflight ? this.window : this.window.subarray(0, k * this.frameLen));
    if (this.phase === P_MEASURING) this.sent += k;
    if (this.mode === 'echo') {
      const cap = this.fifoCap;
      const base = id * cap;
      let tail = (this.fifoHead[id]! + this.fifoLen[id]!) & (cap - 1);
      for (let j = 0; j < k; j++) {
        this.fifoTs[base + tail] = now;
        tail = (tail + 1) & (cap - 1);
      }
      this.fifoLen[id]! += k;
    } else {
      this.outstanding[id]! += k;
    }
  }

  /** A read on an open connection: parse, then refill the window with one write. */
  frameData(id: number, nread: number): void {
    const parser = this.parsers[id];
    if (parser === null || parser === undefined) return;
    const now = performance.now();
    this.now = now;
    this.replies = 0;
    parser.push(READ_BUFFER, 0, nread);
    const k = this.replies;
    if (k > 0 && this.state[id] === C_OPEN && (this.phase === P_WARMUP || this.phase === P_MEASURING)) {
      this.sendFrames(id, k, now);
    }
  }

  // -------------------------------------------------------------------------------- FrameSink

  onMessage(conn: number, _opcode: number, length: number, _payload: Buffer | null): void {
    if (this.state[conn] === C_HANDSHAKE) return this.handshakeMessage(conn);
    const measuring = this.phase === P_MEASURING;
    if (this.mode === 'echo') {
      const len = this.fifoLen[conn]!;
      if (len === 0) {
        if (this.phase !== P_DONE) this.error('echo:unsolicited-message');
        return;
      }
      const head = this.fifoHead[conn]!;
      const ts = this.fifoTs[conn * this.fifoCap + head]!;
      this.fifoHead[conn] = (head + 1) & (this.fifoCap - 1);
      this.fifoLen[conn] = len - 1;
      this.replies++;
      // A reply, but not the echo asked for (an error frame, say): the window goes on, the reply does not count.
      if (this.replyBytes >= 0 && length !== this.replyBytes) {
        if (this.phase !== P_DONE) this.error('echo:unexpected-reply');
        return;
      }
      if (measuring) {
        this.messages++;
        this.hist.record((this.now - ts) * 1e6);
      }
    } else {
      const out = this.outstanding[conn]!;
      if (out > 0) {
        this.outstanding[conn] = out - 1;
        this.replies++;
      }
      // Not the delivery published (an error frame answering the publisher, say): the credit
      // comes back so the run goes on, but the message is not a delivery.
      if (this.replyBytes >= 0 && length !== this.replyBytes) {
        if (this.phase !== P_DONE) this.error('count:unexpected-message');
        return;
      }
      if (measuring) this.messages++;
    }
  }

  onPing(conn: number, payload: Buffer): void {
    const st = this.state[conn];
    if (st === C_OPEN || st === C_CLOSING || st === C_HANDSHAKE) this.sockets[conn]!.write(buildMaskedFrame(Opcode.PONG, payload, this.maskKey));
  }

  onPong(_conn: number): void {
    // Unsolicited pongs are allowed (RFC 6455 §5.5.3) and ignored.
  }

  onClose(conn: number, code: number): void {
    this.closeCodes[code] = (this.closeCodes[code] ?? 0) + 1;
    const sock = this.sockets[conn]!;
    if (this.state[conn] === C_OPEN) {
      // Server-initiated close: during the run that is an error; echo the close, then end.
      if (this.phase !== P_DONE) this.error(`close:server-${code}`);
      this.state[conn] = C_CLOSING;
      sock.write(buildCloseFrame(code === 1005 ? 1000 : code, this.maskKey));
    }
    sock.end();
  }

  onProtocolError(conn: number, reason: string): void {
    this.error(reason);
    const sock = this.sockets[conn];
    if (sock !== null && sock !== undefined) {
      const st = this.state[conn];
      this.state[conn] = C_CLOSED;
      sock.destroy();
      // Still connecting (a bad frame during the handshake): settle it, or the process would
      // wait for it until the parent gave up, and the error would never be reported.
      if (st === C_HANDSHAKE) this.connectSettled();
    }
  }

  // -------------------------------------------------------------------------------- socket events

  socketClosed(id: number): void {
    const st = this.state[id];
    if (st === C_UPGRADING || st === C_HANDSHAKE) {
      this.error(st === C_UPGRADING ? 'upgrade:closed' : 'handshake:closed');
      this.state[id] = C_CLOSED;
      this.connectSettled();
    } else if (st === C_OPEN && this.phase !== P_DONE) {
      this.error('socket:closed-early');
    }
    this.state[id] = C_CLOSED;
    this.parsers[id] = null;
    this.sockets[id] = null;
    this.live--;
    if (this.live === 0 && this.phase === P_DONE) this.finish();
  }

  socketError(id: number, err: NodeJS.ErrnoException): void {
    const st = this.state[id];
    // Errors after we started closing (e.g. ECONNRESET on a torn-down socket) are not run errors.
    if (st !== C_UPGRADING && st !== C_OPEN && st !== C_HANDSHAKE) return;
    // Mark CLOSED so the 'close' event that follows does not count the same failure twice.
    this.state[id] = C_CLOSED;
    if (st === C_UPGRADING || st === C_HANDSHAKE) {
      this.error(`connect:${err.code ?? 'error'}`);
      this.connectSettled();
    } else {
      this.error(`socket:${err.code ?? 'error'}`);
    }
  }
}

// Module-level listeners: `this` is the socket; the connection id rides on it (no closures).
let client: LoadClient | null = null;

function onSocketRead(this: IdSocket, nread: number, _buf: Uint8Array): boolean {
  const c = client!;
  const id = this[kId];
  const st = c.state[id];
  if (st === C_UPGRADING) c.upgradeData(id, this, nread);
  else if (st === C_OPEN || st === C_CLOSING || st === C_HANDSHAKE) c.frameData(id, nread);
  return true;
}

function onSocketError(this: IdSocket, err: NodeJS.ErrnoException): void {
  client!.socketError(this[kId], err);
}

function onSocketClose(this: IdSocket): void {
  client!.socketClosed(this[kId]);
}

// -------------------------------------------------------------------------------- entry

function validate(cfg: ClientConfig): void {
  if (typeof cfg.host !== 'string' || !Number.isInteger(cfg.port)) throw new TypeError('config.host/port missing');
  if (!Number.isInteger(cfg.connections) || cfg.connections < 0) throw new RangeError('config.connections must be an integer >= 0');
  if (!Number.isInteger(cfg.inflight) || cfg.inflight < 0) throw new RangeError('config.inflight must be an integer >= 0');
  if (!(cfg.durationMs > 0)) throw new RangeError('config.durationMs must be > 0');
  if (cfg.replyBytes !== undefined && (!Number.isInteger(cfg.replyBytes) || cfg.replyBytes < 0)) {
    throw new RangeError('config.replyBytes must be an integer >= 0');
  }
}

function send(msg: ChildMessage): void {
  process.send!(msg);
}

function main(): void {
  const arg = process.argv[2];
  if (arg !== undefined) {
    const cfg = JSON.parse(arg) as ClientConfig;
    validate(cfg);
    client = new LoadClient(cfg, () => client!.start(), (r) => {
      process.stdout.write(JSON.stringify(r) + '\n', () => process.exit(0));
    });
    client.connectAll();
    return;
  }
  if (process.send === undefined) {
    process.stderr.write('usage: node dist/bench/loadgen/client.js \'<ClientConfig JSON>\' (or fork with IPC)\n');
    process.exit(2);
  }
  process.on('message', (msg: ParentMessage) => {
    if (msg.type === 'config') {
      try {
        validate(msg.config);
        client = new LoadClient(msg.config,
          () => send({ type: 'ready', established: client!.established, errors: client!.errors }),
          (r) => {
            send({ type: 'result', result: r });
            process.disconnect();
            // Sockets are all closed by now; nothing else keeps the loop alive.
          },
          (phase) => send({ type: 'window', phase }));
        client.connectAll();
      } catch (e) {
        send({ type: 'fatal', message: e instanceof Error ? e.message : String(e) });
        process.disconnect();
      }
    } else if (msg.type === 'start') {
      client?.start();
    }
  });
  // If the parent goes away, stop.
  process.on('disconnect', () => {
    if (client === null || client.phase !== P_DONE) process.exit(1);
  });
}

main();
