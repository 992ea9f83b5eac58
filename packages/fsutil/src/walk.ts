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
  for await (const batch of walkBatches(root, opts)) yield* batch;
}

/** A directory being walked: its sorted names and the next one to look at. */
interface Frame {
  /** The directory's absolute path with a trailing `/`. */
  prefix: string;
  dirRel: string;
  included: boolean;
  names: string[];
  next: number;
  /** What `pendingDirs` is cut back to once the directory was walked. */
  depth: number;
}

/**
 * `walk`'s entries in the same order, several at a time: the entries found
 * between two turns of the event loop (at most `BATCH` system calls apart),
 * never an empty batch. A failing system call (a directory that cannot be
 * read) ends the walk with its error once the entries found before it were
 * handed out, as `walk` does.
 */
export async function* walkBatches(root: string, opts: WalkOptions = {}): AsyncGenerator<WalkEntry[]> {
  const include = toMatcher(opts.include);
  const exclude = toMatcher(opts.exclude);
  const signal = opts.signal;
  const rootAbs = path.resolve(root);
  // Directories seen but not yet reported, reported when something under them is.
  const pendingDirs: WalkEntry[] = [];
  const stack: Frame[] = [];
  let calls = 0;
  const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

  // Reads directory `dirAbs` (one system call) and makes it the one walked next; leaving it truncates the pending
  // directories to `depth`.
  const enter = (dirAbs: string, dirRel: string, included: boolean, depth: number): void => {
    signal?.throwIfAborted();
    calls++;
    const names = readdirSync(dirAbs).sort(compareNames);
    const prefix = dirAbs.endsWith('/') ? dirAbs : `${dirAbs}/`;
    stack.push({ prefix, dirRel, included, names, next: 0, depth });
  };

  let batch: WalkEntry[] = [];
  // Walks until `BATCH` system calls were made (or the end), adding the reported entries to `batch`.
  const step = (): void => {
    const until = calls + BATCH;
    while (stack.length > 0 && calls < until) {
      const frame = stack[stack.length - 1]!;
      if (frame.next === frame.names.length) {
        stack.pop();
        pendingDirs.length = Math.min(pendingDirs.length, frame.depth);
        continue;
      }
      const name = frame.names[frame.next++]!;
      const rel = frame.dirRel === '' ? name : `${frame.dirRel}/${name}`;
      const abs = frame.prefix + name;
      calls++;
      // undefined: removed while walking
      const stat = lstatSync(abs, { throwIfNoEntry: false });
      if (!stat) continue;
      const isDir = stat.isDirectory();
      const entry: WalkEntry = { path: rel, absPath: abs, stat };

      const included = frame.included || !include || include.matches(rel);
      if (!included && !(isDir && include!.mayMatchUnder(rel))) continue;

      const excluded = exclude !== null && exclude.matches(rel);
      if (excluded && (!isDir || exclude.canSkipDir(rel))) continue;

      if (included && !excluded) {
        if (pendingDirs.length > 0) batch.push(...pendingDirs.splice(0));
        batch.push(entry);
      }
      if (isDir) {
        const depth = pendingDirs.length;
        if (!(included && !excluded)) pendingDirs.push(entry);
        enter(abs, rel, included, depth);
      }
    }
  };

  let failure: { err: unknown } | undefined;
  try {
    enter(rootAbs, '', false, 0);
  } catch (err) {
    failure = { err };
  }
  while (!failure && stack.length > 0) {
    try {
      step();
    } catch (err) {
      failure = { err };
    }
    if (batch.length > 0) {
      const out = batch;
      batch = [];
      yield out;
    }
    if (!failure && stack.length > 0) await turn();
  }
  if (failure) throw failure.err;
}
