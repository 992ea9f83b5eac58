/**
 * Layer compression: gzip (node:zlib), zstd (the `zstd` program: Node 20's
 * zlib has no zstd and no pure-JS decoder is installed) and none. A stream's
 * compression is told by its magic bytes, so a layer whose media type lies
 * (an uncompressed tar labelled `tar.gzip`) still unpacks.
 */
import { spawn } from 'node:child_process';
import { Duplex, PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip, constants as zlibConstants } from 'node:zlib';
import { BktError } from '@bkt/core';

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
      const transform = kind === 'gzip' ? createGunzip() : processStream(ZSTD_BINARY, ['-d', '-c', '-q'], what);
      yield* throughTransform(rest, transform);
    },
  };
}

/** Compresses `input` with `compression` at `level` (undefined: the tool's default). */
export function compress(input: AsyncIterable<Uint8Array>, compression: Compression, level: number | undefined, what: string): AsyncIterable<Uint8Array> {
  if (compression === 'uncompressed') return input;
  const transform =
    compression === 'gzip'
      ? createGzip({ level: level ?? zlibConstants.Z_DEFAULT_COMPRESSION })
      : processStream(ZSTD_BINARY, ['-c', '-q', ...(level !== undefined ? [`-${level}`] : []), ...(level !== undefined && level > 19 ? ['--ultra'] : [])], what);
  return throughTransform(input, transform);
}

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
