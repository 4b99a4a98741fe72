/**
 * The CPU-heavy handler's work: a fixed number of xorshift32 steps, the same in every server
 * (raw uWS, ws, socket.io, ringwire workers). A fixed amount of work, not "spin until 50 µs
 * passed": a server starved of CPU then really takes longer, as a real handler would.
 *
 * The iteration count comes from BENCH_WORK_ITERS (bench/run.ts calibrates it to ~50 µs on the
 * machine it runs on and passes it to every server process; worker threads inherit the env).
 */
import { median } from '../report/stats.js';

/** Default when BENCH_WORK_ITERS is not set: ~50 µs on the 2-core AMD EPYC this was written on. */
export const DEFAULT_WORK_ITERS = 34_000;

export function workIterations(env: NodeJS.ProcessEnv = process.env): number {
  const v = env['BENCH_WORK_ITERS'];
  if (v === undefined || v === '') return DEFAULT_WORK_ITERS;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new RangeError('BENCH_WORK_ITERS must be a non-negative integer');
  return n;
}

let sink = 0;

/** Burn `iterations` xorshift32 steps; the result is kept so the loop cannot be optimised away. */
export function work(iterations: number): number {
  let x = 0x9e3779b9 | 0;
  let acc = 0;
  for (let i = 0; i < iterations; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    acc = (acc + x) | 0;
  }
  sink ^= acc;
  return acc;
}

/**
 * Median CPU µs per work(iterations) call over `rounds` batches (after a warm-up batch).
 * CPU time (process.cpuUsage), not wall time: on a shared machine the wall clock also counts
 * the time other processes had the core.
 */
export function measureWorkMicros(iterations: number, rounds = 7, callsPerRound = 200): number {
  for (let i = 0; i < callsPerRound; i++) work(iterations);
  const per: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const c0 = process.cpuUsage();
    for (let i = 0; i < callsPerRound; i++) work(iterations);
    const c = process.cpuUsage(c0);
    per.push((c.user + c.system) / callsPerRound);
  }
  return median(per);
}

/** Iterations for about `targetMicros` of work on this machine. */
export function calibrateWork(targetMicros: number): { iterations: number; micros: number } {
  const probe = 20_000;
  const us = measureWorkMicros(probe, 5, 100);
  const iterations = Math.max(1, Math.round((probe * targetMicros) / us));
  return { iterations, micros: measureWorkMicros(iterations) };
}

/** For tests/diagnostics: the xor of every result so far. */
export function workSink(): number {
  return sink;
}
