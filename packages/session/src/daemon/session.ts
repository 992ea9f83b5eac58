/**
 * A client's session as the daemon holds it: the id, shared key and
 * methods the client announced, and a caller into the client's services
 * over the tunnel. Its health is checked as BuildKit's `monitorHealth`
 * does (`session/grpc.go`): `grpc.health.v1.Health/Check` every 5 s, each
 * with a 15 s timeout (or 1.5× the last check's duration when longer),
 * and two failures in a row close the session; header
 * `X-Buildkit-Session-Health-Custom-Timeout` (ms, at least 1 s) sets both
 * the interval and the timeout and makes one failure fatal.
 */
import type { Duplex } from 'node:stream';
import { HealthService } from '@bkt/api/health';
import { SessionCaller } from '../grpc/caller.js';
import { HEADER_HEALTH_CUSTOM_TIMEOUT, HEADER_SESSION_ID, HEADER_SESSION_METHOD, HEADER_SESSION_SHARED_KEY, headerValues, type HeaderMap } from '../headers.js';

export interface HealthCheckConfig {
  intervalMs: number;
  timeoutMs: number;
  /** Failures in a row that close the session. */
  failureThreshold: number;
}

export const DEFAULT_HEALTH_CHECK: HealthCheckConfig = { intervalMs: 5_000, timeoutMs: 15_000, failureThreshold: 2 };

/** The health check the client's headers ask for (BuildKit's `healthCheckConfigFromHeaders`). */
export function healthCheckOf(headers: HeaderMap): HealthCheckConfig {
  const ms = Number.parseInt(headerValues(headers, HEADER_HEALTH_CUSTOM_TIMEOUT)[0] ?? '', 10);
  if (!(ms > 0)) return DEFAULT_HEALTH_CHECK;
  const d = Math.max(ms, 1_000);
  return { intervalMs: d, timeoutMs: d, failureThreshold: 1 };
}

export class Session {
  readonly id: string;
  readonly sharedKey: string;
  /** The methods the client serves, lower-cased. */
  readonly methods: ReadonlySet<string>;
  readonly caller: SessionCaller;
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  /** Settles when the session is closed; `closeReason` says why. */
  readonly closed: Promise<void>;
  closeReason: Error | undefined;

  /**
   * A session over `transport` (one HTTP/2 connection to the client's
   * server) announced by `headers` (names lower-cased). It closes when the
   * transport ends, when the health check fails, or on `close()`.
   */
  constructor(transport: Duplex, headers: HeaderMap, health: HealthCheckConfig = healthCheckOf(headers)) {
    this.id = headerValues(headers, HEADER_SESSION_ID)[0] ?? '';
    this.sharedKey = headerValues(headers, HEADER_SESSION_SHARED_KEY)[0] ?? '';
    this.methods = new Set(headerValues(headers, HEADER_SESSION_METHOD).map((m) => m.trim().toLowerCase()));
    this.caller = SessionCaller.connect(transport);
    this.closed = new Promise((resolve) => this.controller.signal.addEventListener('abort', () => resolve(), { once: true }));
    transport.once('close', () => this.close(new Error('the session stream ended')));
    void this.caller.closed.then(() => this.close(new Error('the session connection closed')));
    this.monitor(health);
  }

  /** Aborted when the session closes. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get isClosed(): boolean {
    return this.controller.signal.aborted;
  }

  /** Whether the client serves `method` (`/service/method`, any case), as BuildKit's `Caller.Supports`. */
  supports(method: string): boolean {
    return this.methods.has(method.toLowerCase());
  }

  close(reason: Error = new Error('the session was closed')): void {
    if (this.controller.signal.aborted) return;
    this.closeReason = reason;
    clearTimeout(this.timer);
    this.controller.abort(reason);
    this.caller.close();
  }

  private monitor(cfg: HealthCheckConfig): void {
    let failures = 0;
    let lastMs = 0;
    const check = async () => {
      const timeoutMs = Math.max(cfg.timeoutMs, lastMs * 1.5);
      const started = Date.now();
      try {
        await this.caller.unary(HealthService.check, { service: '' }, { timeoutMs, signal: this.signal });
        failures = 0;
      } catch (err) {
        if (this.isClosed) return;
        if (++failures >= cfg.failureThreshold) {
          this.close(new Error(`session healthcheck failed fatally: ${(err as Error).message}`));
          return;
        }
      } finally {
        lastMs = Date.now() - started;
      }
      schedule();
    };
    const schedule = () => {
      if (this.isClosed) return;
      this.timer = setTimeout(() => void check(), cfg.intervalMs);
      this.timer.unref();
    };
    schedule();
  }
}
