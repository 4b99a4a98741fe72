import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from '../../src/core/server.js';
import { Client, LabelSink, fixture, of } from '../helpers.js';

let server: Server;
let port: number;
let sink: LabelSink;

before(async () => {
  sink = new LabelSink('rw-test-labels');
  server = createServer({
    modules: [fixture('order-a.module'), fixture('order-b.module')],
    hooks: fixture('order.hooks'),
    workers: 2,
  });
  port = await server.listen(0, '127.0.0.1');
});

after(async () => {
  await server.close();
  sink.close();
});


for (const [path, url] of [['/a', '/a'], ['/b/:room', '/b/lobby']] as const) {
  test(`hook order for ${path}: upgrade, open, message, close exactly as designed`, async () => {
    const pick = of(path);
    const c = await Client.open(`ws://127.0.0.1:${port}${url}`);
    await sink.until((l) => pick(l).includes('EVENT onConnect'));
    const reply = await c.call('HELLO', 'hi', 7);
    assert.equal(reply.ref, 7);
    assert.equal(reply.event, 'HELLO');
    await c.close();
    await sink.until((l) => pick(l).includes('EVENT onDisconnect'));
    assert.deepEqual(pick(sink.labels), [
      'GLOBAL onUpgrade', 'EVENT onUpgrade',
      'GLOBAL onConnect', 'EVENT onConnect',
      'GLOBAL onReceived', 'EVENT onReceived', 'EVENT preHandler[0]', 'EVENT preHandler[1]', 'EVENT handler',
      'GLOBAL onDisconnect', 'EVENT onDisconnect',
    ]);
    // Accepted userData: global merged first, then the module's (which wins on conflicts).
    const body = JSON.parse(reply.text) as { userData: Record<string, unknown>; params: Record<string, string> };
    assert.deepEqual(body.userData, { who: 'event', fromGlobal: true });
    if (path === '/b/:room') assert.deepEqual(body.params, { room: 'lobby' });
    sink.labels.length = 0;
  });
}

test('a rejecting upgrade hook: client sees the chosen status, header and body', async () => {
  const c = new Client(`ws://127.0.0.1:${port}/a?deny=1`);
  const res = await new Promise<{ status: number; body: string; header: string | undefined }>((resolve) => {
    c.ws.once('unexpected-response', (_req, r) => {
      let body = '';
      r.on('data', (d: Buffer) => { body += d.toString(); });
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body, header: r.headers['x-reason'] as string | undefined }));
    });
  });
  assert.equal(res.status, 401);
  assert.equal(res.body, 'denied by a');
  assert.equal(res.header, 'test');
  assert.equal(server.stats().upgradesRejected >= 1, true);
});

test('an upgrade hook returning client JSON with a "__proto__" key: merged as a plain key, the userData\'s prototype is not replaced', async () => {
  const c = await Client.open(`ws://127.0.0.1:${port}/b/lobby`, { headers: { 'x-meta': '{"__proto__":{"role":"admin"}}' } });
  // Before the fix Object.assign set userData's prototype to the client's object: role read 'admin'.
  assert.deepEqual(JSON.parse((await c.call('ROLE', '', 1)).text), { role: 'guest', plain: true });
  await c.close();
  await sink.until((l) => l.includes('/b/:room EVENT onDisconnect'));
  sink.labels.length = 0;
});

test('request headers reach the upgrade hook as sent (a 10,000-character value intact); past 16 KiB of headers the upgrade gets 431 RW_ERR_HEADERS_TOO_LARGE, counted', async () => {
  const tok = 'k'.repeat(10_000);
  const c = await Client.open(`ws://127.0.0.1:${port}/b/lobby`, { headers: { 'x-meta': JSON.stringify({ tok }) } });
  // Cut at 4,096 characters, this JSON no longer parsed and the upgrade failed with 500.
  const body = JSON.parse((await c.call('HELLO', '', 1)).text) as { userData: { tok?: string } };
  assert.equal(body.userData.tok, tok);
  await c.close();
  await sink.until((l) => l.includes('/b/:room EVENT onDisconnect'));
  sink.labels.length = 0;
  const before = server.stats().drops.headersTooLarge;
  const big = new Client(`ws://127.0.0.1:${port}/b/lobby`, { headers: { 'x-meta': JSON.stringify({ tok: 'k'.repeat(17_000) }) } });
  const res = await new Promise<{ status: number; body: string }>((resolve) => {
    big.ws.once('unexpected-response', (_req, r) => {
      let b = '';
      r.on('data', (d: Buffer) => { b += d.toString(); });
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body: b }));
    });
  });
  assert.equal(res.status, 431);
  assert.equal((JSON.parse(res.body) as { code: string }).code, 'RW_ERR_HEADERS_TOO_LARGE');
  assert.equal(server.stats().drops.headersTooLarge, before + 1);
  assert.ok(!sink.labels.some((l) => l.includes('onUpgrade')), 'no hook ran for the refused upgrade');
});

test('a preHandler that replies stops the chain', async () => {
  const c = await Client.open(`ws://127.0.0.1:${port}/a`);
  const r = await c.call('STOP', '', 3);
  assert.equal(r.text, 'stopped');
  assert.equal(r.ref, 3);
  // A later request on the same connection is answered: the stopped chain left nothing behind.
  const r2 = await c.call('HELLO', '', 4);
  assert.equal(r2.ref, 4);
  await c.close();
  await sink.until((l) => l.includes('/a EVENT onDisconnect'));
  assert.equal(sink.labels.includes('/a EVENT handler (must not run)'), false);
  sink.labels.length = 0;
});

test('a throwing handler goes to onError (module, then global) and the client gets an error reply', async () => {
  const before = server.stats().workers.reduce((n, w) => n + w.handlerErrors, 0);
  const c = await Client.open(`ws://127.0.0.1:${port}/a`);
  const r = await c.call('THROW', '', 9);
  assert.equal(r.event, 'error');
  assert.equal(r.ref, 9);
  assert.equal((JSON.parse(r.text) as { code: string }).code, 'RW_ERR_HANDLER');
  await sink.until((l) => l.includes('/a GLOBAL onError message'));
  const errs = sink.labels.filter((l) => l.includes('onError'));
  assert.deepEqual(errs, ['/a EVENT onError message', '/a GLOBAL onError message']);
  assert.equal(server.stats().workers.reduce((n, w) => n + w.handlerErrors, 0), before + 1);
  await c.close();
  sink.labels.length = 0;
});

test('a stray unhandled rejection in a handler goes to the global onError (stage unhandled, no ctx); the worker and the connection go on', async () => {
  const restarts = server.stats().workerRestarts;
  const c = await Client.open(`ws://127.0.0.1:${port}/a`);
  assert.equal((await c.call('STRAY', '', 2)).text, 'ok');
  // Before the fix the rejection ended the worker: the connection was closed with 1011.
  const closed = c.closed.then((x) => { throw new Error(`closed with ${x.code}`); });
  await Promise.race([sink.until((l) => l.includes('? GLOBAL onError unhandled')), closed]);
  assert.equal((await Promise.race([c.call('HELLO', '', 3), closed])).ref, 3);
  // Not tied to a connection (no ctx method made it): the module's onError does not get it.
  assert.deepEqual(sink.labels.filter((l) => l.includes('onError')), ['? GLOBAL onError unhandled']);
  assert.equal(server.stats().workers.reduce((n, w) => n + w.unhandledRejections, 0), 1);
  assert.equal(server.stats().workerRestarts, restarts);
  await c.close();
  sink.labels.length = 0;
});

test('an unknown event gets an RW_ERR_UNKNOWN_EVENT error reply and the connection stays usable', async () => {
  const c = await Client.open(`ws://127.0.0.1:${port}/a`);
  const r = await c.call('NOPE', '', 5);
  assert.equal(r.event, 'error');
  assert.equal((JSON.parse(r.text) as { code: string }).code, 'RW_ERR_UNKNOWN_EVENT');
  const r2 = await c.call('HELLO', '', 6);
  assert.equal(r2.ref, 6);
  await c.close();
});

test('a malformed binary frame gets an RW_ERR_BAD_FRAME error reply, nothing crashes', async () => {
  const c = await Client.open(`ws://127.0.0.1:${port}/a`);
  c.ws.send(Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9]));
  const r = await c.next();
  assert.equal(r.event, 'error');
  assert.equal((JSON.parse(r.text) as { code: string }).code, 'RW_ERR_BAD_FRAME');
  const r2 = await c.call('HELLO', '', 8);
  assert.equal(r2.ref, 8);
  await c.close();
});

test('a rejection whose body does not fit a ring record: HTTP 500 and onError(upgrade), the worker survives', async () => {
  const restarts = server.stats().workerRestarts;
  const c = new Client(`ws://127.0.0.1:${port}/a?hugedeny=1`);
  await assert.rejects(c.opened, (err: { statusCode?: number }) => err.statusCode === 500);
  await sink.until((l) => l.includes('/a GLOBAL onError upgrade'));
  assert.equal(server.stats().workerRestarts, restarts, 'no worker died');
  sink.labels.length = 0;
});
