// Benchmark module /echo: every ECHO frame is answered with its own payload (binary codec).
// Also the "light" module of the latency-isolation scenario.
import { defineModule } from '../../src/workers/define.js';

export default defineModule({
  path: '/echo',
  events: {
    ECHO: {
      handler(ctx) {
        // ctx.payload is a view into the inbound ring; reply() copies it into the outbound ring.
        ctx.reply(ctx.payload);
      },
    },
  },
});
