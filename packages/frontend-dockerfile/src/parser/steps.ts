import type { Pacer } from '@bkt/core';

/**
 * Long synchronous work written as a generator that yields between units
 * (a line, an instruction, a stage), so one body serves a synchronous caller
 * (`runSteps`) and one that must stay responsive to signals (`runStepsPaced`).
 */
export type Steps<T> = Generator<void, T, void>;

/** Runs `steps` to the end without pausing. */
export function runSteps<T>(steps: Steps<T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** Runs `steps`, pausing whenever `pacer` says a slice is over (the pause throws once its signal has aborted). */
export async function runStepsPaced<T>(steps: Steps<T>, pacer: Pacer): Promise<T> {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (pacer.due()) await pacer.pause();
  }
}
