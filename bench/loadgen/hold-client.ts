/**
 * Connection-storm and idle-memory client process (forked by `openConnections` in hold.ts).
 *
 * On `start` it opens its connections as fast as `concurrency` allows (raw TCP, the HTTP
 * upgrade by hand with frames.ts, the optional application handshake such as socket.io's
 * `40`), timing each from connect() to established, then reports and HOLDS them open, idle,
 * answering pings, until `close`: then it closes them all with 1000 and exits. A connection
 * the server drops while held is counted (`lostWhileHeld`).
 *
 * Per-connection state lives in typed arrays indexed by id; listeners are module-level
 * functions that find the id through a symbol (no closure per connection).
 */
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import {
  FrameParser, type FrameSink, Opcode, buildCloseFrame, buildMaskedFrame, buildUpgradeRequest,
  feedUpgradeResponse, expectedAccept, newWebSocketKey,
} from './frames.js';
import { LatencyHistogram } from './histogram.js';
import type { HoldChildMessage, HoldConfig, HoldParentMessage } from './hold-types.js';

// 0: not connecting yet (the zero-filled initial state)
const S_UPGRADING = 1;
const S_HANDSHAKE = 2;
const S_OPEN = 3;
const S_CLOSING = 4;
const S_CLOSED = 5;

const kId = Symbol('hold.conn');
type IdSocket = net.Socket & { [kId]: number };

class HoldClient implements FrameSink {
  readonly n: number;
  readonly maskKey = randomBytes(4);
  readonly hostHeader: string;
  readonly handshakeFrames: Buffer | null;
  readonly sockets: (IdSocket | null)[];
  readonly parsers: (FrameParser | null)[];
  readonly upgradeBuf: (Buffer | null)[];
  readonly accept: (string | null)[];
  readonly state: Uint8Array;
  readonly handshakeLeft: Uint8Array;
  readonly startedAt: Float64Array;
  readonly closeFrame: Buffer;
  readonly hist = new LatencyHistogram();
  next = 0;
  pending = 0;
  live = 0;
  established = 0;
  settled = 0;
  errors = 0;
  readonly errorKinds: Record<string, number> = {};
  connecting = false;
  holding = false;
  closing = false;
  lostWhileHeld = 0;
  t0 = 0;
  cpu0: NodeJS.CpuUsage | null = null;
  elu0: ReturnType<typeof performance.eventLoopUtilization> | null = null;
  timer: NodeJS.Timeout | null = null;

  constructor(readonly cfg: HoldConfig) {
    const n = cfg.connections;
    this.n = n;
    this.hostHeader = `${cfg.host}:${cfg.port}`;
    const hs = cfg.handshake;
    this.handshakeFrames = hs === undefined ? null
      : Buffer.concat(hs.sendText.map((t) => buildMaskedFrame(Opcode.TEXT, Buffer.from(t, 'utf8'), this.maskKey)));
    this.sockets = new Array<IdSocket | null>(n).fill(null);
    this.parsers = new Array<FrameParser | null>(n).fill(null);
    this.upgradeBuf = new Array<Buffer | null>(n).fill(null);
    this.accept = new Array<string | null>(n).fill(null);
    this.state = new Uint8Array(n);
    this.handshakeLeft = new Uint8Array(n);
    this.startedAt = new Float64Array(n);
    this.closeFrame = buildCloseFrame(1000, this.maskKey);
  }

  error(kind: string): void {
    this.errors++;
    this.errorKinds[kind] = (this.errorKinds[kind] ?? 0) + 1;
  }

  start(): void {
    this.connecting = true;
    this.cpu0 = process.cpuUsage();
    this.elu0 = performance.eventLoopUtilization();
    this.t0 = performance.now();
    this.timer = setTimeout(() => this.timedOut(), this.cfg.connectTimeoutMs);
    while (this.next < this.n && this.pending < this.cfg.concurrency) this.connectOne();
    this.maybeDone();
  }

  connectOne(): void {
    const id = this.next++;
    const g = this.cfg.connectionOffset + id;
    const opts: net.NetConnectOpts = { host: this.cfg.host, port: this.cfg.port, noDelay: true };
    const addrs = this.cfg.sourceAddresses;
    if (addrs !== undefined && addrs.length > 0) opts.localAddress = addrs[g % addrs.length]!;
    const key = newWebSocketKey();
    this.accept[id] = expectedAccept(key);
    this.startedAt[id] = performance.now();
    const sock = net.connect(opts) as IdSocket;
    sock[kId] = id;
    this.sockets[id] = sock;
    this.state[id] = S_UPGRADING;
    this.pending++;
    this.live++;
    sock.on('data', onData);
    sock.on('error', onError);
    sock.on('close', onClose);
    sock.write(buildUpgradeRequest(this.hostHeader, this.cfg.path, key));
  }

  /** Connection `id` left the connecting states, either way. */
  settle(): void {
    this.pending--;
    this.settled++;
    if (this.connecting && this.next < this.n) this.connectOne();
    this.maybeDone();
  }

  established1(id: number): void {
    this.state[id] = S_OPEN;
    this.established++;
    this.hist.record((performance.now() - this.startedAt[id]!) * 1e6);
    this.settle();
  }

  maybeDone(): void {
    if (!this.connecting || this.pending > 0 || this.next < this.n) return;
    this.connecting = false;
    this.holding = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const elapsedMs = performance.now() - this.t0;
    const cpu = process.cpuUsage(this.cpu0 ?? undefined);
    send({
      type: 'connected',
      result: {
        pid: process.pid,
        connections: this.n,
        established: this.established,
        elapsedMs,
        histogram: this.hist.toSparse(),
        errors: this.errors,
        errorKinds: this.errorKinds,
        cpuPercent: elapsedMs > 0 ? ((cpu.user + cpu.system) / 1000 / elapsedMs) * 100 : 0,
        elu: performance.eventLoopUtilization(this.elu0 ?? undefined).utilization,
      },
    });
  }

  timedOut(): void {
    this.timer = null;
    this.next = this.n;
    for (let id = 0; id < this.n; id++) {
      const st = this.state[id];
      if (st === S_UPGRADING || st === S_HANDSHAKE) {
        this.error(st === S_UPGRADING ? 'connect:timeout' : 'handshake:timeout');
        this.state[id] = S_CLOSED;
        this.sockets[id]!.destroy();
        this.settle();
      }
    }
  }

  data(id: number, sock: IdSocket, chunk: Buffer): void {
    const st = this.state[id];
    if (st === S_UPGRADING) {
      const { r, buf } = feedUpgradeResponse(this.upgradeBuf, this.accept, id, chunk);
      if (r.kind === 'incomplete') return;
      if (r.kind === 'error') {
        this.error(r.reason);
        this.state[id] = S_CLOSED;
        sock.destroy();
        this.settle();
        return;
      }
      const parser = new FrameParser(this, id);
      this.parsers[id] = parser;
      if (this.handshakeFrames !== null) {
        this.state[id] = S_HANDSHAKE;
        this.handshakeLeft[id] = this.cfg.handshake!.expectMessages;
        sock.write(this.handshakeFrames);
      } else {
        this.established1(id);
      }
      if (r.headerEnd < buf.length) parser.push(buf, r.headerEnd, buf.length);
      return;
    }
    if (st === S_HANDSHAKE || st === S_OPEN || st === S_CLOSING) this.parsers[id]?.push(chunk);
  }

  // FrameSink
  onMessage(conn: number): void {
    if (this.state[conn] !== S_HANDSHAKE) return; // idle connections: data is ignored
    const left = this.handshakeLeft[conn]! - 1;
    this.handshakeLeft[conn] = left;
    if (left === 0) this.established1(conn);
  }

  onPing(conn: number, payload: Buffer): void {
    const st = this.state[conn];
    if (st === S_OPEN || st === S_HANDSHAKE) this.sockets[conn]!.write(buildMaskedFrame(Opcode.PONG, payload, this.maskKey));
  }

  onPong(): void {
    // ignored
  }

  onClose(conn: number, code: number): void {
    const st = this.state[conn];
    const sock = this.sockets[conn]!;
    if (st === S_OPEN || st === S_HANDSHAKE) {
      this.error(`close:server-${code}`);
      if (st === S_OPEN) this.lostWhileHeld++;
      else this.settle();
      this.state[conn] = S_CLOSING;
      sock.write(buildCloseFrame(code === 1005 ? 1000 : code, this.maskKey));
    }
    sock.end();
  }

  onProtocolError(conn: number, reason: string): void {
    this.error(reason);
    const st = this.state[conn];
    this.state[conn] = S_CLOSED;
    if (st === S_HANDSHAKE) this.settle();
    else if (st === S_OPEN) this.lostWhileHeld++;
    this.sockets[conn]?.destroy();
  }

  socketGone(id: number, err: NodeJS.ErrnoException | null): void {
    const st = this.state[id];
    if (st === S_UPGRADING || st === S_HANDSHAKE) {
      this.error(err !== null ? `connect:${err.code ?? 'error'}` : st === S_UPGRADING ? 'upgrade:closed' : 'handshake:closed');
      this.state[id] = S_CLOSED;
      this.settle();
    } else if (st === S_OPEN) {
      if (!this.closing) {
        this.error('socket:closed-while-held');
        this.lostWhileHeld++;
      }
      this.state[id] = S_CLOSED;
    }
  }

  socketClosed(id: number): void {
    this.socketGone(id, null);
    this.state[id] = S_CLOSED;
    this.sockets[id] = null;
    this.parsers[id] = null;
    this.live--;
    if (this.closing && this.live === 0) this.finish();
  }

  closeAll(): void {
    this.closing = true;
    this.connecting = false;
    for (let id = 0; id < this.n; id++) {
      const sock = this.sockets[id];
      if (sock === null || sock === undefined) continue;
      if (this.state[id] === S_OPEN) {
        this.state[id] = S_CLOSING;
        sock.write(this.closeFrame);
        sock.end();
      } else if (this.state[id] !== S_CLOSING) {
        sock.destroy();
      }
    }
    if (this.live === 0) return this.finish();
    setTimeout(() => {
      for (const s of this.sockets) s?.destroy();
    }, 3000).unref();
  }

  finish(): void {
    send({ type: 'closed', lostWhileHeld: this.lostWhileHeld });
    process.disconnect();
  }
}

let client: HoldClient | null = null;

function onData(this: IdSocket, chunk: Buffer): void {
  client!.data(this[kId], this, chunk);
}
function onError(this: IdSocket, err: NodeJS.ErrnoException): void {
  client!.socketGone(this[kId], err);
}
function onClose(this: IdSocket): void {
  client!.socketClosed(this[kId]);
}

function send(msg: HoldChildMessage): void {
  process.send!(msg);
}

if (process.send === undefined) {
  process.stderr.write('hold-client.js is forked by openConnections() (bench/loadgen/hold.ts)\n');
  process.exit(2);
}
process.on('message', (msg: HoldParentMessage) => {
  try {
    if (msg.type === 'config') {
      client = new HoldClient(msg.config);
      send({ type: 'ready' });
    } else if (msg.type === 'start') {
      client!.start();
    } else if (msg.type === 'close') {
      client!.closeAll();
    }
  } catch (e) {
    send({ type: 'fatal', message: e instanceof Error ? e.message : String(e) });
    process.disconnect();
  }
});
process.on('disconnect', () => {
  if (client === null || !client.closing) process.exit(1);
});
