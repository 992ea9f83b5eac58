/**
 * bulkGet against a TCP server that writes the answer's bytes itself, in
 * pieces that split the head, chunk sizes and CRLFs wherever they fall, so
 * the framing is parsed across reads as a real connection delivers it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { bulkGet, ChunkedDecoder } from './bulk-get.js';
import { isRetryableError, type HttpResponse } from './http.js';

const servers: net.Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A server answering each connection's request with `pieces` (written apart, with a pause between), then `end` (close) or not. */
async function rawServer(pieces: (string | Buffer)[], opts: { end?: boolean; requests?: string[] } = {}): Promise<URL> {
  const server = net.createServer((socket) => {
    let request = '';
    socket.on('data', async (d) => {
      request += d.toString('latin1');
      if (!request.includes('\r\n\r\n')) return;
      opts.requests?.push(request);
      for (const p of pieces) {
        if (socket.destroyed) return;
        socket.write(p);
        await sleep(2);
      }
      if (opts.end ?? true) socket.end();
    });
    socket.on('error', () => {});
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v2/a/blobs/x`);
}

async function read(res: HttpResponse): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of res.body as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

const get = (url: URL, signal?: AbortSignal, timeoutMs = 5000) => bulkGet({ method: 'GET', url, signal }, { 'user-agent': 'bkt' }, { timeoutMs });

/** Splits `data` into pieces of `size` bytes. */
function pieces(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

describe('bulkGet', () => {
  it('reads a Content-Length body split anywhere, and sends one request line with the headers given', async () => {
    const body = randomBytes(200_000);
    const answer = Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nX-Repeated: a\r\nx-repeated: b\r\nSet-Cookie: c=1\r\nset-cookie: d=2\r\nLocation: /one\r\nLocation: /two\r\n\r\n`), body]);
    const requests: string[] = [];
    const url = await rawServer(pieces(answer, 7_001), { end: false, requests });
    url.search = '?q=1';
    const res = await get(url);
    expect(res.status).toBe(200);
    expect(res.headers['x-repeated']).toBe('a, b');
    expect(res.headers['set-cookie']).toEqual(['c=1', 'd=2']);
    expect(res.headers.location).toBe('/one');
    // The body ends at its length, though the server keeps the connection open.
    expect((await read(res)).equals(body)).toBe(true);
    expect(requests[0]).toBe(`GET /v2/a/blobs/x?q=1 HTTP/1.1\r\nhost: ${url.host}\r\nuser-agent: bkt\r\nconnection: close\r\n\r\n`);
  });

  it('decodes a chunked body with extensions and trailers, split at every boundary', async () => {
    const body = randomBytes(100_000);
    const chunks = pieces(body, 33_333).map((c, i) => Buffer.concat([Buffer.from(`${c.length.toString(16)}${i === 1 ? ';ext=1' : ''}\r\n`), c, Buffer.from('\r\n')]));
    const answer = Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'), ...chunks, Buffer.from('0\r\nX-Trailer: t\r\n\r\n')]);
    for (const size of [1_000, 33_336, 65_536]) {
      const res = await get(await rawServer(pieces(answer, size), { end: false }));
      expect((await read(res)).equals(body)).toBe(true);
    }
    // Every split of a small answer, one byte at a time included.
    const small = Buffer.from('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\nA;x\r\n0123456789\r\n0\r\n\r\n');
    const decoder = new ChunkedDecoder();
    const out: Buffer[] = [];
    const bodyStart = small.indexOf('\r\n\r\n') + 4;
    for (let i = bodyStart; i < small.length; i++) out.push(...decoder.decode(small.subarray(i, i + 1), new URL('http://x/')));
    expect(Buffer.concat(out).toString()).toBe('abc0123456789');
    expect(decoder.complete).toBe(true);
  });

  it('reads a body without a length to the close, and skips an interim 100 answer', async () => {
    const body = randomBytes(50_000);
    const res = await get(await rawServer([Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n'), ...pieces(body, 9_999)]));
    expect(res.status).toBe(200);
    expect((await read(res)).equals(body)).toBe(true);
  });

  it('fails a body cut short with a retryable "aborted", and no answer with "socket hang up"', async () => {
    const res = await get(await rawServer(['HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n', 'x'.repeat(400)]));
    const cut = await read(res).catch((e: Error) => e);
    expect(cut).toMatchObject({ message: 'aborted', code: 'ECONNRESET' });
    expect(isRetryableError(cut)).toBe(true);

    const chunked = await get(await rawServer(['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc']));
    expect(await read(chunked).catch((e: Error) => e)).toMatchObject({ message: 'aborted', code: 'ECONNRESET' });

    const none = await get(await rawServer([])).catch((e: Error) => e);
    expect(none).toMatchObject({ message: 'socket hang up', code: 'ECONNRESET' });
    expect(isRetryableError(none)).toBe(true);
  });

  it('refuses a malformed answer with a parse error naming the server', async () => {
    const url = await rawServer(['HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n']);
    expect(await get(url).catch((e: Error) => e)).toMatchObject({ code: 'HPE_INVALID_CONTENT_LENGTH', message: expect.stringContaining(url.host) });
    expect(await get(await rawServer(['SSH-2.0-OpenSSH\r\n\r\n'])).catch((e: Error) => e)).toMatchObject({ code: 'HPE_INVALID_CONSTANT' });
    expect(await get(await rawServer([`HTTP/1.1 200 OK\r\nX: ${'y'.repeat(20_000)}\r\n\r\n`])).catch((e: Error) => e)).toMatchObject({ code: 'HPE_HEADER_OVERFLOW' });
    const badChunk = await get(await rawServer(['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n']));
    expect(await read(badChunk).catch((e: Error) => e)).toMatchObject({ code: 'HPE_INVALID_CHUNK_SIZE' });
    expect(() => bulkGet({ method: 'GET', url: new URL('http://127.0.0.1:1/') }, { authorization: 'Bearer a\r\nx-injected: 1' }, { timeoutMs: 1000 })).toThrow(/invalid header/);
  });

  it('refuses a connection with its code, times out an idle one, and stops on abort', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    expect(await get(new URL(`http://127.0.0.1:${port}/`)).catch((e: Error) => e)).toMatchObject({ code: 'ECONNREFUSED' });

    const silent = await rawServer([], { end: false });
    expect(await get(silent, undefined, 100).catch((e: Error) => e)).toMatchObject({ code: 'ETIMEDOUT', message: 'request timeout' });
    const stalls = await rawServer(['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab'], { end: false });
    const stalled = await get(stalls, undefined, 100);
    expect(await read(stalled).catch((e: Error) => e)).toMatchObject({ code: 'ETIMEDOUT', message: 'response idle timeout' });

    const ac = new AbortController();
    const open = await get(await rawServer(['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab'], { end: false }), ac.signal);
    const reading = read(open).catch((e: Error) => e);
    ac.abort();
    expect(await reading).toMatchObject({ name: 'AbortError' });
    const before = new AbortController();
    before.abort();
    expect(await get(silent, before.signal).catch((e: Error) => e)).toMatchObject({ name: 'AbortError' });
  });

  it('gives a reader slower than the socket the whole body: reading stops and resumes as it catches up', async () => {
    const body = randomBytes(24 << 20);
    const url = await rawServer([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), body], { end: false });
    const res = await get(url);
    const chunks: Buffer[] = [];
    for await (const c of res.body as AsyncIterable<Buffer>) {
      chunks.push(c);
      await sleep(1);
    }
    expect(Buffer.concat(chunks).equals(body)).toBe(true);
  });

  it('gives a body of more than 4 MiB whole to a pipe(), a pipeline() and a data listener', async () => {
    const body = randomBytes(20 << 20);
    const answer = Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), body]);
    const url = await rawServer(pieces(answer, 256 << 10), { end: false });
    const sink = (chunks: Buffer[]) => new Writable({ objectMode: true, write(c: Buffer, _e, cb) { chunks.push(c); cb(); } });

    const piped: Buffer[] = [];
    const viaPipe = await get(url, undefined, 2000);
    await new Promise<void>((resolve, reject) => {
      viaPipe.body.on('error', reject);
      (viaPipe.body as NodeJS.ReadableStream).pipe(sink(piped)).on('finish', resolve);
    });
    expect(Buffer.concat(piped).equals(body)).toBe(true);

    const pipelined: Buffer[] = [];
    await pipeline(await get(url, undefined, 2000).then((r) => r.body as NodeJS.ReadableStream), sink(pipelined));
    expect(Buffer.concat(pipelined).equals(body)).toBe(true);

    // A slow writable: the pipe pauses the body, the socket stops at the bound, and both resume as it drains.
    const slow: Buffer[] = [];
    const slowRes = await get(url, undefined, 2000);
    await pipeline(slowRes.body as NodeJS.ReadableStream, new Writable({
      objectMode: true,
      highWaterMark: 1,
      write(c: Buffer, _e, cb) {
        slow.push(c);
        expect((slowRes.body as unknown as { buffered: number }).buffered).toBeLessThanOrEqual(5 << 20);
        setTimeout(cb, 1);
      },
    }));
    expect(Buffer.concat(slow).equals(body)).toBe(true);

    const listened: Buffer[] = [];
    const viaData = await get(url, undefined, 2000);
    await new Promise<void>((resolve, reject) => {
      viaData.body.on('error', reject);
      viaData.body.on('end', resolve);
      viaData.body.on('data', (c: Buffer) => listened.push(c));
    });
    expect(Buffer.concat(listened).equals(body)).toBe(true);
  });

  it('gives a connection failure that came before anyone read the body to its first reader', async () => {
    const server = net.createServer((socket) => {
      socket.once('data', () => {
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n${'x'.repeat(1000)}`);
        setTimeout(() => socket.resetAndDestroy(), 20);
      });
      socket.on('error', () => {});
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    for (const reader of ['iterator', 'data'] as const) {
      const res = await get(url, undefined, 5000);
      await sleep(100);
      const failure = reader === 'iterator'
        ? read(res).then(() => 'ended', (e: Error) => e)
        : new Promise<unknown>((resolve) => {
          res.body.on('error', resolve);
          res.body.on('end', () => resolve('ended'));
          res.body.on('data', () => {});
        });
      const outcome = await Promise.race([failure, sleep(2000).then(() => 'no error, no end')]);
      expect(outcome).toMatchObject({ code: 'ECONNRESET' });
    }
  });

  it('stops reading while the body is not read, and ends the connection when the reader stops', async () => {
    const body = randomBytes(20 << 20);
    const answer = Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), body]);
    let serverSocket: net.Socket | undefined;
    const server = net.createServer((socket) => {
      serverSocket = socket;
      socket.once('data', () => socket.write(answer));
      socket.on('error', () => {});
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const res = await get(new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`));
    await sleep(200);
    // Unread, the body holds about 4 MiB (and the read that passed it, at most a 1 MiB slab): the rest waits in the socket buffers.
    expect((res.body as unknown as { buffered: number }).buffered).toBeLessThanOrEqual(5 << 20);
    expect(serverSocket!.writableLength).toBeGreaterThan(0);
    const iterator = (res.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    await iterator.next();
    await iterator.return!();
    await sleep(50);
    expect(res.body.destroyed).toBe(true);
    expect(serverSocket!.destroyed || serverSocket!.readableEnded).toBe(true);
  });
});
