/**
 * What the corpus compares of a built image: its config fields and a listing
 * of its root filesystem. The same code reads a peer's image (regenerate) and
 * bkt's (the harness), so a difference is in the images, not in the readers.
 *
 * The config is read straight from the archive (converting a docker config to
 * OCI would drop Healthcheck, Shell and OnBuild). The filesystem is unpacked
 * by tools nobody here wrote: `skopeo copy` to an OCI layout, then
 * `umoci unpack` (which applies whiteouts and keeps owners, as root).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import tar from 'tar-stream';

const run = promisify(execFile);

/** One filesystem entry. Never mtime. */
export interface Entry {
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';
  /** Permission bits with setuid/setgid/sticky, as 4 octal digits. */
  mode: string;
  uid: number;
  gid: number;
  /** Regular files only. */
  size?: number;
  sha256?: string;
  /** Symlinks only. */
  target?: string;
}

/** The image config fields the corpus compares; absent, null, empty lists and empty maps are left out. */
export type ConfigFields = Record<string, unknown>;

/** What `expected.json` holds, and what the harness computes for bkt. */
export interface ImageSummary {
  config: ConfigFields;
  /** Entries that differ from the busybox base, or all entries when the image does not start from it. */
  files: Entry[];
  /** Base paths missing from the image (only when it starts from the base). */
  removed: string[];
}

const COMPARED_CONFIG_KEYS = [
  'User', 'ExposedPorts', 'Env', 'Entrypoint', 'Cmd', 'Volumes', 'WorkingDir', 'Labels', 'StopSignal', 'Healthcheck', 'Shell', 'OnBuild',
] as const;

function isEmpty(v: unknown): boolean {
  if (v === null || v === undefined || v === '') return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.keys(v as object).length === 0;
  return false;
}

/** The compared fields of an image config JSON (`{architecture, os, author, config: {...}}`). */
export function configFields(imageConfig: Record<string, unknown>): ConfigFields {
  const inner = (imageConfig.config ?? {}) as Record<string, unknown>;
  const out: ConfigFields = {};
  for (const key of ['architecture', 'os', 'author'] as const) if (!isEmpty(imageConfig[key])) out[key] = imageConfig[key];
  for (const key of COMPARED_CONFIG_KEYS) if (!isEmpty(inner[key])) out[key] = inner[key];
  return out;
}

async function tarEntries(file: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      const wanted = header.type === 'file' && (header.size ?? 0) < 16 * 1024 * 1024;
      stream.on('data', (c: Buffer) => wanted && chunks.push(c));
      stream.on('end', () => {
        if (wanted) out.set(header.name.replace(/^\.\//, ''), Buffer.concat(chunks));
        next();
      });
      stream.resume();
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  createReadStream(file).pipe(extract);
  await done;
  return out;
}

export type ArchiveKind = 'oci-archive' | 'docker-archive';

/** The image config JSON and kind of an OCI layout tar or a docker-archive tar (single image). */
export async function readArchiveConfig(file: string): Promise<{ kind: ArchiveKind; config: Record<string, unknown> }> {
  const files = await tarEntries(file);
  const json = (name: string) => {
    const b = files.get(name);
    if (!b) throw new Error(`${file}: no ${name} in the archive`);
    return JSON.parse(b.toString('utf8')) as Record<string, any>;
  };
  const blob = (digest: string) => json(`blobs/${digest.replace(':', '/')}`);
  if (files.has('index.json')) {
    let node = json('index.json');
    // index → (nested index →) manifest
    for (let depth = 0; node.manifests && depth < 4; depth++) node = blob(node.manifests[0].digest);
    return { kind: 'oci-archive', config: blob(node.config.digest) };
  }
  if (files.has('manifest.json')) {
    const manifest = json('manifest.json') as unknown as { Config: string }[];
    return { kind: 'docker-archive', config: json(manifest[0]!.Config) };
  }
  throw new Error(`${file}: neither an OCI layout (index.json) nor a docker archive (manifest.json)`);
}

/** Unpacks the image of `file` with skopeo and umoci into a fresh directory; returns its rootfs and a cleanup. */
export async function unpackArchive(file: string, kind: ArchiveKind): Promise<{ rootfs: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'bkt-corpus-unpack-'));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    await run('skopeo', ['copy', '--quiet', `${kind}:${file}`, `oci:${join(dir, 'layout')}:img`], { maxBuffer: 64 * 1024 * 1024 });
    await run('umoci', ['unpack', '--image', `${join(dir, 'layout')}:img`, join(dir, 'bundle')], { maxBuffer: 64 * 1024 * 1024 });
    return { rootfs: join(dir, 'bundle', 'rootfs'), cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

const TYPE_BITS: [number, Entry['type']][] = [
  [0o040000, 'dir'], [0o100000, 'file'], [0o120000, 'symlink'], [0o020000, 'char'], [0o060000, 'block'], [0o010000, 'fifo'], [0o140000, 'socket'],
];

/** Every entry under `rootfs`, sorted by path (`/a`, `/a/b`, …); `/` itself is left out. */
export async function listTree(rootfs: string): Promise<Entry[]> {
  const out: Entry[] = [];
  const visit = async (abs: string, rel: string) => {
    for (const name of (await readdir(abs)).sort()) {
      const p = join(abs, name);
      const path = `${rel}/${name}`;
      const st = await lstat(p);
      const type = TYPE_BITS.find(([bits]) => (st.mode & 0o170000) === bits)?.[1] ?? 'file';
      const e: Entry = { path, type, mode: (st.mode & 0o7777).toString(8).padStart(4, '0'), uid: st.uid, gid: st.gid };
      if (type === 'file') {
        e.size = st.size;
        e.sha256 = createHash('sha256').update(await readFile(p)).digest('hex');
      } else if (type === 'symlink') e.target = await readlink(p);
      out.push(e);
      if (type === 'dir') await visit(p, path);
    }
  };
  await visit(rootfs, '');
  return out;
}

const sameEntry = (a: Entry, b: Entry) => JSON.stringify(a) === JSON.stringify(b);

/** `/p` covers `/p` and below; `/p/` only below. */
function covers(pattern: string, path: string): boolean {
  if (pattern.endsWith('/')) return path.startsWith(pattern);
  return path === pattern || path.startsWith(`${pattern}/`);
}

export interface ListingOptions {
  /** The base image's tree, to leave out what the image inherited unchanged. */
  base?: Entry[];
  paths?: string[];
  ignore?: string[];
}

/** The compared part of a tree: what differs from the base, filtered by `paths` and `ignore`. */
export function listing(tree: Entry[], opts: ListingOptions): { files: Entry[]; removed: string[] } {
  const keep = (path: string) => (!opts.paths || opts.paths.some((p) => covers(p, path))) && !(opts.ignore ?? []).some((p) => covers(p, path));
  const baseByPath = new Map((opts.base ?? []).map((e) => [e.path, e]));
  const present = new Set(tree.map((e) => e.path));
  const files = tree.filter((e) => {
    const b = baseByPath.get(e.path);
    return (!b || !sameEntry(b, e)) && keep(e.path);
  });
  const removed = (opts.base ?? []).map((e) => e.path).filter((p) => !present.has(p) && keep(p));
  return { files, removed };
}

/** Reads an image archive and summarises it for the corpus. */
export async function summarizeArchive(
  file: string,
  opts: { base: { tree: Entry[]; diffId: string }; paths?: string[]; ignore?: string[]; forbidden?: string[] },
): Promise<ImageSummary & { forbiddenFound: string[] }> {
  const { kind, config } = await readArchiveConfig(file);
  const diffIds = ((config.rootfs as { diff_ids?: string[] } | undefined)?.diff_ids ?? []) as string[];
  const fromBase = diffIds[0] === opts.base.diffId;
  const { rootfs, cleanup } = await unpackArchive(file, kind);
  try {
    const tree = await listTree(rootfs);
    const { files, removed } = listing(tree, { base: fromBase ? opts.base.tree : undefined, paths: opts.paths, ignore: opts.ignore });
    const forbiddenFound: string[] = [];
    for (const secret of opts.forbidden ?? []) {
      for (const e of tree) {
        if (e.type !== 'file') continue;
        if ((await readFile(join(rootfs, e.path))).includes(secret)) forbiddenFound.push(`${JSON.stringify(secret)} in ${e.path}`);
      }
      if (JSON.stringify(config).includes(secret)) forbiddenFound.push(`${JSON.stringify(secret)} in the image config`);
    }
    return { config: configFields(config), files, removed, forbiddenFound };
  } finally {
    await cleanup();
  }
}

/** The busybox base's own tree and diff id, from an archive of it. */
export async function baseTree(file: string): Promise<{ tree: Entry[]; diffId: string }> {
  const { kind, config } = await readArchiveConfig(file);
  const { rootfs, cleanup } = await unpackArchive(file, kind);
  try {
    return { tree: await listTree(rootfs), diffId: ((config.rootfs as { diff_ids: string[] }).diff_ids[0] ?? '') as string };
  } finally {
    await cleanup();
  }
}

/** Copies an image of a registry (plain HTTP) to an OCI layout tar with skopeo. */
export async function registryImageToArchive(reference: string, dest: string): Promise<void> {
  await run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${reference}`, `oci-archive:${dest}`], { maxBuffer: 64 * 1024 * 1024 });
}

const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

/**
 * The image config JSON of `host/repo:tag` in a plain-HTTP registry, read with
 * the distribution API itself (no conversion that could drop docker-only fields).
 */
export async function registryImageConfig(host: string, repoAndTag: string): Promise<Record<string, unknown>> {
  const at = repoAndTag.lastIndexOf(':');
  const repo = repoAndTag.slice(0, at);
  const get = async (path: string, accept?: string) => {
    const res = await fetch(`http://${host}/v2/${repo}/${path}`, { headers: accept ? { accept } : {} });
    if (!res.ok) throw new Error(`GET ${host}/v2/${repo}/${path}: HTTP ${res.status}`);
    return (await res.json()) as Record<string, any>;
  };
  let node = await get(`manifests/${repoAndTag.slice(at + 1)}`, MANIFEST_ACCEPT);
  for (let depth = 0; node.manifests && depth < 4; depth++) node = await get(`manifests/${node.manifests[0].digest}`, MANIFEST_ACCEPT);
  return get(`blobs/${node.config.digest}`);
}
