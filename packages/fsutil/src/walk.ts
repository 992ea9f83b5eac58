/**
 * A deterministic walk of a directory tree with include/exclude patterns,
 * with the semantics of tonistiigi/fsutil's walker (used by BuildKit for the
 * local source and copy): entries come depth-first, each directory before its
 * contents, names sorted within a directory; symlinks are reported, never
 * followed. Directories that are not themselves selected but hold selected
 * entries are reported before those entries (so a consumer can recreate them).
 */
import type { Stats } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import * as path from 'node:path';
import { compilePatterns, type PatternMatcher } from './patterns.js';

export interface WalkEntry {
  /** Path relative to the walked root, `/`-separated, no leading `/`. */
  path: string;
  /** Absolute host path. */
  absPath: string;
  /** `lstat` of the entry. */
  stat: Stats;
}

export interface WalkOptions {
  /** Only entries matching these (or under a match) are reported; empty or absent: everything. */
  include?: readonly string[] | PatternMatcher;
  /** Entries matching these (or under a match) are left out. */
  exclude?: readonly string[] | PatternMatcher;
  /** Aborts the walk (throws the signal's reason). */
  signal?: AbortSignal;
}

function toMatcher(p: readonly string[] | PatternMatcher | undefined): PatternMatcher | null {
  if (!p) return null;
  const m = Array.isArray(p) ? compilePatterns(p as readonly string[]) : (p as PatternMatcher);
  return m.patterns.length > 0 ? m : null;
}

/** Compares names by their UTF-8 bytes, as Go's sort of directory entries does. */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Walks `root` (not reported itself). The root must be a directory. */
export async function* walk(root: string, opts: WalkOptions = {}): AsyncGenerator<WalkEntry> {
  const include = toMatcher(opts.include);
  const exclude = toMatcher(opts.exclude);
  const rootAbs = path.resolve(root);
  // Directories seen but not yet reported, reported when something under them is.
  const pendingDirs: WalkEntry[] = [];

  async function* visit(dirRel: string, dirIncluded: boolean): AsyncGenerator<WalkEntry> {
    opts.signal?.throwIfAborted();
    const dirAbs = dirRel === '' ? rootAbs : path.join(rootAbs, dirRel);
    const names = (await readdir(dirAbs)).sort(compareNames);
    for (const name of names) {
      const rel = dirRel === '' ? name : `${dirRel}/${name}`;
      const abs = path.join(dirAbs, name);
      let stat: Stats;
      try {
        stat = await lstat(abs);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // removed while walking
        throw err;
      }
      const isDir = stat.isDirectory();
      const entry: WalkEntry = { path: rel, absPath: abs, stat };

      const included = dirIncluded || !include || include.matches(rel);
      if (!included && !(isDir && include!.mayMatchUnder(rel))) continue;

      const excluded = exclude !== null && exclude.matches(rel);
      if (excluded && (!isDir || exclude.canSkipDir(rel))) continue;

      if (included && !excluded) {
        yield* flushPending();
        yield entry;
      }
      if (isDir) {
        const depth = pendingDirs.length;
        if (!(included && !excluded)) pendingDirs.push(entry);
        yield* visit(rel, included);
        pendingDirs.length = Math.min(pendingDirs.length, depth);
      }
    }
  }

  function* flushPending(): Generator<WalkEntry> {
    while (pendingDirs.length > 0) yield pendingDirs.shift()!;
  }

  yield* visit('', false);
}
