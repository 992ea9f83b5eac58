/**
 * Several config targets in one invocation (`bkt build a b`, as `docker
 * buildx bake a b`): one solver, solves run at once, a step two targets share
 * runs once, each target gets its own outputs and its own lines in the
 * progress; one failing target fails the invocation but not the others.
 * Real runc steps on busybox pulled from a real registry.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { vertexNames, writeProject, type Project } from './lib.js';

let registry: RegistryServer;
let busybox: PushedImage;
let work: string;
let project: Project;

const config = (base: string) => `
import { defineConfig, type TargetBuildArgs } from '@bkt/core';
import { image } from '@bkt/llb';

const base = ({ metaResolver }: TargetBuildArgs) => image(${JSON.stringify(base)}, { metaResolver });

// The step a and b share: a random stamp, and the number of runs counted in a cache mount.
const shared = async (args: TargetBuildArgs) =>
  (await base(args))
    .run({
      shell: 'cat /proc/sys/kernel/random/uuid > /stamp && echo run >> /count/runs && cp /count/runs /runs && sleep 1',
      mounts: [{ type: 'cache', target: '/count', id: 'runs' }],
      customName: 'the shared step',
    })
    .root();

// p and q each wait for the other's mark in a shared cache mount: they pass only when they run at the same time.
const meet = (me: string, other: string) => async (args: TargetBuildArgs) =>
  (await base(args))
    .run({
      shell: \`touch /meet/\${me}; i=0; until [ -e /meet/\${other} ]; do i=$((i+1)); [ $i -lt 300 ] || { echo "\${other} never came"; exit 7; }; sleep 0.1; done\`,
      mounts: [{ type: 'cache', target: '/meet', id: 'meet', sharing: 'shared' }],
      customName: \`\${me} meets \${other}\`,
    })
    .root();

export default defineConfig({
  targets: {
    a: {
      description: 'the shared step, then a',
      build: async (args) => (await shared(args)).run({ shell: 'echo a > /which' }).root(),
      outputs: [{ type: 'local', dest: 'out-a' }],
    },
    b: {
      description: 'the shared step, then b',
      build: async (args) => (await shared(args)).run({ shell: 'echo b > /which' }).root(),
      outputs: [{ type: 'local', dest: 'out-b' }],
    },
    p: { build: meet('p', 'q') },
    q: { build: meet('q', 'p') },
    fails: {
      description: 'a step that exits 3',
      build: async (args) => (await base(args)).run({ shell: 'echo failing on purpose; exit 3' }).root(),
    },
    alsoFails: { build: async (args) => (await base(args)).run({ shell: 'exit 4' }).root() },
  },
});
`;

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('targets-several');
  project = await writeProject(work, config(busybox.reference));
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

describe('bkt build a b', () => {
  it('runs the step a and b share once: both outputs hold the same stamp and one counted run', async () => {
    const r = await project.build(['a', 'b', '--metadata-file', 'meta.json']);
    expect(r.stderr).toMatch(/\[b\] solver time/);
    expect(r.code).toBe(0);
    // --metadata-file, as bake's: one object per target.
    const meta = JSON.parse(await readFile(join(project.dir, 'meta.json'), 'utf8')) as Record<string, Record<string, string>>;
    expect(Object.keys(meta)).toEqual(['a', 'b']);
    expect(meta.a!['bkt.build.ref']).toMatch(/^[0-9a-z]{25}$/);
    expect(meta.b!['bkt.build.ref']).not.toBe(meta.a!['bkt.build.ref']);
    const stampA = await readFile(join(project.dir, 'out-a/stamp'), 'utf8');
    expect(stampA).toMatch(/^[0-9a-f-]{36}\n$/);
    expect(await readFile(join(project.dir, 'out-b/stamp'), 'utf8')).toBe(stampA);
    expect(await readFile(join(project.dir, 'out-a/runs'), 'utf8')).toBe('run\n');
    expect(await readFile(join(project.dir, 'out-b/runs'), 'utf8')).toBe('run\n');
    expect(await readFile(join(project.dir, 'out-a/which'), 'utf8')).toBe('a\n');
    expect(await readFile(join(project.dir, 'out-b/which'), 'utf8')).toBe('b\n');

    // Each target's steps under its name; the shared one under both.
    const names = vertexNames(r.stderr);
    expect(names).toContain('[a] the shared step');
    expect(names).toContain('[b] the shared step');
    expect(names.filter((n) => !/^\[(a|b)\] /.test(n))).toEqual([]);
    expect(r.stderr).toMatch(/^\[a\] solver time: .*\n\[b\] solver time: /m);
  });

  it('solves the targets at the same time: p and q each wait for the other', async () => {
    const r = await project.build(['p', 'q'], { progress: 'plain' });
    expect(r.stderr).not.toMatch(/never came/);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/#\d+ \[p\] p meets q/);
    expect(r.stderr).toMatch(/#\d+ \[q\] q meets p/);
  });

  it('a failing target fails the invocation, names itself and its step; the other target still writes its output', async () => {
    await removeDir(join(project.dir, 'out-a'));
    const r = await project.build(['fails', 'a'], { progress: 'plain' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ > \[fails\] .*exit 3/m);
    expect(r.stderr).toMatch(/^error: target "fails": .*exit code: 3/m);
    expect(r.stderr).toMatch(/^\[a\] solver time/m);
    expect(await readFile(join(project.dir, 'out-a/which'), 'utf8')).toBe('a\n');
  });

  it('several failing targets: the error lists each with its own failure', async () => {
    const r = await project.build(['fails', 'alsoFails'], { progress: 'plain' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: 2 of 2 targets failed:\n  fails: .*exit code: 3\n  alsoFails: .*exit code: 4$/m);
  });

  it('refuses flags that name one build\'s outputs, and an unknown target, before building', async () => {
    const tagged = await project.build(['a', 'b', '-t', 'x:1']);
    expect(tagged.code).toBe(1);
    expect(tagged.stderr).toMatch(/^error: bkt build a b: --tag names the outputs of one build/m);
    const unknown = await project.build(['a', 'nope']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^error: no target "nope" in the config of .* \(targets: a, b, p, q, fails, alsoFails\)/m);
  });
});

describe('bkt build --list', () => {
  it('prints the targets and their descriptions, in the config\'s order', async () => {
    const r = await project.build(['--list']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      [
        'TARGET     DESCRIPTION',
        'a          the shared step, then a',
        'b          the shared step, then b',
        'p',
        'q',
        'fails      a step that exits 3',
        'alsoFails',
        '',
      ].join('\n'),
    );
  });

  it('is an error without a config, and with a target', async () => {
    const bare = await writeProject(join(work, 'bare'), 'not a config', 'notes.txt');
    const none = await bare.build(['--list']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/^error: .*no config file/m);
    const withTarget = await project.build(['--list', 'a']);
    expect(withTarget.code).toBe(1);
    expect(withTarget.stderr).toMatch(/--list takes no target/);
  });
});
