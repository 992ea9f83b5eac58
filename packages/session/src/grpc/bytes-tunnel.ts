/**
 * A tunnel made by a `SessionCaller` (BuildKit's grpchijack, the client's
 * end): a byte Duplex over a bidirectional call whose messages are
 * `BytesMessage{data}` in both directions (`Control.Session`). The
 * messages are framed and coded here, straight on the HTTP/2 stream — the
 * message has one field, and every byte of a session travels through it.
 *
 * Each write of the Duplex (node's HTTP/2 session corks its frames: one
 * burst) is one message, and the writes buffered meanwhile are joined, in
 * messages of at most `MAX_MESSAGE_DATA` bytes (`messagePieces` of
 * ../tunnel.ts: well under the daemon's message limit however much
 * backpressure buffered). Ending the writable side half-closes the call;
 * destroying the Duplex resets the stream (CANCEL). The call's end ends the
 * readable side; a status other than OK destroys the Duplex with a
 * `CallError`.
 */
import { constants, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { Duplex } from 'node:stream';
import { Reader, varintSize, writeVarint } from '../fsutil/wire.js';
import { messagePieces } from '../tunnel.js';
import type { CallOptions, SessionCaller } from './caller.js';
import { FrameDecoder } from './framing.js';
import { CallError, Status, statusFromHeaders } from './status.js';

/** `BytesMessage.data`: field 1, length-delimited. */
const TAG_DATA = (1 << 3) | 2;

/** One BytesMessage{data} as a gRPC frame; `data` given in pieces is their concatenation. */
export function bytesMessageFrame(data: Buffer | readonly Buffer[]): Buffer {
  const pieces = Buffer.isBuffer(data) ? [data] : data;
  let length = 0;
  for (const p of pieces) length += p.length;
  const body = length === 0 ? 0 : 1 + varintSize(length) + length;
  const frame = Buffer.allocUnsafe(5 + body);
  frame[0] = 0;
  frame.writeUInt32BE(body, 1);
  if (body === 0) return frame;
  frame[5] = TAG_DATA;
  let at = writeVarint(frame, 6, length);
  for (const p of pieces) at += p.copy(frame, at);
  return frame;
}

/**
 * The `data` of a BytesMessage (a view of `msg`); unknown fields are
 * skipped, the last `data` wins (as protobuf decoders do). Throws on a
 * malformed message.
 */
export function bytesMessageData(msg: Buffer): Buffer {
  let data = msg.subarray(0, 0);
  const r = new Reader(msg, 0, msg.length);
  while (r.at < msg.length) {
    const tag = r.u32();
    if (tag === TAG_DATA) data = r.bytes(true);
    else r.skip(tag & 7);
  }
  return data;
}

/** A Duplex over a new call of `path` (a bidirectional `BytesMessage` method) on `caller`. */
export function bytesMessageTunnel(caller: SessionCaller, path: string, opts: CallOptions & { maxMessageBytes?: number } = {}): Duplex {
  const decoder = new FrameDecoder(opts.maxMessageBytes ?? 16 << 20);
  let stream: ClientHttp2Stream | undefined;
  let failure: CallError | undefined;
  const fail = (code: number, details: string) => {
    failure ??= new CallError(code, details, path);
    if (!duplex.destroyed) duplex.destroy(failure);
  };
  const send = (chunks: readonly Buffer[], callback: (err?: Error | null) => void) => {
    if (!stream || stream.destroyed || stream.writableEnded) return callback(failure ?? new CallError(Status.CANCELLED, 'the session call is over', path));
    let flowing = true;
    for (const pieces of messagePieces(chunks)) flowing = stream.write(bytesMessageFrame(pieces)) && flowing;
    if (flowing) callback();
    else {
      const s = stream;
      const done = () => {
        s.off('drain', done);
        s.off('close', done);
        callback();
      };
      s.on('drain', done);
      s.on('close', done);
    }
  };
  const duplex = new Duplex({
    read() {
      if (stream?.isPaused()) stream.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      send([chunk], callback);
    },
    writev(chunks, callback) {
      send(chunks.map((c) => c.chunk as Buffer), callback);
    },
    final(callback) {
      if (stream && !stream.writableEnded && !stream.destroyed) stream.end();
      callback();
    },
    destroy(err, callback) {
      if (stream && !stream.destroyed) stream.close(constants.NGHTTP2_CANCEL);
      callback(err);
    },
  });
  try {
    opts.signal?.throwIfAborted();
    stream = caller.open(path, opts);
  } catch (err) {
    const e = err instanceof CallError ? err : new CallError(Status.CANCELLED, String((err as Error)?.message ?? err), path);
    process.nextTick(() => duplex.destroy(e));
    return duplex;
  }
  const s = stream;
  if (opts.signal) {
    const onAbort = () => fail(Status.CANCELLED, 'cancelled by the caller');
    opts.signal.addEventListener('abort', onAbort, { once: true });
    s.once('close', () => opts.signal!.removeEventListener('abort', onAbort));
  }
  const statusFrom = (headers: IncomingHttpHeaders) => {
    const { code, details } = statusFromHeaders(headers);
    if (code !== Status.OK) fail(code, details);
  };
  s.on('response', (headers) => {
    const httpStatus = Number(headers[':status']);
    if (httpStatus !== 200) fail(Status.UNKNOWN, `HTTP status ${httpStatus}`);
    else if (headers['grpc-status'] !== undefined) statusFrom(headers);
  });
  s.on('trailers', (headers) => statusFrom(headers));
  s.on('data', (chunk: Buffer) => {
    let messages: Buffer[];
    try {
      messages = decoder.push(chunk);
    } catch (err) {
      fail(Status.INTERNAL, (err as Error).message);
      return;
    }
    let more = true;
    for (const m of messages) {
      let data: Buffer;
      try {
        data = bytesMessageData(m);
      } catch (err) {
        fail(Status.INTERNAL, `cannot decode a session message: ${(err as Error).message}`);
        return;
      }
      if (data.length > 0) more = duplex.push(data);
    }
    if (!more) s.pause();
  });
  s.on('end', () => {
    if (!failure) duplex.push(null);
  });
  s.on('error', () => {}); // the close handler ends the tunnel
  s.on('close', () => {
    if (failure) return;
    if (!s.readableEnded) fail(s.rstCode === constants.NGHTTP2_CANCEL ? Status.CANCELLED : Status.UNAVAILABLE, s.rstCode ? `the stream was reset (HTTP/2 code ${s.rstCode})` : 'the stream closed without a status');
    else duplex.push(null);
  });
  return duplex;
}
