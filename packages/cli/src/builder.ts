/**
 * A build in this process: the configured core and a solver over the
 * project's store. Its own module, imported only by what builds here, so
 * that a command talking to a daemon (`--addr`) never loads the solver, the
 * store or the default preset's backends.
 */
import { composePlugins, createBkt, type Bkt } from '@bkt/core';
import { openSolver, type Solver } from '@bkt/solver';
import { defaultPreset, type DefaultPresetOptions } from './preset.js';
import { storeRoot, type Project, type ProjectOptions } from './project.js';

/** The configured core (default preset, then the config's plugins) and a solver over the store (its plugins clean up after killed builds first: the `storeOpen` hook). */
export async function openBuilder(
  opts: ProjectOptions,
  project: Project,
  preset: DefaultPresetOptions = {},
): Promise<{ bkt: Bkt; solver: Solver; root: string }> {
  const plugins = await composePlugins(defaultPreset(preset), project.config, project.dir);
  const bkt = await createBkt(plugins, { projectDir: project.dir });
  const root = storeRoot(opts, project);
  try {
    const solver = await openSolver({ root, bkt });
    return { bkt, solver, root };
  } catch (err) {
    await bkt.close();
    throw err;
  }
}
