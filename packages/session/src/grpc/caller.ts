/**
 * A gRPC client over one HTTP/2 connection carried by a Duplex: the
 * daemon's side of a session over the tunnel, as BuildKit's daemon dials
 * the hijacked conn (`session/grpc.go grpcClientConn`: one connection
 * only), and bkt's CLI's connection to bktd for a build (its socket).
 * Raw `node:http2` plus gRPC's 5-byte framing; unary and bidirectional
 * streaming calls, each with metadata, a deadline and cancellation. A
 * peer breaking HTTP/2 ends the connection at once (`goaway.ts`), its open
 * calls UNAVAILABLE.
 *
 * `MethodDefinition` is the shape of the method entries of ts-proto's
 * generated service definitions (`FileSyncService.diffCopy`, …), so those
 * serve as codecs directly.
 */
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { Duplex } from 'node:stream';
import { encodeFrame, FrameDecoder, FrameError } from './framing.js';
import { watchOutboundGoaway } from './goaway.js';
import { CallError, Status, statusFromHeaders } from './status.js';

export interface MethodDefinition<Req, Res> {
  /** `/<service>/<method>`. */
  readonly path: string;
  requestSerialize(value: Req): Buffer;
  responseDeserialize(bytes: Buffer): Res;
}

export interface CallOptions {
  /** Call metadata: lower-case keys; a list sends one header field per value. */
  metadata?: Readonly<Record<string, string | readonly string[]>>;
  /** Cancels the call (status CANCELLED). */
  signal?: AbortSignal;
  /** Deadline in milliseconds from now: sent as `grpc-timeout` and enforced here (DEADLINE_EXCEEDED). */
  timeoutMs?: number;
}

/** A bidirectional streaming call. Iterate it for the responses; the iteration throws the call's `CallError`. */
export interface BidiStream<Req, Res> extends AsyncIterable<Res> {
  /** Sends one message; resolves once HTTP/2 took it (backpressure). Rejects when the call is over. */
  write(message: Req): Promise<void>;
  /** Half-closes: no more messages from this side. */
  end(): void;
  /** Ends the call now (RST_STREAM CANCEL); the status becomes CANCELLED. */
  cancel(details?: string): void;
  /** Settles when the call is over: resolves on OK, rejects with `CallError`. */
  readonly status: Promise<void>;
}

export interface CallerOptions {
  /** Largest response message accepted (default 16 MiB, BuildKit's `DefaultMaxRecvMsgSize`). */
  maxMessageBytes?: number;
}

/** Responses buffered per call before its HTTP/2 stream is paused (flow control then stops the sender). */
const HIGH_WATER = 16;

export class SessionCaller {
  private readonly session: ClientHttp2Session;
  private closedFlag = false;
  private readonly maxMessageBytes: number;
  /** Settles once the HTTP/2 connection is gone. */
  readonly closed: Promise<void>;

  private constructor(transport: Duplex, opts: CallerOptions) {
    this.maxMessageBytes = opts.maxMessageBytes ?? 16 << 20;
    let dialed = false;
    // A peer breaking HTTP/2 gets a GOAWAY from nghttp2, which node:http2 does not report: end the connection then.
    watchOutboundGoaway(transport, (code, debug) =>
      setImmediate(() => {
        if (!this.session.destroyed) this.session.destroy(new Error(`HTTP/2 connection error ${code}${debug ? `: ${debug}` : ''}`));
      }),
    );
    this.session = connect('http://localhost', {
      createConnection: () => {
        if (dialed) throw new Error('only one connection allowed');
        dialed = true;
        return transport;
      },
      settings: { enablePush: false, initialWindowSize: 4 << 20 },
    });
    this.session.on('connect', () => {
      if (!this.session.destroyed) this.session.setLocalWindowSize(16 << 20);
    });
    this.session.on('error', () => {}); // reported to each call through its stream's close
    this.closed = new Promise((resolve) => this.session.once('close', () => {
      this.closedFlag = true;
      resolve();
    }));
  }

  /** A caller over `transport`, which carries exactly one HTTP/2 connection. */
  static connect(transport: Duplex, opts: CallerOptions = {}): SessionCaller {
    return new SessionCaller(transport, opts);
  }

  get isClosed(): boolean {
    return this.closedFlag || this.session.closed || this.session.destroyed;
  }

  /** Closes the connection; calls still open end with UNAVAILABLE. */
  close(): void {
    if (!this.session.destroyed) this.session.destroy();
  }

  async unary<Req, Res>(method: MethodDefinition<Req, Res>, request: Req, opts: CallOptions = {}): Promise<Res> {
    const call = this.stream(method, opts);
    let response: Res | undefined;
    let count = 0;
    try {
      await call.write(request);
      call.end();
      for await (const message of call) {
        response = message;
        count++;
      }
    } catch (err) {
      await call.status.catch(() => {});
      throw err;
    }
    await call.status;
    if (count !== 1) throw new CallError(Status.INTERNAL, `a unary call answered ${count} messages`, method.path);
    return response!;
  }

  stream<Req, Res>(method: MethodDefinition<Req, Res>, opts: CallOptions = {}): BidiStream<Req, Res> {
    return new H2Call(this, method, opts, this.maxMessageBytes);
  }

  /** @internal */
  open(path: string, opts: CallOptions): ClientHttp2Stream {
    if (this.isClosed) throw new CallError(Status.UNAVAILABLE, 'the session is closed', path);
    const headers: Record<string, string | string[]> = {
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
    };
    for (const [key, value] of Object.entries(opts.metadata ?? {})) headers[key.toLowerCase()] = typeof value === 'string' ? value : [...value];
    if (opts.timeoutMs !== undefined) headers['grpc-timeout'] = `${Math.max(1, Math.ceil(opts.timeoutMs))}m`;
    return this.session.request(headers, { endStream: false });
  }
}

class H2Call<Req, Res> implements BidiStream<Req, Res> {
  private readonly stream: ClientHttp2Stream | undefined;
  private readonly decoder: FrameDecoder;
  private readonly queue: Res[] = [];
  private waiter: (() => void) | undefined;
  /** The call's outcome once known: from the trailers, or decided here (cancel, deadline, broken stream). */
  private outcome: CallError | null | undefined;
  private over = false;
  private readonly settle: { resolve(): void; reject(err: CallError): void };
  readonly status: Promise<void>;
  private readonly cleanups: (() => void)[] = [];

  constructor(
    caller: SessionCaller,
    private readonly method: MethodDefinition<Req, Res>,
    opts: CallOptions,
    maxMessageBytes: number,
  ) {
    let resolve!: () => void;
    let reject!: (err: CallError) => void;
    this.status = new Promise<void>((ok, fail) => {
      resolve = ok;
      reject = fail;
    });
    this.status.catch(() => {}); // observed through iteration or `status`
    this.settle = { resolve, reject };
    this.decoder = new FrameDecoder(maxMessageBytes);
    try {
      opts.signal?.throwIfAborted();
      this.stream = caller.open(method.path, opts);
    } catch (err) {
      this.finish(err instanceof CallError ? err : new CallError(Status.CANCELLED, String((err as Error)?.message ?? err), method.path));
      return;
    }
    const stream = this.stream;
    if (opts.signal) {
      const onAbort = () => this.cancel('cancelled by the caller');
      opts.signal.addEventListener('abort', onAbort, { once: true });
      this.cleanups.push(() => opts.signal!.removeEventListener('abort', onAbort));
    }
    if (opts.timeoutMs !== undefined) {
      const timer = setTimeout(() => this.abortWith(Status.DEADLINE_EXCEEDED, `deadline of ${opts.timeoutMs} ms exceeded`), opts.timeoutMs);
      this.cleanups.push(() => clearTimeout(timer));
    }
    stream.on('response', (headers) => {
      const httpStatus = Number(headers[':status']);
      if (httpStatus !== 200) this.abortWith(Status.UNKNOWN, `HTTP status ${httpStatus}`);
      else if (headers['grpc-status'] !== undefined) this.statusFrom(headers); // trailers-only
    });
    stream.on('trailers', (headers) => this.statusFrom(headers));
    stream.on('data', (chunk: Buffer) => {
      let messages: Buffer[];
      try {
        messages = this.decoder.push(chunk);
      } catch (err) {
        const code = err instanceof FrameError && err.kind === 'too-large' ? Status.RESOURCE_EXHAUSTED : Status.INTERNAL;
        this.abortWith(code, (err as Error).message);
        return;
      }
      for (const m of messages) {
        try {
          this.queue.push(this.method.responseDeserialize(m));
        } catch (err) {
          this.abortWith(Status.INTERNAL, `cannot decode a response: ${(err as Error).message}`);
          return;
        }
      }
      if (this.queue.length >= HIGH_WATER) stream.pause();
      this.wake();
    });
    stream.on('end', () => this.completeOnStatus());
    stream.on('error', () => {}); // the close handler decides the outcome
    stream.on('close', () => {
      if (this.outcome === undefined) {
        const rst = stream.rstCode;
        this.outcome = new CallError(
          rst === constants.NGHTTP2_CANCEL ? Status.CANCELLED : Status.UNAVAILABLE,
          rst ? `the stream was reset (HTTP/2 code ${rst})` : 'the stream closed without a status',
          this.method.path,
        );
      }
      this.finish(this.outcome);
    });
  }

  async write(message: Req): Promise<void> {
    const stream = this.stream;
    if (this.over || !stream || stream.closed || stream.destroyed || stream.writableEnded) {
      throw this.outcome ?? new CallError(Status.CANCELLED, 'the call is over', this.method.path);
    }
    const frame = encodeFrame(this.method.requestSerialize(message));
    if (stream.write(frame)) return;
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        stream.off('drain', done);
        stream.off('close', done);
        if (this.over && this.outcome) reject(this.outcome);
        else resolve();
      };
      stream.on('drain', done);
      stream.on('close', done);
    });
  }

  end(): void {
    const stream = this.stream;
    if (stream && !stream.writableEnded && !stream.destroyed) stream.end();
  }

  cancel(details = 'cancelled'): void {
    this.abortWith(Status.CANCELLED, details);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Res> {
    for (;;) {
      if (this.queue.length > 0) {
        const next = this.queue.shift()!;
        if (this.queue.length < HIGH_WATER / 4 && this.stream?.isPaused()) this.stream.resume();
        yield next;
        continue;
      }
      if (this.over) {
        if (this.outcome) throw this.outcome;
        return;
      }
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }

  private statusFrom(headers: IncomingHttpHeaders): void {
    if (this.outcome !== undefined) return;
    const { code, details } = statusFromHeaders(headers);
    this.outcome = code === Status.OK ? null : new CallError(code, details, this.method.path);
    this.completeOnStatus();
  }

  /**
   * The server's status ends the call once its messages have been read,
   * even while this side has not half-closed: this side is then closed too.
   */
  private completeOnStatus(): void {
    const stream = this.stream;
    if (this.outcome === undefined || !stream?.readableEnded) return;
    this.finish(this.outcome);
    if (!stream.closed && !stream.destroyed) stream.close();
  }

  /** Decides the outcome here and resets the stream. */
  private abortWith(code: number, details: string): void {
    if (this.outcome === undefined) this.outcome = new CallError(code, details, this.method.path);
    const stream = this.stream;
    if (stream && !stream.destroyed) stream.close(constants.NGHTTP2_CANCEL);
    else this.finish(this.outcome);
  }

  private finish(outcome: CallError | null | undefined): void {
    if (this.over) return;
    this.over = true;
    this.outcome = outcome ?? null;
    if (this.outcome === null && this.decoder.pending > 0) {
      this.outcome = new CallError(Status.INTERNAL, `the stream ended inside a message (${this.decoder.pending} bytes left)`, this.method.path);
    }
    for (const cleanup of this.cleanups.splice(0)) cleanup();
    if (this.outcome) this.settle.reject(this.outcome);
    else this.settle.resolve();
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}
