/** Shared pieces of the cache tests: a multi-stage Dockerfile project over the test registry's busybox. */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { vertices } from '../helpers.js';
import { bktEnv } from '../images/lib.js';

/**
 * A two-stage Dockerfile: a `build` stage whose RUN makes an artifact, and a
 * final stage copying a context file and the artifact, then running a step.
 */
export async function writeCacheProject(dir: string, base: string, opts: { arg?: string } = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, 'Dockerfile'),
    [
      `FROM ${base} AS build`,
      'ARG FLAVOUR=plain',
      'RUN echo "built $FLAVOUR" > /artifact && echo intermediate > /only-in-build',
      `FROM ${base}`,
      'COPY ctx.txt /ctx.txt',
      'COPY --from=build /artifact /artifact',
      'RUN cat /artifact /ctx.txt > /final',
      '',
    ].join('\n'),
  );
  if (opts.arg !== undefined) await writeFile(join(dir, 'arg'), opts.arg);
  await writeFile(join(dir, 'ctx.txt'), 'context file\n');
}

export interface CacheBuild {
  code: number;
  stderr: string;
  steps: Map<string, { name: string; cached: boolean; completed?: string; error?: string }>;
}

/** `bkt build --progress rawjson` of the project in `dir` against store `root`. */
export async function cacheBuild(dir: string, root: string, args: string[]): Promise<CacheBuild> {
  const r = await bktEnv(['build', '--root', root, '--progress', 'rawjson', ...args, dir], { cwd: dir, timeoutMs: 240_000 });
  return { code: r.code, stderr: r.stderr, steps: vertices(r.stderr) };
}

/** The graph's steps (not the solver's own: cache import/export, metadata loads). */
export function graphSteps(b: CacheBuild): { name: string; cached: boolean }[] {
  return [...b.steps.values()].filter((v) => !/^(importing cache|exporting cache|preparing inline cache|\[internal\]|\[frontend\])/.test(v.name));
}

/** The manifest of an OCI layout's only image. */
export async function layoutManifest(dir: string): Promise<{ layers: { digest: string }[]; config: { digest: string } }> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  return JSON.parse(await readFile(join(dir, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
}

/** The blob digests GET from `repo` in a fault proxy's log. */
export function blobsPulled(log: { method: string; path: string }[], repo: string): string[] {
  const re = new RegExp(`^/v2/${repo}/blobs/(sha256:[0-9a-f]{64})`);
  return log.filter((r) => r.method === 'GET').map((r) => re.exec(r.path)?.[1]).filter((d): d is string => !!d);
}
