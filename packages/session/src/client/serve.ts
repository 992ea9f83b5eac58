/**
 * The client's half of a session (BuildKit's `session.Session`): a gRPC
 * server holding the client's services — everything a `BuildClient`
 * offers — plus `grpc.health.v1.Health`, served over the tunnel with
 * node:http2 (`grpc/server.ts`; no grpc-js). The client announces the
 * session in the `Control.Session` call's metadata: its id, shared key and
 * one `/service/method` value per method it serves.
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
import type { ClientDuplexStream, Metadata } from '@grpc/grpc-js';
import type { BuildClient } from '@bkt/core';
import { FileSendService, FileSyncService } from '@bkt/api/filesync';
import { HEADER_SESSION_ID, HEADER_SESSION_METHOD, HEADER_SESSION_SHARED_KEY } from '../headers.js';
import { GrpcServer, type ServedMethod } from '../grpc/server.js';
import { tunnelOf, type BytesMessageCall } from '../tunnel.js';
import { serveFileSend, type OutputTargets } from './filesend.js';
import { DIFFCOPY_BATCH_METHOD } from '../fsutil/batch.js';
import { serveDiffCopy, serveDiffCopyBatch } from './filesync.js';
import { statusOf } from './calls.js';
import { serveAuth, serveHealth, serveSecrets, serveSsh } from './services.js';

export interface SessionServerOptions {
  /** The session's id (default: random); the daemon's solve requests name it. */
  id?: string;
  /**
   * Names this client's local directories across sessions, so that the
   * daemon can reuse what it synced of them before (default: the session
   * id — nothing is reused).
   */
  sharedKey?: string;
  /** The client's outputs by exporter id; FileSend is served only when there are some. */
  outputs?: OutputTargets;
  /**
   * Serve bkt's DiffCopy too (many packets a message, change tokens; a bkt
   * daemon prefers it). Default true; false serves only BuildKit's, as
   * BuildKit's own clients do.
   */
  batchedFileSync?: boolean;
}

export interface SessionServer {
  readonly id: string;
  readonly sharedKey: string;
  /** `/<service>/<method>` of every method served. */
  readonly methods: readonly string[];
  /**
   * The `Control.Session` metadata announcing this session: the
   * `X-Docker-Expose-Session-*` headers, lower-cased as grpchijack sends
   * them, one value per method; `extra` adds headers (e.g.
   * `X-Buildkit-Session-Health-Custom-Timeout`).
   */
  metadata(extra?: Readonly<Record<string, string>>): Record<string, string[]>;
  /** Serves the HTTP/2 connection carried by `transport` (the tunnel). */
  serve(transport: Duplex): void;
  /** Stops serving: open calls end, connections close. */
  close(): void;
}

/** A server with the services `client` offers. */
export function serveSession(client: BuildClient, opts: SessionServerOptions = {}): SessionServer {
  const id = opts.id ?? randomBytes(16).toString('hex');
  const sharedKey = opts.sharedKey ?? id;
  const server = new GrpcServer({ statusOf });
  /** A bidirectional method whose messages the handler reads and writes as bytes. */
  const raw = (path: string): ServedMethod<Buffer, Buffer> => ({ path, requestDeserialize: (b) => b, responseSerialize: (b) => b });

  serveHealth(server);
  server.bidi(FileSyncService.diffCopy, (call) => void serveDiffCopy(client, call));
  // bkt's DiffCopy, many packets a message (a bkt daemon prefers it; BuildKit's ignores it).
  if (opts.batchedFileSync !== false) server.bidi(raw(DIFFCOPY_BATCH_METHOD), (call) => void serveDiffCopyBatch(client, call));
  const outputs = opts.outputs ?? {};
  // Raw bytes: a directory target's messages are fsutil packets, a file target's BytesMessages.
  if (Object.keys(outputs).length > 0) server.bidi(raw(FileSendService.diffCopy.path), (call) => void serveFileSend(client, outputs, call));
  serveAuth(server, client);
  serveSecrets(server, client);
  serveSsh(server, client);
  const methods = server.paths;

  return {
    id,
    sharedKey,
    methods,
    metadata(extra = {}) {
      const md: Record<string, string[]> = {
        [HEADER_SESSION_ID.toLowerCase()]: [id],
        [HEADER_SESSION_SHARED_KEY.toLowerCase()]: [sharedKey],
        [HEADER_SESSION_METHOD.toLowerCase()]: [...methods],
      };
      for (const [key, value] of Object.entries(extra)) md[key.toLowerCase()] = [value];
      return md;
    },
    serve(transport) {
      server.serve(transport);
    },
    close() {
      server.close();
    },
  };
}

/**
 * What `openSession` needs to reach the daemon: a `ControlClient` of
 * `@bkt/api/control` (its `Control.Session` call, tunnelled by `tunnelOf`),
 * or anything that opens the tunnel itself from the session's headers (a
 * `SessionCaller` with `bytesMessageTunnel`).
 */
export type SessionDialer =
  | { session(metadata: Metadata): ClientDuplexStream<{ data: Buffer }, { data: Buffer }> }
  | { sessionTunnel(headers: Record<string, string[]>): Duplex };

export interface OpenSession {
  readonly id: string;
  readonly sharedKey: string;
  /** Settles when the `Control.Session` call is over (the daemon closed it, or `close()`). */
  readonly done: Promise<void>;
  /** Ends the session: the call is cancelled and the server stops. */
  close(): void;
}

/**
 * Opens `Control.Session` on the daemon and serves `client`'s services over
 * it (BuildKit's `Session.Run` with grpchijack's dialer).
 */
export function openSession(control: SessionDialer, client: BuildClient, opts: SessionServerOptions & { headers?: Readonly<Record<string, string>> } = {}): OpenSession {
  const server = serveSession(client, opts);
  const headers = server.metadata(opts.headers);
  let transport: Duplex;
  let call: ClientDuplexStream<{ data: Buffer }, { data: Buffer }> | undefined;
  if ('sessionTunnel' in control) {
    transport = control.sessionTunnel(headers);
  } else {
    // A grpc-js client: grpc-js is loaded already, and its call takes its own Metadata.
    const metadata = new (createRequire(import.meta.url)('@grpc/grpc-js') as typeof import('@grpc/grpc-js')).Metadata();
    for (const [key, values] of Object.entries(headers)) for (const v of values) metadata.add(key, v);
    call = control.session(metadata);
    transport = tunnelOf(call as unknown as BytesMessageCall);
  }
  const done = new Promise<void>((resolve) => {
    let settled = false;
    const settle = () => {
      if (settled) return;
      settled = true;
      server.close();
      resolve();
    };
    transport.on('close', settle);
    // The tunnel's own failure is the call's status: the server's connection ends with it.
    transport.on('error', () => {});
    call?.on('status', settle);
    call?.on('error', settle);
  });
  server.serve(transport);
  return {
    id: server.id,
    sharedKey: server.sharedKey,
    done,
    close() {
      transport.destroy();
      server.close();
    },
  };
}
