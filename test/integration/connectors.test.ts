/**
 * Connectors (issue #7): one module serves WebSocket, raw TCP and in-memory clients through
 * the same fd allocator, workers and hooks; a publish reaches all of them; TCP handshake,
 * heartbeat and frame errors against the real core.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import diagnostics from 'node:diagnostics_channel';
import { once } from 'node:events';
import { BroadcastChannel } from 'node:worker_threads';
import { createServer, type Server } from '../../src/core/server.js';
import { TcpClient, TcpConnector, TcpFrameType, encodeTcpFrame, type TcpHandshakeReply } from '../../src/core/connectors/tcp.js';
import { MemoryConnector, MemoryConnectError } from '../../src/core/connectors/memory.js';
import { SendStatus, type ClientManager, type Connector, type ConnectorClient } from '../../src/core/connector.js';
import { decodeFrame, encodeFrame } from '../../src/shared/wire.js';
import { Client, LabelSink, fixture, of, until, within } from '../helpers.js';

let server: Server;
let port: number;
let sink: LabelSink;
const tcp = new TcpConnector({ port: 0, heartbeatMs: 30_000 });
const tcpFast = new TcpConnector({ port: 0, heartbeatMs: 150, maxFrameBytes: 1024 });
const mem = new MemoryConnector();

before(async () => {
  sink = new LabelSink('rw-test-labels');
  server = createServer({
    modules: [fixture('order-a.module'), fixture('order-b.module'), fixture('tools.module')],
    hooks: fixture('order.hooks'),
    workers: 2,
    connectors: [tcp, tcpFast, mem],
  });
  port = await server.listen(0, '127.0.0.1');
});

after(async () => {
  await server.close();
  sink.close();
});

const ORDER = [
  'GLOBAL onUpgrade', 'EVENT onUpgrade',
  'GLOBAL onConnect', 'EVENT onConnect',
  'GLOBAL onReceived', 'EVENT onReceived', 'EVENT preHandler[0]', 'EVENT preHandler[1]', 'EVENT handler',
  'GLOBAL onDisconnect', 'EVENT onDisconnect',
];

async function tcpClient(c: TcpConnector = tcp): Promise<TcpClient> {
  const t = new TcpClient();
  await t.connect('127.0.0.1', c.port);
  return t;
}

async function tcpNextMessage(t: TcpClient): Promise<{ event: string; ref: number; text: string }> {
  for (;;) {
    const f = await t.next();
    if (f.type !== TcpFrameType.MESSAGE) continue;
    const w = decodeFrame(new Uint8Array(f.payload));
    return { event: w.event, ref: w.ref, text: Buffer.from(w.payload).toString() };
  }
}

test('the same hook order for a WebSocket, a TCP and an in-memory client of one module', async () => {
  const pick = of('/a');
  // WebSocket
  sink.labels.length = 0;
  const ws = await Client.open(`ws://127.0.0.1:${port}/a`);
  assert.equal((await ws.call('HELLO', 'hi', 7)).ref, 7);
  await ws.close();
  await sink.until((l) => pick(l).includes('EVENT onDisconnect'));
  assert.deepEqual(pick(sink.labels), ORDER);

  // TCP
  sink.labels.length = 0;
  const t = await tcpClient();
  const hs = await t.handshake('/a');
  assert.equal(hs.code, 200);
  t.send(encodeFrame({ event: 'HELLO', ref: 8, payload: 'hi' }));
  const r = await tcpNextMessage(t);
  assert.deepEqual([r.event, r.ref], ['HELLO', 8]);
  assert.deepEqual(JSON.parse(r.text).userData, { who: 'event', fromGlobal: true });
  t.end();
  await sink.until((l) => pick(l).includes('EVENT onDisconnect'));
  assert.deepEqual(pick(sink.labels), ORDER);

  // in-memory
  sink.labels.length = 0;
  const m = await mem.connect('/a');
  m.send(encodeFrame({ event: 'HELLO', ref: 9, payload: 'hi' }));
  const mr = decodeFrame((await m.next()).data);
  assert.deepEqual([mr.event, mr.ref], ['HELLO', 9]);
  m.close();
  await sink.until((l) => pick(l).includes('EVENT onDisconnect'));
  assert.deepEqual(pick(sink.labels), ORDER);
});

test('TCP handshake: route table of the module, its hash, the heartbeat; the fd comes from the shared allocator', async () => {
  const t = await tcpClient();
  const reply = await t.handshake('/t');
  assert.equal(reply.code, 200);
  const hs = reply as Extract<TcpHandshakeReply, { code: 200 }>;
  const desc = server.moduleDescriptors.find((d) => d.path === '/t')!;
  assert.deepEqual(Object.keys(hs.routes), desc.events);
  assert.deepEqual(Object.values(hs.routes), desc.events.map((_e, i) => i + 1));
  assert.match(hs.routeHash, /^[0-9a-f]{16}$/);
  assert.equal(hs.heartbeat, 30_000);
  const again = await tcpClient();
  const hs2 = await again.handshake('/t');
  assert.equal((hs2 as typeof hs).routeHash, hs.routeHash);
  // Numeric event ids from the table work.
  t.send(encodeFrame({ event: '', eventId: hs.routes['ECHO']!, ref: 3, payload: 'by id' }));
  assert.equal((await tcpNextMessage(t)).text, 'by id');
  const conns = server.connections().filter((c) => c.transport === 'tcp');
  assert.equal(conns.length, 2);
  assert.ok(conns.some((c) => c.handle === hs.session.handle));
  // An unknown path is refused with a typed error.
  const bad = await tcpClient();
  const no = await bad.handshake('/nope');
  assert.equal(no.code, 404);
  assert.equal((no as { error: string }).error, 'RW_ERR_NO_MODULE');
  t.end();
  again.end();
  await bad.closed;
});

test('a publish reaches WebSocket, TCP and in-memory subscribers alike', async () => {
  const ws = await Client.open(`ws://127.0.0.1:${port}/t`);
  const t = await tcpClient();
  await t.handshake('/t');
  const m = await mem.connect('/t');
  assert.equal((await ws.call('SUB', 'news')).text, 'ok');
  t.send(encodeFrame({ event: 'SUB', ref: 1, payload: 'news' }));
  assert.equal((await tcpNextMessage(t)).text, 'ok');
  m.send(encodeFrame({ event: 'SUB', ref: 1, payload: 'news' }));
  assert.equal(Buffer.from(decodeFrame((await m.next()).data).payload).toString(), 'ok');
  assert.equal(server.subscribers('news'), 3);

  // From a TCP client: everyone subscribed gets it (uWS publishes reach connector clients too).
  t.send(encodeFrame({ event: 'PUB', payload: 'news:from tcp' }));
  assert.equal((await ws.next()).text, 'from tcp');
  assert.equal((await tcpNextMessage(t)).text, 'from tcp');
  assert.equal(Buffer.from(decodeFrame((await m.next()).data).payload).toString(), 'from tcp');
  // From a WebSocket client.
  ws.emit('PUB', 'news:from ws');
  assert.equal((await ws.next()).text, 'from ws');
  assert.equal((await tcpNextMessage(t)).text, 'from ws');
  assert.equal(Buffer.from(decodeFrame((await m.next()).data).payload).toString(), 'from ws');
  await ws.close();
  t.end();
  m.close();
});

test('TCP: garbage and oversized frames close only that connection, with a typed error in stats; a silent client is dropped after 2x heartbeat', async () => {
  const before = server.stats().connectorErrors;
  const ok = await tcpClient(tcpFast);
  await ok.handshake('/t');
  const garbage = await tcpClient(tcpFast);
  await garbage.handshake('/t');
  garbage.socket.write(encodeTcpFrame(9, Buffer.from('what is this')));
  await garbage.closed;
  const big = await tcpClient(tcpFast);
  await big.handshake('/t');
  big.send(new Uint8Array(5000)); // maxFrameBytes is 1024
  await big.closed;
  // The healthy client still works (it keeps talking, so its heartbeat is fine).
  ok.send(encodeFrame({ event: 'ECHO', ref: 2, payload: 'still here' }));
  assert.equal((await tcpNextMessage(ok)).text, 'still here');
  ok.end();
  await ok.closed;
  const after1 = server.stats().connectorErrors;
  assert.equal((after1['RW_ERR_TCP_BAD_FRAME'] ?? 0) - (before['RW_ERR_TCP_BAD_FRAME'] ?? 0), 1);
  assert.equal((after1['RW_ERR_TCP_FRAME_TOO_LARGE'] ?? 0) - (before['RW_ERR_TCP_FRAME_TOO_LARGE'] ?? 0), 1);

  // Silent: no frame at all after the handshake → dropped no sooner than 2 x 150 ms.
  const silent = await tcpClient(tcpFast);
  const t0 = performance.now();
  await silent.handshake('/t');
  await silent.closed;
  const waited = performance.now() - t0;
  assert.ok(waited >= 300, `dropped after ${waited.toFixed(0)} ms`);
  assert.equal((server.stats().connectorErrors['RW_ERR_TCP_HEARTBEAT'] ?? 0) - (before['RW_ERR_TCP_HEARTBEAT'] ?? 0), 1);
});

test('in-memory connector: a rejecting upgrade hook refuses with its status; closing from a handler closes the client', async () => {
  await assert.rejects(mem.connect('/a', 'deny=1'), (e: Error & { status?: number; code?: string }) => {
    assert.equal(e.status, 401);
    assert.equal(e.code, 'RW_ERR_UPGRADE_REJECTED');
    return true;
  });
  const m = await mem.connect('/t');
  m.send(encodeFrame({ event: 'CLOSE', payload: '' }));
  assert.deepEqual(await m.closed, { code: 4000, reason: 'bye' });
  assert.equal(server.connections().filter((c) => c.transport === 'memory').length, 0);
});

test('graceful close with TCP and in-memory clients: each gets 1001 (TCP: a kick frame), their disconnect hooks run, the process keeps no handle', async () => {
  const t2 = new TcpConnector({ port: 0 });
  const m2 = new MemoryConnector();
  const s2 = createServer({ modules: [fixture('tools.module')], workers: 1, connectors: [t2, m2] });
  await s2.listen(0, '127.0.0.1');
  const t = new TcpClient();
  await t.connect('127.0.0.1', t2.port);
  const hs = await t.handshake('/t') as Extract<TcpHandshakeReply, { code: 200 }>;
  assert.equal(hs.code, 200);
  const m = await m2.connect('/t');
  const expected = new Set([hs.session.handle, m.session.handle]);
  const seen = new Set<number>();
  const ch = new BroadcastChannel('rw-test-disconnects');
  const allSeen = new Promise<void>((resolve) => {
    ch.onmessage = (ev: unknown) => {
      seen.add(Number((ev as { data: unknown }).data));
      if ([...expected].every((h) => seen.has(h as number))) resolve();
    };
  });
  await s2.close();
  await allSeen; // both disconnect hooks ran (and the server had finished closing before this line)
  ch.close();
  let kick: { code: number; reason: string } | null = null;
  for (;;) {
    const f = await t.next().catch(() => null);
    if (f === null) break;
    if (f.type === TcpFrameType.KICK) kick = JSON.parse(f.payload.toString()) as { code: number; reason: string };
  }
  await t.closed;
  assert.equal(kick?.code, 1001);
  assert.equal((await m.closed).code, 1001);
  assert.equal(s2.stats().connections, 0);
  assert.equal(s2.stats().liveFds, 0);
});

test('graceful close: a TCP peer that never sends its FIN is destroyed after a short grace, not after 2 x heartbeatMs', { timeout: 20_000 }, async () => {
  const t3 = new TcpConnector({ port: 0, heartbeatMs: 60_000 });
  const s3 = createServer({ modules: [fixture('tools.module')], workers: 1, connectors: [t3] });
  await s3.listen(0, '127.0.0.1');
  const sock = connect({ host: '127.0.0.1', port: t3.port, allowHalfOpen: true });
  await once(sock, 'connect');
  sock.write(encodeTcpFrame(TcpFrameType.HANDSHAKE, Buffer.from(JSON.stringify({ path: '/t' }))));
  await once(sock, 'data');
  sock.on('data', () => undefined);
  let gotFin = false;
  sock.on('end', () => { gotFin = true; }); // and never ends its own side
  sock.on('error', () => undefined);
  await s3.close();
  // A half-open peer only learns that the server side is gone when it writes (a reset comes
  // back), so it keeps writing until its socket closes. Without the grace the server would
  // read and discard these until its 120 s sweep (the test times out).
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve())); // (once() would reject on the EPIPE)
  const probe = setInterval(() => { if (!sock.destroyed) sock.write(encodeTcpFrame(TcpFrameType.HEARTBEAT, Buffer.alloc(0))); }, 100);
  await closed;
  clearInterval(probe);
  assert.equal(gotFin, true);
});

test('onConnect that sends, then closes: TCP clients get the handshake reply, the message, then the kick (the reply even without a send); memory clients the message, then the close', async () => {
  const t4 = new TcpConnector({ port: 0 });
  const m4 = new MemoryConnector();
  const s4 = createServer({ modules: [fixture('bye.module'), fixture('byeup.module')], workers: 1, connectors: [t4, m4] });
  await s4.listen(0, '127.0.0.1');
  try {
    const ROUNDS = 20;
    for (let i = 0; i < ROUNDS; i++) {
      for (const path of ['/bye', '/byeup']) {
        // TCP: the reply (not a kick) comes first, then the welcome, then the kick 4000.
        const t = new TcpClient();
        await t.connect('127.0.0.1', t4.port);
        assert.equal((await t.handshake(path)).code, 200, `${path} round ${i}`);
        const types: number[] = [];
        let text = '';
        let kick: unknown = null;
        for (;;) {
          const f = await t.next().catch(() => null);
          if (f === null) break;
          types.push(f.type);
          if (f.type === TcpFrameType.MESSAGE) text = Buffer.from(decodeFrame(new Uint8Array(f.payload)).payload).toString();
          if (f.type === TcpFrameType.KICK) kick = JSON.parse(f.payload.toString());
        }
        assert.deepEqual(types, [TcpFrameType.MESSAGE, TcpFrameType.KICK], `${path} round ${i}`);
        assert.equal(text, 'welcome');
        assert.deepEqual(kick, { code: 4000, reason: 'bye' });

        // TCP, onConnect closing without a send: still the handshake reply first, then the kick.
        const q = new TcpClient();
        await q.connect('127.0.0.1', t4.port);
        assert.equal((await q.handshake(path, 'quiet')).code, 200, `${path}?quiet round ${i}`);
        const f = await q.next();
        assert.equal(f.type, TcpFrameType.KICK);
        assert.deepEqual(JSON.parse(f.payload.toString()), { code: 4000, reason: 'bye' });
        await q.closed;

        // Memory, connected both directly and from a check-phase callback (setImmediate).
        for (const viaImmediate of [false, true]) {
          const m = viaImmediate
            ? await new Promise<Awaited<ReturnType<typeof m4.connect>>>((resolve, reject) => {
              setImmediate(() => { m4.connect(path).then(resolve, reject); });
            })
            : await m4.connect(path);
          const got: string[] = [];
          for (;;) {
            const msg = await m.next().catch(() => null);
            if (msg === null) break;
            got.push(Buffer.from(decodeFrame(msg.data).payload).toString());
          }
          assert.deepEqual(got, ['welcome'], `${path} round ${i} viaImmediate=${viaImmediate}`);
          assert.deepEqual(await m.closed, { code: 4000, reason: 'bye' });
        }
      }
    }
    assert.equal(s4.stats().drops.backpressure, 0);
  } finally {
    await s4.close();
  }
});

test('onDrain reaches TCP clients: a stream paced by onDrain (400 x 64 KiB to a client that stops reading) completes', { timeout: 30_000 }, async () => {
  const t5 = new TcpConnector({ port: 0 });
  const s5 = createServer({ modules: [fixture('stream.module')], workers: 1, connectors: [t5] });
  await s5.listen(0, '127.0.0.1');
  try {
    const t = new TcpClient();
    await t.connect('127.0.0.1', t5.port);
    assert.equal((await t.handshake('/stream')).code, 200);
    sink.labels.length = 0;
    t.socket.pause(); // the kernel buffers fill, then the connector's write queue
    t.send(encodeFrame({ event: 'START', ref: 1, payload: '400' }));
    // The handler has paused itself at its low-water mark: only onDrain can resume it.
    await sink.until((l) => l.includes('/stream first pause'));
    t.socket.resume();
    let chunks = 0;
    let bytes = 0;
    for (;;) {
      const m = await tcpNextMessage(t);
      if (m.event === 'DONE') {
        assert.equal(m.text, '400');
        break;
      }
      assert.equal(m.event, 'CHUNK');
      chunks++;
      bytes += m.text.length;
    }
    assert.equal(chunks, 400);
    assert.equal(bytes, 400 * 64 * 1024);
    await sink.until((l) => l.some((x) => x.startsWith('/stream first drain buffered=')));
    assert.equal(s5.stats().drops.backpressure, 0);
    t.end();
    await t.closed;
  } finally {
    await s5.close();
  }
});

test('graceful close: a TCP client kicked before close() whose peer never sends its FIN is destroyed after the short grace too', { timeout: 20_000 }, async () => {
  const t6 = new TcpConnector({ port: 0, heartbeatMs: 60_000 });
  const s6 = createServer({ modules: [fixture('tools.module')], workers: 1, connectors: [t6] });
  await s6.listen(0, '127.0.0.1');
  const sock = connect({ host: '127.0.0.1', port: t6.port, allowHalfOpen: true });
  await once(sock, 'connect');
  sock.on('error', () => undefined);
  let gotFin = false;
  const fin = new Promise<void>((resolve) => sock.once('end', () => { gotFin = true; resolve(); })); // and never ends its own side
  sock.write(encodeTcpFrame(TcpFrameType.HANDSHAKE, Buffer.from(JSON.stringify({ path: '/t' }))));
  await once(sock, 'data');
  sock.on('data', () => undefined);
  sock.write(encodeTcpFrame(9, Buffer.alloc(0))); // unknown type: kicked (1002), the server's side is closing
  await fin;
  await s6.close();
  // As in the test above: only a write shows the half-open peer that the server side is gone.
  // Without the grace the server would read and discard these for 2 x 60 s (the test times out).
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  const probe = setInterval(() => { if (!sock.destroyed) sock.write(encodeTcpFrame(TcpFrameType.HEARTBEAT, Buffer.alloc(0))); }, 100);
  await closed;
  clearInterval(probe);
  assert.equal(gotFin, true);
  assert.equal(s6.stats().connectorErrors['RW_ERR_TCP_BAD_FRAME'], 1);
});

test('TCP: a client uploading one big frame slowly (never idle for long, no frame completed for several heartbeats) is not dropped as silent', { timeout: 30_000 }, async () => {
  const heartbeatMs = 400;
  const t7 = new TcpConnector({ port: 0, heartbeatMs, maxFrameBytes: 1024 * 1024 });
  const s7 = createServer({ modules: [fixture('tools.module')], workers: 1, connectors: [t7] });
  await s7.listen(0, '127.0.0.1');
  try {
    const t = new TcpClient();
    await t.connect('127.0.0.1', t7.port);
    assert.equal((await t.handshake('/t')).code, 200);
    const text = 'x'.repeat(8000); // under the module's maxPayloadLength
    const bytes = encodeTcpFrame(TcpFrameType.MESSAGE, encodeFrame({ event: 'ECHO', ref: 3, payload: text }));
    // The load's shape, not a synchronisation: 20 bytes every heartbeatMs / 10, for 3 x the
    // 2 x heartbeatMs idle limit, then the rest of the frame.
    let off = 0;
    const start = performance.now();
    while (performance.now() - start < 3 * 2 * heartbeatMs) {
      t.socket.write(bytes.subarray(off, off + 20));
      off += 20;
      await new Promise((resolve) => setTimeout(resolve, heartbeatMs / 10));
    }
    t.socket.write(bytes.subarray(off));
    const m = await tcpNextMessage(t);
    assert.deepEqual([m.event, m.text.length], ['ECHO', text.length]);
    assert.equal(s7.stats().connectorErrors['RW_ERR_TCP_HEARTBEAT'], undefined);
    t.end();
    await t.closed;
  } finally {
    await s7.close();
  }
});

test('memory connector: a client that does not read is bounded by maxQueuedBytes; the refused sends are counted as backpressure drops', async () => {
  const m8 = new MemoryConnector({ maxQueuedBytes: 64 * 1024 });
  const s8 = createServer({ modules: [fixture('tools.module')], workers: 1, connectors: [m8] });
  await s8.listen(0, '127.0.0.1');
  try {
    const c = await m8.connect('/t');
    const probe = await m8.connect('/t');
    const N = 64;
    const payload = 'x'.repeat(4096);
    for (let i = 0; i < N; i++) c.send(encodeFrame({ event: 'ECHO', ref: i + 1, payload }));
    // Same worker, one ordered ring: once the probe's reply is here, every ECHO reply was sent.
    probe.send(encodeFrame({ event: 'ECHO', ref: 1, payload: 'probe' }));
    assert.equal(Buffer.from(decodeFrame((await probe.next()).data).payload).toString(), 'probe');
    let queued = 0;
    while (c.queuedBytes > 0) {
      await c.next();
      queued++;
    }
    assert.ok(queued > 0 && queued < N, `queued ${queued} of ${N}`);
    assert.ok(queued * 4096 <= 64 * 1024 + 2 * 4096 + 1024, `queued ${queued} replies`);
    assert.equal(s8.stats().drops.backpressure, N - queued);
    c.close();
    probe.close();
  } finally {
    await s8.close();
  }
});

test('onDrain reaches memory clients: a stream paced by onDrain completes when the client reads late', { timeout: 30_000 }, async () => {
  const m9 = new MemoryConnector({ maxQueuedBytes: 64 * 1024 * 1024 });
  const s9 = createServer({ modules: [fixture('stream.module')], workers: 1, connectors: [m9] });
  await s9.listen(0, '127.0.0.1');
  try {
    sink.labels.length = 0;
    const c = await m9.connect('/stream');
    c.send(encodeFrame({ event: 'START', ref: 1, payload: '40' }));
    // Nothing read yet: the handler has paused itself at its low-water mark.
    await sink.until((l) => l.includes('/stream first pause'));
    let chunks = 0;
    for (;;) {
      const w = decodeFrame((await c.next()).data);
      if (w.event === 'DONE') {
        assert.equal(Buffer.from(w.payload).toString(), '40');
        break;
      }
      assert.equal(w.event, 'CHUNK');
      chunks++;
    }
    assert.equal(chunks, 40);
    assert.equal(s9.stats().drops.backpressure, 0);
    c.close();
  } finally {
    await s9.close();
  }
});

test('path params are the same for a WebSocket and a TCP client of one module: percent escapes as sent, a malformed one is no server error', async () => {
  const t2 = new TcpConnector({ port: 0, heartbeatMs: 30_000 });
  const s = createServer({ modules: [fixture('gate.module')], workers: 1, connectors: [t2] });
  const wsPort = await s.listen(0, '127.0.0.1');
  try {
    for (const room of ['%41b', 'a%2Fb', '%E0%A4%A', '%']) {
      const c = await Client.open(`ws://127.0.0.1:${wsPort}/gate/${room}`);
      const viaWs = (JSON.parse((await c.call('INFO')).text) as { room: string }).room;
      await c.close();
      const t = await tcpClient(t2);
      const reply = await t.handshake(`/gate/${room}`);
      assert.equal(reply.code, 200, `${room}: ${JSON.stringify(reply)}`);
      t.send(encodeFrame({ event: 'INFO', ref: 1, payload: '' }));
      const viaTcp = (JSON.parse((await tcpNextMessage(t)).text) as { room: string }).room;
      t.end();
      await t.closed;
      assert.equal(viaTcp, viaWs, `/gate/${room}`);
    }
    assert.deepEqual(s.stats().connectorErrors, {});
  } finally {
    await s.close();
  }
});

test('a connector client removed while its upgrade hooks run: addClient() settles with a 499 refusal (it never settled), its fd is free', async () => {
  const sink = new LabelSink('rw-test-labels');
  const go = new BroadcastChannel('rw-test-go');
  let manager: ClientManager | null = null;
  const bare: Connector = { name: 'bare', start(m) { manager = m; }, stop() {} };
  const server = createServer({ modules: [fixture('slowup.module')], workers: 1, connectors: [bare] });
  await server.listen(0, '127.0.0.1');
  try {
    const client: ConnectorClient = {
      remoteAddress: 'bare', session: null,
      send: () => SendStatus.SUCCESS, close: () => undefined, bufferedAmount: () => 0,
    };
    const added = manager!.addClient(client, { path: '/slow' });
    await sink.until((l) => l.some((x) => x.startsWith('/slow upgrade waiting')));
    manager!.removeClient(client, 1006, '');
    const r = await within('addClient() to settle', added);
    assert.deepEqual(r, { ok: false, status: 499, code: 'RW_ERR_UPGRADE_REFUSED', message: 'client removed while its upgrade hooks ran' });
    assert.equal(server.stats().liveFds, 0);
    assert.equal(server.stats().drops.upgradeAborted, 1);
    go.postMessage('go'); // the hook answers late: stale, dropped
  } finally {
    go.close();
    sink.close();
    await server.close();
  }
});

test('a memory connector client whose upgrade hooks time out gets 408, counted once (upgradeTimeout, not also upgradeAborted)', async () => {
  const sink = new LabelSink('rw-test-labels');
  const go = new BroadcastChannel('rw-test-go');
  const m = new MemoryConnector();
  const server = createServer({ modules: [fixture('slowup.module')], workers: 1, connectors: [m], upgradeTimeoutMs: 200 });
  await server.listen(0, '127.0.0.1');
  try {
    await assert.rejects(within('the 408', m.connect('/slow')), (e: { status?: number; code?: string }) =>
      e.status === 408 && e.code === 'RW_ERR_UPGRADE_TIMEOUT');
    go.postMessage('go'); // the hook answers late
    await until('the timed-out hook to answer', () => server.stats().orphanedUpgrades === 0);
    const d = server.stats().drops;
    assert.deepEqual([d.upgradeTimeout, d.upgradeAborted, d.staleHandle], [1, 0, 0]);
    assert.equal(server.stats().liveFds, 0);
  } finally {
    go.close();
    sink.close();
    await server.close();
  }
});

test('a TCP client gone while its upgrade hooks run is aborted at once like a WebSocket one: fd freed, upgradeAborted, no onConnect for it', async () => {
  const sink = new LabelSink('rw-test-labels');
  const go = new BroadcastChannel('rw-test-go');
  const t9 = new TcpConnector({ port: 0 });
  const s9 = createServer({ modules: [fixture('slowup.module')], workers: 1, connectors: [t9] });
  await s9.listen(0, '127.0.0.1');
  try {
    const t = new TcpClient();
    await t.connect('127.0.0.1', t9.port);
    t.socket.write(encodeTcpFrame(TcpFrameType.HANDSHAKE, Buffer.from(JSON.stringify({ path: '/slow' }))));
    await sink.until((l) => l.some((x) => x.startsWith('/slow upgrade waiting')));
    assert.equal(s9.stats().liveFds, 1);
    t.socket.resetAndDestroy(); // the peer is gone while its hook still runs
    await t.closed;
    // Before the hook answers: its fd is free and the abort counted, as for a WebSocket client.
    await until('the upgrade to be aborted', () => s9.stats().drops.upgradeAborted === 1);
    assert.equal(s9.stats().liveFds, 0);
    go.postMessage('go'); // the hook answers late: the client is not opened
    await until('the orphaned hook to answer', () => s9.stats().orphanedUpgrades === 0);
    const st = s9.stats();
    assert.deepEqual([st.upgradesAccepted, st.connections, st.liveFds, st.drops.staleHandle], [0, 0, 0, 0]);
  } finally {
    go.close();
    sink.close();
    await s9.close();
  }
});

test('a TCP client the connector kicks for a protocol error leaves the core at once (disconnect hooks, connections), even if its peer never sends its FIN', async () => {
  const t10 = new TcpConnector({ port: 0, heartbeatMs: 60_000 });
  const s10 = createServer({ modules: [fixture('tools.module')], workers: 1, connectors: [t10] });
  await s10.listen(0, '127.0.0.1');
  const ch = new BroadcastChannel('rw-test-disconnects');
  const sock = connect({ host: '127.0.0.1', port: t10.port, allowHalfOpen: true });
  try {
    await once(sock, 'connect');
    sock.on('error', () => undefined);
    const fin = new Promise<void>((resolve) => sock.once('end', () => resolve())); // and never ends its own side
    sock.write(encodeTcpFrame(TcpFrameType.HANDSHAKE, Buffer.from(JSON.stringify({ path: '/t' }))));
    const [reply] = (await once(sock, 'data')) as [Buffer];
    const hs = JSON.parse(reply.subarray(5).toString()) as Extract<TcpHandshakeReply, { code: 200 }>;
    sock.on('data', () => undefined);
    const gone = new Promise<number>((resolve) => { ch.onmessage = (ev: unknown) => resolve(Number((ev as { data: unknown }).data)); });
    assert.equal(s10.stats().connections, 1);
    sock.write(encodeTcpFrame(9, Buffer.alloc(0))); // unknown type: kicked (1002)
    await fin;
    // Its disconnect hooks run without waiting for the peer's FIN (2 x 60 s of heartbeat).
    assert.equal(await within('the disconnect hook', gone), hs.session.handle);
    await until('the connection to be gone', () => s10.stats().connections === 0);
    assert.equal(s10.stats().liveFds, 0);
    assert.equal(s10.stats().connectorErrors['RW_ERR_TCP_BAD_FRAME'], 1);
    // Outside the core's count now, its socket does not linger either: it is destroyed after the
    // close grace (4 s), not kept for the sweep's 2 x 60 s.
    // (the peer learns it when it writes: a byte into a socket the server destroyed gets a reset)
    let closed = false;
    sock.once('close', () => { closed = true; });
    await until('the server to destroy the kicked socket', () => { if (!closed) sock.write(Buffer.alloc(1)); return closed; }, 20_000, 250);
  } finally {
    ch.close();
    sock.destroy();
    await s10.close();
  }
});

/** The underlying TCP socket of a `ws` client (to stop reading, or half-close, like a real peer can). */
const rawSocket = (c: Client): Socket => (c.ws as unknown as { _socket: Socket })._socket;

/** The handle of the one connection in `after` that is not in `before`. */
function newHandle(s: Server, before: Set<number>): number {
  const h = s.connections().map((c) => c.handle).filter((x) => !before.has(x));
  assert.equal(h.length, 1);
  return h[0]!;
}

test('a client that stops reading is treated alike on every transport: past the module\'s maxBackpressure with closeOnBackpressureLimit, a WebSocket, a TCP and a memory client are closed with 1006; the others are served', { timeout: 120_000 }, async (t) => {
  const t11 = new TcpConnector({ port: 0, heartbeatMs: 30_000 });
  const m11 = new MemoryConnector();
  const s11 = createServer({ modules: [fixture('limits.module')], workers: 1, connectors: [t11, m11] });
  const wsPort = await s11.listen(0, '127.0.0.1');
  try {
    const url = `ws://127.0.0.1:${wsPort}/lim`;
    // A reading client that hears every close (the module's onDisconnect publishes `handle:code`).
    const watcher = await Client.open(url);
    assert.equal((await watcher.call('WATCH')).text, 'ok');
    const closes = new Map<number, number>();
    /** Reads the watcher up to the reply of a new WATCH: the closes published before it. */
    const readCloses = async (): Promise<void> => {
      watcher.emit('WATCH', '', 9);
      for (;;) {
        const f = await watcher.next();
        if (f.ref === 9) return;
        const m = /^(\d+):(\d+)$/.exec(f.text);
        if (m !== null) closes.set(Number(m[1]), Number(m[2]));
      }
    };
    const publisher = await Client.open(url);

    // Three subscribers that stop reading, one per transport.
    let known = new Set(s11.connections().map((c) => c.handle));
    const ws = await Client.open(url);
    assert.equal((await ws.call('SUB')).text, 'ok');
    const wsHandle = newHandle(s11, known);
    rawSocket(ws).pause();
    const tc = new TcpClient();
    await tc.connect('127.0.0.1', t11.port);
    const hs = await tc.handshake('/lim');
    assert.equal(hs.code, 200);
    tc.send(encodeFrame({ event: 'SUB', ref: 1 }));
    assert.equal((await tcpNextMessage(tc)).text, 'ok');
    tc.socket.pause();
    const mc = await m11.connect('/lim');
    mc.send(encodeFrame({ event: 'SUB', ref: 1 }));
    assert.equal(Buffer.from(decodeFrame((await mc.next()).data).payload).toString(), 'ok');
    known = new Set([wsHandle, (hs as { session: { handle: number } }).session.handle, mc.session.handle]);
    const slow = [...known];

    // Publish at them until each is closed (the kernel's socket buffers fill first).
    let rounds = 0;
    while (rounds < 1000 && !slow.every((h) => closes.has(h))) {
      rounds++;
      assert.equal((await publisher.call('FLOOD', '10:16384', rounds)).text, 'flooded');
      await readCloses();
    }
    t.diagnostic(`${rounds} rounds of 160 KiB published`);
    assert.deepEqual(slow.map((h) => closes.get(h)), [1006, 1006, 1006], 'same close for every transport');
    const st = s11.stats();
    assert.equal(st.connections, 2, 'watcher and publisher remain');
    assert.ok(st.drops.backpressure > 0);
    assert.equal((await publisher.call('ECHO', 'still served', 1)).text, 'still served');

    // Each client sees the close as 1006 (no close frame, no kick) once it reads again.
    rawSocket(ws).resume();
    assert.equal((await ws.closed).code, 1006);
    tc.socket.resume();
    await tc.closed;
    const closeCode = async (): Promise<number | undefined> => {
      for (;;) {
        try {
          await tc.next();
        } catch (err) {
          return (err as { closeCode?: number }).closeCode;
        }
      }
    };
    assert.equal(await closeCode(), 1006);
    assert.deepEqual(await mc.closed, { code: 1006, reason: '' });
    await Promise.all([watcher.close(), publisher.close()]);
  } finally {
    await s11.close();
  }
});

test('backpressure drops of a sendMany and of a publish to a connector client name that client on ringwire:drop', async () => {
  const m12 = new MemoryConnector({ maxQueuedBytes: 0 });
  const s12 = createServer({ modules: [fixture('tools.module')], workers: 1, connectors: [m12] });
  await s12.listen(0, '127.0.0.1');
  const drops: { reason: string; handle: number }[] = [];
  const onDrop = (m: unknown): void => {
    const d = m as { reason: string; handle: number };
    if (d.reason === 'backpressure') drops.push({ reason: d.reason, handle: d.handle });
  };
  diagnostics.subscribe('ringwire:drop', onDrop);
  try {
    const target = await m12.connect('/t');
    const sender = await m12.connect('/t');
    const call = async (c: typeof sender, event: string, payload: string): Promise<string> => {
      c.send(encodeFrame({ event, ref: 1, payload }));
      return Buffer.from(decodeFrame((await c.next()).data).payload).toString();
    };
    // The target reads nothing: its SUB reply stays queued, so it takes nothing more.
    target.send(encodeFrame({ event: 'SUB', ref: 1, payload: 'news' }));
    await until('the SUB reply to be queued', () => target.queuedBytes > 0);
    assert.equal(await call(sender, 'MANY', JSON.stringify([target.session.handle])), 'sent');
    sender.send(encodeFrame({ event: 'PUB', ref: 2, payload: 'news:hello' }));
    await until('both drops', () => s12.stats().drops.backpressure === 2);
    assert.deepEqual(drops, [
      { reason: 'backpressure', handle: target.session.handle },
      { reason: 'backpressure', handle: target.session.handle },
    ]);
    target.close();
    sender.close();
  } finally {
    diagnostics.unsubscribe('ringwire:drop', onDrop);
    await s12.close();
  }
});

test('a client that half-closes while reading nothing, with data queued for it, leaves the core at once on its FIN: TCP as WebSocket', async () => {
  const t13 = new TcpConnector({ port: 0, heartbeatMs: 60_000 });
  const s13 = createServer({ modules: [fixture('tools.module')], workers: 1, connectors: [t13] });
  const wsPort = await s13.listen(0, '127.0.0.1');
  const queued = (h: number): number => s13.connections().find((c) => c.handle === h)?.bufferedAmount ?? 0;
  const payload = 'x'.repeat(32 * 1024);
  /** Echoes to a client that does not read until the server holds some of them for it. */
  const fill = async (h: number, send: () => void): Promise<void> => {
    const out = (): number => s13.stats().messagesOut + s13.stats().drops.backpressure;
    const base = out();
    let sent = 0;
    for (let round = 0; round < 200; round++) {
      for (let i = 0; i < 20; i++) send();
      sent += 20;
      await until('the echoes to be answered', () => queued(h) > 0 || out() - base >= sent);
      if (queued(h) > 0) return;
    }
    assert.fail('the server never held data for the client');
  };
  try {
    // WebSocket: uWS closes it on its FIN.
    const ws = await Client.open(`ws://127.0.0.1:${wsPort}/t`);
    const wsHandle = JSON.parse((await ws.call('WHOAMI')).text).handle as number;
    rawSocket(ws).pause();
    await fill(wsHandle, () => ws.emit('ECHO', payload));
    rawSocket(ws).end();
    await until('the WebSocket client to leave the core', () => s13.stats().connections === 0);

    // TCP: the same.
    const tc = new TcpClient();
    await tc.connect('127.0.0.1', t13.port);
    const hs = (await tc.handshake('/t')) as { session: { handle: number } };
    tc.socket.pause();
    await fill(hs.session.handle, () => tc.send(encodeFrame({ event: 'ECHO', ref: 1, payload })));
    tc.socket.end();
    await until('the TCP client to leave the core', () => s13.stats().connections === 0);
    assert.equal(s13.stats().liveFds, 0);
    tc.socket.destroy();
    ws.ws.terminate();
  } finally {
    await s13.close();
  }
});

test('a connector client over the header bounds gets 431 RW_ERR_HEADERS_TOO_LARGE like a WebSocket, counted; one under them gets its headers intact', async () => {
  const before = server.stats().drops.headersTooLarge;
  await assert.rejects(mem.connect('/b/lobby', '', { 'x-meta': JSON.stringify({ tok: 'k'.repeat(17_000) }) }),
    (e: MemoryConnectError) => e.status === 431 && e.code === 'RW_ERR_HEADERS_TOO_LARGE');
  assert.equal(server.stats().drops.headersTooLarge, before + 1);
  const tok = 'k'.repeat(10_000);
  const c = await mem.connect('/b/lobby', '', { 'x-meta': JSON.stringify({ tok }) });
  c.send(encodeFrame({ event: 'HELLO', ref: 1, payload: new Uint8Array(0) }));
  const w = decodeFrame((await c.next()).data);
  assert.equal((JSON.parse(Buffer.from(w.payload).toString()) as { userData: { tok?: string } }).userData.tok, tok);
  c.close();
});

test('a connector client\'s url is its path without the query, as for a WebSocket (a resume token in the query stays out of connection records)', async () => {
  const c = await mem.connect('/b/lobby', 'x=1&rw_resume=abc');
  const rec = server.connections().find((r) => r.transport === 'memory' && r.url.startsWith('/b/'));
  assert.equal(rec?.url, '/b/lobby');
  c.close();
});
