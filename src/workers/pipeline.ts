/**
 * The hook pipeline of one worker: the exact order of DESIGN.md, run with plain index
 * loops. A stage only allocates (a promise continuation) when a hook actually returns a
 * promise; the synchronous path allocates nothing per message.
 *
 *   upgrade:  GLOBAL onUpgrade → EVENT onUpgrade                         (error → onError('upgrade') → HTTP 500)
 *   open:     GLOBAL onConnect → EVENT onConnect                         (error → onError('connect') → close 1011)
 *   message:  GLOBAL onReceived → EVENT onReceived → preHandler[] → handler (error → onError('message') → error reply)
 *   close:    GLOBAL onDisconnect → EVENT onDisconnect                   (error → onError('disconnect'))
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { Conn, ConnState } from './connection.js';
import type { ErrorHook, MessageHook } from './define.js';
import type { Stage } from './define.js';
import type { Outbox } from './outbox.js';
import { CloseCode } from '../shared/constants.js';
import { ErrorCodes, HandlerError, HandlerTimeoutError, RingwireError } from '../shared/errors.js';
import { WorkerCounter } from '../shared/tasks.js';
import { hookChannel } from '../shared/diagnostics.js';

const utf8 = new TextEncoder();

/**
 * A hook's result that is awaited. The stages chain on `Promise.resolve(r).then(...)`, not on
 * `r.then(...)`: for a native promise that is `r` itself (no cost), while a thenable whose then()
 * returns nothing (hand-made, not Promises/A+) would have made the chain look finished (the
 * connection's next messages running at once, out of order) and one that calls back twice would
 * have run the rest of the chain twice.
 */
function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as { then?: unknown }).then === 'function';
}

/** Callbacks the pipeline needs from the serve loop (set once). */
export interface PipelineHost {
  readonly outbox: Outbox;
  readonly counters: Float64Array;
  /** A connection's chain went async: count it in flight and resume its queue when done. */
  startAsync(conn: Conn, p: PromiseLike<unknown>, stage: Stage): void;
  /** The connection's record processing ended for good (rejected upgrade, disconnect done). */
  forget(conn: Conn): void;
}

let host: PipelineHost;
export function setPipelineHost(h: PipelineHost): void {
  host = h;
}

// ---------------------------------------------------------------- errors

/**
 * Run onError hooks (module first, then global); their own failures are counted, never thrown.
 * `err` is what the hook or handler threw (or rejected with), at every stage; ringwire's own
 * failures (bad frame, unknown event, timeout, record too large) are RingwireErrors with a code.
 */
function reportError(conn: Conn, err: unknown, stage: Stage): void {
  if (hookChannel.hasSubscribers) hookChannel.publish({ stage, path: conn.module.path, handle: conn.handle, error: err });
  const hooks = conn.module.errors;
  for (let i = 0; i < hooks.length; i++) callErrorHook(hooks[i]!, err, stage, conn);
}

function callErrorHook(hook: ErrorHook, err: unknown, stage: Stage, conn: Conn | undefined): void {
  try {
    const r = hook(err, stage, conn);
    if (isThenable(r)) r.then(undefined, () => { host.counters[WorkerCounter.hookErrors]! += 1; });
  } catch {
    host.counters[WorkerCounter.hookErrors]! += 1;
  }
}

/**
 * A promise rejection nobody handled (an un-awaited ctx.bind()/join()/room()/connection() whose
 * connection closed meanwhile, say). Node ends a thread on one, which here would close every
 * connection of the worker with 1011 for one missing `await`; the serve loop, the rings and the
 * other connections are not affected by it, so it is counted and reported instead: to the onError
 * hooks of the connection whose ctx method rejected (`conn`: module, then global), else to the global
 * onError (ctx undefined). With no onError hook to take it, it is printed, as Node would have.
 */
export function reportUnhandled(conn: Conn | undefined, err: unknown, globalOnError: ErrorHook | undefined): void {
  host.counters[WorkerCounter.unhandledRejections]! += 1;
  if (conn !== undefined) {
    reportError(conn, err, 'unhandled');
    if (conn.module.errors.length !== 0) return;
  } else {
    if (hookChannel.hasSubscribers) hookChannel.publish({ stage: 'unhandled', path: '', handle: 0, error: err });
    if (globalOnError !== undefined) {
      callErrorHook(globalOnError, err, 'unhandled', undefined);
      return;
    }
  }
  console.error('ringwire: unhandled promise rejection in a worker (no onError hook took it):', err);
}

/**
 * Error reply for a failed message: `{ code, message }` in the connection's codec, event 'error'.
 * `thrown`: `err` is what a hook or handler threw or rejected with.
 */
export function errorReply(conn: Conn, err: unknown, stage: Stage, thrown = false): void {
  const re = err instanceof RingwireError ? err : new HandlerError(stage, err);
  // What a hook or handler threw gets a fixed message whatever it is, one of ringwire's own errors
  // it let escape included (a RecordTooLargeError from ctx.send names the ring's sizes and option):
  // its text is for onError and the server's logs, never the client, which keeps its stable code.
  // Only ringwire's own answers about the message (bad frame, unknown event, rate limit, timeout) say more.
  const message = thrown || re.code === ErrorCodes.RW_ERR_HANDLER ? `${stage} failed` : re.message;
  try {
    conn.sendFrameTo(conn.handle, 'error', conn.ref, { code: re.code, message, event: conn.event });
  } catch {
    host.counters[WorkerCounter.hookErrors]! += 1;
  }
}

function messageFailed(conn: Conn, err: unknown): void {
  host.counters[WorkerCounter.handlerErrors]! += 1;
  reportError(conn, err, 'message');
  if (takeAnswer(conn)) errorReply(conn, err, 'message', true);
}

/**
 * Whether a failed message's error reply may still go out: not when it was answered already (one
 * answer per message; the failure goes to onError). A deferReply() not called yet gives its place
 * to the error reply, and is refused when it is called later.
 */
function takeAnswer(conn: Conn): boolean {
  if (!conn.replied) {
    conn.replied = true;
    return true;
  }
  const d = conn.deferred;
  if (d === null || d.sent) return false;
  d.sent = true;
  return true;
}

/**
 * A refused reply is being reported to onError: one that hook makes meanwhile is counted, not
 * reported again. A hook that answers failed messages in its own format (`stage === 'message' &&
 * !ctx.replied`) replies to the report of a stray reply too (nothing was answered), which is
 * refused again, reported again: without this it recursed until the stack overflowed (thousands
 * of strayReplies counted for one). The report runs as its own async context (REFUSAL in the chain
 * store), so a reply the hook makes after an await is known too: else the loop went on for ever,
 * one microtask a turn.
 */
const REFUSAL = -1;

function reportRefusal(conn: Conn, err: RingwireError): void {
  if (chainStore.getStore() === REFUSAL) return;
  chainStore.run(REFUSAL, reportError, conn, err, 'message');
}

/** A reply with no chain of its message running (see Conn.reply): not sent; reported and counted. */
export function replyStray(conn: Conn): void {
  host.counters[WorkerCounter.strayReplies]! += 1;
  reportRefusal(conn, new RingwireError(ErrorCodes.RW_ERR_NO_MESSAGE, strayMessage('ctx.reply()')));
}

export function strayMessage(what: string): string {
  return `${what} was called while no chain of its message was running (in a hook that handles no message, `
    + 'such as onConnect or onDisconnect, or from a timer or callback that ran after its message\'s chain ended): nothing was sent. '
    + 'Use ctx.send() to push to the client, or take ctx.deferReply() in the handler to answer its message later';
}

/** A reply for a message answered already (see Conn.reply): not sent; reported and counted. */
export function replyRefused(conn: Conn, event: string, ref: number): void {
  host.counters[WorkerCounter.duplicateReplies]! += 1;
  reportRefusal(conn, new RingwireError(ErrorCodes.RW_ERR_ALREADY_REPLIED,
    `the message ${JSON.stringify(event)} (ref ${ref}) was already answered: one reply per message`));
}

export function frameFailed(conn: Conn, err: unknown, stage: Stage): void {
  reportError(conn, err, stage);
  errorReply(conn, err, stage);
}

// ---------------------------------------------------------------- message

/**
 * Which message's chain the running code belongs to. `ctx` is one object per connection, so a
 * reply() made from a timer or callback cannot say which message it answers; the async context
 * can: a timer, promise continuation or callback keeps the store of the code that created it. Each
 * message's chain runs with its own number (unique in this worker: ctx of another connection must
 * not match either), and Conn.chainSeq is that number while the chain runs, 0 otherwise.
 * The price, on Node 20 (micro-measured, not with the bench): run() adds about 12 ns per message and,
 * once the store is in use, the promise hooks that carry it about 0.14 µs per await in a hook.
 * A callback an emitter made outside the chain calls loses the store: deferReply() is for those.
 */
const chainStore = new AsyncLocalStorage<number>();
let chainCount = 0;

/** Runs a message's chain as a new chain identity; Conn.chainSeq stays set until release() when it went async. */
export function startMessage(conn: Conn, chain: readonly MessageHook[]): PromiseLike<unknown> | undefined {
  const seq = ++chainCount;
  conn.chainSeq = seq;
  const p = chainStore.run(seq, runMessage, conn, chain, 0);
  if (p === undefined) conn.chainSeq = 0;
  return p;
}

/** Whether the running code belongs to `conn`'s message chain that is running now. */
export function inOwnChain(conn: Conn): boolean {
  const seq = conn.chainSeq;
  return seq !== 0 && chainStore.getStore() === seq;
}

/** Runs `chain` from index i. Returns a promise only if some hook went async. */
export function runMessage(conn: Conn, chain: readonly MessageHook[], i: number): PromiseLike<unknown> | undefined {
  for (; i < chain.length; i++) {
    let r: unknown;
    try {
      r = chain[i]!(conn);
    } catch (err) {
      messageFailed(conn, err);
      return undefined;
    }
    if (isThenable(r)) {
      const next = i + 1;
      const epoch = conn.epoch;
      return Promise.resolve(r).then(
        (v) => (conn.epoch !== epoch || v === false || conn.replied || conn.closing ? undefined : runMessage(conn, chain, next)),
        (err) => { if (conn.epoch === epoch) messageFailed(conn, err); },
      );
    }
    if (r === false || conn.replied || conn.closing) return undefined;
  }
  return undefined;
}

// ---------------------------------------------------------------- upgrade

export function runUpgrade(conn: Conn, i: number): PromiseLike<unknown> | undefined {
  const hooks = conn.module.upgrade;
  for (; i < hooks.length; i++) {
    let r: unknown;
    try {
      r = hooks[i]!(conn);
    } catch (err) {
      upgradeFailed(conn, err);
      return undefined;
    }
    if (isThenable(r)) {
      const next = i + 1;
      const epoch = conn.epoch;
      return Promise.resolve(r).then((v) => {
        if (conn.epoch !== epoch) return undefined;
        mergeUserData(conn, v);
        return conn.rejected ? finishUpgrade(conn) : runUpgrade(conn, next);
      }, (err) => { if (conn.epoch === epoch) upgradeFailed(conn, err); });
    }
    mergeUserData(conn, r);
    if (conn.rejected) break;
  }
  finishUpgrade(conn);
  return undefined;
}

function mergeUserData(conn: Conn, v: unknown): void {
  if (v !== null && typeof v === 'object') mergeInto(conn.userData, v);
}

/**
 * Object.assign, except that an own "__proto__" key (JSON.parse makes one from client JSON a hook
 * returns) is merged as a plain key: Object.assign would run the __proto__ setter and replace the
 * userData's prototype with the client's object, so that keys the hooks never set (`role`) read
 * the client's values.
 */
export function mergeInto(target: Record<string, unknown>, v: object): void {
  if (!Object.prototype.hasOwnProperty.call(v, '__proto__')) {
    Object.assign(target, v);
    return;
  }
  for (const k of Reflect.ownKeys(v)) {
    if (!Object.prototype.propertyIsEnumerable.call(v, k)) continue;
    Object.defineProperty(target, k, { value: (v as Record<PropertyKey, unknown>)[k], writable: true, enumerable: true, configurable: true });
  }
}

function finishUpgrade(conn: Conn): void {
  if (conn.state === ConnState.Closed) return; // abandoned (asyncTimeoutMs): already answered
  if (conn.rejected) {
    const h = conn.rejectHeaders ?? {};
    try {
      host.outbox.reject(conn.handle, conn.rejectStatus, Object.keys(h), Object.values(h), conn.rejectBody);
    } catch (err) {
      // The hook's rejection does not fit a ring record (RW_ERR_RECORD_TOO_LARGE): thrown from here
      // it would end the serve loop (sync hooks) or leave the upgrade unanswered (async ones).
      host.counters[WorkerCounter.hookErrors]! += 1;
      reportError(conn, err, 'upgrade');
      host.outbox.reject(conn.handle, 500, [], [], utf8.encode('Internal Server Error'));
    }
    conn.state = ConnState.Closed;
    host.forget(conn);
  } else if (conn.module.upgrade.length !== 0) {
    host.outbox.accept(conn.handle);
  }
  // No upgrade hooks: the I/O thread already accepted (ModuleDescriptor.upgradeHooks).
}

/**
 * An async stage did not settle within asyncTimeoutMs: reported to onError with
 * RW_ERR_HANDLER_TIMEOUT and answered as a failure of that stage (HTTP 500 for an upgrade, an
 * error reply for a message), then the connection is closed with 1011 (a disconnect is just
 * finished). The serve loop releases the connection's queue; the chain's late steps see
 * `closing` (or a closed state) and stop.
 */
export function abandon(conn: Conn, stage: Stage, ms: number): void {
  // A message's timeout is reported as its chain's failure is, as that chain (its chainSeq is
  // still set: release() clears it after this): an onError hook answering the message in its own
  // format replies to the message that timed out, not a stray reply refused (RW_ERR_NO_MESSAGE).
  if (stage === 'message' && conn.chainSeq !== 0) chainStore.run(conn.chainSeq, abandonNow, conn, stage, ms);
  else abandonNow(conn, stage, ms);
}

function abandonNow(conn: Conn, stage: Stage, ms: number): void {
  conn.epoch++; // the abandoned chain's late steps do nothing
  host.counters[WorkerCounter.asyncTimeouts]! += 1;
  const err = new HandlerTimeoutError(stage, ms);
  reportError(conn, err, stage);
  if (stage === 'upgrade') {
    conn.rejected = true;
    conn.rejectStatus = 500;
    conn.rejectBody = utf8.encode('Internal Server Error');
    conn.rejectHeaders = undefined;
    finishUpgrade(conn);
    return;
  }
  if (stage === 'disconnect') {
    conn.state = ConnState.Closed;
    host.forget(conn);
    return;
  }
  if (stage === 'message' && takeAnswer(conn)) errorReply(conn, err, 'message');
  if (!conn.closing) conn.close(CloseCode.INTERNAL, 'handler timed out');
}

function upgradeFailed(conn: Conn, err: unknown): void {
  host.counters[WorkerCounter.hookErrors]! += 1;
  reportError(conn, err, 'upgrade');
  conn.rejected = true;
  conn.rejectStatus = 500;
  conn.rejectBody = utf8.encode('Internal Server Error');
  conn.rejectHeaders = undefined;
  finishUpgrade(conn);
}

// ---------------------------------------------------------------- connect / disconnect

export function runConnect(conn: Conn, i: number): PromiseLike<unknown> | undefined {
  const hooks = conn.module.connect;
  for (; i < hooks.length; i++) {
    let r: unknown;
    try {
      r = hooks[i]!(conn);
    } catch (err) {
      connectFailed(conn, err);
      return undefined;
    }
    if (isThenable(r)) {
      const next = i + 1;
      const epoch = conn.epoch;
      return Promise.resolve(r).then(() => (conn.epoch !== epoch || conn.closing ? undefined : runConnect(conn, next)),
        (err) => { if (conn.epoch === epoch) connectFailed(conn, err); });
    }
    if (conn.closing) return undefined;
  }
  return undefined;
}

function connectFailed(conn: Conn, err: unknown): void {
  host.counters[WorkerCounter.hookErrors]! += 1;
  reportError(conn, err, 'connect');
  if (!conn.closing) conn.close(CloseCode.INTERNAL, 'connect hook failed');
}

export function runDisconnect(conn: Conn, i: number, code: number, reason: string): PromiseLike<unknown> | undefined {
  const hooks = conn.module.disconnect;
  for (; i < hooks.length; i++) {
    let r: unknown;
    try {
      r = hooks[i]!(conn, code, reason);
    } catch (err) {
      disconnectFailed(conn, err);
      continue;
    }
    if (isThenable(r)) {
      const next = i + 1;
      const epoch = conn.epoch;
      return Promise.resolve(r).then(() => (conn.epoch !== epoch ? undefined : runDisconnect(conn, next, code, reason)), (err) => {
        if (conn.epoch !== epoch) return undefined;
        disconnectFailed(conn, err);
        return runDisconnect(conn, next, code, reason);
      });
    }
  }
  conn.state = ConnState.Closed;
  host.forget(conn);
  return undefined;
}

/** onAway / onResume hooks: run in order; a failure is reported and the next hook still runs. */
export function runSession(conn: Conn, stage: 'away' | 'resume', info: unknown, i: number): PromiseLike<unknown> | undefined {
  const hooks = (stage === 'away' ? conn.module.away : conn.module.resume) as readonly ((c: Conn, x: unknown) => unknown)[];
  for (; i < hooks.length; i++) {
    let r: unknown;
    try {
      r = hooks[i]!(conn, info);
    } catch (err) {
      sessionHookFailed(conn, stage, err);
      continue;
    }
    if (isThenable(r)) {
      const next = i + 1;
      const epoch = conn.epoch;
      return Promise.resolve(r).then(() => (conn.epoch !== epoch ? undefined : runSession(conn, stage, info, next)), (err) => {
        if (conn.epoch !== epoch) return undefined;
        sessionHookFailed(conn, stage, err);
        return runSession(conn, stage, info, next);
      });
    }
  }
  return undefined;
}

/** onDrain hooks: in order; a failure is reported (stage 'drain') and the next hook still runs. */
export function runDrain(conn: Conn, buffered: number, i: number): PromiseLike<unknown> | undefined {
  const hooks = conn.module.drain;
  for (; i < hooks.length; i++) {
    let r: unknown;
    try {
      r = hooks[i]!(conn, buffered);
    } catch (err) {
      sessionHookFailed(conn, 'drain', err);
      continue;
    }
    if (isThenable(r)) {
      const next = i + 1;
      const epoch = conn.epoch;
      return Promise.resolve(r).then(() => (conn.epoch !== epoch ? undefined : runDrain(conn, buffered, next)), (err) => {
        if (conn.epoch !== epoch) return undefined;
        sessionHookFailed(conn, 'drain', err);
        return runDrain(conn, buffered, next);
      });
    }
  }
  return undefined;
}

function sessionHookFailed(conn: Conn, stage: 'away' | 'resume' | 'drain', err: unknown): void {
  host.counters[WorkerCounter.hookErrors]! += 1;
  reportError(conn, err, stage);
}

function disconnectFailed(conn: Conn, err: unknown): void {
  host.counters[WorkerCounter.hookErrors]! += 1;
  reportError(conn, err, 'disconnect');
}
