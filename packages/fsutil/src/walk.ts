/**
 * A deterministic walk of a directory tree with include/exclude patterns,
 * with the semantics of tonistiigi/fsutil's walker (used by BuildKit for the
 * local source and copy): entries come depth-first, each directory before its
 * contents, names sorted within a directory; symlinks are reported, never
 * followed. Directories that are not themselves selected but hold selected
 * entries are reported before those entries (so a consumer can recreate them).
 *
 * A directory is read and its entries lstat'ed synchronously, as one batch:
 * thousands of small async calls cost far more than the system calls (each a
 * trip through the thread pool); the walk lets the event loop run between
 * batches of at most `BATCH` system calls.
 */
import { lstatSync, readdirSync, type Stats } from 'node:fs';
import * as path from 'node:path';
import { compilePatterns, type PatternMatcher } from './patterns.js';

/** System calls between two turns of the event loop. */
const BATCH = 256;

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

/**
 * Compares names by their UTF-8 bytes, as Go's sort of directory entries
 * does, without encoding them: UTF-16 code unit order is UTF-8 byte order
 * except between a surrogate (a code point above U+FFFF) and U+E000–U+FFFF,
 * which the comparison of the first differing units corrects. (An unpaired
 * surrogate, which no directory read yields, orders as a code point above
 * U+FFFF.)
 */
export function compareNames(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      // U+E000–U+FFFF before surrogates, each range keeping its order.
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x < y ? -1 : 1;
  }
  return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
}

/** Walks `root` (not reported itself). The root must be a directory. */
export async function* walk(root: string, opts: WalkOptions = {}): AsyncGenerator<WalkEntry> {
  const include = toMatcher(opts.include);
  const exclude = toMatcher(opts.exclude);
  const rootAbs = path.resolve(root);
  // Directories seen but not yet reported, reported when something under them is.
  const pendingDirs: WalkEntry[] = [];
  let calls = 0;
  const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

  async function* visit(dirRel: string, dirIncluded: boolean): AsyncGenerator<WalkEntry> {
    opts.signal?.throwIfAborted();
    const dirAbs = dirRel === '' ? rootAbs : path.join(rootAbs, dirRel);
    if (++calls % BATCH === 0) await turn();
    const names = readdirSync(dirAbs).sort(compareNames);
    for (const name of names) {
      const rel = dirRel === '' ? name : `${dirRel}/${name}`;
      const abs = path.join(dirAbs, name);
      if (++calls % BATCH === 0) await turn();
      // undefined: removed while walking
      const stat = lstatSync(abs, { throwIfNoEntry: false });
      if (!stat) continue;
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
