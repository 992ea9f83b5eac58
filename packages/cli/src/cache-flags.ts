/**
 * `--cache-to` and `--cache-from`, as buildx reads them: CSV `key=value`
 * pairs with `type` (`type=registry,ref=REF,mode=max`); a value without `=`
 * is a registry ref (`--cache-from REF` = `type=registry,ref=REF`). A local
 * cache's `src`/`dest` is resolved against the working directory, and the
 * directory is offered to the build as a client directory
 * (`localCacheDirName` of `@bkt/cache-registry`, imported only then): backends
 * never read host paths.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { BktError } from '@bkt/core';
import type { CacheOptionsEntry } from '@bkt/solver';
import { splitCsv } from './options.js';

export interface CacheFlags {
  cacheTo: string[];
  cacheFrom: string[];
}

export interface ParsedCacheFlags {
  imports: CacheOptionsEntry[];
  exports: CacheOptionsEntry[];
  /** Client directories the cache entries need, by name. */
  localDirs: Record<string, string>;
}

export function parseCacheSpec(flag: '--cache-to' | '--cache-from', value: string): CacheOptionsEntry {
  if (!value.includes('=')) {
    if (value.trim() === '') throw new BktError('INVALID_ARGUMENT', `${flag}: empty value`, { attribute: flag.slice(2) });
    return { type: 'registry', attrs: { ref: value.trim() } };
  }
  const attrs: Record<string, string> = {};
  for (const field of splitCsv(value)) {
    const eq = field.indexOf('=');
    if (eq <= 0) throw new BktError('INVALID_ARGUMENT', `${flag} ${value}: "${field}" is not key=value`, { attribute: flag.slice(2) });
    const key = field.slice(0, eq).trim().toLowerCase();
    if (key in attrs) throw new BktError('INVALID_ARGUMENT', `${flag} ${value}: "${key}" given twice`, { attribute: key });
    attrs[key] = field.slice(eq + 1);
  }
  const { type, ...rest } = attrs;
  if (!type) throw new BktError('INVALID_ARGUMENT', `${flag} ${value}: type is required (type=registry,ref=REF | type=local,${flag === '--cache-to' ? 'dest' : 'src'}=DIR | type=inline)`, { attribute: 'type' });
  return { type, attrs: rest };
}

export async function parseCacheFlags(flags: Partial<CacheFlags>, cwd: string): Promise<ParsedCacheFlags> {
  const dirs: string[] = [];
  const local = (entry: CacheOptionsEntry, key: 'src' | 'dest', mustExist: boolean, flag: string): CacheOptionsEntry => {
    if (entry.type !== 'local' || entry.attrs[key] === undefined) return entry;
    const dir = resolve(cwd, entry.attrs[key]!);
    if (mustExist && !existsSync(dir)) throw new BktError('NOT_FOUND', `${flag} type=local,${key}=${entry.attrs[key]}: no such directory`, { attribute: key, path: dir });
    // An export's dest is offered too, existing or not: the exporter keeps the other tags of its index.json.
    dirs.push(dir);
    return { type: entry.type, attrs: { ...entry.attrs, [key]: dir } };
  };
  const imports = (flags.cacheFrom ?? []).map((v) => local(parseCacheSpec('--cache-from', v), 'src', true, '--cache-from'));
  const exports = (flags.cacheTo ?? []).map((v) => local(parseCacheSpec('--cache-to', v), 'dest', false, '--cache-to'));
  const localDirs: Record<string, string> = {};
  if (dirs.length > 0) {
    const { localCacheDirName } = await import('@bkt/cache-registry');
    for (const dir of dirs) localDirs[localCacheDirName(dir)] = dir;
  }
  return { imports, exports, localDirs };
}
