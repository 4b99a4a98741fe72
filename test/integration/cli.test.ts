// The `ringwire` command as users run it: `node bin/ringwire.js ...` in a child process, a real
// server on port 0, real ws clients, signals for the graceful stop, exit statuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseRunArgs } from '../../bench/run.js';
import { UsageError } from '../../src/cli/args.js';
import { planBench } from '../../src/cli/bench.js';
import { SERVE_FLAGS } from '../../src/cli/flags.js';
import { main } from '../../src/cli/main.js';
import { planServe, type CliIo } from '../../src/cli/serve.js';
import { Client } from '../helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = 'bin/ringwire.js';

interface Done { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

function start(args: readonly string[]): { child: ChildProcessWithoutNullStreams; done: Promise<Done> } {
  // The CLI reads PORT/HOST from the environment as defaults: keep the caller's out.
  const { PORT: _p, HOST: _h, ...env } = process.env;
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const done = new Promise<Done>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

const run = (args: readonly string[]): Promise<Done> => start(args).done;

/** Resolves with the bound port once the CLI printed its "listening on" line. */
function boundPort(child: ChildProcessWithoutNullStreams): Promise<number> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.on('line', (line) => {
      const m = /listening on ws:\/\/127\.0\.0\.1:(\d+)/.exec(line);
      if (m !== null) {
        rl.close();
        resolve(Number(m[1]));
      }
    });
    child.once('close', (code) => reject(new Error(`ringwire exited (${code}) before listening`)));
  });
}

test('--help documents every serve flag, tuning flags included; exit 0', async () => {
  for (const args of [['--help'], ['serve', '--help']]) {
    const r = await run(args);
    assert.equal(r.code, 0, r.stderr);
    for (const f of SERVE_FLAGS) assert.match(r.stdout, new RegExp(`--${f.name}\\b`), `${args.join(' ')} mentions --${f.name}`);
    assert.match(r.stdout, /--workers/);
    assert.match(r.stdout, /--ring-bytes/);
  }
  const b = await run(['bench', '--help']);
  assert.equal(b.code, 0);
  assert.match(b.stdout, /--full/);
});

test('serve a .ts source path: resolved to dist/, echoes over a real ws client, SIGTERM → graceful exit 0', { timeout: 60_000 }, async () => {
  const { child, done } = start(['serve', 'examples/echo/echo.module.ts', '--port', '0', '--host', '127.0.0.1', '--workers', '1']);
  try {
    const port = await boundPort(child);
    const c = await Client.open(`ws://127.0.0.1:${port}/echo`);
    const r = await c.call('ECHO', 'ping over the CLI', 42);
    assert.equal(r.text, 'ping over the CLI');
    assert.equal(r.ref, 42);
    const closed = c.closed;
    child.kill('SIGTERM');
    // The graceful close ends every socket with 1001.
    assert.equal((await closed).code, 1001);
    const d = await done;
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stdout, /module \/echo \(binary; events ECHO\) from \S*dist\/examples\/echo\/echo\.module\.js/);
    assert.match(d.stdout, /SIGTERM received/);
    assert.match(d.stdout, /closed \(messages in 1, out 1; drops none\)/);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test('a log reader that goes away (ringwire serve | head -1) does not take the server down: it serves on, SIGTERM → exit 0', { timeout: 60_000 }, async () => {
  const { child, done } = start(['serve', 'dist/examples/echo/echo.module.js', '--port', '0', '--host', '127.0.0.1', '--workers', '1']);
  try {
    const port = await boundPort(child);
    child.stdout.destroy(); // the reader's end of the pipe is closed: every later write gets EPIPE
    const c = await Client.open(`ws://127.0.0.1:${port}/echo`);
    assert.equal((await c.call('ECHO', 'still here')).text, 'still here');
    const closed = c.closed;
    child.kill('SIGTERM'); // its "SIGTERM received" line is written to the closed pipe
    assert.equal((await closed).code, 1001);
    const d = await done;
    // Before the fix the EPIPE was an unhandled 'error' event: exit 1 before the graceful close ended.
    assert.deepEqual({ code: d.code, signal: d.signal }, { code: 0, signal: null }, d.stderr);
    assert.doesNotMatch(d.stderr, /EPIPE/);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test('serve a compiled .js path with tuning flags; SIGINT → graceful exit 0', { timeout: 60_000 }, async () => {
  const { child, done } = start(['serve', 'dist/examples/chat/chat.module.js', '--port=0', '--host', '127.0.0.1',
    '--workers', '1', '--ring-bytes', '64K', '--overflow-bytes', '1M', '--drain-batch', '64', '--max-connections', '10']);
  try {
    const port = await boundPort(child);
    const c = await Client.open(`ws://127.0.0.1:${port}/chat/lobby?name=cli`);
    // The example announces every arrival to the room (the newcomer included) first.
    assert.equal((await c.nextJson()).cmd, 'JOIN');
    c.ws.send(JSON.stringify({ cmd: 'WHO', ref: 1 }));
    const who = await c.nextJson();
    assert.equal(who.ref, 1);
    assert.deepEqual({ ...(who.data as object), handle: 0 }, { room: 'lobby', name: 'cli', handle: 0 });
    child.kill('SIGINT');
    const d = await done;
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stdout, /workers 1, ring-bytes 65536, overflow-bytes 1048576, codec binary/);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test('bad flags and bad values exit 2 with a message naming the flag', async () => {
  const echo = 'dist/examples/echo/echo.module.js';
  const cases: [string[], RegExp][] = [
    [['serve', echo, '--frobnicate'], /unknown option --frobnicate\n/],
    // The did-you-mean hint createServer gives `worker: 2`.
    [['serve', echo, '--worker', '2'], /unknown option --worker \(did you mean --workers\?\)/],
    [['serve', echo, '--ringbytes=1M'], /unknown option --ringbytes \(did you mean --ring-bytes\?\)/],
    [['bench', '--ful'], /unknown option --ful \(did you mean --full\?\)/],
    [['serve', echo, '--port'], /--port needs a value/],
    [['serve', echo, '--workers', 'many'], /--workers must be/],
    [['serve', echo, '--workers', '0'], /--workers must be an integer between 1/],
    // A negative value is a value, not an option: the range error, not "needs a value".
    [['serve', echo, '--workers', '-1'], /--workers must be a non-negative integer, got "-1"/],
    [['serve', echo, '--start-timeout-ms', '-5'], /--start-timeout-ms must be a non-negative integer, got "-5"/],
    [['serve', echo, '--ring-bytes', '5000'], /--ring-bytes must be a power of two/],
    [['serve', echo, '--codec', 'xml'], /--codec must be one of binary, json, raw/],
    [['serve', echo, '--port', '70000'], /--port must be between 0 and 65535/],
    [['serve', echo, '--rate-limit', '10/20,drop'], /--rate-limit must be N\[\/BURST\]\[,shed\[\/SHEDBURST\]\|,close\]/],
    [['serve', echo, '--rate-limit', '10/20,close/5'], /--rate-limit must be N/],
    [['serve', echo, '--hooks', 'no/such.hooks.js'], /--hooks no\/such\.hooks\.js does not exist/],
    [['serve', 'no/such.module.js'], /module file no\/such\.module\.js does not exist/],
    [['serve'], /give at least one module file/],
    [['bench', '--quick', '--full'], /--quick and --full exclude each other/],
    [['bench', '--fast'], /unknown option --fast/],
    [['frob'], /unknown command "frob"/],
  ];
  for (const [args, message] of cases) {
    const r = await run(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.equal(r.stdout, '', `${args.join(' ')} prints nothing on stdout`);
  }
});

test('a module file that fails to load: the RW_ERR_MODULE_LOAD error is printed, exit 1', { timeout: 60_000 }, async () => {
  const r = await run(['serve', 'test/fixtures/modules/broken.module.ts', '--port', '0', '--workers', '1']);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /cannot start: RW_ERR_MODULE_LOAD: .*broken module on purpose/);
});

test('bench runs <package>/dist/bench/run.js with the scenario and mode, passing its exit status through', async () => {
  const root = mkdtempSync(join(tmpdir(), 'rw-cli-bench-'));
  try {
    const io = (lines: string[]) => ({
      out: (l: string) => { lines.push(l); }, err: (l: string) => { lines.push(`ERR ${l}`); },
      cwd: root, env: {}, packageRoot: root,
    });
    const missing: string[] = [];
    assert.equal(await main(['bench'], io(missing)), 1);
    assert.match(missing.join('\n'), /ERR ringwire bench: the benchmark runner \S*dist\/bench\/run\.js does not exist/);

    // A stand-in runner: records its arguments in the file named after --out, exits 3.
    mkdirSync(join(root, 'dist', 'bench'), { recursive: true });
    writeFileSync(join(root, 'dist', 'bench', 'run.js'),
      "import { writeFileSync } from 'node:fs';\n" +
      "const a = process.argv.slice(2);\n" +
      "writeFileSync(a[a.indexOf('--out') + 1], JSON.stringify(a));\n" +
      'process.exit(3);\n');
    writeFileSync(join(root, 'package.json'), '{"type":"module"}');
    const out = join(root, 'args.json');
    const lines: string[] = [];
    assert.equal(await main(['bench', 'echo', '--full', '--', '--out', out], io(lines)), 3);
    assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), ['--scenario', 'echo', '--full', '--out', out]);
    assert.match(lines.join('\n'), /ERR ringwire bench: the runner exited with status 3/);
    // No mode given: --quick (as `npm run bench`).
    assert.equal(await main(['bench', '--', '--out', out], io([])), 3);
    assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), ['--quick', '--out', out]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('bench <scenario> reaches the real runner as --scenario: its parser accepts every planBench output', async () => {
  const runArgs = (argv: string[]) => {
    const planned = planBench(argv);
    assert.notEqual(planned, 'help');
    return parseRunArgs(planned as readonly string[]);
  };
  const one = runArgs(['micro-fd']);
  assert.deepEqual(one.scenarios, ['micro-fd']);
  assert.equal(one.mode, 'quick');
  // A group and a comma-separated list pass through as the runner's --scenario value.
  assert.deepEqual(runArgs(['echo', '--full', '--', '--runs', '2']).scenarios, ['echo-32b', 'echo-512b', 'echo-8kb', 'pingpong-32b']);
  assert.equal(runArgs(['echo', '--full', '--', '--runs', '2']).timing.runs, 2);
  assert.deepEqual(runArgs(['fanout,micro-fd']).scenarios, ['micro-fd', 'fanout']);
  assert.equal(runArgs([]).scenarios.length, runArgs(['all']).scenarios.length);

  // End to end through bin/ringwire.js and this checkout's dist/bench/run.js: --list returns
  // before anything is measured, after the scenario has been parsed and checked.
  const r = await run(['bench', 'micro-fd', '--', '--list']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /ringwire bench: \S*run\.js --scenario micro-fd --quick --list/);
  assert.match(r.stdout, /^micro-fd +fd allocator/m);
  assert.match(r.stdout, /ringwire bench: done in/);
});

/** An io for in-process planServe() calls, run from the package root. */
function planIo(env: NodeJS.ProcessEnv = {}): CliIo {
  return { out: () => undefined, err: () => undefined, cwd: ROOT, env, packageRoot: ROOT };
}
const ECHO = 'dist/examples/echo/echo.module.js';

test('--rate-limit: an out-of-range part exits 2 naming the flag and the sub-field; help shows ,close as the parser accepts it', async () => {
  const cases: [string, RegExp][] = [
    ['0', /ringwire serve: --rate-limit messagesPerSecond must be an integer between 1 and \d+, got 0/],
    ['5/0', /ringwire serve: --rate-limit burst must be an integer between 1 and \d+, got 0/],
    ['5/2,shed/0', /ringwire serve: --rate-limit shedBurst must be an integer between 1 and \d+, got 0/],
  ];
  for (const [value, message] of cases) {
    const r = await run(['serve', ECHO, '--rate-limit', value]);
    assert.equal(r.code, 2, `--rate-limit ${value}: ${r.stderr}`);
    assert.match(r.stderr, message, `--rate-limit ${value}`);
    assert.doesNotMatch(r.stderr, /options\./, `--rate-limit ${value} names the flag, not the option`);
  }
  // The parser takes ,close (the default mode, spelled out); the help says so.
  const plan = planServe([ECHO, '--rate-limit', '5/10,close'], planIo());
  assert.notEqual(plan, 'help');
  assert.deepEqual((plan as Exclude<typeof plan, 'help'>).options.rateLimit, { messagesPerSecond: 5, burst: 10, onExceed: 'close' });
  const help = await run(['serve', '--help']);
  assert.equal(help.code, 0);
  assert.ok(help.stdout.includes('--rate-limit N[/BURST][,shed[/SHEDBURST]|,close] '), help.stdout);
});

test('--stats is bounded to 86400 seconds: a larger value exits 2 naming --stats instead of starting', { timeout: 60_000 }, async () => {
  const { child, done } = start(['serve', ECHO, '--port', '0', '--workers', '1', '--stats', '3000000']);
  // Should it start after all (it must not), stop it at once so the test fails on the exit status.
  const rl = createInterface({ input: child.stdout });
  rl.on('line', (line) => { if (/listening on/.test(line)) child.kill('SIGKILL'); });
  const d = await done;
  assert.equal(d.code, 2, d.stderr);
  assert.match(d.stderr, /ringwire serve: --stats must be between 1 and 86400 seconds \(0 = off\), got 3000000/);
  assert.doesNotMatch(d.stderr, /TimeoutOverflowWarning/);
  assert.equal(d.stdout, '');
  // The bounds themselves.
  const stats = (v: string) => (planServe([ECHO, '--stats', v], planIo()) as Exclude<ReturnType<typeof planServe>, 'help'>).statsSeconds;
  assert.equal(stats('86400'), 86400);
  assert.equal(stats('0'), 0);
  assert.throws(() => stats('86401'), (e: unknown) => e instanceof UsageError && /--stats must be between 1 and 86400/.test(e.message));
});

test('PORT from the environment is parsed only when --port is absent', () => {
  const port = (argv: string[], env: NodeJS.ProcessEnv) =>
    (planServe([ECHO, ...argv], planIo(env)) as Exclude<ReturnType<typeof planServe>, 'help'>).port;
  assert.equal(port(['--port', '0'], { PORT: 'abc' }), 0);
  assert.equal(port(['--port=8123'], { PORT: '70000' }), 8123);
  assert.equal(port([], { PORT: '8124' }), 8124);
  assert.equal(port([], {}), 9001);
  assert.throws(() => port([], { PORT: 'abc' }), (e: unknown) => e instanceof UsageError && /^PORT \(environment\) must be a non-negative integer, got "abc"$/.test(e.message));
  assert.throws(() => port([], { PORT: '70000' }), (e: unknown) => e instanceof UsageError && /^PORT \(environment\) must be between 0 and 65535, got 70000$/.test(e.message));
  assert.throws(() => port(['--port', '70000'], { PORT: '1' }), (e: unknown) => e instanceof UsageError && /^--port must be between 0 and 65535/.test(e.message));
});

test('--start-timeout-ms reaches startTimeoutMs: module files that never finish loading fail the start with RW_ERR_HANDLER_TIMEOUT, exit 1 on its own', { timeout: 60_000 }, async () => {
  const plan = planServe([ECHO, '--start-timeout-ms', '300'], planIo());
  assert.notEqual(plan, 'help');
  assert.equal((plan as Exclude<typeof plan, 'help'>).options.startTimeoutMs, 300);
  // The launcher sets process.exitCode (no process.exit): the process ends only if the failed start released everything.
  const r = await run(['serve', 'test/fixtures/modules/hang-load.module.ts', '--port', '0', '--workers', '1', '--start-timeout-ms', '300']);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /cannot start: RW_ERR_HANDLER_TIMEOUT: modules\.load did not settle within 300 ms/);
  const bad = await run(['serve', ECHO, '--start-timeout-ms', '3600001']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--start-timeout-ms must be an integer between 0 and 3600000/);
});
