/**
 * Worker side of bench/ring/ring.bench.ts. One role per worker (workerData):
 *   ring-producer   push 64-byte records in batches, one notify() per batch, blocking waitForSpace when full
 *   ring-consumer   blocking waitForData + drain, checks sequence numbers
 *   pm-record       one postMessage per 64-byte record (structured clone of a Uint8Array)
 *   pm-array        one postMessage per batch: an array of `batch` 64-byte Uint8Arrays
 *   pm-buffer       one postMessage per batch: one Uint8Array of batch × 64 bytes
 * Each waits for 'go' before starting and posts { done, errors } at the end.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Ring, RingStatus } from '../../src/shared/ring.js';

export type Role = 'ring-producer' | 'ring-consumer' | 'pm-record' | 'pm-array' | 'pm-buffer';
export interface BenchInput { role: Role; sab?: SharedArrayBuffer; records: number; batch: number; size: number }
export interface BenchDone { done: true; records: number; errors: number }

const input = workerData as BenchInput;
const port = parentPort!;

function ringProducer(ring: Ring): BenchDone {
  const { records, batch, size } = input;
  const src = new Uint8Array(size);
  const src32 = new Uint32Array(src.buffer);
  let seq = 0;
  while (seq < records) {
    const end = Math.min(records, seq + batch);
    for (; seq < end; seq++) {
      src32[0] = seq;
      if (ring.push(src) !== RingStatus.OK) {
        ring.notify(); // the consumer may sleep on what we already committed
        ring.waitForSpace(size);
        seq--; // retry this record
      }
    }
    ring.notify(); // one doorbell per batch
  }
  return { done: true, records, errors: 0 };
}

function ringConsumer(ring: Ring): BenchDone {
  const words = new Uint32Array(ring.data.buffer, ring.data.byteOffset, ring.data.byteLength >>> 2);
  let next = 0;
  let errors = 0;
  const onRecord = (_d: Uint8Array, off: number, len: number): void => {
    if (words[off >>> 2] !== next || len !== input.size) errors++;
    next++;
  };
  while (next < input.records) {
    if (!ring.waitForData()) break;
    ring.drain(onRecord, input.batch);
  }
  return { done: true, records: next, errors };
}

function pmRecord(): BenchDone {
  const src = new Uint8Array(input.size);
  const src32 = new Uint32Array(src.buffer);
  for (let seq = 0; seq < input.records; seq++) {
    src32[0] = seq;
    port.postMessage(src); // cloned (copied) per message
  }
  return { done: true, records: input.records, errors: 0 };
}

function pmArray(): BenchDone {
  const { records, batch, size } = input;
  for (let seq = 0; seq < records;) {
    const n = Math.min(batch, records - seq);
    const arr: Uint8Array[] = new Array(n);
    for (let i = 0; i < n; i++, seq++) {
      const b = new Uint8Array(size);
      new Uint32Array(b.buffer)[0] = seq;
      arr[i] = b;
    }
    port.postMessage(arr);
  }
  return { done: true, records, errors: 0 };
}

function pmBuffer(): BenchDone {
  const { records, batch, size } = input;
  for (let seq = 0; seq < records;) {
    const n = Math.min(batch, records - seq);
    const buf = new Uint8Array(n * size);
    const b32 = new Uint32Array(buf.buffer);
    for (let i = 0; i < n; i++, seq++) b32[(i * size) >>> 2] = seq;
    port.postMessage(buf, [buf.buffer]); // transferred, not copied
  }
  return { done: true, records, errors: 0 };
}

port.once('message', () => {
  let res: BenchDone;
  switch (input.role) {
    case 'ring-producer': res = ringProducer(Ring.from(input.sab!)); break;
    case 'ring-consumer': res = ringConsumer(Ring.from(input.sab!)); break;
    case 'pm-record': res = pmRecord(); break;
    case 'pm-array': res = pmArray(); break;
    case 'pm-buffer': res = pmBuffer(); break;
  }
  port.postMessage(res);
});
port.postMessage('ready');
