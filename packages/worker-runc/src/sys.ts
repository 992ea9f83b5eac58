/**
 * Small wrappers over the host tools the worker drives (runc, mount, umount,
 * unshare). Every child is spawned without a shell; arguments are never
 * interpolated into a command line.
 */
import { spawn } from 'node:child_process';
import { BktError } from '@bkt/core';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `cmd args…` to completion and collects its output; never throws on a non-zero exit. */
export function runCommand(cmd: string, args: string[], opts: { input?: string } = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err) =>
      reject(new BktError('INTERNAL', `cannot run ${cmd}: ${err.message}`, { command: cmd }, { cause: err })),
    );
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}

/** Runs a command and throws a `BktError('INTERNAL')` quoting its stderr when it fails. */
export async function mustRun(cmd: string, args: string[], opts: { input?: string } = {}): Promise<string> {
  const res = await runCommand(cmd, args, opts);
  if (res.code !== 0) {
    throw new BktError('INTERNAL', `${cmd} ${args.join(' ')} failed (exit ${res.code}): ${res.stderr.trim()}`, {
      command: cmd,
    });
  }
  return res.stdout;
}

/** Mounts a fresh tmpfs on `dir` (nosuid, nodev, noexec) with the given mode and size. */
export async function mountTmpfs(dir: string, opts: { mode?: number; sizeBytes?: number } = {}): Promise<void> {
  const options = ['nosuid', 'nodev', 'noexec', `mode=${(opts.mode ?? 0o700).toString(8)}`];
  if (opts.sizeBytes) options.push(`size=${opts.sizeBytes}`);
  await mustRun('mount', ['-t', 'tmpfs', '-o', options.join(','), 'tmpfs', dir]);
}

export { isProcessAlive as isAlive, mountsUnder, unmount } from '@bkt/fsutil';

