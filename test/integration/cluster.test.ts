/**
 * Cluster through Redis (issue #8): a real redis-server on a free loopback port, two ringwire
 * servers in separate processes, clients on both. Publish, presence and sendToUid cross nodes;
 * with Redis killed, local delivery goes on and cross-node drops are counted; after Redis
 * restarts, delivery across nodes recovers by itself. Skipped (with a message) without redis-server.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { Client, JsonClient, fixture, until as untilLocal, within } from '../helpers.js';
import { createServer } from '../../src/index.js';
import { redisFor } from '../support/redis.js';
import type { ServerStats } from '../../src/index.js';

interface Node { proc: ChildProcess; port: number; nodeId: string; url: string }

const NODE = fileURLToPath(new URL('../fixtures/cluster-node.js', import.meta.url));


function startNode(redisUrl: string, nodeId: string, nodeTtlMs?: number): Promise<Node> {
  return new Promise((resolve, reject) => {
    const proc = fork(NODE, [redisUrl, nodeId, ...(nodeTtlMs !== undefined ? [String(nodeTtlMs)] : [])], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    proc.once('error', reject);
    proc.once('exit', (code) => reject(new Error(`node ${nodeId} exited early (${code})`)));
    proc.once('message', (m: { type: string; port: number; nodeId: string }) => {
      resolve({ proc, port: m.port, nodeId: m.nodeId, url: `ws://127.0.0.1:${m.port}/rooms` });
    });
  });
}

let seq = 0;
function stats(n: Node): Promise<ServerStats> {
  const id = ++seq;
  return new Promise((resolve) => {
    const on = (m: { type: string; id: number; stats: ServerStats }): void => {
      if (m.type === 'stats' && m.id === id) {
        n.proc.off('message', on);
        resolve(m.stats);
      }
    };
    n.proc.on('message', on);
    n.proc.send({ type: 'stats', id });
  });
}

/** Poll a node's stats until `pred` holds (readiness polling with a deadline, not a sleep). */
async function until(n: Node, pred: (s: ServerStats) => boolean, what: string, ms = 15_000): Promise<ServerStats> {
  const end = Date.now() + ms;
  for (;;) {
    const s = await stats(n);
    if (pred(s)) return s;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} on ${n.nodeId}: ${JSON.stringify(s.cluster)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function stop(n: Node): Promise<void> {
  return new Promise((resolve) => {
    if (n.proc.exitCode !== null || n.proc.signalCode !== null) return resolve(); // exited, or killed
    n.proc.removeAllListeners('exit');
    n.proc.once('exit', () => resolve());
    n.proc.send({ type: 'close' });
  });
}

/**
 * A redis-server of the test's own and two nodes on it (`<name>-a`, `<name>-b`), stopped after the
 * test; null when redis-server is missing (the test then skips, see redisFor).
 */
async function twoNodes(t: TestContext, name: string, nodeTtlMs?: number): Promise<{ redis: NonNullable<Awaited<ReturnType<typeof redisFor>>>; A: Node; B: Node } | null> {
  const redis = await redisFor(t);
  if (redis === null) return null;
  const A = await startNode(redis.url, `${name}-a`, nodeTtlMs);
  const B = await startNode(redis.url, `${name}-b`, nodeTtlMs);
  t.after(async () => {
    // A test may leave a node stopped (SIGSTOP, a stalled node): it must run again to exit.
    for (const n of [A, B]) if (n.proc.exitCode === null && n.proc.signalCode === null) n.proc.kill('SIGCONT');
    await stop(A);
    await stop(B);
  });
  return { redis, A, B };
}

const uids = (m: { data: Record<string, unknown> }, key = 'members'): string[] =>
  (m.data[key] as { uid: string }[]).map((x) => x.uid).sort();

test('cluster: publish, presence and sendToUid cross nodes; Redis down → local delivery goes on, drops counted; recovery after restart', async (t) => {
  const nodes = await twoNodes(t, 'node');
  if (nodes === null) return;
  const { redis, A, B } = nodes;
  assert.equal(A.nodeId, 'node-a');

  const alice = await JsonClient.open(A.url);
  const ann = await JsonClient.open(A.url);
  const bob = await JsonClient.open(B.url);
  await alice.call('BIND', { uid: 'alice' });
  await ann.call('BIND', { uid: 'ann' });
  await bob.call('BIND', { uid: 'bob' });

  // Presence spans nodes: bob (node B) joins after alice (node A) and sees her in his snapshot.
  assert.deepEqual((await alice.call('JOIN', { room: 'lobby' })).data['members'], ['alice']);
  const bj = await bob.call('JOIN', { room: 'lobby' });
  assert.deepEqual((bj.data['members'] as string[]).sort(), ['alice', 'bob']);
  const bs = await bob.next('presence_state');
  assert.deepEqual(uids(bs), ['alice', 'bob']);
  assert.deepEqual((bs.data['members'] as { node: string }[]).map((m) => m.node).sort(), ['node-a', 'node-b']);
  // ... and alice (node A) sees bob's join as a diff.
  const ad = await alice.next('presence_diff');
  assert.deepEqual(uids(ad, 'joins'), ['bob']);
  await ann.call('JOIN', { room: 'lobby' });
  const info = await bob.call('INFO', { room: 'lobby' });
  assert.deepEqual(uids(info), ['alice', 'ann', 'bob']);

  // A publish reaches every subscriber on both nodes.
  await bob.call('PUB', { room: 'lobby', n: 1, tag: 'from-b' });
  assert.equal((await alice.next('msg')).data['tag'], 'from-b');
  assert.equal((await ann.next('msg')).data['tag'], 'from-b');
  await alice.call('PUB', { room: 'lobby', n: 1, tag: 'from-a' });
  assert.equal((await bob.next('msg')).data['tag'], 'from-a');
  assert.equal((await ann.next('msg')).data['tag'], 'from-a');

  // sendToUid crosses nodes.
  await alice.call('TO_UID', { uid: 'bob', msg: 'hi bob' });
  assert.equal((await bob.next('direct')).data as unknown, 'hi bob');
  await bob.call('TO_UID', { uid: 'ann', msg: 'hi ann' });
  assert.equal((await ann.next('direct')).data as unknown, 'hi ann');

  // Redis dies: local delivery continues, cross-node messages are counted as dropped.
  await redis.kill();
  await until(A, (s) => s.cluster?.connected === false, 'disconnect');
  const droppedBefore = (await stats(A)).drops.cluster;
  await alice.call('PUB', { room: 'lobby', n: 1, tag: 'during' });
  assert.equal((await ann.next('msg')).data['tag'], 'during');
  const during = await stats(A);
  assert.ok(during.drops.cluster > droppedBefore, `drops.cluster ${droppedBefore} -> ${during.drops.cluster}`);

  // Redis comes back: both nodes reconnect by themselves and delivery across nodes resumes.
  await redis.restart();
  const ra = await until(A, (s) => s.cluster?.connected === true, 'reconnect');
  await until(B, (s) => s.cluster?.connected === true, 'reconnect');
  assert.ok(ra.cluster!.reconnects >= 1);
  await alice.call('PUB', { room: 'lobby', n: 1, tag: 'after' });
  // bob's next message is 'after': the one published during the outage never reached node B.
  assert.equal((await bob.next('msg')).data['tag'], 'after');
  assert.equal((await ann.next('msg')).data['tag'], 'after');
  await alice.call('TO_UID', { uid: 'bob', msg: 'back' });
  assert.equal((await bob.next('direct')).data as unknown, 'back');
});

test('cluster: ctx.room(topic, { limit, after }) pages the members of every node, by node then handle; a cursor is `node:handle`, so equal handles on two nodes are both listed, once', async (t) => {
  const nodes = await twoNodes(t, 'page');
  if (nodes === null) return;
  const { A, B } = nodes;
  const clients: JsonClient[] = [];
  for (const n of [B, A, B, A, B, A]) {
    const c = await JsonClient.open(n.url);
    clients.push(c);
    await c.call('JOIN', { room: 'hall' });
  }
  const asker = clients[0]!;
  const members = async (): Promise<{ node: string; handle: number }[]> =>
    ((await asker.call('LIST', { room: 'hall' })).data['ok'] as { members: { node: string; handle: number }[] }).members;
  // The first joiner sees the five others join (a node writes the member to Redis before its diff goes out).
  for (let joins = 0; joins < 5;) joins += ((await asker.next('presence_diff')).data['joins'] as unknown[]).length;
  const expected = (await members()).slice().sort((x, y) => (x.node === y.node ? x.handle - y.handle : x.node < y.node ? -1 : 1));
  // Two fresh nodes hand out the same handles: only node and handle together name a member.
  assert.deepEqual(expected.filter((m) => m.node === 'page-a').map((m) => m.handle), expected.filter((m) => m.node === 'page-b').map((m) => m.handle));

  const walked: unknown[] = [];
  const cursors: (string | null)[] = [];
  let after: string | null = null;
  do {
    const r = await asker.call('LIST', { room: 'hall', page: after === null ? { limit: 2 } : { limit: 2, after } });
    const p = r.data['ok'] as { members: unknown[]; next: string | null; total: number; subscribers: number };
    assert.equal(p.total, 6);
    assert.equal(p.subscribers, 3, 'subscribers stay this node\'s');
    walked.push(...p.members);
    cursors.push(p.next);
    after = p.next;
  } while (after !== null && cursors.length < 10);
  assert.deepEqual(walked, expected);
  assert.deepEqual(cursors, [`page-a:${expected[1]!.handle}`, `page-b:${expected[3]!.handle}`, null]);
});

test('cluster: a node killed with SIGKILL leaves no ghost members: the others see its members leave within nodeTtlMs', async (t) => {
  const nodes = await twoNodes(t, 'ghost', 300);
  if (nodes === null) return;
  const { A, B } = nodes;

  const alice = await JsonClient.open(A.url);
  const bob = await JsonClient.open(B.url);
  await alice.call('BIND', { uid: 'alice' });
  await bob.call('BIND', { uid: 'bob' });
  await alice.call('JOIN', { room: 'hall' });
  await bob.call('JOIN', { room: 'hall' });
  assert.deepEqual(uids(await bob.next('presence_state')), ['alice', 'bob']);

  // Node A dies without any goodbye: no onDisconnect, no presence removal.
  A.proc.kill('SIGKILL');
  const diff = await bob.next('presence_diff');
  assert.deepEqual(uids(diff, 'leaves'), ['alice']);
  assert.deepEqual(uids(diff, 'joins'), []);
  // A newcomer's snapshot has no ghost either.
  const carol = await JsonClient.open(B.url);
  await carol.call('BIND', { uid: 'carol' });
  await carol.call('JOIN', { room: 'hall' });
  assert.deepEqual(uids(await carol.next('presence_state')), ['bob', 'carol']);
  assert.deepEqual(uids(await bob.next('presence_diff'), 'joins'), ['carol']);
});

test('cluster: a joiner\'s snapshot comes first and is exact: a member leaving while the other nodes are asked is folded in, not sent ahead', async (t) => {
  const redis = await redisFor(t);
  if (redis === null) return;
  const A = await startNode(redis.url, 'sync-a');
  t.after(() => stop(A));
  const lee = await JsonClient.open(A.url);
  const jay = await JsonClient.open(A.url);
  await lee.call('BIND', { uid: 'lee' });
  await jay.call('BIND', { uid: 'jay' });
  await lee.call('JOIN', { room: 'hall' });
  await lee.next('presence_state');

  redis.pause(); // jay's join now waits for the other nodes' members (the Redis round trip)
  try {
    jay.send('JOIN', { room: 'hall' });
    assert.deepEqual(uids(await lee.next('presence_diff'), 'joins'), ['jay']); // jay is in: its request is out
    assert.deepEqual((await lee.call('LEAVE', { room: 'hall' })).data, { left: true });
  } finally {
    redis.resume();
  }

  // jay's first frames, in arrival order: the snapshot (without lee), then the reply; no diff ahead of it.
  const first = await jay.c.nextJson() as { cmd: string; data: Record<string, unknown> };
  assert.equal(first.cmd, 'presence_state');
  assert.deepEqual(uids(first), ['jay']);
  const reply = await jay.c.nextJson() as { cmd: string; data: Record<string, unknown> };
  assert.equal(reply.cmd, 'JOIN');
  assert.deepEqual((reply.data['members'] as string[]).sort(), ['jay']);
});

test('cluster: a presence entry that is not a member object (another version, a stray write) is skipped; the node keeps serving', async (t) => {
  const redis = await redisFor(t);
  if (redis === null) return;
  const A = await startNode(redis.url, 'odd-a');
  t.after(() => stop(A));
  let exited: number | string | null = null;
  const died = new Promise<never>((_, reject) => {
    A.proc.on('exit', (code, signal) => {
      exited = code ?? signal;
      reject(new Error(`node odd-a exited (${String(exited)})`));
    });
  });
  died.catch(() => undefined);
  const probe = new Redis(redis.url);
  // A field without '~' (an older version's, never swept) whose value is JSON but no member: a
  // snapshot that read it as one (null.node) threw inside the join's promise chain.
  await probe.hset('rwtest:presence:hall', 'old|7', 'null', 'old|8', '[1]', 'old|9', 'not json');
  await probe.quit();
  const joe = await JsonClient.open(A.url);
  await joe.call('BIND', { uid: 'joe' });
  const reply = await within('the JOIN reply', Promise.race([joe.call('JOIN', { room: 'hall' }), died]));
  assert.deepEqual(reply.data['members'], ['joe']);
  assert.deepEqual(uids(await joe.next('presence_state')), ['joe']);
  const info = await within('the INFO reply', Promise.race([joe.call('INFO', { room: 'hall' }), died]));
  assert.deepEqual(uids(info), ['joe']);
  assert.equal(exited, null);
});

/**
 * A client's member list of a room (uids), as its presence frames build it: start from `have`, apply
 * each presence_diff until the list is `want` (fails when the frames stop coming before that).
 */
async function converge(c: JsonClient, have: string[], want: string[], what: string): Promise<void> {
  const set = new Set(have);
  const key = (s: Iterable<string>): string => [...s].sort().join(',');
  const seen: string[] = [];
  await within(what, (async () => {
    while (key(set) !== key(want)) {
      const d = await c.next('presence_diff');
      for (const m of d.data['leaves'] as { uid: string }[]) set.delete(m.uid);
      for (const m of d.data['joins'] as { uid: string }[]) set.add(m.uid);
      seen.push(`-${uids(d, 'leaves').join('-')}+${uids(d, 'joins').join('+')}`);
    }
  })()).catch((err: Error) => { throw new Error(`${err.message}; have ${key(set)}, want ${key(want)}; diffs ${seen.join(' ')}`); });
}

/**
 * Cut node `nodeId` off from Redis, which keeps running with its data while the other nodes stay
 * connected: kill the node's two connections and let no new client in until the returned function
 * is called.
 */
async function cutOff(t: TestContext, redisUrl: string, nodeId: string): Promise<() => Promise<void>> {
  const raw = new Redis(redisUrl);
  raw.on('error', () => {}); // the test's redis-server may stop before this client is closed
  t.after(() => raw.disconnect());
  const list = (await raw.client('LIST')) as string;
  const ids = [...list.matchAll(new RegExp(`id=(\\d+) [^\\n]*name=ringwire:${nodeId}:(?:pub|sub)`, 'g'))].map((m) => m[1]!);
  assert.equal(ids.length, 2, list);
  await raw.config('SET', 'maxclients', '1');
  for (const id of ids) await raw.client('KILL', 'ID', id);
  return async () => { await raw.config('SET', 'maxclients', '10000'); };
}

async function member(n: Node, uid: string, room?: string): Promise<JsonClient> {
  const c = await JsonClient.open(n.url);
  await c.call('BIND', { uid });
  if (room !== undefined) await c.call('JOIN', { room });
  return c;
}

test('cluster: members who joined or left on a node while it was cut off from Redis are announced to the other nodes once it is back', async (t) => {
  const nodes = await twoNodes(t, 'cut');
  if (nodes === null) return;
  const { redis, A, B } = nodes;
  const alice = await member(A, 'alice', 'hall');
  const carl = await member(A, 'carl', 'hall');
  const bob = await member(B, 'bob', 'hall');
  await converge(bob, uids(await bob.next('presence_state')), ['alice', 'carl', 'bob'], 'bob sees everyone');

  // A is cut off for far less than nodeTtlMs (15 s): nothing is swept. Its presence events fail.
  const letIn = await cutOff(t, redis.url, 'cut-a');
  await until(A, (s) => s.cluster?.connected === false, 'A cut off');
  assert.deepEqual((await carl.call('LEAVE', { room: 'hall' })).data, { left: true });
  await member(A, 'dave', 'hall');
  await converge(alice, uids(await alice.next('presence_state')), ['alice', 'bob', 'dave'], 'alice sees carl leave and dave join');
  const { drops } = await stats(A);
  assert.ok(drops.cluster >= 2, `drops.cluster ${drops.cluster}`);

  // Back: B's clients learn carl's leave (no ghost) and dave's join; a newcomer agrees.
  await letIn();
  await until(A, (s) => s.cluster?.connected === true, 'A back');
  await converge(bob, ['alice', 'carl', 'bob'], ['alice', 'dave', 'bob'], 'bob (node B) sees A\'s changes made during the outage');
  const bea = await member(B, 'bea', 'hall');
  assert.deepEqual(uids(await bea.next('presence_state')), ['alice', 'bea', 'bob', 'dave']);
});

test('cluster: a node cut off from Redis missed the other nodes\' joins and leaves; once back, its clients are shown them (also those who joined meanwhile)', async (t) => {
  const nodes = await twoNodes(t, 'miss');
  if (nodes === null) return;
  const { redis, A, B } = nodes;
  const alice = await member(A, 'alice', 'hall');
  const bob = await member(B, 'bob', 'hall');
  const bert = await member(B, 'bert', 'hall');
  await converge(alice, uids(await alice.next('presence_state')), ['alice', 'bob', 'bert'], 'alice sees everyone');

  // A is cut off (far less than nodeTtlMs): B's changes meanwhile go out on a bus A does not hear.
  const letIn = await cutOff(t, redis.url, 'miss-a');
  await until(A, (s) => s.cluster?.connected === false, 'A cut off');
  await bert.call('LEAVE', { room: 'hall' });
  await member(B, 'bea', 'hall');
  await converge(bob, uids(await bob.next('presence_state')), ['alice', 'bob', 'bea'], 'bob sees bert leave and bea join');
  // dave joins on A meanwhile: his snapshot has the other nodes' members as A's members were shown them.
  const dave = await member(A, 'dave', 'hall');
  const daveHas = uids(await dave.next('presence_state'));
  assert.deepEqual(daveHas, ['alice', 'bert', 'bob', 'dave']);

  // Back: A reads its rooms again and its clients get the difference: bert left, bea joined.
  await letIn();
  await until(A, (s) => s.cluster?.connected === true, 'A back');
  const now = ['alice', 'dave', 'bob', 'bea'];
  await converge(alice, ['alice', 'bob', 'bert', 'dave'], now, 'alice (node A) sees B\'s changes that A missed');
  await converge(dave, daveHas, now, 'dave (node A) sees B\'s changes that A missed');
  await converge(bob, ['alice', 'bob', 'bea'], now, 'bob (node B) sees dave, who joined on A meanwhile');
  const cole = await member(A, 'cole', 'hall');
  assert.deepEqual(uids(await cole.next('presence_state')), [...now, 'cole'].sort());
});

test('cluster: after Redis restarts empty, a node back before another does not show that node\'s members leaving (they are re-announced once it is back); a node that never comes back has its members leave after nodeTtlMs', async (t) => {
  const nodes = await twoNodes(t, 'rst', 1500);
  if (nodes === null) return;
  const { redis, A, B } = nodes;
  const alice = await member(A, 'alice', 'hall');
  const bob = await member(B, 'bob', 'hall');
  await member(B, 'bert', 'hall');
  await converge(alice, uids(await alice.next('presence_state')), ['alice', 'bob', 'bert'], 'alice sees everyone');
  await converge(bob, uids(await bob.next('presence_state')), ['alice', 'bob', 'bert'], 'bob sees everyone');

  // B stalls (far less than nodeTtlMs) while Redis restarts without its data: A is back first, and
  // Redis has none of B's members until B's re-sync writes them again.
  B.proc.kill('SIGSTOP');
  await redis.kill();
  await redis.restart();
  await until(A, (s) => s.cluster?.connected === true && s.cluster.reconnects >= 1, 'A back');
  B.proc.kill('SIGCONT');
  await until(B, (s) => s.cluster?.connected === true && s.cluster.reconnects >= 1, 'B back');
  // cole joins on B after B's re-sync went out: alice's diffs up to his join must not take bob or bert away.
  await member(B, 'cole', 'hall');
  const seen: string[] = [];
  await within('cole\'s join on alice', (async () => {
    for (;;) {
      const d = await alice.next('presence_diff');
      seen.push(`-${uids(d, 'leaves').join('-')}+${uids(d, 'joins').join('+')}`);
      if (uids(d, 'joins').includes('cole')) return;
    }
  })());
  assert.ok(!seen.some((s) => /-(bob|bert)\b/.test(s)), `alice was shown B's members leaving: ${seen.join(' ')}`);

  // B stalls again and Redis restarts empty again; this time B dies: its members leave after nodeTtlMs.
  B.proc.kill('SIGSTOP');
  await redis.kill();
  await redis.restart();
  await until(A, (s) => s.cluster?.connected === true && s.cluster.reconnects >= 2, 'A back again');
  B.proc.kill('SIGKILL');
  await converge(alice, ['alice', 'bob', 'bert', 'cole'], ['alice'], 'alice sees the members of B, which never came back, leave');
});

test('cluster: a node cut off from Redis, once back, shows at once the leave of another node\'s last member of a room (that node is live: nothing is held back)', async (t) => {
  const nodes = await twoNodes(t, 'last');
  if (nodes === null) return;
  const { redis, A, B } = nodes;
  const alice = await member(A, 'alice', 'den');
  const bert = await member(B, 'bert', 'den');
  await member(B, 'bob', 'hall'); // B stays live in Redis with a member elsewhere
  await converge(alice, uids(await alice.next('presence_state')), ['alice', 'bert'], 'alice sees bert');

  const letIn = await cutOff(t, redis.url, 'last-a');
  await until(A, (s) => s.cluster?.connected === false, 'A cut off');
  await bert.call('LEAVE', { room: 'den' });
  await letIn();
  await until(A, (s) => s.cluster?.connected === true, 'A back');
  // bea joins after A's heal read went out: bert's leave (held back nodeTtlMs, 15 s, if B were
  // taken for a node not back yet) comes first.
  await member(B, 'bea', 'den');
  const seen: string[] = [];
  await within('bea\'s join on alice', (async () => {
    for (;;) {
      const d = await alice.next('presence_diff');
      seen.push(`-${uids(d, 'leaves').join('-')}+${uids(d, 'joins').join('+')}`);
      if (uids(d, 'joins').includes('bea')) return;
    }
  })());
  assert.deepEqual(seen, ['-bert+', '-+bea']);
});

test('cluster: a join answered by Redis after its worker died is not delivered to the replacement worker (whose own request ids start again at 1)', async (t) => {
  const redis = await redisFor(t);
  if (redis === null) return;
  // One worker serves both modules: a CRASH on /t kills the worker of /rooms too.
  const server = createServer({
    modules: [fixture('rooms.module'), fixture('tools.module')], workers: 1,
    cluster: { url: redis.url, nodeId: 'solo', prefix: 'rwstale' },
  });
  const port = await server.listen(0, '127.0.0.1');
  t.after(() => server.close());
  const url = `ws://127.0.0.1:${port}/rooms`;
  const alice = await JsonClient.open(url);
  await alice.call('BIND', { uid: 'alice' }); // request id 1 in this worker
  // Redis stops answering: alice's join (request id 2) waits for the other nodes' members.
  redis.pause();
  alice.send('JOIN', { room: 'ra' });
  await untilLocal('alice\'s join on the I/O thread', () => server.roomMembers('ra') !== null);
  const killer = await Client.open(`ws://127.0.0.1:${port}/t`);
  killer.emit('CRASH');
  assert.equal((await within('alice closed by the worker death', alice.c.closed)).code, 1011);
  await untilLocal('the replacement worker', () => server.stats().workers[0]!.alive && server.stats().workerRestarts === 1);
  // The replacement worker: bob's bind is its request 1, his join its request 2, as alice's were.
  const bob = await JsonClient.open(url);
  await bob.call('BIND', { uid: 'bob' });
  const joined = await within('bob\'s join', bob.call('JOIN', { room: 'rb' }));
  // Alice's late answer (room ra) must not settle bob's request 2: he gets his own room.
  assert.deepEqual(joined.data['members'], ['bob']);
  await bob.c.close();
  await killer.close();
});

test('cluster: a room\'s first read of the other nodes\' members that fails while Redis stays connected is retried: its members are shown them without a reconnect', async (t) => {
  const redis = await redisFor(t);
  if (redis === null) return;
  const A = await startNode(redis.url, 'first-a');
  const B = await startNode(redis.url, 'first-b');
  t.after(async () => {
    if (redis.running) redis.resume();
    await stop(A);
    await stop(B);
  });
  const bob = await member(B, 'bob', 'hall');
  assert.deepEqual(uids(await bob.next('presence_state')), ['bob']);
  const alice = await member(A, 'alice');

  // Redis hangs (a stall, not a drop: both connections stay up) past the bus's 2 s opTimeoutMs:
  // alice's join, the first of room hall on A, gets no answer to its read of the other nodes' members.
  const before = (await stats(A)).drops.cluster;
  redis.pause();
  let joined: Awaited<ReturnType<JsonClient['call']>>;
  try {
    joined = await within('alice\'s join', alice.call('JOIN', { room: 'hall' }));
  } finally {
    redis.resume();
  }
  assert.deepEqual(joined.data['members'], ['alice']);
  assert.deepEqual(uids(await alice.next('presence_state')), ['alice']);
  const s = await stats(A);
  assert.ok(s.drops.cluster > before, `drops.cluster ${before} -> ${s.drops.cluster}`);

  // The read is retried: alice is shown bob, with no reconnect (none happened: nothing else would heal the room).
  assert.deepEqual(uids(await within('bob\'s join on alice', alice.next('presence_diff')), 'joins'), ['bob']);
  const after = (await stats(A)).cluster!;
  assert.equal(after.reconnects, 0);
  assert.ok(after.presenceRetries >= 1, `presenceRetries ${after.presenceRetries}`);
  assert.deepEqual(uids(await within('alice\'s join on bob', bob.next('presence_diff')), 'joins'), ['alice']);
});

/** The presence_diffs `c` gets up to and including the one that has `uid` join, as '-leaves+joins'. */
async function diffsUntilJoin(c: JsonClient, uid: string): Promise<string[]> {
  const seen: string[] = [];
  await within(`${uid}'s join`, (async () => {
    for (;;) {
      const d = await c.next('presence_diff');
      seen.push(`-${uids(d, 'leaves').join('-')}+${uids(d, 'joins').join('+')}`);
      if (uids(d, 'joins').includes(uid)) return;
    }
  })()).catch((err: Error) => { throw new Error(`${err.message}; diffs ${seen.join(' ')}`); });
  return seen;
}

test('cluster: after Redis restarts empty, the re-announced joins of members the clients already show are not delivered (an upsert that changes nothing sends nothing)', async (t) => {
  const nodes = await twoNodes(t, 'up');
  if (nodes === null) return;
  const { redis, A, B } = nodes;
  const alice = await member(A, 'alice', 'hall');
  const bob = await member(B, 'bob', 'hall');
  await converge(alice, uids(await alice.next('presence_state')), ['alice', 'bob'], 'alice sees bob');
  assert.deepEqual(uids(await bob.next('presence_state')), ['alice', 'bob']);

  // B stalls while Redis restarts without its data, so A is subscribed again when B's re-sync
  // announces bob as a join (and A's re-sync announces alice to B, which hears it once back).
  B.proc.kill('SIGSTOP');
  await redis.kill();
  await redis.restart();
  await until(A, (s) => s.cluster?.connected === true && s.cluster.reconnects >= 1, 'A back');
  // dave joins on A before B is back: Redis has no bob yet, but alice is still shown him (B may
  // just not be back), and so is dave, so bob's coming join is no news to him either.
  const dave = await member(A, 'dave', 'hall');
  assert.deepEqual(uids(await dave.next('presence_state')), ['alice', 'bob', 'dave']);
  B.proc.kill('SIGCONT');
  await until(B, (s) => s.cluster?.connected === true && s.cluster.reconnects >= 1, 'B back');
  // Joins after both re-syncs: each side's next diff is that join, not bob or alice again.
  await member(B, 'cole', 'hall');
  assert.deepEqual(await diffsUntilJoin(alice, 'cole'), ['-+dave', '-+cole']);
  assert.deepEqual(await diffsUntilJoin(dave, 'cole'), ['-+cole']);
  await member(A, 'dan', 'hall');
  // (B's heal, which shows bob dave, who joined while B was away, may answer after cole's join.)
  assert.deepEqual((await diffsUntilJoin(bob, 'dan')).sort(), ['-+cole', '-+dan', '-+dave']);
});
