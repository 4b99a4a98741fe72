/**
 * The `ringwire` command (bin/ringwire.js imports this compiled file). One function,
 * `main(argv)`, resolving to the exit status: 0 success, 1 runtime failure, 2 bad command line.
 * It runs on the I/O thread: module files named on the command line are only ever loaded
 * inside the worker threads.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { UsageError } from './args.js';
import { bench } from './bench.js';
import { benchHelp, mainHelp, serveHelp } from './help.js';
import { serve, type CliIo } from './serve.js';

/** dist/src/cli/main.js → the package root (three levels up from this file's folder). */
const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function version(root: string): string {
  try {
    return (JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/**
 * A log reader that goes away (`ringwire serve | head -1`, a log shipper restarting) must not take
 * the server down: a write to the closed pipe is dropped. Unhandled, its EPIPE 'error' event
 * killed the process in the middle of serving.
 */
function dropWritesToClosedPipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

function defaultIo(): CliIo {
  dropWritesToClosedPipe(process.stdout);
  dropWritesToClosedPipe(process.stderr);
  return {
    out: (line) => { process.stdout.write(line.endsWith('\n') ? line : `${line}\n`); },
    err: (line) => { process.stderr.write(line.endsWith('\n') ? line : `${line}\n`); },
    cwd: process.cwd(),
    env: process.env,
    packageRoot: PACKAGE_ROOT,
  };
}

export async function main(argv: readonly string[], io: CliIo = defaultIo()): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'serve':
        return await serve(rest, io);
      case 'bench':
        return await bench(rest, io);
      case 'help':
      case '--help':
      case '-h':
        io.out(rest[0] === 'serve' ? serveHelp() : rest[0] === 'bench' ? benchHelp() : mainHelp(version(io.packageRoot)));
        return 0;
      case '--version':
      case '-v':
        io.out(version(io.packageRoot));
        return 0;
      case undefined:
        io.err(mainHelp(version(io.packageRoot)));
        return 2;
      default:
        throw new UsageError(command.startsWith('-')
          ? `unknown option ${command} (options go after the command: ringwire serve --help)`
          : `unknown command ${JSON.stringify(command)} (commands: serve, bench, help)`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      const cmd = command === 'serve' || command === 'bench' ? ` ${command}` : '';
      io.err(`ringwire${cmd}: ${err.message}`);
      io.err(`run 'ringwire${cmd} --help' for usage`);
      return 2;
    }
    const e = err as { code?: string; message?: string };
    io.err(`ringwire: ${e.code !== undefined ? `${e.code}: ` : ''}${e.message ?? String(err)}`);
    return 1;
  }
}
