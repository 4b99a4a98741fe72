/** Help texts of the `ringwire` CLI. The serve flags come from the table in flags.ts. */
import { SERVE_FLAGS } from './flags.js';

const WIDTH = 100;

/** Two columns; the description is wrapped to WIDTH and indented under itself. */
function serveFlagLines(extra: readonly (readonly [string, string])[] = []): string {
  const rows = [
    // The default is kept on one line (non-breaking spaces until wrapped).
    ...SERVE_FLAGS.map((f) => [`  --${f.name} ${f.arg}`, `${f.help} ${`[default: ${f.def}]`.replace(/ /g, '\u00a0')}`] as const),
    ...extra,
  ];
  const col = Math.max(...rows.map((r) => r[0].length)) + 2;
  return rows.map(([a, b]) => wrap(b, WIDTH - col).map((l, i) => (i === 0 ? a.padEnd(col) : ' '.repeat(col)) + l.replace(/\u00a0/g, ' ')).join('\n')).join('\n');
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line.length > 0 && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line.length === 0 ? word : `${line} ${word}`;
    }
  }
  if (line.length > 0) lines.push(line);
  return lines;
}

export function mainHelp(version: string): string {
  return `ringwire ${version}: a real-time socket core (one uWebSockets.js I/O thread, worker threads, shared rings)

Usage:
  ringwire serve <module files...> [flags]    start a server with these module files
  ringwire bench [scenario] [--quick|--full]  run the benchmarks (dist/bench/run.js)
  ringwire help [command]                     this text, or a command's help
  ringwire --version

serve flags (see 'ringwire serve --help' for details):
${serveFlagLines()}

bench flags:
  --quick          short runs (default)
  --full           long runs, for figures worth quoting
  -- ARGS...       passed to the bench runner untouched (-- --list lists the scenarios)

Exit status: 0 success (serve: closed gracefully after SIGINT/SIGTERM), 1 runtime failure
(a module failed to load, the port is taken, a benchmark failed), 2 bad command line.
`;
}

export function serveHelp(): string {
  return `Usage: ringwire serve <module files...> [flags]

Starts a ringwire server. Each module file is compiled JavaScript that default-exports
defineModule({ path, events, ... }) from 'ringwire/module'; it is loaded inside every worker
thread, never on the I/O thread. A TypeScript source path (src/x.module.ts) is resolved to
its compiled twin under dist/ (run 'npm run build' first).

Prints the bound address and each module's path; SIGINT (Ctrl-C) or SIGTERM closes it
gracefully (stop accepting, deliver pending replies, close sockets with 1001, run
disconnect hooks, stop the workers) and exits 0. A second signal exits at once (status 1).

Flags (byte counts accept K, M, G suffixes: 64K, 1M, 1MiB):
${serveFlagLines([['  -h, --help', 'this text']])}

Example:
  ringwire serve dist/examples/echo/echo.module.js dist/examples/chat/chat.module.js \\
    --port 9001 --workers 1 --ring-bytes 4M --stats 5
`;
}

export function benchHelp(): string {
  return `Usage: ringwire bench [scenario] [--quick|--full] [-- runner args...]

Runs the benchmark runner of a ringwire checkout (dist/bench/run.js, built by 'npm run build')
in a child process with this terminal: its progress and tables print as they come. Every
figure is a ratio against a baseline measured in the same run, with Node version, CPU model
and core count. The scenario is passed to the runner as --scenario: a scenario name, a group
(all, micro, echo, e2e) or a comma-separated list of them. Without a scenario every scenario
runs. 'ringwire bench -- --list' lists the scenarios and groups.

  --quick   short runs (default)
  --full    long runs
  -h, --help
  -- ARGS   passed to the runner untouched: --duration ms, --warmup ms, --runs n, --out DIR, --list
`;
}
