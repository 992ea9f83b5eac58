/** Content-store blob references, blobs in diskUsage, and prune of unreferenced blobs. */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { isBktError, type ContentStore, type Digest } from '@bkt/core';
import { CONTENT_RECORD_TYPE, Store } from './store.js';

let root: string;
let store: Store;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'bkt-refs-'));
  store = await Store.open(root, 'overlay');
});

afterEach(async () => {
  await store.close();
  await rm(root, { recursive: true, force: true });
});

async function blob(text: string): Promise<Digest> {
  return (await store.content.write(new TextEncoder().encode(text))).digest;
}

async function snapshot(file: string) {
  const m = await store.snapshotter.prepare(null, { description: file });
  await writeFile(join(m.path, file), file);
  return m.commit();
}

it('records references by snapshot and by name, answers both ways, and refuses dangling ones', async () => {
  // Backends see only core's ContentStore: the optional methods are there.
  const content: ContentStore = store.content;
  const layer = await blob('layer');
  const s = await snapshot('a');
  await content.addRef!(layer, { snapshot: s.id });
  await content.addRef!(layer, { snapshot: s.id }); // idempotent
  await content.addRef!(layer, { name: 'image:example.com/app:1' });

  expect((await content.refs!({ snapshot: s.id })).map((r) => r.digest)).toEqual([layer]);
  expect((await content.refs!({ digest: layer })).map((r) => r.owner)).toEqual([{ snapshot: s.id }, { name: 'image:example.com/app:1' }]);

  await content.removeRef!(layer, { name: 'image:example.com/app:1' });
  expect((await content.refs!({ digest: layer })).map((r) => r.owner)).toEqual([{ snapshot: s.id }]);

  const absent = `sha256:${'0'.repeat(64)}` as Digest;
  expect(isBktError(await content.addRef!(absent, { name: 'x' }).catch((e: unknown) => e), 'NOT_FOUND')).toBe(true);
  expect(isBktError(await content.addRef!(layer, { snapshot: 'nosuchsnap' }).catch((e: unknown) => e), 'NOT_FOUND')).toBe(true);
  expect(isBktError(await content.addRef!(layer, { name: '' }).catch((e: unknown) => e), 'INVALID_ARGUMENT')).toBe(true);
});

it('lists blobs in diskUsage and prunes those nothing references, with the snapshots that referenced them', async () => {
  const kept = await blob('kept by a name');
  const layer = await blob('layer of a snapshot');
  const loose = await blob('unreferenced');
  const s = await snapshot('a');
  await store.content.addRef(kept, { name: 'image:keep' });
  await store.content.addRef(layer, { snapshot: s.id });

  const usage = await store.diskUsage();
  const blobs = usage.filter((r) => r.recordType === CONTENT_RECORD_TYPE);
  expect(blobs.map((r) => r.id).sort()).toEqual([kept, layer, loose].sort());
  expect(blobs.every((r) => r.size > 0 && !r.mutable)).toBe(true);
  expect(blobs.find((r) => r.id === layer)!.description).toContain(`snapshot ${s.id}`);
  expect(blobs.find((r) => r.id === loose)!.description).toContain('unreferenced');
  expect(blobs.filter((r) => r.inUse).map((r) => r.id)).toEqual([kept]); // prune never takes a named blob

  // A snapshot in use keeps its blob.
  store.snapshotter.acquire(s.id);
  expect((await store.prune()).map((r) => r.id)).toEqual([loose]);
  expect(existsSync(store.content.path(layer))).toBe(true);
  store.snapshotter.release(s.id);

  // Its snapshot gone, the layer blob goes in the same prune; the named one stays.
  const removed = (await store.prune({ all: true })).map((r) => r.id);
  expect(removed.sort()).toEqual([layer, s.id].sort());
  expect(await store.content.has(layer)).toBe(false);
  expect(await store.content.has(kept)).toBe(true);
  expect(await store.content.refs({ snapshot: s.id })).toEqual([]);
});

it('keepDuration keeps recent blobs; keepStorage counts blobs', async () => {
  const old = await blob('old blob');
  const fresh = await blob('fresh blob');
  const past = new Date(Date.now() - 3600_000);
  await utimes(store.content.path(old), past, past);

  expect((await store.prune({ keepDuration: 60_000 })).map((r) => r.id)).toEqual([old]);
  expect(await store.content.has(fresh)).toBe(true);

  const size = (await store.diskUsage()).find((r) => r.id === fresh)!.size;
  expect(await store.prune({ keepStorage: size })).toEqual([]);
  expect((await store.prune({ keepStorage: 0 })).map((r) => r.id)).toEqual([fresh]);
});

it('references survive reopening; a removed snapshot row drops its references', async () => {
  const layer = await blob('layer');
  const s = await snapshot('a');
  await store.content.addRef(layer, { snapshot: s.id });
  await store.close();
  store = await Store.open(root);
  expect((await store.content.refs({ digest: layer })).map((r) => r.owner)).toEqual([{ snapshot: s.id }]);
  await store.snapshotter.remove([s.id]);
  expect(await store.content.refs({ digest: layer })).toEqual([]);
});
