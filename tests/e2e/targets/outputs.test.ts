/**
 * A target's outputs: typed (`push: true`; an unknown attribute is a type
 * error for tsc against the published types of @bkt/core, and a run-time
 * error naming it for a JS config), and left out of the target's own
 * context, so a naive config does not copy its output into itself and is
 * cached on the next build.
 */
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, removeDir, tempDir, vertices } from '../helpers.js';
import { writeProject } from './lib.js';

let work: string;

beforeAll(async () => {
  work = await tempDir('targets-outputs');
});

afterAll(async () => {
  if (work) await removeDir(work);
});

describe('the default context leaves out the target\'s output destinations', () => {
  it('a target copying its whole project dir does not copy its outputs, and is cached the second time', async () => {
    const project = await writeProject(
      join(work, 'naive'),
      `import { defineConfig } from '@bkt/core';
import { copy, local, scratch } from '@bkt/llb';
export default defineConfig({
  targets: {
    default: {
      build: scratch().file(copy(local('context'), '/', '/src')),
      outputs: [{ type: 'local', dest: 'out' }, { type: 'tar', dest: 'dist/project.tar' }],
    },
  },
});
`,
    );
    await writeFile(join(project.dir, 'main.c'), 'int main(void) { return 0; }\n');
    const first = await project.build([]);
    expect(first.stderr).toMatch(/solver time/);
    expect(first.code).toBe(0);
    expect((await readdir(join(project.dir, 'out/src'))).sort()).toEqual(['bkt.config.ts', 'main.c']);

    const second = await project.build([]);
    expect(second.code).toBe(0);
    // Nothing of the context changed: its own outputs (now present) were not read.
    expect([...vertices(second.stderr).values()].filter((v) => !v.cached)).toEqual([]);
    expect((await readdir(join(project.dir, 'out/src'))).sort()).toEqual(['bkt.config.ts', 'main.c']);

    // An --output given on the command line is left out the same way.
    for (let i = 0; i < 2; i++) expect((await project.build(['-o', 'type=local,dest=cli-out'])).code).toBe(0);
    expect(await readdir(join(project.dir, 'cli-out/src'))).not.toContain('cli-out');
  });
});

describe('no target reads what a target of the config writes', () => {
  it('each target leaves out the other targets\' output destinations too, and is cached the next time', async () => {
    const project = await writeProject(
      join(work, 'two'),
      `import { defineConfig } from '@bkt/core';
import { copy, local, scratch } from '@bkt/llb';
const context = () => scratch().file(copy(local('context'), '/', '/src'));
export default defineConfig({
  targets: {
    site: { build: context, outputs: [{ type: 'local', dest: 'site' }] },
    bundle: { build: context, outputs: [{ type: 'tar', dest: 'dist/bundle.tar' }] },
  },
});
`,
    );
    await writeFile(join(project.dir, 'index.html'), '<p>hi</p>\n');
    expect((await project.build(['site'])).code).toBe(0);
    expect((await project.build(['bundle'])).code).toBe(0);
    const entries = (await execa('tar', ['-tf', join(project.dir, 'dist/bundle.tar')])).stdout.split('\n');
    expect(entries.filter((e) => /^src\/[^/]+\/?$/.test(e)).sort()).toEqual(['src/bkt.config.ts', 'src/index.html']);
    expect((await readdir(join(project.dir, 'site/src'))).sort()).toEqual(['bkt.config.ts', 'index.html']);

    const again = await project.build(['site', 'bundle']);
    expect(again.code).toBe(0);
    // Exports run on every build; every step is cached.
    const steps = [...vertices(again.stderr).values()].filter((v) => !/^\[\w+\] exporting /.test(v.name));
    expect(steps.length).toBeGreaterThan(0);
    expect(steps.filter((v) => !v.cached)).toEqual([]);
  });
});

describe('typed outputs', () => {
  it('a JS config\'s outputs are checked before anything runs: each error names the target, the output and the attribute', async () => {
    const project = await writeProject(
      join(work, 'js'),
      `export default { targets: {
  stringPush: { build: new Uint8Array(), outputs: [{ type: 'image', name: 'app:1', push: 'true' }] },
  typo: { build: new Uint8Array(), outputs: [{ type: 'local', dest: 'out' }, { type: 'image', name: 'app:1', pussh: true }] },
  noDest: { build: new Uint8Array(), outputs: [{ type: 'tar' }] },
  unknownType: { build: new Uint8Array(), outputs: [{ type: 'zip', level: 9 }] },
  plugin: { build: new Uint8Array(), outputs: [{ exporter: 'zip', attrs: { level: '9' } }] },
} };
`,
      'bkt.config.mjs',
    );
    const cases: [string, RegExp][] = [
      ['stringPush', /^error: target "stringPush": outputs\[0\]: "push" must be true or false, got the string "true"$/m],
      ['typo', /^error: target "typo": outputs\[1\]: unknown attribute "pussh" of an image output \(known: name, .*push.*\)$/m],
      ['noDest', /^error: target "noDest": outputs\[0\]: a tar output needs "dest"$/m],
      ['unknownType', /^error: target "unknownType": outputs\[0\]: unknown output type "zip" \(known: image, registry, oci, docker, local, tar; a plugin's exporter is \{ exporter: TYPE, attrs: \{…\} \}\)$/m],
      // A plugin's exporter gets its attributes as strings; none is registered here.
      ['plugin', /^error: .*exporter.*"zip"/m],
    ];
    for (const [target, message] of cases) {
      const r = await project.build([target]);
      expect(r.code, target).toBe(1);
      expect(r.stderr, target).toMatch(message);
      expect(r.stderr, target).not.toMatch(/solver time/);
    }
  });

  it('tsc, against the published types of @bkt/core, accepts typed outputs and rejects a string push, an unknown attribute and a missing dest', async () => {
    const dir = join(work, 'tsc');
    await writeProject(dir, '', 'placeholder.txt');
    const good = join(dir, 'good.ts');
    const bad = join(dir, 'bad.ts');
    await writeFile(
      good,
      `import { defineConfig } from '@bkt/core';
export default defineConfig({ targets: { app: { build: new Uint8Array(), outputs: [
  { type: 'image', name: ['reg.example/app:1', 'reg.example/app:latest'], push: true, ociMediaTypes: true, annotations: { 'org.opencontainers.image.title': 'app' } },
  { type: 'oci', dest: 'app.tar', tar: true },
  { type: 'local', dest: 'out' },
  { exporter: 'zip', attrs: { level: '9' } },
] } } });
`,
    );
    await writeFile(
      bad,
      `import { defineConfig } from '@bkt/core';
export default defineConfig({ targets: { app: { build: new Uint8Array(), outputs: [
  { type: 'image', name: 'app:1', push: 'true' },
  { type: 'image', name: 'app:1', pussh: true },
  { type: 'local' },
] } } });
`,
    );
    const tsc = (file: string) =>
      execa('node', [join(REPO, 'node_modules/typescript/bin/tsc'), '--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', file], {
        cwd: dir,
        reject: false,
      });
    const ok = await tsc(good);
    expect(ok.stdout).toBe('');
    expect(ok.exitCode).toBe(0);
    const failed = await tsc(bad);
    expect(failed.exitCode).not.toBe(0);
    const errors = failed.stdout.split('\n').filter((l) => /error TS\d+/.test(l));
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatch(/^bad\.ts\(3,.*Type 'string' is not assignable to type 'boolean/);
    expect(errors[1]).toMatch(/^bad\.ts\(4,.*'pussh' does not exist in type 'ImageOutput'. Did you mean to write 'push'\?/);
    expect(errors[2]).toMatch(/^bad\.ts\(5,.*Type '\{ type: "local"; \}' is not assignable to type 'TargetOutput'/);
    expect(failed.stdout).toMatch(/Property 'dest' is missing in type '\{ type: "local"; \}'/);
  });
});
