import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { BroadcastChannel } from 'node:worker_threads';
import diagnostics from 'node:diagnostics_channel';
import { createServer } from '../../src/core/server.js';
import { Client, LabelSink, fixture } from '../helpers.js';

test('an upgrade aborted by the client while its async hook runs: fd released, counted, no socket opened', async () => {
  const sink = new LabelSink('rw-test-labels');
  const go = new BroadcastChannel('rw-test-go');
  const server = createServer({ modules: [fixture('slowup.module')], workers: 1 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    // A raw client sends the upgrade request, then goes away before the hook answers.
    const sock = connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
    sock.write('GET /slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    await sink.until((l) => l.some((x) => x.startsWith('/slow upgrade waiting')));
    // Wait until the server has seen the abort (it is published on 'ringwire:drop').
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
    await aborted;
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
