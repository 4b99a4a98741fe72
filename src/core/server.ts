/**
 * The I/O thread: owns the uWS app, every socket, the fd allocator and the worker slots.
 * It runs no user code on the hot path: it copies each event into the ring of the worker
 * that owns the connection and executes the commands the workers write back.
 *
 *   listen():  onInit → describe modules (in a worker) → onMountingModules → mount routes
 *              → afterRoutesInit → start workers → listen → onReady
 *              any failure → onServerInitError → listen() rejects with a typed error
 *   close():   stop accepting → barrier (replies already accepted are delivered) → close
 *              every socket with 1001 → barrier (disconnect hooks done) → onShutdown
 *              → stop workers → resolve
 */
import { Piscina } from 'piscina';
import type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_listen_socket, us_socket_context_t, WebSocketBehavior } from 'uWebSockets.js';
import { loadUws } from './uws.js';
import { resolveOptions, type ResolvedOptions, type ServerOptions } from './options.js';
import { Slot } from './slot.js';
import { CorkCarrier } from './cork-carrier.js';
import { CommandExecutor, statusLine, type PendingUpgrade, type SocketData } from './commands.js';
import { Counters, type ConnectionInfo, type ServerStats } from './stats.js';
import { prometheusText } from './metrics.js';
import { workerChannel } from '../shared/diagnostics.js';
import { FdAllocator } from '../fd/index.js';
import { BROADCAST_TOPIC_PREFIX, CloseCode, Defaults } from '../shared/constants.js';
import {
  HandlerError, ListenError, ModuleLoadError, RingwireError, ServerStateError,
} from '../shared/errors.js';
import { WorkerCounter, type DescribeResult, type ModuleDescriptor, type ServeTask } from '../shared/tasks.js';

const WORKER_FILE = new URL('../workers/runtime.js', import.meta.url).href;
/** Headers copied into the Upgrade record: at most this many, each value capped. */
const MAX_HEADERS = 64;
const MAX_HEADER_VALUE = 4096;
const EMPTY = new Uint8Array(0);

type State = 'new' | 'starting' | 'listening' | 'closing' | 'closed';

export class Server {
  readonly options: ResolvedOptions;
  private state: State = 'new';
  private readonly uws = loadUws();
  private readonly app: TemplatedApp;
  private readonly alloc: FdAllocator;
  private readonly sockets = new Map<number, WebSocket<SocketData>>();
  private readonly pending = new Map<number, PendingUpgrade>();
  private readonly counters = new Counters();
  private readonly exec: CommandExecutor;
  private readonly slots: Slot[] = [];
  private readonly carrier = new CorkCarrier();
  private readonly tasks: (Promise<unknown> | null)[] = [];
  private pool: Piscina | null = null;
  private listenSocket: us_listen_socket | null = null;
  private rr = 0;
  private modules: readonly ModuleDescriptor[] = [];
  /** Per module: maxPayloadLength, enforced in onMessage so the client gets 1009. */
  private payloadLimits: number[] = [];
  private port = -1;
  private closePromise: Promise<void> | null = null;
  private listenPromise: Promise<number> | null = null;

  // uWS handlers bound once (no closure per connection or message).
  private readonly onOpen = (ws: WebSocket<SocketData>): void => this.handleOpen(ws);
  private readonly onMessage = (ws: WebSocket<SocketData>, msg: ArrayBuffer, isBinary: boolean): void => {
    const ud = ws.getUserData();
    const c = this.counters;
    c.messagesIn++;
    if (ud.closed) {
      // uWS may still hand over messages parsed from the same read after end(): refused, counted.
      c.drop('inboundFull', ud.handle);
      return;
    }
    if (msg.byteLength > this.payloadLimits[ud.module]!) {
      // Enforced here rather than by uWS, which drops the TCP connection (1006) instead of closing with 1009.
      c.drop('tooBig', ud.handle);
      ws.end(CloseCode.TOO_BIG, 'message too big');
      return;
    }
    const rl = this.options.rateLimit;
    if (rl !== null && !takeToken(ud, rl.perMs, rl.burst)) {
      c.drop('rateLimited', ud.handle);
      ws.end(CloseCode.POLICY, 'rate limit exceeded');
      return;
    }
    const slot = this.slots[ud.slot]!;
    const r = slot.message(ud.handle, isBinary, new Uint8Array(msg));
    if (r === 0) {
      if (!slot.dirty) this.markDirty(slot);
      return;
    }
    if (r > 0) {
      if (ud.backlogEpoch !== slot.backlogEpoch) {
        ud.backlogEpoch = slot.backlogEpoch;
        ud.backlogBytes = 0;
      }
      ud.backlogBytes += r;
      if (ud.backlogBytes <= slot.overflowShare) return;
    } else {
      c.drop('inboundFull', ud.handle);
    }
    c.drop('busyCloses', ud.handle);
    ws.end(CloseCode.TRY_AGAIN, 'server busy');
  };
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

  private readonly onDrain = (ws: WebSocket<SocketData>): void => {
    const ud = ws.getUserData();
    this.slots[ud.slot]!.drain(ud.handle, ws.getBufferedAmount());
  };
  private readonly onClose = (ws: WebSocket<SocketData>, code: number, message: ArrayBuffer): void =>
    this.handleClose(ws, code, message);

  constructor(options: ServerOptions) {
    this.options = resolveOptions(options);
    this.alloc = new FdAllocator({ maxLive: this.options.maxConnections, maxFd: this.options.maxFd });
    this.app = this.uws.App();
    this.exec = new CommandExecutor(this.app, this.alloc, this.sockets, this.pending, this.counters);
    this.exec.rateBurst = this.options.rateLimit?.burst ?? 0;
    for (let i = 0; i < this.options.workers; i++) {
      this.slots.push(new Slot(i, this.options.ringBytes, this.options.overflowBytes));
      this.tasks.push(null);
    }
  }

  /** Starts the workers and listens; resolves to the bound port (port 0 picks a free one). */
  listen(port: number, host = '0.0.0.0'): Promise<number> {
    if (this.state !== 'new') {
      return Promise.reject(new ServerStateError(`listen() called on a server that is ${this.state}`));
    }
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      return Promise.reject(new RangeError('port must be an integer between 0 and 65535'));
    }
    this.state = 'starting';
    this.listenPromise = this.start(port, host);
    return this.listenPromise;
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
      const d = await this.pool.run({
        type: 'describe', modules: this.options.modules, hooks: this.options.hooks, codec: this.options.codec,
      }) as DescribeResult;
      if (!d.ok) throw new ModuleLoadError(d.message);
      this.modules = d.modules;
      await this.lifecycle('onMountingModules', lc.onMountingModules ? () => lc.onMountingModules!(d.modules) : undefined);
      this.mount(d.modules);
      await this.lifecycle('afterRoutesInit', lc.afterRoutesInit);
      for (const slot of this.slots) this.startSlot(slot);
      const ls = await new Promise<us_listen_socket | false>((resolve) => {
        this.app.listen(host, port, resolve);
      });
      if (ls === false) throw new ListenError(`cannot listen on ${host}:${port} (address in use or not available)`);
      this.listenSocket = ls;
      this.port = this.uws.us_socket_local_port(ls);
      await this.carrier.start(this.port, host);
      this.exec.carrier = this.carrier;
      this.state = 'listening';
      await this.lifecycle('onReady', lc.onReady ? () => lc.onReady!({ port: this.port, host }) : undefined);
      return this.port;
    } catch (err) {
      const e = err instanceof RingwireError || err instanceof TypeError || err instanceof RangeError
        ? err : new HandlerError('listen', err);
      if (lc.onServerInitError) {
        try {
          await lc.onServerInitError(e);
        } catch {
          // the original error is the one listen() reports
        }
      }
      await this.teardown();
      throw e;
    }
  }

  private async lifecycle(name: string, fn: (() => unknown) | undefined): Promise<void> {
    if (fn === undefined) return;
    try {
      await fn();
    } catch (err) {
      throw err instanceof RingwireError ? err : new HandlerError(`lifecycle.${name}`, err);
    }
  }

  private mount(modules: readonly ModuleDescriptor[]): void {
    const maxRecord = this.slots[0]!.inbound.maxRecord - 64;
    for (let id = 0; id < modules.length; id++) {
      const m = modules[id]!;
      const o = m.options;
      // Default: 64 KiB, or less if the rings are smaller; an explicit value must fit the ring.
      const maxPayloadLength = typeof o['maxPayloadLength'] === 'number'
        ? o['maxPayloadLength'] : Math.min(Defaults.maxPayloadLength, maxRecord);
      if (maxPayloadLength > maxRecord) {
        throw new RangeError(`module ${m.path}: options.maxPayloadLength (${maxPayloadLength}) must fit the ring (at most ${maxRecord}); raise options.ringBytes`);
      }
      this.payloadLimits[id] = maxPayloadLength;
      const paramCount = m.path.split('/').filter((s) => s.startsWith(':')).length;
      const behavior: WebSocketBehavior<SocketData> = {
        compression: this.uws.DISABLED,
        // uWS's own cap is the ring's record limit: anything above our per-module limit but
        // within it gets a proper 1009 close; only larger frames are dropped by uWS (1006).
        maxPayloadLength: maxRecord,
        idleTimeout: typeof o['idleTimeout'] === 'number' ? o['idleTimeout'] : Defaults.idleTimeout,
        maxBackpressure: typeof o['maxBackpressure'] === 'number' ? o['maxBackpressure'] : Defaults.maxBackpressure,
        sendPingsAutomatically: o['sendPingsAutomatically'] !== false,
        maxLifetime: typeof o['maxLifetime'] === 'number' ? o['maxLifetime'] : 0,
        upgrade: (res, req, context) => this.handleUpgrade(res, req, context, id, paramCount),
        open: this.onOpen,
        message: this.onMessage,
        drain: this.onDrain,
        close: this.onClose,
      };
      // uWS types this as a number; it is a boolean flag.
      (behavior as { closeOnBackpressureLimit?: unknown }).closeOnBackpressureLimit = o['closeOnBackpressureLimit'] === true;
      this.app.ws(m.path, behavior);
    }
    this.carrier.mount(this.app);
    const metricsPath = this.options.metricsPath;
    if (metricsPath !== null) {
      this.app.get(metricsPath, (res) => {
        res.cork(() => {
          res.writeHeader('content-type', 'text/plain; version=0.0.4; charset=utf-8').end(prometheusText(this.stats()));
        });
      });
    }
    this.app.any('/*', (res) => {
      res.writeStatus(statusLine(404)).end('no ringwire module on this path');
    });
  }

  // ------------------------------------------------------------------ workers

  /**
   * Hung-handler watchdog. Armed by traffic, it re-arms itself only while some worker is
   * busy, so an idle server has no timer. A worker whose current record started more than
   * handlerTimeoutMs ago is terminated; piscina reports the death and workerDied() closes its
   * connections with 1011 and starts a replacement.
   */
  private watchdog: NodeJS.Timeout | null = null;
  private armWatchdog(): void {
    const period = Math.max(10, this.options.handlerTimeoutMs >>> 2);
    this.watchdog = setTimeout(this.checkWatchdog, period);
    this.watchdog.unref();
  }
  private readonly checkWatchdog = (): void => {
    this.watchdog = null;
    if (this.state !== 'listening' || this.pool === null) return;
    const now = performance.timeOrigin + performance.now();
    let busy = false;
    for (const slot of this.slots) {
      const since = slot.counters[WorkerCounter.busySince]!;
      if (!slot.alive || since === 0) continue;
      busy = true;
      if (now - since < this.options.handlerTimeoutMs) continue;
      const tid = slot.counters[WorkerCounter.threadId]!;
      const worker = this.pool.threads.find((w) => w.threadId === tid);
      if (worker === undefined) continue;
      slot.counters[WorkerCounter.busySince] = 0;
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
      idleSpinMicros: this.options.idleSpinMicros, idleBlockMs: this.options.idleBlockMs,
    };
    const gen = slot.generation;
    const p = this.pool!.run(task);
    this.tasks[slot.index] = p;
    p.then(() => undefined, (err: unknown) => {
      if (slot.generation === gen && (this.state === 'listening' || this.state === 'starting')) this.workerDied(slot, err);
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
    if (workerChannel.hasSubscribers) workerChannel.publish({ slot: slot.index, event: 'died', error: err });
    slot.restarts++;
    this.counters.workerRestarts++;
    // Deliver what the worker produced before it died, then close exactly its connections.
    this.exec.drain(slot);
    for (const ws of this.sockets.values()) {
      const ud = ws.getUserData();
      if (ud.slot === slot.index && ud.slotGen === slot.generation) ws.end(CloseCode.INTERNAL, 'worker died');
    }
    for (const [fd, p] of this.pending) {
      if (p.slot !== slot.index) continue;
      if (p.timer !== null) clearTimeout(p.timer);
      this.pending.delete(fd);
      this.alloc.release(fd);
      if (!p.aborted) p.res.cork(() => { p.res.writeStatus(statusLine(503)).end('worker died'); });
    }
    for (const w of slot.barrierWaiters.values()) w();
    slot.barrierWaiters.clear();
    slot.reset();
    slot.generation++;
    this.startSlot(slot);
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
    if (origins !== null && !origins.has(req.getHeader('origin'))) {
      this.counters.drop('originRejected');
      res.writeStatus(statusLine(403)).end('origin not allowed');
      return;
    }
    const fd = this.alloc.alloc();
    if (fd === 0) {
      this.counters.drop('connLimit');
      res.writeStatus(statusLine(503)).end('too many connections');
      return;
    }
    const slot = this.pickSlot();
    if (slot === null) {
      this.alloc.release(fd);
      this.counters.drop('workerUnavailable');
      res.writeStatus(statusLine(503)).end('no worker available');
      return;
    }
    const handle = this.alloc.handle(fd);
    const headerNames: string[] = [];
    const headerValues: string[] = [];
    req.forEach((k, v) => {
      if (headerNames.length < MAX_HEADERS) {
        headerNames.push(k);
        headerValues.push(v.length > MAX_HEADER_VALUE ? v.slice(0, MAX_HEADER_VALUE) : v);
      }
    });
    const params: string[] = [];
    for (let i = 0; i < paramCount; i++) params.push(req.getParameter(i));
    const url = req.getUrl();
    const query = req.getQuery() ?? '';
    const remoteAddress = Buffer.from(res.getRemoteAddressAsText()).toString();
    const p: PendingUpgrade = {
      res, context, module, handle, slot: slot.index, slotGen: slot.generation, aborted: false, timer: null,
      remoteAddress, url, startedAt: performance.now(),
      key: req.getHeader('sec-websocket-key'),
      protocol: req.getHeader('sec-websocket-protocol'),
      extensions: req.getHeader('sec-websocket-extensions'),
    };
    res.onAborted(() => {
      p.aborted = true;
      this.counters.drop('upgradeAborted', handle);
    });
    const ok = slot.upgrade({
      handle, module, url, query, remoteAddress, headerNames, headerValues, params,
    });
    if (!ok) {
      this.alloc.release(fd);
      this.counters.drop('workerUnavailable');
      res.writeStatus(statusLine(503)).end('server busy');
      return;
    }
    this.pending.set(fd, p);
    p.timer = setTimeout(this.upgradeTimedOut, this.options.upgradeTimeoutMs, p);
  }

  /** Slowloris guard: the upgrade hooks did not answer in time → 408, fd released. */
  private readonly upgradeTimedOut = (p: PendingUpgrade): void => {
    const fd = this.alloc.fdOf(p.handle);
    if (this.pending.get(fd) !== p) return;
    this.pending.delete(fd);
    this.alloc.release(fd);
    this.counters.drop('upgradeTimeout', p.handle);
    if (!p.aborted) p.res.cork(() => { p.res.writeStatus(statusLine(408)).end('upgrade timed out'); });
    // The worker still holds the half-made connection: let it forget it once its hook returns.
    const slot = this.slots[p.slot]!;
    if (slot.alive && slot.generation === p.slotGen) slot.close(p.handle, CloseCode.ABNORMAL, EMPTY);
  };

  private handleOpen(ws: WebSocket<SocketData>): void {
    const ud = ws.getUserData();
    const slot = this.slots[ud.slot]!;
    this.sockets.set(ud.fd, ws);
    this.counters.connections++;
    if (!slot.alive || slot.generation !== ud.slotGen) {
      ws.end(CloseCode.INTERNAL, 'worker died');
      return;
    }
    slot.connections++;
    ws.subscribe(BROADCAST_TOPIC_PREFIX + String(ud.module));
    if (!slot.open(ud.handle)) ws.end(CloseCode.TRY_AGAIN, 'server busy');
  }

  private handleClose(ws: WebSocket<SocketData>, code: number, message: ArrayBuffer): void {
    const ud = ws.getUserData();
    if (ud.closed) return;
    ud.closed = true;
    this.sockets.delete(ud.fd);
    this.alloc.release(ud.fd);
    this.counters.connections--;
    const slot = this.slots[ud.slot]!;
    if (slot.alive && slot.generation === ud.slotGen) {
      slot.connections--;
      slot.close(ud.handle, code, message.byteLength === 0 ? EMPTY : new Uint8Array(message));
    }
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

  private async shutdown(): Promise<void> {
    if (this.state === 'new') {
      this.state = 'closed';
      return;
    }
    if (this.state === 'starting' && this.listenPromise !== null) {
      await this.listenPromise.catch(() => undefined);
    }
    if (this.state === 'closed') return;
    this.state = 'closing';
    this.exec.closing = true;
    const deadline = Date.now() + this.options.shutdownTimeoutMs;
    if (this.listenSocket !== null) {
      this.uws.us_listen_socket_close(this.listenSocket);
      this.listenSocket = null;
    }
    // 1. Replies to everything already accepted reach their clients (repeat while messages still arrive).
    for (let round = 0; round < 8 && Date.now() < deadline; round++) {
      const before = this.counters.messagesIn;
      await this.barrierAll(deadline);
      if (this.counters.messagesIn === before) break;
    }
    // 2. Close every socket with 1001; each close queues the connection's disconnect hooks.
    for (const ws of [...this.sockets.values()]) ws.end(CloseCode.GOING_AWAY, 'server shutdown');
    for (const [fd, p] of this.pending) {
      if (p.timer !== null) clearTimeout(p.timer);
      this.pending.delete(fd);
      this.alloc.release(fd);
      if (!p.aborted) p.res.cork(() => { p.res.writeStatus(statusLine(503)).end('server shutting down'); });
    }
    // 3. Every disconnect hook has run.
    await this.barrierAll(deadline);
    try {
      await this.options.lifecycle.onShutdown?.();
    } catch {
      // shutdown goes on; the hook's failure must not leave sockets or threads behind
    }
    await this.teardown();
  }

  private async teardown(): Promise<void> {
    if (this.watchdog !== null) {
      clearTimeout(this.watchdog);
      this.watchdog = null;
    }
    this.exec.carrier = null;
    this.carrier.stop();
    for (const slot of this.slots) {
      slot.alive = false;
      slot.inbound.close();
      slot.outbound.close();
    }
    const tasks = this.tasks.filter((t): t is Promise<unknown> => t !== null);
    await Promise.allSettled(tasks);
    if (this.pool !== null) {
      await this.pool.destroy();
      this.pool = null;
    }
    if (this.listenSocket !== null) {
      this.uws.us_listen_socket_close(this.listenSocket);
      this.listenSocket = null;
    }
    (this.app as unknown as { close?: () => void }).close?.();
    this.state = 'closed';
  }

  // ------------------------------------------------------------------ introspection

  get listening(): boolean {
    return this.state === 'listening';
  }

  /** The bound port, or -1 before listen() resolved. */
  get boundPort(): number {
    return this.port;
  }

  get moduleDescriptors(): readonly ModuleDescriptor[] {
    return this.modules;
  }

  /** The open connections, as records (a snapshot; iterate freely). */
  connections(): ConnectionInfo[] {
    const out: ConnectionInfo[] = [];
    for (const ws of this.sockets.values()) {
      const ud = ws.getUserData();
      out.push({
        fd: ud.fd, handle: ud.handle, remoteAddress: ud.remoteAddress, url: ud.url,
        module: this.modules[ud.module]?.path ?? '', worker: ud.slot, connectedAt: ud.connectedAt,
        handshakeMs: ud.handshakeMs, bufferedAmount: ws.getBufferedAmount(),
      });
    }
    return out;
  }

  stats(): ServerStats {
    const c = this.counters;
    let workerShutdown = 0;
    const workers = this.slots.map((s) => {
      const k = s.counters;
      workerShutdown += k[WorkerCounter.droppedOnShutdown]!;
      const used = s.usedBytes();
      return {
        slot: s.index, alive: s.alive, restarts: s.restarts, connections: s.connections,
        ringCapacity: s.inbound.capacity, inboundUsed: used.inbound, outboundUsed: used.outbound,
        overflowUsed: used.overflow, overflowed: s.overflowed,
        messages: k[0]!, handlerErrors: k[1]!, badFrames: k[2]!, unknownEvents: k[3]!,
        outboundFullWaits: k[4]!, hookErrors: k[6]!,
      };
    });
    return {
      connections: c.connections, liveFds: this.alloc.live, upgradesAccepted: c.upgradesAccepted, upgradesRejected: c.upgradesRejected,
      messagesIn: c.messagesIn, messagesOut: c.messagesOut, publishes: c.publishes,
      drops: { ...c.drops, workerShutdown }, workerRestarts: c.workerRestarts, workers,
    };
  }
}

/** Token bucket: refill by elapsed time, take one token; false when empty. */
function takeToken(ud: SocketData, perMs: number, burst: number): boolean {
  const now = performance.now();
  let t = ud.tokens + (now - ud.refilledAt) * perMs;
  ud.refilledAt = now;
  if (t > burst) t = burst;
  if (t < 1) {
    ud.tokens = t;
    return false;
  }
  ud.tokens = t - 1;
  return true;
}

/** Create a ringwire server (nothing starts until `listen()`). */
export function createServer(options: ServerOptions): Server {
  return new Server(options);
}
