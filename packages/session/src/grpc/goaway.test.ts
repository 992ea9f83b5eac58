/**
 * The parser of what an HTTP/2 client writes: a GOAWAY with an error code
 * is reported wherever the chunks split it; NO_ERROR and other frames are not.
 */
import { expect, it } from 'vitest';
import { outboundGoawayParser } from './goaway.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

function frame(type: number, payload: Buffer, stream = 0): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

function goaway(code: number, debug: string): Buffer {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(3, 0);
  p.writeUInt32BE(code, 4);
  return frame(0x7, Buffer.concat([p, Buffer.from(debug)]));
}

const settings = frame(0x4, Buffer.alloc(12));
// A DATA frame whose payload holds bytes that look like a GOAWAY: payloads are skipped, not parsed.
const data = frame(0x0, goaway(6, 'inside a payload'), 1);

it('reports a GOAWAY carrying an error, whatever the chunking', () => {
  const stream = Buffer.concat([PREFACE, settings, data, goaway(0x6, 'too large frame size')]);
  for (const size of [1, 2, 7, 9, 10, 64, stream.length]) {
    const seen: [number, string][] = [];
    const parse = outboundGoawayParser((code, debug) => seen.push([code, debug]));
    for (let i = 0; i < stream.length; i += size) parse(stream.subarray(i, i + size));
    expect(seen, `chunks of ${size}`).toEqual([[6, 'too large frame size']]);
  }
});

it('ignores a GOAWAY with NO_ERROR (a graceful close) and every other frame', () => {
  const seen: number[] = [];
  const parse = outboundGoawayParser((code) => seen.push(code));
  parse(Buffer.concat([PREFACE, settings, data, frame(0x6, Buffer.alloc(8)), goaway(0, '')]));
  expect(seen).toEqual([]);
});
