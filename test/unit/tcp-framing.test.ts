import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  SendStatus,
  type AddClientResult,
  type ClientManager,
  type ClientRequest,
  type ConnectorClient,
  type RouteTable,
} from '../../src/core/connector.js';
import {
  TCP_HEADER_BYTES,
  TcpClient,
  TcpConnector,
  TcpFrameDecoder,
  TcpFrameType,
  encodeTcpFrame,
  type TcpConnectorOptions,
  type TcpFrame,
} from '../../src/core/connectors/tcp.js';

const CHAT: RouteTable = { path: '/chat/:room', codec: 'binary', routes: { join: 1, say: 2 }, hash: 'c0ffee' };
const JSONY: RouteTable = { path: '/json', codec: 'json', routes: { ping: 1 }, hash: 'beef' };

/** Records every call; `until()` waits for a condition on the records (re-checked on each call). */
class FakeManager extends EventEmitter implements ClientManager {
  readonly added: { client: ConnectorClient; req: ClientRequest }[] = [];
  readonly settled: ConnectorClient[] = [];
  readonly msgs: { client: ConnectorClient; data: Buffer; binary: boolean }[] = [];
  readonly removed: { client: ConnectorClient; code: number; reason: string; settled: boolean }[] = [];
  readonly errors: { client: ConnectorClient | null; code: string; message: string }[] = [];
  readonly drains: ConnectorClient[] = [];
  readonly sent: number[] = [];
  /** When set, addClient waits for it (to hold a client in the pending state). */
  gate: Promise<void> | null = null;
  /** When set, sent to an accepted client before addClient resolves (an open hook that sends at once). */
  welcome: Uint8Array | null = null;
  #fd = 0;

  async addClient(client: ConnectorClient, req: ClientRequest): Promise<AddClientResult> {
    this.added.push({ client, req });
    this.#changed();
    if (this.gate !== null) await this.gate;
    this.settled.push(client);
    this.#changed();
    if (this.routes(req.path) === null) return { ok: false, status: 404, code: 'RW_ERR_NO_MODULE', message: 'no module' };
    const fd = ++this.#fd;
    const session = { fd, handle: fd + 0x1000000, path: req.path };
    client.session = session;
    if (this.welcome !== null) this.sent.push(client.send(this.welcome, true));
    return { ok: true, session };
  }

  handleMsg(client: ConnectorClient, data: Uint8Array, binary: boolean): void {
    this.msgs.push({ client, data: Buffer.from(data), binary });
    this.#changed();
  }

  removeClient(client: ConnectorClient, code: number, reason: string): void {
    this.removed.push({ client, code, reason, settled: this.settled.includes(client) });
    this.#changed();
  }

  drain(client: ConnectorClient): void {
    this.drains.push(client);
    this.#changed();
  }

  routes(path: string): RouteTable | null {
    if (path.startsWith('/chat/')) return CHAT;
    return path === '/json' ? JSONY : null;
  }

  reportError(client: ConnectorClient | null, code: string, message: string): void {
    this.errors.push({ client, code, message });
    this.#changed();
  }

  async until<T>(probe: () => T | undefined | false): Promise<T> {
    for (;;) {
      const v = probe();
      if (v !== undefined && v !== false) return v;
      await once(this, 'change');
    }
  }

  #changed(): void {
    this.emit('change');
  }
}

function frame(type: number, bytes: string | number[]): Buffer {
  return encodeTcpFrame(type, typeof bytes === 'string' ? Buffer.from(bytes) : Uint8Array.from(bytes));
}

function header(length: number, type: number): Buffer {
  const h = Buffer.alloc(TCP_HEADER_BYTES);
  h.writeUInt32BE(length, 0);
  h[4] = type;
  return h;
}

function plain(frames: readonly TcpFrame[]): { type: number; payload: string }[] {
  return frames.map((f) => ({ type: f.type, payload: f.payload.toString('hex') }));
}

function json(f: TcpFrame): Record<string, unknown> {
  return JSON.parse(f.payload.toString('utf8')) as Record<string, unknown>;
}

// ---- pure framing -------------------------------------------------------------------------

test('encodeTcpFrame: u32 BE length counts the type byte; decoder round-trips', () => {
  const f = frame(TcpFrameType.MESSAGE, [0xde, 0xad, 0xbe]);
  assert.deepEqual([...f], [0, 0, 0, 4, 2, 0xde, 0xad, 0xbe]);
  assert.deepEqual([...frame(TcpFrameType.HEARTBEAT, [])], [0, 0, 0, 1, 3]);
  const big = Buffer.alloc(70_000, 7);
  const d = new TcpFrameDecoder(100_000);
  const out = d.push(Buffer.concat([f, encodeTcpFrame(TcpFrameType.HANDSHAKE, big), frame(TcpFrameType.HEARTBEAT, [])]));
  assert.deepEqual(plain(out), [
    { type: 2, payload: 'deadbe' },
    { type: 1, payload: big.toString('hex') },
    { type: 3, payload: '' },
  ]);
  assert.equal(d.error, null);
  assert.equal(d.pendingBytes, 0);
});

test('decoder: every split point (and every pair of split points) of a stream yields the same frames', () => {
  const frames = [frame(2, 'hello'), frame(3, []), frame(1, '{"path":"/x"}'), frame(2, [0, 1, 2, 3, 4, 5, 6, 7, 8])];
  const stream = Buffer.concat(frames);
  const want = plain(new TcpFrameDecoder(64).push(stream));
  assert.equal(want.length, 4);
  for (let i = 0; i <= stream.length; i++) {
    const d = new TcpFrameDecoder(64);
    const got = [...d.push(stream.subarray(0, i)), ...d.push(stream.subarray(i))];
    assert.deepEqual(plain(got), want, `split at ${i}`);
    for (let j = i; j <= stream.length; j++) {
      const d2 = new TcpFrameDecoder(64);
      const got2 = [...d2.push(stream.subarray(0, i)), ...d2.push(stream.subarray(i, j)), ...d2.push(stream.subarray(j))];
      assert.deepEqual(plain(got2), want, `split at ${i}, ${j}`);
    }
  }
  const d = new TcpFrameDecoder(64);
  const byByte: TcpFrame[] = [];
  for (let i = 0; i < stream.length; i++) byByte.push(...d.push(stream.subarray(i, i + 1)));
  assert.deepEqual(plain(byByte), want);
});

test('decoder: a split frame is assembled into its own buffer, not a view of a reused chunk', () => {
  const f = frame(2, 'abcdef');
  const chunk = Buffer.from(f.subarray(0, 7));
  const d = new TcpFrameDecoder(64);
  assert.deepEqual(d.push(chunk), []);
  chunk.fill(0); // the socket's buffer is ours to keep, but the decoder must not depend on that
  const [out] = d.push(f.subarray(7));
  assert.equal(out?.payload.toString(), 'abcdef');
});

test('decoder: a header announcing a huge frame reserves memory by the bytes that arrived, not by the announced size', () => {
  const announced = 512 * 1024 * 1024;
  const d = new TcpFrameDecoder(1024 * 1024 * 1024);
  const before = process.memoryUsage().arrayBuffers;
  assert.deepEqual(d.push(Buffer.concat([header(1 + announced, TcpFrameType.MESSAGE), Buffer.alloc(10, 1)])), []);
  const grew = process.memoryUsage().arrayBuffers - before;
  assert.ok(grew < 16 * 1024 * 1024, `ArrayBuffers grew by ${grew} bytes after a 15-byte push`);
  assert.equal(d.allocatedBytes, 64 * 1024);
  assert.equal(d.pendingBytes, TCP_HEADER_BYTES + announced, 'the frame size is still known from its header');
  // Growth follows the data: twice what arrived at most.
  d.push(Buffer.alloc(100_000, 2));
  assert.ok(d.allocatedBytes >= 100_010 && d.allocatedBytes <= 2 * 100_010, String(d.allocatedBytes));
});

test('decoder: frames larger than the first allocation, split at random points, are assembled exactly (seeded fuzz)', () => {
  let seed = 0x2545f491;
  const rand = (n: number): number => {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const sizes = [0, 1, 5, 3000, 65_535, 65_536, 65_537, 131_073, 300_000];
  for (let iter = 0; iter < 40; iter++) {
    const frames: { type: number; payload: Buffer }[] = [];
    for (let i = 1 + rand(4); i > 0; i--) {
      const p = Buffer.allocUnsafe(sizes[rand(sizes.length)]!);
      for (let j = 0; j < p.length; j++) p[j] = rand(256);
      frames.push({ type: 1 + rand(4), payload: p });
    }
    const stream = Buffer.concat(frames.map((f) => encodeTcpFrame(f.type, f.payload)));
    const d = new TcpFrameDecoder(300_000);
    let i = 0;
    for (let off = 0; off < stream.length;) {
      const k = 1 + (rand(2) === 0 ? rand(7) : rand(150_000));
      const chunk = Buffer.from(stream.subarray(off, off + k));
      // Checked before the chunk is wiped (a frame wholly inside it is a view of it), but after
      // the earlier chunks were: a split frame must not depend on them.
      for (const f of d.push(chunk)) {
        assert.ok(i < frames.length, `iteration ${iter}: too many frames`);
        assert.equal(f.type, frames[i]!.type);
        assert.ok(f.payload.equals(frames[i]!.payload), `iteration ${iter} frame ${i} (${frames[i]!.payload.length} bytes)`);
        i++;
      }
      chunk.fill(0);
      off += k;
    }
    assert.equal(d.error, null);
    assert.equal(i, frames.length, `iteration ${iter}`);
    assert.equal(d.pendingBytes, 0);
  }
});

test('decoder: oversize is reported from the header alone, nothing buffered, frames before it kept', () => {
  const d = new TcpFrameDecoder(8);
  // Exactly the limit is fine (length = max + 1).
  assert.equal(d.push(frame(2, [1, 2, 3, 4, 5, 6, 7, 8])).length, 1);
  const before = frame(2, 'ok');
  const out = d.push(Buffer.concat([before, header(8 + 2, 2)])); // one byte over, no body sent
  assert.deepEqual(plain(out), [{ type: 2, payload: Buffer.from('ok').toString('hex') }]);
  assert.equal(d.error?.code, 'RW_ERR_TCP_FRAME_TOO_LARGE');
  assert.equal(d.pendingBytes, 0);
  assert.deepEqual(d.push(frame(2, 'later')), [], 'a failed decoder stays failed');

  // Header split across chunks: detected on the chunk that completes it.
  const d2 = new TcpFrameDecoder(1024);
  const h = header(0xffffffff, 2);
  assert.deepEqual(d2.push(h.subarray(0, 3)), []);
  assert.equal(d2.pendingBytes, 3);
  assert.deepEqual(d2.push(h.subarray(3)), []);
  assert.equal(d2.error?.code, 'RW_ERR_TCP_FRAME_TOO_LARGE');
  assert.equal(d2.pendingBytes, 0);
});

test('decoder: the first frame can have its own limit, even with later frames in the same chunk', () => {
  const d = new TcpFrameDecoder(4, 16);
  const out = d.push(Buffer.concat([frame(1, 'x'.repeat(16)), frame(2, 'abcd')]));
  assert.deepEqual(out.map((f) => f.payload.length), [16, 4]);
  assert.deepEqual(d.push(frame(2, 'abcde')), []);
  assert.equal(d.error?.code, 'RW_ERR_TCP_FRAME_TOO_LARGE');
  const first = new TcpFrameDecoder(64, 8);
  first.push(header(1 + 9, 1));
  assert.equal(first.error?.code, 'RW_ERR_TCP_FRAME_TOO_LARGE');
});

test('decoder: length 0 is a bad frame', () => {
  const d = new TcpFrameDecoder(64);
  const out = d.push(Buffer.concat([frame(3, []), header(0, 2), frame(2, 'x')]));
  assert.equal(out.length, 1);
  assert.equal(d.error?.code, 'RW_ERR_TCP_BAD_FRAME');
});

test('TcpConnector options are validated, naming the option', () => {
  assert.throws(() => new TcpConnector({} as TcpConnectorOptions), { name: 'TypeError', message: /options\.port/ });
  assert.throws(() => new TcpConnector({ port: 70000 }), { name: 'RangeError', message: /options\.port/ });
  assert.throws(() => new TcpConnector({ port: 0, host: '' }), { name: 'TypeError', message: /options\.host/ });
  assert.throws(() => new TcpConnector({ port: 0, heartbeatMs: 1.5 }), { name: 'TypeError', message: /options\.heartbeatMs/ });
  assert.throws(() => new TcpConnector({ port: 0, maxFrameBytes: 0 }), { name: 'RangeError', message: /options\.maxFrameBytes/ });
  assert.throws(() => new TcpConnector({ port: 0, handshakeTimeoutMs: 0 }), { name: 'RangeError', message: /options\.handshakeTimeoutMs/ });
  assert.throws(() => new TcpConnector({ port: 0, maxHandshakeBytes: 8 }), { name: 'RangeError', message: /options\.maxHandshakeBytes/ });
  assert.throws(() => new TcpConnector({ port: 0, maxBufferedBytes: -1 }), { name: 'RangeError', message: /options\.maxBufferedBytes/ });
  // A misspelt option is an error (as createServer's), not a default silently kept: TypeScript
  // only flags it in an object literal written at the call.
  const opts = { port: 0, heartbeatMS: 5000 };
  assert.throws(() => new TcpConnector(opts), { name: 'TypeError', message: 'options.heartbeatMS is not an option (did you mean heartbeatMs?)' });
});

// ---- connector over real sockets ----------------------------------------------------------

interface Rig {
  manager: FakeManager;
  connector: TcpConnector;
  /** A connected TcpClient, ended and awaited when the test finishes. */
  client(): Promise<TcpClient>;
  /** A client past a successful handshake, with the server's view of it. */
  accepted(path?: string): Promise<{ c: TcpClient; server: ConnectorClient }>;
}

async function rig(t: TestContext, options: Partial<TcpConnectorOptions> = {}): Promise<Rig> {
  const manager = new FakeManager();
  const connector = new TcpConnector({ port: 0, ...options });
  await connector.start(manager);
  assert.ok(connector.port > 0);
  const clients: TcpClient[] = [];
  t.after(async () => {
    await connector.stop();
    for (const c of clients) c.end();
    await Promise.all(clients.map((c) => c.closed));
  });
  const client = async (): Promise<TcpClient> => {
    const c = new TcpClient();
    clients.push(c);
    await c.connect('127.0.0.1', connector.port);
    return c;
  };
  const accepted = async (path = '/chat/lobby'): Promise<{ c: TcpClient; server: ConnectorClient }> => {
    const c = await client();
    const n = manager.added.length;
    const reply = await c.handshake(path);
    assert.equal(reply.code, 200);
    return { c, server: manager.added[n]!.client };
  };
  return { manager, connector, client, accepted };
}

const T = { timeout: 10_000 };

test('handshake: reply carries session, routes, route hash, codec and heartbeat', T, async (t) => {
  const { manager, client } = await rig(t, { heartbeatMs: 1234 });
  const c = await client();
  const reply = await c.handshake('/chat/lobby', 'a=1', { 'X-Token': 'abc' });
  assert.deepEqual(reply, {
    code: 200, session: { fd: 1, handle: 1 + 0x1000000 }, routes: { join: 1, say: 2 }, routeHash: 'c0ffee', codec: 'binary', heartbeat: 1234,
  });
  const { client: server, req } = manager.added[0]!;
  assert.deepEqual({ ...req, headers: { ...req.headers } }, { path: '/chat/lobby', query: 'a=1', headers: { 'x-token': 'abc' } });
  assert.equal(server.session?.fd, 1);
  assert.equal(server.remoteAddress, '127.0.0.1');
});

test('refused handshake: the error reply, then close; removeClient once', T, async (t) => {
  const { manager, client } = await rig(t);
  const c = await client();
  assert.deepEqual(await c.handshake('/nowhere'), { code: 404, error: 'RW_ERR_NO_MODULE', message: 'no module' });
  await c.closed;
  const removed = await manager.until(() => manager.removed.length > 0 && manager.removed);
  assert.deepEqual(removed.map((r) => [r.client === manager.added[0]!.client, r.code]), [[true, 1008]]);
});

test('messages reach handleMsg with binary = codec !== json; server send() reaches the client', T, async (t) => {
  const { manager, accepted } = await rig(t);
  const a = await accepted('/chat/lobby');
  const j = await accepted('/json');
  a.c.send(Buffer.from([1, 2, 3]));
  j.c.send(Buffer.from('{"e":"ping"}'));
  a.c.send(Buffer.alloc(0));
  const msgs = await manager.until(() => manager.msgs.length >= 3 && manager.msgs);
  const of = (s: ConnectorClient) => msgs.filter((m) => m.client === s).map((m) => [m.data.toString('hex'), m.binary]);
  assert.deepEqual(of(a.server), [['010203', true], ['', true]]);
  assert.deepEqual(of(j.server), [[Buffer.from('{"e":"ping"}').toString('hex'), false]]);

  assert.equal(a.server.send(Uint8Array.from([9, 8]), true), SendStatus.SUCCESS);
  const got = await a.c.next();
  assert.deepEqual({ type: got.type, payload: [...got.payload] }, { type: TcpFrameType.MESSAGE, payload: [9, 8] });
  assert.equal(a.server.bufferedAmount(), 0);
});

test('heartbeat is echoed', T, async (t) => {
  const { accepted } = await rig(t);
  const { c } = await accepted();
  c.heartbeat();
  const f = await c.next();
  assert.equal(f.type, TcpFrameType.HEARTBEAT);
  assert.equal(f.payload.length, 0);
});

test('a silent client is dropped after 2 x heartbeat; one that heartbeats is kept', T, async (t) => {
  const heartbeatMs = 100;
  const { manager, client } = await rig(t, { heartbeatMs });
  const alive = await client();
  await alive.handshake('/chat/a');
  const keep = setInterval(() => alive.heartbeat(), heartbeatMs / 4);
  t.after(() => clearInterval(keep));

  const silent = await client();
  const t0 = performance.now(); // before its last frame (the handshake), so before the server's idle clock starts
  await silent.handshake('/chat/b');
  const server = manager.added[1]!.client;
  await silent.closed;
  // Not dropped early: a lower bound only (how late the sweep runs is the machine's business).
  const elapsed = performance.now() - t0;
  assert.ok(elapsed >= 2 * heartbeatMs, `dropped after ${elapsed} ms`);
  const removed = await manager.until(() => manager.removed.find((r) => r.client === server));
  assert.deepEqual({ code: removed.code, reason: removed.reason }, { code: 1006, reason: 'heartbeat timeout' });
  assert.deepEqual(manager.errors.map((e) => [e.code, e.client === server]), [['RW_ERR_TCP_HEARTBEAT', true]]);
  // The idle time the server measured for the silent client is past its 2 x heartbeat limit.
  const idle = /^no frame for (\d+) ms$/.exec(manager.errors[0]!.message);
  assert.ok(idle !== null && Number(idle[1]) >= 2 * heartbeatMs, manager.errors[0]!.message);

  // The heartbeating client outlived it and still works.
  clearInterval(keep);
  alive.send(Buffer.from('still here'));
  await manager.until(() => manager.msgs.find((m) => m.data.toString() === 'still here'));
  assert.equal(manager.removed.length, 1);
});

test('garbage closes only that connection, with a typed reportError', T, async (t) => {
  const { manager, client, accepted } = await rig(t);
  const good = await accepted();
  const bad = await accepted();

  bad.c.socket.write(frame(9, 'junk'));
  const kick = await bad.c.next();
  assert.equal(kick.type, TcpFrameType.KICK);
  assert.deepEqual(json(kick), { code: 1002, reason: 'unexpected frame type 9', error: 'RW_ERR_TCP_BAD_FRAME' });
  await bad.c.closed;
  // Every frame taken: next() rejects with a stable code and the kick's close.
  await assert.rejects(bad.c.next(), { name: 'ClientClosedError', code: 'RW_ERR_CLIENT_CLOSED', closeCode: 1002, reason: 'unexpected frame type 9' });
  const removed = await manager.until(() => manager.removed.find((r) => r.client === bad.server));
  assert.equal(removed.code, 1002);
  assert.deepEqual(manager.errors.map((e) => [e.code, e.client === bad.server]), [['RW_ERR_TCP_BAD_FRAME', true]]);

  // Before the handshake: a message frame, then a handshake that is not JSON.
  const early = await client();
  early.socket.write(frame(TcpFrameType.MESSAGE, 'hi'));
  assert.deepEqual(json(await early.next()), { code: 400, error: 'RW_ERR_TCP_BAD_FRAME', message: 'expected a handshake frame, got type 2' });
  await early.closed;
  const notJson = await client();
  notJson.socket.write(frame(TcpFrameType.HANDSHAKE, '{path:'));
  assert.deepEqual(json(await notJson.next()), { code: 400, error: 'RW_ERR_TCP_BAD_FRAME', message: 'handshake payload is not JSON' });
  await notJson.closed;
  assert.deepEqual(manager.errors.map((e) => e.code), ['RW_ERR_TCP_BAD_FRAME', 'RW_ERR_TCP_BAD_FRAME', 'RW_ERR_TCP_BAD_FRAME']);
  assert.equal(manager.added.length, 2, 'the core never saw the clients that failed before the handshake');

  good.c.send(Buffer.from('fine'));
  const msg = await manager.until(() => manager.msgs.find((m) => m.client === good.server));
  assert.equal(msg.data.toString(), 'fine');
  assert.equal(manager.removed.length, 1);
});

test('a frame over maxFrameBytes is refused from its header: FRAME_TOO_LARGE, kick 1009', T, async (t) => {
  const { manager, accepted } = await rig(t, { maxFrameBytes: 16 });
  const { c, server } = await accepted();
  c.send(Buffer.alloc(16, 1)); // at the limit: fine
  await manager.until(() => manager.msgs.length === 1);
  c.socket.write(header(1 + 17, TcpFrameType.MESSAGE)); // the body is never sent
  const kick = await c.next();
  assert.equal(kick.type, TcpFrameType.KICK);
  assert.equal(json(kick).code, 1009);
  assert.equal(json(kick).error, 'RW_ERR_TCP_FRAME_TOO_LARGE');
  await c.closed;
  assert.deepEqual(manager.errors.map((e) => [e.code, e.client === server]), [['RW_ERR_TCP_FRAME_TOO_LARGE', true]]);
  const removed = await manager.until(() => manager.removed.length > 0 && manager.removed);
  assert.deepEqual(removed.map((r) => [r.client === server, r.code]), [[true, 1009]]);
});

test('TcpClient.next() pending when the connection closes without a kick rejects with RW_ERR_CLIENT_CLOSED, close 1006', T, async (t) => {
  const { accepted } = await rig(t);
  const { c } = await accepted();
  const pending = c.next();
  c.socket.destroy();
  await assert.rejects(pending, { name: 'ClientClosedError', code: 'RW_ERR_CLIENT_CLOSED', closeCode: 1006, reason: '' });
  await assert.rejects(c.next(), { code: 'RW_ERR_CLIENT_CLOSED' });
});

test('zero-length frame after the handshake: BAD_FRAME', T, async (t) => {
  const { manager, accepted } = await rig(t);
  const { c } = await accepted();
  c.socket.write(header(0, 2));
  const kick = json(await c.next());
  assert.deepEqual([kick.code, kick.error], [1002, 'RW_ERR_TCP_BAD_FRAME']);
  await c.closed;
  assert.deepEqual(manager.errors.map((e) => e.code), ['RW_ERR_TCP_BAD_FRAME']);
});

test('no handshake within handshakeTimeoutMs: 408 reply, HANDSHAKE error, core never involved', T, async (t) => {
  const handshakeTimeoutMs = 100;
  const { manager, client } = await rig(t, { handshakeTimeoutMs });
  const t0 = performance.now();
  const c = await client();
  c.socket.write(header(20, TcpFrameType.HANDSHAKE)); // a partial handshake does not stop the clock
  const reply = json(await c.next());
  await c.closed;
  const elapsed = performance.now() - t0;
  assert.ok(elapsed >= handshakeTimeoutMs, `closed after ${elapsed} ms`);
  assert.equal(reply.code, 408);
  assert.equal(reply.error, 'RW_ERR_TCP_HANDSHAKE');
  assert.deepEqual(manager.errors.map((e) => e.code), ['RW_ERR_TCP_HANDSHAKE']);
  assert.equal(manager.added.length, 0);
  assert.equal(manager.removed.length, 0);
});

test('a handshake over maxHandshakeBytes is refused as soon as its header is read', T, async (t) => {
  const { manager, client } = await rig(t, { maxHandshakeBytes: 64 });
  const c = await client();
  c.socket.write(header(1 + 60, TcpFrameType.HANDSHAKE)); // 5 + 60 > 64; body never sent
  const reply = json(await c.next());
  assert.deepEqual([reply.code, reply.error], [413, 'RW_ERR_TCP_HANDSHAKE']);
  await c.closed;
  assert.deepEqual(manager.errors.map((e) => e.code), ['RW_ERR_TCP_HANDSHAKE']);
});

test('frames pipelined behind the handshake are handled after the client is accepted', T, async (t) => {
  const { manager, client } = await rig(t);
  let open!: () => void;
  manager.gate = new Promise((r) => { open = r; });
  const c = await client();
  c.socket.write(Buffer.concat([
    frame(TcpFrameType.HANDSHAKE, '{"path":"/chat/x"}'), frame(TcpFrameType.MESSAGE, 'one'), frame(TcpFrameType.HEARTBEAT, []),
  ]));
  c.send(Buffer.from('two'));
  await manager.until(() => manager.added.length === 1);
  assert.equal(manager.msgs.length, 0, 'nothing reaches handleMsg while addClient is pending');
  open();
  assert.equal((await c.next()).type, TcpFrameType.HANDSHAKE);
  assert.equal((await c.next()).type, TcpFrameType.HEARTBEAT);
  const msgs = await manager.until(() => manager.msgs.length === 2 && manager.msgs);
  assert.deepEqual(msgs.map((m) => m.data.toString()), ['one', 'two']);
});

test('removeClient exactly once: peer gone (1006), server close (its code), close while addClient pending', T, async (t) => {
  const { manager, client, accepted } = await rig(t);
  const countFor = (s: ConnectorClient) => manager.removed.filter((r) => r.client === s).length;

  const gone = await accepted();
  gone.c.end();
  const r1 = await manager.until(() => manager.removed.find((r) => r.client === gone.server));
  assert.deepEqual([r1.code, r1.reason], [1006, '']);

  const kicked = await accepted();
  kicked.server.close(4001, 'bye');
  kicked.server.close(4002, 'again'); // ignored
  assert.equal(kicked.server.send(Uint8Array.of(1), true), SendStatus.DROPPED);
  const kick = await kicked.c.next();
  assert.equal(kick.type, TcpFrameType.KICK);
  assert.deepEqual(json(kick), { code: 4001, reason: 'bye' });
  await kicked.c.closed;
  const r2 = await manager.until(() => manager.removed.find((r) => r.client === kicked.server));
  assert.deepEqual([r2.code, r2.reason], [4001, 'bye']);

  const probe = await accepted();
  let open!: () => void;
  manager.gate = new Promise((r) => { open = r; });
  const pending = await client();
  pending.socket.write(frame(TcpFrameType.HANDSHAKE, '{"path":"/chat/p"}'));
  const { client: ps } = await manager.until(() => manager.added[3]);
  pending.socket.resetAndDestroy(); // RST: seen by the server even though it paused that socket
  await pending.closed;
  // Removed at once, while addClient is still pending (the core aborts the upgrade then).
  const r3 = await manager.until(() => manager.removed.find((r) => r.client === ps));
  assert.deepEqual([r3.code, r3.settled], [1006, false], 'removed before addClient settled');
  open();
  await manager.until(() => manager.settled.includes(ps));

  // Later traffic: any duplicate removal would have surfaced by now.
  probe.c.send(Buffer.from('x'));
  await manager.until(() => manager.msgs.find((m) => m.client === probe.server));
  assert.deepEqual([countFor(gone.server), countFor(kicked.server), countFor(ps), countFor(probe.server)], [1, 1, 1, 0]);
});

test('send(): BACKPRESSURE once the kernel buffers fill, DROPPED beyond maxBufferedBytes', T, async (t) => {
  const maxBufferedBytes = 256 * 1024;
  const { accepted } = await rig(t, { maxBufferedBytes });
  const { c, server } = await accepted();
  c.socket.pause();
  const chunk = new Uint8Array(64 * 1024);
  const seen: number[] = [];
  for (let i = 0; i < 10_000; i++) {
    const s = server.send(chunk, true);
    if (seen.at(-1) !== s) seen.push(s);
    if (s === SendStatus.DROPPED) break;
  }
  assert.deepEqual(seen, [SendStatus.SUCCESS, SendStatus.BACKPRESSURE, SendStatus.DROPPED]);
  assert.ok(server.bufferedAmount() > maxBufferedBytes);
  c.socket.destroy();
});

test('drain: after a send() that returned BACKPRESSURE, manager.drain once the write queue is empty; none without backpressure', T, async (t) => {
  const { manager, accepted } = await rig(t, { maxBufferedBytes: 64 * 1024 * 1024 });
  // Without backpressure: a small send the kernel takes at once, then a round trip.
  const quiet = await accepted();
  assert.equal(quiet.server.send(new Uint8Array(10), true), SendStatus.SUCCESS);
  await quiet.c.next();
  quiet.c.send(Buffer.from('ping'));
  await manager.until(() => manager.msgs.find((m) => m.client === quiet.server));

  const { c, server } = await accepted();
  c.socket.pause();
  const chunk = new Uint8Array(64 * 1024);
  let sent = 0;
  while (server.send(chunk, true) !== SendStatus.BACKPRESSURE) sent++;
  sent++;
  // More sends while backpressured: still one drain for the episode.
  for (let i = 0; i < 4; i++) assert.equal(server.send(chunk, true), SendStatus.BACKPRESSURE);
  sent += 4;
  assert.deepEqual(manager.drains, []);
  c.socket.resume();
  for (let i = 0; i < sent; i++) assert.equal((await c.next()).type, TcpFrameType.MESSAGE);
  await manager.until(() => manager.drains.length > 0);
  assert.equal(server.bufferedAmount(), 0);
  // A round trip after it: no second drain, none for the quiet client.
  c.send(Buffer.from('after'));
  await manager.until(() => manager.msgs.find((m) => m.client === server));
  assert.deepEqual(manager.drains, [server]);
});

test('stop(): no new connections; clients still owing a handshake get 503', T, async (t) => {
  const { manager, connector, client, accepted } = await rig(t);
  const waiting = await client();
  // The kernel's accept queue is FIFO: once a later client has been served, `waiting` was accepted.
  const live = await accepted();
  await connector.stop();
  const reply = json(await waiting.next());
  assert.deepEqual([reply.code, reply.error], [503, 'RW_ERR_SERVER_STATE']);
  await waiting.closed;
  const refused = connect({ host: '127.0.0.1', port: connector.port });
  const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNREFUSED');
  // Accepted clients are the core's to close; they keep working.
  live.c.send(Buffer.from('after stop'));
  await manager.until(() => manager.msgs.find((m) => m.data.toString() === 'after stop'));
  live.server.close(1001, 'server closing');
  await live.c.closed;
});

test('stop() while a client awaits its hooks: accepted afterwards, it gets 503 and is removed with 1001', T, async (t) => {
  const { manager, connector, client } = await rig(t);
  let open!: () => void;
  manager.gate = new Promise((r) => { open = r; });
  const c = await client();
  c.socket.write(frame(TcpFrameType.HANDSHAKE, '{"path":"/chat/late"}'));
  const { client: server } = await manager.until(() => manager.added[0]);
  await connector.stop();
  open();
  const reply = json(await c.next());
  assert.deepEqual([reply.code, reply.error], [503, 'RW_ERR_SERVER_STATE']);
  await c.closed;
  const removed = await manager.until(() => manager.removed.length > 0 && manager.removed);
  assert.deepEqual(removed.map((r) => [r.client === server, r.code]), [[true, 1001]]);
});

test('a message the core sends before addClient resolves follows the handshake reply', T, async (t) => {
  const { manager, client } = await rig(t);
  manager.welcome = Uint8Array.of(7, 7);
  const c = await client();
  c.socket.write(Buffer.concat([frame(TcpFrameType.HANDSHAKE, '{"path":"/chat/w"}'), frame(TcpFrameType.MESSAGE, 'after')]));
  const reply = await c.next();
  assert.equal(json(reply).code, 200);
  const welcome = await c.next();
  assert.deepEqual({ type: welcome.type, payload: [...welcome.payload] }, { type: TcpFrameType.MESSAGE, payload: [7, 7] });
  assert.deepEqual(manager.sent, [SendStatus.SUCCESS]);
  const msg = await manager.until(() => manager.msgs[0]);
  assert.equal(msg.data.toString(), 'after');
  assert.ok(manager.settled.includes(msg.client));
});
