import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect, createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Connector } from '../../src/core/connector.js';
import { createServer } from '../../src/core/server.js';
import { CloseCode } from '../../src/shared/constants.js';
import { WorkerDiedError } from '../../src/shared/errors.js';
import { Client, fixture, until, within } from '../helpers.js';

const tools = fixture('tools.module');

test('server lifecycle hooks run in order: onInit → onMountingModules → afterRoutesInit → onReady → onShutdown', async () => {
  const seen: string[] = [];
  const server = createServer({
    modules: [tools],
    workers: 1,
    lifecycle: {
      async onInit() { seen.push('onInit'); },
      onMountingModules(mods) { seen.push(`onMountingModules ${mods.map((m) => m.path).join(',')}`); },
      afterRoutesInit() { seen.push('afterRoutesInit'); },
      onReady({ port }) { seen.push(`onReady ${typeof port}`); },
      onServerInitError() { seen.push('onServerInitError'); },
      onShutdown() { seen.push('onShutdown'); },
    },
  });
  const port = await server.listen(0, '127.0.0.1');
  assert.ok(port > 0);
  const c = await Client.open(`ws://127.0.0.1:${port}/t`);
  assert.equal((await c.call('ECHO', 'x')).text, 'x');
  await c.close();
  await server.close();
  assert.deepEqual(seen, ['onInit', 'onMountingModules /t', 'afterRoutesInit', 'onReady number', 'onShutdown']);
});

test('Ts.ED $onInit: its promise is waited for before the next phase; a rejection is intercepted by onServerInitError, nothing else runs, listen() rejects with RW_ERR_HANDLER (cause kept)', async () => {
  const seen: string[] = [];
  let open!: () => void;
  const db = new Promise<void>((resolve) => { open = resolve; });
  const ok = createServer({
    modules: [tools], workers: 1,
    lifecycle: {
      async onInit() { seen.push('onInit'); await db; seen.push('db open'); },
      onMountingModules() { seen.push('onMountingModules'); },
    },
  });
  const listening = ok.listen(0, '127.0.0.1');
  await until('onInit to run', () => seen.length === 1);
  assert.deepEqual(seen, ['onInit'], 'onMountingModules waits for the database');
  open();
  assert.ok(await listening > 0);
  assert.deepEqual(seen, ['onInit', 'db open', 'onMountingModules']);
  await ok.close();

  const cause = new Error('db refused');
  const phases: string[] = [];
  let intercepted: unknown;
  const failing = createServer({
    modules: [tools], workers: 1,
    lifecycle: {
      async onInit() { phases.push('onInit'); throw cause; },
      onMountingModules() { phases.push('onMountingModules'); },
      afterRoutesInit() { phases.push('afterRoutesInit'); },
      onReady() { phases.push('onReady'); },
      onServerInitError(err) { intercepted = err; phases.push('onServerInitError'); },
      onShutdown() { phases.push('onShutdown'); },
    },
  });
  await assert.rejects(failing.listen(0, '127.0.0.1'), (e: { code?: string; cause?: unknown }) => e.code === 'RW_ERR_HANDLER' && e.cause === cause);
  assert.equal((intercepted as { cause?: unknown }).cause, cause, 'onServerInitError got the error listen() rejects with');
  assert.equal(failing.listening, false);
  await failing.close();
  // A start that failed on its own ran onServerInitError, its cleanup hook; onShutdown is close()'s.
  assert.deepEqual(phases, ['onInit', 'onServerInitError']);
});

test('a module file that throws: onServerInitError, listen() rejects with RW_ERR_MODULE_LOAD', async () => {
  const errors: string[] = [];
  const server = createServer({
    modules: [tools, fixture('broken.module')],
    workers: 1,
    lifecycle: { onServerInitError(err) { errors.push((err as { code?: string }).code ?? 'none'); } },
  });
  await assert.rejects(server.listen(0, '127.0.0.1'), (e: { code?: string; message?: string }) =>
    e.code === 'RW_ERR_MODULE_LOAD' && /broken module on purpose/.test(e.message ?? ''));
  assert.deepEqual(errors, ['RW_ERR_MODULE_LOAD']);
  await server.close();
});

test('a port already taken: onServerInitError, listen() rejects with RW_ERR_LISTEN', async () => {
  const blocker = createNetServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const taken = (blocker.address() as AddressInfo).port;
  const errors: string[] = [];
  const server = createServer({
    modules: [tools], workers: 1,
    lifecycle: { onServerInitError(err) { errors.push((err as { code?: string }).code ?? 'none'); } },
  });
  try {
    await assert.rejects(server.listen(taken, '127.0.0.1'), { code: 'RW_ERR_LISTEN' });
    assert.deepEqual(errors, ['RW_ERR_LISTEN']);
  } finally {
    blocker.close();
    await server.close();
  }
});

test('listen() twice is a typed error; close() is idempotent', async () => {
  const server = createServer({ modules: [tools], workers: 1 });
  await server.listen(0, '127.0.0.1');
  await assert.rejects(server.listen(0, '127.0.0.1'), { code: 'RW_ERR_SERVER_STATE' });
  await Promise.all([server.close(), server.close()]);
  assert.equal(server.listening, false);
});

test('invalid options throw TypeError/RangeError naming the option', () => {
  assert.throws(() => createServer({ modules: [] }), { name: 'TypeError', message: /options\.modules must be/ });
  assert.throws(() => createServer({ modules: [tools], workers: 0 }), { name: 'RangeError', message: /options\.workers must be/ });
  assert.throws(() => createServer({ modules: [tools], workers: 1.5 }), { name: 'TypeError', message: /options\.workers must be/ });
  assert.throws(() => createServer({ modules: [tools], ringBytes: 5000 }), { name: 'RangeError', message: /options\.ringBytes must be a power of two/ });
  assert.throws(() => createServer({ modules: [tools], codec: 'xml' as never }), { name: 'TypeError', message: /options\.codec must be/ });
  assert.throws(() => createServer({ modules: [tools], maxConnections: 2 ** 25 }), { name: 'RangeError', message: /options\.maxConnections must be/ });
  assert.throws(() => createServer({ modules: [tools], lifecycle: { onInit: 3 as never } }), { name: 'TypeError', message: /options\.lifecycle\.onInit must be/ });
  assert.throws(() => createServer({ modules: [tools], rateLimit: { messagesPerSecond: 5, onExceed: 'drop' as never } }),
    { name: 'TypeError', message: /options\.rateLimit\.onExceed must be 'close' or 'shed'/ });
  assert.throws(() => createServer({ modules: [tools], rateLimit: { messagesPerSecond: 5, shedBurst: 10 } }),
    { name: 'TypeError', message: /options\.rateLimit\.shedBurst must be used only with onExceed: 'shed'/ });
  assert.throws(() => createServer({ modules: [tools], rateLimit: { messagesPerSecond: 5, onExceed: 'shed', shedBurst: 0 } }),
    { name: 'RangeError', message: /options\.rateLimit\.shedBurst/ });
  // Without a rate the bucket would never refill: every connection closed on its first message.
  assert.throws(() => createServer({ modules: [tools], rateLimit: {} as never }), { name: 'TypeError', message: /options\.rateLimit\.messagesPerSecond must be .*required/ });
  assert.throws(() => createServer({ modules: [tools], rateLimit: { burst: 3 } as never }), { name: 'TypeError', message: /options\.rateLimit\.messagesPerSecond/ });
  assert.throws(() => createServer({ modules: [tools], uidAffinity: { query: 5 as never, header: 'x-uid' } }), { name: 'TypeError', message: /options\.uidAffinity\.query must be/ });
});

test('out-of-range module socket options: listen() rejects with a RangeError naming the module and option (uWS would abort the process)', async () => {
  const so = (query: string): string => `${pathToFileURL(fixture('sockopts.module')).href}?${query}`;
  const cases: [string, RegExp][] = [
    ['idleTimeout=3', /module \/so: options\.idleTimeout must be 0 \(off\) or an integer between 8 and 960/],
    ['idleTimeout=961', /module \/so: options\.idleTimeout must be/],
    ['maxLifetime=241', /module \/so: options\.maxLifetime must be/],
    ['maxLifetime=-1', /module \/so: options\.maxLifetime must be/],
    ['maxBackpressure=-1', /module \/so: options\.maxBackpressure must be/],
    ['maxPayloadLength=NaN', /module \/so: options\.maxPayloadLength must be/],
    ['maxPayloadLength=1.5', /module \/so: options\.maxPayloadLength must be/],
  ];
  for (const [query, message] of cases) {
    const errors: string[] = [];
    const server = createServer({
      modules: [so(query)], workers: 1,
      lifecycle: { onServerInitError(err) { errors.push(err.name); } },
    });
    // Before the fix uWS printed "idleTimeout must be either 0 or greater than 8!" and the
    // process died (C++ terminate): this test file never finished.
    await assert.rejects(server.listen(0, '127.0.0.1'), { name: 'RangeError', message }, query);
    assert.deepEqual(errors, ['RangeError'], query);
    await server.close();
  }
  // In range: served.
  const server = createServer({ modules: [so('idleTimeout=8&maxLifetime=240&maxBackpressure=0')], workers: 1 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const c = await Client.open(`ws://127.0.0.1:${port}/so`);
    assert.equal((await c.call('ECHO', 'ok')).text, 'ok');
    await c.close();
  } finally {
    await server.close();
  }
});

test('a misspelt option is an error naming it, not silently ignored', () => {
  assert.throws(() => createServer({ modules: [tools], worker: 2 } as never), { name: 'TypeError', message: 'options.worker is not an option (did you mean workers?)' });
  assert.throws(() => createServer({ modules: [tools], metricPath: '/m' } as never), { name: 'TypeError', message: /options\.metricPath is not an option \(did you mean metricsPath\?\)/ });
  assert.throws(() => createServer({ modules: [tools], lifecycle: { onready() {} } as never }), { name: 'TypeError', message: /options\.lifecycle\.onready is not an option \(did you mean lifecycle\.onReady\?\)/ });
  assert.throws(() => createServer({ modules: [tools], rateLimit: { messagesPerSecond: 5, onexceed: 'shed' } as never }), { name: 'TypeError', message: /options\.rateLimit\.onexceed is not an option/ });
  assert.throws(() => createServer({ modules: [tools], cluster: { url: 'redis://127.0.0.1:1', nodeid: 'a' } as never }), { name: 'TypeError', message: /options\.cluster\.nodeid is not an option/ });
});

const never = (): Promise<void> => new Promise<void>(() => undefined);

/** Resolves when nothing accepts TCP connections on `port` any more (ECONNREFUSED). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sock.once('connect', () => { sock.destroy(); resolve(false); });
    sock.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

for (const stage of ['onInit', 'afterRoutesInit', 'onReady'] as const) {
  test(`start-up is bounded: an ${stage} that never settles fails listen() with RW_ERR_HANDLER_TIMEOUT after startTimeoutMs, everything released`, async () => {
    const errors: string[] = [];
    let readyPort = -1;
    const server = createServer({
      modules: [tools], workers: 1, startTimeoutMs: 200,
      lifecycle: {
        [stage]: (info?: { port: number }) => { if (info !== undefined) readyPort = info.port; return never(); },
        onServerInitError(err) { errors.push(`${(err as { code?: string }).code} ${err.message}`); },
      },
    });
    // Before the fix listen() never settled (within() turns that into a failure, not a hang).
    await assert.rejects(within('listen() to settle', server.listen(0, '127.0.0.1')), (e: { code?: string; message?: string }) =>
      e.code === 'RW_ERR_HANDLER_TIMEOUT' && e.message === `lifecycle.${stage} did not settle within 200 ms`);
    assert.deepEqual(errors, [`RW_ERR_HANDLER_TIMEOUT lifecycle.${stage} did not settle within 200 ms`]);
    assert.equal(server.listening, false);
    if (stage === 'onReady') assert.equal(await refused(readyPort), true, 'the port is released');
    await within('close()', server.close());
  });
}

test('start-up is bounded: module files whose loading never finishes fail listen() with RW_ERR_HANDLER_TIMEOUT (modules.load)', async () => {
  const server = createServer({ modules: [tools, fixture('hang-load.module')], workers: 1, startTimeoutMs: 300 });
  await assert.rejects(within('listen() to settle', server.listen(0, '127.0.0.1')),
    { code: 'RW_ERR_HANDLER_TIMEOUT', message: 'modules.load did not settle within 300 ms' });
  await within('close()', server.close());
});

for (const stage of ['onInit', 'afterRoutesInit'] as const) {
  test(`close() during start-up (an ${stage} that never settles, startTimeoutMs 0) stops the start at once: listen() rejects with RW_ERR_SERVER_STATE, no onServerInitError`, async () => {
    let entered!: () => void;
    const inHook = new Promise<void>((resolve) => { entered = resolve; });
    const errors: unknown[] = [];
    const server = createServer({
      modules: [tools], workers: 1, startTimeoutMs: 0,
      lifecycle: {
        [stage]: () => { entered(); return never(); },
        onServerInitError(err) { errors.push(err); },
      },
    });
    const listening = server.listen(0, '127.0.0.1');
    listening.catch(() => undefined);
    await inHook;
    // Before the fix close() waited for listen(), which waited for the hook: for ever.
    await within('close()', server.close());
    await assert.rejects(listening, { code: 'RW_ERR_SERVER_STATE', message: 'close() was called while the server was starting' });
    assert.deepEqual(errors, []);
    assert.equal(server.listening, false);
  });
}

test('close() while onReady never settles (clients can already connect): they are closed with 1001 as by close(), listen() rejects with RW_ERR_SERVER_STATE', async () => {
  let entered!: (port: number) => void;
  const ready = new Promise<number>((resolve) => { entered = resolve; });
  const server = createServer({
    modules: [tools], workers: 1, startTimeoutMs: 0,
    lifecycle: { onReady: ({ port }) => { entered(port); return never(); } },
  });
  const listening = server.listen(0, '127.0.0.1');
  listening.catch(() => undefined);
  const c = await Client.open(`ws://127.0.0.1:${await ready}/t`);
  assert.equal((await c.call('ECHO', 'served')).text, 'served');
  // Before the fix listen() never settled, though close() went ahead without it.
  await within('close()', server.close());
  await assert.rejects(within('listen() to settle', listening), { code: 'RW_ERR_SERVER_STATE' });
  assert.equal((await c.closed).code, CloseCode.GOING_AWAY);
  assert.equal(server.listening, false);
});

test('close() while onInit is still opening what onShutdown closes: listen() rejects at once, onShutdown runs once onInit has settled', async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => { release = resolve; });
  let entered!: () => void;
  const inHook = new Promise<void>((resolve) => { entered = resolve; });
  const seen: string[] = [];
  const server = createServer({
    modules: [tools], workers: 1, startTimeoutMs: 0,
    lifecycle: {
      async onInit() { entered(); await gate; seen.push('onInit opened'); },
      onServerInitError() { seen.push('onServerInitError'); },
      onShutdown() { seen.push('onShutdown'); },
    },
  });
  const listening = server.listen(0, '127.0.0.1');
  listening.catch(() => undefined);
  await inHook;
  const closing = server.close();
  await assert.rejects(within('listen() to settle', listening), { code: 'RW_ERR_SERVER_STATE' });
  release(); // the interrupted onInit finishes what it started
  await within('close()', closing);
  // Before the fix onShutdown never ran (nor onServerInitError): what onInit opened stayed open.
  assert.deepEqual(seen, ['onInit opened', 'onShutdown']);
});

test('close() during start-up (modules still loading) in a process: onShutdown releases what onInit opened, the process exits by itself', async () => {
  const script = fileURLToPath(new URL('../fixtures/start-close-server.js', import.meta.url));
  const child = spawn(process.execPath, [script], { stdio: ['pipe', 'pipe', 'inherit'] });
  // 'close': exited and its stdout read to the end.
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const seen: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => { seen.push(JSON.parse(line) as string); });
  try {
    await until('onInit to have opened its connection', () => seen.includes('onInit'));
    child.stdin!.write('close\n');
    // Before the fix onShutdown never ran: the connection onInit opened held the process for ever.
    assert.equal(await within('the process to exit', exited), 0, 'the process exited on its own');
    assert.deepEqual(seen, ['onInit', 'listen RW_ERR_SERVER_STATE', 'onShutdown', 'closed']);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

for (const how of ['close()', 'startTimeoutMs'] as const) {
  test(`a connector start() that binds after ${how} stopped waiting for it: it is stopped again once bound, its port released`, async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    let entered!: () => void;
    const inStart = new Promise<void>((resolve) => { entered = resolve; });
    let bound: NetServer | null = null;
    let port = -1;
    const stops: boolean[] = []; // per stop(): whether it found its listener bound
    // As a third-party connector would be written: stop() closes what start() has bound so far.
    const late: Connector = {
      name: 'late',
      async start() {
        entered();
        await gate;
        const srv = createNetServer();
        await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
        port = (srv.address() as AddressInfo).port;
        bound = srv;
      },
      stop() {
        stops.push(bound !== null);
        bound?.close();
        bound = null;
      },
    };
    const server = createServer({ modules: [tools], workers: 1, startTimeoutMs: how === 'close()' ? 0 : 300, connectors: [late] });
    const listening = server.listen(0, '127.0.0.1');
    listening.catch(() => undefined);
    await inStart;
    if (how === 'close()') {
      await within('close()', server.close());
      await assert.rejects(listening, { code: 'RW_ERR_SERVER_STATE' });
    } else {
      await assert.rejects(within('listen() to settle', listening), { code: 'RW_ERR_HANDLER_TIMEOUT', message: 'connector.late.start did not settle within 300 ms' });
      await within('close()', server.close());
    }
    assert.deepEqual(stops, [false], 'stopped while its start was still running');
    release(); // the start goes on and binds
    // Before the fix nothing stopped it again: its port stayed bound and held the process.
    await until('the late-bound connector to be stopped', () => stops.length === 2);
    assert.deepEqual(stops, [false, true]);
    assert.equal(await refused(port), true, 'the port is released');
  });
}

test('a module that kills its worker while loading: listen() rejects with RW_ERR_WORKER_DIED, onServerInitError got it', async () => {
  const marker = join(tmpdir(), `rw-die-load-${process.pid}-${Date.now()}`);
  writeFileSync(marker, 'die');
  process.env['RW_TEST_DIE_MARKER'] = marker;
  const errors: string[] = [];
  try {
    const server = createServer({
      modules: [fixture('dies-on-start.module')], workers: 1,
      lifecycle: { onServerInitError(err) { errors.push((err as { code?: string }).code ?? 'none'); } },
    });
    await assert.rejects(server.listen(0, '127.0.0.1'), (e: Error & { code?: string }) =>
      e instanceof WorkerDiedError && e.code === 'RW_ERR_WORKER_DIED' && /while loading the modules: worker exited with code: 1/.test(e.message));
    assert.deepEqual(errors, ['RW_ERR_WORKER_DIED']);
    await server.close();
  } finally {
    rmSync(marker, { force: true });
    delete process.env['RW_TEST_DIE_MARKER'];
  }
});

test('an onShutdown hook that never settles cannot hold close(): it is waited for until shutdownTimeoutMs', async () => {
  let called = 0;
  const server = createServer({
    modules: [tools], workers: 1, shutdownTimeoutMs: 300,
    lifecycle: { onShutdown: () => { called++; return new Promise<void>(() => undefined); } },
  });
  const port = await server.listen(0, '127.0.0.1');
  const c = await Client.open(`ws://127.0.0.1:${port}/t`);
  await server.close(); // before the fix this never resolved (the test timed out)
  assert.equal(called, 1);
  assert.equal(server.listening, false);
  assert.equal((await c.closed).code, CloseCode.GOING_AWAY);
});

test('onReady failing after clients connected: they are closed as by close() (1001, onDisconnect ran), listen() rejects', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  let ready!: (port: number) => void;
  const portP = new Promise<number>((r) => { ready = r; });
  const server = createServer({
    modules: [tools], workers: 1,
    lifecycle: { async onReady({ port }) { ready(port); await gate; throw new Error('ready failed'); } },
  });
  const listening = server.listen(0, '127.0.0.1');
  listening.catch(() => undefined);
  const port = await portP;
  const c = await Client.open(`ws://127.0.0.1:${port}/t`);
  const { handle } = JSON.parse((await c.call('WHOAMI')).text) as { handle: number };
  const seen: number[] = [];
  const ch = new BroadcastChannel('rw-test-disconnects');
  ch.onmessage = (e: unknown) => { seen.push((e as { data: number }).data); };
  try {
    release();
    await assert.rejects(listening, { code: 'RW_ERR_HANDLER' });
    assert.equal((await c.closed).code, CloseCode.GOING_AWAY, 'closed gracefully, not cut (1006)');
    // listen() settles after the disconnect hooks' barrier: the worker posted before it answered.
    await until('the disconnect hook\'s label', () => seen.includes(handle));
    assert.equal(server.listening, false);
    await server.close(); // the same close, already done
  } finally {
    ch.close();
  }
});

test('graceful close with 1,000 connections: every client sees 1001, every onDisconnect runs once, the process exits by itself', async () => {
  const script = fileURLToPath(new URL('../fixtures/graceful-server.js', import.meta.url));
  const child = spawn(process.execPath, [script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const lines = createInterface({ input: child.stdout! });
  const it = lines[Symbol.asyncIterator]();
  const first = await it.next();
  const { port } = JSON.parse(String(first.value)) as { port: number };
  const N = 1000;
  const clients: Client[] = [];
  for (let i = 0; i < N; i += 100) {
    clients.push(...await Promise.all(Array.from({ length: 100 }, () => Client.open(`ws://127.0.0.1:${port}/t`))));
  }
  // One request in flight on some connections while closing: its reply must still arrive.
  const inflight = clients.slice(0, 50).map((c, i) => { c.emit('ECHO', `last ${i}`, 1); return c; });
  child.stdin!.write('close\n');
  const replies = await Promise.all(inflight.map((c) => c.next().then((f) => f.text)));
  assert.deepEqual(replies, inflight.map((_, i) => `last ${i}`));
  const codes = await Promise.all(clients.map((c) => c.closed.then((x) => x.code)));
  assert.equal(codes.filter((c) => c === CloseCode.GOING_AWAY).length, N);
  const report = JSON.parse(String((await it.next()).value)) as { accepted: number; disconnects: number; duplicates: number };
  assert.deepEqual(report, { accepted: N, disconnects: N, duplicates: 0 });
  assert.equal(await exited, 0, 'the process exited on its own');
});
