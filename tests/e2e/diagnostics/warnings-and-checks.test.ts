/**
 * Issue 10: build-check warnings are shown after the build in plain mode (and
 * as `#N WARN:` lines), stay JSON-only in rawjson and out of quiet; `--check`
 * / `--call check` runs only the checks and exits 1 when there are warnings;
 * `--call outline` and `--call targets` print the target's build args,
 * secrets and ssh, and the stages — through the CLI, against real runc.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bkt, removeDir } from '../helpers.js';
import { dockerfile, openFixture, warningLines, type Fixture } from './lib.js';

let f: Fixture;
let warned: string;

beforeAll(async () => {
  f = await openFixture('diag-warnings');
  warned = await dockerfile(f, 'Dockerfile.warned', warningLines(f.base));
});

afterAll(async () => {
  await f?.registry.stop();
  if (f) await removeDir(f.work);
});

const build = (args: string[]) => bkt(['build', '--root', f.root, ...args], { cwd: f.work });

const SUMMARY = [
  ' 2 warnings found (set BKT_DEBUG=1 to expand):',
  " - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)",
  ' - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 3)',
].join('\n');

describe('warnings after a build', () => {
  it("plain: each as a WARN line of the build definition's step, then buildx's summary after the build", async () => {
    const r = await build(['--progress', 'plain', '-f', warned, f.context]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^#\d+ WARN: FromAsCasing: 'as' and 'FROM' keywords' casing do not match \(line 1\)$/m);
    expect(r.stderr).toMatch(/^#\d+ WARN: JSONArgsRecommended: .* \(line 3\)$/m);
    const summaryAt = r.stderr.indexOf(`\n${SUMMARY}\n`);
    expect(summaryAt, r.stderr).toBeGreaterThan(0);
    // After every step's output.
    expect(summaryAt).toBeGreaterThan(r.stderr.lastIndexOf('\n#'));
  });

  it('rawjson: the warnings as JSON objects only; quiet: not at all', async () => {
    const raw = await build(['--progress', 'rawjson', '-f', warned, f.context]);
    expect(raw.code, raw.stderr).toBe(0);
    const warnings = raw.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .flatMap((l) => (JSON.parse(l) as { warnings?: { short: string; url?: string }[] }).warnings ?? []);
    expect(warnings.map((w) => w.short.split(':')[0])).toEqual(['FromAsCasing', 'JSONArgsRecommended']);
    expect(warnings[0]!.url).toBe('https://docs.docker.com/go/dockerfile/rule/from-as-casing/');
    expect(raw.stderr).not.toContain('warnings found');

    const quiet = await build(['--progress', 'quiet', '-f', warned, f.context]);
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).toBe('');
  });

  it('BKT_DEBUG expands each warning with its description and URL', async () => {
    const { bktEnv } = await import('../images/lib.js');
    const r = await bktEnv(['build', '--root', f.root, '--progress', 'plain', '-f', warned, f.context], { cwd: f.work, env: { BKT_DEBUG: '1' } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      " 2 warnings found:\n - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)\nThe 'as' keyword should match the case of the 'from' keyword\nMore info: https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n",
    );
  });
});

describe('--check and --call', () => {
  it('--check prints the warnings with their lines on stdout and exits 1; a clean Dockerfile exits 0', async () => {
    const r = await build(['--check', '-f', warned, f.context]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toBe(
      [
        'Check complete, 2 warnings have been found!',
        '',
        'WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/',
        "'as' and 'FROM' keywords' casing do not match",
        'Dockerfile.warned:1',
        '--------------------',
        `   1 | >>> FROM ${f.base} as base`,
        '   2 |     ENV GREETING=hi',
        '   3 |     CMD echo $GREETING',
        '--------------------',
        '',
        'WARNING: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/',
        'JSON arguments recommended for CMD to prevent unintended behavior related to OS signals',
        'Dockerfile.warned:3',
        '--------------------',
        `   1 |     FROM ${f.base} as base`,
        '   2 |     ENV GREETING=hi',
        '   3 | >>> CMD echo $GREETING',
        '   4 |     ',
        '--------------------',
        '',
      ].join('\n'),
    );
    // Nothing was built: no step ran, and the summary of a build is not printed.
    expect(r.stderr).not.toMatch(/RUN|solver time|warnings found/);

    const clean = await dockerfile(f, 'Dockerfile.clean', [`FROM ${f.base} AS base`, 'CMD ["echo", "hi"]']);
    const ok = await build(['--call=check', '-f', clean, f.context]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toBe('Check complete, no warnings found.\n');
  });

  it('--call outline prints the build args, secrets and ssh of the target; --call targets the stages', async () => {
    const path = await dockerfile(f, 'Dockerfile.outline', [
      '# VERSION the release to build',
      'ARG VERSION=1.0',
      '# deps fetches the dependencies',
      `FROM ${f.base} AS deps`,
      'RUN --mount=type=secret,id=npmrc,required=true --mount=type=ssh true',
      '',
      '# app builds the final image',
      'FROM deps AS app',
      'ARG VERSION',
      '# COMMIT the commit built',
      'ARG COMMIT',
    ]);
    const outline = await build(['--call', 'outline', '--target', 'app', '--build-arg', 'COMMIT=abc123', '-f', path, f.context]);
    expect(outline.code, outline.stderr).toBe(0);
    expect(outline.stdout).toBe(
      [
        'TARGET:      app',
        'DESCRIPTION: builds the final image',
        '',
        'BUILD ARG   VALUE    DESCRIPTION',
        'VERSION     1.0      the release to build',
        'COMMIT      abc123   the commit built',
        '',
        'SECRET   REQUIRED',
        'npmrc    true',
        '',
        'SSH       REQUIRED',
        'default   ',
        '',
        '',
      ].join('\n'),
    );
    const json = await build(['--call', 'outline,format=json', '--target', 'app', '-f', path, f.context]);
    expect(JSON.parse(json.stdout)).toMatchObject({ name: 'app', args: [{ name: 'VERSION', value: '1.0' }, { name: 'COMMIT' }], secrets: [{ name: 'npmrc', required: true }] });

    const targets = await build(['--call', 'targets', '-f', path, f.context]);
    expect(targets.code, targets.stderr).toBe(0);
    expect(targets.stdout).toBe(['TARGET        DESCRIPTION', 'deps          fetches the dependencies', 'app (default) builds the final image', ''].join('\n'));
  });

  it('bad --call values and export flags with a call are errors naming the flag', async () => {
    const unknown = await build(['--call', 'explain', '-f', warned, f.context]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('error: --call explain: unknown function "explain" (build, check, outline, targets)\n');
    const exporting = await build(['--check', '-o', 'out', '-f', warned, f.context]);
    expect(exporting.code).toBe(1);
    expect(exporting.stderr).toBe('error: --call check builds and exports nothing: drop --output\n');
    const llb = await build(['--check', '--llb', 'def.pb']);
    expect(llb.code).toBe(1);
    expect(llb.stderr).toMatch(/^error: bkt build: --llb and Dockerfile flags .* can't be used together/m);
  });
});
