/**
 * What is printed around a build's progress, in plain and tty modes: the
 * failed steps with their last output lines, the build-check warnings after
 * the build (as buildx prints them), and errors as users read them.
 */
import type { VertexWarningEvent } from '@bkt/core';
import type { Output } from './displays.js';
import { terminalSafe } from './terminal-safe.js';
import type { ProgressTrace, VertexState } from './trace.js';

const OP_REFERENCE = /\(op sha256:[0-9a-f]{64}(\)|[;,]? )/g;

/**
 * A message as users read it: the `(op sha256:…)` references the solver adds
 * for tools are left out (`(op sha256:…; pass --allow x)` becomes
 * `(pass --allow x)`), unless `debug`. rawjson output keeps them.
 */
export function userMessage(message: string, debug: boolean): string {
  if (debug) return message;
  return message.replace(OP_REFERENCE, (_m, end: string) => (end === ')' ? '\0' : '(')).replace(/ ?\0/g, '');
}

/** A failed step's error as displayed: without the step's name in front (it is on the step's line) and without op references. */
export function stepError(v: Pick<VertexState, 'name' | 'error'>, debug: boolean): string {
  const error = v.error ?? '';
  const own = error.startsWith(`${v.name}: `) ? error.slice(v.name.length + 2) : error;
  return userMessage(own, debug);
}

/**
 * For each failed step (not those CANCELED): its name and the last lines of
 * its output between rulers, as buildx prints them. Returns whether a step
 * with output was reported.
 */
export function reportFailedSteps(trace: ProgressTrace, out: Output): boolean {
  let reported = false;
  for (const v of trace.failed()) {
    if (trace.lastLines(v, 1).length === 0) continue;
    reported = true;
    out.write('------\n');
    out.write(` > ${terminalSafe(v.name)}:\n`);
    for (const l of trace.lastLines(v, 10)) out.write(`${terminalSafe(l)}\n`);
    out.write('------\n');
  }
  return reported;
}

/**
 * The build's warnings after it, as buildx's summary:
 *
 *     1 warning found (set BKT_DEBUG=1 to expand):
 *     - JSONArgsRecommended: JSON arguments recommended for CMD … (line 3)
 *
 * With `debug`, each warning is followed by its description and URL. The
 * header is yellow when `color`.
 */
export function printWarnings(warnings: readonly VertexWarningEvent[], out: Output, opts: { color: boolean; debug: boolean }): void {
  if (warnings.length === 0) return;
  const count = warnings.length === 1 ? '1 warning found' : `${warnings.length} warnings found`;
  const header = `${count}${opts.debug ? '' : ' (set BKT_DEBUG=1 to expand)'}:`;
  out.write(`\n ${opts.color ? `\x1b[33m${header}\x1b[0m` : header}\n`);
  for (const w of warnings) {
    out.write(` - ${terminalSafe(w.short)}\n`);
    if (!opts.debug) continue;
    for (const d of w.detail) out.write(`${terminalSafe(d)}\n`);
    if (w.url) out.write(`More info: ${terminalSafe(w.url)}\n`);
    out.write('\n');
  }
}
