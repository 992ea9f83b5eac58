/**
 * scripts/check-boundaries.mjs (run by `npm test`) fails on each kind of
 * forbidden import planted in a small repository tree, naming the file, the
 * line and the rule, and passes on the same tree without them.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, removeDir, tempDir } from '../helpers.js';

const SCRIPT = join(REPO, 'scripts/check-boundaries.mjs');
let work: string;

beforeAll(async () => {
  work = await tempDir('boundaries');
});

afterAll(async () => {
  await removeDir(work);
});

/** A tree of packages: `files` maps `packages/NAME/…` paths to contents; each package gets a package.json. */
async function tree(name: string, files: Record<string, string>, deps: Record<string, Record<string, string>> = {}): Promise<string> {
  const root = join(work, name);
  await rm(root, { recursive: true, force: true });
  const packages = new Set(Object.keys(files).map((f) => f.split('/')[1]!));
  for (const pkg of [...packages, ...Object.keys(deps)]) {
    await mkdir(join(root, 'packages', pkg), { recursive: true });
    await writeFile(join(root, 'packages', pkg, 'package.json'), JSON.stringify({ name: `@bkt/${pkg}`, dependencies: deps[pkg] ?? {} }));
  }
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
  return root;
}

const check = (root: string) => execa('node', [SCRIPT, '--root', root], { reject: false });

const clean = {
  'packages/core/src/index.ts': "export const x = 1;\n",
  'packages/oci/src/index.ts': "import { x } from '@bkt/core';\nexport const y = x;\n",
  'packages/source-image/src/index.ts': "import { y } from '@bkt/oci';\nimport { x } from '@bkt/core';\nexport default () => ({ name: 'a', y, x });\n",
  'packages/exporter-oci/src/index.ts': "// import { nope } from '@bkt/source-image';\nimport { y } from '@bkt/oci';\nexport default () => y;\n",
  'packages/exporter-oci/src/push.test.ts': "import { helper } from '@bkt/testkit';\nimport s from '@bkt/source-image';\n",
  'packages/solver/src/index.ts': "import { x } from '@bkt/core';\nimport { Store } from '@bkt/store';\n",
  'packages/store/src/index.ts': "import { x } from '@bkt/core';\nexport class Store {}\n",
  'packages/cli/src/index.ts': "import s from '@bkt/source-image';\nimport { credentials } from '@grpc/grpc-js';\n",
  'packages/api/src/index.ts': "import { Server } from '@grpc/grpc-js';\n",
  'packages/session/src/index.ts': "import { Server } from '@grpc/grpc-js';\nimport { x } from '@bkt/core';\nimport { y } from '@bkt/fsutil';\n",
};

describe('check-boundaries', () => {
  it('passes a tree that keeps the rules (imports in comments and tests do not count)', async () => {
    const r = await check(await tree('clean', clean));
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('check-boundaries: every package imports within its floor rules');
  });

  it.each([
    ['a backend importing another backend', 'packages/exporter-oci/src/layer.ts', "import { compress } from '@bkt/source-image';\n", 'packages/exporter-oci/src/layer.ts:1: a backend (@bkt/exporter-oci) imports another backend (@bkt/source-image)'],
    ['a type-only import of another backend', 'packages/exporter-oci/src/attrs.ts', "\nimport type { Compression } from '@bkt/source-image';\n", 'packages/exporter-oci/src/attrs.ts:2: a backend (@bkt/exporter-oci) imports another backend'],
    ['a dynamic import of another backend', 'packages/source-image/src/lazy.ts', "export const f = () => import('@bkt/worker-runc');\n", 'a backend (@bkt/source-image) imports another backend (@bkt/worker-runc)'],
    ['a backend importing the solver', 'packages/source-image/src/pull.ts', "import { openSolver } from '@bkt/solver';\n", "a backend (@bkt/source-image) imports the solver (@bkt/solver); reach it through @bkt/core's interfaces"],
    ['a backend importing the store', 'packages/source-image/src/rec.ts', "import { Store } from '@bkt/store';\n", 'a backend (@bkt/source-image) imports the store (@bkt/store)'],
    ['product code importing testkit', 'packages/solver/src/run.ts', "import { startRegistry } from '@bkt/testkit';\n", 'product code imports the test helpers of @bkt/testkit'],
    ['product code importing a testing subpath', 'packages/cli/src/x.ts', "import { startFaultProxy } from '@bkt/registry/testing';\n", 'product code imports the test helpers @bkt/registry/testing'],
    ['product code importing a test file', 'packages/solver/src/y.ts', "import { graph } from './graphs.test-util.js';\n", 'product code imports the test helper ./graphs.test-util.js'],
    ['a test helper named after another convention', 'packages/solver/src/testutil.ts', "export const graph = 1;\n", 'packages/solver/src/testutil.ts:1: a test helper is named <what-it-is>.test-util.ts'],
    ['@grpc/grpc-js outside api, server and cli', 'packages/solver/src/grpc.ts', "import * as grpc from '@grpc/grpc-js';\n", '@grpc/grpc-js is imported outside api, server, cli'],
    ['a leaf importing the solver', 'packages/oci/src/bad.ts', "import { openSolver } from '@bkt/solver';\n", '@bkt/oci (leaves) imports @bkt/solver (engine)'],
    ['a frontend importing a backend', 'packages/frontend-dockerfile/src/f.ts', "import img from '@bkt/source-image';\n", 'a frontend (@bkt/frontend-dockerfile) imports @bkt/source-image'],
    ['the session protocol importing the solver', 'packages/session/src/s.ts', "import { openSolver } from '@bkt/solver';\n", '@bkt/session (protocols) imports @bkt/solver; the protocols floor uses leaves only'],
    ['a backend importing the session protocol', 'packages/source-image/src/s.ts', "import { serveSession } from '@bkt/session';\n", '@bkt/source-image (backends) imports @bkt/session (protocols)'],
  ])('fails on %s, naming the file, the line and the rule', async (_what, file, content, message) => {
    const r = await check(await tree(file.replace(/\W+/g, '-'), { ...clean, [file]: content }));
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(message);
    expect(r.stderr).toMatch(/check-boundaries: 1 forbidden import\(s\)/);
  });

  it('fails on a package.json dependency on another backend', async () => {
    const r = await check(await tree('dep', clean, { 'exporter-oci': { '@bkt/source-image': '0.0.0' } }));
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('packages/exporter-oci/package.json:1: dependency @bkt/source-image: a backend (@bkt/exporter-oci) imports another backend');
  });

  it('accepts a violation listed in scripts/boundary-exceptions.json, and fails on a stale exception', async () => {
    const root = await tree('exceptions', { ...clean, 'packages/exporter-oci/src/push.ts': "import { readLayerRecord } from '@bkt/source-image';\n" });
    const exception = { file: 'packages/exporter-oci/src/push.ts', message: 'imports another backend (@bkt/source-image)', until: 'records move' };
    await mkdir(join(root, 'scripts'), { recursive: true });
    await writeFile(join(root, 'scripts/boundary-exceptions.json'), JSON.stringify([exception]));
    const r = await check(root);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);

    await writeFile(join(root, 'packages/exporter-oci/src/push.ts'), "import { y } from '@bkt/oci';\n");
    const stale = await check(root);
    expect(stale.exitCode).toBe(1);
    expect(stale.stderr).toContain('scripts/boundary-exceptions.json:1: stale exception for packages/exporter-oci/src/push.ts');
  });

  it('passes on this repository', async () => {
    const r = await execa('node', [SCRIPT], { reject: false });
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
  });
});
