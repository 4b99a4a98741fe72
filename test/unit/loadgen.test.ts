import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import {
  FrameParser, type FrameSink, Opcode, buildFrameWindow, buildMaskedFrame, buildUpgradeRequest,
  checkUpgradeResponse, expectedAccept, maskedFrameLength, newWebSocketKey,
} from '../../bench/loadgen/frames.js';
import { LatencyHistogram, bucketHighest, bucketIndex } from '../../bench/loadgen/histogram.js';
import { planLoad, runLoad } from '../../bench/loadgen/index.js';
import { HANDOFF_ECHO_SCRIPT, UWS_ECHO_SCRIPT, startServer } from '../../bench/servers/spawn.js';

/** Records parser events as labels, for deepStrictEqual on the whole sequence. */
class RecordingSink implements FrameSink {
  readonly events: string[] = [];
  onMessage(_c: number, opcode: number, length: number, payload: Buffer | null): void {
    this.events.push(`msg:${opcode}:${length}:${payload === null ? '-' : payload.toString('hex')}`);
  }
  onPing(_c: number, payload: Buffer): void { this.events.push(`ping:${payload.toString('hex')}`); }
  onPong(): void { this.events.push('pong'); }
  onClose(_c: number, code: number): void { this.events.push(`close:${code}`); }
  onProtocolError(_c: number, reason: string): void { this.events.push(`error:${reason}`); }
}

/** An unmasked server frame; `len64` forces the 8-byte length form. */
function serverFrame(opcode: number, payload: Uint8Array, fin = true, len64 = false): Buffer {
  const n = payload.length;
  let head: number[];
  if (len64 || n >= 65536) {
    head = [127, 0, 0, 0, 0, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
  } else if (n >= 126) {
    head = [126, n >>> 8, n & 0xff];
  } else {
    head = [n];
  }
  return Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode, ...head]), payload]);
}

function parseSplit(stream: Buffer, cuts: readonly number[]): string[] {
  const sink = new RecordingSink();
  const p = new FrameParser(sink, 7, true);
  let prev = 0;
  for (const c of [...cuts, stream.length]) {
    p.push(stream.subarray(prev, c));
    prev = c;
  }
  return sink.events;
}

const p5 = Buffer.from('hello');
const p10 = randomBytes(10);
const p126 = randomBytes(126);
const p300 = randomBytes(300);
const SMALL_STREAM = Buffer.concat([
  serverFrame(Opcode.TEXT, p5),
  serverFrame(Opcode.BINARY, p126), // 16-bit length
  serverFrame(Opcode.BINARY, p10, true, true), // 64-bit length form
  serverFrame(Opcode.PING, Buffer.from('pi')),
  serverFrame(Opcode.BINARY, Buffer.alloc(0)),
  serverFrame(Opcode.TEXT, Buffer.from('frag'), false), // fragmented message ...
  serverFrame(Opcode.PONG, Buffer.alloc(0)), // ... with a control frame in between
  serverFrame(Opcode.CONTINUATION, p300, true), // ... ended by a 16-bit continuation
  serverFrame(Opcode.CLOSE, Buffer.from([0x03, 0xe8])),
]);
const SMALL_EXPECTED = [
  `msg:1:5:${p5.toString('hex')}`,
  `msg:2:126:${p126.toString('hex')}`,
  `msg:2:10:${p10.toString('hex')}`,
  `ping:${Buffer.from('pi').toString('hex')}`,
  'msg:2:0:',
  'pong',
  `msg:1:304:${Buffer.concat([Buffer.from('frag'), p300]).toString('hex')}`,
  'close:1000',
];

test('frame parser: one chunk, every single split point, and byte-at-a-time give the same events', () => {
  assert.deepStrictEqual(parseSplit(SMALL_STREAM, []), SMALL_EXPECTED);
  for (let i = 0; i <= SMALL_STREAM.length; i++) {
    assert.deepStrictEqual(parseSplit(SMALL_STREAM, [i]), SMALL_EXPECTED, `split at ${i}`);
  }
  const every = Array.from({ length: SMALL_STREAM.length - 1 }, (_, i) => i + 1);
  assert.deepStrictEqual(parseSplit(SMALL_STREAM, every), SMALL_EXPECTED);
});

test('frame parser: 64-bit length frame (70000 B) split around header and payload edges', () => {
  const big = randomBytes(70_000);
  const stream = Buffer.concat([serverFrame(Opcode.BINARY, big), serverFrame(Opcode.TEXT, p5)]);
  const expected = [`msg:2:70000:${big.toString('hex')}`, `msg:1:5:${p5.toString('hex')}`];
  const cuts: number[] = [];
  for (let i = 0; i <= 64; i++) cuts.push(i); // inside and right after the 10-byte header
  for (let i = stream.length - 64; i <= stream.length; i++) cuts.push(i); // payload end, next frame
  for (let i = 65; i < stream.length - 64; i += 997) cuts.push(i);
  for (const c of cuts) assert.deepStrictEqual(parseSplit(stream, [c]), expected, `split at ${c}`);
});

test('frame parser: protocol violations are reported with a reason and stop parsing', () => {
  const cases: [Buffer, string][] = [
    [Buffer.from([0x82, 0x81, 1, 2, 3, 4, 0]), 'error:frame:masked-server-frame'],
    [Buffer.from([0xc2, 0x00]), 'error:frame:rsv-bits'],
    [Buffer.from([0x80, 0x00]), 'error:frame:unexpected-continuation'],
    [Buffer.from([0x89, 126, 0, 200]), 'error:frame:bad-control-frame'],
    [Buffer.from([0x83, 0x00]), 'error:frame:bad-opcode'],
    [Buffer.from([0x82, 127, 0xff, 0, 0, 0, 0, 0, 0, 0]), 'error:frame:length-too-large'],
  ];
  for (const [bytes, want] of cases) {
    const sink = new RecordingSink();
    const p = new FrameParser(sink, 0, true);
    p.push(Buffer.concat([bytes, serverFrame(Opcode.TEXT, p5)]));
    assert.deepStrictEqual(sink.events, [want]);
    assert.equal(p.failed, true);
  }
});

test('masked frames (7/16/64-bit lengths, text and binary) are decoded by the real ws server', async () => {
  const received: { data: Buffer; binary: boolean }[] = [];
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  wss.on('connection', (ws) => {
    ws.on('message', (data: RawData, isBinary: boolean) => {
      received.push({ data: data as Buffer, binary: isBinary });
      ws.send(data, { binary: isBinary }); // echo back: our parser must read ws's frames too
    });
  });
  await once(wss, 'listening');
  const port = (wss.address() as net.AddressInfo).port;
  const sock = net.connect({ host: '127.0.0.1', port });
  // Bounded waits: a parser that loses sync must fail the test, not hang it.
  const signal = AbortSignal.timeout(5000);
  try {
    const payloads = [0, 1, 5, 125, 126, 127, 300, 65535, 65536, 70_000].map((n) => randomBytes(n));
    const text = Buffer.from('héllo wörld', 'utf8');
    await once(sock, 'connect', { signal });
    const key = newWebSocketKey();
    sock.write(buildUpgradeRequest(`127.0.0.1:${port}`, '/', key));
    let buf = Buffer.alloc(0);
    let headerEnd = -1;
    while (headerEnd < 0) {
      const [chunk] = (await once(sock, 'data', { signal })) as [Buffer];
      buf = Buffer.concat([buf, chunk]);
      const r = checkUpgradeResponse(buf, expectedAccept(key));
      assert.notEqual(r.kind, 'error');
      if (r.kind === 'ok') headerEnd = r.headerEnd;
    }
    // Wrong accept value is rejected.
    assert.deepStrictEqual(checkUpgradeResponse(buf, expectedAccept(newWebSocketKey())), { kind: 'error', reason: 'upgrade:bad-accept' });

    const sink = new RecordingSink();
    const parser = new FrameParser(sink, 1, true);
    parser.push(buf, headerEnd);
    sock.on('data', (chunk: Buffer) => parser.push(chunk));
    const mask = Uint8Array.of(0xa1, 0x5b, 0x00, 0xff);
    const frames = payloads.map((p) => buildMaskedFrame(Opcode.BINARY, p, mask));
    frames.forEach((f, i) => assert.equal(f.length, maskedFrameLength(payloads[i]!.length)));
    sock.write(Buffer.concat([...frames, buildMaskedFrame(Opcode.TEXT, text, mask)]));
    // A pre-built window is the same frame repeated.
    sock.write(buildFrameWindow(Opcode.BINARY, p5, mask, 3));
    const total = payloads.length + 1 + 3;
    while (sink.events.length < total) await once(sock, 'data', { signal });

    const expected = [...payloads.map((p) => ({ data: p, binary: true })), { data: text, binary: false },
      { data: p5, binary: true }, { data: p5, binary: true }, { data: p5, binary: true }];
    assert.deepStrictEqual(received.map((r) => ({ data: Buffer.from(r.data), binary: r.binary })),
      expected.map((e) => ({ data: Buffer.from(e.data), binary: e.binary })));
    assert.deepStrictEqual(sink.events, expected.map((e) =>
      `msg:${e.binary ? 2 : 1}:${e.data.length}:${Buffer.from(e.data).toString('hex')}`));
  } finally {
    sock.destroy();
    for (const c of wss.clients) c.terminate();
    wss.close();
  }
});

test('histogram: percentiles within bucket precision, buckets merge exactly', () => {
  for (const v of [0, 1, 255, 256, 257, 511, 512, 1000, 123_456, 2 ** 31 - 1, 2 ** 31, 5e9, 2 ** 39]) {
    const i = bucketIndex(v);
    assert.ok(bucketHighest(i) >= v, `highest(${i}) >= ${v}`);
    assert.ok(i === 0 || bucketHighest(i - 1) < v, `bucket ${i} is the first holding ${v}`);
  }
  const a = new LatencyHistogram();
  const b = new LatencyHistogram();
  const all: number[] = [];
  for (let i = 0; i < 20_000; i++) {
    const v = Math.floor(Math.exp(Math.random() * 16)); // 1 ns .. ~9 ms, log-spread
    (i % 2 === 0 ? a : b).record(v);
    all.push(v);
  }
  all.sort((x, y) => x - y);
  const merged = LatencyHistogram.fromSparse(a.toSparse());
  merged.merge(b.toSparse());
  assert.equal(merged.total, all.length);
  for (const p of [50, 90, 99, 99.9]) {
    const exact = all[Math.ceil((p / 100) * all.length) - 1]!;
    const got = merged.percentile(p);
    assert.ok(got >= exact && got <= exact * 1.01 + 1, `p${p}: got ${got}, exact ${exact}`);
  }
  assert.equal(merged.max, all[all.length - 1]);
});

test('planLoad: splits connections over processes and source addresses, rejects over-full processes', () => {
  const cfgs = planLoad({ url: 'ws://127.0.0.1:9/x?y=1', connections: 5, inflight: 2, payload: p5, durationMs: 10,
    processes: 2, sourceAddresses: 3 });
  assert.deepStrictEqual(cfgs.map((c) => [c.connections, c.connectionOffset, c.path]), [[3, 0, '/x?y=1'], [2, 3, '/x?y=1']]);
  assert.deepStrictEqual(cfgs[0]!.sourceAddresses, ['127.0.0.1', '127.0.0.2', '127.0.0.3']);
  assert.throws(() => planLoad({ url: 'ws://127.0.0.1:9/', connections: 40_000, inflight: 1, payload: p5, durationMs: 10 }),
    RangeError);
  assert.throws(() => planLoad({ url: 'http://127.0.0.1:9/', connections: 1, inflight: 1, payload: p5, durationMs: 10 }),
    TypeError);
});

test('runLoad smoke: raw uWS echo, 4 connections over 2 processes and 2 source addresses', async () => {
  const server = await startServer(UWS_ECHO_SCRIPT);
  try {
    const r = await runLoad({
      url: `ws://127.0.0.1:${server.port}/`, connections: 4, inflight: 4, payload: p5,
      durationMs: 500, warmupMs: 100, processes: 2, sourceAddresses: 2,
    });
    assert.deepStrictEqual(r.errorKinds, {});
    assert.equal(r.errors, 0);
    assert.equal(r.established, 4);
    assert.ok(r.messages > 0, 'messages > 0');
    assert.equal(r.histogram.total, r.messages);
    assert.equal(r.processes, 2);
    assert.equal(r.clientCpuPercent.length, 2);
    assert.deepStrictEqual(r.closeCodes, { 1000: 4 }); // every connection closed with a clean handshake
    assert.ok(r.latencyUs !== null && r.latencyUs.p50 > 0 && r.latencyUs.p50 <= r.latencyUs.p99);

    const c = await runLoad({
      url: `ws://127.0.0.1:${server.port}/`, connections: 2, inflight: 2, payload: p5, binary: false,
      durationMs: 300, mode: 'count',
    });
    assert.equal(c.errors, 0);
    assert.ok(c.messages > 0);
    assert.equal(c.latencyUs, null);
    assert.equal(c.histogram.total, 0);
  } finally {
    await server.stop();
  }
});

test('hand-off floor server: every message comes back unchanged, in order, across ring wrap-around', async () => {
  const server = await startServer(HANDOFF_ECHO_SCRIPT);
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/echo`);
    await once(ws, 'open');
    const got: { data: Buffer; binary: boolean }[] = [];
    let want = 0;
    let wake: (() => void) | null = null;
    let closed: Error | null = null;
    ws.on('message', (data: Buffer, binary: boolean) => {
      got.push({ data, binary });
      if (got.length === want) wake?.();
    });
    ws.on('close', (code: number) => {
      closed = new Error(`closed with ${code}`);
      wake?.();
    });
    // 1,500 messages of 1..1,500 bytes (~1.1 MB, so both 1 MiB rings wrap), sent in windows of
    // 100: a burst larger than the inbound ring would be refused with 1013 (this server has no overflow).
    const sent: { data: Buffer; binary: boolean }[] = [];
    for (let i = 1; i <= 1500; i++) {
      const binary = i % 3 !== 0;
      const m = { data: binary ? Buffer.alloc(i, i & 0xff) : Buffer.from('é'.repeat(i >> 1) + 'x', 'utf8'), binary };
      sent.push(m);
      ws.send(m.data, { binary });
      if (i % 100 === 0) {
        want = i;
        await new Promise<void>((resolve) => { wake = resolve; if (got.length >= want || closed !== null) resolve(); });
        if (closed !== null) throw closed;
      }
    }
    assert.equal(got.length, sent.length);
    for (let i = 0; i < sent.length; i++) {
      assert.equal(got[i]!.binary, sent[i]!.binary, `message ${i} opcode`);
      assert.ok(got[i]!.data.equals(sent[i]!.data), `message ${i} bytes`);
    }
    ws.close();
    await once(ws, 'close');
  } finally {
    await server.stop();
  }
});

/** An in-process ws server answering every message with `reply(message)` (a bad echo server on demand). */
async function replyServer(reply: (data: Buffer) => Buffer): Promise<{ port: number; close(): void }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  wss.on('connection', (ws) => {
    ws.on('message', (data: RawData, isBinary: boolean) => ws.send(reply(data as Buffer), { binary: isBinary }));
  });
  await once(wss, 'listening');
  return {
    port: (wss.address() as net.AddressInfo).port,
    close: () => {
      for (const c of wss.clients) c.terminate();
      wss.close();
    },
  };
}

test('planLoad: both modes pass the expected reply length (default: the payload length)', () => {
  const base = { url: 'ws://127.0.0.1:9/', connections: 2, inflight: 1, payload: p5, durationMs: 10 };
  assert.equal(planLoad(base)[0]!.replyBytes, p5.length);
  assert.equal(planLoad({ ...base, replyBytes: 7 })[0]!.replyBytes, 7);
  assert.equal(planLoad({ ...base, replyBytes: null })[0]!.replyBytes, undefined);
  // Fan-out deliveries are the published message: an error frame answering the publisher is not one.
  assert.equal(planLoad({ ...base, mode: 'count' })[0]!.replyBytes, p5.length);
  assert.equal(planLoad({ ...base, mode: 'count', replyBytes: null })[0]!.replyBytes, undefined);
  assert.throws(() => planLoad({ ...base, replyBytes: -1 }), RangeError);
});

test('echo load: a reply of another length than the request is an error, not a counted echo', async () => {
  // Replies one byte longer (what an error frame instead of the echo looks like to the client).
  const bad = await replyServer((d) => Buffer.concat([d, Buffer.of(0)]));
  try {
    const r = await runLoad({ url: `ws://127.0.0.1:${bad.port}/`, connections: 2, inflight: 2, payload: p5, durationMs: 200 });
    assert.equal(r.established, 2);
    assert.ok(r.errors > 0, `errors: ${r.errors}`);
    assert.ok((r.errorKinds['echo:unexpected-reply'] ?? 0) > 0, JSON.stringify(r.errorKinds));
    assert.equal(r.messages, 0, 'no wrong reply counted as an echo');
    assert.equal(r.histogram.total, 0);
  } finally {
    bad.close();
  }
  // The same server echoing exactly: no errors (the check does not flag good echoes).
  const good = await replyServer((d) => d);
  try {
    const r = await runLoad({ url: `ws://127.0.0.1:${good.port}/`, connections: 2, inflight: 2, payload: p5, durationMs: 200 });
    assert.deepStrictEqual(r.errorKinds, {});
    assert.ok(r.messages > 0);
  } finally {
    good.close();
  }
});

test('count load: a message of another length than the one published is an error, not a counted delivery', async () => {
  const bad = await replyServer((d) => Buffer.concat([d, Buffer.of(0)]));
  try {
    const r = await runLoad({ url: `ws://127.0.0.1:${bad.port}/`, connections: 2, inflight: 2, payload: p5, durationMs: 200, mode: 'count' });
    assert.equal(r.established, 2);
    assert.ok((r.errorKinds['count:unexpected-message'] ?? 0) > 0, JSON.stringify(r.errorKinds));
    assert.equal(r.messages, 0, 'no wrong message counted as a delivery');
  } finally {
    bad.close();
  }
  const good = await replyServer((d) => d);
  try {
    const r = await runLoad({ url: `ws://127.0.0.1:${good.port}/`, connections: 2, inflight: 2, payload: p5, durationMs: 200, mode: 'count' });
    assert.deepStrictEqual(r.errorKinds, {});
    assert.ok(r.messages > 0);
  } finally {
    good.close();
  }
});

/** Whether `pid` is a live process (a zombie nobody reaped yet counts as gone). */
function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

test('e2e bench servers (startServer) exit when the bench process is SIGKILLed', async () => {
  const parent = spawn(process.execPath, [fileURLToPath(new URL('../fixtures/bench-server-parent.js', import.meta.url))],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  let pids: number[] = [];
  try {
    const [line] = (await once(createInterface({ input: parent.stdout! }), 'line', { signal: AbortSignal.timeout(30_000) })) as [string];
    pids = JSON.parse(line) as number[];
    assert.equal(pids.length, 4);
    for (const pid of pids) assert.ok(processAlive(pid), `server ${pid} running`);
    const gone = once(parent, 'exit');
    parent.kill('SIGKILL'); // no handler runs: only the stdin lifeline can stop the servers
    await gone;
    const deadline = Date.now() + 10_000;
    while (pids.some(processAlive) && Date.now() < deadline) await delay(20);
    assert.deepStrictEqual(pids.filter(processAlive), [], 'servers still running after their parent was killed');
  } finally {
    parent.kill('SIGKILL');
    for (const pid of pids) if (processAlive(pid)) process.kill(pid, 'SIGKILL');
  }
});

test('runLoad onWindow: start once every client process connected and finished warm-up, end once, before the result', async () => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  let open = 0;
  wss.on('connection', (ws) => {
    open++;
    ws.on('message', (data: RawData, isBinary: boolean) => ws.send(data, { binary: isBinary }));
  });
  await once(wss, 'listening');
  const port = (wss.address() as net.AddressInfo).port;
  try {
    const events: string[] = [];
    const r = await runLoad({
      url: `ws://127.0.0.1:${port}/`, connections: 4, inflight: 2, payload: p5, durationMs: 200, warmupMs: 100, processes: 2,
      sourceAddresses: 2, onWindow: (phase) => events.push(`${phase}:${open}`),
    });
    events.push('result');
    // Every connection of both processes was up when the window (and a server-side sampler) started.
    assert.deepStrictEqual(events, ['start:4', 'end:4', 'result']);
    assert.equal(r.errors, 0);
  } finally {
    for (const c of wss.clients) c.terminate();
    wss.close();
  }
});

test('a bad frame during the application handshake is reported as such; the run does not wait for the connection', async () => {
  // Upgrades properly, then answers the handshake with a frame that has RSV bits set.
  const server = net.createServer((sock) => {
    let head = '';
    sock.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      const key = /Sec-WebSocket-Key: (\S+)\r\n/i.exec(head)?.[1];
      if (key === undefined || !head.includes('\r\n\r\n')) return;
      head = '';
      sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${expectedAccept(key)}\r\n\r\n`);
      sock.write(Buffer.of(0xf1, 0x00));
    });
    sock.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const r = await runLoad({
      url: `ws://127.0.0.1:${(server.address() as net.AddressInfo).port}/`, connections: 2, inflight: 1, payload: p5, durationMs: 100,
      handshake: { sendText: ['40'], expectMessages: 1 },
    });
    assert.equal(r.established, 0);
    assert.deepStrictEqual(r.errorKinds, { 'frame:rsv-bits': 2 });
  } finally {
    server.close();
  }
});
