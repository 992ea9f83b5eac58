/**
 * Paces a long synchronous loop so it can be interrupted: every `sliceMs` of
 * work it gives the event loop a turn (signal handlers, progress output run)
 * and stops with the signal's reason once `signal` has aborted.
 *
 *     for (const item of items) {
 *       if (pacer.due()) await pacer.pause();
 *       work(item);
 *     }
 */
export class Pacer {
  #sliceStart = performance.now();

  constructor(
    private readonly signal?: AbortSignal,
    private readonly sliceMs = 5,
  ) {}

  /** True once the current slice of work has lasted `sliceMs`. */
  due(): boolean {
    return performance.now() - this.#sliceStart >= this.sliceMs;
  }

  /** Yields to the event loop, then throws the abort reason when the signal has aborted; starts a new slice. */
  async pause(): Promise<void> {
    this.signal?.throwIfAborted();
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.signal?.throwIfAborted();
    this.#sliceStart = performance.now();
  }
}
