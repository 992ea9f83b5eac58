import path from 'node:path';

/** Go's `path.Clean`: lexical cleanup, no trailing slash, `.` for empty. */
export function cleanPath(p: string): string {
  if (p === '') return '.';
  let out = path.posix.normalize(p);
  if (out.startsWith('//')) out = out.replace(/^\/+/, '/');
  if (out.length > 1 && out.endsWith('/')) out = out.slice(0, -1);
  return out;
}

/** Go's `path.Join`: joins the non-empty elements and cleans; empty when all are empty. */
export function joinPath(...elems: string[]): string {
  const parts = elems.filter((e) => e !== '');
  return parts.length === 0 ? '' : cleanPath(parts.join('/'));
}

/**
 * A path of a file action, as Go's `normalizePath`: relative paths resolve
 * against `parent` (the state's working dir); with `keepSlash`, a trailing
 * `/` or `/.` of the original is kept (it means "into the directory").
 */
export function normalizeActionPath(parent: string, p: string, keepSlash: boolean): string {
  let out = cleanPath(p);
  if (!out.startsWith('/')) out = joinPath('/', parent, out);
  if (keepSlash) {
    if (p.endsWith('/') && !out.endsWith('/')) out += '/';
    else if (p.endsWith('/.')) {
      if (out !== '/') out += '/';
      out += '.';
    }
  }
  return out;
}
