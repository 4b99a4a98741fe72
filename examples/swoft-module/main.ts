// The Swoft-style modules as a program: `node dist/examples/swoft-module/main.js`.
// (Or with the CLI: ringwire serve dist/examples/swoft-module/echo.module.js dist/examples/swoft-module/chat.module.js)
import { fileURLToPath } from 'node:url';
import { createServer } from '../../src/index.js';

const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));
const server = createServer({ modules: [here('./echo.module.js'), here('./chat.module.js')], workers: 2 });
const port = await server.listen(Number(process.env['PORT'] ?? 9003), '127.0.0.1');
console.log(`swoft-module on ws://127.0.0.1:${port}`);
console.log('  /echo              {"cmd":"echo.send","data":"hi","ref":1}');
console.log('  /chat?name=alice   {"cmd":"room.join","data":"lobby","ref":1}  {"cmd":"room.say","data":{"room":"lobby","text":"hi"}}');
process.once('SIGINT', () => void server.close());
process.once('SIGTERM', () => void server.close());
