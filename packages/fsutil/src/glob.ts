/**
 * Wildcard resolution inside a root, as BuildKit's copy with `allowWildcard`
 * and rm with `allowWildcard`: each `/`-separated component of the pattern may
 * hold `*`, `?`, `[...]` (Go's `path.Match`, so `*` never crosses `/`);
 * intermediate directories are resolved with `resolveInRoot` (symlinks stay in
 * the root). Matches are returned as root-relative paths, sorted.
 */
import { lstat, readdir } from 'node:fs/promises';
import * as path from 'node:path';
import { BktError } from '@bkt/core';
import { cleanRelPath } from './patterns.js';
import { resolveRelInRoot } from './resolve.js';
import { compareNames } from './walk.js';

/** True when `p` holds a wildcard character of `path.Match`. */
export function hasWildcard(p: string): boolean {
  return /[*?[\\]/.test(p);
}

/** Compiles one path component pattern to a RegExp (Go `path.Match` semantics). */
export function compileSegment(seg: string): RegExp {
  let re = '^';
  for (let i = 0; i < seg.length; i++) {
    const ch = seg[i]!;
    if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else if (ch === '\\') {
      const next = seg[++i];
      if (next === undefined) throw new BktError('INVALID_ARGUMENT', `bad wildcard "${seg}": trailing "\\"`);
      re += next.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
    } else if (ch === '[') {
      let j = i + 1;
      let cls = '';
      if (seg[j] === '^' || seg[j] === '!') {
        cls += '^';
        j++;
      }
      let closed = false;
      for (; j < seg.length; j++) {
        const c = seg[j]!;
        if (c === ']' && cls.replace(/^\^/, '') !== '') {
          closed = true;
          break;
        }
        if (c === '\\') {
          const n = seg[++j];
          if (n === undefined) break;
          cls += '\\' + n;
        } else if (c === '[' || c === ']' || c === '^') cls += '\\' + c;
        else cls += c;
      }
      if (!closed) throw new BktError('INVALID_ARGUMENT', `bad wildcard "${seg}": unterminated character class`);
      re += `[${cls}]`;
      i = j;
    } else re += ch.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
  }
  return new RegExp(re + '$', 's');
}

/**
 * Expands `pattern` (absolute or relative to the root) inside `root`.
 * With `followLinks`, a match that is a symlink must resolve (inside the root)
 * to an existing entry; otherwise a dangling link still matches.
 */
export async function resolveWildcards(root: string, pattern: string, opts: { followLinks?: boolean } = {}): Promise<string[]> {
  root = path.resolve(root);
  // `..` is clamped lexically first, like `path.Clean("/" + pattern)`.
  const cleaned = cleanRelPath('/' + pattern);
  const comps = cleaned === '.' ? [] : cleaned.split('/');
  let current: string[] = [''];
  for (const comp of comps) {
    const next: string[] = [];
    for (const base of current) {
      if (!hasWildcard(comp)) {
        next.push(base === '' ? comp : `${base}/${comp}`);
        continue;
      }
      // Read the directory the pattern component applies to, resolved in the root.
      const dirRel = await resolveRelInRoot(root, base, { followFinalSymlink: true });
      const dirAbs = dirRel === '' ? root : path.join(root, dirRel);
      let names: string[];
      try {
        names = await readdir(dirAbs);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') continue;
        throw err;
      }
      const re = compileSegment(comp);
      for (const name of names.sort(compareNames)) {
        if (re.test(name)) next.push(dirRel === '' ? name : `${dirRel}/${name}`);
      }
    }
    current = next;
  }
  const out: string[] = [];
  for (const rel of current) {
    if (rel === '') {
      out.push('');
      continue;
    }
    const resolved = await resolveRelInRoot(root, rel, { followFinalSymlink: opts.followLinks });
    try {
      await lstat(resolved === '' ? root : path.join(root, resolved));
      out.push(rel);
    } catch {
      // not found: no match
    }
  }
  return [...new Set(out)].sort(compareNames);
}
