/**
 * `-t`, `--push` and `--platform` with a config target apply to that target
 * (they used to switch `bkt build` to a Dockerfile build): in a project that
 * also holds a Dockerfile that cannot build, the target is pushed to a real
 * registry under `-t`'s name or its configured one, and `--platform` reaches
 * the target's build function, its ops and its image config.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { skopeoInspect, startRegistry, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { HOST_ARCH } from '../images/lib.js';
import { ociArchiveConfig, vertexNames, writeProject, type Project } from './lib.js';

let registry: RegistryServer;
let work: string;
let project: Project;

const config = (host: string) => `
import { defineConfig } from '@bkt/core';
import { mkfile, scratch } from '@bkt/llb';

export default defineConfig({
  targets: {
    // The platform the build function is given, as a file.
    app: {
      build: ({ platform }) => scratch().file(mkfile('/platform', 0o644, \`\${platform.os}/\${platform.architecture}\`)),
      image: { cmd: ['/nothing'] },
    },
    named: {
      build: scratch().file(mkfile('/named', 0o644, 'named')),
      outputs: [{ type: 'image', name: '${host}/e2e/named:1' }],
    },
    tree: {
      build: scratch().file(mkfile('/tree', 0o644, 'tree')),
      outputs: [{ type: 'local', dest: 'out' }],
    },
  },
});
`;

beforeAll(async () => {
  registry = await startRegistry();
  work = await tempDir('targets-flags');
  project = await writeProject(work, config(registry.host));
  // A Dockerfile build of this project would fail: the builds below are the config's targets.
  await writeFile(join(project.dir, 'Dockerfile'), 'FROM scratch\nCOPY missing.txt /\n');
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

describe('-t, --push, --platform with a config target', () => {
  it('-t NAME --push pushes the target under NAME', async () => {
    const name = `${registry.host}/e2e/tagged:1`;
    const r = await project.build(['app', '-t', name, '--push']);
    expect(r.stderr).toMatch(/solver time/);
    expect(r.code).toBe(0);
    expect(vertexNames(r.stderr).some((n) => /Dockerfile/.test(n))).toBe(false);
    const info = (await skopeoInspect(name)) as { Layers: string[]; Architecture: string };
    expect(info.Layers).toHaveLength(1);
    expect(info.Architecture).toBe(HOST_ARCH);
  });

  it('--push pushes the name of the target\'s own image output', async () => {
    const r = await project.build(['named', '--push']);
    expect(r.code).toBe(0);
    expect(((await skopeoInspect(`${registry.host}/e2e/named:1`)) as { Layers: string[] }).Layers).toHaveLength(1);
  });

  it('--push with a target whose output is no image is an error naming the target, before anything runs', async () => {
    const r = await project.build(['tree', '--push']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: target "tree": --push and an output of type=local can't be used together/m);
    expect(r.stderr).not.toMatch(/solver time/);
  });

  it('--platform reaches the build function, the ops and the image config', async () => {
    const r = await project.build(['app', '--platform', 'linux/arm64', '-o', 'type=oci,dest=arm64.tar', '-o', 'type=local,dest=arm64']);
    expect(r.code).toBe(0);
    expect(await readFile(join(project.dir, 'arm64/platform'), 'utf8')).toBe('linux/arm64');
    const arm = await ociArchiveConfig(join(project.dir, 'arm64.tar'));
    expect([arm.os, arm.architecture]).toEqual(['linux', 'arm64']);
    expect(arm.config.Cmd).toEqual(['/nothing']);

    const host = await project.build(['app', '-o', 'type=local,dest=host']);
    expect(host.code).toBe(0);
    expect(await readFile(join(project.dir, 'host/platform'), 'utf8')).toBe(`linux/${HOST_ARCH}`);
  });

  it('a bad --platform is an error naming the flag', async () => {
    const r = await project.build(['app', '--platform', 'linux/']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: --platform linux\/: invalid platform/m);
  });
});
