// The echo module: every ECHO message is answered with its own payload.
// Module files run inside the worker threads; they import only 'ringwire/module' (the examples, inside the
// repository, import its source, '../../src/workers/define.js'; in your project write 'ringwire/module').
import { defineModule } from '../../src/workers/define.js';

export default defineModule({
  path: '/echo',
  events: {
    ECHO: {
      handler(ctx) {
        // ctx.payload is a zero-copy view into the ring; reply() copies it into the outbound ring.
        ctx.reply(ctx.payload);
      },
    },
  },
});
