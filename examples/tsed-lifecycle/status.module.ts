// A module of the Ts.ED-style example (runs in the workers): {"cmd":"status","ref":1}
// → {"cmd":"status","data":{"uptimeMs":N,"thread":T},"ref":1}
import { threadId } from 'node:worker_threads';
import { defineModule } from '../../src/module.js';

const started = Date.now();

export default defineModule({
  path: '/status',
  codec: 'json',
  events: {
    status: {
      handler(ctx) {
        ctx.reply({ uptimeMs: Date.now() - started, thread: threadId });
      },
    },
  },
});
