/**
 * Manifests whose descriptors the image spec forbids are refused before a
 * byte of their layers is fetched: a negative or fractional size (which
 * would lift the size limit a download is held to), a malformed digest or
 * media type, a layer of a media type bkt cannot unpack, a config that is
 * not an image config. Each error names the image, the manifest, the field
 * and its value; the build exits 1 and the store keeps no bad blob.
 * (Fractional and non-numeric sizes are refused by the registry itself;
 * `checkDescriptor`'s unit tests cover them.)
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestOf, MediaType, type Descriptor } from '@bkt/oci';
import { RegistryClient, staticCredentials } from '@bkt/registry';
import { startRegistry, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { bktEnv, corruptBlobs, HOST_ARCH, layerTar, writeImageProject } from '../images/lib.js';

let registry: RegistryServer;
let work: string;

beforeAll(async () => {
  registry = await startRegistry();
  work = await tempDir('security-descriptors');
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});


/** Pushes a one-layer image whose manifest's descriptors `tamper` changes; returns its reference. */
async function pushTampered(repo: string, tamper: (m: { config: Record<string, unknown>; layers: Record<string, unknown>[] }) => void): Promise<string> {
  const client = new RegistryClient({ credentials: staticCredentials({}) });
  try {
    const target = `${registry.host}/${repo}`;
    const raw = await layerTar([{ name: 'hello', type: 'file', body: 'hi\n' }]);
    const gz = gzipSync(raw);
    const layer: Descriptor = { mediaType: MediaType.OciLayerGzip, digest: digestOf(gz), size: gz.length };
    await client.pushBlob(target, layer, gz);
    const configBytes = Buffer.from(JSON.stringify({ architecture: HOST_ARCH, os: 'linux', rootfs: { type: 'layers', diff_ids: [digestOf(raw)] } }));
    const config: Descriptor = { mediaType: MediaType.OciConfig, digest: digestOf(configBytes), size: configBytes.length };
    await client.pushBlob(target, config, configBytes);
    const manifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: { ...config } as Record<string, unknown>, layers: [{ ...layer } as Record<string, unknown>] };
    tamper(manifest);
    await client.putManifest(`${target}:v1`, Buffer.from(JSON.stringify(manifest)));
    return `${target}:v1`;
  } finally {
    client.close();
  }
}

const cases: [string, (m: { config: Record<string, unknown>; layers: Record<string, unknown>[] }) => void, RegExp][] = [
  ['a negative layer size', (m) => (m.layers[0]!.size = -1), /layer 1\/1: invalid descriptor: size -1 of sha256:[0-9a-f]{64} is not a non-negative integer/],
  ['a negative config size', (m) => (m.config.size = -5), /config: invalid descriptor: size -5 .*is not a non-negative integer/],
  ['an unknown layer media type', (m) => (m.layers[0]!.mediaType = 'application/vnd.example.layer.v1.tar+lz4'), /layer 1\/1: unknown layer media type "application\/vnd\.example\.layer\.v1\.tar\+lz4"/],
  ['a layer media type that is not one', (m) => (m.layers[0]!.mediaType = 'not a media type'), /layer 1\/1: invalid descriptor: mediaType "not a media type" is not a media type/],
  ['a config that is not an image config', (m) => (m.config.mediaType = 'application/vnd.example.config+json'), /config has media type "application\/vnd\.example\.config\+json", not an image config/],
];

describe('manifests with invalid descriptors are refused', () => {
  for (const [n, [what, tamper, message]] of cases.entries()) {
    it(what, async () => {
      const ref = await pushTampered(`e2e/bad-descriptor-${n}`, tamper);
      const project = join(work, `p${n}`);
      await mkdir(project);
      await writeImageProject(project, ref, []);
      const root = join(project, 'store');
      const r = await bktEnv(['build', '--root', root, '--progress', 'plain', '-o', `type=local,dest=${join(project, 'out')}`], { cwd: project });
      expect(r.code).toBe(1);
      const error = r.stderr.split('\n').filter((l) => /^error/.test(l)).join('\n');
      expect(error).toMatch(message);
      expect(error).toContain(`e2e/bad-descriptor-${n}`);
      expect(await corruptBlobs(root)).toEqual([]);
    });
  }
});
