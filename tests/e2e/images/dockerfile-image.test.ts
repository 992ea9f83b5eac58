/**
 * Issue 4 through a Dockerfile build, as `docker buildx build`: `-t NAME
 * --push` and `--metadata-file`; the image config carries what the Dockerfile
 * set (Env, WorkingDir, User, Cmd, labels), so `umoci unpack` + `runc run`
 * with the image's own command prints what the RUN step wrote; and
 * `--build-arg SOURCE_DATE_EPOCH` with `rewrite-timestamp=true` is reproducible.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, skopeoInspect, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { bktEnv, readMetadata, run, runcRun } from './lib.js';

let registry: RegistryServer;
let busybox: PushedImage;
let work: string;
let context: string;

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('images-dockerfile');
  context = join(work, 'context');
  await mkdir(context);
  await writeFile(join(context, 'note.txt'), 'copied from the context\n');
  await writeFile(
    join(context, 'Dockerfile'),
    [
      `FROM ${busybox.reference}`,
      'ENV GREETING=hello',
      'WORKDIR /app',
      'RUN echo "$GREETING from a Dockerfile RUN" > greeting.txt && rm /bin/vi',
      'COPY note.txt .',
      'LABEL org.example.step=e2e',
      'USER 1000:1000',
      'CMD ["sh", "-c", "cat greeting.txt note.txt; id -u; test -e /bin/vi || echo no vi"]',
      '',
    ].join('\n'),
  );
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

const build = (args: string[], root = join(work, 'store')) =>
  bktEnv(['build', '--root', root, '--progress', 'plain', '-f', join(context, 'Dockerfile'), ...args, context], { cwd: work });

describe('a Dockerfile build pushed with -t NAME --push', () => {
  const name = () => `${registry.host}/e2e/dockerfile:v1`;
  let firstDigest: string | undefined;

  it('pushes an image whose config is the Dockerfile\'s; skopeo copies it', async () => {
    const meta = join(work, 'push.json');
    const r = await build(['-t', name(), '--push', '--metadata-file', meta]);
    expect(r.stderr).toMatch(/solver time/);
    expect(r.code).toBe(0);
    const m = await readMetadata(meta);
    firstDigest = m['containerimage.digest'];
    expect(m['image.name']).toBe(name());
    const info = (await skopeoInspect(name())) as { Digest: string; Layers: string[]; Env: string[]; Labels: Record<string, string> };
    expect(info.Digest).toBe(m['containerimage.digest']);
    expect(info.Layers[0]).toBe(busybox.layer.digest);
    expect(info.Env).toContain('GREETING=hello');
    expect(info.Labels).toEqual({ 'org.example.step': 'e2e' });
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--config', `docker://${name()}`], { encoding: 'utf8' });
    const config = JSON.parse(stdout) as {
      config: { WorkingDir: string; User: string; Cmd: string[] };
      rootfs: { diff_ids: string[] };
      history: { empty_layer?: boolean }[];
    };
    expect(config.config.WorkingDir).toBe('/app');
    expect(config.config.User).toBe('1000:1000');
    expect(config.config.Cmd[0]).toBe('sh');
    // One non-empty history entry per layer.
    expect(config.history.filter((h) => !h.empty_layer)).toHaveLength(config.rootfs.diff_ids.length);
    expect(config.rootfs.diff_ids).toHaveLength(info.Layers.length);
    await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${name()}`, `oci:${join(work, 'copy')}:v1`]);
  });

  it('as an OCI layout, runs in runc with the image\'s own command, user and working directory', async () => {
    const layout = join(work, 'layout');
    const r = await build(['--output', `type=oci,dest=${layout},tar=false,name=${name()}`]);
    expect(r.code).toBe(0);
    await run('oci-image-tool', ['validate', '--type', 'image', '--ref', 'name=v1', layout]);
    const bundle = join(work, 'bundle');
    await run('umoci', ['unpack', '--image', `${layout}:v1`, bundle]);
    expect(await runcRun(bundle)).toBe('hello from a Dockerfile RUN\ncopied from the context\n1000\nno vi\n');
  });

  it("a rebuild from the cache pushes the same image (history dated by its layers' commit times, as BuildKit)", async () => {
    const meta = join(work, 'rebuild.json');
    const r = await build(['-t', name(), '--push', '--metadata-file', meta]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/CACHED/);
    const again = (await readMetadata(meta))['containerimage.digest'];
    expect(again).toBe(firstDigest);
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--config', `docker://${name()}`], { encoding: 'utf8' });
    const config = JSON.parse(stdout) as { created: string; history: { created?: string }[] };
    expect(config.history.every((h) => typeof h.created === 'string')).toBe(true);
    expect(config.created).toBe(config.history.at(-1)!.created);
  });

  it('is reproducible with --build-arg SOURCE_DATE_EPOCH and rewrite-timestamp=true', async () => {
    const digests: string[] = [];
    for (const i of [0, 1]) {
      const meta = join(work, `repro-${i}.json`);
      const r = await build(
        ['--build-arg', 'SOURCE_DATE_EPOCH=1700000000', '--output', `type=image,name=${registry.host}/e2e/dockerfile-repro:v${i},push=true,rewrite-timestamp=true`, '--metadata-file', meta],
        join(work, `repro-store-${i}`),
      );
      expect(r.code).toBe(0);
      digests.push((await readMetadata(meta))['containerimage.digest']!);
    }
    expect(digests[0]).toBe(digests[1]);
    const info = (await skopeoInspect(`${registry.host}/e2e/dockerfile-repro:v0`)) as { Created: string };
    expect(new Date(info.Created).getTime()).toBe(1_700_000_000_000);
  });
});
