/**
 * A turn-based game room on ringwire's sessions (issue #6): players bind a uid, join the
 * game's room (presence), and take turns. A player whose socket drops is *away*: skipped
 * while away, and when they come back with their resume token they get every message they
 * missed and then the current state. Only when the grace period ends do they leave the game.
 *
 * Run it with `node dist/examples/game/main.js`; the protocol (JSON codec):
 *   → {"cmd":"JOIN","data":{"name":"alice"}}     ← {"cmd":"state","data":{...}} to the room
 *   → {"cmd":"MOVE","data":{"n":3}}              ← "state" to everyone, "over" when done
 *
 * State lives in the worker, so every player of one game must be served by the same worker:
 * the server runs with `uidAffinity: { query: 'game' }` and clients connect to
 * `/game/<id>?game=<id>` (any key works for affinity; here it is the game id).
 */
import { defineModule, type Context } from '../../src/workers/define.js';

/** Moves after which the game is over. */
const MOVES_TO_WIN = 8;

interface Game {
  id: string;
  players: { name: string; away: boolean; score: number }[];
  turn: string | null;
  moves: { by: string; n: number }[];
  over: boolean;
}

const games = new Map<string, Game>();

function gameOf(ctx: Context): Game {
  const id = ctx.params['id']!;
  let g = games.get(id);
  if (g === undefined) {
    g = { id, players: [], turn: null, moves: [], over: false };
    games.set(id, g);
  }
  return g;
}

function room(g: Game): string {
  return `game:${g.id}`;
}

/** The next present player after `from` (the current player again if everyone else is away). */
function nextTurn(g: Game, from: string | null): string | null {
  const present = g.players.filter((p) => !p.away);
  if (present.length === 0) return null;
  const i = g.players.findIndex((p) => p.name === from);
  for (let k = 1; k <= g.players.length; k++) {
    const p = g.players[(i + k) % g.players.length]!;
    if (!p.away) return p.name;
  }
  return null;
}

function view(g: Game): unknown {
  return { game: g.id, players: g.players, turn: g.turn, moves: g.moves.length, over: g.over };
}

function announce(ctx: Context, g: Game): void {
  ctx.publish(room(g), view(g), { event: 'state' });
}

export default defineModule({
  path: '/game/:id',
  codec: 'json',
  resume: { graceMs: 10_000, maxMessages: 500 },
  events: {
    JOIN: {
      async handler(ctx) {
        const name = String((ctx.data as { name?: unknown })?.name ?? '');
        if (!/^\w{1,32}$/.test(name)) throw new Error('bad name');
        const g = gameOf(ctx);
        await ctx.bind(name, { onDuplicate: 'reject' });
        await ctx.join(room(g), { name });
        if (!g.players.some((p) => p.name === name)) g.players.push({ name, away: false, score: 0 });
        if (g.turn === null && g.players.length >= 2) g.turn = g.players[0]!.name;
        ctx.reply({ joined: g.id });
        announce(ctx, g);
      },
    },
    MOVE: {
      handler(ctx) {
        const g = gameOf(ctx);
        const me = ctx.uid;
        if (g.over) throw new Error('game over');
        if (me === null || g.turn !== me) throw new Error('not your turn');
        const n = Number((ctx.data as { n?: unknown })?.n ?? 1);
        g.moves.push({ by: me, n });
        g.players.find((p) => p.name === me)!.score += n;
        if (g.moves.length >= MOVES_TO_WIN) {
          g.over = true;
          g.turn = null;
          const winner = [...g.players].sort((a, b) => b.score - a.score)[0]!.name;
          ctx.reply({ ok: true });
          ctx.publish(room(g), { ...view(g) as object, winner }, { event: 'over' });
          return;
        }
        g.turn = nextTurn(g, me);
        ctx.reply({ ok: true });
        announce(ctx, g);
      },
    },
  },
  onAway(ctx) {
    const g = gameOf(ctx);
    const p = g.players.find((x) => x.name === ctx.uid);
    if (p === undefined) return;
    p.away = true;
    if (g.turn === p.name) g.turn = nextTurn(g, p.name);
    announce(ctx, g);
  },
  onResume(ctx) {
    const g = gameOf(ctx);
    const p = g.players.find((x) => x.name === ctx.uid);
    if (p === undefined) return;
    p.away = false;
    if (g.turn === null && !g.over) g.turn = p.name;
    // The returning player gets the current state directly, after the replayed backlog.
    ctx.send(view(g), { event: 'state' });
    announce(ctx, g);
  },
  onDisconnect(ctx) {
    const g = gameOf(ctx);
    const i = g.players.findIndex((x) => x.name === ctx.uid);
    if (i < 0) return;
    g.players.splice(i, 1);
    if (g.turn === ctx.uid) g.turn = nextTurn(g, null);
    if (g.players.length === 0) games.delete(g.id);
    else announce(ctx, g);
  },
});
