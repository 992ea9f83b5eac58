/**
 * Issue 13: `bkt build --explain` and `bkt history explain` say why a step
 * missed the cache against the previous build of the same target: the
 * changed context file, the changed build arg, the changed base image digest.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { bktEnv, run } from '../images/lib.js';
import { cacheBuild, writeCacheProject } from './lib.js';

let registry: RegistryServer;
let work: string;

beforeAll(async () => {
  registry = await startRegistry();
  await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('cache-explain');
}, 60_000);

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

interface Explained {
  step: string;
  reasons: string[];
  causes: { kind: string; name?: string; from?: string; to?: string }[];
}

/** The explanations a `--progress rawjson` build printed. */
function explanations(stderr: string): Explained[] {
  const line = stderr.split('\n').find((l) => l.startsWith('{"explain"'));
  if (!line) throw new Error(`no explanations in:\n${stderr.slice(-3000)}`);
  return (JSON.parse(line) as { explain: { steps: Explained[] } }).explain.steps;
}

const step = (all: Explained[], re: RegExp) => {
  const found = all.find((e) => re.test(e.step));
  if (!found) throw new Error(`no explanation for ${re} in ${JSON.stringify(all, null, 2)}`);
  return found;
};

describe('--explain', () => {
  it('names the changed file of the context after a one-file change', async () => {
    const project = join(work, 'files');
    await writeCacheProject(project, `${registry.host}/library/busybox:latest`);
    const root = join(work, 'store-files');
    expect((await cacheBuild(project, root, [])).code).toBe(0);
    await writeFile(join(project, 'ctx.txt'), 'changed\n');
    const b = await cacheBuild(project, root, ['--explain']);
    expect(b.code, b.stderr).toBe(0);
    const all = explanations(b.stderr);
    const copy = step(all, /COPY ctx\.txt/);
    expect(copy.causes).toContainEqual({ kind: 'file', name: 'ctx.txt' });
    expect(copy.reasons[0]).toBe('file ctx.txt of its source changed');
    // The step after it ran because its parent changed; the build stage did not run at all.
    expect(step(all, /RUN cat/).causes).toContainEqual({ kind: 'parent', name: expect.stringMatching(/COPY --from=build/) });
    expect(all.some((e) => /RUN echo "built/.test(e.step))).toBe(false);

    // The same, later, from the history; in plain words.
    const h = await bktEnv(['history', 'explain', '--root', root], { cwd: project });
    expect(h.code, h.stderr).toBe(0);
    expect(h.stdout).toMatch(/against [a-z0-9]{25}/);
    expect(h.stdout).toMatch(/explain: \[stage-1 \d\/\d\] COPY ctx\.txt \/ctx\.txt: file ctx\.txt of its source changed/);
  });

  it('names the changed build arg', async () => {
    const project = join(work, 'args');
    await writeCacheProject(project, `${registry.host}/library/busybox:latest`);
    const root = join(work, 'store-args');
    expect((await cacheBuild(project, root, ['--build-arg', 'FLAVOUR=one'])).code).toBe(0);
    const b = await cacheBuild(project, root, ['--build-arg', 'FLAVOUR=two', '--explain']);
    expect(b.code, b.stderr).toBe(0);
    const run1 = step(explanations(b.stderr), /RUN echo "built/);
    expect(run1.causes).toContainEqual({ kind: 'build-arg', name: 'FLAVOUR' });
    expect(run1.reasons).toContain('build arg FLAVOUR changed');
    // Never the values (the step's name is the frontend's, shown in the progress too).
    expect(JSON.stringify(run1.causes) + run1.reasons.join()).not.toMatch(/one|two/);
    // The copy of the artifact ran because the file it copies changed.
    expect(step(explanations(b.stderr), /COPY --from=build/).causes).toContainEqual({ kind: 'file', name: 'artifact' });
  });

  it('names the changed base image digest', async () => {
    const project = join(work, 'base');
    const base = `${registry.host}/e2e/base:v1`;
    await run('skopeo', ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${registry.host}/library/busybox:latest`, `docker://${base}`]);
    await writeCacheProject(project, base);
    const root = join(work, 'store-base');
    expect((await cacheBuild(project, root, [])).code).toBe(0);
    const before = JSON.parse((await run('skopeo', ['inspect', '--tls-verify=false', `docker://${base}`], { encoding: 'utf8' })).stdout).Digest;
    // The same tag, another manifest (Docker's media types): another digest.
    await run('skopeo', ['copy', '--format', 'v2s2', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${registry.host}/library/busybox:latest`, `docker://${base}`]);
    const after = JSON.parse((await run('skopeo', ['inspect', '--tls-verify=false', `docker://${base}`], { encoding: 'utf8' })).stdout).Digest;
    expect(after).not.toBe(before);
    const b = await cacheBuild(project, root, ['--explain']);
    expect(b.code, b.stderr).toBe(0);
    const from = step(explanations(b.stderr), /FROM /);
    expect(from.causes).toContainEqual(expect.objectContaining({ kind: 'base-image', from: before, to: after }));
    expect(from.reasons[0]).toMatch(new RegExp(`digest changed: ${before} → ${after}`));
  });
});
