import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { createServer } from '../../src/core/server.js';
import { encodeFrame } from '../../src/shared/wire.js';
import { Client, fixture } from '../helpers.js';

/** Seeded PRNG (xorshift32) so a failure can be replayed with FUZZ_SEED. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}
const SEED = Number(process.env['FUZZ_SEED'] ?? 0x5eed);
const CASES = Number(process.env['FUZZ_CASES'] ?? 100_000);

test(`fuzz through a live server: ${CASES} random and mutated binary frames, each answered, nothing crashes`, async (t) => {
  const server = createServer({ modules: [fixture('fuzz.module')], workers: 2 });
  const port = await server.listen(0, '127.0.0.1');
  const rnd = prng(SEED);
  try {
    const c = await Client.open(`ws://127.0.0.1:${port}/fuzz`);
    const valid = encodeFrame({ event: 'ECHO', ref: 7, payload: 'payload bytes' }).slice();
    let rss0 = 0;
    const WINDOW = 1000;
    let errors = 0;
    let echoes = 0;
    for (let sent = 0; sent < CASES; sent += WINDOW) {
      // RSS is taken after a warm-up tenth of the run (JIT, pools and buffers settled).
      if (sent === Math.floor(CASES / 10 / WINDOW) * WINDOW) rss0 = process.memoryUsage().rss;
      for (let i = 0; i < WINDOW; i++) {
        let frame: Uint8Array;
        if (rnd() & 1) {
          frame = new Uint8Array(rnd() % 300);
          for (let k = 0; k < frame.length; k++) frame[k] = rnd() & 0xff;
        } else {
          frame = valid.slice(0, valid.length - (rnd() % 4 === 0 ? rnd() % valid.length : 0));
          const flips = 1 + (rnd() % 4);
          for (let k = 0; k < flips && frame.length > 0; k++) frame[rnd() % frame.length]! ^= 1 << (rnd() % 8);
        }
        c.ws.send(frame);
      }
      for (let i = 0; i < WINDOW; i++) {
        const f = await c.next();
        if (f.event === 'error') {
          const code = (JSON.parse(f.text) as { code: string }).code;
          assert.ok(code === 'RW_ERR_BAD_FRAME' || code === 'RW_ERR_UNKNOWN_EVENT', code);
          errors++;
        } else {
          echoes++;
        }
      }
    }
    const rss1 = process.memoryUsage().rss;
    t.diagnostic(`${CASES} frames: ${errors} typed error replies, ${echoes} echoes; RSS ${(rss0 / 1048576).toFixed(1)} -> ${(rss1 / 1048576).toFixed(1)} MiB`);
    assert.equal(errors + echoes, CASES);
    assert.ok(errors > CASES / 2);
    const st = server.stats();
    assert.equal(st.workerRestarts, 0);
    assert.equal(st.connections, 1);
    assert.ok(rss1 - rss0 < 48 * 1024 * 1024, 'no memory growth across the run');
    assert.equal((await c.call('ECHO', 'still fine', 1)).text, 'still fine');
    await c.close();
  } finally {
    await server.close();
  }
});

test(`fuzz JSON codec through a live server: ${CASES} hostile text frames, each answered`, async () => {
  const server = createServer({ modules: [fixture('json.module')], workers: 1 });
  const port = await server.listen(0, '127.0.0.1');
  const rnd = prng(SEED + 1);
  const pieces = ['{', '}', '"cmd"', ':', '"ADD"', ',', '"data"', '{"a":1,"b":2}', '"ref"', '1', '-1', '1e309', '[]', 'null', '"\\u0000"', ' ', '"x"'];
  try {
    const c = await Client.open(`ws://127.0.0.1:${port}/json`);
    const N = CASES;
    const WINDOW = 500;
    for (let sent = 0; sent < N; sent += WINDOW) {
      for (let i = 0; i < WINDOW; i++) {
        let s = '';
        const n = 1 + (rnd() % 12);
        for (let k = 0; k < n; k++) s += pieces[rnd() % pieces.length];
        c.ws.send(s);
      }
      for (let i = 0; i < WINDOW; i++) {
        const m = await c.nextJson();
        if (m.cmd === 'error') {
          const code = (m.data as { code: string }).code;
          assert.ok(['RW_ERR_BAD_FRAME', 'RW_ERR_UNKNOWN_EVENT', 'RW_ERR_HANDLER'].includes(code), code);
        } else {
          assert.equal(m.cmd, 'ADD');
        }
      }
    }
    assert.equal(server.stats().workerRestarts, 0);
    await c.close();
  } finally {
    await server.close();
  }
});

test(`hostile upgrade requests (${CASES}): every one answered or closed, the server keeps serving, no fd leaks`, async (t) => {
  const server = createServer({ modules: [fixture('fuzz.module')], workers: 1 });
  const port = await server.listen(0, '127.0.0.1');
  const rnd = prng(SEED + 2);
  const variants: ((i: number) => string)[] = [
    () => 'GET /fuzz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n', // no key
    () => `GET /fuzz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${'A'.repeat(rnd() % 200)}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    () => `GET /fuzz HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 200 }, (_, k) => `X-H${k}: ${'v'.repeat(rnd() % 50)}`).join('\r\n')}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    () => `GET /fuzz HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20_000 + (rnd() % 50_000))}\r\nUpgrade: websocket\r\n\r\n`,
    () => `GET /fuzz?${'q'.repeat(rnd() % 5000)} HTTP/1.1\r\nHost: \u00ff\u00fe\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: \r\n\r\n`,
    () => { let s = ''; const n = rnd() % 400; for (let k = 0; k < n; k++) s += String.fromCharCode(rnd() % 256); return s + '\r\n\r\n'; },
    () => 'GET /fuzz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 5\r\n\r\nhello',
    () => 'GET /nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
  ];
  try {
    // 100,000 requests by default (FUZZ_CASES): 32 at a time, spread over source addresses
    // 127.0.0.2.. so loopback ephemeral ports (and their TIME_WAIT) never run out.
    const N = CASES;
    const CONCURRENCY = 32;
    const outcomes = new Map<string, number>();
    let next = 0;
    const one = (i: number): Promise<string> => new Promise<string>((resolve) => {
      const req = variants[i % variants.length]!(i);
      const sock = connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${2 + (i % 16)}` });
      let buf = '';
      sock.on('data', (d) => {
        buf += d.toString('latin1');
        const m = /^HTTP\/1\.1 (\d{3})/.exec(buf);
        if (m) { resolve(m[1]!); sock.destroy(); }
      });
      sock.on('close', () => resolve(buf === '' ? 'closed' : buf.slice(0, 12)));
      sock.on('error', () => undefined);
      sock.once('connect', () => sock.end(Buffer.from(req, 'latin1')));
    });
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < N) {
        const outcome = await one(next++);
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }
    }));
    t.diagnostic(`${N} hostile upgrade requests: ${JSON.stringify(Object.fromEntries(outcomes))}`);
    // No request crashed anything: the server serves a real client afterwards, and holds no stray fds.
    const c = await Client.open(`ws://127.0.0.1:${port}/fuzz`);
    assert.equal((await c.call('ECHO', 'after', 1)).text, 'after');
    const st = server.stats();
    assert.equal(st.workerRestarts, 0);
    assert.equal(st.liveFds, 1, 'only the real client holds an fd: every refused or aborted upgrade released its own');
    await c.close();
    assert.ok([...outcomes.keys()].length >= 2, JSON.stringify([...outcomes]));
  } finally {
    await server.close();
  }
});
