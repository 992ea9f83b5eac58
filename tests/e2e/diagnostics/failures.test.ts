/**
 * Issue 10: a failure is shown on the step that failed. When stage `a` fails,
 * the parallel stage `b` it stops is CANCELED, not given `a`'s error; an
 * image that cannot be resolved fails its own metadata step, not the base
 * image's; `--target` naming no stage is an error of the flag, not of a
 * Dockerfile line; op digests stay out of what users read (BKT_DEBUG and
 * rawjson keep them). Through the CLI, against real runc.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, removeDir, vertices } from '../helpers.js';
import { bktEnv } from '../images/lib.js';
import { dockerfile, openFixture, parallelFailureLines, type Fixture } from './lib.js';

let f: Fixture;
let parallel: string;

beforeAll(async () => {
  f = await openFixture('diag-failures');
  parallel = await dockerfile(f, 'Dockerfile.parallel', parallelFailureLines(f.base));
  // Pull the base image once, so the failing builds below are about their RUN steps.
  const warm = await bkt(['build', '--root', f.root, '--progress', 'plain', '-f', await dockerfile(f, 'Dockerfile.warm', [`FROM ${f.base}`]), f.context], { cwd: f.work });
  expect(warm.code, warm.stderr).toBe(0);
});

afterAll(async () => {
  await f?.registry.stop();
  if (f) await removeDir(f.work);
});

const OP = /\(op sha256:[0-9a-f]{64}\)/;

describe('a failing stage and the parallel stage it stops', () => {
  it('plain: the failing RUN is ERROR with its own error and last lines; the other RUN is CANCELED; no op digest', async () => {
    const started = Date.now();
    const r = await bkt(['build', '--root', f.root, '--progress', 'plain', '-f', parallel, f.context], { cwd: f.work });
    expect(r.code).toBe(1);
    // b's 30 s sleep was stopped, not waited for.
    expect(Date.now() - started).toBeLessThan(20_000);
    const step = (name: string) => new RegExp(`^#(\\d+) \\[${name} 2/2\\] RUN`, 'm').exec(r.stderr)?.[1];
    const a = step('a');
    const b = step('b');
    expect(a, r.stderr).toBeDefined();
    expect(b, r.stderr).toBeDefined();
    expect(r.stderr).toContain(`#${a} ERROR: process "/bin/sh -c echo first line; sleep 1; echo giving up >&2; exit 3" did not complete successfully: exit code: 3\n`);
    expect(r.stderr).toContain(`#${b} CANCELED\n`);
    expect(r.stderr).not.toMatch(new RegExp(`^#${b} ERROR`, 'm'));
    expect(r.stderr.match(/^#\d+ ERROR/gm)).toHaveLength(1);
    // The failing step's report: its name and last lines, then the error at its Dockerfile line.
    expect(r.stderr).toMatch(/------\n > \[a 2\/2\] RUN echo first line; sleep 1; echo giving up >&2; exit 3:\n(first line\ngiving up|giving up\nfirst line)\n------\n/);
    expect(r.stderr).toMatch(/^error: Dockerfile\.parallel:2: .*exit code: 3$/m);
    expect(r.stderr).not.toMatch(OP);
  });

  it('rawjson: only the failing vertex carries an error; the stopped one ends with "context canceled"', async () => {
    const r = await bkt(['build', '--root', f.root, '--progress', 'rawjson', '-f', parallel, f.context], { cwd: f.work });
    expect(r.code).toBe(1);
    const steps = [...vertices(r.stderr).values()];
    const errors = steps.filter((v) => v.error && v.error !== 'context canceled');
    expect(errors.map((v) => v.name)).toEqual(['[a 2/2] RUN echo first line; sleep 1; echo giving up >&2; exit 3']);
    expect(errors[0]!.error).toContain('exit code: 3');
    const b = steps.find((v) => v.name === '[b 2/2] RUN sleep 30; echo b done > /b');
    expect(b).toMatchObject({ error: 'context canceled' });
    expect(b!.completed).toBeDefined();
  });

});

describe('a step that fails before it runs', () => {
  it('COPY of a missing file: the COPY step is shown ERROR with its error; the op digest only with BKT_DEBUG', async () => {
    const path = await dockerfile(f, 'Dockerfile.missing', ['FROM scratch', 'COPY missing.txt /']);
    const r = await bkt(['build', '--root', f.root, '--progress', 'plain', '-f', path, f.context], { cwd: f.work });
    expect(r.code).toBe(1);
    const step = /^#(\d+) \[1\/1\] COPY missing\.txt \/$/m.exec(r.stderr)?.[1];
    expect(step, r.stderr).toBeDefined();
    expect(r.stderr).toContain(`#${step} ERROR: "/missing.txt" not found\n`);
    expect(r.stderr.match(/^#\d+ ERROR/gm)).toHaveLength(1);
    expect(r.stderr).toMatch(/^error: Dockerfile\.missing:2: \[1\/1\] COPY missing\.txt \/: "\/missing\.txt" not found$/m);
    expect(r.stderr).not.toMatch(OP);

    const debug = await bktEnv(['build', '--root', f.root, '--progress', 'plain', '-f', path, f.context], { cwd: f.work, env: { BKT_DEBUG: '1' } });
    expect(debug.code).toBe(1);
    expect(debug.stderr).toMatch(/^error: Dockerfile\.missing:2: .*not found \(op sha256:[0-9a-f]{64}\)$/m);
    expect(debug.stderr).toMatch(/^#\d+ ERROR: "\/missing\.txt" not found \(op sha256:[0-9a-f]{64}\)$/m);
  });
});

describe('errors named where they come from', () => {
  it('an image that cannot be resolved fails its own metadata step; the base image is not given its error', async () => {
    const path = await dockerfile(f, 'Dockerfile.unknown', [`FROM ${f.base}`, `COPY --from=${f.registry.host}/e2e/no-such-stage:1 /x /x`]);
    const r = await bkt(['build', '--root', f.root, '--progress', 'rawjson', '-f', path, f.context], { cwd: f.work });
    expect(r.code).toBe(1);
    const steps = [...vertices(r.stderr).values()];
    const failed = steps.filter((v) => v.error && v.error !== 'context canceled');
    expect(failed).toHaveLength(1);
    expect(failed[0]!.name.startsWith(`[internal] load metadata for ${f.registry.host}/e2e/no-such-stage:1`), failed[0]!.name).toBe(true);
    const baseStep = steps.find((v) => v.name.startsWith(`[internal] load metadata for ${f.base}`));
    expect(baseStep?.completed, r.stderr).toBeDefined();
    expect(baseStep?.error === undefined || baseStep.error === 'context canceled').toBe(true);
    expect(r.stderr).toMatch(new RegExp(`^error: Dockerfile\\.unknown:2:1: ${f.registry.host}/e2e/no-such-stage:1: `, 'm'));
  });

  it('--target naming no stage is an error of the flag listing the stages, with no Dockerfile line', async () => {
    const r = await bkt(['build', '--root', f.root, '--progress', 'plain', '--target', 'nope', '-f', parallel, f.context], { cwd: f.work });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: --target nope: target stage "nope" could not be found \(stages: a, b\)$/m);
    expect(r.stderr).not.toMatch(/Dockerfile\.parallel:\d/);
    const typo = await bkt(['build', '--root', f.root, '--progress', 'plain', '--target', 'aa', '-f', parallel, f.context], { cwd: f.work });
    expect(typo.stderr).toMatch(/^error: --target aa: target stage "aa" could not be found \(did you mean a\?\)$/m);
  });
});
