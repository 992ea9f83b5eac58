/** Shared setup of the store's e2e tests: a busybox rootfs context, builds spawned as processes. */
import { spawn } from 'node:child_process';
import { copyFile, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BKT } from '../helpers.js';

/** Writes `dir/rootfs` (busybox-static and a few applets): `FROM scratch` + `COPY rootfs/ /` gives RUN a shell. */
export async function writeRootfsContext(dir: string): Promise<void> {
  await mkdir(join(dir, 'rootfs/bin'), { recursive: true });
  await copyFile('/bin/busybox', join(dir, 'rootfs/bin/busybox'));
  for (const applet of ['sh', 'sleep', 'echo', 'cat', 'dd', 'seq', 'touch', 'mkdir']) await symlink('busybox', join(dir, `rootfs/bin/${applet}`));
}

/** A Dockerfile over the rootfs context running `runs` (one RUN each). */
export async function writeDockerfile(file: string, runs: string[]): Promise<void> {
  await writeFile(file, ['FROM scratch', 'COPY rootfs/ /', ...runs.map((r) => `RUN ${r}`), ''].join('\n'));
}

export interface Proc {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `bkt ARGS` as a process, bounded by timeout(1) (`timeoutS`, default
 * 300; 0: not bounded, so `pid()` is bkt's own); `onStderr` sees the output
 * as it comes. `done` resolves when it exits.
 */
export function runBkt(args: string[], opts: { cwd: string; timeoutS?: number; onStderr?: (all: string) => void }): { done: Promise<Proc>; pid: () => number | undefined } {
  const timeoutS = opts.timeoutS ?? 300;
  const argv = timeoutS > 0 ? ['timeout', '-s', 'KILL', String(timeoutS), process.execPath, BKT, ...args] : [process.execPath, BKT, ...args];
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BKT_DEBUG: '' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    opts.onStderr?.(stderr);
  });
  const done = new Promise<Proc>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return { done, pid: () => child.pid };
}

/** The `Total:` of `bkt du` in bytes (its 3 significant digits). */
export function duTotal(stdout: string): number {
  const m = /^Total: +([\d.]+)(B|kB|MB|GB)$/m.exec(stdout);
  if (!m) throw new Error(`no Total in:\n${stdout}`);
  return Number(m[1]) * { B: 1, kB: 1e3, MB: 1e6, GB: 1e9 }[m[2] as 'B']!;
}

/** Snapshot ids in `bkt du --verbose` (12 hex digits). */
export function snapshotIds(verbose: string): string[] {
  return [...verbose.matchAll(/^ID: +([0-9a-f]{12})$/gm)].map((m) => m[1]!).sort();
}

/** Entries of a directory, [] when it does not exist. */
export async function entries(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort();
}
