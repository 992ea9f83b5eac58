import { copyFileSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { MetadataDB, sqliteAddonOf, sqliteNativeBinding } from './metadata.js';

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
    const path = sqliteNativeBinding();
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
    cpSync(bindingsDir, join(root, 'node_modules', 'bindings'), { recursive: true });
    const uriDir = dirname(createRequire(join(bindingsDir, 'package.json')).resolve('file-uri-to-path/package.json'));
    cpSync(uriDir, join(root, 'node_modules', 'file-uri-to-path'), { recursive: true });
    const addon = sqliteAddonOf(root);
    expect(typeof addon).toBe('object');
    const db = new Database(':memory:', { nativeBinding: addon as string });
    expect(db.prepare('SELECT 40 + 2 AS n').get()).toEqual({ n: 42 });
    db.close();
  });
});
