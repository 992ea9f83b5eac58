import { resolve } from 'node:path';
import { findConfigFile, loadConfig, type BktConfig } from '@bkt/core';
import { defaultRoot } from './options.js';

/** Options every command accepts. */
export interface ProjectOptions {
  /** `-C/--dir`: the project directory (default: the current directory). */
  dir?: string;
  /** `--config`: a config file instead of `bkt.config.*` of the project dir. */
  config?: string;
  /** `--root`: the store root. */
  root?: string;
}

/** A project: its directory and config (empty when it has none and none was required). */
export interface Project {
  dir: string;
  config: BktConfig;
  /** Whether a config file was found and loaded. */
  hasConfig: boolean;
  /** The directory relative command-line paths are taken from. */
  cwd: string;
}

/**
 * Loads the project's config. With `required`, a missing config is an error;
 * otherwise a project without one gets an empty config (the default preset only).
 */
export async function openProject(opts: ProjectOptions, required: boolean, cwd: string): Promise<Project> {
  const dir = resolve(cwd, opts.dir ?? '.');
  if (!opts.config && !required && !findConfigFile(dir)) return { dir, config: {}, hasConfig: false, cwd };
  const config = await loadConfig(dir, { file: opts.config === undefined ? undefined : resolve(cwd, opts.config) });
  return { dir, config, hasConfig: true, cwd };
}

/** The store root: `--root`, else the config's `root` (relative to the project), else the default. */
export function storeRoot(opts: ProjectOptions, project: Project): string {
  if (opts.root) return resolve(project.cwd, opts.root);
  if (project.config.root) return resolve(project.dir, project.config.root);
  return defaultRoot();
}
