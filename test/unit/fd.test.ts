import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FdAllocator, FD_MAX } from '../../src/fd/index.js';

test('FD_MAX is 2^24 - 1', () => {
  assert.equal(FD_MAX, 2 ** 24 - 1);
});

test('first fds are 1, 2, 3 and each has generation 1', () => {
  const a = new FdAllocator({ maxFd: 1000 });
  assert.deepEqual([a.alloc(), a.alloc(), a.alloc()], [1, 2, 3]);
  assert.equal(a.live, 3);
  assert.deepEqual([a.generation(1), a.generation(2), a.generation(3), a.generation(4)], [1, 1, 1, 0]);
});

test('defaults: maxFd = FD_MAX, maxLive = 1,048,576; maxLive defaults are clamped to maxFd', () => {
  const a = new FdAllocator();
  assert.equal(a.maxFd, FD_MAX);
  assert.equal(a.maxLive, 1_048_576);
  assert.equal(new FdAllocator({ maxFd: 10 }).maxLive, 10);
  assert.equal(new FdAllocator({ maxFd: 10, maxLive: 10 }).maxLive, 10);
  // A misspelt option is an error, not the default (FD_MAX) silently kept.
  const misspelt = { maxfd: 10, maxLive: 10 };
  assert.throws(() => new FdAllocator(misspelt), { name: 'TypeError', message: 'options.maxfd is not an option (did you mean maxFd?)' });
});

test('a released fd is reused only after the cursor wraps, and wrap skips live fds', () => {
  const a = new FdAllocator({ maxFd: 5 });
  assert.deepEqual([1, 2, 3, 4, 5].map(() => a.alloc()), [1, 2, 3, 4, 5]);
  assert.equal(a.release(2), true);
  assert.equal(a.release(4), true);
  // Cursor is past 5: wraps to 1 (live), lands on 2, then skips 3 and takes 4.
  assert.equal(a.alloc(), 2);
  assert.equal(a.generation(2), 2);
  assert.equal(a.alloc(), 4);
  assert.equal(a.alloc(), 0, 'all 5 live');
});

test('released fd is not handed out before the cursor comes round to it', () => {
  const a = new FdAllocator({ maxFd: 8, maxLive: 8 });
  assert.equal(a.alloc(), 1);
  assert.equal(a.release(1), true);
  const seq: number[] = [];
  for (let i = 0; i < 8; i++) {
    const fd = a.alloc();
    seq.push(fd);
    a.release(fd);
  }
  assert.deepEqual(seq, [2, 3, 4, 5, 6, 7, 8, 1]);
});

test('exhaustion returns 0 without side effects and recovers after one release', () => {
  const a = new FdAllocator({ maxFd: 100, maxLive: 3 });
  assert.deepEqual([a.alloc(), a.alloc(), a.alloc()], [1, 2, 3]);
  assert.equal(a.alloc(), 0);
  assert.equal(a.alloc(), 0);
  assert.equal(a.live, 3);
  assert.equal(a.generation(4), 0, 'a refused alloc bumps no generation');
  assert.equal(a.release(2), true);
  assert.equal(a.alloc(), 4, 'cursor kept its place: 4, not the just-released 2');
  assert.equal(a.alloc(), 0);
});

test('release/isLive reject dead, out-of-range and non-integer fds without throwing', () => {
  const a = new FdAllocator({ maxFd: 10 });
  const fd = a.alloc();
  for (const bad of [0, -1, 11, 2, 1.5, NaN, Infinity, 2 ** 32 + 1]) {
    assert.equal(a.release(bad), false, `release(${bad})`);
    assert.equal(a.isLive(bad), false, `isLive(${bad})`);
    assert.equal(a.handle(bad), 0, `handle(${bad})`);
  }
  assert.equal(a.isLive(fd), true);
  assert.equal(a.release(fd), true);
  assert.equal(a.release(fd), false, 'double release');
  assert.equal(a.live, 0);
});

test('handles: round-trip, never 0, stale after release and after reuse (security property)', () => {
  const a = new FdAllocator({ maxFd: 3, maxLive: 3 });
  const fd = a.alloc();
  const h1 = a.handle(fd);
  assert.notEqual(h1, 0);
  assert.ok(Number.isSafeInteger(h1));
  assert.equal(a.fdOf(h1), fd);
  assert.equal(a.generationOf(h1), a.generation(fd));
  assert.equal(a.isCurrent(h1), true);
  a.release(fd);
  assert.equal(a.isCurrent(h1), false, 'released allocation is not current');
  assert.equal(a.handle(fd), 0, 'no handle for a dead fd');
  // Cycle the cursor round until the same fd is allocated again.
  let again = 0;
  for (let i = 0; i < 10 && again !== fd; i++) {
    again = a.alloc();
    if (again !== fd) a.release(again);
  }
  assert.equal(again, fd);
  const h2 = a.handle(fd);
  assert.notEqual(h2, h1);
  assert.equal(a.isCurrent(h2), true);
  assert.equal(a.isCurrent(h1), false, 'old handle must not address the new owner of the fd');
});

test('isCurrent is false for junk numbers', () => {
  const a = new FdAllocator({ maxFd: 10 });
  const h = a.handle(a.alloc());
  for (const bad of [0, -h, h + 0.5, h + 2 ** 24, h - 2 ** 24, NaN, Infinity, -Infinity, 2 ** 53]) {
    assert.equal(a.isCurrent(bad), false, `isCurrent(${bad})`);
  }
  assert.equal(a.isCurrent(h), true);
});

test('generation wraps from 65535 to 1, skipping 0 (0 means never allocated)', () => {
  const a = new FdAllocator({ maxFd: 1 });
  for (let i = 1; i <= 65_535; i++) {
    assert.equal(a.alloc(), 1);
    if (i === 1 || i === 65_535) assert.equal(a.generation(1), i);
    a.release(1);
  }
  assert.equal(a.alloc(), 1);
  assert.equal(a.generation(1), 1);
  assert.equal(a.handle(1), 2 ** 24 + 1);
});

test('option validation: TypeError for wrong type, RangeError for out of range, naming the option', () => {
  const cases: Array<[unknown, 'TypeError' | 'RangeError', RegExp]> = [
    [{ maxLive: 1.5 }, 'TypeError', /^options\.maxLive must be /],
    [{ maxLive: '10' }, 'TypeError', /^options\.maxLive must be /],
    [{ maxLive: 0 }, 'RangeError', /^options\.maxLive must be /],
    [{ maxLive: FD_MAX + 1 }, 'RangeError', /^options\.maxLive must be /],
    [{ maxFd: null }, 'TypeError', /^options\.maxFd must be /],
    [{ maxFd: 0 }, 'RangeError', /^options\.maxFd must be /],
    [{ maxFd: FD_MAX + 1 }, 'RangeError', /^options\.maxFd must be /],
    [{ maxFd: 10, maxLive: 11 }, 'RangeError', /^options\.maxLive must be at most options\.maxFd/],
  ];
  for (const [opts, name, msg] of cases) {
    assert.throws(() => new FdAllocator(opts as never), (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.equal(e.name, name, JSON.stringify(opts));
      assert.match(e.message, msg);
      return true;
    });
  }
  assert.throws(() => new FdAllocator(null as never), TypeError);
});

test('bytesFor: exact memory figure (34 MiB for the full range, under 40 MiB)', () => {
  assert.equal(FdAllocator.bytesFor(FD_MAX), 2 ** 24 * 2 + 2 ** 19 * 4);
  assert.equal(FdAllocator.bytesFor(FD_MAX), 35_651_584);
  assert.ok(FdAllocator.bytesFor(FD_MAX) <= 40 * 2 ** 20);
  assert.equal(FdAllocator.bytesFor(31), 32 * 2 + 4);
  assert.equal(FdAllocator.bytesFor(32), 33 * 2 + 8);
});

test('full FD_MAX range: wraps from 16,777,215 to 1, skipping live fds', () => {
  const a = new FdAllocator({ maxLive: 4 });
  assert.equal(a.alloc(), 1); // kept live across the wrap
  // Move the cursor honestly: allocate and release until the fd before the last two.
  // Bounded, so that a broken cursor fails the test instead of hanging it.
  let fd = 0;
  for (let i = 0; i < FD_MAX && fd < FD_MAX - 2; i++) {
    fd = a.alloc();
    a.release(fd);
  }
  assert.equal(fd, FD_MAX - 2);
  assert.equal(a.alloc(), FD_MAX - 1);
  assert.equal(a.alloc(), FD_MAX);
  const hLast = a.handle(FD_MAX);
  assert.ok(Number.isSafeInteger(hLast) && a.fdOf(hLast) === FD_MAX && a.isCurrent(hLast));
  assert.equal(a.alloc(), 2, 'wrapped to 1, which is live, so 2');
  assert.equal(a.generation(2), 2);
  assert.equal(a.alloc(), 0, 'maxLive 4 reached');
  assert.equal(a.release(FD_MAX), true);
  assert.equal(a.alloc(), 3, 'cursor continues after 2; FD_MAX waits for the next lap');
  assert.equal(a.isCurrent(hLast), false);
});
