// The Basalt-style router as a program: `node dist/examples/basalt-router/main.js [--trace]`.
import { fileURLToPath } from 'node:url';
import { BroadcastChannel } from 'node:worker_threads';
import { createBasaltApp } from './basalt/app.js';
import { TRACE_CHANNEL } from './trace.js';

const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));
const traceOn = process.argv.includes('--trace');

const app = createBasaltApp({
  events: { chat: here('./events/chat.event.js'), game: here('./events/game.event.js') },
  hooks: here('./global.hooks.js'),
  workers: 1,
  trace: traceOn,
});
let tap: BroadcastChannel | null = null;
if (traceOn) {
  tap = new BroadcastChannel(TRACE_CHANNEL);
  tap.onmessage = (ev: unknown) => console.log('trace', String((ev as { data: unknown }).data));
}
const port = await app.listen(Number(process.env['PORT'] ?? 9002), '127.0.0.1');
console.log(`basalt-router on ws://127.0.0.1:${port}: /chat?name=you (send text), /game (send "move 1 2")`);
const stop = async (): Promise<void> => {
  await app.stop();
  tap?.close();
};
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());
