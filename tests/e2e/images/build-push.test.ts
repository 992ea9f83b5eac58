/**
 * Issue 4 acceptance through the built CLI: a build FROM the test registry's
 * busybox with RUN steps, pushed to the registry and exported as `oci` and
 * `docker` archives, each checked by tools bkt didn't write (skopeo,
 * oci-image-tool, umoci, runc); reproducible output with SOURCE_DATE_EPOCH
 * and rewrite-timestamp.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, skopeoInspect, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { bktEnv, corruptBlobs, HOST_ARCH, pushCraftedImage, pushIndex, readMetadata, run, runcRun, writeImageProject } from './lib.js';

let registry: RegistryServer;
let busybox: PushedImage;
let work: string;
let project: string;
let root: string;

const STEPS = [
  'mkdir -p /app && echo "hello from a RUN step" > /app/hello.txt',
  'echo "second step" >> /app/hello.txt && rm /bin/vi',
];

const build = (args: string[], opts: { root?: string } = {}) =>
  bktEnv(['build', '--root', opts.root ?? root, '--progress', 'plain', ...args], { cwd: project });

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('images-push');
  project = join(work, 'project');
  root = join(work, 'store');
  await mkdir(project);
  await writeImageProject(project, busybox.reference, STEPS);
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

describe('a build FROM the registry busybox with RUN steps', () => {
  let pushed: Record<string, string>;
  const name = () => `${registry.host}/e2e/app:v1`;

  it('is pushed; skopeo inspects it and copies it (checking every digest)', async () => {
    const r = await build(['--output', `type=image,name=${name()},push=true`, '--metadata-file', join(work, 'push.json')]);
    expect(r.stderr).toMatch(/solver time/);
    expect(r.code).toBe(0);
    pushed = await readMetadata(join(work, 'push.json'));
    expect(pushed['image.name']).toBe(name());
    expect(pushed['containerimage.digest']).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(pushed['containerimage.config.digest']).toMatch(/^sha256:[0-9a-f]{64}$/);

    const info = (await skopeoInspect(name())) as { Digest: string; Layers: string[]; Env: string[] };
    expect(info.Digest).toBe(pushed['containerimage.digest']);
    // The base layer is the pulled blob, byte for byte; then one layer per RUN step.
    expect(info.Layers).toHaveLength(1 + STEPS.length);
    expect(info.Layers[0]).toBe(busybox.layer.digest);
    expect(info.Env).toContain('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');

    await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${name()}`, `oci:${join(work, 'skopeo-copy')}:v1`]);
    expect(await corruptBlobs(root)).toEqual([]);
  });

  it('exports an OCI layout that oci-image-tool validates and that umoci + runc run', async () => {
    const layout = join(work, 'layout');
    const r = await build(['--output', `type=oci,dest=${layout},tar=false,name=${name()}`]);
    expect(r.code).toBe(0);
    // The same layers as the pushed image (only the config's `created` is the export's own).
    const { stdout } = await run('skopeo', ['inspect', `oci:${layout}:v1`], { encoding: 'utf8' });
    expect((JSON.parse(stdout) as { Layers: string[] }).Layers).toEqual(((await skopeoInspect(name())) as { Layers: string[] }).Layers);
    const v = await run('oci-image-tool', ['validate', '--type', 'image', '--ref', 'name=v1', layout], { encoding: 'utf8' });
    expect(v.stdout + v.stderr).toMatch(/Validation succeeded/);

    const bundle = join(work, 'bundle');
    await run('umoci', ['unpack', '--image', `${layout}:v1`, bundle]);
    try {
      const out = await runcRun(bundle, ['sh', '-c', 'cat /app/hello.txt; test -e /bin/vi && echo "vi still there" || echo "vi removed"']);
      expect(out).toBe('hello from a RUN step\nsecond step\nvi removed\n');
    } finally {
      await removeDir(bundle);
    }
  });

  it('exports an OCI layout tar (the default) holding the same image', async () => {
    const file = join(work, 'oci.tar');
    const r = await build(['--output', `type=oci,dest=${file},name=${name()}`]);
    expect(r.code).toBe(0);
    // oci-image-tool can't walk tar files (any tar, GNU's too): validate the extracted layout.
    const dir = join(work, 'oci-tar');
    await mkdir(dir);
    await run('tar', ['-xf', file, '-C', dir]);
    await run('oci-image-tool', ['validate', '--type', 'image', '--ref', 'name=v1', dir]);
    const { stdout } = await run('skopeo', ['inspect', `oci-archive:${file}:v1`], { encoding: 'utf8' });
    expect((JSON.parse(stdout) as { Layers: string[] }).Layers).toHaveLength(1 + STEPS.length);
  });

  it('exports a docker archive that skopeo copies', async () => {
    const file = join(work, 'docker.tar');
    const r = await build(['--output', `type=docker,dest=${file},name=${name()}`]);
    expect(r.code).toBe(0);
    const { stdout } = await run('skopeo', ['inspect', `docker-archive:${file}`], { encoding: 'utf8' });
    expect((JSON.parse(stdout) as { Layers: string[] }).Layers).toHaveLength(1 + STEPS.length);
    await run('skopeo', ['copy', `docker-archive:${file}`, `oci:${join(work, 'from-docker')}:v1`]);
    // And back into a registry, by a tool that checks every digest on the way.
    await run('skopeo', ['copy', '--dest-tls-verify=false', `docker-archive:${file}`, `docker://${registry.host}/e2e/from-docker:v1`]);
    expect(((await skopeoInspect(`${registry.host}/e2e/from-docker:v1`)) as { Layers: string[] }).Layers).toHaveLength(1 + STEPS.length);
  });
});

describe('images bkt pushed, read back by bkt', () => {
  it('a build FROM the pushed image sees the RUN steps\' files and their deletions', async () => {
    const next = join(work, 'next');
    await mkdir(next);
    await writeImageProject(next, `${registry.host}/e2e/app:v1`, ['{ cat /app/hello.txt; test -e /bin/vi && echo "vi back" || echo "vi still removed"; } > /check.txt']);
    const out = join(work, 'next-out');
    const r = await bktEnv(['build', '--root', join(work, 'next-store'), '--output', `type=local,dest=${out}`], { cwd: next });
    expect(r.code).toBe(0);
    expect(await readFile(join(out, 'check.txt'), 'utf8')).toBe('hello from a RUN step\nsecond step\nvi still removed\n');
  });

  it('compression=zstd pushes OCI zstd layers that skopeo copies and a build FROM them unpacks', async () => {
    const zname = `${registry.host}/e2e/app:zstd`;
    const r = await build(['--output', `type=image,name=${zname},push=true,compression=zstd,force-compression=true`]);
    expect(r.code).toBe(0);
    const raw = (await skopeoInspect(zname, { raw: true })) as { mediaType: string; layers: { mediaType: string }[] };
    expect(raw.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(raw.layers.map((l) => l.mediaType)).toEqual(Array(1 + STEPS.length).fill('application/vnd.oci.image.layer.v1.tar+zstd'));
    await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${zname}`, `oci:${join(work, 'skopeo-zstd')}:v1`]);

    const next = join(work, 'next-zstd');
    await mkdir(next);
    await writeImageProject(next, zname, ['cat /app/hello.txt > /check.txt']);
    const out = join(work, 'next-zstd-out');
    const again = await bktEnv(['build', '--root', join(work, 'next-zstd-store'), '--output', `type=local,dest=${out}`], { cwd: next });
    expect(again.code).toBe(0);
    expect(await readFile(join(out, 'check.txt'), 'utf8')).toBe('hello from a RUN step\nsecond step\n');
  });
});

describe('a multi-platform base', () => {
  it('takes the manifest of the host platform from an index', async () => {
    const other = HOST_ARCH === 's390x' ? 'ppc64le' : 's390x';
    const foreign = await pushCraftedImage(registry.host, 'library/busybox', 'unused', [[{ name: 'foreign.txt', type: 'file', body: 'wrong platform\n' }]], {
      architecture: other,
      pushTag: false,
    });
    await pushIndex(registry.host, 'library/busybox', 'multi', [
      { desc: foreign, architecture: other },
      { desc: busybox.manifest, architecture: HOST_ARCH },
    ]);
    const next = join(work, 'multi');
    await mkdir(next);
    await writeImageProject(next, `${registry.host}/library/busybox:multi`, ['{ uname -m; ls /foreign.txt 2>&1 || true; } > /platform.txt']);
    const out = join(work, 'multi-out');
    const r = await bktEnv(['build', '--root', join(work, 'multi-store'), '--output', `type=local,dest=${out}`], { cwd: next });
    expect(r.code).toBe(0);
    const seen = await readFile(join(out, 'platform.txt'), 'utf8');
    expect(seen).toMatch(/No such file/);
    expect(seen.split('\n')[0]).toBe(execFileSync('uname', ['-m'], { encoding: 'utf8' }).trim());
  });
});

describe('SOURCE_DATE_EPOCH with rewrite-timestamp=true', () => {
  it('gives the same manifest digest from two separate stores, and from --no-cache', async () => {
    const epoch = 1_700_000_000;
    const digests: string[] = [];
    for (const [i, extra] of [[0, []], [1, []], [1, ['--no-cache']]] as const) {
      const meta = join(work, `repro-${digests.length}.json`);
      const r = await build(
        [...extra, '--output', `type=image,name=${registry.host}/e2e/repro:v${digests.length},push=true,rewrite-timestamp=true,source-date-epoch=${epoch}`, '--metadata-file', meta],
        { root: join(work, `repro-store-${i}`) },
      );
      expect(r.stderr).toMatch(/solver time/);
      expect(r.code).toBe(0);
      digests.push((await readMetadata(meta))['containerimage.digest']!);
    }
    expect(new Set(digests).size).toBe(1);
    const info = (await skopeoInspect(`${registry.host}/e2e/repro:v0`)) as { Created: string; Digest: string };
    expect(info.Digest).toBe(digests[0]);
    expect(new Date(info.Created).getTime()).toBe(epoch * 1000);
  });
});
