import { test } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { BroadcastChannel } from 'node:worker_threads';
import { createServer } from '../../src/core/server.js';
import { WorkerDiedError } from '../../src/shared/errors.js';
import { Client, LabelSink, fixture, until } from '../helpers.js';

/** Minimal Prometheus text-format 0.0.4 parser: families with HELP/TYPE, then samples. */
function parseExposition(text: string): Map<string, { type: string; samples: { labels: Record<string, string>; value: number }[] }> {
  const families = new Map<string, { type: string; samples: { labels: Record<string, string>; value: number }[] }>();
  const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (-?[0-9.eE+]+|NaN|[+-]Inf)$/;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const t = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (t) {
      assert.ok(!families.has(t[1]!), `family ${t[1]} declared twice`);
      families.set(t[1]!, { type: t[2]!, samples: [] });
      continue;
    }
    if (/^# HELP \S+ .+$/.test(line)) continue;
    const m = sample.exec(line);
    assert.ok(m, `not a valid sample line: ${JSON.stringify(line)}`);
    const fam = families.get(m[1]!);
    assert.ok(fam, `sample ${m[1]} before its # TYPE line`);
    const labels: Record<string, string> = {};
    for (const pair of (m[3] ?? '').split(',').filter(Boolean)) {
      const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"$/.exec(pair);
      assert.ok(lm, `bad label ${pair}`);
      labels[lm[1]!] = lm[2]!;
    }
    fam.samples.push({ labels, value: Number(m[4]) });
  }
  return families;
}

test('/metrics serves valid Prometheus text with connection, message, drop and ring gauges', async () => {
  const server = createServer({ modules: [fixture('tools.module')], workers: 2, metricsPath: '/metrics' });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const c = await Client.open(`ws://127.0.0.1:${port}/t`);
    for (let i = 1; i <= 5; i++) assert.equal((await c.call('ECHO', 'm', i)).ref, i);
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const fams = parseExposition(await res.text());
    const one = (name: string, labels: Record<string, string> = {}): number => {
      const f = fams.get(name);
      assert.ok(f, `missing family ${name}`);
      const s = f.samples.find((x) => Object.entries(labels).every(([k, v]) => x.labels[k] === v));
      assert.ok(s, `missing sample ${name} ${JSON.stringify(labels)}`);
      return s.value;
    };
    assert.equal(one('ringwire_connections'), 1);
    assert.equal(fams.get('ringwire_connections')!.type, 'gauge');
    assert.equal(one('ringwire_messages_in_total'), 5);
    assert.equal(one('ringwire_messages_out_total'), 5);
    assert.equal(fams.get('ringwire_messages_in_total')!.type, 'counter');
    assert.equal(one('ringwire_drops_total', { reason: 'staleHandle' }), 0);
    assert.equal(fams.get('ringwire_ring_used_bytes')!.samples.length, 2 * 3);
    assert.equal(one('ringwire_ring_capacity_bytes', { slot: '0' }), 1 << 20);
    await c.close();
  } finally {
    await server.close();
  }
});

test("diagnostics_channel 'ringwire:drop' reports drops with their reason", async () => {
  const seen: unknown[] = [];
  const onDrop = (msg: unknown): void => { seen.push(msg); };
  diagnostics.subscribe('ringwire:drop', onDrop);
  const server = createServer({ modules: [fixture('tools.module')], workers: 1, maxConnections: 1 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const a = await Client.open(`ws://127.0.0.1:${port}/t`);
    await assert.rejects(Client.open(`ws://127.0.0.1:${port}/t`), { statusCode: 503 });
    assert.deepEqual(seen, [{ reason: 'connLimit', handle: 0 }]);
    assert.equal(server.stats().drops.connLimit, 1);
    await a.close();
  } finally {
    diagnostics.unsubscribe('ringwire:drop', onDrop);
    await server.close();
  }
});

test("diagnostics_channel 'ringwire:worker' reports a death as a WorkerDiedError (cause kept), then the restart", async () => {
  const seen: { slot: number; event: string; error?: unknown }[] = [];
  const onWorker = (msg: unknown): void => { seen.push(msg as { slot: number; event: string; error?: unknown }); };
  const server = createServer({ modules: [fixture('dies-on-start.module')], workers: 1 });
  diagnostics.subscribe('ringwire:worker', onWorker);
  try {
    const port = await server.listen(0, '127.0.0.1');
    const c = await Client.open(`ws://127.0.0.1:${port}/die`);
    c.emit('CRASH');
    assert.equal((await c.closed).code, 1011);
    await until('the restart', () => seen.filter((m) => m.event === 'started').length >= 2);
    assert.deepEqual(seen.map((m) => `${m.slot} ${m.event}`), ['0 started', '0 died', '0 started']);
    const err = seen[1]!.error;
    assert.ok(err instanceof WorkerDiedError, 'a WorkerDiedError');
    assert.equal(err.code, 'RW_ERR_WORKER_DIED');
    assert.match(err.message, /^worker 0 died: /);
    assert.ok(err.cause instanceof Error, 'the cause is kept');
  } finally {
    diagnostics.unsubscribe('ringwire:worker', onWorker);
    await server.close();
  }
});

test('/metrics: HEAD answers like GET without a body, other methods get 405 with Allow; resumes, detached, connector and worker back-off families are there', async () => {
  const server = createServer({ modules: [fixture('tools.module')], workers: 1, metricsPath: '/metrics' });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const head = await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.match(head.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    assert.equal((await head.text()).length, 0);
    const post = await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    const fams = parseExposition(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
    for (const name of ['ringwire_resumes_total', 'ringwire_detached', 'ringwire_worker_backoffs_total', 'ringwire_connector_errors_total',
      'ringwire_worker_restart_backoff_ms', 'ringwire_worker_overflowed_total', 'ringwire_worker_outbound_full_waits_total']) {
      assert.ok(fams.has(name), `missing family ${name}`);
    }
    assert.equal(fams.get('ringwire_detached')!.type, 'gauge');
    assert.equal(fams.has('ringwire_cluster_connected'), false, 'no cluster, no cluster families');
  } finally {
    await server.close();
  }
});

test('upgrades refused at close() whose hooks then answer: counted once in drops.shutdown, their late answers are expected (not staleHandle)', async () => {
  const sink = new LabelSink('rw-test-labels');
  const go = new BroadcastChannel('rw-test-go');
  const server = createServer({ modules: [fixture('slowup.module')], workers: 1 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const statuses = Promise.all([0, 1].map(() => Client.open(`ws://127.0.0.1:${port}/slow`)
      .then(() => 101, (e: { statusCode?: number }) => e.statusCode)));
    await sink.until((l) => l.filter((x) => x.startsWith('/slow upgrade waiting')).length === 2);
    const closed = server.close();
    assert.deepEqual(await statuses, [503, 503]);
    // The hooks answer while close() waits for the workers: each answer belongs to an upgrade
    // the server refused, so it is not a command for a handle nobody knows.
    go.postMessage('go');
    await sink.until((l) => l.filter((x) => x.startsWith('/slow upgrade released')).length === 2);
    await closed;
    const st = server.stats();
    assert.equal(st.drops.shutdown, 2);
    assert.equal(st.drops.staleHandle, 0, 'a refused upgrade is counted once');
    assert.equal(st.orphanedUpgrades, 0);
  } finally {
    go.close();
    sink.close();
    await server.close();
  }
});

test('upgrades still waiting in their hooks when close() runs get 503 and are counted in drops.shutdown', async () => {
  const sink = new LabelSink('rw-test-labels');
  const server = createServer({ modules: [fixture('slowup.module')], workers: 1, shutdownTimeoutMs: 500 });
  const port = await server.listen(0, '127.0.0.1');
  try {
    const statuses = Promise.all([0, 1, 2].map(() => Client.open(`ws://127.0.0.1:${port}/slow`)
      .then(() => 101, (e: { statusCode?: number }) => e.statusCode)));
    await sink.until((l) => l.filter((x) => x.startsWith('/slow upgrade waiting')).length === 3);
    await server.close();
    assert.deepEqual(await statuses, [503, 503, 503]);
    assert.equal(server.stats().drops.shutdown, 3);
  } finally {
    sink.close();
    await server.close();
  }
});
