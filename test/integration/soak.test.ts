import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from '../../src/core/server.js';
import { CloseCode } from '../../src/shared/constants.js';
import { Client, fixture } from '../helpers.js';

// 60 s in CI; RW_SOAK_MS=300000 for the 5-minute soak.
const DURATION = Number(process.env['RW_SOAK_MS'] ?? 60_000);
const KILL_EVERY = 10_000;
// The churn the test must see whatever the machine's speed: it runs on past DURATION until both
// are done (an amount of work, not a rate).
const MIN_SESSIONS = 200;
const MIN_KILLS = 2;

test(`soak: ${DURATION / 1000} s of connection churn, messages and worker kills`, { timeout: DURATION + 120_000 }, async (t) => {
  const server = createServer({ modules: [fixture('tools.module')], workers: 2 });
  const port = await server.listen(0, '127.0.0.1');
  const url = `ws://127.0.0.1:${port}/t`;
  const rssStart = process.memoryUsage().rss;
  let sessions = 0;
  let replies = 0;
  let killedSessions = 0;
  let kills = 0;
  const lost: string[] = [];
  try {
    const end = Date.now() + DURATION;
    let nextKill = Date.now() + KILL_EVERY;
    // One session: connect, 50 numbered echoes awaited in order, close. A session whose
    // worker was killed under it sees 1011 and must have got every reply before that.
    const session = async (id: number): Promise<void> => {
      const c = await Client.open(url);
      let gotClose: number | null = null;
      void c.closed.then((x) => { gotClose = x.code; });
      for (let i = 1; i <= 50; i++) {
        c.emit('ECHO', `${id}:${i}`, i);
        const r = await Promise.race([c.next(), c.closed.then(() => null)]);
        if (r === null) {
          if (gotClose === CloseCode.INTERNAL) { killedSessions++; return; }
          lost.push(`session ${id}: closed with ${String(gotClose)} before reply ${i}`);
          return;
        }
        if (r.ref !== i || r.text !== `${id}:${i}`) {
          lost.push(`session ${id}: reply ${i} was ${r.ref} ${r.text}`);
          return;
        }
        replies++;
      }
      await c.close();
      sessions++;
    };
    let id = 0;
    while (Date.now() < end || id < MIN_SESSIONS || kills < MIN_KILLS) {
      if (Date.now() >= nextKill || (Date.now() >= end && kills < MIN_KILLS)) {
        nextKill += KILL_EVERY;
        const victim = await Client.open(url);
        victim.emit('CRASH');
        assert.equal((await victim.closed).code, CloseCode.INTERNAL);
        kills++;
      }
      await Promise.all(Array.from({ length: 20 }, () => session(++id)));
    }
    const st = server.stats();
    const rssEnd = process.memoryUsage().rss;
    t.diagnostic(`sessions ${sessions} (+${killedSessions} cut by kills), replies ${replies}, worker kills ${kills}, ` +
      `restarts ${st.workerRestarts}; RSS ${(rssStart / 1048576).toFixed(1)} -> ${(rssEnd / 1048576).toFixed(1)} MiB; live fds ${st.liveFds}`);
    assert.deepEqual(lost, [], 'no accepted reply lost on a connection that was not cut by a worker kill');
    assert.equal(st.workerRestarts, kills);
    assert.equal(st.liveFds, 0, 'the allocator is back to zero live fds');
    assert.equal(st.connections, 0);
    assert.ok(sessions + killedSessions >= MIN_SESSIONS && kills >= MIN_KILLS, `churn: ${sessions} sessions, ${kills} kills`);
    assert.ok(sessions > 0, 'sessions completed between the kills');
    assert.ok(rssEnd - rssStart < 128 * 1024 * 1024, 'RSS stays bounded');
  } finally {
    await server.close();
  }
});
