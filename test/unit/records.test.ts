import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as flatbuffers from 'flatbuffers';
import { Ring, RingStatus } from '../../src/shared/ring.js';
import {
  RecordKind, RecordReader, Slot, fb, utf8Length, vectorLength, vectorStart,
  writeAccept, writeRequest, writeNotice, RequestOp, NoticeOp, writeClose, writeCloseConn, writeDrain, writeMessage, writeOpen, writePublish,
  writeReject, writeSend, writeSendFrame, writeShed, writeSendMany, writeSubscribe, writeUnsubscribe, writeUpgrade,
} from '../../src/shared/records.js';
import { verifyRecord } from '../../src/shared/verify.js';
import { encodeFrame } from '../../src/shared/wire.js';

const HANDLE = 0x123456 + 77 * 2 ** 24; // fd + generation * 2^24
const BIG_HANDLE = Number.MAX_SAFE_INTEGER;
const utf8 = new TextEncoder();
const roundTrip = (s: string): string => new TextDecoder().decode(utf8.encode(s));

/** Run `fn` on the next record of `ring` (verified first), then release it. */
function next<T>(ring: Ring, fn: (r: RecordReader, off: number, len: number) => T): T {
  const off = ring.peek();
  assert.ok(off >= 0, 'expected a record');
  const len = ring.peekLength;
  assert.equal(off % 8, 0, 'ring payloads are 8-aligned');
  verifyRecord(ring.data, off, len);
  const out = fn(new RecordReader(ring.data), off, len);
  ring.skip();
  ring.release();
  return out;
}

function bytes(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 255;
  return b;
}

test('every hot writer round-trips through the generated readers and verifyRecord', () => {
  const ring = Ring.create(1 << 16);
  const p = bytes(100);
  const st = (s: number): void => assert.equal(s, RingStatus.OK);

  st(writeMessage(ring, HANDLE, true, p, 10, 50));
  next(ring, (r, off) => {
    assert.equal(r.kind(off), RecordKind.Message);
    const m = r.message(off);
    assert.equal(m.handle(), HANDLE);
    assert.equal(m.binary(), true);
    assert.deepEqual(m.dataArray(), p.subarray(10, 60));
    const v = m.dataArray()!;
    assert.equal(v.buffer, ring.sab, 'dataArray() is a view into the ring, not a copy');
    assert.equal(vectorStart(m, Slot.MessageData), v.byteOffset - ring.data.byteOffset);
    assert.equal(vectorLength(m, Slot.MessageData), 50);
  });

  st(writeMessage(ring, BIG_HANDLE, false, new Uint8Array(0)));
  next(ring, (r, off) => {
    const m = r.message(off);
    assert.equal(m.handle(), BIG_HANDLE);
    assert.equal(m.binary(), false);
    assert.equal(m.dataLength(), 0);
  });

  st(writeSend(ring, HANDLE, false, p));
  next(ring, (r, off) => {
    assert.equal(r.kind(off), RecordKind.Send);
    const s = r.send(off);
    assert.equal(s.handle(), HANDLE);
    assert.equal(s.binary(), false);
    assert.deepEqual(s.dataArray(), p);
  });

  st(writeOpen(ring, HANDLE));
  next(ring, (r, off) => {
    assert.equal(r.kind(off), RecordKind.Open);
    assert.equal(r.open(off).handle(), HANDLE);
  });

  st(writeClose(ring, HANDLE, 1001, utf8.encode('going away')));
  next(ring, (r, off) => {
    assert.equal(r.kind(off), RecordKind.Close);
    const c = r.close(off);
    assert.equal(c.handle(), HANDLE);
    assert.equal(c.code(), 1001);
    assert.deepEqual(c.reasonArray(), utf8.encode('going away'));
  });

  st(writeDrain(ring, HANDLE, 0xfffffffe));
  next(ring, (r, off) => {
    assert.equal(r.kind(off), RecordKind.Drain);
    assert.equal(r.drain(off).handle(), HANDLE);
    assert.equal(r.drain(off).buffered(), 0xfffffffe);
  });

  const handles = [1, HANDLE, BIG_HANDLE, 2 ** 24 + 5];
  st(writeSendMany(ring, handles, 3, true, p, 5, 7));
  next(ring, (r, off) => {
    assert.equal(r.kind(off), RecordKind.SendMany);
    const s = r.sendMany(off);
    assert.equal(s.handlesLength(), 3);
    assert.deepEqual([s.handles(0), s.handles(1), s.handles(2)], [1, HANDLE, BIG_HANDLE]);
    assert.equal(s.binary(), true);
    assert.deepEqual(s.dataArray(), p.subarray(5, 12));
  });

  st(writeSendMany(ring, new Float64Array(0), 0, false, p, 0, 0));
  next(ring, (r, off) => {
    const s = r.sendMany(off);
    assert.equal(s.handlesLength(), 0);
    assert.equal(s.dataLength(), 0);
  });

  for (const topic of ['', 'room:1', 'ünïcödé', 'emoji \u{1F600}', 'lone \ud800 x \udc00', 'x'.repeat(300)]) {
    st(writePublish(ring, topic, false, p, 1, 3, HANDLE));
    next(ring, (r, off) => {
      assert.equal(r.kind(off), RecordKind.Publish);
      const m = r.publish(off);
      assert.equal(m.topic(), roundTrip(topic));
      assert.equal((m.topic(flatbuffers.Encoding.UTF8_BYTES) as Uint8Array).length, utf8Length(topic));
      assert.equal(m.binary(), false);
      assert.deepEqual(m.dataArray(), p.subarray(1, 4));
      assert.equal(m.exclude(), HANDLE);
    });
    st(writeSubscribe(ring, HANDLE, topic));
    next(ring, (r, off) => {
      assert.equal(r.kind(off), RecordKind.Subscribe);
      assert.equal(r.subscribe(off).handle(), HANDLE);
      assert.equal(r.subscribe(off).topic(), roundTrip(topic));
    });
    st(writeUnsubscribe(ring, BIG_HANDLE, topic));
    next(ring, (r, off) => {
      assert.equal(r.kind(off), RecordKind.Unsubscribe);
      assert.equal(r.unsubscribe(off).handle(), BIG_HANDLE);
      assert.equal(r.unsubscribe(off).topic(), roundTrip(topic));
    });
    st(writeCloseConn(ring, HANDLE, 4000, topic));
    next(ring, (r, off) => {
      assert.equal(r.kind(off), RecordKind.CloseConn);
      const c = r.closeConn(off);
      assert.equal(c.handle(), HANDLE);
      assert.equal(c.code(), 4000);
      assert.equal(c.reason(), roundTrip(topic));
    });
  }

  st(writePublish(ring, 't', true, p)); // default exclude = 0
  next(ring, (r, off) => {
    assert.equal(r.publish(off).exclude(), 0);
    assert.deepEqual(r.publish(off).dataArray(), p);
  });

  st(writeAccept(ring, HANDLE, utf8.encode('{"user":1}')));
  next(ring, (r, off) => {
    assert.equal(r.kind(off), RecordKind.Accept);
    assert.equal(r.accept(off).handle(), HANDLE);
    assert.deepEqual(r.accept(off).userDataArray(), utf8.encode('{"user":1}'));
  });
  st(writeAccept(ring, HANDLE));
  next(ring, (r, off) => {
    assert.equal(r.accept(off).userDataLength(), 0);
  });
});

test('writeSendFrame builds a Send whose data is a WireFrame, both in place', () => {
  const ring = Ring.create(4096);
  const pay = bytes(33);
  for (const [event, id, ref] of [['echo', 0, 7], ['', 42, 0], ['évènement', 1, 0xffffffff]] as const) {
    assert.equal(writeSendFrame(ring, HANDLE, event, id, ref, pay, 1, 32), RingStatus.OK);
    next(ring, (r, off) => {
      assert.equal(r.kind(off), RecordKind.Send);
      const s = r.send(off);
      assert.equal(s.handle(), HANDLE);
      assert.equal(s.binary(), true);
      const start = vectorStart(s, Slot.SendData);
      const len = vectorLength(s, Slot.SendData);
      // The nested buffer alone, read by the generated reader through a fresh ByteBuffer.
      const copy = ring.data.slice(start, start + len);
      const f = fb.WireFrame.getRootAsWireFrame(new flatbuffers.ByteBuffer(copy));
      assert.equal(f.event(), event);
      assert.equal(f.eventId(), id);
      assert.equal(f.ref(), ref);
      assert.deepEqual(f.payloadArray(), pay.subarray(1, 33));
      // ...and in place, through the record reader.
      assert.equal(r.wireFrame(start).event(), event);
    });
  }
});

test('session records (Request, Notice) round-trip and verify', () => {
  const ring = Ring.create(4096);
  assert.equal(writeRequest(ring, {
    op: RequestOp.SendAll, id: 77, handle: -1, text: 'room:ü', handles: [HANDLE, 3], binary: true, data: utf8.encode('hello'),
  }), RingStatus.OK);
  next(ring, (r, off) => {
    assert.equal(r.kind(off), RecordKind.Request);
    const x = r.request(off);
    assert.deepEqual([x.op(), x.id(), x.handle(), x.text(), x.handlesLength(), x.handles(0), x.handles(1), x.binary()],
      [RequestOp.SendAll, 77, -1, 'room:ü', 2, HANDLE, 3, true]);
    assert.equal(Buffer.from(x.dataArray()!).toString(), 'hello');
    assert.equal(verifyRecord(ring.data, off, ring.peekLength), RecordKind.Request);
  });
  assert.equal(writeRequest(ring, { op: RequestOp.Leave, id: 0, handle: HANDLE, text: 'x', handles: null, binary: false, data: null }), RingStatus.OK);
  next(ring, (r, off) => {
    const x = r.request(off);
    assert.deepEqual([x.op(), x.handlesLength(), x.dataArray()], [RequestOp.Leave, 0, null]);
  });
  assert.equal(writeNotice(ring, NoticeOp.Reply, 9, 1, HANDLE, utf8.encode('{"code":"X"}')), RingStatus.OK);
  next(ring, (r, off) => {
    assert.equal(r.kind(off), RecordKind.Notice);
    const x = r.notice(off);
    assert.deepEqual([x.op(), x.id(), x.status(), x.handle()], [NoticeOp.Reply, 9, 1, HANDLE]);
    assert.equal(Buffer.from(x.dataArray()!).toString(), '{"code":"X"}');
    assert.equal(verifyRecord(ring.data, off, ring.peekLength), RecordKind.Notice);
  });
});

test('cold writers (Upgrade, Reject) round-trip', () => {
  const ring = Ring.create(4096);
  const u = {
    handle: HANDLE, module: 3, url: '/chat/lobby', query: 'a=1&b=ü', remoteAddress: '::1',
    headerNames: ['host', 'sec-websocket-protocol'], headerValues: ['example.org', 'v1'], params: ['lobby'],
  };
  assert.equal(writeUpgrade(ring, u), RingStatus.OK);
  next(ring, (r, off) => {
    assert.equal(r.kind(off), RecordKind.Upgrade);
    const x = r.upgrade(off);
    assert.equal(x.handle(), HANDLE);
    assert.equal(x.module(), 3);
    assert.equal(x.url(), u.url);
    assert.equal(x.query(), u.query);
    assert.equal(x.remoteAddress(), u.remoteAddress);
    assert.deepEqual([x.headerNames(0), x.headerNames(1)], u.headerNames);
    assert.deepEqual([x.headerValues(0), x.headerValues(1)], u.headerValues);
    assert.equal(x.paramsLength(), 1);
    assert.equal(x.params(0), 'lobby');
  });
  assert.equal(writeReject(ring, HANDLE, 401, ['www-authenticate'], ['Bearer'], utf8.encode('no')), RingStatus.OK);
  next(ring, (r, off) => {
    assert.equal(r.kind(off), RecordKind.Reject);
    const x = r.reject(off);
    assert.equal(x.handle(), HANDLE);
    assert.equal(x.status(), 401);
    assert.equal(x.headerNames(0), 'www-authenticate');
    assert.equal(x.headerValues(0), 'Bearer');
    assert.deepEqual(x.bodyArray(), utf8.encode('no'));
  });
  assert.throws(() => writeReject(ring, 1, 400, ['a'], [], new Uint8Array(0)), RangeError);
  assert.throws(() => writeUpgrade(ring, { ...u, headerValues: [] }), RangeError);
});

test('FULL leaves the ring unchanged (but counted); TOO_LARGE is reported', () => {
  const ring = Ring.create(1024);
  const p = bytes(200);
  let n = 0;
  while (writeMessage(ring, n + 1, true, p) === RingStatus.OK) n++;
  assert.ok(n >= 3);
  const before = new Uint8Array(ring.sab).slice();
  const used = ring.usedBytes;
  const fulls = ring.fullCount;
  const writers = [
    () => writeMessage(ring, 1, true, p),
    () => writeSend(ring, 1, true, p),
    () => writeSendFrame(ring, 1, 'e', 0, 1, p),
    () => writeSendMany(ring, [1, 2], 2, true, p),
    () => writePublish(ring, 'topic', true, p),
    () => writeClose(ring, 1, 1000, p),
    () => writeAccept(ring, 1, p),
    () => writeReject(ring, 1, 400, [], [], p),
    () => writeUpgrade(ring, { handle: 1, module: 0, url: 'x'.repeat(200), query: '', remoteAddress: '', headerNames: [], headerValues: [], params: [] }),
    () => writeCloseConn(ring, 1, 1000, 'x'.repeat(120)),
    () => writeSubscribe(ring, 1, 'x'.repeat(200)),
    () => writeUnsubscribe(ring, 1, 'x'.repeat(200)),
  ];
  for (const w of writers) assert.equal(w(), RingStatus.FULL);
  assert.equal(ring.usedBytes, used);
  assert.equal(ring.fullCount, fulls + writers.length);
  // Everything but the FULL counter (Int32 index 67, byte 268) is byte-identical.
  const after = new Uint8Array(ring.sab);
  for (let i = 0; i < before.length; i++) {
    if (i >= 268 && i < 272) continue;
    if (after[i] !== before[i]) assert.fail(`byte ${i} changed on FULL`);
  }
  // The records already written are intact.
  for (let i = 0; i < n; i++) next(ring, (r, off) => assert.equal(r.message(off).handle(), i + 1));
  // Bigger than any record the ring can hold.
  assert.equal(writeMessage(ring, 1, true, new Uint8Array(ring.maxRecord)), RingStatus.TOO_LARGE);
  assert.equal(writePublish(ring, 'x'.repeat(ring.maxRecord), true, p, 0, 0), RingStatus.TOO_LARGE);
  assert.equal(ring.usedBytes, 0);
});

test('records stay correct across many ring wraps', () => {
  const ring = Ring.create(1024);
  let w = 0;
  let r = 0;
  for (let round = 0; round < 2000; round++) {
    // Vary sizes so that records land on every position, including right before the end.
    const len = (round * 37) % 150;
    const topic = 't'.repeat(round % 23);
    while (true) {
      const k = w % 3;
      const s = k === 0
        ? writeMessage(ring, w, (w & 1) === 1, bytes(len, w))
        : k === 1 ? writePublish(ring, topic, true, bytes(len, w), 0, len, w) : writeSendFrame(ring, w, topic, w, w, bytes(len, w));
      if (s !== RingStatus.OK) break;
      w++;
    }
    while (r < w) {
      next(ring, (rd, off) => {
        const k = r % 3;
        if (k === 0) {
          const m = rd.message(off);
          assert.equal(m.handle(), r);
          assert.deepEqual(m.dataArray(), bytes(len, r));
        } else if (k === 1) {
          const m = rd.publish(off);
          assert.equal(m.exclude(), r);
          assert.equal(m.topic(), topic);
          assert.deepEqual(m.dataArray(), bytes(len, r));
        } else {
          const f = rd.wireFrame(vectorStart(rd.send(off), Slot.SendData));
          assert.equal(f.ref(), r);
          assert.equal(f.event(), topic);
          assert.deepEqual(f.payloadArray(), bytes(len, r));
        }
      });
      r++;
    }
  }
  assert.ok(w > 5000, `wrote ${w} records`);
});

/** The same field values, built by the generated (Builder-based) API. */
function builderRecords(): { kind: number; bytes: Uint8Array; hand: (ring: Ring) => number }[] {
  const out: { kind: number; bytes: Uint8Array; hand: (ring: Ring) => number }[] = [];
  const data = bytes(9);
  const add = (kind: number, build: (b: flatbuffers.Builder) => number, hand: (ring: Ring) => number): void => {
    const b = new flatbuffers.Builder(64);
    b.finish(build(b));
    const fbBytes = b.asUint8Array();
    const rec = new Uint8Array(4 + fbBytes.length);
    new DataView(rec.buffer).setUint32(0, kind, true);
    rec.set(fbBytes, 4);
    out.push({ kind, bytes: rec, hand });
  };
  add(RecordKind.Message, (b) => fb.Message.createMessage(b, HANDLE, true, fb.Message.createDataVector(b, data)),
    (ring) => writeMessage(ring, HANDLE, true, data));
  add(RecordKind.Send, (b) => fb.Send.createSend(b, HANDLE, true, fb.Send.createDataVector(b, data)),
    (ring) => writeSend(ring, HANDLE, true, data));
  add(RecordKind.Open, (b) => fb.Open.createOpen(b, HANDLE), (ring) => writeOpen(ring, HANDLE));
  add(RecordKind.Close, (b) => fb.Close.createClose(b, HANDLE, 1006, fb.Close.createReasonVector(b, data)),
    (ring) => writeClose(ring, HANDLE, 1006, data));
  add(RecordKind.Drain, (b) => fb.Drain.createDrain(b, HANDLE, 12345), (ring) => writeDrain(ring, HANDLE, 12345));
  add(RecordKind.SendMany, (b) => {
    const hs = fb.SendMany.createHandlesVector(b, [HANDLE, 7]);
    const d = fb.SendMany.createDataVector(b, data);
    return fb.SendMany.createSendMany(b, hs, false, d);
  }, (ring) => writeSendMany(ring, [HANDLE, 7], 2, false, data));
  add(RecordKind.Publish, (b) => {
    const t = b.createString('röom');
    return fb.Publish.createPublish(b, t, true, fb.Publish.createDataVector(b, data), HANDLE);
  }, (ring) => writePublish(ring, 'röom', true, data, 0, data.length, HANDLE));
  add(RecordKind.Subscribe, (b) => fb.Subscribe.createSubscribe(b, HANDLE, b.createString('a')),
    (ring) => writeSubscribe(ring, HANDLE, 'a'));
  add(RecordKind.Unsubscribe, (b) => fb.Unsubscribe.createUnsubscribe(b, HANDLE, b.createString('a')),
    (ring) => writeUnsubscribe(ring, HANDLE, 'a'));
  add(RecordKind.CloseConn, (b) => fb.CloseConn.createCloseConn(b, HANDLE, 4001, b.createString('bye')),
    (ring) => writeCloseConn(ring, HANDLE, 4001, 'bye'));
  add(RecordKind.Accept, (b) => fb.Accept.createAccept(b, HANDLE, fb.Accept.createUserDataVector(b, data)),
    (ring) => writeAccept(ring, HANDLE, data));
  return out;
}

/** Every scalar/string/vector field of a table, as plain data, read by the generated accessors. */
function fieldsOf(kind: number, r: RecordReader, off: number): unknown {
  const arr = (a: Uint8Array | null): number[] | null => (a ? [...a] : null);
  switch (kind) {
    case RecordKind.Message: { const t = r.message(off); return [t.handle(), t.binary(), arr(t.dataArray())]; }
    case RecordKind.Send: { const t = r.send(off); return [t.handle(), t.binary(), arr(t.dataArray())]; }
    case RecordKind.Open: return [r.open(off).handle()];
    case RecordKind.Close: { const t = r.close(off); return [t.handle(), t.code(), arr(t.reasonArray())]; }
    case RecordKind.Drain: { const t = r.drain(off); return [t.handle(), t.buffered()]; }
    case RecordKind.SendMany: {
      const t = r.sendMany(off);
      const hs = [];
      for (let i = 0; i < t.handlesLength(); i++) hs.push(t.handles(i));
      return [hs, t.binary(), arr(t.dataArray())];
    }
    case RecordKind.Publish: { const t = r.publish(off); return [t.topic(), t.binary(), arr(t.dataArray()), t.exclude()]; }
    case RecordKind.Subscribe: { const t = r.subscribe(off); return [t.handle(), t.topic()]; }
    case RecordKind.Unsubscribe: { const t = r.unsubscribe(off); return [t.handle(), t.topic()]; }
    case RecordKind.CloseConn: { const t = r.closeConn(off); return [t.handle(), t.code(), t.reason()]; }
    case RecordKind.Accept: { const t = r.accept(off); return [t.handle(), arr(t.userDataArray())]; }
    default: throw new Error(`kind ${kind}`);
  }
}

test('hand-laid-out records read the same as Builder-built ones, and both verify', () => {
  for (const { kind, bytes: built, hand } of builderRecords()) {
    // Builder version, placed at an odd offset of a bigger buffer (offsets are relative).
    const host = new Uint8Array(built.length + 13);
    host.set(built, 13);
    assert.equal(verifyRecord(host, 13, built.length), kind);
    const expected = fieldsOf(kind, new RecordReader(host), 13);
    const ring = Ring.create(1024);
    assert.equal(hand(ring), RingStatus.OK);
    next(ring, (r, off, len) => {
      assert.equal(verifyRecord(ring.data, off, len), kind);
      assert.deepEqual(fieldsOf(kind, r, off), expected, `kind ${kind}`);
    });
  }
});

test('hbd() reads Message and Send the same from hand-laid and Builder-built records, allocating no view', () => {
  const hbd = (r: RecordReader, data: Uint8Array, off: number, send: boolean): unknown[] => {
    r.hbd(off, send);
    return [r.hbdHandle, r.hbdBinary, [...data.subarray(r.hbdStart, r.hbdStart + r.hbdLength)]];
  };
  const cases: [number, boolean, Uint8Array][] = [[HANDLE, true, bytes(9)], [BIG_HANDLE, false, bytes(1000, 3)], [0, false, new Uint8Array(0)]];
  for (const [handle, binary, data] of cases) {
    for (const kind of [RecordKind.Message, RecordKind.Shed, RecordKind.Send]) {
      const send = kind === RecordKind.Send;
      const expected = [handle, binary, [...data]];
      // Hand layout (the fixed-position path).
      const ring = Ring.create(4096);
      const write = send ? writeSend : kind === RecordKind.Shed ? writeShed : writeMessage;
      assert.equal(write(ring, handle, binary, data), RingStatus.OK);
      next(ring, (r, off) => assert.deepEqual(hbd(r, ring.data, off, send), expected, `hand ${kind}`));
      // Builder layout, at a 4-aligned and at an odd offset (both read through the generated accessors).
      const b = new flatbuffers.Builder(64);
      const vec = fb.Message.createDataVector(b, data);
      b.finish(send ? fb.Send.createSend(b, handle, binary, vec) : kind === RecordKind.Shed
        ? fb.Shed.createShed(b, handle, binary, vec) : fb.Message.createMessage(b, handle, binary, vec));
      const fbBytes = b.asUint8Array();
      for (const at of [16, 13]) {
        const host = new Uint8Array(at + 4 + fbBytes.length);
        new DataView(host.buffer).setUint32(at, kind, true);
        host.set(fbBytes, at + 4);
        assert.equal(verifyRecord(host, at, host.length - at), kind);
        assert.deepEqual(hbd(new RecordReader(host), host, at, send), expected, `builder ${kind} at ${at}`);
      }
    }
  }
  // writeSendFrame shares the layout: its frame bytes come back whole.
  const ring = Ring.create(4096);
  assert.equal(writeSendFrame(ring, HANDLE, 'ev', 3, 4, bytes(5)), RingStatus.OK);
  next(ring, (r, off) => {
    r.hbd(off, true);
    assert.equal(r.hbdHandle, HANDLE);
    assert.deepEqual(r.data.subarray(r.hbdStart, r.hbdStart + r.hbdLength), r.send(off).dataArray());
  });
});

test('hand-laid-out records decode the same with flatc (an independent C++ reader)', (t) => {
  const probe = spawnSync('flatc', ['--version'], { encoding: 'utf8' });
  if (probe.error) {
    t.skip('flatc is not installed (apt-get install flatbuffers-compiler); flatc cross-check skipped');
    return;
  }
  // flatc 2.0.8 --json does not verify (it crashes on bad input), so this checks the layout's
  // values, not its safety; Message/Send data must be a valid nested WireFrame for flatc to print it.
  const root = resolve(fileURLToPath(import.meta.url), '../../../..');
  const dir = mkdtempSync(join(tmpdir(), 'rw-records-'));
  try {
    const ring = Ring.create(1 << 16);
    const frame = encodeFrame({ event: 'ev', eventId: 3, ref: 4, payload: bytes(2) });
    const wf = { event: 'ev', event_id: 3, ref: 4, payload: [...bytes(2)] };
    const cases: [string, () => number, unknown][] = [
      ['Message', () => writeMessage(ring, 5, true, frame), { handle: 5, binary: true, data: wf }],
      ['Send', () => writeSendFrame(ring, 5, 'ev', 3, 4, bytes(2)), { handle: 5, binary: true, data: wf }],
      ['Open', () => writeOpen(ring, HANDLE), { handle: HANDLE }],
      ['Close', () => writeClose(ring, 5, 1001, bytes(3)), { handle: 5, code: 1001, reason: [...bytes(3)] }],
      ['Drain', () => writeDrain(ring, 5, 9), { handle: 5, buffered: 9 }],
      ['SendMany', () => writeSendMany(ring, [1, 2, 3], 3, true, bytes(7)),
        { handles: [1, 2, 3], binary: true, data: [...bytes(7)] }],
      ['Publish', () => writePublish(ring, 'tøpic', true, bytes(5), 0, 5, 4),
        { topic: 'tøpic', binary: true, data: [...bytes(5)], exclude: 4 }],
      ['Subscribe', () => writeSubscribe(ring, 5, 'abc'), { handle: 5, topic: 'abc' }],
      ['Unsubscribe', () => writeUnsubscribe(ring, 5, 'abcd'), { handle: 5, topic: 'abcd' }],
      ['CloseConn', () => writeCloseConn(ring, 5, 1000, 'bye'), { handle: 5, code: 1000, reason: 'bye' }],
      ['Accept', () => writeAccept(ring, 5, bytes(2)), { handle: 5, user_data: [...bytes(2)] }],
    ];
    for (const [name, write, expected] of cases) {
      assert.equal(write(), RingStatus.OK);
      const off = ring.peek();
      const file = join(dir, `${name}.bin`);
      writeFileSync(file, ring.data.slice(off + 4, off + ring.peekLength));
      ring.skip();
      ring.release();
      const r = spawnSync('flatc', [
        '--json', '--strict-json', '--raw-binary', '--root-type', `ringwire.fb.${name}`,
        '-o', dir, '-I', join(root, 'schema'), join(root, 'schema', 'records.fbs'), '--', file,
      ], { encoding: 'utf8' });
      assert.equal(r.status, 0, `flatc could not read the hand-laid ${name}: ${r.stderr}${r.stdout}`);
      assert.deepEqual(JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8')), expected, name);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('writers work on any RecordRing with 4-aligned records, and refuse misaligned ones', () => {
  // A minimal ring: one record at a time at a fixed offset.
  const fake = (data: Uint8Array, at: number) => ({
    data,
    committed: -1,
    reserve(length: number): number { return at + length <= data.length ? at : -1; },
    commit(length?: number): void { this.committed = length ?? -2; },
  });
  const backing = new ArrayBuffer(256);
  const r4 = fake(new Uint8Array(backing, 8, 200), 4); // 4-aligned, not 8-aligned
  assert.equal(writePublish(r4, 'tøpic', true, bytes(20), 0, 20, 9), RingStatus.OK);
  assert.equal(r4.committed, -2);
  verifyRecord(r4.data, 4, 4 + 200 - 8);
  const p = new RecordReader(r4.data).publish(4);
  assert.deepEqual([p.topic(), p.exclude(), [...p.dataArray()!]], ['tøpic', 9, [...bytes(20)]]);
  // Full fake ring: FULL, nothing committed.
  const small = fake(new Uint8Array(16), 0);
  assert.equal(writeOpen(small, 1), RingStatus.FULL);
  assert.equal(small.committed, -1);
  // Misaligned offsets or data are programming errors.
  assert.throws(() => writeOpen(fake(new Uint8Array(backing, 8, 100), 2), 1), RangeError);
  assert.throws(() => writeOpen(fake(new Uint8Array(backing, 2, 100), 0), 1), RangeError);
});

test('writers alternate between rings (per-ring word views are not mixed up)', () => {
  const a = Ring.create(1024);
  const b = Ring.create(2048);
  for (let i = 0; i < 50; i++) {
    assert.equal(writeOpen(i % 2 ? a : b, i), RingStatus.OK);
    assert.equal(writeDrain(i % 3 ? b : a, i, i * 2), RingStatus.OK);
    for (const ring of [a, b]) {
      while (ring.peek() >= 0) {
        const off = ring.peek();
        const k = verifyRecord(ring.data, off, ring.peekLength);
        const r = new RecordReader(ring.data);
        const h = k === RecordKind.Open ? r.open(off).handle() : r.drain(off).handle();
        assert.equal(h, i);
        if (k === RecordKind.Drain) assert.equal(r.drain(off).buffered(), i * 2);
        ring.skip();
        ring.release();
      }
    }
  }
});

test('payload bytes land 8-aligned in the ring (SharedArrayBuffer copies stay memcpy)', () => {
  const ring = Ring.create(1 << 16);
  const abs = (start: number): number => (ring.data.byteOffset + start) % 8;
  for (let n = 0; n < 20; n++) {
    const s = 'é'.repeat(n >> 1) + 'x'.repeat(n & 1);
    assert.equal(writeMessage(ring, 1, true, bytes(n)), RingStatus.OK);
    assert.equal(writeSendFrame(ring, 1, s, 0, 0, bytes(n)), RingStatus.OK);
    assert.equal(writePublish(ring, s, true, bytes(n)), RingStatus.OK);
    assert.equal(writeSendMany(ring, [1, 2, 3], n % 4, true, bytes(n)), RingStatus.OK);
    next(ring, (r, off) => assert.equal(abs(vectorStart(r.message(off), Slot.MessageData)), 0));
    next(ring, (r, off) => {
      const start = vectorStart(r.send(off), Slot.SendData);
      assert.equal(abs(start), 0);
      assert.equal(abs(vectorStart(r.wireFrame(start), Slot.WireFramePayload)), 0, `event ${n} bytes`);
    });
    next(ring, (r, off) => assert.equal(abs(vectorStart(r.publish(off), Slot.PublishData)), 0, `topic ${n}`));
    next(ring, (r, off) => assert.equal(abs(vectorStart(r.sendMany(off), Slot.SendManyData)), 0));
  }
  // A client frame made by encodeFrame has its payload 8-aligned relative to the frame too.
  for (let n = 0; n < 20; n++) {
    const f = encodeFrame({ event: 'e'.repeat(n), payload: bytes(3) });
    const bb = new flatbuffers.ByteBuffer(f);
    assert.equal(vectorStart(fb.WireFrame.getRootAsWireFrame(bb), Slot.WireFramePayload) % 8, 0);
  }
});
