/**
 * Issue 4 acceptance through the built CLI: a fault-injecting proxy in front
 * of the registry (a connection dropped mid-blob, 500 and 429 answers, resets
 * during uploads, a body with the wrong digest). Pulls and pushes succeed by
 * retrying or fail with a clear error, and the content store never holds a
 * blob whose bytes don't hash to its name.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '@bkt/registry/testing';
import { pushBusyboxImage, skopeoInspect, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { blobCount, bktEnv, corruptBlobs, readMetadata, run, writeImageProject } from './lib.js';

let registry: RegistryServer;
let proxy: FaultProxy;
let busybox: PushedImage;
let work: string;
let n = 0;

/** The second step makes a 3 MB layer, so a push has a big upload to break. */
const STEPS = ['echo "built behind a flaky proxy" > /flaky.txt', 'head -c 3000000 /dev/urandom > /random.bin'];

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  proxy = await startFaultProxy(registry.host);
  work = await tempDir('images-faults');
});

afterAll(async () => {
  await proxy?.close();
  await registry?.stop();
  if (work) await removeDir(work);
});

beforeEach(() => {
  proxy.clear();
  proxy.log.length = 0;
});

/** Builds FROM `base` with STEPS in a fresh project and store; `output` is an `--output` spec. */
async function build(base: string, output?: string) {
  const project = join(work, `p${n++}`);
  await mkdir(project);
  await writeImageProject(project, base, STEPS);
  const root = join(project, 'store');
  const meta = join(project, 'meta.json');
  const r = await bktEnv(['build', '--root', root, '--progress', 'plain', ...(output ? ['--output', output, '--metadata-file', meta] : [])], {
    cwd: project,
  });
  return { ...r, root, meta };
}

const viaProxy = () => `${proxy.host}/library/busybox:latest`;
const layerPath = () => new RegExp(`/v2/library/busybox/blobs/${busybox.layer.digest}$`);

describe('pulls through a faulty proxy', () => {
  it('retry a 500, a 429 with Retry-After, and resume a blob dropped mid-body', async () => {
    // The tag is resolved with HEAD, then the manifest is fetched by digest.
    proxy.inject({ method: 'HEAD', path: /\/v2\/library\/busybox\/manifests\/latest$/, fault: { kind: 'status', status: 429, headers: { 'retry-after': '1' } } });
    proxy.inject({ method: 'GET', path: /\/v2\/library\/busybox\/manifests\//, fault: { kind: 'status', status: 500 } });
    proxy.inject({ method: 'GET', path: layerPath(), fault: { kind: 'drop', afterBytes: 200_000 } });
    const r = await build(viaProxy());
    expect(r.stderr).toMatch(/solver time/);
    expect(r.code).toBe(0);
    const faults = proxy.log.filter((e) => e.fault).map((e) => e.fault);
    expect(faults.sort()).toEqual(['drop', 'status', 'status']);
    // The download went on from where the connection broke.
    const layerGets = proxy.log.filter((e) => e.method === 'GET' && layerPath().test(e.path));
    expect(layerGets.length).toBeGreaterThanOrEqual(2);
    expect(layerGets.at(-1)!.range).toMatch(/^bytes=[1-9]\d*-/);
    expect(await corruptBlobs(r.root)).toEqual([]);
    expect(await blobCount(r.root)).toBeGreaterThanOrEqual(3);
  });

  it('fail with a clear error when a blob keeps coming with the wrong digest, and store no bad bytes', async () => {
    proxy.inject({ method: 'GET', path: layerPath(), fault: { kind: 'corrupt' }, times: Infinity });
    const r = await build(viaProxy());
    expect(r.code).toBe(1);
    const error = r.stderr.split('\n').filter((l) => l.startsWith('error')).join('\n');
    expect(error).toContain(busybox.layer.digest);
    expect(error).toMatch(new RegExp(`GET blob ${busybox.layer.digest} from ${proxy.host}/library/busybox: .*digest mismatch: expected ${busybox.layer.digest}, got sha256:[0-9a-f]{64}`));
    expect(await corruptBlobs(r.root)).toEqual([]);

    // The same store builds once the network behaves.
    proxy.clear();
    const again = await bktEnv(['build', '--root', r.root, '--progress', 'plain'], { cwd: join(r.root, '..') });
    expect(again.code).toBe(0);
    expect(await corruptBlobs(r.root)).toEqual([]);
  });

  it('refuse a manifest whose bytes do not match its digest, naming both digests', async () => {
    proxy.inject({ method: 'GET', path: /\/v2\/library\/busybox\/manifests\//, fault: { kind: 'corrupt' } });
    const r = await build(viaProxy());
    expect(r.code).toBe(1);
    const error = r.stderr.split('\n').filter((l) => l.startsWith('error')).join('\n');
    expect(error).toMatch(new RegExp(`digest mismatch: expected ${busybox.manifest.digest}, got sha256:[0-9a-f]{64}`));
    expect(error).toContain(`${proxy.host}/library/busybox`);
    expect(await corruptBlobs(r.root)).toEqual([]);
  });
});

describe('pushes through a faulty proxy', () => {
  it('retry resets, 500s and dropped answers, and mount the base layer across repositories', async () => {
    const name = `${proxy.host}/e2e/pushed:v1`;
    // Anonymous pull of the base through the proxy first, then the push meets the faults.
    proxy.inject({ method: 'POST', path: /\/v2\/e2e\/pushed\/blobs\/uploads\/$/, fault: { kind: 'reset' } });
    // The first upload of each blob (the 3 MB layer, the small one, the config) is cut off while its body is
    // being sent, the next upload gets a 500.
    proxy.inject({ method: 'PUT', path: /\/v2\/e2e\/pushed\/blobs\/uploads\//, fault: { kind: 'reset' }, times: 3 });
    proxy.inject({ method: 'PUT', path: /\/v2\/e2e\/pushed\/blobs\/uploads\//, fault: { kind: 'status', status: 500 } });
    proxy.inject({ method: 'PUT', path: /\/v2\/e2e\/pushed\/manifests\/v1$/, fault: { kind: 'drop', afterBytes: 0 } });
    proxy.inject({ method: 'PUT', path: /\/v2\/e2e\/pushed\/manifests\/v1$/, fault: { kind: 'status', status: 503 } });
    const r = await build(viaProxy(), `type=image,name=${name},push=true`);
    expect(r.stderr).toMatch(/solver time/);
    expect(r.code).toBe(0);
    expect(proxy.log.filter((e) => e.fault).length).toBe(7);
    // The busybox layer came from library/busybox on the same registry: mounted, not uploaded.
    const mounts = proxy.log.filter((e) => e.method === 'POST' && e.status === 201 && decodeURIComponent(e.path).includes(`mount=${busybox.layer.digest}&from=library/busybox`));
    expect(mounts).toHaveLength(1);
    expect(proxy.log.some((e) => e.method === 'PATCH' || (e.method === 'PUT' && e.path.includes(busybox.layer.digest.slice(7))))).toBe(false);
    const digest = (await readMetadata(r.meta))['containerimage.digest'];
    const info = (await skopeoInspect(`${registry.host}/e2e/pushed:v1`)) as { Digest: string; Layers: string[] };
    expect(info.Digest).toBe(digest);
    expect(info.Layers[0]).toBe(busybox.layer.digest);
    expect(info.Layers).toHaveLength(1 + STEPS.length);
    // skopeo checks every digest of what the registry finally holds.
    await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${registry.host}/e2e/pushed:v1`, `oci:${join(work, 'pushed-copy')}:v1`]);
    expect(await corruptBlobs(r.root)).toEqual([]);
  });

  it('fail with a clear error naming the registry when it keeps answering 500', async () => {
    proxy.inject({ method: 'PUT', path: /\/v2\/e2e\/broken\/manifests\/v1$/, fault: { kind: 'status', status: 500 }, times: Infinity });
    const r = await build(viaProxy(), `type=image,name=${proxy.host}/e2e/broken:v1,push=true`);
    expect(r.code).toBe(1);
    const error = r.stderr.split('\n').filter((l) => l.startsWith('error')).join('\n');
    expect(error).toContain(proxy.host);
    expect(error).toMatch(/500/);
    expect(await corruptBlobs(r.root)).toEqual([]);
  });
});
