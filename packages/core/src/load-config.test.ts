import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { BktError, isBktError } from './errors.js';
import { findConfigFile, loadConfig } from './load-config.js';

// Test projects live inside the repository so that `@bkt/core` and the
// workspace's node_modules resolve from them as from a real project.
const tmpRoot = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '.tmp-test');
mkdirSync(tmpRoot, { recursive: true });
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function project(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpRoot, 'cfg-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

async function configError(dir: string, file?: string): Promise<BktError> {
  const err = await loadConfig(dir, { file }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isBktError(err, 'CONFIG')).toBe(true);
  return err as BktError;
}

describe('loadConfig', () => {
  it('loads each extension', async () => {
    const cases: Record<string, string> = {
      'bkt.config.ts': "const root: string = '/ts';\nexport default { root };\n",
      'bkt.config.mts': "export default { root: '/mts' as string };\n",
      'bkt.config.js': "module.exports = { root: '/js' };\n",
      'bkt.config.mjs': "export default { root: '/mjs' };\n",
      'bkt.config.json': '{ "root": "/json" }\n',
    };
    for (const [name, text] of Object.entries(cases)) {
      const dir = project({ [name]: text });
      const config = await loadConfig(dir);
      expect(config.root, name).toBe('/' + name.split('.').pop());
    }
  });

  it('loads an ESM .js config in a "type": "module" project', async () => {
    const dir = project({
      'package.json': '{ "type": "module" }',
      'bkt.config.js': "export default { root: '/esm-js' };\n",
    });
    expect((await loadConfig(dir)).root).toBe('/esm-js');
  });

  it('takes the first match in ts, mts, js, mjs, json order', async () => {
    const dir = project({
      'bkt.config.json': '{ "root": "json" }',
      'bkt.config.mjs': "export default { root: 'mjs' };",
      'bkt.config.mts': "export default { root: 'mts' };",
    });
    expect(findConfigFile(dir)).toBe(path.join(dir, 'bkt.config.mts'));
    expect((await loadConfig(dir)).root).toBe('mts');
  });

  it('loads a TypeScript config that imports defineConfig from @bkt/core and local TS modules', async () => {
    const dir = project({
      'bkt.config.ts': [
        "import { defineConfig, type BktConfig } from '@bkt/core';",
        "import { rootFor } from './lib/paths.ts';",
        'const c: BktConfig = defineConfig({ root: rootFor(\'ci\'), defaultPreset: false, targets: {} });',
        'export default c;',
        '',
      ].join('\n'),
      'lib/paths.ts': "export function rootFor(name: string): string { return `/var/lib/bkt-${name}`; }\n",
    });
    expect(await loadConfig(dir)).toEqual({ root: '/var/lib/bkt-ci', defaultPreset: false, targets: {} });
  });

  it('loads the given file, relative to the project dir', async () => {
    const dir = project({ 'ci/other.config.ts': "export default { root: '/other' };" });
    expect((await loadConfig(dir, { file: 'ci/other.config.ts' })).root).toBe('/other');
  });

  it('fails when there is no config, naming the directory and the names looked for', async () => {
    const dir = project({});
    const err = await configError(dir);
    expect(err.message).toContain(dir);
    expect(err.message).toContain('bkt.config.ts');
  });

  it('fails when the given file is missing, naming it', async () => {
    const dir = project({ 'bkt.config.ts': 'export default {}' });
    const err = await configError(dir, 'nope.ts');
    expect(err.message).toBe(`config file ${path.join(dir, 'nope.ts')} does not exist`);
  });

  it('reports a TypeScript syntax error at file:line:column', async () => {
    const dir = project({
      'bkt.config.ts': "const a: number = 1;\n\nexport default {\n  root: 'x'\n  plugins: [],\n};\n",
    });
    const err = await configError(dir);
    const file = path.join(dir, 'bkt.config.ts');
    expect(err.message).toMatch(new RegExp(`^${file}:5:3: syntax error: `));
    expect(err.details).toMatchObject({ file, line: 5, column: 3 });
  });

  it('reports a syntax error in a module the config imports at that module\'s location', async () => {
    const dir = project({
      'bkt.config.mts': "import x from './helper.mts';\nexport default x;\n",
      'helper.mts': 'export default {\n  a: ]\n};\n',
    });
    const err = await configError(dir);
    expect(err.message).toMatch(new RegExp(`^${path.join(dir, 'helper.mts')}:2:6: `));
  });

  it('reports a JSON syntax error at file:line:column', async () => {
    const dir = project({ 'bkt.config.json': '{\n  "root": "/x"\n  "plugins": []\n}\n' });
    const err = await configError(dir);
    expect(err.message).toMatch(new RegExp(`^${path.join(dir, 'bkt.config.json')}:3:3: `));
  });

  it('reports an error thrown while loading at its file:line', async () => {
    const dir = project({ 'bkt.config.ts': "const a = 1;\nthrow new Error('no root for ' + a);\nexport default {};\n" });
    const err = await configError(dir);
    expect(err.message).toContain(`${path.join(dir, 'bkt.config.ts')}:2:`);
    expect(err.message).toContain('no root for 1');
  });

  it('rejects a default export that is not a config object, and mistyped fields', async () => {
    expect((await configError(project({ 'bkt.config.mjs': 'export default 42;' }))).message).toContain(
      'the default export must be a config object',
    );
    expect((await configError(project({ 'bkt.config.json': '{"plugins": "x"}' }))).message).toContain(
      '"plugins" must be an array',
    );
    expect((await configError(project({ 'bkt.config.json': '{"defaultPreset": "no"}' }))).message).toContain(
      '"defaultPreset" must be a boolean',
    );
  });
});
