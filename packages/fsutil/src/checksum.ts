/**
 * Content checksums of a selection of a tree: the slow cache key BuildKit
 * computes for copy sources. Per entry it covers the path, the mode (file type
 * and permission bits), uid, gid, the size and sha256 of a regular file's
 * content, a symlink's target and a device's numbers; never timestamps, never
 * a directory's on-disk size. Deterministic: the same selection of the same
 * tree gives the same digest on any filesystem.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, createReadStream, openSync, readlinkSync, readSync, type Stats } from 'node:fs';
import { lstat, readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { BktError, Pacer, type ContentSelector, type Digest } from '@bkt/core';
import { resolveWildcards } from './glob.js';
import { resolveRelInRoot } from './resolve.js';
import { walk } from './walk.js';

/** Files up to this size are read in one call; larger ones are streamed. */
const SMALL_FILE = 1 << 20;
/** Large files hashed concurrently. */
const CONCURRENCY = 4;

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

/**
 * One record line of an entry; `content` is the file's sha256 for regular
 * files: from `known` when it has the file, else read here when it is
 * small (synchronously, through `buffer`). Undefined for a large file whose
 * content is not known: `record` streams it.
 */
function recordSync(item: Item, known: KnownDigests | undefined, buffer: () => Buffer): string | undefined {
  const st = item.stat;
  const fields = [item.name, (st.mode >>> 0).toString(8), String(st.uid), String(st.gid)];
  if (st.isFile()) {
    const digest = known?.digests.get(path.relative(known.root, item.absPath).split(path.sep).join('/'));
    if (digest?.startsWith('sha256:')) fields.push(String(st.size), digest.slice(7));
    else if (st.size <= SMALL_FILE) fields.push(String(st.size), hashSmallFileSync(item.absPath, buffer()));
    else return undefined;
  } else if (st.isSymbolicLink()) {
    fields.push(readlinkSync(item.absPath));
  } else if (st.isCharacterDevice() || st.isBlockDevice()) {
    fields.push(String(st.rdev));
  }
  return fields.join('\0') + '\n';
}

/** The record line of a large regular file, its content streamed. */
async function record(item: Item): Promise<string> {
  const st = item.stat;
  return [item.name, (st.mode >>> 0).toString(8), String(st.uid), String(st.gid), String(st.size), await hashFile(item.absPath)].join('\0') + '\n';
}

/** sha256 (hex) of a file read to its end through `buf`, never through a final symlink. */
function hashSmallFileSync(absPath: string, buf: Buffer): string {
  const h = createHash('sha256');
  const fd = openSync(absPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

/**
 * The record lines of `items`, in order: entries whose record needs no
 * large read with synchronous calls (paced: the event loop gets a turn
 * every few ms, and `signal` stops it), large files streamed a few at once.
 */
async function records(items: Item[], known: KnownDigests | undefined, signal?: AbortSignal): Promise<string[]> {
  const out = new Array<string | undefined>(items.length);
  const pacer = new Pacer(signal);
  let buf: Buffer | undefined;
  const buffer = () => (buf ??= Buffer.allocUnsafe(SMALL_FILE));
  const large: number[] = [];
  for (let i = 0; i < items.length; i++) {
    if (pacer.due()) await pacer.pause();
    out[i] = recordSync(items[i]!, known, buffer);
    if (out[i] === undefined) large.push(i);
  }
  let next = 0;
  const worker = async () => {
    while (next < large.length) {
      signal?.throwIfAborted();
      const i = large[next++]!;
      out[i] = await record(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, large.length) }, worker));
  return out as string[];
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
  const lines = await records(items, known, opts.signal);
  const h = createHash('sha256');
  for (const r of lines) h.update(r);
  return `sha256:${h.digest('hex')}`;
}
