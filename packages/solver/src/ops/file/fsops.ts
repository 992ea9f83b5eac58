/**
 * Filesystem primitives of FileOp, shared by its actions. Paths given here are
 * host paths already resolved inside their root (see `resolveInRoot`); these
 * helpers never follow a symlink in the last component.
 */
import { execFile } from 'node:child_process';
import type { Stats } from 'node:fs';
import { chmod, lchown, lstat, lutimes, mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BktError } from '@bkt/core';
import type { Owner } from './owner.js';

const run = promisify(execFile);

/** A FileAction timestamp (nanoseconds since the epoch, -1 = none) as seconds, or null. */
export function timestampSeconds(ts: number | bigint | string | undefined): number | null {
  if (ts === undefined) return null;
  const ns = BigInt(ts);
  if (ns === -1n) return null;
  return Number(ns / 1000n) / 1e6;
}

export async function lstatOrNull(p: string): Promise<Stats | null> {
  try {
    return await lstat(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

/** Sets owner (when given) and times (when given) of a path, not following a final symlink. */
export async function applyOwnerAndTime(p: string, owner: Owner | null, time: number | null): Promise<void> {
  if (owner) await lchown(p, owner.uid, owner.gid);
  if (time !== null) await lutimes(p, time, time);
}

/**
 * Creates `dir` and its missing parents, but never above `root` (which must
 * exist). Created directories get `perm` exactly (no umask), `owner` and
 * `time`; existing ones are left alone. Returns the created directories,
 * outermost first. A non-directory in the way is an error naming it.
 */
export async function mkdirAllInRoot(
  root: string,
  dir: string,
  perm: number,
  owner: Owner | null,
  time: number | null,
): Promise<string[]> {
  const rel = path.relative(root, dir);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) return [];
  const created: string[] = [];
  let cur = root;
  for (const part of rel.split(path.sep)) {
    cur = path.join(cur, part);
    const st = await lstatOrNull(cur);
    if (st) {
      if (!st.isDirectory()) {
        throw new BktError('INVALID_ARGUMENT', `cannot create directory "/${path.relative(root, cur)}": a non-directory is in the way`, {
          path: '/' + path.relative(root, cur),
        });
      }
      continue;
    }
    await mkdir(cur);
    await chmod(cur, perm);
    await applyOwnerAndTime(cur, owner, time);
    created.push(cur);
  }
  // Creating a child changed its parent's mtime: restore the requested time, innermost first.
  if (time !== null) for (const d of [...created].reverse()) await lutimes(d, time, time);
  return created;
}

/** Recreates a device node, FIFO or socket placeholder (Node has no mknod). */
export async function copySpecial(target: string, st: Stats): Promise<void> {
  const mode = (st.mode & 0o7777).toString(8);
  if (st.isFIFO()) {
    await run('mkfifo', ['-m', mode, target]);
  } else if (st.isCharacterDevice() || st.isBlockDevice()) {
    const major = Math.floor(st.rdev / 256) & 0xfff;
    const minor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
    await run('mknod', ['-m', mode, target, st.isCharacterDevice() ? 'c' : 'b', String(major), String(minor)]);
  } else if (st.isSocket()) {
    // Sockets are skipped: neither Node nor mknod(1) can create one, and a socket file carries no content.
  }
}
