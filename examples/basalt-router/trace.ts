// Hook tracing for the Basalt-style router (runs in the worker threads).
//
// With BASALT_TRACE=1 in the environment, every hook the router runs posts
// "<path> <LABEL>" (e.g. "/chat GLOBAL_onConnectHook") on the BroadcastChannel
// TRACE_CHANNEL, which any thread of the process can listen to (main.ts prints it, the
// embedding test checks the order). Worker threads copy process.env when they start, so the
// variable must be set before the server listens; createBasaltApp({ trace: true }) does that.
// Off, it costs one boolean test per hook.
import { BroadcastChannel } from 'node:worker_threads';

export const TRACE_CHANNEL = 'basalt-router:trace';

export const tracing = process.env['BASALT_TRACE'] === '1';

let channel: BroadcastChannel | null = null;

export function trace(path: string, label: string): void {
  if (!tracing) return;
  if (channel === null) {
    channel = new BroadcastChannel(TRACE_CHANNEL);
    // Never keep a worker alive just for tracing.
    (channel as unknown as { unref?: () => void }).unref?.();
  }
  channel.postMessage(`${path} ${label}`);
}
