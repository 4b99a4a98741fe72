import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from '../../src/core/server.js';
import { CloseCode } from '../../src/shared/constants.js';
import { writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BroadcastChannel } from 'node:worker_threads';
import { Client, LabelSink, WorkerGate, fixture, until, within } from '../helpers.js';
import { MemoryConnector } from '../../src/core/connectors/memory.js';
import { decodeFrame, encodeFrame } from '../../src/shared/wire.js';

const tools = fixture('tools.module');

test('ordering: 4 workers, 200 connections x 1,000 pipelined messages, every reply in order', async () => {
  const server = createServer({ modules: [tools], workers: 4 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const N = 200;
    const M = 1000;
    const clients = await Promise.all(Array.from({ length: N }, () => Client.open(`ws://127.0.0.1:${port}/t`)));
    const results = await Promise.all(clients.map(async (c, ci) => {
      for (let i = 1; i <= M; i++) c.emit('ECHO', `${ci}:${i}`, i);
      for (let i = 1; i <= M; i++) {
        const f = await c.next();
        if (f.ref !== i || f.text !== `${ci}:${i}`) return `client ${ci}: reply ${i} was ref ${f.ref} "${f.text}"`;
      }
      return 'ok';
    }));
    assert.deepEqual(results.filter((r) => r !== 'ok'), []);
    const st = server.stats();
    assert.equal(st.messagesOut, N * M);
    // Every worker served some connections (affinity spreads them).
    assert.equal(st.workers.every((w) => w.messages > 0), true);
    await Promise.all(clients.map((c) => c.close()));
  } finally {
    await server.close();
  }
});

test('stale handles: a late reply to a closed connection never reaches the new owner of its fd', async () => {
  // maxFd 4 forces the fd of A to be recycled after three more connections.
  const server = createServer({ modules: [tools], workers: 1, maxFd: 4, maxConnections: 2 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const url = `ws://127.0.0.1:${port}/t`;
    const a = await Client.open(url);
    const ida = JSON.parse((await a.call('WHOAMI')).text) as { fd: number; handle: number };
    assert.equal(ida.fd, 1);
    a.emit('LATE', '', 1); // its reply is held until GO
    await a.close();
    for (const expectFd of [2, 3, 4]) {
      const c = await Client.open(url);
      assert.equal((JSON.parse((await c.call('WHOAMI')).text) as { fd: number }).fd, expectFd);
      await c.close();
    }
    const e = await Client.open(url);
    const ide = JSON.parse((await e.call('WHOAMI')).text) as { fd: number; handle: number };
    assert.equal(ide.fd, 1, 'the fd was recycled');
    assert.notEqual(ide.handle, ida.handle, 'with a new handle');
    const staleBefore = server.stats().drops.staleHandle;
    assert.equal((await e.call('GO', '', 2)).text, '1'); // releases A's late reply
    const who = await e.call('WHOAMI', '', 3); // written after the late reply by the same worker
    assert.equal(who.ref, 3);
    assert.equal(e.received, 3, 'E received only its own three replies');
    assert.equal(server.stats().drops.staleHandle, staleBefore + 1);
    await e.close();
  } finally {
    await server.close();
  }
});

test('crash: a dead worker closes exactly its connections with 1011; others go on; it is replaced', async () => {
  const server = createServer({ modules: [tools], workers: 2 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const url = `ws://127.0.0.1:${port}/t`;
    const clients = await Promise.all(Array.from({ length: 8 }, () => Client.open(url)));
    const threads = await Promise.all(clients.map(async (c) => (JSON.parse((await c.call('WHOAMI')).text) as { threadId: number }).threadId));
    const victim = threads[0]!;
    const doomed = clients.filter((_, i) => threads[i] === victim);
    const spared = clients.filter((_, i) => threads[i] !== victim);
    assert.ok(doomed.length > 0 && spared.length > 0);
    // Keep traffic flowing on the spared connections while the worker dies.
    for (const c of spared) c.emit('ECHO', 'before', 10);
    doomed[0]!.emit('CRASH');
    const codes = await Promise.all(doomed.map((c) => c.closed.then((x) => x.code)));
    assert.deepEqual(codes, doomed.map(() => CloseCode.INTERNAL));
    for (const c of spared) {
      assert.equal((await c.next()).text, 'before');
      assert.equal((await c.call('ECHO', 'after', 11)).text, 'after');
    }
    const fresh = await Promise.all(Array.from({ length: 4 }, () => Client.open(url)));
    for (const c of fresh) assert.equal((await c.call('ECHO', 'new', 12)).text, 'new');
    const st = server.stats();
    assert.equal(st.workerRestarts, 1);
    assert.equal(st.connections, spared.length + fresh.length);
    await Promise.all([...spared, ...fresh].map((c) => c.close()));
  } finally {
    await server.close();
  }
});

test('crash loop: a worker that dies on every start is restarted with back-off, not in a tight loop, and recovers', async () => {
  const marker = join(tmpdir(), `rw-die-${process.pid}-${Date.now()}`);
  process.env['RW_TEST_DIE_MARKER'] = marker;
  const server = createServer({ modules: [fixture('dies-on-start.module')], workers: 1 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const url = `ws://127.0.0.1:${port}/die`;
    writeFileSync(marker, 'die'); // from now on a starting worker dies
    const c = await Client.open(url);
    const t0 = performance.now();
    c.emit('CRASH');
    assert.equal((await c.closed).code, CloseCode.INTERNAL);
    // 1 crash + 5 deaths restarted at once, then 100, 200, 400 ms waits before the 7th-9th restarts.
    await until('four delayed restarts', () => server.stats().workerBackoffs >= 4, 20_000, 10);
    const st = server.stats();
    // Not a tight loop: a lower bound only (the back-off timers cannot fire early; how late is the machine's business).
    assert.ok(performance.now() - t0 >= 700, `four back-offs after ${performance.now() - t0} ms`);
    assert.equal(st.workerRestarts, 9);
    assert.equal(st.workers[0]!.restartBackoffMs, 800);
    assert.equal(st.workers[0]!.alive, false);
    // Meanwhile no worker: upgrades are refused with 503, counted.
    await assert.rejects(Client.open(url), { statusCode: 503 });
    // The cause goes away: the next restart (after its back-off) serves again.
    rmSync(marker);
    await until('the worker to come back', () => server.stats().workers[0]!.alive, 20_000, 10);
    const d = await Client.open(url);
    assert.equal((await d.call('ECHO', 'back')).text, 'back');
    await d.close();
  } finally {
    rmSync(marker, { force: true });
    delete process.env['RW_TEST_DIE_MARKER'];
    await server.close();
  }
});

test('backpressure: a stalled worker fills ring and overflow, the flooding connection gets 1013, counted', async () => {
  const gate = new WorkerGate();
  const server = createServer({ modules: [tools, fixture('gate.module')], workers: 1, ringBytes: 4096, overflowBytes: 4096 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const url = `ws://127.0.0.1:${port}/t`;
    const bystander = await Client.open(url);
    const c = await Client.open(url);
    const g = await Client.open(`ws://127.0.0.1:${port}/gate/x`);
    await gate.arm(g);
    g.emit('GATE'); // the worker is stalled until the gate opens
    const big = 'x'.repeat(200);
    for (let i = 0; i < 500; i++) c.emit('ECHO', big, i + 1);
    const { code } = await c.closed;
    assert.equal(code, CloseCode.TRY_AGAIN);
    const st = server.stats();
    assert.equal(st.drops.busyCloses, 1);
    assert.ok(st.workers[0]!.overflowed > 0, 'the overflow was used before refusing');
    // While the worker is behind, new upgrades are refused with 503 (counted), not queued.
    await assert.rejects(Client.open(url), (e: { statusCode?: number }) => e.statusCode === 503);
    assert.equal(server.stats().drops.workerUnavailable, 1);
    // The other connection of that worker is served once the worker catches up.
    gate.open();
    assert.equal((await g.next()).text, 'open');
    assert.equal((await bystander.call('ECHO', 'alive', 1)).text, 'alive');
    await Promise.all([bystander.close(), g.close()]);
  } finally {
    gate.close();
    await server.close();
  }
});

test('backpressure: clients with a few messages in flight are never refused while together they keep the worker behind (a share is what a connection holds in the overflow now)', async () => {
  // 4 KiB ring, 16 KiB overflow: each connection may hold 4 KiB of it. Four clients keep 4 messages
  // of 500 bytes in flight each (at most 4 x 564 bytes held by one), against a worker taking 1 ms a
  // message: the overflow never empties, and each client puts far more than 4 KiB through it.
  const server = createServer({ modules: [tools], workers: 1, ringBytes: 4096, overflowBytes: 16384 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const url = `ws://127.0.0.1:${port}/t`;
    const clients = await Promise.all(Array.from({ length: 4 }, () => Client.open(url)));
    const payload = 'x'.repeat(500);
    const total = 150;
    const window = 4;
    await within('every reply', Promise.all(clients.map(async (c) => {
      const closed = c.closed.then(({ code }) => { throw new Error(`closed with ${code} after ${sent} sent`); });
      closed.catch(() => undefined);
      let sent = 0;
      for (; sent < window; sent++) c.emit('SLOW', payload, sent + 1);
      for (let ref = 1; ref <= total; ref++) {
        assert.equal((await Promise.race([c.next(), closed])).ref, ref);
        if (sent < total) c.emit('SLOW', payload, ++sent);
      }
    })), 60_000);
    const st = server.stats();
    assert.equal(st.drops.busyCloses, 0);
    // Before the fix each connection was charged all it ever put in the overflow during a backlog
    // (reset only when the overflow emptied) and was closed with 1013 past 4 KiB of it.
    assert.ok(st.workers[0]!.overflowed > 4 * Math.ceil(4096 / 564), `overflowed ${st.workers[0]!.overflowed}`);
    await Promise.all(clients.map((c) => c.close()));
  } finally {
    await server.close();
  }
});

test('publish/subscribe, broadcast (exceptSelf), sendTo and close from a handler', async () => {
  const server = createServer({ modules: [tools], workers: 2 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const url = `ws://127.0.0.1:${port}/t`;
    const [a, b, c] = await Promise.all([Client.open(url), Client.open(url), Client.open(url)]);
    assert.equal((await a!.call('SUB', 'room1')).text, 'ok');
    assert.equal((await b!.call('SUB', 'room1')).text, 'ok');
    c!.emit('PUB', 'room1:hello');
    assert.equal((await a!.next()).text, 'hello');
    assert.equal((await b!.next()).text, 'hello');
    assert.equal((await c!.call('BCAST', 'to all')).text, 'sent');
    assert.equal((await a!.next()).text, 'to all');
    assert.equal((await b!.next()).text, 'to all');
    const hb = (JSON.parse((await b!.call('WHOAMI')).text) as { handle: number }).handle;
    a!.emit('SENDTO', `${hb}:direct`);
    assert.equal((await b!.next()).text, 'direct');
    // A send from a module timer (outside any handler) still reaches the client.
    b!.emit('TIMER');
    assert.equal((await b!.next()).text, 'tick');
    c!.emit('CLOSE');
    assert.deepEqual(await c!.closed, { code: 4000, reason: 'bye' });
    await Promise.all([a!.close(), b!.close()]);
  } finally {
    await server.close();
  }
});

test('close from a handler with a long reason: the client gets the code and the reason cut to 123 bytes on a character boundary', async () => {
  const server = createServer({ modules: [tools], workers: 1 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    // 200 two-byte characters (400 bytes): uWS cuts a close payload at 123 bytes, which fell inside
    // a character, and the client failed the close frame's UTF-8 check (1006 instead of 4001).
    const c = await Client.open(`ws://127.0.0.1:${port}/t`);
    c.emit('CLOSEWITH', `4001:${'é'.repeat(200)}`);
    assert.deepEqual(await c.closed, { code: 4001, reason: 'é'.repeat(61) });
    const a = await Client.open(`ws://127.0.0.1:${port}/t`);
    a.emit('CLOSEWITH', `4002:${'a'.repeat(300)}`);
    assert.deepEqual(await a.closed, { code: 4002, reason: 'a'.repeat(123) });
    // Codes a client fails (reserved 1004-1006 and 1015, unassigned 1016-2999) are refused in the
    // handler (an error reply; the connection stays) instead of reaching the client as a 1006.
    const b = await Client.open(`ws://127.0.0.1:${port}/t`);
    for (const code of [1005, 1006, 1015, 2000]) {
      b.emit('CLOSEWITH', `${code}:x`, code);
      const r = await Promise.race([b.next(), b.closed.then((c) => assert.fail(`closed with ${c.code} after close(${code})`))]);
      assert.equal(r.event, 'error');
      assert.equal(r.ref, code);
      assert.equal((JSON.parse(r.text) as { code: string }).code, 'RW_ERR_HANDLER');
    }
    b.emit('CLOSEWITH', '1014:bad gateway');
    assert.deepEqual(await b.closed, { code: 1014, reason: 'bad gateway' });
    assert.equal(server.stats().connections, 0);
  } finally {
    await server.close();
  }
});

test('json and raw codecs', async () => {
  const server = createServer({ modules: [fixture('json.module'), fixture('raw.module'), fixture('raw-pieces.module')], workers: 1 });
  const port = await server.listen(0, '127.0.0.1');
  const sink = new LabelSink('rw-test-labels');
  try {
    const j = await Client.open(`ws://127.0.0.1:${port}/json`);
    j.ws.send(JSON.stringify({ cmd: 'ADD', data: { a: 2, b: 40 }, ref: 5 }));
    assert.deepEqual(await j.nextJson(), { cmd: 'ADD', data: { sum: 42 }, ref: 5 });
    j.ws.send('{not json');
    const err = await j.nextJson();
    assert.equal(err.cmd, 'error');
    assert.equal((err.data as { code: string }).code, 'RW_ERR_BAD_FRAME');
    // A frame that parses but has a wrong-typed cmd: its (valid) ref correlates the error reply.
    j.ws.send(JSON.stringify({ cmd: 5, data: {}, ref: 7 }));
    const err2 = await j.nextJson();
    assert.equal(err2.cmd, 'error');
    assert.equal((err2.data as { code: string }).code, 'RW_ERR_BAD_FRAME');
    assert.equal(err2.ref, 7);
    const r = await Client.open(`ws://127.0.0.1:${port}/raw`);
    r.ws.send(Buffer.from([1, 2, 3]));
    assert.deepEqual([...(await r.nextRaw()).data], [3, 2, 1]);
    // Raw frames carry no ref: a handler may answer in pieces (one answer per message is for refs).
    const p = await Client.open(`ws://127.0.0.1:${port}/raw-pieces`);
    p.ws.send(Buffer.from([1, 2]));
    assert.deepEqual([...(await p.nextRaw()).data], [1, 2]);
    assert.deepEqual([...(await p.nextRaw()).data], [2, 1]);
    assert.equal(server.stats().workers[0]!.duplicateReplies, 0);
    // Pieces, but only during the message's chain: a reply from a timer after it is refused (raw too).
    p.ws.send(Buffer.from([0]));
    assert.deepEqual([...(await p.nextRaw()).data], [0]);
    await sink.until((l) => l.includes('/raw-pieces stray tried'));
    p.ws.send(Buffer.from([1, 2]));
    assert.deepEqual([...(await p.nextRaw()).data], [1, 2], 'the late piece was not sent');
    assert.deepEqual([...(await p.nextRaw()).data], [2, 1]);
    assert.equal(server.stats().workers[0]!.strayReplies, 1);
    await Promise.all([j.close(), r.close(), p.close()]);
  } finally {
    sink.close();
    await server.close();
  }
});

test('server.connections() lists the open connections as records', async () => {
  const server = createServer({ modules: [tools, fixture('order-b.module')], workers: 2 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const a = await Client.open(`ws://127.0.0.1:${port}/t?x=1`);
    const b = await Client.open(`ws://127.0.0.1:${port}/b/lobby`);
    const ida = JSON.parse((await a.call('WHOAMI')).text) as { fd: number; handle: number };
    const list = server.connections().sort((x, y) => x.fd - y.fd);
    assert.equal(list.length, 2);
    const ra = list.find((c) => c.handle === ida.handle);
    assert.ok(ra, 'the record carries the same handle the worker sees');
    assert.equal(ra.fd, ida.fd);
    assert.equal(ra.url, '/t');
    assert.equal(ra.module, '/t');
    assert.equal(ra.remoteAddress, '127.0.0.1');
    assert.ok(ra.handshakeMs >= 0 && ra.connectedAt <= Date.now());
    const rb = list.find((c) => c.handle !== ida.handle)!;
    assert.deepEqual({ url: rb.url, module: rb.module }, { url: '/b/lobby', module: '/b/:room' });
    assert.notEqual(ra.worker, rb.worker, 'round-robin put them on different workers');
    await a.close();
    assert.deepEqual(server.connections().map((c) => c.handle), [rb.handle]);
    await b.close();
    assert.deepEqual(server.connections(), []);
  } finally {
    await server.close();
  }
});

test('ctx.headers: the upgrade request\'s headers stay readable in every hook for the connection\'s life (Swoft\'s connection context keeps the request), with no upgrade hook and on a connector', async () => {
  // tools has no upgrade hook: the I/O thread accepts at once, and no hook could copy a header into userData.
  const mem = new MemoryConnector();
  const server = createServer({ modules: [tools], workers: 1, connectors: [mem] });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const c = await Client.open(`ws://127.0.0.1:${port}/t`, { headers: { 'X-Client': 'swoft/3.0', cookie: 'sid=42' } });
    assert.equal(JSON.parse((await c.call('HEADER', 'x-client')).text), 'swoft/3.0', 'lower-case name, value as sent');
    assert.equal(JSON.parse((await c.call('HEADER', 'cookie', 2)).text), 'sid=42');
    assert.equal(JSON.parse((await c.call('HEADER', 'x-absent', 3)).text), null);
    assert.equal(JSON.parse((await c.call('HEADER', 'constructor', 4)).text), null, 'a name not sent is absent, whatever it is');
    await c.close();
    const m = await mem.connect('/t', '', { 'x-client': 'mydog' });
    m.send(encodeFrame({ event: 'HEADER', ref: 1, payload: 'x-client' }));
    assert.equal(JSON.parse(Buffer.from(decodeFrame((await m.next()).data).payload).toString()), 'mydog');
    m.close();
  } finally {
    await server.close();
  }
});

/**
 * The backlog fixture on one worker with 4 KiB rings and an 8 KiB overflow (each connection may
 * hold 2 KiB of it); its gate and label sink are closed after the test.
 */
async function startBacklog(t: { after: (fn: () => Promise<void>) => void }) {
  const server = createServer({ modules: [fixture('backlog.module')], workers: 1, ringBytes: 4096, overflowBytes: 8192, handlerTimeoutMs: 0 });
  const port = await server.listen(0, '127.0.0.1');
  const url = `ws://127.0.0.1:${port}/backlog`;
  const sab = new SharedArrayBuffer(16);
  const gate = new Int32Array(sab);
  const ch = new BroadcastChannel('rw-test-backlog-gate');
  const sink = new LabelSink('rw-test-backlog-labels');
  const release = (i: number): void => { Atomics.store(gate, i, 1); Atomics.notify(gate, i); };
  t.after(async () => { release(0); release(2); ch.close(); sink.close(); await server.close(); });
  const used = (): { inbound: number; overflow: number; overflowed: number } => {
    const w = server.stats().workers[0]!;
    return { inbound: w.inboundUsed, overflow: w.overflowUsed, overflowed: w.overflowed };
  };
  /** Sends `data` from `c` and waits until the I/O thread has taken it. */
  const put = async (c: Client, data: string | Uint8Array): Promise<void> => {
    const n = server.stats().messagesIn;
    c.ws.send(data);
    await until('the message in the server', () => server.stats().messagesIn > n);
  };
  const k = await Client.open(url);
  for (;;) {
    ch.postMessage(sab);
    k.ws.send('ARMED');
    if ((await k.nextRaw()).data.toString() === 'yes') break;
  }
  /**
   * X's upgrade hook holds the worker (its Upgrade record is all the worker has taken), K's HOLD
   * is queued behind it, `b` fills the ring, then one record of the largest size (2,032 bytes)
   * spills into the overflow. Once the hook answers, the worker frees the Upgrade record and waits
   * in HOLD: the ring keeps more than 2,064 bytes, so the overflow's first record cannot move and
   * the backlog stays, whenever X's Open comes.
   */
  const backlogBehindUpgrade = async (b: Client): Promise<{ x: Client; sent: number }> => {
    const x = new Client(`${url}?hold=1`);
    await until('the upgrade hook waiting', () => Atomics.load(gate, 1) === 1);
    const upgrade = used().inbound;
    await put(k, 'HOLD'); // (another socket than b's: waited for, so it is in the ring first)
    let sent = 0;
    while (used().inbound - upgrade <= 2100) await put(b, `b${sent++}`.padEnd(100, '.'));
    assert.equal(used().overflow, 0);
    await put(b, 'B'.repeat(1976));
    assert.equal(used().overflow, 2032);
    return { x, sent: sent + 1 };
  };
  return { server, url, gate, release, sink, put, used, k, backlogBehindUpgrade };
}

test('backlog: an accepted upgrade whose Open finds ring and overflow full is closed with 1013 and counted in drops.busyCloses', async (t) => {
  const { server, url, gate, release, sink, put, used, k, backlogBehindUpgrade } = await startBacklog(t);
  const [b, ...fill] = await Promise.all(Array.from({ length: 6 }, () => Client.open(url)));
  const { x, sent } = await backlogBehindUpgrade(b!);
  // 110 empty messages (56-byte records) fill the other 6,160 bytes of the overflow exactly.
  for (const c of fill) for (let i = 0; i < 22; i++) await put(c, new Uint8Array(0));
  assert.deepEqual([used().overflow, used().overflowed], [8192, 111]);
  const busyBefore = server.stats().drops.busyCloses;
  release(0); // the hook accepts; X's Open finds no room anywhere
  await x.opened;
  assert.equal((await x.closed).code, CloseCode.TRY_AGAIN);
  assert.equal(server.stats().drops.busyCloses, busyBefore + 1, 'the 1013 is counted');
  await until('HOLD waiting', () => Atomics.load(gate, 3) === 1);
  release(2);
  // Everything queued reaches the worker; X never connected, so it never disconnects either.
  const msgs = (): number => sink.labels.filter((l) => l.startsWith('msg:')).length;
  await within('every message in the worker', sink.until(() => msgs() === sent + 110));
  await Promise.all([k.close(), b!.close(), ...fill.map((c) => c.close())]);
  await within('the disconnects', sink.until((l) => l.filter((s) => s.startsWith('disconnect:')).length === 7));
  assert.equal(sink.labels.filter((s) => s.startsWith('connect:')).length, 7);
});

test('backlog: stats().workers[i].overflowed counts every record that went through the overflow, an Open too', async (t) => {
  const { release, gate, sink, used, url, k, backlogBehindUpgrade } = await startBacklog(t);
  const b = await Client.open(url);
  const { x } = await backlogBehindUpgrade(b);
  assert.equal(used().overflowed, 1);
  release(0); // the hook accepts; X's Open goes into the overflow behind B's message
  await x.opened;
  assert.equal(used().overflowed, 2, 'the message and the Open');
  await until('HOLD waiting', () => Atomics.load(gate, 3) === 1);
  release(2);
  await within('X connected', sink.until((l) => l.filter((s) => s.startsWith('connect:')).length === 3));
  await Promise.all([k.close(), b.close(), x.close()]);
});
