import { test } from 'node:test';
import { availableParallelism, tmpdir } from 'node:os';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { loadFailure, runLoad, type LoadResult } from '../../bench/loadgen/index.js';
import { reportExitCode, runFailures, runScenarios } from '../../bench/loadgen/scenarios.js';
import { UWS_ECHO_SCRIPT, startServer } from '../../bench/servers/spawn.js';
import { FRAME_32, ringwireEntry } from '../../bench/e2e/echo.js';
import { openConnections } from '../../bench/loadgen/hold.js';
import { CpuSampler, launchServer } from '../../bench/servers/launch.js';
import { median, medianItem, medianOrNull } from '../../bench/report/stats.js';
import { SOCKETIO, RINGWIRE, UWS, WS, type Peer } from '../../bench/suite/peers.js';
import { checkLoad, echoTable, limitOf, runPeers, type PeerRow } from '../../bench/suite/measure.js';
import { parseRunArgs, runScenario, summaryTable, TIMING, writeSummary, type SummaryEntry } from '../../bench/run.js';
import { summaryOf, type ScenarioDef, type ScenarioResult, type SuiteContext } from '../../bench/suite/context.js';
import { MICRO_SCENARIOS, microPlan } from '../../bench/suite/scenarios/micro.js';
import { idleMemoryScenario } from '../../bench/suite/scenarios/memory.js';
import { RESULTS_DIR } from '../../bench/report/results.js';
import { encodeFrame } from '../../src/shared/wire.js';

function fakeResult(over: Partial<Omit<LoadResult, 'histogram'>>): Omit<LoadResult, 'histogram'> {
  return {
    url: 'ws://127.0.0.1:1/echo', mode: 'echo', processes: 1, connections: 50, established: 50, inflight: 32, payloadBytes: 88,
    durationMs: 1000, messages: 1000, sent: 1000, messagesPerSec: 1000,
    latencyUs: { p50: 10, p90: 20, p99: 30, p999: 40, mean: 12, min: 1, max: 50 },
    errors: 0, errorKinds: {}, closeCodes: {}, clientCpuPercent: [40], clientElu: [0.3], maxClientCpuPercent: 40,
    clientBound: false, clientSaturated: false, ...over,
  };
}

function row(peer: Peer, over: Partial<Omit<LoadResult, 'histogram'>>): PeerRow {
  return {
    peer,
    median: { peer: peer.name, result: fakeResult(over), serverCpuPercent: 90, otherCpuPercent: 0, hostBusyPercent: 130, wireBytes: 88, serverInfo: {} },
    runsMsgPerSec: [Math.round(over.messagesPerSec ?? 1000)],
  };
}

test('echo table: every peer with ratios to uWS and ws, and a client-bound run says so', () => {
  const md = echoTable([
    row(UWS, { messagesPerSec: 1_000_000, clientCpuPercent: [97], maxClientCpuPercent: 97, clientBound: true }),
    row(WS, { messagesPerSec: 100_000 }),
    row(SOCKETIO, { messagesPerSec: 90_000, clientElu: [0.99], clientSaturated: true }),
    row(RINGWIRE, { messagesPerSec: 500_000 }),
  ]);
  const lines = md.split('\n');
  assert.equal(lines.length, 6);
  const cells = (name: string): string[] => lines.find((l) => l.startsWith(`| ${name} |`))!.split('|').map((c) => c.trim());
  assert.equal(cells('uWS (raw)')[9], '**CLIENT-BOUND**');
  assert.equal(cells('uWS (raw)')[8], '97');
  assert.equal(cells('socket.io')[9], 'client busy (ELU>0.95)');
  assert.equal(cells('ringwire')[9], 'server');
  assert.equal(cells('ringwire')[10], '0.50x'); // vs uWS
  assert.equal(cells('ringwire')[11], '5.00x'); // vs ws
  const cpu = (server: number, other: number, host: number) => ({ serverCpuPercent: server, otherCpuPercent: other, hostBusyPercent: host });
  const cores = availableParallelism();
  assert.equal(limitOf(fakeResult({}), cpu(90, 60, 150)), 'host shared (others 60%)');
  assert.equal(limitOf(fakeResult({}), cpu(90, 0, cores * 95)), 'host CPU full (server 90%)');
  assert.equal(limitOf(fakeResult({}), cpu(20, 0, 100)), 'not server CPU (server 20%)');
  assert.equal(limitOf(fakeResult({ clientBound: true }), cpu(90, 60, cores * 100)), '**CLIENT-BOUND**');
});

test('summary table: a client-bound figure says so there too (the table the README quotes), others do not', () => {
  // The committed quick run's ping-pong: raw uWS's load generator ran at 99 % of a core.
  const rows = [
    { peer: UWS, value: 112_552, clientBound: true },
    { peer: WS, value: 90_753, clientBound: false },
    { peer: SOCKETIO, value: 51_545 },
    { peer: RINGWIRE, value: 69_290, clientBound: false },
  ];
  const s = summaryOf('msg/s', rows);
  assert.deepStrictEqual(s.clientBound, ['uws']);
  assert.equal(summaryOf('msg/s', rows.map((r) => ({ ...r, clientBound: false }))).clientBound, undefined);
  const md = summaryTable([{ name: 'pingpong-32b', summary: s }, { name: 'echo-32b', summary: summaryOf('msg/s', [{ peer: UWS, value: 774_553 }]) }], []);
  const cells = (name: string): string[] => md.split('\n').find((l) => l.startsWith(`| ${name} |`))!.split('|').map((c) => c.trim());
  assert.equal(cells('pingpong-32b')[3], '69,290'); // ringwire
  assert.equal(cells('pingpong-32b')[4], '112,552 (client-bound)'); // raw uWS
  assert.equal(cells('pingpong-32b')[5], '90,753'); // ws
  assert.equal(cells('pingpong-32b')[7], '0.62x');
  assert.equal(cells('echo-32b')[4], '774,553');
});

test('parseRunArgs: modes, scenario names and groups, timing overrides, unknown names rejected', () => {
  const q = parseRunArgs([]);
  assert.equal(q.mode, 'quick');
  assert.deepStrictEqual(q.timing, TIMING.quick);
  assert.ok(q.scenarios.includes('echo-32b') && q.scenarios.includes('micro-hooks') && q.scenarios.includes('sweep'));
  const f = parseRunArgs(['--full', '--scenario', 'fanout,micro-fd', '--runs', '2']);
  assert.equal(f.mode, 'full');
  assert.deepStrictEqual(f.scenarios, ['micro-fd', 'fanout']); // suite order
  assert.equal(f.timing.runs, 2);
  assert.equal(f.timing.durationMs, TIMING.full.durationMs);
  assert.deepStrictEqual(parseRunArgs(['--scenario', 'micro']).scenarios, ['micro-fd', 'micro-ring', 'micro-protocol', 'micro-hooks']);
  assert.throws(() => parseRunArgs(['--scenario', 'nope']), TypeError);
  assert.throws(() => parseRunArgs(['--bogus']), TypeError);
  assert.throws(() => parseRunArgs(['--runs', '0']), RangeError);
});

test('load generator speaks the socket.io handshake: echo and held connections against the bench socket.io server', async () => {
  const server = await launchServer(SOCKETIO.script);
  try {
    const url = `ws://127.0.0.1:${server.port}${SOCKETIO.path('echo')}`;
    const msg = SOCKETIO.message('echo', 32);
    const hs = SOCKETIO.handshake('echo')!;
    assert.deepStrictEqual(hs, { sendText: ['40'], expectMessages: 2 });
    const r = await runLoad({ url, connections: 3, inflight: 4, payload: msg.payload, binary: false, durationMs: 300, handshake: hs });
    assert.deepStrictEqual(r.errorKinds, {});
    assert.equal(r.established, 3);
    assert.ok(r.messages > 0, 'echo replies counted');
    assert.equal(r.histogram.total, r.messages);

    // Without the handshake the run must not look healthy: the load generator reports the server's
    // unasked open packet, or (seen under CI load) socket.io closing the connection first.
    const bad = await runLoad({ url, connections: 1, inflight: 1, payload: msg.payload, binary: false, durationMs: 200 });
    assert.ok(bad.messages <= 1, `messages without the handshake: ${bad.messages}`);
    const kinds = Object.keys(bad.errorKinds);
    assert.ok(kinds.some((k) => k === 'echo:unsolicited-message' || k.startsWith('close:server-')), JSON.stringify(bad.errorKinds));

    // The /fanout namespace: `40/fanout,` and a namespaced event.
    assert.deepStrictEqual(SOCKETIO.handshake('fanout'), { sendText: ['40/fanout,'], expectMessages: 2 });
    const fan = SOCKETIO.message('fanout', 4);
    assert.equal(new TextDecoder().decode(fan.payload), '42/fanout,["pub","abcd"]');
    const c = await runLoad({ url, connections: 3, inflight: 2, payload: fan.payload, binary: false, durationMs: 300, mode: 'count',
      senders: 1, handshake: SOCKETIO.handshake('fanout')! });
    assert.deepStrictEqual(c.errorKinds, {});
    assert.ok(c.messages > 0, 'fan-out deliveries counted');

    const held = await openConnections({ url, connections: 20, processes: 2, sourceAddresses: 2, handshake: hs });
    assert.equal(held.result.established, 20);
    assert.equal(held.result.errors, 0);
    assert.ok(held.result.upgradesPerSec > 0);
    assert.equal(held.result.latencyUs.p50 <= held.result.latencyUs.p99, true);
    assert.equal(await held.close(), 0, 'no connection was dropped while held');
  } finally {
    await server.stop();
  }
});

test('echo and fan-out loads against ringwire: an RW_ERR_UNKNOWN_EVENT or RW_ERR_BAD_FRAME reply is an error, an ECHO reply or a PUB delivery is not', async () => {
  const server = await launchServer(RINGWIRE.script);
  try {
    const url = `ws://127.0.0.1:${server.port}${RINGWIRE.path('echo')}`;
    const load = (payload: Uint8Array): Promise<LoadResult> => runLoad({ url, connections: 2, inflight: 2, payload, durationMs: 200 });
    const ok = await load(encodeFrame({ event: 'ECHO', ref: 1, payload: new Uint8Array(32) }));
    assert.deepStrictEqual(ok.errorKinds, {});
    assert.ok(ok.messages > 0);
    for (const payload of [encodeFrame({ event: 'NOPE', ref: 1, payload: new Uint8Array(32) }), new Uint8Array(32).fill(7)]) {
      const r = await load(payload);
      assert.ok((r.errorKinds['echo:unexpected-reply'] ?? 0) > 0, JSON.stringify(r.errorKinds));
      assert.equal(r.messages, 0);
    }
    // Fan-out (count mode): the publisher's error frames are not deliveries, and the run is not clean.
    const fanUrl = `ws://127.0.0.1:${server.port}${RINGWIRE.path('fanout')}`;
    const fan = (payload: Uint8Array): Promise<LoadResult> =>
      runLoad({ url: fanUrl, connections: 3, inflight: 2, payload, durationMs: 200, mode: 'count', senders: 1 });
    const pub = await fan(RINGWIRE.message('fanout', 32).payload);
    assert.deepStrictEqual(pub.errorKinds, {});
    assert.ok(pub.messages > 0);
    const nope = await fan(encodeFrame({ event: 'NOPE', ref: 1, payload: new Uint8Array(32) }));
    assert.ok((nope.errorKinds['count:unexpected-message'] ?? 0) > 0, JSON.stringify(nope.errorKinds));
    assert.equal(nope.messages, 0, 'error frames counted as deliveries');
    assert.notEqual(loadFailure(nope), null);
  } finally {
    await server.stop();
  }
});

test('median: the middle value, for an even count the mean of the two middle values; one rule for runs and samples', () => {
  assert.ok(Number.isNaN(median([])));
  assert.equal(medianOrNull([]), null);
  assert.equal(median([7]), 7);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([10, 20]), 15);
  assert.equal(median([4, 1, 3, 2]), 2.5); // (2 + 3) / 2
  assert.equal(median([1, 1, 1, 100]), 1); // (1 + 1) / 2
  assert.equal(median([-5, 0, 5, 100, 7, 6]), 5.5); // sorted -5 0 5 6 7 100: (5 + 6) / 2
  const xs = [3, 1, 2];
  median(xs);
  assert.deepStrictEqual(xs, [3, 1, 2], 'input not reordered');
  // The reported run of an even number of runs: the lower of the two middle ones by key, never the upper.
  const runs = [{ id: 'a', v: 30 }, { id: 'b', v: 10 }, { id: 'c', v: 40 }, { id: 'd', v: 20 }];
  assert.equal(medianItem(runs, (r) => r.v)!.id, 'd'); // 20 (keys 10 20 | 30 40; median 25)
  assert.equal(medianItem(runs.slice(0, 3), (r) => r.v)!.id, 'a'); // 10 30 40
  assert.equal(medianItem(runs.slice(0, 2), (r) => r.v)!.id, 'b');
  assert.equal(medianItem([], (r: number) => r), undefined);
  // The /proc CPU sampler (server CPU, host busy) uses the same median: 4 samples average the middle two.
  const sampler = new CpuSampler(process.pid, 3_600_000); // no tick before stop(): samples are set by hand
  const s = sampler as unknown as { samples: number[]; hostSamples: number[] };
  s.samples.push(90, 60, 100, 80);
  s.hostSamples.push(150, 120);
  assert.equal(sampler.stop(), 85); // (80 + 90) / 2
  assert.equal(sampler.hostBusy(), 135);
  assert.equal(new CpuSampler(process.pid, 3_600_000).stop(), null);
});

/** A suite context for function-level tests: records fail() reasons, prints nothing. */
function testCtx(failures: string[] = []): SuiteContext {
  return {
    mode: 'quick',
    machine: { node: '20', v8: 'x', platform: 'linux', arch: 'x64', cpuModel: 'cpu', cores: 2, loadavg: [0, 0, 0], date: '2026-01-01T00:00:00Z' },
    env: process.env, work: { iterations: 1, micros: 1 }, peers: [], timing: { durationMs: 200, warmupMs: 0, runs: 1 },
    progress: () => {}, fail: (reason) => { failures.push(reason); }, out: '/nonexistent',
  };
}

/** A ringwire message the server answers with an RW_ERR_UNKNOWN_EVENT error frame, not an echo. */
const NOPE_FRAME = encodeFrame({ event: 'NOPE', ref: 1, payload: new Uint8Array(32) });

test('failed loads: errors or missing connections make a run fail; any failed run fails the scenario and the exit code', async () => {
  assert.equal(loadFailure(fakeResult({})), null);
  assert.equal(loadFailure(fakeResult({ errors: 3, errorKinds: { 'echo:unexpected-reply': 2, 'close:server-1013': 1 } })),
    '3 errors (echo:unexpected-reply=2, close:server-1013=1)');
  assert.equal(loadFailure(fakeResult({ established: 48 })), '48/50 connections established');
  assert.equal(loadFailure(fakeResult({ established: 0, errors: 1, errorKinds: { 'connect:ECONNREFUSED': 1 } })),
    '0/50 connections established, 1 error (connect:ECONNREFUSED=1)');

  // Suite: checkLoad fails the scenario through ctx.fail; a clean run does not.
  const reasons: string[] = [];
  assert.equal(checkLoad(testCtx(reasons), 'echo-32b run 1 ws', fakeResult({})), true);
  assert.equal(checkLoad(testCtx(reasons), 'echo-32b run 2 ws', fakeResult({ errors: 1, errorKinds: { 'socket:ECONNRESET': 1 } })), false);
  assert.deepStrictEqual(reasons, ['echo-32b run 2 ws: 1 error (socket:ECONNRESET=1)']);

  // run.ts: a scenario that reported a failed load still gives its result, but fails; one that throws fails too.
  const result = { name: 'x', title: 'X', markdown: '', chart: null, data: null, summary: { metric: 'm', ringwire: 1, uws: null, ws: null, socketio: null } } satisfies ScenarioResult;
  const def = (run: (ctx: SuiteContext) => Promise<ScenarioResult>): ScenarioDef => ({ name: 'x', title: 'X', run });
  const clean = await runScenario(def(async () => result), testCtx());
  assert.deepStrictEqual(clean, { result, failures: [] });
  const loadFailed = await runScenario(def(async (ctx) => { ctx.fail('x run 1 ringwire: 5 errors'); return result; }), testCtx());
  assert.deepStrictEqual(loadFailed, { result, failures: ['x run 1 ringwire: 5 errors'] });
  const threw = await runScenario(def(async () => { throw new Error('boom'); }), testCtx());
  assert.deepStrictEqual(threw, { result: null, failures: ['boom'] });

  // e2e: every run is checked, not only the median one (here run 2 of 3 has the median msg/s and is clean).
  const runs = [fakeResult({ messagesPerSec: 10, errors: 2, errorKinds: { 'echo:unexpected-reply': 2 } }), fakeResult({ messagesPerSec: 20 }),
    fakeResult({ messagesPerSec: 30, established: 49 })];
  assert.deepStrictEqual(runFailures(runs), ['run 1: 2 errors (echo:unexpected-reply=2)', 'run 3: 49/50 connections established']);
  assert.deepStrictEqual(runFailures([fakeResult({})]), []);
  assert.equal(reportExitCode({ failed: [] }), 0);
  assert.equal(reportExitCode({ failed: ['s / ringwire: run 1: 1 error'] }), 1);
});

test('failed loads through the real loops: runPeers calls ctx.fail, runScenarios reports the failed cell (short loads)', async () => {
  // A ringwire peer whose message is an unknown event: every reply is an error frame.
  const nope = { ...RINGWIRE, name: 'ringwire (unknown event)', message: () => ({ payload: NOPE_FRAME, binary: true }) };
  const reasons: string[] = [];
  const ctx = testCtx(reasons);
  const spec = { route: 'echo', connections: 2, inflight: 2, payloadBytes: 32 } as const;
  const rows = await runPeers(ctx, 'bad-echo', [RINGWIRE, nope], spec);
  assert.equal(rows.length, 2);
  assert.equal(reasons.length, 1, reasons.join('; '));
  assert.match(reasons[0]!, /^bad-echo run 1 ringwire \(unknown event\): \d+ errors? \(echo:unexpected-reply=\d+\)$/);

  const report = await runScenarios([
    { name: 'uWS (raw)', start: () => startServer(UWS_ECHO_SCRIPT) },
    { ...ringwireEntry(1), name: 'ringwire (unknown event)', payload: NOPE_FRAME },
  ], [{ name: 'pipelined 2x2', connections: 2, inflight: 2, payload: FRAME_32 }], { durationMs: 200, warmupMs: 0 });
  assert.deepStrictEqual(report.rows.map((r) => r.failures.length), [0, 1]);
  assert.equal(report.failed.length, 1);
  assert.match(report.failed[0]!, /^pipelined 2x2 \/ ringwire \(unknown event\): run 1: \d+ errors? \(echo:unexpected-reply=\d+\)$/);
  assert.equal(reportExitCode(report), 1);
});

test('micro-benchmarks: --out goes to the bench child and the scenario reads its JSON back from there', async () => {
  const out = '/tmp/rw-bench-out';
  for (const [name, json] of [['micro-fd', 'fd.json'], ['micro-ring', 'ring.json'], ['micro-protocol', 'protocol.json'], ['micro-hooks', 'hooks.json']]) {
    for (const mode of ['quick', 'full'] as const) {
      const plan = microPlan(name!, { mode, out });
      assert.deepStrictEqual(plan.args.slice(-2), ['--out', out], `${name} ${mode}`);
      assert.equal(plan.json, join(out, json!));
    }
  }
  assert.deepStrictEqual(microPlan('micro-ring', { mode: 'quick', out }).args, ['--quick', '--rounds', '1', '--out', out]);
  assert.throws(() => microPlan('micro-nope', { mode: 'quick', out }), RangeError);

  // The real micro-hooks scenario (quick mode, about 2 s): its JSON lands in the given folder,
  // the committed bench/results/hooks.json is left alone.
  const dir = mkdtempSync(join(tmpdir(), 'rw-micro-'));
  const committed = join(RESULTS_DIR, 'hooks.json');
  const before = existsSync(committed) ? readFileSync(committed) : null;
  try {
    const def = MICRO_SCENARIOS.find((s) => s.name === 'micro-hooks')!;
    const r = await def.run({ ...testCtx(), out: dir });
    assert.ok(existsSync(join(dir, 'hooks.json')), 'hooks.json written to --out');
    assert.ok((r.data as { rows: unknown[] }).rows.length > 0);
    assert.deepStrictEqual(existsSync(committed) ? readFileSync(committed) : null, before, 'bench/results/hooks.json untouched');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('idle memory: a connection the server dropped while held fails the scenario; a server that keeps them passes', async () => {
  // Drops its first connection once the second stage starts connecting, after the first stage was
  // measured: that stage's RSS per connection divided by a connection that was gone.
  const drops: Peer = { ...WS, name: 'ws (drops idle)', script: fileURLToPath(new URL('../fixtures/drop-idle-server.js', import.meta.url)), args: ['4'] };
  const reasons: string[] = [];
  const r = await idleMemoryScenario([4, 8]).run({ ...testCtx(reasons), peers: [drops] });
  const row = (r.data as { rows: { lostWhileHeld: number; established: number[] }[] }).rows[0]!;
  assert.equal(row.lostWhileHeld, 1);
  assert.deepStrictEqual(row.established, [4, 8]);
  assert.deepStrictEqual(reasons, ['idle-memory ws (drops idle): the server dropped 1 connection(s) while they were held idle ' +
    '(the RSS per connection counts connections that were gone)']);

  const clean: string[] = [];
  const ok = await idleMemoryScenario([4, 8]).run({ ...testCtx(clean), peers: [WS] });
  assert.equal((ok.data as { rows: { lostWhileHeld: number }[] }).rows[0]!.lostWhileHeld, 0);
  assert.deepStrictEqual(clean, []);
});

test('summary.json: a scenario whose later run threw keeps its older figures marked laterRunFailed, not as current; a passing run replaces the mark', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rw-summary-'));
  try {
    const file = join(dir, 'summary.json');
    const entry = (date: string): SummaryEntry => ({
      name: 'echo-32b', title: 'echo 32 B', mode: 'quick', date, summary: { headline: 'x' } as unknown as SummaryEntry['summary'], json: 'echo-32b.json', svg: null,
    });
    writeSummary(file, {}, [entry('d1')]);
    writeSummary(file, {}, [], new Map([['echo-32b', ['server did not start']]]), 'd2');
    const marked = (JSON.parse(readFileSync(file, 'utf8')) as { scenarios: SummaryEntry[] }).scenarios;
    assert.equal(marked.length, 1);
    assert.equal(marked[0]!.date, 'd1', 'the figures are still the older run\'s');
    assert.deepEqual(marked[0]!.laterRunFailed, { date: 'd2', failures: ['server did not start'] });
    writeSummary(file, {}, [entry('d3')]);
    const fresh = (JSON.parse(readFileSync(file, 'utf8')) as { scenarios: SummaryEntry[] }).scenarios;
    assert.equal(fresh[0]!.date, 'd3');
    assert.equal(fresh[0]!.laterRunFailed, undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
