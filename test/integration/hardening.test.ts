import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { BroadcastChannel } from 'node:worker_threads';
import { createServer } from '../../src/core/server.js';
import { CloseCode } from '../../src/shared/constants.js';
import { encodeFrame } from '../../src/shared/wire.js';
import { buildMaskedFrame } from '../../bench/loadgen/frames.js';
import { Client, LabelSink, WorkerGate, fixture, until } from '../helpers.js';

const tools = fixture('tools.module');
const limits = fixture('limits.module');

test('over maxPayloadLength: the connection is closed with 1009, others unaffected', async () => {
  const server = createServer({ modules: [limits], workers: 1 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const other = await Client.open(`ws://127.0.0.1:${port}/lim`);
    const c = await Client.open(`ws://127.0.0.1:${port}/lim`);
    c.emit('ECHO', 'x'.repeat(2000));
    assert.equal((await c.closed).code, CloseCode.TOO_BIG);
    assert.equal((await other.call('ECHO', 'still here')).text, 'still here');
    await other.close();
  } finally {
    await server.close();
  }
});

test('small rings, default maxPayloadLength: an oversized message still gets 1009; one over uWS\'s own cap gets 1006 and is counted too', async () => {
  // 4 KiB rings: the default limit is the ring's record limit (1976 bytes here).
  const server = createServer({ modules: [tools], workers: 1, ringBytes: 4096 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const other = await Client.open(`ws://127.0.0.1:${port}/t`);
    const c = await Client.open(`ws://127.0.0.1:${port}/t`);
    c.emit('ECHO', 'x'.repeat(3000));
    assert.equal((await c.closed).code, CloseCode.TOO_BIG);
    assert.equal(server.stats().drops.tooBig, 1);
    // Over uWS's cap (64 KiB here): uWS cuts the connection itself (1006), counted as well.
    const d = await Client.open(`ws://127.0.0.1:${port}/t`);
    d.emit('ECHO', 'x'.repeat(100_000));
    assert.equal((await d.closed).code, 1006);
    await until('the cut to be counted', () => server.stats().drops.tooBig === 2);
    assert.equal((await other.call('ECHO', 'still here')).text, 'still here');
    await other.close();
  } finally {
    await server.close();
  }
});

test('origin allow-list: other origins get 403, counted; listed ones are served', async () => {
  const server = createServer({ modules: [tools], workers: 1, allowedOrigins: ['https://good.example'] });
  const port = await server.listen(0, '127.0.0.1');
  try {
    await assert.rejects(Client.open(`ws://127.0.0.1:${port}/t`, { origin: 'https://evil.example' }), { statusCode: 403 });
    await assert.rejects(Client.open(`ws://127.0.0.1:${port}/t`), { statusCode: 403 });
    const ok = await Client.open(`ws://127.0.0.1:${port}/t`, { origin: 'https://good.example' });
    assert.equal((await ok.call('ECHO', 'hi')).text, 'hi');
    assert.equal(server.stats().drops.originRejected, 2);
    assert.equal(server.stats().liveFds, 1, 'refused upgrades took no fd');
    await ok.close();
  } finally {
    await server.close();
  }
});

test('origin allow-list compares case-insensitively: a listed origin in capitals admits the lower-case Origin browsers send', async () => {
  const server = createServer({ modules: [tools], workers: 1, allowedOrigins: ['https://App.Example.com'] });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const ok = await Client.open(`ws://127.0.0.1:${port}/t`, { origin: 'https://app.example.com' });
    assert.equal((await ok.call('ECHO', 'hi')).text, 'hi');
    await assert.rejects(Client.open(`ws://127.0.0.1:${port}/t`, { origin: 'https://app.example.org' }), { statusCode: 403 });
    assert.equal(server.stats().drops.originRejected, 1);
    await ok.close();
  } finally {
    await server.close();
  }
});

test('rate limit: past the burst the connection is closed with 1008 and counted; others unaffected', async () => {
  const server = createServer({ modules: [tools], workers: 1, rateLimit: { messagesPerSecond: 1, burst: 20 } });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const quiet = await Client.open(`ws://127.0.0.1:${port}/t`);
    const noisy = await Client.open(`ws://127.0.0.1:${port}/t`);
    for (let i = 1; i <= 100; i++) noisy.emit('ECHO', 'spam', i);
    const closed = await noisy.closed;
    assert.equal(closed.code, CloseCode.POLICY);
    assert.equal(closed.reason, 'rate limit exceeded');
    // Closed at once: replies still in flight for it are dropped as stale (counted), by design.
    assert.equal(server.stats().drops.rateLimited, 1);
    assert.equal((await quiet.call('ECHO', 'fine')).text, 'fine');
    await quiet.close();
  } finally {
    await server.close();
  }
});

test('rate limit with onExceed shed: over-limit messages get RW_ERR_RATE_LIMITED with their ref, in order; the connection stays', async () => {
  const server = createServer({ modules: [tools], workers: 1, rateLimit: { messagesPerSecond: 1, burst: 5, onExceed: 'shed', shedBurst: 100 } });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const c = await Client.open(`ws://127.0.0.1:${port}/t`);
    const N = 40;
    for (let i = 1; i <= N; i++) c.emit('ECHO', `m${i}`, i);
    const replies = [];
    for (let i = 1; i <= N; i++) replies.push(await c.next());
    // Every message is answered, in order: the burst (and any token refilled meanwhile) echoed, the rest refused.
    assert.deepEqual(replies.map((f) => f.ref), Array.from({ length: N }, (_, i) => i + 1));
    const echoed = replies.filter((f) => f.event === 'ECHO');
    const refused = replies.filter((f) => f.event === 'error');
    assert.equal(echoed.length + refused.length, N);
    assert.ok(echoed.length >= 5 && echoed.length < N, `echoed ${echoed.length}`);
    assert.deepEqual(echoed.map((f) => f.ref), Array.from({ length: echoed.length }, (_, i) => i + 1), 'the burst comes first');
    for (const f of refused) {
      assert.deepEqual(JSON.parse(f.text), { code: 'RW_ERR_RATE_LIMITED', message: 'rate limit exceeded: message not handled', event: 'ECHO' });
    }
    assert.equal(server.stats().drops.rateLimited, refused.length);
    assert.equal(c.ws.readyState, c.ws.OPEN);
    await c.close();
  } finally {
    await server.close();
  }
});

test('rate limit with onExceed shed is bounded: past the shed burst too, the connection is closed with 1008', { timeout: 20_000 }, async () => {
  const server = createServer({ modules: [tools], workers: 1, rateLimit: { messagesPerSecond: 1, burst: 5, onExceed: 'shed', shedBurst: 10 } });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const quiet = await Client.open(`ws://127.0.0.1:${port}/t`);
    const c = await Client.open(`ws://127.0.0.1:${port}/t`);
    const N = 200;
    for (let i = 1; i <= N; i++) c.emit('ECHO', `m${i}`, i);
    const closed = await c.closed;
    const replies = [];
    for (let i = c.received; i > 0; i--) replies.push(await c.next()); // all arrived before the close
    assert.equal(closed.code, CloseCode.POLICY);
    assert.equal(closed.reason, 'rate limit exceeded');
    // At 1/s nothing refills meanwhile (give or take one token in a slow run): the 5 of the burst
    // are echoed, 10 are refused, the next closes the connection. Replies still in flight when it
    // closes may be dropped as stale, so fewer may arrive, never more, and always in order.
    const echoed = replies.filter((f) => f.event === 'ECHO').length;
    const refused = replies.filter((f) => f.event === 'error').length;
    assert.ok(echoed <= 6 && refused <= 11, `echoed ${echoed}, refused ${refused}`);
    assert.deepEqual(replies.map((f) => f.ref), Array.from({ length: replies.length }, (_, i) => i + 1));
    const shedAndClosed = server.stats().drops.rateLimited;
    assert.ok(shedAndClosed >= 11 && shedAndClosed <= 13, `rateLimited ${shedAndClosed}`);
    assert.equal((await quiet.call('ECHO', 'fine')).text, 'fine');
    await quiet.close();
  } finally {
    await server.close();
  }
});

test('slowloris: an upgrade hook that never answers times out with 408 and its fd is released', async () => {
  const go = new BroadcastChannel('rw-test-go');
  const sink = new LabelSink('rw-test-labels');
  const server = createServer({ modules: [fixture('slowup.module')], workers: 1, upgradeTimeoutMs: 200 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    await assert.rejects(Client.open(`ws://127.0.0.1:${port}/slow`), { statusCode: 408 });
    const st = server.stats();
    assert.equal(st.drops.upgradeTimeout, 1);
    assert.equal(st.liveFds, 0);
    // The hook still runs: it keeps its place under maxConnections until it answers.
    assert.equal(st.orphanedUpgrades, 1);
    // When the hook finally answers, its accept is expected and dropped (counted once, as the
    // 408 was), nothing opens.
    go.postMessage('go');
    await until('the timed-out hook to answer', () => server.stats().orphanedUpgrades === 0);
    const c = new Client(`ws://127.0.0.1:${port}/slow`);
    await sink.until((l) => l.filter((x) => x.startsWith('/slow upgrade waiting')).length === 2);
    go.postMessage('go');
    await c.opened;
    assert.equal((await c.call('ECHO', 'ok')).text, 'ok');
    assert.equal(server.stats().drops.staleHandle, 0);
    assert.equal(server.stats().connections, 1);
    await c.close();
  } finally {
    go.close();
    sink.close();
    await server.close();
  }
});

test('hanging handler: the watchdog replaces the worker, its connections get 1011, the others go on', async () => {
  const server = createServer({ modules: [tools], workers: 2, handlerTimeoutMs: 300 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const url = `ws://127.0.0.1:${port}/t`;
    const clients = await Promise.all(Array.from({ length: 4 }, () => Client.open(url)));
    const threads = await Promise.all(clients.map(async (c) => (JSON.parse((await c.call('WHOAMI')).text) as { threadId: number }).threadId));
    const doomed = clients.filter((_, i) => threads[i] === threads[0]);
    const spared = clients.filter((_, i) => threads[i] !== threads[0]);
    doomed[0]!.emit('HANG');
    const codes = await Promise.all(doomed.map((c) => c.closed.then((x) => x.code)));
    assert.deepEqual(codes, doomed.map(() => CloseCode.INTERNAL));
    for (const c of spared) assert.equal((await c.call('ECHO', 'alive')).text, 'alive');
    const st = server.stats();
    assert.equal(st.drops.handlerTimeout, 1);
    assert.equal(st.workerRestarts, 1);
    const fresh = await Promise.all(Array.from({ length: 2 }, () => Client.open(url)));
    for (const c of fresh) assert.equal((await c.call('ECHO', 'new')).text, 'new');
    await Promise.all([...spared, ...fresh].map((c) => c.close()));
  } finally {
    await server.close();
  }
});

test('watchdog: a worker busy for longer than handlerTimeoutMs on many short records is not terminated', async () => {
  const server = createServer({ modules: [tools], workers: 1, handlerTimeoutMs: 300 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const c = await Client.open(`ws://127.0.0.1:${port}/t`);
    // 12 records of 60 ms back to back: 720 ms busy in one batch, but each record is short.
    for (let i = 0; i < 12; i++) c.emit('BLOCK', '60');
    assert.equal((await c.call('ECHO', 'still here')).text, 'still here');
    const st = server.stats();
    assert.equal(st.drops.handlerTimeout, 0);
    assert.equal(st.workerRestarts, 0);
    await c.close();
  } finally {
    await server.close();
  }
});

for (const [name, query, event] of [
  ['a handler stuck in a loop after an await (its worker idle meanwhile: found by the probe)', '', 'AWAIT_SPIN'],
  ['a stuck handler replayed from the queue when an async onConnect settles (worker idle)', '?slow', 'SPIN'],
] as const) {
  test(`watchdog: ${name} is terminated; the connection gets 1011, new ones are served`, { timeout: 20_000 }, async () => {
    const server = createServer({ modules: [fixture('hang.module')], workers: 1, handlerTimeoutMs: 300 });
    const port = await server.listen(0, '127.0.0.1');
    try {
      const c = await Client.open(`ws://127.0.0.1:${port}/hang${query}`);
      // Nothing else is sent: only the watchdog can end this.
      c.emit(event, '', 1);
      assert.equal((await c.closed).code, CloseCode.INTERNAL);
      const st = server.stats();
      assert.equal(st.drops.handlerTimeout, 1);
      assert.equal(st.workerRestarts, 1);
      const fresh = await Client.open(`ws://127.0.0.1:${port}/hang`);
      assert.equal((await fresh.call('ECHO', 'new')).text, 'new');
      await fresh.close();
    } finally {
      await server.close();
    }
  });
}

test('graceful close with a worker stuck in a handler: resolves at shutdownTimeoutMs, its client gets 1001', { timeout: 20_000 }, async () => {
  const server = createServer({ modules: [tools], workers: 1, handlerTimeoutMs: 60_000, shutdownTimeoutMs: 500 });
  const port = await server.listen(0, '127.0.0.1');
  const c = await Client.open(`ws://127.0.0.1:${port}/t`);
  const before = server.stats().messagesIn;
  c.emit('HANG');
  await until('HANG in the server', () => server.stats().messagesIn >= before + 1);
  // Without the deadline on the worker tasks, close() waits for ever (the test times out).
  await server.close();
  assert.equal((await c.closed).code, CloseCode.GOING_AWAY);
  assert.equal(server.listening, false);
});

test('a worker that dies during graceful close: its connections get 1011 at once, it is not restarted', { timeout: 20_000 }, async () => {
  const server = createServer({ modules: [tools], workers: 1, shutdownTimeoutMs: 60_000 });
  const port = await server.listen(0, '127.0.0.1');
  const a = await Client.open(`ws://127.0.0.1:${port}/t`);
  const b = await Client.open(`ws://127.0.0.1:${port}/t`);
  const before = server.stats().messagesIn;
  a.emit('BLOCK', '300');
  a.emit('CRASH');
  // Both are in the server before close() starts (a condition, not a delay).
  await until('BLOCK and CRASH in the server', () => server.stats().messagesIn >= before + 2);
  // The shutdown barrier waits on the dying worker: its death must answer it (or close() takes 60 s).
  await server.close();
  assert.deepEqual([(await a.closed).code, (await b.closed).code], [CloseCode.INTERNAL, CloseCode.INTERNAL]);
  assert.equal(server.stats().workerRestarts, 0);
});

/** A raw WebSocket client that subscribes, then never reads again. */
async function slowConsumer(port: number): Promise<Socket> {
  const sock = connect(port, '127.0.0.1');
  await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
  sock.write('GET /lim HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  let head = '';
  let body = '';
  let subscribed = false;
  await new Promise<void>((resolve) => {
    const onData = (d: Buffer): void => {
      if (!subscribed) {
        head += d.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        assert.match(head, /^HTTP\/1\.1 101/);
        body = head.slice(end + 4);
        subscribed = true;
        sock.write(buildMaskedFrame(2, encodeFrame({ event: 'SUB', ref: 1 })));
      } else {
        body += d.toString('latin1');
      }
      if (body.includes('ok')) {
        sock.off('data', onData);
        sock.pause(); // from now on the kernel buffers fill up and uWS backpressure grows
        resolve();
      }
    };
    sock.on('data', onData);
  });
  return sock;
}

test('slow consumer: a client that never reads is closed at maxBackpressure; memory stays bounded; others unaffected', async (t) => {
  const server = createServer({ modules: [limits], workers: 1 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const url = `ws://127.0.0.1:${port}/lim`;
    const bystander = await Client.open(url);
    const slow = await slowConsumer(port);
    const publisher = await Client.open(url);
    let rss0 = 0;
    const STEPS = 1280;
    const PER = 10;
    const SIZE = 16 * 1024; // 1280 x 10 x 16 KiB = 200 MiB published at the slow consumer
    for (let i = 0; i < STEPS; i++) {
      // RSS is taken once a quarter has been published (rings, pools and JIT settled):
      // the remaining 150 MiB must not show up in it.
      if (i === STEPS / 4) rss0 = process.memoryUsage().rss;
      assert.equal((await publisher.call('FLOOD', `${PER}:${SIZE}`, i + 1)).text, 'flooded');
    }
    const rss1 = process.memoryUsage().rss;
    t.diagnostic(`published ${(STEPS * PER * SIZE / 1048576).toFixed(0)} MiB at a non-reading client; process RSS after the first quarter / at the end: ${(rss0 / 1048576).toFixed(1)} -> ${(rss1 / 1048576).toFixed(1)} MiB`);
    assert.equal(server.stats().connections, 2, 'the slow consumer was closed; bystander and publisher remain');
    assert.ok(rss1 - rss0 < 48 * 1024 * 1024, `RSS grew by ${((rss1 - rss0) / 1048576).toFixed(1)} MiB`);
    assert.equal((await bystander.call('ECHO', 'unaffected')).text, 'unaffected');
    slow.destroy();
    await Promise.all([bystander.close(), publisher.close()]);
  } finally {
    await server.close();
  }
});

test('async hooks that never settle: abandoned after asyncTimeoutMs with RW_ERR_HANDLER_TIMEOUT; the connection is closed 1011, its close and shutdown are not held', async () => {
  const sink = new LabelSink('rw-test-labels');
  const server = createServer({ modules: [fixture('hang.module')], workers: 1, asyncTimeoutMs: 150 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const other = await Client.open(`ws://127.0.0.1:${port}/hang`);
    // A handler that never settles: error reply correlated to its ref, then 1011.
    const a = await Client.open(`ws://127.0.0.1:${port}/hang`);
    a.emit('HANG', '', 7);
    const err = await a.next();
    assert.equal(err.event, 'error');
    assert.equal(err.ref, 7);
    assert.equal(JSON.parse(err.text).code, 'RW_ERR_HANDLER_TIMEOUT');
    assert.equal((await a.closed).code, 1011);
    await sink.until((l) => l.includes('/hang error message RW_ERR_HANDLER_TIMEOUT'));
    // Its close still ran the disconnect hook (the connection's queue was released).
    await sink.until((l) => l.includes('/hang disconnect 1011'));

    // An onConnect that never settles: the connection is closed with 1011.
    const b = new Client(`ws://127.0.0.1:${port}/hang?connect`);
    await b.opened;
    assert.equal((await b.closed).code, 1011);
    await sink.until((l) => l.includes('/hang error connect RW_ERR_HANDLER_TIMEOUT'));

    // An onDisconnect that never settles: the worker forgets the connection anyway.
    const c = await Client.open(`ws://127.0.0.1:${port}/hang`);
    assert.equal((await c.call('HANG_CLOSE')).text, 'ok');
    await c.close();
    await sink.until((l) => l.includes('/hang error disconnect RW_ERR_HANDLER_TIMEOUT'));

    // Other connections on the same worker were served throughout.
    assert.equal((await other.call('ECHO', 'still here')).text, 'still here');
    assert.equal(server.stats().workers[0]!.asyncTimeouts, 3);
    await other.close();
  } finally {
    sink.close();
    await server.close();
  }
});

test('onDrain: a handler streams 400 × 64 KiB to a client that stops reading, pauses at a low-water mark and resumes from onDrain; every chunk arrives once', async () => {
  const sink = new LabelSink('rw-test-labels');
  const server = createServer({ modules: [fixture('stream.module')], workers: 1 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const c = await Client.open(`ws://127.0.0.1:${port}/stream`);
    c.ws.pause(); // the client stops reading: the kernel buffers fill, then uWS buffers
    c.emit('START', '400');
    // Backpressure has built up in uWS (the handler has paused itself at its low-water mark).
    await until('backpressure in uWS', () => server.connections().some((r) => r.bufferedAmount > 256 * 1024));
    c.ws.resume();
    let chunks = 0;
    let bytes = 0;
    for (;;) {
      const f = await c.next();
      if (f.event === 'DONE') {
        assert.equal(f.text, '400');
        break;
      }
      assert.equal(f.event, 'CHUNK');
      chunks++;
      bytes += f.payload.length;
    }
    assert.equal(chunks, 400);
    assert.equal(bytes, 400 * 64 * 1024);
    // The handler really paused at its low-water mark (from there only onDrain can resume it),
    // and the stream went on from onDrain: its first drain came after that pause.
    await sink.until((l) => l.some((x) => x.startsWith('/stream first drain buffered=')));
    const pause = sink.labels.indexOf('/stream first pause');
    const drain = sink.labels.findIndex((x) => x.startsWith('/stream first drain buffered='));
    assert.ok(pause >= 0 && pause < drain, `the pump paused before the first drain: ${JSON.stringify(sink.labels)}`);
    const buffered = Number(sink.labels[drain]!.split('=')[1]);
    assert.ok(Number.isInteger(buffered) && buffered >= 0, sink.labels[drain]);
    assert.equal(server.stats().drops.backpressure, 0);
    await c.close();
  } finally {
    sink.close();
    await server.close();
  }
});

test('a drain event while the worker\'s ring and overflow are full is kept, not dropped: the stream paused for onDrain completes', async () => {
  const gate = new WorkerGate();
  // One worker for both modules; a 1 MiB ring (the stream's 64 KiB chunks must fit) and a 4 KiB overflow.
  const server = createServer({ modules: [fixture('stream.module'), fixture('gate.module')], workers: 1, ringBytes: 1 << 20, overflowBytes: 4096, handlerTimeoutMs: 0 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const g = await Client.open(`ws://127.0.0.1:${port}/gate/x`);
    const floods = await Promise.all(Array.from({ length: 6 }, () => Client.open(`ws://127.0.0.1:${port}/gate/x`)));
    await gate.arm(g);
    const c = await Client.open(`ws://127.0.0.1:${port}/stream`);
    c.ws.pause(); // the client stops reading: uWS buffers, the handler pauses at its low-water mark
    c.emit('START', '400');
    const buffered = (): number => server.connections().find((r) => r.module === '/stream')?.bufferedAmount ?? 0;
    await until('backpressure in uWS', () => buffered() > 256 * 1024);
    g.emit('GATE'); // the worker blocks until the gate opens
    // 8-byte messages make 64-byte records: 16,384 fill the ring, 64 the overflow, exactly. The
    // first connection fills the ring (and its quarter of the overflow); once it is refused, five
    // more fill the rest. Each is refused past its quarter or when the overflow is full: 1013.
    const [first, ...rest] = floods;
    for (let i = 0; i < 17_000; i++) first!.ws.send(new Uint8Array(8));
    assert.equal((await first!.closed).code, CloseCode.TRY_AGAIN);
    for (const f of rest) for (let i = 0; i < 20; i++) f.ws.send(new Uint8Array(8));
    for (const f of rest) assert.equal((await f.closed).code, CloseCode.TRY_AGAIN);
    assert.ok(server.stats().drops.inboundFull > 0, 'the overflow filled up');
    const before = server.stats().drops.inboundFull;
    c.ws.resume(); // uWS drains the socket: drain events while the worker can take nothing
    await until('uWS drained the socket', () => buffered() === 0);
    assert.equal(server.stats().drops.inboundFull, before, 'no drain event was dropped');
    gate.open();
    assert.equal((await g.next()).text, 'open');
    let chunks = 0;
    for (;;) {
      const f = await c.next();
      if (f.event === 'DONE') break;
      chunks++;
    }
    assert.equal(chunks, 400, 'the stream resumed from the kept drain event');
    await Promise.all([g.close(), c.close()]);
  } finally {
    gate.close();
    await server.close();
  }
});
