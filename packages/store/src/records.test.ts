import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Store } from './store.js';

let root: string;
let store: Store;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'bkt-records-'));
  store = await Store.open(root, 'copy');
});
afterEach(async () => {
  await store.close();
  await rm(root, { recursive: true, force: true });
});

describe('pinned records', () => {
  it('survive every prune with what they keep alive, count as not reclaimable, and go with remove()', async () => {
    const { digest } = await store.content.write(new TextEncoder().encode('an image manifest'));
    const images = store.records.namespace('images');
    await images.put('app', { recordType: 'image', description: 'app:1', blobs: [digest], pinned: true });
    await store.records.namespace('scratch').put('tmp', { recordType: 'regular' });

    const removed = await store.prune({ all: true });
    expect(removed.map((r) => r.id)).toEqual(['scratch/tmp']);
    expect(await images.get('app')).toMatchObject({ pinned: true, blobs: [digest] });
    expect(await store.content.has(digest)).toBe(true);
    const usage = (await store.diskUsage()).find((r) => r.id === 'images/app');
    expect(usage?.inUse).toBe(true);

    await images.remove('app');
    expect((await store.prune({ all: true })).map((r) => r.id)).toEqual([digest]);
    expect(await store.content.has(digest)).toBe(false);
  });

  it('an unpinned record is pruned, and a put can pin or unpin it', async () => {
    const ns = store.records.namespace('images');
    await ns.put('a', { recordType: 'image' });
    await ns.put('a', { recordType: 'image', pinned: true });
    expect(await store.prune({ all: true })).toEqual([]);
    await ns.put('a', { recordType: 'image', pinned: false });
    expect((await store.prune({ all: true })).map((r) => r.id)).toEqual(['images/a']);
  });
});
