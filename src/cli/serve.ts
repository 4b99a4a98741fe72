/**
 * `ringwire serve <module files...> [flags]`: start a server, print where it listens, close it
 * gracefully on SIGINT/SIGTERM. Resolves to the exit status (0 after a graceful close, 1 when
 * the server could not start); command-line mistakes throw UsageError (status 2).
 */
import { createServer, type Server } from '../core/server.js';
import type { ServerOptions } from '../core/options.js';
import type { ServerStats } from '../core/stats.js';
import { RingwireError } from '../shared/errors.js';
import { UsageError, choiceValue, intValue, parse, resolveCodeFile } from './args.js';
import { CODECS, MAX_STATS_SECONDS, SERVE_FLAGS, flagOfOption, serveParseOptions } from './flags.js';
import { serveHelp } from './help.js';

export interface CliIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  readonly cwd: string;
  readonly env: NodeJS.ProcessEnv;
  /** The ringwire package root (where dist/ lives). */
  readonly packageRoot: string;
}

interface ServePlan {
  readonly files: readonly string[];
  readonly options: ServerOptions;
  readonly port: number;
  readonly host: string;
  readonly statsSeconds: number;
}

/** Turn argv into createServer() options; every mistake is a UsageError naming the flag. */
export function planServe(argv: readonly string[], io: CliIo): ServePlan | 'help' {
  const { values, positionals, rest } = parse(argv, serveParseOptions());
  if (values['help'] === true) return 'help';
  // After a bare `--` everything is a module file, even a name starting with '-'.
  const names = [...positionals, ...rest];
  if (names.length === 0) throw new UsageError('give at least one module file');
  const files = names.map((p) => resolveCodeFile('module file', p, io.cwd, io.packageRoot));
  const options: Record<string, unknown> = { modules: files };
  // PORT is only a default: with --port given it is not parsed at all (a bad PORT is no error then).
  const envPort = io.env['PORT'];
  const portFrom = typeof values['port'] === 'string' ? '--port' : 'PORT (environment)';
  let port = portFrom !== '--port' && envPort !== undefined && envPort !== '' ? intValue(portFrom, envPort) : 9001;
  let host = io.env['HOST'] || '127.0.0.1';
  let statsSeconds = 0;
  for (const f of SERVE_FLAGS) {
    const raw = values[f.name];
    if (typeof raw !== 'string') continue;
    const flag = `--${f.name}`;
    let v: unknown;
    switch (f.kind) {
      case 'int': v = intValue(flag, raw); break;
      case 'bytes': v = intValue(flag, raw, true); break;
      case 'codec': v = choiceValue(flag, raw, CODECS); break;
      case 'file': v = resolveCodeFile(flag, raw, io.cwd, io.packageRoot); break;
      case 'string':
        if (raw.length === 0) throw new UsageError(`${flag} must not be empty`);
        v = raw;
        break;
      case 'list':
        v = raw.split(',').map((x) => x.trim()).filter((x) => x.length > 0);
        if ((v as string[]).length === 0) throw new UsageError(`${flag} must list at least one value`);
        break;
      case 'rate': {
        // N[/BURST][,shed[/SHEDBURST]|,close]
        const [spec, modeSpec, extra] = raw.split(',');
        const [mode, shedBurst, more] = (modeSpec ?? '').split('/');
        if (extra !== undefined || more !== undefined || (modeSpec !== undefined && mode !== 'shed' && mode !== 'close')
          || (shedBurst !== undefined && mode !== 'shed')) {
          throw new UsageError(`${flag} must be ${f.arg}, got ${JSON.stringify(raw)}`);
        }
        const [rate, burst] = (spec ?? '').split('/');
        v = {
          messagesPerSecond: intValue(flag, rate ?? ''),
          ...(burst !== undefined ? { burst: intValue(flag, burst) } : {}),
          ...(modeSpec !== undefined ? { onExceed: mode } : {}),
          ...(shedBurst !== undefined ? { shedBurst: intValue(flag, shedBurst) } : {}),
        };
        break;
      }
    }
    if (f.option !== undefined) options[f.option] = v;
    else if (f.name === 'port') port = v as number;
    else if (f.name === 'host') host = v as string;
    else if (f.name === 'stats') {
      // setInterval takes at most 2^31-1 ms; past it Node warns and fires every millisecond.
      if ((v as number) > MAX_STATS_SECONDS) throw new UsageError(`${flag} must be between 1 and ${MAX_STATS_SECONDS} seconds (0 = off), got ${raw}`);
      statsSeconds = v as number;
    }
  }
  if (port > 65535) throw new UsageError(`${portFrom} must be between 0 and 65535, got ${port}`);
  return { files, options: options as unknown as ServerOptions, port, host, statsSeconds };
}

/**
 * createServer(), with its `options.x must be ...` errors reported as the matching flag. A
 * nested option keeps its sub-field: `options.rateLimit.burst must be ...` becomes
 * `--rate-limit burst must be ...`.
 */
function create(plan: ServePlan): Server {
  try {
    return createServer(plan.options);
  } catch (err) {
    if (err instanceof TypeError || err instanceof RangeError) {
      const m = /^options\.(\w+)((?:\.\w+)*) (must .*)$/s.exec(err.message);
      const flag = m === null ? undefined : flagOfOption(m[1]!);
      if (flag !== undefined) throw new UsageError(`${flag}${m![2]!.replace(/\./g, ' ')} ${m![3]!}`);
    }
    throw err;
  }
}

export async function serve(argv: readonly string[], io: CliIo): Promise<number> {
  const plan = planServe(argv, io);
  if (plan === 'help') {
    io.out(serveHelp());
    return 0;
  }
  const server = create(plan);
  let port: number;
  try {
    port = await server.listen(plan.port, plan.host);
  } catch (err) {
    io.err(`ringwire: cannot start: ${describe(err)}`);
    await server.close().catch(() => undefined);
    return 1;
  }
  const o = server.options;
  io.out(`ringwire: listening on ws://${plan.host}:${port} (workers ${o.workers}, ring-bytes ${o.ringBytes}, overflow-bytes ${o.overflowBytes}, codec ${o.codec})`);
  server.moduleDescriptors.forEach((m, i) => {
    const events = m.events.length === 0 ? '' : `; events ${m.events.join(', ')}`;
    io.out(`ringwire: module ${m.path} (${m.codec}${events}) from ${plan.files[i] ?? '?'}`);
  });
  io.out('ringwire: SIGINT (Ctrl-C) or SIGTERM closes gracefully');

  const statsTimer = plan.statsSeconds > 0 ? startStats(server, plan.statsSeconds, io) : null;
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  if (statsTimer !== null) clearInterval(statsTimer);
  io.out(`ringwire: ${signal} received, closing gracefully (again to exit at once)`);
  const force = (s: NodeJS.Signals): void => {
    io.err(`ringwire: ${s} received again, exiting without waiting`);
    process.exit(1);
  };
  process.once('SIGINT', force);
  process.once('SIGTERM', force);
  await server.close();
  process.removeListener('SIGINT', force);
  process.removeListener('SIGTERM', force);
  const s = server.stats();
  io.out(`ringwire: closed (messages in ${s.messagesIn}, out ${s.messagesOut}; drops ${dropsText(s)})`);
  return 0;
}

function startStats(server: Server, seconds: number, io: CliIo): NodeJS.Timeout {
  let last = server.stats();
  let lastAt = performance.now();
  const t = setInterval(() => {
    const s = server.stats();
    const now = performance.now();
    const dt = (now - lastAt) / 1000;
    const ring = Math.max(0, ...s.workers.map((w) => (w.ringCapacity === 0 ? 0 : w.inboundUsed / w.ringCapacity)));
    const overflow = s.workers.reduce((n, w) => n + w.overflowUsed, 0);
    io.out(`ringwire: stats conns ${s.connections}, in ${rate(s.messagesIn - last.messagesIn, dt)}/s, ` +
      `out ${rate(s.messagesOut - last.messagesOut, dt)}/s, inbound ring max ${(ring * 100).toFixed(0)}%, ` +
      `overflow ${overflow} B, worker restarts ${s.workerRestarts}, drops ${dropsText(s)}`);
    last = s;
    lastAt = now;
  }, seconds * 1000);
  t.unref();
  return t;
}

function rate(n: number, dt: number): string {
  return dt > 0 ? Math.round(n / dt).toString() : '0';
}

function dropsText(s: ServerStats): string {
  const parts = Object.entries(s.drops).filter(([, v]) => v > 0).map(([k, v]) => `${k}=${v}`);
  return parts.length === 0 ? 'none' : parts.join(' ');
}

function describe(err: unknown): string {
  if (err instanceof RingwireError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}
