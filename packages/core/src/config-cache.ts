import { createHash } from 'node:crypto';
import { closeSync, constants, existsSync, fstatSync, lstatSync, openSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { runInThisContext } from 'node:vm';
import type { Jiti } from 'jiti';

/**
 * The compiled-config cache: a TypeScript config that jiti loaded once is
 * loaded again from jiti's own compiled code without loading jiti (its
 * bundle, resolver and cache lookup cost tens of milliseconds of every
 * command that reads the config).
 *
 * An entry is kept only for a config the cache can load exactly as jiti
 * does: one file (no relative or absolute imports: a local module is left to
 * jiti, as are `require`, `module`, `__filename`, `__dirname` and
 * `import.meta.resolve`), whose every import is a Node built-in, the running
 * `@bkt/core` (jiti's alias), or a package of a `node_modules` directory that
 * Node imports natively (`.mjs`, `.cjs`, `.js` of a `"type": "module"`
 * package). An entry is used only while all it was made from is unchanged:
 * the config's bytes (sha256), the Node version, the process's Node flags
 * (`process.execArgv`, `NODE_OPTIONS`: conditions and loaders change how
 * imports resolve) and jiti's options (`JITI_*` variables), the running
 * `@bkt/core`, the jiti package it was compiled with, and, for each imported package,
 * the `node_modules` directories that would resolve it first (still absent),
 * its `package.json` and the project's nearest one (same inode, size, mtime
 * and ctime). Anything else, or any doubt, and jiti loads the config as
 * before (and writes a new entry).
 *
 * Entries are JSON files under `$XDG_CACHE_HOME/bkt/config` (else
 * `~/.cache/bkt/config`), one per config path (at most 256: writing one past
 * that removes the older half), in a directory of mode 0700
 * owned by the user: code is run from them, so an entry in a directory or
 * file another user could write is ignored.
 */

const FORMAT = 1;

/** One import of the compiled config, and what its resolution depends on. */
interface CachedImport {
  specifier: string;
  /** A `node:` built-in as written, else the absolute path jiti resolved it to. */
  resolved: string;
  /** `core`: jiti's alias to the running `@bkt/core`; `builtin`; `package`: a node_modules package. */
  kind: 'core' | 'builtin' | 'package';
  /** `package`: directories `<dir>/node_modules/<name>` that did not exist (nearer ones than the found one). */
  absent?: string[];
  /** `package`: the found package's `package.json` and its identity. */
  packageJson?: FileIdentity;
}

interface FileIdentity {
  path: string;
  /** `ino:size:mtimeNs:ctimeNs`, from a bigint stat. */
  id: string;
}

interface CacheEntry {
  format: number;
  node: string;
  /** What else decides how the config compiles and resolves: see `runtimeKey`. */
  runtime: string;
  file: string;
  sourceSha256: string;
  coreEntry: string;
  jiti: FileIdentity;
  /** The project's nearest `package.json` (a package may import itself by name), or the directories looked in. */
  nearestPackageJson: FileIdentity | { absentIn: string[] };
  imports: CachedImport[];
  code: string;
}

/** The directory entries live in; undefined when there is no home to put it in. */
function cacheDir(): string | undefined {
  const base = process.env.XDG_CACHE_HOME || (homedir() ? path.join(homedir(), '.cache') : '');
  return base && path.isAbsolute(base) ? path.join(base, 'bkt', 'config') : undefined;
}

/** The Node flags (`execArgv`, `NODE_OPTIONS`) and jiti options (`JITI_*` variables, sorted) of this process, as one string. */
function runtimeKey(): string {
  const jiti = Object.keys(process.env)
    .filter((k) => k.startsWith('JITI_'))
    .sort()
    .map((k) => [k, process.env[k]]);
  return JSON.stringify({ execArgv: process.execArgv, nodeOptions: process.env.NODE_OPTIONS ?? null, jiti });
}

function entryPath(dir: string, file: string): string {
  return path.join(dir, `${createHash('sha256').update(file).digest('hex').slice(0, 32)}.json`);
}

/** True when `p` is ours and nobody else may write it. */
function ownedPrivately(p: string): boolean {
  const st = lstatSync(p);
  const uid = process.getuid?.();
  return uid !== undefined && st.uid === uid && (st.mode & 0o022) === 0 && !st.isSymbolicLink();
}

function identity(p: string): FileIdentity | undefined {
  try {
    const st = statSync(p, { bigint: true });
    return { path: p, id: `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` };
  } catch {
    return undefined;
  }
}

function sameIdentity(f: FileIdentity): boolean {
  return identity(f.path)?.id === f.id;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The directories from `dir` up to the root. */
function ancestors(dir: string): string[] {
  const out: string[] = [];
  for (let d = dir; ; d = path.dirname(d)) {
    out.push(d);
    if (path.dirname(d) === d) return out;
  }
}

/** The package name of a bare specifier (`@scope/name/sub` → `@scope/name`). */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

function nearestPackageJson(dir: string): CacheEntry['nearestPackageJson'] {
  const absentIn: string[] = [];
  for (const d of ancestors(dir)) {
    const found = identity(path.join(d, 'package.json'));
    if (found) return found;
    absentIn.push(d);
  }
  return { absentIn };
}

function sameNearestPackageJson(dir: string, recorded: CacheEntry['nearestPackageJson']): boolean {
  const now = nearestPackageJson(dir);
  if ('absentIn' in recorded) return 'absentIn' in now;
  return !('absentIn' in now) && now.path === recorded.path && now.id === recorded.id;
}

/** Whether a file Node imports natively is what jiti imports natively too (no transpiling). */
function nativelyImported(file: string): boolean {
  if (file.endsWith('.mjs') || file.endsWith('.cjs')) return true;
  if (!file.endsWith('.js')) return false;
  for (const d of ancestors(path.dirname(file))) {
    const pj = path.join(d, 'package.json');
    if (!existsSync(pj)) continue;
    try {
      return (JSON.parse(readFileSync(pj, 'utf8')) as { type?: unknown }).type === 'module';
    } catch {
      return false;
    }
  }
  return false;
}

/** The literal specifiers of `jitiImport("…")` calls; undefined when one is not a plain string literal. */
function importSpecifiers(code: string): string[] | undefined {
  const specs: string[] = [];
  const calls = code.split('jitiImport(').length - 1;
  for (const m of code.matchAll(/jitiImport\("([^"\\]*)"\)/g)) specs.push(m[1]);
  return specs.length === calls ? [...new Set(specs)] : undefined;
}

/** Names the compiled code may not use for the cache to stand in for jiti. */
const UNSUPPORTED = /\b(?:require|module|__filename|__dirname|jitiESMResolve)\b|\bimport\s*\(|import\.meta/;

/** The cached module of `file` when an entry is valid; undefined otherwise (the caller loads it through jiti). */
export async function loadCachedConfig(file: string, coreEntry: string | undefined): Promise<{ exports: Record<string, unknown> } | undefined> {
  const dir = cacheDir();
  if (!dir || !coreEntry || !/\.m?ts$/.test(file)) return undefined;
  let entry: CacheEntry;
  let source: string;
  try {
    const p = entryPath(dir, file);
    if (!existsSync(p) || !ownedPrivately(dir)) return undefined;
    // Read through the descriptor whose owner and mode were checked (no swap between the check and the read).
    const fd = openSync(p, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const st = fstatSync(fd);
      if (st.uid !== process.getuid?.() || (st.mode & 0o022) !== 0 || !st.isFile()) return undefined;
      entry = JSON.parse(readFileSync(fd, 'utf8')) as CacheEntry;
    } finally {
      closeSync(fd);
    }
    source = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  if (
    entry.format !== FORMAT ||
    entry.node !== process.version ||
    entry.runtime !== runtimeKey() ||
    entry.file !== file ||
    entry.coreEntry !== coreEntry ||
    entry.sourceSha256 !== sha256(source) ||
    !sameIdentity(entry.jiti) ||
    !sameNearestPackageJson(path.dirname(file), entry.nearestPackageJson)
  ) {
    return undefined;
  }
  for (const imp of entry.imports) {
    if (imp.kind === 'core' && imp.resolved !== coreEntry) return undefined;
    if (imp.kind === 'package' && (!imp.packageJson || !sameIdentity(imp.packageJson) || (imp.absent ?? []).some((d) => existsSync(d)))) return undefined;
  }
  // The imports first (as the compiled code's first statements are): a failure here leaves it to jiti, no config code has run.
  const modules = new Map<string, unknown>();
  try {
    for (const imp of entry.imports) {
      const ns = await import(imp.kind === 'builtin' ? imp.resolved : pathToFileURL(imp.resolved).href);
      modules.set(imp.specifier, interopDefault(ns as Record<string, unknown>));
    }
  } catch {
    return undefined;
  }
  const jitiImport = async (specifier: string) => {
    if (!modules.has(specifier)) throw new Error(`bkt config cache: ${specifier} was not recorded`);
    return modules.get(specifier);
  };
  const refuse = () => {
    throw new Error('bkt config cache: not available in a cached config');
  };
  // jiti's own wrapper, so that line and column numbers (and stack frames naming `file`) are what jiti gives.
  const fn = runInThisContext(`(async function (exports, require, module, __filename, __dirname, jitiImport, jitiESMResolve) { ${entry.code}\n});`, {
    filename: file,
    lineOffset: 0,
    displayErrors: false,
  }) as (...args: unknown[]) => Promise<void>;
  const mod = { exports: {} as Record<string, unknown> };
  await fn(mod.exports, refuse, mod, file, path.dirname(file), jitiImport, refuse);
  return { exports: interopDefault(mod.exports) as Record<string, unknown> };
}

/**
 * Writes the cache entry of `file` after jiti loaded it, when the config is
 * one the cache can stand for (see the header); never throws.
 */
export function rememberCompiledConfig(file: string, loader: Jiti, coreEntry: string | undefined, jitiEntry: string): void {
  try {
    const dir = cacheDir();
    if (!dir || !coreEntry || !/\.m?ts$/.test(file)) return;
    const source = readFileSync(file, 'utf8');
    // The options jiti's own import used: its file-system cache answers, no second compile.
    const code = loader.transform({ source, filename: file, ts: true, async: true, jsx: undefined } as Parameters<Jiti['transform']>[0]);
    if (!code || code.includes('__JITI_ERROR__') || UNSUPPORTED.test(code)) return;
    const specifiers = importSpecifiers(code);
    if (!specifiers) return;
    const imports: CachedImport[] = [];
    for (const specifier of specifiers) {
      const imp = recordImport(specifier, file, loader, coreEntry);
      if (!imp) return;
      imports.push(imp);
    }
    // jiti's entry is <package>/lib/jiti.cjs.
    const jitiPackage = identity(path.join(path.dirname(path.dirname(realpathSync(jitiEntry))), 'package.json'));
    if (!jitiPackage) return;
    const entry: CacheEntry = {
      format: FORMAT,
      node: process.version,
      runtime: runtimeKey(),
      file,
      sourceSha256: sha256(source),
      coreEntry,
      jiti: jitiPackage,
      nearestPackageJson: nearestPackageJson(path.dirname(file)),
      imports,
      code,
    };
    if (!('absentIn' in entry.nearestPackageJson)) {
      const name = (JSON.parse(readFileSync(entry.nearestPackageJson.path, 'utf8')) as { name?: unknown }).name;
      if (typeof name === 'string' && imports.some((i) => i.kind === 'package' && packageName(i.specifier) === name)) return;
    }
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!ownedPrivately(dir)) return;
    const target = entryPath(dir, file);
    const tmp = `${target}.${process.pid}.${Date.now()}.tmp`;
    writeFileSync(tmp, JSON.stringify(entry), { mode: 0o600, flag: 'wx' });
    renameSync(tmp, target);
    trimCache(dir);
  } catch {
    // A cache that cannot be written only means jiti loads the config next time too.
  }
}

/** Most entries kept: past it, the least recently written half goes (an entry is one config path's; a written entry is a cold load). */
const MAX_ENTRIES = 256;

function trimCache(dir: string): void {
  const names = readdirSync(dir).filter((n) => n.endsWith('.json'));
  if (names.length <= MAX_ENTRIES) return;
  const byAge = names.map((n) => ({ n, t: statSync(path.join(dir, n)).mtimeMs })).sort((a, b) => a.t - b.t);
  for (const { n } of byAge.slice(0, names.length - MAX_ENTRIES / 2)) rmSync(path.join(dir, n), { force: true });
}

function recordImport(specifier: string, file: string, loader: Jiti, coreEntry: string): CachedImport | undefined {
  if (specifier.startsWith('node:')) return { specifier, resolved: specifier, kind: 'builtin' };
  if (specifier.startsWith('.') || specifier.startsWith('/') || specifier.includes(':')) return undefined;
  const url = loader.esmResolve(specifier, { parentURL: pathToFileURL(file).href, try: true });
  if (!url || !url.startsWith('file://')) return undefined;
  const resolved = new URL(url).pathname;
  if (specifier === '@bkt/core') return resolved === coreEntry && nativelyImported(resolved) ? { specifier, resolved, kind: 'core' } : undefined;
  if (!nativelyImported(resolved)) return undefined;
  const name = packageName(specifier);
  const absent: string[] = [];
  for (const d of ancestors(path.dirname(file))) {
    const candidate = path.join(d, 'node_modules', name);
    if (!existsSync(candidate)) {
      absent.push(candidate);
      continue;
    }
    const real = realpathSync(candidate);
    if (!resolved.startsWith(`${real}/`)) return undefined;
    const packageJson = identity(path.join(candidate, 'package.json'));
    return packageJson ? { specifier, resolved, kind: 'package', absent, packageJson } : undefined;
  }
  return undefined;
}

/**
 * jiti's `interopDefault` (on by default): a module's namespace, where
 * `__esModule` reads true, `default` reads the default export (its own
 * `default` when that is a function of an ES module's export) or the
 * namespace itself when it has none, and other names missing from the
 * namespace read the default export's (methods bound to it).
 */
function interopDefault(mod: Record<string, unknown>): unknown {
  const type = typeof mod;
  if (mod === null || (type !== 'object' && type !== 'function')) return mod;
  const def = mod.default as Record<string, unknown> | undefined | null;
  const defType = typeof def;
  const noDefault = def === undefined || def === null;
  if (noDefault && mod instanceof Promise) return mod;
  const defIsObject = defType === 'object' || defType === 'function';
  const callable = defType === 'function' && type !== 'function';
  const mergeDefault = defIsObject && !(def instanceof Promise);
  const seen = new Map<PropertyKey, unknown>();
  return new Proxy(mod, {
    get(target, key) {
      if (seen.has(key)) return seen.get(key);
      let value: unknown;
      if (key === '__esModule') value = true;
      else if (key === 'default') value = noDefault ? mod : typeof def?.default === 'function' && mod.__esModule ? def.default : def;
      else if (key in target) value = target[key as string];
      else if (mergeDefault) {
        value = def![key as string];
        if (typeof value === 'function') value = (value as (...a: unknown[]) => unknown).bind(def);
      }
      seen.set(key, value);
      return value;
    },
    apply: callable ? (_t, self, args) => Reflect.apply(def as unknown as (...a: unknown[]) => unknown, self, args) : undefined,
  });
}
