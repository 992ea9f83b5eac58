/**
 * A GET whose answer is bulk data (a blob): HTTP/1.1 over a connection of
 * its own (`Connection: close`), the body handed on as the socket read it.
 * For a large body node:http costs about half as much CPU again as the
 * socket's reads themselves (its parser, an IncomingMessage push and stream
 * bookkeeping per read); here the framing (Content-Length, chunked, or to the
 * close) is a few comparisons per read, and each piece of body is a view of
 * the read's buffer (no copy). A plain-TCP socket reads into 1 MiB slabs
 * (`onread`): a read takes what the socket holds, often several times node's
 * 64 KiB, so fewer pieces travel down to the consumer.
 *
 * The answer is the transport's `HttpResponse`, with node:http's conventions:
 * lower-case header names, repeated headers joined with ", " (`set-cookie` an
 * array, the single-valued ones such as `content-length` or `location` the
 * first), connection failures as errors with the socket's `code`, a body that
 * ends before its framing says with an `ECONNRESET` "aborted" error, idle
 * timeouts as `ETIMEDOUT`, a cancelled signal as an `AbortError`.
 */
import type http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { Readable } from 'node:stream';
import type { HttpRequest, HttpResponse } from './http.js';

/** The memory plain-TCP reads fill, a slab at a time; a read is given at least `MIN_READ_BYTES` (else a new slab). */
const SLAB_BYTES = 1 << 20;
const MIN_READ_BYTES = 64 << 10;
/** How many bytes of body are buffered ahead of the reader before the socket stops reading. */
const BODY_BUFFER_BYTES = 4 << 20;

/**
 * A body in object mode — a reader gets each piece as it was read, never a
 * concatenation (a copy into fresh memory) — whose buffer is bounded in bytes
 * (`buffered`), not in pieces: a piece may be a few bytes or a megabyte.
 *
 * Every piece leaves the stream through a 'data' event, whichever way it is
 * read: `read()` emits it, and a flowing stream (`pipe()`, `pipeline()`, a
 * 'data' listener) with an empty buffer emits a pushed piece at once without a
 * `read()`. So the count goes down in `emit('data')`.
 */
class BodyStream extends Readable {
  buffered = 0;
  #failure: Error | undefined;

  constructor(opts: { read: () => void; destroy: (err: Error | null, cb: (err?: Error | null) => void) => void }) {
    super({ objectMode: true, highWaterMark: Number.MAX_SAFE_INTEGER, ...opts });
  }

  /** Pushes a piece; false once the reader is `BODY_BUFFER_BYTES` behind. */
  pushPiece(piece: Buffer): boolean {
    this.buffered += piece.length;
    this.push(piece);
    return this.buffered < BODY_BUFFER_BYTES;
  }

  /** Called when a piece leaving takes the buffer under `BODY_BUFFER_BYTES` (Readable's own `_read` is not, while one is pending). */
  onDrain: () => void = () => {};

  /**
   * Ends the body with `err`: at once when someone listens for 'error',
   * else (its answer is still on its way to a reader, and an 'error' nobody
   * hears would be thrown) at the first `read()` — which every way of reading
   * calls, even while a `_read` is pending.
   */
  fail(err: Error): void {
    if (this.listenerCount('error') > 0) this.destroy(err);
    else this.#failure = err;
  }

  override read(size?: number): Buffer | null {
    if (this.#failure && !this.destroyed) {
      this.destroy(this.#failure);
      return null;
    }
    return super.read(size) as Buffer | null;
  }

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'data') {
      const wasFull = this.buffered >= BODY_BUFFER_BYTES;
      this.buffered -= (args[0] as Buffer).length;
      if (wasFull && this.buffered < BODY_BUFFER_BYTES) this.onDrain();
    }
    return super.emit(event, ...args);
  }
}
/** The most bytes of status line and headers accepted (node:http's default limit). */
const MAX_HEADER_BYTES = 16 * 1024;

/** Headers whose repeats node:http drops (the first one counts). */
const SINGLE_VALUED = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since',
  'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after',
  'server', 'user-agent',
]);

/** A value or name that would let a header smuggle another line into the request. */
const UNSAFE_HEADER = /[\r\n\0]/;

export interface BulkGetOptions {
  /** How long a connection may idle before the exchange fails with `ETIMEDOUT`. */
  timeoutMs: number;
}

/** Sends `req` (a GET without a body) and resolves when the answer's headers arrived. */
export function bulkGet(req: HttpRequest, headers: Record<string, string>, opts: BulkGetOptions): Promise<HttpResponse> {
  const url = req.url;
  if (req.method !== 'GET' || req.body !== undefined) throw new TypeError('bulkGet sends a GET without a body');
  const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `host: ${url.host}`];
  for (const [name, value] of Object.entries(headers)) {
    if (UNSAFE_HEADER.test(name) || UNSAFE_HEADER.test(value) || name.toLowerCase() === 'host' || name.toLowerCase() === 'connection') {
      throw Object.assign(new TypeError(`invalid header ${JSON.stringify(name)} for ${url}`), { code: 'ERR_INVALID_CHAR' });
    }
    lines.push(`${name}: ${value}`);
  }
  lines.push('connection: close', '', '');
  const head = lines.join('\r\n');

  return new Promise<HttpResponse>((resolve, reject) => {
    if (req.signal?.aborted) {
      reject(abortError(req.signal));
      return;
    }
    const isHttps = url.protocol === 'https:';
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const port = Number(url.port) || (isHttps ? 443 : 80);
    const exchange = new Exchange(url, resolve, reject);
    let socket: net.Socket;
    if (isHttps) {
      socket = tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, rejectUnauthorized: !req.insecure, ALPNProtocols: ['http/1.1'] });
      socket.on('data', (chunk: Buffer) => {
        if (!exchange.feed(chunk)) socket.pause();
      });
    } else {
      // Each read fills the rest of the current slab (as much as the socket holds, not node's 64 KiB); what it
      // read stays there, handed on as a view, and a slab is freed once no piece of it is referenced.
      let slab = Buffer.allocUnsafe(SLAB_BYTES);
      let used = 0;
      socket = net.connect({
        host,
        port,
        onread: {
          buffer: () => {
            if (SLAB_BYTES - used < MIN_READ_BYTES) {
              slab = Buffer.allocUnsafe(SLAB_BYTES);
              used = 0;
            }
            return slab.subarray(used);
          },
          callback: (n: number, buf: Uint8Array) => {
            used += n;
            return exchange.feed(Buffer.from(buf.buffer, buf.byteOffset, n));
          },
        },
      });
    }
    socket.once(isHttps ? 'secureConnect' : 'connect', () => socket.write(head));
    exchange.attach(socket, req.signal, opts.timeoutMs);
  });
}

function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error('The operation was aborted', { cause: signal.reason }), { name: 'AbortError', code: 'ABORT_ERR' });
}

type BodyFraming = { kind: 'length'; left: number } | { kind: 'chunked' } | { kind: 'close' };

/** One request's answer: its head parsed from the first bytes, then its body framed and pushed to a stream. */
class Exchange {
  #socket!: net.Socket;
  #head: Buffer[] = [];
  #body: BodyStream | undefined;
  #framing: BodyFraming | undefined;
  #chunked = new ChunkedDecoder();
  #done = false;
  #settled = false;

  constructor(
    private readonly url: URL,
    private readonly resolve: (res: HttpResponse) => void,
    private readonly reject: (err: Error) => void,
  ) {}

  attach(socket: net.Socket, signal: AbortSignal | undefined, timeoutMs: number): void {
    this.#socket = socket;
    const onAbort = () => this.#fail(abortError(signal!));
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.setTimeout(timeoutMs, () => {
      const message = this.#body ? 'response idle timeout' : 'request timeout';
      this.#fail(Object.assign(new Error(message), { code: 'ETIMEDOUT' }));
    });
    socket.on('error', (err) => this.#fail(err));
    socket.on('end', () => this.#onEnd());
    socket.on('close', () => {
      signal?.removeEventListener('abort', onAbort);
      // A close without an error or an end (a destroy from our side) settles what is still open.
      if (!this.#done) this.#fail(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
    });
  }

  /** Takes the bytes of one read; false when the socket should stop reading until the body is read. */
  feed(chunk: Buffer): boolean {
    if (this.#done) return true;
    try {
      return this.#body ? this.#feedBody(chunk) : this.#feedHead(chunk);
    } catch (err) {
      this.#fail(err as Error);
      return false;
    }
  }

  #feedHead(chunk: Buffer): boolean {
    this.#head.push(chunk);
    const all = this.#head.length === 1 ? chunk : Buffer.concat(this.#head);
    this.#head = [all];
    const end = all.indexOf('\r\n\r\n');
    if (end < 0) {
      if (all.length > MAX_HEADER_BYTES) throw parseError(`response headers from ${this.url.host} exceed ${MAX_HEADER_BYTES} bytes`, 'HPE_HEADER_OVERFLOW');
      return true;
    }
    if (end > MAX_HEADER_BYTES) throw parseError(`response headers from ${this.url.host} exceed ${MAX_HEADER_BYTES} bytes`, 'HPE_HEADER_OVERFLOW');
    const { status, headers } = parseHead(all.subarray(0, end).toString('latin1'), this.url);
    const rest = all.subarray(end + 4);
    this.#head = [];
    if (status >= 100 && status < 200) {
      // An interim answer (100 Continue, 103 Early Hints): the real one follows.
      return rest.length > 0 ? this.#feedHead(rest) : true;
    }
    this.#framing = framingOf(status, headers, this.url);
    const body = new BodyStream({
      read: () => {
        if (!this.#done && body.buffered < BODY_BUFFER_BYTES) this.#socket.resume();
      },
      destroy: (err, cb) => {
        if (!this.#done) {
          this.#done = true;
          this.#socket.destroy();
        }
        cb(err);
      },
    });
    body.onDrain = () => {
      if (!this.#done) this.#socket.resume();
    };
    this.#body = body;
    this.#settled = true;
    this.resolve({ status, headers, body, url: this.url });
    if (this.#framing.kind === 'length' && this.#framing.left === 0) {
      this.#finish();
      return false;
    }
    return rest.length > 0 ? this.#feedBody(rest) : true;
  }

  #feedBody(chunk: Buffer): boolean {
    const framing = this.#framing!;
    let more = true;
    if (framing.kind === 'length') {
      const piece = chunk.length > framing.left ? chunk.subarray(0, framing.left) : chunk;
      framing.left -= piece.length;
      if (piece.length > 0) more = this.#body!.pushPiece(piece);
      if (framing.left === 0) {
        this.#finish();
        return false;
      }
    } else if (framing.kind === 'chunked') {
      for (const piece of this.#chunked.decode(chunk, this.url)) more = this.#body!.pushPiece(piece) && more;
      if (this.#chunked.complete) {
        this.#finish();
        return false;
      }
    } else {
      more = this.#body!.pushPiece(chunk);
    }
    return more;
  }

  /** The body is complete: end it and let the connection go. */
  #finish(): void {
    this.#done = true;
    this.#body!.push(null);
    this.#socket.destroy();
  }

  #onEnd(): void {
    if (this.#done) return;
    if (this.#body && this.#framing?.kind === 'close') {
      this.#done = true;
      this.#body.push(null);
      this.#socket.destroy();
      return;
    }
    // The server closed before the answer was complete: node:http's "aborted" for a cut body, "socket hang up" for no answer.
    this.#fail(Object.assign(new Error(this.#body ? 'aborted' : 'socket hang up'), { code: 'ECONNRESET' }));
  }

  #fail(err: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.#socket.destroy();
    if (!this.#settled) {
      this.#settled = true;
      this.reject(err);
    } else {
      this.#body!.fail(err);
    }
  }
}

function parseError(message: string, code: string): Error {
  return Object.assign(new Error(`Parse Error: ${message}`), { code });
}

/** The status and headers of an answer's head (without its final blank line), as node:http presents them. */
function parseHead(text: string, url: URL): { status: number; headers: http.IncomingHttpHeaders } {
  const lines = text.split('\r\n');
  const statusLine = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0]);
  if (!statusLine) throw parseError(`${url.host} answered an invalid status line ${JSON.stringify(lines[0].slice(0, 100))}`, 'HPE_INVALID_CONSTANT');
  const headers: http.IncomingHttpHeaders = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0 || /[\s]/.test(line[0])) throw parseError(`${url.host} answered an invalid header line ${JSON.stringify(line.slice(0, 100))}`, 'HPE_INVALID_HEADER_TOKEN');
    const name = line.slice(0, colon).toLowerCase();
    if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(name)) throw parseError(`${url.host} answered an invalid header name ${JSON.stringify(name.slice(0, 100))}`, 'HPE_INVALID_HEADER_TOKEN');
    const value = line.slice(colon + 1).trim();
    const before = headers[name];
    if (name === 'set-cookie') headers[name] = [...(before ?? []), value];
    else if (before === undefined) headers[name] = value;
    else if (!SINGLE_VALUED.has(name)) headers[name] = `${before as string}, ${value}`;
  }
  return { status: Number(statusLine[1]), headers };
}

/** How the body of a GET's answer ends (RFC 9112 §6.3). */
function framingOf(status: number, headers: http.IncomingHttpHeaders, url: URL): BodyFraming {
  if (status === 204 || status === 304) return { kind: 'length', left: 0 };
  const te = headers['transfer-encoding'];
  if (te !== undefined) {
    const codings = te.split(',').map((c) => c.trim().toLowerCase());
    if (codings[codings.length - 1] === 'chunked') return { kind: 'chunked' };
    return { kind: 'close' };
  }
  const length = headers['content-length'];
  if (length !== undefined) {
    if (!/^\d+$/.test(length) || !Number.isSafeInteger(Number(length))) throw parseError(`${url.host} answered an invalid Content-Length ${JSON.stringify(length)}`, 'HPE_INVALID_CONTENT_LENGTH');
    return { kind: 'length', left: Number(length) };
  }
  return { kind: 'close' };
}

/** The longest chunk-size line (size, extensions) or trailer line accepted. */
const MAX_CHUNK_LINE = 4096;

/** Decodes a chunked body across reads, handing out views of the data (no copies). */
export class ChunkedDecoder {
  /** Bytes left of the current chunk's data; -1 while a size line is read, -2 for the CRLF after data, -3 in the trailers. */
  #left = -1;
  #line = '';
  complete = false;

  *decode(input: Buffer, url: URL): Generator<Buffer> {
    let at = 0;
    while (at < input.length && !this.complete) {
      if (this.#left > 0) {
        const n = Math.min(this.#left, input.length - at);
        yield input.subarray(at, at + n);
        at += n;
        this.#left -= n;
        if (this.#left === 0) this.#left = -2;
        continue;
      }
      // A line: a chunk size, the CRLF ending a chunk's data, or a trailer.
      const lf = input.indexOf(10, at);
      const end = lf < 0 ? input.length : lf + 1;
      this.#line += input.toString('latin1', at, end);
      at = end;
      if (this.#line.length > MAX_CHUNK_LINE) throw parseError(`${url.host} answered a chunk line of more than ${MAX_CHUNK_LINE} bytes`, 'HPE_INVALID_CHUNK_SIZE');
      if (lf < 0) break;
      const line = this.#line.endsWith('\r\n') ? this.#line.slice(0, -2) : this.#line.slice(0, -1);
      this.#line = '';
      if (this.#left === -2) {
        if (line !== '') throw parseError(`${url.host} answered chunk data longer than its size`, 'HPE_INVALID_CHUNK_SIZE');
        this.#left = -1;
      } else if (this.#left === -3) {
        if (line === '') this.complete = true;
      } else {
        const size = /^([0-9a-fA-F]{1,12})[ \t]*(?:;.*)?$/.exec(line);
        if (!size) throw parseError(`${url.host} answered an invalid chunk size ${JSON.stringify(line.slice(0, 100))}`, 'HPE_INVALID_CHUNK_SIZE');
        const n = parseInt(size[1], 16);
        this.#left = n === 0 ? -3 : n;
      }
    }
  }
}
