import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { Ring, RingStatus, kHeaderBytes, kWrapMarker, recordBytes } from '../../src/shared/ring.js';

const waiterUrl = new URL('../fixtures/ring-waiter.js', import.meta.url);

/** Deterministic payload for record `id`, `len` bytes. */
function payload(id: number, len: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (id * 31 + i * 7 + (i >>> 8)) & 0xff;
  return b;
}

/** Drain everything into copies (the views are valid only during the callback). */
function drainAll(ring: Ring, max?: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  ring.drain((d, off, len) => { out.push(d.slice(off, off + len)); }, max);
  return out;
}

/** Leave `ring` empty with its read/write position at byte `pos` of the data area. */
function moveTo(ring: Ring, pos: number): void {
  ring.reset();
  let left = pos;
  while (left > 0) {
    const chunk = Math.min(left, ring.maxRecord + 8);
    assert.equal(ring.push(new Uint8Array(chunk - 8)), RingStatus.OK);
    assert.equal(ring.drain(() => {}), 1);
    left -= chunk;
  }
  assert.equal(ring.usedBytes, 0);
}

test('create validates capacity with a RangeError naming options.capacity', () => {
  for (const bad of [0, 512, 1000, 1023, 1536, 3000, 2 ** 31, 1.5, -1024, Number.NaN, '1024' as unknown as number]) {
    assert.throws(() => Ring.create(bad), (e: unknown) => {
      assert.ok(e instanceof RangeError, `capacity ${String(bad)}`);
      assert.equal(e.message, 'options.capacity must be a power of two between 1024 and 2^30');
      return true;
    });
  }
  const small = Ring.create(1024);
  assert.equal(small.capacity, 1024);
  assert.equal(small.data.byteLength, 1024);
  assert.equal(small.sab.byteLength, kHeaderBytes + 1024);
  assert.equal(small.maxRecord, 1024 / 2 - 8);
  const big = Ring.create(2 ** 30); // the SAB is zero-filled lazily: no GiB of RSS
  assert.equal(big.capacity, 2 ** 30);
});

test('from() attaches to the same ring and rejects a foreign SharedArrayBuffer', () => {
  const a = Ring.create(4096);
  const b = Ring.from(a.sab);
  assert.equal(b.capacity, 4096);
  assert.equal(a.push(payload(1, 10)), RingStatus.OK);
  assert.deepEqual(drainAll(b), [payload(1, 10)]);
  assert.equal(a.usedBytes, 0, 'the consumer instance released the space');
  assert.throws(() => Ring.from(new SharedArrayBuffer(4096)), { code: 'RW_ERR_BAD_RECORD' });
  assert.throws(() => Ring.from(new SharedArrayBuffer(16)), { code: 'RW_ERR_BAD_RECORD' });
});

test('push/drain roundtrip of records of many sizes, in order', () => {
  const ring = Ring.create(4096);
  const sizes: number[] = [];
  for (let len = 0; len <= 300; len++) sizes.push(len);
  for (const len of [511, 512, 513, 1000, 1024, 2000, ring.maxRecord]) sizes.push(len);
  const sent: Uint8Array[] = [];
  const got: Uint8Array[] = [];
  let id = 0;
  for (const len of sizes) {
    const p = payload(id++, len);
    let st = ring.push(p);
    if (st === RingStatus.FULL) {
      got.push(...drainAll(ring));
      st = ring.push(p);
    }
    assert.equal(st, RingStatus.OK);
    sent.push(p);
  }
  got.push(...drainAll(ring));
  assert.equal(got.length, sent.length);
  assert.deepEqual(got, sent);
});

test('push with srcOffset/srcLength copies exactly that slice', () => {
  const ring = Ring.create(1024);
  const src = payload(9, 200);
  assert.equal(ring.push(src, 3, 5), RingStatus.OK);
  assert.equal(ring.push(src, 10, 150), RingStatus.OK);
  assert.equal(ring.push(src, 199), RingStatus.OK);
  assert.deepEqual(drainAll(ring), [src.slice(3, 8), src.slice(10, 160), src.slice(199)]);
});

test('wrap marker: a record at every 8-byte position near the end lands whole, before the end or at 0', () => {
  const ring = Ring.create(1024);
  const words = new Uint32Array(ring.sab, kHeaderBytes, 256);
  for (let pos = 0; pos < 1024; pos += 8) {
    const toEnd = 1024 - pos;
    // Lengths whose record just fits, exactly fits and just misses the space left.
    for (const len of [toEnd - 17, toEnd - 16, toEnd - 9, toEnd - 8, toEnd - 7, toEnd - 1, toEnd, toEnd + 1, 0, 1]) {
      if (len < 0 || len > ring.maxRecord) continue;
      moveTo(ring, pos);
      const fits = recordBytes(len) <= toEnd;
      const off = ring.reserve(len);
      assert.equal(off, fits ? pos + 8 : 8, `pos ${pos} len ${len}`);
      ring.data.set(payload(pos + len, len), off);
      ring.commit();
      if (!fits) assert.equal(words[pos >>> 2], kWrapMarker, 'wrap marker written at the old tail');
      // The skipped bytes count as used until the consumer passes them.
      assert.equal(ring.usedBytes, fits ? recordBytes(len) : toEnd + recordBytes(len));
      assert.deepEqual(drainAll(ring), [payload(pos + len, len)], `pos ${pos} len ${len}`);
      assert.equal(ring.usedBytes, 0);
      // The next record follows right after (or wraps itself when only 8 bytes are left).
      const next = ((fits ? pos : 0) + recordBytes(len)) % 1024;
      assert.equal(ring.reserve(3), next === 1016 ? 8 : next + 8, `next after pos ${pos} len ${len}`);
      ring.data.set(payload(7, 3), next === 1016 ? 8 : next + 8);
      ring.commit();
      assert.deepEqual(drainAll(ring), [payload(7, 3)]);
    }
  }
});

test('a record of maxRecord bytes fits into an empty ring at every position', () => {
  const ring = Ring.create(1024);
  for (let pos = 0; pos < 1024; pos += 8) {
    moveTo(ring, pos);
    assert.equal(ring.push(payload(pos, ring.maxRecord)), RingStatus.OK, `pos ${pos}`);
    assert.deepEqual(drainAll(ring), [payload(pos, ring.maxRecord)]);
  }
});

test('reserve/commit(shrunk) publishes only the committed length', () => {
  const ring = Ring.create(1024);
  const off = ring.reserve(100);
  assert.equal(off, 8);
  ring.data.set(payload(1, 40), off);
  assert.equal(ring.usedBytes, 0, 'nothing is visible before commit');
  assert.equal(ring.peek(), -1);
  ring.commit(40);
  assert.equal(ring.usedBytes, recordBytes(40));
  const off2 = ring.reserve(10);
  assert.equal(off2, recordBytes(40) + 8, 'the next record follows the shrunk one');
  ring.data.set(payload(2, 10), off2);
  ring.commit();
  assert.deepEqual(drainAll(ring), [payload(1, 40), payload(2, 10)]);
  // commit(0) publishes an empty record.
  ring.reserve(50);
  ring.commit(0);
  assert.deepEqual(drainAll(ring), [new Uint8Array(0)]);
});

test('commit errors: longer than reserved, or without a reservation', () => {
  const ring = Ring.create(1024);
  assert.throws(() => ring.commit(), { code: 'RW_ERR_BAD_RECORD' });
  ring.reserve(16);
  assert.throws(() => ring.commit(17), { code: 'RW_ERR_BAD_RECORD' });
  ring.commit(16);
  assert.throws(() => ring.commit(), { code: 'RW_ERR_BAD_RECORD' }, 'a reservation commits once');
  ring.reserve(8);
  assert.equal(ring.reserve(ring.maxRecord + 1), -2);
  assert.throws(() => ring.commit(), { code: 'RW_ERR_BAD_RECORD' }, 'a failed reserve drops the earlier one');
  assert.equal(drainAll(ring).length, 1);
});

test('a full ring returns FULL and never overwrites what is in it', () => {
  for (const start of [0, 8, 400, 1016]) {
    const ring = Ring.create(1024);
    moveTo(ring, start);
    const fullBefore = ring.fullCount;
    const sent: Uint8Array[] = [];
    let id = 0;
    let status: number = RingStatus.OK;
    let len = 0;
    while (status === RingStatus.OK) {
      len = 1 + ((id * 37) % 120);
      const p = payload(id++, len);
      status = ring.push(p);
      if (status === RingStatus.OK) sent.push(p);
    }
    assert.equal(status, RingStatus.FULL);
    assert.ok(sent.length > 5);
    // FULL is honest: the record really did not fit (even with the wrap waste).
    assert.ok(ring.usedBytes + recordBytes(len) > 1024 - recordBytes(len), `used ${ring.usedBytes}`);
    // Hammer it: more FULL results (a record at least as long cannot fit either),
    // none of which may write anything.
    const used = ring.usedBytes;
    for (let i = 0; i < 50; i++) {
      assert.equal(ring.push(payload(1000 + i, Math.min(len + i * 7, ring.maxRecord))), RingStatus.FULL);
    }
    assert.equal(ring.reserve(200), -1);
    assert.equal(ring.usedBytes, used);
    assert.equal(ring.fullCount - fullBefore, 52);
    assert.deepEqual(drainAll(ring), sent, 'every byte of every record survived');
    assert.equal(ring.push(payload(5, len)), RingStatus.OK, 'space is usable again after drain');
  }
});

test('TOO_LARGE: longer than maxRecord, never counted as FULL', () => {
  const ring = Ring.create(2048);
  assert.equal(ring.push(new Uint8Array(ring.maxRecord + 1)), RingStatus.TOO_LARGE);
  assert.equal(ring.reserve(ring.maxRecord + 1), -2);
  assert.equal(ring.reserve(-1), -2);
  assert.equal(ring.reserve(Number.NaN), -2);
  assert.equal(ring.fullCount, 0);
  assert.equal(ring.usedBytes, 0);
  assert.equal(ring.push(new Uint8Array(ring.maxRecord)), RingStatus.OK);
  assert.equal(ring.waitForSpace(ring.maxRecord + 1, 0), false);
  assert.equal(ring.waitForSpaceAsync(ring.maxRecord + 1), null);
});

test('peek/skip/release: space comes back only on release', () => {
  const ring = Ring.create(1024);
  assert.equal(ring.peek(), -1);
  ring.skip(); // nothing peeked: no-op
  for (let i = 0; i < 3; i++) assert.equal(ring.push(payload(i, 10 + i)), RingStatus.OK);
  const used = ring.usedBytes;
  const o0 = ring.peek();
  assert.equal(ring.peekLength, 10);
  assert.equal(ring.peek(), o0, 'peek without skip returns the same record');
  assert.deepEqual(ring.data.slice(o0, o0 + 10), payload(0, 10));
  ring.skip();
  ring.skip(); // skipping twice does not skip the next record
  const o1 = ring.peek();
  assert.equal(ring.peekLength, 11);
  assert.deepEqual(ring.data.slice(o1, o1 + 11), payload(1, 11));
  ring.skip();
  assert.equal(ring.usedBytes, used, 'skipped records still occupy space');
  ring.release();
  assert.equal(ring.usedBytes, recordBytes(12));
  const o2 = ring.peek();
  assert.deepEqual(ring.data.slice(o2, o2 + 12), payload(2, 12));
  ring.skip();
  assert.equal(ring.peek(), -1);
  ring.release();
  assert.equal(ring.usedBytes, 0);
});

test('peek follows a wrap marker', () => {
  const ring = Ring.create(1024);
  moveTo(ring, 1000);
  assert.equal(ring.push(payload(3, 100)), RingStatus.OK);
  assert.equal(ring.peek(), 8);
  assert.equal(ring.peekLength, 100);
  ring.skip();
  ring.release();
  assert.equal(ring.usedBytes, 0);
});

test('drain honours maxRecords; a throwing callback consumes its record', () => {
  const ring = Ring.create(1024);
  for (let i = 0; i < 5; i++) ring.push(payload(i, 4));
  assert.deepEqual(drainAll(ring, 2), [payload(0, 4), payload(1, 4)]);
  assert.throws(() => ring.drain(() => { throw new Error('boom'); }), /boom/);
  assert.deepEqual(drainAll(ring), [payload(3, 4), payload(4, 4)]);
  ring.release();
  assert.equal(ring.usedBytes, 0);
});

test('a corrupt record length is a BadRecordError, not a wild read', () => {
  const ring = Ring.create(1024);
  ring.push(payload(1, 4));
  new Uint32Array(ring.sab, kHeaderBytes, 1)[0] = 0x7fffffff;
  assert.throws(() => ring.drain(() => {}), { code: 'RW_ERR_BAD_RECORD' });
  assert.throws(() => Ring.from(ring.sab).peek(), { code: 'RW_ERR_BAD_RECORD' });
});

test('fullCount counts every FULL reserve/push', () => {
  const ring = Ring.create(1024);
  const attach = Ring.from(ring.sab);
  while (ring.push(payload(0, 100)) === RingStatus.OK);
  assert.equal(ring.fullCount, 1);
  ring.reserve(100);
  ring.push(payload(0, 1000)); // TOO_LARGE: not counted
  assert.equal(ring.fullCount, 2);
  assert.equal(attach.fullCount, 2, 'the counter lives in the shared header');
});

test('waitForDataAsync: null when data is there; resolves on notify; flag cleared', async () => {
  const ring = Ring.create(1024);
  const p = ring.waitForDataAsync();
  assert.ok(p instanceof Promise);
  assert.equal(ring.consumerSleeping, true);
  ring.push(payload(1, 8));
  ring.notify();
  assert.equal(ring.consumerSleeping, false, 'notify cleared the sleep flag');
  await p;
  assert.equal(ring.waitForDataAsync(), null, 'data is available');
  assert.equal(ring.waitForData(0), true);
  assert.deepEqual(drainAll(ring), [payload(1, 8)]);
  assert.equal(ring.waitForData(0), false, 'timeout 0 with no data');
  assert.equal(ring.consumerSleeping, false, 'a timed-out wait clears its flag');
});

test('waitForSpaceAsync resolves on release', async () => {
  const ring = Ring.create(1024);
  while (ring.push(payload(0, 200)) === RingStatus.OK);
  assert.equal(ring.waitForSpace(200, 0), false);
  const p = ring.waitForSpaceAsync(200);
  assert.ok(p instanceof Promise);
  assert.equal(ring.producerSleeping, true);
  assert.equal(drainAll(ring, 1).length, 1);
  await p;
  assert.equal(ring.waitForSpaceAsync(200), null);
  assert.equal(ring.push(payload(0, 200)), RingStatus.OK);
});

test('close() wakes async waiters on both sides and stops later waits', async () => {
  const ring = Ring.create(1024);
  const data = ring.waitForDataAsync();
  const full = Ring.create(1024);
  while (full.push(payload(0, 300)) === RingStatus.OK);
  const space = full.waitForSpaceAsync(300);
  assert.ok(data && space);
  ring.close();
  full.close();
  // If close() did not notify, these promises would never settle and the test fails.
  await Promise.all([data, space]);
  assert.equal(ring.closed, true);
  assert.equal(ring.waitForDataAsync(), null);
  assert.equal(ring.waitForData(), false, 'returns at once when closed and empty');
  assert.equal(full.waitForSpace(300), false);
  assert.equal(full.drain(() => {}) > 0, true, 'records in a closed ring stay drainable');
});

test('close() wakes a worker blocked in waitForData / waitForSpace', async () => {
  const empty = Ring.create(1024);
  const full = Ring.create(1024);
  while (full.push(payload(0, 300)) === RingStatus.OK);
  const wData = new Worker(waiterUrl, { workerData: { sab: empty.sab, mode: 'data', length: 0 } });
  const wSpace = new Worker(waiterUrl, { workerData: { sab: full.sab, mode: 'space', length: 300 } });
  try {
    await Promise.all([once(wData, 'message'), once(wSpace, 'message')]); // 'armed'
    const results = Promise.all([once(wData, 'message'), once(wSpace, 'message')]);
    // Both announce sleep before blocking; closing in between still wakes them
    // (the flag is the futex word), so the order does not matter for correctness.
    empty.close();
    full.close();
    const [[d], [s]] = await results;
    assert.deepEqual(d, { mode: 'data', result: false, closed: true, first: -1 });
    assert.deepEqual(s, { mode: 'space', result: false, closed: true, first: -1 });
  } finally {
    await Promise.all([wData.terminate(), wSpace.terminate()]);
  }
});

test('reset() empties and reopens the ring, keeping fullCount', () => {
  const ring = Ring.create(1024);
  while (ring.push(payload(0, 100)) === RingStatus.OK);
  ring.close();
  ring.reset();
  assert.equal(ring.usedBytes, 0);
  assert.equal(ring.closed, false);
  assert.equal(ring.peek(), -1);
  assert.equal(ring.fullCount, 1);
  const consumer = Ring.from(ring.sab);
  assert.equal(ring.push(payload(4, 4)), RingStatus.OK);
  assert.deepEqual(drainAll(consumer), [payload(4, 4)]);
});

test('property: any interleaving of push/drain/peek matches a FIFO model', () => {
  type Op = { kind: 'push'; len: number } | { kind: 'drain'; max: number } | { kind: 'peekSkip'; release: boolean };
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 5, arbitrary: fc.record({ kind: fc.constant('push' as const), len: fc.oneof(fc.integer({ min: 0, max: 16 }), fc.integer({ min: 0, max: 600 })) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('drain' as const), max: fc.integer({ min: 1, max: 8 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('peekSkip' as const), release: fc.boolean() }) },
  );
  fc.assert(fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
    const ring = Ring.create(1024);
    const model: Uint8Array[] = [];
    let id = 0;
    let unreleased = false;
    for (const o of ops) {
      if (o.kind === 'push') {
        const p = payload(id++, o.len);
        const used = ring.usedBytes;
        const st = ring.push(p);
        if (o.len > ring.maxRecord) assert.equal(st, RingStatus.TOO_LARGE);
        else if (st === RingStatus.OK) model.push(p);
        else {
          assert.equal(st, RingStatus.FULL);
          assert.ok(model.length > 0 || unreleased, 'FULL on an empty ring');
          assert.ok(used + 2 * recordBytes(o.len) > 1024, `FULL with ${used} bytes used`);
        }
      } else if (o.kind === 'drain') {
        const got = drainAll(ring, o.max);
        assert.deepEqual(got, model.splice(0, got.length));
        assert.equal(got.length, Math.min(o.max, got.length + model.length));
        if (got.length > 0) unreleased = false;
      } else {
        const off = ring.peek();
        if (model.length === 0) assert.equal(off, -1);
        else {
          assert.deepEqual(ring.data.slice(off, off + ring.peekLength), model[0]);
          ring.skip();
          model.shift();
          unreleased = true;
        }
        if (o.release) { ring.release(); unreleased = false; }
      }
    }
    assert.deepEqual(drainAll(ring), model);
    ring.release();
    assert.equal(ring.usedBytes, 0);
  }), { numRuns: 300 });
});
