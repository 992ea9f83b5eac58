/**
 * `bkt history explain [REF]` and the report of `bkt build --explain`: for
 * each step that ran, why its key missed — against the previous build of
 * the same target in this store (the solver keeps every build's key
 * plaintexts: `explainStoredBuild` of `@bkt/solver`).
 */
import { BktError } from '@bkt/core';
import { explainStoredBuild, type StepExplanation } from '@bkt/solver';
import { Store } from '@bkt/store';
import type { Output } from '../progress/displays.js';
import { terminalSafe } from '../progress/terminal-safe.js';
import { openProject, storeRoot, type ProjectOptions } from '../project.js';
import { daemonAddress, type DaemonFlags } from '../remote/address.js';
import { resolveBuild } from './history.js';

export interface HistoryExplainOptions extends ProjectOptions, DaemonFlags {
  format?: string;
}

/** The explanations as printed after a build (`--explain`) and by `bkt history explain`. */
export function printExplanations(steps: StepExplanation[], out: Output, opts: { json: boolean; previous?: string }): void {
  if (opts.json) {
    out.write(`${JSON.stringify({ explain: { ...(opts.previous ? { previous: opts.previous } : {}), steps } })}\n`);
    return;
  }
  if (steps.length === 0) {
    out.write('explain: every step came from the cache\n');
    return;
  }
  for (const s of steps) out.write(`explain: ${terminalSafe(s.step)}: ${terminalSafe(s.reasons.join('; '))}\n`);
}

export async function historyExplainCommand(ref: string | undefined, opts: HistoryExplainOptions, out: Output, cwd: string): Promise<number> {
  const format = opts.format ?? 'text';
  if (format !== 'text' && format !== 'json') throw new BktError('INVALID_ARGUMENT', `--format ${format}: expected text or json`, { attribute: 'format' });
  if (daemonAddress(opts, cwd)) {
    throw new BktError('UNIMPLEMENTED', 'bkt history explain reads the key plaintexts of a local store; against a daemon (--addr) it is not available yet', { attribute: 'addr' });
  }
  const project = await openProject(opts, false, cwd);
  const store = await Store.open(storeRoot(opts, project));
  try {
    const record = resolveBuild(store.history.list(), ref, store.root);
    const { previous, steps } = await explainStoredBuild(store.records, record.ref);
    if (format === 'text') out.write(previous ? `build ${record.ref}, against ${previous}\n` : `build ${record.ref} (no previous build of this target)\n`);
    printExplanations(steps, out, { json: format === 'json', ...(previous ? { previous } : {}) });
  } finally {
    await store.close();
  }
  return 0;
}
