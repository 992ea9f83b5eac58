/**
 * Mount stubs: the empty directories and files runc creates in a writable
 * root filesystem as mount points (and /etc/hosts, /etc/resolv.conf). They
 * are not part of what the step made, so they are removed before the root
 * becomes the step's layer, as BuildKit's `MountStubsCleaner` does:
 * only paths that did not exist before the run, only when still empty; with
 * `recursive`, also the missing parent directories created for them.
 *
 * The step may have replaced a parent of a stub with a symlink (`/etc -> /`),
 * which the host would follow out of the root (BuildKit's CVE-2024-23652). So
 * a stub is touched only while every directory between the root and it is
 * still a real directory: then its host path is what `rootPath` gives now,
 * and nothing outside the root is removed or has its times changed. The
 * container has exited by then, so nothing changes the tree under us.
 */
import { lstatSync, readdirSync, rmSync, rmdirSync, statSync, utimesSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { rootPath } from './rootpath.js';

/**
 * Records the missing mount points under `rootfs` now; the returned function
 * removes their stubs. Undefined when none is missing: nothing to remove.
 */
export function recordMountStubs(rootfs: string, dests: string[], recursive: boolean): (() => void) | undefined {
  const paths: string[] = [];
  for (const dest of ['/etc/resolv.conf', '/etc/hosts', ...dests]) {
    if (dest === '/' || dest === '') continue;
    let p = rootPath(rootfs, dest);
    while (p !== rootfs && !exists(p)) {
      paths.push(p);
      if (!recursive) break;
      p = dirname(p);
    }
  }
  if (paths.length === 0) return undefined;
  return () => {
    for (const p of paths) {
      if (!parentsAreDirectories(rootfs, p)) continue;
      let st;
      try {
        st = lstatSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory() ? readdirSync(p).length > 0 : !st.isFile() || st.size > 0) continue;
      // The parent's times are kept, so that the layer does not change because of the stub.
      const parent = dirname(p);
      const pst = statSync(parent);
      if (st.isDirectory()) rmdirSync(p);
      else rmSync(p);
      utimesSync(parent, pst.atime, pst.mtime);
    }
  };
}

/** Whether every component of `path` below `rootfs`, except the last, is a directory (not a symlink to one). */
function parentsAreDirectories(rootfs: string, path: string): boolean {
  const parts = relative(rootfs, path).split(sep);
  if (parts.length === 0 || parts[0] === '..' || parts[0] === '') return false;
  let dir = rootfs;
  for (const part of parts.slice(0, -1)) {
    dir = join(dir, part);
    try {
      if (!lstatSync(dir).isDirectory()) return false;
    } catch {
      return false;
    }
  }
  return true;
}

function exists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}
