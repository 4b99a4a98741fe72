/**
 * Ring stress: real worker_threads on the other end, both directions, through a
 * deliberately small ring (64 KiB) so that it wraps and fills constantly. Every
 * record carries its sequence number and a checksum of its bytes (content from a
 * PRNG seeded by the sequence number), and every record is verified: no loss, no
 * reordering, no torn record.
 *
 * The main thread uses the async waits (like the I/O thread), the worker the
 * blocking ones (like a pool worker). RW_STRESS_RECORDS scales the record count.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { Ring } from '../../src/shared/ring.js';
import { RecordChecker, payloadLength, writeRecord, type StressResult } from '../fixtures/ring-records.js';

const RECORDS = Number(process.env['RW_STRESS_RECORDS'] ?? 10_000_000);
const CAPACITY = 64 * 1024;
const BATCH = 16; // producer: one notify() per BATCH records (and whenever it finds the ring full)
const workerUrl = new URL('../fixtures/ring-stress-worker.js', import.meta.url);

function startWorker(ring: Ring, role: 'producer' | 'consumer'): { worker: Worker; done: Promise<StressResult> } {
  const worker = new Worker(workerUrl, { workerData: { sab: ring.sab, role, records: RECORDS, batch: BATCH } });
  const done = new Promise<StressResult>((resolve, reject) => {
    worker.once('message', (m: StressResult) => resolve(m));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`stress worker exited (${code}) before reporting`)));
  });
  // A worker that stops early (failure) must not leave the main side asleep:
  // close() wakes it, and the test then fails on its assertions, not on a hang.
  worker.once('message', () => ring.close());
  worker.once('exit', () => ring.close());
  return { worker, done };
}

test(`worker → main: ${RECORDS} records through a ${CAPACITY / 1024} KiB ring, main drains with waitForDataAsync`, { timeout: 300_000 }, async () => {
  assert.ok(Number.isInteger(RECORDS) && RECORDS > 0, 'RW_STRESS_RECORDS must be a positive integer');
  const ring = Ring.create(CAPACITY);
  const checker = new RecordChecker(ring.data);
  const { worker, done } = startWorker(ring, 'producer');
  try {
    let waits = 0;
    while (checker.next < RECORDS && checker.errors === 0 && !(ring.closed && !ring.hasData())) {
      const p = ring.waitForDataAsync();
      if (p !== null) {
        waits++;
        await p;
      }
      ring.drain(checker.check);
    }
    // Fail fast on a bad record: closing stops the producer (it reports the close).
    if (checker.errors !== 0) ring.close();
    assert.equal(checker.firstError, '');
    const res = await done;
    assert.equal(checker.errors, 0);
    assert.equal(checker.next, RECORDS, 'every record arrived');
    assert.equal(ring.drain(checker.check), 0, 'nothing after the last record');
    assert.equal(res.records, RECORDS);
    assert.ok(res.fullCount > 0, 'the ring filled up (the test exercises FULL)');
    assert.equal(ring.usedBytes, 0);
    console.log(`# worker→main: ${RECORDS} records, producer saw FULL ${res.fullCount}×, main slept ${waits}×`);
  } finally {
    await worker.terminate();
  }
});

test(`main → worker: ${RECORDS} records through a ${CAPACITY / 1024} KiB ring, main produces with waitForSpaceAsync`, { timeout: 300_000 }, async () => {
  const ring = Ring.create(CAPACITY);
  const { data } = ring;
  const words = new Uint32Array(data.buffer, data.byteOffset, data.byteLength >>> 2);
  const { worker, done } = startWorker(ring, 'consumer');
  try {
    let waits = 0;
    for (let seq = 0; seq < RECORDS; seq++) {
      const len = payloadLength(seq);
      let off = ring.reserve(len);
      while (off === -1 && !ring.closed) {
        ring.notify(); // the worker may sleep on records we already committed
        const p = ring.waitForSpaceAsync(len);
        if (p !== null) {
          waits++;
          await p;
        }
        off = ring.reserve(len);
      }
      if (off < 0) break; // closed: the worker stopped early; its report says why
      writeRecord(data, words, off, seq);
      ring.commit();
      if (seq % BATCH === BATCH - 1) ring.notify();
    }
    ring.notify();
    const res = await done;
    assert.equal(res.firstError, '');
    assert.equal(res.errors, 0);
    assert.equal(res.records, RECORDS, 'every record arrived');
    assert.ok(ring.fullCount > 0, 'the ring filled up (the test exercises FULL)');
    assert.equal(ring.usedBytes, 0, 'the worker released everything before reporting');
    console.log(`# main→worker: ${RECORDS} records, main saw FULL ${ring.fullCount}×, slept ${waits}×`);
  } finally {
    await worker.terminate();
  }
});
