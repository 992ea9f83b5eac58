import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import type { Attrs, BuildContext, BuildResult } from '@bkt/core';
import { describeExporterConformance, type ExporterFixture } from '@bkt/core/testing';
import { openTestContext } from '@bkt/store/testing';
import { startRegistry, type RegistryServer } from '@bkt/testkit';
import { createImageExporters } from './exporters.js';
import { runTool, validateLayout } from './testing/index.js';

/** The tree every export holds: path → content, and the mode of `bin/run.sh`. */
const TREE = { 'hello.txt': 'hello from bkt\n', 'bin/run.sh': '#!/bin/sh\necho run\n' };
const RUN_MODE = 0o750;
const CMD = ['/bin/run.sh'];

/** A committed snapshot holding `TREE` and an image config, as a build's result. */
async function imageResult(ctx: BuildContext): Promise<BuildResult> {
  const mutable = await ctx.snapshotter.prepare(null, { description: 'conformance tree' });
  for (const [path, content] of Object.entries(TREE)) {
    await mkdir(join(mutable.path, path, '..'), { recursive: true });
    await writeFile(join(mutable.path, path), content);
  }
  await chmod(join(mutable.path, 'bin/run.sh'), RUN_MODE);
  const config = { architecture: process.arch === 'x64' ? 'amd64' : process.arch, os: 'linux', config: { Cmd: CMD } };
  return { ref: await mutable.commit(), metadata: { 'containerimage.config': Buffer.from(JSON.stringify(config)) } };
}

interface Descriptor {
  digest: string;
}

/**
 * Throws unless the OCI layout at `layout` passes oci-image-tool and its one
 * image holds `TREE` (every layer unpacked in order) with `CMD`.
 */
async function expectImageInLayout(layout: string, unpackTo: string): Promise<void> {
  await validateLayout(layout);
  const blob = async (d: Descriptor) => readFile(join(layout, 'blobs/sha256', d.digest.slice('sha256:'.length)));
  const index = JSON.parse((await readFile(join(layout, 'index.json'))).toString()) as { manifests: Descriptor[] };
  expect(index.manifests).toHaveLength(1);
  const manifest = JSON.parse((await blob(index.manifests[0]!)).toString()) as { config: Descriptor; layers: Descriptor[] };
  const config = JSON.parse((await blob(manifest.config)).toString()) as { config: { Cmd: string[] }; rootfs: { diff_ids: string[] } };
  expect(config.config.Cmd).toEqual(CMD);
  expect(config.rootfs.diff_ids).toHaveLength(manifest.layers.length);
  await mkdir(unpackTo, { recursive: true });
  for (const layer of manifest.layers) {
    execFileSync('tar', ['-xf', join(layout, 'blobs/sha256', layer.digest.slice('sha256:'.length)), '-C', unpackTo]);
  }
  for (const [path, content] of Object.entries(TREE)) expect(await readFile(join(unpackTo, path), 'utf8'), path).toBe(content);
  expect((await stat(join(unpackTo, 'bin/run.sh'))).mode & 0o7777).toBe(RUN_MODE);
}

let registry: RegistryServer;
beforeAll(async () => {
  registry = await startRegistry();
});
afterAll(async () => {
  await registry?.stop();
});

/**
 * A fixture for exporter `type` in a real store: `oci` and `docker` write
 * archives to fresh files, `image` pushes to fresh repositories of a test
 * registry. `verify` turns what was written into an OCI layout (untar, or
 * skopeo copy) and checks it with `expectImageInLayout`.
 */
async function fixture(type: 'image' | 'oci' | 'docker'): Promise<ExporterFixture> {
  const work = await mkdtemp(join(tmpdir(), `bkt-exporter-${type}-conformance-`));
  const store = await openTestContext();
  const { exporters, close } = createImageExporters();
  let exports = 0;
  const validAttrs = async (): Promise<Attrs> => {
    const n = ++exports;
    if (type === 'image') return { name: `${registry.host}/conformance/${type}-${n}:v1`, push: 'true' };
    return { dest: join(work, `out-${n}.tar`), name: `conformance/${type}:v${n}` };
  };
  const verify = async (attrs: Attrs) => {
    const layout = join(work, `layout-${exports}`);
    if (type === 'oci') {
      await mkdir(layout);
      execFileSync('tar', ['-xf', attrs.dest!, '-C', layout]);
    } else if (type === 'docker') {
      await runTool('skopeo', ['copy', `docker-archive:${attrs.dest!}`, `oci:${layout}:v1`]);
    } else {
      await runTool('skopeo', ['copy', '--src-tls-verify=false', `docker://${attrs.name!}`, `oci:${layout}:v1`]);
    }
    await expectImageInLayout(layout, join(work, `rootfs-${exports}`));
  };
  return {
    exporter: exporters.find((e) => e.type === type)!,
    context: store.ctx,
    result: () => imageResult(store.ctx),
    validAttrs,
    requiredAttrs: type === 'image' ? [] : ['dest'],
    verify,
    cleanup: async () => {
      close();
      await store.close();
      await rm(work, { recursive: true, force: true });
    },
  };
}

describeExporterConformance('oci', () => fixture('oci'));
describeExporterConformance('docker', () => fixture('docker'));
describeExporterConformance('image', () => fixture('image'));
