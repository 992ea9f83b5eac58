import { cpus } from 'node:os';
import { BktError } from '@bkt/core';

/**
 * The default bound on ops running at once: max(8, 2 × CPU count). Ops mostly
 * wait (on processes, the network, the disk), so one slot per core would
 * serialise independent branches; BuildKit itself does not bound them.
 */
export function defaultParallelism(cores = cpus().length): number {
  return Math.max(8, 2 * cores);
}

/** A counting semaphore bounding how many ops run at once. Waiters are served in arrival order. */
export class Pool {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(readonly size: number) {
    this.#free = Math.max(1, size);
  }

  /** Runs `fn` when a slot is free; gives up waiting (CANCELLED) when `signal` aborts first. */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    await this.#acquire(signal);
    try {
      return await fn();
    } finally {
      this.#release();
    }
  }

  #acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(cancelled(signal));
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.#waiting.indexOf(grant);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(cancelled(signal!));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(grant);
    });
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }
}

/** The error for work stopped by an abort signal (its reason when that is already an error). */
export function cancelled(signal: AbortSignal): Error {
  const reason = signal.reason;
  if (reason instanceof BktError) return reason;
  return new BktError('CANCELLED', reason instanceof Error ? `build cancelled: ${reason.message}` : 'build cancelled');
}

/**
 * Shared/exclusive lock: builds hold it shared, prune exclusively, so a prune
 * never removes a snapshot a build has just found or made.
 */
export class SharedLock {
  #readers = 0;
  #writer = false;
  #queue: { exclusive: boolean; grant: () => void }[] = [];

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    await this.#take(false);
    try {
      return await fn();
    } finally {
      this.#readers--;
      this.#pump();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.#take(true);
    try {
      return await fn();
    } finally {
      this.#writer = false;
      this.#pump();
    }
  }

  #take(exclusive: boolean): Promise<void> {
    return new Promise((grant) => {
      this.#queue.push({ exclusive, grant });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#queue.length > 0 && !this.#writer) {
      const next = this.#queue[0];
      if (next.exclusive) {
        if (this.#readers > 0) return;
        this.#writer = true;
      } else {
        this.#readers++;
      }
      this.#queue.shift();
      next.grant();
    }
  }
}
