/**
 * The daemon's gRPC caller (raw HTTP/2 + gRPC framing) against a real
 * grpc-js server over an in-memory Duplex pair: unary and bidi calls,
 * statuses, deadlines, cancellation, backpressure, message limits.
 */
import { Metadata, Server, ServerCredentials, status as grpcStatus, type ServerDuplexStream, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { duplexPair } from '../session.test-util.js';
import { SessionCaller, type MethodDefinition } from './caller.js';
import { CallError, Status } from './status.js';

const raw = (path: string, requestStream: boolean, responseStream: boolean) => ({
  path,
  requestStream,
  responseStream,
  requestSerialize: (b: Buffer) => b,
  requestDeserialize: (b: Buffer) => b,
  responseSerialize: (b: Buffer) => b,
  responseDeserialize: (b: Buffer) => b,
});
const bytes: (path: string) => MethodDefinition<Buffer, Buffer> = (path) => raw(path, true, true);

let cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

interface Seen {
  metadata?: Metadata;
  cancelled: boolean;
}

/** A grpc-js server with a few test methods, and a caller connected to it. */
function setup() {
  const seen: Seen = { cancelled: false };
  const server = new Server();
  server.addService(
    {
      echo: raw('/test.T/Echo', false, false),
      fail: raw('/test.T/Fail', false, false),
      hang: raw('/test.T/Hang', false, false),
      chat: raw('/test.T/Chat', true, true),
      big: raw('/test.T/Big', false, false),
    },
    {
      echo: (call: ServerUnaryCall<Buffer, Buffer>, cb: sendUnaryData<Buffer>) => {
        seen.metadata = call.metadata;
        cb(null, Buffer.concat([Buffer.from('echo:'), call.request]));
      },
      fail: (_call: ServerUnaryCall<Buffer, Buffer>, cb: sendUnaryData<Buffer>) => cb({ code: grpcStatus.NOT_FOUND, details: 'no such thing: ünïcode 100%' }),
      hang: (call: ServerUnaryCall<Buffer, Buffer>) => {
        call.on('cancelled', () => (seen.cancelled = true));
      },
      chat: (call: ServerDuplexStream<Buffer, Buffer>) => {
        call.on('cancelled', () => (seen.cancelled = true));
        call.on('data', (m: Buffer) => {
          if (!call.write(m)) call.pause();
        });
        call.on('drain', () => call.resume());
        call.on('end', () => call.end());
      },
      big: (_call: ServerUnaryCall<Buffer, Buffer>, cb: sendUnaryData<Buffer>) => cb(null, Buffer.alloc(2 << 20)),
    },
  );
  const [clientEnd, serverEnd] = duplexPair();
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  injector.injectConnection(serverEnd);
  const caller = SessionCaller.connect(clientEnd, { maxMessageBytes: 1 << 20 });
  cleanups.push(() => {
    caller.close();
    injector.destroy();
    server.forceShutdown();
  });
  return { caller, seen };
}

describe('SessionCaller', () => {
  it('makes a unary call with metadata (one header field per value)', async () => {
    const { caller, seen } = setup();
    const res = await caller.unary(bytes('/test.T/Echo'), Buffer.from('hi'), { metadata: { 'x-one': 'a', 'x-many': ['b', 'c'] } });
    expect(res.toString()).toBe('echo:hi');
    expect(seen.metadata!.get('x-one')).toEqual(['a']);
    expect(seen.metadata!.get('x-many')).toEqual(['b, c']); // Node joins repeated fields; see headerValues()
  });

  it('rejects with the status and its percent-decoded message', async () => {
    const { caller } = setup();
    const err = await caller.unary(bytes('/test.T/Fail'), Buffer.alloc(0)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CallError);
    expect(err).toMatchObject({ code: Status.NOT_FOUND, details: 'no such thing: ünïcode 100%', method: '/test.T/Fail' });
    expect((err as Error).message).toBe('/test.T/Fail: NOT_FOUND: no such thing: ünïcode 100%');
  });

  it('an unknown method is UNIMPLEMENTED', async () => {
    const { caller } = setup();
    await expect(caller.unary(bytes('/test.T/Nope'), Buffer.alloc(0))).rejects.toMatchObject({ code: Status.UNIMPLEMENTED });
  });

  it('enforces a deadline: DEADLINE_EXCEEDED, and the server sees the call end', async () => {
    const { caller, seen } = setup();
    const started = Date.now();
    await expect(caller.unary(bytes('/test.T/Hang'), Buffer.alloc(0), { timeoutMs: 300 })).rejects.toMatchObject({ code: Status.DEADLINE_EXCEEDED });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.cancelled).toBe(true);
  });

  it('cancels a stream when its signal aborts; the server sees it cancelled', async () => {
    const { caller, seen } = setup();
    const abort = new AbortController();
    const call = caller.stream(bytes('/test.T/Chat'), { signal: abort.signal });
    await call.write(Buffer.from('one'));
    const it = call[Symbol.asyncIterator]();
    expect((await it.next()).value.toString()).toBe('one');
    abort.abort();
    await expect(it.next()).rejects.toMatchObject({ code: Status.CANCELLED });
    await expect(call.status).rejects.toMatchObject({ code: Status.CANCELLED });
    await expect(call.write(Buffer.from('late'))).rejects.toMatchObject({ code: Status.CANCELLED });
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.cancelled).toBe(true);
  });

  it('streams many messages both ways with a slow reader, in order', async () => {
    const { caller } = setup();
    const call = caller.stream(bytes('/test.T/Chat'));
    const count = 2_000;
    const payload = Buffer.alloc(16 << 10, 7);
    const writing = (async () => {
      for (let i = 0; i < count; i++) await call.write(Buffer.concat([Buffer.from(String(i).padStart(6, '0')), payload]));
      call.end();
    })();
    let n = 0;
    for await (const m of call) {
      expect(m.subarray(0, 6).toString()).toBe(String(n).padStart(6, '0'));
      n++;
      if (n % 200 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    await writing;
    await call.status;
    expect(n).toBe(count);
  });

  it('refuses a response larger than the limit (RESOURCE_EXHAUSTED)', async () => {
    const { caller } = setup();
    await expect(caller.unary(bytes('/test.T/Big'), Buffer.alloc(0))).rejects.toMatchObject({ code: Status.RESOURCE_EXHAUSTED });
  });

  it('a peer breaking HTTP/2 after its SETTINGS ends the connection at once; open calls are UNAVAILABLE', async () => {
    const [clientEnd, peerEnd] = duplexPair();
    peerEnd.on('data', () => {});
    const caller = SessionCaller.connect(clientEnd);
    cleanups.push(() => caller.close());
    const call = caller.unary(bytes('/test.T/Echo'), Buffer.from('hi')).then(
      () => 'answered',
      (err: unknown) => err,
    );
    peerEnd.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])); // an empty SETTINGS: a server's first frame
    await new Promise((r) => setTimeout(r, 50));
    const sentAt = Date.now();
    // A frame longer than the 16 KiB allowed: nghttp2 answers FRAME_SIZE_ERROR in a GOAWAY.
    peerEnd.write(Buffer.from([0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 1, 2, 3]));
    await caller.closed;
    expect(Date.now() - sentAt).toBeLessThan(1_000);
    expect(caller.isClosed).toBe(true);
    expect(await call).toMatchObject({ code: Status.UNAVAILABLE });
  });

  it('closing the caller ends its open calls', async () => {
    const { caller } = setup();
    const call = caller.stream(bytes('/test.T/Chat'));
    await call.write(Buffer.from('x'));
    caller.close();
    await expect(call.status).rejects.toBeInstanceOf(CallError);
    await caller.closed;
    expect(caller.isClosed).toBe(true);
    await expect(caller.unary(bytes('/test.T/Echo'), Buffer.alloc(0))).rejects.toMatchObject({ code: Status.UNAVAILABLE });
  });
});
