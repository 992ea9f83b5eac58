/**
 * examples/image builds as its README says: FROM the registry's busybox,
 * pushed to the registry; the `archives` target writes an OCI layout tar that
 * umoci unpacks and runc runs, and a docker archive skopeo reads.
 */
import { cp, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, skopeoInspect, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { REPO, removeDir, tempDir, vertices } from '../helpers.js';
import { bktEnv, run, runcRun } from './lib.js';

let registry: RegistryServer;
let busybox: PushedImage;
let work: string;
let project: string;

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('images-example');
  project = join(work, 'image');
  await cp(join(REPO, 'examples/image'), project, { recursive: true, filter: (src) => !/\.registry$|\.tar$/.test(src) });
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

const build = (...args: string[]) =>
  bktEnv(['build', '--root', join(work, 'store'), '--progress', 'rawjson', ...args], { cwd: project, env: { BKT_EXAMPLE_REGISTRY: registry.host } });

describe('examples/image', () => {
  it('pushes example/app:latest: the busybox layer and one layer per step', async () => {
    const r = await build();
    expect(r.stderr).toMatch(/solver time/);
    expect(r.code).toBe(0);
    const info = (await skopeoInspect(`${registry.host}/example/app:latest`)) as { Layers: string[] };
    expect(info.Layers).toHaveLength(3);
    expect(info.Layers[0]).toBe(busybox.layer.digest);

    const again = await build();
    expect(again.code).toBe(0);
    expect([...vertices(again.stderr).values()].filter((v) => !v.cached)).toEqual([]);
  });

  it('writes the archives target: umoci + runc run the OCI layout, skopeo reads the docker archive', async () => {
    const r = await build('archives');
    expect(r.code).toBe(0);
    const layout = join(work, 'layout');
    await mkdir(layout);
    await run('tar', ['-xf', join(project, 'app.oci.tar'), '-C', layout]);
    const bundle = join(work, 'bundle');
    await run('umoci', ['unpack', '--image', `${layout}:latest`, bundle]);
    expect(await runcRun(bundle, ['/app/hello.sh'])).toBe('hello from an image built by bkt, running as root\n');
    expect(await runcRun(bundle, ['sh', '-c', 'test -e /bin/vi || cat /app/applets.txt'])).toMatch(/^\d{3}\n$/);
    const { stdout } = await run('skopeo', ['inspect', `docker-archive:${join(project, 'app.docker.tar')}`], { encoding: 'utf8' });
    expect((JSON.parse(stdout) as { Layers: string[] }).Layers).toHaveLength(3);
  });
});
