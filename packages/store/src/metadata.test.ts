import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { MetadataDB, sqliteAddonOf, sqliteModule, sqliteModuleOf, sqlitePackageRoot } from './metadata.js';

const require = createRequire(import.meta.url);
let work: string;

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'bkt-metadata-'));
});
afterEach(() => {
  rmSync(work, { recursive: true, force: true });
});

describe("better-sqlite3's addon", () => {
  it('is the one better-sqlite3 would find itself (through bindings), and a database opens with it', () => {
    const path = sqliteModule().nativeBinding;
    // This repository builds better-sqlite3 from source: build/Release holds the addon.
    expect(path).toMatch(/\/better-sqlite3\/build\/Release\/better_sqlite3\.node$/);
    const packageRoot = dirname(require.resolve('better-sqlite3/package.json'));
    const viaBindings = createRequire(join(packageRoot, 'lib', 'database.js'))('bindings')({ bindings: 'better_sqlite3.node', module_root: packageRoot });
    expect(require(path as string)).toBe(viaBindings);
    const db = new MetadataDB(join(work, 'metadata.db'));
    db.close();
  });

  it("is found through bindings, from the package's root, when build/Release is not what bindings would load first", () => {
    const packageRoot = dirname(require.resolve('better-sqlite3/package.json'));
    const root = join(work, 'better-sqlite3');
    mkdirSync(join(root, 'build', 'Debug'), { recursive: true });
    writeFileSync(join(root, 'package.json'), '{"name":"better-sqlite3"}');
    mkdirSync(join(root, 'node_modules'));
    copyFileSync(join(packageRoot, 'build', 'Release', 'better_sqlite3.node'), join(root, 'build', 'Debug', 'better_sqlite3.node'));
    // bindings as the package would find it (a dependency of better-sqlite3).
    const fromPackage = createRequire(join(packageRoot, 'package.json'));
    const bindingsDir = dirname(fromPackage.resolve('bindings/package.json'));
    cpSync(bindingsDir, join(root, 'node_modules', 'bindings'), {
      recursive: true,
    });
    const uriDir = dirname(createRequire(join(bindingsDir, 'package.json')).resolve('file-uri-to-path/package.json'));
    cpSync(uriDir, join(root, 'node_modules', 'file-uri-to-path'), {
      recursive: true,
    });
    const addon = sqliteAddonOf(root);
    expect(typeof addon).toBe('object');
    const db = new Database(':memory:', { nativeBinding: addon as string });
    expect(db.prepare('SELECT 40 + 2 AS n').get()).toEqual({ n: 42 });
    db.close();
  });
});

/** The installed better-sqlite3 package (this repository's). */
const installedRoot = dirname(require.resolve('better-sqlite3/package.json'));
const installedVersion = (
  JSON.parse(readFileSync(join(installedRoot, 'package.json'), 'utf8')) as {
    version: string;
  }
).version;

/** A better-sqlite3 package at `root` claiming `version`: the installed one's JavaScript and (linked) addon. */
function fakeInstall(root: string, version: string): void {
  mkdirSync(root, { recursive: true });
  const manifest = JSON.parse(readFileSync(join(installedRoot, 'package.json'), 'utf8')) as { version: string };
  writeFileSync(join(root, 'package.json'), JSON.stringify({ ...manifest, version }));
  cpSync(join(installedRoot, 'lib'), join(root, 'lib'), { recursive: true });
  symlinkSync(join(installedRoot, 'build'), join(root, 'build'));
}

describe("better-sqlite3's JavaScript", () => {
  it('from the store as Node imports it (not bundled) is the installed package', () => {
    const m = sqliteModule();
    expect(m.root).toBe(installedRoot);
    expect(m.Database).toBe(Database);
    expect(m.Database).toBe(require('better-sqlite3'));
  });

  it('bundled is used when the installed package is the version bundled', () => {
    const root = join(work, 'node_modules', 'better-sqlite3');
    fakeInstall(root, '12.99.0');
    const m = sqliteModuleOf(root, '12.99.0', Database);
    expect(m.Database).toBe(Database);
    expect(m.nativeBinding).toBe(join(root, 'build', 'Release', 'better_sqlite3.node'));
  });

  it("bundled is not used when the installed package is another version: the installed package's own JavaScript is", () => {
    const root = join(work, 'node_modules', 'better-sqlite3');
    fakeInstall(root, '12.99.0');
    // The bundled copy (here: the repository's package) is of another version than the installed one at root.
    const m = sqliteModuleOf(root, installedVersion, Database);
    expect(m.Database).not.toBe(Database);
    expect(m.Database).toBe(createRequire(join(root, 'package.json'))(root));
    expect(Object.keys(require.cache)).toContain(join(root, 'lib', 'database.js'));
    expect(m.nativeBinding).toBe(join(root, 'build', 'Release', 'better_sqlite3.node'));
    const db = new m.Database(':memory:', {
      nativeBinding: m.nativeBinding as string,
    });
    expect(db).toBeInstanceOf(m.Database);
    expect(db.prepare('SELECT 40 + 2 AS n').get()).toEqual({ n: 42 });
    db.close();
  });

  it("is found from @bkt/store's location when bundled into another package, not from that package's", () => {
    const modules = join(work, 'node_modules');
    const cliFile = join(modules, '@bkt', 'cli', 'dist-bin', 'bkt.js');
    mkdirSync(dirname(cliFile), { recursive: true });
    writeFileSync(cliFile, '');
    writeFileSync(
      join(modules, '@bkt', 'cli', 'package.json'),
      JSON.stringify({
        name: '@bkt/cli',
        dependencies: { '@bkt/store': '0.0.0' },
      })
    );
    const storeDir = join(modules, '@bkt', 'store');
    mkdirSync(join(storeDir, 'dist'), { recursive: true });
    writeFileSync(join(storeDir, 'dist', 'index.js'), '');
    // The store's own package.json: its exports (./package.json among them).
    writeFileSync(join(storeDir, 'package.json'), readFileSync(join(dirname(require.resolve('@bkt/store/package.json')), 'package.json')));
    const nested = join(storeDir, 'node_modules', 'better-sqlite3');
    fakeInstall(nested, '12.99.0');
    const cliUrl = pathToFileURL(cliFile).href;
    expect(sqlitePackageRoot(cliUrl, true)).toBe(nested);
    expect(() => sqlitePackageRoot(cliUrl, false)).toThrow(/better-sqlite3/);
    // Another version hoisted beside the CLI is not the store's.
    fakeInstall(join(modules, 'better-sqlite3'), '11.0.0');
    expect(sqlitePackageRoot(cliUrl, true)).toBe(nested);
    expect(sqlitePackageRoot(pathToFileURL(join(storeDir, 'dist', 'index.js')).href, false)).toBe(nested);
  });
});
