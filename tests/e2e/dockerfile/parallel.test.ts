/**
 * Issue 5's parallelism criterion: a Dockerfile whose target copies from 4
 * independent stages, each a `RUN sleep 1`, is solved in under 1.6 s — the
 * four RUNs overlap instead of taking 4 s one after the other.
 *
 * The base image is pulled by a warm-up build first, and each stage writes a
 * value unique to the run, so the timed build hits no cache. The time is the
 * CLI's `solver time` (load, schedule, run; no process start-up or export);
 * the runs' start and end times from the rawjson progress are checked to overlap too.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type RegistryServer } from '@bkt/testkit';
import { bkt } from '../helpers.js';

describe('Dockerfile: independent stages run in parallel', () => {
  let registry: RegistryServer;
  let base: string;
  let work: string;

  beforeAll(async () => {
    registry = await startRegistry();
    base = (await pushBusyboxImage(registry, 'busybox')).reference;
    work = await mkdtemp(join(tmpdir(), 'bkt-parallel-'));
    await mkdir(join(work, 'ctx'));
  });
  afterAll(async () => {
    await registry?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('4 stages of `sleep 1` overlap and finish well under the 4 s they take in sequence', async () => {
    const root = join(work, 'store');
    await writeFile(join(work, 'Warmup.df'), `FROM ${base}\nRUN true\n`);
    const warm = await bkt(['build', '--root', root, '--progress', 'plain', '-f', join(work, 'Warmup.df'), join(work, 'ctx')], { cwd: work });
    expect(warm.code, warm.stderr).toBe(0);

    const nonce = randomBytes(6).toString('hex');
    const stages = ['a', 'b', 'c', 'd'];
    const dockerfile = [
      ...stages.flatMap((s) => [`FROM ${base} AS ${s}`, `RUN sleep 1 && echo ${s}-${nonce} > /${s}`]),
      'FROM scratch',
      ...stages.map((s) => `COPY --from=${s} /${s} /${s}`),
      '',
    ].join('\n');
    await writeFile(join(work, 'Dockerfile'), dockerfile);
    const r = await bkt(['build', '--root', root, '--progress', 'rawjson', '-f', join(work, 'Dockerfile'), '-o', join(work, 'out'), join(work, 'ctx')], {
      cwd: work,
    });
    expect(r.code, r.stderr).toBe(0);

    // The four RUN vertices: each ran (not cached), and all were running at one instant.
    const runs = new Map<string, { started: number; completed: number }>();
    for (const line of r.stderr.split('\n')) {
      if (!line.startsWith('{')) continue;
      const event = JSON.parse(line) as { vertexes?: { name: string; started?: string; completed?: string; cached?: boolean }[] };
      for (const v of event.vertexes ?? []) {
        if (!/RUN sleep 1/.test(v.name) || !v.started || !v.completed) continue;
        expect(v.cached, v.name).toBeFalsy();
        runs.set(v.name, { started: Date.parse(v.started), completed: Date.parse(v.completed) });
      }
    }
    expect(runs.size).toBe(4);
    const lastStart = Math.max(...[...runs.values()].map((v) => v.started));
    const firstEnd = Math.min(...[...runs.values()].map((v) => v.completed));
    expect(lastStart, 'the four RUN steps overlap').toBeLessThan(firstEnd);

    // Sequential stages take over 4 s; 2.5 s leaves room for a loaded machine (bench/exec measures the 1.6 s aim).
    const solverTime = Number(/solver time: (\d+\.\d+)s/.exec(r.stderr)?.[1]);
    expect(solverTime, r.stderr.split('\n').filter((l) => !l.startsWith('{')).join('\n')).toBeLessThan(2.5);
  });
});
