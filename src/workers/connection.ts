/**
 * One object per connection, kept by the worker that owns the connection. It is both the
 * handler `Context` and the upgrade context: behaviour on the prototype, state in fields,
 * no closures per connection (ws / uWebSockets habit). Per-message fields (event, ref,
 * payload, data) are overwritten for each message; messages of one connection run one at
 * a time, so that is safe even with async handlers.
 */
import type {
  ConnectionRecord, Context, MemberPage, PageOptions, PresenceMember, RoomListPage, RoomSummary, SendOptions, UpgradeContext,
} from './define.js';
import { checkPageOptions } from '../shared/paging.js';
import { RequestOp } from '../shared/records.js';
import { ErrorCodes, RingwireError } from '../shared/errors.js';
import type { ModuleRt } from './loader.js';
import type { Outbox } from './outbox.js';
import { inOwnChain, replyRefused, replyStray, strayMessage } from './pipeline.js';
import { CloseCode, cutCloseReason } from '../shared/constants.js';

const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();

export const ConnState = { Upgrading: 0, Open: 1, Closed: 2 } as const;

export class Conn implements Context, UpgradeContext {
  readonly fd: number;
  readonly handle: number;
  uid: string | null = null;
  readonly module: ModuleRt;
  readonly outbox: Outbox;
  readonly url: string;
  readonly query: string;
  readonly remoteAddress: string;
  readonly params: Record<string, string>;
  readonly headers: Record<string, string>;
  readonly userData: Record<string, unknown> = {};
  state: number = ConnState.Upgrading;

  // Upgrade outcome
  rejected = false;
  rejectStatus = 0;
  rejectBody: Uint8Array = EMPTY;
  rejectHeaders: Record<string, string> | undefined = undefined;

  // Current message
  event = '';
  ref = 0;
  payload: Uint8Array = EMPTY;
  data: unknown = undefined;
  replied = false;
  /**
   * The identity of the message chain running for this connection (unique in the worker), 0 when
   * none runs: set when a message's hooks start, cleared when they end (sync return, or the async
   * chain's settlement or abandonment). reply() and deferReply() need it to be the caller's own.
   */
  chainSeq = 0;
  /** The current message's deferReply() state (null when none was taken): `sent` once it answered. */
  deferred: { sent: boolean } | null = null;
  /** close() was called by a handler: the rest of the chain is skipped. */
  closing = false;

  // Serialisation of async chains: while busy, later records of this connection wait in `queue`.
  busy = false;
  /** Bumped per async chain and when one is abandoned (asyncTimeoutMs): a late settlement is ignored. */
  asyncSeq = 0;
  /**
   * Bumped when a chain is abandoned (asyncTimeoutMs): the chain's late steps compare it with the
   * value they started under and do nothing (no second onError, no reply for a later message).
   */
  epoch = 0;
  asyncTimer: ReturnType<typeof setTimeout> | null = null;
  queue: Uint8Array[] | null = null;
  queueHead = 0;
  queueBytes = 0;

  constructor(fd: number, handle: number, module: ModuleRt, outbox: Outbox, url: string, query: string,
    remoteAddress: string, params: Record<string, string>, headers: Record<string, string>) {
    this.fd = fd;
    this.handle = handle;
    this.module = module;
    this.outbox = outbox;
    this.url = url;
    this.query = query;
    this.remoteAddress = remoteAddress;
    this.params = params;
    this.headers = headers;
  }

  get path(): string {
    return this.module.path;
  }

  // ---- upgrade ----
  reject(status: number, body?: string | Uint8Array, headers?: Record<string, string>): void {
    if (!Number.isInteger(status) || status < 400 || status > 599) {
      throw new RangeError('reject(status) must be an HTTP status between 400 and 599');
    }
    // The checked copy is what goes out: the caller's object may change after this call (an async
    // hook going on, a getter), and what is written is only read once the hook has finished.
    const checked = headers === undefined ? undefined : checkHeaders(headers);
    this.rejected = true;
    this.rejectStatus = status;
    this.rejectBody = body === undefined ? EMPTY : typeof body === 'string' ? utf8.encode(body) : body;
    this.rejectHeaders = checked;
  }

  // ---- messages ----
  /**
   * Answers the message whose chain the caller belongs to, and only while that chain runs: `ctx` is
   * one object per connection, so a reply from a hook that handles no message (onConnect, ...) or
   * from a timer or callback that outlived its chain would otherwise go out with whatever message
   * the connection had last (ref 0 before any), or answer the message handled by then, which the
   * client takes for that message's answer. Such a reply is refused: reported to onError
   * (RW_ERR_NO_MESSAGE) and counted (strayReplies). Raw included: no ref to confuse there, but a
   * piece in the middle of another message's answer is no better; send() is the call outside a chain.
   *
   * One answer per message: a client correlates answers by `ref`, and a second frame with it would be
   * taken for the answer to nothing (or, ref 0, to a message never sent). A refused reply is not sent,
   * not thrown either (it may come from a timer, where a throw would end the worker): it is reported
   * to onError (RW_ERR_ALREADY_REPLIED) and counted (duplicateReplies). The raw codec carries no
   * ref, so nothing can be taken for the wrong answer there: a raw handler may reply in pieces.
   */
  reply(payload: unknown): void {
    if (!inOwnChain(this)) {
      replyStray(this);
      return;
    }
    if (this.replied && this.module.codec.name !== 'raw') {
      replyRefused(this, this.event, this.ref);
      return;
    }
    // Marked once sent: a payload that does not encode (a BigInt, a cycle) or fit the ring throws
    // here, and the handler's failure still gets its error reply.
    this.sendFrameTo(this.handle, this.event, this.ref, payload);
    this.replied = true;
  }

  /**
   * Takes the answer of the current message: throws RW_ERR_ALREADY_REPLIED when it was answered or
   * deferred already (a second function would answer the same ref twice), RW_ERR_NO_MESSAGE when no
   * chain of the caller's message is running (as reply() is refused: it would bind another message's
   * ref, or none). The function answers once, at any time (it keeps its message's event and ref);
   * a later call is refused as a second reply() is.
   */
  deferReply(): (payload: unknown) => void {
    if (!inOwnChain(this)) throw new RingwireError(ErrorCodes.RW_ERR_NO_MESSAGE, strayMessage('ctx.deferReply()'));
    const once = this.module.codec.name !== 'raw';
    if (this.replied && once) {
      throw new RingwireError(ErrorCodes.RW_ERR_ALREADY_REPLIED,
        `deferReply(): the message ${JSON.stringify(this.event)} (ref ${this.ref}) was already answered or deferred`);
    }
    this.replied = true;
    const handle = this.handle;
    const event = this.event;
    const ref = this.ref;
    const state: { sent: boolean } = { sent: false };
    this.deferred = state;
    return (payload: unknown) => {
      if (state.sent && once) {
        replyRefused(this, event, ref);
        return;
      }
      this.sendFrameTo(handle, event, ref, payload);
      state.sent = true;
    };
  }

  send(payload: unknown, options?: SendOptions): void {
    this.sendFrameTo(this.handle, options?.event ?? this.event, 0, payload);
  }

  sendTo(handle: number, payload: unknown, options?: SendOptions): void {
    if (typeof handle !== 'number' || !Number.isSafeInteger(handle) || handle <= 0) {
      throw new TypeError('sendTo(handle) must be a connection handle (positive integer)');
    }
    this.sendFrameTo(handle, options?.event ?? this.event, 0, payload);
  }

  /** Encode with this connection's codec and queue a Send command. */
  sendFrameTo(handle: number, event: string, ref: number, payload: unknown): void {
    const codec = this.module.codec;
    if (codec.name === 'binary' && payload instanceof Uint8Array) {
      // Hot path: the WireFrame is laid out straight into the outbound ring.
      this.outbox.sendFrame(handle, event, ref, payload);
      return;
    }
    this.outbox.send(handle, codec.binary, codec.encode(event, ref, payload));
  }

  publish(topic: string, payload: unknown, options?: SendOptions & { exceptSelf?: boolean }): void {
    checkTopic(topic);
    const codec = this.module.codec;
    const bytes = codec.encode(options?.event ?? this.event, 0, payload);
    this.outbox.publish(topic, codec.binary, bytes, options?.exceptSelf === true ? this.handle : 0);
  }

  broadcast(payload: unknown, options?: SendOptions & { exceptSelf?: boolean; except?: readonly number[] }): void {
    if (options?.except !== undefined) {
      const except = options.exceptSelf === true ? [...options.except, this.handle] : options.except;
      this.sendAll(payload, { ...options, except });
      return;
    }
    const codec = this.module.codec;
    const bytes = codec.encode(options?.event ?? this.event, 0, payload);
    this.outbox.publish(this.module.broadcastTopic, codec.binary, bytes, options?.exceptSelf === true ? this.handle : 0);
  }

  /** Subscribe to a topic; false when an onSubscribe hook refused it. */
  subscribe(topic: string): boolean {
    checkTopic(topic);
    const hooks = this.module.subscribe;
    for (let i = 0; i < hooks.length; i++) {
      const r = hooks[i]!(this, topic);
      if (r !== null && typeof r === 'object' && typeof (r as { then?: unknown }).then === 'function') {
        throw new TypeError('an onSubscribe hook returned a promise: subscribe() is synchronous, use join() for async checks');
      }
      if (r === false) return false;
    }
    this.outbox.subscribe(this.handle, topic);
    return true;
  }

  // ---- uids ----
  async bind(uid: string, options?: { onDuplicate?: 'allow' | 'reject' | 'kick'; code?: number }): Promise<void> {
    try {
      await this.bindNow(uid, options);
    } catch (err) {
      throw owned(this, err);
    }
  }

  private async bindNow(uid: string, options?: { onDuplicate?: 'allow' | 'reject' | 'kick'; code?: number }): Promise<void> {
    if (typeof uid !== 'string' || uid.length === 0 || uid.length > 256) throw new TypeError('bind(uid) needs a string of 1 to 256 characters');
    const onDuplicate = options?.onDuplicate ?? 'allow';
    if (onDuplicate !== 'allow' && onDuplicate !== 'reject' && onDuplicate !== 'kick') {
      throw new TypeError('bind() options.onDuplicate must be "allow", "reject" or "kick"');
    }
    const code = options?.code ?? 4001;
    if (!Number.isInteger(code) || !sendableCloseCode(code)) {
      throw new RangeError(`bind() options.code must be a close code a client accepts (1000-1003, 1007-1014, 3000-4999), got ${String(code)}`);
    }
    await this.outbox.request(RequestOp.Bind, this.handle, uid, null, false, utf8.encode(JSON.stringify({ onDuplicate, code })), true);
    this.uid = uid;
  }

  unbind(): void {
    if (this.uid === null) return;
    this.uid = null;
    this.outbox.request(RequestOp.Unbind, this.handle, '', null, false, null, false);
  }

  sendToUid(uid: string, payload: unknown, options?: SendOptions): void {
    if (typeof uid !== 'string' || uid.length === 0) throw new TypeError('sendToUid(uid) needs a non-empty string');
    const codec = this.module.codec;
    const bytes = codec.encode(options?.event ?? this.event, 0, payload);
    this.outbox.request(RequestOp.SendToUid, this.handle, uid, null, codec.binary, bytes, false);
  }

  sendMany(handles: readonly number[], payload: unknown, options?: SendOptions): void {
    if (!Array.isArray(handles)) throw new TypeError('sendMany(handles) needs an array of handles');
    if (handles.length === 0) return;
    const codec = this.module.codec;
    const bytes = codec.encode(options?.event ?? this.event, 0, payload);
    this.outbox.sendMany(handles, handles.length, codec.binary, bytes);
  }

  sendAll(payload: unknown, options?: SendOptions & { except?: readonly number[]; allModules?: boolean }): void {
    const codec = this.module.codec;
    const bytes = codec.encode(options?.event ?? this.event, 0, payload);
    this.outbox.request(RequestOp.SendAll, options?.allModules === true ? -1 : this.module.id, '', options?.except ?? null,
      codec.binary, bytes, false);
  }

  /** The I/O thread's record of a connection (this one by default), or null when it is gone. */
  async connection(handle: number = this.handle): Promise<ConnectionRecord | null> {
    try {
      return await this.outbox.request(RequestOp.ConnInfo, handle, '', null, false, null, true) as ConnectionRecord | null;
    } catch (err) {
      throw owned(this, err);
    }
  }

  // ---- rooms ----
  async join(room: string, meta?: unknown): Promise<PresenceMember[]> {
    try {
      return await this.joinNow(room, meta);
    } catch (err) {
      throw owned(this, err);
    }
  }

  private async joinNow(room: string, meta?: unknown): Promise<PresenceMember[]> {
    checkTopic(room);
    const hooks = this.module.subscribe;
    for (let i = 0; i < hooks.length; i++) {
      if ((await hooks[i]!(this, room)) === false) {
        throw new RingwireError(ErrorCodes.RW_ERR_JOIN_REFUSED, `joining ${JSON.stringify(room)} was refused`);
      }
    }
    const data = meta === undefined ? null : utf8.encode(JSON.stringify(meta));
    const r = await this.outbox.request(RequestOp.Join, this.handle, room, null, false, data, true) as { members: PresenceMember[] };
    return r.members;
  }

  leave(room: string): void {
    checkTopic(room);
    this.outbox.request(RequestOp.Leave, this.handle, room, null, false, null, false);
  }

  room(topic: string): Promise<{ subscribers: number; members: PresenceMember[] | null }>;
  room(topic: string, page: PageOptions): Promise<MemberPage & { readonly subscribers: number }>;
  async room(topic: string, page?: PageOptions): Promise<unknown> {
    try {
      checkTopic(topic);
      return await this.outbox.request(RequestOp.RoomInfo, this.handle, topic, null, false, pageData(page, 'room()', true), true);
    } catch (err) {
      throw owned(this, err);
    }
  }

  listRooms(): Promise<RoomSummary[]>;
  listRooms(page: PageOptions): Promise<RoomListPage>;
  async listRooms(page?: PageOptions): Promise<unknown> {
    try {
      return await this.outbox.request(RequestOp.RoomList, this.handle, '', null, false, pageData(page, 'listRooms()', false), true);
    } catch (err) {
      throw owned(this, err);
    }
  }

  unsubscribe(topic: string): void {
    checkTopic(topic);
    this.outbox.unsubscribe(this.handle, topic);
  }

  close(code: number = CloseCode.NORMAL, reason = ''): void {
    if (!Number.isInteger(code) || !sendableCloseCode(code)) {
      // 1004-1006 and 1015 are reserved (never sent), 1016-2999 unassigned: clients fail such a
      // close frame (they see 1006, not the code).
      throw new RangeError(`close(code) must be a close code a client accepts (1000-1003, 1007-1014, 3000-4999), got ${String(code)}`);
    }
    if (typeof reason !== 'string') throw new TypeError('close(code, reason) needs a string reason');
    // Cut here, not only on the I/O thread: a reason longer than a ring record would make the write
    // throw RW_ERR_RECORD_TOO_LARGE, and a connection marked closing but never closed stays open
    // with every later message discarded. `closing` is set once the command is written, for the same reason.
    this.outbox.closeConn(this.handle, code, cutCloseReason(reason));
    this.closing = true;
  }
}

/**
 * The connection whose ctx.bind()/join()/room()/connection() rejected with an error: a rejection
 * nobody handles (the promise not awaited, the connection closed meanwhile) reaches the worker's
 * 'unhandledRejection' handler, which reports it to that connection's onError hooks (see runtime.ts).
 */
const owners = new WeakMap<object, Conn>();

function owned(conn: Conn, err: unknown): unknown {
  if (err !== null && typeof err === 'object') owners.set(err, conn);
  return err;
}

/** The connection whose ctx method rejected with `reason`, if one did. */
export function ownerOf(reason: unknown): Conn | undefined {
  return reason !== null && typeof reason === 'object' ? owners.get(reason) : undefined;
}

/** An HTTP header name (RFC 9110 token) and a value without CR, LF or NUL. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER_VALUE_BAD = /[\r\n\0]/;

/**
 * reject()'s headers go into the HTTP response as written (uWS checks nothing): a CR or LF copied
 * from the request into a value would let the client split the response (inject headers or a body).
 * Returns a copy of what was checked (no prototype: a header named __proto__ stays a header).
 */
function checkHeaders(headers: Record<string, string>): Record<string, string> {
  if (headers === null || typeof headers !== 'object') throw new TypeError('reject(status, body, headers): headers must be an object of strings');
  const out = Object.create(null) as Record<string, string>;
  for (const [name, value] of Object.entries(headers)) {
    if (!HEADER_NAME.test(name)) throw new TypeError(`reject(): ${JSON.stringify(name)} is not a valid HTTP header name`);
    if (typeof value !== 'string' || HEADER_VALUE_BAD.test(value)) {
      throw new TypeError(`reject(): header ${name} must be a string without CR, LF or NUL`);
    }
    out[name] = value;
  }
  return out;
}

function sendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && (code < 1004 || code > 1006)) || (code >= 3000 && code <= 4999);
}

/**
 * A paged request's data (JSON { limit, after }, checked here so the caller gets the TypeError or
 * RangeError); null for the unpaged form, whose answer keeps its old shape. `undefined` alone is
 * unpaged: `listRooms({})` is the first page.
 */
function pageData(page: PageOptions | undefined, where: string, members: boolean): Uint8Array | null {
  if (page === undefined) return null;
  return utf8.encode(JSON.stringify(checkPageOptions(page, where, members)));
}

/** Longest topic or room name, in UTF-8 bytes: what the cluster's bus envelope and presence keys carry. */
export const MAX_TOPIC_BYTES = 0xffff;

function checkTopic(topic: string): void {
  if (typeof topic !== 'string' || topic.length === 0) throw new TypeError('topic must be a non-empty string');
  if (topic.charCodeAt(0) === 0) throw new TypeError('topics starting with \\0 are reserved by ringwire');
  // At most 3 bytes per UTF-16 unit: only a long name needs counting.
  if (topic.length > MAX_TOPIC_BYTES / 3 && Buffer.byteLength(topic) > MAX_TOPIC_BYTES) {
    throw new RangeError(`topic must be at most ${MAX_TOPIC_BYTES} UTF-8 bytes`);
  }
}
