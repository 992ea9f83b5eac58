import { readFile } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { BktError, type SecretProvider } from '@bkt/core';
import { splitCsv } from './options.js';

/** Where one `--secret` takes its value from. */
export type SecretSource = { id: string; file: string } | { id: string; env: string };

/**
 * Parses one `--secret` value as buildx does: CSV fields `id`, `type`
 * (`file` or `env`), `src`/`source` and `env`.
 *
 * - `type=file` (or a `src` without `type`): the file `src` (default: the id);
 *   the id defaults to the file's base name.
 * - `type=env` (or an `env` without `type`): the variable `env` (or `src`,
 *   default: the id); the id defaults to the variable's name.
 * - only `id`: the variable of that name when it is set, else the file of that name.
 *
 * A relative file is taken from `baseDir`.
 */
export function parseSecret(value: string, baseDir: string, env: NodeJS.ProcessEnv = process.env): SecretSource {
  let type: 'file' | 'env' | undefined;
  let id: string | undefined;
  let src: string | undefined;
  let envName: string | undefined;
  for (const field of splitCsv(value)) {
    const eq = field.indexOf('=');
    if (eq < 0) throw new BktError('INVALID_ARGUMENT', `--secret ${value}: invalid field "${field}": it must be a key=value pair`, { attribute: 'secret' });
    const key = field.slice(0, eq).trim().toLowerCase();
    const v = field.slice(eq + 1);
    switch (key) {
      case 'type':
        if (v !== 'file' && v !== 'env') throw new BktError('INVALID_ARGUMENT', `--secret ${value}: unsupported secret type "${v}" (file or env)`, { attribute: 'secret' });
        type = v;
        break;
      case 'id':
        id = v;
        break;
      case 'src':
      case 'source':
        src = v;
        break;
      case 'env':
        envName = v;
        break;
      default:
        throw new BktError('INVALID_ARGUMENT', `--secret ${value}: unexpected key "${key}" (id, type, src, env)`, { attribute: 'secret' });
    }
  }
  if (type === undefined) {
    if (envName !== undefined) type = 'env';
    else if (src !== undefined) type = 'file';
    else if (id !== undefined && env[id] !== undefined) type = 'env';
    else type = 'file';
  }
  if (type === 'env') {
    const name = envName ?? src ?? id;
    if (!name) throw new BktError('INVALID_ARGUMENT', `--secret ${value}: give an id or env`, { attribute: 'secret' });
    return { id: id ?? name, env: name };
  }
  const file = src ?? id;
  if (!file) throw new BktError('INVALID_ARGUMENT', `--secret ${value}: give an id or src`, { attribute: 'secret' });
  return { id: id ?? basename(file), file: resolve(baseDir, file) };
}

/**
 * Reads every secret now (a missing file or variable is an error before the
 * build starts) and serves the values by id. Values live only in memory; the
 * provider never logs them.
 */
export async function loadSecrets(sources: SecretSource[], env: NodeJS.ProcessEnv = process.env): Promise<SecretProvider> {
  const values = new Map<string, Uint8Array>();
  for (const s of sources) {
    if ('file' in s) {
      try {
        values.set(s.id, new Uint8Array(await readFile(s.file)));
      } catch (err) {
        throw new BktError('NOT_FOUND', `--secret id=${s.id}: cannot read ${s.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
          attribute: 'secret',
          path: s.file,
        });
      }
    } else {
      const v = env[s.env];
      if (v === undefined) throw new BktError('NOT_FOUND', `--secret id=${s.id}: the environment variable ${s.env} is not set`, { attribute: 'secret' });
      values.set(s.id, new TextEncoder().encode(v));
    }
  }
  return { get: async (id) => values.get(id) ?? null };
}
