/**
 * Issue 13 acceptance through the built CLI and a real registry (behind a
 * fault proxy that logs every request): `--cache-to type=registry` in min
 * and max modes, then `--cache-from` on an empty store — every step CACHED,
 * and only the blobs of the results the build needed pulled.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '@bkt/registry/testing';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { run } from '../images/lib.js';
import { blobsPulled, cacheBuild, graphSteps, layoutManifest, writeCacheProject } from './lib.js';

let registry: RegistryServer;
let proxy: FaultProxy;
let busybox: PushedImage;
let work: string;
let project: string;

beforeAll(async () => {
  registry = await startRegistry();
  proxy = await startFaultProxy(registry.host);
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('cache-registry');
  project = join(work, 'project');
  await writeCacheProject(project, `${proxy.host}/library/busybox:latest`);
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await registry?.stop();
  if (work) await removeDir(work);
});

async function skopeoRaw(ref: string, config = false): Promise<any> {
  const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', ...(config ? ['--config'] : []), `docker://${ref}`], { encoding: 'utf8' });
  return JSON.parse(stdout);
}

async function cacheConfigOf(ref: string): Promise<{ layers?: unknown[]; records: { digest: string; layers?: unknown[]; chains?: unknown[] }[] }> {
  const manifest = await skopeoRaw(ref);
  expect(manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
  expect(manifest.config.mediaType).toBe('application/vnd.buildkit.cacheconfig.v0');
  const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--config', '--raw', `docker://${ref}`], { encoding: 'utf8' });
  return JSON.parse(stdout);
}

const withResults = (c: { records: { layers?: unknown[]; chains?: unknown[] }[] }) => c.records.filter((r) => (r.layers?.length ?? 0) + (r.chains?.length ?? 0) > 0).length;

describe('--cache-to type=registry / --cache-from', () => {
  const maxRef = () => `${proxy.host}/cache/app:max`;
  const minRef = () => `${proxy.host}/cache/app:min`;
  let fullChainLayers: string[];

  it('exports mode=max with every step and mode=min with only the final result chain', async () => {
    const root = join(work, 'store-a');
    const meta = join(work, 'meta.json');
    const a = await cacheBuild(project, root, ['--cache-to', `type=registry,ref=${maxRef()},mode=max`, '--cache-to', `type=registry,ref=${minRef()}`, '--metadata-file', meta]);
    expect(a.code, a.stderr).toBe(0);
    const max = await cacheConfigOf(maxRef());
    const min = await cacheConfigOf(minRef());
    // max: base, the build stage's RUN, the two COPYs and the final RUN have results; min: base, COPY, COPY, RUN
    // (the chain of the final image), not the build stage's RUN.
    // Records with a result — min: FROM, COPY ctx.txt and COPY --from (each under its definition and
    // content key), the final RUN; max: those and the build stage's RUN.
    expect(withResults(min)).toBe(6);
    expect(withResults(max)).toBe(7);
    expect(max.layers!.length).toBe(5);
    expect(min.layers!.length).toBe(4);
    const maxManifest = await skopeoRaw(maxRef());
    expect(maxManifest.layers.every((l: any) => /^sha256:/.test(l.annotations['containerd.io/uncompressed']))).toBe(true);
    // The build's metadata names the cache manifest (BuildKit's cache.manifest).
    const metadata = JSON.parse(await import('node:fs/promises').then((fs) => fs.readFile(meta, 'utf8')));
    expect(JSON.parse(metadata['cache.manifest']).digest).toMatch(/^sha256:/);
    fullChainLayers = (await skopeoRaw(minRef())).layers.map((l: any) => l.digest);
  });

  it('a re-export of the same build pushes nothing new: the same manifest', async () => {
    const before = await skopeoRaw(maxRef());
    const b = await cacheBuild(project, join(work, 'store-a'), ['--cache-to', `type=registry,ref=${maxRef()},mode=max`]);
    expect(b.code, b.stderr).toBe(0);
    expect(await skopeoRaw(maxRef())).toEqual(before);
  });

  it('an empty store with --cache-from: every step CACHED, only the final image layers pulled', async () => {
    const root = join(work, 'store-b');
    const out = join(work, 'oci-out');
    proxy.log.length = 0;
    const b = await cacheBuild(project, root, ['--cache-from', `type=registry,ref=${maxRef()}`, '--output', `type=oci,dest=${out},tar=false`]);
    expect(b.code, b.stderr).toBe(0);
    const steps = graphSteps(b);
    expect(steps.length).toBeGreaterThan(4);
    expect(steps.filter((s) => !s.cached).map((s) => s.name)).toEqual([]);
    const pulledList = blobsPulled(proxy.log, 'cache/app');
    const pulled = new Set(pulledList);
    expect(pulledList).toHaveLength(pulled.size); // each once
    const image = await layoutManifest(out);
    // The exported image's layers are the cache's blobs, pulled once each; the build stage's layer is not pulled.
    const needed = image.layers.map((l) => l.digest);
    expect(needed.every((d) => fullChainLayers.includes(d))).toBe(true);
    const maxConfig = (await skopeoRaw(maxRef())).config.digest as string;
    expect([...pulled].sort()).toEqual([...new Set([...needed, maxConfig])].sort());
    // The base layer came with the cache, not from the base image's repository.
    expect(blobsPulled(proxy.log, 'library/busybox')).not.toContain(busybox.layer.digest);
    await rm(root, { recursive: true, force: true });
  });

  it('merges several --cache-from refs; an unreachable ref is an error naming it', async () => {
    const root = join(work, 'store-c');
    const b = await cacheBuild(project, root, ['--cache-from', `type=registry,ref=${minRef()}`, '--cache-from', `${maxRef()}`, '--output', `type=local,dest=${join(work, 'out-c')}`]);
    expect(b.code, b.stderr).toBe(0);
    expect(graphSteps(b).filter((s) => !s.cached).map((s) => s.name)).toEqual([]);
    const bad = await cacheBuild(project, join(work, 'store-d'), ['--cache-from', `type=registry,ref=${proxy.host}/cache/none:nope`]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/cache .*cache\/none:nope not found/);
  });
});
