import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MetadataDB, sqliteAddonPath } from './metadata.js';

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
    const path = sqliteAddonPath();
    // This repository builds better-sqlite3 from source: build/Release holds the addon.
    expect(path).toMatch(/\/better-sqlite3\/build\/Release\/better_sqlite3\.node$/);
    const packageRoot = dirname(require.resolve('better-sqlite3/package.json'));
    const viaBindings = createRequire(join(packageRoot, 'lib', 'database.js'))('bindings')({ bindings: 'better_sqlite3.node', module_root: packageRoot });
    expect(require(path!)).toBe(viaBindings);
    const db = new MetadataDB(join(work, 'metadata.db'));
    db.close();
  });
});
