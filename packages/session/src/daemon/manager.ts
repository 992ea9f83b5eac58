/**
 * The daemon's sessions by id (BuildKit's `session.Manager`): a session is
 * added when its `Control.Session` call arrives and removed when it closes;
 * a build waits for the session its solve request names.
 */
import type { Duplex } from 'node:stream';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { BktError } from '@bkt/core';
import { Status } from '../grpc/status.js';
import { HEADER_SESSION_ID, headerMapOf, headerValues, type HeaderMap } from '../headers.js';
import { tunnelOf, type BytesMessageCall } from '../tunnel.js';
import { Session, type HealthCheckConfig } from './session.js';

export interface GetSessionOptions {
  /** How long to wait for the session to arrive (default 5 s); 0: do not wait. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export class SessionManager {
  private readonly sessions = new Map<string, Session>();
  private readonly waiters = new Set<() => void>();

  constructor(private readonly opts: { health?: HealthCheckConfig } = {}) {}

  /**
   * Serves one `Control.Session` call (the handler of the daemon's Control
   * service): the call becomes the tunnel of a new session, announced by
   * the call's metadata. Resolves when the session closes. A call without
   * a session id, or with the id of a live session, ends with an error.
   */
  async handleSession(call: ServerDuplexStream<{ data: Buffer }, { data: Buffer }>): Promise<void> {
    const headers = headerMapOf(call.metadata.toJSON() as Record<string, unknown>);
    try {
      this.checkNew(headers);
    } catch (err) {
      const code = err instanceof BktError && err.code === 'INVALID_ARGUMENT' ? Status.INVALID_ARGUMENT : Status.ALREADY_EXISTS;
      call.emit('error', Object.assign(new Error((err as Error).message), { code, details: (err as Error).message }));
      return;
    }
    const session = this.handleConnection(tunnelOf(call as unknown as BytesMessageCall), headers);
    await session.closed;
  }

  /**
   * Adds a session over `transport` (one HTTP/2 connection to the client's
   * server), announced by `headers`. Throws, leaving `transport` to the
   * caller, when the headers name no session id or the id of a live one.
   */
  handleConnection(transport: Duplex, headers: HeaderMap): Session {
    const id = this.checkNew(headers);
    const session = new Session(transport, headers, this.opts.health);
    this.sessions.set(id, session);
    void session.closed.then(() => {
      if (this.sessions.get(id) === session) this.sessions.delete(id);
    });
    for (const wake of [...this.waiters]) wake();
    return session;
  }

  /**
   * The live session `id` (a `prefix:` before it is ignored, as BuildKit's
   * `Manager.Get`), waiting for it to arrive. `NOT_FOUND` when it does not
   * arrive in time.
   */
  async get(id: string, opts: GetSessionOptions = {}): Promise<Session> {
    const colon = id.indexOf(':');
    const key = colon >= 0 && colon < id.length - 1 ? id.slice(colon + 1) : id;
    const timeoutMs = opts.timeoutMs ?? 5_000;
    const live = () => {
      const s = this.sessions.get(key);
      return s && !s.isClosed ? s : undefined;
    };
    const found = live();
    if (found) return found;
    if (timeoutMs <= 0) throw noSession(key);
    if (opts.signal?.aborted) throw new BktError('CANCELLED', `waiting for session ${key}: cancelled`);
    return new Promise<Session>((resolve, reject) => {
      const finish = (err?: Error) => {
        this.waiters.delete(check);
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        const s = live();
        if (s) resolve(s);
        else reject(err ?? noSession(key));
      };
      const check = () => {
        if (live()) finish();
      };
      const onAbort = () => finish(new BktError('CANCELLED', `waiting for session ${key}: cancelled`));
      const timer = setTimeout(() => finish(), timeoutMs);
      this.waiters.add(check);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The id the headers announce, when it is one a new session may take. */
  private checkNew(headers: HeaderMap): string {
    const id = headerValues(headers, HEADER_SESSION_ID)[0];
    if (!id) throw new BktError('INVALID_ARGUMENT', `session: the call has no ${HEADER_SESSION_ID} header`, { attribute: HEADER_SESSION_ID });
    const live = this.sessions.get(id);
    if (live && !live.isClosed) throw new BktError('DUPLICATE_KEY', `session ${id} already exists`, { session: id });
    return id;
  }

  /** The live sessions. */
  list(): Session[] {
    return [...this.sessions.values()].filter((s) => !s.isClosed);
  }

  /** Closes every session. */
  closeAll(reason?: Error): void {
    for (const s of this.sessions.values()) s.close(reason);
  }
}

function noSession(id: string): BktError {
  return new BktError('NOT_FOUND', `no active session for ${id}`, { session: id });
}
