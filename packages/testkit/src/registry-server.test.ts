import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import tar from 'tar-stream';
import { RegistryClient, staticCredentials } from '@bkt/registry';
import { busyboxLayerTar, pushBusyboxImage, skopeoInspect, startRegistry, type RegistryServer } from './registry-server.js';

async function tarEntries(bytes: Buffer): Promise<Map<string, tar.Header>> {
  const entries = new Map<string, tar.Header>();
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      entries.set(header.name, header);
      stream.on('end', next);
      stream.resume();
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  extract.end(bytes);
  await done;
  return entries;
}

describe('startRegistry', () => {
  let registry: RegistryServer;
  beforeAll(async () => {
    registry = await startRegistry();
  });
  afterAll(async () => {
    await registry?.stop();
  });

  it('serves the v2 API on a loopback port', async () => {
    expect(registry.host).toMatch(/^127\.0\.0\.1:\d+$/);
    const res = await fetch(`${registry.url}/v2/`);
    expect(res.status).toBe(200);
  });

  it('pushes a busybox image that skopeo reads', async () => {
    const pushed = await pushBusyboxImage(registry, 'base/busybox', 'v1');
    const info = await skopeoInspect(pushed.reference);
    expect(info.Digest).toBe(pushed.manifest.digest);
    expect(info.Layers).toEqual([pushed.layer.digest]);
    expect(info.Env).toEqual(['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
    expect(info.Os).toBe('linux');
    // Deterministic: pushing again gives the same manifest digest.
    const again = await pushBusyboxImage(registry, 'base/busybox', 'v2');
    expect(again.manifest.digest).toBe(pushed.manifest.digest);
  });

  it('stop() kills the registry and removes its storage', async () => {
    const r = await startRegistry();
    await r.stop();
    expect(existsSync(r.storageDir)).toBe(false);
    await expect(fetch(`${r.url}/v2/`)).rejects.toThrow();
    await r.stop(); // idempotent
  });
});

describe('busyboxLayerTar', () => {
  it('holds busybox, applet symlinks, passwd and a sticky /tmp', async () => {
    const entries = await tarEntries(await busyboxLayerTar());
    expect(entries.get('bin/busybox')?.mode).toBe(0o755);
    expect(entries.get('bin/sh')).toMatchObject({ type: 'symlink', linkname: '/bin/busybox' });
    expect(entries.get('etc/passwd')?.type).toBe('file');
    expect(entries.get('tmp/')?.mode).toBe(0o1777);
    expect(entries.get('home/user/')?.uid).toBe(1000);
  });

  it('is byte-identical across calls', async () => {
    const a = await busyboxLayerTar();
    const b = await busyboxLayerTar();
    expect(a.equals(b)).toBe(true);
  });
});

describe('startRegistry with htpasswd', () => {
  let registry: RegistryServer;
  beforeAll(async () => {
    registry = await startRegistry({ htpasswd: { user: 'alice', password: 's3cret' } });
  });
  afterAll(async () => {
    await registry?.stop();
  });

  it('requires the credentials', async () => {
    expect((await fetch(`${registry.url}/v2/`)).status).toBe(401);
    const auth = Buffer.from('alice:s3cret').toString('base64');
    expect((await fetch(`${registry.url}/v2/`, { headers: { authorization: `Basic ${auth}` } })).status).toBe(200);
  });

  it('pushes with them', async () => {
    const pushed = await pushBusyboxImage(registry, 'auth/busybox');
    const info = await skopeoInspect(pushed.reference, { creds: 'alice:s3cret' });
    expect(info.Digest).toBe(pushed.manifest.digest);
    const client = new RegistryClient({ credentials: staticCredentials({}) });
    try {
      await expect(client.getManifest(pushed.reference)).rejects.toThrow(`no credentials are configured for it`);
    } finally {
      client.close();
    }
  });
});
