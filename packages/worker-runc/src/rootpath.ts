/**
 * Resolving container paths on the host without escaping the container's
 * root: symlinks met on the way are followed as the container would see them
 * (absolute targets restart at `root`, `..` stops at `root`).
 */
import { lstatSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { BktError } from '@bkt/core';

const MAX_LINKS = 255;

/**
 * The host path of container path `path` inside `root`. Missing components
 * are appended as they are; the result always lies within `root`.
 */
export function rootPath(root: string, path: string): string {
  let pending = splitPath(path);
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const host = join(root, ...resolved, part);
    let isLink = false;
    try {
      isLink = lstatSync(host).isSymbolicLink();
    } catch {
      // Missing (or unreadable): the rest is taken literally.
    }
    if (!isLink) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_LINKS) {
      throw new BktError('INVALID_ARGUMENT', `too many levels of symbolic links resolving ${path} in ${root}`, { path });
    }
    const target = readlinkSync(host);
    if (target.startsWith('/')) resolved.length = 0;
    pending = [...splitPath(target), ...pending];
  }
  return join(root, ...resolved);
}

/** `path`'s components without empty and `.` parts. */
function splitPath(path: string): string[] {
  return path.split('/').filter((p) => p !== '' && p !== '.');
}
