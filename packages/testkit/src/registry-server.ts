/**
 * The test registry (`startRegistry`, from `@bkt/registry/testing`) and
 * `pushBusyboxImage`, which pushes a busybox base image to it with bkt's own
 * registry client.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { BktError, type Digest } from '@bkt/core';
import { MediaType, digestOf, type Descriptor } from '@bkt/oci';
import { RegistryClient, staticCredentials } from '@bkt/registry';
import type { RegistryServer } from '@bkt/registry/testing';
import { BUSYBOX_BINARY, BUSYBOX_GROUP, BUSYBOX_PASSWD, busyboxApplets } from './busybox.js';

export { DOCKER_REGISTRY_BINARY, startRegistry } from '@bkt/registry/testing';
export type { RegistryServer, RegistryServerOptions } from '@bkt/registry/testing';

// ---------------------------------------------------------------------------
// The busybox base image.
// ---------------------------------------------------------------------------

/** What `pushBusyboxImage` pushed. */
export interface PushedImage {
  /** `HOST/REPO:TAG`. */
  reference: string;
  /** `HOST/REPO@sha256:…`, the pinned form. */
  pinned: string;
  manifest: Descriptor;
  config: Descriptor;
  layer: Descriptor;
  /** sha256 of the uncompressed layer tar (`rootfs.diff_ids[0]`). */
  diffId: Digest;
}


/** A fixed timestamp so the image (and so its digest) is the same on every run with the same busybox. */
const EPOCH = new Date('2024-01-01T00:00:00Z');

/**
 * The busybox rootfs as an uncompressed tar, deterministic (sorted entries,
 * fixed mtimes, root ownership): the tree `makeBusyboxRootfs` makes. With
 * `binaryPath`, that busybox binary (e.g. another architecture's build of the
 * same version) stands at `/bin/busybox` instead of the host's.
 */
export async function busyboxLayerTar(binaryPath: string = BUSYBOX_BINARY): Promise<Buffer> {
  const binary = await readFile(binaryPath);
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  const base = { uid: 0, gid: 0, mtime: EPOCH, uname: 'root', gname: 'root' };
  const dirs = new Map<string, number>([
    ['bin', 0o755], ['dev', 0o755], ['etc', 0o755], ['home', 0o755], ['home/user', 0o755], ['proc', 0o755], ['root', 0o700],
    ['run', 0o755], ['sbin', 0o755], ['sys', 0o755], ['tmp', 0o1777], ['usr', 0o755], ['usr/bin', 0o755], ['usr/sbin', 0o755],
    ['var', 0o755], ['var/tmp', 0o1777],
  ]);
  const applets = busyboxApplets().filter((a) => a !== 'bin/busybox');
  for (const a of applets) {
    const parts = a.split('/');
    for (let i = 1; i < parts.length; i++) if (!dirs.has(parts.slice(0, i).join('/'))) dirs.set(parts.slice(0, i).join('/'), 0o755);
  }
  const add = (header: Partial<tar.Header> & { name: string }, body?: Buffer) =>
    new Promise<void>((resolve, reject) => {
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      if (body) pack.entry(header as tar.Header, body, done);
      else pack.entry(header as tar.Header, done);
    });
  for (const [name, mode] of [...dirs].sort(([a], [b]) => a.localeCompare(b))) {
    const owner = name === 'home/user' ? { uid: 1000, gid: 1000, uname: 'user', gname: 'user' } : {};
    await add({ ...base, ...owner, name: `${name}/`, type: 'directory', mode });
  }
  await add({ ...base, name: 'bin/busybox', type: 'file', mode: 0o755, size: binary.length }, binary);
  for (const [name, text] of [
    ['etc/group', BUSYBOX_GROUP],
    ['etc/hostname', ''],
    ['etc/hosts', ''],
    ['etc/passwd', BUSYBOX_PASSWD],
    ['etc/resolv.conf', ''],
  ] as const) {
    const body = Buffer.from(text);
    await add({ ...base, name, type: 'file', mode: 0o644, size: body.length }, body);
  }
  for (const applet of [...applets].sort()) {
    await add({ ...base, name: applet, type: 'symlink', linkname: '/bin/busybox', mode: 0o777 });
  }
  pack.finalize();
  await ended;
  return Buffer.concat(chunks);
}

const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

/** Which busybox `pushBusyboxImage` pushes: another binary, and the architecture its config declares (default: the host's). */
export interface BusyboxImageOptions {
  binaryPath?: string;
  architecture?: string;
}

/**
 * Pushes a busybox image (one gzip layer of the busybox rootfs; config with
 * `Env PATH`, `Cmd ["sh"]`) as an OCI manifest to `registry` under
 * `repo:tag`, using bkt's registry client.
 */
export async function pushBusyboxImage(
  registry: Pick<RegistryServer, 'host' | 'credentials'>,
  repo: string,
  tag = 'latest',
  opts: BusyboxImageOptions = {},
): Promise<PushedImage> {
  const layerTar = await busyboxLayerTar(opts.binaryPath);
  const diffId = digestOf(layerTar);
  const layerBytes = gzipSync(layerTar, { level: 6 });
  const layer: Descriptor = { mediaType: MediaType.OciLayerGzip, digest: digestOf(layerBytes), size: layerBytes.length };
  const configJson = {
    created: EPOCH.toISOString(),
    architecture: opts.architecture ?? GOARCH[process.arch] ?? process.arch,
    os: 'linux',
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [{ created: EPOCH.toISOString(), created_by: 'bkt testkit: busybox from Debian busybox-static' }],
  };
  const configBytes = Buffer.from(JSON.stringify(configJson));
  const config: Descriptor = { mediaType: MediaType.OciConfig, digest: digestOf(configBytes), size: configBytes.length };
  const manifestJson = { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [layer] };

  const client = new RegistryClient({
    credentials: staticCredentials(registry.credentials ? { [registry.host]: registry.credentials } : {}),
  });
  try {
    const target = `${registry.host}/${repo}`;
    await client.pushBlob(target, layer, layerBytes);
    await client.pushBlob(target, config, configBytes);
    const manifest = await client.putManifest(`${target}:${tag}`, Buffer.from(JSON.stringify(manifestJson)));
    return { reference: `${target}:${tag}`, pinned: `${target}@${manifest.digest}`, manifest, config, layer, diffId };
  } finally {
    client.close();
  }
}

/** `skopeo inspect` of an image in a plain-HTTP test registry, parsed. */
export function skopeoInspect(reference: string, opts: { raw?: boolean; creds?: string } = {}): Promise<Record<string, unknown>> {
  const args = ['inspect', '--tls-verify=false', ...(opts.raw ? ['--raw'] : []), ...(opts.creds ? ['--creds', opts.creds] : []), `docker://${reference}`];
  return new Promise((resolve, reject) => {
    execFile('skopeo', args, { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) return reject(new BktError('INTERNAL', `skopeo ${args.join(' ')} failed: ${stderr || err.message}`));
      resolve(JSON.parse(stdout) as Record<string, unknown>);
    });
  });
}
