import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BktError, type BuildClient, type ContentStore, type Digest } from '@bkt/core';
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

/** The tar tar-stream writes for the same files (the writer bkt used before its own): the reference for the bytes. */
async function tarStreamTar(files: { path: string; bytes: Buffer }[], mtime: Date): Promise<Buffer> {
  const pack = tar.pack();
  const base = { uid: 0, gid: 0, uname: '', gname: '', mtime };
  const parts: Buffer[] = [];
  const reading = (async () => {
    for await (const c of pack) parts.push(c as Buffer);
  })();
  const dirs = new Set<string>();
  for (const f of files) for (let d = f.path.split('/').slice(0, -1); d.length > 0; d = d.slice(0, -1)) dirs.add(d.join('/'));
  for (const d of [...dirs].sort()) pack.entry({ ...base, name: `${d}/`, type: 'directory', mode: 0o755 });
  for (const f of files) pack.entry({ ...base, name: f.path, type: 'file', mode: 0o644, size: f.bytes.length }, f.bytes);
  pack.finalize();
  await reading;
  return Buffer.concat(parts);
}

describe('an OCI layout tar', () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'bkt-layout-tar-'));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('holds the blobs whole, byte for byte the tar tar-stream writes (pinned), whatever their sizes', async () => {
    const store = directoryStore(join(work, 'store'));
    await mkdir(join(work, 'store'));
    // Blobs of sizes around the 1 MiB pieces the bodies are read in and the 64 KiB gathered with headers.
    const bytes = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed * 7 + (i >> 11)) & 0xff));
    const layers: Descriptor[] = [];
    for (const [i, n] of [0, 1, 511, 64 * 1024, 64 * 1024 + 1, 1024 * 1024, 2.5 * 1024 * 1024 + 3].entries()) {
      layers.push({ mediaType: MediaType.OciLayerGzip, ...(await store.write(bytes(n, i))) });
    }
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
    const configDesc: Descriptor = { mediaType: MediaType.OciConfig, ...(await store.write(config)) };
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: configDesc, layers }));
    const root: Descriptor = { mediaType: MediaType.OciManifest, ...(await store.write(manifest)) };
    const image: BuiltImage = { root, manifests: [], blobs: [...layers, configDesc, root] };

    const dest = join(work, 'image.tar');
    const mtime = new Date(1_700_000_000_500);
    await writeOciLayout(image, store, { names: ['example.com/a/b:v1'], dest, tar: true, mtime });
    const got = await readFile(dest);

    const blobFiles = await Promise.all(
      image.blobs.map(async (b) => ({ path: `blobs/sha256/${b.digest.slice('sha256:'.length)}`, bytes: await readFile(store.path(b.digest)) })),
    );
    const layoutDir = join(work, 'dir');
    await writeOciLayout(image, store, { names: ['example.com/a/b:v1'], dest: layoutDir, tar: false });
    const want = await tarStreamTar(
      [
        { path: 'oci-layout', bytes: await readFile(join(layoutDir, 'oci-layout')) },
        { path: 'index.json', bytes: await readFile(join(layoutDir, 'index.json')) },
        ...blobFiles,
      ],
      mtime,
    );
    expect(got.equals(want)).toBe(true);
    expect(createHash('sha256').update(got).digest('hex')).toBe('0a0239ae19852c509b737126bd1d16c1675a6d47751b1cb57f093dfd8db4dd6b');
    const listing = execFileSync('tar', ['-tf', dest]).toString().trim().split('\n');
    expect(listing).toEqual(['blobs/', 'blobs/sha256/', 'oci-layout', 'index.json', ...blobFiles.map((f) => f.path)]);
    for (const f of blobFiles) expect(execFileSync('tar', ['-xOf', dest, f.path], { maxBuffer: 8 << 20 }).equals(f.bytes)).toBe(true);
  });

  it('fails with the writer\'s error, aborts the output and closes every blob it opened', async () => {
    const store = directoryStore(join(work, 'store-fail'));
    await mkdir(join(work, 'store-fail'));
    const big: Descriptor = { mediaType: MediaType.OciLayerGzip, ...(await store.write(Buffer.alloc(5 * 1024 * 1024 + 7, 1))) };
    const image: BuiltImage = { root: big, manifests: [], blobs: [big] };
    let written = 0;
    let aborted = false;
    const client = {
      openFile: async () => ({
        stream: new Writable({
          write(chunk: Buffer, _enc, cb) {
            written += chunk.length;
            cb(written > 2 * 1024 * 1024 ? new Error('disk full') : null);
          },
        }),
        commit: async () => undefined,
        abort: async () => {
          aborted = true;
        },
      }),
    } as unknown as BuildClient;
    const fds = async () => (await readdir('/proc/self/fd')).length;
    const before = await fds();
    await expect(writeOciLayout(image, store, { names: [], dest: 'x.tar', tar: true, client })).rejects.toThrow(/disk full/);
    expect(aborted).toBe(true);
    expect(await fds()).toBe(before);
  });
});
