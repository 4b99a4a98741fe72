/**
 * fd allocator throughput against a Map-based baseline allocator, same run.
 *
 *   node dist/bench/fd/fd.bench.js [--rounds 3] [--quick] [--time 1000] [--out DIR]
 *
 * Scenarios (each task iteration does a batch of alloc+release pairs, so tinybench's
 * per-iteration overhead is amortised; pairs/s = batch × iterations/s):
 *   steady 100k live   maxFd FD_MAX, maxLive 1,048,576, 100,000 fds live; each pair
 *                      allocates one fd and releases the oldest live one (FIFO).
 *   99.9% of maxLive   maxFd FD_MAX, maxLive 1,048,576, live = maxLive − 0.1%; each alloc
 *                      is followed by the release of a random live fd.
 *   dense 99.9%        maxFd = maxLive = 1,048,576, live = maxLive − 0.1%, random release:
 *                      live fds fill 99.9% of the range, so alloc must skip live fds
 *                      (worst realistic case for the cursor scan).
 * The baseline (`MapFdAllocator` below) has the same cursor/wrap/skip semantics with a
 * Map<fd, generation> of live fds and a global allocation counter as generation.
 *
 * JIT note: in round 1 each measured closure is the only one made from its literal, so
 * TurboFan specialises it on its captured context (constants folded in) and it runs up to
 * ~1.3-2x faster than in later rounds, where a second closure exists. The median of 3
 * rounds is therefore the conservative, unspecialised figure.
 *
 * Each round runs every task once (interleaved, so background load hits all alike);
 * prints a table of the medians with Node version, CPU model and core count, and
 * writes bench/results/fd.json (or DIR/fd.json with --out).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus } from 'node:os';
import { Bench } from 'tinybench';
import { FdAllocator, FD_MAX } from '../../src/fd/index.js';
import { median } from '../report/stats.js';
import { outDirArg } from '../report/results.js';

const args = process.argv.slice(2);
function numArg(name: string, def: number): number {
  const i = args.indexOf(name);
  if (i < 0) return def;
  const v = Number(args[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new RangeError(`${name} needs a positive number`);
  return v;
}
const QUICK = args.includes('--quick');
const ROUNDS = numArg('--rounds', QUICK ? 1 : 3);
const TIME_MS = numArg('--time', QUICK ? 250 : 1000);
const resultsDir = outDirArg(process.argv.slice(2));

/** Baseline: the obvious JS allocator, same semantics, Map of live fds → generation. */
class MapFdAllocator {
  private readonly liveMap = new Map<number, number>();
  private cursor = 0;
  private seq = 0;
  constructor(private readonly maxFd: number, private readonly maxLive: number) {}
  alloc(): number {
    if (this.liveMap.size === this.maxLive) return 0;
    let fd = this.cursor;
    do fd = fd === this.maxFd ? 1 : fd + 1; while (this.liveMap.has(fd));
    this.cursor = fd;
    this.liveMap.set(fd, ++this.seq);
    return fd;
  }
  release(fd: number): boolean {
    return this.liveMap.delete(fd);
  }
  get live(): number {
    return this.liveMap.size;
  }
}

interface Alloc { alloc(): number; release(fd: number): boolean; readonly live: number }
interface Task { readonly fn: () => void; readonly a: Alloc; readonly live: number }

let sink = 0; // keeps results observable so nothing is optimised away

// The measured loops are written out once per implementation on purpose: closures made
// from one function literal share V8 type feedback, so a shared loop would turn the
// a.alloc()/a.release() call sites polymorphic after the first implementation ran and
// slow down whichever ran second. Real callers (the I/O thread) are monomorphic.

/** FIFO: a circular array of the live fds, oldest at `head`; each pair allocs and releases the oldest. */
function fifoTask(a: FdAllocator | MapFdAllocator, live: number, batch: number): Task {
  const ring = new Int32Array(live);
  for (let i = 0; i < live; i++) ring[i] = a.alloc();
  let head = 0;
  const fd = a instanceof FdAllocator ? a : null;
  const map = a instanceof MapFdAllocator ? a : null;
  const fn = fd !== null
    ? (): void => {
      let acc = 0;
      for (let i = 0; i < batch; i++) {
        const f = fd.alloc();
        fd.release(ring[head]!);
        ring[head] = f;
        head = head + 1 === live ? 0 : head + 1;
        acc += f;
      }
      sink += acc;
    }
    : (): void => {
      let acc = 0;
      for (let i = 0; i < batch; i++) {
        const f = map!.alloc();
        map!.release(ring[head]!);
        ring[head] = f;
        head = head + 1 === live ? 0 : head + 1;
        acc += f;
      }
      sink += acc;
    };
  return { fn, a, live };
}

/** Random: a pool of live fds; each pair allocs, releases pool[r] (xorshift32) and puts the new fd there. */
function randomTask(a: FdAllocator | MapFdAllocator, live: number, batch: number): Task {
  const pool = new Int32Array(live);
  for (let i = 0; i < live; i++) pool[i] = a.alloc();
  // Scatter the live set before measuring: random release + alloc until the cursor has
  // lapped the dense range many times (each dense alloc skips ~1000 live fds).
  let x = 0x9e3779b9 | 0;
  for (let i = 0; i < 50_000; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    const r = (x >>> 0) % live;
    a.release(pool[r]!);
    pool[r] = a.alloc();
  }
  const fd = a instanceof FdAllocator ? a : null;
  const map = a instanceof MapFdAllocator ? a : null;
  const fn = fd !== null
    ? (): void => {
      let acc = 0;
      for (let i = 0; i < batch; i++) {
        const f = fd.alloc();
        x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
        const r = (x >>> 0) % live;
        fd.release(pool[r]!);
        pool[r] = f;
        acc += f;
      }
      sink += acc;
    }
    : (): void => {
      let acc = 0;
      for (let i = 0; i < batch; i++) {
        const f = map!.alloc();
        x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
        const r = (x >>> 0) % live;
        map!.release(pool[r]!);
        pool[r] = f;
        acc += f;
      }
      sink += acc;
    };
  return { fn, a, live };
}

interface Scenario {
  readonly name: string;
  readonly batch: number;
  readonly make: (impl: 'FdAllocator' | 'Map baseline') => Task;
}

const NEAR_FULL = 1_048_576 - Math.ceil(1_048_576 / 1000); // maxLive − 0.1% = 1,047,527
const scenarios: Scenario[] = [
  {
    name: 'steady 100k live, FIFO release',
    batch: 10_000,
    make: (impl) => fifoTask(impl === 'FdAllocator' ? new FdAllocator() : new MapFdAllocator(FD_MAX, 1_048_576), 100_000, 10_000),
  },
  {
    name: '99.9% of maxLive (1M in 16M), random release',
    batch: 10_000,
    make: (impl) => randomTask(impl === 'FdAllocator' ? new FdAllocator() : new MapFdAllocator(FD_MAX, 1_048_576), NEAR_FULL, 10_000),
  },
  {
    name: 'dense: 99.9% of maxFd = maxLive = 1M, random release',
    batch: 1_000,
    make: (impl) => randomTask(impl === 'FdAllocator'
      ? new FdAllocator({ maxFd: 1_048_576, maxLive: 1_048_576 })
      : new MapFdAllocator(1_048_576, 1_048_576), NEAR_FULL, 1_000),
  },
];
const impls = ['FdAllocator', 'Map baseline'] as const;

async function main(): Promise<void> {
  const cpu = cpus();
  const env = {
    node: process.version,
    cpu: cpu[0]?.model ?? 'unknown',
    cores: cpu.length,
    platform: `${process.platform}-${process.arch}`,
  };
  console.log(`fd bench: Node ${env.node}, ${env.cpu}, ${env.cores} cores, ${env.platform}`);
  console.log(`${ROUNDS} round(s) × ${TIME_MS} ms per task, median shown; ` +
    `FdAllocator memory for FD_MAX: ${FdAllocator.bytesFor(FD_MAX)} B`);

  const keys = scenarios.flatMap((s) => impls.map((impl) => ({ s, impl, key: `${s.name} | ${impl}` })));
  const rates = new Map<string, number[]>(keys.map((k) => [k.key, []]));
  const rmes = new Map<string, number[]>(keys.map((k) => [k.key, []]));
  for (let r = 0; r < ROUNDS; r++) {
    // Fresh allocators each round; one Bench per task so that each task's state is set
    // up right before it runs (the Map baseline at 1M live costs ~100 MB).
    for (const { s, impl, key } of keys) {
      const bench = new Bench({ time: TIME_MS, warmupTime: Math.min(200, TIME_MS) });
      const task = s.make(impl);
      bench.add(key, task.fn);
      await bench.run();
      // Sanity: every pair allocated (never 0) and released, so live stayed constant.
      if (task.a.live !== task.live) throw new Error(`${key}: live ${task.a.live}, expected ${task.live}`);
      const res = bench.tasks[0]!.result;
      if (!res || res.error) throw res?.error ?? new Error(`${key}: no result`);
      rates.get(key)!.push(res.throughput.mean * s.batch);
      rmes.get(key)!.push(res.latency.rme);
    }
  }

  const rows = keys.map(({ s, impl, key }) => {
    const med = median(rates.get(key)!);
    const base = median(rates.get(`${s.name} | Map baseline`)!);
    return {
      scenario: s.name,
      impl,
      'pairs/s (median)': Math.round(med),
      'M pairs/s': Number((med / 1e6).toFixed(2)),
      'vs Map': `${(med / base).toFixed(1)}x`,
      'rme %': Number(median(rmes.get(key)!).toFixed(2)),
    };
  });
  console.table(rows);
  const steady = rows[0]!;
  console.log(`FdAllocator steady: ${steady['M pairs/s']}M pairs/s (target >= 50M), ${steady['vs Map']} the Map baseline`);
  if (sink === 0.5) console.log('unreachable'); // sink read, so the work is observable

  mkdirSync(resultsDir, { recursive: true });
  const out = {
    bench: 'fd',
    date: new Date().toISOString(),
    env,
    params: { rounds: ROUNDS, timeMs: TIME_MS, bytesForFdMax: FdAllocator.bytesFor(FD_MAX), nearFullLive: NEAR_FULL },
    results: keys.map(({ s, impl, key }) => ({
      scenario: s.name,
      impl,
      batch: s.batch,
      pairsPerSecond: rates.get(key)!.map(Math.round),
      median: Math.round(median(rates.get(key)!)),
      ratioToMap: Number((median(rates.get(key)!) / median(rates.get(`${s.name} | Map baseline`)!)).toFixed(2)),
    })),
  };
  writeFileSync(join(resultsDir, 'fd.json'), JSON.stringify(out, null, 2) + '\n');
  console.log(`wrote ${join(resultsDir, 'fd.json')}`);
}

await main();
