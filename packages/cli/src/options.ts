import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { BktError, type OutputSpec } from '@bkt/core';

/**
 * Parses one `--output` value as buildx does: CSV `key=value` pairs with
 * `type` (`type=local,dest=out`, `"dest=a,b"` quoted when a value holds a
 * comma). A value without `=` is shorthand: `-` = `type=tar,dest=-`, any
 * other value = `type=local,dest=VALUE`. A relative `dest` is resolved against `baseDir`.
 */
export function parseOutput(value: string, baseDir: string): OutputSpec {
  let spec: OutputSpec;
  if (!value.includes('=')) {
    spec = value === '-' ? { type: 'tar', dest: '-' } : { type: 'local', dest: value };
  } else {
    const fields = splitCsv(value);
    const attrs: Record<string, string> = {};
    for (const field of fields) {
      const eq = field.indexOf('=');
      if (eq <= 0) throw new BktError('INVALID_ARGUMENT', `--output ${value}: "${field}" is not key=value`, { attribute: 'output' });
      const key = field.slice(0, eq).trim().toLowerCase();
      if (key in attrs) throw new BktError('INVALID_ARGUMENT', `--output ${value}: "${key}" given twice`, { attribute: key });
      attrs[key] = field.slice(eq + 1);
    }
    const { type, ...rest } = attrs;
    if (!type) throw new BktError('INVALID_ARGUMENT', `--output ${value}: type is required (e.g. type=local,dest=out)`, { attribute: 'type' });
    spec = { ...rest, type };
  }
  return resolveDest(spec, baseDir);
}

/** Resolves a relative `dest` of an output against `baseDir` (`-` stays stdout). */
export function resolveDest(spec: OutputSpec, baseDir: string): OutputSpec {
  if (spec.dest === undefined || spec.dest === '-' || isAbsolute(spec.dest)) return spec;
  return { ...spec, dest: resolve(baseDir, spec.dest) };
}

/** Splits one CSV record (RFC 4180 quoting, as Go's encoding/csv used by buildx). */
export function splitCsv(line: string): string[] {
  const out: string[] = [];
  let field = '';
  let quoted = false;
  let i = 0;
  let atStart = true;
  while (i < line.length) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        field += '"';
        i += 2;
        continue;
      }
      if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"' && atStart) {
      quoted = true;
    } else if (ch === ',') {
      out.push(field);
      field = '';
      atStart = true;
      i++;
      continue;
    } else {
      field += ch;
    }
    atStart = false;
    i++;
  }
  if (quoted) throw new BktError('INVALID_ARGUMENT', `unterminated quote in "${line}"`);
  out.push(field);
  return out;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses a duration like Go's `time.ParseDuration` (plus `d` for days): `24h`, `30m`, `1h30m`, `90s`. Returns ms. */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s))) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    matched = re.lastIndex;
  }
  if (s === '' || matched !== s.length) {
    throw new BktError('INVALID_ARGUMENT', `invalid duration "${text}" (use e.g. 24h, 30m, 1h30m, 90s, 7d)`, { attribute: 'keep-duration' });
  }
  return total;
}

const BYTE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/**
 * Parses a size as docker and buildx do (`RAMInBytes`): a number with an
 * optional unit `B`, `K`/`KB`/`KiB`, `M`/`MB`/`MiB`, `G`…, `T`…, `P`…, all
 * binary (1KB = 1024 bytes). `10GB`, `512MB`, `1.5g`, `1048576`.
 */
export function parseBytes(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$/i.exec(text);
  if (!m || (m[2] === '' && m[3] !== undefined && m[3].toLowerCase() !== 'b')) {
    throw new BktError('INVALID_ARGUMENT', `invalid size "${text}" (use e.g. 10GB, 512MB, 1048576)`, { attribute: 'keep-storage' });
  }
  return Math.floor(Number(m[1]) * BYTE_UNITS[m[2]!.toLowerCase()]!);
}

/** The default store root: `/var/lib/bkt` as root, else `$XDG_DATA_HOME/bkt` (`~/.local/share/bkt`). */
export function defaultRoot(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.()): string {
  if (uid === 0) return '/var/lib/bkt';
  const data = env.XDG_DATA_HOME || join(homedir(), '.local', 'share');
  return join(data, 'bkt');
}

/** Parses `--local NAME=DIR` values into a map; relative dirs resolve against `baseDir`. */
export function parseLocalDirs(values: string[], baseDir: string): Record<string, string> {
  const dirs: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf('=');
    if (eq <= 0 || eq === v.length - 1) throw new BktError('INVALID_ARGUMENT', `--local ${v}: expected NAME=DIR`, { attribute: 'local' });
    dirs[v.slice(0, eq)] = resolve(baseDir, v.slice(eq + 1));
  }
  return dirs;
}

/** Formats bytes like docker's `HumanSize` (decimal units, 3 significant digits): `4.1kB`, `12.3MB`. */
export function humanSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let n = bytes;
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${Number(n.toPrecision(3))}${units[i]}`;
}

/** "3 minutes ago", as buildctl's du prints LAST ACCESSED. */
export function humanAgo(date: Date | undefined, now = Date.now()): string {
  if (!date) return '';
  const s = Math.max(0, Math.round((now - date.getTime()) / 1000));
  const pick = (n: number, unit: string) => `${n} ${unit}${n === 1 ? '' : 's'} ago`;
  if (s < 1) return 'Less than a second ago';
  if (s < 60) return pick(s, 'second');
  if (s < 3600) return pick(Math.round(s / 60), 'minute');
  if (s < 86400) return pick(Math.round(s / 3600), 'hour');
  return pick(Math.round(s / 86400), 'day');
}
