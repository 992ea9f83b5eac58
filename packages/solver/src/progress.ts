/**
 * Progress of one build: vertex, status, log and warning events (shaped like
 * control.proto's StatusResponse), delivered to the solve request's
 * `onProgress` and to the `vertexStart` / `vertexLog` / `vertexDone` hooks.
 */
import type { BktHooks, Digest, ProgressEvent, ProgressWriter, VertexEvent } from '@bkt/core';

export type Emit = (event: ProgressEvent) => void;

/**
 * The error of a step stopped because its build failed elsewhere or was
 * cancelled (BuildKit's `context canceled`, which displays show as
 * CANCELED). Only the step that failed carries its own error.
 */
export const CANCELED_ERROR = 'context canceled';

/** The event sink of one build. A throwing listener never breaks the build. */
export class BuildProgress {
  /** Vertices a vertex event has been sent for. */
  readonly #shown = new Set<Digest>();
  /** Vertices shown as started and not yet completed, with their latest event. */
  readonly #open = new Map<Digest, VertexEvent>();
  /** Vertices completed through `vertexDone`. */
  readonly #completed = new Set<Digest>();

  constructor(
    private readonly hooks: BktHooks,
    private readonly listener: ((event: ProgressEvent) => void) | undefined,
  ) {}

  readonly emit: Emit = (event) => {
    if (event.type === 'vertex') {
      const v = event.vertex;
      this.#shown.add(v.digest);
      if (v.completed) this.#open.delete(v.digest);
      else if (v.started) this.#open.set(v.digest, v);
    }
    try {
      this.listener?.(event);
    } catch {
      // A progress consumer's bug must not fail the build.
    }
    if (event.type === 'log') this.hooks.vertexLog.call(event.log);
  };

  vertexStarted(v: VertexEvent): void {
    this.emit({ type: 'vertex', vertex: v });
    this.hooks.vertexStart.call(v);
  }

  /** Completes a vertex; a vertex completes once (a later report of it, e.g. a step stopping after its build was closed, is dropped). */
  vertexDone(v: VertexEvent): void {
    if (this.#completed.has(v.digest)) return;
    this.#completed.add(v.digest);
    this.emit({ type: 'vertex', vertex: v });
    this.hooks.vertexDone.call(v);
  }

  /** Whether the client has been sent a vertex event for `digest` (warnings should not point at unknown vertices). */
  shown(digest: Digest): boolean {
    return this.#shown.has(digest);
  }

  /** Completes vertex `digest` with `error` when it is shown and still open (a step that failed before it ran, e.g. resolving its source). */
  failOpen(digest: Digest, error: string): void {
    const open = this.#open.get(digest);
    if (open) this.vertexDone({ ...open, completed: new Date(), error });
  }

  /** Completes every open vertex as CANCELED: what a failed or cancelled build left running. */
  cancelOpen(): void {
    for (const digest of [...this.#open.keys()]) this.failOpen(digest, CANCELED_ERROR);
  }

  /** A vertex satisfied from the cache: one event, started = completed. */
  vertexCached(v: Omit<VertexEvent, 'cached' | 'started' | 'completed'>): void {
    const now = new Date();
    const ev: VertexEvent = { ...v, cached: true, started: now, completed: now };
    this.hooks.vertexStart.call(ev);
    this.vertexDone(ev);
  }
}

/** A `ProgressWriter` writing to vertex `digest` of every sink in `sinks` (builds sharing one run). */
export function vertexWriter(digest: Digest, sinks: Iterable<Emit>): ProgressWriter {
  const started = new Map<string, Date>();
  const each = (event: ProgressEvent) => {
    for (const emit of sinks) emit(event);
  };
  return {
    log(stream, msg, only) {
      const bytes = typeof msg === 'string' ? new TextEncoder().encode(msg) : msg;
      each({ type: 'log', log: { vertex: digest, timestamp: new Date(), stream, msg: bytes, ...(only ? { only } : {}) } });
    },
    logHistoryOnly(stream, msg) {
      each({ type: 'log', log: { vertex: digest, timestamp: new Date(), stream, msg, only: 'history' } });
    },
    status(id, name, current, total, done) {
      const now = new Date();
      if (!started.has(id)) started.set(id, now);
      each({
        type: 'status',
        status: { id, vertex: digest, name, current, total, timestamp: now, started: started.get(id), completed: done ? now : undefined },
      });
    },
    warn(short, detail) {
      each({ type: 'warning', warning: { vertex: digest, level: 1, short, detail: detail ?? [] } });
    },
  };
}
