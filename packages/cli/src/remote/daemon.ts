/**
 * The CLI's connection to bktd: `moby.buildkit.v1.Control` over grpc-js,
 * its calls as promises and async iterables, and the daemon's gRPC statuses
 * as the `BktError`s a build in this process would have thrown (same message,
 * a matching code).
 */
import * as grpc from '@grpc/grpc-js';
import * as control from '@bkt/api/control';
import type * as gateway from '@bkt/api/gateway';
import { BktError, type BuildClient } from '@bkt/core';
import { openSession, type OpenSession, type SessionServerOptions } from '@bkt/session';
import type { BuildConnection } from './connection.js';
import type { DaemonAddress } from './address.js';
import { daemonError } from './errors.js';

/** How long connecting to the daemon may take before it counts as unreachable. */
const CONNECT_TIMEOUT_MS = 10_000;

export class DaemonClient implements BuildConnection {
  private constructor(
    readonly address: string,
    readonly control: control.ControlClient,
  ) {}

  /**
   * Connects to the daemon at `addr` and asks its version (Control.Info), so
   * that an unreachable daemon is an error naming the address before
   * anything else happens.
   */
  static async connect(addr: DaemonAddress): Promise<DaemonClient> {
    const credentials = addr.tls ? grpc.credentials.createSsl(addr.tls.ca, addr.tls.key, addr.tls.cert) : grpc.credentials.createInsecure();
    const client = new control.ControlClient(addr.target, credentials, {
      'grpc.max_receive_message_length': 64 << 20,
      'grpc.max_send_message_length': 64 << 20,
    });
    const daemon = new DaemonClient(addr.address, client);
    try {
      await new Promise<void>((resolve, reject) =>
        client.info({}, new grpc.Metadata(), { deadline: Date.now() + CONNECT_TIMEOUT_MS }, (err) => (err ? reject(err) : resolve())),
      );
    } catch (err) {
      client.close();
      const e = err as grpc.ServiceError;
      if (e.code === grpc.status.UNAVAILABLE || e.code === grpc.status.DEADLINE_EXCEEDED) {
        throw new BktError('NOT_FOUND', `cannot reach bktd at ${addr.address} (--addr / BKT_HOST): ${(e.details || e.message).replace(/\.?\s*Resolution note:\s*$/, '')}`, { attribute: 'addr' }, { cause: err });
      }
      throw daemon.error(err, 'Info');
    }
    return daemon;
  }

  close(): void {
    this.#bridge?.close();
    this.control.close();
  }

  /** A session serving `client` over Control.Session on this client's channel. */
  openSession(client: BuildClient, opts: SessionServerOptions): OpenSession {
    return openSession(this.control, client, opts);
  }

  /** Control.Solve; aborting `signal` cancels the call (and so the build). */
  solve(req: control.SolveRequest, signal: AbortSignal): Promise<control.SolveResponse> {
    return new Promise((resolve, reject) => {
      const call = this.control.solve(req, (err, res) => (err ? reject(this.error(err, 'Solve')) : resolve(res)));
      const cancel = () => call.cancel();
      if (signal.aborted) cancel();
      else signal.addEventListener('abort', cancel, { once: true });
      call.on('status', () => signal.removeEventListener('abort', cancel));
    });
  }

  /** Control.Status of build `ref`: its progress until the build ends, or until `signal` aborts (then it just ends). */
  status(ref: string, signal: AbortSignal): AsyncIterable<control.StatusResponse> {
    return this.stream(this.control.status({ Ref: ref }), 'Status', signal);
  }

  async diskUsage(filter: string[] = []): Promise<control.UsageRecord[]> {
    const res = await new Promise<control.DiskUsageResponse>((resolve, reject) =>
      this.control.diskUsage({ filter }, (err, r) => (err ? reject(this.error(err, 'DiskUsage')) : resolve(r))),
    );
    return res.record;
  }

  async prune(req: control.PruneRequest): Promise<control.UsageRecord[]> {
    const removed: control.UsageRecord[] = [];
    for await (const r of this.stream(this.control.prune(req), 'Prune')) removed.push(r);
    return removed;
  }

  /** The recorded builds as ListenBuildHistory sends them now (EarlyExit), optionally of one ref. */
  async history(ref = ''): Promise<control.BuildHistoryRecord[]> {
    const records: control.BuildHistoryRecord[] = [];
    const req = control.BuildHistoryRequest.fromPartial({ EarlyExit: true, Ref: ref });
    for await (const e of this.stream(this.control.listenBuildHistory(req), 'ListenBuildHistory')) if (e.record) records.push(e.record);
    return records;
  }

  /** Control.UpdateBuildHistory: pins, unpins (`Pinned`) or deletes (`Delete`) a recorded build. */
  async updateBuildHistory(req: Partial<control.UpdateBuildHistoryRequest>): Promise<void> {
    await new Promise<void>((resolve, reject) =>
      this.control.updateBuildHistory(control.UpdateBuildHistoryRequest.fromPartial(req), (err) => (err ? reject(this.error(err, 'UpdateBuildHistory')) : resolve())),
    );
  }

  #bridge: gateway.LLBBridgeClient | undefined;

  /**
   * An LLBBridge call of client build `ref` (bktd's client-side frontends:
   * the call names the build in the `buildkit-controlapi-buildid` metadata
   * key), on the same connection as Control.
   */
  async bridge<Req, Res>(method: 'ping' | 'solve' | 'return', ref: string, req: Req, signal?: AbortSignal): Promise<Res> {
    // The gateway's stubs are loaded by the first call (only `--call` makes one).
    const { LLBBridgeClient } = await import('@bkt/api/gateway');
    this.#bridge ??= new LLBBridgeClient('bktd', grpc.credentials.createInsecure(), { channelOverride: this.control.getChannel() });
    const client = this.#bridge;
    const md = new grpc.Metadata();
    md.set('buildkit-controlapi-buildid', ref);
    return new Promise((resolve, reject) => {
      const fn = client[method] as unknown as (r: Req, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: Res) => void) => grpc.ClientUnaryCall;
      const call = fn.call(client, req, md, (err, res) => (err ? reject(Object.assign(this.error(err, `LLBBridge.${method}`) as object, { grpcCode: err.code })) : resolve(res)));
      const cancel = () => call.cancel();
      if (signal?.aborted) cancel();
      else signal?.addEventListener('abort', cancel, { once: true });
      call.on('status', () => signal?.removeEventListener('abort', cancel));
    });
  }

  /** A gRPC error of method `method` as a `BktError`: the daemon's message with the matching code. */
  error(err: unknown, method: string): unknown {
    const e = err as Partial<grpc.ServiceError>;
    if (typeof e?.code !== 'number') return err;
    return daemonError(this.address, method, e.code, e.details ?? '', err, e.message);
  }

  private async *stream<T>(call: grpc.ClientReadableStream<T>, method: string, signal?: AbortSignal): AsyncGenerator<T> {
    const cancel = () => call.cancel();
    signal?.addEventListener('abort', cancel, { once: true });
    try {
      for await (const message of call as AsyncIterable<T>) yield message;
    } catch (err) {
      if (signal?.aborted && (err as grpc.ServiceError).code === grpc.status.CANCELLED) return;
      throw this.error(err, method);
    } finally {
      signal?.removeEventListener('abort', cancel);
      call.cancel();
    }
  }
}
