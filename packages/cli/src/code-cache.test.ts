import { chmodSync, chownSync, cpSync, existsSync, lchownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { codeCacheDir, loadCachedProgram, ScriptLoader, type ScriptsManifest } from './code-cache.js';

let work: string;
let bin: string;
let cache: string;

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'bkt-code-cache-'));
  bin = join(work, 'dist-bin');
  cache = join(work, 'cache', 'bkt', 'code');
  mkdirSync(join(bin, 'scripts'), { recursive: true });
  // Scripts as the build writes them: CommonJS over the wrapper's require, __bktImportMetaUrl and __bktImport.
  writeScripts({
    'program-A.js': `
      var import_chunk = require("./chunk-B.js");
      var import_path = require("node:path");
      exports.url = __bktImportMetaUrl;
      exports.chunk = import_chunk;
      exports.join = import_path.join;
      exports.lazy = () => __bktImport("./lazy-C.js");
      exports.builtin = () => __bktImport("node:os");
      exports.bad = () => require("@bkt/not-imported");
      exports.sum = (a, b) => (0, import_chunk.add)(a, b);`,
    'chunk-B.js': `exports.add = (a, b) => a + b; exports.loads = (globalThis.__bktTestLoads = (globalThis.__bktTestLoads ?? 0) + 1);`,
    'lazy-C.js': `var import_chunk = require("./chunk-B.js"); exports.chunk = import_chunk;`,
  });
  writeManifest({ format: 1, program: 'program-A.js', externals: { 'program-A.js': ['node:path'], 'chunk-B.js': [], 'lazy-C.js': [] } });
});

afterEach(() => {
  delete (globalThis as { __bktTestLoads?: number }).__bktTestLoads;
  rmSync(work, { recursive: true, force: true });
});

function writeScripts(scripts: Record<string, string>): void {
  for (const [name, code] of Object.entries(scripts)) writeFileSync(join(bin, 'scripts', name), code);
}

function writeManifest(manifest: ScriptsManifest | string): void {
  writeFileSync(join(bin, 'scripts', 'manifest.json'), typeof manifest === 'string' ? manifest : JSON.stringify(manifest));
}

function entries(): string[] {
  try {
    return readdirSync(cache);
  } catch {
    return [];
  }
}

let runs = 0;

/**
 * Loads the program and its lazy chunk, from a copy of dist-bin of its own:
 * V8 keeps the scripts it compiled in this process by source and file name,
 * and would not look at the cached data of a script it compiled before.
 */
async function run(): Promise<{ loader: ScriptLoader; program: Record<string, any> }> {
  const copy = join(work, `run-${++runs}`, 'dist-bin');
  cpSync(bin, copy, { recursive: true });
  const loader = ScriptLoader.open(copy, cache)!;
  expect(loader).toBeDefined();
  const program = (await loader.importProgram()) as Record<string, any>;
  await program.lazy();
  return { loader, program };
}

describe('ScriptLoader', () => {
  it("runs the program chunk with its chunks once each, its shared modules imported, import.meta.url the chunk's own URL in dist-bin", async () => {
    const { program } = await run();
    expect(program.url).toBe(pathToFileURL(join(work, `run-${runs}`, 'dist-bin', 'program-A.js')).href);
    expect(program.sum(2, 3)).toBe(5);
    expect(program.join('a', 'b')).toBe('a/b');
    const lazy = await program.lazy();
    expect(lazy.chunk).toBe(program.chunk);
    expect((globalThis as { __bktTestLoads?: number }).__bktTestLoads).toBe(1);
    expect(typeof (await program.builtin()).tmpdir).toBe('function');
    expect(() => program.bad()).toThrow(/@bkt\/not-imported was not imported before the chunk that requires it/);
  });

  it('writes a private cache entry per compiled script, and the next run uses them', async () => {
    const first = await run();
    expect(first.loader.stats).toEqual({ cached: 0, compiled: 3 });
    expect(entries()).toEqual([]);
    first.loader.writeCache();
    expect(entries()).toHaveLength(3);
    expect(statSync(cache).mode & 0o777).toBe(0o700);
    for (const name of entries()) expect(statSync(join(cache, name)).mode & 0o777).toBe(0o600);

    const second = await run();
    expect(second.loader.stats).toEqual({ cached: 3, compiled: 0 });
    expect(second.program.sum(20, 22)).toBe(42);
    second.loader.writeCache();
    expect(entries()).toHaveLength(3);
  });

  it('compiles a script whose text changed (a new entry), however the old entry was made', async () => {
    (await run()).loader.writeCache();
    writeScripts({ 'chunk-B.js': `exports.add = (a, b) => a * b;` });
    const { loader, program } = await run();
    expect(program.sum(2, 3)).toBe(6);
    expect(loader.stats).toEqual({ cached: 2, compiled: 1 });
    loader.writeCache();
    expect(entries()).toHaveLength(4);
  });

  it('ignores an entry V8 rejects (garbage, truncated, empty) and writes it again', async () => {
    (await run()).loader.writeCache();
    const names = entries();
    const sizes = names.map((n) => statSync(join(cache, n)).size);
    writeFileSync(join(cache, names[0]!), Buffer.alloc(sizes[0]!, 0xab), { mode: 0o600 });
    writeFileSync(join(cache, names[1]!), readFileSync(join(cache, names[1]!)).subarray(0, 40), { mode: 0o600 });
    writeFileSync(join(cache, names[2]!), '', { mode: 0o600 });
    const { loader, program } = await run();
    expect(program.sum(1, 1)).toBe(2);
    expect(loader.stats).toEqual({ cached: 0, compiled: 3 });
    loader.writeCache();
    const again = await run();
    expect(again.loader.stats).toEqual({ cached: 3, compiled: 0 });
  });

  it('ignores an entry it cannot read (a directory in its place) and runs the script', async () => {
    (await run()).loader.writeCache();
    for (const name of entries()) {
      rmSync(join(cache, name));
      mkdirSync(join(cache, name));
    }
    const { loader, program } = await run();
    expect(program.sum(2, 2)).toBe(4);
    expect(loader.stats).toEqual({ cached: 0, compiled: 3 });
    loader.writeCache();
  });

  it('uses no entry another user could have written: a file or a directory open to group or others', async () => {
    (await run()).loader.writeCache();
    for (const name of entries()) chmodSync(join(cache, name), 0o620);
    expect((await run()).loader.stats).toEqual({ cached: 0, compiled: 3 });

    rmSync(cache, { recursive: true });
    (await run()).loader.writeCache();
    chmodSync(cache, 0o777);
    const { loader } = await run();
    expect(loader.stats).toEqual({ cached: 0, compiled: 3 });
    loader.writeCache();
    expect(entries().every((n) => !n.endsWith('.tmp'))).toBe(true);
    chmodSync(cache, 0o700);
  });

  it('runs without a cache when there is no place for one', async () => {
    writeFileSync(join(work, 'file'), '');
    const loader = ScriptLoader.open(bin, join(work, 'file', 'code'))!;
    const program = (await loader.importProgram()) as { sum: (a: number, b: number) => number };
    expect(program.sum(3, 4)).toBe(7);
    loader.writeCache();
    const none = ScriptLoader.open(bin, undefined)!;
    expect(((await none.importProgram()) as { sum: (a: number, b: number) => number }).sum(1, 2)).toBe(3);
  });

  it('is not opened without scripts, or with a manifest it cannot read', async () => {
    writeManifest('{ not json');
    expect(ScriptLoader.open(bin, cache)).toBeUndefined();
    writeManifest(JSON.stringify({ format: 2, program: 'program-A.js', externals: {} }));
    expect(ScriptLoader.open(bin, cache)).toBeUndefined();
    rmSync(join(bin, 'scripts'), { recursive: true });
    expect(ScriptLoader.open(bin, cache)).toBeUndefined();
    expect(await loadCachedProgram(pathToFileURL(join(bin, 'bkt.js')).href)).toBeUndefined();
  });

  it('refuses a chunk the manifest does not list', async () => {
    const loader = ScriptLoader.open(bin, cache)!;
    await expect(loader.import('./other.js')).rejects.toThrow(/other\.js is not a chunk of/);
  });
});

describe('codeCacheDir', () => {
  it('is $XDG_CACHE_HOME/bkt/code, else ~/.cache/bkt/code; a relative XDG_CACHE_HOME is not used', () => {
    expect(codeCacheDir({ XDG_CACHE_HOME: '/x/cache' })).toBe('/x/cache/bkt/code');
    expect(codeCacheDir({ HOME: '/home/u' })).toBe('/home/u/.cache/bkt/code');
    expect(codeCacheDir({})).toMatch(/\/\.cache\/bkt\/code$/);
    expect(codeCacheDir({ XDG_CACHE_HOME: 'rel' })).toBeUndefined();
  });
});

/** Another user than this process's effective one (root's tests give their directories to it). */
const OTHER_UID = 4242;
const isRoot = process.geteuid?.() === 0;

describe('the cache directory in a home', () => {
  /** Runs the program with the cache `bkt` picks in environment `env` (HOME, XDG_CACHE_HOME) and writes it; what the loader counted. */
  async function runWith(env: { HOME: string; XDG_CACHE_HOME?: string }): Promise<ScriptLoader['stats']> {
    const copy = join(work, `run-${++runs}`, 'dist-bin');
    cpSync(bin, copy, { recursive: true });
    const saved = { HOME: process.env.HOME, XDG_CACHE_HOME: process.env.XDG_CACHE_HOME };
    let cacheDir: string | undefined;
    try {
      process.env.HOME = env.HOME;
      if (env.XDG_CACHE_HOME === undefined) delete process.env.XDG_CACHE_HOME;
      else process.env.XDG_CACHE_HOME = env.XDG_CACHE_HOME;
      cacheDir = codeCacheDir();
    } finally {
      for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
    }
    const loader = ScriptLoader.open(copy, cacheDir)!;
    const program = (await loader.importProgram()) as { sum: (a: number, b: number) => number };
    expect(program.sum(2, 5)).toBe(7);
    loader.writeCache();
    return { ...loader.stats };
  }

  function ownedHome(uid: number): string {
    const home = join(work, `home-${uid}`);
    mkdirSync(home, { mode: 0o755 });
    chownSync(home, uid, uid);
    return home;
  }

  it("makes ~/.cache (0700) and bkt/code when the home is the effective user's, and uses them", async () => {
    const home = ownedHome(process.geteuid!());
    expect(await runWith({ HOME: home })).toEqual({ cached: 0, compiled: 2 });
    expect(statSync(join(home, '.cache')).mode & 0o777).toBe(0o700);
    expect(readdirSync(join(home, '.cache', 'bkt', 'code'))).toHaveLength(2);
    expect(await runWith({ HOME: home })).toEqual({ cached: 2, compiled: 0 });
  });

  it.runIf(isRoot)("as root with another user's HOME: makes nothing in that home, runs without the cache", async () => {
    const home = ownedHome(OTHER_UID);
    expect(await runWith({ HOME: home })).toEqual({ cached: 0, compiled: 2 });
    expect(readdirSync(home)).toEqual([]);

    // ~/.cache exists and is that user's: nothing is made in it either.
    mkdirSync(join(home, '.cache'), { mode: 0o700 });
    chownSync(join(home, '.cache'), OTHER_UID, OTHER_UID);
    expect(await runWith({ HOME: home })).toEqual({ cached: 0, compiled: 2 });
    expect(readdirSync(join(home, '.cache'))).toEqual([]);
  });

  it.runIf(isRoot)("as root with another user's XDG_CACHE_HOME, present or missing: makes nothing, runs without the cache", async () => {
    const home = ownedHome(OTHER_UID);
    const xdg = join(home, 'xdg-cache');
    expect(await runWith({ HOME: home, XDG_CACHE_HOME: xdg })).toEqual({ cached: 0, compiled: 2 });
    expect(existsSync(xdg)).toBe(false);
    mkdirSync(xdg);
    chownSync(xdg, OTHER_UID, OTHER_UID);
    expect(await runWith({ HOME: home, XDG_CACHE_HOME: xdg })).toEqual({ cached: 0, compiled: 2 });
    expect(readdirSync(xdg)).toEqual([]);
  });

  it.runIf(isRoot)("follows a ~/.cache link only when the link is the effective user's", async () => {
    const target = join(work, 'elsewhere');
    mkdirSync(target, { mode: 0o700 });
    const home = ownedHome(OTHER_UID);
    symlinkSync(target, join(home, '.cache'));
    lchownSync(join(home, '.cache'), OTHER_UID, OTHER_UID);
    expect(await runWith({ HOME: home })).toEqual({ cached: 0, compiled: 2 });
    expect(readdirSync(target)).toEqual([]);

    const mine = ownedHome(process.geteuid!());
    symlinkSync(target, join(mine, '.cache'));
    expect(await runWith({ HOME: mine })).toEqual({ cached: 0, compiled: 2 });
    expect(await runWith({ HOME: mine })).toEqual({ cached: 2, compiled: 0 });
    expect(readdirSync(join(target, 'bkt', 'code'))).toHaveLength(2);
  });

  it.runIf(isRoot)("uses no bkt directory another user owns under the effective user's cache base", async () => {
    const base = join(ownedHome(process.geteuid!()), '.cache');
    mkdirSync(join(base, 'bkt'), { recursive: true, mode: 0o700 });
    chownSync(join(base, 'bkt'), OTHER_UID, OTHER_UID);
    expect(await runWith({ HOME: work, XDG_CACHE_HOME: base })).toEqual({ cached: 0, compiled: 2 });
    expect(readdirSync(join(base, 'bkt'))).toEqual([]);
  });
});
