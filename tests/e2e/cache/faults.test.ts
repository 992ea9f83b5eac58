/**
 * Issue 13: a registry failing mid-export (behind the fault proxy) or down.
 * Without ignore-error the build fails naming the cache export; with
 * ignore-error=true it succeeds with a warning; either way the registry never
 * shows a manifest whose blobs are missing (the manifest is put last).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '@bkt/registry/testing';
import { pushBusyboxImage, startRegistry, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { bktEnv } from '../images/lib.js';
import { writeCacheProject } from './lib.js';

let registry: RegistryServer;
let proxy: FaultProxy;
let work: string;
let project: string;

beforeAll(async () => {
  registry = await startRegistry();
  proxy = await startFaultProxy(registry.host);
  await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('cache-faults');
  project = join(work, 'project');
  await writeCacheProject(project, `${registry.host}/library/busybox:latest`);
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await registry?.stop();
  if (work) await removeDir(work);
});

const build = (root: string, cacheTo: string) =>
  bktEnv(['build', '--root', join(work, root), '--progress', 'plain', '--cache-to', cacheTo, project], { cwd: project, timeoutMs: 240_000 });

/** The registry's own answer (not the proxy's) for a manifest. */
async function manifestStatus(repo: string, tag: string): Promise<number> {
  const res = await fetch(`${registry.url}/v2/${repo}/manifests/${tag}`, { method: 'HEAD', headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
  return res.status;
}

describe('a registry failing during a cache export', () => {
  it('fails the build naming the cache export; no manifest is visible', async () => {
    // Every blob upload's final PUT fails: some layers cannot get in.
    proxy.inject({ method: 'PUT', path: /^\/v2\/cache\/broken\/blobs\/uploads\//, fault: { kind: 'status', status: 500 }, times: Infinity });
    const r = await build('store-a', `type=registry,ref=${proxy.host}/cache/broken:latest,mode=max`);
    proxy.clear();
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/cache export type=registry: /);
    expect(await manifestStatus('cache/broken', 'latest')).toBe(404);
    // Uploads did fail (the fault hit), and nothing reached the manifest endpoint.
    expect(proxy.log.some((q) => q.fault === 'status' && q.path.startsWith('/v2/cache/broken/blobs/uploads/'))).toBe(true);
    expect(proxy.log.some((q) => q.method === 'PUT' && q.path.startsWith('/v2/cache/broken/manifests/'))).toBe(false);
  });

  it('with ignore-error=true the build succeeds with a warning; still no manifest', async () => {
    proxy.inject({ method: 'PUT', path: /^\/v2\/cache\/ignored\/blobs\/uploads\//, fault: { kind: 'status', status: 500 }, times: Infinity });
    const r = await build('store-a', `type=registry,ref=${proxy.host}/cache/ignored:latest,mode=max,ignore-error=true`);
    proxy.clear();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/cache export type=registry failed \(ignore-error=true\)/);
    expect(await manifestStatus('cache/ignored', 'latest')).toBe(404);
  });

  it('a registry that is down: a clear error, or a warning with ignore-error=true', async () => {
    const down = '127.0.0.1:9'; // discard port: nothing listens
    const failed = await build('store-a', `type=registry,ref=${down}/cache/app:latest`);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/cache export type=registry: .*127\.0\.0\.1:9/);
    const ignored = await build('store-a', `type=registry,ref=${down}/cache/app:latest,ignore-error=true`);
    expect(ignored.code, ignored.stderr).toBe(0);
    expect(ignored.stderr).toMatch(/cache export type=registry failed \(ignore-error=true\)/);
  });
});
