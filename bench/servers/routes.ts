/**
 * The routes every benchmark server serves, so that one scenario means the same work on every
 * peer (raw uWS, ws, socket.io, ringwire):
 *
 *   /echo    echo each message back (also the "light" module of the latency-isolation scenario)
 *   /heavy   run work(BENCH_WORK_ITERS) (~50 µs), then echo
 *   /fanout  every connection is subscribed to one topic; each message is published to all of
 *            them, the sender included (so a count-mode publisher gets its credit back)
 *
 * ringwire and socket.io route by event name inside the frame as well:
 *   ringwire binary WireFrame events: ECHO on /echo and /heavy, PUB on /fanout
 *   socket.io: namespace "/" events "echo" and "heavy"; namespace "/fanout" event "pub"
 */
export const Route = {
  echo: '/echo',
  heavy: '/heavy',
  fanout: '/fanout',
} as const;
export type RouteName = keyof typeof Route;

export const RINGWIRE_EVENT: Readonly<Record<RouteName, string>> = { echo: 'ECHO', heavy: 'ECHO', fanout: 'PUB' };
export const SOCKETIO_EVENT: Readonly<Record<RouteName, string>> = { echo: 'echo', heavy: 'heavy', fanout: 'pub' };
export const SOCKETIO_NAMESPACE: Readonly<Record<RouteName, string>> = { echo: '/', heavy: '/', fanout: '/fanout' };
/** The single pub/sub topic of /fanout. */
export const FANOUT_TOPIC = 'fan';

/**
 * Lifeline: a benchmark server exits when its parent goes away (its stdin pipe closes), so a
 * crashed or killed bench run never leaves servers behind.
 */
export function exitWithParent(): void {
  if (process.stdin.isTTY) return;
  process.stdin.on('error', () => process.exit(0));
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.resume();
}
