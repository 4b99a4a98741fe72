/**
 * Worker hook runner micro-benchmark: ringwire's `runMessage` (src/workers/pipeline.ts: a plain
 * index loop that only allocates a promise continuation when a hook actually returns a promise)
 * against the naive baseline, an `async` function that `await`s every hook in a `for` loop.
 *
 *   node dist/bench/hooks/hooks.bench.js [--rounds 3] [--quick] [--out DIR]   (results: bench/results/hooks.json, or DIR/hooks.json)
 *
 * Chains (GLOBAL onReceived → EVENT onReceived → preHandler → handler, as the loader builds them):
 *   1 sync handler              the common case: one handler, nothing async
 *   4 sync hooks                onReceived ×2, one preHandler, the handler, all synchronous
 *   4 hooks, async handler      the handler returns a promise (e.g. a database call)
 *   4 hooks, preHandler stops   the preHandler returns false: the handler never runs
 * The context is a minimal stand-in for the worker's `Conn` with the fields runMessage reads
 * (`replied`, `closing`) and a counter the hooks bump. Each task call handles OPS messages one
 * after the other (awaiting a message's chain before the next, as one connection's messages
 * are serialised); rounds interleave all tasks; the median round is shown.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus } from 'node:os';
import { Bench } from 'tinybench';
import { runMessage } from '../../src/workers/pipeline.js';
import type { Conn } from '../../src/workers/connection.js';
import type { MessageHook } from '../../src/workers/define.js';
import { median } from '../report/stats.js';
import { outDirArg } from '../report/results.js';

const resultsDir = outDirArg(process.argv.slice(2));
const quick = process.argv.includes('--quick');
const roundsArg = process.argv.indexOf('--rounds');
const ROUNDS = roundsArg >= 0 ? Number(process.argv[roundsArg + 1]) : quick ? 1 : 3;
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new RangeError('--rounds must be a positive integer');
const OPS = 256;
const TIME_MS = quick ? 150 : 500;

/** The fields of Conn that runMessage and these hooks touch. */
interface FakeConn { replied: boolean; closing: boolean; seen: number }

const onReceivedGlobal: MessageHook = (ctx) => { (ctx as unknown as FakeConn).seen++; };
const onReceivedModule: MessageHook = (ctx) => { (ctx as unknown as FakeConn).seen++; };
const preHandler: MessageHook = (ctx) => (ctx as unknown as FakeConn).seen >= 0;
const preHandlerStop: MessageHook = () => false;
const handler: MessageHook = (ctx) => { (ctx as unknown as FakeConn).seen++; };
const asyncHandler: MessageHook = (ctx) => {
  (ctx as unknown as FakeConn).seen++;
  return Promise.resolve();
};

interface Chain { name: string; chain: readonly MessageHook[]; async: boolean }
const CHAINS: readonly Chain[] = [
  { name: '1 sync handler', chain: [handler], async: false },
  { name: '4 sync hooks', chain: [onReceivedGlobal, onReceivedModule, preHandler, handler], async: false },
  { name: '4 hooks, async handler', chain: [onReceivedGlobal, onReceivedModule, preHandler, asyncHandler], async: true },
  { name: '4 hooks, preHandler stops', chain: [onReceivedGlobal, onReceivedModule, preHandlerStop, handler], async: false },
];

/** The baseline: what one writes without thinking about allocation. */
async function naiveChain(ctx: FakeConn, chain: readonly MessageHook[]): Promise<void> {
  for (const hook of chain) {
    const r = await hook(ctx as unknown as Conn);
    if (r === false || ctx.replied || ctx.closing) return;
  }
}

interface Row { chain: string; impl: string; baseline: boolean; fn: () => unknown; ctx: FakeConn; expectSeen: number }

function rows(): Row[] {
  const out: Row[] = [];
  for (const c of CHAINS) {
    const chain = c.chain;
    // Hooks that bump `seen` per message: used to check every message really ran its chain.
    const perMsg = chain.filter((h) => h !== preHandler && h !== preHandlerStop).length -
      (chain.includes(preHandlerStop) ? chain.length - 1 - chain.indexOf(preHandlerStop) : 0);
    const naiveCtx: FakeConn = { replied: false, closing: false, seen: 0 };
    out.push({
      chain: c.name, impl: 'for…await async chain (baseline)', baseline: true, ctx: naiveCtx, expectSeen: perMsg,
      fn: async () => {
        for (let i = 0; i < OPS; i++) {
          naiveCtx.replied = false;
          await naiveChain(naiveCtx, chain);
        }
      },
    });
    const ctx: FakeConn = { replied: false, closing: false, seen: 0 };
    const conn = ctx as unknown as Conn;
    out.push({
      chain: c.name, impl: 'runMessage (ringwire)', baseline: false, ctx, expectSeen: perMsg,
      fn: c.async
        ? async () => {
          for (let i = 0; i < OPS; i++) {
            ctx.replied = false;
            const p = runMessage(conn, chain, 0);
            if (p !== undefined) await p;
          }
        }
        : () => {
          for (let i = 0; i < OPS; i++) {
            ctx.replied = false;
            if (runMessage(conn, chain, 0) !== undefined) throw new Error('a synchronous chain went async');
          }
        },
    });
  }
  return out;
}

async function main(): Promise<void> {
  const cpu = cpus();
  const env = { node: process.version, cpu: cpu[0]?.model ?? 'unknown', cores: cpu.length, platform: `${process.platform}-${process.arch}` };
  console.log(`hooks bench: Node ${env.node}, ${env.cpu}, ${env.cores} cores, ${env.platform}`);
  console.log(`${ROUNDS} round(s) x ${TIME_MS} ms per task, ${OPS} messages per task call, median of rounds shown`);
  const rs = rows();
  const perRound: number[][] = rs.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    const bench = new Bench({ time: TIME_MS, warmupTime: quick ? 50 : 200 });
    for (const row of rs) bench.add(`${row.chain} | ${row.impl}`, row.fn);
    await bench.run();
    bench.tasks.forEach((task, i) => {
      const res = task.result;
      if (!res || res.error || !res.latency.mean) throw new Error(`task ${task.name} failed: ${String(res?.error)}`);
      perRound[i]!.push((OPS * 1000) / res.latency.mean); // latency.mean: ms per task call of OPS messages
    });
  }
  // Every message ran its whole chain (or stopped where it should): seen grows by a whole multiple.
  for (const row of rs) {
    if (row.ctx.seen === 0 || row.ctx.seen % row.expectSeen !== 0) {
      throw new Error(`${row.chain} | ${row.impl}: hooks ran ${row.ctx.seen} times, not a multiple of ${row.expectSeen}`);
    }
  }
  const med = perRound.map(median);
  const baseOf = (i: number): number => med[rs.findIndex((x) => x.baseline && x.chain === rs[i]!.chain)]!;
  console.table(rs.map((row, i) => ({
    chain: row.chain,
    impl: row.impl,
    'messages/s (median)': Math.round(med[i]!).toLocaleString('en-US'),
    'ns/message': (1e9 / med[i]!).toFixed(0),
    'vs baseline': row.baseline ? 'baseline' : `${(med[i]! / baseOf(i)).toFixed(2)}x`,
  })));
  mkdirSync(resultsDir, { recursive: true });
  const out = {
    bench: 'hooks',
    date: new Date().toISOString(),
    env,
    params: { rounds: ROUNDS, timeMs: TIME_MS, messagesPerCall: OPS },
    results: rs.map((row, i) => ({
      chain: row.chain,
      impl: row.impl,
      baseline: row.baseline,
      messagesPerSecond: perRound[i]!.map(Math.round),
      median: Math.round(med[i]!),
      ratioToBaseline: Number((med[i]! / baseOf(i)).toFixed(3)),
    })),
  };
  writeFileSync(join(resultsDir, 'hooks.json'), JSON.stringify(out, null, 2) + '\n');
  console.log(`wrote ${join(resultsDir, 'hooks.json')}`);
}

await main();
