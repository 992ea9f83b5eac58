/**
 * Issue 13: --cache-to / --cache-from for config targets (bkt.config.ts),
 * as for Dockerfile builds; --cache-to with several targets is refused.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir, vertices } from '../helpers.js';
import { bktEnv, writeImageProject } from '../images/lib.js';

let registry: RegistryServer;
let work: string;
let project: string;

beforeAll(async () => {
  registry = await startRegistry();
  const busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('cache-targets');
  project = join(work, 'project');
  await mkdir(project);
  await writeImageProject(project, busybox.reference, ['echo one > /one', 'echo two > /two']);
}, 60_000);

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

const build = (root: string, args: string[]) => bktEnv(['build', '--root', join(work, root), '--progress', 'rawjson', ...args], { cwd: project, timeoutMs: 240_000 });

describe('config targets', () => {
  it('export a cache that an empty store builds from, every step CACHED', async () => {
    const dir = join(work, 'cache');
    const a = await build('store-a', ['--cache-to', `type=local,dest=${dir},mode=max`]);
    expect(a.code, a.stderr).toBe(0);
    const b = await build('store-b', ['--cache-from', `type=local,src=${dir}`]);
    expect(b.code, b.stderr).toBe(0);
    const steps = [...vertices(b.stderr).values()].filter((v) => !/^(importing cache|exporting cache)/.test(v.name));
    expect(steps.length).toBeGreaterThan(2);
    expect(steps.filter((s) => !s.cached).map((s) => s.name)).toEqual([]);
  });

  it('--explain: against the previous build of the target (a cache directory it was offered does not make it another target)', async () => {
    const r = await bktEnv(['build', '--root', join(work, 'store-a'), '--progress', 'plain', '--explain'], { cwd: project, timeoutMs: 240_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^explain: every step came from the cache$/m);
    const h = await bktEnv(['history', 'explain', '--root', join(work, 'store-a'), '--format', 'json'], { cwd: project });
    expect(h.code, h.stderr).toBe(0);
    expect(JSON.parse(h.stdout).explain).toEqual({ previous: expect.stringMatching(/^[a-z0-9]{25}$/), steps: [] });
  });

  it('--cache-to with several targets is refused, naming the flag', async () => {
    const two = join(work, 'two');
    await mkdir(two);
    await writeFile(
      join(two, 'bkt.config.ts'),
      [`import { defineConfig } from '@bkt/core';`, `import { mkfile, scratch } from '@bkt/llb';`, `export default defineConfig({ targets: { a: { build: scratch().file(mkfile('/a', 0o644, 'a')) }, b: { build: scratch().file(mkfile('/b', 0o644, 'b')) } } });`, ''].join('\n'),
    );
    const r = await bktEnv(['build', '--root', join(work, 'store-c'), '--cache-to', `type=local,dest=${join(work, 'x')}`, 'a', 'b'], { cwd: two });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--cache-to exports the cache of one target; 2 targets were given/);
  });
});
