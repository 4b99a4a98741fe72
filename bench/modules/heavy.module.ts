// Benchmark module /heavy: the CPU-heavy handler. Each ECHO frame costs work(BENCH_WORK_ITERS)
// (~50 µs, the same fixed work every peer server does), then is answered with its payload.
import { defineModule } from '../../src/workers/define.js';
import { work, workIterations } from '../servers/work.js';

const ITERS = workIterations();

export default defineModule({
  path: '/heavy',
  events: {
    ECHO: {
      handler(ctx) {
        work(ITERS);
        ctx.reply(ctx.payload);
      },
    },
  },
});
