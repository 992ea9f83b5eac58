import { createServer, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as control from '@bkt/api/control';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ControlConnection } from './connection.js';

/** A gRPC method's handler: the request's path, answered on `stream` (trailers included). */
type Handler = (path: string, stream: ServerHttp2Stream) => void;

let dir: string;
let server: Http2Server | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bkt-connection-'));
});

afterEach(async () => {
  if (server) await new Promise<void>((resolve) => server!.close(() => resolve()));
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** An HTTP/2 server on a unix socket in `dir`, each request's path and stream handed to `handler`; its address. */
async function serve(handler: Handler): Promise<{ address: string; target: string }> {
  const socket = join(dir, 'd.sock');
  server = createServer();
  server.on('stream', (stream, headers) => handler(String(headers[':path']), stream));
  await new Promise<void>((resolve) => server!.listen(socket, resolve));
  return { address: `unix://${socket}`, target: `unix://${socket}` };
}

/** Answers `stream` with one empty message and status OK. */
function answerEmpty(stream: ServerHttp2Stream): void {
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
  stream.end(Buffer.alloc(5));
}

/** Answers `stream` with gRPC status `code` and `message` (trailers only). */
function answerStatus(stream: ServerHttp2Stream, code: number, message: string): void {
  stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': encodeURIComponent(message) }, { endStream: true });
}

const INFO = control.ControlService.info.path;
const SOLVE = control.ControlService.solve.path;

describe('ControlConnection', () => {
  it('sends the Solve without waiting for the Info answer (one round trip less)', async () => {
    const seen: string[] = [];
    let info: ServerHttp2Stream | undefined;
    const addr = await serve((path, stream) => {
      seen.push(path);
      stream.resume();
      // Info is answered only once the Solve arrived: a client that waits for Info never sends it.
      if (path === INFO) info = stream;
      else if (path === SOLVE) {
        answerEmpty(info!);
        answerEmpty(stream);
      }
    });
    const connection = await ControlConnection.connect(addr);
    try {
      const res = await connection.solve(control.SolveRequest.fromPartial({ Ref: 'r' }), new AbortController().signal);
      expect(res.ExporterResponse).toEqual({});
      expect(seen).toEqual([INFO, SOLVE]);
    } finally {
      connection.close();
    }
  });

  it("a daemon refusing Info: the Solve fails with Info's error, though the Solve's call is still open", async () => {
    const addr = await serve((path, stream) => {
      stream.resume();
      // The Solve is left unanswered: Info's failure must end it.
      if (path === INFO) setTimeout(() => answerStatus(stream, 12, 'unknown service moby.buildkit.v1.Control'), 20);
    });
    const connection = await ControlConnection.connect(addr);
    try {
      await expect(connection.solve(control.SolveRequest.fromPartial({ Ref: 'r' }), new AbortController().signal)).rejects.toMatchObject({
        code: 'UNIMPLEMENTED',
        message: 'unknown service moby.buildkit.v1.Control',
      });
    } finally {
      connection.close();
    }
  });

  it('a daemon that goes away before answering: cannot reach, naming the address (not the Solve)', async () => {
    const addr = await serve((path, stream) => {
      stream.resume();
      if (path === SOLVE) stream.session?.destroy();
    });
    const connection = await ControlConnection.connect(addr);
    try {
      await expect(connection.solve(control.SolveRequest.fromPartial({ Ref: 'r' }), new AbortController().signal)).rejects.toMatchObject({
        code: 'NOT_FOUND',
        message: expect.stringContaining(`cannot reach bktd at ${addr.address} (--addr / BKT_HOST): `),
      });
    } finally {
      connection.close();
    }
  });

  it('a socket nobody listens on: cannot reach at connect', async () => {
    const missing = `unix://${join(dir, 'none.sock')}`;
    await expect(ControlConnection.connect({ address: missing, target: missing })).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringContaining(`cannot reach bktd at ${missing} (--addr / BKT_HOST): `),
    });
  });
});
