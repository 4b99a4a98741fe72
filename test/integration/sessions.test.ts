/**
 * Sessions (issue #6): duplicate-uid policies, sendToUid, presence snapshots and diffs in
 * order, resume after a dropped socket (exact replay, overflow, grace expiry, bad token),
 * uid affinity, paged sends. Real uWS, real workers, real `ws` clients.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { createServer, type Server } from '../../src/index.js';
import { Client, LabelSink, JsonClient as J, fixture, until, within } from '../helpers.js';
import { TcpClient, TcpConnector, TcpFrameType } from '../../src/core/connectors/tcp.js';
import { MemoryConnector, type MemoryClient, type MemoryMessage } from '../../src/core/connectors/memory.js';
import { SendStatus, type ClientManager, type ConnectorClient } from '../../src/core/connector.js';

async function start(extra: Record<string, unknown> = {}): Promise<{ server: Server; url: string }> {
  const server = createServer({ modules: [fixture('rooms.module')], workers: 2, ...extra });
  const port = await server.listen(0, '127.0.0.1');
  return { server, url: `ws://127.0.0.1:${port}/rooms` };
}

/** A server and the 'rooms' label sink, both closed after the test. */
async function startWithSink(t: TestContext): Promise<{ server: Server; url: string; sink: LabelSink }> {
  const sink = new LabelSink('rooms');
  const { server, url } = await start();
  t.after(async () => { sink.close(); await server.close(); });
  return { server, url, sink };
}

/** Two clients in `room`: `a` (its resume token and handle kept) bound to uidA, `b` to uidB (unless null). */
async function pair(url: string, room: string, uidA: string, uidB: string | null): Promise<{ a: J; token: string; handle: number; b: J }> {
  const a = await J.open(url);
  const token = (await a.next('session')).data['token'] as string;
  const handle = (await a.call('BIND', { uid: uidA })).data['handle'] as number;
  await a.call('JOIN', { room });
  const b = await J.open(url);
  if (uidB !== null) await b.call('BIND', { uid: uidB });
  await b.call('JOIN', { room });
  return { a, token, handle, b };
}

/** Upgrade that the server refuses: status and body. */
function refused(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on('open', () => reject(new Error('upgrade was accepted')));
    ws.on('error', () => undefined);
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (b: Buffer) => { body += b.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
  });
}

test('every connection of a resumable module gets a session token first', async (t) => {
  const { server, url } = await start();
  t.after(() => server.close());
  const a = await J.open(url);
  const s = await a.next('session');
  assert.equal(typeof s.data['token'], 'string');
  assert.ok((s.data['token'] as string).length >= 20);
  assert.equal(s.data['resumed'], false);
  const b = await J.open(url);
  assert.notEqual((await b.next('session')).data['token'], s.data['token']);
});

test('a query parameter that merely ends in rw_resume (xrw_resume=1) is a fresh upgrade, not a refused resume', async (t) => {
  const { server, url } = await startWithSink(t);
  const a = await J.open(`${url}?xrw_resume=1`);
  const s = (await a.next('session')).data;
  assert.equal(s['resumed'], false);
  assert.equal(server.stats().drops.resumeRefused, 0);
  await a.c.close();
});

test('duplicate uid: reject refuses with RW_ERR_UID_TAKEN, allow shares it (sendToUid reaches all), kick closes the others', async (t) => {
  const { server, url } = await start();
  t.after(() => server.close());
  const a = await J.open(url);
  assert.equal((await a.call('BIND', { uid: 'u1' })).data['uid'], 'u1');
  const b = await J.open(url);
  const refusedBind = await b.call('BIND', { uid: 'u1', policy: 'reject' });
  assert.equal(refusedBind.cmd, 'error');
  assert.equal(refusedBind.data['code'], 'RW_ERR_UID_TAKEN');
  const c = await J.open(url);
  assert.equal((await c.call('BIND', { uid: 'u1', policy: 'allow' })).data['uid'], 'u1');
  assert.equal(server.uidHandles('u1').length, 2);

  // sendToUid reaches every connection of the uid, and nobody else.
  const d = await J.open(url);
  await d.call('TO_UID', { uid: 'u1', msg: 'hello' });
  assert.equal((await a.next('direct')).data as unknown, 'hello');
  assert.equal((await c.next('direct')).data as unknown, 'hello');
  await b.call('TO_UID', { uid: 'nobody', msg: 'x' });
  assert.equal(server.stats().drops.uidOffline, 1);
  assert.equal(b.pending('direct').length + d.pending('direct').length, 0);

  // kick: the two holders are closed with the kick code; the kicker holds the uid alone.
  const e = await J.open(url);
  assert.equal((await e.call('BIND', { uid: 'u1', policy: 'kick' })).data['uid'], 'u1');
  assert.equal((await a.c.closed).code, 4001);
  assert.equal((await c.c.closed).code, 4001);
  assert.deepEqual(server.uidHandles('u1'), [(await e.call('BIND', { uid: 'u1' })).data['handle']]);
  await d.call('TO_UID', { uid: 'u1', msg: 'only e' });
  assert.equal((await e.next('direct')).data as unknown, 'only e');
});

test('kick by a connection that already shares the uid (bound with allow) still closes the others', async (t) => {
  const { server, url } = await start();
  t.after(() => server.close());
  const a = await J.open(url);
  const b = await J.open(url);
  await a.call('BIND', { uid: 'shared' });
  const hb = (await b.call('BIND', { uid: 'shared' })).data['handle'];
  assert.equal(server.uidHandles('shared').length, 2);
  // b decides to hold the uid alone: the same call a fresh connection would make.
  assert.equal((await b.call('BIND', { uid: 'shared', policy: 'kick' })).data['uid'], 'shared');
  assert.deepEqual(server.uidHandles('shared'), [hb]); // the kick ran before the bind's reply
  assert.equal((await a.c.closed).code, 4001);
});

test('presence: the joiner gets a snapshot that matches the members; the others see joins and leaves in order', async (t) => {
  const { server, url } = await start();
  t.after(() => server.close());
  const [a, b, c] = [await J.open(url), await J.open(url), await J.open(url)];
  await a.call('BIND', { uid: 'alice' });
  await b.call('BIND', { uid: 'bob' });
  await c.call('BIND', { uid: 'carol' });

  assert.deepEqual((await a.call('JOIN', { room: 'lobby', meta: { hat: 'red' } })).data['members'], ['alice']);
  const sa = await a.next('presence_state');
  assert.deepEqual((sa.data['members'] as { uid: string; meta: unknown }[]).map((m) => [m.uid, m.meta]), [['alice', { hat: 'red' }]]);

  assert.deepEqual((await b.call('JOIN', { room: 'lobby' })).data['members'], ['alice', 'bob']);
  const sb = await b.next('presence_state');
  assert.deepEqual((sb.data['members'] as { uid: string }[]).map((m) => m.uid), ['alice', 'bob']);
  await c.call('JOIN', { room: 'lobby' });
  assert.deepEqual(((await c.next('presence_state')).data['members'] as { uid: string }[]).map((m) => m.uid), ['alice', 'bob', 'carol']);
  await b.call('LEAVE', { room: 'lobby' });
  await c.c.close();

  // alice saw, in this order: bob joins, carol joins, bob leaves, carol leaves (closed).
  const seen: string[] = [];
  for (let i = 0; i < 4; i++) {
    const m = await a.next('presence_diff');
    for (const j of m.data['joins'] as { uid: string }[]) seen.push(`+${j.uid}`);
    for (const l of m.data['leaves'] as { uid: string }[]) seen.push(`-${l.uid}`);
  }
  assert.deepEqual(seen, ['+bob', '+carol', '-bob', '-carol']);
  // bob (left) saw carol join but not carol's leave.
  const bd = await b.next('presence_diff');
  assert.deepEqual((bd.data['joins'] as { uid: string }[]).map((m) => m.uid), ['carol']);

  const info = await a.call('INFO', { room: 'lobby' });
  assert.equal(info.data['subscribers'], 1);
  assert.deepEqual((info.data['members'] as { uid: string }[]).map((m) => m.uid), ['alice']);
  assert.deepEqual(server.roomMembers('lobby')?.map((m) => m.uid), ['alice']);

  const no = await a.call('JOIN', { room: 'forbidden' });
  assert.equal(no.cmd, 'error');
  assert.equal(no.data['code'], 'RW_ERR_JOIN_REFUSED');
});

test('room list (Phoenix\'s RoomManager): ctx.listRooms() and server.listRooms() name every room of the node with its member count; a room survives a dropped socket and goes with its last member', async (t) => {
  const { server, url, sink } = await startWithSink(t);
  const { a, b } = await pair(url, 'lobby', 'alice', 'bob');
  const c = await J.open(url);
  await c.call('JOIN', { room: 'table-1' });
  await c.call('JOIN', { room: 'table-2' });
  await c.call('LEAVE', { room: 'table-2' });
  const byName = (l: unknown): unknown => (l as { room: string }[]).slice().sort((x, y) => x.room.localeCompare(y.room));
  const expected = [{ room: 'lobby', members: 2 }, { room: 'table-1', members: 1 }];
  // b and c may be on the other worker: the list is the I/O thread's, the same from every worker.
  assert.deepEqual(byName((await b.call('ROOMS', {})).data['rooms']), expected);
  assert.deepEqual(byName((await c.call('ROOMS', {})).data['rooms']), expected);
  assert.deepEqual(byName(server.listRooms()), expected);

  a.c.ws.terminate(); // dropped, not closed: alice's session is detached and keeps her seat
  await sink.until((l) => l.includes('away:alice'));
  assert.deepEqual(byName((await b.call('ROOMS', {})).data['rooms']), expected);
  await c.c.close();
  await until('table-1 gone with its last member', () => server.listRooms().length === 1);
  assert.deepEqual((await b.call('ROOMS', {})).data['rooms'], [{ room: 'lobby', members: 2 }]);
});

test('a worker that dies ends the detached sessions it held (Phoenix: a room monitors its users\' processes; an abnormal exit is a forced leave): the other members see the leave, the uid is free', async (t) => {
  const { server, url, sink } = await startWithSink(t);
  const { a, handle, b } = await pair(url, 'table', 'alice', 'bob');
  const worker = (h: number): number | undefined => server.connection(h)?.worker;
  const hb = (await b.call('WHO', {})).data['handle'] as number;
  assert.notEqual(worker(handle), worker(hb), 'round-robin: alice and bob on different workers');
  a.c.ws.terminate();
  await sink.until((l) => l.includes('away:alice'));
  // Another connection on alice's worker crashes it.
  let k: J;
  for (;;) {
    k = await J.open(url);
    if (worker((await k.call('WHO', {})).data['handle'] as number) === worker(handle)) break;
    await k.c.close();
  }
  k.send('CRASH', {});
  assert.equal((await k.c.closed).code, 1011);
  const d = await b.next('presence_diff');
  assert.deepEqual((d.data['leaves'] as { uid: string }[]).map((m) => m.uid), ['alice']);
  assert.equal(server.connection(handle), null, 'the session is gone');
  assert.deepEqual(server.uidHandles('alice'), []);
  assert.deepEqual(server.roomMembers('table')?.map((m) => m.uid), ['bob']);
});

test('resume: a dropped client gets exactly the 100 messages published meanwhile, in order, recovered: true', async (t) => {
  const { server, url, sink } = await startWithSink(t);
  const { a, token, handle, b } = await pair(url, 'game', 'alice', 'bob');
  await b.call('PUB', { room: 'game', n: 3 });
  for (let i = 0; i < 3; i++) assert.equal((await a.next('msg')).data['i'], i);

  a.c.ws.terminate(); // no close frame: the server sees 1006
  await sink.until((l) => l.includes('away:alice'));
  assert.equal(server.stats().detached, 1);
  await b.call('PUB', { room: 'game', n: 100 });

  const a2 = await J.open(`${url}?rw_resume=${token}`);
  const s = await a2.next('session');
  assert.deepEqual(
    { resumed: s.data['resumed'], recovered: s.data['recovered'], replayed: s.data['replayed'] },
    { resumed: true, recovered: true, replayed: 100 },
  );
  assert.equal((s.data['lastSeq'] as number) - (s.data['firstSeq'] as number) + 1, 100);
  // Exactly those 100, in order, and nothing else before the live traffic below.
  for (let i = 0; i < 100; i++) assert.equal((await a2.next('msg')).data['i'], i);
  await sink.until((l) => l.includes('resume:alice:true:100'));
  // Same connection: same handle, uid and room; live traffic flows again; bob never saw a leave.
  assert.equal((await a2.call('BIND', { uid: 'alice' })).data['handle'], handle);
  await b.call('PUB', { room: 'game', n: 1, tag: 'live' });
  const live = await a2.next('msg');
  assert.deepEqual([live.data['i'], live.data['tag']], [0, 'live']);
  assert.equal(a2.pending('msg').length, 0);
  assert.equal(b.pending('presence_diff').filter((m) => (m.data['leaves'] as unknown[]).length > 0).length, 0);
  assert.ok(!sink.labels.some((l) => l.startsWith('disconnect:alice')));
  assert.equal(server.stats().resumes, 1);
  assert.equal(server.stats().detached, 0);
  // Connection records from a handler: its own, and another connection's.
  const mine = (await a2.call('WHO', null)).data;
  assert.deepEqual([mine['handle'], mine['uid'], mine['rooms'], mine['module'], mine['transport'], mine['detached']],
    [handle, 'alice', ['game'], '/rooms', 'websocket', false]);
  const bobs = (await a2.call('WHO', { handle: (await b.call('BIND', { uid: 'bob' })).data['handle'] })).data;
  assert.equal(bobs['uid'], 'bob');
  assert.equal(bobs['remoteAddress'], '127.0.0.1');
});

test('resume: past the buffer bound nothing is replayed and recovered is false; after the grace period the room sees the leave', async (t) => {
  const { server, url, sink } = await startWithSink(t);
  const { a, token, b } = await pair(url, 'g2', 'alice', 'bob');

  a.c.ws.terminate();
  await sink.until((l) => l.includes('away:alice'));
  await b.call('PUB', { room: 'g2', n: 200 }); // maxMessages is 150
  const a2 = await J.open(`${url}?rw_resume=${token}`);
  const s = await a2.next('session');
  assert.equal(s.data['resumed'], true);
  assert.equal(s.data['recovered'], false);
  assert.equal(s.data['replayed'], 0);
  assert.equal(server.stats().drops.resumeOverflow, 200); // every undelivered message is counted
  await sink.until((l) => l.includes('resume:alice:false:0'));

  // Drop again and let the grace period (1.5 s) pass: bob sees alice leave, her disconnect hook runs.
  const dropped = performance.now(); // a lower bound below: the grace timer cannot fire early
  a2.c.ws.terminate();
  for (;;) {
    const m = await b.next('presence_diff');
    if ((m.data['leaves'] as { uid: string }[]).some((x) => x.uid === 'alice')) break;
  }
  assert.ok(performance.now() - dropped >= 1400, `leave came ${performance.now() - dropped} ms after the drop`);
  await sink.until((l) => l.includes('disconnect:alice:1006'));
  assert.equal(server.uidHandles('alice').length, 0);

  // The token is now expired: a clear refusal, counted.
  const r = await refused(`${url}?rw_resume=${token}`);
  assert.equal(r.status, 410);
  assert.equal(JSON.parse(r.body).code, 'RW_ERR_RESUME_TOKEN');
  const bad = await refused(`${url}?rw_resume=not-a-token`);
  assert.equal(bad.status, 410);
  assert.equal(server.stats().drops.resumeRefused, 2);
  assert.equal(server.stats().liveFds, 1);
});

test('resume: direct, uid and broadcast sends to a detached connection are buffered too, in order with publishes', async (t) => {
  const { url, sink } = await startWithSink(t);
  const { a, token, b } = await pair(url, 'mix', 'carl', null);
  a.c.ws.terminate();
  await sink.until((l) => l.includes('away:carl'));
  await b.call('PUB', { room: 'mix', n: 2, tag: 'p' });
  await b.call('TO_UID', { uid: 'carl', msg: 'u1' });
  await b.call('BC', { note: 'b1' });
  await b.call('PUB', { room: 'mix', n: 1, tag: 'q' });
  const a2 = await J.open(`${url}?rw_resume=${token}`);
  assert.equal((await a2.next('session')).data['replayed'], 5);
  const order: string[] = [];
  for (let i = 0; i < 5; i++) {
    const m = await a2.c.nextJson() as { cmd: string; data: unknown };
    order.push(m.cmd === 'msg' ? `${(m.data as { tag: string }).tag}${(m.data as { i: number }).i}` : `${m.cmd}:${String(m.data)}`);
  }
  assert.deepEqual(order, ['p0', 'p1', 'direct:u1', 'bc:b1', 'q0']);
});

test('resume: a sendAll issued while the connection was detached is buffered for it and replayed once on resume, in order with the other buffered messages', async (t) => {
  const { server, url, sink } = await startWithSink(t);
  const { a, token, b } = await pair(url, 'sa', 'dora', null);
  a.c.ws.terminate();
  await sink.until((l) => l.includes('away:dora'));
  await b.call('PUB', { room: 'sa', n: 1, tag: 'p' });
  await b.call('ALL', { note: 's1', except: [] });
  // Fewer connections than a page: the page that sent b its copy is the one that buffered a's.
  assert.equal((await b.next('all')).data['note'], 's1');
  await b.call('PUB', { room: 'sa', n: 1, tag: 'q' });
  const a2 = await J.open(`${url}?rw_resume=${token}`);
  const s = (await a2.next('session')).data;
  assert.deepEqual([s['recovered'], s['replayed']], [true, 3]);
  const order: string[] = [];
  for (let i = 0; i < 3; i++) {
    const m = await within('a replayed message', a2.c.nextJson()) as { cmd: string; data: Record<string, unknown> };
    order.push(m.cmd === 'msg' ? `${String(m.data['tag'])}${String(m.data['i'])}` : `${m.cmd}:${String(m.data['note'])}`);
  }
  assert.deepEqual(order, ['p0', 'all:s1', 'q0']);
  // Once: the resumed socket is not sent it again; the next sendAll is the next it gets.
  await b.call('ALL', { note: 'fence', except: [] });
  assert.equal((await within('the fence', a2.next('all'))).data['note'], 'fence');
  assert.equal(server.stats().drops.resumeOverflow, 0);
});

test('resume tokens are single use: each resume frame carries a new token, and the one presented is refused afterwards (410)', async (t) => {
  const { server, url } = await startWithSink(t);
  const { a, token, handle, b } = await pair(url, 'game', 'alice', 'bob');
  a.c.ws.terminate();
  await until('a detached', () => server.stats().detached === 1);
  const a2 = await J.open(`${url}?rw_resume=${token}`);
  const s2 = (await a2.next('session')).data;
  assert.equal(s2['resumed'], true);
  const token2 = s2['token'] as string;
  assert.equal(typeof token2, 'string');
  assert.notEqual(token2, token, 'the resume frame carries a new token');
  // Once a2 has shown it is there (a message), the copied first token (a proxy log, say) cannot
  // take the live session over.
  assert.equal((await a2.call('BIND', { uid: 'alice' })).data['handle'], handle);
  const stolen = await refused(`${url}?rw_resume=${token}`);
  assert.equal(stolen.status, 410);
  assert.equal(JSON.parse(stolen.body).code, 'RW_ERR_RESUME_TOKEN');
  assert.equal((await a2.call('BIND', { uid: 'alice' })).data['handle'], handle, 'a2 still holds the session');
  // The new one resumes the next drop.
  a2.c.ws.terminate();
  await until('a2 detached', () => server.stats().detached === 1);
  await b.call('PUB', { room: 'game', n: 2 });
  const a3 = await J.open(`${url}?rw_resume=${token2}`);
  const s3 = (await a3.next('session')).data;
  assert.deepEqual([s3['resumed'], s3['recovered'], s3['replayed']], [true, true, 2]);
  assert.notEqual(s3['token'], token2);
  assert.equal(server.stats().resumes, 2);
  await a3.c.close();
  await b.c.close();
});

test('a resumed socket that drops before its client showed it is there (no message yet) leaves the presented token valid: the session is not lost with a new token that never arrived', async (t) => {
  const sink = new LabelSink('rooms');
  const tcp = new TcpConnector({ port: 0, heartbeatMs: 30_000 });
  const { server } = await start({ connectors: [tcp] });
  t.after(async () => { sink.close(); await server.close(); });
  const a = new TcpJson();
  await a.t.connect('127.0.0.1', tcp.port);
  await a.t.handshake('/rooms');
  const token = (await a.next('session')).data['token'] as string;
  const handle = (await a.call('BIND', { uid: 'alice' })).data['handle'] as number;
  a.t.socket.destroy();
  await sink.until((l) => l.filter((x) => x === 'away:alice').length === 1);
  // The resume succeeds, but its socket dies before the client sent anything (it may never have
  // read the new token): the token it presented still resumes.
  const a2 = new TcpJson();
  await a2.t.connect('127.0.0.1', tcp.port);
  assert.equal((await a2.t.handshake('/rooms', `rw_resume=${token}`)).code, 200);
  const unread = (await a2.next('session')).data['token'] as string;
  a2.t.socket.destroy();
  await sink.until((l) => l.filter((x) => x === 'away:alice').length === 2);
  const a3 = new TcpJson();
  await a3.t.connect('127.0.0.1', tcp.port);
  const hs3 = await a3.t.handshake('/rooms', `rw_resume=${token}`);
  assert.equal(hs3.code, 200);
  assert.equal((hs3 as { session: { handle: number } }).session.handle, handle, 'the same session');
  const s3 = (await a3.next('session')).data;
  assert.equal(s3['resumed'], true);
  // The new token it never received is retired; once a3 sends, the presented one is spent too.
  assert.equal((await a3.call('BIND', { uid: 'alice' })).data['handle'], handle);
  for (const spent of [unread, token]) {
    const c = new TcpJson();
    await c.t.connect('127.0.0.1', tcp.port);
    const r = await c.t.handshake('/rooms', `rw_resume=${spent}`);
    assert.equal(r.code, 410);
    c.t.end();
  }
  assert.equal(server.stats().resumes, 2);
  a3.t.end();
});

test('a WebSocket resume is confirmed by the pong to the ping sent after the session frame: with no message sent, the presented token is spent once that pong is in', async (t) => {
  const { server, url } = await startWithSink(t);
  const { a, token, handle } = await pair(url, 'pong', 'alice', null);
  a.c.ws.terminate();
  await until('a detached', () => server.stats().detached === 1);
  // The client answers pings itself here, so nothing confirms the resume before it says so.
  const b = new J(new Client(`${url}?rw_resume=${token}`, { autoPong: false }));
  const pinged = new Promise<void>((resolve) => b.c.ws.once('ping', () => resolve()));
  await b.c.opened;
  assert.equal((await b.next('session')).data['resumed'], true);
  await within('the ping after the session frame', pinged);
  b.c.ws.pong();
  // The server answers our own ping after it has read the pong sent before it (one socket, in order).
  const ponged = new Promise<void>((resolve) => b.c.ws.once('pong', () => resolve()));
  b.c.ws.ping();
  await within('the pong to our ping', ponged);
  const stolen = await refused(`${url}?rw_resume=${token}`);
  assert.equal(stolen.status, 410, 'the presented token is spent once the pong came back');
  assert.equal((await b.call('BIND', { uid: 'alice' })).data['handle'], handle, 'b still holds the session');
  await b.c.close();
});

test('a detached session that ends without a resume (its uid kicked) counts the messages left in its buffer in drops.sessionEnded', async (t) => {
  const { server, url, sink } = await startWithSink(t);
  const { a, b } = await pair(url, 'g3', 'alice', 'bob');
  a.c.ws.terminate();
  await sink.until((l) => l.includes('away:alice'));
  await b.call('PUB', { room: 'g3', n: 3 });
  assert.equal(server.stats().drops.sessionEnded, 0);
  const k = await J.open(url);
  await k.call('BIND', { uid: 'alice', policy: 'kick' });
  await sink.until((l) => l.some((x) => x.startsWith('disconnect:alice:')));
  assert.equal(server.stats().drops.sessionEnded, 3, 'the three buffered messages were never delivered');
  assert.equal(server.stats().detached, 0);
  await k.c.close();
  await b.c.close();
});

test('a client that closes normally (1000) is gone at once: no grace period', async (t) => {
  const { server, url, sink } = await startWithSink(t);
  const a = await J.open(url);
  await a.next('session');
  await a.call('BIND', { uid: 'quitter' });
  a.c.ws.close(1000);
  await a.c.closed;
  await sink.until((l) => l.includes('disconnect:quitter:1000'));
  assert.ok(!sink.labels.includes('away:quitter'));
  assert.equal(server.stats().detached, 0);
});

test('uid affinity: every connection carrying one uid is served by the same worker', async (t) => {
  const { server, url } = await start({ workers: 3, uidAffinity: { query: 'uid' } });
  t.after(() => server.close());
  const clients = [];
  for (let i = 0; i < 6; i++) clients.push(await J.open(`${url}?uid=player-7`));
  for (let i = 0; i < 6; i++) clients.push(await J.open(`${url}?uid=player-${i}`));
  for (let i = 0; i < 12; i++) await clients[i]!.call('BIND', { uid: i < 6 ? 'player-7' : `player-${i - 6}`, policy: 'allow' });
  const conns = server.connections();
  const of7 = conns.filter((c) => c.uid === 'player-7').map((c) => c.worker);
  assert.equal(of7.length, 6);
  assert.equal(new Set(of7).size, 1);
  // Different uids do spread (round-robin alone would also put 6 on 3 workers, so check the hash is used).
  assert.ok(new Set(conns.map((c) => c.worker)).size > 1);
});

test('sendAll / broadcast with an except-list reaches every other connection of the module', async (t) => {
  const { server, url } = await start();
  t.after(() => server.close());
  const cs: J[] = [];
  for (let i = 0; i < 5; i++) cs.push(await J.open(url));
  const handles: number[] = [];
  for (const c of cs) handles.push((await c.call('BIND', { uid: `h${handles.length}` })).data['handle'] as number);
  await cs[0]!.call('ALL', { note: 'n1', except: [handles[1], handles[2]] });
  for (const i of [0, 3, 4]) assert.equal((await cs[i]!.next('all')).data['note'], 'n1');
  await cs[0]!.call('ALL', { note: 'n2', except: [] });
  for (const i of [1, 2]) assert.equal((await cs[i]!.next('all')).data['note'], 'n2');
  // 1 and 2 never got n1: their first 'all' was n2.
  // sendMany: exactly the listed handles.
  await cs[4]!.call('MANY', { to: [handles[0], handles[2]], note: 'm' });
  assert.equal((await cs[0]!.next('many')).data['note'], 'm');
  assert.equal((await cs[2]!.next('many')).data['note'], 'm');
  await cs[4]!.call('ALL', { note: 'fence', except: [] });
  for (const i of [1, 3]) {
    // Everything sent before 'fence' has arrived once 'fence' has (one worker, one ring, in order).
    while ((await cs[i]!.next('all')).data['note'] !== 'fence');
    assert.equal(cs[i]!.pending('many').length, 0, `connection ${i} got a sendMany it was not addressed`);
  }
});

test('resume while the old socket still looks alive (half-open): the old socket is replaced with 1001, the session moves over', async (t) => {
  const { server, url, sink } = await startWithSink(t);
  const a = await J.open(url);
  const token = (await a.next('session')).data['token'] as string;
  const handle = (await a.call('BIND', { uid: 'twin' })).data['handle'];
  await a.call('JOIN', { room: 'r' });
  const a2 = await J.open(`${url}?rw_resume=${token}`);
  const s = await a2.next('session');
  assert.deepEqual([s.data['resumed'], s.data['recovered'], s.data['replayed']], [true, true, 0]);
  const old = await a.c.closed;
  assert.equal(old.code, 1001);
  assert.equal((await a2.call('BIND', { uid: 'twin' })).data['handle'], handle);
  assert.equal(server.stats().connections, 1);
  assert.deepEqual(server.roomMembers('r')?.map((m) => m.uid), ['twin']);
  assert.ok(!sink.labels.some((l) => l.startsWith('disconnect:twin')));
});

/** A TCP client speaking the json codec: next(cmd) keeps other messages queued, in order. */
class TcpJson {
  readonly t = new TcpClient();
  readonly #queue: { cmd: string; data: Record<string, unknown>; ref?: number }[] = [];
  async next(cmd: string): Promise<{ cmd: string; data: Record<string, unknown>; ref?: number }> {
    for (;;) {
      const i = this.#queue.findIndex((m) => m.cmd === cmd);
      if (i >= 0) return this.#queue.splice(i, 1)[0]!;
      const f = await this.t.next();
      if (f.type === TcpFrameType.MESSAGE) this.#queue.push(JSON.parse(f.payload.toString('utf8')) as { cmd: string; data: Record<string, unknown> });
    }
  }
  pending(cmd: string): number {
    return this.#queue.filter((m) => m.cmd === cmd).length;
  }
  async call(cmd: string, data: unknown): Promise<{ cmd: string; data: Record<string, unknown>; ref?: number }> {
    this.t.send(Buffer.from(JSON.stringify({ cmd, data, ref: 7 })));
    for (;;) {
      const m = await this.next(cmd);
      if (m.ref === 7) return m;
    }
  }
}

test('resume over the TCP connector: a dropped TCP client resumes its session (same handle, replay in order, transport tcp)', async (t) => {
  const sink = new LabelSink('rooms');
  const tcp = new TcpConnector({ port: 0, heartbeatMs: 30_000 });
  const { server, url } = await start({ connectors: [tcp] });
  t.after(async () => { sink.close(); await server.close(); });

  const a = new TcpJson();
  await a.t.connect('127.0.0.1', tcp.port);
  const hs = await a.t.handshake('/rooms');
  assert.equal(hs.code, 200);
  const token = (await a.next('session')).data['token'] as string;
  const handle = (await a.call('BIND', { uid: 'alice' })).data['handle'] as number;
  assert.equal(handle, (hs as { session: { handle: number } }).session.handle);
  await a.call('JOIN', { room: 'tcp-game' });
  const b = await J.open(url);
  await b.call('BIND', { uid: 'bob' });
  await b.call('JOIN', { room: 'tcp-game' });

  a.t.socket.destroy(); // the peer vanishes: 1006 on the server, the session is detached
  await sink.until((l) => l.includes('away:alice'));
  await b.call('PUB', { room: 'tcp-game', n: 50 });

  const a2 = new TcpJson();
  await a2.t.connect('127.0.0.1', tcp.port);
  const hs2 = await a2.t.handshake('/rooms', `rw_resume=${token}`);
  assert.equal(hs2.code, 200);
  assert.equal((hs2 as { session: { handle: number } }).session.handle, handle, 'the resumed connection keeps its handle');
  const s = await a2.next('session');
  assert.deepEqual([s.data['resumed'], s.data['recovered'], s.data['replayed']], [true, true, 50]);
  for (let i = 0; i < 50; i++) assert.equal((await a2.next('msg')).data['i'], i);
  await sink.until((l) => l.includes('resume:alice:true:50'));
  const mine = (await a2.call('WHO', null)).data;
  assert.deepEqual([mine['handle'], mine['uid'], mine['rooms'], mine['transport']], [handle, 'alice', ['tcp-game'], 'tcp']);
  await b.call('PUB', { room: 'tcp-game', n: 1, tag: 'live' });
  assert.equal((await a2.next('msg')).data['tag'], 'live');
  assert.equal(a2.pending('msg'), 0);
  assert.equal(server.stats().resumes, 1);
  a2.t.end();
});

test('a room reply too large for the worker\'s ring: the join fails with RW_ERR_RECORD_TOO_LARGE, counted; the worker is not jammed', { timeout: 20_000 }, async (t) => {
  // 4 KiB rings (records up to ~2 KiB); each member carries 250 bytes of meta, so the join reply
  // listing the room outgrows the ring after a handful of members.
  const { server, url } = await start({ workers: 1, ringBytes: 4096 });
  const clients: J[] = [];
  t.after(async () => {
    for (const c of clients) c.c.ws.terminate();
    await server.close();
  });
  const outcomes: string[] = [];
  for (let i = 0; i < 10; i++) {
    const c = await J.open(url);
    clients.push(c);
    const r = await c.call('JOIN', { room: 'big', meta: 'm'.repeat(250) });
    outcomes.push(r.cmd === 'error' ? String(r.data['code']) : 'ok');
  }
  const failed = outcomes.filter((o) => o !== 'ok');
  assert.ok(outcomes[0] === 'ok' && failed.length > 0, outcomes.join(' '));
  assert.ok(failed.every((o) => o === 'RW_ERR_RECORD_TOO_LARGE'), outcomes.join(' '));
  assert.equal(server.stats().drops.noticeTooLarge, failed.length);
  // Not jammed: new connections are accepted and served, small replies still arrive.
  const fresh = await J.open(url);
  clients.push(fresh);
  assert.equal((await fresh.call('JOIN', { room: 'small' })).cmd, 'JOIN');
});

/** LIST's answer: the call's result, or its rejection's { name, code, message }. */
async function list(c: J, data: Record<string, unknown>): Promise<{ ok?: unknown; failed?: { name: string; code: string | null; message: string } }> {
  const r = await c.call('LIST', data);
  assert.equal(r.cmd, 'LIST', JSON.stringify(r.data));
  return r.data as { ok?: unknown; failed?: { name: string; code: string | null; message: string } };
}

/** Every page of a walk with `page` options (after added from each next), and the entries in walk order. */
async function walk<T>(c: J, key: 'rooms' | 'members', data: Record<string, unknown>, page: Record<string, unknown>): Promise<{ entries: T[]; sizes: number[]; totals: number[] }> {
  const entries: T[] = [];
  const sizes: number[] = [];
  const totals: number[] = [];
  let after: string | null = null;
  do {
    const r = await list(c, { ...data, page: after === null ? page : { ...page, after } });
    assert.equal(r.failed, undefined, JSON.stringify(r.failed));
    const p = r.ok as { next: string | null; total: number } & Record<string, T[]>;
    sizes.push(p[key]!.length);
    totals.push(p.total);
    entries.push(...p[key]!);
    after = p.next;
  } while (after !== null && sizes.length < 1000);
  return { entries, sizes, totals };
}

test('room list paging: with more rooms than one ring record holds, ctx.listRooms() rejects naming the paging option; ctx.listRooms({ limit, after }) walks every room exactly once, by name; server.listRooms() pages alike', { timeout: 30_000 }, async (t) => {
  // 4 KiB rings: a reply holds at most ~1.9 KB, so 150 rooms (~50 bytes of JSON each) do not fit one.
  const { server, url } = await start({ workers: 1, ringBytes: 4096 });
  t.after(() => server.close());
  const c = await J.open(url);
  // Created out of name order (and with names that sort by UTF-16 units, not by locale), so the
  // walk's order is the names', not the creation's.
  const names: string[] = [];
  for (let i = 0; i < 150; i++) names.push(`${['t', 'T', 'é', '_'][i % 4]}-${String((i * 37) % 150).padStart(3, '0')}`);
  for (const room of names) assert.equal((await c.call('JOIN', { room })).cmd, 'JOIN');
  const sorted = names.slice().sort();
  const expected = sorted.map((room) => ({ room, members: 1 }));

  const plain = await list(c, {});
  assert.equal(plain.failed?.code, 'RW_ERR_RECORD_TOO_LARGE');
  assert.equal(plain.failed?.name, 'RecordTooLargeError', 'the class the README error table names');
  assert.match(plain.failed?.message ?? '', /page the list with ctx\.listRooms\(\{ limit, after \}\)/);
  assert.equal(server.stats().drops.noticeTooLarge, 1);

  // limit 7: every page full but the last; the walk is the sorted list, nothing skipped or repeated.
  const seven = await walk<{ room: string; members: number }>(c, 'rooms', {}, { limit: 7 });
  assert.deepEqual(seven.entries, expected);
  assert.deepEqual(seven.sizes, [...Array<number>(21).fill(7), 3]);
  assert.ok(seven.totals.every((n) => n === 150));
  // The default limit (100) is more than one record holds here: pages are cut to fit the ring, never
  // rejected, and the walk is still exact.
  const dflt = await walk<{ room: string; members: number }>(c, 'rooms', {}, {});
  assert.deepEqual(dflt.entries, expected);
  assert.ok(dflt.sizes.length > 2 && dflt.sizes.every((n) => n > 0 && n < 100), dflt.sizes.join(' '));
  assert.equal(server.stats().drops.noticeTooLarge, 1, 'no page was too large');
  // A cursor is a room name: one that does not exist starts after where it would sort.
  const mid = await list(c, { page: { limit: 2, after: sorted[9]!.slice(0, -1) + '~' } });
  assert.deepEqual((mid.ok as { rooms: unknown }).rooms, expected.slice(10, 12));
  // Past the end: an empty last page.
  assert.deepEqual((await list(c, { page: { after: '\uffff' } })).ok, { rooms: [], next: null, total: 150 });

  // The I/O thread's list pages the same way (cut at limit only: no ring in between).
  const io: unknown[] = [];
  let after: string | undefined;
  for (;;) {
    const p = server.listRooms(after === undefined ? { limit: 40 } : { limit: 40, after });
    io.push(...p.rooms);
    if (p.next === null) break;
    after = p.next;
  }
  assert.deepEqual(io, expected);
  assert.deepEqual(server.listRooms().map((r) => r.room), names, 'unpaged: every room, in creation order, as before');

  // A room that goes between two pages does not shift the rest of the walk (a cursor, not an offset).
  const first = await list(c, { page: { limit: 5 } });
  assert.equal((await c.call('LEAVE', { room: sorted[2] })).cmd, 'LEAVE');
  const second = await list(c, { page: { limit: 5, after: (first.ok as { next: string }).next } });
  assert.deepEqual((second.ok as { rooms: unknown }).rooms, expected.slice(5, 10));
});

test('member paging: ctx.room(topic) of a room too large for one record rejects naming the paging option; ctx.room(topic, { limit, after }) walks every member exactly once, by handle', { timeout: 30_000 }, async (t) => {
  const { server, url } = await start({ workers: 1, ringBytes: 4096 });
  const clients: J[] = [];
  t.after(async () => {
    for (const c of clients) c.c.ws.terminate();
    await server.close();
  });
  // 40 members with 60 bytes of meta each (~130 bytes of JSON a member): more than a reply holds.
  // The joins past that size reject as before (their answer, the member list, does not fit either:
  // see the test above), but the member joined.
  for (let i = 0; i < 40; i++) {
    const c = await J.open(url);
    clients.push(c);
    if (i < 39) {
      const r = await c.call('JOIN', { room: 'big', meta: 'm'.repeat(60) });
      assert.ok(r.cmd === 'JOIN' || r.data['code'] === 'RW_ERR_RECORD_TOO_LARGE', JSON.stringify(r.data));
    } else {
      // A join whose member list is too large took place all the same: the error says so and names the paged listing.
      const r = await list(c, { join: 'big', meta: 'm'.repeat(60) });
      assert.equal(r.failed?.name, 'RecordTooLargeError');
      assert.match(r.failed?.message ?? '', /the join itself took place; list the members with ctx\.room\(room, \{ limit, after \}\)/);
    }
  }
  await until('40 members', () => server.roomMembers('big')?.length === 40);
  const all = server.roomMembers('big')!.slice().sort((a, b) => a.handle - b.handle);
  const c = clients[0]!;
  const before = server.stats().drops.noticeTooLarge;

  const plain = await list(c, { room: 'big' });
  assert.equal(plain.failed?.code, 'RW_ERR_RECORD_TOO_LARGE');
  assert.match(plain.failed?.message ?? '', /page the members with ctx\.room\(topic, \{ limit, after \}\)/);
  assert.equal(server.stats().drops.noticeTooLarge, before + 1);

  const six = await walk<{ handle: number }>(c, 'members', { room: 'big' }, { limit: 6 });
  assert.deepEqual(six.entries, all);
  assert.deepEqual(six.sizes, [6, 6, 6, 6, 6, 6, 4]);
  assert.ok(six.totals.every((n) => n === 40));
  const dflt = await walk<{ handle: number }>(c, 'members', { room: 'big' }, {});
  assert.deepEqual(dflt.entries, all);
  assert.ok(dflt.sizes.length > 1 && dflt.sizes.every((n) => n > 0), dflt.sizes.join(' '));
  assert.equal(server.stats().drops.noticeTooLarge, before + 1, 'no page was too large');
  // The page carries the topic's subscribers as the unpaged answer does; a room nobody joined has no members.
  assert.equal(((await list(c, { room: 'big', page: { limit: 1 } })).ok as { subscribers: number }).subscribers, 40);
  assert.deepEqual((await list(c, { room: 'nobody', page: {} })).ok, { subscribers: 0, members: null, next: null, total: 0 });

  // The I/O thread's member list pages the same way; the cursor is the last handle.
  const p1 = server.roomMembers('big', { limit: 30 });
  assert.equal(p1.next, String(all[29]!.handle));
  const p2 = server.roomMembers('big', { limit: 30, after: p1.next! });
  assert.deepEqual([...p1.members!, ...p2.members!], all);
  assert.equal(p2.next, null);
});

test('paging options are checked in the handler: an unknown key (with the closest name), a wrong type, a limit out of range or a bad member cursor reject with TypeError or RangeError naming the option; small sets answer unpaged exactly as before', async (t) => {
  const { server, url } = await startWithSink(t);
  const c = await J.open(url);
  await c.call('JOIN', { room: 'b-room', meta: { seat: 1 } });
  await c.call('JOIN', { room: 'a-room' });
  const failed = async (data: Record<string, unknown>): Promise<string> => {
    const r = await list(c, data);
    assert.ok(r.failed !== undefined, JSON.stringify(r.ok));
    return `${r.failed.name}: ${r.failed.message}`;
  };
  assert.equal(await failed({ page: { limt: 5 } }), 'TypeError: listRooms() options.limt is not an option (did you mean limit?)');
  assert.equal(await failed({ page: { afterr: 'x' } }), 'TypeError: listRooms() options.afterr is not an option (did you mean after?)');
  assert.equal(await failed({ page: { limit: '5' } }), 'TypeError: listRooms() options.limit must be an integer between 1 and 10000');
  assert.equal(await failed({ page: { limit: 2.5 } }), 'TypeError: listRooms() options.limit must be an integer between 1 and 10000');
  assert.equal(await failed({ page: { limit: 0 } }), 'RangeError: listRooms() options.limit must be an integer between 1 and 10000, got 0');
  assert.equal(await failed({ page: { limit: 10_001 } }), 'RangeError: listRooms() options.limit must be an integer between 1 and 10000, got 10001');
  assert.equal(await failed({ page: { after: null } }), 'TypeError: listRooms() options.after must be a string (a page\'s next; left out for the first page)');
  assert.equal(await failed({ page: 5 }), 'TypeError: listRooms() options must be an object { limit?, after? }');
  assert.equal(await failed({ room: 'b-room', page: { after: 'b-room' } }),
    'RangeError: room() options.after must be a member cursor (a page\'s next: "handle" or "node:handle"), got "b-room"');
  assert.equal(await failed({ room: 'b-room', page: { lmit: 1 } }), 'TypeError: room() options.lmit is not an option (did you mean limit?)');
  assert.throws(() => server.listRooms({ limit: -1 }), { name: 'RangeError', message: 'server.listRooms() options.limit must be an integer between 1 and 10000, got -1' });
  assert.throws(() => server.roomMembers('b-room', { after: 'x' } as never), RangeError);

  // Unpaged, small: the old answers, keys and order (creation order) unchanged.
  assert.deepEqual((await list(c, {})).ok, [{ room: 'b-room', members: 1 }, { room: 'a-room', members: 1 }]);
  const h = (await c.call('WHO', {})).data['handle'] as number;
  assert.deepEqual((await list(c, { room: 'b-room' })).ok, { subscribers: 1, members: [{ handle: h, uid: null, meta: { seat: 1 }, node: '' }] });
  // Paged, small: one page, no cursor; `{}` is the first page with the default limit.
  assert.deepEqual((await list(c, { page: {} })).ok,
    { rooms: [{ room: 'a-room', members: 1 }, { room: 'b-room', members: 1 }], next: null, total: 2 });
  assert.deepEqual((await list(c, { page: { limit: 1 } })).ok, { rooms: [{ room: 'a-room', members: 1 }], next: 'a-room', total: 2 });
});

test('resume during a worker backlog: onResume runs before the resumed socket\'s first message', async (t) => {
  // One worker with a 4 KiB ring. The resume upgrade's hook holds the worker while another
  // client fills the ring (backlog: records go to the overflow); the Resume notice is then
  // written while the backlog lasts, and the resumed client's first message right after it.
  const server = createServer({ modules: [fixture('resume-order.module')], workers: 1, ringBytes: 4096, overflowBytes: 1 << 18 });
  const port = await server.listen(0, '127.0.0.1');
  const url = `ws://127.0.0.1:${port}/resume-order`;
  const sab = new SharedArrayBuffer(16);
  const gate = new Int32Array(sab);
  const ch = new BroadcastChannel('rw-test-resume-gate');
  const release = (i: number): void => { Atomics.store(gate, i, 1); Atomics.notify(gate, i); };
  t.after(async () => { release(0); release(2); ch.close(); await server.close(); });

  const a = await J.open(url);
  const token = (await a.next('session')).data['token'] as string;
  const f = await J.open(url);
  for (;;) {
    ch.postMessage(sab);
    if ((await f.call('ARMED', null)).data['armed'] === true) break;
  }
  a.c.ws.terminate(); // no close frame: the session waits for a resume
  await until('the session detached', () => server.stats().detached === 1);

  const r = J.open(`${url}?rw_resume=${token}&hold=1`);
  await until('the resume upgrade hook waiting', () => Atomics.load(gate, 1) === 1); // the worker waits in the resume's upgrade hook
  f.send('HOLD', null, 2);
  for (let i = 0; i < 60; i++) f.send('WORK', 'x'.repeat(100), 3);
  await until('a backlog in the overflow', () => server.stats().workers[0]!.overflowUsed > 0); // the ring is full: backlog
  release(0); // the upgrade completes; the worker then waits in HOLD, the backlog stays
  const rc = await r;
  const s = await rc.next('session');
  assert.equal(s.data['resumed'], true);
  await until('HOLD waiting', () => Atomics.load(gate, 3) === 1);
  const probe = rc.call('PROBE', null);
  const seen = server.stats().messagesIn;
  await until('PROBE in the server', () => server.stats().messagesIn > seen); // the I/O thread has queued PROBE
  release(2);
  assert.equal((await probe).data['resumed'], true, 'onResume ran before the first message of the resumed socket');
  assert.equal(server.stats().resumes, 1);
  await Promise.all([rc.c.close(), f.c.close()]);
});

/** The resume-order fixture on one worker, its label sink and its 'go' channel, closed after the test. */
async function startEdges(t: TestContext, extra: Record<string, unknown> = {}): Promise<{ server: Server; url: string; sink: LabelSink; go: () => void }> {
  const server = createServer({ modules: [fixture('resume-order.module'), fixture('rooms.module')], workers: 1, ...extra });
  const port = await server.listen(0, '127.0.0.1');
  const sink = new LabelSink('rw-test-resume-labels');
  const ch = new BroadcastChannel('rw-test-resume-go');
  t.after(async () => { ch.postMessage('go'); ch.close(); sink.close(); await server.close(); });
  return { server, url: `ws://127.0.0.1:${port}/resume-order`, sink, go: () => ch.postMessage('go') };
}

/**
 * A resume of `token` whose upgrade hook waits for the test's go() (`wait=1`), once that hook is
 * running; `deny`: the hook then refuses it (403).
 */
async function resumeInHook(url: string, token: string, sink: LabelSink, deny = false): Promise<Client> {
  const r = new Client(`${url}?rw_resume=${token}&wait=1`, deny ? { headers: { 'x-deny': '1' } } : undefined);
  await sink.until((l) => l.includes('waiting:upgrade'));
  return r;
}

/** A resumable connection: its socket, its session token and its handle. */
async function owner(url: string): Promise<{ a: J; token: string; handle: number }> {
  const a = await J.open(url);
  const token = (await a.next('session')).data['token'] as string;
  const handle = (await a.call('PROBE', null)).data['handle'] as number;
  return { a, token, handle };
}

/** The next `n` frames of `c` as tags: `bulk:i:bodyLength` for a bulk message, `CMD:ref` for a reply. */
async function tags(c: J, n: number): Promise<string[]> {
  const got: string[] = [];
  for (let i = 0; i < n; i++) {
    const m = await c.c.nextJson() as { cmd: string; data: Record<string, unknown>; ref?: number };
    got.push(m.cmd === 'bulk' ? `bulk:${String(m.data['i'])}:${String(m.data['body']).length}` : `${m.cmd}:${String(m.ref)}`);
  }
  return got;
}

/** A connection whose socket drops (1006) while `what` waits in its handler; resolves once detached. */
async function dropWhileWaiting(server: Server, sink: LabelSink, c: J, what: string): Promise<void> {
  await sink.until((l) => l.includes(`waiting:${what}`));
  const n = server.stats().detached;
  c.c.ws.terminate();
  await until(`the connection waiting in ${what} detached`, () => server.stats().detached !== n);
}

test('a resume upgrade in flight when its session ends (kicked by another bind) is closed 1011, and never takes over the freed fd', async (t) => {
  const { server, url, sink, go } = await startEdges(t);
  const a = await J.open(url);
  const token = (await a.next('session')).data['token'] as string;
  const handle = (await a.call('BIND', { uid: 'u' })).data['handle'] as number;
  a.c.ws.terminate();
  await until('the session detached', () => server.stats().detached === 1);
  const r = new J(await resumeInHook(url, token, sink));
  const k = await J.open(url);
  await k.call('BIND', { uid: 'u', policy: 'kick' });
  await sink.until((l) => l.includes(`disconnect:${handle}:4001`)); // the detached holder ends with the kick code
  go();
  const closed = await r.c.closed;
  assert.deepEqual(closed, { code: 1011, reason: 'session lost' });
  // The freed fd goes to new connections, which stay served after the refused resume is gone.
  const others = await Promise.all([J.open(url), J.open(url), J.open(url)]);
  for (const o of others) assert.equal(typeof (await o.call('PROBE', null)).data['handle'], 'number');
  assert.equal(server.stats().connections, 4);
  assert.equal(server.stats().liveFds, 4);
});

/** `c`'s next message, or how it closed: a socket closed under a pending call fails the test instead of hanging it. */
function nextOrClose(c: J, cmd: string): Promise<{ cmd: string; data: Record<string, unknown>; ref?: number } | { closed: { code: number; reason: string } }> {
  return Promise.race([c.next(cmd), c.c.closed.then((closed) => ({ closed }))]);
}

test('a resume refused by its upgrade hook leaves the live session alone: its socket stays open and keeps answering, onAway never runs', async (t) => {
  const { server, url, sink } = await startEdges(t);
  const { a, token, handle } = await owner(url);
  // Someone holding a copy of the token tries to resume while the owner's socket is alive.
  await assert.rejects(Client.open(`${url}?rw_resume=${token}`, { headers: { 'x-deny': '1' } }), (e: { statusCode?: number }) => e.statusCode === 403);
  a.send('PROBE', null);
  const r = await nextOrClose(a, 'PROBE');
  assert.ok(!('closed' in r), `the live socket was closed by a refused resume: ${JSON.stringify(r)}`);
  assert.equal(r.data['handle'], handle);
  const st = server.stats();
  assert.deepEqual([st.connections, st.detached, st.resumes, st.upgradesRejected], [1, 0, 0, 1]);
  assert.ok(!sink.labels.some((l) => l === `away:${handle}` || l.startsWith(`disconnect:${handle}:`)), sink.labels.join(' '));
  // The token was not spent by the refused attempt: the owner can still resume with it.
  a.c.ws.terminate();
  await until('the session detached', () => server.stats().detached === 1);
  const a2 = await J.open(`${url}?rw_resume=${token}`);
  assert.equal((await a2.next('session')).data['resumed'], true);
  assert.equal((await a2.call('PROBE', null)).data['handle'], handle);
  await a2.c.close();
});

test('while a resume\'s hook runs, what is addressed to the live session is held back; when the hook refuses, the old socket gets it all in order (its own replies too) and goes on both ways, nothing counted as dropped', async (t) => {
  const { server, url, sink, go } = await startEdges(t);
  const { a, token, handle } = await owner(url);
  const b = await J.open(url);
  const r = await resumeInHook(url, token, sink, true);
  await b.call('SEND_TO', { to: handle, n: 3, size: 10 });
  // The owner's own message on its old socket meanwhile is served (its reply waits with the rest).
  const seen = server.stats().messagesIn;
  a.send('SEND_TO', { to: handle, n: 1, size: 1 }, 9);
  await until('the old socket\'s message in the server', () => server.stats().messagesIn > seen);
  await b.call('PROBE', null); // one worker, in order: its answer comes after the old socket's message was handled
  go(); // the hook refuses: the session goes back to its old socket
  await assert.rejects(r.opened, (e: { statusCode?: number }) => e.statusCode === 403);
  const got = await tags(a, 5);
  assert.deepEqual(got, ['bulk:0:10', 'bulk:1:10', 'bulk:2:10', 'bulk:0:1', 'SEND_TO:9']);
  // Both ways, live again: a message from it is answered, a send to it arrives directly.
  await b.call('SEND_TO', { to: handle, n: 1, size: 2 });
  assert.equal(String((await a.next('bulk')).data['body']).length, 2);
  assert.equal((await a.call('PROBE', null)).data['handle'], handle);
  const st = server.stats();
  assert.deepEqual([st.connections, st.detached, st.resumes], [2, 0, 0]);
  assert.deepEqual([st.drops.resumeOverflow, st.drops.sessionEnded, st.drops.backpressure, st.drops.staleHandle], [0, 0, 0, 0]);
  assert.ok(!sink.labels.some((l) => l === `away:${handle}` || l.startsWith(`disconnect:${handle}:`)), sink.labels.join(' '));
  await a.c.close();
  await b.c.close();
});

test('a resume sent while the old socket still lives: that socket stays open while the resume\'s hook runs and is retired (1001) once the resume is accepted; what is addressed to the session meanwhile (its old socket\'s replies too) is replayed in order, per-worker counts stay true', async (t) => {
  const { server, url, sink, go } = await startEdges(t);
  const { a, token, handle } = await owner(url);
  const b = await J.open(url);
  // The client resumes before its old socket is gone (it thinks that one dropped)...
  const r = new J(await resumeInHook(url, token, sink));
  await b.call('SEND_TO', { to: handle, n: 3, size: 10 });
  const seen = server.stats().messagesIn;
  a.send('SEND_TO', { to: handle, n: 1, size: 1 }, 9);
  await until('the old socket\'s message in the server', () => server.stats().messagesIn > seen);
  await b.call('PROBE', null); // one worker, in order: its answer comes after the old socket's message was handled
  go();
  // ...and once it is accepted the old socket is retired, without a message of the meantime.
  assert.equal((await a.c.closed).code, 1001);
  assert.equal(a.pending('bulk').length + a.pending('SEND_TO').length, 0);
  const s = (await r.next('session')).data;
  assert.deepEqual([s['resumed'], s['recovered'], s['replayed']], [true, true, 5]);
  const got = await tags(r, 5);
  assert.deepEqual(got, ['bulk:0:10', 'bulk:1:10', 'bulk:2:10', 'bulk:0:1', 'SEND_TO:9']);
  assert.equal((await r.call('PROBE', null)).data['handle'], handle);
  const st = server.stats();
  assert.equal(st.connections, 2);
  assert.equal(st.liveFds, 2);
  assert.equal(st.detached, 0);
  assert.equal(st.workers[0]!.connections, 2, 'the retired socket is uncounted on its worker once');
  // onAway then onResume, as for a dropped socket; the session never ended.
  assert.deepEqual(sink.labels.filter((l) => l.endsWith(`:${handle}`) || l.startsWith(`resume:${handle}:`) || l.startsWith(`disconnect:${handle}:`)),
    [`away:${handle}`, `resume:${handle}:true:5`]);
  await r.c.close();
  await b.c.close();
});

test('the old socket drops (1006) while a resume of its session is in its hook: the session is detached as for any drop (onAway, the grace goes on) and the resume replays what came meanwhile', async (t) => {
  const { server, url, sink, go } = await startEdges(t);
  const { a, token, handle } = await owner(url);
  const b = await J.open(url);
  // Refused first: the session, detached by the drop, waits for the next resume.
  const r1 = await resumeInHook(url, token, sink, true);
  await b.call('SEND_TO', { to: handle, n: 2, size: 10 });
  a.c.ws.terminate();
  await sink.until((l) => l.includes(`away:${handle}`));
  assert.equal(server.stats().detached, 1);
  await b.call('SEND_TO', { to: handle, n: 1, size: 3 });
  go();
  await assert.rejects(r1.opened, (e: { statusCode?: number }) => e.statusCode === 403);
  assert.equal(server.stats().detached, 1);
  const r = await J.open(`${url}?rw_resume=${token}`);
  const s = (await r.next('session')).data;
  assert.deepEqual([s['resumed'], s['recovered'], s['replayed']], [true, true, 3]);
  const sizes: number[] = [];
  for (let i = 0; i < 3; i++) sizes.push(String((await r.next('bulk')).data['body']).length);
  assert.deepEqual(sizes, [10, 10, 3]);
  const st = server.stats();
  assert.deepEqual([st.connections, st.liveFds, st.detached, st.workers[0]!.connections], [2, 2, 0, 2]);
  assert.equal(sink.labels.filter((l) => l === `away:${handle}`).length, 1);
  assert.ok(!sink.labels.some((l) => l.startsWith(`disconnect:${handle}:`)));
  await r.c.close();
  await b.c.close();
});

test('the old socket closed normally (1000) while a resume of its session is in its hook ends the session at once, as without a resume: what waited for it is counted in drops.sessionEnded and the resume is closed 1011 session lost', async (t) => {
  const { server, url, sink, go } = await startEdges(t);
  const { a, token, handle } = await owner(url);
  const b = await J.open(url);
  const r = new J(await resumeInHook(url, token, sink));
  await b.call('SEND_TO', { to: handle, n: 2, size: 10 });
  a.c.ws.close(1000);
  await a.c.closed;
  await sink.until((l) => l.includes(`disconnect:${handle}:1000`));
  assert.equal(server.stats().drops.sessionEnded, 2);
  go();
  assert.deepEqual(await r.c.closed, { code: 1011, reason: 'session lost' });
  await assert.rejects(Client.open(`${url}?rw_resume=${token}`), (e: { statusCode?: number }) => e.statusCode === 410);
  assert.ok(!sink.labels.includes(`away:${handle}`));
  const st = server.stats();
  assert.deepEqual([st.connections, st.liveFds, st.detached, st.workers[0]!.connections], [1, 1, 0, 1]);
  await b.c.close();
});

test('a session whose resume is in its hook, ended meanwhile (its uid kicked), closes its still-open old socket with the kick code', async (t) => {
  const { server, url, sink, go } = await startEdges(t);
  const a = await J.open(url);
  const token = (await a.next('session')).data['token'] as string;
  const handle = (await a.call('BIND', { uid: 'u' })).data['handle'] as number;
  const r = new J(await resumeInHook(url, token, sink));
  const k = await J.open(url);
  await k.call('BIND', { uid: 'u', policy: 'kick' });
  assert.equal((await a.c.closed).code, 4001);
  await sink.until((l) => l.includes(`disconnect:${handle}:4001`));
  go();
  assert.deepEqual(await r.c.closed, { code: 1011, reason: 'session lost' });
  const st = server.stats();
  assert.deepEqual([st.connections, st.liveFds, st.detached, st.workers[0]!.connections], [1, 1, 0, 1]);
  await k.c.close();
});

test('a worker that dies while a resume of its live session is in its hook: the old socket gets what waited for it, then 1011 like every socket of that worker; the resume gets 503', async (t) => {
  const { server, url, sink } = await startEdges(t);
  const { a, token, handle } = await owner(url);
  const b = await J.open(url);
  const r = await resumeInHook(url, token, sink);
  await b.call('SEND_TO', { to: handle, n: 2, size: 10 });
  b.send('CRASH', null);
  await assert.rejects(r.opened, (e: { statusCode?: number }) => e.statusCode === 503);
  assert.deepEqual(await a.c.closed, { code: 1011, reason: 'worker died' });
  assert.deepEqual([(await a.next('bulk')).data['i'], (await a.next('bulk')).data['i']], [0, 1]);
  assert.equal((await b.c.closed).code, 1011);
  await until('every socket closed', () => server.stats().connections === 0);
  const st = server.stats();
  assert.deepEqual([st.liveFds, st.detached, st.drops.sessionEnded, st.drops.resumeOverflow], [0, 0, 0, 0]);
});

test('a TCP session whose resume is refused by its hook after publishes to its topic: the old TCP client gets each once, in order, and stays subscribed', async (t) => {
  const tcp = new TcpConnector({ port: 0, heartbeatMs: 30_000 });
  const { server, url, sink, go } = await startEdges(t, { connectors: [tcp] });
  const a = new TcpJson();
  await a.t.connect('127.0.0.1', tcp.port);
  assert.equal((await a.t.handshake('/resume-order')).code, 200);
  const token = (await a.next('session')).data['token'] as string;
  await a.call('SUB', { sub: ['news'] });
  const b = await J.open(url);
  const r = new TcpClient();
  await r.connect('127.0.0.1', tcp.port);
  const hs = r.handshake('/resume-order', `rw_resume=${token}&wait=1`, { 'x-deny': '1' });
  await sink.until((l) => l.includes('waiting:upgrade'));
  await b.call('PUB', { topic: 'news', msg: 1 });
  go();
  assert.equal((await hs).code, 403);
  await b.call('PUB', { topic: 'news', msg: 2 });
  assert.deepEqual([(await a.next('msg')).data, (await a.next('msg')).data], [1, 2]);
  assert.equal((await a.call('PROBE', null)).data['resumed'], false);
  assert.equal(a.pending('msg'), 0, 'no publish arrived twice');
  const st = server.stats();
  assert.deepEqual([st.connections, st.detached, st.resumes, st.drops.resumeOverflow, st.drops.sessionEnded], [2, 0, 0, 0, 0]);
  r.end();
  a.t.end();
  await b.c.close();
});

test('a TCP resume whose session ends while its hook runs is refused 410 RW_ERR_RESUME_TOKEN (session lost), as a WebSocket one is closed 1011 session lost, not 503', async (t) => {
  const tcp = new TcpConnector({ port: 0, heartbeatMs: 30_000 });
  const { server, url, sink, go } = await startEdges(t, { connectors: [tcp] });
  const a = new TcpJson();
  await a.t.connect('127.0.0.1', tcp.port);
  assert.equal((await a.t.handshake('/resume-order')).code, 200);
  const token = (await a.next('session')).data['token'] as string;
  const handle = (await a.call('BIND', { uid: 'u' })).data['handle'] as number;
  a.t.socket.destroy();
  await until('the session detached', () => server.stats().detached === 1);
  const a2 = new TcpJson();
  await a2.t.connect('127.0.0.1', tcp.port);
  const hs = a2.t.handshake('/resume-order', `rw_resume=${token}&wait=1`);
  await sink.until((l) => l.includes('waiting:upgrade'));
  const k = await J.open(url);
  await k.call('BIND', { uid: 'u', policy: 'kick' });
  await sink.until((l) => l.includes(`disconnect:${handle}:4001`));
  go();
  const r = await hs as { code: number; error?: string; message?: string };
  assert.equal(r.code, 410);
  assert.equal(JSON.stringify(r).includes('RW_ERR_RESUME_TOKEN'), true, JSON.stringify(r));
  assert.equal(server.stats().connections, 1);
  a2.t.end();
  await k.c.close();
});

test('a second resume of a session whose first resume is still in its hooks gets 409 (retry), not 410: the session is still there and the first resume succeeds', async (t) => {
  const { server, url, sink, go } = await startEdges(t);
  const a = await J.open(url);
  const token = (await a.next('session')).data['token'] as string;
  a.c.ws.terminate();
  await until('the session detached', () => server.stats().detached === 1);
  const r = new J(await resumeInHook(url, token, sink));
  await assert.rejects(Client.open(`${url}?rw_resume=${token}`), (e: { statusCode?: number }) => e.statusCode === 409);
  assert.equal(server.stats().drops.resumeRefused, 1);
  go();
  await r.c.opened;
  await sink.until((l) => l.some((x) => x.startsWith('resume:')));
  assert.equal((await r.call('PROBE', null)).data['resumed'], true);
  assert.equal(server.stats().detached, 0);
  await r.c.close();
});

test('a server at maxConnections still takes a dropped client back: its detached session holds its place, the resume is served, fresh upgrades still get 503', async (t) => {
  const { server, url } = await start({ maxConnections: 2 });
  t.after(() => server.close());
  const a = await J.open(url);
  const token = (await a.next('session')).data['token'] as string;
  const b = await J.open(url);
  await b.next('session');
  a.c.ws.terminate();
  await until('the session detached', () => server.stats().detached === 1);
  // Full: b is live and a's session holds the other place.
  await assert.rejects(Client.open(url), (e: { statusCode?: number }) => e.statusCode === 503);
  const r = await J.open(`${url}?rw_resume=${token}`);
  assert.equal((await r.next('session')).data['resumed'], true);
  await assert.rejects(Client.open(url), (e: { statusCode?: number }) => e.statusCode === 503);
  const st = server.stats();
  assert.equal(st.drops.connLimit, 2);
  assert.equal(st.connections, 2);
  assert.equal(st.liveFds, 2, 'the resume gave its temporary fd back');
  await Promise.all([r.c.close(), b.c.close()]);
});

test('a resume abandoned by its client while its hook runs stays under way until the hook answers: another resume of it gets 409, so aborting and retrying cannot start hooks without bound', async (t) => {
  const { server, url, sink, go } = await startEdges(t, { maxConnections: 2 });
  const a = await J.open(url);
  const token = (await a.next('session')).data['token'] as string;
  a.c.ws.terminate();
  await until('the session detached', () => server.stats().detached === 1);
  const r1 = await resumeInHook(url, token, sink);
  r1.ws.terminate(); // the client gives up while the hook runs
  await until('the resume orphaned', () => server.stats().orphanedUpgrades === 1);
  for (let i = 0; i < 3; i++) {
    await assert.rejects(Client.open(`${url}?rw_resume=${token}&wait=1`), (e: { statusCode?: number }) => e.statusCode === 409);
  }
  assert.equal(server.stats().orphanedUpgrades, 1, 'one hook at most per session');
  go(); // the hook answers: the session goes on (its grace) and can be resumed
  await until('the orphaned hook answered', () => server.stats().orphanedUpgrades === 0);
  const r = await J.open(`${url}?rw_resume=${token}`);
  assert.equal((await r.next('session')).data['resumed'], true);
  assert.equal(server.stats().drops.staleHandle, 0);
  await r.c.close();
});

test('a resume whose session ends while its hook runs counts against maxConnections like any upgrade', async (t) => {
  const { server, url, sink, go } = await startEdges(t, { maxConnections: 2 });
  const a = await J.open(url);
  const token = (await a.next('session')).data['token'] as string;
  const handle = (await a.call('BIND', { uid: 'u' })).data['handle'] as number;
  const k = await J.open(url);
  a.c.ws.terminate();
  await until('the session detached', () => server.stats().detached === 1);
  const r = new J(await resumeInHook(url, token, sink));
  // The session ends for good (its uid kicked); the resume's fd is now an upgrade like others.
  await k.call('BIND', { uid: 'u', policy: 'kick' });
  await sink.until((l) => l.includes(`disconnect:${handle}:4001`));
  await assert.rejects(Client.open(url), (e: { statusCode?: number }) => e.statusCode === 503);
  go();
  assert.deepEqual(await r.c.closed, { code: 1011, reason: 'session lost' });
  const b = await J.open(url);
  await b.next('session');
  assert.equal(server.stats().connections, 2);
  await b.c.close();
  await k.c.close();
});

test('a room left while detached: the session is no longer buffered for it (not after the resume, not after a later drop)', async (t) => {
  const { server, url, sink, go } = await startEdges(t);
  const a = await J.open(url);
  const token = (await a.next('session')).data['token'] as string;
  await a.call('JOIN', { room: 'x' });
  const b = await J.open(url);
  await b.call('JOIN', { room: 'x' });
  a.send('LEAVE', { room: 'x', wait: true });
  await dropWhileWaiting(server, sink, a, 'leave');
  go();
  await sink.until((l) => l.includes('done:leave'));
  const a2 = await J.open(`${url}?rw_resume=${token}`);
  const s2 = (await a2.next('session')).data;
  assert.equal(s2['resumed'], true);
  a2.c.ws.terminate();
  await until('the session detached', () => server.stats().detached === 1);
  for (let i = 0; i < 3; i++) await b.call('PUB', { topic: 'x', msg: i });
  const a3 = await J.open(`${url}?rw_resume=${s2['token'] as string}`);
  const s = (await a3.next('session')).data;
  assert.deepEqual([s['recovered'], s['replayed']], [true, 0], 'nothing of room x is replayed');
  await a3.c.close();
  for (let i = 0; i < 3; i++) await b.call('PUB', { topic: 'x', msg: i });
  assert.equal(server.stats().drops.resumeOverflow, 0, 'no phantom buffering for a session that is gone');
});

test('join, subscribe and unsubscribe made while detached hold after the resume: publishes meanwhile are replayed', async (t) => {
  const { server, url, sink, go } = await startEdges(t);
  const a = await J.open(url);
  const token = (await a.next('session')).data['token'] as string;
  await a.call('SUB', { sub: ['old'] });
  const b = await J.open(url);
  a.send('JOIN', { room: 'r', wait: true });
  await dropWhileWaiting(server, sink, a, 'join');
  go();
  await sink.until((l) => l.includes('done:join'));
  const a1 = await J.open(`${url}?rw_resume=${token}`);
  const token1 = (await a1.next('session')).data['token'] as string;
  a1.send('SUB', { sub: ['new'], unsub: ['old'], wait: true }, 2);
  await dropWhileWaiting(server, sink, a1, 'sub');
  go();
  await sink.until((l) => l.includes('done:sub'));
  for (const topic of ['r', 'old', 'new']) await b.call('PUB', { topic, msg: `to-${topic}` });
  const a2 = await J.open(`${url}?rw_resume=${token1}`);
  const s = (await a2.next('session')).data;
  assert.equal(s['recovered'], true);
  const got: unknown[] = [];
  for (let i = 0; i < 2; i++) got.push((await a2.next('msg')).data);
  assert.deepEqual(got, ['to-r', 'to-new']);
  assert.equal(server.stats().drops.staleHandle, 0);
});

test('a replay larger than the module\'s maxBackpressure is not sent with a gap: recovered false, every message counted', async (t) => {
  const { server, url } = await startEdges(t);
  const { a, token, handle } = await owner(url);
  a.c.ws.terminate();
  await until('the session detached', () => server.stats().detached === 1);
  const b = await J.open(url);
  await b.call('SEND_TO', { to: handle, n: 40, size: 4000 }); // 160 KB buffered, maxBackpressure 64 KiB
  const a2 = await J.open(`${url}?rw_resume=${token}`);
  const s = (await a2.next('session')).data;
  assert.deepEqual([s['resumed'], s['recovered'], s['replayed']], [true, false, 0]);
  assert.equal(server.stats().drops.resumeOverflow, 40);
  assert.equal(server.stats().drops.backpressure, 0);
});

test('a resume token only resumes on the path it was issued on', async (t) => {
  const { server, url } = await startEdges(t);
  const a = await J.open(url.replace('/resume-order', '/rooms'));
  const token = (await a.next('session')).data['token'] as string;
  a.c.ws.terminate();
  await until('the session detached', () => server.stats().detached === 1);
  const r = await refused(`${url}?rw_resume=${token}`);
  assert.equal(r.status, 410);
  assert.equal((JSON.parse(r.body) as { code: string }).code, 'RW_ERR_RESUME_TOKEN');
  assert.equal(server.stats().drops.resumeRefused, 1);
});

test('ctx.close() on a detached connection (from onAway) ends its session now: disconnect hook with the code, leave, no resume', async (t) => {
  const { server, url, sink } = await startWithSink(t);
  const { a, token, b } = await pair(url, 'nr', 'no-resume-1', 'bob');
  a.c.ws.terminate();
  await within('disconnect hook', sink.until((l) => l.includes('disconnect:no-resume-1:4000')));
  for (;;) {
    const m = await within('leave', b.next('presence_diff'));
    if ((m.data['leaves'] as { uid: string }[]).some((x) => x.uid === 'no-resume-1')) break;
  }
  assert.equal(server.stats().detached, 0);
  assert.equal(server.uidHandles('no-resume-1').length, 0);
  const r = await refused(`${url}?rw_resume=${token}`);
  assert.equal(r.status, 410);
  assert.equal(sink.labels.filter((l) => l.startsWith('disconnect:no-resume-1')).length, 1);
});

test('a sendAll while a resume of a live session is in its hook reaches that session once, through its buffer: the old socket gets it when the hook refuses, the resumed socket in its replay when it accepts', async (t) => {
  const { server, url, sink, go } = await startEdges(t);
  const { a, token, handle } = await owner(url);
  const b = await J.open(url);
  const hooks = (n: number): Promise<void> => sink.until((l) => l.filter((x) => x === 'waiting:upgrade').length === n);
  const next = async (c: J): Promise<string> => {
    const m = await within('the next message', c.c.nextJson()) as { cmd: string; data: Record<string, unknown> };
    return m.cmd === 'bulk' ? `bulk:${String(m.data['i'])}` : `${m.cmd}:${String(m.data['note'])}`;
  };
  const upTo = async (c: J, last: string): Promise<string[]> => {
    const got: string[] = [];
    while (got[got.length - 1] !== last) got.push(await next(c));
    return got;
  };

  // Refused: the old socket takes the session back and gets the sendAll, then what followed it.
  const r1 = new Client(`${url}?rw_resume=${token}&wait=1`, { headers: { 'x-deny': '1' } });
  await hooks(1);
  await b.call('ALL', { note: 's1' });
  // Fewer connections than a page: the page that sent b its copy is the one that reached a.
  assert.equal((await b.next('all')).data['note'], 's1');
  await b.call('SEND_TO', { to: handle, n: 1, size: 1 });
  go();
  await assert.rejects(r1.opened, (e: { statusCode?: number }) => e.statusCode === 403);
  assert.deepEqual(await upTo(a, 'bulk:0'), ['all:s1', 'bulk:0']);
  await b.call('ALL', { note: 'f1' });
  assert.equal(await next(a), 'all:f1', 'the old socket got s1 once');
  assert.equal((await b.next('all')).data['note'], 'f1');

  // Accepted: the old socket is retired (1001) without it; the resumed socket gets it in its replay.
  const r2 = new J(new Client(`${url}?rw_resume=${token}&wait=1`));
  await hooks(2);
  await b.call('ALL', { note: 's2' });
  assert.equal((await b.next('all')).data['note'], 's2');
  await b.call('SEND_TO', { to: handle, n: 1, size: 1 });
  go();
  assert.equal((await a.c.closed).code, 1001);
  const s = (await r2.next('session')).data;
  assert.deepEqual([s['recovered'], s['replayed']], [true, 2]);
  assert.deepEqual(await upTo(r2, 'bulk:0'), ['all:s2', 'bulk:0']);
  await b.call('ALL', { note: 'f2' });
  assert.equal(await next(r2), 'all:f2', 'the resumed socket got s2 once');
  const st = server.stats();
  assert.deepEqual([st.drops.resumeOverflow, st.drops.sessionEnded, st.detached], [0, 0, 0]);
  await r2.c.close();
  await b.c.close();
});

test('a sendAll over more connections than one page reaches a connection put back in the socket map mid-walk once: a held socket back after its resume was aborted, a resume that took over a live socket, a resume of a dropped one', async (t) => {
  // Memory clients are driven from the I/O thread's own loop: what a client does when its first
  // page delivers m1 (a continuation, run before the next page) happens between two pages.
  class Tap extends MemoryConnector {
    manager: ClientManager | null = null;
    override start(m: ClientManager): void {
      this.manager = m;
      super.start(m);
    }
  }
  const mem = new Tap();
  const { server, url } = await startEdges(t, { connectors: [mem] });
  const cmd = (m: MemoryMessage): { cmd: string; data: Record<string, unknown> } => JSON.parse(Buffer.from(m.data).toString()) as { cmd: string; data: Record<string, unknown> };
  const open = async (path: string, query = ''): Promise<{ c: MemoryClient; token: string }> => {
    const c = await mem.connect(path, query);
    return { c, token: String(cmd(await c.next()).data['token']) };
  };
  // x, y and z open first, so the first page of the walk reaches them; more than a page follows.
  const x = await open('/resume-order');
  const y = await open('/rooms');
  const z = await open('/rooms');
  for (let n = 0; n < 1536; n += 256) await Promise.all(Array.from({ length: 256 }, () => mem.connect('/rooms')));
  const b = await J.open(url);
  assert.ok(server.stats().connections > 1024 + 3, 'more connections than a page');

  const notes = async (c: MemoryClient): Promise<string[]> => {
    const seen: string[] = [];
    for (;;) {
      const m = cmd(await within('a message', c.next()));
      if (m.cmd !== 'all') continue;
      seen.push(String(m.data['note']));
      if (m.data['note'] === 'fence') return seen;
    }
  };
  const firstNote = async (c: MemoryClient): Promise<string> => String(cmd(await c.next()).data['note']);
  // x: a resume of its live session starts (its socket is held, out of the map) and its client
  // goes away at once (the socket is put back, at the end of the map).
  const xDone = firstNote(x.c).then((note) => {
    const gone: ConnectorClient = { remoteAddress: 'test', session: null, send: () => SendStatus.SUCCESS, close: () => undefined, bufferedAmount: () => 0 };
    const refused = mem.manager!.addClient(gone, { path: '/resume-order', query: `rw_resume=${x.token}` });
    mem.manager!.removeClient(gone, 1006, '');
    return refused.then((r) => [note, r.ok ? 'opened' : String(r.status)]);
  });
  // y: a resume of its live session (taken over at once: rooms has no upgrade hook).
  const yDone = firstNote(y.c).then((note) => [note, mem.connect('/rooms', `rw_resume=${y.token}`)] as const);
  // z: its client drops (1006: detached), then resumes.
  const zDone = firstNote(z.c).then((note) => {
    z.c.close(1006);
    return [note, mem.connect('/rooms', `rw_resume=${z.token}`)] as const;
  });
  await b.call('ALL', { note: 'm1', allModules: true });
  assert.deepEqual(await within('x\'s m1', xDone), ['m1', '499']);
  const [yNote, yOpening] = await within('y\'s m1', yDone);
  const [zNote, zOpening] = await within('z\'s m1', zDone);
  assert.deepEqual([yNote, zNote], ['m1', 'm1']);
  const [y2, z2] = [await yOpening, await zOpening];
  assert.equal((await y.c.closed).code, 1001);
  for (const c of [y2, z2]) {
    const f = cmd(await c.next());
    assert.deepEqual([f.cmd, f.data['resumed'], f.data['replayed']], ['session', true, 0]);
  }
  // The next sendAll starts once m1's walk is over: what came before it is all there was.
  await b.call('ALL', { note: 'fence', allModules: true });
  assert.deepEqual(await notes(x.c), ['fence'], 'the held socket put back mid-walk got m1 once');
  assert.deepEqual(await notes(y2), ['fence'], 'the live session resumed mid-walk got m1 once');
  assert.deepEqual(await notes(z2), ['fence'], 'the dropped session resumed mid-walk got m1 once');
  const st = server.stats();
  assert.deepEqual([st.drops.resumeOverflow, st.drops.sessionEnded, st.detached], [0, 0, 0]);
  await b.c.close();
});

test('a sendAll walking more detached sessions than one page: one resumed between its pages (its socket back in a map the walk has left) gets it in its replay, once; one still detached gets it on its resume', async (t) => {
  const mem = new MemoryConnector();
  const { server, url } = await startEdges(t, { connectors: [mem], modules: [fixture('resume-order.module'), fixture('resume-all.module')] });
  const cmd = (m: MemoryMessage): { cmd: string; data: Record<string, unknown> } => JSON.parse(Buffer.from(m.data).toString()) as { cmd: string; data: Record<string, unknown> };
  const open = async (): Promise<{ c: MemoryClient; token: string }> => {
    const c = await mem.connect('/resume-all');
    return { c, token: String(cmd(await c.next()).data['token']) };
  };
  // A live client whose m1 comes in the walk's first page, then more than a page of detached sessions.
  const live = await open();
  const away: { c: MemoryClient; token: string }[] = [];
  for (let n = 0; n < 1536; n += 256) away.push(...await Promise.all(Array.from({ length: 256 }, open)));
  for (const a of away) a.c.close(1006);
  assert.equal(server.stats().detached, away.length);
  const b = await J.open(url);
  // The last session detached is among the last the walk reaches: it resumes when the live client
  // has m1, before the walk's next page.
  const w = away[away.length - 1]!;
  const resumed = live.c.next().then((m) => [String(cmd(m).data['note']), mem.connect('/resume-all', `rw_resume=${w.token}`)] as const);
  await b.call('ALL', { note: 'm1', allModules: true });
  const [note, opening] = await within('the live client\'s m1', resumed);
  assert.equal(note, 'm1');
  const w2 = await opening;
  const replay = async (c: MemoryClient): Promise<string[]> => {
    const f = cmd(await within('a session frame', c.next()));
    assert.deepEqual([f.cmd, f.data['resumed'], f.data['recovered']], ['session', true, true]);
    const got: string[] = [];
    for (let i = 0; i < Number(f.data['replayed']); i++) got.push(String(cmd(await c.next()).data['note']));
    return got;
  };
  assert.deepEqual(await replay(w2), ['m1'], 'resumed between two pages of the walk of the detached sessions');
  // The next sendAll starts once m1's walk is over: w got m1 once.
  await b.call('ALL', { note: 'fence', allModules: true });
  assert.equal(String(cmd(await within('the fence', w2.next())).data['note']), 'fence');
  // One that stayed detached through the walk: m1 was buffered for it (the fence too).
  assert.deepEqual(await replay(await mem.connect('/resume-all', `rw_resume=${away[0]!.token}`)), ['m1', 'fence']);
  assert.equal(server.stats().drops.resumeOverflow, 0);
  await b.c.close();
});
