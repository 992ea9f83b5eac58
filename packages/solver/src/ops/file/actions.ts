/**
 * FileActionMkDir, FileActionMkFile and FileActionRm on a mounted tree, with
 * the semantics of BuildKit's file backend. Paths are resolved inside the
 * tree (`resolveInRoot`): `..` is clamped at its root and symlinks resolve
 * inside it.
 */
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, rm, unlink, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { BktError } from '@bkt/core';
import { resolveInRoot, resolveWildcards } from '@bkt/fsutil';
import type * as pb from '@bkt/api/pb';
import { applyOwnerAndTime, lstatOrNull, mkdirAllInRoot, timestampSeconds } from './fsops.js';
import type { Owner } from './owner.js';
import { cleanActionPath } from './copy.js';

/**
 * mkdir: with `makeParents`, missing parents are created too (all with
 * `mode`, `owner`, `timestamp`); an existing directory is left as is. Without
 * it, a missing parent is an error.
 */
export async function mkdirAction(root: string, action: pb.FileActionMkDir, owner: Owner | null): Promise<void> {
  const p = await resolveInRoot(root, action.path, { followFinalSymlink: true });
  const perm = action.mode & 0o7777;
  const time = timestampSeconds(action.timestamp);
  if (action.makeParents) {
    await mkdirAllInRoot(root, p, perm, owner, time);
    return;
  }
  if (p === root) return;
  try {
    await mkdir(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new BktError('NOT_FOUND', `mkdir "${action.path}": parent directory does not exist (set makeParents to create it)`, { path: action.path });
    }
    throw err;
  }
  await chmod(p, perm);
  await applyOwnerAndTime(p, owner, time);
}

/** Flags mkfile opens its file with: never through a final symlink, never blocking on a FIFO. */
const MKFILE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/**
 * mkfile: writes `data` to the path (replacing an existing regular file's
 * content; a new file gets `mode`), then applies owner and timestamp. An
 * existing FIFO, socket or device node is replaced by a new file, never
 * written through.
 */
export async function mkfileAction(root: string, action: pb.FileActionMkFile, owner: Owner | null): Promise<void> {
  const p = await resolveInRoot(root, path.posix.join('/', action.path), { followFinalSymlink: true });
  const existing = await lstatOrNull(p);
  if (existing?.isDirectory()) {
    throw new BktError('INVALID_ARGUMENT', `mkfile "${action.path}": a directory exists at that path`, { path: action.path });
  }
  let replaced = existing;
  if (existing && !existing.isFile()) {
    await unlink(p);
    replaced = null;
  }
  try {
    await writeFile(p, action.data ?? new Uint8Array(), { mode: action.mode & 0o7777, flag: MKFILE_FLAGS });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new BktError('NOT_FOUND', `mkfile "${action.path}": parent directory does not exist`, { path: action.path });
    }
    throw err;
  }
  if (!replaced) await chmod(p, action.mode & 0o7777);
  await applyOwnerAndTime(p, owner, timestampSeconds(action.timestamp));
}

/** rm: removes the path (recursively); the last component is not followed. */
export async function rmAction(root: string, action: pb.FileActionRm): Promise<void> {
  if (action.allowWildcard) {
    const matches = await resolveWildcards(root, cleanActionPath(action.path));
    for (const m of matches) await rmPath(root, '/' + m, action.allowNotFound, action.path);
    return;
  }
  await rmPath(root, action.path, action.allowNotFound, action.path);
}

async function rmPath(root: string, p: string, allowNotFound: boolean, given: string): Promise<void> {
  const clean = path.posix.join('/', p);
  if (clean === '/') throw new BktError('INVALID_ARGUMENT', `rm "${given}": refusing to remove the root`, { path: given });
  const dir = await resolveInRoot(root, path.posix.dirname(clean), { followFinalSymlink: true });
  const target = path.join(dir, path.posix.basename(clean));
  if (!allowNotFound) {
    try {
      await lstat(target);
    } catch {
      throw new BktError('NOT_FOUND', `rm "${given}": no such file or directory (set allowNotFound to ignore)`, { path: given });
    }
  }
  await rm(target, { recursive: true, force: true });
}
