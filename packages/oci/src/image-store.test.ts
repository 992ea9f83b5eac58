import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Digest } from '@bkt/core';
import { openTestContext, type TestContext } from '@bkt/store/testing';
import { addLayerSource, chainIds, listImageRecords, readImageRecord, readLayerRecord, removeImageRecord, snapshotForChain, writeImageRecord, writeLayerRecord } from './image-store.js';
import { digestOf } from './digest.js';

let t: TestContext;
beforeEach(async () => {
  t = await openTestContext({ snapshotter: 'copy' });
});
afterEach(async () => {
  await t.close();
});

const diffIds = [digestOf(new TextEncoder().encode('layer 1')), digestOf(new TextEncoder().encode('layer 2'))];

describe('the local image store (records of @bkt/store)', () => {
  it('chain ids follow the image spec', () => {
    const [a, b] = chainIds(diffIds);
    expect(a).toBe(diffIds[0]);
    expect(b).toBe(digestOf(new TextEncoder().encode(`${diffIds[0]} ${diffIds[1]}`)));
  });

  it('a layer record names its blob and finds its snapshot by chain id; a prune takes both with the snapshot', async () => {
    const snapshot = await (await t.ctx.snapshotter.prepare(null)).commit();
    const blob = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${'b'.repeat(64)}` as Digest, size: 10 };
    const [chainId] = chainIds(diffIds);
    await writeLayerRecord(t.ctx.records!, { snapshotId: snapshot.id, diffId: diffIds[0]!, chainId: chainId!, blob, sources: ['r.example/a'] });
    const record = await readLayerRecord(t.ctx.records!, snapshot.id);
    expect(record).toEqual({ snapshotId: snapshot.id, diffId: diffIds[0], chainId, blob, sources: ['r.example/a'] });
    expect((await snapshotForChain(t.ctx.records!, t.ctx.snapshotter, chainId!))?.id).toBe(snapshot.id);

    await addLayerSource(t.ctx.records!, record!, 'r.example/b');
    expect((await readLayerRecord(t.ctx.records!, snapshot.id))?.sources).toEqual(['r.example/a', 'r.example/b']);

    const removed = (await t.store.prune({ all: true })).map((r) => r.id);
    expect(removed).toEqual(expect.arrayContaining([`image-layers/${snapshot.id}`, `image-chains/${chainId!.slice(7)}`, snapshot.id]));
    expect(await readLayerRecord(t.ctx.records!, snapshot.id)).toBeUndefined();
    expect(await snapshotForChain(t.ctx.records!, t.ctx.snapshotter, chainId!)).toBeUndefined();
  });

  it('a named image survives every prune', async () => {
    const target = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'c'.repeat(64)}` as Digest, size: 100 };
    await writeImageRecord(t.ctx.records!, { name: 'docker.io/library/app:1', target });
    await t.store.prune({ all: true });
    expect(await readImageRecord(t.ctx.records!, 'docker.io/library/app:1')).toEqual({ name: 'docker.io/library/app:1', target });
    expect(await readImageRecord(t.ctx.records!, 'docker.io/library/other:1')).toBeUndefined();
  });

  it('lists named images by name; removing one leaves the others', async () => {
    const target = (c: string) => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${c.repeat(64)}` as Digest, size: 100 });
    await writeImageRecord(t.ctx.records!, { name: 'docker.io/library/b:1', target: target('b') });
    await writeImageRecord(t.ctx.records!, { name: 'docker.io/library/a:1', target: target('a') });
    expect(await listImageRecords(t.ctx.records!)).toEqual([
      { name: 'docker.io/library/a:1', target: target('a') },
      { name: 'docker.io/library/b:1', target: target('b') },
    ]);
    expect(await removeImageRecord(t.ctx.records!, 'docker.io/library/a:1')).toBe(true);
    expect(await removeImageRecord(t.ctx.records!, 'docker.io/library/a:1')).toBe(false);
    expect(await readImageRecord(t.ctx.records!, 'docker.io/library/a:1')).toBeUndefined();
    expect((await listImageRecords(t.ctx.records!)).map((r) => r.name)).toEqual(['docker.io/library/b:1']);
  });
});
