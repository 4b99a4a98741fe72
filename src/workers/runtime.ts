/**
 * The piscina worker entry. Two tasks:
 *  - `describe`: load the module files once at start-up and return their paths/options,
 *    so the I/O thread can mount routes without ever importing user code;
 *  - `serve`: the long-running loop of one worker slot. It drains its inbound ring in
 *    batches, runs the pipeline on each record in place, writes commands to the outbound
 *    ring, and sleeps (Atomics.waitAsync) when idle. It resolves when the ring is closed.
 *
 * Why waitAsync and not a blocking Atomics.wait: hooks may be async (database calls,
 * timers). A worker blocked in Atomics.wait could not run their continuations.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { threadId } from 'node:worker_threads';
import { Ring } from '../shared/ring.js';
import { NoticeOp, RecordKind, RecordReader } from '../shared/records.js';
import { ControlKind, CloseCode } from '../shared/constants.js';
import { BadFrameError, ModuleLoadError, RateLimitedError, RingwireError, UnknownEventError } from '../shared/errors.js';
import type { DecodedFrame } from '../shared/wire.js';
import type { Stage } from './define.js';
import type { DescribeResult, ServeTask, WorkerTask } from '../shared/tasks.js';
import { WorkerCounter } from '../shared/tasks.js';
import { Conn, ConnState, ownerOf } from './connection.js';
import { describeModule, loadAll, type Loaded, type ModuleRt, type RouteRt } from './loader.js';
import { Outbox, readU32 } from './outbox.js';
import {
  abandon, errorReply, frameFailed, mergeInto, reportUnhandled, runConnect, runDrain, runDisconnect, runSession, runUpgrade, setPipelineHost, startMessage, type PipelineHost,
} from './pipeline.js';

const utf8d = new TextDecoder();
/** A connection may queue this many bytes of records behind an async handler before it is closed (1013). */
const MAX_CONN_QUEUE_BYTES = 4 * 1024 * 1024;
/** Yield to the event loop at least this often (ms) while busy, so async hooks and timers progress. */
const YIELD_EVERY_MS = 2;
/** Entries of Serve.connCache (a power of two). */
const CONN_CACHE = 256;

class Serve implements PipelineHost {
  readonly inbound: Ring;
  readonly outbox: Outbox;
  readonly counters: Float64Array;
  readonly reader: RecordReader;
  readonly loaded: Loaded;
  readonly conns = new Map<number, Conn>();
  /**
   * Connections of recent Message records by the low bits of their handle (its fd: the fds of live
   * connections are distinct, so they rarely share an entry): conns.get per message was ~5 % of the
   * worker's time with the route lookup. An entry is cleared when its connection leaves `conns`
   * (dropConn), so it always holds one that conns holds.
   */
  readonly connCache: (Conn | null)[] = new Array<Conn | null>(CONN_CACHE).fill(null);
  /** The last route found by name, and the module and event name it was found for. */
  lastRouteModule: ModuleRt | null = null;
  lastRouteEvent = '';
  lastRoute: RouteRt | undefined = undefined;
  readonly frame: DecodedFrame = { event: '', eventId: 0, ref: 0, payload: new Uint8Array(0), data: undefined };
  inFlight = 0;
  barriers: number[] = [];
  readonly asyncTimeoutMs: number;

  constructor(t: ServeTask, loaded: Loaded) {
    this.asyncTimeoutMs = t.asyncTimeoutMs;
    this.inbound = Ring.from(t.inbound);
    this.counters = new Float64Array(t.counters);
    this.outbox = new Outbox(Ring.from(t.outbound), this.counters);
    this.reader = new RecordReader(this.inbound.data);
    this.loaded = loaded;
  }

  startAsync(conn: Conn, p: PromiseLike<unknown>, stage: Stage): void {
    conn.busy = true;
    this.counters[WorkerCounter.asyncPending] = ++this.inFlight;
    // The payload view points into the ring, which is reused once this batch is released:
    // detach a copy before anything runs after an await. ctx.data too: the same view, or one a
    // message hook set (a preHandler stripping a header: `ctx.data = ctx.payload.subarray(4)`),
    // which would otherwise read other connections' messages once the ring wraps.
    const ring = this.inbound.data.buffer;
    if (conn.payload.buffer === ring) {
      const p = conn.payload;
      const copy = p.slice();
      const d = conn.data;
      if (d === p) conn.data = copy;
      else if (ArrayBuffer.isView(d) && d.buffer === ring) {
        const at = d.byteOffset - p.byteOffset;
        conn.data = d instanceof Uint8Array && at >= 0 && at + d.byteLength <= p.byteLength
          ? (Buffer.isBuffer(d) ? Buffer.from(copy.buffer, copy.byteOffset + at, d.byteLength) : copy.subarray(at, at + d.byteLength))
          : copyView(d);
      }
      conn.payload = copy;
    }
    const seq = ++conn.asyncSeq;
    const done = (): void => this.finishAsync(conn, seq);
    p.then(done, done);
    if (this.asyncTimeoutMs > 0) conn.asyncTimer = setTimeout(this.asyncExpired, this.asyncTimeoutMs, conn, seq, stage);
  }

  /** The chain started as `seq` is still pending after asyncTimeoutMs: give up on it. */
  private readonly asyncExpired = (conn: Conn, seq: number, stage: Stage): void => {
    if (conn.asyncSeq !== seq || !conn.busy) return;
    conn.asyncTimer = null;
    conn.asyncSeq++; // its late settlement must not release the connection a second time
    abandon(conn, stage, this.asyncTimeoutMs);
    this.release(conn);
  };

  finishAsync(conn: Conn, seq: number): void {
    if (conn.asyncSeq !== seq) return; // abandoned after asyncTimeoutMs: released already
    if (conn.asyncTimer !== null) {
      clearTimeout(conn.asyncTimer);
      conn.asyncTimer = null;
    }
    this.release(conn);
  }

  private release(conn: Conn): void {
    conn.busy = false;
    conn.chainSeq = 0; // a late reply() of the chain (or a timer it left) answers nothing now
    // The chain is over: its message (a detached copy by now) is not the connection's any more.
    conn.payload = EMPTY_REC;
    conn.data = undefined;
    this.counters[WorkerCounter.asyncPending] = --this.inFlight;
    replayQueue(this, conn);
    if (this.inFlight === 0) this.flushBarriers();
    this.outbox.ring.notify();
  }

  forget(conn: Conn): void {
    this.dropConn(conn.handle);
  }

  /** Every removal from `conns` goes through here (connCache holds only connections conns holds). */
  dropConn(handle: number): void {
    this.conns.delete(handle);
    this.uncache(handle);
  }

  uncache(handle: number): void {
    const i = handle & (CONN_CACHE - 1);
    if (this.connCache[i]?.handle === handle) this.connCache[i] = null;
  }

  flushBarriers(): void {
    const b = this.barriers;
    if (b.length === 0) return;
    for (let i = 0; i < b.length; i++) this.outbox.barrierAck(b[i]!);
    this.barriers = [];
  }
}

let S: Serve;

/**
 * Queue a record of a busy connection. Messages are bounded (MAX_CONN_QUEUE_BYTES, then 1013 and
 * the queued messages are discarded, counted); every other record (its Close above all) is always
 * queued, so the disconnect hooks still run once the connection is free.
 */
function enqueue(s: Serve, conn: Conn, message: boolean, data: Uint8Array, offset: number, length: number): void {
  if (message) {
    if (conn.closing) {
      s.counters[WorkerCounter.discarded]! += 1;
      return;
    }
    if (conn.queueBytes + length > MAX_CONN_QUEUE_BYTES) {
      // Bounded: a connection whose handler is stuck cannot grow the worker without limit.
      conn.close(CloseCode.TRY_AGAIN, 'handler backlog full');
      s.counters[WorkerCounter.discarded]! += 1 + discardQueuedMessages(conn);
      return;
    }
  }
  let q = conn.queue;
  if (q === null) {
    q = conn.queue = [];
    conn.queueHead = 0;
  } else if (conn.queueHead >= 1024 && conn.queueHead * 2 >= q.length) {
    // A connection that never lets its queue run dry must not grow the array for ever.
    q = conn.queue = q.slice(conn.queueHead);
    conn.queueHead = 0;
  }
  q.push(data.slice(offset, offset + length));
  conn.queueBytes += length;
}

/** Drop the queued Message/Shed records of a connection that is closing; returns how many. */
function discardQueuedMessages(conn: Conn): number {
  const q = conn.queue;
  if (q === null) return 0;
  const keep: Uint8Array[] = [];
  let n = 0;
  for (let i = conn.queueHead; i < q.length; i++) {
    const rec = q[i]!;
    const kind = readU32(rec, 0);
    if (kind === RecordKind.Message || kind === RecordKind.Shed) {
      conn.queueBytes -= rec.length;
      n++;
    } else {
      keep.push(rec);
    }
  }
  conn.queue = keep;
  conn.queueHead = 0;
  return n;
}

function replayQueue(s: Serve, conn: Conn): void {
  const q = conn.queue;
  if (q === null) return;
  // A replay usually runs in a promise continuation while the serve loop is idle: the
  // watchdog must see it as busy, and count its records, like a batch.
  const c = s.counters;
  const wasBusy = c[WorkerCounter.busy]!;
  c[WorkerCounter.busy] = 1;
  while (conn.queueHead < q.length && !conn.busy) {
    const rec = q[conn.queueHead]!;
    q[conn.queueHead++] = EMPTY_REC;
    conn.queueBytes -= rec.length;
    c[WorkerCounter.records] = c[WorkerCounter.records]! + 1;
    dispatch(s, new RecordReader(rec), rec, 0, rec.length);
  }
  c[WorkerCounter.busy] = wasBusy;
  if (conn.queueHead >= q.length) {
    conn.queue = null;
    conn.queueHead = 0;
  }
}
const EMPTY_REC = new Uint8Array(0);

function onRecord(data: Uint8Array, offset: number, length: number): void {
  // Watchdog progress: the I/O thread terminates a busy worker whose record count stays put for
  // options.handlerTimeoutMs (a handler stuck in a synchronous loop).
  S.counters[WorkerCounter.records] = S.counters[WorkerCounter.records]! + 1;
  dispatch(S, S.reader, data, offset, length);
}

function dispatch(s: Serve, reader: RecordReader, data: Uint8Array, offset: number, length: number): void {
  const kind = readU32(data, offset);
  switch (kind) {
    case RecordKind.Message:
    case RecordKind.Shed: {
      reader.hbd(offset, false);
      const h = reader.hbdHandle;
      const ci = h & (CONN_CACHE - 1);
      let conn = s.connCache[ci]!;
      if (conn === null || conn.handle !== h) {
        const c = s.conns.get(h);
        if (c === undefined) return;
        s.connCache[ci] = conn = c;
      }
      if (conn.busy) return enqueue(s, conn, true, data, offset, length);
      if (conn.state !== ConnState.Open) return;
      if (conn.closing) {
        // Closed by a handler, a failed or timed-out hook, or a full backlog: no more handlers run.
        s.counters[WorkerCounter.discarded]! += 1;
        return;
      }
      if (kind === RecordKind.Message) onMessage(s, conn, data, reader.hbdBinary, reader.hbdStart, reader.hbdLength);
      else onShed(s, conn, data, reader.hbdBinary, reader.hbdStart, reader.hbdLength);
      return;
    }
    case RecordKind.Upgrade: {
      const u = reader.upgrade(offset);
      const mod = s.loaded.modules[u.module()];
      const handle = u.handle();
      if (mod === undefined) return;
      const params: Record<string, string> = {};
      const n = u.paramsLength();
      for (let i = 0; i < n && i < mod.paramNames.length; i++) params[mod.paramNames[i]!] = u.params(i);
      // No prototype: a header the client did not send reads undefined (`headers.constructor`), and
      // one named __proto__ is kept as a header, not lost to the setter.
      const headers = Object.create(null) as Record<string, string>;
      const hn = u.headerNamesLength();
      for (let i = 0; i < hn; i++) headers[u.headerNames(i)] = u.headerValues(i);
      const conn = new Conn(handle % 0x1000000, handle, mod, s.outbox, u.url() ?? '', u.query() ?? '',
        u.remoteAddress() ?? '', params, headers);
      s.uncache(handle); // a handle is never reused, but the cache must not outlive its entry
      s.conns.set(handle, conn);
      const p = runUpgrade(conn, 0);
      if (p !== undefined) s.startAsync(conn, p, 'upgrade');
      return;
    }
    case RecordKind.Open: {
      const o = reader.open(offset);
      const conn = s.conns.get(o.handle());
      if (conn === undefined) return;
      if (conn.busy) return enqueue(s, conn, false, data, offset, length);
      conn.state = ConnState.Open;
      const p = runConnect(conn, 0);
      if (p !== undefined) s.startAsync(conn, p, 'connect');
      return;
    }
    case RecordKind.Close: {
      const c = reader.close(offset);
      const conn = s.conns.get(c.handle());
      if (conn === undefined) return;
      if (conn.busy) return enqueue(s, conn, false, data, offset, length);
      if (conn.state !== ConnState.Open) {
        // Closed before it opened (aborted upgrade): no connect ran, so no disconnect runs.
        conn.state = ConnState.Closed;
        s.dropConn(conn.handle);
        return;
      }
      const r = c.reasonArray();
      const p = runDisconnect(conn, 0, c.code(), r === null ? '' : utf8d.decode(r));
      if (p !== undefined) s.startAsync(conn, p, 'disconnect');
      return;
    }
    case RecordKind.Drain: {
      const d = reader.drain(offset);
      const conn = s.conns.get(d.handle());
      if (conn === undefined || conn.state !== ConnState.Open || conn.module.drain.length === 0) return;
      if (conn.busy) return enqueue(s, conn, false, data, offset, length);
      const p = runDrain(conn, d.buffered(), 0);
      if (p !== undefined) s.startAsync(conn, p, 'drain');
      return;
    }
    case RecordKind.Notice:
      return onNotice(s, reader, data, offset, length);
    case ControlKind.Probe:
      return; // counted in onRecord: that is all a probe is for
    case ControlKind.Barrier: {
      const seq = readU32(data, offset + 4);
      if (s.inFlight === 0) s.outbox.barrierAck(seq);
      else s.barriers.push(seq);
      return;
    }
    default:
      s.counters[WorkerCounter.badFrames]! += 1;
  }
}

/** Session notices and request replies (cold: kept out of dispatch so the message path stays small). */
function onNotice(s: Serve, reader: RecordReader, data: Uint8Array, offset: number, length: number): void {
  const n = reader.notice(offset);
  const op = n.op();
  if (op === NoticeOp.Reply) {
    s.outbox.settle(n.id(), n.status(), n.dataArray());
    return;
  }
  const conn = s.conns.get(n.handle());
  if (conn === undefined || conn.state !== ConnState.Open) return;
  if (conn.busy) return enqueue(s, conn, false, data, offset, length);
  let p: PromiseLike<unknown> | undefined;
  let stage: Stage = 'away';
  if (op === NoticeOp.Detach) {
    p = runSession(conn, 'away', undefined, 0);
  } else if (op === NoticeOp.Resume) {
    const d = n.dataArray();
    const info = JSON.parse(d === null ? '{}' : utf8d.decode(d)) as { tempHandle: number; recovered: boolean; replayed: number };
    // The resumed socket's upgrade built a temporary connection: its upgrade userData
    // (fresh auth, say) is merged into the session's, then it is forgotten.
    const temp = s.conns.get(info.tempHandle);
    if (temp !== undefined) {
      mergeInto(conn.userData, temp.userData);
      s.dropConn(info.tempHandle);
    }
    p = runSession(conn, 'resume', { recovered: info.recovered, replayed: info.replayed }, 0);
    stage = 'resume';
  }
  if (p !== undefined) s.startAsync(conn, p, stage);
}

/**
 * A message shed by the I/O thread's rate limiter: only its ref and event are read (a frame that
 * does not decode is answered with ref 0), and it gets the RW_ERR_RATE_LIMITED error reply. No hook
 * or handler runs; the I/O thread has counted it (drops.rateLimited).
 */
function onShed(s: Serve, conn: Conn, data: Uint8Array, binary: boolean, start: number, length: number): void {
  const f = s.frame;
  conn.ref = 0;
  conn.event = '';
  try {
    conn.module.codec.decode(data, start, length, binary, f);
    conn.ref = f.ref;
    conn.event = f.event !== '' ? f.event : conn.module.routeById[f.eventId]?.name ?? '';
  } catch {
    // Undecodable and over the limit: the rate limit answer still goes out, uncorrelated.
  }
  errorReply(conn, new RateLimitedError(), 'message');
}

/** An open connection's message. Between chains ctx.payload/ctx.data are empty (see release()). */
function onMessage(s: Serve, conn: Conn, data: Uint8Array, binary: boolean, start: number, length: number): void {
  s.counters[WorkerCounter.messages]! += 1;
  const mod = conn.module;
  const f = s.frame;
  conn.replied = false;
  conn.deferred = null;
  conn.ref = 0;
  conn.event = '';
  f.ref = 0;
  try {
    mod.codec.decode(data, start, length, binary, f);
  } catch (err) {
    s.counters[WorkerCounter.badFrames]! += 1;
    conn.ref = f.ref; // the error reply is correlated when the frame's ref could be read
    frameFailed(conn, err instanceof RingwireError ? err : new BadFrameError(String(err)), 'decode');
    return;
  }
  let route: RouteRt | undefined;
  const event = f.event;
  if (event !== '') {
    // Event names come interned from the binary codec: the same name is the same string, and this
    // comparison a pointer check.
    if (event === s.lastRouteEvent && mod === s.lastRouteModule) route = s.lastRoute;
    else {
      route = mod.routes.get(event);
      if (route !== undefined) {
        s.lastRouteModule = mod;
        s.lastRouteEvent = event;
        s.lastRoute = route;
      }
    }
  } else if (f.eventId !== 0) route = mod.routeById[f.eventId];
  if (route === undefined) route = mod.fallback ?? undefined;
  conn.ref = f.ref;
  conn.event = f.event !== '' ? f.event : route !== undefined ? route.name : '';
  conn.payload = f.payload;
  conn.data = f.data;
  if (route === undefined) {
    s.counters[WorkerCounter.unknownEvents]! += 1;
    frameFailed(conn, new UnknownEventError(f.event !== '' ? f.event : `#${f.eventId}`), 'route');
    conn.payload = EMPTY_REC;
    conn.data = undefined;
    return;
  }
  const p = startMessage(conn, route.chain);
  if (p !== undefined) s.startAsync(conn, p, 'message');
  else {
    // Done: the views must not outlive this batch (a timer or a later hook would read reused memory).
    conn.payload = EMPTY_REC;
    conn.data = undefined;
  }
}

function onUnhandledRejection(reason: unknown): void {
  reportUnhandled(ownerOf(reason), reason, S.loaded.hooks.onError);
}

/** Busy-poll the ring for up to `us` microseconds; true when data arrived. */
function spin(ring: Ring, us: number): boolean {
  const until = performance.now() + us / 1000;
  for (let i = 0; ; i++) {
    if (ring.hasData()) return true;
    if ((i & 63) === 0 && performance.now() >= until) return ring.hasData();
  }
}

async function serve(t: ServeTask): Promise<{ ok: true }> {
  const loaded = await loadAll(t.modules, t.hooks, t.codec);
  S = new Serve(t, loaded);
  setPipelineHost(S);
  // Once per thread (a worker serves one slot): see reportUnhandled. A listener keeps Node from
  // ending the thread on an unhandled rejection.
  if (process.listeners('unhandledRejection').indexOf(onUnhandledRejection) < 0) process.on('unhandledRejection', onUnhandledRejection);
  S.counters[WorkerCounter.threadId] = threadId;
  S.counters[WorkerCounter.busy] = 0;
  const s = S;
  const inbound = s.inbound;
  const out = s.outbox.ring;
  const batch = t.drainBatch;
  const spinUs = t.idleSpinMicros;
  const blockMs = t.idleBlockMs;
  let lastYield = performance.now();
  for (;;) {
    s.outbox.batching = true;
    s.counters[WorkerCounter.busy] = 1;
    const n = inbound.drain(onRecord, batch);
    s.outbox.batching = false;
    if (n > 0) {
      // One doorbell per batch: the I/O thread wakes once for everything this batch wrote.
      out.notify();
      const now = performance.now();
      if (now - lastYield >= YIELD_EVERY_MS) {
        lastYield = now;
        await yieldToLoop();
      }
      continue;
    }
    s.counters[WorkerCounter.busy] = 0;
    if (inbound.closed) break;
    // Idle, in three steps (see README "Tuning"): a short spin, then a blocking futex wait
    // (fast wake-up, but it holds this thread's event loop, so only while no async hook is
    // pending and only for `blockMs`), then Atomics.waitAsync for as long as it takes.
    if (spinUs > 0 && spin(inbound, spinUs)) continue;
    if (blockMs > 0 && s.inFlight === 0 && inbound.waitForData(blockMs)) continue;
    const p = inbound.waitForDataAsync();
    if (p !== null) await p;
    lastYield = performance.now();
  }
  out.notify();
  return { ok: true };
}

async function describe(modules: readonly string[], hooks: string | null, codec: ServeTask['codec']): Promise<DescribeResult> {
  try {
    const loaded = await loadAll(modules, hooks, codec);
    return { ok: true, modules: loaded.modules.map(describeModule) };
  } catch (err) {
    if (err instanceof RingwireError) return { ok: false, code: err.code, message: err.message };
    const e = new ModuleLoadError(err instanceof Error ? err.message : String(err));
    return { ok: false, code: e.code, message: e.message };
  }
}

export default async function task(t: WorkerTask): Promise<unknown> {
  if (t.type === 'describe') return describe(t.modules, t.hooks, t.codec);
  return serve(t);
}

/**
 * A copy, of the same type, of a view into the ring that a hook put in ctx.data (a DataView or a
 * wider typed array of the payload's bytes): a fresh buffer, so the copy starts aligned for its type.
 */
function copyView(v: ArrayBufferView): ArrayBufferView {
  const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength).slice();
  if (v instanceof DataView) return new DataView(bytes.buffer);
  if (Buffer.isBuffer(v)) return Buffer.from(bytes.buffer);
  const T = v.constructor as new (b: ArrayBuffer) => ArrayBufferView;
  return new T(bytes.buffer);
}
