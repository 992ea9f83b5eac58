/**
 * The tunnel: a byte Duplex over a `Control.Session` call, whose messages
 * are `BytesMessage{data}` in both directions (BuildKit's
 * `session/grpchijack`). The chunks of one write of the HTTP/2 connection
 * (node's stream socket corks its frames together) become one message, so a
 * burst of small frames costs one message, not one per frame; the data of
 * the messages read is the byte stream, in order. The client end is the call
 * it made (`ControlClient.session`), the daemon's end the call it serves.
 */
import { Duplex } from 'node:stream';

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
  const send = (data: Buffer, callback: (err?: Error | null) => void) => {
    if (callOver) return callback(new Error('session stream closed'));
    if (call.write({ data })) callback();
    else call.once('drain', () => callback());
  };
  const duplex = new Duplex({
    read() {
      call.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      send(chunk, callback);
    },
    writev(chunks, callback) {
      send(chunks.length === 1 ? (chunks[0]!.chunk as Buffer) : Buffer.concat(chunks.map((c) => c.chunk as Buffer)), callback);
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
