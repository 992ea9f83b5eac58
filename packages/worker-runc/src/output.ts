/**
 * A step's output on its way to the progress stream: forwarded live; for
 * progress displays clipped (with a notice, never silently) once the step has
 * written `maxBytes`, as BuildKit — what follows goes to the build's history
 * only (`logHistoryOnly`), which thus keeps every byte; the notice is for
 * displays only. The last lines are kept for the error message of a failed step.
 */
import type { ProgressWriter } from '@bkt/core';

/** BuildKit's default per-step log limit (BUILDKIT_STEP_LOG_MAX_SIZE). */
export const DEFAULT_LOG_MAX_BYTES = 2 * 1024 * 1024;
const TAIL_BYTES = 16 * 1024;

export class StepOutput {
  readonly #progress: ProgressWriter;
  readonly #maxBytes: number;
  #written = 0;
  #clipped = false;
  #tail = Buffer.alloc(0);

  /** `maxBytes` ≤ 0 means no limit. */
  constructor(progress: ProgressWriter, maxBytes = DEFAULT_LOG_MAX_BYTES) {
    this.#progress = progress;
    this.#maxBytes = maxBytes;
  }

  /** Output of stream 1 (stdout) or 2 (stderr). */
  write(stream: 1 | 2, chunk: Uint8Array): void {
    this.#keepTail(chunk);
    if (this.#clipped) {
      this.#progress.logHistoryOnly?.(stream, chunk);
      return;
    }
    if (this.#maxBytes > 0 && this.#written + chunk.length > this.#maxBytes) {
      const room = this.#maxBytes - this.#written;
      if (room > 0) this.#progress.log(stream, chunk.subarray(0, room));
      this.#written = this.#maxBytes;
      this.#clipped = true;
      this.#progress.log(2, `\n[output clipped, log limit ${formatSize(this.#maxBytes)} reached]\n`, 'display');
      this.#progress.logHistoryOnly?.(stream, chunk.subarray(Math.max(0, room)));
      return;
    }
    this.#written += chunk.length;
    this.#progress.log(stream, chunk);
  }

  get clipped(): boolean {
    return this.#clipped;
  }

  /** The last `n` lines written (both streams, interleaved as they came). */
  lastLines(n = 20): string[] {
    const lines = this.#tail.toString('utf8').split('\n');
    if (lines.at(-1) === '') lines.pop();
    return lines.slice(-n);
  }

  #keepTail(chunk: Uint8Array): void {
    const joined = Buffer.concat([this.#tail, chunk]);
    this.#tail = joined.length > TAIL_BYTES ? joined.subarray(joined.length - TAIL_BYTES) : joined;
  }
}

function formatSize(bytes: number): string {
  if (bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)}MiB`;
  if (bytes % 1024 === 0) return `${bytes / 1024}KiB`;
  return `${bytes}B`;
}
