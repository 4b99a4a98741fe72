/**
 * What module and hooks files export (worker side). Module files run only inside
 * worker threads; import these helpers from 'ringwire/module' there.
 *
 *   export default defineModule({ path: '/chat/:room', events: { SAY: { handler(ctx) { ... } } } });
 *   export default defineHooks({ onConnect(ctx) { ... } });
 */
import { ModuleLoadError, nearestName } from '../shared/errors.js';

export type CodecName = 'binary' | 'json' | 'raw';

/** Per-module uWS socket options (passed through to the uWS `ws()` behaviour). */
export interface ModuleSocketOptions {
  maxPayloadLength?: number;
  idleTimeout?: number;
  maxBackpressure?: number;
  closeOnBackpressureLimit?: boolean;
  sendPingsAutomatically?: boolean;
  maxLifetime?: number;
}

export interface SendOptions {
  /** Event name of the frame (binary/json codecs). Defaults to the current message's event. */
  event?: string;
}

/** The context handed to hooks and handlers: one object per connection, valid while it lives. */
export interface Context {
  readonly fd: number;
  readonly handle: number;
  /** The module's route pattern (`/chat/:room`), not the requested path: that is `url`. */
  readonly path: string;
  /** The path the client upgraded on (`/chat/lobby`), without the query. */
  readonly url: string;
  /** Path parameters (`/chat/:room`), as sent: not percent-decoded, on every transport. */
  readonly params: Readonly<Record<string, string>>;
  readonly query: string;
  readonly remoteAddress: string;
  /**
   * The headers of the upgrade request that opened the connection (lower-case names, values as sent),
   * for its whole life, also in a module without upgrade hooks (Swoft's connection context keeps the
   * request). A resume keeps the first request's; its own headers reach the upgrade hooks.
   */
  readonly headers: Readonly<Record<string, string>>;
  /** Per-connection data, kept in the worker that owns the connection (upgrade hooks fill it). */
  readonly userData: Record<string, unknown>;
  /** Current message: event name ('' for raw modules). */
  readonly event: string;
  /** Current message: correlation ref (0 = none). */
  readonly ref: number;
  /**
   * Current message payload (binary and raw codecs). A zero-copy view into the ring while the
   * chain runs synchronously; a copy once a hook or handler has awaited. Empty after the chain
   * has finished: copy (`payload.slice()`) what you keep beyond it.
   */
  readonly payload: Uint8Array;
  /**
   * Current message data (json codec: the parsed `data` field; binary and raw codecs: the same view as
   * `payload`). The message hooks may replace it (Basalt's preHandler as middleware: parse, strip a
   * header, normalise): the later hooks and the handler get what an earlier one left here. A view into
   * `payload` set here is detached with it when a hook awaits. Reset for each message.
   */
  data: unknown;
  /** True once the current message was answered (`reply()`, `deferReply()` or an error reply). */
  readonly replied: boolean;
  /**
   * Answer the current message (its event and `ref`), while its chain runs: in its hooks and
   * handler, synchronously or before the promise they return settles (a timer or callback the chain
   * started counts while the chain is pending). To answer later, await the work in the handler (the
   * connection's next message waits for it), or take a `deferReply()`. A reply made where no chain
   * of its message runs (onConnect and the other hooks that handle no message, a timer or callback
   * that outlived its chain, even while a later message runs) is not sent: it goes to onError
   * (RW_ERR_NO_MESSAGE) and is counted (`strayReplies`); use send() to push. One answer per message
   * (raw codec: any number of pieces): a reply for a message answered already is not sent; it goes
   * to onError (RW_ERR_ALREADY_REPLIED) and is counted (`duplicateReplies`).
   */
  reply(payload: unknown): void;
  /**
   * A reply function bound to the current message (its event and `ref`), for an answer given
   * after the handler has returned (a callback API, say) while the connection's next messages go
   * on. Marks the message as answered, as reply() does. Sent to a connection closed meanwhile, it
   * is dropped and counted (`drops.staleHandle`). Take it while the message's chain runs (it throws
   * RW_ERR_NO_MESSAGE elsewhere, where reply() is refused); the function may be called at any time
   * after. Throws RW_ERR_ALREADY_REPLIED when the message was answered or deferred already; the
   * function answers once (a later call is refused as a second reply() is), and not at all when the
   * handler failed first (its error reply was the answer).
   */
  deferReply(): (payload: unknown) => void;
  send(payload: unknown, options?: SendOptions): void;
  sendTo(handle: number, payload: unknown, options?: SendOptions): void;
  publish(topic: string, payload: unknown, options?: SendOptions & { exceptSelf?: boolean }): void;
  /** Subscribe to a topic; false when an onSubscribe hook refused it. */
  subscribe(topic: string): boolean;
  unsubscribe(topic: string): void;
  /**
   * Send to every connection of this module (a publish on the module's own topic). With `except`
   * it is a `sendAll` of the module instead: paged, not ordered with later sends.
   */
  broadcast(payload: unknown, options?: SendOptions & { exceptSelf?: boolean; except?: readonly number[] }): void;
  close(code?: number, reason?: string): void;

  // ---- uids (see README "Sessions, uids and rooms") ----
  /** The uid bound with bind(), or null. */
  readonly uid: string | null;
  /**
   * Bind this connection to a uid. onDuplicate: 'allow' (default: several connections per uid),
   * 'reject' (rejects with RW_ERR_UID_TAKEN while another connection holds it), 'kick' (closes
   * the others with `code`, default 4001).
   */
  bind(uid: string, options?: { onDuplicate?: 'allow' | 'reject' | 'kick'; code?: number }): Promise<void>;
  unbind(): void;
  /** Send to every connection bound to `uid` (live, or buffered while detached). */
  sendToUid(uid: string, payload: unknown, options?: SendOptions): void;
  /** Send the same message to several connections (one command). */
  sendMany(handles: readonly number[], payload: unknown, options?: SendOptions): void;
  /**
   * Send to every connection of this module (all modules with `allModules`) in pages that never
   * stall the I/O thread: each connection there at the call gets it once (a detached session's
   * buffered for its resume). Not ordered with this handler's later sends (they may arrive first).
   */
  sendAll(payload: unknown, options?: SendOptions & { except?: readonly number[]; allModules?: boolean }): void;

  /** The I/O thread's record of a connection (this one by default): address, times, uid, rooms, transport, ... */
  connection(handle?: number): Promise<ConnectionRecord | null>;

  // ---- rooms and presence ----
  /**
   * Join a room (a topic with presence): the onSubscribe hooks may refuse it (RW_ERR_JOIN_REFUSED).
   * Resolves with the members after the join (this connection included); this client also gets a
   * `presence_state` frame, the other members a `presence_diff`.
   */
  join(room: string, meta?: unknown): Promise<PresenceMember[]>;
  leave(room: string): void;
  /**
   * Subscribers of a topic on this node, and its presence members when it is a room (every node's in
   * a cluster). The answer is one ring record: a room whose member list outgrows it (about half of
   * `ringBytes`) rejects with RW_ERR_RECORD_TOO_LARGE; page such a room with the options form.
   */
  room(topic: string): Promise<{ subscribers: number; members: PresenceMember[] | null }>;
  /**
   * One page of the room's members, ordered by node, then handle: at most `limit` (default 100, at
   * most 10,000), and never more than fit one ring record (so a page may be shorter with more to
   * come). Pass `next` back as `after` until it is null. `members` is null when nobody joined the room.
   */
  room(topic: string, page: PageOptions): Promise<MemberPage & { readonly subscribers: number }>;
  /**
   * The rooms with members on this node and their member counts (a lobby's list of tables), detached
   * sessions included, in the order they were created. Not cluster-wide: each node lists its own, as
   * `broadcast()` stays on its node. The answer is one ring record: when very many rooms outgrow it
   * (about half of `ringBytes`), this rejects with RW_ERR_RECORD_TOO_LARGE; use the options form.
   */
  listRooms(): Promise<RoomSummary[]>;
  /**
   * One page of the room list, ordered by room name (UTF-16 order, as `<` compares strings): at most
   * `limit` rooms (default 100, at most 10,000), and never more than fit one ring record (so a page may
   * be shorter with more to come). Pass `next` back as `after` until it is null.
   */
  listRooms(page: PageOptions): Promise<RoomListPage>;
}

/**
 * Paging of `ctx.listRooms()`, `ctx.room()`, `server.listRooms()` and `server.roomMembers()`.
 * Pages follow a cursor, not an offset: an entry that exists during a whole walk is listed exactly
 * once, whatever is added or removed meanwhile.
 */
export interface PageOptions {
  /** Most entries on the page (1 to 10,000; default 100). A worker's page may hold fewer, to fit its ring. */
  readonly limit?: number;
  /** The previous page's `next`; left out for the first page. */
  readonly after?: string;
}

/** A page of the room list (`ctx.listRooms(options)`, `server.listRooms(options)`). */
export interface RoomListPage {
  readonly rooms: RoomSummary[];
  /** The cursor of the next page (the last room's name), or null when this is the last page. */
  readonly next: string | null;
  /** Rooms on this node in all. */
  readonly total: number;
}

/** A page of a room's members (`ctx.room(topic, options)`, `server.roomMembers(room, options)`). */
export interface MemberPage {
  /** null when nobody joined the room. */
  readonly members: PresenceMember[] | null;
  /** The cursor of the next page (the last member's handle, `node:handle` in a cluster), or null when this is the last page. */
  readonly next: string | null;
  /** Members in all. */
  readonly total: number;
}

/** A room as `ctx.listRooms()` and `server.listRooms()` list it. */
export interface RoomSummary {
  readonly room: string;
  /** Members on this node (live or detached connections that joined it). */
  readonly members: number;
}

/** A connection record as the I/O thread keeps it (the same shape as `server.connections()` entries). */
export interface ConnectionRecord {
  readonly fd: number;
  readonly handle: number;
  readonly remoteAddress: string;
  readonly url: string;
  readonly module: string;
  readonly worker: number;
  readonly connectedAt: number;
  readonly handshakeMs: number;
  readonly bufferedAmount: number;
  readonly transport: string;
  readonly uid: string | null;
  readonly rooms: readonly string[];
  readonly node: string;
  readonly detached: boolean;
}

/** A room member as presence reports it (`ctx.join()`, `ctx.room()`, `server.roomMembers()`). */
export interface PresenceMember {
  readonly handle: number;
  readonly uid: string | null;
  readonly meta: unknown;
  /** Cluster node id of the member's server ('' when not clustered). */
  readonly node: string;
}

/** What onResume hooks get. */
export interface ResumeInfo {
  /** Every message addressed to the connection while it was away was replayed. */
  readonly recovered: boolean;
  /** How many were replayed. */
  readonly replayed: number;
}

/** What an upgrade hook sees: the request, the userData being built, and `reject()`. */
export interface UpgradeContext {
  readonly fd: number;
  readonly handle: number;
  /** The module's route pattern (`/chat/:room`); the requested path is `url`. */
  readonly path: string;
  /** The requested path (`/chat/lobby`), without the query. */
  readonly url: string;
  readonly query: string;
  readonly params: Readonly<Record<string, string>>;
  /**
   * Request headers, lower-case names, as sent (an upgrade with more than 100, or more than 16 KiB of them, was refused with 431;
   * uWS closes a WebSocket request head over 4 KiB that arrives in more than one TCP read before any hook runs).
   */
  readonly headers: Readonly<Record<string, string>>;
  readonly remoteAddress: string;
  /** Filled by the hooks: global first, then the module's. Returning an object from a hook merges it in. */
  readonly userData: Record<string, unknown>;
  /** Refuse the upgrade with an HTTP status (4xx/5xx), an optional body and headers. */
  reject(status: number, body?: string | Uint8Array, headers?: Record<string, string>): void;
  readonly rejected: boolean;
}

/**
 * Where an error happened. 'unhandled': a promise rejection no code handled (an un-awaited
 * ctx.bind()/join()/room()/connection() whose connection closed, say), reported instead of ending the worker.
 */
export type Stage = 'upgrade' | 'connect' | 'message' | 'route' | 'decode' | 'disconnect' | 'away' | 'resume' | 'drain' | 'unhandled';

/** A value or a promise of it: every hook may be async. */
export type MaybePromise<T> = T | Promise<T>;
export type UpgradeHook = (up: UpgradeContext) => MaybePromise<void | Record<string, unknown> | undefined>;
/** Returning `false` (or replying / closing) stops the message chain. */
export type MessageHook = (ctx: Context) => MaybePromise<void | boolean | undefined>;
export type ConnectHook = (ctx: Context) => MaybePromise<void>;
export type DisconnectHook = (ctx: Context, code: number, reason: string) => MaybePromise<void>;
/** The connection's socket dropped; its session waits for a resume (modules with `resume`). */
export type AwayHook = (ctx: Context) => MaybePromise<void>;
export type ResumeHook = (ctx: Context, info: ResumeInfo) => MaybePromise<void>;
/** Runs before ctx.subscribe()/ctx.join(); returning false refuses it (must be synchronous for subscribe). */
export type SubscribeHook = (ctx: Context, topic: string) => MaybePromise<void | boolean>;
/**
 * The socket's send buffer drained after backpressure (uWS `drain`): `bufferedAmount` bytes are
 * still queued. Pace a large stream with it: send while `(await ctx.connection()).bufferedAmount`
 * is low, resume from here.
 */
export type DrainHook = (ctx: Context, bufferedAmount: number) => MaybePromise<void>;
export type ErrorHook = (err: unknown, stage: Stage, ctx: Context | UpgradeContext | undefined) => MaybePromise<void>;

/** One event of a module: its preHandlers run in order after the onReceived hooks, then its handler. */
export interface EventDefinition {
  /** Run before `handler`; one that returns false (or replies, or closes) stops the chain. */
  preHandler?: MessageHook | MessageHook[];
  handler: MessageHook;
}

/**
 * The hooks of a hooks file (defineHooks) or a module (defineModule). The global file's hooks run
 * before the module's, its onError after; a hook that throws or rejects goes to onError with its stage
 * (README "Hook lifecycle").
 */
export interface HooksDefinition {
  /** The upgrade request, before the connection opens: `up.reject()` refuses it, a returned object is merged into userData. Throws → HTTP 500. */
  onUpgrade?: UpgradeHook;
  /** The connection opened. Throws → closed with 1011. */
  onConnect?: ConnectHook;
  /** Every message, before the event's preHandlers and handler; returning false stops the chain. */
  onReceived?: MessageHook;
  /** The connection closed, with its close code and reason. With `resume`, once its session ends (not when the socket drops: onAway). */
  onDisconnect?: DisconnectHook;
  /** What a hook or handler threw or rejected with, and ringwire's own failures (bad frame, unknown event, timeouts); the module's first, then the global one. */
  onError?: ErrorHook;
  /** Modules with `resume`: the socket dropped, the session waits `graceMs` for the client to resume. */
  onAway?: AwayHook;
  /** Modules with `resume`: the client came back; `recovered` says whether every message meanwhile was replayed. */
  onResume?: ResumeHook;
  /** Before ctx.subscribe()/ctx.join() of a topic; returning false refuses it. */
  onSubscribe?: SubscribeHook;
  /** The send buffer drained after backpressure; `bufferedAmount` bytes are still queued. */
  onDrain?: DrainHook;
}

export interface ModuleDefinition extends HooksDefinition {
  /** uWS route pattern: '/echo', '/chat/:room', '/*'. */
  path: string;
  /** Wire codec of this module's clients; defaults to the server's codec. */
  codec?: CodecName;
  /** uWS socket options of this module's connections (README: defaults after the module snippet). */
  options?: ModuleSocketOptions;
  /** Command routing: event name → handler (with optional preHandlers). Event ids are 1-based in this order. */
  events?: Record<string, EventDefinition>;
  /** Single handler (raw codec modules, or a catch-all for other codecs). */
  handler?: MessageHook;
  /**
   * Resumable sessions: a connection whose socket drops (no close frame) keeps its handle,
   * uid, rooms and topics for `graceMs`; messages to it are buffered (at most `maxMessages`,
   * default 1000, and `maxBytes`, default 1 MiB) and replayed when the client reconnects with
   * `?rw_resume=<token>`. See README "Resume".
   */
  resume?: { graceMs: number; maxMessages?: number; maxBytes?: number };
}

const MODULE_BRAND = Symbol.for('ringwire.module');
const HOOKS_BRAND = Symbol.for('ringwire.hooks');

const HOOK_NAMES = ['onUpgrade', 'onConnect', 'onReceived', 'onDisconnect', 'onError', 'onAway', 'onResume', 'onSubscribe', 'onDrain'] as const;
const SOCKET_OPTION_NAMES = ['maxPayloadLength', 'idleTimeout', 'maxBackpressure',
  'closeOnBackpressureLimit', 'sendPingsAutomatically', 'maxLifetime'] as const;

const MODULE_FIELDS: readonly string[] = ['path', 'codec', 'options', 'events', 'handler', 'resume', ...HOOK_NAMES];
const EVENT_FIELDS: readonly string[] = ['preHandler', 'handler'];
const RESUME_FIELDS: readonly string[] = ['graceMs', 'maxMessages', 'maxBytes'];

/**
 * Throws a TypeError naming the first field of `def` that ringwire does not read. A misspelt hook
 * (`onConect`, `prehandler`) would otherwise never run, silently: TypeScript does not catch it
 * either, since defineModule's generic parameter takes the literal's own type, extra keys included.
 */
function onlyKnownFields(def: object, known: readonly string[], where: string): void {
  for (const k of Object.keys(def)) {
    if (known.includes(k)) continue;
    const near = nearestName(k, known);
    throw new TypeError(`${where}.${k} is not a known field${near !== undefined ? ` (did you mean ${where}.${near}?)` : ''}`);
  }
}

function checkHooks(def: HooksDefinition, where: string): void {
  for (const name of HOOK_NAMES) {
    const h = def[name];
    if (h !== undefined && typeof h !== 'function') {
      throw new TypeError(`${where}.${name} must be a function`);
    }
  }
}

/** Validate and brand a module definition (throws TypeError naming the field). */
export function defineModule<T extends ModuleDefinition>(def: T): T {
  if (def === null || typeof def !== 'object') throw new TypeError('module definition must be an object');
  if (typeof def.path !== 'string' || !def.path.startsWith('/')) {
    throw new TypeError('module.path must be a string starting with "/"');
  }
  onlyKnownFields(def, MODULE_FIELDS, 'module');
  if (def.codec !== undefined && def.codec !== 'binary' && def.codec !== 'json' && def.codec !== 'raw') {
    throw new TypeError('module.codec must be "binary", "json" or "raw"');
  }
  checkHooks(def, 'module');
  if (def.handler !== undefined && typeof def.handler !== 'function') {
    throw new TypeError('module.handler must be a function');
  }
  if (def.events !== undefined) {
    if (def.events === null || typeof def.events !== 'object') throw new TypeError('module.events must be an object');
    for (const [name, ev] of Object.entries(def.events)) {
      if (ev === null || typeof ev !== 'object' || typeof ev.handler !== 'function') {
        throw new TypeError(`module.events.${name}.handler must be a function`);
      }
      onlyKnownFields(ev, EVENT_FIELDS, `module.events.${name}`);
      const pre = ev.preHandler;
      const list = pre === undefined ? [] : Array.isArray(pre) ? pre : [pre];
      for (const p of list) {
        if (typeof p !== 'function') throw new TypeError(`module.events.${name}.preHandler must be functions`);
      }
    }
  }
  if (def.codec === 'raw') {
    const n = (def.events ? Object.keys(def.events).length : 0) + (def.handler ? 1 : 0);
    if (n !== 1) throw new TypeError('a raw-codec module must have exactly one handler (module.handler or one event)');
  } else if (def.events === undefined && def.handler === undefined) {
    throw new TypeError('module.events or module.handler is required');
  }
  if (def.options !== undefined) {
    if (def.options === null || typeof def.options !== 'object') throw new TypeError('module.options must be an object');
    for (const k of Object.keys(def.options)) {
      if (!(SOCKET_OPTION_NAMES as readonly string[]).includes(k)) {
        throw new TypeError(`module.options.${k} is not a known socket option (${SOCKET_OPTION_NAMES.join(', ')})`);
      }
    }
  }
  if (def.resume !== undefined) {
    const r = def.resume;
    if (r === null || typeof r !== 'object') throw new TypeError('module.resume must be an object { graceMs, maxMessages?, maxBytes? }');
    // A misspelt bound (`maxMesages`) would leave the default in force, silently.
    onlyKnownFields(r, RESUME_FIELDS, 'module.resume');
    if (!Number.isInteger(r.graceMs) || r.graceMs < 1 || r.graceMs > 86_400_000) throw new RangeError('module.resume.graceMs must be an integer between 1 and 86400000');
    if (r.maxMessages !== undefined && (!Number.isInteger(r.maxMessages) || r.maxMessages < 0)) throw new RangeError('module.resume.maxMessages must be a non-negative integer');
    if (r.maxBytes !== undefined && (!Number.isInteger(r.maxBytes) || r.maxBytes < 0)) throw new RangeError('module.resume.maxBytes must be a non-negative integer');
  }
  Object.defineProperty(def, MODULE_BRAND, { value: true });
  return def;
}

/** Validate and brand a global hooks definition. */
export function defineHooks<T extends HooksDefinition>(def: T): T {
  if (def === null || typeof def !== 'object') throw new TypeError('hooks definition must be an object');
  onlyKnownFields(def, HOOK_NAMES, 'hooks');
  checkHooks(def, 'hooks');
  Object.defineProperty(def, HOOKS_BRAND, { value: true });
  return def;
}

export function asModule(value: unknown, file: string): ModuleDefinition {
  if (value === null || typeof value !== 'object' || !(MODULE_BRAND in value)) {
    throw new ModuleLoadError(`${file}: the default export must be defineModule({...})`);
  }
  return value as unknown as ModuleDefinition;
}

export function asHooks(value: unknown, file: string): HooksDefinition {
  if (value === null || typeof value !== 'object' || !(HOOKS_BRAND in value)) {
    throw new ModuleLoadError(`${file}: the default export must be defineHooks({...})`);
  }
  return value as unknown as HooksDefinition;
}
