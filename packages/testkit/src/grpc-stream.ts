/**
 * A minimal gRPC client over one duplex stream (HTTP/2 client side with
 * node:http2, 5-byte gRPC framing), as a frontend dials LLBBridge over its
 * stdio. grpc-js has no client over a custom stream, so tests and the test
 * frontend image speak gRPC by hand. Unary calls only, plus ExecProcess as a
 * raw message stream.
 */
import * as http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import * as gw from '@bkt/api/gateway';
import * as google from '@bkt/api/google';

export class GrpcCallError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly details: { typeUrl: string; value: Buffer }[],
  ) {
    super(message);
  }
}

function frame(msg: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(msg.length, 1);
  return Buffer.concat([head, msg]);
}

function unframe(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off + 5 <= buf.length) {
    const len = buf.readUInt32BE(off + 1);
    out.push(buf.subarray(off + 5, off + 5 + len));
    off += 5 + len;
  }
  return out;
}

type Method = { path: string; requestSerialize(v: never): Buffer; responseDeserialize(b: Buffer): unknown };

export class StreamGrpcClient {
  readonly session: http2.ClientHttp2Session;

  constructor(stream: Duplex, readonly metadata: Record<string, string> = {}) {
    this.session = http2.connect('http://localhost', { createConnection: () => stream });
    this.session.on('error', () => undefined);
  }

  call<K extends keyof typeof gw.LLBBridgeService>(
    name: K,
    request: Parameters<(typeof gw.LLBBridgeService)[K]['requestSerialize']>[0],
  ): Promise<ReturnType<(typeof gw.LLBBridgeService)[K]['responseDeserialize']>> {
    const method = gw.LLBBridgeService[name] as unknown as Method;
    return this.raw(method.path, method.requestSerialize(request as never)).then((b) => method.responseDeserialize(b[0] ?? Buffer.alloc(0)) as never);
  }

  raw(path: string, body: Buffer): Promise<Buffer[]> {
    return new Promise((resolve, reject) => {
      const req = this.session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...this.metadata });
      const chunks: Buffer[] = [];
      let headers: http2.IncomingHttpHeaders = {};
      req.on('response', (h) => (headers = h));
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('error', reject);
      let trailers: http2.IncomingHttpHeaders = {};
      req.on('trailers', (t) => (trailers = t));
      req.on('end', () => {
        // A trailers-only response carries its status in the headers.
        const all = { ...headers, ...trailers };
        const status = Number(all['grpc-status'] ?? 0);
        if (status === 0) return resolve(unframe(Buffer.concat(chunks)));
        const raw = all['grpc-status-details-bin'];
        const details = typeof raw === 'string' ? google.rpc.Status.decode(Buffer.from(raw, 'base64')).details.map((d) => ({ typeUrl: d.typeUrl, value: Buffer.from(d.value) })) : [];
        reject(new GrpcCallError(status, decodeURIComponent(String(all['grpc-message'] ?? '')), details));
      });
      req.end(frame(body));
    });
  }

  close(): void {
    this.session.close();
  }
}
