/**
 * Issue 10: what the CLI writes besides the build. A closed stdout (`bkt du |
 * head -1` once head has gone) ends every command quietly with exit 0, no
 * stack trace; `--progress quiet` prints nothing but errors;
 * `BUILDKIT_PROGRESS` sets the default of `--progress`; `NO_COLOR` turns the
 * tty display's colours off. Through the CLI, against real runc.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, removeDir } from '../helpers.js';
import { bktEnv } from '../images/lib.js';
import { dockerfile, openFixture, runWithClosedStdout, warningLines, type Fixture } from './lib.js';

let f: Fixture;
let warned: string;

beforeAll(async () => {
  f = await openFixture('diag-output');
  warned = await dockerfile(f, 'Dockerfile.warned', warningLines(f.base));
  const r = await bkt(['build', '--root', f.root, '--progress', 'plain', '-f', warned, f.context], { cwd: f.work });
  expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => {
  await f?.registry.stop();
  if (f) await removeDir(f.work);
});

describe('a closed stdout', () => {
  it.each([
    ['du', () => ['du', '--root', f.root]],
    ['du --verbose', () => ['du', '--verbose', '--root', f.root]],
    ['prune', () => ['prune', '--root', f.root, '--filter', 'type=nothing']],
    ['--help', () => ['--help']],
    ['build --call targets', () => ['build', '--root', f.root, '--call', 'targets', '-f', warned, f.context]],
    ['build -o - (a tar on stdout)', () => ['build', '--root', f.root, '--progress', 'quiet', '-f', warned, '-o', '-', f.context]],
  ])('%s ends quietly with exit 0', async (_name, args) => {
    const r = await runWithClosedStdout(args(), f.work);
    expect(r.stderr).toBe('');
    expect(r.signal).toBeNull();
    expect(r.code).toBe(0);
  });
});

describe('--progress quiet', () => {
  it('prints nothing for a build that succeeds, and only the error for one that fails', async () => {
    const ok = await bkt(['build', '--root', f.root, '--progress', 'quiet', '-f', warned, f.context], { cwd: f.work });
    expect(ok.code).toBe(0);
    expect(ok.stderr).toBe('');
    expect(ok.stdout).toBe('');
    const failing = await dockerfile(f, 'Dockerfile.failing', [`FROM ${f.base}`, 'RUN echo about to fail; exit 7']);
    const bad = await bkt(['build', '--root', f.root, '--progress', 'quiet', '-f', failing, f.context], { cwd: f.work });
    expect(bad.code).toBe(1);
    expect(bad.stderr).not.toMatch(/solver time|warnings found|^#\d/m);
    expect(bad.stderr).toMatch(/^error: Dockerfile\.failing:2: .*exit code: 7$/m);
  });
});

describe('BUILDKIT_PROGRESS and NO_COLOR', () => {
  const build = (env: Record<string, string>, extra: string[] = []) => bktEnv(['build', '--root', f.root, ...extra, '-f', warned, f.context], { cwd: f.work, env });

  it('BUILDKIT_PROGRESS is the default of --progress; the flag wins; a bad value is an error naming it', async () => {
    const raw = await build({ BUILDKIT_PROGRESS: 'rawjson' });
    expect(raw.code, raw.stderr).toBe(0);
    expect(raw.stderr.split('\n')[0]).toMatch(/^\{"vertexes":/);
    const quiet = await build({ BUILDKIT_PROGRESS: 'quiet' });
    expect(quiet.stderr).toBe('');
    const flag = await build({ BUILDKIT_PROGRESS: 'rawjson' }, ['--progress', 'plain']);
    expect(flag.stderr).toMatch(/^#1 /);
    const bad = await build({ BUILDKIT_PROGRESS: 'fancy' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('error: BUILDKIT_PROGRESS=fancy: expected one of auto, tty, plain, rawjson, quiet\n');
  });

  it('NO_COLOR turns off the colours of the tty display and of the warning summary', async () => {
    const colored = await build({}, ['--progress', 'tty']);
    expect(colored.code, colored.stderr).toBe(0);
    expect(colored.stderr).toMatch(/\x1b\[3\dm/);
    expect(colored.stderr).toContain('\x1b[33m2 warnings found');
    const plain = await build({ NO_COLOR: '1' }, ['--progress', 'tty']);
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stderr).toMatch(/=> CACHED /);
    // The cursor movements of a live display stay; no SGR colour sequence does.
    expect(plain.stderr).not.toMatch(/\x1b\[\d+m/);
    expect(plain.stderr).toContain(' 2 warnings found (set BKT_DEBUG=1 to expand):\n');
  });
});
