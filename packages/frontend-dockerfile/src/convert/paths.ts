import { normalizeActionPath as normalizePath } from '@bkt/llb';

/** Go's `path.Clean`, and BuildKit's `NormalizePath` (a trailing `/` kept with `keepSlash`): the LLB builder's. */
export { cleanPath, normalizeActionPath as normalizePath } from '@bkt/llb';

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
