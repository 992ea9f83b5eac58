/**
 * Issue 8, defect 6: deep graphs build (about 1,500 sequential instructions
 * failed with "Maximum call stack size exceeded").
 *
 * ENV, ARG and LABEL deepen the LLB state chain and the image config, not the
 * op graph: 10,000 of them build here. WORKDIR, COPY and RUN each add an op;
 * through real snapshots an op costs ~10-16 ms on this 2-core machine (a
 * 10,000-op WORKDIR chain built in 163 s), so the op chain here is 2,000 deep
 * — past the old limit — by default; with BKT_LONG_TESTS=1 a 10,000-op
 * chain builds too. The 10,000-op depth is also proven by the unit tests of
 * @bkt/llb, @bkt/solver and @bkt/frontend-dockerfile (`deep.test.ts`,
 * `limits.test.ts`).
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, removeDir, tempDir } from '../helpers.js';

let work: string;

beforeAll(async () => {
  work = await tempDir('deep-graph');
  await writeFile(join(work, 'f'), 'f\n');
});

afterAll(async () => {
  await removeDir(work);
});

describe('sequential instructions', () => {
  it('10,000 ENV, ARG and LABEL instructions build, the image config holding each', async () => {
    const lines = Array.from({ length: 10_000 }, (_, i) => (i % 3 === 0 ? `ENV E${i}=e${i}` : i % 3 === 1 ? `ARG A${i}=$E${i - 1}` : `LABEL l${i}=$A${i - 1}`));
    await writeFile(join(work, 'meta.Dockerfile'), `FROM scratch\n${lines.join('\n')}\nCOPY f /f\n`);
    const r = await bkt(
      ['build', '-f', 'meta.Dockerfile', '--root', join(work, 'store'), '--progress', 'plain', '-o', 'type=oci,dest=meta.tar', '--metadata-file', 'meta.json', '.'],
      { cwd: work },
    );
    expect(r.code, r.stderr.slice(-2000)).toBe(0);
    const metadata = JSON.parse(await readFile(join(work, 'meta.json'), 'utf8')) as Record<string, string>;
    const configBlob = `blobs/sha256/${metadata['containerimage.config.digest'].replace('sha256:', '')}`;
    const { stdout } = await execa('tar', ['-xOf', join(work, 'meta.tar'), configBlob]);
    const config = JSON.parse(stdout) as {
      config: { Env: string[]; Labels: Record<string, string> };
      history: unknown[];
    };
    expect(config.config.Env).toContain('E9999=e9999');
    expect(config.config.Env).toHaveLength(3_334 + 1); // with PATH
    expect(config.config.Labels.l9998).toBe('e9996');
    expect(config.history).toHaveLength(10_001);
  });

  /** Builds a chain of `n` WORKDIR ops (each a mkdir FileOp on the previous one) through real snapshots. */
  async function workdirChain(n: number): Promise<void> {
    const lines = Array.from({ length: n }, (_, i) => `WORKDIR /w${i % 2}/d${i % 7}`);
    await writeFile(join(work, `ops-${n}.Dockerfile`), `FROM scratch\n${lines.join('\n')}\n`);
    const r = await bkt(['build', '-f', `ops-${n}.Dockerfile`, '--root', join(work, `store-${n}`), '--progress', 'plain', '-o', `type=local,dest=ops-${n}`, '.'], {
      cwd: work,
      timeoutMs: n * 85,
    });
    expect(r.code, r.stderr.slice(-2000)).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`solver time: [\\d.]+s \\(${n} steps, 0 cached\\)`));
    expect((await readdir(join(work, `ops-${n}/w0`))).sort()).toEqual(['d0', 'd1', 'd2', 'd3', 'd4', 'd5', 'd6']);
  }

  it('a chain of 2,000 WORKDIR ops builds through real snapshots', () => workdirChain(2_000), 170_000);

  // About 3 minutes on a 2-core machine: run with BKT_LONG_TESTS=1.
  it.runIf(process.env.BKT_LONG_TESTS === '1')('a chain of 10,000 WORKDIR ops builds through real snapshots (BKT_LONG_TESTS=1)', () => workdirChain(10_000), 900_000);
});
