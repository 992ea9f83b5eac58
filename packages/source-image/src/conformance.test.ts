import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { describeSourceConformance, type SourceFixture } from '@bkt/core/testing';
import { digestOf, hostPlatform, MediaType } from '@bkt/oci';
import { RegistryClient, staticCredentials } from '@bkt/registry';
import { openTestContext } from '@bkt/store/testing';
import { BUSYBOX_PASSWD, pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { ImageSource } from './index.js';

describe('docker-image, from a test registry', () => {
  let registry: RegistryServer;
  let pushed: PushedImage;

  beforeAll(async () => {
    registry = await startRegistry();
    pushed = await pushBusyboxImage(registry, 'conformance/busybox');
  });
  afterAll(async () => {
    await registry?.stop();
  });

  /** Moves the tag to a new manifest (same layer and config, one more annotation), as a re-push of the image would. */
  async function retag(change: number): Promise<void> {
    const client = new RegistryClient({ credentials: staticCredentials(registry.credentials ? { [registry.host]: registry.credentials } : {}) });
    try {
      const manifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: pushed.config, layers: [pushed.layer], annotations: { 'bkt.conformance.change': String(change) } };
      await client.putManifest(pushed.reference, Buffer.from(JSON.stringify(manifest)));
    } finally {
      client.close();
    }
  }

  /** The `docker-image` source pulling busybox from a real registry into a real store; `mutate` moves the tag. */
  describeSourceConformance('docker-image', async (): Promise<SourceFixture> => {
    await pushBusyboxImage(registry, 'conformance/busybox'); // the tag back on the original manifest
    const store = await openTestContext();
    const source = new ImageSource();
    let changes = 0;
    return {
      source,
      context: store.ctx,
      valid: { scheme: 'docker-image', ref: pushed.reference, expect: { 'etc/passwd': BUSYBOX_PASSWD, bin: null } },
      invalid: [
        { scheme: 'docker-image', ref: 'Not A Reference', mentions: 'Not A Reference' },
        { scheme: 'docker-image', ref: pushed.reference, attrs: { 'image.resolvemode': 'sometimes' }, mentions: 'image.resolvemode' },
        { scheme: 'docker-image', ref: pushed.reference, attrs: { 'image.checksum': 'md5:abc' }, mentions: 'image.checksum' },
      ],
      mutate: () => retag(++changes),
      cleanup: async () => {
        source.close();
        await store.close();
      },
    };
  });
});

describe('oci-layout, from a client directory', () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'bkt-source-image-conformance-'));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  /** Writes an OCI layout at `dir` whose tag `v1` is an image of one gzip layer holding `/etc/message` = `message`. */
  async function writeLayout(dir: string, message: string): Promise<void> {
    await mkdir(join(dir, 'blobs/sha256'), { recursive: true });
    const put = async (bytes: Buffer) => {
      const digest = digestOf(bytes);
      await writeFile(join(dir, 'blobs/sha256', digest.slice('sha256:'.length)), bytes);
      return { digest, size: bytes.length };
    };
    const tree = join(dir, '..', `tree-${digestOf(Buffer.from(message)).slice(7, 19)}`);
    await mkdir(join(tree, 'etc'), { recursive: true });
    await writeFile(join(tree, 'etc/message'), message);
    const layerTar = execFileSync('tar', ['-C', tree, '-cf', '-', '.']);
    const layer = await put(execFileSync('gzip', ['-nc'], { input: layerTar }));
    const { architecture, os } = hostPlatform();
    const config = await put(Buffer.from(JSON.stringify({ architecture, os, rootfs: { type: 'layers', diff_ids: [digestOf(layerTar)] }, config: {} })));
    const manifest = await put(
      Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: { mediaType: MediaType.OciConfig, ...config }, layers: [{ mediaType: MediaType.OciLayerGzip, ...layer }] })),
    );
    await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await writeFile(
      join(dir, 'index.json'),
      JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MediaType.OciManifest, ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }] }),
    );
  }

  /** The `oci-layout` source reading a layout given as the client's local directory `layouts`, in a real store; `mutate` re-tags `v1`. */
  describeSourceConformance('oci-layout', async (): Promise<SourceFixture> => {
    const dir = await mkdtemp(join(work, 'layout-'));
    const layout = join(dir, 'layout');
    await writeLayout(layout, 'from the layout\n');
    const store = await openTestContext({ localDirs: { layouts: layout } });
    const source = new ImageSource();
    return {
      source,
      context: store.ctx,
      valid: { scheme: 'oci-layout', ref: 'layouts:v1', expect: { etc: null, 'etc/message': 'from the layout\n' } },
      invalid: [
        { scheme: 'oci-layout', ref: 'layouts@md5:abc', mentions: 'is not a sha256 digest' },
        { scheme: 'oci-layout', ref: '../up:v1', mentions: '../up:v1' },
        { scheme: 'oci-layout', ref: 'layouts:v1', attrs: { 'oci.layerlimit': '-1' }, mentions: 'oci.layerlimit' },
      ],
      mutate: () => writeLayout(layout, 'changed\n'),
      cleanup: async () => {
        source.close();
        await store.close();
      },
    };
  });
});
