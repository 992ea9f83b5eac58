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
    /** Control.Info's outcome: rejected with the error naming an unreachable or refusing daemon (and the connection then closed). */
    private readonly info: Promise<void>,
  ) {}

  /**
   * Connects to the daemon at `addr` and asks its version (Control.Info)
   * without waiting for the answer: the build's calls (session, Solve,
   * Status) follow on the same connection at once, and a Solve's outcome
   * waits for Info's, so that an unreachable or refusing daemon is still the
   * error naming the address (a socket that does not connect is that error
   * here).
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
    const info = caller.unary(control.ControlService.info, {}, { timeoutMs: CONNECT_TIMEOUT_MS }).then(
      () => undefined,
      (err: unknown) => {
        // Whatever was sent after Info ends with the connection.
        caller.close();
        if (err instanceof CallError && (err.code === Status.UNAVAILABLE || err.code === Status.DEADLINE_EXCEEDED)) throw unreachable(err.details, err);
        throw callError(addr.address, err, 'Info');
      },
    );
    // Reported by the calls that follow (solve); a connection closed before Info answered leaves nothing unhandled.
    info.catch(() => undefined);
    return new ControlConnection(addr.address, caller, info);
  }

  close(): void {
    this.caller.close();
  }

  /** Control.Solve, sent without waiting for Info; aborting `signal` cancels the call (and so the build). Info's error comes first. */
  async solve(req: control.SolveRequest, signal: AbortSignal): Promise<control.SolveResponse> {
    const solving = this.caller.unary(control.ControlService.solve, req, { signal });
    try {
      const [, res] = await Promise.all([this.info, solving]);
      return res;
    } catch (err) {
      await this.info;
      throw callError(this.address, err, 'Solve');
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
      throw callError(this.address, err, 'Status');
    } finally {
      call.cancel();
    }
  }

  /** A session serving `client` over Control.Session on this connection. */
  openSession(client: BuildClient, opts: SessionServerOptions): OpenSession {
    const path = control.ControlService.session.path;
    return openSession({ sessionTunnel: (metadata) => bytesMessageTunnel(this.caller, path, { metadata, maxMessageBytes: MAX_MESSAGE_BYTES }) }, client, opts);
  }
}

/** A failed call of `method` as the `BktError` a build in this process would have thrown (other errors as they are). */
function callError(address: string, err: unknown, method: string): unknown {
  if (!(err instanceof CallError)) return err;
  return daemonError(address, method, err.code, err.details, err);
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
