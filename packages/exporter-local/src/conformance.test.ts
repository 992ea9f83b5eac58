import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { BuildContext, BuildResult, Exporter } from '@bkt/core';
import { describeExporterConformance, type ExporterFixture } from '@bkt/core/testing';
import { openTestContext } from '@bkt/store/testing';
import localExporters from './index.js';

/** The tree every export holds: path → content, and the mode of `bin/run.sh`. */
const TREE = { 'hello.txt': 'hello from bkt\n', 'bin/run.sh': '#!/bin/sh\necho run\n', 'etc/deep/config': 'key=value\n' };
const RUN_MODE = 0o750;

/** A committed snapshot of the store holding `TREE`, as a build's result. */
async function treeResult(ctx: BuildContext): Promise<BuildResult> {
  const mutable = await ctx.snapshotter.prepare(null, { description: 'conformance tree' });
  for (const [path, content] of Object.entries(TREE)) {
    await mkdir(join(mutable.path, path, '..'), { recursive: true });
    await writeFile(join(mutable.path, path), content);
  }
  await chmod(join(mutable.path, 'bin/run.sh'), RUN_MODE);
  return { ref: await mutable.commit(), metadata: {} };
}

/** Throws unless directory `dir` holds `TREE` (contents and the script's mode), and nothing else at the top. */
async function expectTree(dir: string): Promise<void> {
  expect((await readdir(dir)).sort()).toEqual(['bin', 'etc', 'hello.txt']);
  for (const [path, content] of Object.entries(TREE)) expect(await readFile(join(dir, path), 'utf8'), path).toBe(content);
  expect((await stat(join(dir, 'bin/run.sh'))).mode & 0o7777).toBe(RUN_MODE);
}

/** A fixture for exporter `type`, writing to fresh paths under a temp dir, in a real store whose client is the host's. */
async function fixture(type: 'local' | 'tar'): Promise<ExporterFixture> {
  const work = await mkdtemp(join(tmpdir(), `bkt-exporter-${type}-conformance-`));
  const store = await openTestContext();
  const exporter: Exporter = localExporters().exporters!.find((e) => e.type === type)!;
  let exports = 0;
  return {
    exporter,
    context: store.ctx,
    result: () => treeResult(store.ctx),
    validAttrs: async () => ({ dest: join(work, `out-${++exports}${type === 'tar' ? '.tar' : ''}`) }),
    requiredAttrs: ['dest'],
    verify: async (attrs) => {
      if (type === 'local') return expectTree(attrs.dest!);
      // The tar must be one that GNU tar reads: unpack it and compare the tree.
      const unpacked = join(work, `unpacked-${exports}`);
      await mkdir(unpacked);
      execFileSync('tar', ['-xf', attrs.dest!, '-C', unpacked]);
      await expectTree(unpacked);
    },
    cleanup: async () => {
      await store.close();
      await rm(work, { recursive: true, force: true });
    },
  };
}

describeExporterConformance('local', () => fixture('local'));
describeExporterConformance('tar', () => fixture('tar'));
