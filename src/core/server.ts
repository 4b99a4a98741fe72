/**
 * The I/O thread: owns the uWS app, every socket, the fd allocator and the worker slots.
 * It runs no user code on the hot path: it copies each event into the ring of the worker
 * that owns the connection and executes the commands the workers write back.
 *
 *   listen():  onInit → describe modules (in a worker) → onMountingModules → mount routes
 *              → afterRoutesInit → start workers → listen → onReady
 *              any failure → onServerInitError → listen() rejects with a typed error
 *              each start-up step is bounded by startTimeoutMs; close() meanwhile ends it at once
 *   close():   stop accepting → barrier (replies already accepted are delivered) → close
 *              every socket with 1001 → barrier (disconnect hooks done) → onShutdown
 *              → stop workers → resolve
 */
import { Piscina } from 'piscina';
import type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_listen_socket, us_socket_context_t, WebSocketBehavior } from 'uWebSockets.js';
import { loadUws } from './uws.js';
import { resolveOptions, type ClusterOptions, type ResolvedOptions, type ServerOptions } from './options.js';
import { Slot } from './slot.js';
import { CorkCarrier } from './cork-carrier.js';
import { CommandExecutor, refusePending, statusLine, type PendingUpgrade, type SocketData, type SocketHolder } from './commands.js';
import { ClientSock, TopicRegistry, asSock, type BackpressureLimits, type Sock } from './client-sock.js';
import { RESUME_IN_PROGRESS, SessionManager, type ClusterLink, type ResumeOptions } from './sessions.js';
import type { MemberPage, PageOptions, PresenceMember, RoomListPage, RoomSummary } from '../workers/define.js';
import { checkPageOptions } from '../shared/paging.js';
import { RedisBus, type BusMessage } from './cluster.js';
import type { AddClientResult, ClientManager, ClientRequest, Connector, ConnectorClient, RouteTable } from './connector.js';
import { dropChannel } from '../shared/diagnostics.js';
import { createHash } from 'node:crypto';
import { Counters, type ConnectionInfo, type DropStats, type ServerStats } from './stats.js';
import { prometheusText } from './metrics.js';
import { workerChannel } from '../shared/diagnostics.js';
import { FdAllocator } from '../fd/index.js';
import { BROADCAST_TOPIC_PREFIX, CloseCode, Defaults } from '../shared/constants.js';
import {
  ErrorCodes, HandlerError, HandlerTimeoutError, ListenError, ModuleLoadError, RingwireError, ServerStateError,
  WorkerDiedError,
} from '../shared/errors.js';
import { WorkerCounter, type DescribeResult, type ModuleDescriptor, type ServeTask } from '../shared/tasks.js';

const WORKER_FILE = new URL('../workers/runtime.js', import.meta.url).href;
/** The close message uWS gives (with 1006) when it cuts a frame over its maxPayloadLength. */
const UWS_TOO_BIG = Buffer.from('Received too big message');
/** A connector's path without any query it carried: `url` is the path alone, as uWS's getUrl() gives it. */
function pathOnly(path: string): string {
  const q = path.indexOf('?');
  return q < 0 ? path : path.slice(0, q);
}

/**
 * Request headers an upgrade may carry (they travel to the worker in its Upgrade record): past
 * either bound it is refused with 431, as Node's HTTP server does past its 16 KiB default; a
 * value cut short (a cookie or token) would reach the auth hook looking valid but wrong. uWS
 * closes a request head over 4 KiB that arrives in more than one read before this is reached.
 */
const MAX_HEADERS = 100;
const MAX_HEADER_BYTES = 16_384;
const HEADERS_TOO_LARGE = JSON.stringify({
  code: ErrorCodes.RW_ERR_HEADERS_TOO_LARGE, message: `request headers over ${MAX_HEADERS} or ${MAX_HEADER_BYTES} bytes`,
});
const EMPTY = new Uint8Array(0);
/** Worker deaths within CRASH_WINDOW_MS that restart at once; later ones back off. */
const CRASH_FREE_RESTARTS = 5;
const CRASH_WINDOW_MS = 10_000;
const MAX_BACKOFF_MS = 10_000;
const utf8e = new TextEncoder();

type State = 'new' | 'starting' | 'listening' | 'closing' | 'closed';

/**
 * A ringwire server: the I/O thread's uWS app, its workers and connectors. Made by createServer()
 * (or `new Server(options)`, the same); nothing starts until listen(), and close() stops it gracefully.
 */
export class Server {
  /** The options as validated, every default filled in (module paths as file: URLs, relative ones resolved against process.cwd()). */
  readonly options: ResolvedOptions;
  private state: State = 'new';
  private readonly uws = loadUws();
  private readonly app: TemplatedApp;
  /** @internal */
  readonly alloc: FdAllocator;
  /** @internal */
  readonly sockets = new Map<number, Sock>();
  /** @internal */
  readonly registry = new TopicRegistry();
  /** @internal */
  readonly sessions: SessionManager;
  /** @internal */
  clusterPublish: ((topic: string, data: Uint8Array, binary: boolean) => void) | null = null;
  /** @internal */
  cluster: ClusterLink | null = null;
  private bus: RedisBus | null = null;
  /** Connector clients → their socket face (accepted ones) or pending upgrade. */
  private readonly clientSocks = new Map<ConnectorClient, ClientSock>();
  private readonly clientPending = new Map<ConnectorClient, PendingUpgrade>();
  private routeTables: RouteTable[] = [];
  private startedConnectors: Connector[] = [];
  /** Connectors whose start() has not settled yet (see stopConnectors). */
  private readonly connectorStarts = new Map<Connector, Promise<unknown>>();
  private matchers: { id: number; segs: string[] }[] = [];
  private resumeOpts: (ResumeOptions | null)[] = [];
  /** Per module: no upgrade hooks, so upgrades complete on the I/O thread without a worker round trip. */
  private syncAccept: boolean[] = [];
  private readonly pending = new Map<number, PendingUpgrade>();
  /** @internal */
  readonly counters = new Counters();
  private readonly exec: CommandExecutor;
  /** @internal */
  readonly slots: Slot[] = [];
  private readonly carrier = new CorkCarrier();
  private readonly tasks: (Promise<unknown> | null)[] = [];
  private pool: Piscina | null = null;
  private listenSocket: us_listen_socket | null = null;
  private rr = 0;
  private modules: readonly ModuleDescriptor[] = [];
  /** Per module: maxPayloadLength, enforced in onMessage so the client gets 1009. */
  private payloadLimits: number[] = [];
  /** Per module: maxBackpressure and closeOnBackpressureLimit, which the core applies to connector clients (uWS to WebSockets). */
  private backpressureLimits: BackpressureLimits[] = [];
  private port = -1;
  private closePromise: Promise<void> | null = null;
  private listenPromise: Promise<number> | null = null;
  /**
   * While listen() runs: every start-up step races this; close() rejects it (ServerStateError) so
   * a step that never settles cannot hold close(). Null once listen() has settled.
   */
  private startAbort: { promise: Promise<never>; reject: (err: Error) => void; reason: Error | null } | null = null;
  /**
   * The start-up step running now. close() stops waiting for it but it goes on (JavaScript cannot
   * cancel it), so onShutdown waits for it (bounded): an onInit interrupted while it opens a
   * database has opened it by the time onShutdown runs to close it.
   */
  private stepRunning: Promise<unknown> | null = null;
  /** listen() ended because close() was called meanwhile (not on its own failure: onServerInitError's case). */
  private startClosed = false;

  // uWS handlers bound once (no closure per connection or message).
  private readonly onMessage = (ws: WebSocket<SocketHolder>, msg: ArrayBuffer, isBinary: boolean): void => {
    this.inbound(asSock(ws), new Uint8Array(msg), isBinary);
  };

  /** One client message, from any transport. */
  private inbound(ws: Sock, msg: Uint8Array, isBinary: boolean): void {
    const ud = ws.getUserData().rw;
    const c = this.counters;
    c.messagesIn++;
    if (ud.closed) {
      // uWS may still hand over messages parsed from the same read after end(): refused, counted.
      c.drop('inboundFull', ud.handle);
      return;
    }
    if (ud.unconfirmed) this.sessions.confirm(ud);
    if (msg.byteLength > this.payloadLimits[ud.module]!) {
      // Enforced here rather than by uWS, which drops the TCP connection (1006) instead of closing with 1009.
      c.drop('tooBig', ud.handle);
      ws.end(CloseCode.TOO_BIG, 'message too big');
      return;
    }
    const rl = this.options.rateLimit;
    let shed = false;
    if (rl !== null && !takeToken(ud, rl.perMs, rl.burst, performance.now())) {
      c.drop('rateLimited', ud.handle);
      // Shedding is bounded too: each shed message costs the worker a decode and a reply, so a
      // client still sending past its shed bucket (twice the rate, sustained) is closed.
      if (!rl.shed || !takeShedToken(ud, rl.perMs, rl.shedBurst, ud.refilledAt)) {
        ws.end(CloseCode.POLICY, 'rate limit exceeded');
        return;
      }
      // Shed: the worker answers it with RW_ERR_RATE_LIMITED, in order with the connection's other replies.
      shed = true;
    }
    const slot = this.slots[ud.slot]!;
    const r = slot.message(ud.handle, isBinary, msg, shed);
    if (r === 0) {
      if (!slot.dirty) this.markDirty(slot);
      return;
    }
    if (r > 0) {
      if (r <= slot.overflowShare) return; // what it holds in the overflow now
    } else {
      c.drop('inboundFull', ud.handle);
    }
    c.drop('busyCloses', ud.handle);
    ws.end(CloseCode.TRY_AGAIN, 'server busy');
  }
  /**
   * Doorbells are rung once per event-loop turn, after uWS has delivered everything it read:
   * one futex wake for a whole burst of messages instead of one per message.
   */
  private readonly dirtySlots: Slot[] = [];
  private doorbellScheduled = false;
  private readonly ringDoorbells = (): void => {
    this.doorbellScheduled = false;
    const list = this.dirtySlots;
    for (let i = 0; i < list.length; i++) {
      const slot = list[i]!;
      slot.dirty = false;
      slot.inbound.notify();
      // While we are awake anyway, execute what this worker already answered: it saves a
      // wake-up, and a worker waiting for outbound room is unblocked sooner under load.
      if (slot.outbound.hasData()) this.exec.drain(slot);
    }
    list.length = 0;
  };

  private markDirty(slot: Slot): void {
    if (this.watchdog === null && this.options.handlerTimeoutMs > 0) this.armWatchdog();
    slot.dirty = true;
    this.dirtySlots.push(slot);
    if (!this.doorbellScheduled) {
      this.doorbellScheduled = true;
      setImmediate(this.ringDoorbells);
    }
  }

  /** A resumed socket's pong (SessionManager.attach pings after the session frame) confirms it. */
  private readonly onPong = (ws: WebSocket<SocketHolder>): void => {
    const ud = ws.getUserData().rw;
    if (ud.unconfirmed && !ud.closed) this.sessions.confirm(ud);
  };

  private readonly onDrain = (ws: WebSocket<SocketHolder>): void => {
    if (ws.getUserData().rw.closed) return;
    const ud = ws.getUserData().rw;
    // Never dropped: with ring and overflow full it waits in the slot's pending list.
    this.slots[ud.slot]!.drain(ud.handle, ws.getBufferedAmount());
  };
  private readonly onClose = (ws: WebSocket<SocketHolder>, code: number, message: ArrayBuffer): void => {
    // A frame over uWS's own cap (above) is cut by uWS itself, which reports it only as this
    // close: count it with the 1009s so it is not dropped silently.
    if (code === 1006 && message.byteLength === UWS_TOO_BIG.length && Buffer.from(message).equals(UWS_TOO_BIG)) {
      this.counters.drop('tooBig', ws.getUserData().rw.handle);
    }
    this.handleClose(asSock(ws), code, message.byteLength === 0 ? EMPTY : new Uint8Array(message));
  };

  constructor(options: ServerOptions) {
    this.options = resolveOptions(options);
    // maxConnections is checked in beginUpgrade; the allocator's own cap leaves room for the
    // temporary fds of resumes (each detached session already holds its place).
    this.alloc = new FdAllocator({ maxLive: Math.min(this.options.maxFd, 2 * this.options.maxConnections), maxFd: this.options.maxFd });
    this.app = this.uws.App();
    this.exec = new CommandExecutor(this.app, this.alloc, this.sockets, this.pending, this.counters);
    this.exec.host = this;
    this.sessions = new SessionManager(this);
    const co = this.options.cluster;
    if (co !== null) this.initCluster(co);
    this.exec.rateBurst = this.options.rateLimit?.burst ?? 0;
    this.exec.shedBurst = this.options.rateLimit?.shedBurst ?? 0;
    for (let i = 0; i < this.options.workers; i++) {
      const slot = new Slot(i, this.options.ringBytes, this.options.overflowBytes);
      slot.onTooLarge = () => this.counters.drop('noticeTooLarge');
      this.slots.push(slot);
      this.tasks.push(null);
    }
  }

  /** Starts the workers and listens; resolves to the bound port (port 0 picks a free one). `host` defaults to '0.0.0.0' (every IPv4 interface). */
  listen(port: number, host = '0.0.0.0'): Promise<number> {
    if (this.state !== 'new') {
      return Promise.reject(new ServerStateError(`listen() called on a server that is ${this.state}`));
    }
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      return Promise.reject(new RangeError('port must be an integer between 0 and 65535'));
    }
    this.state = 'starting';
    let reject!: (err: Error) => void;
    const promise = new Promise<never>((_, rej) => { reject = rej; });
    promise.catch(() => undefined); // raced by every step; unobserved once listen() has settled
    this.startAbort = { promise, reject, reason: null };
    this.listenPromise = this.start(port, host).finally(() => { this.startAbort = null; });
    return this.listenPromise;
  }

  /**
   * One start-up step (a lifecycle hook, loading the modules, a connector's start, ...): it must
   * settle within startTimeoutMs (else RW_ERR_HANDLER_TIMEOUT naming the step) and before close().
   * An abandoned step is not cancelled (JavaScript cannot), only no longer waited for; what it
   * started is released by the teardown that follows.
   */
  private async step<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
    const abort = this.startAbort!.promise;
    const ms = this.options.startTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const run = Promise.resolve().then(fn);
    this.stepRunning = run;
    const waits: Promise<T>[] = [run, abort];
    if (ms > 0) waits.push(new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new HandlerTimeoutError(name, ms)), ms); }));
    try {
      return await Promise.race(waits);
    } finally {
      clearTimeout(timer);
    }
  }

  private async start(port: number, host: string): Promise<number> {
    const lc = this.options.lifecycle;
    try {
      await this.lifecycle('onInit', lc.onInit);
      this.pool = new Piscina({
        filename: WORKER_FILE,
        minThreads: this.options.workers,
        maxThreads: this.options.workers,
        idleTimeout: Number.MAX_SAFE_INTEGER,
        concurrentTasksPerWorker: 1,
        // Our serve task is long-lived and async; piscina's Atomics.wait between tasks is not needed.
        atomics: 'disabled',
      });
      const pool = this.pool;
      const d = await this.step('modules.load', () => pool.run({
        type: 'describe', modules: this.options.modules, hooks: this.options.hooks, codec: this.options.codec,
      }).catch((err: unknown) => {
        // A module that exits the process (or crashes the thread) while it loads.
        throw new WorkerDiedError(`a worker died while loading the modules: ${err instanceof Error ? err.message : String(err)}`, err);
      }) as Promise<DescribeResult>);
      if (!d.ok) throw new ModuleLoadError(d.message);
      this.modules = d.modules;
      await this.lifecycle('onMountingModules', lc.onMountingModules ? () => lc.onMountingModules!(d.modules) : undefined);
      this.mount(d.modules);
      await this.lifecycle('afterRoutesInit', lc.afterRoutesInit);
      for (const slot of this.slots) this.startSlot(slot);
      const bus = this.bus;
      if (bus !== null) await this.step('cluster.start', () => bus.start());
      const ls = await new Promise<us_listen_socket | false>((resolve) => {
        this.app.listen(host, port, resolve);
      });
      if (ls === false) throw new ListenError(`cannot listen on ${host}:${port} (address in use or not available)`);
      this.listenSocket = ls;
      this.port = this.uws.us_socket_local_port(ls);
      await this.step('carrier.start', () => this.carrier.start(this.port, host));
      this.exec.carrier = this.carrier;
      this.state = 'listening';
      for (const c of this.options.connectors) {
        this.startedConnectors.push(c);
        await this.step(`connector.${c.name}.start`, () => {
          const starting = Promise.resolve(c.start(this.manager));
          const done = (): void => { this.connectorStarts.delete(c); };
          this.connectorStarts.set(c, starting);
          starting.then(done, done);
          return starting;
        });
      }
      await this.lifecycle('onReady', lc.onReady ? () => lc.onReady!({ port: this.port, host }) : undefined);
      return this.port;
    } catch (err) {
      const e = err instanceof RingwireError || err instanceof TypeError || err instanceof RangeError
        ? err : new HandlerError('listen', err);
      const onInitError = lc.onServerInitError;
      // close() during start is not an init error: the caller asked for it (and close() runs onShutdown).
      this.startClosed = this.startAbort !== null && e === this.startAbort.reason;
      if (onInitError && !this.startClosed) {
        // Bounded like the other steps (the original error is the one listen() reports).
        await this.step('lifecycle.onServerInitError', () => onInitError(e)).catch(() => undefined);
      }
      if (this.state === 'starting') {
        // Nothing could connect yet (a close() meanwhile waits for this teardown).
        await this.teardown();
      } else {
        // onReady (or a connector's start) failed after clients could connect: they are closed
        // as close() would (replies delivered, 1001, disconnect hooks run), onShutdown aside; or
        // a close() called meanwhile is already doing that.
        this.startAbort = null;
        this.closePromise ??= this.shutdown(false);
        await this.closePromise;
      }
      throw e;
    }
  }

  private async lifecycle(name: string, fn: (() => unknown) | undefined): Promise<void> {
    if (fn === undefined) return;
    await this.step(`lifecycle.${name}`, async () => {
      try {
        await fn();
      } catch (err) {
        throw err instanceof RingwireError ? err : new HandlerError(`lifecycle.${name}`, err);
      }
    });
  }

  private mount(modules: readonly ModuleDescriptor[]): void {
    const maxRecord = this.slots[0]!.inbound.maxRecord - 64;
    for (let id = 0; id < modules.length; id++) {
      const m = modules[id]!;
      const o = m.options;
      // Default: 64 KiB, or less if the rings are smaller; an explicit value must fit the ring.
      const maxPayloadLength = socketOption(o, m.path, 'maxPayloadLength', Math.min(Defaults.maxPayloadLength, maxRecord), 0, Number.MAX_SAFE_INTEGER);
      if (maxPayloadLength > maxRecord) {
        throw new RangeError(`module ${m.path}: options.maxPayloadLength (${maxPayloadLength}) must fit the ring (at most ${maxRecord}); raise options.ringBytes`);
      }
      this.payloadLimits[id] = maxPayloadLength;
      // uWS aborts the whole process (C++ terminate) on an idleTimeout of 1..7 or over 960 s,
      // or a maxLifetime over 240 min: refuse them here, as a RangeError from listen().
      const idleTimeout = socketOption(o, m.path, 'idleTimeout', Defaults.idleTimeout, 0, 960);
      if (idleTimeout > 0 && idleTimeout < 8) {
        throw new RangeError(`module ${m.path}: options.idleTimeout must be 0 (off) or an integer between 8 and 960 (seconds), got ${idleTimeout}`);
      }
      this.resumeOpts[id] = m.resume;
      this.syncAccept[id] = m.upgradeHooks === 0;
      const routes: Record<string, number> = {};
      m.events.forEach((e, i) => { routes[e] = i + 1; });
      this.routeTables[id] = {
        path: m.path, codec: m.codec, routes,
        hash: createHash('sha256').update(JSON.stringify([m.path, m.codec, m.events])).digest('hex').slice(0, 16),
      };
      this.matchers.push({ id, segs: m.path.split('/').filter((x) => x !== '') });
      const paramCount = m.path.split('/').filter((s) => s.startsWith(':')).length;
      const maxBackpressure = socketOption(o, m.path, 'maxBackpressure', Defaults.maxBackpressure, 0, 0x7fffffff);
      const closeOnBackpressureLimit = o['closeOnBackpressureLimit'] === true;
      this.backpressureLimits[id] = { maxBackpressure, closeOnBackpressureLimit };
      const behavior: WebSocketBehavior<SocketHolder> = {
        compression: this.uws.DISABLED,
        // uWS's own cap: anything above our per-module limit but within it gets a proper 1009
        // close; only larger frames are cut by uWS (1006, counted in onClose). It is the ring's
        // record limit but at least the 64 KiB default: with small rings the default limit *is*
        // the record limit, and a cap equal to it left no frame for the 1009 (every oversized one
        // got 1006). What uWS buffers of a frame per connection stays bounded by this cap.
        maxPayloadLength: Math.max(maxRecord, Defaults.maxPayloadLength),
        idleTimeout,
        maxBackpressure,
        sendPingsAutomatically: o['sendPingsAutomatically'] !== false,
        maxLifetime: socketOption(o, m.path, 'maxLifetime', 0, 0, 240),
        upgrade: (res, req, context) => this.handleUpgrade(res, req, context, id, paramCount),
        open: this.onOpen,
        message: this.onMessage,
        drain: this.onDrain,
        pong: this.onPong,
        close: this.onClose,
      };
      // uWS types this as a number; it is a boolean flag.
      (behavior as { closeOnBackpressureLimit?: unknown }).closeOnBackpressureLimit = closeOnBackpressureLimit;
      this.app.ws(m.path, behavior);
    }
    this.carrier.mount(this.app);
    const metricsPath = this.options.metricsPath;
    if (metricsPath !== null) {
      const type = 'text/plain; version=0.0.4; charset=utf-8';
      this.app.get(metricsPath, (res) => {
        res.cork(() => {
          res.writeHeader('content-type', type).end(prometheusText(this.stats()));
        });
      });
      this.app.head(metricsPath, (res) => {
        res.cork(() => { res.writeHeader('content-type', type).endWithoutBody(); });
      });
      this.app.any(metricsPath, (res) => {
        res.cork(() => { res.writeStatus(statusLine(405)).writeHeader('allow', 'GET, HEAD').end('method not allowed'); });
      });
    }
    this.app.any('/*', (res) => {
      res.writeStatus(statusLine(404)).end('no ringwire module on this path');
    });
  }

  // ------------------------------------------------------------------ workers

  /**
   * Hung-handler watchdog. Armed by traffic, it re-arms itself only while some worker is busy,
   * has records waiting or has async work pending, so an idle server has no timer. A worker whose
   * record count has not moved for handlerTimeoutMs while it was busy or had records waiting is
   * terminated; piscina reports the death and workerDied() closes its connections with 1011 and
   * starts a replacement. An idle worker with async work pending gets a Probe record each period:
   * if its event loop hangs in an async continuation, the probe waits in its ring and the rule
   * above applies.
   */
  private watchdog: NodeJS.Timeout | null = null;
  private armWatchdog(): void {
    const period = Math.max(10, this.options.handlerTimeoutMs >>> 2);
    this.watchdog = setTimeout(this.checkWatchdog, period);
    this.watchdog.unref();
  }
  private readonly checkWatchdog = (): void => {
    this.watchdog = null;
    // Also while closing: a stuck worker would otherwise hold the shutdown barriers to their deadline.
    if ((this.state !== 'listening' && this.state !== 'closing') || this.pool === null) return;
    const now = performance.now();
    let busy = false;
    for (const slot of this.slots) {
      // Stuck = running records (busy), or records waiting in its ring that it does not take:
      // a worker whose event loop hangs in an async continuation while idle never picks them up.
      if (!slot.alive) continue;
      if (slot.counters[WorkerCounter.busy] === 0 && slot.inbound.usedBytes === 0) {
        slot.stuckSeq = -1;
        if (slot.counters[WorkerCounter.asyncPending] !== 0) {
          busy = true;
          slot.probe();
        }
        continue;
      }
      busy = true;
      // The first check that sees this record count starts the clock: the record has run at
      // least since then, so a worker is never terminated early (late by at most one period).
      const seq = slot.counters[WorkerCounter.records]!;
      if (seq !== slot.stuckSeq) {
        slot.stuckSeq = seq;
        slot.stuckSince = now;
        continue;
      }
      if (now - slot.stuckSince < this.options.handlerTimeoutMs) continue;
      const tid = slot.counters[WorkerCounter.threadId]!;
      const worker = this.pool.threads.find((w) => w.threadId === tid);
      if (worker === undefined) continue;
      slot.counters[WorkerCounter.busy] = 0;
      slot.stuckSeq = -1;
      this.counters.drop('handlerTimeout');
      void worker.terminate();
    }
    if (busy) this.armWatchdog();
  };

  private startSlot(slot: Slot): void {
    slot.alive = true;
    if (workerChannel.hasSubscribers) workerChannel.publish({ slot: slot.index, event: 'started' });
    const task: ServeTask = {
      type: 'serve', slot: slot.index, generation: slot.generation, inbound: slot.inbound.sab,
      outbound: slot.outbound.sab, modules: this.options.modules, hooks: this.options.hooks,
      codec: this.options.codec, drainBatch: this.options.drainBatch, counters: slot.counterSab,
      idleSpinMicros: this.options.idleSpinMicros, idleBlockMs: this.options.idleBlockMs, asyncTimeoutMs: this.options.asyncTimeoutMs,
    };
    const gen = slot.generation;
    const p = this.pool!.run(task);
    this.tasks[slot.index] = p;
    p.then(() => undefined, (err: unknown) => {
      // During a graceful close too (its connections still need their 1011 and its barriers
      // an answer), but not once teardown has let the slots go (alive = false).
      if (slot.generation === gen && slot.alive && this.state !== 'closed') this.workerDied(slot, err);
    });
    this.armOutbound(slot);
  }

  /**
   * Sleep until the slot's worker writes commands, then execute them; never blocks the loop.
   * Each arming has a token: after a worker restart the ring is reset under a pending
   * waitAsync, so the slot is re-armed and a late wake-up of the stale arming is ignored.
   */
  private armOutbound(slot: Slot): void {
    const token = ++slot.outboundArm;
    const ring = slot.outbound;
    const run = (): void => {
      if (this.state === 'closed' || slot.outboundArm !== token) return;
      this.exec.drain(slot);
      if (ring.closed) return;
      const p = ring.waitForDataAsync();
      if (p === null) setImmediate(run);
      else p.then(run, run);
    };
    const p = ring.waitForDataAsync();
    if (p === null) setImmediate(run);
    else p.then(run, run);
  }

  private workerDied(slot: Slot, err: unknown): void {
    slot.alive = false;
    if (workerChannel.hasSubscribers) {
      const error = new WorkerDiedError(`worker ${slot.index} died: ${err instanceof Error ? err.message : String(err)}`, err);
      workerChannel.publish({ slot: slot.index, event: 'died', error });
    }
    const restart = this.state === 'listening' || this.state === 'starting';
    if (restart) {
      slot.restarts++;
      this.counters.workerRestarts++;
    }
    // Deliver what the worker produced before it died, then close exactly its connections.
    this.exec.drain(slot);
    // Upgrades first: a socket held for a resume refused here goes back to the map (endHold) and is closed below.
    this.refusePendingUpgrades((p) => p.slot === slot.index, 'workerUnavailable', 'worker died', ErrorCodes.RW_ERR_WORKER_DIED);
    for (const ws of this.sockets.values()) {
      const ud = ws.getUserData().rw;
      if (ud.slot === slot.index && ud.slotGen === slot.generation) ws.end(CloseCode.INTERNAL, 'worker died');
    }
    // Detached sessions lived in that worker: they end now (their disconnect hooks died with it).
    this.sessions.expireAll(slot.index, 'worker died');
    for (const w of slot.barrierWaiters.values()) w();
    slot.barrierWaiters.clear();
    slot.reset();
    // Its hooks died with it: the upgrades orphaned there will get no answer.
    // (their resumes' sessions lived in that worker too: expireAll above ended them)
    for (const [h, o] of this.exec.orphanedUpgrades) if (o.slot === slot.index) this.exec.orphanedUpgrades.delete(h);
    slot.generation++;
    if (!restart) return; // shutting down: the slot stays dead
    // Crash-loop back-off: the first deaths restart at once; past CRASH_FREE_RESTARTS within
    // CRASH_WINDOW_MS each restart waits twice as long (up to MAX_BACKOFF_MS). Meanwhile new
    // connections go to the other workers (or get 503 when none is alive).
    const now = Date.now();
    slot.deaths = slot.deaths.filter((t) => now - t < CRASH_WINDOW_MS);
    slot.deaths.push(now);
    const over = slot.deaths.length - CRASH_FREE_RESTARTS;
    if (over <= 0) {
      this.startSlot(slot);
      return;
    }
    slot.backoffMs = Math.min(100 * 2 ** (over - 1), MAX_BACKOFF_MS);
    this.counters.workerBackoffs++;
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = null;
      slot.backoffMs = 0;
      if (this.state === 'listening' || this.state === 'starting') this.startSlot(slot);
    }, slot.backoffMs);
  }

  private pickSlot(): Slot | null {
    const n = this.slots.length;
    for (let i = 0; i < n; i++) {
      const s = this.slots[(this.rr + i) % n]!;
      if (s.alive) {
        this.rr = (this.rr + i + 1) % n;
        return s;
      }
    }
    return null;
  }

  // ------------------------------------------------------------------ uWS handlers

  private handleUpgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t, module: number, paramCount: number): void {
    if (this.state !== 'listening') {
      res.writeStatus(statusLine(503)).end('server not accepting connections');
      return;
    }
    const origins = this.options.allowedOrigins;
    if (origins !== null && !origins.has(req.getHeader('origin').toLowerCase())) {
      this.counters.drop('originRejected');
      res.writeStatus(statusLine(403)).end('origin not allowed');
      return;
    }
    const headerNames: string[] = [];
    const headerValues: string[] = [];
    let headerBytes = 0;
    req.forEach((k, v) => {
      headerBytes += k.length + v.length;
      headerNames.push(k);
      headerValues.push(v);
    });
    if (headerNames.length > MAX_HEADERS || headerBytes > MAX_HEADER_BYTES) {
      this.counters.drop('headersTooLarge');
      res.cork(() => {
        res.writeStatus(statusLine(431)).writeHeader('content-type', 'application/json').end(HEADERS_TOO_LARGE);
      });
      return;
    }
    const params: string[] = [];
    for (let i = 0; i < paramCount; i++) params.push(req.getParameter(i));
    const p: PendingUpgrade = {
      res, client: null, resolve: null, resume: null, context, module, handle: 0, slot: 0, slotGen: 0, aborted: false, timer: null,
      remoteAddress: Buffer.from(res.getRemoteAddressAsText()).toString(), url: req.getUrl(), startedAt: performance.now(),
      key: req.getHeader('sec-websocket-key'),
      protocol: req.getHeader('sec-websocket-protocol'),
      extensions: req.getHeader('sec-websocket-extensions'),
    };
    res.onAborted(() => this.abortPending(p));
    this.beginUpgrade(p, req.getQuery() ?? '', headerNames, headerValues, params);
  }

  /**
   * The transport-independent part of an upgrade: resume token, fd, worker, Upgrade record,
   * upgrade timeout. Refusals answer through refusePending (HTTP or addClient() result).
   */
  private beginUpgrade(p: PendingUpgrade, query: string, headerNames: string[], headerValues: string[], params: string[]): void {
    let slot: Slot | null = null;
    // The substring test keeps URLSearchParams off the common path; the parse decides (a
    // parameter merely ending in it, `xrw_resume=`, is a fresh upgrade, not a bad token).
    const token = this.resumeOpts[p.module] != null && query.includes('rw_resume=') ? new URLSearchParams(query).get('rw_resume') : null;
    if (token !== null) {
      const t = this.sessions.resumeTarget(token, p.module, p.url);
      const s = typeof t === 'string' ? null : this.slots[t.ud.slot]!;
      if (typeof t === 'string' || !s!.alive || s!.generation !== t.ud.slotGen) {
        this.counters.drop('resumeRefused');
        // 409 while another resume of the session is in its hooks: the session is still there, retry.
        refusePending(p, t === RESUME_IN_PROGRESS ? 409 : 410, JSON.stringify({ code: ErrorCodes.RW_ERR_RESUME_TOKEN, message: typeof t === 'string' ? t : 'session lost' }),
          ErrorCodes.RW_ERR_RESUME_TOKEN, ['content-type'], ['application/json']);
        return;
      }
      p.resume = t;
      slot = s;
    }
    const fd = p.resume === null && this.placesTaken() >= this.options.maxConnections ? 0 : this.alloc.alloc();
    if (fd === 0) {
      this.counters.drop('connLimit');
      refusePending(p, 503, 'too many connections', 'RW_ERR_CONN_LIMIT');
      return;
    }
    if (slot === null) slot = this.affinitySlot(query, headerNames, headerValues) ?? this.pickSlot();
    if (slot === null) {
      this.alloc.release(fd);
      this.counters.drop('workerUnavailable');
      refusePending(p, 503, 'no worker available', 'RW_ERR_WORKER_UNAVAILABLE');
      return;
    }
    const handle = this.alloc.handle(fd);
    p.handle = handle;
    p.slot = slot.index;
    p.slotGen = slot.generation;
    const ok = slot.upgrade({
      handle, module: p.module, url: p.url, query, remoteAddress: p.remoteAddress, headerNames, headerValues, params,
    });
    if (!ok) {
      this.alloc.release(fd);
      this.counters.drop('workerUnavailable');
      refusePending(p, 503, 'server busy', 'RW_ERR_WORKER_UNAVAILABLE');
      return;
    }
    if (p.resume !== null) this.sessions.beginResume(p.resume, token!);
    this.pending.set(fd, p);
    if (this.syncAccept[p.module]) {
      // No hook can refuse or add userData: upgrade now, as raw uWS would. The Upgrade record
      // already queued gives the worker the connection's url/query/headers before its Open.
      this.exec.accept(slot, handle, true);
      return;
    }
    p.timer = setTimeout(this.upgradeTimedOut, this.options.upgradeTimeoutMs, p);
  }

  /** uid affinity: the worker of the uid named by the configured query parameter or header. */
  private affinitySlot(query: string, names: string[], values: string[]): Slot | null {
    const a = this.options.uidAffinity;
    if (a === null) return null;
    let uid: string | null = null;
    if (a.query !== null && query !== '') uid = new URLSearchParams(query).get(a.query);
    if (uid === null && a.header !== null) {
      const i = names.indexOf(a.header);
      if (i >= 0) uid = values[i]!;
    }
    if (uid === null || uid === '') return null;
    // FNV-1a over the uid's UTF-16 units: stable, cheap, spreads short ids well.
    let h = 0x811c9dc5;
    for (let i = 0; i < uid.length; i++) h = Math.imul(h ^ uid.charCodeAt(i), 0x01000193);
    const n = this.slots.length;
    for (let i = 0; i < n; i++) {
      const s = this.slots[((h >>> 0) + i) % n]!;
      if (s.alive) return s;
    }
    return null;
  }

  /**
   * 503 for every upgrade still in its hooks that `which` selects (fd released, counted as `reason`).
   * Hooks still running on a live worker (close() refusing them) are orphaned: their late answer
   * is expected, not counted again as a stale handle, and the worker forgets the handle.
   */
  private refusePendingUpgrades(which: (p: PendingUpgrade) => boolean, reason: keyof DropStats, body: string, code: string): void {
    for (const [fd, p] of this.pending) {
      if (!which(p)) continue;
      if (p.timer !== null) clearTimeout(p.timer);
      this.counters.drop(reason, p.handle);
      refusePending(p, 503, body, code);
      this.orphanPending(p, fd);
    }
  }

  /**
   * Places taken under maxConnections: live fds and orphaned upgrades, less one per session with
   * a resume under way (the session's own fd holds its place; the resume's temporary fd, or its
   * orphaned hook, does not count again), so a full server still takes its dropped clients back.
   */
  private placesTaken(): number {
    return this.alloc.live + this.exec.orphanedUpgrades.size - this.sessions.resumingCount;
  }

  /**
   * The client of an upgrade still in its hooks went away: counted, and its fd is released now
   * (not when the hooks answer or upgradeTimeoutMs passes, which kept it counting against
   * maxConnections); the worker forgets the handle once its hook returns, the late answer is stale.
   */
  private abortPending(p: PendingUpgrade): void {
    p.aborted = true;
    // A connector client removed meanwhile: its addClient() settles (a refusal), never hangs.
    refusePending(p, 499, 'client removed while its upgrade hooks ran');
    this.counters.drop('upgradeAborted', p.handle);
    const fd = this.alloc.fdOf(p.handle);
    if (p.handle === 0 || this.pending.get(fd) !== p) return;
    if (p.timer !== null) clearTimeout(p.timer);
    this.orphanPending(p, fd);
  }

  /**
   * A pending upgrade whose client is gone while its hooks run: the fd is released, and the
   * worker is told to forget the handle once its hooks return. Until their answer arrives the
   * upgrade stays counted against maxConnections (exec.orphanedUpgrades), so connecting and
   * going away cannot start hooks without bound.
   */
  private orphanPending(p: PendingUpgrade, fd: number): void {
    // A resume that will not open: a socket held for it takes its session back now (the session
    // stays `resuming` until the hook answers, below).
    if (p.resume !== null) this.sessions.endHold(p.resume);
    this.pending.delete(fd);
    this.alloc.release(fd);
    // A connector client is answered now (408/499): its removeClient must find nothing pending.
    if (p.client !== null && this.clientPending.get(p.client) === p) this.clientPending.delete(p.client);
    const slot = this.slots[p.slot]!;
    if (slot.alive && slot.generation === p.slotGen) {
      // A resume stays under way until the hook answers (exec.takePending calls pendingGone):
      // another resume of the session meanwhile gets 409, so one session runs one hook at most.
      this.exec.orphanedUpgrades.set(p.handle, p);
      slot.close(p.handle, CloseCode.ABNORMAL, EMPTY);
    } else {
      this.pendingGone(p);
    }
  }

  /** @internal A resume upgrade ended without opening: its session's grace period goes on. */
  pendingGone(p: PendingUpgrade): void {
    if (p.resume !== null && p.resume.resuming) this.sessions.abortResume(p.resume);
    if (p.client !== null && this.clientPending.get(p.client) === p) this.clientPending.delete(p.client);
  }

  /** Slowloris guard: the upgrade hooks did not answer in time → 408, fd released. */
  private readonly upgradeTimedOut = (p: PendingUpgrade): void => {
    const fd = this.alloc.fdOf(p.handle);
    if (this.pending.get(fd) !== p) return;
    this.counters.drop('upgradeTimeout', p.handle);
    refusePending(p, 408, 'upgrade timed out', 'RW_ERR_UPGRADE_TIMEOUT');
    this.orphanPending(p, fd);
  };

  private readonly onOpen = (ws: WebSocket<SocketHolder>): void => this.handleOpen(asSock(ws));

  private handleOpen(ws: Sock): void {
    const ud = ws.getUserData().rw;
    const slot = this.slots[ud.slot]!;
    const resume = ud.resumeOf;
    ud.resumeOf = null;
    // A sendAll reaches the connections open when it was issued: not this one (a resume takes
    // its session's place instead, see SessionManager.attach).
    ud.sentAll = this.sessions.lastSendAll;
    this.counters.connections++;
    const live = slot.alive && slot.generation === ud.slotGen;
    // Counted on a live slot even when ended at once: handleClose uncounts it there.
    if (live) slot.connections++;
    if (!live || (resume !== null && !resume.resuming)) {
      this.sockets.set(ud.fd, ws);
      ws.end(CloseCode.INTERNAL, resume !== null ? 'session lost' : 'worker died');
      return;
    }
    ws.subscribe(BROADCAST_TOPIC_PREFIX + String(ud.module));
    if (resume !== null) {
      this.sessions.attach(ws, ud, resume);
      return;
    }
    this.sockets.set(ud.fd, ws);
    if (!slot.open(ud.handle)) {
      // Accepted while the worker kept up, opened once its ring and overflow had filled: refused
      // like a message there (1013), and counted like one.
      this.counters.drop('busyCloses', ud.handle);
      ws.end(CloseCode.TRY_AGAIN, 'server busy');
      return;
    }
    const r = this.resumeOpts[ud.module];
    if (r != null) this.sessions.opened(ws, ud, r);
  }

  private handleClose(ws: Sock, code: number, reason: Uint8Array): void {
    const ud = ws.getUserData().rw;
    if (ud.closed) return;
    ud.closed = true;
    this.sockets.delete(ud.fd);
    this.counters.connections--;
    const slot = this.slots[ud.slot]!;
    const live = slot.alive && slot.generation === ud.slotGen;
    if (live) slot.connections--;
    if (ws instanceof ClientSock) this.forgetClient(ws);
    if ((ud.session !== null || ud.uid !== null || ud.rooms !== null)
      && this.sessions.closing(ud, code, this.state !== 'listening' || !live)) return; // detached: fd and worker state kept
    this.alloc.release(ud.fd);
    if (live) slot.close(ud.handle, code, reason);
  }

  private forgetClient(s: ClientSock): void {
    this.registry.removeAll(s);
    if (this.clientSocks.get(s.client) === s) this.clientSocks.delete(s.client);
    s.client.session = null;
  }

  /** @internal SessionHost: a detached session ended for good (fd released, the worker runs the disconnect hooks). */
  finishClose(ud: SocketData, code: number, reason: string): void {
    this.alloc.release(ud.fd);
    const slot = this.slots[ud.slot]!;
    if (slot.alive && slot.generation === ud.slotGen) slot.close(ud.handle, code, utf8e.encode(reason));
  }

  /**
   * @internal SessionHost: close a socket whose connection lives on on another socket (a resume
   * replaced it) or has just been ended (a session held for a resume, expired).
   */
  retire(sock: Sock, code: number, reason: string): void {
    const ud = sock.getUserData().rw;
    if (ud.closed) return;
    ud.closed = true;
    if (this.sockets.get(ud.fd) === sock) this.sockets.delete(ud.fd);
    this.counters.connections--;
    const slot = this.slots[ud.slot]!;
    if (slot.alive && slot.generation === ud.slotGen) slot.connections--;
    if (sock instanceof ClientSock) this.forgetClient(sock);
    sock.end(code, reason);
  }

  /** @internal ClientSockHost: a connector client was closed by the core (ClientSock.end). */
  closed(s: ClientSock, code: number, reason: string): void {
    this.handleClose(s, code, reason === '' ? EMPTY : utf8e.encode(reason));
  }

  /** @internal ClientSockHost: publish on behalf of a connector client (it does not receive its own message). */
  publishFrom(from: Sock, topic: string, data: Uint8Array, binary: boolean): void {
    this.exec.publish(topic, data, binary, from.getUserData().rw.handle);
  }

  // ------------------------------------------------------------------ connectors

  /** The module serving `path` (route patterns with :params and a trailing *), and its params. */
  private matchPath(path: string): { id: number; params: string[] } | null {
    const q = path.indexOf('?');
    const segs = (q >= 0 ? path.slice(0, q) : path).split('/').filter((x) => x !== '');
    for (const m of this.matchers) {
      const params: string[] = [];
      let ok = true;
      let i = 0;
      for (; i < m.segs.length; i++) {
        const pat = m.segs[i]!;
        if (pat === '*') break;
        const seg = segs[i];
        if (seg === undefined) {
          ok = false;
          break;
        }
        // As uWS gives them to WebSocket upgrades: not percent-decoded (a malformed escape is no error).
        if (pat.startsWith(':')) params.push(seg);
        else if (pat !== seg) {
          ok = false;
          break;
        }
      }
      if (ok && (i < m.segs.length || segs.length === m.segs.length)) return { id: m.id, params };
    }
    return null;
  }

  private addClient(client: ConnectorClient, req: ClientRequest): Promise<AddClientResult> {
    return new Promise<AddClientResult>((resolve) => {
      if (this.state !== 'listening') {
        resolve({ ok: false, status: 503, code: ErrorCodes.RW_ERR_SERVER_STATE, message: 'server not accepting connections' });
        return;
      }
      const path = typeof req?.path === 'string' ? req.path : '';
      const m = this.matchPath(path);
      if (m === null) {
        resolve({ ok: false, status: 404, code: ErrorCodes.RW_ERR_NO_MODULE, message: `no module on path ${JSON.stringify(path)}` });
        return;
      }
      const names: string[] = [];
      const values: string[] = [];
      let bytes = 0;
      for (const [k, v] of Object.entries(req.headers ?? {})) {
        const value = String(v);
        bytes += k.length + value.length;
        names.push(k.toLowerCase());
        values.push(value);
      }
      if (names.length > MAX_HEADERS || bytes > MAX_HEADER_BYTES) {
        this.counters.drop('headersTooLarge');
        resolve({ ok: false, status: 431, code: ErrorCodes.RW_ERR_HEADERS_TOO_LARGE, message: `request headers over ${MAX_HEADERS} or ${MAX_HEADER_BYTES} bytes` });
        return;
      }
      const query = typeof req.query === 'string' ? req.query : '';
      const p: PendingUpgrade = {
        res: null, client, resolve, resume: null, context: null, module: m.id, handle: 0, slot: 0, slotGen: 0, aborted: false,
        timer: null, remoteAddress: client.remoteAddress, url: pathOnly(path), startedAt: performance.now(),
        key: '', protocol: '', extensions: '',
      };
      this.beginUpgrade(p, query, names, values, m.params);
      if (p.handle !== 0 && this.pending.get(this.alloc.fdOf(p.handle)) === p) this.clientPending.set(client, p);
    });
  }

  /** @internal ExecutorHost: the hooks accepted a connector client. */
  acceptClient(p: PendingUpgrade, ud: SocketData): void {
    const client = p.client!;
    this.clientPending.delete(client);
    ud.transport = client.transport ?? 'connector';
    const sock = new ClientSock(client, ud, this, this.backpressureLimits[ud.module]);
    this.clientSocks.set(client, sock);
    const resume = ud.resumeOf; // handleOpen clears it
    // Opens first (a resume may hand it another fd and handle); sends made meanwhile are held
    // by the ClientSock until the connector has answered its client (see ClientSock.send).
    this.handleOpen(sock);
    const resolve = p.resolve;
    p.resolve = null;
    if (ud.closed) {
      // A resume whose session ended meanwhile (kicked, expired): the token is spent, as a
      // WebSocket's 1011 'session lost' says; the client reconnects without it. Otherwise the
      // worker went away while the connection opened.
      resolve?.(resume !== null
        ? { ok: false, status: 410, code: ErrorCodes.RW_ERR_RESUME_TOKEN, message: 'session lost' }
        : { ok: false, status: 503, code: ErrorCodes.RW_ERR_WORKER_UNAVAILABLE, message: 'connection closed while opening' });
      return;
    }
    const session = { fd: ud.fd, handle: ud.handle, path: this.modules[ud.module]?.path ?? '' };
    client.session = session;
    resolve?.({ ok: true, session });
  }

  private readonly manager: ClientManager = {
    addClient: (client, req) => this.addClient(client, req),
    handleMsg: (client, data, binary) => {
      const s = this.clientSocks.get(client);
      if (s === undefined) {
        this.counters.drop('staleHandle');
        return;
      }
      this.inbound(s, data, binary);
    },
    removeClient: (client, code, reason) => {
      const s = this.clientSocks.get(client);
      if (s !== undefined) {
        this.handleClose(s, code, reason === '' ? EMPTY : utf8e.encode(reason));
        return;
      }
      const p = this.clientPending.get(client);
      if (p !== undefined) {
        this.clientPending.delete(client);
        this.abortPending(p);
      }
    },
    drain: (client) => {
      const s = this.clientSocks.get(client);
      if (s !== undefined) this.onDrain(s as unknown as WebSocket<SocketHolder>); // onDrain uses only the Sock part
    },
    routes: (path) => {
      const m = this.matchPath(path);
      return m === null ? null : this.routeTables[m.id] ?? null;
    },
    reportError: (client, code, message) => this.connectorError(client, code, message),
  };

  /** Counted in connectorErrors by code and drops.connector, published on ringwire:drop. */
  private connectorError(client: ConnectorClient | null, code: string, message: string): void {
    const handle = client?.session?.handle ?? 0;
    const c = this.counters;
    c.connectorErrors[code] = (c.connectorErrors[code] ?? 0) + 1;
    c.drops.connector++;
    if (dropChannel.hasSubscribers) dropChannel.publish({ reason: 'connector', handle, code, message });
  }

  /** @internal ClientSockHost: a connector client's close() threw. */
  closeFailed(s: ClientSock, err: unknown): void {
    this.connectorError(s.client, ErrorCodes.RW_ERR_CONNECTOR_CLOSE, `${s.client.transport ?? 'connector'} client close() threw: ${err instanceof Error ? err.message : String(err)}`);
  }

  // ------------------------------------------------------------------ shutdown

  /** One barrier through every live worker: resolves when each has handled everything before it. */
  private barrierAll(deadline: number): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const slot of this.slots) {
      if (!slot.alive) continue;
      const seq = ++slot.barrierSeq;
      waits.push(new Promise<void>((resolve) => {
        slot.barrierWaiters.set(seq, resolve);
      }));
      slot.barrier(seq);
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
    });
    return Promise.race([Promise.all(waits).then(() => undefined), timeout]).finally(() => clearTimeout(timer));
  }

  /** Graceful close; idempotent. The process can exit on its own afterwards. */
  close(): Promise<void> {
    if (this.closePromise === null) this.closePromise = this.shutdown();
    return this.closePromise;
  }

  /** `runOnShutdown`: false when listen() failed after the server was listening (onReady threw). */
  private async shutdown(runOnShutdown = true): Promise<void> {
    if (this.state === 'new') {
      this.state = 'closed';
      return;
    }
    const deadline = Date.now() + this.options.shutdownTimeoutMs;
    let interrupted: Promise<unknown> | null = null;
    if (this.startAbort !== null) {
      // listen() has not settled: its current step is no longer waited for, and listen() rejects.
      const reason = new ServerStateError('close() was called while the server was starting');
      this.startAbort.reason = reason;
      this.startAbort.reject(reason);
      interrupted = this.stepRunning;
      // Before the port is bound, listen()'s failure path undoes the start; once clients could
      // connect (onReady, a connector's start) this close does the work and listen() waits for it.
      if (this.state === 'starting') {
        await this.listenPromise!.catch(() => undefined);
        // The start was ended by this close(), not by a failure of its own (that one ran
        // onServerInitError): onShutdown runs as for any close(), so what the hooks opened
        // (onInit's database, say) is released and the process can exit.
        if (this.startClosed && runOnShutdown) await this.onShutdownHook(interrupted, deadline);
      }
    }
    if (this.state === 'closed') return;
    this.state = 'closing';
    this.exec.closing = true;
    if (this.listenSocket !== null) {
      this.uws.us_listen_socket_close(this.listenSocket);
      this.listenSocket = null;
    }
    // Upgrades still in their hooks are refused now (counted): the server accepts nothing new.
    this.refusePendingUpgrades(() => true, 'shutdown', 'server shutting down', ErrorCodes.RW_ERR_SERVER_STATE);
    await this.stopConnectors(deadline);
    // 1. Replies to everything already accepted reach their clients (repeat while messages still arrive).
    for (let round = 0; round < 8 && Date.now() < deadline; round++) {
      const before = this.counters.messagesIn;
      await this.barrierAll(deadline);
      if (this.counters.messagesIn === before) break;
    }
    // 2. Close every socket with 1001; each close queues the connection's disconnect hooks.
    for (const ws of [...this.sockets.values()]) ws.end(CloseCode.GOING_AWAY, 'server shutdown');
    // Detached sessions end too: their disconnect hooks run before the barrier below.
    this.sessions.expireAll(null, 'server shutdown');
    // 3. Every disconnect hook has run.
    await this.barrierAll(deadline);
    if (runOnShutdown) await this.onShutdownHook(interrupted, deadline);
    await this.teardown(deadline);
  }

  /**
   * onShutdown, after the start-up step a close() interrupted (`interrupted`: onInit, onReady, ...)
   * has settled. Shutdown goes on whatever the hook does: a failure is ignored, and both are
   * waited for only until the shutdown deadline, so one that never settles cannot hold close()
   * or the process.
   */
  private async onShutdownHook(interrupted: Promise<unknown> | null, deadline: number): Promise<void> {
    const onShutdown = this.options.lifecycle.onShutdown;
    if (onShutdown === undefined) return;
    if (interrupted !== null) await settledBy(interrupted.catch(() => undefined), deadline);
    await settledBy(Promise.resolve().then(onShutdown).catch(() => undefined), deadline);
  }

  // ------------------------------------------------------------------ cluster

  /**
   * Cluster over Redis pub/sub (src/core/cluster.ts): topic publishes, uid sends and presence
   * reach the other nodes. While Redis is away, local delivery goes on and every cross-node
   * message that could not be sent is counted in drops.cluster; the bus reconnects by itself.
   */
  private initCluster(co: ClusterOptions): void {
    const c = this.counters;
    let wasDown = false;
    const bus = new RedisBus({
      url: co.url, ...(co.nodeId !== undefined ? { nodeId: co.nodeId } : {}), ...(co.prefix !== undefined ? { prefix: co.prefix } : {}),
      ...(co.nodeTtlMs !== undefined ? { nodeTtlMs: co.nodeTtlMs } : {}),
      onPublishFailed: () => c.drop('cluster'),
      // Back from an outage: this node missed the other nodes' presence events meanwhile; its rooms
      // are read again and their members here get the difference (SessionManager.healRemote). Its
      // own changes meanwhile reach the others with the bus's re-sync.
      onStatus: (connected) => {
        if (!connected) {
          wasDown = true;
        } else if (wasDown) {
          wasDown = false;
          if (this.state === 'listening') void this.sessions.healRemote();
        }
      },
      // A dead node's members, removed from Redis by this node (and by no other): the sweep has
      // published their leaves to the other nodes; this node's members of the room see them here.
      onPresenceExpired: (room, entries) => {
        if (this.state !== 'listening') return;
        for (const e of entries) {
          // A previous incarnation of this node (same nodeId): its members were never shown here
          // (remoteMembers and onBus skip this nodeId), so there is nothing to take back.
          if (e.node === bus.nodeId) continue;
          const member = parseMember(e.member);
          if (member !== null) this.sessions.remotePresence(room, 'leave', member);
        }
      },
    }, (m) => this.onBus(m));
    this.bus = bus;
    const send = (m: Parameters<RedisBus['publish']>[0]): void => {
      if (!bus.publish(m)) c.drop('cluster');
    };
    this.clusterPublish = (topic, data, binary) => send({ type: 'publish', topic, binary, data });
    this.cluster = {
      nodeId: bus.nodeId,
      nodeTtlMs: bus.nodeTtlMs,
      liveNodes: async () => {
        const live = await bus.liveNodes().catch(() => null);
        if (live === null) c.drop('cluster');
        return live;
      },
      uid: (uid, data, binary) => send({ type: 'uid', uid, binary, data }),
      presence: (room, event, member) => {
        const json = JSON.stringify(member);
        const key = String(member.handle);
        // The hash write and the bus event in one Redis script: a node listing the room never
        // sees one without the other (see SessionManager's presence sync).
        const msg = { type: 'presence', room, event, member: json } as const;
        const p = event === 'join' ? bus.presenceAdd(room, key, json, msg) : bus.presenceRemove(room, key, msg);
        // A rejection (an argument the bus refuses) is a failed write too, never an unhandled rejection.
        void p.then((ok) => { if (!ok) c.drop('cluster'); }, () => c.drop('cluster'));
      },
      remoteMembers: async (room) => {
        const list = await bus.presenceList(room).catch(() => null);
        if (list === null) {
          c.drop('cluster');
          return null;
        }
        const out: PresenceMember[] = [];
        for (const e of list) {
          if (e.node === bus.nodeId) continue;
          const member = parseMember(e.member);
          if (member !== null) out.push(member); // else an entry another version (or something else) wrote
        }
        return out;
      },
    };
  }

  private onBus(m: BusMessage): void {
    if (this.state !== 'listening') return;
    switch (m.type) {
      case 'publish':
        this.exec.publish(m.topic, m.data, m.binary, 0);
        return;
      case 'uid':
        this.sessions.sendToUid(m.uid, m.data, m.binary, false);
        return;
      case 'presence':
        if (m.event === 'join' || m.event === 'leave') {
          const member = parseMember(m.member);
          // This node's own members are known here first-hand: a sweep by another node (this node
          // looked dead for a while) or their re-announcement says nothing new about them.
          if (member === null) this.counters.drop('badCommand');
          else if (member.node !== this.nodeId) this.sessions.remotePresence(m.room, m.event, member);
        }
        return;
      default:
    }
  }

  /** This node's cluster id ('' when not clustered). Handles are unique in the cluster as `${nodeId}:${handle}`. */
  get nodeId(): string {
    return this.bus?.nodeId ?? '';
  }

  /** Each connector's stop() is waited for until `deadline` at most (one that never settles cannot hold close()). */
  private async stopConnectors(deadline: number): Promise<void> {
    const list = this.startedConnectors;
    this.startedConnectors = [];
    for (const c of list) {
      // a connector that fails to stop must not keep the server from closing
      await settledBy(Promise.resolve().then(() => c.stop()).catch(() => undefined), deadline);
      // Its start() has not finished (close() or startTimeoutMs stopped waiting for it): what it
      // binds or opens after this stop() would stay (a listening port holds the process), so it
      // is stopped again once that start has succeeded.
      const starting = this.connectorStarts.get(c);
      if (starting !== undefined) starting.then(() => c.stop()).catch(() => undefined);
    }
  }

  /** Release everything. Workers still busy at `deadline` (stuck in a handler) are terminated. */
  private async teardown(deadline = Date.now() + this.options.shutdownTimeoutMs): Promise<void> {
    await this.stopConnectors(deadline);
    if (this.bus !== null) {
      const bus = this.bus;
      this.bus = null;
      this.sessions.cancelHeal();
      await bus.presenceRemoveNode().catch(() => null);
      await bus.stop().catch(() => undefined);
    }
    if (this.watchdog !== null) {
      clearTimeout(this.watchdog);
      this.watchdog = null;
    }
    this.exec.carrier = null;
    this.carrier.stop();
    for (const slot of this.slots) {
      slot.alive = false;
      if (slot.restartTimer !== null) {
        clearTimeout(slot.restartTimer);
        slot.restartTimer = null;
      }
      slot.inbound.close();
      slot.outbound.close();
    }
    const tasks = this.tasks.filter((t): t is Promise<unknown> => t !== null);
    // Each serve task ends once its worker sees the closed ring; one stuck in a synchronous
    // loop never does, and pool.destroy() below terminates its thread.
    await settledBy(Promise.allSettled(tasks), deadline);
    if (this.pool !== null) {
      await this.pool.destroy();
      this.pool = null;
    }
    this.exec.orphanedUpgrades.clear(); // their hooks ended with the workers
    if (this.listenSocket !== null) {
      this.uws.us_listen_socket_close(this.listenSocket);
      this.listenSocket = null;
    }
    (this.app as unknown as { close?: () => void }).close?.();
    this.state = 'closed';
  }

  // ------------------------------------------------------------------ introspection

  /** True once the server accepts connections (listen() is past binding its port, before connectors and onReady) until close() is called. */
  get listening(): boolean {
    return this.state === 'listening';
  }

  /** The bound port, or -1 before listen() resolved. */
  get boundPort(): number {
    return this.port;
  }

  /** The loaded modules (path, codec, events, socket options), the list onMountingModules got; empty before. */
  get moduleDescriptors(): readonly ModuleDescriptor[] {
    return this.modules;
  }

  /** The open connections, as records (a snapshot; iterate freely). */
  connections(): ConnectionInfo[] {
    const out: ConnectionInfo[] = [];
    for (const ws of this.sockets.values()) out.push(this.record(ws.getUserData().rw, ws));
    // Sockets held for a resume in its hooks are still open (see SessionManager.beginResume).
    if (this.sessions.heldCount > 0) for (const d of this.sessions.detached.values()) if (d.held !== null) out.push(this.record(d.ud, d.held));
    return out;
  }

  /** The record of one connection (live or detached), or null; handlers get it with `await ctx.connection(handle)`. */
  connection(handle: number): ConnectionInfo | null {
    const ws = this.sessions.sockOf(handle);
    if (ws !== undefined) return this.record(ws.getUserData().rw, ws);
    const d = this.sessions.detachedOf(handle);
    return d === undefined ? null : this.record(d.ud, d.held);
  }

  private record(ud: SocketData, ws: Sock | null): ConnectionInfo {
    return {
      fd: ud.fd, handle: ud.handle, remoteAddress: ud.remoteAddress, url: ud.url,
      module: this.modules[ud.module]?.path ?? '', worker: ud.slot, connectedAt: ud.connectedAt,
      handshakeMs: ud.handshakeMs, bufferedAmount: ws === null ? 0 : ws.getBufferedAmount(),
      transport: ud.transport, uid: ud.uid, rooms: ud.rooms === null ? [] : [...ud.rooms], node: this.nodeId,
      detached: ws === null,
    };
  }

  /** Subscribers of a topic on this node (uWS sockets and connector clients). */
  subscribers(topic: string): number {
    return this.exec.subscribers(topic);
  }

  /** Members of a room on this node (see ctx.join), or null when nobody joined it. */
  roomMembers(room: string): PresenceMember[] | null;
  /**
   * One page of a room's members on this node, by handle, as `ctx.room(topic, options)` pages them
   * (no ring here, so a page is cut at `limit` only). Pass `next` back as `after` until it is null.
   */
  roomMembers(room: string, page: PageOptions): MemberPage;
  roomMembers(room: string, page?: PageOptions): PresenceMember[] | null | MemberPage {
    const members = this.sessions.roomInfo(room).members;
    if (page === undefined) return members;
    return this.sessions.memberPage(members, checkPageOptions(page, 'server.roomMembers()', true)).page;
  }

  /** The rooms with members on this node, with their member counts (detached sessions included); handlers: `await ctx.listRooms()`. */
  listRooms(): RoomSummary[];
  /**
   * One page of the room list, by room name, as `ctx.listRooms(options)` pages it (no ring here, so
   * a page is cut at `limit` only). Pass `next` back as `after` until it is null.
   */
  listRooms(page: PageOptions): RoomListPage;
  listRooms(page?: PageOptions): RoomSummary[] | RoomListPage {
    if (page === undefined) return this.sessions.roomList();
    return this.sessions.roomPage(checkPageOptions(page, 'server.listRooms()', false)).page;
  }

  /** Handles bound to a uid on this node (live or detached). */
  uidHandles(uid: string): number[] {
    return [...(this.sessions.uids.get(uid) ?? [])];
  }

  private clusterStats(): ServerStats['cluster'] {
    const b = this.bus;
    if (b === null) return null;
    const s = b.stats();
    return {
      nodeId: s.nodeId, connected: s.connected, published: s.published, received: s.received, dropped: s.dropped, reconnects: s.reconnects,
      presenceRetries: this.counters.presenceRetries,
    };
  }

  /** Counters and gauges of this node: connections, messages, drops by reason, per-worker ring use and errors (a snapshot). */
  stats(): ServerStats {
    const c = this.counters;
    let workerShutdown = 0;
    const workers = this.slots.map((s) => {
      const k = s.counters;
      workerShutdown += k[WorkerCounter.droppedOnShutdown]!;
      const used = s.usedBytes();
      return {
        slot: s.index, alive: s.alive, restarts: s.restarts, restartBackoffMs: s.backoffMs, connections: s.connections,
        ringCapacity: s.inbound.capacity, inboundUsed: used.inbound, outboundUsed: used.outbound,
        overflowUsed: used.overflow, overflowed: s.overflowed,
        messages: k[0]!, handlerErrors: k[1]!, badFrames: k[2]!, unknownEvents: k[3]!,
        outboundFullWaits: k[4]!, hookErrors: k[6]!, asyncTimeouts: k[WorkerCounter.asyncTimeouts]!, discarded: k[WorkerCounter.discarded]!,
        unhandledRejections: k[WorkerCounter.unhandledRejections]!, duplicateReplies: k[WorkerCounter.duplicateReplies]!,
        strayReplies: k[WorkerCounter.strayReplies]!,
      };
    });
    return {
      connections: c.connections, liveFds: this.alloc.live, orphanedUpgrades: this.exec.orphanedUpgrades.size, upgradesAccepted: c.upgradesAccepted, upgradesRejected: c.upgradesRejected,
      messagesIn: c.messagesIn, messagesOut: c.messagesOut, publishes: c.publishes,
      drops: { ...c.drops, workerShutdown }, workerRestarts: c.workerRestarts, workers,
      resumes: c.resumes, workerBackoffs: c.workerBackoffs, detached: this.sessions.detached.size - this.sessions.heldCount, connectorErrors: { ...c.connectorErrors },
      cluster: this.clusterStats(),
    };
  }
}

/**
 * A presence member from the JSON text another node wrote (a Redis hash value or a bus event), or
 * null when it is not one: not JSON, or JSON without the object shape the presence code keys
 * members by (`${node}:${handle}`). Such text comes from another version or a stray write; taken
 * as a member, a `null` made every snapshot of its room throw inside the join's promise chain (an
 * unhandled rejection: the process exited).
 */
function parseMember(json: string): PresenceMember | null {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const m = v as Partial<PresenceMember>;
  return typeof m.handle === 'number' && typeof m.node === 'string' ? m as PresenceMember : null;
}

/** A numeric socket option of module `path` (from its descriptor): an integer in min..max, or `def` when absent. */
function socketOption(o: Readonly<Record<string, number | boolean>>, path: string, name: string, def: number, min: number, max: number): number {
  const v = o[name];
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`module ${path}: options.${name} must be an integer between ${min} and ${max}, got ${String(v)}`);
  }
  return v;
}

/** Token bucket refill: the tokens after `now - at` ms at `perMs`, capped at `burst`. */
function refill(tokens: number, at: number, now: number, perMs: number, burst: number): number {
  const t = tokens + (now - at) * perMs;
  return t > burst ? burst : t;
}

/** Rate limit: take one token; false when the bucket is empty. */
function takeToken(ud: SocketData, perMs: number, burst: number, now: number): boolean {
  const t = refill(ud.tokens, ud.refilledAt, now, perMs, burst);
  ud.refilledAt = now;
  ud.tokens = t < 1 ? t : t - 1;
  return t >= 1;
}

/** Shed answers have their own bucket (same rate, burst `shedBurst`); false when it is empty too. */
function takeShedToken(ud: SocketData, perMs: number, burst: number, now: number): boolean {
  const t = refill(ud.shedTokens, ud.shedAt, now, perMs, burst);
  ud.shedAt = now;
  ud.shedTokens = t < 1 ? t : t - 1;
  return t >= 1;
}

/** Create a ringwire server (nothing starts until `listen()`). */
export function createServer(options: ServerOptions): Server {
  return new Server(options);
}

/** Waits for `p` until `deadline` (Date.now() ms) at most; `p` should not reject. */
async function settledBy(p: Promise<unknown>, deadline: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => { timer = setTimeout(resolve, Math.max(0, deadline - Date.now())); })]);
  clearTimeout(timer);
}
