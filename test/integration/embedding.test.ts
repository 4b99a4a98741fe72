// The embedding examples (examples/basalt-router, swoft-module, tsed-lifecycle) against real
// ws clients: each framework layer produces plain ringwire module files, and the core runs
// them with the hook order, codecs and lifecycle the frameworks promise.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from '../../src/core/server.js';
import { createBasaltApp, type BasaltApp } from '../../examples/basalt-router/basalt/app.js';
import { TRACE_CHANNEL } from '../../examples/basalt-router/trace.js';
import { PlatformRingwire } from '../../examples/tsed-lifecycle/platform.js';
import { Server as TsedServer } from '../../examples/tsed-lifecycle/server.js';
import { Client, LabelSink, example, fixture, of } from '../helpers.js';


function upgradeStatus(url: string): Promise<number> {
  const c = new Client(url);
  return c.opened.then(() => { c.ws.close(); return 101; }, (e: { statusCode?: number }) => e.statusCode ?? 0);
}

describe('basalt-router: GLOBAL_ and EVENT_ hooks, one path per event', () => {
  let app: BasaltApp;
  let port: number;
  let sink: LabelSink;

  before(async () => {
    sink = new LabelSink(TRACE_CHANNEL);
    app = createBasaltApp({
      events: { chat: example('basalt-router/events/chat.event'), game: example('basalt-router/events/game.event') },
      hooks: example('basalt-router/global.hooks'),
      workers: 2,
      trace: true,
    });
    port = await app.listen(0, '127.0.0.1');
  });

  after(async () => {
    await app.stop();
    sink.close();
  });

  test('one /chat connection runs every hook in Basalt order and gets the room message', async () => {
    const pick = of('/chat');
    const c = await Client.open(`ws://127.0.0.1:${port}/chat?name=alice`);
    assert.equal((await c.nextRaw()).data.toString(), 'welcome alice');
    c.ws.send('hello');
    assert.equal((await c.nextRaw()).data.toString(), 'alice: hello');
    await c.close();
    await sink.until((l) => pick(l).includes('EVENT_onDisconnectHook'));
    assert.deepEqual(pick(sink.labels), [
      'GLOBAL_onUpgradeHook', 'EVENT_onUpgradeHook',
      'GLOBAL_onConnectHook', 'EVENT_onConnectHook',
      'GLOBAL_onReceivedHook', 'EVENT_onReceivedHook', 'EVENT_preHandler[0]', 'EVENT_handler',
      'GLOBAL_onDisconnectHook', 'EVENT_onDisconnectHook',
    ]);
    sink.labels.length = 0;
  });

  test('an EVENT_onUpgradeHook rejection: 400, after the GLOBAL_ hook ran, and no connect hooks', async () => {
    const pick = of('/chat');
    assert.equal(await upgradeStatus(`ws://127.0.0.1:${port}/chat?name=no%20spaces`), 400);
    await sink.until((l) => pick(l).includes('EVENT_onUpgradeHook'));
    assert.deepEqual(pick(sink.labels), ['GLOBAL_onUpgradeHook', 'EVENT_onUpgradeHook']);
    sink.labels.length = 0;
  });

  test('/game keeps per-connection state in userData; the GLOBAL_ hook drops empty messages', async () => {
    const c = await Client.open(`ws://127.0.0.1:${port}/game`);
    c.ws.send('move 3 4');
    assert.deepEqual(JSON.parse((await c.nextRaw()).data.toString()), { moves: 1, x: 3, y: 4 });
    c.ws.send(''); // stopped by GLOBAL_onReceivedHook: no reply
    c.ws.send('move -1 2');
    assert.deepEqual(JSON.parse((await c.nextRaw()).data.toString()), { moves: 2, x: -1, y: 2 });
    await c.close();
  });

  test('an event file must serve the path its name promises (checked in onMountingModules)', async () => {
    const wrong = createBasaltApp({ events: { chat: example('basalt-router/events/game.event') }, workers: 1 });
    await assert.rejects(wrong.listen(0, '127.0.0.1'), (e: { code?: string; cause?: { message?: string } }) =>
      e.code === 'RW_ERR_HANDLER' && /must be basaltEvent\('chat'/.test(e.cause?.message ?? ''));
    await wrong.stop();
  });
});

describe('swoft-module: controllers mapped to commands, JSON {cmd, data, ref}', () => {
  let server: Server;
  let base: string;

  before(async () => {
    server = createServer({
      modules: [example('swoft-module/echo.module'), example('swoft-module/chat.module')],
      workers: 2,
    });
    base = `ws://127.0.0.1:${await server.listen(0, '127.0.0.1')}`;
  });

  after(() => server.close());

  const send = (c: Client, cmd: string, data?: unknown, ref?: number): void => {
    c.ws.send(JSON.stringify({ cmd, data, ref }));
  };

  test('the modules expose exactly the mapped commands', () => {
    assert.deepEqual(server.moduleDescriptors.map((m) => [m.path, m.codec, [...m.events].sort()]), [
      ['/echo', 'json', ['echo.send', 'echo.upper']],
      ['/chat', 'json', ['room.join', 'room.leave', 'room.say']],
    ]);
  });

  test('/echo: a controller method\'s return value is the reply, correlated by ref', async () => {
    const c = await Client.open(`${base}/echo`);
    send(c, 'echo.send', { x: [1, 'two'] }, 7);
    assert.deepEqual(await c.nextJson(), { cmd: 'echo.send', data: { x: [1, 'two'] }, ref: 7 });
    send(c, 'echo.upper', 'shout', 8);
    assert.deepEqual(await c.nextJson(), { cmd: 'echo.upper', data: 'SHOUT', ref: 8 });
    send(c, 'echo.nope', null, 9);
    const err = await c.nextJson();
    assert.equal(err.cmd, 'error');
    assert.equal(err.ref, 9);
    assert.equal((err.data as { code: string }).code, 'RW_ERR_UNKNOWN_EVENT');
    await c.close();
  });

  test('/chat: handshake refusal is 403; room.join / room.say reach every member of the room', async () => {
    assert.equal(await upgradeStatus(`${base}/chat`), 403);
    const a = await Client.open(`${base}/chat?name=ann`);
    assert.equal((await a.nextJson()).cmd, 'opened');
    send(a, 'room.join', 'lobby', 1);
    assert.deepEqual(await a.nextJson(), { cmd: 'room.join', data: { room: 'lobby' }, ref: 1 });

    const b = await Client.open(`${base}/chat?name=bob`);
    assert.deepEqual((await b.nextJson()).cmd, 'opened');
    send(b, 'room.say', { room: 'lobby', text: 'too early' }, 2);
    assert.deepEqual(await b.nextJson(), { cmd: 'room.say', data: { error: 'join the room first' }, ref: 2 });
    send(b, 'room.join', 'lobby', 3);
    assert.deepEqual(await b.nextJson(), { cmd: 'room.join', data: { room: 'lobby' }, ref: 3 });
    // ann hears bob join (exceptSelf: bob does not).
    assert.deepEqual((await a.nextJson()), { cmd: 'room.joined', data: { room: 'lobby', name: 'bob' }, ref: 0 });

    send(a, 'room.say', { room: 'lobby', text: 'hi all' }, 4);
    const said = { cmd: 'room.said', data: { room: 'lobby', from: 'ann', text: 'hi all' } };
    const ga = await a.nextJson();
    const gb = await b.nextJson();
    assert.deepEqual({ cmd: ga.cmd, data: ga.data }, said);
    assert.deepEqual({ cmd: gb.cmd, data: gb.data }, said);

    // bob goes away: @OnClose tells the room.
    await b.close();
    assert.deepEqual(await a.nextJson(), { cmd: 'room.left', data: { room: 'lobby', name: 'bob' }, ref: 0 });
    await a.close();
  });
});

describe('tsed-lifecycle: $-hooks mapped onto ringwire\'s lifecycle option', () => {
  test('start and stop run $onInit → $onMountingMiddlewares → $afterRoutesInit → $onReady → $onDestroy', async () => {
    const platform = await PlatformRingwire.bootstrap(TsedServer, { port: 0, workers: 1 });
    const port = await platform.listen();
    assert.deepEqual(platform.instance.phases, ['$onInit', '$onMountingMiddlewares /status', '$afterRoutesInit', '$onReady port']);
    const c = await Client.open(`ws://127.0.0.1:${port}/status`);
    c.ws.send(JSON.stringify({ cmd: 'status', ref: 5 }));
    const r = await c.nextJson();
    assert.equal(r.cmd, 'status');
    assert.equal(r.ref, 5);
    assert.equal(typeof (r.data as { uptimeMs: unknown }).uptimeMs, 'number');
    await c.close();
    await platform.stop();
    assert.deepEqual(platform.instance.phases.slice(4), ['$onDestroy']);
  });

  test('a module that fails to load: $onServerInitError, listen() rejects with RW_ERR_MODULE_LOAD', async () => {
    const platform = await PlatformRingwire.bootstrap(TsedServer, {
      port: 0, workers: 1, modules: [example('tsed-lifecycle/status.module'), fixture('broken.module')],
    });
    await assert.rejects(platform.listen(), { code: 'RW_ERR_MODULE_LOAD' });
    assert.deepEqual(platform.instance.phases, ['$onInit', '$onServerInitError RW_ERR_MODULE_LOAD']);
    await platform.stop();
    assert.equal(platform.instance.phases.includes('$onDestroy'), false);
  });
});
