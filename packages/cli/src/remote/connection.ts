/**
 * The connection a build through bktd uses: `Control.Info`, `Solve`,
 * `Status` and `Session` over one HTTP/2 connection made with node:http2
 * (`SessionCaller` of @bkt/session), not grpc-js's client channel — a
 * build's client is a short process, and the channel's machinery (resolver,
 * load balancer, retries, a call object per message) costs it more CPU
 * than the calls themselves. The session's tunnel is framed by hand
 * (`bytesMessageTunnel`). Errors are the `BktError`s `DaemonClient` gives.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { isIP } from 'node:net';
import * as control from '@bkt/api/control';
import { BktError } from '@bkt/core';
import { bytesMessageTunnel, CallError, openSession, SessionCaller, Status, type OpenSession, type SessionServerOptions } from '@bkt/session';
import type { BuildClient } from '@bkt/core';
import type { DaemonAddress } from './address.js';
import { daemonError } from './errors.js';

/** How long connecting to the daemon may take before it counts as unreachable. */
const CONNECT_TIMEOUT_MS = 10_000;
/** Largest message accepted from the daemon (as the grpc-js client's setting). */
const MAX_MESSAGE_BYTES = 64 << 20;

/** What a build needs of its connection to the daemon (this one, or `DaemonClient`). */
export interface BuildConnection {
  readonly address: string;
  solve(req: control.SolveRequest, signal: AbortSignal): Promise<control.SolveResponse>;
  status(ref: string, signal: AbortSignal): AsyncIterable<control.StatusResponse>;
  openSession(client: BuildClient, opts: SessionServerOptions): OpenSession;
  close(): void;
}

export class ControlConnection implements BuildConnection {
  private constructor(
    readonly address: string,
    private readonly caller: SessionCaller,
  ) {}

  /**
   * Connects to the daemon at `addr` and asks its version (Control.Info), so
   * that an unreachable daemon is an error naming the address before
   * anything else happens.
   */
  static async connect(addr: DaemonAddress): Promise<ControlConnection> {
    const unreachable = (why: string, cause?: unknown) =>
      new BktError('NOT_FOUND', `cannot reach bktd at ${addr.address} (--addr / BKT_HOST): ${why}`, { attribute: 'addr' }, { cause });
    let socket: Socket;
    try {
      socket = await dial(addr);
    } catch (err) {
      throw unreachable((err as Error).message, err);
    }
    const caller = SessionCaller.connect(socket, { maxMessageBytes: MAX_MESSAGE_BYTES });
    const connection = new ControlConnection(addr.address, caller);
    try {
      await caller.unary(control.ControlService.info, {}, { timeoutMs: CONNECT_TIMEOUT_MS });
    } catch (err) {
      caller.close();
      if (err instanceof CallError && (err.code === Status.UNAVAILABLE || err.code === Status.DEADLINE_EXCEEDED)) throw unreachable(err.details, err);
      throw connection.error(err, 'Info');
    }
    return connection;
  }

  close(): void {
    this.caller.close();
  }

  /** Control.Solve; aborting `signal` cancels the call (and so the build). */
  async solve(req: control.SolveRequest, signal: AbortSignal): Promise<control.SolveResponse> {
    try {
      return await this.caller.unary(control.ControlService.solve, req, { signal });
    } catch (err) {
      throw this.error(err, 'Solve');
    }
  }

  /** Control.Status of build `ref`: its progress until the build ends, or until `signal` aborts (then it just ends). */
  async *status(ref: string, signal: AbortSignal): AsyncGenerator<control.StatusResponse> {
    const call = this.caller.stream(control.ControlService.status, { signal });
    try {
      await call.write({ Ref: ref });
      call.end();
      for await (const res of call) yield res;
    } catch (err) {
      if (signal.aborted && err instanceof CallError && err.code === Status.CANCELLED) return;
      throw this.error(err, 'Status');
    } finally {
      call.cancel();
    }
  }

  /** A session serving `client` over Control.Session on this connection. */
  openSession(client: BuildClient, opts: SessionServerOptions): OpenSession {
    const path = control.ControlService.session.path;
    return openSession({ sessionTunnel: (metadata) => bytesMessageTunnel(this.caller, path, { metadata, maxMessageBytes: MAX_MESSAGE_BYTES }) }, client, opts);
  }

  private error(err: unknown, method: string): unknown {
    if (!(err instanceof CallError)) return err;
    return daemonError(this.address, method, err.code, err.details, err);
  }
}

/** A connected socket to the daemon: its unix socket, or TLS over TCP (ALPN h2) with the client's certificate. */
function dial(addr: DaemonAddress): Promise<Socket> {
  return new Promise((resolve, reject) => {
    let socket: Socket;
    if (addr.target.startsWith('unix://')) {
      socket = netConnect(addr.target.slice('unix://'.length));
    } else {
      const at = addr.target.lastIndexOf(':');
      const host = addr.target.slice(0, at).replace(/^\[(.*)\]$/, '$1');
      const opts: ConnectionOptions = { host, port: Number(addr.target.slice(at + 1)), ALPNProtocols: ['h2'], ...(addr.tls ?? {}) };
      if (!isIP(host)) opts.servername = host;
      socket = tlsConnect(opts);
    }
    const secure = !addr.target.startsWith('unix://');
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no connection within ${CONNECT_TIMEOUT_MS} ms`));
    }, CONNECT_TIMEOUT_MS);
    const ok = () => {
      clearTimeout(timer);
      socket.off('error', bad);
      resolve(socket);
    };
    const bad = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    socket.once(secure ? 'secureConnect' : 'connect', ok);
    socket.once('error', bad);
  });
}
