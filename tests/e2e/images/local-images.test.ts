/**
 * Issue 10, the local image store through the built CLI: a Dockerfile build
 * FROM the test registry's busybox with a RUN step (real runc) and `-t NAME`
 * prints the name and digest, `bkt images` lists it, `bkt image save` writes
 * tars that skopeo reads (and whose image runs in runc), `bkt image rm` lets a
 * prune reclaim its blobs, and `-q` prints only the image id.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { bktEnv, HOST_ARCH, readMetadata, run, runcRun } from './lib.js';

let registry: RegistryServer;
let busybox: PushedImage;
let work: string;
let context: string;
let root: string;

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('images-local');
  context = join(work, 'context');
  root = join(work, 'store');
  await mkdir(context);
  await writeFile(
    join(context, 'Dockerfile'),
    [`FROM ${busybox.reference}`, 'RUN echo "stored by bkt" > /greeting.txt', 'CMD ["cat", "/greeting.txt"]', ''].join('\n'),
  );
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

const cli = (args: string[]) => bktEnv([...args, '--root', root], { cwd: work });
const build = (args: string[]) => cli(['build', '--progress', 'plain', ...args, context]);
const blobExists = (digest: string) => readFile(join(root, 'content/blobs/sha256', digest.slice('sha256:'.length))).then(() => true, () => false);

describe('an image built with -t NAME (no --push)', () => {
  let meta: Record<string, string>;

  it('is stored, and the build ends naming it with its digest and image id', async () => {
    const r = await build(['-t', 'app:v1', '--metadata-file', join(work, 'v1.json')]);
    expect(r.stderr).not.toMatch(/^error/m);
    expect(r.code).toBe(0);
    meta = await readMetadata(join(work, 'v1.json'));
    const lines = r.stderr.trimEnd().split('\n');
    const end = lines.slice(lines.findIndex((l) => l.startsWith('solver time:')));
    expect(end).toEqual([
      expect.stringMatching(/^solver time: /),
      `writing image ${meta['containerimage.config.digest']} done`,
      `naming to docker.io/library/app:v1@${meta['containerimage.digest']} done`,
    ]);
  });

  it('is listed by bkt images: name, digest, platform, size, created', async () => {
    const r = await cli(['images']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const [header, ...rows] = r.stdout.trimEnd().split('\n');
    expect(header!.split(/\s{2,}/)).toEqual(['NAME', 'DIGEST', 'PLATFORM', 'SIZE', 'CREATED']);
    expect(rows).toHaveLength(1);
    const [name, digest, platform, size, created] = rows[0]!.split(/\s{2,}/);
    expect([name, digest, platform]).toEqual(['docker.io/library/app:v1', meta['containerimage.digest'], `linux/${HOST_ARCH}`]);
    // SIZE: the manifest, config and layer blobs as stored (decimal units, 3 significant digits).
    const manifestPath = join(root, 'content/blobs/sha256', meta['containerimage.digest']!.slice('sha256:'.length));
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as { config: { size: number }; layers: { size: number }[] };
    const bytes = (await readFile(manifestPath)).length + manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0);
    const m = /^(\d+(?:\.\d+)?)(B|kB|MB)$/.exec(size!);
    expect(m).not.toBeNull();
    const shown = Number(m![1]) * { B: 1, kB: 1e3, MB: 1e6 }[m![2] as 'B' | 'kB' | 'MB'];
    expect(Math.abs(shown - bytes) / bytes).toBeLessThan(0.01);
    expect(created).toMatch(/(seconds?|minutes?) ago$/);
    expect((await cli(['image', 'ls', '-q'])).stdout).toBe('docker.io/library/app:v1\n');
  });

  it('is saved by bkt image save as a docker archive skopeo copies, whose image runs in runc', async () => {
    const archive = join(work, 'app.tar');
    const r = await cli(['image', 'save', 'app:v1', '-o', archive]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const layout = join(work, 'from-archive');
    await run('skopeo', ['copy', `docker-archive:${archive}`, `oci:${layout}:v1`]);
    const { stdout } = await run('skopeo', ['inspect', '--config', `oci:${layout}:v1`], { encoding: 'utf8' });
    const config = JSON.parse(stdout) as { rootfs: { diff_ids: string[] } };
    expect(config.rootfs.diff_ids[0]).toBe(busybox.diffId);
    const bundle = join(work, 'bundle');
    await run('umoci', ['unpack', '--image', `${layout}:v1`, bundle]);
    expect(await runcRun(bundle)).toBe('stored by bkt\n');
  });

  it('is saved with --format oci as an OCI archive with the stored manifest digest', async () => {
    const archive = join(work, 'app.oci.tar');
    const r = await cli(['image', 'save', 'docker.io/library/app:v1', '--format', 'oci', '-o', archive]);
    expect(r.code).toBe(0);
    const { stdout } = await run('skopeo', ['inspect', `oci-archive:${archive}`], { encoding: 'utf8' });
    expect((JSON.parse(stdout) as { Digest: string }).Digest).toBe(meta['containerimage.digest']);
  });

  it('refuses unknown names and formats, naming them', async () => {
    const save = await cli(['image', 'save', 'nope', '-o', join(work, 'nope.tar')]);
    expect(save.stderr).toBe('error: no image docker.io/library/nope:latest in the local image store (stored: docker.io/library/app:v1)\n');
    expect(save.code).toBe(1);
    const format = await cli(['image', 'save', 'app:v1', '--format', 'zip', '-o', join(work, 'x.tar')]);
    expect(format.stderr).toMatch(/^error: bkt image save: --format zip: expected docker or oci$/m);
    expect(format.code).toBe(1);
    const noOutput = await cli(['image', 'save', 'app:v1']);
    expect(noOutput.stderr).toMatch(/give the tar file to write with -o FILE/);
    expect(noOutput.code).toBe(1);
    const rm = await cli(['image', 'rm', 'nope:1']);
    expect(rm.stderr).toMatch(/^error: no image docker.io\/library\/nope:1 in the local image store/m);
    expect(rm.code).toBe(1);
  });

  it('is removed by bkt image rm; then a prune reclaims its manifest and config', async () => {
    const digest = meta['containerimage.digest']!;
    const config = meta['containerimage.config.digest']!;
    await cli(['prune', '--all']);
    expect(await blobExists(digest)).toBe(true); // the name keeps them
    const r = await cli(['image', 'rm', 'app:v1']);
    expect(r.stdout).toBe('Untagged: docker.io/library/app:v1\n');
    expect(r.code).toBe(0);
    expect((await cli(['images', '-q'])).stdout).toBe('');
    const pruned = await cli(['prune', '--all']);
    expect(pruned.code).toBe(0);
    expect(pruned.stdout).toContain(digest);
    expect(await blobExists(digest)).toBe(false);
    expect(await blobExists(config)).toBe(false);
  });
});

describe('layers of a stored image: uncompressed in the store, compressed where they leave the machine', () => {
  type Manifest = { config: { digest: string }; layers: { mediaType: string; digest: string; size: number }[] };
  const manifestOf = async (digest: string) => JSON.parse(await readFile(join(root, 'content/blobs/sha256', digest.slice('sha256:'.length)), 'utf8')) as Manifest;

  it('-t NAME stores the new layer as the plain tar (its digest is its diff id); --push and -o type=oci send gzip', async () => {
    // SOURCE_DATE_EPOCH: the frontend's config (history times) is the same in both builds.
    const epoch = ['--build-arg', 'SOURCE_DATE_EPOCH=1700000000'];
    const r = await build([...epoch, '-t', 'app:plain', '--metadata-file', join(work, 'plain.json')]);
    expect(r.code, r.stderr).toBe(0);
    const stored = await readMetadata(join(work, 'plain.json'));
    const manifest = await manifestOf(stored['containerimage.digest']!);
    expect(manifest.layers.map((l) => l.mediaType)).toEqual(['application/vnd.docker.image.rootfs.diff.tar.gzip', 'application/vnd.docker.image.rootfs.diff.tar']);
    expect(manifest.layers[0]!.digest).toBe(busybox.layer.digest);
    const config = JSON.parse(await readFile(join(root, 'content/blobs/sha256', manifest.config.digest.slice('sha256:'.length)), 'utf8')) as { rootfs: { diff_ids: string[] } };
    expect(manifest.layers[1]!.digest).toBe(config.rootfs.diff_ids[1]);

    // The same build pushed: gzip layers, the same image id; an OCI tarball has the same layers.
    const name = `${registry.host}/e2e/plain:v1`;
    const pushed = await build([...epoch, '-t', name, '--push', '--metadata-file', join(work, 'plain-pushed.json')]);
    expect(pushed.code, pushed.stderr).toBe(0);
    const pushedMeta = await readMetadata(join(work, 'plain-pushed.json'));
    expect(pushedMeta['containerimage.config.digest']).toBe(stored['containerimage.config.digest']);
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${name}`], { encoding: 'utf8' });
    const remote = JSON.parse(stdout) as Manifest;
    expect(remote.layers.map((l) => l.mediaType)).toEqual(Array(2).fill('application/vnd.docker.image.rootfs.diff.tar.gzip'));
    const layout = join(work, 'plain-pulled');
    await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${name}`, `oci:${layout}:v1`]);
    const bundle = join(work, 'plain-bundle');
    await run('umoci', ['unpack', '--image', `${layout}:v1`, bundle]);
    expect(await runcRun(bundle)).toBe('stored by bkt\n');

    const archive = join(work, 'plain.oci.tar');
    const exported = await build([...epoch, '-o', `type=oci,dest=${archive}`]);
    expect(exported.code, exported.stderr).toBe(0);
    const { stdout: ociRaw } = await run('skopeo', ['inspect', '--raw', `oci-archive:${archive}`], { encoding: 'utf8' });
    expect((JSON.parse(ociRaw) as Manifest).layers.map((l) => l.digest)).toEqual(remote.layers.map((l) => l.digest));
  });

  it('an output that sets compression stores compressed layers', async () => {
    const r = await build(['-o', 'type=image,name=app:gzip,compression=gzip', '--metadata-file', join(work, 'gzip.json')]);
    expect(r.code, r.stderr).toBe(0);
    const manifest = await manifestOf((await readMetadata(join(work, 'gzip.json')))['containerimage.digest']!);
    expect(manifest.layers.map((l) => l.mediaType)).toEqual(Array(2).fill('application/vnd.docker.image.rootfs.diff.tar.gzip'));
  });
});

describe('bkt build -q', () => {
  it('prints only the image id on stdout, and nothing on stderr', async () => {
    const iid = join(work, 'iid');
    const r = await build(['-q', '-t', 'app:quiet', '--iidfile', iid]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const id = await readFile(iid, 'utf8');
    expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(r.stdout).toBe(`${id}\n`);
  });
});
