import { lstat, readdir } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join } from 'node:path';

/** One entry of a tree, as the exporters write it. */
export interface TreeEntry {
  /** Path relative to the tree's root, `/`-separated, no leading `./`. */
  rel: string;
  /** Absolute path on the host. */
  abs: string;
  stat: Stats;
}

/**
 * Walks `root` depth-first in byte order of names (a parent before its
 * children), without following symlinks. The root itself is not yielded.
 * The order is deterministic for a given tree, so tar output is reproducible.
 */
export async function* walkSorted(root: string, rel = ''): AsyncGenerator<TreeEntry> {
  const names = await readdir(rel ? join(root, rel) : root);
  names.sort(compareBytes);
  for (const name of names) {
    const childRel = rel ? `${rel}/${name}` : name;
    const abs = join(root, childRel);
    const stat = await lstat(abs);
    yield { rel: childRel, abs, stat };
    if (stat.isDirectory()) yield* walkSorted(root, childRel);
  }
}

/** Compares strings by their UTF-8 bytes (Go's and tar tools' order), not UTF-16 units. */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** The key under which hardlinked files are recognised: same device and inode. */
export function inodeKey(stat: Stats): string {
  return `${stat.dev}:${stat.ino}`;
}
