/**
 * Baseline end-to-end echo benchmark: raw uWebSockets.js (the ceiling) and the `ws` server
 * (peer), same load generator, same run.
 *
 *   node dist/bench/e2e/baseline.js [--duration ms] [--warmup ms] [--runs n] [--out file] [--quiet]
 *
 * Prints a markdown table (msg/s, p50, p99, client CPU %, ratio to uWS) with Node version, CPU model
 * and core count, and writes bench/results/baseline.json. Exits 1 when any run had errors or
 * connections never established (see ScenarioReport.failed).
 *
 * Adding a server (e.g. ringwire) is one more ServerEntry:
 *   import { BASELINE_SERVERS, main } from './baseline.js';
 *   await main([...BASELINE_SERVERS, { name: 'ringwire', start: () => startServer(RINGWIRE_ECHO_SCRIPT) }]);
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  formatLoadResult, formatScenarioTable, reportExitCode, runScenarios, type Scenario, type ScenarioReport, type ServerEntry,
} from '../loadgen/scenarios.js';
import { UWS_ECHO_SCRIPT, WS_ECHO_SCRIPT, killServersOnExit, startServer } from '../servers/spawn.js';

/** 32 bytes 0x00..0x1f. */
export const PAYLOAD_32 = Uint8Array.from({ length: 32 }, (_, i) => i);

export const BASELINE_SCENARIOS: readonly Scenario[] = [
  { name: 'pipelined 50x32 32B', connections: 50, inflight: 32, payload: PAYLOAD_32 },
  { name: 'ping-pong 50x1 32B', connections: 50, inflight: 1, payload: PAYLOAD_32 },
];

/** First entry is the baseline the ratios refer to. */
export const BASELINE_SERVERS: readonly ServerEntry[] = [
  { name: 'uWS (raw)', start: () => startServer(UWS_ECHO_SCRIPT) },
  { name: 'ws', start: () => startServer(WS_ECHO_SCRIPT) },
];

// dist/bench/e2e/baseline.js -> <repo>/bench/results/baseline.json
export const DEFAULT_OUT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../bench/results/baseline.json');

export interface BaselineArgs {
  durationMs: number;
  warmupMs: number;
  runs: number;
  out: string;
  quiet: boolean;
}

export function parseArgs(argv: readonly string[]): BaselineArgs {
  const a: BaselineArgs = { durationMs: 5000, warmupMs: 1000, runs: 1, out: DEFAULT_OUT, quiet: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    const num = (name: string, min: number): number => {
      const n = Number(v);
      if (v === undefined || !Number.isInteger(n) || n < min) throw new RangeError(`${name} must be an integer >= ${min}`);
      i++;
      return n;
    };
    if (k === '--duration') a.durationMs = num('--duration', 1);
    else if (k === '--warmup') a.warmupMs = num('--warmup', 0);
    else if (k === '--runs') a.runs = num('--runs', 1);
    else if (k === '--out' && v !== undefined) { a.out = resolve(v); i++; }
    else if (k === '--quiet') a.quiet = true;
    else throw new TypeError(`unknown argument ${String(k)}; usage: baseline.js [--duration ms] [--warmup ms] [--runs n] [--out file] [--quiet]`);
  }
  return a;
}

export async function main(servers: readonly ServerEntry[] = BASELINE_SERVERS,
  scenarios: readonly Scenario[] = BASELINE_SCENARIOS, argv: readonly string[] = process.argv.slice(2)): Promise<ScenarioReport> {
  const args = parseArgs(argv);
  const report = await runScenarios(servers, scenarios, {
    durationMs: args.durationMs,
    warmupMs: args.warmupMs,
    runs: args.runs,
    onMeasurement: args.quiet ? undefined : (scenario, server, run, r) => {
      process.stderr.write(`[run ${run + 1}] ${scenario} / ${server}\n${formatLoadResult(r)}\n`);
    },
  });
  process.stdout.write(formatScenarioTable(report) + '\n');
  mkdirSync(dirname(args.out), { recursive: true });
  writeFileSync(args.out, JSON.stringify(report, null, 2) + '\n');
  process.stdout.write(`\nwrote ${args.out}\n`);
  if (report.failed.length > 0) process.stderr.write(`FAILED: ${report.failed.join('\n        ')}\n`);
  return report;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  killServersOnExit();
  main().then((report) => { process.exitCode = reportExitCode(report); }, (err: unknown) => {
    process.stderr.write(`baseline: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  });
}
