/**
 * The tunnel: a byte Duplex over a `Control.Session` call, whose messages
 * are `BytesMessage{data}` in both directions (BuildKit's
 * `session/grpchijack`). The chunks of one write of the HTTP/2 connection
 * (node's stream socket corks its frames together) become one message, so a
 * burst of small frames costs one message, not one per frame; what
 * backpressure buffered is joined too, in messages of at most
 * `MAX_MESSAGE_DATA` bytes (well under either end's message limit). The data
 * of the messages read is the byte stream, in order. The client end is the call
 * it made (`ControlClient.session`), the daemon's end the call it serves.
 */
import { Duplex } from 'node:stream';

/** Most bytes of data in one message a tunnel sends. */
export const MAX_MESSAGE_DATA = 1 << 20;

/**
 * The chunks of one write as the pieces of each message, in order: whole
 * chunks joined, a chunk split where a message would pass `max` bytes. One
 * chunk of at most `max` is one message.
 */
export function messagePieces(chunks: readonly Buffer[], max = MAX_MESSAGE_DATA): Buffer[][] {
  if (chunks.length === 1 && chunks[0]!.length <= max) return [[chunks[0]!]];
  const messages: Buffer[][] = [];
  let pieces: Buffer[] = [];
  let size = 0;
  for (const chunk of chunks) {
    for (let at = 0; at < chunk.length; ) {
      const piece = chunk.subarray(at, at + max - size);
      pieces.push(piece);
      size += piece.length;
      at += piece.length;
      if (size === max) {
        messages.push(pieces);
        pieces = [];
        size = 0;
      }
    }
  }
  if (size > 0) messages.push(pieces);
  return messages;
}

/** What the tunnel needs of a grpc-js duplex call of `BytesMessage`s (client or server side). */
export interface BytesMessageCall {
  write(message: { data: Buffer }, cb?: (err?: Error | null) => void): boolean;
  end(): void;
  pause(): unknown;
  resume(): unknown;
  on(event: 'data', listener: (message: { data: Buffer }) => void): unknown;
  on(event: 'end' | 'drain' | 'close' | 'cancelled' | 'finish', listener: () => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  once(event: 'drain', listener: () => void): unknown;
  /** A client call: RST the call (grpc-js `ClientDuplexStream.cancel`). */
  cancel?(): void;
}

/**
 * A Duplex over `call`. Ending the Duplex's writable side half-closes the
 * call (a client) or ends it with status OK (a server); destroying it
 * cancels a client call and ends a server call. The call ending ends the
 * readable side; a call error destroys the Duplex with it.
 */
export function tunnelOf(call: BytesMessageCall): Duplex {
  let callOver = false;
  const send = (chunks: readonly Buffer[], callback: (err?: Error | null) => void) => {
    if (callOver) return callback(new Error('session stream closed'));
    let flowing = true;
    for (const pieces of messagePieces(chunks)) flowing = call.write({ data: pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces) }) && flowing;
    if (flowing) callback();
    else call.once('drain', () => callback());
  };
  const duplex = new Duplex({
    read() {
      call.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      send([chunk], callback);
    },
    writev(chunks, callback) {
      send(chunks.map((c) => c.chunk as Buffer), callback);
    },
    final(callback) {
      if (!callOver) call.end();
      callback();
    },
    destroy(err, callback) {
      if (!callOver) {
        callOver = true;
        if (call.cancel) call.cancel();
        else call.end();
      }
      callback(err);
    },
  });
  call.on('data', (message) => {
    if (message.data.length > 0 && !duplex.push(message.data)) call.pause();
  });
  call.on('end', () => duplex.push(null));
  call.on('cancelled', () => {
    callOver = true;
    duplex.destroy();
  });
  call.on('close', () => {
    callOver = true;
    duplex.push(null);
  });
  call.on('error', (err) => {
    callOver = true;
    duplex.destroy(err);
  });
  return duplex;
}
