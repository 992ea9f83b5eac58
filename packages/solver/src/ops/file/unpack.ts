/**
 * `attemptUnpackDockerCompatibility` (Dockerfile `ADD archive.tar /dest`): a
 * source that is a tar archive, plain or compressed (gzip, bzip2, xz, zstd,
 * detected by magic bytes as Docker does), is extracted into the destination
 * directory instead of copied. Entries keep the archive's modes, owners and
 * times, as Docker's `Untar`.
 *
 * Safety, as Docker's chrooted untar: an entry whose cleaned name climbs out
 * of the destination (`../x`) or a relative symlink or hardlink pointing out
 * of it is an error; parents are resolved inside the destination, so a
 * symlink written by an earlier entry cannot redirect a later write outside.
 */
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { chmod, lchown, link, lutimes, mkdir, open, rm, symlink } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { BktError } from '@bkt/core';
import { resolveInRoot } from '@bkt/fsutil';
import type { Header } from 'tar-stream';
import { copySpecial, lstatOrNull, mkdirAllInRoot } from './fsops.js';
import type { Owner } from './owner.js';

type Compression = 'gzip' | 'bzip2' | 'xz' | 'zstd' | 'none';

function detectCompression(magic: Buffer): Compression {
  if (magic[0] === 0x1f && magic[1] === 0x8b && magic[2] === 0x08) return 'gzip';
  if (magic.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
  if (magic.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (magic.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return 'zstd';
  return 'none';
}

/**
 * The decompressed bytes of a file (external `bzip2`/`xz`/`zstd` where Node
 * has no codec). A missing program fails the stream with a `BktError` naming
 * it, so an archive is never mistaken for a plain file for lack of a tool.
 */
function decompressed(file: string, compression: Compression, archiveName: string): Readable {
  const input = createReadStream(file);
  if (compression === 'none') return input;
  if (compression === 'gzip') return input.pipe(createGunzip());
  const child = spawn(compression, ['-dc'], { stdio: ['pipe', 'pipe', 'ignore'] });
  input.pipe(child.stdin);
  child.stdin.on('error', () => {}); // EPIPE when the reader stops early
  input.on('error', (err) => child.stdout.destroy(err));
  child.on('error', (err) => {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    child.stdout.destroy(
      missing
        ? new MissingDecompressor(`copy: "${archiveName}" is ${compression}-compressed, but the \`${compression}\` program is not installed on this host (needed to unpack it)`)
        : err,
    );
  });
  child.on('close', (code) => {
    if (code !== 0 && code !== null) child.stdout.destroy(new Error(`${compression} -dc exited with code ${code}`));
  });
  const out = child.stdout;
  out.on('close', () => child.kill());
  return out;
}

/** The host lacks the program a compression needs. */
class MissingDecompressor extends BktError {
  constructor(message: string) {
    super('NOT_FOUND', message);
  }
}

/** True when `block` is a valid tar header (checksum ok, not the end-of-archive zero block). */
function isTarHeader(block: Buffer): boolean {
  if (block.length < 512 || block.every((b) => b === 0)) return false;
  const field = block.subarray(148, 156).toString('latin1').replace(/\0.*$/s, '').trim();
  if (!/^[0-7]+$/.test(field)) return false;
  const expected = parseInt(field, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return expected === unsigned || expected === signed;
}

async function firstBlock(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size >= 512) break;
    }
  } catch (err) {
    if (err instanceof MissingDecompressor) throw err;
    // not decompressible: not an archive
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks).subarray(0, 512);
}

/** Whether `file` (a regular file) is a possibly compressed tar archive, and its compression. */
async function archiveCompression(file: string, archiveName: string): Promise<Compression | null> {
  const fh = await open(file, 'r');
  const magic = Buffer.alloc(6);
  try {
    await fh.read(magic, 0, 6, 0);
  } finally {
    await fh.close();
  }
  const compression = detectCompression(magic);
  return isTarHeader(await firstBlock(decompressed(file, compression, archiveName))) ? compression : null;
}

/**
 * Extracts `src` (in `srcRoot`) into `dest` (in `destRoot`) when it is an
 * archive; returns false, having written nothing, when it is not.
 */
export async function tryUnpack(
  srcRoot: string,
  src: string,
  destRoot: string,
  dest: string,
  owner: Owner | null,
  time: number | null,
  signal?: AbortSignal,
): Promise<boolean> {
  const file = await resolveInRoot(srcRoot, src, { followFinalSymlink: true });
  const st = await lstatOrNull(file);
  if (!st || !st.isFile()) return false;
  const compression = await archiveCompression(file, src);
  if (compression === null) return false;

  const destDir = await resolveInRoot(destRoot, dest, { followFinalSymlink: true });
  await mkdirAllInRoot(destRoot, destDir, 0o755, owner, time);
  const destStat = await lstatOrNull(destDir);
  if (!destStat?.isDirectory()) {
    throw new BktError('INVALID_ARGUMENT', `copy: cannot unpack "${src}": destination "${dest}" is not a directory`);
  }
  await extract(decompressed(file, compression, src), destDir, src, signal);
  return true;
}

interface DirTimes {
  path: string;
  mtime: Date;
}

async function extract(input: Readable, destDir: string, archiveName: string, signal?: AbortSignal): Promise<void> {
  // tar-stream (and the streams it is built on) loads only when an archive is unpacked.
  const { default: tar } = await import('tar-stream');
  const ex = tar.extract();
  const dirs: DirTimes[] = [];
  const breakout = (what: string) =>
    new BktError('PERMISSION_DENIED', `copy: unpacking "${archiveName}": ${what} is outside of the destination`, { path: archiveName });

  ex.on('entry', (header, stream, next) => {
    writeEntry(header, stream as unknown as Readable)
      .then(() => next())
      .catch((err) => {
        stream.resume();
        ex.destroy(err);
      });
  });

  async function writeEntry(header: Header, stream: Readable): Promise<void> {
    signal?.throwIfAborted();
    const name = path.posix.normalize(header.name);
    const rel = path.posix.normalize(path.posix.join('/', name)).slice(1);
    if (name.startsWith('../') || name === '..') throw breakout(`entry "${header.name}"`);
    if (rel === '') {
      stream.resume();
      return;
    }
    // Parents inside the destination, created 0755 when missing (as Docker's untar).
    const parent = await resolveInRoot(destDir, path.posix.dirname(rel), { followFinalSymlink: true });
    await mkdirAllInRoot(destDir, parent, 0o755, null, null);
    const target = path.join(parent, path.posix.basename(rel));
    const existing = await lstatOrNull(target);
    if (existing && !(existing.isDirectory() && header.type === 'directory')) await rm(target, { recursive: true, force: true });

    const mode = (header.mode ?? 0o644) & 0o7777;
    switch (header.type) {
      case 'directory':
        if (!existing?.isDirectory()) await mkdir(target);
        stream.resume();
        break;
      case 'file':
      case 'contiguous-file':
        await pipeline(stream, createWriteStream(target, { mode }));
        break;
      case 'symlink': {
        const linkname = header.linkname ?? '';
        if (!linkname.startsWith('/') && path.posix.normalize(path.posix.join(path.posix.dirname(rel), linkname)).startsWith('../')) {
          throw breakout(`symlink "${header.name}" -> "${linkname}"`);
        }
        await symlink(linkname, target);
        stream.resume();
        break;
      }
      case 'link': {
        const linkname = path.posix.normalize(header.linkname ?? '');
        if (linkname.startsWith('../') || linkname === '..') throw breakout(`hardlink "${header.name}" -> "${header.linkname}"`);
        const from = await resolveInRoot(destDir, linkname);
        const fromStat = await lstatOrNull(from);
        if (!fromStat || fromStat.isDirectory()) {
          throw new BktError('INVALID_ARGUMENT', `copy: unpacking "${archiveName}": hardlink "${header.name}" -> "${header.linkname}": target missing`);
        }
        await link(from, target);
        stream.resume();
        return; // a hardlink shares its target's metadata
      }
      case 'character-device':
      case 'block-device':
      case 'fifo': {
        const kind = header.type === 'fifo' ? 0o010000 : header.type === 'character-device' ? 0o020000 : 0o060000;
        const major = header.devmajor ?? 0;
        const minor = header.devminor ?? 0;
        const rdev = (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12);
        await copySpecial(target, { mode: kind | mode, rdev, isFIFO: () => header.type === 'fifo', isCharacterDevice: () => header.type === 'character-device', isBlockDevice: () => header.type === 'block-device', isSocket: () => false } as never);
        stream.resume();
        break;
      }
      default:
        stream.resume(); // pax headers and unknown types carry no file
        return;
    }
    await lchown(target, header.uid ?? 0, header.gid ?? 0);
    if (header.type !== 'symlink') await chmod(target, mode);
    const mtime = header.mtime ?? new Date(0);
    if (header.type === 'directory') dirs.push({ path: target, mtime });
    else await lutimes(target, mtime, mtime);
  }

  await pipeline(input, ex);
  // Directory times last: writing their entries changed them.
  for (const d of dirs.reverse()) await lutimes(d.path, d.mtime, d.mtime);
}
