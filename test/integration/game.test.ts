/**
 * examples/game as a test (issue #6): two scripted players; one drops mid-game, is skipped
 * while away, resumes with its token, gets the current state, and the game finishes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from '../../src/index.js';
import { JsonClient, example, type JsonMsg } from '../helpers.js';

interface State { game: string; players: { name: string; away: boolean; score: number }[]; turn: string | null; moves: number; over: boolean }

async function untilState(c: JsonClient, pred: (s: State) => boolean): Promise<State> {
  for (;;) {
    const s = (await c.next('state')).data as unknown as State;
    if (pred(s)) return s;
  }
}

async function move(c: JsonClient, n: number): Promise<void> {
  const r: JsonMsg = await c.call('MOVE', { n });
  assert.equal(r.cmd, 'MOVE', JSON.stringify(r.data));
}

test('examples/game: a player drops mid-game, is skipped while away, resumes with the current state; the game finishes', async (t) => {
  const server = createServer({ modules: [example('game/game.module')], workers: 2, uidAffinity: { query: 'game' } });
  const port = await server.listen(0, '127.0.0.1');
  t.after(() => server.close());
  const url = `ws://127.0.0.1:${port}/game/g1?game=g1`;

  const alice = await JsonClient.open(url);
  const bob = await JsonClient.open(url);
  await alice.next('session');
  const bobToken = (await bob.next('session')).data['token'] as string;
  assert.equal((await alice.call('JOIN', { name: 'alice' })).cmd, 'JOIN');
  assert.equal((await bob.call('JOIN', { name: 'bob' })).cmd, 'JOIN');

  await untilState(alice, (s) => s.players.length === 2 && s.turn === 'alice');
  await move(alice, 1);
  await untilState(bob, (s) => s.turn === 'bob' && s.moves === 1);
  await move(bob, 2);
  await untilState(alice, (s) => s.turn === 'alice' && s.moves === 2);

  // Bob's socket dies (no close frame). Alice sees him away and keeps the turn: he is skipped.
  bob.c.ws.terminate();
  await untilState(alice, (s) => s.players.find((p) => p.name === 'bob')?.away === true);
  await move(alice, 3);
  const skipped = await untilState(alice, (s) => s.moves === 3);
  assert.equal(skipped.turn, 'alice', 'bob is away, so the turn comes straight back to alice');
  await move(alice, 4);
  await untilState(alice, (s) => s.moves === 4 && s.turn === 'alice');

  // Bob resumes: everything he missed (recovered), then the current state from onResume.
  const bob2 = await JsonClient.open(`${url}&rw_resume=${bobToken}`);
  const sess = await bob2.next('session');
  assert.equal(sess.data['resumed'], true);
  assert.equal(sess.data['recovered'], true);
  assert.ok((sess.data['replayed'] as number) >= 3, `replayed ${String(sess.data['replayed'])}`);
  const current = await untilState(bob2, (s) => s.moves === 4 && s.players.every((p) => !p.away));
  assert.deepEqual(current.players.map((p) => [p.name, p.score]), [['alice', 8], ['bob', 2]]);
  await untilState(alice, (s) => s.players.every((p) => !p.away));

  // Play on to the end: alternate turns, both see the game over.
  const byName: Record<string, JsonClient> = { alice, bob: bob2 };
  let state = current;
  while (state.moves < 8) {
    const who = state.turn!;
    await move(byName[who]!, 1);
    if (state.moves + 1 === 8) break;
    state = await untilState(alice, (s) => s.moves === state.moves + 1);
    assert.notEqual(state.turn, who, 'with both present the turn alternates');
  }
  const overA = await alice.next('over');
  const overB = await bob2.next('over');
  assert.equal(overA.data['winner'], 'alice');
  assert.deepEqual(overB.data, overA.data);
  assert.equal(overA.data['moves'], 8);
});
