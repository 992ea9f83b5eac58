/**
 * Helpers of the diagnostics end-to-end tests (issue 10: warnings, --call,
 * failures shown on the right step, quiet output, broken pipes, the tty
 * display): a busybox base image in a test registry, the Dockerfiles the
 * tests build, and a run of the CLI whose stdout reader is already gone.
 */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pushBusyboxImage, startRegistry, type RegistryServer } from '@bkt/testkit';
import { BKT, tempDir } from '../helpers.js';

export interface Fixture {
  registry: RegistryServer;
  /** The busybox image in the registry. */
  base: string;
  work: string;
  /** An empty build context. */
  context: string;
  root: string;
}

export async function openFixture(prefix: string): Promise<Fixture> {
  const registry = await startRegistry();
  const base = (await pushBusyboxImage(registry, 'busybox')).reference;
  const work = await tempDir(prefix);
  const context = join(work, 'ctx');
  await mkdir(context);
  return { registry, base, work, context, root: join(work, 'store') };
}

/** Writes `lines` as the Dockerfile `name` in the fixture's work dir; returns its path. */
export async function dockerfile(f: Fixture, name: string, lines: string[]): Promise<string> {
  const path = join(f.work, name);
  await writeFile(path, [...lines, ''].join('\n'));
  return path;
}

/** A Dockerfile with two build-check warnings (FromAsCasing on line 1, JSONArgsRecommended on line 3). */
export const warningLines = (base: string) => [`FROM ${base} as base`, 'ENV GREETING=hi', 'CMD echo $GREETING'];

/**
 * Two independent stages: `a` prints two lines and fails (exit 3) after 1 s,
 * `b` would sleep 30 s; the last stage copies from both. Only `a` fails.
 */
export const parallelFailureLines = (base: string) => [
  `FROM ${base} AS a`,
  'RUN echo first line; sleep 1; echo giving up >&2; exit 3',
  '',
  `FROM ${base} AS b`,
  'RUN sleep 30; echo b done > /b',
  '',
  `FROM ${base}`,
  'COPY --from=a /etc/hostname /a',
  'COPY --from=b /b /b',
];

/**
 * Runs `bkt ARGS` with its stdout a pipe whose reading end is closed before
 * the CLI writes anything (as `bkt du | head -1` once head has gone), and
 * returns its exit code and stderr.
 */
export function runWithClosedStdout(args: string[], cwd: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('node', [BKT, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BKT_DEBUG: '' } });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}
