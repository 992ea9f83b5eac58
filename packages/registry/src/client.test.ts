/**
 * The client against Debian's real docker-registry (started per file by the
 * test kit), directly and through the fault-injecting proxy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { isBktError } from '@bkt/core';
import { startRegistry, type RegistryServer } from './testing/registry-server.js';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryClient, referrersTag, type BlobSink } from './client.js';
import { fileSink } from './sinks.js';
import { staticCredentials } from './credentials.js';
import { digestOf, MediaType, type Descriptor } from '@bkt/oci';
import { startFaultProxy, type FaultProxy } from './testing/fault-proxy.js';

const blob = (size: number) => {
  const data = randomBytes(size);
  return { data, desc: { mediaType: 'application/octet-stream', digest: digestOf(data), size } satisfies Descriptor };
};
const fastRetry = { attempts: 4, baseDelayMs: 5, maxDelayMs: 50 };

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

/** A sink keeping bytes in memory; records whether it was committed or aborted. */
function memorySink() {
  const state = { chunks: [] as Buffer[], committed: false, aborted: undefined as Error | undefined };
  const sink: BlobSink = {
    write: (c) => void state.chunks.push(Buffer.from(c)),
    commit: () => void (state.committed = true),
    abort: (e) => void (state.aborted = e),
  };
  return { sink, state };
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

/** Pushes a one-layer image; returns its manifest descriptor. */
async function pushImage(client: RegistryClient, repo: string, tag: string, layerSize = 1000) {
  const data = gzipSync(randomBytes(layerSize));
  const layer = { data, desc: { mediaType: MediaType.OciLayerGzip, digest: digestOf(data), size: data.length } };
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const configDesc = { mediaType: MediaType.OciConfig, digest: digestOf(config), size: config.length };
  await client.pushBlob(repo, layer.desc, layer.data);
  await client.pushBlob(repo, configDesc, config);
  const manifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: configDesc, layers: [layer.desc] };
  const desc = await client.putManifest(`${repo}:${tag}`, manifest);
  return { desc, layer, configDesc };
}

let registry: RegistryServer;
let client: RegistryClient;

beforeAll(async () => {
  registry = await startRegistry();
  client = new RegistryClient({ credentials: staticCredentials({}), retry: fastRetry });
});
afterAll(async () => {
  client?.close();
  await registry?.stop();
});

describe('ping', () => {
  it('accepts a registry', async () => {
    await client.ping(registry.host);
  });

  it('refuses a server that is not a registry, naming it', async () => {
    const server = http.createServer((_req, res) => res.writeHead(404).end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const err = await rejection(client.ping(host));
      expect(err.message).toContain(`${host} is not an OCI registry`);
    } finally {
      server.close();
    }
  });
});

describe('blobs', () => {
  it('uploads monolithically, finds it, and streams it back verified', async () => {
    const repo = `${registry.host}/blobs/mono`;
    const { data, desc } = blob(100_000);
    expect(await client.headBlob(repo, desc.digest)).toBeUndefined();
    expect(await client.pushBlob(repo, desc, data)).toBe('uploaded');
    expect(await client.pushBlob(repo, desc, data)).toBe('exists');
    expect(await client.headBlob(repo, desc.digest)).toMatchObject({ digest: desc.digest, size: desc.size });
    expect((await collect(client.blobStream(repo, desc))).equals(data)).toBe(true);
    const { sink, state } = memorySink();
    await client.getBlob(repo, desc, sink);
    expect(state.committed).toBe(true);
    expect(Buffer.concat(state.chunks).equals(data)).toBe(true);
  });

  it('refuses a negative or fractional size (not "no limit"); a caller that knows no size says \'unknown\'', async () => {
    const repo = `${registry.host}/blobs/sizes`;
    const { data, desc } = blob(20_000);
    await client.pushBlob(repo, desc, data);
    for (const size of [-1, -20_000, 1.5, Number.NaN]) {
      const { sink, state } = memorySink();
      const err = await rejection(client.getBlob(repo, { digest: desc.digest, size }, sink));
      expect(isBktError(err) && err.code, String(size)).toBe('INVALID_ARGUMENT');
      expect(err.message).toContain(`invalid blob size ${JSON.stringify(size)}`);
      expect(state.chunks).toHaveLength(0);
      expect(state.committed).toBe(false);
      await expect(collect(client.blobStream(repo, { digest: desc.digest, size }))).rejects.toThrow(/invalid blob size/);
    }
    expect((await collect(client.blobStream(repo, { digest: desc.digest, size: 'unknown' }))).equals(data)).toBe(true);
    // Unknown size still verifies the digest.
    const other = blob(10);
    await expect(collect(client.blobStream(repo, { digest: other.desc.digest, size: 'unknown' }))).rejects.toThrow();
  });

  it('uploads in PATCH chunks from a re-openable stream', async () => {
    const proxy = await startFaultProxy(registry.host);
    try {
      const repo = `${proxy.host}/blobs/chunked`;
      const { data, desc } = blob(10_000);
      const body = {
        size: data.length,
        async *open() {
          for (let i = 0; i < data.length; i += 777) yield data.subarray(i, i + 777);
        },
      };
      expect(await client.pushBlob(repo, desc, body, { chunkSize: 3000 })).toBe('uploaded');
      expect(proxy.log.filter((r) => r.method === 'PATCH')).toHaveLength(4);
      expect((await collect(client.blobStream(`${registry.host}/blobs/chunked`, desc))).equals(data)).toBe(true);
    } finally {
      await proxy.close();
    }
  });

  it('uploads a file stream body as it is, and a stream that fails fails the upload', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bkt-stream-body-'));
    try {
      const { data, desc } = blob(300_000);
      const file = join(dir, 'blob');
      await writeFile(file, data);
      const body = { size: data.length, open: () => createReadStream(file, { highWaterMark: 64 * 1024 }) };
      expect(await client.pushBlob(`${registry.host}/blobs/file-stream`, desc, body)).toBe('uploaded');
      expect((await collect(client.blobStream(`${registry.host}/blobs/file-stream`, desc))).equals(data)).toBe(true);

      const other = blob(300_000);
      const gone = { size: other.data.length, open: () => createReadStream(join(dir, 'missing')) };
      const err = await rejection(client.pushBlob(`${registry.host}/blobs/file-stream-gone`, other.desc, gone));
      expect(err.message).toContain('ENOENT');
      expect(await client.headBlob(`${registry.host}/blobs/file-stream-gone`, other.desc.digest)).toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses chunked data whose digest is not the descriptor\'s, and the blob never appears', async () => {
    const repo = `${registry.host}/blobs/wrong`;
    const { data, desc } = blob(5000);
    const other = randomBytes(5000);
    const err = await rejection(client.pushBlob(repo, desc, other, { chunkSize: 2000 }));
    expect(err.message).toContain(desc.digest);
    expect(await client.headBlob(repo, desc.digest)).toBeUndefined();
    // Monolithic: the registry itself refuses it.
    const err2 = await rejection(client.pushBlob(repo, desc, other));
    expect(isBktError(err2)).toBe(true);
    expect(err2.message).toMatch(/DIGEST_INVALID|digest/i);
    expect(await client.headBlob(repo, desc.digest)).toBeUndefined();
    expect(data.length).toBe(5000);
  });

  it('writes a verified blob to a file sink, and nothing when the bytes are wrong', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bkt-sink-'));
    try {
      const repo = `${registry.host}/blobs/file`;
      const { data, desc } = blob(70_000);
      await client.pushBlob(repo, desc, data);
      await client.getBlob(repo, desc, fileSink(join(dir, 'good')));
      expect((await readFile(join(dir, 'good'))).equals(data)).toBe(true);
      // The same bytes claimed under another digest: rejected, no file, no leftovers.
      const err = await rejection(client.getBlob(repo, { digest: desc.digest, size: desc.size - 1 }, fileSink(join(dir, 'bad'))));
      expect(err.message).toContain('more than the');
      expect(await readdir(dir)).toEqual(['good']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('stops a download when its signal aborts, with a CANCELLED error', async () => {
    const repo = `${registry.host}/blobs/cancel`;
    const { data, desc } = blob(2_000_000);
    await client.pushBlob(repo, desc, data);
    const controller = new AbortController();
    let received = 0;
    const err = await rejection(
      (async () => {
        for await (const chunk of client.blobStream(repo, desc, { signal: controller.signal })) {
          received += chunk.byteLength;
          controller.abort();
        }
      })(),
    );
    expect(isBktError(err, 'CANCELLED')).toBe(true);
    expect(received).toBeLessThan(data.length);
  });

  it('mounts a blob across repositories', async () => {
    const { data, desc } = blob(2000);
    await client.pushBlob(`${registry.host}/mount/src`, desc, data);
    expect(await client.pushBlob(`${registry.host}/mount/dst`, desc, data, { mountFrom: ['mount/src'] })).toBe('mounted');
    expect(await client.headBlob(`${registry.host}/mount/dst`, desc.digest)).toBeDefined();
    const missing = blob(10).desc.digest;
    expect(await client.mountBlob(`${registry.host}/mount/dst2`, missing, 'mount/src')).toBe(false);
  });

  it('names the blob and registry when a blob is unknown', async () => {
    const { desc } = blob(10);
    const err = await rejection(collect(client.blobStream(`${registry.host}/blobs/none`, desc)));
    expect(isBktError(err, 'NOT_FOUND')).toBe(true);
    expect(err.message).toContain(desc.digest);
    expect(err.message).toContain(registry.host);
  });
});

describe('manifests', () => {
  it('puts and gets an OCI manifest by tag and digest; HEAD agrees', async () => {
    const repo = `${registry.host}/man/oci`;
    const { desc } = await pushImage(client, repo, 'v1');
    expect(desc.mediaType).toBe(MediaType.OciManifest);
    const byTag = await client.getManifest(`${repo}:v1`);
    expect(byTag.descriptor).toEqual(desc);
    expect(digestOf(byTag.bytes)).toBe(desc.digest);
    const byDigest = await client.getManifest(`${repo}@${desc.digest}`);
    expect(byDigest.json).toEqual(byTag.json);
    expect(await client.headManifest(`${repo}:v1`)).toEqual(desc);
    expect(await client.headManifest(`${repo}:nope`)).toBeUndefined();
  });

  it('handles Docker schema 2 manifests and indexes', async () => {
    const repo = `${registry.host}/man/docker`;
    const { data, desc } = blob(300);
    const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
    const configDesc = { mediaType: MediaType.DockerConfig, digest: digestOf(config), size: config.length };
    await client.pushBlob(repo, desc, data);
    await client.pushBlob(repo, configDesc, config);
    const docker = await client.putManifest(`${repo}:d`, {
      schemaVersion: 2,
      mediaType: MediaType.DockerManifest,
      config: configDesc,
      layers: [{ ...desc, mediaType: MediaType.DockerLayerGzip }],
    });
    const index = await client.putManifest(`${repo}:multi`, {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [{ ...docker, platform: { architecture: 'amd64', os: 'linux' } }],
    });
    expect((await client.getManifest(`${repo}:d`)).descriptor.mediaType).toBe(MediaType.DockerManifest);
    const fetched = await client.getManifest(`${repo}:multi`);
    expect(fetched.descriptor).toEqual(index);
    expect((fetched.json.manifests as Descriptor[])[0].digest).toBe(docker.digest);
    expect((await client.listTags(repo)).sort()).toEqual(['d', 'multi']);
  });

  it('names the reference when a manifest is unknown', async () => {
    const err = await rejection(client.getManifest(`${registry.host}/man/oci:missing`));
    expect(isBktError(err, 'NOT_FOUND')).toBe(true);
    expect(err.message).toContain(`${registry.host}/man/oci:missing`);
    expect(err.message).toContain('MANIFEST_UNKNOWN');
  });

  it('refuses a digest reference that does not match the bytes', async () => {
    const err = await rejection(client.putManifest(`${registry.host}/man/x@${blob(1).desc.digest}`, { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] }));
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
  });
});

describe('referrers (OCI 1.1, tag-schema fallback on this registry)', () => {
  it('lists an artifact pushed with a subject, filtered by artifactType', async () => {
    const repo = `${registry.host}/ref/app`;
    const { desc: image } = await pushImage(client, repo, 'v1');
    const empty = Buffer.from('{}');
    const emptyDesc = { mediaType: MediaType.OciEmpty, digest: digestOf(empty), size: 2 };
    await client.pushBlob(repo, emptyDesc, empty);
    const sbom = Buffer.from('{"spdxVersion":"SPDX-2.3"}');
    const sbomDesc = { mediaType: 'application/spdx+json', digest: digestOf(sbom), size: sbom.length };
    await client.pushBlob(repo, sbomDesc, sbom);
    const artifactBytes = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      artifactType: 'application/spdx+json',
      config: emptyDesc,
      layers: [sbomDesc],
      subject: image,
      annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' },
    }));
    const artifact = await client.putManifest(`${repo}@${digestOf(artifactBytes)}`, artifactBytes);
    const found = await client.referrers(`${repo}@${image.digest}`);
    expect(found).toEqual([
      {
        mediaType: MediaType.OciManifest,
        digest: artifact.digest,
        size: artifact.size,
        artifactType: 'application/spdx+json',
        annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' },
      },
    ]);
    expect(await client.referrers(`${repo}@${image.digest}`, { artifactType: 'application/vnd.other' })).toEqual([]);
    expect(await client.listTags(repo)).toContain(referrersTag(image.digest));
    // No referrers: an empty list, not an error.
    expect(await client.referrers(`${repo}@${artifact.digest}`)).toEqual([]);
  });
});

describe('faults (through the proxy)', () => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    proxy = await startFaultProxy(registry.host);
  });
  afterAll(async () => {
    await proxy?.close();
  });

  it('resumes a blob download with Range after the connection drops mid-blob', async () => {
    const { data, desc } = blob(300_000);
    await client.pushBlob(`${registry.host}/fault/a`, desc, data);
    proxy.inject({ method: 'GET', path: /\/blobs\/sha256:/, fault: { kind: 'drop', afterBytes: 100_000 } });
    const before = proxy.log.length;
    const got = await collect(client.blobStream(`${proxy.host}/fault/a`, desc));
    expect(got.equals(data)).toBe(true);
    const gets = proxy.log.slice(before).filter((r) => r.method === 'GET');
    expect(gets[0].fault).toBe('drop');
    expect(gets[1].range).toMatch(/^bytes=\d+-$/);
    expect(Number(/=(\d+)-/.exec(gets[1].range!)![1])).toBeGreaterThan(0);
  });

  it('follows a redirected large blob (read as bulk data) to another origin without its credentials', async () => {
    const { data, desc } = blob(400_000);
    await client.pushBlob(`${registry.host}/fault/redirect`, desc, data);
    const target = `http://${registry.host}/v2/fault/redirect/blobs/${desc.digest}`;
    proxy.inject({ method: 'GET', path: /\/blobs\/sha256:/, fault: { kind: 'status', status: 307, headers: { location: target } } });
    const before = proxy.log.length;
    expect((await collect(client.blobStream(`${proxy.host}/fault/redirect`, desc))).equals(data)).toBe(true);
    expect(proxy.log.slice(before).map((r) => [r.method, r.fault, r.status])).toEqual([['GET', 'status', 307]]);
  });

  it('restarts cleanly when a resumed download gets the whole body (no Range support)', async () => {
    const { data, desc } = blob(300_000);
    await client.pushBlob(`${registry.host}/fault/nr`, desc, data);
    proxy.inject({ method: 'GET', path: /\/blobs\/sha256:/, fault: { kind: 'drop', afterBytes: 150_000 } });
    proxy.inject({ method: 'GET', path: /\/blobs\/sha256:/, fault: { kind: 'no-range' } });
    const before = proxy.log.length;
    expect((await collect(client.blobStream(`${proxy.host}/fault/nr`, desc))).equals(data)).toBe(true);
    const gets = proxy.log.slice(before).filter((r) => r.method === 'GET');
    expect(gets.map((r) => [r.fault, r.status])).toEqual([['drop', 200], ['no-range', 200]]);
  });

  it('retries a 500 once, and a 429 honouring Retry-After', async () => {
    const repo = `${proxy.host}/fault/m`;
    const { desc } = await pushImage(client, `${registry.host}/fault/m`, 'v1');
    proxy.inject({ method: 'GET', path: /\/manifests\/v1$/, fault: { kind: 'status', status: 500 } });
    proxy.inject({ method: 'GET', path: /\/manifests\/v1$/, fault: { kind: 'status', status: 429, headers: { 'retry-after': '0' } } });
    expect((await client.getManifest(`${repo}:v1`)).descriptor.digest).toBe(desc.digest);
    const statuses = proxy.log.filter((r) => r.path.endsWith('/manifests/v1')).map((r) => r.status);
    expect(statuses.slice(-3)).toEqual([500, 429, 200]);
  });

  it('pushes through a reset connection and a 500 on the upload', async () => {
    const repo = `${proxy.host}/fault/push`;
    const { data, desc } = blob(50_000);
    proxy.inject({ method: 'POST', path: /\/blobs\/uploads\/$/, fault: { kind: 'reset' } });
    proxy.inject({ method: 'PUT', path: /\/blobs\/uploads\//, fault: { kind: 'status', status: 500 } });
    expect(await client.pushBlob(repo, desc, data)).toBe('uploaded');
    expect((await collect(client.blobStream(`${registry.host}/fault/push`, desc))).equals(data)).toBe(true);
  });

  it('retries a chunked upload whose PATCH connection is reset', async () => {
    const { data, desc } = blob(9000);
    proxy.inject({ method: 'PATCH', path: /\/blobs\/uploads\//, fault: { kind: 'reset' } });
    const before = proxy.log.length;
    expect(await client.pushBlob(`${proxy.host}/fault/chunk`, desc, data, { chunkSize: 4000 })).toBe('uploaded');
    expect(proxy.log.slice(before).filter((r) => r.method === 'POST')).toHaveLength(2);
    expect((await collect(client.blobStream(`${registry.host}/fault/chunk`, desc))).equals(data)).toBe(true);
  });

  it('never accepts a blob whose bytes do not match its digest', async () => {
    const { data, desc } = blob(20_000);
    await client.pushBlob(`${registry.host}/fault/c`, desc, data);
    proxy.inject({ method: 'GET', path: /\/blobs\//, fault: { kind: 'corrupt' }, times: Infinity });
    try {
      const { sink, state } = memorySink();
      const err = await rejection(client.getBlob(`${proxy.host}/fault/c`, desc, sink));
      expect(err.message).toContain(`expected ${desc.digest}`);
      expect(err.message).toContain('digest mismatch');
      expect(state.committed).toBe(false);
      expect(state.aborted).toBe(err);
    } finally {
      proxy.clear();
    }
  });

  it('with verifyDigest: false, hands out wrong bytes for the consumer to check, but still checks the size', async () => {
    const { data, desc } = blob(20_000);
    await client.pushBlob(`${registry.host}/fault/nv`, desc, data);
    proxy.inject({ method: 'GET', path: /\/blobs\//, fault: { kind: 'corrupt' } });
    const got = await collect(client.blobStream(`${proxy.host}/fault/nv`, desc, { verifyDigest: false }));
    expect(got.length).toBe(data.length);
    expect(got.equals(data)).toBe(false);
    const err = await rejection(collect(client.blobStream(`${registry.host}/fault/nv`, { ...desc, size: desc.size - 1 }, { verifyDigest: false })));
    expect(err.message).toContain(`more than the ${desc.size - 1} bytes`);
  });

  it('refuses a corrupted manifest fetched by digest', async () => {
    const { desc } = await pushImage(client, `${registry.host}/fault/cm`, 'v1');
    const corruptProxy = await startFaultProxy(registry.host);
    try {
      corruptProxy.inject({ method: 'GET', path: /\/manifests\//, fault: { kind: 'corrupt', at: 5 } });
      const err = await rejection(client.getManifest(`${corruptProxy.host}/fault/cm@${desc.digest}`));
      expect(err.message).toContain('digest mismatch');
    } finally {
      await corruptProxy.close();
    }
  });

  it('gives up after the policy\'s attempts with the status and registry in the error', async () => {
    const p = await startFaultProxy(registry.host);
    try {
      p.inject({ path: /\/manifests\//, fault: { kind: 'status', status: 503 }, times: Infinity });
      const err = await rejection(client.getManifest(`${p.host}/fault/m:v1`));
      expect(err.message).toContain('HTTP 503');
      expect(err.message).toContain(p.host);
      expect(err.message).toContain('after 4 attempts');
      expect(p.log.filter((r) => r.path.includes('/manifests/'))).toHaveLength(4);
    } finally {
      await p.close();
    }
  });

  it('names the registry when connections are refused', async () => {
    const p = await startFaultProxy(registry.host);
    const host = p.host;
    await p.close();
    const err = await rejection(client.getManifest(`${host}/x/y:z`));
    expect(isBktError(err)).toBe(true);
    expect(err.message).toContain(host);
    expect(err.message).toContain('ECONNREFUSED');
  });
});

describe('mirrors', () => {
  it('pulls from a mirror first and falls back to the origin', async () => {
    const origin = await startFaultProxy(registry.host);
    const mirror = await startRegistry();
    try {
      const { desc } = await pushImage(client, `${registry.host}/mir/app`, 'v1');
      const mirrored = new RegistryClient({
        credentials: staticCredentials({}),
        retry: fastRetry,
        hosts: { [origin.host]: { mirrors: [mirror.host] } },
      });
      try {
        // Not on the mirror: the origin answers.
        expect((await mirrored.getManifest(`${origin.host}/mir/app:v1`)).descriptor.digest).toBe(desc.digest);
        expect(origin.log.some((r) => r.path.endsWith('/manifests/v1'))).toBe(true);
        // On the mirror: the origin is not asked.
        await pushImage(client, `${mirror.host}/mir/app`, 'v2');
        const before = origin.log.length;
        await mirrored.getManifest(`${origin.host}/mir/app:v2`);
        expect(origin.log.length).toBe(before);
      } finally {
        mirrored.close();
      }
    } finally {
      await origin.close();
      await mirror.stop();
    }
  });
});

describe('interop with skopeo', () => {
  it('reads a Docker schema 2 copy skopeo made of an image bkt pushed', async () => {
    const { desc, layer } = await pushImage(client, `${registry.host}/interop/src`, 'v1');
    await promisify(execFile)('skopeo', [
      'copy', '--src-tls-verify=false', '--dest-tls-verify=false', '--format', 'v2s2',
      `docker://${registry.host}/interop/src:v1`, `docker://${registry.host}/interop/dst:v1`,
    ]);
    const copy = await client.getManifest(`${registry.host}/interop/dst:v1`);
    expect(copy.descriptor.mediaType).toBe(MediaType.DockerManifest);
    expect(copy.descriptor.digest).not.toBe(desc.digest);
    const layers = copy.json.layers as Descriptor[];
    expect(layers[0].digest).toBe(layer.desc.digest);
    expect((await collect(client.blobStream(`${registry.host}/interop/dst`, layers[0]))).equals(layer.data)).toBe(true);
  });
});
