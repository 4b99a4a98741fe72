// The Redis cluster bus (src/core/cluster.ts) against a real redis-server on a free loopback port:
// two nodes exchanging publish/uid/presence messages, the presence store, Redis killed and
// restarted under running buses, and a child process that must exit after stop().
// Without a redis-server binary the Redis tests skip (see REDIS_SKIP); the codec and option tests
// always run.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import {
  BusMessageError,
  ClusterError,
  RedisBus,
  decodeBusMessage,
  encodeBusMessage,
  type BusMessage,
  type RedisBusOptions,
} from '../../src/core/cluster.js';
import { freePort, redisFor } from '../support/redis.js';

const WAIT_MS = 5_000;
const RECONNECT_WAIT_MS = 15_000;

// ----------------------------------------------------------------------------------------------
// helpers
// ----------------------------------------------------------------------------------------------

/** Messages a bus handed to its handler, awaitable. */
class Inbox {
  readonly msgs: BusMessage[] = [];
  /** The data views exactly as the bus handed them over, to check they stay intact later. */
  readonly views: Uint8Array[] = [];
  #waiters: { pred: (m: BusMessage) => boolean; resolve: (m: BusMessage) => void }[] = [];

  readonly handler = (m: BusMessage): void => {
    // Copy data: the test keeps messages after the handler returned (the bus hands out views).
    const copy: BusMessage = m.type === 'presence' ? { ...m } : { ...m, data: Uint8Array.from(m.data) };
    if (m.type !== 'presence') this.views.push(m.data);
    this.msgs.push(copy);
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.pred(copy)) return true;
      w.resolve(copy);
      return false;
    });
  };

  /** The first message (already received or still to come) matching pred; rejects after ms. */
  next(pred: (m: BusMessage) => boolean, what: string, ms = WAIT_MS): Promise<BusMessage> {
    const have = this.msgs.find(pred);
    if (have !== undefined) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve: (m: BusMessage) => { clearTimeout(timer); resolve(m); } };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((x) => x !== w);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; got ${JSON.stringify(this.msgs.map(summary))}`));
      }, ms);
      this.#waiters.push(w);
    });
  }
}

function summary(m: BusMessage): string {
  return m.type === 'presence' ? `presence:${m.room}:${m.event}` : `${m.type}:${m.type === 'publish' ? m.topic : m.uid}`;
}

/** onStatus calls, awaitable: wait(v, from) resolves at the first call with value v at index >= from. */
class StatusLog {
  readonly calls: boolean[] = [];
  #waiters: { value: boolean; from: number; resolve: () => void }[] = [];

  readonly onStatus = (connected: boolean): void => {
    this.calls.push(connected);
    const i = this.calls.length - 1;
    this.#waiters = this.#waiters.filter((w) => {
      if (w.value !== connected || i < w.from) return true;
      w.resolve();
      return false;
    });
  };

  mark(): number {
    return this.calls.length;
  }

  wait(value: boolean, from: number, what: string, ms = WAIT_MS): Promise<void> {
    if (this.calls.slice(from).includes(value)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = { value, from, resolve: () => { clearTimeout(timer); resolve(); } };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((x) => x !== w);
        reject(new Error(`timed out after ${ms} ms waiting for ${what} (onStatus calls: ${JSON.stringify(this.calls)})`));
      }, ms);
      this.#waiters.push(w);
    });
  }
}

interface Node { bus: RedisBus; inbox: Inbox; status: StatusLog; errors: Error[] }

/** Runs cleanups in reverse order (buses before the redis-server they use). */
function withCleanups(t: TestContext): (() => Promise<void>)[] {
  const cleanups: (() => Promise<void>)[] = [];
  t.after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });
  return cleanups;
}

async function node(cleanups: (() => Promise<void>)[], opts: RedisBusOptions): Promise<Node> {
  const inbox = new Inbox();
  const status = new StatusLog();
  const errors: Error[] = [];
  const bus = new RedisBus({ ...opts, onStatus: status.onStatus, onError: (e) => errors.push(e) }, inbox.handler);
  cleanups.push(() => bus.stop());
  await bus.start();
  return { bus, inbox, status, errors };
}

/** Poll a condition under a deadline (state that has no event to await, e.g. Redis-side counts). */
async function until(what: string, check: () => Promise<boolean> | boolean, ms = WAIT_MS): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i);
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

// ----------------------------------------------------------------------------------------------
// codec and options: no Redis needed
// ----------------------------------------------------------------------------------------------

test('envelope: every message type round-trips, binary payloads byte-exact', () => {
  const big = randomBytes(300_000);
  const cases: BusMessage[] = [
    { type: 'publish', topic: 'chat:lobby', binary: false, data: text('{"hi":1}'), origin: 'node-a' },
    { type: 'publish', topic: 'bin', binary: true, data: ALL_BYTES, origin: 'n' },
    { type: 'publish', topic: '', binary: true, data: new Uint8Array(0), origin: 'n' },
    { type: 'publish', topic: 'big', binary: true, data: big, origin: 'n' },
    { type: 'publish', topic: 'ünïcødé 🚀 tópic', binary: false, data: text('é'), origin: 'x'.repeat(255) },
    { type: 'uid', uid: 'user:42', binary: true, data: ALL_BYTES.slice().reverse(), origin: 'deadbeef' },
    { type: 'uid', uid: 'u'.repeat(0xffff), binary: false, data: text('x'), origin: 'deadbeef' },
    { type: 'presence', room: 'lobby', event: 'join', member: '{"uid":"alice","n":"Ä"}', origin: 'a' },
    { type: 'presence', room: 'lobby', event: 'leave', member: '{"uid":"alice"}', origin: 'a' },
    { type: 'presence', room: 'lobby', event: 'sync-request', member: '', origin: 'a' },
    { type: 'presence', room: 'lobby', event: 'sync', member: JSON.stringify([{ uid: 'a' }, { uid: 'b' }]), origin: 'a' },
  ];
  for (const m of cases) {
    const buf = encodeBusMessage(m);
    const back = decodeBusMessage(buf);
    if (m.type === 'presence') {
      assert.deepEqual(back, m);
    } else {
      assert.equal(back.type, m.type);
      assert.equal(back.origin, m.origin);
      assert.equal((back as { binary: boolean }).binary, m.binary);
      assert.equal(back.type === 'publish' ? back.topic : (back as { uid: string }).uid, m.type === 'publish' ? m.topic : m.uid);
      const data = (back as { data: Uint8Array }).data;
      assert.equal(Buffer.compare(Buffer.from(data.buffer, data.byteOffset, data.byteLength), Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength)), 0, `${summary(m)} data intact`);
    }
  }
  // Compact: a 10-byte publish on a 4-byte topic from an 8-hex node costs 18 bytes of envelope.
  assert.equal(encodeBusMessage({ type: 'publish', topic: 'room', binary: true, data: new Uint8Array(10), origin: 'deadbeef' }).length, 6 + 8 + 4 + 10);
});

test('envelope: malformed input throws BusMessageError (RW_ERR_CLUSTER), never anything else', () => {
  const good = encodeBusMessage({ type: 'presence', room: 'r', event: 'join', member: '{"a":1}', origin: 'node' });
  const pub = encodeBusMessage({ type: 'publish', topic: 't', binary: false, data: text('x'), origin: 'node' });
  const bad: [string, Uint8Array][] = [
    ['empty', new Uint8Array(0)],
    ['short', good.subarray(0, 5)],
    ['version', Buffer.concat([Buffer.from([9]), good.subarray(1)])],
    ['type', Buffer.concat([good.subarray(0, 1), Buffer.from([7]), good.subarray(2)])],
    ['flags', Buffer.concat([pub.subarray(0, 2), Buffer.from([0x82]), pub.subarray(3)])],
    ['event', Buffer.concat([good.subarray(0, 2), Buffer.from([4]), good.subarray(3)])],
    ['empty origin', Buffer.concat([good.subarray(0, 3), Buffer.from([0]), good.subarray(4)])],
    ['origin past end', Buffer.concat([good.subarray(0, 3), Buffer.from([200]), good.subarray(4)])],
    ['truncated member', good.subarray(0, good.length - 1)],
    ['trailing bytes', Buffer.concat([good, Buffer.from([0])])],
    ['bad utf-8 name', (() => { const b = Buffer.from(pub); b[4 + 4 + 2] = 0xff; return b; })()],
    ['not bytes', 'hello' as unknown as Uint8Array],
  ];
  for (const [what, buf] of bad) {
    assert.throws(() => decodeBusMessage(buf), (err: unknown) => {
      assert.ok(err instanceof BusMessageError, `${what}: ${String(err)}`);
      assert.equal(err.code, 'RW_ERR_CLUSTER');
      return true;
    }, what);
  }
  // Every truncation of a valid message is rejected too (no out-of-bounds read, no partial result).
  for (let n = 0; n < good.length; n++) assert.throws(() => decodeBusMessage(good.subarray(0, n)), BusMessageError);
  // Encoding refuses what it cannot represent.
  assert.throws(() => encodeBusMessage({ type: 'publish', topic: 't', binary: false, data: text('x'), origin: '' }), RangeError);
  assert.throws(() => encodeBusMessage({ type: 'publish', topic: 't'.repeat(0x10000), binary: false, data: text('x'), origin: 'n' }), RangeError);
  assert.throws(() => encodeBusMessage({ type: 'publish', topic: 't', binary: false, data: 'x' as unknown as Uint8Array, origin: 'n' }), TypeError);
  assert.throws(() => encodeBusMessage({ type: 'presence', room: 'r', event: 'wave' as 'join', member: '', origin: 'n' }), TypeError);
});

test('options are validated with TypeError/RangeError naming the option', () => {
  const h = (): void => {};
  const cases: [RedisBusOptions, RegExp, ErrorConstructor][] = [
    [{ url: 'http://x' }, /options\.url/, TypeError],
    [{ url: 'not a url' }, /options\.url/, TypeError],
    [{ url: 'redis://127.0.0.1:6379', port: 1 }, /options\.url/, TypeError],
    [{ port: 0 }, /options\.port/, RangeError],
    [{ port: 1.5 }, /options\.port/, TypeError],
    [{ host: '' }, /options\.host/, TypeError],
    [{ nodeId: 'a|b' }, /options\.nodeId/, RangeError],
    [{ nodeId: 'x'.repeat(65) }, /options\.nodeId/, RangeError],
    [{ nodeId: 7 as unknown as string }, /options\.nodeId/, TypeError],
    [{ prefix: '' }, /options\.prefix/, RangeError],
    [{ maxQueue: 0 }, /options\.maxQueue/, RangeError],
    [{ startTimeoutMs: -1 }, /options\.startTimeoutMs/, RangeError],
    [{ onStatus: 1 as unknown as () => void }, /options\.onStatus/, TypeError],
    [{ autoPipelining: 'yes' as unknown as boolean }, /options\.autoPipelining/, TypeError],
  ];
  for (const [opts, re, ctor] of cases) {
    assert.throws(() => new RedisBus(opts, h), (err: unknown) => err instanceof ctor && re.test((err as Error).message), JSON.stringify(opts));
  }
  assert.throws(() => new RedisBus({}, undefined as unknown as () => void), TypeError);
  const bus = new RedisBus({}, h);
  assert.match(bus.nodeId, /^[0-9a-f]{8}$/);
  assert.notEqual(new RedisBus({}, h).nodeId, bus.nodeId);
  assert.equal(bus.channel, 'rw:bus');
  assert.equal(new RedisBus({ prefix: 'app1', nodeId: 'n-1' }, h).channel, 'app1:bus');
  // Never started: publishing is refused and counted, stats are sane, stop() is harmless.
  assert.equal(bus.publish({ type: 'publish', topic: 't', binary: false, data: text('x') }), false);
  assert.deepEqual(bus.stats(), {
    nodeId: bus.nodeId, connected: false, published: 0, received: 0, dropped: 1, reconnects: 0, malformed: 0, handlerErrors: 0, inflight: 0,
  });
  return bus.stop();
});

test('start() rejects with RW_ERR_CLUSTER when Redis cannot be reached within startTimeoutMs', async () => {
  const port = await freePort(); // nothing listens there
  const bus = new RedisBus({ port, startTimeoutMs: 400 }, () => {});
  // Refused at once, but ioredis retries: only the startTimeoutMs timer ends start(), and only
  // that path says "within 400 ms" (with the last connection error as the cause).
  await assert.rejects(bus.start(), (err: unknown) => {
    assert.ok(err instanceof ClusterError, String(err));
    assert.equal(err.code, 'RW_ERR_CLUSTER');
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port} within 400 ms`));
    assert.match(err.message, /ECONNREFUSED/);
    return true;
  });
  assert.equal(bus.stats().connected, false);
  assert.equal(bus.publish({ type: 'uid', uid: 'u', binary: false, data: text('x') }), false);
  await assert.rejects(bus.start(), ClusterError); // start once only

  // stop() while start() is still waiting: start() rejects because of the stop, not at its
  // 60 s timeout (that path would say "within 60000 ms").
  const early = new RedisBus({ port, startTimeoutMs: 60_000 }, () => {});
  const starting = early.start();
  await early.stop();
  await assert.rejects(starting, (err: unknown) =>
    err instanceof ClusterError && err.message === 'RedisBus.start(): stopped before it was connected');
});

// ----------------------------------------------------------------------------------------------
// against redis-server
// ----------------------------------------------------------------------------------------------

test('two nodes: publish, uid and presence messages reach the other node; own messages are ignored', async (t) => {
  const cleanups = withCleanups(t);
  const redis = await redisFor(t, (stop) => { cleanups.push(stop); });
  if (redis === null) return;
  const a = await node(cleanups, { url: redis.url, nodeId: 'node-a' });
  const b = await node(cleanups, { url: redis.url, nodeId: 'node-b' });
  assert.deepEqual(a.status.calls, [true]);
  assert.equal(a.bus.stats().connected, true);

  // publish: text and every byte value
  assert.equal(a.bus.publish({ type: 'publish', topic: 'chat:lobby', binary: false, data: text('{"say":"hi"}') }), true);
  assert.equal(a.bus.publish({ type: 'publish', topic: 'bytes', binary: true, data: ALL_BYTES }), true);
  const m1 = await b.inbox.next((m) => m.type === 'publish' && m.topic === 'chat:lobby', 'publish chat:lobby on B');
  assert.deepEqual(m1, { type: 'publish', topic: 'chat:lobby', binary: false, data: text('{"say":"hi"}'), origin: 'node-a' });
  const m2 = await b.inbox.next((m) => m.type === 'publish' && m.topic === 'bytes', 'publish bytes on B');
  assert.ok(m2.type === 'publish' && m2.binary === true);
  assert.deepEqual(m2.data, ALL_BYTES);

  // a large binary payload (spans many socket reads on the subscriber)
  const big = randomBytes(2 * 1024 * 1024);
  assert.equal(a.bus.publish({ type: 'uid', uid: 'user:big', binary: true, data: big }), true);
  const m3 = await b.inbox.next((m) => m.type === 'uid' && m.uid === 'user:big', 'uid big on B');
  assert.ok(m3.type === 'uid');
  assert.ok(Buffer.from(m3.data).equals(big), '2 MiB payload intact');

  // a burst of large ones: the views handed out earlier are not overwritten by later messages
  const bigs = [randomBytes(1 << 20), randomBytes(3 << 19), randomBytes(1 << 20)];
  for (const [i, d] of bigs.entries()) assert.equal(a.bus.publish({ type: 'uid', uid: `user:big${i}`, binary: true, data: d }), true);
  await b.inbox.next((m) => m.type === 'uid' && m.uid === 'user:big2', 'last big uid on B');
  assert.equal(b.inbox.views.length, b.inbox.msgs.length);
  b.inbox.msgs.forEach((m, i) => {
    const view = b.inbox.views[i];
    if (m.type !== 'presence') assert.ok(view !== undefined && Buffer.from(view).equals(m.data), `view ${i} still intact`);
  });

  // uid
  assert.equal(b.bus.publish({ type: 'uid', uid: 'alice', binary: true, data: ALL_BYTES.subarray(250) }), true);
  const m4 = await a.inbox.next((m) => m.type === 'uid', 'uid on A');
  assert.deepEqual(m4, { type: 'uid', uid: 'alice', binary: true, data: ALL_BYTES.slice(250), origin: 'node-b' });

  // presence
  for (const event of ['join', 'leave', 'sync-request', 'sync'] as const) {
    assert.equal(a.bus.publish({ type: 'presence', room: 'lobby', event, member: JSON.stringify({ uid: 'alice', event }) }), true);
  }
  for (const event of ['join', 'leave', 'sync-request', 'sync'] as const) {
    const p = await b.inbox.next((m) => m.type === 'presence' && m.event === event, `presence ${event} on B`);
    assert.deepEqual(p, { type: 'presence', room: 'lobby', event, member: JSON.stringify({ uid: 'alice', event }), origin: 'node-a' });
  }
  // Order is kept per publisher: B saw A's messages in publish order.
  assert.deepEqual(b.inbox.msgs.map(summary), [
    'publish:chat:lobby', 'publish:bytes', 'uid:user:big', 'uid:user:big0', 'uid:user:big1', 'uid:user:big2',
    'presence:lobby:join', 'presence:lobby:leave', 'presence:lobby:sync-request', 'presence:lobby:sync',
  ]);

  // Own messages are ignored. B publishes after it saw A's last message, so by the time A has
  // B's reply Redis has already pushed all of A's own messages to A's subscriber connection.
  assert.equal(b.bus.publish({ type: 'publish', topic: 'barrier', binary: false, data: text('.') }), true);
  await a.inbox.next((m) => m.type === 'publish' && m.topic === 'barrier', 'barrier on A');
  assert.deepEqual(a.inbox.msgs.map(summary), ['uid:alice', 'publish:barrier'], 'A got only B\'s messages');
  await until('publishes acknowledged', () => a.bus.stats().inflight === 0 && b.bus.stats().inflight === 0);
  assert.deepEqual({ ...a.bus.stats(), nodeId: undefined }, {
    nodeId: undefined, connected: true, published: 10, received: 2, dropped: 0, reconnects: 0, malformed: 0, handlerErrors: 0, inflight: 0,
  });
  assert.equal(b.bus.stats().received, 10);
  assert.equal(b.bus.stats().published, 2);
  assert.deepEqual([...a.errors, ...b.errors], []);

  // What was published before stop() still goes out (stop() drains the pipeline before QUIT).
  for (let i = 0; i < 50; i++) assert.equal(a.bus.publish({ type: 'publish', topic: `last-${i}`, binary: false, data: text('bye') }), true);
  await a.bus.stop();
  await b.inbox.next((m) => m.type === 'publish' && m.topic === 'last-49', 'the last message published before stop()');
  assert.equal(a.bus.stats().published, 60);
  assert.equal(a.bus.publish({ type: 'publish', topic: 'late', binary: false, data: text('x') }), false, 'refused after stop()');
});

test('foreign bytes on the bus channel are counted as malformed and skipped; a throwing handler is contained', async (t) => {
  const cleanups = withCleanups(t);
  const redis = await redisFor(t, (stop) => { cleanups.push(stop); });
  if (redis === null) return;
  const b = await node(cleanups, { url: redis.url, nodeId: 'node-b', prefix: 'app' });
  let throws = true;
  const c = new RedisBus({ url: redis.url, nodeId: 'node-c', prefix: 'app' }, () => { if (throws) throw new Error('handler bug'); });
  cleanups.push(() => c.stop());
  await c.start();
  const raw = new Redis(redis.url, { lazyConnect: true });
  cleanups.push(async () => { raw.disconnect(); });
  await raw.connect();
  await raw.publish('app:bus', Buffer.from([1, 2, 3]));
  await raw.publish('app:bus', 'not an envelope at all');
  await raw.publish('rw:bus', encodeBusMessage({ type: 'uid', uid: 'x', binary: false, data: text('other prefix'), origin: 'z' }));
  // a well-formed message from a node that is not running a bus (e.g. another process) is delivered
  await raw.publish('app:bus', encodeBusMessage({ type: 'uid', uid: 'u1', binary: false, data: text('from raw'), origin: 'node-z' }));
  const m = await b.inbox.next((x) => x.type === 'uid', 'raw uid message on B');
  assert.deepEqual(m, { type: 'uid', uid: 'u1', binary: false, data: text('from raw'), origin: 'node-z' });
  assert.equal(b.bus.stats().malformed, 2);
  assert.equal(b.bus.stats().received, 1);
  assert.ok(b.errors.length === 2 && b.errors.every((e) => e instanceof BusMessageError), String(b.errors));
  // C's handler threw on the same message: counted, and C still receives afterwards.
  await until('C handler error counted', () => c.stats().handlerErrors === 1);
  throws = false;
  assert.equal(b.bus.publish({ type: 'publish', topic: 'after', binary: false, data: text('ok') }), true);
  await until('C receives after a handler error', () => c.stats().received === 2);
});

test('presence store: entries span nodes; presenceRemove and presenceRemoveNode touch only their own node', async (t) => {
  const cleanups = withCleanups(t);
  const redis = await redisFor(t, (stop) => { cleanups.push(stop); });
  if (redis === null) return;
  const a = await node(cleanups, { url: redis.url, nodeId: 'node-a' });
  const b = await node(cleanups, { url: redis.url, nodeId: 'node-b' });
  const sorted = (l: { key: string; node: string; member: string }[] | null): unknown =>
    l === null ? null : [...l].sort((x, y) => `${x.node}|${x.key}`.localeCompare(`${y.node}|${y.key}`));

  assert.equal(await a.bus.presenceAdd('lobby', 'alice', '{"uid":"alice"}'), true);
  assert.equal(await a.bus.presenceAdd('lobby', 'bob|1', '{"uid":"bob"}'), true); // '|' in a member key is fine
  assert.equal(await a.bus.presenceAdd('room:2', 'alice', '{"uid":"alice","r":2}'), true);
  assert.equal(await b.bus.presenceAdd('lobby', 'carol', '{"uid":"carol"}'), true);
  assert.equal(await b.bus.presenceAdd('lobby', 'alice', '{"uid":"alice","on":"b"}'), true); // same key on another node

  const expectLobby = [
    { key: 'alice', node: 'node-a', member: '{"uid":"alice"}' },
    { key: 'bob|1', node: 'node-a', member: '{"uid":"bob"}' },
    { key: 'alice', node: 'node-b', member: '{"uid":"alice","on":"b"}' },
    { key: 'carol', node: 'node-b', member: '{"uid":"carol"}' },
  ];
  assert.deepEqual(sorted(await a.bus.presenceList('lobby')), expectLobby);
  assert.deepEqual(sorted(await b.bus.presenceList('lobby')), expectLobby);
  assert.deepEqual(await b.bus.presenceList('nobody-here'), []);

  // replace, then remove one member of A
  assert.equal(await a.bus.presenceAdd('lobby', 'alice', '{"uid":"alice","v":2}'), true);
  assert.equal(await a.bus.presenceRemove('lobby', 'bob|1'), true);
  assert.deepEqual(sorted(await b.bus.presenceList('lobby')), [
    { key: 'alice', node: 'node-a', member: '{"uid":"alice","v":2}' },
    expectLobby[2], expectLobby[3],
  ]);
  assert.deepEqual(a.bus.presenceRooms().sort(), ['lobby', 'room:2']);

  // A leaves the cluster: all of A's entries go, B's stay.
  assert.equal(await a.bus.presenceRemoveNode(), 2);
  assert.deepEqual(a.bus.presenceRooms(), []);
  assert.deepEqual(sorted(await b.bus.presenceList('lobby')), [expectLobby[2], expectLobby[3]]);
  assert.deepEqual(await b.bus.presenceList('room:2'), []);
  assert.equal(await a.bus.presenceRemoveNode(), 0);
  assert.equal(await b.bus.presenceRemoveNode(), 2);
  assert.deepEqual(await a.bus.presenceList('lobby'), []);
  assert.equal(a.bus.stats().dropped + b.bus.stats().dropped, 0);
  await assert.rejects(a.bus.presenceAdd('lobby', 'x', {} as unknown as string), TypeError);
});

test('node liveness: a dead node\'s entries are swept once (reported by one node), a restart is a new incarnation, a lapsed node re-announces', async (t) => {
  const cleanups = withCleanups(t);
  const redis = await redisFor(t, (stop) => { cleanups.push(stop); });
  if (redis === null) return;
  const prefix = `live${randomBytes(3).toString('hex')}`;
  const expired: { by: string; room: string; node: string; key: string }[] = [];
  const live = async (nodeId: string, nodeTtlMs = 300): Promise<Node> => node(cleanups, {
    url: redis.url, nodeId, prefix, nodeTtlMs,
    onPresenceExpired: (room, entries) => { for (const e of entries) expired.push({ by: nodeId, room, node: e.node, key: e.key }); },
  });
  const a = await live('node-a');
  const b = await live('node-b');
  const c = await live('node-c');
  assert.equal(await a.bus.presenceAdd('lobby', 'alice', '{"uid":"alice"}'), true);
  assert.equal(await a.bus.presenceAdd('attic', 'ann', '{"uid":"ann"}'), true);
  assert.equal(await b.bus.presenceAdd('lobby', 'bob', '{"uid":"bob"}'), true);
  assert.equal(await c.bus.presenceAdd('lobby', 'carol', '{"uid":"carol"}'), true);
  const keys = (l: { key: string }[] | null): string[] | null => l === null ? null : l.map((e) => e.key).sort();
  assert.deepEqual(keys(await b.bus.presenceList('lobby')), ['alice', 'bob', 'carol']);

  // A stops without presenceRemoveNode (as a crash would): its liveness key expires. B or C
  // claims the dead node (one script over the node set) and sweeps every room A wrote to, 'attic'
  // too although no live node has members there: each entry is removed and reported exactly once.
  await a.bus.stop();
  await until('alice and ann swept', () => expired.some((e) => e.key === 'alice') && expired.some((e) => e.key === 'ann'));
  assert.deepEqual(keys(await c.bus.presenceList('lobby')), ['bob', 'carol']);
  assert.deepEqual(await b.bus.presenceList('attic'), []);
  const alice = expired.find((e) => e.key === 'alice')!;
  assert.deepEqual(expired.map((e) => ({ ...e, by: '' })).sort((x, y) => x.key.localeCompare(y.key)), [
    { by: '', room: 'lobby', node: 'node-a', key: 'alice' },
    { by: '', room: 'attic', node: 'node-a', key: 'ann' },
  ]);
  assert.ok(expired.every((e) => ['node-b', 'node-c'].includes(e.by)));
  // The sweeper published the leave from its script; the other live node received it.
  const other = alice.by === 'node-b' ? c : b;
  const leave = await other.inbox.next((m) => m.type === 'presence' && m.event === 'leave' && m.room === 'lobby', 'alice\'s leave');
  assert.deepEqual(leave.type === 'presence' ? [leave.origin, leave.member] : [], [alice.by, '{"uid":"alice"}']);
  // The claimed node is out of the node set: no node sweeps its rooms again.
  const probe = new Redis(redis.url);
  cleanups.push(async () => { probe.disconnect(); });
  assert.deepEqual((await probe.smembers(`${prefix}:nodes`)).map((t) => t.split('~')[0]).sort(), ['node-b', 'node-c']);

  // The same nodeId again is a new incarnation: its entries are live, the old ones stay gone.
  const a2 = await live('node-a', 2_000);
  assert.equal(await a2.bus.presenceAdd('lobby', 'alice', '{"uid":"alice","v":2}'), true);
  assert.deepEqual((await b.bus.presenceList('lobby'))!.filter((e) => e.node === 'node-a').map((e) => e.member), ['{"uid":"alice","v":2}']);
  // It crashes too, and a third incarnation takes the same key before the second one's key expires:
  // the dead entry goes without a leave (that key is live again on the same node).
  await a2.bus.stop();
  const a3 = await live('node-a');
  assert.equal(await a3.bus.presenceAdd('lobby', 'alice', '{"uid":"alice","v":3}'), true);
  const raw = new Redis(redis.url);
  cleanups.push(async () => { raw.disconnect(); });
  const seen = expired.length;
  await until('the second incarnation swept', async () => (await raw.hkeys(`${prefix}:presence:lobby`)).filter((f) => f.startsWith('node-a~')).length === 1, 10_000);
  assert.deepEqual((await b.bus.presenceList('lobby'))!.filter((e) => e.node === 'node-a').map((e) => e.member), ['{"uid":"alice","v":3}']);
  assert.equal(expired.length, seen, 'no leave reported for a key that is live again');
  // A field of an older version (no incarnation) is never swept.
  await raw.hset(`${prefix}:presence:lobby`, 'old-node|zed', '{"uid":"zed"}');
  assert.ok((await b.bus.presenceList('lobby'))!.some((e) => e.node === 'old-node' && e.key === 'zed'));
  await raw.hdel(`${prefix}:presence:lobby`, 'old-node|zed');

  // C's liveness key vanishes (C looked dead, e.g. stalled past nodeTtlMs): B sweeps carol and
  // announces nothing itself here (that is the server's job); C's next refresh sees the lapse and
  // the sweep marker, writes carol again and announces her as a join.
  const cKeys = await raw.keys(`${prefix}:node:node-c~*`);
  assert.equal(cKeys.length, 1);
  const before = expired.length;
  // C refreshes every 100 ms: should its refresh land between the DEL and B's sweep, C is alive
  // again and nothing is swept; then try again (bounded).
  for (let i = 0; i < 20 && expired.length === before; i++) {
    await raw.del(cKeys[0]!);
    await b.bus.presenceList('lobby');
  }
  assert.deepEqual(expired.slice(before), [{ by: 'node-b', room: 'lobby', node: 'node-c', key: 'carol' }]);
  const rejoin = await b.inbox.next((m) => m.type === 'presence' && m.event === 'join' && m.room === 'lobby' && m.origin === 'node-c', 'carol re-announced');
  assert.equal(rejoin.type === 'presence' ? rejoin.member : '', '{"uid":"carol"}');
  await until('carol back in Redis', async () => (keys(await b.bus.presenceList('lobby')) ?? []).includes('carol'));
  assert.deepEqual(keys(await b.bus.presenceList('lobby')), ['alice', 'bob', 'carol']);
  // A third node sees the sweep's leave of carol (published inside the script) before her join.
  await a3.inbox.next((m) => m.type === 'presence' && m.event === 'join' && m.member === '{"uid":"carol"}', 'carol\'s join at A');
  const carolMsgs = a3.inbox.msgs.filter((m) => m.type === 'presence' && m.room === 'lobby' && m.member === '{"uid":"carol"}');
  assert.deepEqual(carolMsgs.map((m) => (m.type === 'presence' ? `${m.event}:${m.origin}` : '')), ['leave:node-b', 'join:node-c']);
  assert.equal(b.bus.stats().dropped + c.bus.stats().dropped, 0);
});

test('Redis killed: publish and presence fail fast and are counted; Redis back: both nodes reconnect and deliver again', async (t) => {
  const cleanups = withCleanups(t);
  const redis = await redisFor(t, (stop) => { cleanups.push(stop); });
  if (redis === null) return;
  const a = await node(cleanups, { url: redis.url, nodeId: 'node-a' });
  const b = await node(cleanups, { url: redis.url, nodeId: 'node-b' });
  assert.equal(await a.bus.presenceAdd('lobby', 'alice', '{"uid":"alice"}'), true);
  assert.equal(a.bus.publish({ type: 'publish', topic: 'before', binary: false, data: text('1') }), true);
  await b.inbox.next((m) => m.type === 'publish' && m.topic === 'before', 'message before the outage');

  const aMark = a.status.mark();
  const bMark = b.status.mark();
  await redis.kill();
  await Promise.all([
    a.status.wait(false, aMark, 'A onStatus(false)'),
    b.status.wait(false, bMark, 'B onStatus(false)'),
  ]);
  assert.equal(a.bus.stats().connected, false);
  assert.equal(b.bus.stats().connected, false);

  // Down: nothing throws, nothing queues, everything is counted.
  const dropped0 = a.bus.stats().dropped;
  for (let i = 0; i < 1_000; i++) {
    assert.equal(a.bus.publish({ type: 'publish', topic: 'during', binary: true, data: ALL_BYTES }), false);
  }
  assert.equal(a.bus.stats().dropped, dropped0 + 1_000);
  assert.equal(a.bus.stats().inflight, 0);
  assert.equal(await a.bus.presenceAdd('lobby', 'bob', '{"uid":"bob"}'), false);
  assert.equal(await a.bus.presenceList('lobby'), null);
  assert.equal(await a.bus.presenceRemoveNode(), null);
  assert.equal(a.bus.stats().dropped, dropped0 + 1_003);

  // Back (an empty server: nothing was persisted): both reconnect by themselves.
  const aUp = a.status.mark();
  const bUp = b.status.mark();
  await redis.restart();
  await Promise.all([
    a.status.wait(true, aUp, 'A onStatus(true) after the restart', RECONNECT_WAIT_MS),
    b.status.wait(true, bUp, 'B onStatus(true) after the restart', RECONNECT_WAIT_MS),
  ]);
  assert.equal(a.bus.stats().connected, true);
  assert.ok(a.bus.stats().reconnects >= 1, `A reconnects ${a.bus.stats().reconnects}`);
  assert.ok(b.bus.stats().reconnects >= 1, `B reconnects ${b.bus.stats().reconnects}`);

  // The subscription came back through ioredis' autoResubscribe (the bus only reports, and then
  // subscribes itself, when it did not) and Redis sees both subscribers.
  const resubscribeFallback = [...a.errors, ...b.errors].filter((e) => /autoResubscribe/.test(e.message));
  assert.deepEqual(resubscribeFallback, []);
  const raw = new Redis(redis.url, { lazyConnect: true });
  cleanups.push(async () => { raw.disconnect(); });
  await raw.connect();
  const numsub = (await raw.pubsub('NUMSUB', 'rw:bus')) as [string, number];
  assert.equal(Number(numsub[1]), 2);

  // Right after onStatus(true), without waiting for anything else, messages flow both ways.
  assert.equal(a.bus.publish({ type: 'publish', topic: 'after', binary: true, data: ALL_BYTES }), true);
  assert.equal(b.bus.publish({ type: 'uid', uid: 'alice', binary: false, data: text('back') }), true);
  const m = await b.inbox.next((x) => x.type === 'publish' && x.topic === 'after', 'message after the restart on B');
  assert.ok(m.type === 'publish');
  assert.deepEqual(m.data, ALL_BYTES);
  await a.inbox.next((x) => x.type === 'uid' && x.uid === 'alice', 'uid after the restart on A');
  assert.equal(b.inbox.msgs.filter((x) => x.type === 'publish' && x.topic === 'during').length, 0);

  // The restarted server came back empty: A wrote its presence again by itself, including the
  // member added while Redis was away (that call resolved false but was remembered).
  const lobby = await b.bus.presenceList('lobby');
  assert.deepEqual(lobby?.sort((x, y) => x.key.localeCompare(y.key)), [
    { key: 'alice', node: 'node-a', member: '{"uid":"alice"}' },
    { key: 'bob', node: 'node-a', member: '{"uid":"bob"}' },
  ]);
  assert.equal(await a.bus.presenceRemoveNode(), 2);
  assert.deepEqual(await b.bus.presenceList('lobby'), []);

});

test('pub connection lost alone: presence changes made meanwhile reach Redis after its reconnect', async (t) => {
  const cleanups = withCleanups(t);
  const redis = await redisFor(t, (stop) => { cleanups.push(stop); });
  if (redis === null) return;
  const a = await node(cleanups, { url: redis.url, nodeId: 'node-a' });
  const b = await node(cleanups, { url: redis.url, nodeId: 'node-b' });
  const raw = new Redis(redis.url, { lazyConnect: true });
  cleanups.push(async () => { raw.disconnect(); });
  await raw.connect();
  assert.equal(await a.bus.presenceAdd('lobby', 'alice', '{"uid":"alice"}'), true);
  assert.equal(await a.bus.presenceAdd('lobby', 'carol', '{"uid":"carol"}'), true);

  // Kill A's pub connection and keep it out: no new clients while maxclients is at the current count.
  const list = (await raw.client('LIST')) as string;
  const id = /id=(\d+) [^\n]*name=ringwire:node-a:pub/.exec(list)?.[1];
  assert.ok(id !== undefined, list);
  const clients = list.trim().split('\n').length;
  await raw.config('SET', 'maxclients', String(clients - 1));
  cleanups.push(async () => { if (redis.running) await raw.config('SET', 'maxclients', '10000').catch(() => {}); });
  const down = a.status.mark();
  await raw.client('KILL', 'ID', id);
  await a.status.wait(false, down, 'A onStatus(false) with only its pub connection gone');
  assert.equal(await a.bus.presenceRemove('lobby', 'carol'), false);
  assert.equal(await a.bus.presenceAdd('lobby', 'dave', '{"uid":"dave"}'), false);
  assert.equal(await a.bus.presenceAdd('lobby', 'alice', '{"uid":"alice","v":2}'), false);
  const names = async (): Promise<string[]> => ((await b.bus.presenceList('lobby')) ?? []).map((e) => `${e.key}=${e.member}`).sort();
  assert.deepEqual(await names(), ['alice={"uid":"alice"}', 'carol={"uid":"carol"}'], 'Redis still has the old view');

  const up = a.status.mark();
  await raw.config('SET', 'maxclients', '10000');
  await a.status.wait(true, up, 'A onStatus(true) after its pub connection is let back in', RECONNECT_WAIT_MS);
  // The re-sync went out before onStatus(true) was called, on the same connection as this read.
  const view = await a.bus.presenceList('lobby');
  assert.deepEqual(view?.map((e) => `${e.key}=${e.member}`).sort(), ['alice={"uid":"alice","v":2}', 'dave={"uid":"dave"}']);
  assert.equal(a.bus.stats().reconnects, 0, 'the sub connection never dropped');
  // B was told too, by the re-sync script: dave (whom Redis lacked) joined and carol (whom Redis
  // still had) left while A could not publish; alice was in Redis already: nothing to announce
  // (the script publishes her event first, so it would be in B's inbox by now).
  const fromA = (m: BusMessage): m is Extract<BusMessage, { type: 'presence' }> => m.type === 'presence' && m.room === 'lobby' && m.origin === 'node-a';
  await b.inbox.next((m) => fromA(m) && m.event === 'join' && m.member === '{"uid":"dave"}', 'dave\'s join at B');
  await b.inbox.next((m) => fromA(m) && m.event === 'leave' && m.member === '{"uid":"carol"}', 'carol\'s leave at B');
  assert.deepEqual(b.inbox.msgs.filter(fromA).map((m) => `${m.event}:${m.member}`), ['join:{"uid":"dave"}', 'leave:{"uid":"carol"}']);
  assert.deepEqual(a.bus.presenceRooms(), ['lobby']);
  assert.equal(await a.bus.presenceRemoveNode(), 2);
  assert.deepEqual(a.bus.presenceRooms(), []);
});

test('re-sync after a Redis restart writes every room again, however many, within maxQueue', async (t) => {
  const cleanups = withCleanups(t);
  const redis = await redisFor(t, (stop) => { cleanups.push(stop); });
  if (redis === null) return;
  // 3 commands per room used to go out at once: past maxQueue the rest were dropped and those
  // rooms stayed missing from Redis (the default 10,000 ran out at 3,334 rooms; 8 here at 3).
  const a = await node(cleanups, { url: redis.url, nodeId: 'node-a', maxQueue: 8 });
  const ROOMS = 60;
  for (let i = 0; i < ROOMS; i++) assert.equal(await a.bus.presenceAdd(`r${i}`, 'm', `{"i":${i}}`), true);
  assert.equal(await a.bus.presenceRemove('r0', 'm'), true);
  assert.equal(await a.bus.presenceAdd('r0', 'n', '{"i":0}'), true);

  const down = a.status.mark();
  await redis.kill();
  await a.status.wait(false, down, 'A onStatus(false)');
  assert.equal(await a.bus.presenceRemove('r1', 'm'), false, 'a removal owed to Redis');
  const up = a.status.mark();
  await redis.restart(); // empty: nothing was persisted
  await a.status.wait(true, up, 'A onStatus(true) after the restart', RECONNECT_WAIT_MS);

  const raw = new Redis(redis.url, { lazyConnect: true });
  cleanups.push(async () => { raw.disconnect(); });
  await raw.connect();
  await until('every room with a member written again', async () => (await raw.keys('rw:presence:*')).length === ROOMS - 1);
  for (let i = 0; i < ROOMS; i++) {
    const fields = await raw.hgetall(`rw:presence:r${i}`);
    assert.deepEqual(Object.values(fields), i === 1 ? [] : [`{"i":${i}}`], `room r${i}`);
  }
  // ... and indexed for the dead-node check (rooms set of A's token, token in the node set).
  const tokens = await raw.smembers('rw:nodes');
  assert.equal(tokens.length, 1);
  assert.equal((await raw.smembers(`rw:rooms:${tokens[0]!}`)).length, ROOMS - 1);
  await until('the owed removal acknowledged', () => !a.bus.presenceRooms().includes('r1'));
  assert.equal(a.bus.presenceRooms().length, ROOMS - 1);
});

test('liveNodes(): a node back from a Redis restart counts as live only once its re-sync has written every room, not after its first', async (t) => {
  const cleanups = withCleanups(t);
  const redis = await redisFor(t, (stop) => { cleanups.push(stop); });
  if (redis === null) return;
  // maxQueue 2: A's re-sync writes one room per round trip, so it can be cut off half-way.
  const a = await node(cleanups, { url: redis.url, nodeId: 'node-a', maxQueue: 2 });
  const b = await node(cleanups, { url: redis.url, nodeId: 'node-b' });
  const ROOMS = 2_000;
  for (let i = 0; i < ROOMS; i++) assert.equal(await a.bus.presenceAdd(`r${i}`, 'm', `{"i":${i}}`), true);
  assert.deepEqual([...(await b.bus.liveNodes()) ?? []], ['node-a']);
  const raw = new Redis(redis.url, { lazyConnect: true });
  cleanups.push(async () => { raw.disconnect(); });
  await raw.connect();
  cleanups.push(async () => { if (redis.running) await raw.config('SET', 'maxclients', '10000').catch(() => {}); });
  /** Kill A's two connections and let no new client in (B's stay). */
  const cutA = async (): Promise<void> => {
    await raw.config('SET', 'maxclients', '1');
    const list = (await raw.client('LIST')) as string;
    const ids = [...list.matchAll(/id=(\d+) [^\n]*name=ringwire:node-a:(?:pub|sub)/g)].map((m) => m[1]!);
    assert.equal(ids.length, 2, list);
    for (const id of ids) await raw.client('KILL', 'ID', id);
  };
  const down = a.status.mark();
  await cutA();
  await a.status.wait(false, down, 'A onStatus(false)');
  await raw.flushall(); // Redis as after a restart without persistence; B stays connected

  // A is back and re-syncs room after room: cut it off again once its first room is written.
  const up = a.status.mark();
  await raw.config('SET', 'maxclients', '10000');
  const deadline = Date.now() + RECONNECT_WAIT_MS;
  while ((await raw.hlen('rw:presence:r0')) === 0) {
    if (Date.now() > deadline) assert.fail('A never wrote its first room');
  }
  await cutA();
  await a.status.wait(true, up, 'A onStatus(true)');
  assert.equal(await raw.hlen(`rw:presence:r${ROOMS - 1}`), 0, 'A\'s re-sync was cut off before its last room');
  // Its liveness key and token are in Redis (its first room's script wrote the token) but most of
  // its members are not: a node healing now must not take them for gone.
  assert.equal(await raw.exists(`rw:node:${(await raw.smembers('rw:nodes'))[0]!}`), 1);
  assert.deepEqual([...(await b.bus.liveNodes()) ?? []], [], 'A is not live while its re-sync is unfinished');

  // Let A finish: live once every room is written.
  await raw.config('SET', 'maxclients', '10000');
  await until('A live again', async () => (await b.bus.liveNodes())?.has('node-a') === true, RECONNECT_WAIT_MS);
  assert.equal(await raw.hlen(`rw:presence:r${ROOMS - 1}`), 1);
  assert.equal((await raw.keys('rw:presence:*')).length, ROOMS);
});

test('churn while Redis is away leaves nothing behind: a member that never reached Redis is forgotten on its removal', async (t) => {
  const cleanups = withCleanups(t);
  const redis = await redisFor(t, (stop) => { cleanups.push(stop); });
  if (redis === null) return;
  const a = await node(cleanups, { url: redis.url, nodeId: 'node-a' });
  assert.equal(await a.bus.presenceAdd('hall', 'old', '{"v":1}'), true);
  assert.equal(await a.bus.presenceAdd('hall', 'stays', '{"v":1}'), true);
  // Cut A off (Redis keeps its data): kill both its connections, no new clients meanwhile.
  const raw = new Redis(redis.url, { lazyConnect: true });
  cleanups.push(async () => { raw.disconnect(); });
  await raw.connect();
  const list = (await raw.client('LIST')) as string;
  const ids = [...list.matchAll(/id=(\d+) [^\n]*name=ringwire:node-a:(?:pub|sub)/g)].map((m) => m[1]!);
  assert.equal(ids.length, 2, list);
  await raw.config('SET', 'maxclients', '1');
  cleanups.push(async () => { if (redis.running) await raw.config('SET', 'maxclients', '10000').catch(() => {}); });
  const down = a.status.mark();
  for (const id of ids) await raw.client('KILL', 'ID', id);
  await a.status.wait(false, down, 'A onStatus(false)');

  // Each connection joins its own room and leaves (handles never repeat): every one used to leave a
  // removal owed to Redis behind until the reconnect, so a long outage grew the bus's memory.
  for (let i = 0; i < 1_000; i++) {
    assert.equal(await a.bus.presenceAdd(`user:${i}`, String(i), '{}'), false);
    assert.equal(await a.bus.presenceAdd(`user:${i}`, String(i), '{"v":2}'), false);
    assert.equal(await a.bus.presenceRemove(`user:${i}`, String(i)), false);
  }
  // One Redis has (from before the outage), updated and removed while it is away: still owed.
  assert.equal(await a.bus.presenceAdd('hall', 'old', '{"v":2}'), false);
  assert.equal(await a.bus.presenceRemove('hall', 'old'), false);
  assert.equal(await a.bus.presenceAdd('hall', 'new', '{"v":1}'), false);
  assert.deepEqual(a.bus.presenceRooms(), ['hall']);

  const up = a.status.mark();
  await raw.config('SET', 'maxclients', '10000');
  await a.status.wait(true, up, 'A onStatus(true) after it is let back in', RECONNECT_WAIT_MS);
  // The re-sync went out before onStatus(true), on the connection of this read.
  assert.deepEqual((await a.bus.presenceList('hall'))?.map((e) => e.key).sort(), ['new', 'stays']);
  assert.deepEqual(await raw.keys('rw:presence:user:*'), []);
  assert.deepEqual(a.bus.presenceRooms(), ['hall']);
});

test('Redis hung (SIGSTOP): presence calls time out, unacknowledged publishes stay bounded by maxQueue; SIGCONT: the queued ones arrive', async (t) => {
  const cleanups = withCleanups(t);
  const redis = await redisFor(t, (stop) => { cleanups.push(stop); });
  if (redis === null) return;
  const a = await node(cleanups, { url: redis.url, nodeId: 'node-a', maxQueue: 20, opTimeoutMs: 300 });
  const b = await node(cleanups, { url: redis.url, nodeId: 'node-b' });
  // A's first liveness beat (SET, GETDEL, the dead-node check) runs right after connecting: let it
  // finish, so that only this test's commands are in flight below.
  await until('A\'s first beat done', () => a.bus.stats().inflight === 0);
  redis.pause();
  cleanups.push(async () => { if (redis.running) redis.resume(); });
  assert.equal(await a.bus.presenceList('lobby'), null, 'no answer: null after opTimeoutMs');
  // It gave up through the opTimeoutMs timer (the only path that reports this), with the command
  // sent and still unanswered (not refused up front).
  assert.ok(a.errors.some((e) => e instanceof ClusterError && e.message === 'Redis did not answer within 300 ms'), String(a.errors));
  assert.equal(a.bus.stats().inflight, 1, 'the unanswered HGETALL still counts against maxQueue');
  const sent: number[] = [];
  for (let i = 0; i < 100; i++) {
    if (a.bus.publish({ type: 'publish', topic: 'hung', binary: false, data: text(String(i)) })) sent.push(i);
  }
  assert.deepEqual(sent, Array.from({ length: 19 }, (_, i) => i), 'only maxQueue - 1 more fit');
  assert.equal(await a.bus.presenceAdd('lobby', 'x', '{}'), false, 'refused at once when maxQueue is reached');
  assert.deepEqual({ inflight: a.bus.stats().inflight, dropped: a.bus.stats().dropped }, { inflight: 20, dropped: 1 + 81 + 1 });

  redis.resume();
  // (Besides them, A's next beat writes the refused x and announces its join: see the test of that.)
  const published = (): BusMessage[] => b.inbox.msgs.filter((m) => m.type === 'publish');
  await until('B received the 19 queued messages', () => published().length === 19);
  assert.deepEqual(published().map((m) => (m.type === 'publish' ? Buffer.from(m.data).toString() : '?')), sent.map(String));
  await until('A has no unacknowledged commands', () => a.bus.stats().inflight === 0);
  const n = a.bus.stats().published;
  assert.ok(n === 19 || n === 20, `published ${n}: the 19 publishes, and the join of x if a beat wrote it meanwhile`);
  assert.equal(a.bus.publish({ type: 'publish', topic: 'after', binary: false, data: text('ok') }), true);
  await b.inbox.next((m) => m.type === 'publish' && m.topic === 'after', 'message after SIGCONT');
});

test('a second outage right after a reconnect is survived as well', async (t) => {
  const cleanups = withCleanups(t);
  const redis = await redisFor(t, (stop) => { cleanups.push(stop); });
  if (redis === null) return;
  const a = await node(cleanups, { url: redis.url, nodeId: 'node-a' });
  const b = await node(cleanups, { url: redis.url, nodeId: 'node-b' });
  for (let round = 1; round <= 3; round++) {
    const aDown = a.status.mark();
    await redis.kill();
    await a.status.wait(false, aDown, `A down, round ${round}`);
    const aUp = a.status.mark();
    const bUp = b.status.mark();
    await redis.restart();
    await Promise.all([
      a.status.wait(true, aUp, `A up, round ${round}`, RECONNECT_WAIT_MS),
      b.status.wait(true, bUp, `B up, round ${round}`, RECONNECT_WAIT_MS),
    ]);
    assert.equal(a.bus.publish({ type: 'publish', topic: `round-${round}`, binary: false, data: text('x') }), true);
    await b.inbox.next((m) => m.type === 'publish' && m.topic === `round-${round}`, `round ${round} message on B`);
  }
  assert.ok(a.bus.stats().reconnects >= 3);
  assert.ok(b.bus.stats().reconnects >= 3);
});

test('after stop() the process exits by itself (no leaked handles), also after a failed start', async (t) => {
  const cleanups = withCleanups(t);
  const redis = await redisFor(t, (stop) => { cleanups.push(stop); });
  if (redis === null) return;
  const deadPort = await freePort();
  const mod = new URL('../../src/core/cluster.js', import.meta.url).href;
  // The child records every setTimeout still pending (and holding the process) with its delay, so
  // what outlives the last stop() is checked by kind and configured delay, not by a stopwatch.
  const script = `
    const pending = new Map();
    const realSet = globalThis.setTimeout;
    const realClear = globalThis.clearTimeout;
    globalThis.setTimeout = function (fn, ms, ...args) {
      const t = realSet(function (...a) { pending.delete(t); return fn.apply(this, a); }, ms, ...args);
      pending.set(t, ms ?? 0);
      return t;
    };
    globalThis.clearTimeout = function (t) { pending.delete(t); return realClear(t); };
    const holding = () => ({
      timers: [...pending].filter(([t]) => t.hasRef()).map(([, ms]) => ms),
      // Less the child's own stdout/stderr pipes (console.log).
      resources: process.getActiveResourcesInfo().filter((r) => r !== 'PipeWrap' && r !== 'TTYWrap'),
    });
    const { RedisBus } = await import(${JSON.stringify(mod)});
    const got = new Promise((resolve) => {
      const b = new RedisBus({ url: ${JSON.stringify(redis.url)}, nodeId: 'b' }, (m) => resolve(m));
      globalThis.b = b;
    });
    const a = new RedisBus({ url: ${JSON.stringify(redis.url)}, nodeId: 'a' }, () => {});
    await Promise.all([a.start(), globalThis.b.start()]);
    await a.presenceAdd('r', 'k', '{}');
    a.publish({ type: 'publish', topic: 't', binary: false, data: new Uint8Array([1]) });
    await got;
    await a.presenceRemoveNode();
    await Promise.all([a.stop(), globalThis.b.stop()]);
    console.log('stopped: ' + JSON.stringify(holding()));
    const dead = new RedisBus({ port: ${deadPort}, startTimeoutMs: 300 }, () => {});
    await dead.start().catch((e) => console.log('dead start:', e.code));
    console.log('failed start: ' + JSON.stringify(holding()));
    console.log('done');
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'hung'>((resolve) => { timer = setTimeout(() => resolve('hung'), 15_000); });
  const r = await Promise.race([exit, timedOut]);
  clearTimeout(timer);
  if (r === 'hung') {
    child.kill('SIGKILL');
    await exit;
    assert.fail(`the process did not exit within 15 s after stop(): leaked handles\n${out}`);
  }
  assert.equal(r, 0, out);
  const m = /^stopped: (.*)\ndead start: RW_ERR_CLUSTER\nfailed start: (.*)\ndone\n$/.exec(out);
  assert.ok(m !== null, out);
  type Holding = { timers: number[]; resources: string[] };
  // After stop() of two started buses nothing at all is left: no socket, no timer, no interval.
  assert.deepEqual(JSON.parse(m[1]!) as Holding, { timers: [], resources: [] });
  // After a failed start, only ioredis' disconnect timers (disconnectTimeout: 200 ms) remain: no
  // socket, no interval (every remaining resource is one of the recorded timers), nothing longer.
  const failed = JSON.parse(m[2]!) as Holding;
  assert.deepEqual(failed.resources, failed.timers.map(() => 'Timeout'), m[2]);
  assert.ok(failed.timers.every((ms) => ms <= 200), `timers still pending: ${m[2]}`);
});

test('presence write with its event: one Redis script writes the entry and publishes the event; the other node lists the entry when the event arrives', async (t) => {
  const cleanups = withCleanups(t);
  const redis = await redisFor(t, (stop) => { cleanups.push(stop); });
  if (redis === null) return;
  const a = await node(cleanups, { url: redis.url, nodeId: 'node-a' });
  const b = await node(cleanups, { url: redis.url, nodeId: 'node-b' });
  const published = a.bus.stats().published;
  const join = { type: 'presence', room: 'lobby', event: 'join', member: '{"uid":"ann"}' } as const;
  assert.equal(await a.bus.presenceAdd('lobby', 'ann', '{"uid":"ann"}', join), true);
  const got = await b.inbox.next((m) => m.type === 'presence' && m.event === 'join', 'the join event');
  assert.deepEqual(got, { ...join, origin: 'node-a' });
  assert.deepEqual((await b.bus.presenceList('lobby'))?.map((e) => e.key), ['ann']);
  const leave = { ...join, event: 'leave' } as const;
  assert.equal(await a.bus.presenceRemove('lobby', 'ann', leave), true);
  await b.inbox.next((m) => m.type === 'presence' && m.event === 'leave', 'the leave event');
  assert.deepEqual(await b.bus.presenceList('lobby'), []);
  assert.equal(a.bus.stats().published, published + 2);
  assert.equal(a.bus.stats().dropped, 0);
});

test('the periodic dead-node check costs one script per beat, not one sweep per room', async (t) => {
  const cleanups = withCleanups(t);
  const redis = await redisFor(t, (stop) => { cleanups.push(stop); });
  if (redis === null) return;
  const raw = new Redis(redis.url);
  cleanups.push(async () => { raw.disconnect(); });
  const scripts = async (): Promise<number> => {
    const info = await raw.info('commandstats');
    let n = 0;
    for (const m of info.matchAll(/cmdstat_(?:eval|evalsha):calls=(\d+)/g)) n += Number(m[1]);
    return n;
  };
  // Beats every second; its own-rooms fallback sweep comes only every 30 beats.
  const a = await node(cleanups, { url: redis.url, nodeId: 'node-a', nodeTtlMs: 3_000 });
  for (let i = 0; i < 100; i++) assert.equal(await a.bus.presenceAdd(`room-${i}`, 'ann', '{"uid":"ann"}'), true);
  const base = await scripts();
  let delta = 0;
  await until('two beats', async () => (delta = (await scripts()) - base) >= 2, 10_000);
  assert.ok(delta < 10, `${delta} scripts over two beats with 100 rooms (a per-room sweep would run 100 per beat)`);
});

test('a room this node has left is taken out of its room index: joining and leaving ever new rooms leaves nothing behind in Redis', async (t) => {
  const cleanups = withCleanups(t);
  const redis = await redisFor(t, (stop) => { cleanups.push(stop); });
  if (redis === null) return;
  const raw = new Redis(redis.url);
  cleanups.push(async () => { raw.disconnect(); });
  const a = await node(cleanups, { url: redis.url, nodeId: 'node-a', prefix: 'ix' });
  assert.equal(await a.bus.presenceAdd('stay', 'ann', '{"uid":"ann"}'), true);
  // A long-lived node whose rooms come and go (one per conversation, per match): each is left.
  for (let i = 0; i < 500; i++) {
    assert.equal(await a.bus.presenceAdd(`chat-${i}`, 'ann', '{"uid":"ann"}'), true);
    assert.equal(await a.bus.presenceAdd(`chat-${i}`, 'bob', '{"uid":"bob"}'), true);
    assert.equal(await a.bus.presenceRemove(`chat-${i}`, 'ann'), true);
    assert.equal(await a.bus.presenceRemove(`chat-${i}`, 'bob'), true);
  }
  // The index of A's rooms (what a node that finds A dead sweeps) holds the room A is still in, only.
  const index = await raw.keys('ix:rooms:*');
  assert.equal(index.length, 1, String(index));
  assert.deepEqual(await raw.smembers(index[0]!), ['stay']);
  assert.deepEqual((await raw.keys('ix:presence:*')).sort(), ['ix:presence:stay']);
  // A room left while another member stays is still indexed; its last leave takes it out.
  assert.equal(await a.bus.presenceAdd('duo', 'ann', '{"uid":"ann"}'), true);
  assert.equal(await a.bus.presenceAdd('duo', 'bob', '{"uid":"bob"}'), true);
  assert.equal(await a.bus.presenceRemove('duo', 'ann'), true);
  assert.deepEqual((await raw.smembers(index[0]!)).sort(), ['duo', 'stay']);
  assert.equal(await a.bus.presenceRemove('duo', 'bob'), true);
  assert.deepEqual(await raw.smembers(index[0]!), ['stay']);
});

test('presence writes refused while Redis stays connected (maxQueue reached) reach Redis and the other nodes at the next beat: no missing member, no ghost', async (t) => {
  const cleanups = withCleanups(t);
  const redis = await redisFor(t, (stop) => { cleanups.push(stop); });
  if (redis === null) return;
  const a = await node(cleanups, { url: redis.url, nodeId: 'node-a', maxQueue: 20, nodeTtlMs: 600 });
  const b = await node(cleanups, { url: redis.url, nodeId: 'node-b' });
  assert.equal(await a.bus.presenceAdd('lobby', 'gone', '{"uid":"gone"}'), true);
  const ev = (event: 'join' | 'leave', uid: string) => ({ type: 'presence', room: 'lobby', event, member: `{"uid":"${uid}"}` } as const);
  // A burst of publishes fills maxQueue: the join and the leave issued in the same turn are refused.
  await until('A has no unacknowledged commands', () => a.bus.stats().inflight === 0);
  for (let i = 0; i < 20; i++) assert.equal(a.bus.publish({ type: 'publish', topic: 'burst', binary: false, data: text(String(i)) }), true);
  const added = a.bus.presenceAdd('lobby', 'new', '{"uid":"new"}', ev('join', 'new'));
  const removed = a.bus.presenceRemove('lobby', 'gone', ev('leave', 'gone'));
  assert.deepEqual([await added, await removed], [false, false]);
  assert.equal(a.bus.stats().connected, true);

  // Redis never went away, so no reconnect re-syncs A: the next beat writes what was refused.
  await b.inbox.next((m) => m.type === 'presence' && m.event === 'join' && m.member === '{"uid":"new"}', 'the join of new');
  await b.inbox.next((m) => m.type === 'presence' && m.event === 'leave' && m.member === '{"uid":"gone"}', 'the leave of gone');
  assert.deepEqual((await b.bus.presenceList('lobby'))?.map((e) => e.key), ['new']);
  assert.deepEqual(a.bus.presenceRooms(), ['lobby']);
  assert.equal(a.bus.stats().reconnects, 0);
});

test('a room whose members on this node all leave at once (a match ends) is taken out of the room index too', async (t) => {
  const cleanups = withCleanups(t);
  const redis = await redisFor(t, (stop) => { cleanups.push(stop); });
  if (redis === null) return;
  const raw = new Redis(redis.url);
  cleanups.push(async () => { raw.disconnect(); });
  const a = await node(cleanups, { url: redis.url, nodeId: 'node-a', prefix: 'ix2' });
  assert.equal(await a.bus.presenceAdd('stay', 'ann', '{"uid":"ann"}'), true);
  for (let i = 0; i < 20; i++) {
    const room = `match-${i}`;
    for (const p of ['ann', 'bob', 'cid']) assert.equal(await a.bus.presenceAdd(room, p, `{"uid":"${p}"}`), true);
    // The leaves go out in one turn, as sessions.ts sends them (none awaited): each HDEL is issued
    // while the others are still owed, so none of them is "the last entry" when it is issued.
    assert.deepEqual(await Promise.all(['ann', 'bob', 'cid'].map((p) => a.bus.presenceRemove(room, p))), [true, true, true]);
  }
  assert.deepEqual((await raw.keys('ix2:presence:*')).sort(), ['ix2:presence:stay']);
  const index = await raw.keys('ix2:rooms:*');
  assert.equal(index.length, 1, String(index));
  assert.deepEqual(await raw.smembers(index[0]!), ['stay']);
});
