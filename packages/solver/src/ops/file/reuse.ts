/**
 * Incremental copies: a copy action from a local context (a snapshot whose
 * maker knows its files' digests) whose op ran before (same vertex, same
 * action, another source content) takes the files it would write
 * identically from that earlier result, as hard links, instead of copying
 * their bytes again.
 *
 * A file is taken when all of these hold:
 * - the source file is, by device and inode, the very file the earlier copy
 *   read at the same source path (committed snapshots never change, so its
 *   bytes and metadata are the ones copied then): it is found in the layer
 *   directories of this source and of the earlier one;
 * - the earlier result's file at the same destination path is a regular file
 *   of this copy's owner, mode and size (owners by name may resolve anew);
 * - the source file has one link (hardlinks inside a source are copied as
 *   the copier keeps them) and goes into a directory this copy created
 *   (nothing of the destination's base is replaced).
 * Everything else is copied as always. Links are made only once the copied
 * tree is unmounted and before it is committed; the action's result is then
 * committed at once, so no later action of the op writes through them.
 *
 * The earlier result is remembered per (vertex, action) in the store's
 * records (`file.copy`), with the source it read; the record keeps both
 * snapshots until the next run replaces it, and a prune may drop it (the next
 * copy is then whole again).
 */
import type { Stats } from 'node:fs';
import { closeSync, constants, fchmodSync, fchownSync, futimesSync, linkSync, lstatSync, openSync, readSync, utimesSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import type { BuildContext, RecordHold, Snapshot } from '@bkt/core';

/** The namespace of the remembered copies. */
export const COPY_RECORDS = 'file.copy';
const RECORD_TYPE = 'regular';

/** Owner, mode and times the copier gives a file (see `Copier`'s info). */
export interface CopiedInfo {
  uid: number;
  gid: number;
  perm: number;
  atime: number;
  mtime: number;
}

/** One file to link: `from` (the earlier result's) to `to` (relative to the destination tree); `source` is the real source file, copied when the link cannot be made. */
export interface PendingLink {
  from: string;
  to: string;
  source: string;
  info: CopiedInfo;
}

/** The record id of action `action` of the op of vertex `vertex`. */
export function copyRecordId(vertex: string, action: number): string {
  return createHash('sha256').update(`${vertex}\0${action}`).digest('hex').slice(0, 32);
}

function lstatOrNull(p: string): Stats | null {
  try {
    return lstatSync(p, { throwIfNoEntry: false }) ?? null;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw err;
  }
}

/** The layer directories of `snapshot`'s chain, its own first. */
async function layerDirs(snapshot: Snapshot, ctx: BuildContext): Promise<string[]> {
  const dirs = [snapshot.layerPath()];
  for (let parent = snapshot.parent; parent !== null; ) {
    const p = await ctx.snapshotter.get(parent);
    dirs.push(p.layerPath());
    parent = p.parent;
  }
  return dirs;
}

/**
 * A chain of layer directories (top first) and lookups in it: the file
 * holding a path is in the first layer having an entry there. Which
 * directories a layer lacks is remembered, so a layer of a few changes costs
 * one lookup per directory, not per file.
 */
class Layers {
  readonly #missingDirs: Set<string>[];

  constructor(readonly dirs: string[]) {
    this.#missingDirs = dirs.map(() => new Set());
  }

  /** The first layer (index) and file holding `rel`, or null. */
  find(rel: string): { layer: number; path: string; st: Stats } | null {
    const parent = path.dirname(rel);
    for (let i = 0; i < this.dirs.length; i++) {
      const missing = this.#missingDirs[i]!;
      if (parent !== '.' && missing.has(parent)) continue;
      const p = path.join(this.dirs[i]!, rel);
      const st = lstatOrNull(p);
      if (st) return { layer: i, path: p, st };
      if (parent !== '.' && !lstatOrNull(path.join(this.dirs[i]!, parent))?.isDirectory()) missing.add(parent);
    }
    return null;
  }

  /** Whether `other` is the chain below one of this chain's layers (`other`'s layers are this one's last ones). */
  endsWith(other: Layers): boolean {
    const off = this.dirs.length - other.dirs.length;
    return off >= 0 && other.dirs.every((d, i) => this.dirs[off + i] === d);
  }
}

/**
 * What one copy action may take from its earlier run; `match` is asked per
 * file by the copier, `link` makes the links into the written tree.
 */
export class CopyReuse {
  readonly pending: PendingLink[] = [];
  readonly #sourceOverPrevious: boolean;

  private constructor(
    /** Where the source tree is mounted for the copy. */
    readonly sourceRoot: string,
    private readonly sourceLayers: Layers,
    private readonly previousSourceLayers: Layers,
    /** The earlier result's own layer (the files its copy wrote). */
    private readonly previousLayer: string,
    private readonly hold: RecordHold,
  ) {
    this.#sourceOverPrevious = sourceLayers.endsWith(previousSourceLayers);
  }

  /**
   * The reuse for a copy reading `source` (mounted at `sourceRoot`) for
   * action `action` of `ctx.vertex`, or undefined when nothing was
   * remembered (or what was is gone). The caller `release()`s it.
   */
  static async open(ctx: BuildContext, action: number, source: Snapshot, sourceRoot: string): Promise<CopyReuse | undefined> {
    if (!ctx.vertex || !ctx.records) return undefined;
    const ns = ctx.records.namespace(COPY_RECORDS);
    const id = copyRecordId(ctx.vertex.digest, action);
    const hold = await ns.hold(id);
    try {
      const rec = await ns.get(id);
      const result = rec?.data.result;
      const previousSource = rec?.data.source;
      if (!result || !previousSource) throw new Error('nothing to reuse');
      const [prevResult, prevSource] = await Promise.all([ctx.snapshotter.get(result), ctx.snapshotter.get(previousSource)]);
      await prevResult.materialize?.();
      await prevSource.materialize?.();
      return new CopyReuse(sourceRoot, new Layers(await layerDirs(source, ctx)), new Layers(await layerDirs(prevSource, ctx)), prevResult.layerPath(), hold);
    } catch {
      await hold.release();
      return undefined;
    }
  }

  /** Remembers `result`, made by this action from `source`, for the next run (best effort). */
  static async remember(ctx: BuildContext, action: number, source: Snapshot, result: Snapshot): Promise<void> {
    if (!ctx.vertex || !ctx.records) return;
    const ns = ctx.records.namespace(COPY_RECORDS);
    await ns
      .put(copyRecordId(ctx.vertex.digest, action), {
        recordType: RECORD_TYPE,
        description: `earlier result of copy action ${action} of ${ctx.vertex.name}`,
        snapshots: [result.id, source.id],
        data: { result: result.id, source: source.id },
      })
      .catch(() => undefined);
  }

  /**
   * Whether source file `src` (lstat `st`, seen through the source mount)
   * copied to `destRel` with `info` is the earlier result's file; if so it
   * is queued as a link and true is returned.
   */
  match(src: string, st: Stats, destRel: string, info: CopiedInfo): boolean {
    if (!st.isFile() || st.nlink !== 1) return false;
    const rel = path.relative(this.sourceRoot, src);
    if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) return false;
    const now = this.sourceLayers.find(rel);
    if (!now || !now.st.isFile() || now.st.ino !== st.ino || now.st.size !== st.size || now.st.nlink !== 1) return false;
    if (this.#sourceOverPrevious) {
      // The earlier source is a chain this one stands on: the file is its very file when found in one of its layers (the layers above missed).
      if (now.layer < this.sourceLayers.dirs.length - this.previousSourceLayers.dirs.length) return false;
    } else {
      const before = this.previousSourceLayers.find(rel);
      if (!before || before.st.dev !== now.st.dev || before.st.ino !== now.st.ino) return false;
    }
    const from = path.join(this.previousLayer, destRel);
    const prev = lstatOrNull(from);
    if (!prev || !prev.isFile() || prev.dev !== now.st.dev || prev.size !== st.size) return false;
    if (prev.uid !== info.uid || prev.gid !== info.gid || (prev.mode & 0o7777) !== info.perm) return false;
    if (Math.floor(prev.mtimeMs / 1000) !== Math.floor(info.mtime)) return false;
    this.pending.push({ from, to: destRel, source: now.path, info });
    return true;
  }

  /**
   * Makes the queued links under `destDir` (the written tree, unmounted);
   * a link that cannot be made (the earlier result pruned meanwhile) is a
   * copy of the source file instead. The directories written into keep
   * their times.
   */
  link(destDir: string): void {
    const dirs = new Map<string, Stats>();
    for (const p of this.pending) {
      const d = path.dirname(path.join(destDir, p.to));
      if (!dirs.has(d)) dirs.set(d, lstatSync(d));
    }
    for (const p of this.pending) {
      const target = path.join(destDir, p.to);
      try {
        linkSync(p.from, target);
      } catch {
        copyWithInfo(p.source, target, p.info);
      }
    }
    for (const [d, st] of dirs) utimesSync(d, st.atimeMs / 1000, st.mtimeMs / 1000);
  }

  async release(): Promise<void> {
    await this.hold.release();
  }
}

/** Copies regular file `src` to new file `target` with the copier's owner, mode and times. */
function copyWithInfo(src: string, target: string, info: CopiedInfo): void {
  const input = openSync(src, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const output = openSync(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      const buf = Buffer.allocUnsafe(1 << 20);
      for (;;) {
        const n = readSync(input, buf, 0, buf.length, null);
        if (n === 0) break;
        for (let off = 0; off < n; ) off += writeSync(output, buf, off, n - off);
      }
      fchownSync(output, info.uid, info.gid);
      fchmodSync(output, info.perm);
      futimesSync(output, info.atime, info.mtime);
    } finally {
      closeSync(output);
    }
  } finally {
    closeSync(input);
  }
}
