/**
 * The GOAWAY this side sends. When the peer breaks HTTP/2 (a frame too
 * large, a frame on the wrong stream, garbage), nghttp2 answers with a
 * GOAWAY carrying an error code and stops reading — but node:http2 tells
 * its user nothing: no 'error', no 'close', calls opened after it never
 * end. Reading the frames this side writes is how the caller learns the
 * connection is over.
 */
import type { Duplex } from 'node:stream';

/** The client connection preface (RFC 9113 §3.4), written before the first frame. */
const CLIENT_PREFACE_BYTES = 24;
const FRAME_HEADER_BYTES = 9;
const TYPE_GOAWAY = 0x7;
/** Of a GOAWAY's debug data, this much is kept for the message. */
const DEBUG_BYTES = 256;

/**
 * A parser of the byte stream an HTTP/2 client writes (preface, then
 * frames, in any chunking): calls `onError(code, debug)` for each GOAWAY
 * whose error code is not NO_ERROR.
 */
export function outboundGoawayParser(onError: (code: number, debug: string) => void): (chunk: Uint8Array) => void {
  let skip = CLIENT_PREFACE_BYTES;
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  let headerFill = 0;
  let payloadLeft = 0;
  /** The kept start of the GOAWAY payload being read (last stream id, error code, debug data). */
  let goaway: Buffer | undefined;
  let goawayFill = 0;

  const goawayRead = () => {
    if (goaway && goaway.length >= 8) {
      const code = goaway.readUInt32BE(4);
      if (code !== 0) onError(code, goaway.subarray(8).toString('utf8'));
    }
    goaway = undefined;
  };

  return (chunk) => {
    let i = 0;
    while (i < chunk.length) {
      if (skip > 0) {
        const n = Math.min(skip, chunk.length - i);
        skip -= n;
        i += n;
      } else if (payloadLeft > 0) {
        const n = Math.min(payloadLeft, chunk.length - i);
        if (goaway && goawayFill < goaway.length) {
          const kept = Math.min(n, goaway.length - goawayFill);
          goaway.set(chunk.subarray(i, i + kept), goawayFill);
          goawayFill += kept;
        }
        payloadLeft -= n;
        i += n;
        if (payloadLeft === 0) goawayRead();
      } else {
        const n = Math.min(FRAME_HEADER_BYTES - headerFill, chunk.length - i);
        header.set(chunk.subarray(i, i + n), headerFill);
        headerFill += n;
        i += n;
        if (headerFill < FRAME_HEADER_BYTES) continue;
        headerFill = 0;
        payloadLeft = header.readUIntBE(0, 3);
        goaway = header[3] === TYPE_GOAWAY ? Buffer.alloc(Math.min(payloadLeft, 8 + DEBUG_BYTES)) : undefined;
        goawayFill = 0;
        if (payloadLeft === 0) goawayRead();
      }
    }
  };
}

/** Calls `onError` when the HTTP/2 client writing to `transport` sends a GOAWAY with an error. */
export function watchOutboundGoaway(transport: Duplex, onError: (code: number, debug: string) => void): void {
  const parse = outboundGoawayParser(onError);
  const write = transport.write.bind(transport) as (...args: unknown[]) => boolean;
  transport.write = ((chunk: unknown, ...rest: unknown[]) => {
    if (chunk instanceof Uint8Array) parse(chunk);
    return write(chunk, ...rest);
  }) as Duplex['write'];
}
