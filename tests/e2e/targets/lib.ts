/**
 * Helpers of the config-target end-to-end tests (issue 10): a project whose
 * `bkt.config.*` is the given text, `bkt build` in it with its own store, and
 * the image config of an OCI layout tar.
 */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type RunResult } from '../helpers.js';
import { bktEnv, run } from '../images/lib.js';

export interface Project {
  dir: string;
  /** `bkt build ARGS` in the project, with its store and `--progress` (default rawjson). */
  build(args: string[], opts?: { progress?: string; env?: Record<string, string> }): Promise<RunResult>;
}

/** A project under `work` whose config (`bkt.config.ts` unless `file` says otherwise) is `config`. */
export async function writeProject(work: string, config: string, file = 'bkt.config.ts'): Promise<Project> {
  await mkdir(work, { recursive: true });
  const dir = await mkdtemp(join(work, 'project-'));
  await writeFile(join(dir, file), config);
  const root = join(work, 'store');
  return {
    dir,
    build: (args, opts = {}) => bktEnv(['build', '--root', root, '--progress', opts.progress ?? 'rawjson', ...args], { cwd: dir, env: opts.env }),
  };
}

/** The image config skopeo reads from an OCI layout tar. */
export async function ociArchiveConfig(tar: string): Promise<{ architecture: string; os: string; config: Record<string, unknown> }> {
  const { stdout } = await run('skopeo', ['inspect', '--config', `oci-archive:${tar}`], { encoding: 'utf8' });
  return JSON.parse(stdout) as { architecture: string; os: string; config: Record<string, unknown> };
}

/** The progress vertex names of a `--progress rawjson` stderr, in order of first appearance. */
export function vertexNames(stderr: string): string[] {
  const names = new Set<string>();
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    for (const v of (JSON.parse(line) as { vertexes?: { name: string }[] }).vertexes ?? []) names.add(v.name);
  }
  return [...names];
}
