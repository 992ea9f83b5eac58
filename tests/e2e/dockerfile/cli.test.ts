/**
 * `bkt build` of Dockerfiles with the flags of `docker buildx build` that the
 * corpus does not exercise: `-t NAME --push` and `--output type=registry`
 * (checked with skopeo), `--output type=docker` (read by `skopeo copy
 * docker-archive:`), `-f -`, `--label`, `--add-host`, `--no-cache-filter`,
 * `--no-cache`, `--platform` and `--metadata-file`.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, skopeoInspect, startRegistry, type RegistryServer } from '@bkt/testkit';
import { bkt } from '../helpers.js';

describe('bkt build: Dockerfile flags', () => {
  let registry: RegistryServer;
  let base: string;
  let work: string;
  let root: string;

  beforeAll(async () => {
    registry = await startRegistry();
    base = (await pushBusyboxImage(registry, 'busybox')).reference;
    work = await mkdtemp(join(tmpdir(), 'bkt-df-cli-'));
    root = join(work, 'store');
    await mkdir(join(work, 'ctx'));
    await writeFile(join(work, 'ctx/hello.txt'), 'hello\n');
  });
  afterAll(async () => {
    await registry?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('-t NAME --push and --output type=registry push the image; --metadata-file has its digest', async () => {
    await writeFile(join(work, 'Dockerfile'), `FROM ${base}\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt > /copied\nCMD ["cat", "/copied"]\n`);
    const name = `${registry.host}/e2e/df-push:v1`;
    const r = await bkt(['build', '--root', root, '--progress', 'plain', '-t', name, '--push', '--metadata-file', 'meta.json', '-f', 'Dockerfile', 'ctx'], { cwd: work });
    expect(r.code, r.stderr).toBe(0);
    const meta = JSON.parse(await readFile(join(work, 'meta.json'), 'utf8')) as Record<string, unknown>;
    expect(meta['image.name']).toBe(name);
    const inspected = await skopeoInspect(name);
    expect(inspected.Digest).toBe(meta['containerimage.digest']);
    expect((inspected.Layers as string[]).length).toBe(3);

    const other = `${registry.host}/e2e/df-registry:v2`;
    const o = await bkt(['build', '--root', root, '--progress', 'quiet', '--output', `type=registry,name=${other}`, '-f', 'Dockerfile', 'ctx'], { cwd: work });
    expect(o.code, o.stderr).toBe(0);
    // The same layers (cached steps); the config differs by its creation time.
    expect((await skopeoInspect(other)).Layers).toEqual(inspected.Layers);
  }, 120_000);

  it('reads the Dockerfile from stdin and maps --label, --add-host, --platform, --no-cache-filter; writes a docker archive', async () => {
    const dockerfile = [
      `FROM ${base} AS deps`,
      'RUN date +%s%N > /stamp',
      `FROM ${base}`,
      'COPY --from=deps /stamp /stamp',
      'RUN grep db.internal /etc/hosts > /hosts-line',
      '',
    ].join('\n');
    const archive = join(work, 'image.docker.tar');
    const args = (extra: string[]) => [
      'build', '--root', root, '--progress', 'plain', '-f', '-', '--label', 'org.example.team=build', '--add-host', 'db.internal:10.1.2.3',
      '--platform', 'linux/amd64', '--output', `type=docker,dest=${archive},name=e2e/stdin:v1`, '--output', `type=local,dest=${join(work, 'out')}`, ...extra, 'ctx',
    ];
    const first = await bkt(args([]), { cwd: work, input: dockerfile });
    expect(first.code, first.stderr).toBe(0);
    const layout = join(work, 'from-docker-archive');
    await execa('skopeo', ['copy', `docker-archive:${archive}`, `oci:${layout}:v1`]);
    const config = JSON.parse((await execa('skopeo', ['inspect', '--config', `oci:${layout}:v1`])).stdout) as {
      config: { Labels?: Record<string, string> };
      architecture: string;
    };
    expect(config.config.Labels).toEqual({ 'org.example.team': 'build' });
    expect(config.architecture).toBe('amd64');
    expect(await readFile(join(work, 'out/hosts-line'), 'utf8')).toMatch(/^10\.1\.2\.3\s+db\.internal$/m);

    // Cached: no step runs again. --no-cache-filter deps: the deps stage runs again (and so what depends on it).
    const cached = await bkt(args([]), { cwd: work, input: dockerfile });
    expect(cached.code, cached.stderr).toBe(0);
    const filtered = await bkt(args(['--no-cache-filter', 'deps']), { cwd: work, input: dockerfile });
    expect(filtered.code, filtered.stderr).toBe(0);
    const doneSteps = (out: string) => new Set([...out.matchAll(/^#(\d+) DONE/gm)].map((m) => m[1]));
    const ranIn = (out: string) => {
      const done = doneSteps(out);
      return [...out.matchAll(/^#(\d+) \[[^\]]+\] RUN (.+)$/gm)].filter((m) => done.has(m[1]!)).map((m) => m[2]);
    };
    expect(ranIn(cached.stderr)).toEqual([]);
    expect(ranIn(filtered.stderr)).toContain('date +%s%N > /stamp');
  }, 120_000);

  it('refuses a --secret whose file is missing and an unknown --allow before building', async () => {
    const s = await bkt(['build', '--root', root, '--secret', 'id=x,src=missing.txt', '-f', 'Dockerfile', 'ctx'], { cwd: work });
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/--secret id=x: cannot read .*missing.txt/);
    const a = await bkt(['build', '--root', root, '--allow', 'device', '-f', 'Dockerfile', 'ctx'], { cwd: work });
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/--allow device: unknown entitlement/);
  });
});
