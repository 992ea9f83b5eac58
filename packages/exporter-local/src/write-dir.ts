import { execFile } from 'node:child_process';
import { chmod, copyFile, constants, lchown, lstat, link, lutimes, mkdir, readlink, rm, stat, symlink, utimes } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BktError } from '@bkt/core';
import { inodeKey, walkSorted } from './tree.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;

/**
 * Lays the tree at `src` over the directory `dest`, as BuildKit's local
 * export (a merging receive) does: an entry of the tree replaces what `dest`
 * has at its path (a directory over a directory is kept and merged into);
 * nothing else in `dest` is touched, so files the tree lacks stay. Preserves
 * modes, owners (when running as root), symlinks (as symlinks, never
 * followed), hardlinks within the tree, device nodes, fifos and mtimes.
 * Entries are written parents first, and an existing symlink in the way is
 * replaced, never followed, so the tree cannot write outside `dest`.
 */
export async function copyTree(src: string, dest: string): Promise<void> {
  const linked = new Map<string, string>();
  const dirs: { path: string; stat: Stats }[] = [];
  for await (const entry of walkSorted(src)) {
    const target = join(dest, entry.rel);
    const st = entry.stat;
    await clearForMerge(target, st.isDirectory());
    if (st.isDirectory()) {
      await mkdir(target, { mode: 0o700, recursive: true });
      dirs.push({ path: target, stat: st });
      continue;
    }
    if (st.nlink > 1) {
      const first = linked.get(inodeKey(st));
      if (first) {
        await link(first, target);
        continue;
      }
      linked.set(inodeKey(st), target);
    }
    if (st.isSymbolicLink()) {
      await symlink(await readlink(entry.abs), target);
      await setOwner(target, st);
      await lutimes(target, st.atime, st.mtime);
      continue;
    }
    if (st.isFile()) {
      await copyFile(entry.abs, target, constants.COPYFILE_FICLONE);
    } else if (st.isFIFO() || st.isCharacterDevice() || st.isBlockDevice()) {
      await makeNode(target, st);
    } else {
      continue; // sockets cannot be copied; BuildKit skips them too
    }
    await setOwner(target, st);
    await chmod(target, st.mode & 0o7777);
    await utimes(target, st.atime, st.mtime);
  }
  // Directories last, deepest first: writing children changes a directory's mtime.
  for (const dir of dirs.reverse()) await setMetadata(dir.path, dir.stat);
}

/** Removes whatever is at `path` unless both it and the incoming entry are directories. */
async function clearForMerge(path: string, incomingIsDir: boolean): Promise<void> {
  try {
    const existing = await lstat(path);
    if (existing.isDirectory() && incomingIsDir) return;
    await rm(path, { recursive: true, force: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

async function setMetadata(path: string, st: Stats): Promise<void> {
  await setOwner(path, st);
  await chmod(path, st.mode & 0o7777);
  await utimes(path, st.atime, st.mtime);
}

async function setOwner(path: string, st: Stats): Promise<void> {
  if (isRoot) await lchown(path, st.uid, st.gid);
}

async function makeNode(path: string, st: Stats): Promise<void> {
  const mode = (st.mode & 0o7777).toString(8);
  if (st.isFIFO()) {
    await run('mkfifo', ['-m', mode, path]);
    return;
  }
  const type = st.isCharacterDevice() ? 'c' : 'b';
  // Linux dev_t encoding of major/minor numbers.
  const major = Number((BigInt(st.rdev) >> 8n) & 0xfffn);
  const minor = Number((BigInt(st.rdev) & 0xffn) | ((BigInt(st.rdev) >> 12n) & 0xfff00n));
  await run('mknod', ['-m', mode, path, type, String(major), String(minor)]);
}

/**
 * Makes sure `dest` is a directory to export into: creates it (and its
 * parents) when missing. Refuses `/` and a path that is not a directory.
 * Never removes anything.
 */
export async function ensureDestDir(dest: string): Promise<void> {
  if (dest === '/') {
    throw new BktError('INVALID_ARGUMENT', 'local exporter: refusing to write into "/" (attribute dest)', {
      attribute: 'dest',
    });
  }
  let st: Stats | undefined;
  try {
    st = await stat(dest);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (!st) {
    await mkdir(dest, { recursive: true });
    return;
  }
  if (!st.isDirectory()) {
    throw new BktError('INVALID_ARGUMENT', `local exporter: dest "${dest}" exists and is not a directory`, {
      attribute: 'dest',
      path: dest,
    });
  }
}
