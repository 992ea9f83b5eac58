import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { BktError, isBktError } from './errors.js';
import { composePlugins, definePreset } from './preset.js';
import { resolvePlugins } from './resolve-plugins.js';
import { loadConfig } from './load-config.js';

const tmpRoot = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '.tmp-test');
mkdirSync(tmpRoot, { recursive: true });
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function project(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpRoot, 'plug-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

/** A tiny plugin package in the project's node_modules. */
function fakePackage(name: string, main: string, type: 'module' | 'commonjs' = 'module'): Record<string, string> {
  return {
    [`node_modules/${name}/package.json`]: JSON.stringify({ name, type, exports: { '.': './index.js' } }),
    [`node_modules/${name}/index.js`]: main,
  };
}

async function pluginError(specs: Parameters<typeof resolvePlugins>[0], dir: string): Promise<BktError> {
  const err = await resolvePlugins(specs, dir).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isBktError(err, 'PLUGIN')).toBe(true);
  return err as BktError;
}

describe('resolvePlugins', () => {
  it('passes plugin objects through and calls a package factory with its options', async () => {
    const dir = project(
      fakePackage('bkt-plugin-fake', "export default function fake(opts) { return { name: 'bkt-plugin-fake', opts }; }"),
    );
    const obj = { name: 'inline' };
    const plugins = await resolvePlugins([obj, ['bkt-plugin-fake', { bucket: 'ci' }], 'bkt-plugin-fake'], dir);
    expect(plugins[0]).toBe(obj);
    expect(plugins[1]).toEqual({ name: 'bkt-plugin-fake', opts: { bucket: 'ci' } });
    expect(plugins[2]).toEqual({ name: 'bkt-plugin-fake', opts: undefined });
  });

  it('resolves packages from the project directory, not from core', async () => {
    // Two projects with different packages of the same name: each gets its own.
    const a = project(fakePackage('@acme/bkt-plugin-x', "export default () => ({ name: 'x-from-a' });"));
    const b = project(fakePackage('@acme/bkt-plugin-x', "module.exports = { name: 'x-from-b' };", 'commonjs'));
    expect((await resolvePlugins(['@acme/bkt-plugin-x'], a))[0].name).toBe('x-from-a');
    expect((await resolvePlugins(['@acme/bkt-plugin-x'], b))[0].name).toBe('x-from-b');
  });

  it('awaits an async factory and loads a project-relative TypeScript plugin', async () => {
    const dir = project({
      'plugins/mine.ts': "export default async (o: { n: number }) => ({ name: 'mine-' + o.n });\n",
    });
    expect((await resolvePlugins([['./plugins/mine.ts', { n: 7 }]], dir))[0].name).toBe('mine-7');
  });

  it('an unknown package is an error naming it and the directory searched', async () => {
    const dir = project({});
    const err = await pluginError(['bkt-plugin-does-not-exist'], dir);
    expect(err.message).toContain('"bkt-plugin-does-not-exist"');
    expect(err.message).toContain(dir);
  });

  it('a module whose export is not a plugin is an error', async () => {
    const dir = project({
      ...fakePackage('not-a-plugin', 'export default { hello: 1 };'),
      ...fakePackage('factory-returns-string', "export default () => 'oops';"),
      ...fakePackage('object-plugin', "export default { name: 'obj' };"),
    });
    expect((await pluginError(['not-a-plugin'], dir)).message).toContain('has no "name"');
    expect((await pluginError(['factory-returns-string'], dir)).message).toContain(
      'expected a plugin object ({ name, … }) or a factory returning one, got the string "oops"',
    );
    expect((await pluginError([['object-plugin', { a: 1 }]], dir)).message).toContain('takes no options');
    expect((await resolvePlugins(['object-plugin'], dir))[0].name).toBe('obj');
    expect((await pluginError([{ name: 'bad', exporters: {} } as never], dir)).message).toContain(
      '"exporters" must be an array',
    );
  });

  it('a factory that throws is an error naming the package', async () => {
    const dir = project(fakePackage('throws', "export default () => { throw new Error('needs a bucket'); };"));
    const err = await pluginError(['throws'], dir);
    expect(err.message).toBe('plugin "throws": its factory threw: needs a bucket');
  });

  it('works end to end from a TS config that lists plugins by name', async () => {
    const dir = project({
      ...fakePackage('bkt-plugin-s3', "export default (o) => ({ name: 'bkt-plugin-s3', bucket: o.bucket });"),
      'bkt.config.ts': "import { defineConfig } from '@bkt/core';\nexport default defineConfig({ plugins: [['bkt-plugin-s3', { bucket: 'ci' }]] });\n",
    });
    const config = await loadConfig(dir);
    const [p] = await resolvePlugins(config.plugins ?? [], dir);
    expect(p).toEqual({ name: 'bkt-plugin-s3', bucket: 'ci' });
  });
});

describe('composePlugins', () => {
  const preset = definePreset({
    name: 'default',
    plugins: async () => [{ name: '@bkt/source-local' }, { name: '@bkt/exporter-local' }],
  });

  it('puts the preset first, then the config plugins', async () => {
    const plugins = await composePlugins(preset, { plugins: [{ name: 'extra' }] }, '/');
    expect(plugins.map((p) => p.name)).toEqual(['@bkt/source-local', '@bkt/exporter-local', 'extra']);
  });

  it('defaultPreset: false drops the preset', async () => {
    const plugins = await composePlugins(preset, { defaultPreset: false, plugins: [{ name: 'only' }] }, '/');
    expect(plugins.map((p) => p.name)).toEqual(['only']);
  });

  it('a config plugin with a preset plugin\'s name replaces it in place', async () => {
    const mine = { name: '@bkt/source-local', custom: true };
    const plugins = await composePlugins(preset, { plugins: [mine, { name: 'x' }] }, '/');
    expect(plugins.map((p) => p.name)).toEqual(['@bkt/source-local', '@bkt/exporter-local', 'x']);
    expect(plugins[0]).toBe(mine);
  });
});
