/**
 * Redis cluster bus: the transport under the optional cluster adapter (publish, uid delivery and
 * presence across nodes, like Socket.IO's Redis adapter). One Redis pub/sub channel per cluster
 * (`${prefix}:bus`), a compact binary envelope (no JSON around payload bytes), two ioredis
 * connections (pub + sub), at-most-once delivery, fail-soft while Redis is away.
 *
 * Delivery semantics, on purpose:
 * - "Connected" means both connections ready and the channel subscribed (stats().connected,
 *   onStatus). `publish()` never throws and never queues without bound: while not connected (or
 *   with `maxQueue` commands unacknowledged) the message is dropped and counted. Commands in
 *   flight when a connection drops are rejected, not re-sent (no duplicates).
 * - Messages carrying this node's id as origin are ignored on receipt (the local node has already
 *   delivered them itself).
 * - Received `data` is a view into the Buffer ioredis handed over (zero copy). ioredis/redis-parser
 *   never reuse those bytes, so holding the view is safe; copy it if you keep a small part of a large
 *   message for long (the view keeps the whole reply chunk alive).
 * - Presence entries live in Redis hashes `${prefix}:presence:${room}`, field `${nodeId}~${incarnation}|${memberKey}`,
 *   so every node sees every node's members; the calls resolve false/null when Redis is away.
 *   The bus remembers this node's own entries (and removals Redis has not acknowledged) and writes
 *   them again after every reconnect, so a Redis restart without persistence heals by itself.
 * - Node liveness: each bus keeps a key `${prefix}:node:${nodeId}~${incarnation}` alive with a TTL
 *   (nodeTtlMs, refreshed every third of it), and its presence fields carry the same token. A node
 *   that dies without its graceful presenceRemoveNode() (SIGKILL, crash, power loss) stops
 *   refreshing; once its key expires, the first node whose periodic check (one script over the set
 *   of node tokens, DEAD_NODES_LUA) sees it claims it and sweeps the rooms it had indexed, and a
 *   presence read of a room sweeps it too: each sweep removes the dead node's entries in one Lua
 *   script (so exactly one node removes each), publishes a presence 'leave' for each from inside
 *   the script, and reports them through onPresenceExpired. A restart with the same nodeId is a new incarnation: the old
 *   process's entries are dead too (no leave is announced for one whose handle the new process
 *   already uses again in that room). Needs Redis >= 6.2 (SET GET). Fields of an older version (no
 *   incarnation) are never swept.
 * - Presence changes made while Redis was away reach the other nodes with the re-sync after the
 *   reconnect (RESYNC_LUA, one script per room): every entry of this node that Redis lacks is
 *   written and announced as a presence 'join', every removal Redis had not applied is applied and
 *   announced as a 'leave' (member: the JSON Redis had), from inside the script, so ordered with
 *   every other write and event. This covers a member that joined or left during a short outage,
 *   the entries a Redis restarted without persistence lost, and a node whose key expired while it
 *   was cut off or stalled (its entries were swept and their leaves published by the sweep script:
 *   the join always comes after them). Other nodes' changes this node missed meanwhile are the
 *   integration's to re-read (presenceList; the server does so for its rooms, and asks liveNodes
 *   which nodes are back, since after Redis restarted empty a node not yet back has no entries).
 *
 * Standalone Redis only (or anything that speaks to one endpoint); Redis Cluster would need sharded
 * pub/sub and hash tags and is not supported.
 */
import { randomBytes } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { ErrorCodes, RingwireError, intOption, invalidOption } from '../shared/errors.js';

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/**
 * The cluster bus could not do what was asked (first connection failed within startTimeoutMs,
 * start() twice). Code RW_ERR_CLUSTER. Could move to src/shared/errors.ts with the other classes.
 */
export class ClusterError extends RingwireError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.RW_ERR_CLUSTER, message, options);
    this.name = 'ClusterError';
  }
}

/** Bytes on the bus channel are not a valid bus envelope (another version, another app, corruption). */
export class BusMessageError extends ClusterError {
  constructor(message: string) {
    super(`malformed bus message: ${message}`);
    this.name = 'BusMessageError';
  }
}

// ---------------------------------------------------------------------------------------------
// Envelope
// ---------------------------------------------------------------------------------------------

export type PresenceEvent = 'join' | 'leave' | 'sync-request' | 'sync';

export type BusMessage =
  | { type: 'publish'; topic: string; binary: boolean; data: Uint8Array; origin: string }
  | { type: 'uid'; uid: string; binary: boolean; data: Uint8Array; origin: string }
  | { type: 'presence'; room: string; event: PresenceEvent; member: string; origin: string };

/** What `RedisBus.publish()` takes: a bus message without `origin` (the bus sets its nodeId). */
export type BusMessageInput =
  | { type: 'publish'; topic: string; binary: boolean; data: Uint8Array }
  | { type: 'uid'; uid: string; binary: boolean; data: Uint8Array }
  | { type: 'presence'; room: string; event: PresenceEvent; member: string };

/**
 * Wire layout (little endian), version 1:
 *
 *   u8  version (1)
 *   u8  type     1 publish, 2 uid, 3 presence
 *   u8  aux      publish/uid: flags, bit 0 = binary, other bits 0
 *                presence: event, 0 join, 1 leave, 2 sync-request, 3 sync
 *   u8  originLen (1..255), origin UTF-8
 *   u16 nameLen, name UTF-8 (topic / uid / room)
 *   publish/uid: data = every remaining byte
 *   presence:    u32 memberLen, member UTF-8 (JSON text), nothing after it
 *
 * Fixed overhead: 6 bytes + origin + name (+ 4 for presence).
 */
export const BUS_VERSION = 1;
const T_PUBLISH = 1;
const T_UID = 2;
const T_PRESENCE = 3;
const F_BINARY = 1;
const PRESENCE_EVENTS: readonly PresenceEvent[] = ['join', 'leave', 'sync-request', 'sync'];
const MAX_ORIGIN = 0xff;
const MAX_NAME = 0xffff;
const MAX_MEMBER = 0xffffffff;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function str(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new TypeError(`bus message ${what} must be a string`);
  return value;
}

/** Encode a bus message. Throws TypeError/RangeError for a message that cannot be encoded. */
export function encodeBusMessage(msg: BusMessage): Buffer {
  if (msg === null || typeof msg !== 'object') throw new TypeError('bus message must be an object');
  const origin = str(msg.origin, 'origin');
  const originLen = Buffer.byteLength(origin);
  if (originLen < 1 || originLen > MAX_ORIGIN) {
    throw new RangeError(`bus message origin must be 1..${MAX_ORIGIN} UTF-8 bytes, got ${originLen}`);
  }
  let type: number;
  let aux: number;
  let name: string;
  let data: Uint8Array | undefined;
  let member: string | undefined;
  switch (msg.type) {
    case 'publish':
    case 'uid':
      type = msg.type === 'publish' ? T_PUBLISH : T_UID;
      name = str(msg.type === 'publish' ? msg.topic : msg.uid, msg.type === 'publish' ? 'topic' : 'uid');
      if (typeof msg.binary !== 'boolean') throw new TypeError('bus message binary must be a boolean');
      if (!(msg.data instanceof Uint8Array)) throw new TypeError('bus message data must be a Uint8Array');
      aux = msg.binary ? F_BINARY : 0;
      data = msg.data;
      break;
    case 'presence': {
      type = T_PRESENCE;
      name = str(msg.room, 'room');
      const ev = PRESENCE_EVENTS.indexOf(msg.event);
      if (ev < 0) throw new TypeError(`bus message event must be one of ${PRESENCE_EVENTS.join(', ')}`);
      aux = ev;
      member = str(msg.member, 'member');
      break;
    }
    default:
      throw new TypeError(`bus message type must be 'publish', 'uid' or 'presence', got ${String((msg as { type?: unknown }).type)}`);
  }
  const nameLen = Buffer.byteLength(name);
  if (nameLen > MAX_NAME) throw new RangeError(`bus message ${type === T_PRESENCE ? 'room' : type === T_UID ? 'uid' : 'topic'} must be at most ${MAX_NAME} UTF-8 bytes, got ${nameLen}`);
  const memberLen = member === undefined ? 0 : Buffer.byteLength(member);
  if (memberLen > MAX_MEMBER) throw new RangeError('bus message member is too large');
  const size = 4 + originLen + 2 + nameLen + (data !== undefined ? data.byteLength : 4 + memberLen);
  const buf = Buffer.allocUnsafe(size);
  buf[0] = BUS_VERSION;
  buf[1] = type;
  buf[2] = aux;
  buf[3] = originLen;
  let off = 4;
  off += buf.write(origin, off, 'utf8');
  buf.writeUInt16LE(nameLen, off);
  off += 2;
  off += buf.write(name, off, 'utf8');
  if (data !== undefined) {
    buf.set(data, off);
    off += data.byteLength;
  } else {
    buf.writeUInt32LE(memberLen, off);
    off += 4;
    off += buf.write(member ?? '', off, 'utf8');
  }
  if (off !== size) throw new RangeError('bus message encoding size mismatch'); // cannot happen
  return buf;
}

function text(buf: Uint8Array, start: number, end: number, what: string): string {
  try {
    return utf8.decode(buf.subarray(start, end));
  } catch {
    throw new BusMessageError(`${what} is not valid UTF-8`);
  }
}

/**
 * Decode a bus message. Throws BusMessageError (code RW_ERR_CLUSTER) for anything that is not a
 * complete, valid version-1 envelope. `data` is a view into `buf` (no copy).
 */
export function decodeBusMessage(buf: Uint8Array): BusMessage {
  if (!(buf instanceof Uint8Array)) throw new BusMessageError('not a byte array');
  const len = buf.byteLength;
  if (len < 6) throw new BusMessageError(`too short (${len} bytes)`);
  const version = buf[0] as number;
  if (version !== BUS_VERSION) throw new BusMessageError(`unknown version ${version}`);
  const type = buf[1] as number;
  const aux = buf[2] as number;
  const originLen = buf[3] as number;
  if (originLen === 0) throw new BusMessageError('empty origin');
  let off = 4;
  if (off + originLen + 2 > len) throw new BusMessageError('origin runs past the end');
  const origin = text(buf, off, off + originLen, 'origin');
  off += originLen;
  const nameLen = (buf[off] as number) | ((buf[off + 1] as number) << 8);
  off += 2;
  if (off + nameLen > len) throw new BusMessageError('name runs past the end');
  const nameStart = off;
  off += nameLen;
  switch (type) {
    case T_PUBLISH:
    case T_UID: {
      if ((aux & ~F_BINARY) !== 0) throw new BusMessageError(`unknown flags 0x${aux.toString(16)}`);
      const binary = (aux & F_BINARY) !== 0;
      const data = buf.subarray(off);
      if (type === T_PUBLISH) {
        return { type: 'publish', topic: text(buf, nameStart, nameStart + nameLen, 'topic'), binary, data, origin };
      }
      return { type: 'uid', uid: text(buf, nameStart, nameStart + nameLen, 'uid'), binary, data, origin };
    }
    case T_PRESENCE: {
      const event = PRESENCE_EVENTS[aux];
      if (event === undefined) throw new BusMessageError(`unknown presence event ${aux}`);
      if (off + 4 > len) throw new BusMessageError('member length runs past the end');
      const memberLen = ((buf[off] as number) | ((buf[off + 1] as number) << 8) | ((buf[off + 2] as number) << 16)) + (buf[off + 3] as number) * 0x1000000;
      off += 4;
      if (off + memberLen !== len) {
        throw new BusMessageError(off + memberLen > len ? 'member runs past the end' : 'trailing bytes after member');
      }
      return {
        type: 'presence',
        room: text(buf, nameStart, nameStart + nameLen, 'room'),
        event,
        member: text(buf, off, len, 'member'),
        origin,
      };
    }
    default:
      throw new BusMessageError(`unknown type ${type}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Bus
// ---------------------------------------------------------------------------------------------

export interface RedisBusOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://...`. Not together with host/port. */
  url?: string;
  /** Redis host (default 127.0.0.1 when no url). */
  host?: string;
  /** Redis port (default 6379 when no url). */
  port?: number;
  /** This node's id: 1-64 characters of [A-Za-z0-9_.:-]; default a random 8-hex id. */
  nodeId?: string;
  /** Key and channel prefix (default 'rw'): channel `${prefix}:bus`, hashes `${prefix}:presence:${room}`. */
  prefix?: string;
  /** Most unacknowledged commands on the pub connection; past it publish() drops (default 10,000). */
  maxQueue?: number;
  /** How long start() waits for both connections to be ready and subscribed (ms, default 5,000). */
  startTimeoutMs?: number;
  /** How long a presence call waits for Redis before it resolves false/null (ms, default 2,000). */
  opTimeoutMs?: number;
  /**
   * Batch the commands issued in one event-loop turn into one write on the pub connection
   * (ioredis enableAutoPipelining). Default true: ~1.6x the small-message publish rate.
   */
  autoPipelining?: boolean;
  /**
   * How long this node's liveness key lives without a refresh (ms, default 15,000; refreshed every
   * third of it). Other nodes consider this node's presence entries dead this long after it stopped.
   */
  nodeTtlMs?: number;
  /**
   * Presence entries of dead nodes that this bus removed from Redis (during presenceList() or its
   * periodic sweep of the rooms it has members in). Each removed entry is reported by exactly one
   * node in the cluster, which has also published it to the other nodes as a presence 'leave' bus
   * message (origin: that node), from inside the sweep script. The callback is for this node's own
   * delivery (it ignores its own bus messages). Not called after stop().
   */
  onPresenceExpired?: (room: string, entries: PresenceEntry[]) => void;
  /** Called when the bus becomes connected (both connections ready, channel subscribed) or stops being so. Not called after stop(). */
  onStatus?: (connected: boolean) => void;
  /**
   * A message publish() had accepted (returned true) failed later (the connection dropped with it
   * in flight): counted in `dropped` too; this lets the caller count it where it counts the rest.
   */
  onPublishFailed?: () => void;
  /** Connection errors (each failed reconnect attempt), malformed messages, handler exceptions, failed commands. Not called after stop(). */
  onError?: (err: Error) => void;
}

export interface RedisBusStats {
  nodeId: string;
  /** Both connections ready and the bus channel subscribed. */
  connected: boolean;
  /** Messages Redis acknowledged. */
  published: number;
  /** Messages from other nodes handed to the handler (own echoes and malformed ones not counted). */
  received: number;
  /** publish() calls and presence calls that failed: Redis away, maxQueue reached, error or timeout. */
  dropped: number;
  /** Times the sub connection was subscribed again after a disconnect. */
  reconnects: number;
  /** Messages on the bus channel that did not decode. */
  malformed: number;
  /** Exceptions thrown by the handler (caught; reported through onError). */
  handlerErrors: number;
  /** Commands on the pub connection not yet acknowledged (bounded by maxQueue). */
  inflight: number;
}

export interface PresenceEntry {
  /** The member key as given to presenceAdd (without the node prefix). */
  key: string;
  /** The node that added it. */
  node: string;
  /** The member JSON text as given to presenceAdd. */
  member: string;
}

const NODE_ID_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const MAX_KEY = 0xffff;

/**
 * A presence write and its bus event in one step: HSET (ARGV[4] = '1') or HDEL of field ARGV[1]
 * (value ARGV[2]), then PUBLISH of ARGV[3] on channel KEYS[2] when it is not empty. A node listing
 * the room can then never see the event without the hash change (or the change without the event
 * to follow). An HSET also indexes the room: room ARGV[5] into this node's room set KEYS[3], token
 * ARGV[6] into the node set KEYS[4] (see DEAD_NODES_LUA); an HDEL of this node's last entry of the
 * room (ARGV[4] = '2') takes the room out of that set again.
 */
const PRESENCE_WRITE_LUA = `
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('SADD', KEYS[3], ARGV[5])
  redis.call('SADD', KEYS[4], ARGV[6])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  if ARGV[4] == '2' then redis.call('SREM', KEYS[3], ARGV[5]) end
end
if ARGV[3] ~= '' then redis.call('PUBLISH', KEYS[2], ARGV[3]) end
return 1
`;

/**
 * The periodic check for dead nodes, O(nodes) instead of a sweep of every room: node set KEYS[1]
 * holds the tokens that wrote presence, `${ARGV[2]}${token}` the rooms each wrote to. A token whose
 * liveness key `${ARGV[1]}${token}` has expired is taken out of the set and its room set is
 * deleted, in this one script, so exactly one node claims it; that node then sweeps those rooms
 * (SWEEP_LUA). Returns the claimed rooms (may repeat).
 */
const DEAD_NODES_LUA = `
local rooms = {}
for _, token in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. token) == 0 then
    redis.call('SREM', KEYS[1], token)
    for _, room in ipairs(redis.call('SMEMBERS', ARGV[2] .. token)) do rooms[#rooms + 1] = room end
    redis.call('DEL', ARGV[2] .. token)
  end
end
return rooms
`;

/**
 * The node ids of the live tokens in node set KEYS[1] (those whose liveness key `${ARGV[1]}${token}`
 * exists) that are not re-syncing (no key `${ARGV[2]}${token}`, see RESYNC_LUA): the nodes that
 * have written presence, are up, and have all their entries in Redis (see RedisBus#liveNodes).
 */
const LIVE_NODES_LUA = `
local ids = {}
for _, token in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local tilde = string.find(token, '~', 1, true)
  if tilde ~= nil and redis.call('EXISTS', ARGV[1] .. token) == 1 and redis.call('EXISTS', ARGV[2] .. token) == 0 then
    ids[#ids + 1] = string.sub(token, 1, tilde - 1)
  end
end
return ids
`;

/**
 * One room of a re-sync after a reconnect (see RedisBus#resync): HSET of the ARGV[3] field/value
 * items after ARGV[5] into hash KEYS[1] (then room ARGV[1] into this node's room set KEYS[2] and
 * token ARGV[2] into the node set KEYS[3], as PRESENCE_WRITE_LUA does; with no such item the room
 * leaves the room set), and HDEL of the fields after those (removals Redis has not acknowledged).
 * One command per room, whatever it holds.
 * Each also sets the node's re-sync marker KEYS[5] (TTL ARGV[5] ms; not with '0', the repair of a
 * few rooms at a beat, see RedisBus#repair), in the same script as the
 * SADD, so a node is never seen in the node set without it until the re-sync has written its last
 * room (RedisBus#resync deletes it then): liveNodes() leaves it out meanwhile, since after Redis
 * restarted empty its rooms not written yet lack its members.
 * Each field Redis did not have is announced as a presence 'join' on channel KEYS[4] (origin
 * ARGV[4], member = its value), each removed field that Redis still had as a 'leave' (member = the
 * value Redis had): the other nodes missed those events while this node could not publish them
 * (a member who joined or left during the outage), or Redis lost the entry (restarted empty), or
 * another node swept it and announced it gone (this node looked dead). A field Redis already had
 * (a short outage, nothing changed) announces nothing. Returns how many events were published.
 */
const RESYNC_LUA = `
local function le16(n) return string.char(n % 256, math.floor(n / 256) % 256) end
local function le32(n)
  return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256, math.floor(n / 16777216) % 256)
end
local tail = string.char(#ARGV[4]) .. ARGV[4] .. le16(#ARGV[1]) .. ARGV[1]
local n = tonumber(ARGV[3])
local events = 0
if ARGV[5] ~= '0' then redis.call('SET', KEYS[5], '1', 'PX', ARGV[5]) end
for i = 6, 5 + n, 2 do
  if redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('PUBLISH', KEYS[4], string.char(1, 3, 0) .. tail .. le32(#ARGV[i + 1]) .. ARGV[i + 1])
    events = events + 1
  end
end
if n > 0 then
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('SADD', KEYS[3], ARGV[2])
else
  redis.call('SREM', KEYS[2], ARGV[1])
end
for i = 6 + n, #ARGV do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if old then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('PUBLISH', KEYS[4], string.char(1, 3, 1) .. tail .. le32(#old) .. old)
    events = events + 1
  end
end
return events
`;

// Removes every field starting with ARGV[1] from hash KEYS[1]; returns how many.
const REMOVE_PREFIX_LUA = `
local fields = redis.call('HKEYS', KEYS[1])
local p = ARGV[1]
local n = 0
for _, f in ipairs(fields) do
  if string.sub(f, 1, #p) == p then
    redis.call('HDEL', KEYS[1], f)
    n = n + 1
  end
end
return n`;

// Reads hash KEYS[1] and removes the fields of dead nodes: a field `${nodeId}~${incarnation}|${key}`
// is alive while the key ARGV[1] .. token exists. Fields without '|' are not ours and fields without
// '~' were written by an older version (no liveness key): both are left alone.
// For each dead field, in this one atomic script: unless the same nodeId has a live entry with the
// same key (a restart reusing the handle), a presence 'leave' bus envelope (origin ARGV[4], room
// ARGV[5], member = the stored JSON) is published on channel ARGV[3]: inside the script, so no later
// command (such as the join the dead node's re-sync announces, should it come back) can reach the
// channel before it.
// Returns { live (field, value, ...) when ARGV[2] == '1' else {}, dead announced (field, value, ...) }.
const SWEEP_LUA = `
local all = redis.call('HGETALL', KEYS[1])
local function le16(n) return string.char(n % 256, math.floor(n / 256) % 256) end
local function le32(n)
  return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256, math.floor(n / 16777216) % 256)
end
local alive, liveIds, state, ids = {}, {}, {}, {}
for i = 1, #all, 2 do
  local f = all[i]
  local bar = string.find(f, '|', 1, true)
  local st = 'foreign'
  if bar ~= nil and bar > 1 then
    local token = string.sub(f, 1, bar - 1)
    local tilde = string.find(token, '~', 1, true)
    if tilde == nil then
      st = 'legacy'
    else
      local ok = alive[token]
      if ok == nil then
        ok = redis.call('EXISTS', ARGV[1] .. token) == 1
        alive[token] = ok
      end
      local id = string.sub(token, 1, tilde - 1) .. '|' .. string.sub(f, bar + 1)
      if ok then
        st = 'live'
        liveIds[id] = true
      else
        st = 'dead'
        ids[i] = id
      end
    end
  end
  state[i] = st
end
local head = string.char(1, 3, 1, #ARGV[4]) .. ARGV[4] .. le16(#ARGV[5]) .. ARGV[5]
local live, dead = {}, {}
for i = 1, #all, 2 do
  local st = state[i]
  if st == 'dead' then
    redis.call('HDEL', KEYS[1], all[i])
    if not liveIds[ids[i]] then
      redis.call('PUBLISH', ARGV[3], head .. le32(#all[i + 1]) .. all[i + 1])
      dead[#dead + 1] = all[i]
      dead[#dead + 1] = all[i + 1]
    end
  elseif st ~= 'foreign' and ARGV[2] == '1' then
    live[#live + 1] = all[i]
    live[#live + 1] = all[i + 1]
  end
end
return { live, dead }`;

/** Presence entries from a flat [field, value, ...] list (fields `${nodeId}~${incarnation}|${key}`). */
function entriesOf(flat: readonly string[]): PresenceEntry[] {
  const out: PresenceEntry[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const field = flat[i]!;
    const bar = field.indexOf('|');
    if (bar <= 0) continue;
    const token = field.slice(0, bar);
    const tilde = token.indexOf('~');
    out.push({ key: field.slice(bar + 1), node: tilde < 0 ? token : token.slice(0, tilde), member: flat[i + 1]! });
  }
  return out;
}

/** Most commands one re-sync wave has unanswered (see RedisBus#resync); at most maxQueue / 2. */
const RESYNC_WAVE = 256;

/** Every this many beats a node also sweeps its own rooms itself (fallback; see #beat). */
const OWN_SWEEP_BEATS = 30;

const noop = (): void => {};

type OpResult<T> = { value: T } | undefined;

export class RedisBus {
  readonly nodeId: string;
  readonly prefix: string;
  /** The one pub/sub channel of this cluster: `${prefix}:bus`. */
  readonly channel: string;

  readonly #handler: (msg: BusMessage) => void;
  readonly #onStatus: ((connected: boolean) => void) | undefined;
  readonly #onError: ((err: Error) => void) | undefined;
  readonly #onPresenceExpired: ((room: string, entries: PresenceEntry[]) => void) | undefined;
  readonly #onPublishFailed: (() => void) | undefined;
  /** `${nodeId}~${incarnation}`: prefixes this process's presence fields and names its liveness key. */
  readonly #token: string;
  readonly #aliveKey: string;
  /** Set of the tokens that wrote presence entries (see DEAD_NODES_LUA). */
  readonly #nodesKey: string;
  /** Set of the rooms this incarnation wrote presence entries in. */
  readonly #roomsKey: string;
  /** Beats since this node last swept its own rooms itself (the fallback, see #beat). */
  #beatsSinceOwnSweep = 0;
  /** This incarnation may be in the dead-node index (it wrote presence since it last left it). */
  #indexed = false;
  readonly #nodeTtlMs: number;
  #beatTimer: NodeJS.Timeout | undefined;
  readonly #maxQueue: number;
  readonly #startTimeoutMs: number;
  readonly #opTimeoutMs: number;
  readonly #target: string;
  readonly #channelBuf: Buffer;
  readonly #pub: Redis;
  readonly #sub: Redis;

  #state: 'new' | 'starting' | 'running' | 'stopped' = 'new';
  #stopPromise: Promise<void> | undefined;
  #startWaiter: ((ok: boolean) => void) | undefined;
  #connected = false;
  #wasConnected = false;
  #subActive = false;
  #subscribedOnce = false;
  #subEpoch = 0;
  #lastError: Error | undefined;
  /**
   * This node's presence as it should be in Redis: room → memberKey → member JSON, or null for a
   * removal Redis has not acknowledged yet. Written again after every reconnect (Redis may have
   * restarted empty, or missed writes while away), and the scope of presenceRemoveNode().
   */
  readonly #presence = new Map<string, Map<string, string | null>>();
  /**
   * Members of #presence no write of which was issued to Redis (added while it was away or maxQueue
   * was full, not yet re-synced): room → memberKeys. Removing one needs no tombstone (Redis never
   * had it, and no node heard its join). Without this, every join and leave while Redis was away
   * left a tombstone (room → handle → null) until the reconnect: handles never repeat, so connection
   * churn during a long outage grew #presence without bound (100,000 joins and leaves: +27 MiB).
   */
  readonly #unsent = new Map<string, Set<string>>();

  #published = 0;
  #received = 0;
  #dropped = 0;
  #reconnects = 0;
  #malformed = 0;
  #handlerErrors = 0;
  #inflight = 0;
  /** A re-sync waiting for room under maxQueue (see #resync): called when a command settles. */
  #roomWaiters: (() => void)[] = [];
  /** Bumped by each re-sync: an older one still under way stops (the newer one covers it). */
  #resyncEpoch = 0;
  /**
   * Rooms with a presence write that failed (refused at maxQueue, timed out, an error) since the
   * last re-sync: written again at the next beat (see #repair), since Redis may well have stayed
   * connected, and then no reconnect would ever re-sync them.
   */
  readonly #dirty = new Set<string>();
  /** A #repair under way (one at a time). */
  #repairing = false;

  constructor(opts: RedisBusOptions, handler: (msg: BusMessage) => void) {
    if (opts === null || typeof opts !== 'object') throw new TypeError('options must be an object');
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    const o = opts;

    let url: string | undefined;
    let target: string | undefined;
    if (o.url !== undefined) {
      if (typeof o.url !== 'string') throw invalidOption('url', 'a redis:// or rediss:// URL string');
      let parsed: URL;
      try {
        parsed = new URL(o.url);
      } catch {
        throw invalidOption('url', `a redis:// or rediss:// URL, got ${JSON.stringify(o.url)}`);
      }
      if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
        throw invalidOption('url', `a redis:// or rediss:// URL, got protocol ${parsed.protocol}`);
      }
      if (o.host !== undefined || o.port !== undefined) {
        throw invalidOption('url', 'used without options.host and options.port (the URL names both)');
      }
      url = o.url;
      if (parsed.password !== '') parsed.password = '***';
      target = parsed.toString();
    }
    if (o.host !== undefined && (typeof o.host !== 'string' || o.host === '')) {
      throw invalidOption('host', 'a non-empty string');
    }
    const host = o.host ?? '127.0.0.1';
    const port = intOption(o.port, 'port', 6379, 1, 65535);
    this.#target = target ?? `${host}:${port}`;

    if (o.nodeId !== undefined) {
      if (typeof o.nodeId !== 'string') throw invalidOption('nodeId', 'a string of 1-64 characters [A-Za-z0-9_.:-]');
      if (!NODE_ID_RE.test(o.nodeId)) {
        throw invalidOption('nodeId', `1-64 characters [A-Za-z0-9_.:-], got ${JSON.stringify(o.nodeId)}`, 'range');
      }
    }
    this.nodeId = o.nodeId ?? randomBytes(4).toString('hex');

    if (o.prefix !== undefined) {
      if (typeof o.prefix !== 'string') throw invalidOption('prefix', 'a non-empty string');
      if (o.prefix.length === 0 || o.prefix.length > 128) {
        throw invalidOption('prefix', `a string of 1-128 characters, got ${o.prefix.length}`, 'range');
      }
    }
    this.prefix = o.prefix ?? 'rw';
    this.channel = `${this.prefix}:bus`;
    this.#channelBuf = Buffer.from(this.channel);

    this.#token = `${this.nodeId}~${randomBytes(4).toString('hex')}`;
    this.#aliveKey = `${this.prefix}:node:${this.#token}`;
    this.#nodesKey = `${this.prefix}:nodes`;
    this.#roomsKey = `${this.prefix}:rooms:${this.#token}`;
    this.#nodeTtlMs = intOption(o.nodeTtlMs, 'nodeTtlMs', 15_000, 100, 3_600_000);
    if (o.onPresenceExpired !== undefined && typeof o.onPresenceExpired !== 'function') throw invalidOption('onPresenceExpired', 'a function');
    this.#onPresenceExpired = o.onPresenceExpired;
    if (o.onPublishFailed !== undefined && typeof o.onPublishFailed !== 'function') throw invalidOption('onPublishFailed', 'a function');
    this.#onPublishFailed = o.onPublishFailed;
    this.#maxQueue = intOption(o.maxQueue, 'maxQueue', 10_000, 1, 1_000_000);
    this.#startTimeoutMs = intOption(o.startTimeoutMs, 'startTimeoutMs', 5_000, 1, 600_000);
    this.#opTimeoutMs = intOption(o.opTimeoutMs, 'opTimeoutMs', 2_000, 1, 600_000);
    if (o.autoPipelining !== undefined && typeof o.autoPipelining !== 'boolean') throw invalidOption('autoPipelining', 'a boolean');
    const autoPipelining = o.autoPipelining ?? true;
    if (o.onStatus !== undefined && typeof o.onStatus !== 'function') throw invalidOption('onStatus', 'a function');
    if (o.onError !== undefined && typeof o.onError !== 'function') throw invalidOption('onError', 'a function');
    this.#onStatus = o.onStatus;
    this.#onError = o.onError;
    this.#handler = handler;

    const base = (role: 'pub' | 'sub'): RedisOptions => ({
      lazyConnect: true,
      // Fail fast while disconnected: no offline queue, in-flight commands rejected on a drop
      // (maxRetriesPerRequest 0 flushes the command queue on every close), nothing re-sent.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      autoResubscribe: true,
      // Reconnect forever: 100, 200, 400, 800, 1600, then every 2000 ms.
      retryStrategy: (times: number) => Math.min(100 * 2 ** Math.max(0, times - 1), 2000),
      connectTimeout: Math.min(this.#startTimeoutMs, 10_000),
      connectionName: `ringwire:${this.nodeId}:${role}`,
      disableClientInfo: true,
      enableAutoPipelining: role === 'pub' && autoPipelining,
      // disconnect() arms a timer of this length to destroy a socket that does not close; ioredis
      // arms it even for a socket that is already closed (stop() during an outage) and then never
      // clears it, so keep it short: it is the longest stop() can keep the process alive.
      disconnectTimeout: 200,
    });
    this.#pub = url !== undefined ? new Redis(url, base('pub')) : new Redis({ host, port, ...base('pub') });
    this.#sub = url !== undefined ? new Redis(url, base('sub')) : new Redis({ host, port, ...base('sub') });

    const onConnError = (err: Error): void => {
      this.#lastError = err;
      this.#report(err);
    };
    this.#pub.on('error', onConnError);
    this.#sub.on('error', onConnError);
    const update = (): void => this.#update();
    this.#pub.on('ready', update);
    this.#pub.on('close', update);
    this.#pub.on('end', update);
    this.#sub.on('ready', () => this.#onSubReady());
    this.#sub.on('close', () => {
      this.#subEpoch++; // a subscribe/ping still in flight belongs to the dead connection
      this.#subActive = false;
      this.#update();
    });
    this.#sub.on('messageBuffer', (channel: Buffer, message: Buffer) => this.#onMessage(channel, message));
  }

  /**
   * Connect both connections and subscribe the bus channel. Rejects with ClusterError
   * (RW_ERR_CLUSTER) when that did not happen within startTimeoutMs; the bus is then stopped.
   * Once started, the connections reconnect by themselves for as long as the bus runs.
   */
  async start(): Promise<void> {
    if (this.#state !== 'new') throw new ClusterError(`RedisBus.start(): already ${this.#state === 'stopped' ? 'stopped' : 'started'}`);
    this.#state = 'starting';
    const ready = new Promise<boolean>((resolve) => { this.#startWaiter = resolve; });
    // connect() rejects on the first failed attempt, but ioredis keeps retrying: follow the events.
    this.#pub.connect().catch(noop);
    this.#sub.connect().catch(noop);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), this.#startTimeoutMs); });
    const outcome = await Promise.race([ready, timedOut]);
    clearTimeout(timer);
    this.#startWaiter = undefined;
    if (outcome === true) {
      this.#state = 'running';
      return;
    }
    const cause = this.#lastError;
    await this.stop();
    if (outcome === false) throw new ClusterError('RedisBus.start(): stopped before it was connected');
    throw new ClusterError(
      `could not connect to Redis at ${this.#target} within ${this.#startTimeoutMs} ms${cause !== undefined ? `: ${cause.message}` : ''}`,
      { cause },
    );
  }

  /**
   * Publish to every other node. Returns false (and counts `dropped`) when the message cannot be
   * handed to Redis now: not connected (see stats().connected / onStatus), maxQueue commands
   * unacknowledged, message not encodable.
   * A true return means "written to Redis"; a later failure is counted in `dropped` too.
   * Never throws.
   */
  publish(msg: BusMessageInput): boolean {
    if (this.#inflight >= this.#maxQueue || !this.#isConnected()) {
      this.#dropped++;
      return false;
    }
    let buf: Buffer;
    try {
      buf = encodeBusMessage({ ...msg, origin: this.nodeId } as BusMessage);
    } catch (err) {
      this.#dropped++;
      this.#report(err);
      return false;
    }
    this.#inflight++;
    this.#pub.publish(this.channel, buf).then(
      () => {
        this.#settled();
        this.#published++;
      },
      (err: unknown) => {
        this.#settled();
        this.#dropped++;
        this.#report(err);
        if (this.#state !== 'stopped') this.#onPublishFailed?.();
      },
    );
    return true;
  }

  stats(): RedisBusStats {
    return {
      nodeId: this.nodeId,
      connected: this.#isConnected(),
      published: this.#published,
      received: this.#received,
      dropped: this.#dropped,
      reconnects: this.#reconnects,
      malformed: this.#malformed,
      handlerErrors: this.#handlerErrors,
      inflight: this.#inflight,
    };
  }

  /** How long this node's liveness key lives without a refresh (ms; see RedisBusOptions.nodeTtlMs). */
  get nodeTtlMs(): number {
    return this.#nodeTtlMs;
  }

  /** Redis hash holding a room's presence. */
  presenceKey(room: string): string {
    return `${this.prefix}:presence:${room}`;
  }

  /**
   * Add (or replace) this node's member `memberKey` in `room`. Resolves false when Redis is away;
   * the entry is still remembered and written again after the next reconnect (see below).
   * `event`: a bus message published in the same Redis script as the write. When Redis is away it
   * is lost (counted in `dropped`); the re-sync after the reconnect then writes the entry and, as
   * Redis lacks it, publishes a presence 'join' (member: memberJson) in its place (see RESYNC_LUA).
   */
  async presenceAdd(room: string, memberKey: string, memberJson: string, event?: BusMessageInput): Promise<boolean> {
    checkArg(room, 'room');
    checkArg(memberKey, 'memberKey');
    if (typeof memberJson !== 'string') throw new TypeError('memberJson must be a string');
    let entries = this.#presence.get(room);
    if (entries === undefined) this.#presence.set(room, (entries = new Map()));
    // Unsent only while no write of this member ever went out (an earlier one may be in Redis).
    const unsent = this.#unsent.get(room);
    if (this.#inflight < this.#maxQueue && this.#isConnected()) {
      if (unsent?.delete(memberKey) === true && unsent.size === 0) this.#unsent.delete(room);
    } else if (!entries.has(memberKey) || unsent?.has(memberKey) === true) {
      if (unsent === undefined) this.#unsent.set(room, new Set([memberKey]));
      else unsent.add(memberKey);
    }
    entries.set(memberKey, memberJson);
    const r = await this.#presenceWrite(room, memberKey, memberJson, event);
    if (r === undefined) this.#dirty.add(room);
    return r !== undefined;
  }

  /**
   * HSET/HDEL of a presence field, with `event` published in the same script (see PRESENCE_WRITE_LUA).
   * `last`: an HDEL that leaves this node no other entry of the room (not even a removal Redis has
   * not acknowledged): the room leaves this node's room index too. Without that, the index grew by
   * every room the node was ever in (rooms per conversation or match: without bound, for as long as
   * the node runs), and a node that found it dead swept every one of them. A write of the room issued
   * after this one (commands run in order) indexes it again.
   */
  #presenceWrite(room: string, memberKey: string, memberJson: string | null, event: BusMessageInput | undefined, last = false): Promise<OpResult<unknown>> {
    let buf: Buffer | string = '';
    if (event !== undefined) {
      try {
        buf = encodeBusMessage({ ...event, origin: this.nodeId } as BusMessage);
      } catch (err) {
        this.#dropped++;
        this.#report(err);
        return Promise.resolve(undefined);
      }
    }
    if (memberJson !== null) this.#indexed = true;
    return this.#op(() => this.#pub.eval(PRESENCE_WRITE_LUA, 4, this.presenceKey(room), this.channel, this.#roomsKey, this.#nodesKey,
      this.#field(memberKey), memberJson ?? '', buf, memberJson === null ? (last ? '2' : '0') : '1', room, this.#token)).then((r) => {
      if (r !== undefined && event !== undefined) this.#published++;
      return r;
    });
  }

  /**
   * Remove this node's member `memberKey` from `room`. Resolves true when Redis applied it
   * (present or not), false when Redis is away; the removal is then retried after the next reconnect
   * and, if Redis still had the entry, announced as a presence 'leave' (member: the JSON Redis had).
   * `event`: as for presenceAdd.
   */
  async presenceRemove(room: string, memberKey: string, event?: BusMessageInput): Promise<boolean> {
    checkArg(room, 'room');
    checkArg(memberKey, 'memberKey');
    const entries = this.#presence.get(room);
    if (this.#unsent.get(room)?.has(memberKey) === true) {
      // Never written to Redis: nothing is owed there (the write below still goes out if it can).
      this.#drop(room, memberKey);
    } else {
      entries?.set(memberKey, null); // owed to Redis until the HDEL is acknowledged
    }
    const rest = this.#presence.get(room);
    const last = rest === undefined || rest.size === 0 || (rest.size === 1 && rest.has(memberKey));
    const r = await this.#presenceWrite(room, memberKey, null, event, last);
    if (r === undefined) {
      this.#dirty.add(room);
      return false;
    }
    this.#forget(room, memberKey, null);
    // Members leaving in one turn (a match ends, every player leaves): each HDEL went out while the
    // others were still owed, so none was `last`. Whichever is acknowledged when this node has no
    // entry of the room left takes the room out of the index; a later write of the room goes out
    // after this SREM (commands run in order) and indexes it again.
    if (!last && !this.#presence.has(room)) void this.#op(() => this.#pub.srem(this.#roomsKey, room));
    return true;
  }

  /**
   * Every live node's members of `room`; null when Redis is away. Order unspecified. Entries of dead
   * nodes (liveness key expired) are removed on the way and reported through onPresenceExpired.
   */
  async presenceList(room: string): Promise<PresenceEntry[] | null> {
    checkArg(room, 'room');
    return this.#sweep(room, true);
  }

  /**
   * The ids of the nodes that are up and have written presence (their liveness key exists), or null
   * when Redis is away. After Redis restarted empty, a node is absent until it is back and its
   * re-sync has written all its members again (not just its first rooms); a node none of whose
   * members is in any room is absent too.
   */
  async liveNodes(): Promise<Set<string> | null> {
    const r = await this.#op(() => this.#pub.eval(LIVE_NODES_LUA, 1, this.#nodesKey, `${this.prefix}:node:`, `${this.prefix}:resync:`) as Promise<string[]>);
    return r === undefined ? null : new Set(r.value);
  }

  /** Run the sweep script on `room`: the live entries (when asked for), or null when Redis is away. */
  async #sweep(room: string, wantLive: boolean): Promise<PresenceEntry[] | null> {
    const r = await this.#op(() => this.#pub.eval(SWEEP_LUA, 1, this.presenceKey(room), `${this.prefix}:node:`,
      wantLive ? '1' : '0', this.channel, this.nodeId, room) as Promise<[string[], string[]]>);
    if (r === undefined) return null;
    const [live, dead] = r.value;
    if (dead.length > 0 && this.#onPresenceExpired !== undefined && this.#state !== 'stopped') {
      try {
        this.#onPresenceExpired(room, entriesOf(dead));
      } catch (err) {
        this.#report(err);
      }
    }
    return entriesOf(live);
  }

  /**
   * Refresh the liveness key, then look for dead nodes: one script over the node set claims the
   * rooms of each dead node (DEAD_NODES_LUA), and this node sweeps those. As a fallback (a claimer
   * that died before it swept, entries written before the index existed) it also sweeps the rooms
   * it has members in itself, every OWN_SWEEP_BEATS beats. When the key turns out to have expired
   * (Redis restarted empty, or this node was away or stalled longer than nodeTtlMs), write this
   * node's entries again: the re-sync announces as joins those another node swept meanwhile (the
   * others were told they left).
   */
  async #beat(): Promise<void> {
    const r = await this.#op(() => this.#pub.set(this.#aliveKey, '1', 'PX', this.#nodeTtlMs, 'GET'));
    if (r === undefined) return;
    // Absent: expired (or Redis restarted, or this is the first beat, when there is nothing to redo).
    if (r.value === null) this.#resyncPresence();
    else if (this.#dirty.size > 0) void this.#repair();
    const dead = await this.#op(() => this.#pub.eval(DEAD_NODES_LUA, 1, this.#nodesKey, `${this.prefix}:node:`, `${this.prefix}:rooms:`) as Promise<string[]>);
    const claimed = new Set(dead?.value ?? []);
    for (const room of claimed) void this.#sweep(room, false);
    if (++this.#beatsSinceOwnSweep < OWN_SWEEP_BEATS) return;
    this.#beatsSinceOwnSweep = 0;
    for (const [room, entries] of this.#presence) {
      if (claimed.has(room)) continue;
      for (const json of entries.values()) {
        if (json === null) continue;
        void this.#sweep(room, false);
        break;
      }
    }
  }

  /**
   * Remove every presence entry of this node from every room it wrote to (call it on a graceful
   * shutdown, before stop()). Resolves how many entries were removed, or null when some room
   * could not be cleaned (its entries stay remembered; call again later).
   */
  async presenceRemoveNode(): Promise<number | null> {
    const rooms = [...this.#presence.entries()].map(([room, entries]) => [room, [...entries]] as const);
    const results = await Promise.all(rooms.map(async ([room, sent]) => {
      const r = await this.#op(() => this.#pub.eval(REMOVE_PREFIX_LUA, 1, this.presenceKey(room), `${this.#token}|`));
      if (r === undefined) return null;
      // Forget only what the script covered: an add issued after it stays.
      for (const [key, json] of sent) this.#forget(room, key, json);
      return Number(r.value);
    }));
    let n = 0;
    for (const r of results) {
      if (r === null) return null;
      n += r;
    }
    // Out of the dead-node index too (nothing left to sweep); an add issued meanwhile re-indexes.
    if (this.#presence.size === 0 && this.#indexed) {
      const [a, b] = await Promise.all([this.#op(() => this.#pub.srem(this.#nodesKey, this.#token)), this.#op(() => this.#pub.del(this.#roomsKey))]);
      if (a !== undefined && b !== undefined && this.#presence.size === 0) this.#indexed = false;
    }
    return n;
  }

  /** Rooms in which this node has (or still owes Redis the removal of) presence entries. */
  presenceRooms(): string[] {
    return [...this.#presence.keys()];
  }

  /**
   * Close both connections (QUIT when connected, else drop), stop reconnecting. Idempotent.
   * Afterwards the bus holds no handles; the process can exit.
   */
  stop(): Promise<void> {
    if (this.#stopPromise !== undefined) return this.#stopPromise;
    this.#state = 'stopped';
    this.#connected = false;
    if (this.#beatTimer !== undefined) clearInterval(this.#beatTimer);
    this.#beatTimer = undefined;
    this.#startWaiter?.(false);
    this.#startWaiter = undefined;
    this.#stopPromise = Promise.all([closeConnection(this.#pub, true), closeConnection(this.#sub, false)]).then(noop);
    return this.#stopPromise;
  }

  // -------------------------------------------------------------------------------------------

  #field(memberKey: string): string {
    return `${this.#token}|${memberKey}`;
  }

  /** Drop memberKey from the local presence view if it still has the value Redis just acknowledged. */
  #forget(room: string, memberKey: string, acked: string | null): void {
    const entries = this.#presence.get(room);
    if (entries === undefined || !entries.has(memberKey) || entries.get(memberKey) !== acked) return;
    this.#drop(room, memberKey);
  }

  /** Take memberKey out of the local presence view (and out of #unsent). */
  #drop(room: string, memberKey: string): void {
    const entries = this.#presence.get(room);
    if (entries !== undefined && entries.delete(memberKey) && entries.size === 0) this.#presence.delete(room);
    const unsent = this.#unsent.get(room);
    if (unsent !== undefined && unsent.delete(memberKey) && unsent.size === 0) this.#unsent.delete(room);
  }

  /**
   * After a reconnect: write this node's presence again (HSET, idempotent) and send the removals
   * that failed while Redis was away, announcing to the other nodes what Redis lacked (see
   * RESYNC_LUA). Commands go out in order on the pub connection, so a presenceAdd/Remove issued
   * meanwhile still wins. See #resync.
   */
  #resyncPresence(): void {
    this.#dirty.clear(); // every room is written again
    void this.#resync(++this.#resyncEpoch);
  }

  /**
   * At a beat: write the rooms of #dirty again, RESYNC_WAVE at most (the rest at the next beats),
   * one RESYNC_LUA each, as a re-sync does: what Redis lacks of this node's entries of the room is
   * written and announced as a join, what it still has of the removals it missed is removed and
   * announced as a leave. A presence write refused while Redis stayed connected (a burst of
   * publishes filled maxQueue) was otherwise owed until a reconnect that need never come: a member
   * missing on the other nodes, or a ghost that had left. A write that did reach Redis after all (it
   * timed out, then ran) is found there: nothing is announced twice.
   */
  async #repair(): Promise<void> {
    if (this.#repairing) return;
    this.#repairing = true;
    try {
      const rooms: string[] = [];
      for (const room of this.#dirty) {
        if (rooms.length >= RESYNC_WAVE) break;
        rooms.push(room);
      }
      await Promise.all(rooms.map(async (room) => {
        this.#dirty.delete(room);
        const entries = this.#presence.get(room);
        if (entries === undefined) return; // nothing owed (acknowledged meanwhile, or never sent)
        const live: string[] = [];
        const removed: string[] = [];
        for (const [key, json] of entries) {
          if (json === null) removed.push(key);
          else live.push(this.#field(key), json);
        }
        this.#unsent.delete(room); // every live member of the room goes out now
        const r = await this.#op(() => this.#pub.eval(RESYNC_LUA, 5, this.presenceKey(room), this.#roomsKey, this.#nodesKey, this.channel,
          `${this.prefix}:resync:${this.#token}`, room, this.#token, live.length, this.nodeId, '0', ...live, ...removed.map((k) => this.#field(k))));
        if (r === undefined) {
          this.#dirty.add(room); // the next beat tries again
          return;
        }
        this.#published += Number(r.value);
        for (const k of removed) this.#forget(room, k, null);
      }));
    } finally {
      this.#repairing = false;
    }
  }

  /**
   * The re-sync itself: one RESYNC_LUA per room, in waves of at most RESYNC_WAVE commands (each
   * wave answered before the next goes out), and a command only issued while maxQueue has room.
   * So every room is written, however many this node has: issued all at once, the commands past
   * maxQueue were dropped (3 per room: past ~3,300 rooms with the default maxQueue) and those rooms
   * stayed missing from Redis until the next reconnect; and the waves leave room under maxQueue for
   * publishes. The first wave goes out at once (before onStatus(true)). Stops when the bus
   * disconnects (the next connect re-syncs) or a newer re-sync starts (it covers this one).
   * Until its last room is written, the re-sync marker (see RESYNC_LUA) keeps liveNodes() from
   * counting this node: with many rooms the waves take a while, and another node healing meanwhile
   * would take its members of the rooms not written yet for gone.
   */
  async #resync(epoch: number): Promise<void> {
    const wave = Math.max(1, Math.min(RESYNC_WAVE, Math.floor(this.#maxQueue / 2)));
    const marker = `${this.prefix}:resync:${this.#token}`;
    let issued = false;
    let pending: Promise<unknown>[] = [];
    for (const room of [...this.#presence.keys()]) {
      if (pending.length >= wave || this.#inflight >= this.#maxQueue) {
        if (pending.length >= wave) {
          await Promise.all(pending);
          pending = [];
        }
        while (this.#inflight >= this.#maxQueue && this.#isConnected()) {
          await new Promise<void>((resolve) => this.#roomWaiters.push(resolve));
        }
      }
      if (epoch !== this.#resyncEpoch || !this.#isConnected()) return;
      // Read now, not before the wait: a presenceAdd/Remove issued meanwhile went out first, and
      // this write must carry its outcome, not the state it replaced.
      const entries = this.#presence.get(room);
      if (entries === undefined) continue;
      const live: string[] = [];
      const removed: string[] = [];
      for (const [key, json] of entries) {
        if (json === null) removed.push(key);
        else live.push(this.#field(key), json);
      }
      if (live.length === 0 && removed.length === 0) continue;
      this.#unsent.delete(room); // every live member of the room goes out now
      issued = true;
      pending.push(this.#op(() => this.#pub.eval(RESYNC_LUA, 5, this.presenceKey(room), this.#roomsKey, this.#nodesKey, this.channel, marker,
        room, this.#token, live.length, this.nodeId, this.#nodeTtlMs, ...live, ...removed.map((k) => this.#field(k)))).then((r) => {
        if (r === undefined) return;
        this.#published += Number(r.value);
        for (const k of removed) this.#forget(room, k, null);
      }));
    }
    if (!issued) return;
    // Every room is written: this node is whole in Redis again, and liveNodes() counts it. (A
    // re-sync cut short leaves the marker to expire, or to the next re-sync.)
    await Promise.all(pending);
    while (this.#inflight >= this.#maxQueue && this.#isConnected()) {
      await new Promise<void>((resolve) => this.#roomWaiters.push(resolve));
    }
    if (epoch === this.#resyncEpoch) await this.#op(() => this.#pub.del(marker));
  }

  /** A command on the pub connection settled: it no longer counts against maxQueue. */
  #settled(): void {
    this.#inflight--;
    if (this.#roomWaiters.length === 0) return;
    const waiters = this.#roomWaiters;
    this.#roomWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * The one notion of "up": both connections ready and the channel subscribed. publish() and the
   * presence calls fail soft whenever it is false, even if the pub connection alone could still
   * write: while this node's subscription is down it misses other nodes' traffic anyway, and the
   * integration gets one clear signal (onStatus) for when cross-node operations work.
   */
  #isConnected(): boolean {
    return this.#state !== 'stopped' && this.#pub.status === 'ready' && this.#sub.status === 'ready' && this.#subActive;
  }

  #update(): void {
    const now = this.#isConnected();
    if (now === this.#connected) return;
    this.#connected = now;
    if (now && this.#startWaiter !== undefined) this.#startWaiter(true);
    if (now) {
      // Liveness first: commands on the pub connection run in order, so the key exists before
      // any presence field this node writes from here on.
      void this.#beat();
      if (this.#beatTimer === undefined) {
        this.#beatTimer = setInterval(() => { if (this.#isConnected()) void this.#beat(); }, Math.max(30, Math.floor(this.#nodeTtlMs / 3)));
        this.#beatTimer.unref();
      }
      // Back after an outage of either connection: Redis may have restarted empty or missed writes.
      if (this.#wasConnected) this.#resyncPresence();
      this.#wasConnected = true;
    }
    if (this.#onStatus !== undefined && this.#state !== 'stopped') {
      try {
        this.#onStatus(now);
      } catch (err) {
        this.#report(err);
      }
    }
  }

  #onSubReady(): void {
    const epoch = ++this.#subEpoch;
    void this.#subscribe(epoch);
  }

  async #subscribe(epoch: number): Promise<void> {
    try {
      if (!this.#subscribedOnce) {
        await this.#sub.subscribe(this.channel);
      } else {
        // ioredis re-subscribed (autoResubscribe) in its ready handler, before emitting 'ready':
        // a PING on the same connection is answered after that SUBSCRIBE, so once it resolves
        // the subscription is live again.
        await this.#sub.ping();
        if (epoch === this.#subEpoch && this.#sub.mode !== 'subscriber') {
          this.#report(new ClusterError('autoResubscribe did not restore the bus subscription; subscribing explicitly'));
          await this.#sub.subscribe(this.channel);
        }
      }
    } catch (err) {
      // The connection dropped meanwhile; the next 'ready' tries again.
      if (epoch === this.#subEpoch) this.#report(err);
      return;
    }
    if (epoch !== this.#subEpoch || this.#sub.status !== 'ready' || this.#state === 'stopped') return;
    if (this.#subscribedOnce) this.#reconnects++;
    this.#subscribedOnce = true;
    this.#subActive = true;
    this.#update();
  }

  #onMessage(channel: Buffer, message: Buffer): void {
    if (!channel.equals(this.#channelBuf)) return;
    let msg: BusMessage;
    try {
      msg = decodeBusMessage(message);
    } catch (err) {
      this.#malformed++;
      this.#report(err);
      return;
    }
    if (msg.origin === this.nodeId) return;
    this.#received++;
    try {
      this.#handler(msg);
    } catch (err) {
      this.#handlerErrors++;
      this.#report(err);
    }
  }

  /** A pub-connection command, fail-soft: undefined (and `dropped`) when Redis is away, errors or times out. */
  #op<T>(run: () => Promise<T>): Promise<OpResult<T>> {
    if (this.#inflight >= this.#maxQueue || !this.#isConnected()) {
      this.#dropped++;
      return Promise.resolve(undefined);
    }
    this.#inflight++;
    return new Promise((resolve) => {
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        this.#dropped++;
        this.#report(new ClusterError(`Redis did not answer within ${this.#opTimeoutMs} ms`));
        resolve(undefined);
      }, this.#opTimeoutMs);
      run().then(
        (value) => {
          this.#settled();
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve({ value });
        },
        (err: unknown) => {
          this.#settled();
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          this.#dropped++;
          this.#report(err);
          resolve(undefined);
        },
      );
    });
  }

  #report(err: unknown): void {
    if (this.#onError === undefined || this.#state === 'stopped') return;
    try {
      this.#onError(err instanceof Error ? err : new Error(String(err)));
    } catch {
      // an onError that throws must not break the connection's event loop
    }
  }
}

function checkArg(value: unknown, name: string): void {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string`);
  if (Buffer.byteLength(value) > MAX_KEY) throw new RangeError(`${name} must be at most ${MAX_KEY} UTF-8 bytes`);
}

/**
 * QUIT when ready (bounded wait), else drop; resolves once the connection holds no handles.
 * `drain`: first wait (bounded) until Redis answered a PING issued now, so that commands issued
 * before stop() and still sitting in an auto-pipeline are written before QUIT (which is never
 * auto-pipelined and would otherwise overtake them).
 */
async function closeConnection(conn: Redis, drain: boolean): Promise<void> {
  const status = conn.status;
  if (status === 'end') return;
  if (status === 'wait' || status === 'reconnecting' || status === 'close') {
    // No socket (or a dead one): disconnect() clears the reconnect timer; nothing else is held.
    conn.disconnect();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const ended = new Promise<void>((resolve) => {
    conn.once('end', resolve);
    timer = setTimeout(() => {
      conn.disconnect();
      resolve();
    }, 2_000);
  });
  if (status === 'ready') {
    if (drain) await bounded(conn.ping(), 1_000);
    conn.quit().catch(() => conn.disconnect());
  } else {
    conn.disconnect();
  }
  await ended;
  clearTimeout(timer);
}

/** Wait for p (outcome ignored) at most ms. */
async function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.then(noop, noop), new Promise<void>((resolve) => { timer = setTimeout(resolve, ms); })]);
  clearTimeout(timer);
}
