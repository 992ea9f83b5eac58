/**
 * Applies one image layer (an uncompressed tar stream) onto a mounted tree,
 * as containerd's `archive.Apply` does on an overlay mount:
 *
 * - `.wh.NAME` deletes NAME from the lower layers: removing it through the
 *   overlay mount makes overlayfs write its whiteout (a 0/0 character device)
 *   in the snapshot's upper dir.
 * - `.wh..wh..opq` hides everything the lower layers had in its directory:
 *   the directory is removed and made again through the mount, which overlayfs
 *   records as an opaque directory (`trusted.overlay.opaque=y`). When entries
 *   of this layer already landed in it, only the other entries are removed.
 * - In a base layer (nothing below) whiteouts have nothing to delete and are skipped.
 * - Other `.wh..wh.` names (aufs metadata such as `.wh..wh.plnk`) are skipped, as containerd does.
 *
 * A whiteout must name an entry of its own directory: `.wh.` (nothing),
 * `.wh..` (the directory itself) and `.wh...` (its parent) make the layer
 * invalid (`INVALID_ARGUMENT` naming the layer and the entry), in a base
 * layer too.
 *
 * Confinement: every path stays under `root`. An entry's parent directories
 * are resolved inside the root as containerd's `fs.RootPath` does (and as the
 * container will see them): an absolute symlink is taken from the root (an
 * image's `var/run -> /run` leads to `<root>/run`), and `..` stops at the
 * root. An entry whose own name climbs out with `..`, and a hard link whose
 * target name climbs out, fail with `PERMISSION_DENIED` naming the layer and
 * the entry; nothing is written for it. Symlinks themselves are created as
 * they are (they are resolved inside the container at run time). Every
 * removal (whiteouts, opaque directories, an entry replaced by another type)
 * is of a path strictly below the root, and never follows a symlink.
 */
import { execFile } from 'node:child_process';
import { chmodSync, closeSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, openSync, readlinkSync, symlinkSync, writeSync } from 'node:fs';
import { chmod, lchown, lstat, mkdir, readdir, rm, utimes } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BktError } from '@bkt/core';

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';
const AUFS_META_PREFIX = '.wh..wh.';

export interface UnpackOptions {
  /** True for an image's first layer: there is nothing below for whiteouts to delete. */
  base: boolean;
  /** Names the layer in errors (`layer sha256:… of docker.io/library/busybox`). */
  what: string;
  /** Reports something skipped (e.g. xattrs the host cannot set). */
  warn?(message: string): void;
}

/**
 * Splits a tar entry name (or a hard link's target) into clean components;
 * throws when `..` climbs above the root, naming `entry` and saying `why`.
 */
export function entryComponents(name: string, what: string, entry = name, why = 'its path climbs out of the root with ".."'): string[] {
  const parts: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (parts.length === 0) throw escapeError(what, entry, why);
      parts.pop();
    } else parts.push(c);
  }
  return parts;
}

function escapeError(what: string, entry: string, why: string): BktError {
  return new BktError('PERMISSION_DENIED', `${what}: entry "${entry}" refused: ${why}`, { entry });
}

/** The name a `.wh.NAME` entry deletes; throws when NAME is not an entry of the whiteout's directory. */
export function whiteoutTarget(base: string, what: string, entry: string): string {
  const name = base.slice(WHITEOUT_PREFIX.length);
  if (name === '' || name === '.' || name === '..' || name.includes('/')) {
    const named = name === '' ? 'nothing' : `"${name}"`;
    throw new BktError('INVALID_ARGUMENT', `${what}: invalid layer: whiteout entry "${entry}" names ${named}, not an entry of its directory`, { entry });
  }
  return name;
}

/**
 * `rm -rf` of `path`, which must lie strictly below `root` (the root itself
 * and anything outside are refused). A symlink is removed, not followed.
 */
async function removeBelowRoot(root: string, path: string, what: string, entry: string): Promise<void> {
  const rel = relative(root, path);
  if (rel === '' || rel === '..' || rel.startsWith('../') || rel.startsWith('/')) {
    throw new BktError('PERMISSION_DENIED', `${what}: entry "${entry}" refused: it would remove "${path}", which is not below the layer root`, { entry });
  }
  await rm(path, { recursive: true, force: true });
}

async function lstatOrNull(p: string) {
  try {
    return await lstat(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

function lstatSyncOrNull(p: string) {
  try {
    return lstatSync(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

/** Symlinks followed in one resolution at most (as `resolveRelInRoot` of `@bkt/fsutil`). */
const MAX_LINKS = 255;

/**
 * Resolves `parts` inside `root` (see the module comment), following symlinks
 * in every component, the last one included; returns the components of the
 * resolved path under the root (none for the root itself). The rules of
 * `resolveRelInRoot` (`@bkt/fsutil`), with synchronous calls: `..` stops at
 * the root, an absolute link target restarts from the root, a missing
 * component is appended as it is, more than 255 links is an error.
 */
export function resolveParts(root: string, parts: string[], what: string, entry: string): string[] {
  const resolved: string[] = [];
  const pending = [...parts];
  let links = 0;
  while (pending.length > 0) {
    const comp = pending.shift()!;
    if (comp === '' || comp === '.') continue;
    if (comp === '..') {
      resolved.pop();
      continue;
    }
    resolved.push(comp);
    const at = join(root, ...resolved);
    let st;
    try {
      st = lstatSync(at);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') continue; // appended as it is; a later `..` checks again from a parent
      throw err;
    }
    if (!st.isSymbolicLink()) continue;
    if (++links > MAX_LINKS) {
      throw new BktError('INVALID_ARGUMENT', `${what}: entry "${entry}": too many levels of symbolic links resolving "${parts.join('/')}"`, { entry });
    }
    const target = readlinkSync(at);
    resolved.pop();
    if (target.startsWith('/')) resolved.length = 0;
    pending.unshift(...target.split('/'));
  }
  return resolved;
}

/** Writes the body `entry` to the new file `path` (created `0600`; it must not exist) with synchronous writes. */
async function writeBody(path: string, entry: AsyncIterable<Uint8Array>): Promise<void> {
  const fd = openSync(path, 'wx', 0o600);
  try {
    for await (const chunk of entry) {
      for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off, chunk.length - off);
    }
  } finally {
    closeSync(fd);
  }
}

/** An owner id of an entry: its pax record (ids over 262143 do not fit the ustar field) or the header's. */
function ownerId(pax: unknown, key: 'uid' | 'gid', header: number | undefined, what: string, entry: string): number {
  const rec = (pax as Record<string, string> | undefined)?.[key];
  if (rec === undefined) return header ?? 0;
  const id = /^[0-9]{1,10}$/.test(rec) ? Number(rec) : NaN;
  if (!(id <= 0xffffffff)) throw new BktError('INVALID_ARGUMENT', `${what}: entry "${entry}" has an invalid pax ${key} record "${rec}"`, { path: entry });
  return id;
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, (err, _out, stderr) =>
      err ? reject(new BktError('INTERNAL', `${cmd} ${args.join(' ')}: ${String(stderr).trim() || err.message}`)) : resolve(),
    ),
  );
}

/** Applies the layer tar `stream` onto the mounted tree `root`. */
export async function unpackLayer(root: string, stream: AsyncIterable<Uint8Array>, opts: UnpackOptions): Promise<void> {
  const { what } = opts;
  // tar-stream (and streamx) load with the first layer, not with @bkt/oci.
  const { default: tar } = await import('tar-stream');
  const extract = tar.extract();
  const feeding = pipeline(Readable.from(stream), extract);
  feeding.catch(() => undefined);

  /** Paths (relative, `/`-joined) this layer wrote: opaque markers and whiteouts leave them alone. */
  const written = new Set<string>();
  /** Directories' times, set last; by their parts under the root, as a later entry may have made a parent a symlink. */
  const dirTimes: { parts: string[]; mtime: Date }[] = [];
  let xattrWarned = false;

  for await (const entry of extract) {
    const h = entry.header;
    try {
      const parts = entryComponents(h.name, what);
      if (parts.length === 0) {
        // The root directory itself: take its metadata.
        if (h.type === 'directory') dirTimes.push({ parts: [], mtime: h.mtime ?? new Date(0) });
        continue;
      }
      const base = parts[parts.length - 1];
      const parentParts = resolveParts(root, parts.slice(0, -1), what, h.name);
      const parent = join(root, ...parentParts);
      const rel = [...parentParts, base].join('/');

      if (base === OPAQUE_MARKER) {
        if (!opts.base) await makeOpaque(root, parent, parentParts.join('/'), written, what, h.name);
        continue;
      }
      if (base.startsWith(AUFS_META_PREFIX)) continue;
      if (base.startsWith(WHITEOUT_PREFIX)) {
        const name = whiteoutTarget(base, what, h.name);
        const victim = [...parentParts, name].join('/');
        if (!opts.base && !written.has(victim)) await removeBelowRoot(root, join(parent, name), what, h.name);
        continue;
      }

      // Metadata calls are synchronous: an entry's few system calls cost less than as many trips to the thread pool.
      mkdirSync(parent, { recursive: true });
      const path = join(parent, base);
      const existing = lstatSyncOrNull(path);
      if (existing && !(existing.isDirectory() && h.type === 'directory')) await removeBelowRoot(root, path, what, h.name);
      written.add(rel);

      switch (h.type) {
        case 'directory':
          if (!existing?.isDirectory()) mkdirSync(path);
          break;
        case 'file':
        case 'contiguous-file':
          await writeBody(path, entry as AsyncIterable<Uint8Array>);
          break;
        case 'symlink':
          symlinkSync(h.linkname ?? '', path);
          break;
        case 'link': {
          const linkname = h.linkname ?? '';
          const outside = `it is a hard link to "${linkname}", which climbs out of the root with ".."`;
          const targetParts = entryComponents(linkname, what, h.name, outside);
          const targetParent = resolveParts(root, targetParts.slice(0, -1), what, h.name);
          const target = join(root, ...targetParent, ...targetParts.slice(-1));
          const st = lstatSyncOrNull(target);
          if (!st) throw new BktError('INVALID_ARGUMENT', `${what}: hard link "${h.name}" points to "${h.linkname}", which the layer does not hold`);
          if (st.isDirectory()) throw escapeError(what, h.name, `it is a hard link to the directory "${h.linkname}"`);
          linkSync(target, path);
          break;
        }
        case 'character-device':
          if ((h.devmajor ?? 0) === 0 && (h.devminor ?? 0) === 0) {
            written.delete(rel); // an overlay-style whiteout in a tar: a deletion, as containerd reads it
            continue;
          }
          await run('mknod', [path, 'c', String(h.devmajor ?? 0), String(h.devminor ?? 0)]);
          break;
        case 'block-device':
          await run('mknod', [path, 'b', String(h.devmajor ?? 0), String(h.devminor ?? 0)]);
          break;
        case 'fifo':
          await run('mknod', [path, 'p']);
          break;
        default:
          opts.warn?.(`${what}: skipped entry "${h.name}" of unsupported type ${h.type}`);
          written.delete(rel);
          continue;
      }
      if (h.type === 'link') continue; // shares the target's inode and metadata

      lchownSync(path, ownerId(h.pax, 'uid', h.uid, what, h.name), ownerId(h.pax, 'gid', h.gid, what, h.name));
      if (h.type !== 'symlink') chmodSync(path, (h.mode ?? 0o644) & 0o7777);
      const mtime = h.mtime ?? new Date(0);
      if (h.type === 'directory') dirTimes.push({ parts: [...parentParts, base], mtime });
      else lutimesSync(path, mtime, mtime);
      if (!xattrWarned && h.pax && Object.keys(h.pax).some((k) => k.startsWith('SCHILY.xattr.'))) {
        xattrWarned = true;
        opts.warn?.(`${what}: extended attributes (e.g. file capabilities) are not applied; first on "${h.name}"`);
      }
    } finally {
      entry.resume(); // drain what a handler did not read, so the next entry can come
    }
  }
  await feeding;
  // Directory times last: creating entries inside changed them. Only on what is still a directory reached through
  // directories: a later entry may have replaced one of them with a symlink (even to a path outside the root).
  const realDirs = new Set<string>(['']);
  const isRealDir = (parts: string[]): boolean => {
    const rel = parts.join('/');
    if (realDirs.has(rel)) return true;
    if (!isRealDir(parts.slice(0, -1)) || !lstatSyncOrNull(join(root, ...parts))?.isDirectory()) return false;
    realDirs.add(rel);
    return true;
  };
  // A directory the layer names twice takes its last entry's times, as tar and containerd apply it.
  const timed = new Set<string>();
  for (const d of dirTimes.reverse()) {
    const rel = d.parts.join('/');
    if (timed.has(rel)) continue;
    timed.add(rel);
    if (isRealDir(d.parts)) lutimesSync(join(root, ...d.parts), d.mtime, d.mtime);
  }
}

/**
 * Hides the lower layers' entries of `dir`. With nothing of this layer in it
 * yet, the directory is removed and made again (overlayfs marks it opaque);
 * otherwise each entry this layer did not write is removed.
 */
async function makeOpaque(root: string, dir: string, rel: string, written: Set<string>, what: string, entry: string): Promise<void> {
  const st = await lstatOrNull(dir);
  if (!st?.isDirectory()) return;
  const prefix = rel === '' ? '' : `${rel}/`;
  const hasOwn = [...written].some((p) => p.startsWith(prefix) && p !== rel);
  if (!hasOwn && rel !== '') {
    await removeBelowRoot(root, dir, what, entry);
    await mkdir(dir);
    await lchown(dir, st.uid, st.gid);
    await chmod(dir, st.mode & 0o7777);
    await utimes(dir, st.atime, st.mtime);
    return;
  }
  for (const name of await readdir(dir)) {
    const child = `${prefix}${name}`;
    const keep = [...written].some((p) => p === child || p.startsWith(`${child}/`));
    if (!keep) await removeBelowRoot(root, join(dir, name), what, entry);
  }
}
