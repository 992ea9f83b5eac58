import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBktError, SOURCE_DATE_EPOCH_KEY, type BuildResult, type Digest, type Snapshot } from '@bkt/core';
import { ImageSource } from '@bkt/source-image';
import { openTestContext, type TestContext } from '@bkt/store/testing';
import { pushBusyboxImage, skopeoInspect, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { createImageExporters } from './exporters.js';
import ociExporters from './index.js';
import { createBkt } from '@bkt/core';
import { runTool, validateLayout } from './testing/index.js';

const EPOCH = 1_700_000_000;

describe('image, oci and docker exporters', () => {
  let registry: RegistryServer;
  let pushed: PushedImage;
  let t: TestContext;
  let work: string;
  let base: Snapshot;
  const source = new ImageSource();
  const { exporters, close } = createImageExporters();
  const exporter = (type: string) => exporters.find((e) => e.type === type)!;

  /** A snapshot over busybox: adds /hello.txt and /app/, deletes /etc/hostname; mtimes at `mtime`. */
  async function change(mtime: number): Promise<Snapshot> {
    const m = await t.ctx.snapshotter.prepare(base);
    try {
      await writeFile(join(m.path, 'hello.txt'), 'hello from bkt\n');
      await mkdir(join(m.path, 'app'));
      await writeFile(join(m.path, 'app/data'), 'data\n');
      await unlink(join(m.path, 'etc/hostname'));
      for (const p of ['hello.txt', 'app/data', 'app', 'etc', '.']) await utimes(join(m.path, p), mtime, mtime);
    } catch (err) {
      await m.discard();
      throw err;
    }
    const s = await m.commit();
    // The whiteout of etc/hostname carries the time of the unlink: set, so two snapshots made seconds apart have the same layer.
    await utimes(join(s.layerPath(), 'etc/hostname'), mtime, mtime);
    return s;
  }

  function result(top: Snapshot): BuildResult {
    const config = {
      architecture: process.arch === 'x64' ? 'amd64' : process.arch,
      os: 'linux',
      config: { Env: ['PATH=/bin:/usr/bin'], Cmd: ['cat', '/hello.txt'], WorkingDir: '/' },
      history: [
        { created: '2024-01-01T00:00:00Z', created_by: 'busybox base' },
        { created_by: 'ENV PATH=/bin:/usr/bin', empty_layer: true },
        { created_by: 'RUN write hello' },
      ],
    };
    return { ref: top, metadata: { 'containerimage.config': Buffer.from(JSON.stringify(config)) } };
  }

  beforeAll(async () => {
    registry = await startRegistry();
    pushed = await pushBusyboxImage(registry, 'test/busybox');
    t = await openTestContext();
    work = await mkdtemp(join(tmpdir(), 'bkt-export-'));
    base = await (await source.resolve(source.identify('docker-image', pushed.reference, {}), t.ctx)).snapshot(t.ctx);
  });
  afterAll(async () => {
    close();
    source.close();
    await t?.close();
    await registry?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('writes an OCI layout that oci-image-tool validates and umoci + runc run', async () => {
    const top = await change(Date.now() / 1000);
    const dest = join(work, 'layout');
    const inst = await exporter('oci').resolve({ dest, tar: 'false', name: 'example.com/test/hello:v1' });
    const res = await inst.export(result(top), t.ctx);
    await validateLayout(dest);

    const index = JSON.parse(await readFile(join(dest, 'index.json'), 'utf8'));
    expect(index.manifests[0].digest).toBe(res['containerimage.digest']);
    expect(index.manifests[0].annotations['org.opencontainers.image.ref.name']).toBe('v1');
    const manifest = JSON.parse(await readFile(join(dest, 'blobs/sha256', res['containerimage.digest'].slice(7)), 'utf8'));
    expect(manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(manifest.config.digest).toBe(res['containerimage.config.digest']);
    expect(manifest.layers).toHaveLength(2);
    // The pulled base layer is reused as it was pushed: same bytes, same digest.
    expect(manifest.layers[0].digest).toBe(pushed.layer.digest);
    const config = JSON.parse(await readFile(join(dest, 'blobs/sha256', manifest.config.digest.slice(7)), 'utf8'));
    expect(config.rootfs.diff_ids[0]).toBe(pushed.diffId);
    expect(config.history.filter((h: { empty_layer?: boolean }) => !h.empty_layer)).toHaveLength(2);
    expect(config.config.Cmd).toEqual(['cat', '/hello.txt']);
    expect(JSON.parse(Buffer.from(res['containerimage.descriptor'], 'base64').toString()).digest).toBe(res['containerimage.digest']);
    await validateLayout(dest, 'name=v1');

    // The new layer: .wh. entry for the deleted file, sorted, numeric owners.
    const layerTar = execFileSync('tar', ['-tzvf', join(dest, 'blobs/sha256', manifest.layers[1].digest.slice(7))]).toString();
    expect(layerTar).toContain('etc/.wh.hostname');
    expect(layerTar).toContain('hello.txt');

    const bundle = join(work, 'bundle');
    await runTool('umoci', ['unpack', '--image', `${dest}:v1`, bundle]);
    expect(existsSync(join(bundle, 'rootfs/etc/hostname'))).toBe(false);
    const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8'));
    spec.process.terminal = false;
    await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));
    const id = `bkt-export-test-${process.pid}`;
    try {
      const out = execFileSync('runc', ['run', '--bundle', bundle, id], { timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
      expect(out).toBe('hello from bkt\n');
    } finally {
      execFileSync('runc', ['delete', '--force', id], { stdio: 'ignore' });
    }
  });

  it('writes a docker archive that skopeo copies, and an OCI layout tar', async () => {
    const top = await change(Date.now() / 1000);
    const archive = join(work, 'image-docker.tar');
    const res = await (await exporter('docker').resolve({ dest: archive, name: 'test/hello:v2' })).export(result(top), t.ctx);
    const listing = execFileSync('tar', ['-tf', archive]).toString().split('\n');
    expect(listing).toContain('manifest.json');
    expect(listing).toContain('repositories');
    const copied = join(work, 'from-docker');
    await runTool('skopeo', ['copy', `docker-archive:${archive}`, `oci:${copied}:v2`]);
    await validateLayout(copied);
    const manifestJson = JSON.parse(execFileSync('tar', ['-xOf', archive, 'manifest.json']).toString());
    expect(manifestJson[0].RepoTags).toEqual(['test/hello:v2']);
    expect(manifestJson[0].Config).toBe(`blobs/sha256/${res['containerimage.config.digest'].slice(7)}`);

    const ociTar = join(work, 'image-oci.tar');
    await (await exporter('oci').resolve({ dest: ociTar, name: 'test/hello:v2' })).export(result(top), t.ctx);
    const unpacked = join(work, 'oci-tar-unpacked');
    await mkdir(unpacked);
    execFileSync('tar', ['-xf', ociTar, '-C', unpacked]);
    await validateLayout(unpacked);
  });

  it('gives the same manifest digest for the same tree with SOURCE_DATE_EPOCH and rewrite-timestamp', async () => {
    const a = await change(EPOCH + 1000);
    const b = await change(EPOCH + 5000);
    const attrs = { dest: join(work, 'repro'), tar: 'false', 'rewrite-timestamp': 'true', 'source-date-epoch': String(EPOCH) };
    const ra = await (await exporter('oci').resolve(attrs)).export(result(a), t.ctx);
    const rb = await (await exporter('oci').resolve(attrs)).export(result(b), t.ctx);
    expect(ra['containerimage.digest']).toBe(rb['containerimage.digest']);
    const config = JSON.parse(await readFile(join(work, 'repro/blobs/sha256', ra['containerimage.config.digest'].slice(7)), 'utf8'));
    expect(config.created).toBe('2023-11-14T22:13:20Z');
    expect(config.history.at(-1).created).toBe('2023-11-14T22:13:20Z');
    // Without rewrite-timestamp the differing mtimes show in the digest.
    const plain = { dest: join(work, 'repro2'), tar: 'false', 'source-date-epoch': String(EPOCH) };
    const pa = await (await exporter('oci').resolve(plain)).export(result(a), t.ctx);
    const pb = await (await exporter('oci').resolve(plain)).export(result(b), t.ctx);
    expect(pa['containerimage.digest']).not.toBe(pb['containerimage.digest']);
  });

  it('pushes to a registry (mounting the base layer) so that skopeo inspects and copies it', async () => {
    const top = await change(Date.now() / 1000);
    const name = `${registry.host}/test/pushed:v3`;
    const res = await (await exporter('image').resolve({ name, push: 'true', 'oci-mediatypes': 'true' })).export(result(top), t.ctx);
    expect(res['image.name']).toBe(name);
    const inspect = (await skopeoInspect(name)) as { Digest: string; Layers: string[] };
    expect(inspect.Digest).toBe(res['containerimage.digest']);
    expect(inspect.Layers[0]).toBe(pushed.layer.digest);
    expect(t.statuses).toContain(`pushing layer ${pushed.layer.digest.slice(0, 19)} (mounted)`);
    await runTool('skopeo', ['copy', '--src-tls-verify=false', `docker://${name}`, `oci:${join(work, 'pulled')}:v3`]);
    await validateLayout(join(work, 'pulled'));

    // Docker media types (the image exporter's default), pushed by a second name.
    const docker = await (await exporter('image').resolve({ name: `${registry.host}/test/docker:v1` , push: 'true' })).export(result(top), t.ctx);
    const raw = (await skopeoInspect(`${registry.host}/test/docker:v1`, { raw: true })) as { mediaType: string; layers: { mediaType: string }[] };
    expect(raw.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    expect(raw.layers.map((l) => l.mediaType)).toEqual(Array(2).fill('application/vnd.docker.image.rootfs.diff.tar.gzip'));
    expect(docker['containerimage.digest']).not.toBe(res['containerimage.digest']);
  });

  it('stores the image by name for image.resolvemode=local', async () => {
    const top = await change(Date.now() / 1000);
    const name = `${registry.host}/test/local-only:v1`;
    const res = await (await exporter('image').resolve({ name })).export(result(top), t.ctx);
    const inst = await source.resolve(source.identify('docker-image', name, { 'image.resolvemode': 'local' }), t.ctx);
    expect((await inst.cacheKey(t.ctx)).key).toBe(res['containerimage.digest']);
    const snap = await inst.snapshot(t.ctx);
    const m = await snap.mount();
    try {
      expect(await readFile(join(m.path, 'hello.txt'), 'utf8')).toBe('hello from bkt\n');
    } finally {
      await m.release();
    }
  });

  it('keeps the new layers of an image it only names uncompressed, and compresses them once where they leave the machine', async () => {
    // Two snapshots of the same tree: one exported only as a gzip OCI layout (what every export wrote before), one named first.
    const fresh = await change(EPOCH + 10);
    const named = await change(EPOCH + 10);
    const epoch = { 'source-date-epoch': String(EPOCH) };
    const manifestOf = async (digest: string) => JSON.parse(await readFile(t.ctx.content.path(digest as Digest), 'utf8'));
    const reference = await (await exporter('oci').resolve({ dest: join(work, 'gzip-ref'), tar: 'false', ...epoch })).export(result(fresh), t.ctx);
    // A layout's manifest and config are in the layout only, not in the content store.
    expect(await t.ctx.content.has(reference['containerimage.digest'] as Digest)).toBe(false);
    const gzipLayer = JSON.parse(await readFile(join(work, 'gzip-ref/blobs/sha256', reference['containerimage.digest'].slice(7)), 'utf8')).layers[1];
    expect(gzipLayer.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');

    const name = `${registry.host}/test/uncompressed:v1`;
    const stored = await (await exporter('image').resolve({ name, ...epoch })).export(result(named), t.ctx);
    const local = await manifestOf(stored['containerimage.digest']);
    // The new layer is the tar itself (docker's image store keeps layers so); the pulled base layer keeps its blob.
    expect(local.layers.map((l: { mediaType: string }) => l.mediaType)).toEqual(['application/vnd.docker.image.rootfs.diff.tar.gzip', 'application/vnd.docker.image.rootfs.diff.tar']);
    expect(local.layers[0].digest).toBe(pushed.layer.digest);
    const config = JSON.parse(await readFile(t.ctx.content.path(local.config.digest), 'utf8'));
    expect(local.layers[1].digest).toBe(config.rootfs.diff_ids[1]);
    // The image id (config digest) is the one a compressed export has.
    expect(stored['containerimage.config.digest']).toBe(reference['containerimage.config.digest']);

    // Leaving the machine: gzip, byte for byte the layer a build without the named image exports; made once.
    const writes: string[] = [];
    const content = { ...t.ctx.content, path: t.ctx.content.path.bind(t.ctx.content), has: t.ctx.content.has.bind(t.ctx.content), addRef: t.ctx.content.addRef?.bind(t.ctx.content) };
    const counting = {
      ...t.ctx,
      content: {
        ...content,
        write: async (...a: Parameters<typeof t.ctx.content.write>) => {
          const r = await t.ctx.content.write(...a);
          writes.push(r.digest);
          return r;
        },
      },
    };
    const dest = join(work, 'from-named');
    const exported = await (await exporter('oci').resolve({ dest, tar: 'false', name: 'example.com/test/named:v1', ...epoch })).export(result(named), counting);
    expect(exported['containerimage.digest']).toBe(reference['containerimage.digest']);
    expect(writes).toContain(gzipLayer.digest);
    await validateLayout(dest);
    await runTool('umoci', ['unpack', '--image', `${dest}:v1`, join(work, 'from-named-bundle')]);
    expect(await readFile(join(work, 'from-named-bundle/rootfs/hello.txt'), 'utf8')).toBe('hello from bkt\n');

    writes.length = 0;
    const pushedName = `${registry.host}/test/uncompressed-pushed:v1`;
    const pushedRes = await (await exporter('image').resolve({ name: pushedName, push: 'true', 'oci-mediatypes': 'true', ...epoch })).export(result(named), counting);
    expect(pushedRes['containerimage.digest']).toBe(reference['containerimage.digest']);
    expect(writes).not.toContain(gzipLayer.digest); // the compressed blob was remembered
    const inspect = (await skopeoInspect(pushedName)) as { Layers: string[] };
    expect(inspect.Layers).toEqual([pushed.layer.digest, gzipLayer.digest]);
    await runTool('skopeo', ['copy', '--src-tls-verify=false', `docker://${pushedName}`, `oci:${join(work, 'pulled-uncompressed')}:v1`]);

    // compression given: the named image gets it.
    const explicit = await (await exporter('image').resolve({ name: `${registry.host}/test/gzip-named:v1`, compression: 'gzip', ...epoch })).export(result(named), t.ctx);
    expect((await manifestOf(explicit['containerimage.digest'])).layers.map((l: { digest: string }) => l.digest)).toEqual([pushed.layer.digest, gzipLayer.digest]);
  });

  it('compresses an uncompressed layer of a stored image unpacked again (no registry holds it) when it is pushed', async () => {
    const own = await openTestContext();
    try {
      const { ctx, store } = own;
      const busybox = await (await source.resolve(source.identify('docker-image', pushed.reference, {}), ctx)).snapshot(ctx);
      const m = await ctx.snapshotter.prepare(busybox);
      await writeFile(join(m.path, 'hello.txt'), 'hello from bkt\n');
      const top = await m.commit();
      const epoch = { 'source-date-epoch': String(EPOCH) };
      const name = `${registry.host}/test/stored-plain:v1`;
      const stored = await (await exporter('image').resolve({ name, ...epoch })).export(result(top), ctx);
      const gzipRef = await (await exporter('oci').resolve({ dest: join(work, 'stored-plain-ref'), tar: 'false', ...epoch })).export(result(top), ctx);
      // Its snapshots pruned, the stored image is unpacked from its (uncompressed) blobs: the layer record holds the plain tar.
      await store.prune({ all: true });
      const again = await (await source.resolve(source.identify('docker-image', name, { 'image.resolvemode': 'local' }), ctx)).snapshot(ctx);
      const pushedName = `${registry.host}/test/stored-plain-pushed:v1`;
      const res = await (await exporter('image').resolve({ name: pushedName, push: 'true', 'oci-mediatypes': 'true', ...epoch })).export(result(again), ctx);
      expect(res['containerimage.digest']).toBe(gzipRef['containerimage.digest']);
      expect(res['containerimage.config.digest']).toBe(stored['containerimage.config.digest']);
      const raw = (await skopeoInspect(pushedName, { raw: true })) as { layers: { mediaType: string }[] };
      expect(raw.layers.map((l) => l.mediaType)).toEqual(Array(2).fill('application/vnd.oci.image.layer.v1.tar+gzip'));
    } finally {
      await own.close();
    }
  });

  it('keeps what a kept snapshot or a stored name references through prune, and removes unreferenced blobs', async () => {
    const own = await openTestContext();
    try {
      const { ctx, store } = own;
      const busybox = await (await source.resolve(source.identify('docker-image', pushed.reference, {}), ctx)).snapshot(ctx);
      // A build step's snapshot of a type a prune without `all` keeps.
      const m = await ctx.snapshotter.prepare(busybox, { recordType: 'internal' });
      await writeFile(join(m.path, 'hello.txt'), 'hello from bkt\n');
      const top = await m.commit();
      const digests = async (owner: { snapshot: string } | { name: string }) => (await ctx.content.refs!(owner)).map((r) => r.digest).sort();

      // An OCI layout export: the new layer's blob is the snapshot's; manifest and config are in the layout only.
      const dest = join(work, 'refs-layout');
      const first = await (await exporter('oci').resolve({ dest, tar: 'false' })).export(result(top), ctx);
      const manifest = JSON.parse(await readFile(join(dest, 'blobs/sha256', first['containerimage.digest'].slice(7)), 'utf8'));
      const newLayer = manifest.layers[1].digest as Digest;
      expect(await digests({ snapshot: top.id })).toEqual([newLayer]);
      expect(await ctx.content.has(first['containerimage.digest'] as Digest)).toBe(false);
      expect(await ctx.content.has(manifest.config.digest as Digest)).toBe(false);
      const pruned = (await store.prune({})).map((r) => r.id);
      expect(pruned).toEqual(expect.arrayContaining([pushed.manifest.digest, pushed.config.digest]));
      // Kept: the snapshot, its parent (the pulled layer), and their blobs.
      for (const id of [newLayer, top.id, busybox.id, pushed.layer.digest]) expect(pruned).not.toContain(id);
      expect(await ctx.content.has(newLayer)).toBe(true);
      // The kept layer is reused as it is by the next export.
      const againDest = join(work, 'refs-again');
      const again = await (await exporter('oci').resolve({ dest: againDest, tar: 'false' })).export(result(top), ctx);
      const againManifest = JSON.parse(await readFile(join(againDest, 'blobs/sha256', again['containerimage.digest'].slice(7)), 'utf8'));
      expect(againManifest.layers[1].digest).toBe(newLayer);

      // The image exporter's store: the name references every blob of its image, and keeps them through prune --all.
      const name = `${registry.host}/test/stored:v1`;
      const owner = { name: `image:${name}` };
      const stored = await (await exporter('image').resolve({ name })).export(result(top), ctx);
      const image = JSON.parse(await readFile(ctx.content.path(stored['containerimage.digest'] as Digest), 'utf8'));
      const blobs: Digest[] = [stored['containerimage.digest'] as Digest, image.config.digest, ...image.layers.map((l: { digest: Digest }) => l.digest)].sort();
      expect(await digests(owner)).toEqual(blobs);
      const stray = (await ctx.content.write(Buffer.from('nobody references me'))).digest;
      const all = (await store.prune({ all: true })).map((r) => r.id);
      expect(all).toEqual(expect.arrayContaining([stray, top.id, busybox.id]));
      for (const d of blobs) expect(await ctx.content.has(d)).toBe(true);
      expect(await ctx.content.has(stray)).toBe(false);
      // ...so image.resolvemode=local unpacks it again from the content store alone.
      const local = await (await source.resolve(source.identify('docker-image', name, { 'image.resolvemode': 'local' }), ctx)).snapshot(ctx);
      const lm = await local.mount();
      try {
        expect(await readFile(join(lm.path, 'hello.txt'), 'utf8')).toBe('hello from bkt\n');
      } finally {
        await lm.release();
      }

      // Storing another image under the name moves its references: the old manifest and config go in the next prune.
      const m2 = await ctx.snapshotter.prepare(local);
      await writeFile(join(m2.path, 'second.txt'), 'second\n');
      const restored = await (await exporter('image').resolve({ name })).export(result(await m2.commit()), ctx);
      expect(restored['containerimage.digest']).not.toBe(stored['containerimage.digest']);
      expect(await digests(owner)).not.toContain(stored['containerimage.digest']);
      const later = (await store.prune({ all: true })).map((r) => r.id);
      expect(later).toEqual(expect.arrayContaining([stored['containerimage.digest'], image.config.digest]));
      expect(await ctx.content.has(restored['containerimage.digest'] as Digest)).toBe(true);
    } finally {
      await own.close();
    }
  });

  it('exports zstd and uncompressed layers, and refuses unknown attributes by name', async () => {
    const top = await change(Date.now() / 1000);
    const dest = join(work, 'zstd');
    const res = await (await exporter('oci').resolve({ dest, tar: 'false', compression: 'zstd', 'force-compression': 'true' })).export(result(top), t.ctx);
    const manifest = JSON.parse(await readFile(join(dest, 'blobs/sha256', res['containerimage.digest'].slice(7)), 'utf8'));
    expect(manifest.layers.map((l: { mediaType: string }) => l.mediaType)).toEqual(Array(2).fill('application/vnd.oci.image.layer.v1.tar+zstd'));
    const config = JSON.parse(await readFile(join(dest, 'blobs/sha256', manifest.config.digest.slice(7)), 'utf8'));
    for (const [i, l] of manifest.layers.entries()) {
      const plain = execFileSync('zstd', ['-d', '-c', '-q', join(dest, 'blobs/sha256', l.digest.slice(7))], { maxBuffer: 64 << 20 });
      expect(`sha256:${createHash('sha256').update(plain).digest('hex')}`).toBe(config.rootfs.diff_ids[i]);
    }
    const un = join(work, 'uncompressed');
    const ru = await (await exporter('oci').resolve({ dest: un, tar: 'false', compression: 'uncompressed' })).export(result(top), t.ctx);
    const mu = JSON.parse(await readFile(join(un, 'blobs/sha256', ru['containerimage.digest'].slice(7)), 'utf8'));
    expect(mu.layers[0].digest).toBe(pushed.layer.digest); // reused without force-compression
    expect(mu.layers[1].mediaType).toBe('application/vnd.oci.image.layer.v1.tar');

    const err = await exporter('image').resolve({ name: 'x', bogus: '1' }).catch((e: unknown) => e);
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toContain('image exporter: unknown attribute "bogus"');
    await expect(exporter('oci').resolve({})).rejects.toThrow(/dest is required/);
    expect(await readdir(work)).toContain('layout');
  });

  it('writes an index for a multi-platform result, and takes SOURCE_DATE_EPOCH from the build args', async () => {
    const top = await change(Date.now() / 1000);
    const cfg = (arch: string) => Buffer.from(JSON.stringify({ architecture: arch, os: 'linux', config: { Cmd: ['sh'] } }));
    const multi: BuildResult = {
      ref: null,
      refs: { 'linux/amd64': top, 'linux/arm64': top },
      metadata: { 'containerimage.config/linux/amd64': cfg('amd64'), 'containerimage.config/linux/arm64': cfg('arm64') },
    };
    const dest = join(work, 'multi');
    const res = await (await exporter('oci').resolve({ dest, tar: 'false', name: 'multi:v1', 'annotation-index.org.example.kind': 'index' })).export(multi, t.ctx);
    expect(res['containerimage.config.digest']).toBeUndefined();
    const index = JSON.parse(await readFile(join(dest, 'blobs/sha256', res['containerimage.digest'].slice(7)), 'utf8'));
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(index.annotations).toEqual({ 'org.example.kind': 'index' });
    expect(index.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture)).toEqual(['amd64', 'arm64']);
    await validateLayout(dest);
    await expect((await exporter('docker').resolve({ dest: join(work, 'multi.tar') })).export(multi, t.ctx)).rejects.toThrow(/one platform/);

    const bkt = await createBkt([ociExporters()]);
    // The solver puts the frontend's build-arg:SOURCE_DATE_EPOCH in the result's metadata.
    const viaHook = await bkt.registries.exporters.require('oci').resolve({ dest: join(work, 'epoch'), tar: 'false' });
    const withEpoch = result(top);
    withEpoch.metadata[SOURCE_DATE_EPOCH_KEY] = Buffer.from(String(EPOCH));
    const r = await viaHook.export(withEpoch, { ...t.ctx, buildId: 'b1' });
    const config = JSON.parse(await readFile(join(work, 'epoch/blobs/sha256', r['containerimage.config.digest'].slice(7)), 'utf8'));
    expect(config.created).toBe('2023-11-14T22:13:20Z');
    await bkt.close();
  });
});
