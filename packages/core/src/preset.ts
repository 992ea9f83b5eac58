import type { BktConfig } from './config.js';
import type { BktPlugin } from './plugin.js';
import { resolvePlugins } from './resolve-plugins.js';

/**
 * A named list of plugins loaded before a config's own. The CLI's default
 * preset holds the built-in backends (sources, executors, exporters, …).
 */
export interface BktPreset {
  name: string;
  plugins(): BktPlugin[] | Promise<BktPlugin[]>;
}

/** Identity function that types a preset. */
export function definePreset(preset: BktPreset): BktPreset {
  return preset;
}

/**
 * The plugins of a build: the preset's (unless `config.defaultPreset === false`),
 * then the config's, resolved from `projectDir`. A config plugin with the same
 * `name` as a preset plugin REPLACES it in place (how a user passes options to
 * a built-in: `plugins: [['@bkt/source-git', { depth: 1 }]]`). Other key
 * conflicts fail later in `createBkt`, naming both plugins.
 */
export async function composePlugins(
  preset: BktPreset | undefined,
  config: BktConfig,
  projectDir: string,
): Promise<BktPlugin[]> {
  const fromConfig = await resolvePlugins(config.plugins ?? [], projectDir);
  if (!preset || config.defaultPreset === false) return fromConfig;
  const base = await preset.plugins();
  const used = new Set<BktPlugin>();
  const result = base.map((p) => {
    const replacement = fromConfig.find((c) => c.name === p.name && !used.has(c));
    if (!replacement) return p;
    used.add(replacement);
    return replacement;
  });
  return [...result, ...fromConfig.filter((p) => !used.has(p))];
}
