/**
 * New layers: the tar of a snapshot's own changes (`Snapshot.layerPath()`, an
 * overlay upper dir) in the OCI layer format, as a blob of the content store
 * (compressed, or the tar itself).
 *
 * - Overlay whiteouts (0/0 character devices) become `.wh.NAME` entries;
 *   opaque directories (`trusted.overlay.opaque=y`) get a `.wh..wh..opq` entry.
 * - Entries come in byte order of their names, parents first; hard links
 *   inside the layer become tar links to the first path of the inode; owners
 *   are numeric, user and group names empty: the same tree gives the same tar
 *   (headers: tar-header.ts).
 * - With `clampMtime` (SOURCE_DATE_EPOCH and rewrite-timestamp), no mtime is
 *   later than it, so the digest does not depend on when the build ran.
 * - diff_id = sha256 of the uncompressed tar.
 *
 * A snapshot is immutable, so its layer is computed once per (compression,
 * level, clamp) and remembered under `<root>/exporter-oci/layers/`; the
 * snapshot references the blob (`ContentStore.addRef`), so it lives as long
 * as the snapshot does. A blob converted to another compression
 * (`convertLayer`) is remembered likewise, by the blob's digest.
 *
 * Node cannot read xattrs: opaque markers are read with GNU tar
 * (`tar --xattrs`), other xattrs (file capabilities) are not exported.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { close, closeSync, createReadStream, lstatSync, open, openSync, read, readSync, type Stats } from 'node:fs';
import { mkdir, readFile, readdir, readlink, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BktError, type BuildContext, type Digest, type Snapshot } from '@bkt/core';
import { compress, compressDigesting, compressionOfMediaType, decompress, type Compression } from './compression.js';
import type { LayerRecord } from './image-store.js';
import { MediaType, type Descriptor } from './media-types.js';
import { END_OF_TAR, encodeHeader, padding, TarType, type TarHeader } from './tar-header.js';

const OCI_LAYER: Record<Compression, string> = { gzip: MediaType.OciLayerGzip, zstd: MediaType.OciLayerZstd, uncompressed: MediaType.OciLayer };

export interface LayerOptions {
  compression: Compression;
  compressionLevel?: number;
  /** Seconds since the epoch: mtimes later than this are set to it. */
  clampMtime?: number;
  /** Recompute even when a remembered layer exists (benchmarks). */
  noCache?: boolean;
}

export interface Layer {
  /** The blob, with an OCI media type; it is in the content store. */
  descriptor: Descriptor;
  diffId: Digest;
}

const OPAQUE_XATTR = 'SCHILY.xattr.trusted.overlay.opaque';

/** The value of an octal tar header field (GNU tar writes octal for everything here). */
function octal(block: Buffer, off: number, len: number): number {
  const s = block.toString('latin1', off, off + len).replace(/[\0 ]+$/, '').trim();
  return s ? parseInt(s, 8) : 0;
}

const cstring = (b: Buffer, off: number, len: number) => {
  const end = b.indexOf(0, off);
  return b.toString('utf8', off, end < 0 || end > off + len ? off + len : end);
};

/** Pax records `len key=value\n` of an extended header body. */
function paxRecords(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let off = 0;
  while (off < body.length) {
    const space = body.indexOf(0x20, off);
    if (space < 0) break;
    const len = parseInt(body.toString('latin1', off, space), 10);
    if (!(len > 0)) break;
    const record = body.toString('utf8', space + 1, off + len - 1);
    const eq = record.indexOf('=');
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    off += len;
  }
  return out;
}

/** Names of the entries of a tar (GNU tar's output: ustar, pax or GNU long names) whose pax records set the opaque xattr. */
function opaqueEntries(tar: Buffer): Set<string> {
  const found = new Set<string>();
  let pax: Record<string, string> | undefined;
  let longName: string | undefined;
  for (let off = 0; off + 512 <= tar.length; ) {
    const block = tar.subarray(off, off + 512);
    if (block[0] === 0 && block.every((b) => b === 0)) break;
    const size = octal(block, 124, 12);
    const type = block[156];
    const body = tar.subarray(off + 512, off + 512 + size);
    off += 512 + size + padding(size);
    if (type === 0x78 /* x */) {
      pax = { ...pax, ...paxRecords(body) };
      continue;
    }
    if (type === 0x4c /* L */) {
      longName = cstring(body, 0, body.length);
      continue;
    }
    if (type === 0x67 /* g */ || type === 0x4b /* K */) continue;
    let name = cstring(block, 0, 100);
    if (block.toString('latin1', 257, 262) === 'ustar' && block[345] !== 0 && block[263] === 0x30) name = `${cstring(block, 345, 155)}/${name}`;
    name = pax?.path ?? longName ?? name;
    if (pax?.[OPAQUE_XATTR] === 'y') found.add(name.replace(/^\.\//, '').replace(/\/$/, ''));
    pax = undefined;
    longName = undefined;
  }
  return found;
}

/**
 * Tells which directories of `dir` carry `trusted.overlay.opaque=y`, with GNU
 * tar reading their xattrs: `add` names a directory (relative) as the walk
 * finds it — tar is started on the first one and reads the names from its
 * stdin as they come, so its start-up overlaps the walk — and `opaque()` is
 * the set once the walk has named every directory.
 */
class OpaqueDirs {
  #child: ReturnType<typeof spawn> | undefined;
  #result: Promise<Set<string>> | undefined;

  constructor(readonly dir: string) {}

  add(rel: string): void {
    if (!this.#child) this.#start();
    this.#child!.stdin!.write(`./${rel}\0`);
  }

  #start(): void {
    const child = spawn('tar', ['--xattrs', '--xattrs-include=trusted.overlay.opaque', '--no-recursion', '--null', '-C', this.dir, '-cf', '-', '-T', '-'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#child = child;
    let stderr = '';
    const out: Buffer[] = [];
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdout!.on('data', (c: Buffer) => out.push(c));
    child.stdin!.on('error', () => undefined); // EPIPE when tar dies: reported by its exit code
    this.#result = new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', resolve);
    }).then((code) => {
      if (code !== 0) throw new BktError('INTERNAL', `reading overlay xattrs of ${this.dir} with tar failed: ${stderr.trim()}`);
      return opaqueEntries(Buffer.concat(out));
    });
    this.#result.catch(() => undefined); // awaited by opaque()
  }

  /** The opaque directories among those named; call once, after the last `add`. */
  opaque(): Promise<Set<string>> {
    if (!this.#child) return Promise.resolve(new Set());
    this.#child.stdin!.end();
    return this.#result!;
  }

  /** Stops tar (the walk failed). */
  abandon(): void {
    if (this.#child && this.#child.exitCode === null) this.#child.kill();
  }
}

interface Item {
  rel: string;
  st: Stats;
}

const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/**
 * Every entry under `dir`, parents first, siblings in byte order of their
 * names; `onDirectory` is told of each directory as it is found. A
 * directory's names are read in the thread pool (one trip), its entries
 * lstat'ed here synchronously: the walk needs them all before the first
 * entry is written, and a trip to the pool per entry costs more than the call.
 */
async function walkSorted(dir: string, onDirectory?: (rel: string) => void): Promise<Item[]> {
  const out: Item[] = [];
  const visit = async (rel: string) => {
    const names = (await readdir(rel ? join(dir, rel) : dir)).sort(byteOrder);
    const items = names.map((name) => {
      const r = rel ? `${rel}/${name}` : name;
      return { rel: r, st: lstatSync(join(dir, r)) };
    });
    for (const item of items) {
      out.push(item);
      if (item.st.isDirectory()) {
        onDirectory?.(item.rel);
        await visit(item.rel);
      }
    }
  };
  await visit('');
  return out;
}

/** Files up to this size are read here, synchronously, straight into the tar's chunks; larger ones in pieces in the thread pool. */
const SMALL_FILE_BYTES = 1024 * 1024;
/** The tar comes out in chunks of this size (headers and small bodies copied together), so its consumers see few, large chunks. */
const CHUNK_BYTES = 1024 * 1024;

const fsOpen = (path: string) => new Promise<number>((resolve, reject) => open(path, 'r', (err, fd) => (err ? reject(err) : resolve(fd))));
const fsClose = (fd: number) => new Promise<void>((resolve) => close(fd, () => resolve()));
const fsRead = (fd: number, buf: Buffer, off: number, len: number, pos: number) =>
  new Promise<number>((resolve, reject) => read(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));

/** Reads `len` bytes at `pos` of `fd` into `buf` at `off`; fewer only at the end of the file. */
async function fillFrom(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  let got = 0;
  while (got < len) {
    const n = await fsRead(fd, buf, off + got, len - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

function changed(path: string, size: number, got: string): BktError {
  return new BktError('INTERNAL', `${path} changed while its layer was written (${size} bytes, then ${got})`);
}

/** Collects the tar's bytes into CHUNK_BYTES buffers. */
class Chunker {
  #buf = Buffer.allocUnsafe(CHUNK_BYTES);
  #used = 0;
  readonly ready: Buffer[] = [];

  add(bytes: Uint8Array): void {
    let off = 0;
    while (off < bytes.length) {
      const n = Math.min(bytes.length - off, CHUNK_BYTES - this.#used);
      this.#buf.set(bytes.subarray(off, off + n), this.#used);
      this.#used += n;
      off += n;
      if (this.#used === CHUNK_BYTES) this.flush();
    }
  }

  /**
   * Appends the whole content of the regular file `path` of `size` bytes,
   * read synchronously straight into the chunk buffers (no buffer of its own,
   * no trip to the thread pool: the file was just lstat'ed, and a small
   * file's read costs less than the trip); a different size is an error.
   */
  addFile(path: string, size: number): void {
    const fd = openSync(path, 'r');
    try {
      let pos = 0;
      for (;;) {
        if (this.#used === CHUNK_BYTES) this.flush();
        const rest = size - pos;
        // One byte more than the rest where it fits: a file that grew is seen, and the end found, without another read.
        const want = Math.min(rest + 1, CHUNK_BYTES - this.#used);
        const n = readSync(fd, this.#buf, this.#used, want, pos);
        if (n > rest) throw changed(path, size, 'more');
        this.#used += n;
        pos += n;
        // A short read of a regular file is its end.
        if (n < want) {
          if (pos < size) throw changed(path, size, `${pos} bytes`);
          return;
        }
      }
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Appends the whole content of the regular file `path` of `size` bytes (a
   * large one), read in the thread pool straight into the chunk buffers, the
   * next chunk's read started before a full one is yielded; a different size
   * is an error. The chunks stay CHUNK_BYTES long and at the same offsets of
   * the tar as every other chunk, so a compressor that cuts the tar every
   * CHUNK_BYTES takes each as it is, without copying it.
   */
  async *addLargeFile(path: string, size: number): AsyncGenerator<Buffer> {
    const fd = await fsOpen(path);
    let reading: Promise<number> | undefined;
    try {
      let pos = 0;
      // One byte more than the rest where it fits: a file that grew is seen, and the end found, without another read.
      const want = () => Math.min(size - pos + 1, CHUNK_BYTES - this.#used);
      reading = fillFrom(fd, this.#buf, this.#used, want(), pos);
      for (;;) {
        const asked = want();
        const n = await reading;
        reading = undefined;
        if (n > size - pos) throw changed(path, size, 'more');
        this.#used += n;
        pos += n;
        // A short read of a regular file is its end.
        if (n < asked) {
          if (pos < size) throw changed(path, size, `${pos} bytes`);
          return;
        }
        this.flush();
        reading = fillFrom(fd, this.#buf, 0, want(), pos);
        reading.catch(() => undefined); // awaited on the next turn
        yield* this.ready.splice(0);
      }
    } finally {
      // A read still running (the consumer stopped early) finishes before its descriptor is closed.
      await reading?.catch(() => undefined);
      await fsClose(fd);
    }
  }

  zeros(n: number): void {
    if (n > 0) this.add(END_OF_TAR.subarray(0, n));
  }

  flush(): void {
    if (this.#used === 0) return;
    this.ready.push(this.#buf.subarray(0, this.#used));
    this.#buf = Buffer.allocUnsafe(CHUNK_BYTES);
    this.#used = 0;
  }
}

const major = (rdev: number) => Number((BigInt(rdev) >> 8n) & 0xfffn) | Number((BigInt(rdev) >> 32n) & ~0xfffn);
const minor = (rdev: number) => Number(BigInt(rdev) & 0xffn) | Number((BigInt(rdev) >> 12n) & ~0xffn);

/**
 * The uncompressed OCI layer tar of the overlay upper dir `dir`, in chunks of
 * 1 MiB (the last one shorter), each a buffer of its own. Headers are written
 * here (tar-header.ts); files of up to 1 MiB are read synchronously into the
 * chunks, larger ones in the thread pool (`Chunker.addLargeFile`).
 */
export function layerTar(dir: string, opts: { clampMtime?: number; withOpaque?: boolean } = {}): AsyncIterable<Uint8Array> {
  return { [Symbol.asyncIterator]: () => produceLayerTar(dir, opts) };
}

async function* produceLayerTar(dir: string, opts: { clampMtime?: number; withOpaque?: boolean }): AsyncGenerator<Uint8Array> {
  const xattrs = opts.withOpaque === false ? undefined : new OpaqueDirs(dir);
  let items: Item[];
  try {
    items = await walkSorted(dir, xattrs && ((rel) => xattrs.add(rel)));
  } catch (err) {
    xattrs?.abandon();
    throw err;
  }
  const opaque = xattrs ? await xattrs.opaque() : new Set<string>();
  // Hard links: the first path of an inode (in tar order) holds the content, the others link to it.
  const firstOfInode = new Map<number, number>();
  const linkTo: (string | undefined)[] = new Array(items.length);
  items.forEach(({ st }, i) => {
    if (!st.isFile() || st.nlink <= 1) return;
    const first = firstOfInode.get(st.ino);
    if (first === undefined) firstOfInode.set(st.ino, i);
    else linkTo[i] = items[first]!.rel;
  });
  const clampMs = opts.clampMtime !== undefined ? opts.clampMtime * 1000 : undefined;
  const out = new Chunker();
  const marker = (name: string, mtimeMs: number): TarHeader => ({ name, mode: 0o644, uid: 0, gid: 0, size: 0, mtimeMs, type: TarType.file });
  for (let i = 0; i < items.length; i++) {
    const { rel, st } = items[i]!;
    const t = st.mtime.getTime();
    const mtimeMs = clampMs !== undefined && t > clampMs ? clampMs : t;
    const base = { name: rel, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: 0, mtimeMs };
    if (st.isCharacterDevice() && st.rdev === 0) {
      const slash = rel.lastIndexOf('/');
      out.add(encodeHeader(marker(slash < 0 ? `.wh.${rel}` : `${rel.slice(0, slash)}/.wh.${rel.slice(slash + 1)}`, mtimeMs)));
    } else if (st.isDirectory()) {
      out.add(encodeHeader({ ...base, name: `${rel}/`, type: TarType.directory }));
      if (opaque.has(rel)) out.add(encodeHeader(marker(`${rel}/.wh..wh..opq`, mtimeMs)));
    } else if (st.isSymbolicLink()) {
      out.add(encodeHeader({ ...base, type: TarType.symlink, linkname: await readlink(join(dir, rel)) }));
    } else if (st.isFile()) {
      const link = linkTo[i];
      if (link !== undefined) {
        out.add(encodeHeader({ ...base, type: TarType.link, linkname: link }));
        continue;
      }
      out.add(encodeHeader({ ...base, type: TarType.file, size: st.size }));
      if (st.size <= SMALL_FILE_BYTES) out.addFile(join(dir, rel), st.size);
      else yield* out.addLargeFile(join(dir, rel), st.size);
      out.zeros(padding(st.size));
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      const type = st.isCharacterDevice() ? TarType.characterDevice : TarType.blockDevice;
      out.add(encodeHeader({ ...base, type, devmajor: major(st.rdev), devminor: minor(st.rdev) }));
    } else if (st.isFIFO()) {
      out.add(encodeHeader({ ...base, type: TarType.fifo }));
    }
    // Sockets are not archived (as tar and BuildKit skip them).
    if (out.ready.length > 0) yield* out.ready.splice(0);
  }
  out.add(END_OF_TAR);
  out.flush();
  yield* out.ready.splice(0);
}

/** Where the layer of (`key`, compression, level, clamp) is remembered. */
function rememberedPath(root: string, key: string, compression: Compression, level: number | undefined, clampMtime: number | undefined): string {
  // The level of an uncompressed layer means nothing.
  const lvl = compression === 'uncompressed' ? 'default' : (level ?? 'default');
  return join(root, 'exporter-oci', 'layers', `${key}-${compression}-${lvl}-${clampMtime ?? 'none'}.json`);
}

async function recall(file: string, content: BuildContext['content']): Promise<Layer | undefined> {
  const layer = await readFile(file, 'utf8').then((t) => JSON.parse(t) as Layer, () => undefined);
  return layer && (await content.has(layer.descriptor.digest)) ? layer : undefined;
}

async function remember(file: string, layer: Layer): Promise<void> {
  await mkdir(join(file, '..'), { recursive: true });
  const tmp = `${file}.${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, JSON.stringify(layer));
  await rename(tmp, file);
}

export interface ConvertLayerOptions {
  compression: Compression;
  compressionLevel?: number;
  /** The snapshot the layer belongs to: it references the new blob, so the blob lives as long as it does. */
  snapshotId?: string;
}

/**
 * The same layer tar as a blob of another compression: `layer`'s blob
 * decompressed and compressed as asked, made once per (blob, compression,
 * level) and remembered. The diff id does not change. A layer already of
 * that compression is returned as it is.
 */
export async function convertLayer(layer: Layer, ctx: Pick<BuildContext, 'root' | 'content'>, opts: ConvertLayerOptions): Promise<Layer> {
  const have = compressionOfMediaType(layer.descriptor.mediaType);
  if (have === opts.compression) return layer;
  const key = `blob-${layer.descriptor.digest.slice('sha256:'.length)}`;
  const file = rememberedPath(ctx.root, key, opts.compression, opts.compressionLevel, undefined);
  let converted = await recall(file, ctx.content);
  if (!converted) {
    const what = `compressing ${layer.descriptor.digest} (${opts.compression})`;
    const source = createReadStream(ctx.content.path(layer.descriptor.digest), { highWaterMark: 1024 * 1024 }) as AsyncIterable<Uint8Array>;
    const plain = have === 'uncompressed' ? source : decompress(source, what);
    const { digest, size } = await ctx.content.write(compress(plain, opts.compression, opts.compressionLevel, what));
    converted = { descriptor: { mediaType: OCI_LAYER[opts.compression], digest, size }, diffId: layer.diffId };
    await remember(file, converted);
  }
  if (opts.snapshotId !== undefined) await ctx.content.addRef?.(converted.descriptor.digest, { snapshot: opts.snapshotId });
  return converted;
}

/**
 * The layer an export sends for a remembered layer record (its blob in the
 * content store): the record's own blob when it has the asked compression, or
 * whatever it has without `forceCompression` — except an uncompressed blob no
 * registry holds (the local image store's own form, `-t`), which leaves
 * compressed as asked; a blob of unknown media type is sent as it is. Any
 * other case is `convertLayer`'s (made once). `converted` tells the caller
 * that the record's `sources` do not hold the sent blob.
 */
export async function recordedLayer(
  rec: Pick<LayerRecord, 'blob' | 'diffId' | 'sources'>,
  ctx: Pick<BuildContext, 'root' | 'content'>,
  opts: ConvertLayerOptions & { forceCompression: boolean },
): Promise<{ layer: Layer; converted: boolean }> {
  const have = compressionOfMediaType(rec.blob.mediaType);
  const localPlain = have === 'uncompressed' && rec.sources.length === 0;
  if (have === undefined || have === opts.compression || (!opts.forceCompression && !localPlain)) {
    return { layer: { descriptor: rec.blob, diffId: rec.diffId }, converted: false };
  }
  const layer = await convertLayer({ descriptor: rec.blob, diffId: rec.diffId }, ctx, opts);
  return { layer, converted: true };
}

/**
 * The layer of `snapshot`'s own changes, computed once per (compression,
 * level, clamp) (see the module comment). A compressed layer of a snapshot
 * whose uncompressed layer is remembered (an image named into the local
 * store) is made from that blob, without walking the tree again; the bytes
 * are the same either way.
 */
export async function snapshotLayer(snapshot: Snapshot, ctx: Pick<BuildContext, 'root' | 'content'>, opts: LayerOptions): Promise<Layer> {
  const file = rememberedPath(ctx.root, snapshot.id, opts.compression, opts.compressionLevel, opts.clampMtime);
  if (!opts.noCache) {
    const found = await recall(file, ctx.content);
    if (found) return found;
  }
  if (!opts.noCache && opts.compression !== 'uncompressed') {
    const plain = await recall(rememberedPath(ctx.root, snapshot.id, 'uncompressed', undefined, opts.clampMtime), ctx.content);
    if (plain) {
      const layer = await convertLayer(plain, ctx, { compression: opts.compression, compressionLevel: opts.compressionLevel, snapshotId: snapshot.id });
      await remember(file, layer);
      return layer;
    }
  }
  const what = `layer of snapshot ${snapshot.id}`;
  await snapshot.materialize?.(); // a lazy snapshot's tree is made before its layer directory is read
  const tar = layerTar(snapshot.layerPath(), { clampMtime: opts.clampMtime, withOpaque: snapshot.parent !== null });
  let layer: Layer;
  if (opts.compression === 'uncompressed') {
    // The blob is the tar: its digest is the diff id, hashed once (by the content store).
    const { digest, size } = await ctx.content.write(tar);
    layer = { descriptor: { mediaType: OCI_LAYER.uncompressed, digest, size }, diffId: digest };
  } else {
    // The diff id is hashed with the compression (for gzip by its worker, off this thread); the tar's chunks are nobody else's.
    const packed = compressDigesting(tar, opts.compression, opts.compressionLevel, what, { handOver: true });
    const { digest, size } = await ctx.content.write(packed.chunks);
    layer = { descriptor: { mediaType: OCI_LAYER[opts.compression], digest, size }, diffId: packed.digest() };
  }
  // The snapshot keeps the blob: a prune removes it only with the snapshot (or when no image name holds it).
  await ctx.content.addRef?.(layer.descriptor.digest, { snapshot: snapshot.id });
  await remember(file, layer);
  return layer;
}
