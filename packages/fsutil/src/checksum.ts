/**
 * Content checksums of a selection of a tree: the slow cache key BuildKit
 * computes for copy sources. Per entry it covers the path, the mode (file type
 * and permission bits), uid, gid, the size and sha256 of a regular file's
 * content, a symlink's target and a device's numbers; never timestamps, never
 * a directory's on-disk size. Deterministic: the same selection of the same
 * tree gives the same digest on any filesystem.
 */
import { createHash } from 'node:crypto';
import { createReadStream, type Stats } from 'node:fs';
import { lstat, readFile, readlink } from 'node:fs/promises';
import * as path from 'node:path';
import { BktError, type ContentSelector, type Digest } from '@bkt/core';
import { resolveWildcards } from './glob.js';
import { resolveRelInRoot } from './resolve.js';
import { walk } from './walk.js';

/** Files up to this size are read in one call; larger ones are streamed. */
const SMALL_FILE = 1 << 20;
/** Files hashed concurrently. */
const CONCURRENCY = 8;

/** sha256 of a file's bytes, hex. */
export async function hashFile(absPath: string): Promise<string> {
  const h = createHash('sha256');
  const st = await lstat(absPath);
  if (st.size <= SMALL_FILE) {
    h.update(await readFile(absPath));
  } else {
    for await (const chunk of createReadStream(absPath, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  }
  return h.digest('hex');
}

interface Item {
  /** Path of the entry in the checksum record. */
  name: string;
  absPath: string;
  stat: Stats;
}

/** One record line of an entry; `content` is the file's sha256 for regular files (from `known` when it has the file). */
async function record(item: Item, known: KnownDigests | undefined): Promise<string> {
  const st = item.stat;
  const fields = [item.name, (st.mode >>> 0).toString(8), String(st.uid), String(st.gid)];
  if (st.isFile()) {
    const digest = known?.digests.get(path.relative(known.root, item.absPath).split(path.sep).join('/'));
    fields.push(String(st.size), digest?.startsWith('sha256:') ? digest.slice(7) : await hashFile(item.absPath));
  } else if (st.isSymbolicLink()) {
    fields.push(await readlink(item.absPath));
  } else if (st.isCharacterDevice() || st.isBlockDevice()) {
    fields.push(String(st.rdev));
  }
  return fields.join('\0') + '\n';
}

/** Runs `fn` over `items` with bounded concurrency, keeping the order of results. */
async function mapOrdered<T, R>(items: T[], fn: (t: T) => Promise<R>, signal?: AbortSignal): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      signal?.throwIfAborted();
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, items.length) }, worker));
  return out;
}

interface KnownDigests {
  root: string;
  digests: ReadonlyMap<string, Digest>;
}

export interface ChecksumOptions {
  signal?: AbortSignal;
  /**
   * Content digests of files of the tree already known (a snapshot's
   * `contentDigests()`), by path relative to `root`: used instead of reading
   * those files. They must be the files' true digests.
   */
  knownDigests?: ReadonlyMap<string, Digest>;
}

/**
 * The checksum of the content `selector` selects in the tree at `root`.
 * The selector's path is resolved inside the root (see `resolveInRoot`).
 * A missing non-wildcard path is a `BktError('NOT_FOUND')`; a wildcard
 * matching nothing gives the digest of the empty selection.
 */
export async function checksum(root: string, selector: ContentSelector, opts: ChecksumOptions = {}): Promise<Digest> {
  const rootAbs = path.resolve(root);
  const known = opts.knownDigests && opts.knownDigests.size > 0 ? { root: rootAbs, digests: opts.knownDigests } : undefined;
  const follow = selector.followLinks === true;
  let matches: string[];
  if (selector.wildcard) {
    matches = await resolveWildcards(rootAbs, selector.path, { followLinks: follow });
  } else {
    matches = [selector.path];
  }
  const items: Item[] = [];
  for (const match of matches) {
    const rel = await resolveRelInRoot(rootAbs, match, { followFinalSymlink: follow });
    const abs = rel === '' ? rootAbs : path.join(rootAbs, rel);
    let st: Stats;
    try {
      st = await lstat(abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') {
        throw new BktError('NOT_FOUND', `"${selector.path}" not found`, { path: selector.path });
      }
      throw err;
    }
    // The match's own name matters for wildcards (which entries were selected).
    const label = selector.wildcard ? '/' + match.replace(/^\/+/, '') : '.';
    items.push({ name: label, absPath: abs, stat: st });
    if (st.isDirectory()) {
      for await (const e of walk(abs, {
        include: selector.includePatterns,
        exclude: selector.excludePatterns,
        signal: opts.signal,
      })) {
        items.push({ name: `${label}/${e.path}`, absPath: e.absPath, stat: e.stat });
      }
    }
  }
  const records = await mapOrdered(items, (item) => record(item, known), opts.signal);
  const h = createHash('sha256');
  for (const r of records) h.update(r);
  return `sha256:${h.digest('hex')}`;
}
