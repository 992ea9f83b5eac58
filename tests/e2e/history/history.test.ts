/**
 * Build history a user can read (issue 10), through the CLI against real
 * runc: `bkt history ls`, `inspect` and `logs`. A step that prints 50 MB is
 * clipped at 2 MiB on the build's display, and `bkt history logs --step N
 * --raw` prints all of it back byte for byte, while the build stays under
 * 300 MB of RSS (measured with /usr/bin/time -v). The logs are a store record
 * `bkt du` counts, `bkt prune` keeps and `bkt prune --all` removes.
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { makeBusyboxRootfs } from '@bkt/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BKT, bkt, removeDir, tempDir } from '../helpers.js';

/** `seq 1 LINES` prints 54,888,897 bytes: more than 50 MiB. */
const LINES = 7_000_000;
const RSS_LIMIT_KB = 300 * 1024;

let work: string;
let root: string;
/** The refs of the three builds, oldest first: the 50 MB step, a failing step, the 50 MB step again (cached). */
const refs: string[] = [];
let bigStep: number;

/** The bytes `seq 1 LINES` prints, as a sha256 and a length, made without holding them. */
function expectedSeq(): { sha256: string; size: number } {
  const hash = createHash('sha256');
  let size = 0;
  for (let start = 1; start <= LINES; start += 100_000) {
    let chunk = '';
    for (let i = start; i < start + 100_000 && i <= LINES; i++) chunk += `${i}\n`;
    hash.update(chunk);
    size += chunk.length;
  }
  return { sha256: hash.digest('hex'), size };
}

const history = (...args: string[]) => bkt(['history', ...args, '--root', root], { cwd: work });

/** Runs `bkt build` of Dockerfile stage `target` under /usr/bin/time -v; returns the result and the peak RSS in kB. */
async function build(target: string): Promise<{ code: number; stderr: string; maxRssKb: number }> {
  const r = await execa('/usr/bin/time', ['-v', 'node', BKT, 'build', '-f', 'Dockerfile', '--target', target, '--progress', 'plain', '--root', root, '.'], {
    cwd: work,
    reject: false,
    timeout: 170_000,
    env: { BKT_DEBUG: '' },
  });
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
  if (!rss) throw new Error(`no RSS from /usr/bin/time in:\n${r.stderr.slice(-2000)}`);
  return { code: r.exitCode ?? -1, stderr: r.stderr, maxRssKb: Number(rss[1]) };
}

beforeAll(async () => {
  work = await tempDir('history');
  root = join(work, 'store');
  await makeBusyboxRootfs(join(work, 'rootfs'));
  await writeFile(
    join(work, 'Dockerfile'),
    [
      'FROM scratch AS base',
      'COPY rootfs/ /',
      'FROM base AS big',
      `RUN seq 1 ${LINES}; echo to-stderr >&2`,
      'FROM base AS broken',
      'RUN echo before-failing; exit 3',
      '',
    ].join('\n'),
  );
  const first = await build('big');
  expect(first.code, first.stderr.slice(-3000)).toBe(0);
  console.log(`build printing ${LINES} lines: max RSS ${(first.maxRssKb / 1024).toFixed(1)} MiB (limit ${RSS_LIMIT_KB / 1024} MiB)`);
  expect(first.maxRssKb).toBeLessThan(RSS_LIMIT_KB);
  // The display still clips, as BuildKit's.
  expect(first.stderr).toContain('[output clipped, log limit 2MiB reached]');
  expect(first.stderr).not.toMatch(new RegExp(`^#\\d+ [\\d.]+ ${LINES}$`, 'm'));
  const failed = await build('broken');
  expect(failed.code).toBe(1);
  const again = await build('big');
  expect(again.code, again.stderr.slice(-3000)).toBe(0);
  const ls = await history('ls', '--format', 'json');
  expect(ls.code, ls.stderr).toBe(0);
  refs.push(...ls.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { ref: string }).ref).reverse());
});

afterAll(async () => {
  await removeDir(work);
});

describe('bkt history ls', () => {
  it('lists every build, newest first: ref, name (Dockerfile and target), status, created, duration', async () => {
    const r = await history('ls');
    expect(r.code, r.stderr).toBe(0);
    const [header, ...rows] = r.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^REF +NAME +STATUS +CREATED +DURATION$/);
    expect(rows.map((row) => row.split(/ {2,}/).slice(0, 3))).toEqual([
      [refs[2], 'Dockerfile (big)', 'Completed'],
      [refs[1], 'Dockerfile (broken)', 'Error'],
      [refs[0], 'Dockerfile (big)', 'Completed'],
    ]);
    for (const row of rows) expect(row).toMatch(/(ago|Less than a second ago) +(\d+\.\ds|\d+m \d\ds)$/);

    const json = (await history('ls', '--format', 'json')).stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(json.map((j) => j.status)).toEqual(['completed', 'failed', 'completed']);
    expect(json[1]).toMatchObject({ frontend: 'dockerfile.v0', error: { code: 'EXEC_FAILED' } });
    expect(json[0]!.durationMs).toEqual(expect.any(Number));
  });
});

describe('bkt history inspect', () => {
  interface Step {
    step: number;
    name: string;
    status: string;
    cached: boolean;
    durationMs?: number;
  }
  const steps = async (ref: string): Promise<Step[]> => {
    const r = await history('inspect', ref, '--format', 'json');
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { steps: Step[] }).steps;
  };

  it('shows status, duration, steps (cached or run) and each step', async () => {
    const first = await steps(refs[0]!);
    const run = first.find((s) => s.name.includes(`seq 1 ${LINES}`))!;
    expect(run).toMatchObject({ status: 'DONE', cached: false, durationMs: expect.any(Number) });
    bigStep = run.step;
    const cached = (await steps(refs[2]!)).find((s) => s.name.includes(`seq 1 ${LINES}`))!;
    expect(cached).toMatchObject({ status: 'DONE', cached: true });

    const pretty = await history('inspect', refs[0]!.slice(0, 8));
    expect(pretty.code, pretty.stderr).toBe(0);
    expect(pretty.stdout).toContain(`Ref:            ${refs[0]}`);
    expect(pretty.stdout).toMatch(/^Status: +Completed$/m);
    expect(pretty.stdout).toMatch(/^Duration: +(\d+\.\ds|\d+m \d\ds)$/m);
    expect(pretty.stdout).toMatch(/^Build Steps: +(\d+)\/\1 completed \(0 cached\)$/m);
    expect(pretty.stdout).toMatch(/^target +big$/m);
    expect(pretty.stdout).toMatch(new RegExp(`^#${bigStep} +DONE +false +\\d+\\.\\ds +.*seq 1 ${LINES}`, 'm'));
    const latest = await history('inspect');
    expect(latest.stdout).toMatch(new RegExp(`^#${cached.step} +DONE +true +\\d+\\.\\ds +.*seq 1 ${LINES}`, 'm'));
    expect(latest.stdout).toMatch(/^Build Steps: +(\d+)\/\1 completed \([1-9]\d* cached\)$/m);
  });

  it('shows the error of a failed build and its failed step', async () => {
    const r = await history('inspect', '^1');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Status: +Error$/m);
    expect(r.stdout).toMatch(/^Error: +EXEC_FAILED: .*exit code: 3/m);
    expect(r.stdout).toMatch(/^#\d+ +ERROR +false +.*echo before-failing; exit 3$/m);
  });
});

describe('bkt history logs', () => {
  it("--step N --raw prints all 50 MB of the step's stdout byte for byte, its stderr apart", async () => {
    const r = await history('logs', refs[0]!, '--step', String(bigStep), '--raw');
    expect(r.code, r.stderr).toBe(0);
    const want = expectedSeq();
    expect(want.size).toBeGreaterThan(50 * 1024 * 1024);
    expect(r.stdoutBytes.length).toBe(want.size);
    expect(createHash('sha256').update(r.stdoutBytes).digest('hex')).toBe(want.sha256);
    expect(r.stderr).toBe('to-stderr\n');
  });

  it('prints the build as --progress plain, the 50 MB step clipped with the command that prints all of it', async () => {
    const r = await history('logs', '^2');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^#${bigStep} \\[big 1/1\\] RUN seq 1 ${LINES}`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^#${bigStep} \\d+\\.\\d{3} 1\\n#${bigStep} \\d+\\.\\d{3} 2\\n`, 'm'));
    expect(r.stdout).toContain(`#${bigStep} [output clipped, log limit 2MiB reached: all of it with bkt history logs ${refs[0]} --step ${bigStep} (--raw for its exact bytes)]`);
    expect(r.stdout).toMatch(new RegExp(`^#${bigStep} DONE \\d+\\.\\ds$`, 'm'));
    expect(r.stdout.length).toBeLessThan(6 * 1024 * 1024);

    const failed = await history('logs', '^1');
    expect(failed.stdout).toMatch(/^#(\d+) \d+\.\d{3} before-failing\n#\1 ERROR: .*exit code: 3$/m);
  });

  it('names a ref it does not know, and exits 1', async () => {
    const r = await history('logs', 'nope');
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`error: no build "nope" in the history of ${root} (bkt history ls lists them)\n`);
    const step = await history('logs', '--step', '99');
    expect(step.code).toBe(1);
    expect(step.stderr).toMatch(/^error: --step 99: build \w+ has steps #1 to #\d+$/m);
  });
});

describe('the logs in the store', () => {
  it('are a record du counts, prune keeps and prune --all removes', async () => {
    const du = await bkt(['du', '--root', root], { cwd: work });
    expect(du.stdout).toMatch(new RegExp(`^history/${refs[0]} +true +5\\d\\.\\dMB`, 'm'));
    const prune = await bkt(['prune', '--root', root], { cwd: work });
    expect(prune.code, prune.stderr).toBe(0);
    expect(prune.stdout).not.toContain('history/');
    expect((await history('logs', refs[0]!, '--step', String(bigStep), '--raw')).stdoutBytes.length).toBe(expectedSeq().size);

    const all = await bkt(['prune', '--all', '--root', root], { cwd: work });
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toContain(`history/${refs[0]}`);
    const gone = await history('logs', refs[0]!, '--step', String(bigStep), '--raw');
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain(`the logs of build ${refs[0]} past its first 1MiB are no longer in the store (removed by a prune --all)`);
    // The record itself stays, as the history's.
    expect((await history('ls')).stdout).toContain(refs[0]);
  });
});
