import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { BktError } from './errors.js';
import type { PluginSpec } from './config.js';
import { createProjectLoader } from './jiti.js';
import { describeValue } from './load-config.js';
import type { BktPlugin } from './plugin.js';

/**
 * Turns the `plugins` of a config into plugin objects, in order:
 * - a plugin object is used as is;
 * - `'pkg'` or `['pkg', options]` imports the package RESOLVED FROM `projectDir`
 *   (as the project's own `import 'pkg'` would, with the `import` / `node`
 *   conditions); a relative path (`'./plugins/x.ts'`) is a file of the project.
 *   A default export that is a function is called with `options` (and may be
 *   async); a default export that is a plugin object is used as is.
 * Failures are `BktError('PLUGIN')` naming the package and the directory searched.
 */
export async function resolvePlugins(specs: readonly PluginSpec[], projectDir: string): Promise<BktPlugin[]> {
  const dir = path.resolve(projectDir);
  const plugins: BktPlugin[] = [];
  for (const [i, spec] of specs.entries()) {
    if (typeof spec === 'string') plugins.push(await loadPluginPackage(spec, undefined, false, dir));
    else if (Array.isArray(spec)) {
      if (typeof spec[0] !== 'string') {
        throw new BktError('PLUGIN', `plugins[${i}]: expected ['package-name', options], got ${describeValue(spec[0])} as the package name`, { index: i });
      }
      plugins.push(await loadPluginPackage(spec[0], spec[1], spec.length > 1, dir));
    } else plugins.push(checkPlugin(spec, `plugins[${i}]`));
  }
  return plugins;
}

async function loadPluginPackage(specifier: string, options: unknown, hasOptions: boolean, projectDir: string): Promise<BktPlugin> {
  const loader = await createProjectLoader(projectDir);
  const isPath = specifier.startsWith('.') || path.isAbsolute(specifier);
  let resolved: string | undefined;
  if (isPath) {
    resolved = loader.esmResolve(pathToFileURL(path.resolve(projectDir, specifier)).href, { try: true });
  } else {
    resolved = loader.esmResolve(specifier, {
      parentURL: pathToFileURL(path.join(projectDir, 'bkt.config.js')),
      conditions: ['node', 'import', 'default'],
      try: true,
    });
  }
  if (!resolved) {
    const where = isPath
      ? `file ${path.resolve(projectDir, specifier)} does not exist`
      : `not found in node_modules of ${projectDir} or its parents (is it installed in the project?)`;
    throw new BktError('PLUGIN', `cannot load plugin "${specifier}": ${where}`, { plugin: specifier, searched: projectDir });
  }
  let mod: unknown;
  try {
    // Built JavaScript loads natively (one module instance, real ESM semantics); TypeScript through jiti.
    mod = /\.[cm]?js$/.test(resolved) ? await import(resolved) : await loader.import(resolved);
  } catch (err) {
    throw new BktError('PLUGIN', `plugin "${specifier}" (${resolved}) failed to load: ${(err as Error)?.message ?? err}`, { plugin: specifier }, { cause: err });
  }
  const exported = mod !== null && typeof mod === 'object' && 'default' in mod ? (mod as { default: unknown }).default : mod;
  let plugin: unknown;
  if (typeof exported === 'function') {
    try {
      plugin = await (exported as (opts?: unknown) => unknown)(options);
    } catch (err) {
      throw new BktError('PLUGIN', `plugin "${specifier}": its factory threw: ${(err as Error)?.message ?? err}`, { plugin: specifier }, { cause: err });
    }
  } else {
    if (hasOptions && options !== undefined) {
      throw new BktError(
        'PLUGIN',
        `plugin "${specifier}" exports a plugin object, not a factory function, so it takes no options`,
        { plugin: specifier },
      );
    }
    plugin = exported;
  }
  return checkPlugin(plugin, `plugin "${specifier}" (${resolved})`);
}

/** Checks the shape of a plugin; `what` names it in the error. */
function checkPlugin(value: unknown, what: string): BktPlugin {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new BktError('PLUGIN', `${what}: expected a plugin object ({ name, … }) or a factory returning one, got ${describeValue(value)}`);
  }
  const p = value as Record<string, unknown>;
  if (typeof p.name !== 'string' || p.name === '') {
    throw new BktError('PLUGIN', `${what}: not a bkt plugin: it has no "name" (a plugin is { name: string, sources?, exporters?, …, setup? })`);
  }
  for (const key of ['sources', 'opExecutors', 'exporters', 'cacheBackends', 'frontends', 'attestationProducers'] as const) {
    if (p[key] !== undefined && !Array.isArray(p[key])) {
      throw new BktError('PLUGIN', `${what}: plugin "${p.name}": "${key}" must be an array, got ${describeValue(p[key])}`, { attribute: key });
    }
  }
  if (p.setup !== undefined && typeof p.setup !== 'function') {
    throw new BktError('PLUGIN', `${what}: plugin "${p.name}": "setup" must be a function`, { attribute: 'setup' });
  }
  return value as BktPlugin;
}
