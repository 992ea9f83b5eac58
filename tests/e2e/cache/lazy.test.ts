/**
 * Imported results are lazy (as BuildKit's lazy refs): a fully cached build
 * from `--cache-from` with no output fetches the final result's blobs and
 * keeps the result in the store without unpacking it; the next build on that
 * store is fully cached without any registry, and an export of it makes the
 * tree then. A blob whose digest mismatches fails the import cleanly.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '@bkt/registry/testing';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { bktEnv, run } from '../images/lib.js';
import { blobsPulled, cacheBuild, graphSteps, layoutManifest } from './lib.js';

let registry: RegistryServer | undefined;
let proxy: FaultProxy;
let busybox: PushedImage;
let work: string;
let project: string;

beforeAll(async () => {
  registry = await startRegistry();
  proxy = await startFaultProxy(registry.host);
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('cache-lazy');
  project = join(work, 'project');
  await mkdir(project, { recursive: true });
  // The base is pinned by digest: a store that has its manifest resolves it without a registry.
  await writeFile(
    join(project, 'Dockerfile'),
    [
      `FROM ${proxy.host}/library/busybox@${busybox.manifest.digest}`,
      'RUN echo built > /built && head -c 2097152 /dev/urandom > /random',
      'COPY ctx.txt /ctx.txt',
      'RUN cat /ctx.txt /built > /final',
      '',
    ].join('\n'),
  );
  await writeFile(join(project, 'ctx.txt'), 'context file\n');
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await registry?.stop();
  if (work) await removeDir(work);
});

const cacheRef = () => `${proxy.host}/cache/lazy:max`;

/** Snapshot directories of a store still waiting for their tree (lazy). */
async function lazySnapshots(root: string): Promise<string[]> {
  const dir = join(root, 'snapshots');
  if (!existsSync(dir)) return [];
  return (await readdir(dir)).filter((id) => existsSync(join(dir, id, 'lazy.json')));
}

describe('lazy imported results', () => {
  it('exports the cache (mode=max)', async () => {
    const a = await cacheBuild(project, join(work, 'store-a'), ['--cache-to', `type=registry,ref=${cacheRef()},mode=max`]);
    expect(a.code, a.stderr).toBe(0);
  });

  it('a blob whose digest mismatches fails the import, naming it, and leaves no snapshot, blob or partial write; the same store then imports', async () => {
    const root = join(work, 'store-corrupt');
    // The largest layer of the cache (the RUN's) comes with a flipped byte.
    const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${cacheRef()}`], { encoding: 'utf8' });
    const layer = (JSON.parse(stdout).layers as { digest: string; size: number }[]).sort((x, y) => y.size - x.size)[0];
    proxy.inject({ method: 'GET', path: new RegExp(`^/v2/cache/lazy/blobs/${layer.digest}`), fault: { kind: 'corrupt' }, times: Infinity });
    let b;
    try {
      b = await cacheBuild(project, root, ['--cache-from', `type=registry,ref=${cacheRef()}`]);
    } finally {
      proxy.clear();
    }
    expect(b.code).toBe(1);
    expect(b.stderr).toContain(`digest mismatch: expected ${layer.digest}`);
    expect(await lazySnapshots(root)).toEqual([]);
    // Nothing of the corrupt layer was kept, nothing is left being written.
    expect(existsSync(join(root, 'content/blobs/sha256', layer.digest.slice(7)))).toBe(false);
    expect(await readdir(join(root, 'content/ingest'))).toEqual([]);
    const du = await bktEnv(['du', '--root', root, '--verbose'], { timeoutMs: 60_000 });
    expect(du.code, du.stderr).toBe(0);
    expect(du.stdout).not.toMatch(/of cache /);

    const again = await cacheBuild(project, root, ['--cache-from', `type=registry,ref=${cacheRef()}`]);
    expect(again.code, again.stderr).toBe(0);
    expect(graphSteps(again).filter((s) => !s.cached).map((s) => s.name)).toEqual([]);
  });

  it('an image export and a cache export of an imported result reuse its blobs without unpacking it', async () => {
    const root = join(work, 'store-oci');
    const out = join(work, 'oci-out');
    const cacheOut = join(work, 'cache-out');
    proxy.log.length = 0;
    const b = await cacheBuild(project, root, [
      '--cache-from',
      `type=registry,ref=${cacheRef()}`,
      '--output',
      `type=oci,dest=${out},tar=false`,
      '--cache-to',
      `type=local,dest=${cacheOut},mode=min`,
    ]);
    expect(b.code, b.stderr).toBe(0);
    const image = await layoutManifest(out);
    const pulled = blobsPulled(proxy.log, 'cache/lazy');
    expect(image.layers.every((l) => pulled.includes(l.digest))).toBe(true);
    const cacheLayers = (await layoutManifest(cacheOut)).layers.map((l) => l.digest);
    expect(cacheLayers.sort()).toEqual(image.layers.map((l) => l.digest).sort());
    expect((await lazySnapshots(root)).length).toBe(image.layers.length);
  });

  it('an exec on top of an imported result unpacks it then', async () => {
    const changed = join(work, 'changed');
    await mkdir(changed, { recursive: true });
    const dockerfile = await readFile(join(project, 'Dockerfile'), 'utf8');
    await writeFile(join(changed, 'Dockerfile'), dockerfile.replace('RUN cat /ctx.txt /built > /final', 'RUN cat /ctx.txt /built > /changed && ls /bin/busybox >> /changed'));
    await writeFile(join(changed, 'ctx.txt'), 'context file\n');
    const root = join(work, 'store-exec');
    const out = join(work, 'out-exec');
    const b = await cacheBuild(changed, root, ['--cache-from', `type=registry,ref=${cacheRef()}`, '--output', `type=local,dest=${out}`]);
    expect(b.code, b.stderr).toBe(0);
    expect(graphSteps(b).filter((s) => !s.cached).map((s) => s.name)).toEqual([expect.stringContaining('RUN cat /ctx.txt /built > /changed')]);
    expect(await readFile(join(out, 'changed'), 'utf8')).toBe('context file\nbuilt\n/bin/busybox\n');
    expect(await lazySnapshots(root)).toEqual([]);
  });

  it('no output: the result stays in the store as blobs; with the registry stopped the next build is fully cached and its local export has the files', async () => {
    const root = join(work, 'store-b');
    proxy.log.length = 0;
    const b = await cacheBuild(project, root, ['--cache-from', `type=registry,ref=${cacheRef()}`]);
    expect(b.code, b.stderr).toBe(0);
    expect(graphSteps(b).filter((s) => !s.cached).map((s) => s.name)).toEqual([]);
    // The final result's layers were fetched, not unpacked: lazy snapshots holding their blobs.
    const pulled = blobsPulled(proxy.log, 'cache/lazy');
    expect(pulled.length).toBeGreaterThan(1);
    const lazy = await lazySnapshots(root);
    expect(lazy.length).toBe(pulled.length - 1); // every layer; the other blob pulled is the cache config
    for (const id of lazy) expect(await readdir(join(root, 'snapshots', id, 'fs'))).toEqual([]);

    await proxy.close();
    await registry!.stop();
    registry = undefined;

    const out = join(work, 'out-c');
    const c = await cacheBuild(project, root, ['--output', `type=local,dest=${out}`]);
    expect(c.code, c.stderr).toBe(0);
    expect(graphSteps(c).filter((s) => !s.cached).map((s) => s.name)).toEqual([]);
    // Unpacked for the export: every layer, the base image's included.
    expect(await readFile(join(out, 'final'), 'utf8')).toBe('context file\nbuilt\n');
    expect((await readFile(join(out, 'random'))).length).toBe(2097152);
    expect(existsSync(join(out, 'bin', 'busybox'))).toBe(true);
    expect(await lazySnapshots(root)).toEqual([]);
  });
});
