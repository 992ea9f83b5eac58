/**
 * Progress of one build: vertex, status, log and warning events (shaped like
 * control.proto's StatusResponse), delivered to the solve request's
 * `onProgress` and to the `vertexStart` / `vertexLog` / `vertexDone` hooks.
 */
import type { BktHooks, Digest, ProgressEvent, ProgressWriter, VertexEvent } from '@bkt/core';

export type Emit = (event: ProgressEvent) => void;

/** The event sink of one build. A throwing listener never breaks the build. */
export class BuildProgress {
  /** Vertices a vertex event has been sent for. */
  readonly #shown = new Set<Digest>();

  constructor(
    private readonly hooks: BktHooks,
    private readonly listener: ((event: ProgressEvent) => void) | undefined,
  ) {}

  readonly emit: Emit = (event) => {
    if (event.type === 'vertex') this.#shown.add(event.vertex.digest);
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

  vertexDone(v: VertexEvent): void {
    this.emit({ type: 'vertex', vertex: v });
    this.hooks.vertexDone.call(v);
  }

  /** Whether the client has been sent a vertex event for `digest` (warnings should not point at unknown vertices). */
  shown(digest: Digest): boolean {
    return this.#shown.has(digest);
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
    log(stream, msg) {
      const bytes = typeof msg === 'string' ? new TextEncoder().encode(msg) : msg;
      each({ type: 'log', log: { vertex: digest, timestamp: new Date(), stream, msg: bytes } });
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
