// The Ts.ED-style example as a program: `node dist/examples/tsed-lifecycle/main.js`.
import { PlatformRingwire } from './platform.js';
import { Server } from './server.js';

const platform = await PlatformRingwire.bootstrap(Server, { port: Number(process.env['PORT'] ?? 9004) });
try {
  const port = await platform.listen();
  console.log(`tsed-lifecycle on ws://127.0.0.1:${port}/status   send {"cmd":"status","ref":1}`);
  console.log('phases so far:', platform.instance.phases.join(' → '));
} catch (err) {
  console.error('start-up failed:', (err as Error).message, '| phases:', platform.instance.phases.join(' → '));
  process.exitCode = 1;
}
const stop = async (): Promise<void> => {
  await platform.stop();
  console.log('phases:', platform.instance.phases.join(' → '));
};
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());
