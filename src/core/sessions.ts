/**
 * Sessions, uids, rooms and presence: state that spans connections and workers, so it lives on
 * the I/O thread (Swoft's connection/session manager, mydog's session bind, Phoenix presence).
 * Workers drive it with Request records and get answers as Notice records.
 *
 * uid binding   `ctx.bind(uid, { onDuplicate })`: 'allow' (several connections per uid, the
 *               default), 'reject' (RW_ERR_UID_TAKEN while another connection holds it) or
 *               'kick' (the others are closed with `code`, default 4001). `sendToUid` reaches
 *               every connection of the uid, live or detached.
 * rooms         a room is a topic plus a member list: `join` subscribes, sends the joiner a
 *               `presence_state` frame (the snapshot, itself included) and every other member a
 *               `presence_diff` { joins }. Leaving, closing or a session expiring sends
 *               `presence_diff` { leaves }. Diffs go out in the order the I/O thread executes the
 *               commands, which is the order every member sees.
 * resume        a module with `resume: { graceMs }` gets a `session` frame { token } when a
 *               connection opens. When its socket drops without a close frame (1006), the
 *               connection is *detached*: its fd, handle, uid, rooms and topics stay, the worker
 *               gets onAway, and every message addressed to it (direct sends, uid sends, topic
 *               publishes, presence) is buffered, bounded by maxMessages and maxBytes. A client
 *               that upgrades with `?rw_resume=<token>` within graceMs gets the same handle back,
 *               a `session` frame { resumed: true, recovered, replayed, firstSeq, lastSeq }, then
 *               the buffered messages in order; the worker runs onResume. If the buffer
 *               overflowed, nothing is replayed and `recovered` is false (the client must
 *               refetch its state). When graceMs passes, the disconnect hooks run and the rooms
 *               see the leave. An unknown or expired token is refused with HTTP 410 and
 *               RW_ERR_RESUME_TOKEN in the body.
 */
import { randomBytes } from 'node:crypto';
import type { FdAllocator } from '../fd/index.js';
import { BROADCAST_TOPIC_PREFIX, CloseCode, Defaults } from '../shared/constants.js';
import { NoticeOp, RequestOp, type fb } from '../shared/records.js';
import { codecByName, type Codec } from '../shared/wire.js';
import type { ModuleDescriptor } from '../shared/tasks.js';
import type { Counters } from './stats.js';
import type { SocketData } from './commands.js';
import { ClientSock, type Sock } from './client-sock.js';
import type { Slot } from './slot.js';
// PresenceMember is the public type (define.ts, exported by both entries), so what
// server.roomMembers() returns is a type users can name.
import type { MemberPage, PresenceMember, RoomListPage, RoomSummary } from '../workers/define.js';
import {
  PAGE_DEFAULT_LIMIT, PAGE_MAX_LIMIT, cutPage, firstAfter, memberCursor, membersAfter, type PageRequest,
} from '../shared/paging.js';

export interface ResumeOptions {
  /** How long a dropped connection keeps its session, in ms. */
  readonly graceMs: number;
  /** Most messages buffered for a detached connection (default 1000). */
  readonly maxMessages: number;
  /** Most bytes buffered for a detached connection (default 1 MiB). */
  readonly maxBytes: number;
}

/** resumeTarget()'s refusal while another resume of the session runs its hooks (HTTP 409: retry). */
export const RESUME_IN_PROGRESS = 'a resume of this session is already in progress';

/** The cluster side of sessions (src/core/server.ts implements it over the Redis bus). */
export interface ClusterLink {
  readonly nodeId: string;
  /** Forward a uid send to the other nodes. */
  uid(uid: string, data: Uint8Array, binary: boolean): void;
  /** Record a local member's join/leave for the other nodes (Redis hash + bus event). */
  presence(room: string, event: 'join' | 'leave', member: PresenceMember): void;
  /** Members of `room` on the other nodes; null when Redis is unreachable. */
  remoteMembers(room: string): Promise<PresenceMember[] | null>;
  /** Ids of the nodes that are up and have presence in Redis; null when Redis is unreachable. */
  liveNodes(): Promise<Set<string> | null>;
  /** How long a node may go unheard before the cluster counts it dead (ms). */
  readonly nodeTtlMs: number;
}

/** A detachable connection (modules with `resume`). */
export interface Session {
  /** Single use: each resume replaces it (see attach). */
  token: string;
  /**
   * The token the last resume presented, still accepted until the client shows it is on the resumed
   * socket (its first message, or a WebSocket's pong to the ping sent after the session frame; see
   * confirm): a socket that drops before the new token reached the client does not lose the session.
   */
  spent: string | null;
  /** The token the resume under way presented (beginResume). */
  presented: string;
  readonly fd: number;
  readonly handle: number;
  readonly opts: ResumeOptions;
  /** The connection's data; replaced by the new socket's on resume. */
  ud: SocketData;
  /** Topics the connection subscribed (rooms included), re-subscribed on resume. */
  readonly topics: Set<string>;
  detached: boolean;
  /**
   * The socket still open while a resume of the session runs its upgrade hooks (see beginResume):
   * the session is routed as detached (what is addressed to it is buffered) but this socket is
   * neither closed nor forgotten until the resume is accepted; null otherwise.
   */
  held: Sock | null;
  /** A resume upgrade is in progress for it. */
  resuming: boolean;
  deadline: number;
  timer: NodeJS.Timeout | null;
  buffer: { data: Uint8Array; binary: boolean }[];
  bufBytes: number;
  overflowed: boolean;
  /** Messages addressed to the session while detached, ever (the last one's sequence number). */
  seq: number;
  /** seq of the first message in `buffer`. */
  firstSeq: number;
}

/** What the session manager needs from the server. */
export interface SessionHost {
  readonly alloc: FdAllocator;
  readonly counters: Counters;
  readonly sockets: Map<number, Sock>;
  readonly slots: readonly Slot[];
  readonly moduleDescriptors: readonly ModuleDescriptor[];
  /** Release an fd and do the server-side close bookkeeping of a connection that is gone for good. */
  finishClose(ud: SocketData, code: number, reason: string): void;
  /** Close a socket whose connection lives on, or ends, without it (no close bookkeeping, fd kept). */
  retire(sock: Sock, code: number, reason: string): void;
  /** Set when the server runs in a cluster. */
  readonly cluster: ClusterLink | null;
  /** A connection's record (ConnectionInfo), or null. */
  connection(handle: number): unknown;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const EMPTY = new Uint8Array(0);
/** Connections per turn of the event loop for paged sends (SendAll). */
const PAGE = 1024;
/**
 * A join's reply lists the room's members; too many for one record, the join has still taken place
 * (the client got its presence state): the error says so and names the paged listing.
 */
const JOIN_TOO_LARGE = 'the join itself took place; list the members with ctx.room(room, { limit, after }), or raise ringBytes';

/** Bytes of sendAll payloads waiting for their pages; past it a sendAll is refused (drops.sendAllOverflow). */
const MAX_PAGED_BYTES = 64 * 1024 * 1024;
/** Bytes of a paged reply besides its entries: the field names, subscribers, total, brackets (next is counted apart). */
const PAGE_FIXED_BYTES = 96;
/** Rooms healRemote() reads from Redis at once (each wave answered before the next; within the bus's maxQueue). */
const HEAL_WAVE = 256;
/** First wait before a room's failed first read of the other nodes' members is retried (doubling; see retryFirstRead). */
const FIRST_READ_RETRY_MS = 250;
/** Longest wait between those retries. */
const FIRST_READ_RETRY_MAX_MS = 5_000;

export const DEFAULT_KICK_CODE = 4001;
/** Bytes allowed per replayed message besides its payload (a WebSocket frame header is 2-10). */
const REPLAY_FRAME_OVERHEAD = 16;
/** Bytes allowed for the session frame that precedes a replay. */
const SESSION_FRAME_BYTES = 1024;

/** A presence_diff frame's payload. */
interface PresenceDiff { room: string; joins: PresenceMember[]; leaves: PresenceMember[] }

/** A member's identity across the cluster. */
function memberKey(m: PresenceMember): string {
  return `${m.node}:${m.handle}`;
}

/** The same member with the same uid and meta (members arrive as JSON, so their JSON is compared). */
function sameMember(a: PresenceMember, b: PresenceMember): boolean {
  if (a === b) return true;
  if (a.node !== b.node || a.handle !== b.handle || a.uid !== b.uid) return false;
  try {
    return JSON.stringify(a.meta) === JSON.stringify(b.meta);
  } catch {
    return false;
  }
}

/** A request URL without its query. */
function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

/** 144 random bits per token, drawn from a pooled buffer. */
let tokenPool = Buffer.alloc(0);
let tokenPos = 0;
function newToken(): string {
  if (tokenPos + 18 > tokenPool.length) {
    tokenPool = randomBytes(18 * 256);
    tokenPos = 0;
  }
  const t = tokenPool.toString('base64url', tokenPos, tokenPos + 18);
  tokenPos += 18;
  return t;
}

/**
 * A sendAll waiting for its pages. It walks the live sockets, then the sessions detached or held
 * (their buffers), each a live Map iterator (no copy of 100k handles per call). A connection can
 * move between the two maps while the walk is under way (a drop, a resume, a hold that ends) and
 * is put back at the end of the socket map, where the iterator would meet it again: the connection's
 * `sentAll` mark (this send's id once it was reached) keeps it to one delivery. Sends run one at a
 * time, oldest first, so one mark per connection is enough.
 */
interface PagedSend {
  /** Increasing per call: connections opened after it carry an id at least this one (skipped). */
  id: number;
  it: Iterator<Sock>;
  /** The walk of the detached and held sessions, once the sockets are done; null before. */
  away: Iterator<Session> | null;
  module: number;
  except: Set<number>;
  data: Uint8Array;
  binary: boolean;
}

export class SessionManager {
  private readonly host: SessionHost;
  /** uid → handles of its connections (live or detached). */
  readonly uids = new Map<string, Set<number>>();
  /** room → handle → member. */
  readonly rooms = new Map<string, Map<number, PresenceMember>>();
  /** The room names in page order (paged room lists); null when a room came or went since they were sorted. */
  private roomNames: string[] | null = null;
  /** Cluster joiners waiting for the other nodes' members, by room and handle: the diffs of the room meanwhile. */
  private readonly syncing = new Map<string, Map<number, PresenceDiff[]>>();
  /**
   * In a cluster, for each room with members here: the other nodes' members as this node's members
   * of the room were shown them (the snapshot of the join that created the room here, then every
   * diff from the other nodes), by memberKey. What healRemote() compares a fresh read of Redis with.
   */
  private readonly remote = new Map<string, Map<string, PresenceMember>>();
  /** Rooms healRemote() is reading from Redis: the other nodes' diffs of the room that arrived meanwhile. */
  private readonly healing = new Map<string, PresenceDiff[][]>();
  /** Bumped by each healRemote(): an older one still under way stops (the newer one covers it). */
  private healEpoch = 0;
  /** The second pass of a heal that held leaves back (see healRemote), nodeTtlMs after the first. */
  private healTimer: NodeJS.Timeout | null = null;
  /**
   * Rooms whose view (`remote`) was never read from Redis: the read of the join that created the
   * room here failed (timed out, errored, Redis away). Retried until a read of the room succeeds
   * (see retryFirstRead); by room: the view it is for, the pending retry, the wait before the next.
   */
  private readonly unread = new Map<string, { view: Map<string, PresenceMember>; timer: NodeJS.Timeout | null; waitMs: number }>();
  readonly byToken = new Map<string, Session>();
  /** fd → detached session. */
  readonly detached = new Map<number, Session>();
  /** topic → detached sessions subscribed to it (publishes to them are buffered). */
  private readonly detachedTopics = new Map<string, Set<Session>>();
  private readonly paged: PagedSend[] = [];
  private pagedArmed = false;
  private pagedBytes = 0;
  /** The id of the last sendAll accepted (see PagedSend.id). */
  private sendAllSeq = 0;
  private readonly codecs: Codec[] = [];

  constructor(host: SessionHost) {
    this.host = host;
  }

  /** The id of the last sendAll issued: a connection opening now is marked with it (SocketData.sentAll). */
  get lastSendAll(): number {
    return this.sendAllSeq;
  }

  private codecOf(module: number): Codec {
    let c = this.codecs[module];
    if (c === undefined) {
      c = codecByName(this.host.moduleDescriptors[module]?.codec ?? "json");
      this.codecs[module] = c;
    }
    return c;
  }

  /** A system frame (session, presence) in the module's codec, copied (codecs may return pooled views). */
  /** The module's maxBackpressure (0: none), which bounds what one replay can send. */
  private maxBackpressure(module: number): number {
    const v = this.host.moduleDescriptors[module]?.options['maxBackpressure'];
    return typeof v === 'number' ? v : Defaults.maxBackpressure;
  }

  private frame(module: number, event: string, payload: unknown): { data: Uint8Array; binary: boolean } {
    const c = this.codecOf(module);
    return { data: c.encode(event, 0, payload).slice(), binary: c.binary };
  }

  /** The live socket of a handle, if any. */
  sockOf(handle: number): Sock | undefined {
    const a = this.host.alloc;
    return a.isCurrent(handle) ? this.host.sockets.get(a.fdOf(handle)) : undefined;
  }

  /** The detached session of a handle, if any. */
  detachedOf(handle: number): Session | undefined {
    const s = this.detached.get(this.host.alloc.fdOf(handle));
    return s !== undefined && s.handle === handle ? s : undefined;
  }

  /** Deliver to a handle: live socket, or the buffer of its detached session. False = nobody (stale). */
  deliver(handle: number, data: Uint8Array, binary: boolean): boolean {
    const s = this.sockOf(handle);
    if (s !== undefined) {
      if (s.send(data, binary) === 2) this.host.counters.drop('backpressure', handle);
      else this.host.counters.messagesOut++;
      return true;
    }
    const d = this.detachedOf(handle);
    if (d === undefined) return false;
    this.buffer(d, data, binary);
    return true;
  }

  private buffer(s: Session, data: Uint8Array, binary: boolean): void {
    s.seq++;
    if (s.overflowed) {
      this.host.counters.drop('resumeOverflow', s.handle);
      return;
    }
    if (s.buffer.length >= s.opts.maxMessages || s.bufBytes + data.length > s.opts.maxBytes) {
      // Replaying with a gap would be worse than not replaying: drop it all (every message
      // counted), tell the client on resume.
      this.host.counters.drops.resumeOverflow += s.buffer.length;
      this.host.counters.drop('resumeOverflow', s.handle);
      s.overflowed = true;
      s.buffer = [];
      s.bufBytes = 0;
      return;
    }
    if (s.buffer.length === 0) s.firstSeq = s.seq;
    s.buffer.push({ data: data.slice(), binary });
    s.bufBytes += data.length;
  }

  // ------------------------------------------------------------------ publish / subscribe tracking

  get hasDetached(): boolean {
    return this.detachedTopics.size !== 0;
  }

  /** A publish went out on `topic`: buffer it for detached subscribers (the publisher excluded). */
  capturePublish(topic: string, data: Uint8Array, binary: boolean, exclude: number): void {
    const set = this.detachedTopics.get(topic);
    if (set === undefined) return;
    for (const s of set) if (s.handle !== exclude) this.buffer(s, data, binary);
  }

  subscribed(ud: SocketData, topic: string): void {
    const s = ud.session;
    if (s === null) return;
    s.topics.add(topic);
    if (s.detached) {
      let set = this.detachedTopics.get(topic);
      if (set === undefined) this.detachedTopics.set(topic, (set = new Set()));
      set.add(s);
    }
  }

  unsubscribed(ud: SocketData, topic: string): void {
    const s = ud.session;
    if (s === null) return;
    s.topics.delete(topic);
    const set = this.detachedTopics.get(topic);
    if (set !== undefined && set.delete(s) && set.size === 0) this.detachedTopics.delete(topic);
  }

  // ------------------------------------------------------------------ open / close / resume

  /** A connection opened on a module with `resume`: create its session and send the token. */
  opened(sock: Sock, ud: SocketData, opts: ResumeOptions): void {
    const s: Session = {
      token: newToken(), spent: null, presented: '', fd: ud.fd, handle: ud.handle, opts, ud, topics: new Set(), detached: false, held: null, resuming: false,
      deadline: 0, timer: null, buffer: [], bufBytes: 0, overflowed: false, seq: 0, firstSeq: 0,
    };
    ud.session = s;
    // ctx.broadcast() goes to the module's internal topic: buffered while detached like any topic.
    s.topics.add(BROADCAST_TOPIC_PREFIX + String(ud.module));
    this.byToken.set(s.token, s);
    const f = this.frame(ud.module, 'session', { token: s.token, resumed: false, graceMs: opts.graceMs });
    sendFrame(sock, f);
  }

  /**
   * The socket closed. Returns true when the connection was detached instead (its session
   * waits for a resume): the caller must then keep its fd and not tell the worker it closed.
   */
  closing(ud: SocketData, code: number, serverShutdown: boolean): boolean {
    const s = ud.session;
    if (s !== null && s.held !== null && s.held.getUserData().rw === ud) {
      // The socket held for a resume in its hooks closed: already routed as detached. A drop
      // (1006) makes it the plain detached case (onAway; the grace starts, its timer armed if
      // the resume fails); any other close ends the session now, as without a resume (what
      // waited for it is counted), and the resume, if accepted, is closed 1011 'session lost'.
      s.held = null;
      this.heldCount--;
      if (!serverShutdown && code === CloseCode.ABNORMAL) {
        s.deadline = Date.now() + s.opts.graceMs;
        this.notify(s.ud, NoticeOp.Detach, 0, 0, s.handle, EMPTY);
        return true;
      }
      this.dropBuffer(s);
      this.undetach(s);
    } else if (s !== null && !serverShutdown && code === CloseCode.ABNORMAL) {
      this.detach(s);
      return true;
    }
    this.release(ud);
    return false;
  }

  private detach(s: Session): void {
    s.deadline = Date.now() + s.opts.graceMs;
    this.route(s);
    if (!s.resuming) this.arm(s);
    this.notify(s.ud, NoticeOp.Detach, 0, 0, s.handle, EMPTY);
  }

  /** Route what is addressed to the session into its buffer (its socket gone, or held). */
  private route(s: Session): void {
    s.detached = true;
    this.detached.set(s.fd, s);
    for (const t of s.topics) {
      let set = this.detachedTopics.get(t);
      if (set === undefined) {
        set = new Set();
        this.detachedTopics.set(t, set);
      }
      set.add(s);
    }
  }

  private arm(s: Session): void {
    if (s.timer !== null) clearTimeout(s.timer);
    s.timer = setTimeout(this.expireBound, Math.max(0, s.deadline - Date.now()), s);
    s.timer.unref();
  }

  private readonly expireBound = (s: Session): void => {
    s.timer = null;
    if (s.detached && !s.resuming) this.expire(s, 'session expired');
  };

  /**
   * End a detached session for good: the worker runs the disconnect hooks (with `code`), rooms
   * see the leave. A socket held for a resume in its hooks is closed with `code` (1001 for a 1006,
   * which is never sent).
   */
  expire(s: Session, reason: string, code: number = CloseCode.ABNORMAL): void {
    this.dropBuffer(s);
    const held = s.held;
    if (held !== null) {
      s.held = null;
      this.heldCount--;
    }
    this.undetach(s);
    this.release(s.ud);
    if (held !== null) this.host.retire(held, code === CloseCode.ABNORMAL ? CloseCode.GOING_AWAY : code, reason);
    this.host.finishClose(s.ud, code, reason);
  }

  /** What waited in the buffer of a session that ends will never be delivered: counted, not dropped silently. */
  private dropBuffer(s: Session): void {
    if (s.buffer.length === 0) return;
    this.host.counters.drops.sessionEnded += s.buffer.length - 1;
    this.host.counters.drop('sessionEnded', s.handle);
    s.buffer = [];
    s.bufBytes = 0;
  }

  private undetach(s: Session): void {
    if (s.timer !== null) {
      clearTimeout(s.timer);
      s.timer = null;
    }
    s.detached = false;
    this.detached.delete(s.fd);
    for (const t of s.topics) {
      const set = this.detachedTopics.get(t);
      if (set !== undefined && set.delete(s) && set.size === 0) this.detachedTopics.delete(t);
    }
  }

  /** Forget the connection's uid, rooms and session (it is gone for good). */
  private release(ud: SocketData): void {
    if (ud.uid !== null) this.unbind(ud);
    if (ud.rooms !== null) {
      for (const room of ud.rooms) this.leaveRoom(ud, room, false);
      ud.rooms = null;
    }
    if (ud.session !== null) {
      // A resume upgrade in flight must not take over the fd released below (handleOpen ends it).
      this.setResuming(ud.session, false);
      this.byToken.delete(ud.session.token);
      if (ud.session.spent !== null) this.byToken.delete(ud.session.spent);
      ud.session = null;
    }
  }

  /**
   * A resume upgrade arrived on `module` for `url`: the session it names, or a reason to refuse
   * it. The session resumes only on the module and path it was opened on (the worker keeps
   * routing it as that module, with those params).
   */
  resumeTarget(token: string, module: number, url: string): Session | string {
    const s = this.byToken.get(token);
    if (s === undefined) return 'resume token unknown or expired';
    if (s.resuming) return RESUME_IN_PROGRESS;
    if (s.ud.module !== module || pathOf(s.ud.url) !== pathOf(url)) return 'resume token belongs to another path';
    return s;
  }

  /**
   * Sessions with a resume upgrade under way. Each holds its place under maxConnections by its
   * own fd, so the resume's temporary fd (or its orphaned hook) is not counted again (see
   * Server.placesTaken); one resume per session at a time bounds them.
   */
  resumingCount = 0;

  private setResuming(s: Session, on: boolean): void {
    if (s.resuming !== on) this.resumingCount += on ? 1 : -1;
    s.resuming = on;
  }

  /** Sessions whose socket is held for a resume in its hooks (counted as live, not detached). */
  heldCount = 0;

  /**
   * A resume upgrade for `s` is under way (its hooks run): the grace timer stops meanwhile.
   * A session whose socket still looks alive (half-open: the client gave up on it, the server has
   * not seen it die) is *held*: what is addressed to the session while the resume's hooks run is
   * buffered (to be replayed if they accept), instead of going into a socket the client may no
   * longer read while the resume frame says `recovered: true`. The socket itself stays open and
   * its messages are served as before (their replies are buffered with the rest): the resume may
   * still be refused (a copied token, failed auth), and then the session goes back to it with
   * nothing lost (endHold). It is retired with 1001 only once the resume opens (attach).
   */
  beginResume(s: Session, token: string): void {
    this.setResuming(s, true);
    s.presented = token;
    if (s.timer !== null) {
      clearTimeout(s.timer);
      s.timer = null;
    }
    if (!s.detached) {
      const sock = this.sockOf(s.handle);
      if (sock === undefined) return;
      s.held = sock;
      this.heldCount++;
      // Out of the fd → socket map (every send by handle then finds the session's buffer), and
      // out of its topics (uWS would publish into it): route() buffers publishes instead.
      this.host.sockets.delete(s.fd);
      for (const t of s.topics) sock.unsubscribe(t);
      this.route(s);
    }
  }

  /**
   * The resume of `s` will not open (refused, aborted, timed out, its worker gone): a socket held
   * for it takes the session back, and gets what was buffered meanwhile, in order, before
   * anything sent after. Called as soon as that is known, while the session may stay `resuming`
   * until an orphaned hook answers (see Server.orphanPending).
   */
  endHold(s: Session): void {
    const sock = s.held;
    if (sock === null) return;
    s.held = null;
    this.heldCount--;
    this.pendingSendAll(s);
    this.undetach(s);
    this.host.sockets.set(s.fd, sock);
    for (const t of s.topics) sock.subscribe(t);
    // Messages past the buffer's bound were counted in drops.resumeOverflow as they came.
    const buf = s.buffer;
    let sent = 0;
    if (buf.length > 0) {
      sock.cork(() => {
        for (let i = 0; i < buf.length; i++) {
          if (sock.send(buf[i]!.data, buf[i]!.binary) === 2) this.host.counters.drop('backpressure', s.handle);
          else sent++;
        }
      });
    }
    this.host.counters.messagesOut += sent;
    s.buffer = [];
    s.bufBytes = 0;
    s.overflowed = false;
  }

  /** The resume upgrade failed (rejected, aborted, timed out): back to a held socket, or the grace period goes on. */
  abortResume(s: Session): void {
    this.endHold(s);
    this.setResuming(s, false);
    if (s.detached) {
      if (Date.now() >= s.deadline) this.expire(s, 'session expired');
      else this.arm(s);
    }
  }

  /**
   * The new socket of a resumed session opened: it takes over the session's fd and handle
   * (the temporary fd of the upgrade is released), its topics are re-subscribed, and the
   * client gets the session frame then every buffered message, in order.
   */
  attach(sock: Sock, ud: SocketData, s: Session): void {
    const tempHandle = ud.handle;
    this.host.alloc.release(ud.fd);
    const held = s.held;
    if (held !== null) {
      // The resume is accepted: the socket held for it (half-open) is retired now, and the worker
      // runs onAway before onResume, as for a dropped socket.
      s.held = null;
      this.heldCount--;
      this.host.retire(held, CloseCode.GOING_AWAY, 'session resumed on another socket');
      this.notify(s.ud, NoticeOp.Detach, 0, 0, s.handle, EMPTY);
    }
    // Detached: by its socket's drop, or held by beginResume (a half-open socket, retired above).
    this.pendingSendAll(s);
    this.undetach(s);
    this.setResuming(s, false);
    const old = s.ud;
    ud.fd = s.fd;
    ud.handle = s.handle;
    ud.uid = old.uid;
    ud.rooms = old.rooms;
    ud.session = s;
    ud.connectedAt = old.connectedAt;
    // The same connection: a sendAll that reached the session is not sent again to this socket.
    ud.sentAll = old.sentAll;
    s.ud = ud;
    this.host.sockets.set(s.fd, sock);
    for (const t of s.topics) sock.subscribe(t);
    // uWS drops what goes past the module's maxBackpressure: a replay with a gap would be worse
    // than none (as past the buffer bound), so a replay that cannot fit is not sent, counted.
    const limit = this.maxBackpressure(ud.module);
    if (s.buffer.length > 0 && limit > 0 && s.bufBytes + REPLAY_FRAME_OVERHEAD * s.buffer.length + SESSION_FRAME_BYTES > limit) {
      this.host.counters.drops.resumeOverflow += s.buffer.length - 1;
      this.host.counters.drop('resumeOverflow', s.handle);
      s.overflowed = true;
      s.buffer = [];
      s.bufBytes = 0;
    }
    // The token is single use: it travelled in a URL (proxy logs, history), so the one a resume
    // presented is retired and the session frame carries the next. A copied token is worthless
    // once its owner has resumed, and a thief who resumed first leaves the owner a 410 to notice.
    // Until the client shows it is on this socket (confirm), the presented token still resumes:
    // a drop before the session frame arrived would otherwise leave it only spent tokens. Any other
    // (a new token it never received) is retired now.
    this.byToken.delete(s.token);
    if (s.spent !== null) this.byToken.delete(s.spent);
    s.spent = s.presented;
    this.byToken.set(s.spent, s);
    s.token = newToken();
    this.byToken.set(s.token, s);
    ud.unconfirmed = true;
    const recovered = !s.overflowed;
    const replayed = s.buffer.length;
    const f = this.frame(ud.module, 'session', {
      token: s.token, resumed: true, recovered, replayed,
      firstSeq: replayed > 0 ? s.firstSeq : 0, lastSeq: replayed > 0 ? s.seq : 0,
    });
    const buf = s.buffer;
    let sent = 0;
    sock.cork(() => {
      sendFrame(sock, f);
      for (let i = 0; i < buf.length; i++) {
        if (sock.send(buf[i]!.data, buf[i]!.binary) === 2) this.host.counters.drop('backpressure', s.handle);
        else sent++;
      }
      // Its pong comes after the frames above have reached the client's WebSocket (confirm).
      if (sock.ping !== undefined) sock.ping();
    });
    this.host.counters.messagesOut += sent;
    this.host.counters.resumes++;
    s.buffer = [];
    s.bufBytes = 0;
    s.overflowed = false;
    this.notify(ud, NoticeOp.Resume, 0, 0, s.handle, enc.encode(JSON.stringify({ tempHandle, recovered, replayed })));
  }

  /**
   * The client of a resumed socket has shown it is there (a message, or a pong to the ping sent
   * after the session frame): the token that resume presented is spent for good.
   */
  confirm(ud: SocketData): void {
    ud.unconfirmed = false;
    const s = ud.session;
    if (s === null || s.spent === null) return;
    this.byToken.delete(s.spent);
    s.spent = null;
  }

  /** Every detached session of a dead worker (or all, at shutdown) ends now. */
  expireAll(slot: number | null, reason: string): void {
    for (const s of [...this.detached.values()]) {
      if (slot !== null && s.ud.slot !== slot) continue;
      // A held socket (its resume's hooks still running) is closed as a live one would be.
      if (s.held !== null) this.expire(s, reason, slot === null ? CloseCode.GOING_AWAY : CloseCode.INTERNAL);
      else this.expire(s, reason);
    }
  }

  // ------------------------------------------------------------------ uids

  bind(ud: SocketData, uid: string, policy: string, code: number): string | null {
    // A connection that already shares the uid (bound with 'allow') and binds it again with
    // 'kick' still closes the others: it asks to hold the uid alone. 'reject' and 'allow' have
    // nothing to do for it.
    const mine = ud.uid === uid;
    const set = this.uids.get(uid);
    if (set !== undefined && set.size > (mine ? 1 : 0)) {
      if (policy === 'reject' && !mine) return 'RW_ERR_UID_TAKEN';
      if (policy === 'kick') {
        for (const h of [...set]) {
          if (h === ud.handle) continue;
          const sock = this.sockOf(h);
          if (sock !== undefined) sock.end(code, 'uid bound by another connection');
          else {
            const d = this.detachedOf(h);
            if (d !== undefined) this.expire(d, 'uid bound by another connection', code);
          }
          set.delete(h);
        }
      }
    }
    if (mine) return null;
    if (ud.uid !== null) this.unbind(ud);
    let s = this.uids.get(uid);
    if (s === undefined) {
      s = new Set();
      this.uids.set(uid, s);
    }
    s.add(ud.handle);
    ud.uid = uid;
    return null;
  }

  unbind(ud: SocketData): void {
    const uid = ud.uid;
    if (uid === null) return;
    const set = this.uids.get(uid);
    if (set !== undefined && set.delete(ud.handle) && set.size === 0) this.uids.delete(uid);
    ud.uid = null;
  }

  /**
   * Returns how many local connections it reached (live or buffered). `forward`: also send it to
   * the other nodes of a cluster (false for a send that came from one).
   */
  sendToUid(uid: string, data: Uint8Array, binary: boolean, forward = true): number {
    const cluster = this.host.cluster;
    if (forward && cluster !== null) cluster.uid(uid, data, binary);
    const set = this.uids.get(uid);
    if (set === undefined) {
      // In a cluster the uid may live on another node: only a lone server knows it is offline.
      if (cluster === null) this.host.counters.drop('uidOffline');
      return 0;
    }
    let n = 0;
    for (const h of set) if (this.deliver(h, data, binary)) n++;
    return n;
  }

  // ------------------------------------------------------------------ rooms & presence

  /** Join `room`: subscribe, diff to the others. Returns the local snapshot (the caller sends presence_state). */
  join(sock: Sock | null, ud: SocketData, room: string, meta: unknown): PresenceMember[] {
    let members = this.rooms.get(room);
    if (members === undefined) {
      members = new Map();
      this.rooms.set(room, members);
      this.roomNames = null;
      if (this.host.cluster !== null) this.remote.set(room, new Map());
    }
    const me: PresenceMember = { handle: ud.handle, uid: ud.uid, meta: meta ?? null, node: this.host.cluster?.nodeId ?? '' };
    const had = members.has(ud.handle);
    members.set(ud.handle, me);
    if (ud.rooms === null) ud.rooms = new Set();
    ud.rooms.add(room);
    if (sock !== null) sock.subscribe(room);
    this.subscribed(ud, room);
    if (!had) {
      this.diff(members, { room, joins: [me], leaves: [] }, ud.handle);
      this.host.cluster?.presence(room, 'join', me);
    }
    return [...members.values()];
  }

  private sendState(ud: SocketData, room: string, members: PresenceMember[]): void {
    const state = this.frame(ud.module, 'presence_state', { room, members });
    this.deliver(ud.handle, state.data, state.binary);
  }

  /**
   * A member joined or left `room` on another node: local members of the room see the diff. A join
   * of a member the view already has, unchanged, is an upsert that changes nothing, and is not sent:
   * every member here has been shown it (the view is what they were shown, and a joiner's snapshot
   * includes it). Such joins come in bulk after a Redis restart, when every node's re-sync
   * re-announces all its members; delivered, they reached every client of every room again (and
   * filled detached sessions' buffers).
   */
  remotePresence(room: string, event: 'join' | 'leave', member: PresenceMember): void {
    const members = this.rooms.get(room);
    if (members === undefined) return;
    const payload: PresenceDiff = event === 'join' ? { room, joins: [member], leaves: [] } : { room, joins: [], leaves: [member] };
    const view = this.remote.get(room);
    let known = false;
    if (view !== undefined) {
      const key = memberKey(member);
      if (event === 'join') {
        const had = view.get(key);
        known = had !== undefined && sameMember(had, member);
        view.set(key, member);
      } else {
        view.delete(key);
      }
    }
    // A heal under way still gets it: its read may predate the write this join announces.
    const heals = this.healing.get(room);
    if (heals !== undefined) for (const q of heals) q.push(payload);
    if (!known) this.diff(members, payload, 0);
  }

  /**
   * After this node's bus was back from an outage (Redis away or restarted, or this node cut off):
   * read each room with members here from Redis again and send its members the joins and leaves of
   * the other nodes' members that this node missed meanwhile (their bus events were published while
   * it was not subscribed), by comparing the read with what they were shown (`remote`). Diffs from
   * the other nodes that arrive while a room is being read are applied on top of the read, as for a
   * joiner's snapshot. Rooms are read in waves of HEAL_WAVE, each answered before the next goes out,
   * so a node with many rooms stays within the bus's maxQueue. A room that cannot be read (Redis
   * away again: the next reconnect heals it) is left as it is.
   *
   * A member missing from the read is not always gone: after Redis restarted empty, a node that is
   * not back yet (its reconnect backs off up to seconds after this one's), or back but still
   * re-syncing (its rooms go out in waves), has nothing in Redis for the rooms not written yet
   * until its re-sync writes its members again and announces them as joins. Shown as a leave now,
   * each of them would leave and join again for this node's clients. So a member missing from the
   * read whose node has no member in the room's read and is not live in Redis (liveNodes) is kept
   * until a second pass, nodeTtlMs later (the time after which the cluster counts a node dead
   * anyway): it leaves then unless its node wrote it again meanwhile.
   */
  async healRemote(): Promise<void> {
    const cluster = this.host.cluster;
    if (cluster === null) return;
    const epoch = ++this.healEpoch;
    this.cancelHeal(false);
    const live = await cluster.liveNodes().catch(() => null);
    const later = await this.healRooms(cluster, [...this.remote.keys()], epoch, live, false);
    if (later.length === 0 || epoch !== this.healEpoch) return;
    this.healTimer = setTimeout(() => {
      this.healTimer = null;
      void this.healRooms(cluster, later, epoch, null, true);
    }, cluster.nodeTtlMs);
    this.healTimer.unref();
  }

  /**
   * Stop a heal's pending second pass (at close: `stop` also ends a heal under way and the pending
   * retries of first reads).
   */
  cancelHeal(stop = true): void {
    if (stop) {
      this.healEpoch++;
      for (const r of this.unread.values()) if (r.timer !== null) clearTimeout(r.timer);
      this.unread.clear();
    }
    if (this.healTimer !== null) {
      clearTimeout(this.healTimer);
      this.healTimer = null;
    }
  }

  /**
   * Heal `rooms` in waves while `epoch` is current. `live`: the nodes live in Redis (null when
   * unknown); `final`: the second pass, which shows every missing member leaving. Resolves the rooms
   * whose leaves were held back.
   */
  private async healRooms(cluster: ClusterLink, rooms: string[], epoch: number, live: Set<string> | null, final: boolean): Promise<string[]> {
    const later: string[] = [];
    for (let i = 0; i < rooms.length; i += HEAL_WAVE) {
      if (epoch !== this.healEpoch) return [];
      const held = await Promise.all(rooms.slice(i, i + HEAL_WAVE).map((room) => this.healRoom(cluster, room, live, final)));
      for (let j = 0; j < held.length; j++) if (held[j] === true) later.push(rooms[i + j]!);
    }
    return later;
  }

  /**
   * Heal one room (see healRemote). Resolves true when it held leaves back for the second pass,
   * null when the room could not be read (or was left here meanwhile).
   */
  private async healRoom(cluster: ClusterLink, room: string, live: Set<string> | null, final: boolean): Promise<boolean | null> {
    const view = this.remote.get(room);
    if (view === undefined) return null;
    const q: PresenceDiff[] = [];
    let heals = this.healing.get(room);
    if (heals === undefined) this.healing.set(room, (heals = []));
    heals.push(q);
    const list = await cluster.remoteMembers(room).catch(() => null);
    const h = this.healing.get(room);
    if (h !== undefined) {
      const i = h.indexOf(q);
      if (i >= 0) h.splice(i, 1);
      if (h.length === 0) this.healing.delete(room);
    }
    const members = this.rooms.get(room);
    // Unreadable, or the room was left here meanwhile (a new one of that name has its own view).
    if (list === null || members === undefined || this.remote.get(room) !== view) return null;
    this.firstReadDone(room, view); // the view is read now: a pending retry of its first read is moot
    const now = new Map<string, PresenceMember>();
    // Nodes with members in the read: their entries of the room are in Redis (a re-sync writes a
    // node's members of a room in one script), so one of theirs missing from it is gone.
    const written = new Set<string>();
    for (const m of list) {
      now.set(memberKey(m), m);
      written.add(m.node);
    }
    for (const d of q) {
      for (const m of d.leaves) now.delete(memberKey(m));
      for (const m of d.joins) now.set(memberKey(m), m);
    }
    const joins: PresenceMember[] = [];
    const leaves: PresenceMember[] = [];
    let held = false;
    for (const [k, m] of view) {
      if (now.has(k)) continue;
      if (!final && !written.has(m.node) && live?.has(m.node) !== true) {
        held = true; // its node may not be back yet (see healRemote)
        continue;
      }
      leaves.push(m);
      view.delete(k);
    }
    for (const [k, m] of now) {
      if (!view.has(k)) {
        joins.push(m);
        view.set(k, m);
      }
    }
    if (joins.length > 0 || leaves.length > 0) this.diff(members, { room, joins, leaves }, 0);
    return held;
  }

  /**
   * The read of the other nodes' members by the join that created `room` here failed while Redis
   * may well be connected (a command timed out under a stalled Redis, a script error, maxQueue
   * full): the view, and so every member here, lacks the members the other nodes already had, and
   * no reconnect (whose heal reads every room) needs to follow. So the room is read again, as a
   * heal of that room (its members get the joins they missed), after 250 ms, doubling up to 5 s,
   * until a read of it succeeds (this one, or a heal's), the room is left here, or the server
   * closes (cancelHeal). Each attempt is counted (stats().cluster.presenceRetries); each failed one
   * in drops.cluster too, like any failed read.
   */
  private retryFirstRead(cluster: ClusterLink, room: string, view: Map<string, PresenceMember>): void {
    if (this.unread.get(room)?.view === view) return;
    const r = { view, timer: null as NodeJS.Timeout | null, waitMs: FIRST_READ_RETRY_MS };
    this.unread.set(room, r);
    const arm = (): void => {
      r.timer = setTimeout(() => {
        r.timer = null;
        if (this.unread.get(room) !== r) return;
        if (this.remote.get(room) !== view) {
          this.unread.delete(room);
          return;
        }
        this.host.counters.presenceRetries++;
        // live unknown, not final: a member the view got from a diff and the read lacks is kept
        // unless its node's other members are in the read (nothing to take back: its leave comes).
        void this.healRoom(cluster, room, null, false).then(() => {
          if (this.unread.get(room) !== r) return; // read, left here, or closed meanwhile
          r.waitMs = Math.min(r.waitMs * 2, FIRST_READ_RETRY_MAX_MS);
          arm();
        });
      }, r.waitMs);
      r.timer.unref();
    };
    arm();
  }

  /** `view` of `room` has been read from Redis: no retry of its first read is needed any more. */
  private firstReadDone(room: string, view: Map<string, PresenceMember>): void {
    const r = this.unread.get(room);
    if (r === undefined || r.view !== view) return;
    if (r.timer !== null) clearTimeout(r.timer);
    this.unread.delete(room);
  }

  /** Leave `room` (explicitly, or because the connection is gone: then no unsubscribe). */
  leaveRoom(ud: SocketData, room: string, unsubscribe: boolean): void {
    const members = this.rooms.get(room);
    const me = members?.get(ud.handle);
    if (members === undefined || me === undefined) return;
    members.delete(ud.handle);
    const w = this.syncing.get(room);
    if (w !== undefined && w.delete(ud.handle) && w.size === 0) this.syncing.delete(room);
    if (unsubscribe) {
      ud.rooms?.delete(room);
      this.sockOf(ud.handle)?.unsubscribe(room);
      this.unsubscribed(ud, room);
    }
    this.host.cluster?.presence(room, 'leave', me);
    if (members.size === 0) {
      this.rooms.delete(room);
      this.roomNames = null;
      const view = this.remote.get(room);
      if (view !== undefined) this.firstReadDone(room, view);
      this.remote.delete(room);
    } else {
      this.diff(members, { room, joins: [], leaves: [me] }, 0);
    }
  }

  /**
   * Send a presence_diff to every member but `except`, encoded once per codec. A member still
   * waiting for its snapshot (see syncing) gets it folded into the snapshot instead.
   */
  private diff(members: Map<number, PresenceMember>, payload: PresenceDiff, except: number): void {
    const frames: ({ data: Uint8Array; binary: boolean } | undefined)[] = [];
    const waiting = this.syncing.size === 0 ? undefined : this.syncing.get(payload.room);
    for (const m of members.values()) {
      if (m.handle === except) continue;
      const q = waiting?.get(m.handle);
      if (q !== undefined) {
        q.push(payload);
        continue;
      }
      const ud = this.udOf(m.handle);
      if (ud === undefined) continue;
      let f = frames[ud.module];
      if (f === undefined) {
        f = this.frame(ud.module, 'presence_diff', payload);
        frames[ud.module] = f;
      }
      this.deliver(m.handle, f.data, f.binary);
    }
  }

  private udOf(handle: number): SocketData | undefined {
    return this.sockOf(handle)?.getUserData().rw ?? this.detachedOf(handle)?.ud;
  }

  /**
   * The rooms with members on this node and how many (Phoenix's RoomManager: a lobby lists its
   * tables). Detached sessions count: a dropped socket keeps its seat until its grace ends.
   */
  roomList(): RoomSummary[] {
    const out: RoomSummary[] = [];
    for (const [room, members] of this.rooms) out.push({ room, members: members.size });
    return out;
  }

  roomInfo(topic: string): { members: PresenceMember[] | null } {
    const m = this.rooms.get(topic);
    return { members: m === undefined ? null : [...m.values()] };
  }

  /**
   * A page of roomList(), by room name (see shared/paging.ts), its entries at most `maxBytes` of
   * JSON with the page's other fields (Infinity: no byte limit, the server's own call). `json`: the
   * entries' JSON, measured to cut the page (empty without a byte limit), which the reply is made of.
   */
  roomPage(req: PageRequest, maxBytes = Infinity): { page: RoomListPage; json: string[] } {
    // Sorted once for a whole walk while no room comes or goes (a 100k-room sort is tens of ms
    // on the I/O thread): each page is then a binary search and a slice.
    const names = this.roomNames ??= [...this.rooms.keys()].sort();
    const from = firstAfter(names, req.after);
    const entries: RoomSummary[] = [];
    for (let i = from; i < Math.min(names.length, from + req.limit); i++) {
      entries.push({ room: names[i]!, members: this.rooms.get(names[i]!)!.size });
    }
    const cut = cutPage(entries, 0, req.limit, maxBytes, PAGE_FIXED_BYTES, (e) => e.room);
    const rooms = entries.length === cut.count ? entries : entries.slice(0, cut.count);
    const next = from + rooms.length < names.length && rooms.length > 0 ? rooms[rooms.length - 1]!.room : null;
    return { page: { rooms, next, total: names.length }, json: cut.json };
  }

  /** A page of `members` (a room's, all nodes' in a cluster; null: no such room), as roomPage. */
  memberPage(members: readonly PresenceMember[] | null, req: PageRequest, maxBytes = Infinity): { page: MemberPage; json: string[] } {
    if (members === null) return { page: { members: null, next: null, total: 0 }, json: [] };
    const { rest, more, total } = membersAfter(members, req.after, req.limit);
    const cut = cutPage(rest, 0, req.limit, maxBytes, PAGE_FIXED_BYTES, memberCursor);
    const page = rest.slice(0, cut.count);
    const next = (page.length < rest.length || more) && page.length > 0 ? memberCursor(page[page.length - 1]!) : null;
    return { page: { members: page, next, total }, json: cut.json };
  }

  // ------------------------------------------------------------------ requests from workers

  /** Execute a Request record from `slot`'s worker. `subscribers` counts a topic's subscribers. */
  request(slot: Slot, r: fb.Request, subscribers: (topic: string) => number): void {
    const op = r.op();
    const handle = r.handle();
    const id = r.id();
    // The worker that asked, for the replies that wait for Redis: if it dies meanwhile, its
    // replacement (same slot, its request ids counting from 1 again) must not get them.
    const gen = slot.generation;
    switch (op) {
      case RequestOp.Bind: {
        const ud = this.udOf(handle);
        if (ud === undefined) return this.fail(slot, id, handle, 'RW_ERR_NOT_CONNECTED', 'the connection is closed');
        const args = parseJson(r.dataArray()) as { onDuplicate?: string; code?: number } | null;
        const err = this.bind(ud, r.text() ?? '', args?.onDuplicate ?? 'allow', args?.code ?? DEFAULT_KICK_CODE);
        if (err !== null) return this.fail(slot, id, handle, err, `uid ${JSON.stringify(r.text())} is bound to another connection`);
        return this.ok(slot, id, handle, { uid: ud.uid });
      }
      case RequestOp.Unbind: {
        const ud = this.udOf(handle);
        if (ud !== undefined) this.unbind(ud);
        return this.ok(slot, id, handle, null);
      }
      case RequestOp.SendToUid: {
        this.sendToUid(r.text() ?? '', r.dataArray() ?? EMPTY, r.binary());
        return;
      }
      case RequestOp.Join: {
        const ud = this.udOf(handle);
        if (ud === undefined) return this.fail(slot, id, handle, 'RW_ERR_NOT_CONNECTED', 'the connection is closed');
        const room = r.text() ?? '';
        const created = !this.rooms.has(room);
        const local = this.join(this.sockOf(handle) ?? null, ud, room, parseJson(r.dataArray()));
        const cluster = this.host.cluster;
        if (cluster === null) {
          this.sendState(ud, room, local);
          return this.ok(slot, id, handle, { members: local }, JOIN_TOO_LARGE);
        }
        // Presence spans nodes: the snapshot adds the other nodes' members (while Redis is away,
        // those this room's members here were shown: healRemote() corrects them all together once
        // it is back). Diffs of the room that arrive meanwhile are folded into it rather than sent
        // ahead of it, so the joiner sees its snapshot, then only later diffs. (Each node writes a
        // member and publishes its diff in one Redis script, so a diff is never seen before the list
        // shows it; one that arrives after the list went out is applied to it or sent after it.)
        let waiting = this.syncing.get(room);
        if (waiting === undefined) this.syncing.set(room, (waiting = new Map()));
        const q: PresenceDiff[] = [];
        waiting.set(handle, q);
        const view = this.remote.get(room);
        void cluster.remoteMembers(room).then((remote) => {
          const w = this.syncing.get(room);
          if (w !== undefined && w.get(handle) === q) {
            w.delete(handle);
            if (w.size === 0) this.syncing.delete(room);
          }
          const byKey = new Map<string, PresenceMember>();
          for (const m of local) byKey.set(memberKey(m), m);
          // The view too, read or not: what this room's members here were shown, the joiner is
          // shown (a member a heal still holds back, whose node is not back yet after a Redis
          // restart, is missing from the read), so that a join the view already has, which is not
          // sent (see remotePresence), is never news to anyone here.
          if (view !== undefined && this.remote.get(room) === view) for (const m of view.values()) byKey.set(memberKey(m), m);
          for (const m of remote ?? []) byKey.set(memberKey(m), m);
          for (const d of q) {
            for (const m of d.leaves) byKey.delete(memberKey(m));
            for (const m of d.joins) byKey.set(memberKey(m), m);
          }
          const members = [...byKey.values()];
          // The first member here is the first shown the other nodes' members: this is the view
          // later joiners share and healRemote() compares with. (Later snapshots are not merged in:
          // a member they show that the view lacks was never shown to the others, and a heal tells
          // all of them.)
          if (created && view !== undefined && this.remote.get(room) === view) {
            if (remote !== null) {
              for (const m of members) if (m.node !== cluster.nodeId) view.set(memberKey(m), m);
            } else {
              // Not read (see retryFirstRead): read again until it is, so the room converges
              // without waiting for a reconnect that may never come.
              this.retryFirstRead(cluster, room, view);
            }
          }
          if (ud.rooms?.has(room) === true) this.sendState(ud, room, members);
          if (slot.generation === gen) this.ok(slot, id, handle, { members }, JOIN_TOO_LARGE);
        });
        return;
      }
      case RequestOp.Leave: {
        const ud = this.udOf(handle);
        if (ud !== undefined) this.leaveRoom(ud, r.text() ?? '', true);
        return this.ok(slot, id, handle, null);
      }
      case RequestOp.RoomInfo: {
        const t = r.text() ?? '';
        const req = pageRequest(r.dataArray());
        const local = this.roomInfo(t).members;
        const answer = (members: PresenceMember[] | null): void => {
          if (req === null) {
            return this.ok(slot, id, handle, { subscribers: subscribers(t), members },
              'page the members with ctx.room(topic, { limit, after }), or raise ringBytes');
          }
          const { page, json } = this.memberPage(members, req, slot.replyBytes);
          const list = page.members === null ? 'null' : `[${json.join(',')}]`;
          this.okJson(slot, id, handle,
            `{"subscribers":${subscribers(t)},"members":${list},"next":${JSON.stringify(page.next)},"total":${page.total}}`);
        };
        const cluster = this.host.cluster;
        if (cluster === null) return answer(local);
        void cluster.remoteMembers(t).then((remote) => {
          if (slot.generation === gen) answer(remote === null || remote.length === 0 ? local : [...(local ?? []), ...remote]);
        });
        return;
      }
      case RequestOp.ConnInfo:
        return this.ok(slot, id, handle, this.host.connection(handle));
      case RequestOp.RoomList: {
        const req = pageRequest(r.dataArray());
        // Unpaged, the answer is what it always was (every room, in creation order), or, when it
        // does not fit the ring, an error that names the paging that does.
        if (req === null) return this.ok(slot, id, handle, this.roomList(), 'page the list with ctx.listRooms({ limit, after }), or raise ringBytes');
        const { page, json } = this.roomPage(req, slot.replyBytes);
        return this.okJson(slot, id, handle, `{"rooms":[${json.join(',')}],"next":${JSON.stringify(page.next)},"total":${page.total}}`);
      }
      case RequestOp.SendAll: {
        const except = new Set<number>();
        for (let i = 0; i < r.handlesLength(); i++) except.add(r.handles(i)!);
        const data = r.dataArray() ?? EMPTY;
        if (this.pagedBytes + data.length > MAX_PAGED_BYTES) {
          // Bounded: a handler calling sendAll faster than the pages go out is refused, counted.
          this.host.counters.drop('sendAllOverflow');
          return;
        }
        this.pagedBytes += data.length;
        this.paged.push({
          id: ++this.sendAllSeq, it: this.host.sockets.values(), away: null, module: handle, except, data: data.slice(), binary: r.binary(),
        });
        this.armPaged();
        return;
      }
      default:
        this.host.counters.drop('badCommand');
    }
  }

  /** `remedy`: what the worker's error says to do when the reply does not fit its ring (see Slot.notice). */
  private ok(slot: Slot, id: number, handle: number, value: unknown, remedy?: string): void {
    if (id !== 0) slot.notice(NoticeOp.Reply, id, 0, handle, enc.encode(JSON.stringify(value ?? null)), remedy);
  }

  private okJson(slot: Slot, id: number, handle: number, json: string): void {
    if (id !== 0) slot.notice(NoticeOp.Reply, id, 0, handle, enc.encode(json));
  }

  private fail(slot: Slot, id: number, handle: number, code: string, message: string): void {
    if (id !== 0) slot.notice(NoticeOp.Reply, id, 1, handle, enc.encode(JSON.stringify({ code, message })));
  }

  private notify(ud: SocketData, op: number, id: number, status: number, handle: number, data: Uint8Array): void {
    const slot = this.host.slots[ud.slot];
    if (slot !== undefined && slot.alive && slot.generation === ud.slotGen) slot.notice(op, id, status, handle, data);
  }

  // ------------------------------------------------------------------ paged sends

  /** Whether `job` is for this connection and has not reached it yet; if so, it is marked reached. */
  private due(job: PagedSend, ud: SocketData): boolean {
    if (ud.sentAll >= job.id || job.except.has(ud.handle) || (job.module >= 0 && ud.module !== job.module)) return false;
    ud.sentAll = job.id;
    return true;
  }

  /**
   * A session going back to a socket (endHold, attach) while the sendAll under way walks the
   * detached sessions: its walk of the sockets is over and it would meet the session in neither
   * map, so a send that has not reached it yet is buffered now, replayed with the rest.
   */
  private pendingSendAll(s: Session): void {
    const job = this.paged[0];
    if (job !== undefined && job.away !== null && this.due(job, s.ud)) this.buffer(s, job.data, job.binary);
  }

  private armPaged(): void {
    if (this.pagedArmed) return;
    this.pagedArmed = true;
    setImmediate(this.runPaged);
  }

  /**
   * One page of the oldest paged send per turn: a send to 100k connections never stalls the loop.
   * It reaches every connection of its module(s) open when it was issued, once: the live sockets,
   * then the sessions detached or held (buffered, replayed on resume, as any send to them).
   */
  private readonly runPaged = (): void => {
    this.pagedArmed = false;
    const job = this.paged[0];
    if (job === undefined) return;
    const c = this.host.counters;
    for (let n = 0; n < PAGE; n++) {
      if (job.away === null) {
        const next = job.it.next();
        if (next.done === true) {
          job.away = this.detached.values();
          continue;
        }
        const sock = next.value;
        const ud = sock.getUserData().rw;
        if (ud.closed || !this.due(job, ud)) continue;
        if (sock.send(job.data, job.binary) === 2) c.drop('backpressure', ud.handle);
        else c.messagesOut++;
      } else {
        const next = job.away.next();
        if (next.done === true) {
          this.paged.shift();
          this.pagedBytes -= job.data.length;
          break;
        }
        const s = next.value;
        if (this.due(job, s.ud)) this.buffer(s, job.data, job.binary);
      }
    }
    if (this.paged.length > 0) this.armPaged();
  };
}

/**
 * A session frame, which is not counted in messagesOut: a connector client that holds it and
 * has it refused later must not take it back from messagesOut.
 */
function sendFrame(sock: Sock, f: { data: Uint8Array; binary: boolean }): void {
  if (sock instanceof ClientSock) sock.sendUncounted(f.data, f.binary);
  else sock.send(f.data, f.binary);
}

/**
 * A paged request's { limit, after } (checked by the worker's ctx method); null for an unpaged
 * one (no data), which keeps its old answer.
 */
function pageRequest(b: Uint8Array | null): PageRequest | null {
  if (b === null || b.length === 0) return null;
  const o = parseJson(b) as { limit?: unknown; after?: unknown } | null;
  const limit = typeof o?.limit === 'number' && Number.isInteger(o.limit) ? Math.min(Math.max(o.limit, 1), PAGE_MAX_LIMIT) : PAGE_DEFAULT_LIMIT;
  return { limit, after: typeof o?.after === 'string' ? o.after : null };
}

function parseJson(b: Uint8Array | null): unknown {
  if (b === null || b.length === 0) return null;
  try {
    return JSON.parse(dec.decode(b));
  } catch {
    return null;
  }
}
