/**
 * End-to-end echo through the full ringwire pipeline (uWS I/O thread → ring → worker →
 * handler → ring → corked send) against raw uWebSockets.js (the ceiling) and `ws` (a peer),
 * with the same load generator, in the same run, interleaved.
 *
 *   node dist/bench/e2e/echo.js [--duration ms] [--warmup ms] [--runs n] [--out file] [--latency]
 *
 * `--latency` adds a latency-bound scenario: one connection, one message in flight (each message
 * waits for the previous reply, so the round trip, not CPU, sets the rate).
 *
 * Every server gets the same bytes on the wire: a binary-codec WireFrame (event "ECHO",
 * ref 1, 32-byte payload). Raw uWS and ws echo it back unchanged; ringwire decodes it,
 * routes it to the echo module's handler and replies with an equal-sized frame.
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { encodeFrame } from '../../src/shared/wire.js';
import { HANDOFF_ECHO_SCRIPT, killServersOnExit, startServer, UWS_ECHO_SCRIPT, WS_ECHO_SCRIPT } from '../servers/spawn.js';
import { reportExitCode, type Scenario, type ServerEntry } from '../loadgen/scenarios.js';
import { main } from './baseline.js';

const RINGWIRE_ECHO = fileURLToPath(new URL('./ringwire-echo-server.js', import.meta.url));
export const FRAME_32 = encodeFrame({ event: 'ECHO', ref: 1, payload: Uint8Array.from({ length: 32 }, (_, i) => i) });

export const ECHO_SCENARIOS: readonly Scenario[] = [
  { name: 'pipelined 50x32 (32 B payload)', connections: 50, inflight: 32, payload: FRAME_32 },
  { name: 'ping-pong 50x1 (32 B payload)', connections: 50, inflight: 1, payload: FRAME_32 },
];

/** The stricter reading of ping-pong: one round trip at a time (`--latency`). */
export const LATENCY_SCENARIO: Scenario = { name: 'ping-pong 1x1 (32 B payload, latency-bound)', connections: 1, inflight: 1, payload: FRAME_32 };

export function ringwireEntry(workers: number, extra: string[] = []): ServerEntry {
  return {
    name: `ringwire (${workers} worker${workers > 1 ? 's' : ''})`,
    path: '/echo',
    start: () => startServer(RINGWIRE_ECHO, ['--workers', String(workers), ...extra]),
  };
}

export const ECHO_SERVERS: readonly ServerEntry[] = [
  { name: 'uWS (raw)', start: () => startServer(UWS_ECHO_SCRIPT) },
  { name: 'ws', start: () => startServer(WS_ECHO_SCRIPT) },
  // The floor of any worker-thread design: uWS + ring + a worker that copies back (servers/handoff-echo.ts).
  { name: 'uWS + ring hand-off only', start: () => startServer(HANDOFF_ECHO_SCRIPT) },
  ringwireEntry(1),
  ringwireEntry(2),
  ...(process.env['RW_BENCH_VARIANTS'] === '1' ? [
    { ...ringwireEntry(1, ['--block', '0']), name: 'ringwire (1 worker, no block)' },
    { ...ringwireEntry(1, ['--spin', '50']), name: 'ringwire (1 worker, spin 50us)' },
  ] : []),
];

const OUT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../bench/results/echo.json');

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  killServersOnExit();
  const all = process.argv.slice(2);
  const argv = all.filter((a) => a !== '--latency');
  const scenarios = argv.length < all.length ? [...ECHO_SCENARIOS, LATENCY_SCENARIO] : ECHO_SCENARIOS;
  main(ECHO_SERVERS, scenarios, argv.includes('--out') ? argv : [...argv, '--out', OUT]).then((report) => {
    process.exitCode = reportExitCode(report);
  }, (err: unknown) => {
    process.stderr.write(`echo bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  });
}
