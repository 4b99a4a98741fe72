/**
 * `ringwire bench [scenario] [--quick|--full] [-- args]`: runs the benchmark runner of a
 * ringwire checkout (`dist/bench/run.js`) in a child process that shares this terminal, so its
 * progress and tables stream as they come. This process only frames the run (what, where,
 * how long) and passes the runner's exit status through.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, relative } from 'node:path';
import { UsageError, parse } from './args.js';
import { benchHelp } from './help.js';
import type { CliIo } from './serve.js';

/**
 * The arguments the runner gets; exported for tests. The runner takes the scenario as
 * `--scenario NAME` (a name, a group such as `echo`, or a comma-separated list), not as a
 * positional argument.
 */
export function planBench(argv: readonly string[]): readonly string[] | 'help' {
  const { values, positionals, rest } = parse(argv, {
    quick: { type: 'boolean' },
    full: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values['help'] === true) return 'help';
  if (values['quick'] === true && values['full'] === true) throw new UsageError('--quick and --full exclude each other');
  if (positionals.length > 1) throw new UsageError(`one scenario at most, got ${positionals.join(' ')}`);
  const mode = values['full'] === true ? '--full' : '--quick';
  const scenario = positionals[0];
  return [...(scenario !== undefined ? ['--scenario', scenario] : []), mode, ...rest];
}

export function benchRunner(packageRoot: string): string {
  return join(packageRoot, 'dist', 'bench', 'run.js');
}

export async function bench(argv: readonly string[], io: CliIo): Promise<number> {
  const args = planBench(argv);
  if (args === 'help') {
    io.out(benchHelp());
    return 0;
  }
  const runner = benchRunner(io.packageRoot);
  if (!existsSync(runner)) {
    io.err(`ringwire bench: the benchmark runner ${runner} does not exist. The benchmarks are part of a ringwire ` +
      'checkout, not of the installed package: in the repository run `npm run build` first (or `npm run bench`).');
    return 1;
  }
  const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU';
  io.out(`ringwire bench: ${relative(io.cwd, runner) || runner} ${args.join(' ')}`);
  io.out(`ringwire bench: Node ${process.version}, ${cpu}, ${cpus().length} cores; progress follows`);
  const started = performance.now();
  const child = spawn(process.execPath, [runner, ...args], { stdio: 'inherit', cwd: io.packageRoot });
  // Ctrl-C reaches the runner through the terminal's process group; SIGTERM sent to this
  // process alone is passed on. Either way we wait for the runner to finish its cleanup.
  const onInt = (): void => undefined;
  const onTerm = (): void => { child.kill('SIGTERM'); };
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  const status = await new Promise<number>((resolve) => {
    child.once('error', (err) => {
      io.err(`ringwire bench: cannot start the runner: ${err.message}`);
      resolve(1);
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal === null ? 1 : 128 + signalNumber(signal))));
  });
  process.removeListener('SIGINT', onInt);
  process.removeListener('SIGTERM', onTerm);
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  if (status === 0) io.out(`ringwire bench: done in ${secs} s`);
  else io.err(`ringwire bench: the runner exited with status ${status} after ${secs} s`);
  return status;
}

function signalNumber(signal: NodeJS.Signals): number {
  return signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : signal === 'SIGKILL' ? 9 : 1;
}
