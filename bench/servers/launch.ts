/**
 * Start a benchmark server in its own process, wait for its first stdout line `{"port": N, ...}`,
 * and give back its pid (for CPU and RSS readings from /proc) and a stop().
 *
 * Unlike spawn.ts's startServer, the child's stdin is a pipe: the servers in this folder exit
 * when it closes (routes.ts exitWithParent), so a bench run that dies never leaves a server
 * listening. Every started server is also tracked, and stopAllServers() (run on SIGINT/exit by
 * bench/run.ts) kills whatever is still running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { medianOrNull } from '../report/stats.js';

export interface LaunchedServer {
  port: number;
  pid: number;
  /** The whole first line the server printed (ringwire adds its resolved settings). */
  info: Record<string, unknown>;
  /** SIGTERM, SIGKILL after 5 s; resolves once the process exited. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();

export function launchServer(script: string, args: readonly string[] = [],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<LaunchedServer> {
  const child = spawn(process.execPath, [script, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: opts.env ?? process.env,
  });
  live.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    live.delete(child);
    resolve();
  }));
  child.stdin!.on('error', () => { /* the child went away; exit handling covers it */ });
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
  };
  const timeoutMs = opts.timeoutMs ?? 15_000;
  return new Promise<LaunchedServer>((resolve, reject) => {
    let out = '';
    const fail = (msg: string): void => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`launchServer: ${script}: ${msg}`));
    };
    const timer = setTimeout(() => fail(`printed no {"port"} line within ${timeoutMs} ms`), timeoutMs);
    const onExit = (code: number | null, signal: string | null): void => fail(`exited (${code ?? signal}) before listening`);
    child.once('exit', onExit);
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', function onData(chunk: string) {
      out += chunk;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      child.stdout!.off('data', onData);
      child.stdout!.resume();
      child.off('exit', onExit);
      clearTimeout(timer);
      let info: Record<string, unknown>;
      try {
        info = JSON.parse(out.slice(0, nl)) as Record<string, unknown>;
      } catch {
        fail(`printed ${JSON.stringify(out.slice(0, nl))}, expected {"port": N}`);
        return;
      }
      if (typeof info['port'] !== 'number') {
        fail(`printed ${JSON.stringify(out.slice(0, nl))}, expected {"port": N}`);
        return;
      }
      resolve({ port: info['port'], pid: child.pid!, info, stop });
    });
  });
}

/** Kill every server this process started that is still running (synchronous: usable on exit). */
export function killAllServers(): void {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

/** Wait until every tracked server is gone. */
export async function stopAllServers(): Promise<void> {
  killAllServers();
  await Promise.all([...live].map((c) => new Promise<void>((r) => {
    if (c.exitCode !== null || c.signalCode !== null) r();
    else c.once('exit', () => r());
  })));
}

// ------------------------------------------------------------------ /proc readings (Linux)

const CLK_TCK = 100; // USER_HZ: 100 on every Linux ABI Node supports

/** utime + stime of a process (all its threads), in ms; null if it is gone or not Linux. */
export function processCpuMs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Fields after the ")" that ends the command name: state is field 3, utime 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    return ((utime + stime) * 1000) / CLK_TCK;
  } catch {
    return null;
  }
}

/** Resident set size in bytes (VmRSS); null if unavailable. */
export function processRssBytes(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return m === null ? null : Number(m[1]) * 1024;
  } catch {
    return null;
  }
}

/** Host CPU counters from /proc/stat: busy and total jiffies over all cores; null if unavailable. */
export function hostCpuTicks(): { busy: number; total: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

/**
 * Samples a process's CPU, and the whole host's, every `intervalMs` while a measurement runs.
 * Figures are medians of the per-interval values (% of one core: > 100 with several busy
 * threads; the host figure goes up to cores × 100), which is the steady-load figure as long as
 * the load phase covers most of the sampled time. The host figure shows whether anything else
 * (other processes on a shared machine) took CPU during the run.
 */
export class CpuSampler {
  private readonly samples: number[] = [];
  private readonly hostSamples: number[] = [];
  private last: number | null;
  private lastHost: { busy: number; total: number } | null;
  private lastT = performance.now();
  private readonly timer: NodeJS.Timeout;
  private readonly cores: number;

  constructor(readonly pid: number, intervalMs = 200) {
    this.last = processCpuMs(pid);
    this.lastHost = hostCpuTicks();
    this.cores = availableParallelism();
    this.timer = setInterval(() => this.tick(), intervalMs);
  }

  private tick(): void {
    const now = performance.now();
    const cpu = processCpuMs(this.pid);
    if (cpu !== null && this.last !== null) this.samples.push(((cpu - this.last) / (now - this.lastT)) * 100);
    const host = hostCpuTicks();
    if (host !== null && this.lastHost !== null && host.total > this.lastHost.total) {
      this.hostSamples.push(((host.busy - this.lastHost.busy) / (host.total - this.lastHost.total)) * 100 * this.cores);
    }
    this.last = cpu;
    this.lastHost = host;
    this.lastT = now;
  }

  /** Stop; returns the median sample (CPU % of one core), null if there were none. */
  stop(): number | null {
    clearInterval(this.timer);
    return medianOrNull(this.samples);
  }

  /** After stop(): the host's median busy CPU (% of one core, up to cores × 100), null if unknown. */
  hostBusy(): number | null {
    return medianOrNull(this.hostSamples);
  }
}
