import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareMembers, memberCursor, membersAfter } from '../../src/shared/paging.js';
import type { PresenceMember } from '../../src/workers/define.js';
import { prng } from '../support/fuzz.js';

function member(node: string, handle: number): PresenceMember {
  return { node, handle, uid: `u${handle}`, meta: null } as unknown as PresenceMember;
}

/** Walks every page of `members` by `limit`, as memberPage does (cursor = last entry kept). */
function walk(members: readonly PresenceMember[], limit: number): { order: string[]; pages: number } {
  const order: string[] = [];
  let after: string | null = null;
  let pages = 0;
  for (;;) {
    const { rest, more } = membersAfter(members, after, limit);
    pages++;
    assert.ok(rest.length <= limit, `page of ${rest.length} > limit ${limit}`);
    for (const m of rest) order.push(memberCursor(m));
    if (!more || rest.length === 0) break;
    after = memberCursor(rest[rest.length - 1]!);
    assert.ok(pages < 100_000, 'the walk ends');
  }
  return { order, pages };
}

test('membersAfter: walking pages of every limit lists each distinct member once, in node-then-handle order, repeats (a member seen locally and in Redis) included', () => {
  const next = prng(7); // the same members every run
  for (const clustered of [false, true]) {
    for (let round = 0; round < 20; round++) {
      const n = Math.floor(next() * 300);
      const members: PresenceMember[] = [];
      for (let i = 0; i < n; i++) {
        const node = clustered ? `node-${Math.floor(next() * 3)}` : '';
        members.push(member(node, Math.floor(next() * 1000)));
      }
      // Repeats: a clustered list carries some members twice (this node's and Redis's copy); a
      // local one is keyed by handle, so it has none.
      if (clustered) for (let i = 0; i < n / 4; i++) members.push(members[Math.floor(next() * members.length)]!);
      else {
        const seen = new Set<number>();
        for (let i = members.length - 1; i >= 0; i--) if (seen.has(members[i]!.handle)) members.splice(i, 1); else seen.add(members[i]!.handle);
      }
      const expected = [...new Set(members.slice().sort(compareMembers).map(memberCursor))];
      for (const limit of [1, 2, 3, 7, 50, 1000]) {
        const { order } = walk(members, limit);
        assert.deepEqual(order, expected, `n=${n} limit=${limit} clustered=${clustered}`);
      }
      assert.equal(membersAfter(members, null, 10).total, expected.length);
    }
  }
});

test('membersAfter: a page with the same member repeated more than the limit still moves on (no page that repeats the cursor, no early end)', () => {
  // Five copies of one member then two others: with limit 2 the heap fills with copies.
  const a = member('n', 1);
  const members = [a, a, a, a, a, member('n', 2), member('n', 3)];
  const first = membersAfter(members, null, 2);
  assert.deepEqual(first.rest.map(memberCursor), ['n:1']);
  assert.equal(first.more, true, 'members follow the repeated one');
  assert.deepEqual(walk(members, 2).order, ['n:1', 'n:2', 'n:3']);
  const last = membersAfter(members, 'n:2', 5);
  assert.deepEqual(last.rest.map(memberCursor), ['n:3']);
  assert.equal(last.more, false);
});
