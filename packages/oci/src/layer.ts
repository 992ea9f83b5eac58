/**
 * New layers: the tar of a snapshot's own changes (`Snapshot.layerPath()`, an
 * overlay upper dir) in the OCI layer format, compressed into the content store.
 *
 * - Overlay whiteouts (0/0 character devices) become `.wh.NAME` entries;
 *   opaque directories (`trusted.overlay.opaque=y`) get a `.wh..wh..opq` entry.
 * - Entries come in byte order of their names, parents first; hard links
 *   inside the layer become tar links to the first path of the inode; owners
 *   are numeric, user and group names empty: the same tree gives the same tar.
 * - With `clampMtime` (SOURCE_DATE_EPOCH and rewrite-timestamp), no mtime is
 *   later than it, so the digest does not depend on when the build ran.
 * - diff_id = sha256 of the uncompressed tar.
 *
 * A snapshot is immutable, so its layer is computed once per (compression,
 * level, clamp) and remembered under `<root>/exporter-oci/layers/`; the
 * snapshot references the blob (`ContentStore.addRef`), so it lives as long
 * as the snapshot does.
 *
 * Node cannot read xattrs: opaque markers are read with GNU tar
 * (`tar --xattrs`), other xattrs (file capabilities) are not exported.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, type Stats } from 'node:fs';
import { lstat, mkdir, readFile, readdir, readlink, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type * as TarStream from 'tar-stream';
import { BktError, type BuildContext, type Digest, type Snapshot } from '@bkt/core';
import { compress, type Compression } from './compression.js';
import { digesting } from './digest.js';
import { MediaType, type Descriptor } from './media-types.js';

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
  /** The compressed blob, with an OCI media type; it is in the content store. */
  descriptor: Descriptor;
  diffId: Digest;
}

/** Directories of `dir` (relative) that carry `trusted.overlay.opaque=y`. */
async function opaqueDirs(dir: string, dirs: string[]): Promise<Set<string>> {
  const found = new Set<string>();
  if (dirs.length === 0) return found;
  const child = spawn('tar', ['--xattrs', '--xattrs-include=trusted.overlay.opaque', '--no-recursion', '--null', '-C', dir, '-cf', '-', '-T', '-'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdin.end(dirs.map((d) => `./${d}\0`).join(''));
  const { default: tar } = await import('tar-stream');
  const extract = tar.extract();
  const done = pipeline(child.stdout, extract);
  for await (const entry of extract) {
    const v = (entry.header.pax as Record<string, string> | undefined)?.['SCHILY.xattr.trusted.overlay.opaque'];
    if (v === 'y') found.add(entry.header.name.replace(/^\.\//, '').replace(/\/$/, ''));
    entry.resume();
  }
  await done;
  const code: number = child.exitCode ?? (await new Promise((r) => child.on('close', r)));
  if (code !== 0) throw new BktError('INTERNAL', `reading overlay xattrs of ${dir} with tar failed: ${stderr.trim()}`);
  return found;
}

interface Item {
  rel: string;
  st: Stats;
}

/** Every entry under `dir`, parents first, siblings in byte order of their names; a directory's entries are lstat'ed at once. */
async function walkSorted(dir: string): Promise<Item[]> {
  const out: Item[] = [];
  const visit = async (rel: string) => {
    const names = (await readdir(rel ? join(dir, rel) : dir)).sort((a, b) => (Buffer.compare(Buffer.from(a), Buffer.from(b))));
    const stats = await Promise.all(names.map((name) => lstat(join(dir, rel ? `${rel}/${name}` : name))));
    for (let i = 0; i < names.length; i++) {
      const r = rel ? `${rel}/${names[i]}` : names[i];
      out.push({ rel: r, st: stats[i] });
      if (stats[i].isDirectory()) await visit(r);
    }
  };
  await visit('');
  return out;
}

/** Files up to this size are read whole, several ahead of the tar writer; larger ones are streamed. */
const SMALL_FILE_BYTES = 1024 * 1024;
/** How many small files are read ahead, and how many bytes at most. */
const READ_AHEAD_FILES = 32;
const READ_AHEAD_BYTES = 16 * 1024 * 1024;

/**
 * Reads the small regular files of `items` ahead of their turn (a bounded
 * window of concurrent `readFile`s), so the tar writer does not wait on one
 * open/read/close round trip per file. `take(i)` returns item i's bytes.
 */
function readAhead(dir: string, items: Item[], wanted: (i: number) => boolean) {
  const reads = new Map<number, Promise<Buffer>>();
  let next = 0;
  let bytes = 0;
  const fill = () => {
    while (next < items.length && reads.size < READ_AHEAD_FILES && bytes < READ_AHEAD_BYTES) {
      const i = next++;
      if (!wanted(i)) continue;
      const p = readFile(join(dir, items[i].rel));
      p.catch(() => undefined); // awaited by take()
      reads.set(i, p);
      bytes += items[i].st.size;
    }
  };
  return {
    async take(i: number): Promise<Buffer> {
      fill();
      const p = reads.get(i) ?? readFile(join(dir, items[i].rel));
      reads.delete(i);
      const buf = await p;
      bytes -= items[i].st.size;
      fill();
      return buf;
    },
  };
}

const major = (rdev: number) => Number((BigInt(rdev) >> 8n) & 0xfffn) | Number((BigInt(rdev) >> 32n) & ~0xfffn);
const minor = (rdev: number) => Number(BigInt(rdev) & 0xffn) | Number((BigInt(rdev) >> 12n) & ~0xffn);

/** The uncompressed OCI layer tar of the overlay upper dir `dir`. */
export function layerTar(dir: string, opts: { clampMtime?: number; withOpaque?: boolean } = {}): AsyncIterable<Uint8Array> {
  return {
    async *[Symbol.asyncIterator]() {
      // tar-stream (and streamx) load with the first layer, not with @bkt/oci.
      const { default: tar } = await import('tar-stream');
      const pack = tar.pack();
      produceLayerTar(pack, dir, opts).catch((err: Error) => pack.destroy(err));
      yield* pack as unknown as AsyncIterable<Uint8Array>;
    },
  };
}

async function produceLayerTar(pack: TarStream.Pack, dir: string, opts: { clampMtime?: number; withOpaque?: boolean }): Promise<void> {
  const items = await walkSorted(dir);
  const opaque = opts.withOpaque === false ? new Set<string>() : await opaqueDirs(dir, items.filter((i) => i.st.isDirectory()).map((i) => i.rel));
  const inodes = new Map<number, string>();
  const clamp = (d: Date) => (opts.clampMtime !== undefined && d.getTime() > opts.clampMtime * 1000 ? new Date(opts.clampMtime * 1000) : d);
  const small = (i: number) => {
    const { st } = items[i];
    return st.isFile() && st.size <= SMALL_FILE_BYTES && !(st.nlink > 1);
  };
  const ahead = readAhead(dir, items, small);
  const add = (header: TarStream.Header, body?: Buffer | string) =>
    new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (body === undefined) pack.entry(header, cb);
      else pack.entry(header, body, cb);
    });
  for (let i = 0; i < items.length; i++) {
    const { rel, st } = items[i];
    const base = { name: rel, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, uname: '', gname: '', mtime: clamp(st.mtime) } as TarStream.Header;
    if (st.isCharacterDevice() && st.rdev === 0) {
      const slash = rel.lastIndexOf('/');
      const name = slash < 0 ? `.wh.${rel}` : `${rel.slice(0, slash)}/.wh.${rel.slice(slash + 1)}`;
      await add({ ...base, name, type: 'file', size: 0, mode: 0, uid: 0, gid: 0 }, '');
    } else if (st.isDirectory()) {
      await add({ ...base, name: `${rel}/`, type: 'directory' });
      if (opaque.has(rel)) await add({ ...base, name: `${rel}/.wh..wh..opq`, type: 'file', size: 0, mode: 0, uid: 0, gid: 0 }, '');
    } else if (st.isSymbolicLink()) {
      await add({ ...base, type: 'symlink', linkname: await readlink(join(dir, rel)) });
    } else if (st.isFile()) {
      const first = st.nlink > 1 ? inodes.get(st.ino) : undefined;
      if (first !== undefined) {
        await add({ ...base, type: 'link', linkname: first, size: 0 });
        continue;
      }
      if (st.nlink > 1) inodes.set(st.ino, rel);
      if (small(i)) {
        const body = await ahead.take(i);
        if (body.length !== st.size) {
          throw new BktError('INTERNAL', `${join(dir, rel)} changed while its layer was written (${st.size} bytes, then ${body.length})`);
        }
        await add({ ...base, type: 'file', size: st.size }, body);
        continue;
      }
      await new Promise<void>((resolve, reject) => {
        const w = pack.entry({ ...base, type: 'file', size: st.size }, (err) => (err ? reject(err) : resolve()));
        pipeline(createReadStream(join(dir, rel)), w).catch(reject);
      });
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      await add({ ...base, type: st.isCharacterDevice() ? 'character-device' : 'block-device', devmajor: major(st.rdev), devminor: minor(st.rdev), size: 0 });
    } else if (st.isFIFO()) {
      await add({ ...base, type: 'fifo', size: 0 });
    }
    // Sockets are not archived (as tar and BuildKit skip them).
  }
  pack.finalize();
}

/** The layer of `snapshot`'s own changes, computed once (see the module comment). */
export async function snapshotLayer(snapshot: Snapshot, ctx: Pick<BuildContext, 'root' | 'content'>, opts: LayerOptions): Promise<Layer> {
  const cacheFile = join(
    ctx.root,
    'exporter-oci',
    'layers',
    `${snapshot.id}-${opts.compression}-${opts.compressionLevel ?? 'default'}-${opts.clampMtime ?? 'none'}.json`,
  );
  if (!opts.noCache) {
    const cached = await readFile(cacheFile, 'utf8').then((t) => JSON.parse(t) as Layer, () => undefined);
    if (cached && (await ctx.content.has(cached.descriptor.digest))) return cached;
  }
  const what = `layer of snapshot ${snapshot.id}`;
  const plain = digesting(layerTar(snapshot.layerPath(), { clampMtime: opts.clampMtime, withOpaque: snapshot.parent !== null }));
  const { digest, size } = await ctx.content.write(compress(plain.chunks, opts.compression, opts.compressionLevel, what));
  // The snapshot keeps the blob: a prune removes it only with the snapshot (or when no image name holds it).
  await ctx.content.addRef?.(digest, { snapshot: snapshot.id });
  const layer: Layer = {
    descriptor: { mediaType: OCI_LAYER[opts.compression], digest, size },
    diffId: plain.digest(),
  };
  await mkdir(join(ctx.root, 'exporter-oci', 'layers'), { recursive: true });
  const tmp = `${cacheFile}.${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, JSON.stringify(layer));
  await rename(tmp, cacheFile);
  return layer;
}

