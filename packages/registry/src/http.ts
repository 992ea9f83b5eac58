/**
 * The HTTP transport: one request/response exchange over node:http(s), and the
 * retry policy around it. node:http rather than fetch because we need the raw
 * response stream (to count bytes for Range resumes), per-request TLS
 * verification (`insecure` hosts) and the socket's own error codes
 * (ECONNRESET, ECONNREFUSED) to decide what is worth retrying.
 */
import http from 'node:http';
import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { Readable } from 'node:stream';
import { bulkGet } from './bulk-get.js';

export interface HttpRequest {
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  url: URL;
  headers?: Record<string, string>;
  /**
   * The body: bytes, or a function opening a stream of exactly `size` bytes
   * (called once per attempt, so a request is always replayable).
   */
  body?: Uint8Array | StreamBody;
  /** Skip TLS certificate verification. */
  insecure?: boolean;
  /**
   * An https URL whose server may speak plain HTTP (BuildKit's `httpFallback`
   * for hosts that are both `insecure` and `http`): when the TLS handshake
   * gets a plain-HTTP answer, the request, and every later one to that origin
   * with this flag, goes over http.
   */
  httpFallback?: boolean;
  signal?: AbortSignal;
  /**
   * The answer is bulk data read as a stream (a blob): a GET sent over a
   * connection of its own and read in large pieces (bulk-get.ts), which
   * costs a fraction of node:http's CPU per byte.
   */
  bulk?: boolean;
}

export interface StreamBody {
  size: number;
  open(): AsyncIterable<Uint8Array>;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The body stream; callers must consume it or call `discard()`. */
  body: Readable;
  url: URL;
}

/** A response status that is worth retrying: the server may answer differently next time. */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || status === 500 || status === 502 || status === 503 || status === 504;
}

const RETRYABLE_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'EAI_AGAIN', 'ERR_STREAM_PREMATURE_CLOSE']);

/** A connection-level failure (reset, refused, dropped mid-body, timed out) that a retry may cure. */
export function isRetryableError(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | undefined;
  if (!e) return false;
  if (e.code && RETRYABLE_CODES.has(e.code)) return true;
  return e.message === 'socket hang up' || e.message === 'aborted';
}

/** How long to idle on a socket before treating the connection as dropped. */
const SOCKET_TIMEOUT_MS = 30_000;

/** The keep-alive agents of one client; `close()` frees their sockets. */
export class Transport {
  readonly #http = new http.Agent({ keepAlive: true });
  readonly #https = new https.Agent({ keepAlive: true });
  readonly #httpsInsecure = new https.Agent({ keepAlive: true, rejectUnauthorized: false });
  /** https origins found to answer in plain HTTP (see `HttpRequest.httpFallback`). */
  readonly #plainHttp = new Set<string>();

  /** `url` as requests with `httpFallback` reach it: over http once its https origin was found to speak plain HTTP. */
  effectiveUrl(url: URL): URL {
    if (url.protocol !== 'https:' || !this.#plainHttp.has(url.origin)) return url;
    const plain = new URL(url);
    plain.protocol = 'http:';
    return plain;
  }

  /** Sends one request; resolves when the response headers arrive. */
  async send(req: HttpRequest): Promise<HttpResponse> {
    if (!req.httpFallback) return this.#exchange(req);
    const url = this.effectiveUrl(req.url);
    try {
      return await this.#exchange({ ...req, url });
    } catch (err) {
      if (url.protocol !== 'https:' || (err as { code?: string }).code !== 'EPROTO' || !/wrong version number/i.test((err as Error).message)) throw err;
      this.#plainHttp.add(url.origin);
      return this.#exchange({ ...req, url: this.effectiveUrl(url) });
    }
  }

  #exchange(req: HttpRequest): Promise<HttpResponse> {
    const isHttps = req.url.protocol === 'https:';
    const agent = isHttps ? (req.insecure ? this.#httpsInsecure : this.#https) : this.#http;
    const headers: Record<string, string> = { 'user-agent': 'bkt', ...req.headers };
    if (req.body instanceof Uint8Array) headers['content-length'] = String(req.body.byteLength);
    else if (req.body) headers['content-length'] = String(req.body.size);
    else if (req.method === 'PUT' || req.method === 'POST' || req.method === 'PATCH') headers['content-length'] = '0';
    if (req.bulk && req.method === 'GET' && req.body === undefined) return bulkGet(req, headers, { timeoutMs: SOCKET_TIMEOUT_MS });
    return new Promise((resolve, reject) => {
      const request = (isHttps ? https : http).request(req.url, { method: req.method, headers, agent, signal: req.signal }, (res) => {
        res.setTimeout(SOCKET_TIMEOUT_MS, () => res.destroy(Object.assign(new Error('response idle timeout'), { code: 'ETIMEDOUT' })));
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res, url: req.url });
      });
      request.setTimeout(SOCKET_TIMEOUT_MS, () => request.destroy(Object.assign(new Error('request timeout'), { code: 'ETIMEDOUT' })));
      if (req.body === undefined || req.body instanceof Uint8Array) {
        request.on('error', reject);
        request.end(req.body);
      } else {
        // A body that is already a stream is piped as it is (no async-iterator wrapper per chunk).
        const opened = req.body.open();
        const source = opened instanceof Readable ? opened : Readable.from(opened);
        source.on('error', (err) => request.destroy(err));
        request.on('error', (err) => {
          source.destroy();
          reject(err);
        });
        source.pipe(request);
      }
    });
  }

  close(): void {
    this.#http.destroy();
    this.#https.destroy();
    this.#httpsInsecure.destroy();
  }
}

/** Reads a whole (small) body, at most `limit` bytes. */
export async function readBody(res: HttpResponse, limit = 16 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      res.body.destroy();
      throw new Error(`response body of ${res.url} exceeds ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Drops a response body we don't need, keeping the connection reusable when it is short. */
export function discard(res: HttpResponse): void {
  res.body.resume();
  res.body.on('error', () => {});
}

export interface RetryPolicy {
  /** Total attempts, the first included. Default 5. */
  attempts: number;
  /** The first backoff; each retry doubles it (full jitter). Default 200 ms. */
  baseDelayMs: number;
  /** Upper bound of one backoff, and of an honoured `Retry-After`. Default 10 s. */
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 200, maxDelayMs: 10_000 };

/** The delay before retry number `retry` (1-based): `Retry-After` when given, else exponential backoff with full jitter. */
export function backoffDelay(policy: RetryPolicy, retry: number, retryAfter?: string | string[]): number {
  const header = Array.isArray(retryAfter) ? retryAfter[0] : retryAfter;
  if (header) {
    const seconds = Number(header);
    const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - Date.now();
    if (Number.isFinite(ms)) return Math.min(Math.max(ms, 0), policy.maxDelayMs);
  }
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (retry - 1));
  return Math.random() * cap;
}

/** A response that carries a retryable status, thrown inside `withRetries` to trigger another attempt. */
export class RetryableStatus extends Error {
  constructor(readonly response: HttpResponse, what: string) {
    super(`${what}: HTTP ${response.status}`);
  }
}

/**
 * Runs `attempt` until it succeeds, it throws something not retryable, or the
 * policy's attempts are used up (then the last error is thrown). `attempt`
 * signals a retryable status by throwing `RetryableStatus`.
 */
export async function withRetries<T>(policy: RetryPolicy, signal: AbortSignal | undefined, attempt: (n: number) => Promise<T>): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      const retryable = err instanceof RetryableStatus || isRetryableError(err);
      if (!retryable || n >= policy.attempts || signal?.aborted) throw err;
      const retryAfter = err instanceof RetryableStatus ? err.response.headers['retry-after'] : undefined;
      if (err instanceof RetryableStatus) discard(err.response);
      await sleep(backoffDelay(policy, n, retryAfter), undefined, { signal });
    }
  }
}
