/**
 * Linked copies: a copy action from a local context (a snapshot whose maker
 * knows its files' digests) into a fresh tree committed right after takes
 * files as hard links instead of copying their bytes, from two places:
 *
 * 1. The source file itself, when the copy would give it exactly what it
 *    has: its owner, mode, mtime and atime (no `--chown`, `--chmod` or
 *    timestamp that changes them). A local context's files are written by
 *    the local source and never written again once committed (a later sync
 *    is a new layer; a snapshot over it, an overlay or a copied tree), and
 *    the copy's result is committed at once too, so neither can be modified
 *    through the other; both have the xattrs the store gives a new file
 *    (the copier sets none). Only a source file with one link, or whose
 *    other links are this copy's earlier result (below) at the same
 *    destination path, is linked so: a hardlink inside the source is copied
 *    as the copier keeps it, and an inode is shared by one context file and
 *    the results of one copy action only.
 * 2. The earlier run of the same copy (same vertex, same action, another
 *    source content): the files it would write identically, from that
 *    earlier result (incremental copies, as below).
 *
 * A file is taken from the earlier result when all of these hold:
 * - the source file is, by device and inode, the very file the earlier copy
 *   read at the same source path (committed snapshots never change, so its
 *   bytes and metadata are the ones copied then): it is found in the layer
 *   directories of this source and of the earlier one;
 * - the earlier result's file at the same destination path is a regular file
 *   of this copy's owner, mode and size (owners by name may resolve anew);
 * - the source file has one link (hardlinks inside a source are copied as
 *   the copier keeps them).
 *
 * Either way:
 * - the copy resolved exactly one source path (several sources may write the
 *   same destination path), for an earlier result the one the earlier run
 *   resolved;
 * - the file goes into a directory this copy created (nothing of the
 *   destination's base is replaced);
 * - every directory above the earlier result's file, above the source file
 *   in the layer holding it, and above the link in the written tree is a real
 *   directory (not a symlink) of that tree: no path leaves its layer; and the
 *   link made is, by device and inode, the file checked, and has, once made,
 *   exactly the links seen when it was checked plus itself (copies reading
 *   the same context at once may all have seen one link: see `link`).
 * Links are made only once the copied tree is unmounted and before it is
 * committed; the action's result is then committed at once, so no later
 * action of the op writes through them.
 * Everything else is copied as always.
 *
 * The earlier result is remembered per (vertex, action, source lineage) in
 * the store's records (`file.copy`), with the source it read and the source
 * paths it resolved. A source's lineage is the bottom snapshot of its chain:
 * the local source layers each sync of a client directory over the last
 * one, so the syncs of one directory share it while two directories built
 * by the same Dockerfile (two clients of one daemon, two checkouts) do not,
 * and each takes files from its own earlier run instead of overwriting the
 * other's. At most `LINEAGES_PER_COPY` lineages are remembered per (vertex,
 * action) and `MAX_COPY_RECORDS` in all, the least recently written evicted
 * first. The record keeps the result alive, not the source (a prune may drop
 * the source: the next copy is then whole, as when the record is gone).
 */
import type { Stats } from 'node:fs';
import { closeSync, constants, fchmodSync, fchownSync, futimesSync, linkSync, lstatSync, openSync, readSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import type { BuildContext, RecordHold, RecordNamespace, Snapshot, StoreRecord } from '@bkt/core';
import { BktError } from '@bkt/core';

/** The namespace of the remembered copies. */
export const COPY_RECORDS = 'file.copy';
const RECORD_TYPE = 'regular';
/** At most this many copies are remembered per store. */
export const MAX_COPY_RECORDS = 32;
/** At most this many source lineages are remembered per (vertex, action). */
export const LINEAGES_PER_COPY = 4;

/** Owner, mode and times the copier gives a file (see `Copier`'s info). */
export interface CopiedInfo {
  uid: number;
  gid: number;
  perm: number;
  atime: number;
  mtime: number;
}

/**
 * One file to link: `from` (device `dev`, inode `ino` and link count `links`
 * when checked) to `to` (relative to the destination tree); `source` is the
 * real source file, copied when the link cannot be made or is not kept.
 */
export interface PendingLink {
  from: string;
  /** The snapshot whose layer holds `from`. */
  owner: string;
  dev: number;
  ino: number;
  links: number;
  to: string;
  source: string;
  info: CopiedInfo;
}

/** What names action `action` of the op of vertex `vertex` in its records (`data.copy`), whatever their lineage. */
function copyKey(vertex: string, action: number): string {
  return createHash('sha256').update(`${vertex}\0${action}`).digest('hex').slice(0, 32);
}

/** The record id of action `action` of the op of vertex `vertex` copying from a source of lineage `lineage` (see `lineageOf`). */
export function copyRecordId(vertex: string, action: number, lineage: string): string {
  return createHash('sha256').update(`${vertex}\0${action}\0${lineage}`).digest('hex').slice(0, 32);
}

/** `snapshot`'s chain, itself first, its bottom snapshot last. */
async function chainOf(snapshot: Snapshot, ctx: BuildContext): Promise<Snapshot[]> {
  const chain = [snapshot];
  for (let parent = snapshot.parent; parent !== null; ) {
    const p = await ctx.snapshotter.get(parent);
    chain.push(p);
    parent = p.parent;
  }
  return chain;
}

/** The lineage of a source snapshot: the id of its chain's bottom snapshot. */
export async function lineageOf(snapshot: Snapshot, ctx: BuildContext): Promise<string> {
  return (await chainOf(snapshot, ctx)).at(-1)!.id;
}

function lstatOrNull(p: string): Stats | null {
  try {
    return lstatSync(p, { throwIfNoEntry: false }) ?? null;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw err;
  }
}

/**
 * Which directories under `root` are real directories of it: a path's every
 * component (lstat'ed, never followed) a directory, not a symlink. `state`
 * says `dir`, `missing` (a component absent) or `blocked` (a component is
 * something else: a symlink, a file, a whiteout); answers are cached per
 * directory.
 */
class RealDirs {
  readonly #states = new Map<string, 'dir' | 'missing' | 'blocked'>();

  constructor(readonly root: string) {}

  /** The state of `rel` (relative, normalized; `.` is the root). */
  state(rel: string): 'dir' | 'missing' | 'blocked' {
    if (rel === '.' || rel === '') return 'dir';
    const known = this.#states.get(rel);
    if (known) return known;
    const up = this.state(path.dirname(rel));
    let s: 'dir' | 'missing' | 'blocked';
    if (up !== 'dir') s = up;
    else {
      const st = lstatOrNull(path.join(this.root, rel));
      s = !st ? 'missing' : st.isDirectory() ? 'dir' : 'blocked';
    }
    this.#states.set(rel, s);
    return s;
  }

  /** `root/rel` when every directory above it is a real directory of `root`, else null. */
  pathOf(rel: string): string | null {
    if (!isInside(rel)) return null;
    return this.state(path.dirname(rel)) === 'dir' ? path.join(this.root, rel) : null;
  }
}

/**
 * Whether relative path `rel` names an entry below its root (not the root,
 * nothing above it): names separated by single slashes, none of them `.` or
 * `..` (a normalized relative path, no trailing slash).
 */
function isInside(rel: string): boolean {
  let start = 0;
  for (let i = 0; i <= rel.length; i++) {
    if (i < rel.length && rel.charCodeAt(i) !== 0x2f) continue;
    const len = i - start;
    if (len === 0) return false; // empty: a leading, doubled or trailing slash, or the empty path
    if (len <= 2 && rel.charCodeAt(start) === 0x2e && (len === 1 || rel.charCodeAt(start + 1) === 0x2e)) return false; // `.` or `..`
    start = i + 1;
  }
  return true;
}

/** The layer directories of a chain (see `chainOf`), its top first. */
function layerDirs(chain: Snapshot[]): string[] {
  return chain.map((s) => s.layerPath());
}

/**
 * A chain of layer directories (top first) and lookups in it: the file
 * holding a path is in the first layer having an entry there. Which
 * directories a layer lacks is remembered, so a layer of a few changes costs
 * one lookup per directory, not per file.
 */
class Layers {
  readonly #trees: RealDirs[];

  constructor(readonly dirs: string[]) {
    this.#trees = dirs.map((d) => new RealDirs(d));
  }

  /**
   * The first layer (index) and file holding `rel`, or null. A layer whose
   * directories above `rel` are absent is passed over; one where one of them
   * is anything but a real directory (a symlink, a whiteout) hides `rel`: null.
   */
  find(rel: string): { layer: number; path: string; st: Stats } | null {
    if (!isInside(rel)) return null;
    const parent = path.dirname(rel);
    for (let i = 0; i < this.dirs.length; i++) {
      const state = this.#trees[i]!.state(parent);
      if (state === 'missing') continue;
      if (state === 'blocked') return null;
      const p = path.join(this.dirs[i]!, rel);
      const st = lstatOrNull(p);
      if (st) return { layer: i, path: p, st };
    }
    return null;
  }

  /** Whether `other` is the chain below one of this chain's layers (`other`'s layers are this one's last ones). */
  endsWith(other: Layers): boolean {
    const off = this.dirs.length - other.dirs.length;
    return off >= 0 && other.dirs.every((d, i) => this.dirs[off + i] === d);
  }
}

/** An earlier result of the copy: its source's layers, its own layer, and the source paths it resolved. */
interface EarlierRun {
  sourceLayers: Layers;
  /** The earlier result: its id and its own layer. */
  resultId: string;
  layer: string;
  sources: readonly string[];
  hold: RecordHold;
}

/**
 * What one copy action may link instead of copying (see the header): `match`
 * is asked per file by the copier, `link` makes the links into the written
 * tree.
 */
export class CopyReuse {
  readonly pending: PendingLink[] = [];
  /** Snapshots whose files `link` kept links to (their sizes alone changed: `Snapshotter.linkedFrom`). */
  readonly linkedFrom = new Set<string>();
  readonly #sourceOverPrevious: boolean;
  readonly #previous: RealDirs | undefined;
  /** Set by `useFor`: the copy resolved one source path. */
  #single = false;
  /** Set by `useFor`: the copy's resolved sources are the earlier run's (one path). */
  #enabled = false;

  private constructor(
    /** Where the source tree is mounted for the copy. */
    readonly sourceRoot: string,
    private readonly sourceLayers: Layers,
    private readonly earlier: EarlierRun | undefined,
    /** Whether the source's own files may be linked (see `forCopy`); the earlier result's may be either way. */
    private readonly linkSource = false,
    /** The ids of the source chain's snapshots, as `sourceLayers` (top first). */
    private readonly sourceIds: readonly string[] = [],
  ) {
    this.#sourceOverPrevious = earlier !== undefined && sourceLayers.endsWith(earlier.sourceLayers);
    this.#previous = earlier && new RealDirs(earlier.layer);
  }

  /**
   * Called by the copy with the source paths it resolved (wildcards
   * expanded), before it copies: files are matched only when that is one
   * path (for the earlier result, the same the earlier run resolved).
   */
  useFor(sources: readonly string[]): void {
    this.#single = sources.length === 1;
    this.#enabled = this.#single && this.earlier?.sources.length === 1 && sources[0] === this.earlier.sources[0];
  }

  /**
   * The reuse of the earlier run for a copy reading `source` (mounted at
   * `sourceRoot`) for action `action` of `ctx.vertex`, or undefined when
   * nothing was remembered (or what was is gone). The caller `release()`s it.
   */
  static async open(ctx: BuildContext, action: number, source: Snapshot, sourceRoot: string): Promise<CopyReuse | undefined> {
    if (!ctx.vertex || !ctx.records) return undefined;
    let chain: Snapshot[];
    try {
      chain = await chainOf(source, ctx);
    } catch {
      return undefined;
    }
    const earlier = await earlierRun(ctx, action, chain);
    return earlier && new CopyReuse(sourceRoot, new Layers(layerDirs(chain)), earlier);
  }

  /**
   * What a copy reading local context `source` (mounted at `sourceRoot`) for
   * action `action` of `ctx.vertex` may link: the earlier run's files when
   * one is remembered, and the source's own files. Undefined when the
   * source's chain cannot be read. The caller `release()`s it.
   *
   * The source's own files are linked only into a copy onto a base (`onto`)
   * whose chain holds no layer of the source's: a tree that shows the
   * context's file and its link would hold one inode at two paths, which a
   * local or tar output writes as a hard link (`FROM ctx` + `COPY --from=ctx
   * . /copy`). A copy onto scratch does not link them either: such a result
   * is merged into trees it cannot see (`COPY --link`).
   */
  static async forCopy(ctx: BuildContext, action: number, source: Snapshot, sourceRoot: string, onto: Snapshot | null): Promise<CopyReuse | undefined> {
    let chain: Snapshot[];
    let linkSource = false;
    try {
      chain = await chainOf(source, ctx);
      if (onto) {
        const sourceIds = new Set(chain.map((s) => s.id));
        linkSource = !(await chainOf(onto, ctx)).some((s) => sourceIds.has(s.id));
      }
    } catch {
      return undefined;
    }
    const earlier = ctx.vertex && ctx.records ? await earlierRun(ctx, action, chain) : undefined;
    return new CopyReuse(sourceRoot, new Layers(layerDirs(chain)), earlier, linkSource, chain.map((s) => s.id));
  }

  /**
   * Remembers `result`, made by this action from `source` (resolved to
   * source paths `sources`), for the next run from the same source lineage,
   * and forgets the least recently written copies beyond
   * `LINEAGES_PER_COPY` for this action and `MAX_COPY_RECORDS` in all (best
   * effort).
   */
  static async remember(ctx: BuildContext, action: number, source: Snapshot, sources: readonly string[], result: Snapshot): Promise<void> {
    if (!ctx.vertex || !ctx.records) return;
    const ns = ctx.records.namespace(COPY_RECORDS);
    try {
      const id = copyRecordId(ctx.vertex.digest, action, await lineageOf(source, ctx));
      const copy = copyKey(ctx.vertex.digest, action);
      await ns.put(id, {
        recordType: RECORD_TYPE,
        description: `earlier result of copy action ${action} of ${ctx.vertex.name}`,
        snapshots: [result.id],
        data: { copy, result: result.id, source: source.id, sources: JSON.stringify(sources) },
      });
      await ns.touch(id);
      await evictBeyond(ns, id, copy);
    } catch {
      // Remembering is an optimization: the build's result stands without it.
    }
  }

  /**
   * Whether the source file at `srcRel` (relative to `sourceRoot`; lstat
   * `st`, seen through the source mount) copied to `destRel` (relative to the
   * destination tree) with `info` can be a link: to the source file itself,
   * or to the earlier result's file; if so it is queued as a link and true
   * is returned.
   */
  match(srcRel: string, st: Stats, destRel: string, info: CopiedInfo): boolean {
    if (!this.#single || !st.isFile()) return false;
    const now = this.sourceLayers.find(srcRel);
    if (!now || !now.st.isFile() || now.st.ino !== st.ino || now.st.size !== st.size) return false;
    const from = this.#enabled ? this.#previous!.pathOf(destRel) : null;
    const prev = from ? lstatOrNull(from) : null;
    // The source file itself: one link, or its others are this copy's earlier results (the earlier result's file is it).
    if (this.linkSource && copiesAsIs(now.st, info) && (now.st.nlink === 1 || (prev && prev.dev === now.st.dev && prev.ino === now.st.ino))) {
      this.pending.push({ from: now.path, owner: this.sourceIds[now.layer] ?? '', dev: now.st.dev, ino: now.st.ino, links: now.st.nlink, to: destRel, source: now.path, info });
      return true;
    }
    if (!this.#enabled || st.nlink !== 1 || now.st.nlink !== 1) return false;
    if (this.#sourceOverPrevious) {
      // The earlier source is a chain this one stands on: the file is its very file when found in one of its layers (the layers above missed).
      if (now.layer < this.sourceLayers.dirs.length - this.earlier!.sourceLayers.dirs.length) return false;
    } else {
      const before = this.earlier!.sourceLayers.find(srcRel);
      if (!before || before.st.dev !== now.st.dev || before.st.ino !== now.st.ino) return false;
    }
    if (!from || !prev || !prev.isFile() || prev.dev !== now.st.dev || prev.size !== st.size) return false;
    if (prev.uid !== info.uid || prev.gid !== info.gid || (prev.mode & 0o7777) !== info.perm) return false;
    if (Math.floor(prev.mtimeMs / 1000) !== Math.floor(info.mtime)) return false;
    this.pending.push({ from, owner: this.earlier!.resultId, dev: prev.dev, ino: prev.ino, links: prev.nlink, to: destRel, source: now.path, info });
    return true;
  }

  /**
   * Makes the queued links under `destDir` (the written tree, unmounted);
   * a link that cannot be made (the earlier result pruned meanwhile), that
   * is not to the file checked, or that is not kept (below) is a copy of the
   * source file instead. The directories written into keep their times.
   *
   * Whether a link is kept is decided once it is made, not by `match`: other
   * copies may read the same context at the same time (two copy vertices of
   * one build, two processes or daemon clients on one store), and each may
   * have seen a file with one link before any of them linked it. A link is
   * kept only when, lstat'ed right after it is made, its inode has exactly
   * the links `match` saw plus those this call kept to it plus this one; any
   * other link made meanwhile, kept or not yet undone, means another copy
   * raced: the link is removed and the file copied. The links `match` saw do
   * not go away meanwhile (the source is mounted and the earlier result held
   * for the copy), and a kept link stays, so of two racers the one lstat'ing
   * last sees the other's link if that one is kept: both may fall back, at
   * most one keeps its link, and an inode is never shared by the results of
   * two copies (a merge of them, a walker of both, would take them for
   * hardlinks).
   */
  link(destDir: string): void {
    const tree = new RealDirs(destDir);
    const dirs = new Map<string, Stats>();
    const targets = this.pending.map((p) => {
      const target = tree.pathOf(p.to);
      // The copier made these directories itself: anything else is a broken invariant, not a miss.
      if (!target) throw new BktError('INTERNAL', `copy: "${p.to}" is not below real directories of the written tree`, { path: p.to });
      const d = path.dirname(target);
      if (!dirs.has(d)) dirs.set(d, lstatSync(d));
      return target;
    });
    /** Links kept by this call, by `dev:ino`. */
    const kept = new Map<string, number>();
    this.pending.forEach((p, i) => {
      const target = targets[i]!;
      let linked = false;
      try {
        linkSync(p.from, target);
        linked = true;
      } catch {
        // copied below
      }
      if (linked) {
        const key = `${p.dev}:${p.ino}`;
        const ours = kept.get(key) ?? 0;
        const st = lstatOrNull(target);
        if (st && st.dev === p.dev && st.ino === p.ino && st.nlink === p.links + ours + 1) {
          kept.set(key, ours + 1);
          if (p.owner) this.linkedFrom.add(p.owner);
          return;
        }
        if (st) unlinkSync(target);
      }
      copyWithInfo(p.source, target, p.info);
    });
    for (const [d, st] of dirs) utimesSync(d, st.atimeMs / 1000, st.mtimeMs / 1000);
  }

  async release(): Promise<void> {
    await this.earlier?.hold.release();
  }
}

/** The earlier run remembered for action `action` of `ctx.vertex` from a source of `chain`'s lineage, held; undefined when none is (or what was is gone). */
async function earlierRun(ctx: BuildContext, action: number, chain: Snapshot[]): Promise<EarlierRun | undefined> {
  if (!ctx.vertex || !ctx.records) return undefined;
  const ns = ctx.records.namespace(COPY_RECORDS);
  const id = copyRecordId(ctx.vertex.digest, action, chain.at(-1)!.id);
  const hold = await ns.hold(id);
  try {
    const rec = await ns.get(id);
    const result = rec?.data.result;
    const previousSource = rec?.data.source;
    const sources = parseSources(rec?.data.sources);
    if (!result || !previousSource || !sources) throw new Error('nothing to reuse');
    const [prevResult, prevSource] = await Promise.all([ctx.snapshotter.get(result), ctx.snapshotter.get(previousSource)]);
    await prevResult.materialize?.();
    await prevSource.materialize?.();
    return { sourceLayers: new Layers(layerDirs(await chainOf(prevSource, ctx))), resultId: prevResult.id, layer: prevResult.layerPath(), sources, hold };
  } catch {
    await hold.release();
    return undefined;
  }
}

/**
 * Whether the copier gives a copy of the file of lstat `st` exactly its
 * owner, mode and times (`info`): a link to it is then what the copy makes.
 */
function copiesAsIs(st: Stats, info: CopiedInfo): boolean {
  return info.uid === st.uid && info.gid === st.gid && info.perm === (st.mode & 0o7777) && info.mtime === st.mtimeMs / 1000 && info.atime === st.atimeMs / 1000;
}

/** The source paths of a record (`data.sources`), or null when absent or malformed. */
function parseSources(data: string | undefined): string[] | null {
  if (data === undefined) return null;
  try {
    const v: unknown = JSON.parse(data);
    return Array.isArray(v) && v.every((s) => typeof s === 'string') ? (v as string[]) : null;
  } catch {
    return null;
  }
}

/**
 * Removes the least recently written records of `ns` beyond
 * `LINEAGES_PER_COPY` of copy `copy` and beyond `MAX_COPY_RECORDS` in all
 * (never `keep`; a held one stays).
 */
async function evictBeyond(ns: RecordNamespace, keep: string, copy: string): Promise<void> {
  const all = await ns.list();
  const written = (r: StoreRecord) => (r.lastUsedAt ?? r.createdAt).getTime();
  const oldestFirst = (rs: StoreRecord[]) => rs.filter((r) => r.id !== keep).sort((a, b) => written(a) - written(b));
  const removed = new Set<string>();
  const remove = async (rs: StoreRecord[]) => {
    for (const r of rs) {
      removed.add(r.id);
      await ns.remove(r.id).catch(() => undefined);
    }
  };
  const same = all.filter((r) => r.data.copy === copy);
  if (same.length > LINEAGES_PER_COPY) await remove(oldestFirst(same).slice(0, same.length - LINEAGES_PER_COPY));
  const rest = all.filter((r) => !removed.has(r.id));
  if (rest.length > MAX_COPY_RECORDS) await remove(oldestFirst(rest).slice(0, rest.length - MAX_COPY_RECORDS));
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
