/**
 * A gRPC server over HTTP/2 connections carried by Duplexes: the client's
 * side of a session, serving its services over the `Control.Session`
 * tunnel to the daemon, which is the HTTP/2 client (BuildKit's session
 * runs a grpc-go server the same way). Raw `node:http2` plus gRPC's 5-byte
 * framing (`framing.ts`): unary, server-streaming and bidirectional
 * methods; metadata; `grpc-timeout` deadlines; statuses in trailers (or a
 * trailers-only response); cancellation by RST_STREAM; HTTP/2 flow control
 * as backpressure. No compression is offered, so a compressed message is an
 * error. An unknown method ends UNIMPLEMENTED, as grpc-go and grpc-js do.
 *
 * `ServedMethod` is the shape of the method entries of ts-proto's generated
 * service definitions (`FileSyncService.diffCopy`, …), so those serve as
 * codecs directly.
 */
import { EventEmitter } from 'node:events';
import { constants, performServerHandshake, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { headerMapOf, type HeaderMap } from '../headers.js';
import { encodeFrame, FrameDecoder, FrameError } from './framing.js';
import { Status, statusHeaders } from './status.js';

export interface ServedMethod<Req, Res> {
  /** `/<service>/<method>`. */
  readonly path: string;
  requestDeserialize(bytes: Buffer): Req;
  responseSerialize(value: Res): Buffer;
}

/** The status a call ends with. */
export interface CallStatus {
  code: number;
  details: string;
}

/**
 * One call being served. Events: `data` (a request message), `end` (the
 * daemon half-closed), `cancelled` (the daemon reset the stream, the
 * deadline passed or the connection ended before this side ended the
 * call), `drain` (`write` may go on).
 */
export class ServerCall<Req, Res> extends EventEmitter {
  /** The call's metadata, lower-cased names (pseudo-headers left out). */
  readonly metadata: HeaderMap;
  /** The daemon cancelled the call (or its deadline passed): nothing more is sent. */
  cancelled = false;
  /** This side ended the call (a status was sent). */
  writableEnded = false;
  private headersSent = false;
  private pendingStatus: CallStatus | undefined;
  private timer: NodeJS.Timeout | undefined;

  /** @internal */
  constructor(
    private readonly stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    private readonly method: ServedMethod<Req, Res>,
    maxMessageBytes: number,
  ) {
    super();
    this.metadata = headerMapOf(headers);
    const decoder = new FrameDecoder(maxMessageBytes);
    // The stream is read once the handler listens for messages (it may first await something):
    // until then HTTP/2 flow control holds the daemon's messages back, and nothing is lost.
    const read = (event: string | symbol) => {
      if (event !== 'data') return;
      this.off('newListener', read);
      process.nextTick(() => stream.on('data', onData));
    };
    this.on('newListener', read);
    const onData = (chunk: Buffer) => {
      if (this.writableEnded) return;
      let messages: Buffer[];
      try {
        messages = decoder.push(chunk);
      } catch (err) {
        const e = err as FrameError;
        this.abort({ code: e.kind === 'too-large' ? Status.RESOURCE_EXHAUSTED : Status.INTERNAL, details: e.message });
        return;
      }
      for (const m of messages) {
        let request: Req;
        try {
          request = method.requestDeserialize(m);
        } catch (err) {
          this.abort({ code: Status.INTERNAL, details: `cannot decode a request message: ${(err as Error).message}` });
          return;
        }
        this.emit('data', request);
        if (this.writableEnded) return;
      }
    };
    stream.on('end', () => {
      if (decoder.pending > 0) {
        this.abort({ code: Status.INTERNAL, details: `the request ended inside a message (${decoder.pending} bytes left)` });
        return;
      }
      // A reset stream or a lost connection ends the readable side too, and is told ('aborted',
      // then 'close') a little later: the end counts once that had its chance, so that a
      // cancelled call is never taken for a completed one.
      setImmediate(() =>
        setImmediate(() => {
          if (!this.cancelled && !stream.aborted) this.emit('end');
        }),
      );
    });
    stream.on('drain', () => this.emit('drain'));
    stream.on('wantTrailers', () => {
      const status = this.pendingStatus ?? { code: Status.OK, details: '' };
      stream.sendTrailers(statusHeaders(status));
    });
    stream.on('error', () => {}); // the close handler tells what it means
    stream.on('close', () => {
      clearTimeout(this.timer);
      // Closed before this side ended the call: reset by the daemon, or the connection went away.
      if (!this.writableEnded || stream.aborted) this.markCancelled();
    });
    const timeoutMs = parseTimeout(headers['grpc-timeout']);
    if (timeoutMs !== undefined) this.armDeadline(performance.now() + timeoutMs);
  }

  /**
   * Ends the call DEADLINE_EXCEEDED at `deadline` (`performance.now()` time). A deadline
   * further than one timer can wait (grpc-go sends 30 days as `2592000S`) is reached in steps.
   */
  private armDeadline(deadline: number): void {
    const left = deadline - performance.now();
    this.timer =
      left > MAX_TIMER_MS
        ? setTimeout(() => this.armDeadline(deadline), MAX_TIMER_MS)
        : setTimeout(() => this.abort({ code: Status.DEADLINE_EXCEEDED, details: 'Deadline exceeded' }), Math.max(0, left));
  }

  /** `/<service>/<method>`. */
  getPath(): string {
    return this.method.path;
  }

  /**
   * Sends one response message; false when the stream's buffer is full (wait for `drain`).
   * Throws what the method's `responseSerialize` throws, before anything is sent.
   */
  write(message: Res): boolean {
    if (this.writableEnded || this.cancelled || this.stream.destroyed) return false;
    const frame = encodeFrame(this.method.responseSerialize(message));
    this.sendHeaders();
    return this.stream.write(frame);
  }

  /** Ends the call with status OK once what was written is sent. */
  end(): void {
    this.finish({ code: Status.OK, details: '' });
  }

  /** Ends the call with `status` (an error the daemon sees as the call's status). */
  fail(status: CallStatus): void {
    this.finish(status);
  }

  pause(): void {
    this.stream.pause();
  }

  resume(): void {
    this.stream.resume();
  }

  isPaused(): boolean {
    return this.stream.isPaused();
  }

  private sendHeaders(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  }

  private finish(status: CallStatus): void {
    if (this.writableEnded || this.cancelled) return;
    this.writableEnded = true;
    clearTimeout(this.timer);
    const stream = this.stream;
    if (stream.destroyed || stream.closed) return;
    if (!this.headersSent) {
      // Trailers-only: the status in the one HEADERS frame.
      this.headersSent = true;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...statusHeaders(status) }, { endStream: true });
    } else {
      this.pendingStatus = status;
      stream.end();
    }
    // Whatever the daemon still sends is not read: the stream closes once both sides are done.
    if (!stream.readableEnded) stream.resume();
  }

  /** Ends the call with `status` from this side (a bad request, the deadline): to its handler, the call is cancelled. */
  private abort(status: CallStatus): void {
    if (this.writableEnded || this.cancelled) return;
    this.finish(status);
    this.markCancelled();
  }

  private markCancelled(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.emit('cancelled');
  }
}

/** A unary method's handler: the request, and the call (its metadata); resolves with the response or rejects with an error. */
export type UnaryHandler<Req, Res> = (request: Req, call: ServerCall<Req, Res>) => Promise<Res>;
/** A server-streaming method's handler: writes to the call and ends it. */
export type ServerStreamHandler<Req, Res> = (request: Req, call: ServerCall<Req, Res>) => void;
/** A bidirectional method's handler. */
export type BidiHandler<Req, Res> = (call: ServerCall<Req, Res>) => void;

export interface GrpcServerOptions {
  /** Largest request message accepted (default 4 MiB, grpc-go's and grpc-js's servers' default). */
  maxMessageBytes?: number;
  /** The status of a handler's error (default: UNKNOWN with its message). */
  statusOf?: (err: unknown) => CallStatus;
}

type Route = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;

export class GrpcServer {
  private readonly routes = new Map<string, Route>();
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly maxMessageBytes: number;
  private readonly statusOf: (err: unknown) => CallStatus;
  private closed = false;

  constructor(opts: GrpcServerOptions = {}) {
    this.maxMessageBytes = opts.maxMessageBytes ?? 4 << 20;
    this.statusOf = opts.statusOf ?? ((err) => ({ code: Status.UNKNOWN, details: messageOf(err) }));
  }

  /** `/<service>/<method>` of every method served, in the order added. */
  get paths(): string[] {
    return [...this.routes.keys()];
  }

  unary<Req, Res>(method: ServedMethod<Req, Res>, handler: UnaryHandler<Req, Res>): void {
    this.single(method, (request, call) => {
      new Promise<Res>((resolve) => resolve(handler(request, call)))
        .then(
          (response) => {
            try {
              call.write(response);
            } catch (err) {
              call.fail({ code: Status.INTERNAL, details: `cannot encode the response of ${method.path}: ${messageOf(err)}` });
              return;
            }
            call.end();
          },
          (err: unknown) => call.fail(this.statusOf(err)),
        )
        .catch((err: unknown) => call.fail({ code: Status.INTERNAL, details: `the status of a failed call of ${method.path}: ${messageOf(err)}` }));
    });
  }

  serverStream<Req, Res>(method: ServedMethod<Req, Res>, handler: ServerStreamHandler<Req, Res>): void {
    this.single(method, handler);
  }

  bidi<Req, Res>(method: ServedMethod<Req, Res>, handler: BidiHandler<Req, Res>): void {
    this.route(method.path, (stream, headers) => handler(new ServerCall(stream, headers, method, this.maxMessageBytes)));
  }

  /** Serves the HTTP/2 connection carried by `transport`. */
  serve(transport: Duplex): void {
    if (this.closed) {
      transport.destroy();
      return;
    }
    const session = performServerHandshake(transport, { settings: { initialWindowSize: 4 << 20 } });
    this.sessions.add(session);
    session.on('connect', () => {
      if (!session.destroyed) session.setLocalWindowSize(16 << 20);
    });
    session.on('stream', (stream, headers) => this.dispatch(stream, headers));
    session.on('error', () => {}); // its streams close, and with them their calls
    session.on('close', () => this.sessions.delete(session));
  }

  /** Stops serving: open calls are cancelled, connections closed. */
  close(): void {
    this.closed = true;
    for (const session of this.sessions) session.destroy();
    this.sessions.clear();
  }

  /**
   * A method with one request message: the handler runs once it arrived and the daemon
   * half-closed. A second message ends the call INTERNAL at once.
   */
  private single<Req, Res>(method: ServedMethod<Req, Res>, handler: (request: Req, call: ServerCall<Req, Res>) => void): void {
    this.route(method.path, (stream, headers) => {
      const call = new ServerCall(stream, headers, method, this.maxMessageBytes);
      let request: { value: Req } | undefined;
      call.on('data', (r: Req) => {
        if (request) call.fail({ code: Status.INTERNAL, details: `a call of ${method.path} sent a second request message; it takes one` });
        else request = { value: r };
      });
      call.on('end', () => {
        if (call.writableEnded) return;
        if (!request) call.fail({ code: Status.INTERNAL, details: `a call of ${method.path} sent no request message; it takes one` });
        else handler(request.value, call);
      });
    });
  }

  private route(path: string, route: Route): void {
    if (this.routes.has(path)) throw new Error(`${path} is served already`);
    this.routes.set(path, route);
  }

  private dispatch(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', () => {});
    const path = String(headers[':path'] ?? '');
    const refuse = (code: number, details: string) => {
      if (!stream.destroyed && !stream.headersSent) stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...statusHeaders({ code, details }) }, { endStream: true });
      stream.resume();
    };
    if (headers[':method'] !== 'POST' || !String(headers['content-type'] ?? '').startsWith('application/grpc')) {
      if (!stream.destroyed) stream.respond({ ':status': 415 }, { endStream: true });
      stream.resume();
      return;
    }
    const encoding = headers['grpc-encoding'];
    if (encoding !== undefined && encoding !== 'identity') {
      refuse(Status.UNIMPLEMENTED, `message encoding ${String(encoding)} is not supported`);
      return;
    }
    const route = this.routes.get(path);
    if (!route) {
      refuse(Status.UNIMPLEMENTED, `unknown method ${path}`);
      return;
    }
    route(stream, headers);
  }
}

/** The longest delay `setTimeout` takes (2³¹−1 ms); a longer one fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 1e-3, n: 1e-6 };

/** `grpc-timeout` (1–8 digits and a unit) in ms; undefined when absent or malformed (no deadline, as grpc-go). */
function parseTimeout(value: string | string[] | undefined): number | undefined {
  const m = typeof value === 'string' ? /^(\d{1,8})([HMSmun])$/.exec(value) : null;
  return m ? Number(m[1]) * TIMEOUT_UNITS[m[2]!]! : undefined;
}
