/**
 * The bridge's file access to results (LLBBridge's ReadFile, ReadDir,
 * StatFile): each call mounts the result read-only, resolves the path inside
 * its root as in a chroot (`..` clamps, symlinks — absolute ones too — stay
 * inside; `resolveInRoot` of @bkt/fsutil) and unmounts it again.
 */
import { open, lstat, readdir, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import { BktError, type FileRange, type FileStat, type Snapshot } from '@bkt/core';
import { compilePattern, resolveInRoot } from '@bkt/fsutil';

/** Largest read of one ReadFile call (BuildKit's gateway caps messages at 16 MiB too). */
export const MAX_READ_BYTES = 16 << 20;

async function withRoot<T>(ref: Snapshot | null, what: string, path: string, fn: (root: string) => Promise<T>): Promise<T> {
  if (!ref) throw new BktError('NOT_FOUND', `${what} ${path}: the result is empty (scratch) and holds no files`, { path });
  const mounted = await ref.mount();
  try {
    return await fn(mounted.path);
  } finally {
    await mounted.release();
  }
}

function notFound(what: string, path: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return new BktError('NOT_FOUND', `${what} ${path}: no such file or directory in the result`, { path });
  return err;
}

export async function readResultFile(ref: Snapshot | null, path: string, range?: FileRange): Promise<Uint8Array> {
  if (range && (!Number.isInteger(range.offset) || range.offset < 0 || (range.length !== undefined && (!Number.isInteger(range.length) || range.length < 0)))) {
    throw new BktError('INVALID_ARGUMENT', `read file ${path}: invalid range (offset ${range.offset}, length ${range.length})`, { path, attribute: 'range' });
  }
  return withRoot(ref, 'read file', path, async (root) => {
    const host = await resolveInRoot(root, path, { followFinalSymlink: true });
    let st: Stats;
    try {
      st = await stat(host);
    } catch (err) {
      throw notFound('read file', path, err);
    }
    if (!st.isFile()) throw new BktError('INVALID_ARGUMENT', `read file ${path}: not a regular file`, { path });
    const offset = range?.offset ?? 0;
    const want = Math.max(0, Math.min(range?.length ?? st.size - offset, st.size - offset));
    if (want > MAX_READ_BYTES) {
      throw new BktError('INVALID_ARGUMENT', `read file ${path}: ${want} bytes is more than one read returns (${MAX_READ_BYTES}); read it in ranges`, { path, attribute: 'range' });
    }
    const fh = await open(host, 'r');
    try {
      const buf = Buffer.alloc(want);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await fh.read(buf, got, want - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return buf.subarray(0, got);
    } finally {
      await fh.close();
    }
  });
}

export async function readResultDir(ref: Snapshot | null, path: string, include?: string): Promise<FileStat[]> {
  const pattern = include ? compilePattern(include, ' (include pattern)') : null;
  return withRoot(ref, 'read dir', path, async (root) => {
    const host = await resolveInRoot(root, path, { followFinalSymlink: true });
    let names: string[];
    try {
      names = await readdir(host);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR') throw new BktError('INVALID_ARGUMENT', `read dir ${path}: not a directory`, { path });
      throw notFound('read dir', path, err);
    }
    names.sort();
    const out: FileStat[] = [];
    for (const name of names) {
      if (pattern && !pattern.matchesExactly(name)) continue;
      try {
        out.push(await statOf(join(host, name), name));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    return out;
  });
}

export async function statResultFile(ref: Snapshot | null, path: string): Promise<FileStat> {
  return withRoot(ref, 'stat', path, async (root) => {
    const host = await resolveInRoot(root, path, { followFinalSymlink: true });
    try {
      return await statOf(host, path);
    } catch (err) {
      throw notFound('stat', path, err);
    }
  });
}

/** A stat as the client seam's `FileStat` (POSIX mode; a symlink's target as `linkname`). */
async function statOf(host: string, name: string): Promise<FileStat> {
  const st = await lstat(host);
  const out: FileStat = { path: name, mode: st.mode, uid: st.uid, gid: st.gid, size: st.isFile() ? st.size : 0, mtimeMs: st.mtimeMs };
  if (st.isSymbolicLink()) {
    const { readlink } = await import('node:fs/promises');
    out.linkname = await readlink(host);
  }
  if (st.isCharacterDevice() || st.isBlockDevice()) {
    out.devmajor = Math.floor(st.rdev / 256) & 0xfff;
    out.devminor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
  }
  return out;
}
