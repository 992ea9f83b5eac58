import { execFileSync } from 'node:child_process';
import { appendFile, cp, mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBktError } from '@bkt/core';
import { digestOf, MediaType, formatPlatform, hostPlatform } from '@bkt/oci';
import { RegistryClient, staticCredentials } from '@bkt/registry';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { openTestContext, type TestContext } from '@bkt/store/testing';
import { ImageSource } from './source.js';
import { readLayerRecord } from '@bkt/oci';


describe('docker-image source against a real registry', () => {
  let registry: RegistryServer;
  let pushed: PushedImage;
  let t: TestContext;
  const source = new ImageSource();

  beforeAll(async () => {
    registry = await startRegistry();
    pushed = await pushBusyboxImage(registry, 'test/busybox');
    t = await openTestContext();
  });
  afterAll(async () => {
    source.close();
    await t?.close();
    await registry?.stop();
  });

  it('resolves a tag to the manifest digest, pins it, and unpacks the layers', async () => {
    const id = source.identify('docker-image', pushed.reference, {});
    expect(id.ref).toBe(pushed.reference);
    expect(id.platform).toEqual(hostPlatform());
    const instance = await source.resolve(id, t.ctx);
    const key = await instance.cacheKey(t.ctx);
    expect(key.key).toBe(pushed.manifest.digest);
    expect(key.pin).toBe(`docker-image://${pushed.reference}@${pushed.manifest.digest}`);

    const snap = await instance.snapshot(t.ctx);
    const m = await snap.mount();
    try {
      expect(await readFile(join(m.path, 'etc/passwd'), 'utf8')).toContain('root:x:0:0');
      expect(execFileSync(join(m.path, 'bin/busybox'), ['echo', 'ok']).toString()).toBe('ok\n');
    } finally {
      await m.release();
    }
    // The layer blob is in the content store and recorded against the snapshot.
    expect(await t.ctx.content.has(pushed.layer.digest)).toBe(true);
    const rec = await readLayerRecord(t.ctx.records!, snap.id);
    expect(rec).toMatchObject({ diffId: pushed.diffId, blob: { digest: pushed.layer.digest }, sources: [`${registry.host}/test/busybox`] });

    // A second resolve reuses the unpacked snapshot (same chain id).
    const again = await (await source.resolve(id, t.ctx)).snapshot(t.ctx);
    expect(again.id).toBe(snap.id);
  });

  it('exposes the image config as ResolveImageConfig does', async () => {
    const res = await source.resolveImageConfig(pushed.reference, {}, t.ctx);
    expect(res.digest).toBe(pushed.manifest.digest);
    expect(res.ref).toBe(`${pushed.reference}@${pushed.manifest.digest}`);
    const config = JSON.parse(Buffer.from(res.config).toString()) as { config: { Env: string[]; Cmd: string[] } };
    expect(config.config.Cmd).toEqual(['sh']);
    expect(config.config.Env[0]).toMatch(/^PATH=/);
  });

  it('selects the platform from an index, and names the available ones when absent', async () => {
    const client = new RegistryClient({ credentials: staticCredentials({}) });
    try {
      const index = {
        schemaVersion: 2,
        mediaType: MediaType.OciIndex,
        manifests: [
          { ...pushed.manifest, mediaType: MediaType.OciManifest, platform: { os: 'linux', architecture: 's390x' } },
          { ...pushed.manifest, mediaType: MediaType.OciManifest, platform: { os: 'linux', architecture: 'riscv64' } },
        ],
      };
      const put = await client.putManifest(`${registry.host}/test/busybox:multi`, Buffer.from(JSON.stringify(index)));
      const ref = `${registry.host}/test/busybox:multi`;
      const s390x = await source.resolve(source.identify('docker-image', ref, {}, { os: 'linux', architecture: 's390x' }), t.ctx);
      expect((await s390x.cacheKey(t.ctx)).key).toBe(pushed.manifest.digest);
      expect((await s390x.cacheKey(t.ctx)).pin).toBe(`docker-image://${ref}@${put.digest}`);

      const err = await source
        .resolve(source.identify('docker-image', ref, {}, { os: 'linux', architecture: 'arm64' }), t.ctx)
        .catch((e: unknown) => e);
      expect(isBktError(err, 'NOT_FOUND')).toBe(true);
      expect((err as Error).message).toBe(`${ref} has no image for platform linux/arm64 (available: linux/s390x, linux/riscv64)`);
    } finally {
      client.close();
    }
  });

  it('references each layer blob from its snapshot: prune keeps the blob with the snapshot and removes unreferenced ones', async () => {
    const own = await openTestContext();
    try {
      const { ctx, store } = own;
      // `internal` snapshots stay in a prune without `all` (as buildctl prune).
      const id = source.identify('docker-image', pushed.reference, { 'image.recordtype': 'internal' });
      const snap = await (await source.resolve(id, ctx)).snapshot(ctx);
      expect(await ctx.content.refs!({ snapshot: snap.id })).toMatchObject([{ digest: pushed.layer.digest, owner: { snapshot: snap.id } }]);
      expect(await ctx.content.has(pushed.config.digest)).toBe(true);

      const removed = (await store.prune({})).map((r) => r.id);
      // The manifest and config nothing references go; the kept snapshot keeps its layer blob.
      expect(removed).toEqual(expect.arrayContaining([pushed.manifest.digest, pushed.config.digest]));
      expect(removed).not.toContain(pushed.layer.digest);
      expect(removed).not.toContain(snap.id);
      expect(await ctx.content.has(pushed.config.digest)).toBe(false);
      expect(await ctx.content.has(pushed.layer.digest)).toBe(true);
      expect(await readLayerRecord(ctx.records!, snap.id)).toMatchObject({ blob: { digest: pushed.layer.digest } });

      // With `all`, the snapshot goes, and its blob in the same prune.
      const all = (await store.prune({ all: true })).map((r) => r.id);
      expect(all).toEqual(expect.arrayContaining([snap.id, pushed.layer.digest]));
      expect(await ctx.content.has(pushed.layer.digest)).toBe(false);
    } finally {
      await own.close();
    }
  });

  it('fails clearly for an unknown image and a malformed reference', async () => {
    const missing = `${registry.host}/test/nothing:here`;
    const err = await source.resolve(source.identify('docker-image', missing, {}), t.ctx).catch((e: unknown) => e);
    expect(isBktError(err, 'NOT_FOUND')).toBe(true);
    expect((err as Error).message).toContain(`image ${missing} not found`);

    let bad: unknown;
    try {
      source.identify('docker-image', 'Not A/Ref::', {});
    } catch (e) {
      bad = e;
    }
    expect(isBktError(bad, 'INVALID_ARGUMENT')).toBe(true);
    expect((bad as Error).message).toContain('invalid image reference "Not A/Ref::"');
    expect(() => source.identify('docker-image', pushed.reference, { 'image.resolvemode': 'sometimes' })).toThrow(/image\.resolvemode/);
  });

  it('uses pinned content without the network in the default mode', async () => {
    const pinned = `${registry.host}/test/busybox@${pushed.manifest.digest}`;
    await registry.stop();
    const instance = await source.resolve(source.identify('docker-image', pinned, {}), t.ctx);
    expect((await instance.cacheKey(t.ctx)).key).toBe(pushed.manifest.digest);
    const pull = await source.resolve(source.identify('docker-image', pinned, { 'image.resolvemode': 'pull' }), t.ctx).catch((e: unknown) => e);
    expect(isBktError(pull)).toBe(true);
  });
});

describe('oci-layout source', () => {
  let t: TestContext;
  let layout: string;
  let work: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'bkt-layout-'));
    layout = join(work, 'layout');
    await mkdir(join(layout, 'blobs/sha256'), { recursive: true });
    const put = async (bytes: Buffer) => {
      const d = digestOf(bytes);
      await writeFile(join(layout, 'blobs/sha256', d.slice(7)), bytes);
      return { digest: d, size: bytes.length };
    };
    // Two layers: gzip, then zstd (deleting a file of the first).
    const l1dir = join(work, 'l1');
    await mkdir(join(l1dir, 'etc'), { recursive: true });
    await writeFile(join(l1dir, 'etc/one'), 'one\n');
    await writeFile(join(l1dir, 'etc/doomed'), 'doomed\n');
    const l1tar = execFileSync('tar', ['-C', l1dir, '-cf', '-', '.']);
    const l2dir = join(work, 'l2');
    await mkdir(join(l2dir, 'etc'), { recursive: true });
    await writeFile(join(l2dir, 'etc/two'), 'two\n');
    await writeFile(join(l2dir, 'etc/.wh.doomed'), '');
    const l2tar = execFileSync('tar', ['-C', l2dir, '-cf', '-', '.']);
    const l1 = await put(execFileSync('gzip', ['-c'], { input: l1tar }));
    const l2 = await put(execFileSync('zstd', ['-q', '-c'], { input: l2tar }));
    const p = hostPlatform();
    const config = await put(
      Buffer.from(JSON.stringify({ architecture: p.architecture, os: p.os, rootfs: { type: 'layers', diff_ids: [digestOf(l1tar), digestOf(l2tar)] }, config: { WorkingDir: '/etc' } })),
    );
    const manifest = await put(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MediaType.OciManifest,
          config: { mediaType: MediaType.OciConfig, ...config },
          layers: [
            { mediaType: MediaType.OciLayerGzip, ...l1 },
            { mediaType: MediaType.OciLayerZstd, ...l2 },
          ],
        }),
      ),
    );
    await writeFile(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await writeFile(
      join(layout, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ mediaType: MediaType.OciManifest, ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }],
      }),
    );
    t = await openTestContext({ localDirs: { mystore: layout } });
  });
  afterAll(async () => {
    await t?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('reads an image (gzip and zstd layers, whiteouts) from a layout given as a local directory', async () => {
    const source = new ImageSource();
    const instance = await source.resolve(source.identify('oci-layout', 'mystore:v1', {}), t.ctx);
    const snap = await instance.snapshot(t.ctx);
    const m = await snap.mount();
    try {
      expect(await readFile(join(m.path, 'etc/one'), 'utf8')).toBe('one\n');
      expect(await readFile(join(m.path, 'etc/two'), 'utf8')).toBe('two\n');
      await expect(readFile(join(m.path, 'etc/doomed'))).rejects.toThrow(/ENOENT/);
    } finally {
      await m.release();
    }
    const key = await instance.cacheKey(t.ctx);
    expect(key.pin).toMatch(/^oci-layout:\/\/mystore@sha256:/);
    const err = await source.resolve(source.identify('oci-layout', 'other:v1', {}), t.ctx).catch((e: unknown) => e);
    expect((err as Error).message).toContain('has no OCI layout store "other" (local directories: mystore)');
    expect(formatPlatform(hostPlatform())).toMatch(/^linux\//);
  });

  /** A copy of the good layout changed by `change`, resolved and unpacked in a fresh store: the error, or undefined. */
  async function buildCopy(name: string, change: (dir: string, blobs: Blobs) => Promise<void>, ref = 'copy:v1'): Promise<Error | undefined> {
    const dir = join(work, name);
    await cp(layout, dir, { recursive: true });
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
    const manifestDigest = index.manifests[0].digest as string;
    const manifest = JSON.parse(await readFile(join(dir, 'blobs/sha256', manifestDigest.slice(7)), 'utf8'));
    await change(dir, { index, manifest: manifestDigest, layer: manifest.layers[0].digest, path: (d: string) => join(dir, 'blobs/sha256', d.slice(7)) });
    const ctx = await openTestContext({ localDirs: { copy: dir } });
    try {
      const source = new ImageSource();
      const instance = await source.resolve(source.identify('oci-layout', ref.replace('MANIFEST', manifestDigest), {}), ctx.ctx);
      await instance.snapshot(ctx.ctx);
      return undefined;
    } catch (err) {
      return err as Error;
    } finally {
      await ctx.close();
    }
  }
  type Blobs = { index: { manifests: Record<string, unknown>[] }; manifest: string; layer: string; path: (d: string) => string };

  it('checks the index.json entry it resolves (a negative size is refused)', async () => {
    const err = await buildCopy('negative', async (dir, b) => {
      b.index.manifests[0].size = -1;
      await writeFile(join(dir, 'index.json'), JSON.stringify(b.index));
    });
    expect(isBktError(err) && err.code).toBe('INVALID_ARGUMENT');
    expect(err?.message).toMatch(/index\.json: invalid descriptor: size -1 of sha256:/);
  });

  it('refuses a blob that is a FIFO, without waiting for a writer', async () => {
    const started = Date.now();
    const err = await buildCopy('fifo', async (_dir, b) => {
      await rm(b.path(b.layer));
      execFileSync('mkfifo', [b.path(b.layer)]);
    });
    expect(err?.message).toMatch(/blob sha256:[0-9a-f]{64} is not a regular file \(a FIFO\)/);
    expect(Date.now() - started).toBeLessThan(4_000);
  });

  it('refuses a blob that is a symlink, into or out of the layout (nothing is read through it)', async () => {
    for (const target of ['/dev/zero', 'outside']) {
      const err = await buildCopy(`symlink-${target.replace(/\W/g, '')}`, async (dir, b) => {
        const outside = join(dir, '..', `${target.replace(/\W/g, '')}-blob`);
        await rename(b.path(b.layer), outside);
        await symlink(target === 'outside' ? outside : target, b.path(b.layer));
      });
      expect(err?.message, target).toMatch(/blob sha256:[0-9a-f]{64} is a symlink, not a regular file/);
    }
  });

  it('refuses blobs/sha256 when it is a symlink out of the layout', async () => {
    const err = await buildCopy('linked-dir', async (dir) => {
      await rename(join(dir, 'blobs/sha256'), join(dir, '..', 'linked-dir-blobs'));
      await symlink(join(dir, '..', 'linked-dir-blobs'), join(dir, 'blobs/sha256'));
    });
    expect(err?.message).toContain('blobs/sha256 is not a directory of the layout');
  });

  it('reads no more than the descriptor\'s size: a longer blob file is refused', async () => {
    const err = await buildCopy('longer', async (_dir, b) => {
      await appendFile(b.path(b.layer), Buffer.alloc(1024 * 1024));
    });
    expect(err?.message).toMatch(/blob sha256:[0-9a-f]{64} has \d+ bytes, its descriptor says \d+/);
  });

  it('resolves a digest the index does not list, sized by its file', async () => {
    const err = await buildCopy('unlisted', async (dir, b) => {
      b.index.manifests = [];
      await writeFile(join(dir, 'index.json'), JSON.stringify(b.index));
    }, 'copy@MANIFEST');
    expect(err).toBeUndefined();
  });
});
