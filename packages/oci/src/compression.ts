/**
 * Layer compression: gzip (node:zlib, chunks compressed in parallel, see
 * `gzipChunked`), zstd (the `zstd` program: Node 20's zlib has no zstd and no
 * pure-JS decoder is installed) and none. A stream's compression is told by
 * its magic bytes, so a layer whose media type lies (an uncompressed tar
 * labelled `tar.gzip`) still unpacks.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Duplex, PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Worker } from 'node:worker_threads';
import * as zlib from 'node:zlib';
import { createGunzip, constants as zlibConstants, crc32 } from 'node:zlib';
import { BktError, type Digest } from '@bkt/core';
import { digesting, type DigestingStream } from './digest.js';

/** How a layer blob is compressed. */
export type Compression = 'gzip' | 'zstd' | 'uncompressed';

/** The program that compresses and decompresses zstd streams. */
const ZSTD_BINARY = 'zstd';

/** The compression a layer media type declares, or undefined for a media type that is not a layer tar. */
export function compressionOfMediaType(mediaType: string): Compression | undefined {
  if (/\.tar\+gzip$|\.tar\.gzip$|\.tar\.gz$|rootfs\.diff\.tar\.gzip$/.test(mediaType)) return 'gzip';
  if (/\.tar\+zstd$|\.tar\.zstd$/.test(mediaType)) return 'zstd';
  if (/\.tar$|rootfs\.diff\.tar$/.test(mediaType)) return 'uncompressed';
  return undefined;
}

/** The compression of a stream whose first bytes are `head`. */
export function detectCompression(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'uncompressed';
}

/** A child process as a duplex stream: bytes in on stdin, out on stdout; a failure names the command. */
function processStream(cmd: string, args: string[], what: string): Duplex {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const out = new PassThrough();
  child.on('error', (err: NodeJS.ErrnoException) => {
    const msg =
      err.code === 'ENOENT'
        ? `${what} needs the "${cmd}" program, which is not installed (Debian package zstd)`
        : `${what}: ${cmd} failed: ${err.message}`;
    out.destroy(new BktError('UNIMPLEMENTED', msg));
  });
  child.stdin.on('error', () => undefined); // EPIPE when the child dies: reported through `close`
  child.stdout.pipe(out, { end: false });
  child.on('close', (code) => {
    if (code === 0) out.end();
    else if (!out.destroyed) out.destroy(new BktError('INTERNAL', `${what}: ${cmd} exited with ${code}: ${stderr.trim()}`));
  });
  const duplex = Duplex.from({ writable: child.stdin, readable: out });
  duplex.on('close', () => {
    if (child.exitCode === null) child.kill();
  });
  return duplex;
}

/** Decompresses `input` (its compression told by its first bytes). */
export function decompress(input: AsyncIterable<Uint8Array>, what: string): AsyncIterable<Uint8Array> {
  return {
    async *[Symbol.asyncIterator]() {
      const it = input[Symbol.asyncIterator]();
      const first = await it.next();
      if (first.done) return;
      const rest: AsyncIterable<Uint8Array> = {
        async *[Symbol.asyncIterator]() {
          yield first.value;
          for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
        },
      };
      const kind = detectCompression(first.value);
      if (kind === 'uncompressed') {
        yield* rest;
        return;
      }
      const transform = kind === 'gzip' ? createGunzip({ chunkSize: 256 * 1024 }) : processStream(ZSTD_BINARY, ['-d', '-c', '-q'], what);
      yield* throughTransform(rest, transform);
    },
  };
}

/** Compresses `input` with `compression` at `level` (undefined: the tool's default). */
export function compress(input: AsyncIterable<Uint8Array>, compression: Compression, level: number | undefined, what: string): AsyncIterable<Uint8Array> {
  if (compression === 'uncompressed') return input;
  if (compression === 'gzip') return gzipChunked(input, { level });
  // -T0: a worker per core; zstd's output does not depend on the number of workers (the same bytes as -T1, its default).
  const transform = processStream(ZSTD_BINARY, ['-c', '-q', '-T0', ...(level !== undefined ? [`-${level}`] : []), ...(level !== undefined && level > 19 ? ['--ultra'] : [])], what);
  return throughTransform(input, transform);
}

/**
 * `compress`, computing the sha256 of the input too (a layer's diff id) —
 * for gzip by the deflate worker that is sent the chunks anyway, so the
 * caller's thread does not hash them (see `gzipChunked`). `digest()` is the
 * input's digest once `chunks` has been read to the end.
 *
 * With `handOver`, the input's pieces are given away: nothing else holds a
 * piece's buffer once it is yielded (nor shares it with another piece; none
 * is in Node's shared pool: `Buffer.allocUnsafeSlow` for small ones), so a
 * piece that is a whole chunk is transferred to the deflate worker, not
 * copied (its buffer is detached here).
 */
export function compressDigesting(
  input: AsyncIterable<Uint8Array>,
  compression: Compression,
  level: number | undefined,
  what: string,
  opts: { handOver?: boolean } = {},
): DigestingStream {
  if (compression !== 'gzip') {
    const plain = digesting(input);
    return { chunks: compress(plain.chunks, compression, level, what), digest: () => plain.digest() };
  }
  let result: Digest | undefined;
  return {
    chunks: gzipStream(input, { level }, (d) => (result = d), opts.handOver === true),
    digest() {
      if (result === undefined) throw new Error('compressDigesting: the stream has not been read to the end');
      return result;
    },
  };
}

/** The size of the input chunks `gzipChunked` deflates independently. */
export const GZIP_CHUNK_BYTES = 1024 * 1024;
/** The window a chunk's deflate is primed with: the last 32 KiB of the chunk before it. */
const DEFLATE_WINDOW = 32 * 1024;

/**
 * Deflates one chunk of `gzipChunked` (see there): samples of it decide how
 * (stored, `Z_RLE` or the level's search), then the chunk is deflated with
 * `dictionary` (the 32 KiB before it), ending with a sync flush unless it is
 * the `last`. Every decision is a pure function of the chunk's bytes and the
 * level, so the output is reproducible.
 *
 * Self-contained — it uses nothing but its arguments and JavaScript's and
 * Node's globals — because the deflate worker runs its source (`toString`);
 * `zlib` is `node:zlib`.
 */
async function deflateChunk(zlib: typeof import('node:zlib'), chunk: Buffer, dictionary: Buffer | undefined, last: boolean, level: number): Promise<Buffer> {
  /** Samples of a chunk tried at level 1 to tell incompressible data (see `incompressible`). */
  const SAMPLES = 4;
  const SAMPLE_BYTES = 16 * 1024;
  /** A chunk whose samples all shrink by less than this fraction is stored, not deflated. */
  const MIN_GAIN = 0.02;
  /** Samples of a chunk tried with and without string matching (see `matchesGainNothing`). */
  const MATCH_SAMPLES = 16;
  const MATCH_SAMPLE_BYTES = 4 * 1024;
  /** Samples whose run-length-only deflate is larger than their level-1 deflate by more than this fraction have strings worth matching. */
  const MATCH_GAIN = 0.01;
  /** The highest level that takes `Z_RLE` where matching gains nothing: levels 7..9 ask for the smallest output whatever the time. */
  const RUNS_ONLY_MAX_LEVEL = 6;
  /** An output buffer any sample's deflate fits in: one trip to the thread pool each. */
  const SAMPLE_OUT_BYTES = 80 * 1024;

  const deflateWith = (b: Buffer, o: import('node:zlib').ZlibOptions) =>
    new Promise<Buffer>((resolve, reject) => zlib.deflateRaw(b, o, (err, out) => (err ? reject(err) : resolve(out))));

  /** `count` slices of `bytes` bytes spread evenly over `chunk` (of at least count × bytes), the first at its start and the last at its end. */
  const samplesOf = (count: number, bytes: number): Buffer[] => {
    const step = Math.floor((chunk.length - bytes) / (count - 1));
    return Array.from({ length: count }, (_, i) => chunk.subarray(i * step, i * step + bytes));
  };

  /**
   * True when the chunk (of at least SAMPLES × SAMPLE_BYTES) looks incompressible:
   * SAMPLES slices spread over it, each deflated at level 1 on its own, all
   * shrink by less than MIN_GAIN. Already-compressed or random data then costs
   * a copy (stored blocks) instead of a level-6 match search that gains nothing.
   */
  const incompressible = async (): Promise<boolean> => {
    if (chunk.length < SAMPLES * SAMPLE_BYTES) return false;
    const shrinksLittle = (x: Buffer) => deflateWith(x, { level: 1, chunkSize: SAMPLE_OUT_BYTES }).then((b) => b.length > SAMPLE_BYTES * (1 - MIN_GAIN));
    // The first sample alone first: in a chunk that compresses it usually shrinks, and the others need not be tried.
    const [first, ...rest] = samplesOf(SAMPLES, SAMPLE_BYTES);
    if (!(await shrinksLittle(first!))) return false;
    return (await Promise.all(rest.map(shrinksLittle))).every(Boolean);
  };

  /**
   * True when string matching looks useless in the chunk (of at least
   * MATCH_SAMPLES × MATCH_SAMPLE_BYTES): MATCH_SAMPLES slices spread over it,
   * put end to end, deflated with run-length matches only (`Z_RLE`: Huffman
   * codes and runs of one byte) come out at most MATCH_GAIN larger than
   * deflated at level 1. High-entropy text (base64, hex) is such data: there
   * the level's match search costs about 4× the time of `Z_RLE` for under 0.5%
   * of size. Many small slices, so that text among compressed files (whose
   * repeated strings tip the sum) keeps the chunk on the level's search; two
   * calls to the thread pool.
   */
  const matchesGainNothing = async (): Promise<boolean> => {
    if (chunk.length < MATCH_SAMPLES * MATCH_SAMPLE_BYTES) return false;
    const samples = Buffer.concat(samplesOf(MATCH_SAMPLES, MATCH_SAMPLE_BYTES));
    const [matched, runs] = await Promise.all([
      deflateWith(samples, { level: 1, chunkSize: SAMPLE_OUT_BYTES }),
      deflateWith(samples, { level: 1, strategy: zlib.constants.Z_RLE, chunkSize: SAMPLE_OUT_BYTES }),
    ]);
    return runs.length <= matched.length * (1 + MATCH_GAIN);
  };

  const stored = level !== 0 && (await incompressible());
  const runsOnly = !stored && level <= RUNS_ONLY_MAX_LEVEL && level !== 0 && (await matchesGainNothing());
  // An output buffer the whole chunk fits in (deflate's bound): one trip to the thread pool, not one per 16 KiB.
  const chunkSize = Math.max(64 * 1024, chunk.length + (chunk.length >> 8) + 1024);
  return deflateWith(chunk, {
    level: stored ? 0 : level,
    ...(runsOnly ? { strategy: zlib.constants.Z_RLE } : {}),
    chunkSize,
    ...(dictionary ? { dictionary } : {}),
    ...(last ? {} : { finishFlush: zlib.constants.Z_SYNC_FLUSH }),
  });
}

/**
 * The worker thread that runs `deflateChunk` for the chunks of multi-chunk
 * streams, so that the build's thread only cuts and sends them (each
 * zlib call costs the calling thread ~0.5–1 ms to set up, seven per chunk).
 * One per process, shared, made on first use; it keeps the process alive only
 * while it has chunks to deflate. Its zlib calls run in libuv's thread pool,
 * as the build's thread's would: the same calls, so the same bytes.
 *
 * A worker that fails (throws, exits, is terminated, sends a reply that
 * cannot be read) is dead for good: every request pending on it and every
 * later one is rejected with the reason, so a stream that holds it fails
 * (its chunks so far cannot move to another worker) instead of waiting for
 * an answer that never comes; the next `get()` makes a fresh worker.
 */
class DeflateWorker {
  static #shared: DeflateWorker | undefined;
  static get(): DeflateWorker {
    return (DeflateWorker.#shared ??= new DeflateWorker());
  }

  /** Terminates the shared worker, if any, as a crash would; resolves once it has been marked dead (see `terminateDeflateWorker`). */
  static async terminateShared(): Promise<void> {
    const shared = DeflateWorker.#shared;
    if (!shared) return;
    const exited = new Promise<void>((resolve) => shared.#worker.once('exit', () => resolve()));
    await shared.#worker.terminate();
    await exited;
  }

  readonly #worker: Worker;
  readonly #jobs = new Map<number, { resolve: (r: DeflatedChunk) => void; reject: (e: Error) => void }>();
  #next = 0;
  #nextStream = 0;
  /** Why the worker died, once it has: every request on it is rejected with this. */
  #failure: BktError | undefined;

  private constructor() {
    const source = `'use strict';
const { parentPort } = require('node:worker_threads');
const zlib = require('node:zlib');
const deflateChunk = ${deflateChunk.toString()};
const { createHash } = require('node:crypto');
/** The CRC-32 (and, when asked, the sha256) of each stream's input so far, by stream: its chunks arrive in order. */
const streams = new Map();
parentPort.on('message', (job) => {
  if (job.drop !== undefined) {
    streams.delete(job.drop);
    return;
  }
  const chunk = Buffer.from(job.chunk.buffer, job.chunk.byteOffset, job.chunk.byteLength);
  let inputDigest;
  let inputCrc;
  if (job.stream !== undefined) {
    let state = streams.get(job.stream);
    if (!state) streams.set(job.stream, (state = { crc: 0, hash: job.digest ? createHash('sha256') : undefined }));
    // zlib's crc32 of a buffer without memory is its initial value, 0, not the running one.
    if (chunk.length > 0) state.crc = zlib.crc32(chunk, state.crc);
    if (state.hash) state.hash.update(chunk);
    if (job.last) {
      streams.delete(job.stream);
      inputCrc = state.crc;
      if (state.hash) inputDigest = 'sha256:' + state.hash.digest('hex');
    }
  }
  deflateChunk(zlib, chunk, job.dictionary ? Buffer.from(job.dictionary) : undefined, job.last, job.level).then(
    (out) => {
      // The output is a view of zlib's output buffer, which nothing else uses once the call is over: that buffer is
      // transferred when the output fills most of it (the chunk's own, sized to its deflate bound; never one of at
      // most 64 KiB, which could be Node's shared pool), else the output is copied into one of its own, transferred.
      const whole = out.length >= 65536 && out.byteOffset === 0 && out.buffer.byteLength <= out.length + (out.length >> 2);
      const bytes = whole ? out.buffer : new Uint8Array(out).buffer;
      parentPort.postMessage({ id: job.id, bytes, length: out.length, inputDigest, inputCrc }, [bytes]);
    },
    (err) => parentPort.postMessage({ id: job.id, error: String(err && err.message ? err.message : err) }),
  );
});`;
    this.#worker = new Worker(source, { eval: true });
    this.#worker.unref();
    this.#worker.on('message', (m: { id: number; bytes?: ArrayBuffer; length?: number; inputDigest?: Digest; inputCrc?: number; error?: string }) => {
      const job = this.#jobs.get(m.id);
      this.#jobs.delete(m.id);
      if (this.#jobs.size === 0) this.#worker.unref();
      if (!job) return;
      if (m.bytes) job.resolve({ out: Buffer.from(m.bytes, 0, m.length ?? m.bytes.byteLength), inputDigest: m.inputDigest, inputCrc: m.inputCrc });
      else job.reject(new BktError('INTERNAL', `gzip: deflating a chunk failed: ${m.error}`));
    });
    // The first reason wins: a worker that throws then also exits.
    const fail = (why: string) => {
      if (this.#failure) return;
      this.#failure = new BktError('INTERNAL', `gzip: the layer compression worker thread failed (${why}); the layer being compressed cannot be finished`);
      if (DeflateWorker.#shared === this) DeflateWorker.#shared = undefined;
      const jobs = [...this.#jobs.values()];
      this.#jobs.clear();
      this.#worker.unref();
      void this.#worker.terminate().catch(() => undefined); // one that is still running (a reply it sent could not be read)
      for (const job of jobs) job.reject(this.#failure);
    };
    this.#worker.on('error', (err: Error) => fail(err.message));
    this.#worker.on('messageerror', (err: Error) => fail(`a reply could not be read: ${err.message}`));
    this.#worker.on('exit', (code) => fail(`it exited with code ${code}`));
  }

  /** A new stream's number, for `deflate`'s input CRC-32 and digest. */
  stream(): number {
    return this.#nextStream++;
  }

  /**
   * Deflates one chunk (see `deflateChunk`). With `stream`, the chunk is the
   * next of that stream's input (chunks are sent in order), and the reply to
   * its `last` one carries the CRC-32 of the whole input, and its sha256 if
   * `digest` (the same for every chunk of the stream).
   */
  deflate(chunk: Buffer, dictionary: Buffer | undefined, last: boolean, level: number, stream?: number, transfer = false, digest = false): Promise<DeflatedChunk> {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#next++;
    const done = new Promise<DeflatedChunk>((resolve, reject) => this.#jobs.set(id, { resolve, reject }));
    if (this.#jobs.size === 1) this.#worker.ref();
    // With `transfer` the chunk's buffer is the caller's to give (see gzipStream): transferred, detached here. Else
    // the chunk is cloned by postMessage (one copy, made by the serializer: ~4x cheaper than copying it here and
    // transferring the copy); a clone of a view carries its whole buffer, so a view of a much larger one is copied
    // out first. The dictionary, a small view of the chunk before, is copied out and transferred.
    const view =
      !transfer && chunk.buffer.byteLength > 2 * chunk.byteLength ? new Uint8Array(chunk) : new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const dict = dictionary ? new Uint8Array(dictionary).buffer : undefined;
    const moved: ArrayBuffer[] = [];
    if (transfer) moved.push(view.buffer as ArrayBuffer);
    if (dict) moved.push(dict);
    try {
      this.#worker.postMessage({ id, chunk: view, dictionary: dict, last, level, stream, digest }, moved);
    } catch (err) {
      // Not sent: no reply will come, so the job must not hold the worker (and the process) alive.
      this.#jobs.delete(id);
      if (this.#jobs.size === 0) this.#worker.unref();
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return done;
  }

  /** Forgets a stream that ends without its last chunk (its input failed). */
  drop(stream: number): void {
    if (!this.#failure) this.#worker.postMessage({ drop: stream });
  }
}

/**
 * Terminates the shared deflate worker, if one is running, as if it had
 * crashed; resolves once it is marked dead. For tests of the failure path
 * (not exported by the package).
 */
export function terminateDeflateWorker(): Promise<void> {
  return DeflateWorker.terminateShared();
}

interface DeflatedChunk {
  out: Buffer;
  /** The sha256 of the stream's whole input, on the reply to its last chunk (when asked). */
  inputDigest?: Digest;
  /** The CRC-32 of the stream's whole input, on the reply to its last chunk. */
  inputCrc?: number;
}

export interface GzipChunkedOptions {
  /** zlib level 0..9 (default: zlib's default, 6). */
  level?: number;
  /** Chunks deflated at once (default: the machine's parallelism, 2..4); the output does not depend on it. */
  concurrency?: number;
}

/**
 * One gzip stream of `input`, deflated pigz-style: the input is cut every
 * `GZIP_CHUNK_BYTES` bytes, each chunk is deflated on its own (zlib's async
 * API, in libuv's thread pool, several at once; the calls are made by the
 * deflate worker thread, see `DeflateWorker`, unless the input is one chunk)
 * with the 32 KiB before it as
 * its dictionary and ends with a sync flush, the last one with the final
 * block; the raw deflate pieces, in order, make one deflate stream behind a
 * gzip header (no name, no mtime, OS unix: the header `createGzip` writes) and
 * before the CRC-32 and size of the whole input. A chunk that does not
 * compress (its samples do not shrink) is stored; at levels 1..6 (6 is the
 * default), a chunk where string matching gains nothing (its samples deflate
 * as small with `Z_RLE`) is deflated with `Z_RLE` (see `deflateChunk`).
 *
 * The bytes depend only on the input and the level — not on how the input
 * was split into chunks on arrival, nor on the concurrency — so a layer's
 * digest is reproducible. An input of at most one chunk that is deflated at
 * its level (neither stored nor `Z_RLE`) gives exactly the bytes of
 * `createGzip` at the same level (1..9; level 0's stored blocks are cut where
 * the gzip header shifts them).
 *
 * A piece of `input` must not change once it has been yielded (a chunk is
 * deflated, and serves as the next one's dictionary, after later pieces have
 * been read).
 */
export function gzipChunked(input: AsyncIterable<Uint8Array>, opts: GzipChunkedOptions = {}): AsyncIterable<Uint8Array> {
  return gzipStream(input, opts);
}

/**
 * `gzipChunked`, telling `onInputDigest` the sha256 of the whole input once
 * the last chunk is deflated (before the trailer is yielded): computed by the
 * deflate worker with the chunks it is sent, or here for a one-chunk stream.
 */
function gzipStream(input: AsyncIterable<Uint8Array>, opts: GzipChunkedOptions, onInputDigest?: (d: Digest) => void, handOver = false): AsyncIterable<Uint8Array> {
  const level = opts.level ?? zlibConstants.Z_DEFAULT_COMPRESSION;
  const concurrency = Math.max(1, opts.concurrency ?? Math.min(4, Math.max(2, availableParallelism())));
  return {
    async *[Symbol.asyncIterator]() {
      // A stream of one chunk is deflated here (no worker made for a small layer); the chunks of a longer one by the worker.
      let started = 0;
      let worker: DeflateWorker | undefined;
      let stream: number | undefined;
      /** The last chunk's deflate came back (the worker has forgotten the stream). */
      let ended = false;
      /** The CRC-32 of the whole input, known once the last chunk is deflated: computed with it, here or by the worker. */
      let crc: number | undefined;
      const deflate = (chunk: Buffer, dictionary: Buffer | undefined, last: boolean, transfer: boolean): Promise<Buffer> => {
        if (started++ === 0 && last) {
          // zlib's crc32 of a buffer without memory is its initial value, 0 (as of an empty input).
          crc = chunk.length > 0 ? crc32(chunk) : 0;
          ended = true;
          if (onInputDigest) {
            onInputDigest(`sha256:${createHash('sha256').update(chunk).digest('hex')}`);
          }
          return deflateChunk(zlib, chunk, dictionary, last, level);
        }
        worker ??= DeflateWorker.get();
        stream ??= worker.stream();
        return worker.deflate(chunk, dictionary, last, level, stream, transfer, onInputDigest !== undefined).then((r) => {
          if (r.inputCrc !== undefined) {
            crc = r.inputCrc;
            ended = true;
          }
          if (r.inputDigest !== undefined && onInputDigest) onInputDigest(r.inputDigest);
          return r.out;
        });
      };
      // xfl as zlib sets it: 2 for the best compression, 4 for the fastest.
      const xfl = level === 9 ? 2 : level >= 0 && level < 2 ? 4 : 0;
      yield Uint8Array.of(0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3);
      let size = 0;
      /** The last DEFLATE_WINDOW bytes of the chunk before (a copy: that chunk may have been transferred). */
      let window: Buffer | undefined;
      /** Deflates started, in input order; settled ones are yielded from the front. */
      const inflight: Promise<Buffer>[] = [];
      // A chunk is known to be the last only when the input ends: each full chunk waits until more input arrives.
      let pending: { chunk: Buffer; transferable: boolean } | undefined;
      const start = ({ chunk, transferable }: { chunk: Buffer; transferable: boolean }, last: boolean) => {
        const dictionary = window;
        window = Buffer.from(chunk.subarray(Math.max(0, chunk.length - DEFLATE_WINDOW)));
        const p = deflate(chunk, dictionary, last, transferable);
        p.catch(() => undefined); // awaited in order below
        inflight.push(p);
      };
      let parts: Buffer[] = [];
      let partsBytes = 0;
      /** The parts are one whole piece of a handed-over input (its buffer ours to transfer). */
      let wholePiece = false;
      /** `parts` as a chunk, and whether its buffer may be transferred to the worker. */
      const cut = () => {
        // A small buffer in Node's shared pool is never transferred, whatever the input said.
        if (parts.length === 1) return { chunk: parts[0]!, transferable: wholePiece && !inSharedPool(parts[0]!) };
        // A copy of our own; one that fits Node's shared pool (under 4 KiB) is a view of it, never transferred.
        const chunk = Buffer.concat(parts, partsBytes);
        return { chunk, transferable: chunk.byteOffset === 0 && chunk.buffer.byteLength === chunk.byteLength };
      };
      try {
        for await (const piece of input) {
          if (piece.byteLength === 0) continue;
          let buf = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
          size += buf.length;
          while (buf.length > 0) {
            const take = Math.min(buf.length, GZIP_CHUNK_BYTES - partsBytes);
            if (parts.length === 0) wholePiece = handOver && take === piece.byteLength;
            // A view: the parts are copied together once the chunk is full, unless it is one piece (see `cut`).
            parts.push(buf.subarray(0, take));
            partsBytes += take;
            buf = buf.subarray(take);
            if (partsBytes === GZIP_CHUNK_BYTES) {
              if (pending) start(pending, false);
              pending = cut();
              parts = [];
              partsBytes = 0;
            }
          }
          while (inflight.length >= concurrency) yield await inflight.shift()!;
        }
        if (partsBytes > 0) {
          if (pending) start(pending, false);
          pending = cut();
        }
        start(pending ?? { chunk: Buffer.alloc(0), transferable: false }, true);
        while (inflight.length > 0) yield await inflight.shift()!;
      } finally {
        inflight.length = 0;
        // A stream that ended early (its input failed, or its reader stopped): the worker forgets its input's CRC and hash.
        if (stream !== undefined && !ended) worker?.drop(stream);
      }
      const trailer = Buffer.alloc(8);
      if (crc === undefined) throw new BktError('INTERNAL', 'gzip: the input\'s CRC-32 was not computed');
      trailer.writeUInt32LE(crc >>> 0, 0);
      trailer.writeUInt32LE(size % 2 ** 32, 4);
      yield trailer;
    },
  };
}

/** The buffer may be a slice of Node's shared pool (Buffer.allocUnsafe and friends under poolSize / 2). */
const inSharedPool = (b: Buffer) => b.byteLength < Buffer.poolSize >>> 1 && b.buffer.byteLength === Buffer.poolSize;

/** Pipes `input` through `transform` and yields what comes out; errors on either side surface here. */
async function* throughTransform(input: AsyncIterable<Uint8Array>, transform: Duplex): AsyncGenerator<Uint8Array> {
  const feeding = pipeline(Readable.from(input, { objectMode: false }), transform).catch((err: unknown) => {
    transform.destroy(err as Error);
    throw err;
  });
  feeding.catch(() => undefined);
  try {
    for await (const chunk of transform) yield chunk as Uint8Array;
    await feeding;
  } finally {
    transform.destroy();
  }
}
