/**
 * Which entries of a local directory a build reads: the selection's include
 * and exclude patterns, plus
 * - an exclude of the store root when it lies inside the directory (a
 *   snapshot written under it would copy itself forever); a directory that
 *   is the store root itself is refused;
 * - an exclude of each of `excludePaths` (host paths, e.g. a build's output
 *   destinations) that lies inside the directory, and of each directory
 *   above it that holds nothing else (`dist/` of a `dist/app.tar` output:
 *   the build that wrote the file made it);
 * - an include of every path `followPaths` reaches: each path and, while it
 *   is a symlink, every link target on the chain, all inside the directory
 *   (absolute targets are taken from it, `..` stops at it), as fsutil's
 *   `FollowLinks` in BuildKit.
 */
import { lstat, readdir, readlink } from 'node:fs/promises';
import { isAbsolute, posix, relative, resolve } from 'node:path';
import { BktError } from '@bkt/core';
import { cleanRelPath } from './patterns.js';
import { resolveInRoot } from './resolve.js';

export interface DirSelection {
  include?: readonly string[];
  exclude?: readonly string[];
  followPaths?: readonly string[];
}

/** The patterns that select what a build reads of `dir`; `what` names the directory in errors (`local source "context"`). */
export async function selectionPatterns(
  dir: string,
  sel: DirSelection,
  opts: { storeRoot?: string; excludePaths?: readonly string[]; what: string },
): Promise<{ include: string[]; exclude: string[] }> {
  const exclude = [...(sel.exclude ?? []), ...(await excludedPaths(dir, opts.excludePaths ?? []))];
  if (opts.storeRoot !== undefined) {
    const storeRel = relative(resolve(dir), resolve(opts.storeRoot));
    if (storeRel === '') {
      throw new BktError('INVALID_ARGUMENT', `${opts.what}: ${dir} is the store root itself (--root); use another directory`, { path: dir });
    }
    if (storeRel !== '..' && !storeRel.startsWith('../') && !isAbsolute(storeRel)) exclude.push(escapePattern(storeRel));
  }
  let include = [...(sel.include ?? [])];
  if (sel.followPaths?.length) include = [...new Set([...include, ...(await followLinks(dir, sel.followPaths))])];
  return { include, exclude };
}

/** The paths of `paths` inside `dir` (relative, as patterns), each with the directories above it that hold nothing else. */
async function excludedPaths(dir: string, paths: readonly string[]): Promise<string[]> {
  const inside = paths.map((p) => relative(resolve(dir), resolve(p))).filter((rel) => rel !== '' && rel !== '..' && !rel.startsWith('../') && !isAbsolute(rel));
  const excluded = new Set(inside);
  for (const rel of inside) {
    for (let parent = posix.dirname(rel); parent !== '.'; parent = posix.dirname(parent)) {
      const names = await readdir(resolve(dir, parent)).catch(() => undefined);
      if (!names || names.some((n) => !excluded.has(posix.join(parent, n)))) break;
      excluded.add(parent);
    }
  }
  return [...excluded].map(escapePattern);
}

async function followLinks(dir: string, paths: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) {
    let cur = cleanRelPath(p.replace(/^\/+/, ''));
    for (let hops = 0; hops < 255 && cur !== '.' && !cur.startsWith('..'); hops++) {
      out.push(escapePattern(cur));
      const abs = await resolveInRoot(dir, cur);
      const st = await lstat(abs).catch(() => undefined);
      if (!st?.isSymbolicLink()) break;
      const target = await readlink(abs);
      cur = cleanRelPath(target.startsWith('/') ? target.slice(1) : posix.join(posix.dirname(cur), target));
    }
  }
  return out;
}

/** A path as a pattern matching only itself (pattern metacharacters escaped). */
function escapePattern(path: string): string {
  return path.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
