/**
 * The gateway e2e tests' frontend image: `frontend/main.ts` bundled with
 * esbuild, run by the host's own `node` binary, packed with the shared
 * libraries `ldd` names into one layer (no base image), pushed to a test
 * registry with an Entrypoint and the frontend caps label.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import tar from 'tar-stream';
import { digestOf, MediaType, type Descriptor } from '@bkt/oci';
import { RegistryClient, staticCredentials } from '@bkt/registry';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };

/** The test frontend program as one CommonJS file (the workspace packages from their sources). */
export async function bundleFrontend(): Promise<Buffer> {
  const out = await build({
    entryPoints: [join(HERE, 'frontend/main.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    conditions: ['source'],
    write: false,
    logLevel: 'silent',
  });
  return Buffer.from(out.outputFiles[0].contents);
}

/** The host's node binary and every library `ldd` names for it: absolute path in the image → host file. */
export function nodeRuntimeFiles(): Map<string, string> {
  const node = realpathSync(process.execPath);
  const files = new Map<string, string>([['/usr/local/bin/node', node]]);
  const ldd = execFileSync('ldd', [node], { encoding: 'utf8' });
  for (const line of ldd.split('\n')) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (m) files.set(m[1], realpathSync(m[1]));
  }
  return files;
}

export interface FrontendImage {
  reference: string;
  digest: string;
}

/**
 * Pushes the frontend image to `host/repo:tag`: one layer with node, its
 * libraries and `/frontend.js`; Entrypoint `node /frontend.js`; `labels`
 * (default: the caps label with `moby.buildkit.frontend.inputs`).
 */
export async function pushFrontendImage(host: string, repo: string, tag: string, labels?: Record<string, string>): Promise<FrontendImage> {
  const js = await bundleFrontend();
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  const mtime = new Date('2024-01-01T00:00:00Z');
  const dirs = new Set<string>();
  const entry = (header: tar.Headers, body?: Buffer) =>
    new Promise<void>((resolve, reject) => {
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      if (body) pack.entry(header, body, done);
      else pack.entry(header, done);
    });
  const ensureDirs = async (path: string) => {
    const parts = path.split('/').filter(Boolean).slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (dirs.has(d)) continue;
      dirs.add(d);
      await entry({ name: `${d}/`, type: 'directory', mode: 0o755, mtime, uid: 0, gid: 0 });
    }
  };
  for (const [dest, src] of [...nodeRuntimeFiles()].sort(([a], [b]) => a.localeCompare(b))) {
    await ensureDirs(dest);
    await entry({ name: dest.slice(1), type: 'file', mode: statSync(src).mode & 0o777, mtime, uid: 0, gid: 0 }, readFileSync(src));
  }
  await ensureDirs('/tmp/x');
  await entry({ name: 'frontend.js', type: 'file', mode: 0o644, mtime, uid: 0, gid: 0 }, js);
  pack.finalize();
  await ended;
  const raw = Buffer.concat(chunks);
  const gz = gzipSync(raw, { level: 1 });
  const layer: Descriptor = { mediaType: MediaType.OciLayerGzip, digest: digestOf(gz), size: gz.length };
  const config = Buffer.from(
    JSON.stringify({
      architecture: GOARCH[process.arch] ?? process.arch,
      os: 'linux',
      config: {
        Entrypoint: ['/usr/local/bin/node', '/frontend.js'],
        Env: ['PATH=/usr/local/bin:/usr/bin:/bin'],
        WorkingDir: '/',
        Labels: labels ?? { 'moby.buildkit.frontend.caps': 'moby.buildkit.frontend.inputs', 'moby.buildkit.frontend.network.none': 'true' },
      },
      rootfs: { type: 'layers', diff_ids: [digestOf(raw)] },
      history: [{ created_by: 'bkt e2e: node + ldd libraries + frontend.js' }],
    }),
  );
  const configDesc: Descriptor = { mediaType: MediaType.OciConfig, digest: digestOf(config), size: config.length };
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: configDesc, layers: [layer] }));
  const client = new RegistryClient({ credentials: staticCredentials({}) });
  try {
    const target = `${host}/${repo}`;
    await client.pushBlob(target, layer, gz);
    await client.pushBlob(target, configDesc, config);
    const desc = await client.putManifest(`${target}:${tag}`, manifest);
    return { reference: `${target}:${tag}`, digest: desc.digest };
  } finally {
    client.close();
  }
}
