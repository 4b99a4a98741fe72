// Benchmark module /fanout: every connection subscribes to one topic; each PUB frame is
// published to all of them, the sender included (the count-mode publisher's credit comes back).
import { defineModule } from '../../src/workers/define.js';
import { FANOUT_TOPIC } from '../servers/routes.js';

export default defineModule({
  path: '/fanout',
  onConnect(ctx) {
    ctx.subscribe(FANOUT_TOPIC);
  },
  events: {
    PUB: {
      handler(ctx) {
        ctx.publish(FANOUT_TOPIC, ctx.payload);
      },
    },
  },
});
