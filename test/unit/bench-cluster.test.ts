import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REDIS_SKIP, startRedis } from '../support/redis.js';
import { parseRunArgs } from '../../bench/run.js';
import type { LoadResult } from '../../bench/loadgen/index.js';
import type { SuiteContext } from '../../bench/suite/context.js';
import {
  CLUSTER_SPEC, SKIP_TEXT, clusterResult, fanoutClusterScenario,
  type BusStats, type ClusterMeasurement, type ClusterRow, type NodeFigures, type SetupId,
} from '../../bench/suite/scenarios/fanout-cluster.js';

const ctx: SuiteContext = {
  mode: 'quick',
  machine: { node: '20.20.2', v8: 'x', platform: 'linux', arch: 'x64', cpuModel: 'AMD EPYC', cores: 2, loadavg: [0, 0, 0], date: '2026-01-01T00:00:00Z' },
  env: process.env, work: { iterations: 1, micros: 1 }, peers: [], timing: { durationMs: 1000, warmupMs: 300, runs: 1 }, progress: () => {},
  fail: () => {}, out: '/nonexistent',
};

function result(rate: number): Omit<LoadResult, 'histogram'> {
  return {
    url: 'ws://x', mode: 'count', processes: 2, connections: 1001, established: 1001, inflight: 16, payloadBytes: 80, durationMs: 1000,
    messages: rate, sent: 1, messagesPerSec: rate, latencyUs: null, errors: 0, errorKinds: {}, closeCodes: {}, clientCpuPercent: [40, 40],
    clientElu: [0.5, 0.5], maxClientCpuPercent: 40, clientBound: false, clientSaturated: false,
  };
}
const bus = (nodeId: string, published: number, received: number): BusStats =>
  ({ nodeId, connected: true, published, received, dropped: 0, reconnects: 0, presenceRetries: 0 });
const node = (n: string, connections: number, rate: number, b: BusStats | null): NodeFigures =>
  ({ node: n, connections, deliveriesPerSec: rate, serverCpuPercent: 50, bus: b, clusterDrops: b === null ? null : 0, publishes: 100 });
function row(setup: SetupId, label: string, rate: number, nodes: NodeFigures[]): ClusterRow {
  const median: ClusterMeasurement = {
    setup, label, result: result(rate), nodes, redisCpuPercent: setup === 'single' ? null : 1,
    peakPubsubOmem: setup === 'single' ? null : 0, hostBusyPercent: 150, otherCpuPercent: 0,
  };
  return { setup, label, median, runsDeliveriesPerSec: [rate] };
}

test('fanout-cluster without redis-server: skipped, not failed', async () => {
  const r = await fanoutClusterScenario({ startRedis: async () => null }).run(ctx);
  assert.ok(r.markdown.includes(SKIP_TEXT));
  assert.equal(r.summary.text, SKIP_TEXT);
  assert.equal(r.chart, null);
});

test('fanout-cluster report: single and cross-node side by side with the ratio and bus counters', () => {
  const rows = [
    row('single', 'ringwire 1 node', 2_000_000, [node('A', 1001, 2_000_000, null)]),
    row('single-bus', 'ringwire 1 node + Redis bus', 1_800_000, [node('A', 1001, 1_800_000, bus('bench-a', 1800, 0))]),
    // B delivers 80 % of A's per-connection rate and misses 100 messages: both must be called out.
    row('cross', 'ringwire 2 nodes via Redis', 900_000,
      [node('A', 501, 500_000, bus('bench-a', 1000, 0)), node('B', 500, 400_000, bus('bench-b', 0, 900))]),
  ];
  const r = clusterResult({ name: 'fanout-cluster', title: 'T' }, ctx, rows, { version: '7.0.15', outputBufferLimit: 'pubsub 1 1 60', bufferLimitLog: [] });
  const cells = (label: string): string[] => r.markdown.split('\n').find((l) => l.startsWith(`| ${label} |`))!.split('|').map((c) => c.trim());
  assert.equal(cells('ringwire 1 node')[4], '1.00x');
  assert.equal(cells('ringwire 2 nodes via Redis')[2], 'A 501 / B 500');
  assert.equal(cells('ringwire 2 nodes via Redis')[4], '0.45x'); // vs 1 node
  assert.equal(cells('ringwire 2 nodes via Redis')[12], '1,000'); // bus published (sum over nodes)
  assert.equal(cells('ringwire 2 nodes via Redis')[13], '900'); // bus received
  assert.match(r.markdown, /\*\*cross-node\/single-node = 0\.45x\*\*/);
  assert.match(r.markdown, /B received 900 of the 1,000 messages/);
  assert.match(r.markdown, /node B delivered 80 % of node A's rate/);
  assert.equal(r.summary.ringwire, 900_000);
  assert.match(r.summary.text ?? '', /= 0\.45x$/);
  assert.deepStrictEqual(r.chart?.categories, rows.map((x) => x.label));
  const data = r.data as { spec: unknown; ratios: { crossOverSingle: number } };
  assert.equal(data.ratios.crossOverSingle, 0.45);
  assert.deepStrictEqual(data.spec, CLUSTER_SPEC);
});

test('fanout-cluster is a suite scenario (quick run and by name)', () => {
  assert.ok(parseRunArgs([]).scenarios.includes('fanout-cluster'));
  assert.deepStrictEqual(parseRunArgs(['--scenario', 'fanout-cluster,fanout']).scenarios, ['fanout', 'fanout-cluster']);
});

test('fanout-cluster end to end against a real redis-server (short)', async (t) => {
  const probe = await startRedis();
  if (probe === null) return t.skip(REDIS_SKIP);
  await probe.stop();
  const r = await fanoutClusterScenario().run({ ...ctx, timing: { durationMs: 300, warmupMs: 100, runs: 1 } });
  const rows = (r.data as { rows: ClusterMeasurement[] }).rows;
  assert.equal(rows.length, 3);
  for (const x of rows) {
    assert.equal(x.result.errors, 0);
    assert.equal(x.result.established, 1001);
    assert.ok(x.result.messagesPerSec > 0);
  }
  const [a, b] = rows.find((x) => x.setup === 'cross')!.nodes;
  assert.ok(a!.bus!.published > 0 && b!.bus!.received === a!.bus!.published, JSON.stringify([a, b]));
  assert.equal(a!.bus!.dropped + b!.bus!.dropped, 0);
  assert.ok(b!.deliveriesPerSec > 0, 'deliveries crossed Redis to node B');
});
