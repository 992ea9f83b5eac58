import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isBktError } from './errors.js';
import { loadConfig } from './load-config.js';

// Projects live inside the repository, as in load-config.test.ts; each test has its own cache directory.
const tmpRoot = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '.tmp-test');
mkdirSync(tmpRoot, { recursive: true });
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function project(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpRoot, 'cache-'));
  dirs.push(dir);
  write(dir, files);
  return dir;
}

function write(dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
}

/** A package of the project's node_modules, imported natively (an ES module). */
function dependency(version: string): Record<string, string> {
  return {
    'node_modules/dep-x/package.json': JSON.stringify({ name: 'dep-x', type: 'module', exports: './index.js' }),
    'node_modules/dep-x/index.js': `export const version = ${JSON.stringify(version)};\n`,
  };
}

const CONFIG = [
  "import { join } from 'node:path';",
  "import { version } from 'dep-x';",
  "const root: string = join('/srv', version);",
  'export default { root };',
  '',
].join('\n');

let cache: string;
const savedXdg = process.env.XDG_CACHE_HOME;
beforeEach(() => {
  cache = mkdtempSync(path.join(tmpRoot, 'xdg-'));
  dirs.push(cache);
  process.env.XDG_CACHE_HOME = cache;
});
afterEach(() => {
  if (savedXdg === undefined) delete process.env.XDG_CACHE_HOME;
  else process.env.XDG_CACHE_HOME = savedXdg;
});

const entriesDir = () => path.join(cache, 'bkt', 'config');
const entries = () => (existsSync(entriesDir()) ? readdirSync(entriesDir()).filter((n) => n.endsWith('.json')) : []);

/** Replaces what the cached compile of the one entry yields: the next load shows whether the entry was used. */
function tamper(root: string): void {
  const file = path.join(entriesDir(), entries()[0]);
  const entry = JSON.parse(readFileSync(file, 'utf8')) as { code: string };
  entry.code = entry.code.replace(/\(0, _nodePath\.join\)\([^)]*\)/, JSON.stringify(root));
  expect(entry.code).toContain(root);
  writeFileSync(file, JSON.stringify(entry));
}

describe('the compiled-config cache', () => {
  it('loads a TypeScript config from its compile once jiti compiled it, with the same value', async () => {
    const dir = project({ 'bkt.config.ts': CONFIG, ...dependency('1') });
    expect((await loadConfig(dir)).root).toBe('/srv/1');
    expect(entries()).toHaveLength(1);
    expect(statSync(entriesDir()).mode & 0o777).toBe(0o700);
    expect((await loadConfig(dir)).root).toBe('/srv/1');
    tamper('/from-cache');
    expect((await loadConfig(dir)).root).toBe('/from-cache');
  });

  it('is not used once the config changed, even with the same size and mtime', async () => {
    const dir = project({ 'bkt.config.ts': CONFIG, ...dependency('1') });
    const file = path.join(dir, 'bkt.config.ts');
    await loadConfig(dir);
    tamper('/from-cache');
    const before = statSync(file);
    writeFileSync(file, CONFIG.replace("'/srv'", "'/opt'"));
    utimesSync(file, before.atime, before.mtime);
    expect(statSync(file).size).toBe(before.size);
    expect((await loadConfig(dir)).root).toBe('/opt/1');
  });

  it('is not used when a nearer node_modules would now resolve an import', async () => {
    const dir = project({ 'sub/bkt.config.ts': CONFIG, ...dependency('1') });
    expect((await loadConfig(path.join(dir, 'sub'))).root).toBe('/srv/1');
    tamper('/from-cache');
    write(path.join(dir, 'sub'), dependency('2'));
    expect((await loadConfig(path.join(dir, 'sub'))).root).toBe('/srv/2');
  });

  it('is not used under other Node flags (execArgv, NODE_OPTIONS) or jiti options (JITI_*)', async () => {
    const dir = project({ 'bkt.config.ts': CONFIG, ...dependency('1') });
    const saved = { execArgv: [...process.execArgv], nodeOptions: process.env.NODE_OPTIONS, jiti: process.env.JITI_DEBUG };
    const changes: Array<() => void> = [
      () => process.execArgv.push('--conditions=bkt-test'),
      () => void (process.env.NODE_OPTIONS = `${saved.nodeOptions ?? ''} --conditions=bkt-test`.trim()),
      () => void (process.env.JITI_DEBUG = '0'),
    ];
    try {
      for (const change of changes) {
        await loadConfig(dir);
        tamper('/from-cache');
        expect((await loadConfig(dir)).root).toBe('/from-cache');
        change();
        expect((await loadConfig(dir)).root).toBe('/srv/1');
        // Written anew under the new flags, and used under them.
        tamper('/from-cache');
        expect((await loadConfig(dir)).root).toBe('/from-cache');
      }
    } finally {
      process.execArgv.splice(0, process.execArgv.length, ...saved.execArgv);
      if (saved.nodeOptions === undefined) delete process.env.NODE_OPTIONS;
      else process.env.NODE_OPTIONS = saved.nodeOptions;
      if (saved.jiti === undefined) delete process.env.JITI_DEBUG;
      else process.env.JITI_DEBUG = saved.jiti;
    }
  });

  it("is not used when the imported package's package.json changed", async () => {
    const dir = project({ 'bkt.config.ts': CONFIG, ...dependency('1') });
    await loadConfig(dir);
    tamper('/from-cache');
    write(dir, {
      'node_modules/dep-x/package.json': JSON.stringify({ name: 'dep-x', type: 'module', exports: './v3.js' }),
      'node_modules/dep-x/v3.js': 'export const version = "3";\n',
    });
    // (Node keeps the package.json it read in this process: which version jiti finds here is not the point.)
    expect((await loadConfig(dir)).root).not.toBe('/from-cache');
  });

  it('keeps no entry for a config with local imports (jiti loads it each time)', async () => {
    const dir = project({
      'bkt.config.ts': "import { root } from './lib/root.ts';\nexport default { root };\n",
      'lib/root.ts': "export const root: string = '/local';\n",
    });
    expect((await loadConfig(dir)).root).toBe('/local');
    write(dir, { 'lib/root.ts': "export const root: string = '/changed';\n" });
    expect((await loadConfig(dir)).root).toBe('/changed');
    expect(entries()).toHaveLength(0);
  });

  it('ignores entries in a directory others may write', async () => {
    const dir = project({ 'bkt.config.ts': CONFIG, ...dependency('1') });
    await loadConfig(dir);
    tamper('/from-cache');
    chmodSync(entriesDir(), 0o777);
    expect((await loadConfig(dir)).root).toBe('/srv/1');
  });

  it('ignores an entry others may write', async () => {
    const dir = project({ 'bkt.config.ts': CONFIG, ...dependency('1') });
    await loadConfig(dir);
    tamper('/from-cache');
    expect((await loadConfig(dir)).root).toBe('/from-cache');
    chmodSync(path.join(entriesDir(), entries()[0]), 0o666);
    expect((await loadConfig(dir)).root).toBe('/srv/1');
  });

  it('keeps at most 256 entries: writing one past that removes the older half', async () => {
    mkdirSync(entriesDir(), { recursive: true, mode: 0o700 });
    for (let i = 0; i < 256; i++) {
      writeFileSync(path.join(entriesDir(), `old-${i}.json`), '{}');
      utimesSync(path.join(entriesDir(), `old-${i}.json`), 1000 + i, 1000 + i);
    }
    const dir = project({ 'bkt.config.ts': CONFIG, ...dependency('1') });
    await loadConfig(dir);
    const left = entries();
    expect(left).toHaveLength(128);
    expect(left.filter((n) => !n.startsWith('old-'))).toHaveLength(1);
    expect(left).not.toContain('old-0.json');
    expect(left).toContain('old-255.json');
  });

  it('reports an error thrown by a cached config at its file:line', async () => {
    const dir = project({ 'bkt.config.ts': `${CONFIG}if (process.env.BKT_TEST_CONFIG_THROW) throw new Error('thrown for ' + root);\n`, ...dependency('1') });
    await loadConfig(dir);
    expect(entries()).toHaveLength(1);
    process.env.BKT_TEST_CONFIG_THROW = '1';
    try {
      const err = await loadConfig(dir).then(() => undefined, (e: unknown) => e);
      expect(isBktError(err, 'CONFIG')).toBe(true);
      expect((err as Error).message).toContain(`${path.join(dir, 'bkt.config.ts')}:5:`);
      expect((err as Error).message).toContain('thrown for /srv/1');
    } finally {
      delete process.env.BKT_TEST_CONFIG_THROW;
    }
  });
});
