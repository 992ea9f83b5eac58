/**
 * Helpers of the client end-to-end tests (issue 11: `bkt` as a client of
 * `bktd`): run the BUILT CLI with an environment of the test's choosing
 * (`BKT_HOST`, `SOURCE_DATE_EPOCH`), and start it without waiting (to
 * interrupt it).
 */
import { execa, type ResultPromise } from 'execa';
import { BKT } from '../helpers.js';

export { bktEnv } from '../images/lib.js';

/** `bkt ARGS` started in `cwd`, its stderr collected; resolve `waitFor(re)` once stderr matches. */
export function startBkt(args: string[], cwd: string): { proc: ResultPromise<{ reject: false }>; stderr(): string; waitFor(re: RegExp): Promise<void> } {
  const proc = execa('node', [BKT, ...args], { cwd, reject: false, env: { BKT_DEBUG: '' } });
  let stderr = '';
  const waiters = new Set<() => void>();
  proc.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    for (const w of [...waiters]) w();
  });
  return {
    proc,
    stderr: () => stderr,
    waitFor: (re) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (re.test(stderr)) {
            waiters.delete(check);
            resolve();
          }
        };
        waiters.add(check);
        check();
        void proc.then(() => {
          if (!re.test(stderr)) reject(new Error(`bkt exited before its stderr matched ${re}:\n${stderr}`));
        });
      }),
  };
}

/** The names of the steps a plain progress output shows (each `#N`'s first line), sorted. */
export function stepNames(stderr: string): string[] {
  const names = new Map<string, string>();
  for (const m of stderr.matchAll(/^#(\d+) (.*)$/gm)) if (!names.has(m[1]!)) names.set(m[1]!, m[2]!);
  return [...names.values()].sort();
}
