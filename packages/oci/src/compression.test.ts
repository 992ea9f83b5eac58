import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { constants as zlibConstants, crc32, deflateRawSync, gunzipSync, gzipSync } from 'node:zlib';
import {
  compress,
  compressDigesting,
  compressionOfMediaType,
  decompress,
  detectCompression,
  GZIP_CHUNK_BYTES,
  gzipChunked,
  terminateDeflateWorker,
  type Compression,
} from './compression.js';
import { MediaType } from './media-types.js';

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

async function* once(bytes: Uint8Array) {
  yield bytes;
}

const hasZstd = (() => {
  try {
    execFileSync('zstd', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('compression', () => {
  it.each([
    [MediaType.OciLayer, 'uncompressed'],
    [MediaType.OciLayerGzip, 'gzip'],
    [MediaType.OciLayerZstd, 'zstd'],
    [MediaType.DockerLayer, 'uncompressed'],
    [MediaType.DockerLayerGzip, 'gzip'],
    [MediaType.OciConfig, undefined],
    ['application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', 'gzip'],
  ])('the media type %s declares %s', (mediaType, want) => {
    expect(compressionOfMediaType(mediaType)).toBe(want);
  });

  it('tells gzip, zstd and plain bytes by their magic', () => {
    expect(detectCompression(Uint8Array.of(0x1f, 0x8b, 8))).toBe('gzip');
    expect(detectCompression(Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd))).toBe('zstd');
    expect(detectCompression(new TextEncoder().encode('ustar'))).toBe('uncompressed');
    expect(detectCompression(new Uint8Array())).toBe('uncompressed');
  });

  it.each<Compression>(['gzip', 'uncompressed', ...(hasZstd ? (['zstd'] as const) : [])])('round-trips %s', async (compression) => {
    const plain = Buffer.from('layer bytes '.repeat(1000));
    const packed = await collect(compress(once(plain), compression, undefined, 'test layer'));
    expect(detectCompression(packed)).toBe(compression);
    expect((await collect(decompress(once(packed), 'test layer'))).equals(plain)).toBe(true);
  });
});

/** `bytes` in pieces of `size` bytes. */
async function* pieces(bytes: Buffer, size: number) {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

/** Compressible but not trivial: text lines with random words, `n` bytes. */
function textLike(n: number): Buffer {
  const words = Array.from({ length: 500 }, () => randomBytes(1 + (randomBytes(1)[0] % 8)).toString('hex'));
  const parts: string[] = [];
  let len = 0;
  for (let i = 0; len < n; i++) {
    const w = `${words[(i * 7919) % words.length]}${i % 13 === 0 ? '\n' : ' '}`;
    parts.push(w);
    len += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, n);
}

describe('gzipChunked', () => {
  it.each([1, 9, undefined])('gives exactly createGzip\'s bytes for an input of at most one chunk (level %s)', async (level) => {
    for (const input of [Buffer.alloc(0), Buffer.from('x'), textLike(GZIP_CHUNK_BYTES - 3), textLike(GZIP_CHUNK_BYTES)]) {
      const got = await collect(gzipChunked(pieces(input, 4096), { level }));
      expect(got.equals(gzipSync(input, level === undefined ? {} : { level }))).toBe(true);
    }
  });

  it('makes one gzip stream of a multi-chunk input that gunzip and the gzip program read back', async () => {
    const input = Buffer.concat([textLike(2 * GZIP_CHUNK_BYTES + 12345), randomBytes(GZIP_CHUNK_BYTES + 7), textLike(GZIP_CHUNK_BYTES)]);
    const got = await collect(gzipChunked(pieces(input, 65536)));
    expect(gunzipSync(got).equals(input)).toBe(true);
    const viaProgram = execFileSync('gzip', ['-dc'], { input: got, maxBuffer: 64 * 1024 * 1024 });
    expect(viaProgram.equals(input)).toBe(true);
    // The window carried over between chunks keeps the ratio of a single stream (within 1%).
    expect(got.length).toBeLessThan(gzipSync(input).length * 1.01);
  });

  it('deflates a chunk of high-entropy text with run-length matches only (Z_RLE) at levels up to 6, and a chunk with text with string matches', async () => {
    const base64 = Buffer.from(randomBytes(GZIP_CHUNK_BYTES).toString('base64')).subarray(0, GZIP_CHUNK_BYTES - 1000);
    const got = await collect(gzipChunked(pieces(base64, 65536)));
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(crc32(base64), 0);
    trailer.writeUInt32LE(base64.length, 4);
    const header = gzipSync(Buffer.alloc(0)).subarray(0, 10);
    const runLengthOnly = Buffer.concat([header, deflateRawSync(base64, { strategy: zlibConstants.Z_RLE }), trailer]);
    expect(got.equals(runLengthOnly)).toBe(true);
    // The match search would gain under 0.5% here.
    expect(got.length).toBeLessThan(gzipSync(base64).length * 1.005);
    // Level 9 asks for the smallest output: the match search runs whatever it gains.
    expect((await collect(gzipChunked(once(base64), { level: 9 }))).equals(gzipSync(base64, { level: 9 }))).toBe(true);
    // The same base64 with a run of text lines in its middle: the matches there are worth the search.
    const mixed = Buffer.concat([base64.subarray(0, 400_000), textLike(200_000), base64.subarray(400_000, 800_000)]);
    expect((await collect(gzipChunked(once(mixed)))).equals(gzipSync(mixed))).toBe(true);
  });

  it('keeps a multi-chunk stream of high-entropy text valid and within 0.5% of createGzip\'s size', async () => {
    const input = Buffer.from(randomBytes(3 * GZIP_CHUNK_BYTES).toString('base64'));
    const got = await collect(gzipChunked(pieces(input, 100_000)));
    expect(execFileSync('gzip', ['-dc'], { input: got, maxBuffer: 64 * 1024 * 1024 }).equals(input)).toBe(true);
    expect(got.length).toBeLessThan(gzipSync(input).length * 1.005);
  });

  it('stores at level 0 (stored blocks, readable by gunzip)', async () => {
    const input = textLike(GZIP_CHUNK_BYTES + 100);
    const got = await collect(gzipChunked(once(input), { level: 0 }));
    expect(got.length).toBeGreaterThan(input.length);
    expect(gunzipSync(got).equals(input)).toBe(true);
  });

  it('gives the same bytes whatever the input pieces and the concurrency', async () => {
    const input = textLike(3 * GZIP_CHUNK_BYTES + 999);
    const digests = new Set<string>();
    for (const [size, concurrency] of [[input.length, 1], [1000, 4], [GZIP_CHUNK_BYTES, 2], [GZIP_CHUNK_BYTES + 1, 3]] as const) {
      const got = await collect(gzipChunked(pieces(input, size), { concurrency }));
      digests.add(createHash('sha256').update(got).digest('hex'));
    }
    expect(digests.size).toBe(1);
  });

  it('is the gzip compression of compress()', async () => {
    const input = textLike(GZIP_CHUNK_BYTES * 2 + 5);
    const a = await collect(compress(once(input), 'gzip', 1, 'test layer'));
    const b = await collect(gzipChunked(once(input), { level: 1 }));
    expect(a.equals(b)).toBe(true);
    expect(a[8]).toBe(4); // xfl: the fastest
  });

  it('keeps the CRC across empty pieces (a zero-length buffer without memory, as tar-stream yields for an empty file)', async () => {
    const input = Buffer.from('hello from bkt\n');
    async function* withEmpty() {
      yield input.subarray(0, 5);
      yield Buffer.from(new ArrayBuffer(0), 0, 0);
      yield new Uint8Array(0);
      yield input.subarray(5);
    }
    const got = await collect(gzipChunked(withEmpty()));
    expect(got.equals(gzipSync(input))).toBe(true);
  });

  it('fails when its input fails', async () => {
    async function* broken() {
      yield textLike(GZIP_CHUNK_BYTES + 10);
      throw new Error('disk gone');
    }
    await expect(collect(gzipChunked(broken()))).rejects.toThrow('disk gone');
  });
});

/**
 * `n` bytes from a fixed seed (xorshift32), no two calls alike by seed: runs of
 * high-entropy text (base64), random bytes, repetitive text and zeros, each
 * 64 KiB to 1.5 MiB, so chunks of each kind and mixes of them are deflated.
 */
function mixedBytes(n: number, seed: number): Buffer {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  const out = Buffer.alloc(n);
  for (let off = 0; off < n; ) {
    const len = Math.min(n - off, 64 * 1024 + (next() % (1536 * 1024)));
    const kind = next() % 4;
    for (let i = 0; i < len; i++) {
      if (kind === 0) out[off + i] = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.charCodeAt(next() & 63);
      else if (kind === 1) out[off + i] = next() & 0xff;
      else if (kind === 2) out[off + i] = 'the same words again and again '.charCodeAt((i + (i >> 10)) % 31);
    }
    off += len;
  }
  return out;
}

describe('gzipChunked output (layer digests)', () => {
  // The sha256 of each output as gzipChunked gave it (Node 20's zlib) when these were written: a change of the output
  // changes the layer digests of the same content and settings, and must not happen by accident.
  it.each([
    [1, 7_000_000, 1, 'b54eb11761dc6cc483c654b1fceb27c4f56889590b4380cdc12c051e2b66ae3f'],
    [6, 7_000_000, 2, 'a6bde70697ce36446cbfedae0dab2fa460f3d7a09e38f2cf3b5a2a1c37786a1e'],
    [undefined, 9_500_000, 3, 'a0058520d04cb61015549fd158c7af2832857ae1db5e32727af3e9a8b3e46733'],
    [9, 3_300_000, 4, '1d7715320197eeb7aff679b91ae2e723d81a5640321d3b8878c220c9884819e0'],
    [0, 2_500_000, 5, '10b1f902cdff8db9e7dceda2e27c9b90f4f6c73492f460ff769534779b6f5161'],
    [6, 700_000, 6, 'ad0118fc66c4d2c51422c2a5128ac376d99473f79b057ec825e0edcd75db8d19'],
  ])('level %s, %i bytes (seed %i): the same bytes as ever', async (level, n, seed, want) => {
    const out = await collect(gzipChunked(pieces(mixedBytes(n, seed), 300_000), { level }));
    expect(gunzipSync(out).equals(mixedBytes(n, seed))).toBe(true);
    expect(createHash('sha256').update(out).digest('hex')).toBe(want);
  });
});

describe('compressDigesting', () => {
  const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

  it.each<[Compression, number]>([
    ['gzip', 0],
    ['gzip', 1000],
    ['gzip', GZIP_CHUNK_BYTES],
    ['gzip', 3 * GZIP_CHUNK_BYTES + 17],
    ['uncompressed', 5000],
    ...(hasZstd ? ([['zstd', 2 * GZIP_CHUNK_BYTES]] as [Compression, number][]) : []),
  ])('gives %s bytes as compress() does and the sha256 of the %i input bytes', async (compression, n) => {
    const input = mixedBytes(n, n + 7);
    const packed = compressDigesting(pieces(input, 100_000), compression, undefined, 'test layer');
    expect(() => packed.digest()).toThrow();
    const got = await collect(packed.chunks);
    expect(got.equals(await collect(compress(pieces(input, 100_000), compression, undefined, 'test layer')))).toBe(true);
    expect(packed.digest()).toBe(sha(input));
  });

  it('fails with its input, and the next stream still gets its digest', async () => {
    async function* failing() {
      yield mixedBytes(2 * GZIP_CHUNK_BYTES, 1);
      throw new Error('the tar failed');
    }
    await expect(collect(compressDigesting(failing(), 'gzip', undefined, 'test layer').chunks)).rejects.toThrow('the tar failed');
    const input = mixedBytes(2 * GZIP_CHUNK_BYTES + 5, 2);
    const packed = compressDigesting(pieces(input, 65536), 'gzip', 1, 'test layer');
    expect(gunzipSync(await collect(packed.chunks)).equals(input)).toBe(true);
    expect(packed.digest()).toBe(sha(input));
  });

  it('with handOver, transfers whole-chunk pieces to the worker (detached here) and gives the same bytes and digest', async () => {
    const input = mixedBytes(4 * GZIP_CHUNK_BYTES + 700_000, 9);
    // Pieces as a layer tar gives them: whole chunks of their own buffer, a flush of a partial chunk, then a large file's pieces, a small tail.
    const cuts = [GZIP_CHUNK_BYTES, 300_000, GZIP_CHUNK_BYTES, GZIP_CHUNK_BYTES - 300_000, GZIP_CHUNK_BYTES, 650_000, 50_000];
    const given: Buffer[] = [];
    let off = 0;
    for (const n of cuts) {
      const b = Buffer.allocUnsafeSlow(n);
      input.copy(b, 0, off, off + n);
      given.push(b);
      off += n;
    }
    expect(off).toBe(input.length);
    async function* handed() {
      for (const b of given) yield b;
    }
    const packed = compressDigesting(handed(), 'gzip', undefined, 'test layer', { handOver: true });
    const got = await collect(packed.chunks);
    expect(got.equals(await collect(compress(pieces(input, 100_000), 'gzip', undefined, 'test layer')))).toBe(true);
    expect(packed.digest()).toBe(sha(input));
    // The first piece was a whole chunk (transferred); the 300,000-byte one was copied into a chunk with the next.
    expect(given[0]!.buffer.byteLength).toBe(0);
    expect(given[1]!.buffer.byteLength).toBe(300_000);
    // Without handOver nothing is detached.
    const kept = [Buffer.from(input.subarray(0, GZIP_CHUNK_BYTES)), Buffer.from(input.subarray(GZIP_CHUNK_BYTES, 2 * GZIP_CHUNK_BYTES))];
    async function* lent() {
      yield* kept;
    }
    const plain = compressDigesting(lent(), 'gzip', undefined, 'test layer');
    expect(gunzipSync(await collect(plain.chunks)).equals(input.subarray(0, 2 * GZIP_CHUNK_BYTES))).toBe(true);
    expect(kept.every((b) => b.buffer.byteLength > 0)).toBe(true);
  });
});

describe('the deflate worker failing', () => {
  /** `p`, or a rejection if it takes longer than `ms` (a stream waiting on a dead worker would hang). */
  const within = <T>(p: Promise<T>, ms: number) =>
    Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`still waiting after ${ms} ms`)), ms).unref())]);
  const collectWithin = (stream: AsyncIterable<Uint8Array>, ms: number) => within(collect(stream), ms);

  it('between two chunks of a stream: the stream fails with the reason, and the next stream gets a fresh worker', async () => {
    const input = mixedBytes(4 * GZIP_CHUNK_BYTES, 11);
    let readOut = 0;
    async function* killedBetweenChunks() {
      yield input.subarray(0, GZIP_CHUNK_BYTES);
      yield input.subarray(GZIP_CHUNK_BYTES, 2 * GZIP_CHUNK_BYTES);
      // With concurrency 1 the first chunk's deflate has come back (and been read) before more input is asked for:
      // no request is pending on the worker when it dies; the stream's next chunk goes to it afterwards.
      expect(readOut).toBeGreaterThan(1);
      await terminateDeflateWorker();
      yield input.subarray(2 * GZIP_CHUNK_BYTES);
    }
    const reading = (async () => {
      for await (const _ of gzipChunked(killedBetweenChunks(), { concurrency: 1 })) readOut++;
    })();
    await expect(within(reading, 10_000)).rejects.toThrow(/compression worker thread failed \(it exited with code 1\)/);
    const after = mixedBytes(3 * GZIP_CHUNK_BYTES + 9, 12);
    const packed = compressDigesting(pieces(after, 200_000), 'gzip', undefined, 'test layer');
    expect(gunzipSync(await collectWithin(packed.chunks, 10_000)).equals(after)).toBe(true);
    expect(packed.digest()).toBe(`sha256:${createHash('sha256').update(after).digest('hex')}`);
  });

  it('with chunks in flight: they fail, and so does the rest of the stream', async () => {
    const input = mixedBytes(6 * GZIP_CHUNK_BYTES, 13);
    async function* killedInFlight() {
      for (let i = 0; i < 3; i++) yield input.subarray(i * GZIP_CHUNK_BYTES, (i + 1) * GZIP_CHUNK_BYTES);
      // Two chunks sent and not yet read out (concurrency 4).
      await terminateDeflateWorker();
      yield input.subarray(3 * GZIP_CHUNK_BYTES);
    }
    await expect(collectWithin(gzipChunked(killedInFlight(), { concurrency: 4 }), 10_000)).rejects.toThrow(/compression worker thread failed/);
    expect(gunzipSync(await collectWithin(gzipChunked(pieces(input, 500_000)), 10_000)).equals(input)).toBe(true);
  });

  it('while no stream uses it: the next stream gets a fresh worker', async () => {
    const input = mixedBytes(2 * GZIP_CHUNK_BYTES + 1, 14);
    expect(gunzipSync(await collect(gzipChunked(pieces(input, 300_000)))).equals(input)).toBe(true);
    await terminateDeflateWorker();
    expect(gunzipSync(await collectWithin(gzipChunked(pieces(input, 300_000)), 10_000)).equals(input)).toBe(true);
  });
});
