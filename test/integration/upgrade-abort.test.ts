import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { BroadcastChannel } from 'node:worker_threads';
import diagnostics from 'node:diagnostics_channel';
import { createServer } from '../../src/core/server.js';
import { Client, LabelSink, fixture, until, within } from '../helpers.js';

/**
 * A raw client sends an upgrade request to /slow, waits until its hook runs, then goes away;
 * resolves once the server has seen the abort (published on 'ringwire:drop').
 */
async function abortInHook(port: number, sink: LabelSink): Promise<void> {
  const sock = connect(port, '127.0.0.1');
  await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
  const waiting = sink.labels.filter((x) => x.startsWith('/slow upgrade waiting')).length;
  sock.write('GET /slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  await sink.until((l) => l.filter((x) => x.startsWith('/slow upgrade waiting')).length > waiting);
  const aborted = new Promise<void>((resolve) => {
    const on = (m: unknown): void => {
      if ((m as { reason?: string }).reason === 'upgradeAborted') {
        diagnostics.unsubscribe('ringwire:drop', on);
        resolve();
      }
    };
    diagnostics.subscribe('ringwire:drop', on);
  });
  sock.destroy();
  await within('the upgradeAborted drop', aborted);
}

test('an upgrade aborted by the client while its async hook runs: fd released, counted, no socket opened', async () => {
  const sink = new LabelSink('rw-test-labels');
  const go = new BroadcastChannel('rw-test-go');
  const server = createServer({ modules: [fixture('slowup.module')], workers: 1 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    // A raw client sends the upgrade request, then goes away before the hook answers.
    await abortInHook(port, sink);
    go.postMessage('go');
    await sink.until((l) => l.some((x) => x.startsWith('/slow upgrade released')));
    // A normal client afterwards gets through (its own hook is released the same way) and is served.
    const c = new Client(`ws://127.0.0.1:${port}/slow`);
    await sink.until((l) => l.filter((x) => x.startsWith('/slow upgrade waiting')).length === 2);
    go.postMessage('go');
    await c.opened;
    assert.equal((await c.call('ECHO', 'after abort')).text, 'after abort');
    const st = server.stats();
    assert.equal(st.drops.upgradeAborted, 1);
    assert.equal(st.connections, 1, 'only the second client holds a connection (and an fd)');
    await c.close();
  } finally {
    go.close();
    sink.close();
    await server.close();
  }
});

test('an aborted upgrade frees its fd at once, counted once; its hook, still running, holds its maxConnections place until it answers (maxConnections: 1)', async () => {
  const sink = new LabelSink('rw-test-labels');
  const go = new BroadcastChannel('rw-test-go');
  const server = createServer({ modules: [fixture('slowup.module')], workers: 1, maxConnections: 1 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    await abortInHook(port, sink);
    // The fd is free at once; the hook still runs (nobody said go), so it keeps its place under
    // maxConnections: connecting and going away cannot start hooks without bound.
    assert.equal(server.stats().liveFds, 0);
    assert.equal(server.stats().orphanedUpgrades, 1);
    for (let i = 0; i < 5; i++) {
      await assert.rejects(Client.open(`ws://127.0.0.1:${port}/slow`), (e: { statusCode?: number }) => e.statusCode === 503);
    }
    assert.equal(server.stats().drops.connLimit, 5);
    go.postMessage('go'); // the hook answers: its late accept is expected, not a stale command
    await until('the orphaned hook to answer', () => server.stats().orphanedUpgrades === 0);
    const c = new Client(`ws://127.0.0.1:${port}/slow`);
    await sink.until((l) => l.filter((x) => x.startsWith('/slow upgrade waiting')).length === 2);
    go.postMessage('go');
    await c.opened;
    assert.equal((await c.call('ECHO', 'served')).text, 'served');
    const st = server.stats();
    assert.equal(st.drops.upgradeAborted, 1);
    assert.equal(st.drops.staleHandle, 0, 'the aborted upgrade is counted once');
    assert.equal(st.connections, 1);
    assert.equal(st.liveFds, 1);
    await c.close();
  } finally {
    go.close();
    sink.close();
    await server.close();
  }
});

test('a module without upgrade hooks upgrades on the I/O thread: a blocked worker does not hold its 101, and the worker still gets its params, query and fd', async () => {
  const gateCh = new BroadcastChannel('rw-test-gate');
  const sab = new SharedArrayBuffer(4);
  const gate = new Int32Array(sab);
  const go = new BroadcastChannel('rw-test-go');
  const sink = new LabelSink('rw-test-labels');
  // One worker; a round trip through it for this upgrade would hit the 2 s upgrade timeout (408).
  const server = createServer({ modules: [fixture('gate.module'), fixture('slowup.module')], workers: 1, upgradeTimeoutMs: 2000 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const a = await Client.open(`ws://127.0.0.1:${port}/gate/lobby`);
    // The worker gets the gate over a BroadcastChannel, asynchronously: ask until it has it.
    for (;;) {
      gateCh.postMessage(sab);
      if ((await a.call('ARMED')).text === 'yes') break;
    }
    const handled = server.stats().workers[0]!.messages;
    const gated = a.call('GATE');
    // The worker has taken GATE (counted before its handler runs) and now waits on the gate.
    await until('the worker took GATE', () => server.stats().workers[0]!.messages !== handled);

    const b = new Client(`ws://127.0.0.1:${port}/gate/blue?x=1`);
    await b.opened; // 101 while the only worker is blocked: no worker round trip
    // A module with an upgrade hook still goes through the worker (its hook must run first).
    const c = new Client(`ws://127.0.0.1:${port}/slow`);

    Atomics.store(gate, 0, 1);
    Atomics.notify(gate, 0);
    assert.equal((await gated).text, 'open');
    const info = JSON.parse((await b.call('INFO')).text) as { room: string; query: string; fd: number };
    assert.deepEqual({ room: info.room, query: info.query }, { room: 'blue', query: 'x=1' });
    assert.equal(info.fd, server.connections().find((r) => r.url.startsWith('/gate/blue'))?.fd);
    await sink.until((l) => l.some((x) => x.startsWith('/slow upgrade waiting')));
    go.postMessage('go');
    await c.opened;
    assert.equal((await c.call('ECHO', 'hooked')).text, 'hooked');
    const st = server.stats();
    assert.equal(st.upgradesAccepted, 3);
    assert.equal(st.drops.staleHandle, 0, 'the worker sent no Accept for the hook-less upgrades');
    await Promise.all([a.close(), b.close(), c.close()]);
  } finally {
    Atomics.store(gate, 0, 1); // never leave the worker blocked (close() waits for it)
    Atomics.notify(gate, 0);
    gateCh.close();
    go.close();
    sink.close();
    await server.close();
  }
});
