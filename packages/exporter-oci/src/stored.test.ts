import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildResult, Digest, Snapshot } from '@bkt/core';
import { createHostClient } from '@bkt/fsutil';
import { ImageSource } from '@bkt/source-image';
import { openTestContext, type TestContext } from '@bkt/store/testing';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { createImageExporters } from './exporters.js';
import { listStoredImages, removeStoredImage, saveStoredImage } from './stored.js';

describe('stored images: list, save, remove', () => {
  let registry: RegistryServer;
  let pushed: PushedImage;
  let t: TestContext;
  let work: string;
  let top: Snapshot;
  const source = new ImageSource();
  const { exporters, close } = createImageExporters();
  const store = (name: string, result: BuildResult) =>
    exporters.find((e) => e.type === 'image')!.resolve({ name }).then((i) => i.export(result, t.ctx));
  const imageStore = () => ({ records: t.ctx.records!, content: t.ctx.content });
  const skopeo = (...args: string[]) => JSON.parse(execFileSync('skopeo', args, { encoding: 'utf8' })) as Record<string, unknown>;
  const opts = (dest: string, format: 'docker' | 'oci') => ({ format, dest, client: createHostClient(), what: 'save test' });

  beforeAll(async () => {
    registry = await startRegistry();
    pushed = await pushBusyboxImage(registry, 'test/busybox');
    t = await openTestContext();
    work = await mkdtemp(join(tmpdir(), 'bkt-stored-'));
    const base = await (await source.resolve(source.identify('docker-image', pushed.reference, {}), t.ctx)).snapshot(t.ctx);
    const m = await t.ctx.snapshotter.prepare(base);
    await writeFile(join(m.path, 'hello.txt'), 'hello from a stored image\n');
    top = await m.commit();
  });
  afterAll(async () => {
    close();
    source.close();
    await t?.close();
    await registry?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('lists a stored image with its digest, image id, platform, size and created time', async () => {
    const res = await store('app:v1', { ref: top, metadata: {} });
    const [image] = await listStoredImages(imageStore());
    const manifest = JSON.parse(await readFile(t.ctx.content.path(res['containerimage.digest'] as Digest), 'utf8')) as {
      config: { digest: string; size: number };
      layers: { size: number }[];
    };
    expect(image).toMatchObject({
      name: 'docker.io/library/app:v1',
      target: { digest: res['containerimage.digest'] },
      configDigest: res['containerimage.config.digest'],
      platforms: [{ os: 'linux' }],
    });
    const manifestSize = (await readFile(t.ctx.content.path(res['containerimage.digest'] as Digest))).length;
    expect(image!.size).toBe(manifestSize + manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0));
    expect(Date.now() - image!.created!.getTime()).toBeLessThan(60_000);
  });

  it('saves a docker archive skopeo reads with the same layers, and an OCI tar with the same manifest digest', async () => {
    const res = await store('app:v1', { ref: top, metadata: {} });
    const archive = join(work, 'app.docker.tar');
    await saveStoredImage(imageStore(), 'app:v1', opts(archive, 'docker'));
    const fromArchive = skopeo('inspect', `docker-archive:${archive}`);
    // skopeo names a docker archive's layers by their diff ids.
    const config = JSON.parse(await readFile(t.ctx.content.path(res['containerimage.config.digest'] as Digest), 'utf8')) as { rootfs: { diff_ids: string[] } };
    expect(fromArchive.Layers).toEqual(config.rootfs.diff_ids);
    expect(config.rootfs.diff_ids).toHaveLength(2);
    const dockerManifest = JSON.parse(execFileSync('tar', ['-xOf', archive, 'manifest.json'], { encoding: 'utf8' })) as { RepoTags: string[] }[];
    expect(dockerManifest.map((m) => m.RepoTags)).toEqual([['app:v1']]);

    const oci = join(work, 'app.oci.tar');
    await saveStoredImage(imageStore(), 'docker.io/library/app:v1', opts(oci, 'oci'));
    expect(skopeo('inspect', `oci-archive:${oci}`).Digest).toBe(res['containerimage.digest']);
  });

  it('refuses a docker archive of a multi-platform image, naming --format oci; saves it as OCI', async () => {
    const res = await store('multi:v1', { ref: null, refs: { 'linux/amd64': top, 'linux/arm64': top }, metadata: {} });
    const listed = (await listStoredImages(imageStore())).find((i) => i.name === 'docker.io/library/multi:v1')!;
    expect(listed.platforms.map((p) => `${p.os}/${p.architecture}`)).toEqual(['linux/amd64', 'linux/arm64']);
    expect(listed.configDigest).toBeUndefined();
    const err = await saveStoredImage(imageStore(), 'multi:v1', opts(join(work, 'multi.tar'), 'docker')).catch((e: unknown) => e);
    expect(String(err)).toMatch(/docker.io\/library\/multi:v1 holds 2 platforms .*--format oci/);
    const oci = join(work, 'multi.oci.tar');
    await saveStoredImage(imageStore(), 'multi:v1', opts(oci, 'oci'));
    const raw = skopeo('inspect', '--raw', `oci-archive:${oci}`) as { manifests: unknown[] };
    expect(raw.manifests).toHaveLength(2);
    expect(res['containerimage.digest']).toMatch(/^sha256:/);
  });

  it('removes the record and the name\'s references, so a prune takes the blobs; an unknown name is an error listing the stored ones', async () => {
    // A tree of its own: an image of `top` would be app:v1's very image (same config and manifest), kept by that name.
    const m = await t.ctx.snapshotter.prepare(top);
    await writeFile(join(m.path, 'gone.txt'), 'gone\n');
    const res = await store('gone:v1', { ref: await m.commit(), metadata: {} });
    const digest = res['containerimage.digest'] as Digest;
    const config = res['containerimage.config.digest'] as Digest;
    expect(await removeStoredImage(imageStore(), 'gone:v1')).toBe('docker.io/library/gone:v1');
    expect((await listStoredImages(imageStore())).map((i) => i.name)).not.toContain('docker.io/library/gone:v1');
    const pruned = (await t.store.prune({ all: true })).map((r) => r.id);
    expect(pruned).toEqual(expect.arrayContaining([digest, config]));
    expect(await t.ctx.content.has(digest)).toBe(false);
    const err = await removeStoredImage(imageStore(), 'gone:v1').catch((e: unknown) => e);
    expect(String(err)).toMatch(/no image docker.io\/library\/gone:v1 in the local image store \(stored: docker.io\/library\/app:v1, docker.io\/library\/multi:v1\)/);
  });
});
