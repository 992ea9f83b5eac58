/**
 * Path resolution confined to a root directory, as if the root were `/` of a
 * chroot: `..` stops at the root, and symlinks (absolute ones included) are
 * resolved relative to the root. The result is always the root or a path
 * under it, so a build path like `../../etc/passwd` or a symlink to `/etc`
 * can never reach a host file (BuildKit's `fs.RootPath` behaves the same way:
 * it clamps rather than fails).
 */
import { lstat, readlink } from 'node:fs/promises';
import * as path from 'node:path';
import { BktError } from '@bkt/core';

export interface ResolveOptions {
  /** Follow a symlink in the last component too (default false: return the link itself). */
  followFinalSymlink?: boolean;
}

/** Maximum symlinks followed in one resolution, as Linux's MAXSYMLINKS-ish limit. */
const MAX_LINKS = 255;

/**
 * Resolves `p` (absolute or relative, both taken from the root) inside `root`
 * and returns an absolute host path under `root`. Components that do not exist
 * are appended lexically. Throws `BktError('INVALID_ARGUMENT')` on a symlink loop.
 */
export async function resolveInRoot(root: string, p: string, opts: ResolveOptions = {}): Promise<string> {
  const rootAbs = path.resolve(root);
  const rel = await resolveRelInRoot(rootAbs, p, opts);
  return rel === '' ? rootAbs : path.join(rootAbs, rel);
}

/** Like `resolveInRoot` but returns the resolved path relative to the root (`''` for the root itself). */
export async function resolveRelInRoot(root: string, p: string, opts: ResolveOptions = {}): Promise<string> {
  const rootAbs = path.resolve(root);
  const resolved: string[] = [];
  const pending = splitComponents(p);
  let links = 0;
  while (pending.length > 0) {
    const comp = pending.shift()!;
    if (comp === '.') continue;
    if (comp === '..') {
      resolved.pop();
      continue;
    }
    resolved.push(comp);
    const isLast = pending.length === 0;
    if (isLast && !opts.followFinalSymlink) break;
    let st;
    try {
      st = await lstat(path.join(rootAbs, ...resolved));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') {
        continue; // appended lexically; a later `..` re-checks from an existing parent

      }
      throw err;
    }
    if (!st.isSymbolicLink()) continue;
    if (++links > MAX_LINKS) {
      throw new BktError('INVALID_ARGUMENT', `too many levels of symbolic links resolving "${p}"`, { path: p });
    }
    const target = await readlink(path.join(rootAbs, ...resolved));
    resolved.pop();
    if (target.startsWith('/')) resolved.length = 0;
    pending.unshift(...splitComponents(target));
  }
  return resolved.join('/');
}

function splitComponents(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}

/**
 * Joins a path inside a root lexically (no symlink evaluation), clamping `..`
 * at the root. For paths whose parents are known to hold no symlinks.
 */
export function joinInRoot(root: string, p: string): string {
  const out: string[] = [];
  for (const c of splitComponents(p)) {
    if (c === '..') out.pop();
    else out.push(c);
  }
  return path.join(path.resolve(root), ...out);
}
