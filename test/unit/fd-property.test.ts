// Model-based property tests for FdAllocator: random command sequences on a tiny range,
// so wrap-around, skipping of live fds, reuse and exhaustion happen all the time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FdAllocator } from '../../src/fd/index.js';

type Cmd =
  | { readonly t: 'alloc' }
  | { readonly t: 'releaseLive'; readonly pick: number }
  | { readonly t: 'releaseDead'; readonly pick: number };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 5, arbitrary: fc.constant({ t: 'alloc' } as const) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('releaseLive' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('releaseDead' as const), pick: fc.integer({ min: -3, max: 200 }) }) },
);

const setupArb = fc
  .integer({ min: 1, max: 96 })
  .chain((maxFd) => fc.record({
    maxFd: fc.constant(maxFd),
    maxLive: fc.integer({ min: 1, max: maxFd }),
    cmds: fc.array(cmdArb, { minLength: 1, maxLength: 300, size: 'max' }),
  }));

/** The obvious implementation: a Set, a cursor, and a Map of generations. */
class Model {
  readonly live = new Set<number>();
  readonly gens = new Map<number, number>();
  /** Last allocated fd (0 before the first allocation). */
  cursor = 0;
  constructor(readonly maxFd: number, readonly maxLive: number) {}

  alloc(): number {
    if (this.live.size === this.maxLive) return 0;
    let fd = this.cursor;
    do fd = fd === this.maxFd ? 1 : fd + 1; while (this.live.has(fd));
    this.cursor = fd;
    this.live.add(fd);
    const g = ((this.gens.get(fd) ?? 0) % 65_535) + 1;
    this.gens.set(fd, g);
    return fd;
  }
}

interface Issued { readonly handle: number; readonly fd: number; released: boolean }

interface Seen { wraps: number; exhausted: number; reused: number }

function run(maxFd: number, maxLive: number, cmds: readonly Cmd[], seen: Seen): void {
  const a = new FdAllocator({ maxFd, maxLive });
  const m = new Model(maxFd, maxLive);
  const issued: Issued[] = [];
  const currentIssue = new Map<number, Issued>(); // fd -> its live allocation
  // "Unrolled" cursor position of each allocation: lap * maxFd + fd. It must strictly
  // increase, and an fd reissued must be at least one whole lap after its last issue.
  let lap = 0;
  let prevFd = 0;
  let prevPos = 0;
  const lastPos = new Map<number, number>();

  for (const c of cmds) {
    if (c.t === 'alloc') {
      const wasFull = m.live.size === maxLive;
      const fd = a.alloc();
      const want = m.alloc();
      assert.equal(fd, want, 'alloc = first non-live fd after the cursor, cyclically (0 when full)');
      if (wasFull) {
        assert.equal(fd, 0);
        seen.exhausted++;
      } else {
        assert.ok(fd >= 1 && fd <= maxFd);
        if (fd <= prevFd) { lap++; seen.wraps++; } // wrapped to 1 (and skipped live fds) to get here
        const pos = lap * maxFd + fd;
        assert.ok(pos > prevPos, 'cursor moves forward');
        const before = lastPos.get(fd);
        if (before !== undefined) { assert.ok(pos - before >= maxFd, 'no reuse before the cursor came round'); seen.reused++; }
        lastPos.set(fd, pos);
        prevFd = fd;
        prevPos = pos;
        const h = a.handle(fd);
        assert.notEqual(h, 0);
        assert.ok(Number.isSafeInteger(h));
        assert.equal(a.fdOf(h), fd);
        assert.equal(a.generationOf(h), m.gens.get(fd));
        assert.ok(issued.every((i) => i.handle !== h), 'a new allocation gets a handle never issued before');
        const rec: Issued = { handle: h, fd, released: false };
        issued.push(rec);
        currentIssue.set(fd, rec);
      }
    } else if (c.t === 'releaseLive') {
      if (m.live.size === 0) continue;
      const fds = [...m.live];
      const fd = fds[c.pick % fds.length]!;
      const wasFull = m.live.size === maxLive;
      assert.equal(a.release(fd), true);
      m.live.delete(fd);
      currentIssue.get(fd)!.released = true;
      currentIssue.delete(fd);
      if (wasFull) {
        // Exhaustion recovers after one release.
        const again = a.alloc();
        assert.equal(again, m.alloc());
        assert.notEqual(again, 0);
        if (again <= prevFd) { lap++; seen.wraps++; }
        const pos = lap * maxFd + again;
        const before = lastPos.get(again);
        if (before !== undefined) assert.ok(pos - before >= maxFd, 'no reuse before the cursor came round');
        lastPos.set(again, pos);
        prevFd = again;
        prevPos = pos;
        const rec: Issued = { handle: a.handle(again), fd: again, released: false };
        issued.push(rec);
        currentIssue.set(again, rec);
      }
    } else {
      const fd = c.pick;
      if (m.live.has(fd)) continue;
      assert.equal(a.release(fd), false, `release of dead fd ${fd}`);
    }

    // Invariants after every step.
    assert.equal(a.live, m.live.size);
    assert.ok(a.live <= maxLive);
    for (let fd = 0; fd <= maxFd + 1; fd++) {
      assert.equal(a.isLive(fd), m.live.has(fd), `isLive(${fd})`);
      assert.equal(a.generation(fd), m.gens.get(fd) ?? 0, `generation(${fd})`);
    }
    // Uniqueness: live handles name distinct fds and are all distinct.
    const liveHandles = new Set<number>();
    for (const fd of m.live) liveHandles.add(a.handle(fd));
    assert.equal(liveHandles.size, m.live.size);
    // Every handle ever issued is current exactly while its allocation is live.
    for (const i of issued) {
      assert.equal(a.isCurrent(i.handle), !i.released, `isCurrent(${i.handle}) fd ${i.fd}`);
    }
  }
}

test('FdAllocator matches the model on random command sequences (small ranges)', () => {
  const seen: Seen = { wraps: 0, exhausted: 0, reused: 0 };
  fc.assert(fc.property(setupArb, ({ maxFd, maxLive, cmds }) => run(maxFd, maxLive, cmds, seen)), { numRuns: 400 });
  // Not vacuous: the generated sequences really wrapped, reused fds and hit the cap.
  assert.ok(seen.wraps > 100 && seen.reused > 100 && seen.exhausted > 100, JSON.stringify(seen));
});

test('FdAllocator matches the model when nearly full (maxLive close to maxFd)', () => {
  const nearFull = fc.integer({ min: 2, max: 70 }).chain((maxFd) => fc.record({
    maxFd: fc.constant(maxFd),
    maxLive: fc.integer({ min: Math.max(1, maxFd - 2), max: maxFd }),
    cmds: fc.array(cmdArb, { minLength: 50, maxLength: 300, size: 'max' }),
  }));
  const seen: Seen = { wraps: 0, exhausted: 0, reused: 0 };
  fc.assert(fc.property(nearFull, ({ maxFd, maxLive, cmds }) => run(maxFd, maxLive, cmds, seen)), { numRuns: 200 });
  assert.ok(seen.wraps > 100 && seen.reused > 100 && seen.exhausted > 100, JSON.stringify(seen));
});
