/**
 * The receive windows of a client's connection that carries a session.
 *
 * grpc-js serves with HTTP/2's default windows: 64 KiB per stream and per
 * connection. A session's tunnel (`Control.Session`) carries everything the
 * client sends the build — a context's stat entries, the bytes of its
 * files — so at 64 KiB a client is paced by this daemon's WINDOW_UPDATEs,
 * which wait for its event loop (a warm 2,000-file sync stalled the client
 * about every 100 KB, each time until the daemon had decoded what came).
 *
 * `widenReceiveWindows(call)` raises the windows of the call's connection
 * to the session tunnel's own (`SessionCaller`: 4 MiB a stream, 16 MiB
 * the connection): a SETTINGS frame with the new initial window size,
 * which by HTTP/2's rules (RFC 9113 §6.9.2) also grows the streams already
 * open, and a WINDOW_UPDATE for the connection. It buffers nothing more in
 * the end: what the client sends through the tunnel is frames of the inner
 * connection, which the inner windows bound already. Once a connection;
 * a call whose HTTP/2 session cannot be found (another grpc-js inside) is
 * left as it is: this is about speed, never about what a build gets.
 */
import type { Http2Session } from 'node:http2';

/** The initial window of each stream of a session's connection (SessionCaller's). */
export const SESSION_STREAM_WINDOW = 4 << 20;
/** The window of the connection as a whole (SessionCaller's). */
export const SESSION_CONNECTION_WINDOW = 16 << 20;

const widened = new WeakSet<Http2Session>();

/**
 * Raises the receive windows of the HTTP/2 connection that `call` (a
 * grpc-js server call) came on; returns whether it found the connection.
 */
export function widenReceiveWindows(call: object): boolean {
  const session = http2SessionOf(call);
  if (!session) return false;
  if (widened.has(session) || session.destroyed || session.closed) return true;
  widened.add(session);
  try {
    session.settings({ initialWindowSize: SESSION_STREAM_WINDOW });
    session.setLocalWindowSize(SESSION_CONNECTION_WINDOW);
  } catch {
    // A connection going away meanwhile: its calls end with it.
  }
  return true;
}

/**
 * The HTTP/2 session under a grpc-js server call: the handler's call wraps
 * grpc-js's intercepting call (`call`, then `nextCall` through any
 * interceptors), whose base holds the HTTP/2 stream (`stream.session`).
 */
function http2SessionOf(call: object): Http2Session | undefined {
  let inner = (call as { call?: unknown }).call;
  for (let depth = 0; inner && typeof inner === 'object' && depth < 16; depth++) {
    const stream = (inner as { stream?: { session?: unknown } }).stream;
    const session = stream?.session;
    if (session && typeof (session as Http2Session).setLocalWindowSize === 'function') return session as Http2Session;
    inner = (inner as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}
