import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BktError, type ContentStore, type Digest } from '@bkt/core';
import { MediaType, digestOf, type Descriptor } from '@bkt/oci';
import type { BuiltImage } from './image.js';
import { writeOciLayout } from './layout.js';

/** A content store of files named by their digest in `dir`. */
function directoryStore(dir: string): ContentStore {
  const path = (d: Digest) => join(dir, d.replace(':', '-'));
  return {
    has: async (d) => stat(path(d)).then(() => true, () => false),
    path,
    write: async (data) => {
      if (!(data instanceof Uint8Array)) throw new BktError('UNIMPLEMENTED', 'bytes only');
      const digest = digestOf(data);
      await writeFile(path(digest), data);
      return { digest, size: data.length };
    },
  };
}

describe('an OCI layout directory (tar=false)', () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'bkt-layout-'));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('holds copies of the store blobs: writing to an exported blob leaves the store intact', async () => {
    const store = directoryStore(join(work, 'store'));
    await mkdir(join(work, 'store'));
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
    const configDesc: Descriptor = { mediaType: MediaType.OciConfig, ...(await store.write(config)) };
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: configDesc, layers: [] }));
    const root: Descriptor = { mediaType: MediaType.OciManifest, ...(await store.write(manifest)) };
    const image: BuiltImage = { root, manifests: [], blobs: [configDesc, root] };

    const dest = join(work, 'layout');
    await writeOciLayout(image, store, { names: [], dest, tar: false });
    const exported = join(dest, 'blobs/sha256', configDesc.digest.slice('sha256:'.length));
    expect(digestOf(await readFile(exported))).toBe(configDesc.digest);
    expect((await stat(exported)).ino).not.toBe((await stat(store.path(configDesc.digest))).ino);

    await writeFile(exported, 'edited by the user\n', { flag: 'r+' });
    expect(digestOf(await readFile(store.path(configDesc.digest)))).toBe(configDesc.digest);
    expect(digestOf(await readFile(store.path(root.digest)))).toBe(root.digest);
  });
});
