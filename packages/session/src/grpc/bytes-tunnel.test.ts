/**
 * The client's tunnel made by a `SessionCaller`: its BytesMessage codec
 * against the generated one, and bytes both ways through a grpc-js server
 * whose `Control.Session` handler is the daemon's end (`tunnelOf`).
 */
import { Server, ServerCredentials, status as grpcStatus, type ServerDuplexStream } from '@grpc/grpc-js';
import { BytesMessage, ControlService } from '@bkt/api/control';
import { afterEach, describe, expect, it } from 'vitest';
import { duplexPair } from '../session.test-util.js';
import { MAX_MESSAGE_DATA, tunnelOf, type BytesMessageCall } from '../tunnel.js';
import { bytesMessageData, bytesMessageFrame, bytesMessageTunnel } from './bytes-tunnel.js';
import { SessionCaller } from './caller.js';
import { Status } from './status.js';

const PATH = ControlService.session.path;

let cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe('BytesMessage codec', () => {
  it('frames exactly the generated encoding, for lengths around each varint boundary', () => {
    for (const n of [0, 1, 127, 128, 16383, 16384, 70000]) {
      const data = Buffer.alloc(n, n % 251);
      const frame = bytesMessageFrame(data);
      const body = Buffer.from(BytesMessage.encode({ data }).finish());
      expect(frame[0]).toBe(0);
      expect(frame.readUInt32BE(1)).toBe(body.length);
      expect(frame.subarray(5).equals(body)).toBe(true);
      expect(bytesMessageData(body).equals(data)).toBe(true);
    }
  });

  it('frames data given in pieces as their concatenation', () => {
    const pieces = [Buffer.from('ab'), Buffer.alloc(0), Buffer.alloc(300, 7)];
    expect(bytesMessageFrame(pieces).equals(bytesMessageFrame(Buffer.concat(pieces)))).toBe(true);
  });

  it('decodes skipping unknown fields; a truncated message is an error', () => {
    const unknown = Buffer.from([(2 << 3) | 0, 0x96, 0x01, (3 << 3) | 2, 2, 9, 9, (1 << 3) | 2, 3, 1, 2, 3, (4 << 3) | 5, 0, 0, 0, 0]);
    expect([...bytesMessageData(unknown)]).toEqual([1, 2, 3]);
    expect(() => bytesMessageData(Buffer.from([(1 << 3) | 2, 5, 1]))).toThrow(/past the end/);
    expect(() => bytesMessageData(Buffer.from([(1 << 3) | 2, 0x80]))).toThrow(/varint/);
  });
});

/** A grpc-js server serving Control.Session with `handler`, and a caller connected to it. */
function setup(handler: (call: ServerDuplexStream<BytesMessage, BytesMessage>) => void) {
  const server = new Server();
  server.addService({ session: ControlService.session }, { session: handler });
  const [clientEnd, serverEnd] = duplexPair();
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  injector.injectConnection(serverEnd);
  const caller = SessionCaller.connect(clientEnd);
  cleanups.push(() => {
    caller.close();
    injector.destroy();
    server.forceShutdown();
  });
  return caller;
}

describe('bytesMessageTunnel', () => {
  it('carries bytes both ways with the metadata, and ends when the daemon ends the call', async () => {
    let seenKey: unknown;
    const caller = setup((call) => {
      seenKey = call.metadata.get('x-docker-expose-session-uuid');
      const far = tunnelOf(call as unknown as BytesMessageCall);
      // The daemon's end echoes, upper-cased, then ends after 'bye'.
      far.on('data', (chunk: Buffer) => {
        const text = chunk.toString();
        far.write(text.toUpperCase());
        if (text.endsWith('bye')) far.end();
      });
    });
    const tunnel = bytesMessageTunnel(caller, PATH, { metadata: { 'x-docker-expose-session-uuid': ['s1'] } });
    let got = '';
    tunnel.on('data', (c: Buffer) => (got += c.toString()));
    const ended = new Promise((r) => tunnel.once('end', r));
    tunnel.write('hello ');
    tunnel.write(Buffer.alloc(100_000, 'x'));
    await new Promise((r) => setTimeout(r, 50));
    tunnel.write('bye');
    await ended;
    expect(seenKey).toEqual(['s1']);
    expect(got).toBe(`HELLO ${'X'.repeat(100_000)}BYE`);
  });

  it('a status other than OK destroys the tunnel with it', async () => {
    const caller = setup((call) => call.emit('error', { code: grpcStatus.PERMISSION_DENIED, details: 'no session for you' }));
    const tunnel = bytesMessageTunnel(caller, PATH);
    tunnel.resume();
    const err = await new Promise((r) => tunnel.once('error', r));
    expect(err).toMatchObject({ code: Status.PERMISSION_DENIED, details: 'no session for you' });
  });

  it('destroying the tunnel cancels the call: the daemon sees it cancelled', async () => {
    let cancelled!: () => void;
    const seen = new Promise<void>((r) => (cancelled = r));
    const caller = setup((call) => {
      call.on('cancelled', () => cancelled());
      call.write({ data: Buffer.from('hi') });
    });
    const tunnel = bytesMessageTunnel(caller, PATH);
    await new Promise((r) => tunnel.once('data', r));
    tunnel.destroy();
    await seen;
  });

  it('sends what backpressure buffered in order, in messages of at most MAX_MESSAGE_DATA; small writes stay one message', async () => {
    const sizes: number[] = [];
    const received: Buffer[] = [];
    let ended!: () => void;
    const done = new Promise<void>((r) => (ended = r));
    const caller = setup((call) => {
      call.on('data', (m: BytesMessage) => {
        sizes.push(m.data.length);
        received.push(Buffer.from(m.data));
      });
      call.on('end', () => {
        call.end();
        ended();
      });
    });
    const tunnel = bytesMessageTunnel(caller, PATH);
    tunnel.resume();
    const failed = new Promise<never>((_, reject) => tunnel.once('error', reject));
    const pattern = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) % 256));
    // Buffered writes (one writev): small ones joined; 5 MiB and more in all, one chunk alone larger than a message.
    const small = [pattern(10, 1), pattern(20, 2), pattern(30, 3)];
    const big = [pattern(700_000, 4), pattern(2.5 * MAX_MESSAGE_DATA, 5), pattern(MAX_MESSAGE_DATA, 6), pattern(900_000, 7), pattern(5, 8)];
    const single = pattern(3 * MAX_MESSAGE_DATA + 5, 9);
    tunnel.cork();
    for (const b of small) tunnel.write(b);
    tunnel.uncork();
    await new Promise((r) => setTimeout(r, 20));
    tunnel.cork();
    for (const b of big) tunnel.write(b);
    tunnel.uncork();
    tunnel.write(single);
    tunnel.end();
    await Promise.race([done, failed]);
    const sent = Buffer.concat([...small, ...big, single]);
    expect(Buffer.concat(received).equals(sent)).toBe(true);
    expect(sizes[0]).toBe(60);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(MAX_MESSAGE_DATA);
    const bigTotal = big.reduce((n, b) => n + b.length, 0);
    expect(sizes.length).toBe(1 + Math.ceil(bigTotal / MAX_MESSAGE_DATA) + Math.ceil(single.length / MAX_MESSAGE_DATA));
  });

  it("the daemon's end splits what backpressure buffered too: the client's message limit is never passed", async () => {
    const sent = Buffer.from(Array.from({ length: 3 * MAX_MESSAGE_DATA + 77 }, (_, i) => (i * 7) % 256));
    const caller = setup((call) => {
      const far = tunnelOf(call as unknown as BytesMessageCall);
      far.cork();
      for (let at = 0; at < sent.length; at += 300_000) far.write(sent.subarray(at, at + 300_000));
      far.uncork();
      far.end();
    });
    const tunnel = bytesMessageTunnel(caller, PATH, { maxMessageBytes: MAX_MESSAGE_DATA + 16 });
    const got: Buffer[] = [];
    tunnel.on('data', (c: Buffer) => got.push(c));
    await new Promise((resolve, reject) => {
      tunnel.once('end', resolve);
      tunnel.once('error', reject);
    });
    expect(Buffer.concat(got).equals(sent)).toBe(true);
  });
});
