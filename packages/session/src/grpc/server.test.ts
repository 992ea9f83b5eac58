/**
 * The client's gRPC server (raw HTTP/2 + gRPC framing) against a real
 * grpc-js client over a unix socket: unary, server-streaming and bidi
 * calls, metadata, statuses (trailers and trailers-only, percent-encoded
 * messages), unknown methods, deadlines, cancellation, backpressure, the
 * message limit, a handler that starts reading late, closing.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, makeGenericClientConstructor, Metadata, type Client, type ServiceError } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { GrpcServer, type ServedMethod, type ServerCall } from './server.js';
import { Status } from './status.js';

const raw = (path: string, requestStream: boolean, responseStream: boolean) => ({
  path,
  requestStream,
  responseStream,
  requestSerialize: (b: Buffer) => b,
  requestDeserialize: (b: Buffer) => b,
  responseSerialize: (b: Buffer) => b,
  responseDeserialize: (b: Buffer) => b,
  originalName: path,
});
const METHODS = {
  echo: raw('/test.T/Echo', false, false),
  fail: raw('/test.T/Fail', false, false),
  watch: raw('/test.T/Watch', false, true),
  chat: raw('/test.T/Chat', true, true),
  late: raw('/test.T/Late', true, true),
  missing: raw('/test.T/Missing', false, false),
  unencodable: raw('/test.T/Unencodable', false, false),
  /** Echo as a client-streaming method: a client that sends a unary method more than one message. */
  echoMany: raw('/test.T/Echo', true, false),
};
const TestClient = makeGenericClientConstructor(METHODS, 'test.T');
type Any = (...args: unknown[]) => any; // eslint-disable-line @typescript-eslint/no-explicit-any

let cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Seen {
  metadata?: Record<string, string[]>;
  cancelled: string[];
  ended: string[];
}

/** A GrpcServer with the test methods on a unix socket, and a grpc-js client of it. */
async function setup(opts: { maxMessageBytes?: number } = {}) {
  const seen: Seen = { cancelled: [], ended: [] };
  const server = new GrpcServer(opts);
  const b = (m: (typeof METHODS)[keyof typeof METHODS]): ServedMethod<Buffer, Buffer> => m;
  const track = (name: string, call: ServerCall<Buffer, Buffer>) => call.on('cancelled', () => seen.cancelled.push(name));
  server.unary(b(METHODS.echo), async (request, call) => {
    seen.metadata = call.metadata;
    return Buffer.concat([Buffer.from('echo:'), request]);
  });
  server.unary({ ...b(METHODS.unencodable), responseSerialize: () => { throw new Error('field 3 is not a string'); } }, async () => Buffer.from('x'));
  server.unary(b(METHODS.fail), async () => {
    throw new Error('no such thing: ünïcode 100%');
  });
  server.serverStream(b(METHODS.watch), (request, call) => {
    track('watch', call);
    call.write(Buffer.concat([Buffer.from('watching '), request]));
  });
  server.bidi(b(METHODS.chat), (call) => {
    track('chat', call);
    call.on('data', (m: Buffer) => {
      if (!call.write(m)) call.pause();
    });
    call.on('drain', () => call.resume());
    call.on('end', () => {
      seen.ended.push('chat');
      call.end();
    });
  });
  server.bidi(b(METHODS.late), (call) => {
    // Reads only after a while: what the client sent meanwhile is not lost.
    setTimeout(() => {
      const got: Buffer[] = [];
      call.on('data', (m: Buffer) => got.push(m));
      call.on('end', () => {
        call.write(Buffer.concat(got));
        call.end();
      });
    }, 200);
  });
  const dir = await mkdtemp(join(tmpdir(), 'bkt-grpc-server-'));
  const socketPath = join(dir, 's.sock');
  const net: NetServer = createServer((socket) => server.serve(socket));
  await new Promise<void>((resolve) => net.listen(socketPath, resolve));
  const client = new TestClient(`unix://${socketPath}`, credentials.createInsecure()) as Client & Record<string, Any>;
  cleanups.push(async () => {
    client.close();
    server.close();
    await new Promise((r) => net.close(r));
    await rm(dir, { recursive: true, force: true });
  });
  return { server, client, seen };
}

function unary(client: Record<string, Any>, method: string, request: Buffer, md = new Metadata(), options: object = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => client[method]!(request, md, options, (err: ServiceError | null, res: Buffer) => (err ? reject(err) : resolve(res))));
}

describe('GrpcServer, called by grpc-js', () => {
  it('answers a unary call with its metadata; a failing handler with UNKNOWN and its message, encoded and decoded intact', async () => {
    const { client, seen } = await setup();
    const md = new Metadata();
    md.add('dir-name', 'context');
    md.add('include-patterns', 'a');
    md.add('include-patterns', 'b');
    expect((await unary(client, 'echo', Buffer.from('hi'), md)).toString()).toBe('echo:hi');
    expect(seen.metadata?.['dir-name']).toEqual(['context']);
    expect(seen.metadata?.['include-patterns']?.join(', ')).toBe('a, b');
    await expect(unary(client, 'fail', Buffer.from(''))).rejects.toMatchObject({ code: Status.UNKNOWN, details: 'no such thing: ünïcode 100%' });
  });

  it('ends a unary call whose response cannot be encoded INTERNAL, with the reason', async () => {
    const { client } = await setup();
    await expect(unary(client, 'unencodable', Buffer.from('x'))).rejects.toMatchObject({
      code: Status.INTERNAL,
      details: 'cannot encode the response of /test.T/Unencodable: field 3 is not a string',
    });
    expect((await unary(client, 'echo', Buffer.from('still'))).toString()).toBe('echo:still');
  });

  it('ends a unary call INTERNAL at its second request message, without waiting for the half-close', async () => {
    const { client } = await setup();
    const failed = new Promise<ServiceError>((resolve) => {
      const call = client.echoMany!((err: ServiceError) => resolve(err));
      call.write(Buffer.from('a'));
      call.write(Buffer.from('b'));
    });
    expect(await failed).toMatchObject({ code: Status.INTERNAL, details: 'a call of /test.T/Echo sent a second request message; it takes one' });
  });

  it('ends a method it does not serve UNIMPLEMENTED', async () => {
    const { client } = await setup();
    await expect(unary(client, 'missing', Buffer.from('x'))).rejects.toMatchObject({ code: Status.UNIMPLEMENTED, details: 'unknown method /test.T/Missing' });
  });

  it('streams a server-streaming call until the client cancels it; the handler sees the cancellation', async () => {
    const { client, seen } = await setup();
    const call = client.watch!(Buffer.from('dir'));
    const first = await new Promise<Buffer>((resolve) => call.once('data', resolve));
    expect(first.toString()).toBe('watching dir');
    const status = new Promise<{ code: number }>((resolve) => call.on('status', resolve));
    call.on('error', () => {});
    call.cancel();
    expect((await status).code).toBe(Status.CANCELLED);
    await expect.poll(() => seen.cancelled).toEqual(['watch']);
  });

  it('echoes a bidi stream in order through backpressure (a slow reader), ending OK after the client half-closes', async () => {
    const { client, seen } = await setup();
    const call = client.chat!();
    const status = new Promise<{ code: number }>((resolve) => call.on('status', resolve));
    const got: Buffer[] = [];
    let paused = false;
    call.on('data', (m: Buffer) => {
      got.push(m);
      // A slow reader: flow control pushes back to the server's writes.
      if (!paused && got.length % 50 === 0) {
        paused = true;
        call.pause();
        setTimeout(() => {
          paused = false;
          call.resume();
        }, 20);
      }
    });
    const message = (i: number) => Buffer.alloc(64 << 10, i % 251);
    for (let i = 0; i < 200; i++) {
      if (!call.write(message(i))) await new Promise((r) => call.once('drain', r));
    }
    call.end();
    expect((await status).code).toBe(Status.OK);
    expect(got.length).toBe(200);
    expect(got.every((m, i) => m.equals(message(i)))).toBe(true);
    expect(seen).toMatchObject({ ended: ['chat'], cancelled: [] });
  });

  it('a bidi call the client resets is cancelled for its handler, never ended', async () => {
    const { client, seen } = await setup();
    const call = client.chat!();
    call.on('error', () => {});
    const status = new Promise<{ code: number }>((resolve) => call.on('status', resolve));
    call.write(Buffer.from('x'));
    await new Promise((resolve) => call.once('data', resolve));
    call.cancel();
    expect((await status).code).toBe(Status.CANCELLED);
    await expect.poll(() => seen.cancelled).toEqual(['chat']);
    await new Promise((r) => setTimeout(r, 50));
    expect(seen.ended).toEqual([]);
  });

  it('keeps what arrives before the handler reads', async () => {
    const { client } = await setup();
    const call = client.late!();
    const got: Buffer[] = [];
    call.on('data', (m: Buffer) => got.push(m));
    const status = new Promise<{ code: number }>((resolve) => call.on('status', resolve));
    for (const s of ['a', 'b', 'c']) call.write(Buffer.from(s));
    call.end();
    expect((await status).code).toBe(Status.OK);
    expect(Buffer.concat(got).toString()).toBe('abc');
  });

  it('a deadline that passes ends the call DEADLINE_EXCEEDED; the handler sees it cancelled', async () => {
    const { client, seen } = await setup();
    const call = client.chat!(new Metadata(), { deadline: Date.now() + 300 });
    call.on('error', () => {});
    const status = await new Promise<{ code: number }>((resolve) => call.on('status', resolve));
    expect(status.code).toBe(Status.DEADLINE_EXCEEDED);
    await expect.poll(() => seen.cancelled).toEqual(['chat']);
  });

  it('a deadline further than a timer can wait (30 days, sent as 2592000S) does not end the call', async () => {
    const { client, seen } = await setup();
    const call = client.chat!(new Metadata(), { deadline: Date.now() + 30 * 24 * 3600 * 1000 });
    call.on('error', () => {});
    const status = new Promise<{ code: number }>((resolve) => call.on('status', resolve));
    call.write(Buffer.from('x'));
    await new Promise((resolve) => call.once('data', resolve));
    await new Promise((r) => setTimeout(r, 100));
    call.end();
    expect((await status).code).toBe(Status.OK);
    expect(seen.cancelled).toEqual([]);
  });

  it('a request message over the limit ends the call RESOURCE_EXHAUSTED', async () => {
    const { client } = await setup({ maxMessageBytes: 1 << 20 });
    await expect(unary(client, 'echo', Buffer.alloc((1 << 20) + 1))).rejects.toMatchObject({ code: Status.RESOURCE_EXHAUSTED });
    expect((await unary(client, 'echo', Buffer.alloc(1 << 20))).length).toBe((1 << 20) + 5);
  });

  it('close() ends the open calls: their handlers see them cancelled', async () => {
    const { client, server, seen } = await setup();
    const call = client.chat!();
    call.on('error', () => {});
    const status = new Promise<{ code: number }>((resolve) => call.on('status', resolve));
    call.write(Buffer.from('x'));
    await new Promise((resolve) => call.once('data', resolve));
    server.close();
    expect((await status).code).not.toBe(Status.OK);
    await expect.poll(() => seen.cancelled).toEqual(['chat']);
  });
});
