/**
 * Writing a built image as files: an OCI image layout (a directory, or that
 * directory as a tar) and a docker-archive tar (the OCI layout plus docker's
 * `manifest.json` and `repositories`, as `docker save` and BuildKit's docker
 * exporter write it; `docker load` and `skopeo copy docker-archive:` read it).
 *
 * Tars are deterministic (fixed entry order and headers), and a file `dest`
 * appears whole or not at all (written beside it, then renamed).
 */
import { close, createReadStream, fstat, open, read, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BktError, type BuildClient, type ContentStore } from '@bkt/core';
import { createHostClient } from '@bkt/fsutil';
import { DOCKER_HUB, MediaType, TarType, encodeTarHeader, parseReference, type Descriptor } from '@bkt/oci';
import type { BuiltImage } from './image.js';

/** What a layout holds: files by path, each bytes or a blob of the content store. */
type LayoutFile = { path: string; bytes: Uint8Array } | { path: string; blob: Descriptor };

const REF_NAME = 'org.opencontainers.image.ref.name';
const IMAGE_NAME = 'io.containerd.image.name';

/** `index.json` of a layout: the image once per name (annotated as containerd and umoci read them). */
function layoutIndex(image: BuiltImage, names: string[]): Uint8Array {
  const entries: Descriptor[] = [];
  for (const name of names) {
    const r = parseReference(name);
    entries.push({
      ...image.root,
      annotations: { ...image.root.annotations, [IMAGE_NAME]: name, ...(r.tag ? { [REF_NAME]: r.tag } : {}) },
    });
  }
  if (entries.length === 0) entries.push(image.root);
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: entries }));
}

function ociLayoutFiles(image: BuiltImage, names: string[]): LayoutFile[] {
  return [
    { path: 'oci-layout', bytes: Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })) },
    { path: 'index.json', bytes: layoutIndex(image, names) },
    ...image.blobs.map((b): LayoutFile => {
      const bytes = image.metadata?.get(b.digest);
      return bytes ? { path: blobPath(b), bytes } : { path: blobPath(b), blob: b };
    }),
  ];
}

const blobPath = (d: Descriptor) => `blobs/sha256/${d.digest.slice('sha256:'.length)}`;

/** `docker.io/library/x:t` → `x:t`, `docker.io/u/x:t` → `u/x:t`, as docker names images. */
function familiar(name: string): { repo: string; tag: string } | undefined {
  const r = parseReference(name);
  if (!r.tag) return undefined;
  let repo = `${r.registry}/${r.repository}`;
  if (r.registry === DOCKER_HUB) repo = r.repository.startsWith('library/') ? r.repository.slice('library/'.length) : r.repository;
  return { repo, tag: r.tag };
}

function dockerArchiveFiles(image: BuiltImage, names: string[]): LayoutFile[] {
  if (image.manifests.length !== 1) {
    throw new BktError(
      'INVALID_ARGUMENT',
      `docker exporter: a docker archive holds one platform, the result has ${image.manifests.length}; use the oci exporter for multi-platform results`,
    );
  }
  const m = image.manifests[0];
  const tags = names.map(familiar).filter((t): t is { repo: string; tag: string } => t !== undefined);
  const manifestJson = [{ Config: blobPath(m.config), RepoTags: tags.map((t) => `${t.repo}:${t.tag}`), Layers: m.layers.map((l) => blobPath(l.descriptor)) }];
  const repositories: Record<string, Record<string, string>> = {};
  const top = m.layers[m.layers.length - 1];
  for (const t of tags) {
    if (top) (repositories[t.repo] ??= {})[t.tag] = top.diffId.slice('sha256:'.length);
  }
  return [
    ...ociLayoutFiles(image, names),
    { path: 'manifest.json', bytes: Buffer.from(JSON.stringify(manifestJson)) },
    ...(tags.length && top ? [{ path: 'repositories', bytes: Buffer.from(JSON.stringify(repositories)) }] : []),
  ];
}

/** Blob bodies are read in pieces of this size (one read ahead of the writer). */
const BLOB_PIECE_BYTES = 1024 * 1024;
/** Headers and bodies smaller than this are gathered and written together. */
const GATHER_BYTES = 64 * 1024;

const fsRead = (fd: number, buf: Buffer, off: number, len: number, pos: number) =>
  new Promise<number>((resolve, reject) => read(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));

/** `size` bytes of the open file `fd` from 0, in pieces, the next piece read while the last one is written; `path` names it in errors. */
async function* filePieces(fd: number, size: number, path: string): AsyncGenerator<Buffer> {
  const readAt = async (at: number): Promise<Buffer> => {
    const buf = Buffer.allocUnsafeSlow(Math.min(BLOB_PIECE_BYTES, size - at));
    let got = 0;
    while (got < buf.length) {
      const n = await fsRead(fd, buf, got, buf.length - got, at + got);
      if (n === 0) throw new BktError('INTERNAL', `blob ${path} ended after ${at + got} of ${size} bytes while it was exported`);
      got += n;
    }
    return buf;
  };
  let next: Promise<Buffer> | undefined = size > 0 ? readAt(0) : undefined;
  try {
    for (let pos = 0; next; ) {
      const piece = await next;
      pos += piece.length;
      next = pos < size ? readAt(pos) : undefined;
      next?.catch(() => undefined); // awaited on the next turn
      yield piece;
    }
  } finally {
    // A read still running (the writer stopped early) ends before the caller closes `fd`.
    await next?.catch(() => undefined);
  }
}

/**
 * The bytes of a tar of `files`, directories first, with fixed headers
 * (`mtime`, root-owned, 0644/0755; the bytes tar-stream writes). A blob's
 * body is read from the content store in 1 MiB pieces, one read ahead.
 */
async function* tarOf(files: LayoutFile[], content: ContentStore, mtime: Date): AsyncGenerator<Uint8Array> {
  const mtimeMs = mtime.getTime();
  const header = (name: string, type: number, mode: number, size: number) => encodeTarHeader({ name, type, mode, uid: 0, gid: 0, size, mtimeMs });
  const pad = (size: number) => ZEROS.subarray(0, (512 - (size % 512)) % 512);
  let gathered: Uint8Array[] = [];
  let gatheredBytes = 0;
  const gather = (...bufs: Uint8Array[]) => {
    for (const b of bufs) {
      gathered.push(b);
      gatheredBytes += b.length;
    }
  };
  const take = (): Buffer => {
    const out = Buffer.concat(gathered, gatheredBytes);
    gathered = [];
    gatheredBytes = 0;
    return out;
  };
  const dirs = new Set<string>();
  for (const f of files) for (let d = dirname(f.path); d !== '.'; d = dirname(d)) dirs.add(d);
  for (const d of [...dirs].sort()) gather(header(`${d}/`, TarType.directory, 0o755, 0));
  for (const f of files) {
    if ('bytes' in f) {
      gather(header(f.path, TarType.file, 0o644, f.bytes.length), f.bytes, pad(f.bytes.length));
    } else {
      const path = content.path(f.blob.digest);
      const fd = await fsOpen(path);
      try {
        const { size } = await fsFstat(fd);
        gather(header(f.path, TarType.file, 0o644, size));
        for await (const piece of filePieces(fd, size, path)) {
          if (gatheredBytes + piece.length <= GATHER_BYTES) {
            gather(piece);
            continue;
          }
          if (gatheredBytes > 0) yield take();
          yield piece;
        }
        gather(pad(size));
      } finally {
        await fsClose(fd);
      }
    }
    if (gatheredBytes >= GATHER_BYTES) yield take();
  }
  gather(ZEROS.subarray(0, 1024));
  yield take();
}

const ZEROS = Buffer.alloc(1024);
const fsOpen = (path: string) => new Promise<number>((resolve, reject) => open(path, 'r', (err, fd) => (err ? reject(err) : resolve(fd))));
const fsFstat = (fd: number) => new Promise<Stats>((resolve, reject) => fstat(fd, (err, st) => (err ? reject(err) : resolve(st))));
const fsClose = (fd: number) => new Promise<void>((resolve) => close(fd, () => resolve()));

/** Writes the tar `stream` to the client's output `dest` (`-` = its stdout); `what` names `dest` in errors. */
async function writeTarTo(what: string, dest: string, stream: AsyncGenerator<Uint8Array>, client: BuildClient): Promise<void> {
  let file;
  try {
    file = dest === '-' ? await client.openStdout({ what }) : await client.openFile(dest, { what });
  } catch (err) {
    await stream.return(undefined);
    throw err;
  }
  try {
    await pipeline(stream, file.stream);
  } catch (err) {
    // The pipeline reports the writer's error at once; the tar's blob files are closed when the generator has ended.
    await stream.return(undefined).catch(() => undefined);
    await file.abort();
    throw err;
  }
  await file.commit();
}

/**
 * Writes `files` into the directory `dest` (created; existing blobs are kept,
 * the index is replaced). Blobs are copies of the content store's files (a
 * reflink where the filesystem has them), never hard links: the directory is
 * the user's, and editing it must not change the store.
 */
async function writeDir(what: string, dest: string, files: LayoutFile[], content: ContentStore, client: BuildClient): Promise<void> {
  const out = await client.openDir(dest, { what });
  const now = Date.now();
  const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, mtimeMs: now };
  const dirs = new Set<string>();
  for (const f of files) {
    // Parents first, each once.
    const parts = f.path.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (dirs.has(dir)) continue;
      dirs.add(dir);
      await out.write({ path: dir, mode: 0o040755, size: 0, ...owner });
    }
    if ('bytes' in f) {
      const bytes = f.bytes;
      await out.write({ path: f.path, mode: 0o100644, size: bytes.length, ...owner }, { stream: async function* () { yield bytes; } });
      continue;
    }
    const blob = content.path(f.blob.digest);
    await out.write({ path: f.path, mode: 0o100644, size: f.blob.size, ...owner }, { localPath: blob, stream: () => createReadStream(blob) as AsyncIterable<Uint8Array> });
  }
  await out.commit();
}

export interface WriteOptions {
  names: string[];
  /** A tar file (`-` = stdout) or, with `tar: false`, a directory. */
  dest: string;
  tar: boolean;
  /** mtime of the tar entries (default: the epoch 0, for reproducible tars). */
  mtime?: Date;
  /** The client whose outputs `dest` names (default: this process's host). */
  client?: BuildClient;
  /** Names `dest` in errors (default: `oci exporter: dest` / `docker exporter: dest`). */
  what?: string;
}

/** Writes `image` as an OCI image layout. */
export async function writeOciLayout(image: BuiltImage, content: ContentStore, opts: WriteOptions): Promise<void> {
  const files = ociLayoutFiles(image, opts.names);
  if (!opts.tar) return writeDir(opts.what ?? 'oci exporter', opts.dest, files, content, opts.client ?? createHostClient());
  await writeTarTo(opts.what ?? 'oci exporter: dest', opts.dest, tarOf(files, content, opts.mtime ?? new Date(0)), opts.client ?? createHostClient());
}

/** Writes `image` (one platform) as a docker-archive tar (or its directory with `tar: false`). */
export async function writeDockerArchive(image: BuiltImage, content: ContentStore, opts: WriteOptions): Promise<void> {
  const files = dockerArchiveFiles(image, opts.names);
  if (!opts.tar) return writeDir(opts.what ?? 'docker exporter', opts.dest, files, content, opts.client ?? createHostClient());
  await writeTarTo(opts.what ?? 'docker exporter: dest', opts.dest, tarOf(files, content, opts.mtime ?? new Date(0)), opts.client ?? createHostClient());
}
