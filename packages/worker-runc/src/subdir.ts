/**
 * A subdirectory of a directory that containers write to (a cache mount),
 * opened and bind-mounted without a window for a container to redirect it.
 *
 * `openDirectoryInRoot` walks the path one component at a time from a held
 * directory descriptor (`/proc/self/fd/N/name` opened with O_NOFOLLOW |
 * O_DIRECTORY, i.e. `openat` on the held directory), with openat2's
 * RESOLVE_IN_ROOT rules: a symlink met on the way is read and followed
 * inside the root (an absolute target restarts at the root, `..` stops at
 * it), never by the kernel. The result is a descriptor of a directory inside
 * the root; `bindSubdirectory` mounts that very directory (`mount --bind
 * /proc/self/fd/3`, no path resolved again), so swapping a component for a
 * symlink after the walk changes nothing.
 */
import { spawn } from 'node:child_process';
import { closeSync, constants, fchmodSync, fstatSync, lstatSync, mkdirSync, openSync, readlinkSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { BktError } from '@bkt/core';

const MAX_LINKS = 255;
/** How often one component is tried again when it changes between two looks (a racing container). */
const MAX_RETRIES = 16;
/** How often a directory removed between its resolution and its mount is resolved again. */
const MAX_MOUNT_ATTEMPTS = 8;
/** libuv adds O_CLOEXEC to every open: no child but the one given it inherits a descriptor. */
const OPEN_DIRECTORY = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

export interface OpenInRootOptions {
  /** Create missing components as directories (`mode`, owned by this process's user). */
  create: boolean;
  /** Mode of created directories; default 0755 (the umask does not apply). */
  mode?: number;
  /** Names the path in errors, e.g. `cache mount /c (source=sub)`. */
  what: string;
}

/**
 * A descriptor (the caller closes it) of directory `path` resolved inside
 * `root`, which is trusted: a host directory no container can replace.
 * Errors are `BktError`s naming `what`: `NOT_FOUND` (missing, without
 * `create`), `INVALID_ARGUMENT` (a component is not a directory, a symlink
 * loop, a path that keeps changing).
 */
export function openDirectoryInRoot(root: string, path: string, opts: OpenInRootOptions): number {
  const stack = [openSync(root, OPEN_DIRECTORY)];
  try {
    let pending = components(path);
    let links = 0;
    while (pending.length > 0) {
      const part = pending.shift()!;
      if (part === '..') {
        if (stack.length > 1) closeSync(stack.pop()!);
        continue;
      }
      const step = openComponent(stack[stack.length - 1], part, opts);
      if (typeof step === 'number') {
        stack.push(step);
        continue;
      }
      if (++links > MAX_LINKS) {
        throw new BktError('INVALID_ARGUMENT', `${opts.what}: too many levels of symbolic links resolving ${path}`, { path });
      }
      if (step.link.startsWith('/')) while (stack.length > 1) closeSync(stack.pop()!);
      pending = [...components(step.link), ...pending];
    }
    const fd = stack.pop()!;
    for (const d of stack.splice(0)) closeSync(d);
    return fd;
  } catch (err) {
    for (const d of stack) closeSync(d);
    throw err;
  }
}

/** Opens `name` of directory `parent`: its descriptor, or the target of the symlink it is. */
function openComponent(parent: number, name: string, opts: OpenInRootOptions): number | { link: string } {
  const entry = `/proc/self/fd/${parent}/${name}`;
  for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
    let code: string | undefined;
    try {
      return openSync(entry, OPEN_DIRECTORY);
    } catch (err) {
      code = (err as NodeJS.ErrnoException).code;
    }
    if (code === 'ENOENT') {
      if (!opts.create) throw new BktError('NOT_FOUND', `${opts.what}: ${name} does not exist`, { path: name });
      const created = makeDirectory(entry, name, opts);
      if (created !== undefined) return created;
      continue;
    }
    if (code !== 'ENOTDIR' && code !== 'ELOOP') {
      throw new BktError('INVALID_ARGUMENT', `${opts.what}: cannot open ${name}: ${code}`, { path: name });
    }
    // A symlink, or not a directory at all: lstat tells which (the entry may change again meanwhile).
    let st;
    try {
      st = lstatSync(entry);
    } catch {
      continue;
    }
    // A directory by now: it was a symlink when opened (a racing step swapped it back); open it again.
    if (st.isDirectory()) continue;
    if (!st.isSymbolicLink()) throw new BktError('INVALID_ARGUMENT', `${opts.what}: ${name} is not a directory`, { path: name });
    try {
      return { link: readlinkSync(entry) };
    } catch {
      continue;
    }
  }
  throw new BktError('INVALID_ARGUMENT', `${opts.what}: ${name} kept changing while it was resolved`, { path: name });
}

/** Makes directory `entry` and opens it; `undefined` when something else took the name first (look again). */
function makeDirectory(entry: string, name: string, opts: OpenInRootOptions): number | undefined {
  try {
    mkdirSync(entry, 0o700);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return undefined;
    throw new BktError('INVALID_ARGUMENT', `${opts.what}: cannot create ${name}: ${code ?? String(err)}`, { path: name });
  }
  let fd: number;
  try {
    fd = openSync(entry, OPEN_DIRECTORY);
  } catch {
    return undefined;
  }
  // Exactly `mode`, whatever the umask; whichever directory stands there now is inside the root.
  fchmodSync(fd, opts.mode ?? 0o755);
  return fd;
}

/** `path`'s components without empty and `.` parts. */
function components(path: string): string[] {
  return path.split('/').filter((p) => p !== '' && p !== '.');
}

/**
 * Bind-mounts directory `path` of `root` (resolved as `openDirectoryInRoot`
 * does) on `mountPoint`, created when missing. The kernel mounts the opened
 * directory itself (`/proc/self/fd/N`): no path is resolved again. A
 * directory a running step removed before it was mounted (the kernel refuses
 * a deleted one) is resolved again, a few times at most.
 */
export async function bindSubdirectory(root: string, path: string, mountPoint: string, opts: OpenInRootOptions): Promise<void> {
  await mkdir(mountPoint, { recursive: true, mode: 0o700 });
  for (let attempt = 1; ; attempt++) {
    const fd = openDirectoryInRoot(root, path, opts);
    try {
      await bindDirectoryFd(fd, mountPoint);
      return;
    } catch (err) {
      if (fstatSync(fd).nlink !== 0) throw err;
      if (attempt === MAX_MOUNT_ATTEMPTS) {
        throw new BktError('INVALID_ARGUMENT', `${opts.what}: ${path} was removed each time it was about to be mounted (${attempt} attempts)`, { path });
      }
    } finally {
      closeSync(fd);
    }
  }
}

/** Bind-mounts the directory open as `fd` on the existing directory `mountPoint`. */
export async function bindDirectoryFd(fd: number, mountPoint: string): Promise<void> {
  // `--no-canonicalize`: mount(8) would otherwise turn /proc/self/fd/3 back into a path.
  const args = ['--bind', '--no-canonicalize', '/proc/self/fd/3', mountPoint];
  const { code, stderr } = await new Promise<{ code: number; stderr: string }>((resolve, reject) => {
    const child = spawn('mount', args, { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', (e) => reject(new BktError('INTERNAL', `cannot run mount: ${e.message}`, { command: 'mount' }, { cause: e })));
    child.on('close', (c) => resolve({ code: c ?? 1, stderr: err }));
  });
  if (code !== 0) {
    throw new BktError('INTERNAL', `mount --bind of a cache directory on ${mountPoint} failed (exit ${code}): ${stderr.trim()}`, {
      command: 'mount',
    });
  }
}
