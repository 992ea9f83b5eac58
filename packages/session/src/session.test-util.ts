/**
 * Both ends of a session in one process, for this package's tests: over an
 * in-memory Duplex pair, or over a real grpc-js `Control.Session` call on a
 * unix socket (a tiny Control server that serves only Session).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { credentials, Server, ServerCredentials, type ServerDuplexStream, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { BuildClient } from '@bkt/core';
import { ControlClient, ControlService, type BytesMessage } from '@bkt/api/control';
import { openSession, serveSession, type SessionServerOptions } from './client/serve.js';
import { SessionManager } from './daemon/manager.js';
import type { HealthCheckConfig, Session } from './daemon/session.js';
import { headerMapOf } from './headers.js';

/** Two connected Duplexes: what one writes, the other reads (Node 20 has no `stream.duplexPair`). */
export function duplexPair(): [Duplex, Duplex] {
  let a: Duplex;
  let b: Duplex;
  const end = (other: () => Duplex) => ({
    read() {},
    write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void) {
      other().push(chunk);
      cb();
    },
    final(cb: (err?: Error | null) => void) {
      other().push(null);
      cb();
    },
    destroy(err: Error | null, cb: (err?: Error | null) => void) {
      if (!other().destroyed) other().destroy();
      cb(err);
    },
  });
  a = new Duplex(end(() => b));
  b = new Duplex(end(() => a));
  return [a, b];
}

export type Transport = 'in-memory' | 'grpc';

export interface Connected {
  manager: SessionManager;
  /** The daemon's view of the session. */
  session: Session;
  /** Ends the client's side (as a client process going away). */
  closeClient(): void;
  /** Ends everything the harness started. */
  close(): Promise<void>;
}

export interface ConnectOptions extends SessionServerOptions {
  /** Extra session headers (e.g. the health custom timeout). */
  headers?: Record<string, string>;
  health?: HealthCheckConfig;
  /** A manager to add the session to (several sessions on one daemon). */
  manager?: SessionManager;
}

/** Serves `client`'s services and connects a daemon-side session to them over `transport`. */
export async function connect(transport: Transport, client: BuildClient, opts: ConnectOptions = {}): Promise<Connected> {
  const manager = opts.manager ?? new SessionManager({ health: opts.health });
  return transport === 'in-memory' ? inMemory(manager, client, opts) : overGrpc(manager, client, opts);
}

async function inMemory(manager: SessionManager, client: BuildClient, opts: ConnectOptions): Promise<Connected> {
  const [clientEnd, daemonEnd] = duplexPair();
  const server = serveSession(client, opts);
  server.serve(clientEnd);
  const session = manager.handleConnection(daemonEnd, headerMapOf(server.metadata(opts.headers)));
  return {
    manager,
    session,
    closeClient: () => {
      clientEnd.destroy();
      server.close();
    },
    close: async () => {
      session.close();
      clientEnd.destroy();
      server.close();
    },
  };
}

async function overGrpc(manager: SessionManager, client: BuildClient, opts: ConnectOptions): Promise<Connected> {
  const dir = await mkdtemp(join(tmpdir(), 'bkt-session-test-'));
  const address = `unix://${join(dir, 'control.sock')}`;
  const daemon = new Server();
  const control: UntypedServiceImplementation = {
    session: (call: ServerDuplexStream<BytesMessage, BytesMessage>) => void manager.handleSession(call),
  };
  daemon.addService({ session: ControlService.session } as never, control);
  await new Promise<void>((resolve, reject) => daemon.bindAsync(address, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  const controlClient = new ControlClient(address, credentials.createInsecure());
  const opened = openSession(controlClient, client, opts);
  const session = await manager.get(opened.id, { timeoutMs: 5_000 });
  return {
    manager,
    session,
    closeClient: () => opened.close(),
    close: async () => {
      session.close();
      opened.close();
      controlClient.close();
      daemon.forceShutdown();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
