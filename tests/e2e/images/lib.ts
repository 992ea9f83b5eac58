/**
 * Helpers of the image end-to-end tests (issue 4): run the built `bkt` CLI
 * with a chosen environment, write a project whose target builds FROM an
 * image with RUN steps, push hand-made images (crafted layers, indexes) to a
 * test registry, check a store's content blobs against their digests, and run
 * an unpacked image in runc.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import tar from 'tar-stream';
import { digestOf, MediaType, type Descriptor } from '@bkt/oci';
import { RegistryClient, staticCredentials } from '@bkt/registry';
import { BKT, type RunResult } from '../helpers.js';

export const run = promisify(execFile);

/** Runs `node bin/bkt.js ARGS` in `cwd` with `env` added to this process's; never throws on a non-zero exit. */
export async function bktEnv(args: string[], opts: { cwd: string; env?: Record<string, string>; input?: Uint8Array; timeoutMs?: number }): Promise<RunResult> {
  const r = await execa('node', [BKT, ...args], {
    cwd: opts.cwd,
    input: opts.input,
    reject: false,
    stripFinalNewline: false,
    timeout: opts.timeoutMs ?? 120_000,
    env: { BKT_DEBUG: '', ...opts.env },
    encoding: 'buffer',
  });
  const stdoutBytes = Buffer.from(r.stdout as Uint8Array);
  return { code: r.exitCode ?? -1, stdout: stdoutBytes.toString('utf8'), stderr: Buffer.from(r.stderr as Uint8Array).toString('utf8'), stdoutBytes };
}

/**
 * Writes `bkt.config.ts` into `dir`: target `default` is `image(base)` followed
 * by one `run({ shell })` per step (each step's changes are one layer).
 */
export async function writeImageProject(dir: string, base: string, steps: string[]): Promise<void> {
  await writeFile(
    join(dir, 'bkt.config.ts'),
    [
      `import { defineConfig } from '@bkt/core';`,
      `import { image } from '@bkt/llb';`,
      `let state = image(${JSON.stringify(base)});`,
      `for (const shell of ${JSON.stringify(steps)}) state = state.run({ shell }).root();`,
      `export default defineConfig({ targets: { default: { build: state } } });`,
      '',
    ].join('\n'),
  );
}

/**
 * Builds `image(ref)` (nothing else) in a fresh project and store under
 * `work`; with `out`, exports the tree there (`type=local`). Returns the run
 * and the store root.
 */
export async function buildImageOnly(work: string, ref: string, out?: string): Promise<RunResult & { root: string }> {
  const project = join(work, `p-${Math.random().toString(36).slice(2)}`);
  await mkdir(project, { recursive: true });
  await writeImageProject(project, ref, []);
  const root = join(project, 'store');
  const output = out ? ['--output', `type=local,dest=${out}`] : [];
  const r = await bktEnv(['build', '--root', root, '--progress', 'plain', ...output], { cwd: project });
  return { ...r, root };
}

/** The exporter response `--metadata-file` wrote. */
export async function readMetadata(file: string): Promise<Record<string, string>> {
  return JSON.parse(await readFile(file, 'utf8')) as Record<string, string>;
}

/**
 * Every blob of `<root>/content/blobs/sha256` whose bytes don't hash to its
 * name (plus any stray file there). Empty when the content store is sound.
 */
export async function corruptBlobs(root: string): Promise<string[]> {
  const dir = join(root, 'content/blobs/sha256');
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const bad: string[] = [];
  for (const name of names) {
    const sum = createHash('sha256').update(await readFile(join(dir, name))).digest('hex');
    if (sum !== name) bad.push(name);
  }
  return bad;
}

/** How many blobs the content store holds. */
export async function blobCount(root: string): Promise<number> {
  return (await readdir(join(root, 'content/blobs/sha256')).catch(() => [])).length;
}


/** One entry of a hand-made layer tar. */
export type LayerEntry =
  | { name: string; type: 'file'; body: string; mode?: number }
  | { name: string; type: 'directory'; mode?: number }
  | { name: string; type: 'symlink' | 'link'; linkname: string };

/** An uncompressed tar of `entries`, written as given (names are not cleaned: a test may make them hostile). */
export async function layerTar(entries: LayerEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  const mtime = new Date('2024-01-01T00:00:00Z');
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      const header = { name: e.name, mtime, uid: 0, gid: 0 };
      if (e.type === 'file') pack.entry({ ...header, type: 'file', mode: e.mode ?? 0o644 }, Buffer.from(e.body), done);
      else if (e.type === 'directory') pack.entry({ ...header, type: 'directory', mode: e.mode ?? 0o755 }, done);
      else pack.entry({ ...header, type: e.type, linkname: e.linkname, mode: 0o777 }, done);
    });
  }
  pack.finalize();
  await ended;
  return Buffer.concat(chunks);
}

const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };
export const HOST_ARCH = GOARCH[process.arch] ?? process.arch;

/**
 * Pushes an image to `host/repo:tag`: the busybox base's layer (by reference
 * to `base`, mounted across repositories) when given, then one gzip layer per
 * entry list, with a config whose `diff_ids` match. Returns the manifest descriptor.
 */
export async function pushCraftedImage(
  host: string,
  repo: string,
  tag: string,
  layers: LayerEntry[][],
  opts: { architecture?: string; pushTag?: boolean } = {},
): Promise<Descriptor> {
  const client = new RegistryClient({ credentials: staticCredentials({}) });
  try {
    const target = `${host}/${repo}`;
    const descs: Descriptor[] = [];
    const diffIds: string[] = [];
    for (const entries of layers) {
      const raw = await layerTar(entries);
      const gz = gzipSync(raw);
      const desc: Descriptor = { mediaType: MediaType.OciLayerGzip, digest: digestOf(gz), size: gz.length };
      await client.pushBlob(target, desc, gz);
      descs.push(desc);
      diffIds.push(digestOf(raw));
    }
    const config = Buffer.from(
      JSON.stringify({
        architecture: opts.architecture ?? HOST_ARCH,
        os: 'linux',
        config: { Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'] },
        rootfs: { type: 'layers', diff_ids: diffIds },
        history: diffIds.map(() => ({ created_by: 'bkt e2e: crafted layer' })),
      }),
    );
    const configDesc: Descriptor = { mediaType: MediaType.OciConfig, digest: digestOf(config), size: config.length };
    await client.pushBlob(target, configDesc, config);
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: configDesc, layers: descs }));
    const where = opts.pushTag === false ? `${target}@${digestOf(manifest)}` : `${target}:${tag}`;
    return await client.putManifest(where, manifest);
  } finally {
    client.close();
  }
}

/** Pushes an OCI index at `host/repo:tag` listing `manifests` (already in the repository) with their platforms. */
export async function pushIndex(host: string, repo: string, tag: string, manifests: { desc: Descriptor; architecture: string }[]): Promise<Descriptor> {
  const client = new RegistryClient({ credentials: staticCredentials({}) });
  try {
    const index = {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: manifests.map(({ desc, architecture }) => ({ ...desc, platform: { architecture, os: 'linux' } })),
    };
    return await client.putManifest(`${host}/${repo}:${tag}`, Buffer.from(JSON.stringify(index)));
  } finally {
    client.close();
  }
}

/**
 * `runc run` of an OCI bundle (as `umoci unpack` makes) with `args` as the
 * process (default: the image's, as umoci wrote them), no terminal; returns
 * stdout. The container is deleted afterwards.
 */
export async function runcRun(bundle: string, args?: string[]): Promise<string> {
  const configPath = join(bundle, 'config.json');
  const spec = JSON.parse(await readFile(configPath, 'utf8')) as { process: { args: string[]; terminal: boolean } };
  if (args) spec.process.args = args;
  spec.process.terminal = false;
  await writeFile(configPath, JSON.stringify(spec));
  const id = `bkt-e2e-images-${process.pid}-${Date.now()}`;
  try {
    const { stdout } = await run('runc', ['run', '--bundle', bundle, id], { encoding: 'utf8', timeout: 60_000 });
    return stdout;
  } finally {
    await run('runc', ['delete', '--force', id]).catch(() => undefined);
  }
}
