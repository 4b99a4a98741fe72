/**
 * Idle means idle: with every side of several rings waiting (two workers blocked
 * in Atomics.wait, the main thread with pending Atomics.waitAsync on both
 * sides), the process burns (almost) no CPU. process.cpuUsage() counts all
 * threads of the process. The 2 s below is the measured window, not a way to
 * wait for something: readiness is established by messages and by the sleep
 * flags in the ring headers, and wake-up afterwards by notify/release.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { Ring, RingStatus } from '../../src/shared/ring.js';

const waiterUrl = new URL('../fixtures/ring-waiter.js', import.meta.url);
const WINDOW_MS = 2000;

/** Resolve once `cond()` holds, re-checking on each turn of the event loop (no timers). */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise<void>((r) => setImmediate(r));
}

test('idle rings cost < 5% of one core over a 2 s window, and every waiter still wakes', { timeout: 30_000 }, async () => {
  // Worker A consumes `toWorker` (empty): blocked in waitForData.
  // Worker B produces into `fullFromWorker` (full): blocked in waitForSpace.
  // Main consumes `fromWorker` (empty) and produces into `fullFromMain` (full), both async.
  const toWorker = Ring.create(4096);
  const fullFromWorker = Ring.create(4096);
  const fromWorker = Ring.create(4096);
  const fullFromMain = Ring.create(4096);
  const rec = new Uint8Array(1000).fill(0xab);
  while (fullFromWorker.push(rec) === RingStatus.OK);
  while (fullFromMain.push(rec) === RingStatus.OK);

  const a = new Worker(waiterUrl, { workerData: { sab: toWorker.sab, mode: 'data', length: 0 } });
  const b = new Worker(waiterUrl, { workerData: { sab: fullFromWorker.sab, mode: 'space', length: 1000 } });
  try {
    await Promise.all([once(a, 'message'), once(b, 'message')]); // 'armed'
    // Announced sleep (the flag is set right before Atomics.wait).
    await until(() => toWorker.consumerSleeping && fullFromWorker.producerSleeping);
    const dataP = fromWorker.waitForDataAsync();
    const spaceP = fullFromMain.waitForSpaceAsync(1000);
    assert.ok(dataP && spaceP, 'main side is waiting on both rings');
    let woke = '';
    const aDone = once(a, 'message');
    const bDone = once(b, 'message');
    void aDone.then(() => { woke += 'a'; });
    void bDone.then(() => { woke += 'b'; });

    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await delay(WINDOW_MS);
    const cpu = process.cpuUsage(cpu0);
    const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const cpuMs = (cpu.user + cpu.system) / 1000;
    console.log(`# idle: ${cpuMs.toFixed(1)} ms CPU over ${wallMs.toFixed(0)} ms (${((100 * cpuMs) / wallMs).toFixed(2)}% of one core)`);
    assert.equal(woke, '', 'no waiter returned during the idle window');
    assert.ok(toWorker.consumerSleeping && fullFromWorker.producerSleeping, 'workers still asleep');
    assert.ok(fromWorker.consumerSleeping && fullFromMain.producerSleeping, 'main still waiting');
    assert.ok(cpuMs < 0.05 * wallMs, `idle CPU ${cpuMs.toFixed(1)} ms over ${wallMs.toFixed(0)} ms`);

    // Now ring every doorbell; each waiter must wake (a hang fails on the test timeout).
    toWorker.push(new Uint8Array([42]));
    toWorker.notify();
    fullFromWorker.drain(() => {}, 1);
    fromWorker.push(new Uint8Array([7]));
    fromWorker.notify();
    fullFromMain.drain(() => {}, 1);
    const [[ra], [rb]] = await Promise.all([aDone, bDone, dataP, spaceP]);
    assert.deepEqual(ra, { mode: 'data', result: true, closed: false, first: 42 });
    assert.deepEqual(rb, { mode: 'space', result: true, closed: false, first: -1 });
    assert.equal(fromWorker.waitForDataAsync(), null);
    assert.equal(fullFromMain.waitForSpaceAsync(1000), null);
  } finally {
    await Promise.all([a.terminate(), b.terminate()]);
  }
});
