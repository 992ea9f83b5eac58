import path from 'node:path';

/** Go's `path.Clean`. */
export function cleanPath(p: string): string {
  if (p === '') return '.';
  let out = path.posix.normalize(p);
  if (out.startsWith('//')) out = out.replace(/^\/+/, '/');
  if (out.length > 1 && out.endsWith('/')) out = out.slice(0, -1);
  return out;
}

/**
 * BuildKit's system.NormalizePath for Linux: `p` against `parent` when
 * relative, cleaned; with `keepSlash` a trailing `/` (or `/.`) of `p` is kept,
 * since it means "into this directory".
 */
export function normalizePath(parent: string, p: string, keepSlash: boolean): string {
  const base = parent === '' ? '/' : parent;
  let out = p.startsWith('/') ? cleanPath(p) : cleanPath(`${base}/${p}`);
  if (keepSlash) {
    if (p.endsWith('/') && !out.endsWith('/')) out += '/';
    else if (p.endsWith('/.')) {
      if (out !== '/') out += '/';
      out += '.';
    }
  }
  return out;
}

/** A COPY/ADD destination against the stage's working directory (BuildKit's pathRelativeToWorkingDir). */
export function destPath(workdir: string, p: string): string {
  if (p.startsWith('/')) return normalizePath('/', p, true);
  return normalizePath(workdir, p === '.' || p === '' ? './' : p, true);
}

/** Go's `path.Base`. */
export function baseName(p: string): string {
  if (p === '') return '.';
  const trimmed = p.replace(/\/+$/, '');
  if (trimmed === '') return '/';
  return trimmed.slice(trimmed.lastIndexOf('/') + 1);
}

/** Whether a path holds glob characters (BuildKit's containsWildcards). */
export function containsWildcards(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const ch = name[i];
    if (ch === '*' || ch === '?' || ch === '[') return true;
    if (ch === '\\') i++;
  }
  return false;
}
