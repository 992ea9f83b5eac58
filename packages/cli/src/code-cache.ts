/**
 * The `bkt` executable's modules run with V8's code cache. Node 20 keeps no
 * compiled code of ES modules between runs, so every command compiled the
 * bundle's chunks again (tens of milliseconds of a warm build). The build
 * writes each chunk of `dist-bin/` a second time as a script
 * (`dist-bin/scripts/`: the same code, its imports and exports as
 * CommonJS); this loader runs those scripts with `vm.Script`, given the
 * cached data V8 produced for them in an earlier run.
 *
 * Contracts:
 * - The scripts are the chunks' code: `import.meta.url` is the chunk's own
 *   URL in `dist-bin/`, a chunk's imports of other chunks load those
 *   scripts (one instance each), static imports of the packages shared with
 *   a project's config (`@bkt/core`, `@bkt/llb`, …: ES modules) are
 *   imported before the chunk that needs them runs, and every other import
 *   is Node's.
 * - A cache entry is the V8 code cache of one script, in
 *   `$XDG_CACHE_HOME/bkt/code` (else `~/.cache/bkt/code`), named by the
 *   sha256 of the Node version, the architecture, Node's flags
 *   (`execArgv`, `NODE_OPTIONS`) and the script's text. It
 *   is used only from a directory and a file that are the effective user's and that
 *   no group or other user may read or write (code is run from it); one V8 rejects, or one that
 *   cannot be read, is ignored and written again. Entries are written when
 *   the process exits (then they hold the functions the command compiled),
 *   each through a temporary file renamed into place; a failure to write
 *   one is ignored. Past `MAX_ENTRIES`, the older half goes.
 * - The cache directory (`<base>/bkt/code`, `<base>` the XDG cache
 *   directory) is used only when `<base>`, `bkt` and `code` are directories
 *   of the effective user, and directories are made only inside the effective user's own:
 *   `<base>` (mode 0700) only when it is missing and its parent (the home)
 *   is the effective user's. So root run with a user's `HOME` or
 *   `XDG_CACHE_HOME` (sudo without -H) neither makes root-owned directories
 *   in that user's home nor runs code cached there: it runs without the cache.
 * - Without `dist-bin/scripts/` (sources, tests), `loadCachedProgram`
 *   returns undefined and the caller imports the module itself.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

/** What the build writes beside the scripts: per chunk, the shared ES module packages its static imports reach. */
export interface ScriptsManifest {
  format: 1;
  /** The chunk holding `src/program.ts`, which the entry imports. */
  program: string;
  externals: Record<string, string[]>;
}

export const SCRIPTS_DIR = 'scripts';
export const MANIFEST = 'manifest.json';
const MAX_ENTRIES = 512;

/** What besides a script's text decides whether V8 takes its cache: Node (V8's version), the architecture, V8's flags (Node's command line). */
const RUNTIME = JSON.stringify([process.version, process.arch, process.execArgv, process.env.NODE_OPTIONS ?? null]) + '\0';

/** The code cache directory (`<base>/bkt/code`); undefined when there is no home to put it in. */
export function codeCacheDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const home = env.HOME || homedir();
  const base = env.XDG_CACHE_HOME || (home ? join(home, '.cache') : '');
  return base && base.startsWith('/') ? join(base, 'bkt', 'code') : undefined;
}

/** True when `p` is the effective user's and no one else may write it. */
function ownedPrivately(p: string): boolean {
  const st = lstatSync(p);
  const uid = process.geteuid?.();
  return uid !== undefined && st.uid === uid && (st.mode & 0o077) === 0 && !st.isSymbolicLink();
}

/**
 * Whether `dir` is a directory of user `euid`, made (mode 0700) when missing
 * and `mayMake()` allows it; a symbolic link (itself `euid`'s) is followed
 * only when `follow`.
 */
function ownDir(dir: string, euid: number, follow: boolean, mayMake: () => boolean): boolean {
  let st = lstatSync(dir, { throwIfNoEntry: false });
  if (!st) {
    if (!mayMake()) return false;
    try {
      mkdirSync(dir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    st = lstatSync(dir);
  }
  if (st.isSymbolicLink() && follow && st.uid === euid) st = statSync(dir);
  return st.isDirectory() && st.uid === euid;
}

/**
 * Whether the cache directory `dir` (`<base>/bkt/code`) can be used, made
 * if missing, as the module's contract says: `<base>` (a link of the user's to a
 * directory is followed), `bkt` and `code` the effective user's, `<base>`
 * made only in a parent that is the effective user's, and `code` private.
 */
function usableCacheDir(dir: string): boolean {
  const euid = process.geteuid?.();
  if (euid === undefined) return false;
  const bkt = dirname(dir);
  const base = dirname(bkt);
  try {
    return (
      ownDir(base, euid, true, () => statSync(dirname(base)).uid === euid) &&
      ownDir(bkt, euid, false, () => true) &&
      ownDir(dir, euid, false, () => true) &&
      ownedPrivately(dir)
    );
  } catch {
    return false;
  }
}

/** The cache entry at `file`, read through the descriptor whose owner and mode were checked; undefined when absent or not private. */
function readEntry(file: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.uid !== process.geteuid?.() || (st.mode & 0o077) !== 0) return undefined;
    return readFileSync(fd);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** A loader of the scripts of one `dist-bin/` directory. */
export class ScriptLoader {
  readonly #binDir: string;
  readonly #scriptsDir: string;
  readonly #manifest: ScriptsManifest;
  readonly #cacheDir: string | undefined;
  readonly #require: NodeJS.Require;
  readonly #shared = new Map<string, unknown>();
  readonly #modules = new Map<string, { exports: Record<string, unknown> }>();
  readonly #toWrite: { file: string; script: vm.Script }[] = [];
  /** Scripts run with cached data V8 accepted, and without (for tests and diagnostics). */
  readonly stats = { cached: 0, compiled: 0 };

  constructor(binDir: string, manifest: ScriptsManifest, cacheDir: string | undefined) {
    this.#binDir = binDir;
    this.#scriptsDir = join(binDir, SCRIPTS_DIR);
    this.#manifest = manifest;
    this.#cacheDir = cacheDir !== undefined && usableCacheDir(cacheDir) ? cacheDir : undefined;
    this.#require = createRequire(join(binDir, 'bkt.js'));
  }

  /** The loader of `binDir`'s scripts, or undefined when it has none (or an unreadable manifest). */
  static open(binDir: string, cacheDir: string | undefined = codeCacheDir()): ScriptLoader | undefined {
    let manifest: ScriptsManifest;
    try {
      manifest = JSON.parse(readFileSync(join(binDir, SCRIPTS_DIR, MANIFEST), 'utf8')) as ScriptsManifest;
    } catch {
      return undefined;
    }
    if (manifest?.format !== 1 || typeof manifest.program !== 'string' || typeof manifest.externals !== 'object' || manifest.externals === null) return undefined;
    return new ScriptLoader(binDir, manifest, cacheDir);
  }

  /** Imports chunk `name` (`./name.js` of `dist-bin/`): its shared packages first, then its script. */
  async import(name: string): Promise<Record<string, unknown>> {
    const chunk = name.replace(/^\.\//, '');
    const shared = this.#manifest.externals[chunk];
    if (!shared) throw new Error(`bkt: ${chunk} is not a chunk of ${this.#binDir}`);
    for (const spec of shared) if (!this.#shared.has(spec)) this.#shared.set(spec, await import(spec));
    return this.#load(chunk);
  }

  /** A script's dynamic `import()`: a chunk through this loader, anything else through Node. */
  #dynamicImport = (spec: string): Promise<unknown> => (spec.startsWith('./') ? this.import(spec) : import(spec));

  /** A script's `require`: a chunk, a shared package imported for it, or Node's `require` from `dist-bin/`. */
  #requireFor = (spec: string): unknown => {
    if (spec.startsWith('./')) return this.#load(spec.slice(2));
    if (this.#shared.has(spec)) return this.#shared.get(spec);
    if (/^@bkt\//.test(spec)) throw new Error(`bkt: ${spec} was not imported before the chunk that requires it (rebuild @bkt/cli)`);
    return this.#require(spec);
  };

  #load(chunk: string): Record<string, unknown> {
    const loaded = this.#modules.get(chunk);
    if (loaded) return loaded.exports;
    const file = join(this.#scriptsDir, chunk);
    const source = readFileSync(file, 'utf8');
    const entry = this.#cacheDir && join(this.#cacheDir, createHash('sha256').update(RUNTIME).update(source).digest('hex'));
    const cachedData = entry ? readEntry(entry) : undefined;
    const script = new vm.Script(`(function (exports, require, module, __bktImportMetaUrl, __bktImport) {${source}\n})`, {
      filename: file,
      ...(cachedData ? { cachedData } : {}),
      importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
    });
    if (cachedData && !script.cachedDataRejected) this.stats.cached++;
    else {
      this.stats.compiled++;
      if (entry) this.#toWrite.push({ file: entry, script });
    }
    const module = { exports: {} as Record<string, unknown> };
    this.#modules.set(chunk, module);
    const url = new URL(chunk, `file://${this.#binDir}/`).href;
    (script.runInThisContext() as (...args: unknown[]) => void)(module.exports, this.#requireFor, module, url, this.#dynamicImport);
    return module.exports;
  }

  /** Writes the code cache of the scripts compiled without one; never throws. */
  writeCache(): void {
    const dir = this.#cacheDir;
    if (!dir || this.#toWrite.length === 0) return;
    try {
      for (const { file, script } of this.#toWrite.splice(0)) {
        const tmp = `${file}.${process.pid}.tmp`;
        writeFileSync(tmp, script.createCachedData(), { mode: 0o600 });
        renameSync(tmp, file);
      }
      const names = readdirSync(dir);
      if (names.length > MAX_ENTRIES) {
        const byAge = names.map((n) => ({ n, t: statSync(join(dir, n)).mtimeMs })).sort((a, b) => a.t - b.t);
        for (const { n } of byAge.slice(0, names.length - MAX_ENTRIES / 2)) rmSync(join(dir, n), { force: true });
      }
    } catch {
      // A cache that cannot be written only means the next run compiles again.
    }
  }

  /** The program chunk's module (`src/program.ts`). */
  importProgram(): Promise<Record<string, unknown>> {
    return this.import(this.#manifest.program);
  }
}

/**
 * The program (`src/program.ts`) of the executable whose entry is `binUrl`,
 * through its scripts and the code cache (written when the process exits);
 * undefined when there are no scripts (the caller imports the module).
 */
export async function loadCachedProgram(binUrl: string): Promise<Record<string, unknown> | undefined> {
  const loader = ScriptLoader.open(fileURLToPath(new URL('.', binUrl)).replace(/\/$/, ''));
  if (!loader) return undefined;
  process.once('exit', () => loader.writeCache());
  return loader.importProgram();
}
