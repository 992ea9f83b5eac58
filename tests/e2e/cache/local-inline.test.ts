/**
 * Issue 13 acceptance: `type=local` (an OCI layout directory) and
 * `type=inline` (records in the pushed image's config), each exported and
 * imported into an empty store with every step CACHED; `bkt cache inspect`
 * lists their records.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { bktEnv, run } from '../images/lib.js';
import { cacheBuild, graphSteps, writeCacheProject } from './lib.js';

let registry: RegistryServer;
let work: string;
let project: string;

beforeAll(async () => {
  registry = await startRegistry();
  await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('cache-local');
  project = join(work, 'project');
  await writeCacheProject(project, `${registry.host}/library/busybox:latest`);
}, 60_000);

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

const inspect = async (ref: string) => {
  const r = await bktEnv(['cache', 'inspect', '--format', 'json', ref], { cwd: work });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { inline: boolean; layers: unknown[]; records: { digest: string; results: string[][] }[] };
};
const withResults = (c: { records: { results: unknown[] }[] }) => c.records.filter((r) => r.results.length > 0).length;

describe('--cache-to type=local', () => {
  it('writes an OCI layout whose index names the cache manifest by tag; an empty store imports it, every step CACHED', async () => {
    const dir = join(work, 'local-cache');
    const a = await cacheBuild(project, join(work, 'store-a'), ['--cache-to', `type=local,dest=${dir},mode=max`, '--cache-to', `type=local,dest=${dir},tag=min`]);
    expect(a.code, a.stderr).toBe(0);
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
    // Both tags are there: the second export kept the first's entry.
    expect(index.manifests.map((m: any) => m.annotations['org.opencontainers.image.ref.name']).sort()).toEqual(['latest', 'min']);
    expect(JSON.parse(await readFile(join(dir, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    const max = await inspect(`type=local,src=${dir}`);
    const min = await inspect(`type=local,src=${dir},tag=min`);
    expect(withResults(max)).toBe(7);
    expect(withResults(min)).toBe(6);
    // Every blob a manifest names is in the layout.
    const blobs = new Set(await readdir(join(dir, 'blobs/sha256')));
    for (const l of max.layers as { blob: string }[]) expect(blobs.has(l.blob.slice(7))).toBe(true);

    const b = await cacheBuild(project, join(work, 'store-b'), ['--cache-from', `type=local,src=${dir}`, '--output', `type=local,dest=${join(work, 'out-b')}`]);
    expect(b.code, b.stderr).toBe(0);
    expect(graphSteps(b).filter((s) => !s.cached).map((s) => s.name)).toEqual([]);
    expect(await readFile(join(work, 'out-b', 'final'), 'utf8')).toBe('built plain\ncontext file\n');
  });

  it("an empty store importing the cache makes the exporter's very image (history dated by the cache's createdAt, as BuildKit)", async () => {
    const dir = join(work, 'dated-cache');
    const digestOf = async (meta: string) => (JSON.parse(await readFile(meta, 'utf8')) as Record<string, string>)['containerimage.digest'];
    const a = await cacheBuild(project, join(work, 'store-dated-a'), ['--cache-to', `type=local,dest=${dir},mode=max`, '--output', `type=oci,dest=${join(work, 'dated-a.tar')}`, '--metadata-file', join(work, 'dated-a.json')]);
    expect(a.code, a.stderr).toBe(0);
    const b = await cacheBuild(project, join(work, 'store-dated-b'), ['--cache-from', `type=local,src=${dir}`, '--output', `type=oci,dest=${join(work, 'dated-b.tar')}`, '--metadata-file', join(work, 'dated-b.json')]);
    expect(b.code, b.stderr).toBe(0);
    expect(graphSteps(b).filter((s) => !s.cached).map((s) => s.name)).toEqual([]);
    expect(await digestOf(join(work, 'dated-b.json'))).toBe(await digestOf(join(work, 'dated-a.json')));
  });

  it("a build named into the local image store (uncompressed layers there) exports its cache with gzip layers, which an empty store imports", async () => {
    const dir = join(work, 'local-cache-t');
    const named = await cacheBuild(project, join(work, 'store-t'), ['-t', 'e2e/local-cache-t:v1']);
    expect(named.code, named.stderr).toBe(0);
    const a = await cacheBuild(project, join(work, 'store-t'), ['--cache-to', `type=local,dest=${dir},mode=max`]);
    expect(a.code, a.stderr).toBe(0);
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
    const manifest = JSON.parse(await readFile(join(dir, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
    const layerTypes = new Set((manifest.layers as { mediaType: string }[]).map((l) => l.mediaType));
    expect(layerTypes.size).toBeGreaterThan(0);
    // The store keeps the image's layers as plain tars; what leaves it is gzip (the cache config's own type aside).
    for (const t of layerTypes) expect(t).toMatch(/(tar\+gzip|diff\.tar\.gzip)$/);
    for (const l of manifest.layers as { digest: string }[]) {
      const head = (await readFile(join(dir, 'blobs/sha256', l.digest.slice(7)))).subarray(0, 2);
      expect([...head]).toEqual([0x1f, 0x8b]);
    }
    const b = await cacheBuild(project, join(work, 'store-t2'), ['--cache-from', `type=local,src=${dir}`, '--output', `type=local,dest=${join(work, 'out-t')}`]);
    expect(b.code, b.stderr).toBe(0);
    expect(graphSteps(b).filter((s) => !s.cached).map((s) => s.name)).toEqual([]);
    expect(await readFile(join(work, 'out-t', 'final'), 'utf8')).toBe('built plain\ncontext file\n');
  });

  it('a missing src is an error naming it', async () => {
    const r = await cacheBuild(project, join(work, 'store-x'), ['--cache-from', `type=local,src=${join(work, 'nope')}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--cache-from type=local,src=.*nope: no such directory/);
  });
});

describe('--cache-to type=inline', () => {
  const name = () => `${registry.host}/e2e/inline:v1`;

  it("puts min records in the pushed image's config; bkt cache inspect lists them; an empty store builds all CACHED from the image", async () => {
    const a = await cacheBuild(project, join(work, 'store-i'), ['--cache-to', 'type=inline', '--output', `type=image,name=${name()},push=true`]);
    expect(a.code, a.stderr).toBe(0);
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--config', '--raw', `docker://${name()}`], { encoding: 'utf8' });
    const config = JSON.parse(stdout);
    const records = JSON.parse(Buffer.from(config['moby.buildkit.cache.v0'], 'base64').toString('utf8'));
    expect(Array.isArray(records)).toBe(true);
    const listed = await inspect(name());
    expect(listed.inline).toBe(true);
    expect(withResults(listed)).toBe(6);
    // Results index the image's own layers: the final record's result is all of them.
    expect(Math.max(...listed.records.map((r) => r.results[0]?.length ?? 0))).toBe(config.rootfs.diff_ids.length);

    const b = await cacheBuild(project, join(work, 'store-j'), ['--cache-from', name(), '--output', `type=local,dest=${join(work, 'out-j')}`]);
    expect(b.code, b.stderr).toBe(0);
    expect(graphSteps(b).filter((s) => !s.cached).map((s) => s.name)).toEqual([]);
    expect(await readFile(join(work, 'out-j', 'final'), 'utf8')).toBe('built plain\ncontext file\n');
  });

  it('mode=max is refused for inline, naming the attribute', async () => {
    const r = await cacheBuild(project, join(work, 'store-k'), ['--cache-to', 'type=inline,mode=max']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cache export type=inline: the inline cache exports only mode=min/);
  });
});
