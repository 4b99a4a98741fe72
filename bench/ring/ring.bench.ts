/**
 * Ring throughput against postMessage, between two threads, 64-byte records.
 *
 *   node dist/bench/ring/ring.bench.js [--rounds 3] [--quick] [--capacity 1048576] [--batch 256]
 *                                      [--ring-records 20000000] [--pm-records 250000] [--out DIR]
 *
 * Scenarios (each round starts fresh workers; timing runs from 'go' to the
 * consumer having counted and checked every record):
 *   ring w→w     producer worker push() runs of `batch`, one notify() per batch;
 *                consumer worker blocking waitForData + drain
 *   ring w→main  same producer; the main thread drains with waitForDataAsync (the I/O thread's form)
 *   pm record    one postMessage per 64-byte record (the baseline)
 *   pm array     one postMessage per batch: an array of `batch` 64-byte Uint8Arrays (reference)
 *   pm buffer    one postMessage per batch: one transferred batch × 64-byte buffer (reference)
 *
 * Prints a table (median of the rounds) with Node version, CPU model and core
 * count, and writes bench/results/ring.json (or DIR/ring.json with --out).
 */
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus } from 'node:os';
import { Worker } from 'node:worker_threads';
import { Ring } from '../../src/shared/ring.js';
import { median } from '../report/stats.js';
import { outDirArg } from '../report/results.js';
import type { BenchDone, BenchInput, Role } from './ring-bench-worker.js';

const workerUrl = new URL('./ring-bench-worker.js', import.meta.url);
const resultsDir = outDirArg(process.argv.slice(2));

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v <= 0) throw new RangeError(`--${name} must be a positive integer`);
  return v;
}

const quick = process.argv.includes('--quick');
const ROUNDS = arg('rounds', 3);
const SIZE = 64;
const BATCH = arg('batch', 256);
const CAPACITY = arg('capacity', 1 << 20);
const RING_RECORDS = arg('ring-records', quick ? 2_000_000 : 20_000_000);
// postMessage gets a smaller count: a flood of 1M queued messages slows it down
// (about 0.5M/s against 0.85M/s at 250k here), and the baseline should be its best.
const PM_RECORDS = arg('pm-records', quick ? 100_000 : 250_000);

interface Scenario { name: string; records: number; run: () => Promise<number> }

function spawn(role: Role, records: number, sab?: SharedArrayBuffer): Worker {
  const input: BenchInput = { role, records, batch: BATCH, size: SIZE, ...(sab ? { sab } : {}) };
  return new Worker(workerUrl, { workerData: input });
}

function isDone(m: unknown): m is BenchDone {
  return typeof m === 'object' && m !== null && (m as { done?: unknown }).done === true;
}

function check(done: BenchDone, records: number, errors = 0): void {
  if (done.records !== records || done.errors + errors !== 0) {
    throw new Error(`bench consumer saw ${done.records}/${records} records, ${done.errors + errors} errors`);
  }
}

/** Returns elapsed ms. */
async function ringWorkerToWorker(): Promise<number> {
  const ring = Ring.create(CAPACITY);
  const prod = spawn('ring-producer', RING_RECORDS, ring.sab);
  const cons = spawn('ring-consumer', RING_RECORDS, ring.sab);
  try {
    await Promise.all([once(prod, 'message'), once(cons, 'message')]); // 'ready'
    const doneP = once(cons, 'message');
    const t0 = performance.now();
    cons.postMessage('go');
    prod.postMessage('go');
    const [done] = (await doneP) as [BenchDone];
    const ms = performance.now() - t0;
    check(done, RING_RECORDS);
    return ms;
  } finally {
    await Promise.all([prod.terminate(), cons.terminate()]);
  }
}

async function ringWorkerToMain(): Promise<number> {
  const ring = Ring.create(CAPACITY);
  const prod = spawn('ring-producer', RING_RECORDS, ring.sab);
  const words = new Uint32Array(ring.data.buffer, ring.data.byteOffset, ring.data.byteLength >>> 2);
  let next = 0;
  let errors = 0;
  const onRecord = (_d: Uint8Array, off: number, len: number): void => {
    if (words[off >>> 2] !== next || len !== SIZE) errors++;
    next++;
  };
  try {
    await once(prod, 'message');
    const t0 = performance.now();
    prod.postMessage('go');
    while (next < RING_RECORDS) {
      const p = ring.waitForDataAsync();
      if (p !== null) await p;
      ring.drain(onRecord, BATCH);
    }
    const ms = performance.now() - t0;
    check({ done: true, records: next, errors }, RING_RECORDS);
    return ms;
  } finally {
    await prod.terminate();
  }
}

async function postMessageRun(role: 'pm-record' | 'pm-array' | 'pm-buffer'): Promise<number> {
  const w = spawn(role, PM_RECORDS);
  let next = 0;
  let errors = 0;
  try {
    await once(w, 'message');
    let resolveDone!: (d: BenchDone) => void;
    const doneP = new Promise<BenchDone>((r) => { resolveDone = r; });
    w.on('message', (m: unknown) => {
      if (m instanceof Uint8Array) {
        if (role === 'pm-record') {
          if (m[0]! + (m[1]! << 8) + (m[2]! << 16) + m[3]! * 0x1000000 !== next) errors++;
          next++;
        } else {
          const n = m.byteLength / SIZE;
          const b32 = new Uint32Array(m.buffer, m.byteOffset, m.byteLength >>> 2);
          for (let i = 0; i < n; i++, next++) if (b32[(i * SIZE) >>> 2] !== next) errors++;
        }
      } else if (Array.isArray(m)) {
        for (const b of m as Uint8Array[]) {
          if (new Uint32Array(b.buffer, b.byteOffset, 1)[0] !== next) errors++;
          next++;
        }
      } else if (isDone(m)) {
        resolveDone(m);
      }
    });
    const t0 = performance.now();
    w.postMessage('go');
    const done = await doneP;
    const ms = performance.now() - t0;
    check({ ...done, records: next }, PM_RECORDS, errors);
    return ms;
  } finally {
    await w.terminate();
  }
}

const scenarios: Scenario[] = [
  { name: 'ring w→w (blocking both)', records: RING_RECORDS, run: ringWorkerToWorker },
  { name: 'ring w→main (waitForDataAsync)', records: RING_RECORDS, run: ringWorkerToMain },
  { name: 'postMessage per record', records: PM_RECORDS, run: () => postMessageRun('pm-record') },
  { name: `postMessage array of ${BATCH}`, records: PM_RECORDS, run: () => postMessageRun('pm-array') },
  { name: `postMessage ${BATCH}×64 B buffer (transfer)`, records: PM_RECORDS, run: () => postMessageRun('pm-buffer') },
];

async function main(): Promise<void> {
  const cpu = cpus();
  const env = {
    node: process.version,
    cpu: cpu[0]?.model ?? 'unknown',
    cores: cpu.length,
    platform: `${process.platform}-${process.arch}`,
  };
  console.log(`ring bench: Node ${env.node}, ${env.cpu}, ${env.cores} cores, ${env.platform}`);
  console.log(`records ${SIZE} B, batch ${BATCH}, ring capacity ${CAPACITY} B, ${ROUNDS} round(s), median shown`);
  const perRound: number[][] = scenarios.map(() => []);
  // Interleave scenarios within each round so that background load hits all of them alike.
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < scenarios.length; i++) {
      const s = scenarios[i]!;
      const ms = await s.run();
      perRound[i]!.push(s.records / (ms / 1000));
    }
  }
  const baseline = median(perRound[2]!);
  const rows = scenarios.map((s, i) => {
    const rates = perRound[i]!;
    const med = median(rates);
    return {
      scenario: s.name,
      records: s.records,
      'records/s (median)': Math.round(med),
      'min': Math.round(Math.min(...rates)),
      'max': Math.round(Math.max(...rates)),
      'vs postMessage/record': `${(med / baseline).toFixed(1)}x`,
    };
  });
  console.table(rows);
  const ringRate = median(perRound[0]!);
  const ringMainRate = median(perRound[1]!);
  console.log(`ring w→w ${(ringRate / 1e6).toFixed(2)}M rec/s = ${(ringRate / baseline).toFixed(1)}x postMessage; ` +
    `ring w→main ${(ringMainRate / 1e6).toFixed(2)}M rec/s = ${(ringMainRate / baseline).toFixed(1)}x ` +
    `(targets: >= 5M rec/s, >= 10x)`);
  mkdirSync(resultsDir, { recursive: true });
  const out = {
    bench: 'ring',
    date: new Date().toISOString(),
    env,
    params: { recordBytes: SIZE, batch: BATCH, capacity: CAPACITY, rounds: ROUNDS, ringRecords: RING_RECORDS, pmRecords: PM_RECORDS },
    results: scenarios.map((s, i) => ({
      scenario: s.name,
      records: s.records,
      recordsPerSecond: perRound[i]!.map(Math.round),
      median: Math.round(median(perRound[i]!)),
      ratioToPostMessage: Number((median(perRound[i]!) / baseline).toFixed(2)),
    })),
  };
  writeFileSync(join(resultsDir, 'ring.json'), JSON.stringify(out, null, 2) + '\n');
  console.log(`wrote ${join(resultsDir, 'ring.json')}`);
}

await main();
