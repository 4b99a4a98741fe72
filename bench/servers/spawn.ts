/**
 * Start a benchmark server script in its own process and wait for its `{"port": N}` line.
 * Servers run in their own process so the load generator and the server never share a thread.
 *
 * As with launch.ts, the child's stdin is a pipe: every server started here exits when it closes
 * (routes.ts exitWithParent), so a bench that is killed, even with SIGKILL, never leaves a server
 * listening. Started servers are tracked too: killStartedServers() (on SIGINT/SIGTERM/exit, see
 * killServersOnExit) kills whatever still runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const UWS_ECHO_SCRIPT = fileURLToPath(new URL('./uws-echo.js', import.meta.url));
export const WS_ECHO_SCRIPT = fileURLToPath(new URL('./ws-echo.js', import.meta.url));
/** Raw uWS + ringwire's rings + a worker that copies back: the thread hand-off alone (handoff-echo.ts). */
export const HANDOFF_ECHO_SCRIPT = fileURLToPath(new URL('./handoff-echo.js', import.meta.url));

export interface StartedServer {
  port: number;
  pid: number;
  /** SIGTERM, then SIGKILL after 5 s; resolves once the process has exited. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();

export function startServer(scriptPath: string, args: readonly string[] = [],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<StartedServer> {
  const child = spawn(process.execPath, [scriptPath, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: opts.env ?? process.env,
  });
  live.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    live.delete(child);
    resolve();
  }));
  child.stdin.on('error', () => { /* the child went away; exit handling covers it */ });
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
  };
  return new Promise<StartedServer>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`startServer: ${scriptPath} printed no {"port"} line within ${opts.timeoutMs ?? 10_000} ms`));
    }, opts.timeoutMs ?? 10_000);
    const onExit = (code: number | null, signal: string | null): void => {
      clearTimeout(timer);
      reject(new Error(`startServer: ${scriptPath} exited (${code ?? signal}) before listening`));
    };
    child.once('exit', onExit);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', function onData(chunk: string) {
      out += chunk;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      child.stdout.off('data', onData);
      child.stdout.resume(); // keep draining anything else it prints
      child.off('exit', onExit);
      clearTimeout(timer);
      try {
        const msg = JSON.parse(out.slice(0, nl)) as { port?: unknown };
        if (typeof msg.port !== 'number') throw new Error('no port');
        resolve({ port: msg.port, pid: child.pid!, stop });
      } catch {
        child.kill('SIGKILL');
        reject(new Error(`startServer: ${scriptPath} printed ${JSON.stringify(out.slice(0, nl))}, expected {"port": N}`));
      }
    });
  });
}

/** Kill every server startServer() started that is still running (synchronous: usable on exit). */
export function killStartedServers(): void {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

/**
 * For a bench's entry point: kill the started servers when it exits, and on SIGINT/SIGTERM
 * (then exit 130). The stdin lifeline covers SIGKILL, which no handler sees.
 */
export function killServersOnExit(): void {
  process.on('exit', killStartedServers);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      killStartedServers();
      process.exit(130);
    });
  }
}
