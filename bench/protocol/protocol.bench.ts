/**
 * Protocol micro-benchmarks (tinybench): the client wire codec and the in-ring record writers.
 *
 *   node dist/bench/protocol/protocol.bench.js [--rounds 3] [--quick] [--out DIR]
 *
 * Rows, for 32 B and 512 B payloads:
 *   encode   binary codec frame (encodeFrame) vs JSON.stringify({cmd, data, ref}) (the baseline)
 *            and jsonCodec.encode (stringify + UTF-8 bytes)
 *   decode   binaryCodec.decode (verify + read, payload view) vs JSON.parse of the same object
 *            (the baseline) and jsonCodec.decode (UTF-8 decode + parse + checks)
 *   ring     writeMessage / writeSendFrame into a real 1 MiB Ring (drained when full, amortised),
 *            against ring.push of the same bytes (a raw copy, no FlatBuffer) and a Builder-built
 *            Send + WireFrame copied in (what the hand layouts avoid)
 * JSON `data` is a string of as many ASCII characters as the binary payload has bytes.
 * Each task function runs OPS operations, so timer overhead does not dominate nanosecond ops.
 * Rounds run every task in turn (interleaved, so background load hits all alike); the table
 * shows the median of the rounds. Results go to bench/results/protocol.json
 * (or DIR/protocol.json with --out).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus } from 'node:os';
import * as flatbuffers from 'flatbuffers';
import { Bench } from 'tinybench';
import { Ring, RingStatus } from '../../src/shared/ring.js';
import { RecordKind, fb, writeMessage, writeSendFrame, type RecordRing } from '../../src/shared/records.js';
import { binaryCodec, createDecodedFrame, encodeFrame, jsonCodec } from '../../src/shared/wire.js';
import { median } from '../report/stats.js';
import { outDirArg } from '../report/results.js';

const resultsDir = outDirArg(process.argv.slice(2));
const quick = process.argv.includes('--quick');
const roundsArg = process.argv.indexOf('--rounds');
const ROUNDS = roundsArg >= 0 ? Number(process.argv[roundsArg + 1]) : 3;
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new RangeError('--rounds must be a positive integer');
const OPS = 64;
const TIME_MS = quick ? 150 : 500;

let sink = 0; // keeps results alive so nothing is optimised away

interface Row { group: string; name: string; size: number; baseline?: boolean; fn: () => void }

function rowsFor(size: number): Row[] {
  const payload = new Uint8Array(size).map((_, i) => 97 + (i % 26));
  const text = 'x'.repeat(size);
  const obj = { cmd: 'chat.send', data: text, ref: 123456 };
  const json = JSON.stringify(obj);
  const jsonBytes = new TextEncoder().encode(json);
  const frame = encodeFrame({ event: 'chat.send', ref: 123456, payload });
  const out = createDecodedFrame();
  const ring = Ring.create(1 << 20);
  const full = (): void => { ring.drain(() => {}); };
  const builder = new flatbuffers.Builder(1024);
  const builderSend = (r: RecordRing): number => {
    builder.clear();
    const ev = builder.createString('chat.send');
    const pay = fb.WireFrame.createPayloadVector(builder, payload);
    builder.finish(fb.WireFrame.createWireFrame(builder, ev, 0, 123456, pay));
    const inner = builder.asUint8Array().slice();
    builder.clear();
    const data = fb.Send.createDataVector(builder, inner);
    builder.finish(fb.Send.createSend(builder, 77, true, data));
    const bytes = builder.asUint8Array();
    const off = r.reserve(4 + bytes.length);
    if (off < 0) return RingStatus.FULL;
    new DataView(r.data.buffer, r.data.byteOffset).setUint32(off, RecordKind.Send, true);
    r.data.set(bytes, off + 4);
    r.commit();
    return RingStatus.OK;
  };
  const ringLoop = (write: () => number) => (): void => {
    for (let i = 0; i < OPS; i++) {
      if (write() !== RingStatus.OK) {
        full();
        write();
      }
    }
  };
  return [
    { group: 'encode', name: 'JSON.stringify {cmd,data,ref}', size, baseline: true, fn: () => {
      for (let i = 0; i < OPS; i++) sink += JSON.stringify(obj).length;
    } },
    { group: 'encode', name: 'jsonCodec.encode (to bytes)', size, fn: () => {
      for (let i = 0; i < OPS; i++) sink += jsonCodec.encode('chat.send', 123456, text).length;
    } },
    { group: 'encode', name: 'binary encodeFrame', size, fn: () => {
      for (let i = 0; i < OPS; i++) sink += encodeFrame({ event: 'chat.send', ref: 123456, payload }).length;
    } },
    { group: 'decode', name: 'JSON.parse {cmd,data,ref}', size, baseline: true, fn: () => {
      for (let i = 0; i < OPS; i++) sink += (JSON.parse(json) as { ref: number }).ref;
    } },
    { group: 'decode', name: 'jsonCodec.decode (from bytes)', size, fn: () => {
      for (let i = 0; i < OPS; i++) {
        jsonCodec.decode(jsonBytes, 0, jsonBytes.length, false, out);
        sink += out.ref;
      }
    } },
    { group: 'decode', name: 'binaryCodec.decode (verified)', size, fn: () => {
      for (let i = 0; i < OPS; i++) {
        binaryCodec.decode(frame, 0, frame.length, true, out);
        sink += out.payload.length;
      }
    } },
    { group: 'ring', name: 'ring.push (raw copy, baseline)', size, baseline: true,
      fn: ringLoop(() => ring.push(payload)) },
    { group: 'ring', name: 'writeMessage', size, fn: ringLoop(() => writeMessage(ring, 77, true, payload)) },
    { group: 'ring', name: 'writeSendFrame', size,
      fn: ringLoop(() => writeSendFrame(ring, 77, 'chat.send', 0, 123456, payload)) },
    { group: 'ring', name: 'Builder Send+WireFrame, copy', size, fn: ringLoop(() => builderSend(ring)) },
  ];
}

async function main(): Promise<void> {
  const cpu = cpus();
  const env = { node: process.version, cpu: cpu[0]?.model ?? 'unknown', cores: cpu.length, platform: `${process.platform}-${process.arch}` };
  console.log(`protocol bench: Node ${env.node}, ${env.cpu}, ${env.cores} cores, ${env.platform}`);
  console.log(`${ROUNDS} round(s) x ${TIME_MS} ms per task, ${OPS} ops per task call, median of rounds shown`);
  const rows = [...rowsFor(32), ...rowsFor(512)];
  const perRound: number[][] = rows.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    const bench = new Bench({ time: TIME_MS, warmupTime: quick ? 50 : 200 });
    for (const row of rows) bench.add(`${row.group} ${row.size} ${row.name}`, row.fn);
    await bench.run();
    bench.tasks.forEach((task, i) => {
      const res = task.result;
      if (!res || res.error || !res.latency.mean) throw new Error(`task ${task.name} failed: ${String(res?.error)}`);
      // latency.mean is ms per task call, each call doing OPS operations.
      perRound[i]!.push((OPS * 1000) / res.latency.mean);
    });
  }
  const med = perRound.map(median);
  const baselineOf = (row: Row): number => {
    const i = rows.findIndex((x) => x.baseline && x.group === row.group && x.size === row.size);
    return med[i]!;
  };
  const table = rows.map((row, i) => ({
    group: row.group,
    payload: `${row.size} B`,
    task: row.name,
    'ops/s (median)': Math.round(med[i]!).toLocaleString('en-US'),
    'ns/op': (1e9 / med[i]!).toFixed(0),
    'vs baseline': row.baseline ? 'baseline' : `${(med[i]! / baselineOf(row)).toFixed(2)}x`,
    'min..max ops/s': `${Math.round(Math.min(...perRound[i]!)).toLocaleString('en-US')}..${Math.round(Math.max(...perRound[i]!)).toLocaleString('en-US')}`,
  }));
  console.table(table);
  mkdirSync(resultsDir, { recursive: true });
  const out = {
    bench: 'protocol',
    date: new Date().toISOString(),
    env,
    params: { rounds: ROUNDS, timeMs: TIME_MS, opsPerCall: OPS, payloadBytes: [32, 512] },
    results: rows.map((row, i) => ({
      group: row.group,
      payloadBytes: row.size,
      task: row.name,
      baseline: row.baseline === true,
      opsPerSecond: perRound[i]!.map(Math.round),
      median: Math.round(med[i]!),
      ratioToBaseline: Number((med[i]! / baselineOf(row)).toFixed(3)),
    })),
  };
  writeFileSync(join(resultsDir, 'protocol.json'), JSON.stringify(out, null, 2) + '\n');
  console.log(`wrote ${join(resultsDir, 'protocol.json')}`);
  if (sink === 0.5) console.log(sink);
}

await main();
