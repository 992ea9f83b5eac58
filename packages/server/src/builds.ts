/**
 * The builds a daemon runs, by ref (BuildKit's job list): each build's
 * progress as it happened, for `Status` subscribers however late they join,
 * and the start and end of every build, for `ListenBuildHistory`.
 *
 * A finished build's progress stays here for `keepFinishedMs` (a client
 * calls Status right after Solve returns); after that it is gone from memory.
 */
import { BktError, type ProgressEvent } from '@bkt/core';
import type { BuildHistoryRecord } from '@bkt/solver';

interface Tracked {
  ref: string;
  events: ProgressEvent[];
  done: boolean;
  /** Woken on every new event and at the end. */
  wake: Set<() => void>;
}

/**
 * A build started (with its record as it stands then), completed (its final
 * record is in the store's history), had its finished record updated (a pin)
 * or was deleted from the history.
 */
export type BuildEvent =
  | { type: 'started'; ref: string; record: BuildHistoryRecord }
  | { type: 'completed'; ref: string }
  | { type: 'updated'; ref: string }
  | { type: 'deleted'; ref: string };

/** What is known of a build when it starts. */
export type BuildStartInfo = Pick<BuildHistoryRecord, 'frontend' | 'frontendAttrs' | 'exporters'>;

export interface BuildTrackerOptions {
  /** How long Status waits for a build that has not started (default 6 s). */
  waitForStartMs?: number;
  /** How long a finished build's progress is kept for Status (default 60 s). */
  keepFinishedMs?: number;
}

export class BuildTracker {
  readonly #builds = new Map<string, Tracked>();
  readonly #arrivals = new Set<() => void>();
  readonly #listeners = new Set<(e: BuildEvent) => void>();
  readonly #idleWaiters = new Set<() => void>();
  readonly #waitForStartMs: number;
  readonly #keepFinishedMs: number;

  constructor(opts: BuildTrackerOptions = {}) {
    this.#waitForStartMs = opts.waitForStartMs ?? 6000;
    this.#keepFinishedMs = opts.keepFinishedMs ?? 60_000;
  }

  /** Whether build `ref` is running or finished lately (its progress is here). */
  has(ref: string): boolean {
    return this.#builds.has(ref);
  }

  /** Whether build `ref` is running. */
  isRunning(ref: string): boolean {
    const b = this.#builds.get(ref);
    return !!b && !b.done;
  }

  /** Refs of the running builds. */
  running(): string[] {
    return [...this.#builds.values()].filter((b) => !b.done).map((b) => b.ref);
  }

  /**
   * Registers build `ref` as running; returns its progress listener and
   * `finish`, to call once the build (and its history record) is complete.
   * `INVALID_ARGUMENT` when a build of that ref is running.
   */
  /** `internal`: a build the history does not record, so no event announces it. */
  start(ref: string, info: BuildStartInfo, opts: { internal?: boolean } = {}): { onProgress(event: ProgressEvent): void; finish(): void } {
    if (this.isRunning(ref)) throw new BktError('INVALID_ARGUMENT', `a build with ref ${ref} is already running`, { attribute: 'Ref' });
    const b: Tracked = { ref, events: [], done: false, wake: new Set() };
    this.#builds.set(ref, b);
    for (const w of [...this.#arrivals]) w();
    const record: BuildHistoryRecord = {
      ref,
      ...info,
      status: 'running',
      createdAt: new Date(),
      numTotalSteps: 0,
      numCachedSteps: 0,
      numCompletedSteps: 0,
      exporterResponse: {},
    };
    if (!opts.internal) this.#emit({ type: 'started', ref, record });
    const wake = () => {
      for (const w of [...b.wake]) w();
    };
    return {
      onProgress: (event) => {
        if (b.done) return;
        b.events.push(event);
        wake();
      },
      finish: () => {
        if (b.done) return;
        b.done = true;
        wake();
        if (!opts.internal) this.#emit({ type: 'completed', ref });
        else for (const w of [...this.#idleWaiters]) w();
        setTimeout(() => {
          if (this.#builds.get(ref) === b) this.#builds.delete(ref);
        }, this.#keepFinishedMs).unref();
      },
    };
  }

  /**
   * Build `ref`'s progress: everything so far in one batch, then each batch
   * of new events as they come; ends when the build ends or `signal`
   * aborts. Waits for a build that has not started yet (a client calls
   * Status alongside Solve); `NOT_FOUND` when none starts in time.
   */
  async *progress(ref: string, signal: AbortSignal): AsyncGenerator<ProgressEvent[]> {
    const b = this.#builds.get(ref) ?? (await this.#waitFor(ref, signal));
    let sent = 0;
    while (!signal.aborted) {
      if (sent < b.events.length) {
        const batch = b.events.slice(sent);
        sent = b.events.length;
        yield batch;
        continue;
      }
      if (b.done) return;
      await new Promise<void>((resolve) => {
        const done = () => {
          b.wake.delete(done);
          signal.removeEventListener('abort', done);
          // Batch what arrives within one turn of the event loop.
          setImmediate(resolve);
        };
        b.wake.add(done);
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** Resolves once no build is running. */
  async idle(): Promise<void> {
    while (this.running().length > 0) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.#idleWaiters.delete(done);
          off();
          resolve();
        };
        const off = this.subscribe((e) => e.type === 'completed' && done());
        this.#idleWaiters.add(done);
      });
    }
  }

  /** Announces that finished build `ref`'s record changed (it was pinned or unpinned). */
  updated(ref: string): void {
    this.#emit({ type: 'updated', ref });
  }

  /** Announces that build `ref` was deleted from the history; its progress is no longer kept here. */
  deleted(ref: string): void {
    const b = this.#builds.get(ref);
    if (b?.done) this.#builds.delete(ref);
    this.#emit({ type: 'deleted', ref });
  }

  /** Calls `listener` on every build event (start, end, update, deletion) until the returned function is called. */
  subscribe(listener: (e: BuildEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(e: BuildEvent): void {
    for (const l of [...this.#listeners]) l(e);
  }

  async #waitFor(ref: string, signal: AbortSignal): Promise<Tracked> {
    const deadline = Date.now() + this.#waitForStartMs;
    for (;;) {
      const b = this.#builds.get(ref);
      if (b) return b;
      if (signal.aborted) throw new BktError('CANCELLED', `status of build ${ref}: the client went away`);
      const left = deadline - Date.now();
      if (left <= 0) throw new BktError('NOT_FOUND', `no build with ref ${ref} is running or recently finished on this daemon`, { ref });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done() {
          clearTimeout(timer);
          arrivals.delete(done);
          signal.removeEventListener('abort', done);
          resolve();
        }
        const arrivals = this.#arrivals;
        arrivals.add(done);
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }
}
