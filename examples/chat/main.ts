// `npm start`: the chat and echo examples on one ringwire server.
import { fileURLToPath } from 'node:url';
import { createServer } from '../../src/index.js';

const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));
const port = Number(process.env['PORT'] ?? 9001);
const host = process.env['HOST'] ?? '127.0.0.1';

const server = createServer({
  modules: [here('./chat.module.js'), here('../echo/echo.module.js')],
  workers: Number(process.env['WORKERS'] ?? 2),
  lifecycle: {
    onReady({ port: p }) {
      console.log(`ringwire chat example listening on ${host}:${p}`);
      console.log(`  chat (JSON codec): ws://${host}:${p}/chat/lobby?name=alice   send {"cmd":"SAY","data":"hi"}`);
      console.log(`  echo (binary FlatBuffers codec): ws://${host}:${p}/echo`);
      console.log(`  try it: npx wscat -c "ws://${host}:${p}/chat/lobby?name=alice"  (Ctrl-C stops the server)`);
    },
  },
});

await server.listen(port, host);
const stop = async (): Promise<void> => {
  console.log('shutting down…');
  await server.close();
  console.log('stopped', JSON.stringify(server.stats().drops));
};
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());
