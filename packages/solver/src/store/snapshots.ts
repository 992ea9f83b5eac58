/**
 * Snapshotters: the overlayfs one (default) and a plain-copy fallback, over
 * one on-disk layout:
 *
 *   snapshots/<id>/fs     the snapshot's tree: its own layer (overlay) or its full tree (copy)
 *   snapshots/<id>/work   overlay work dir of a mutable snapshot (removed on commit)
 *   snapshots/<id>/layer  copy snapshotter only: the own changes, whiteouts included
 *                         (also a base snapshot's raw layer when it holds whiteouts)
 *   snapshots/<id>/tree   overlay only: the tree of a base layer holding whiteouts
 *                         (the layer without them, hard-linked); views and children use it
 *   mounts/<name>         mount points of views and mutable snapshots
 *
 * A view (`mount()`) always shows a TREE: whiteouts are hidden, whatever the
 * layer. A base layer may hold whiteouts (a DiffOp result: deletions applied
 * to nothing), which overlayfs would list in a directory only that layer has
 * (readdir shows the 0/0 device, lstat says ENOENT). Hence the `tree` /
 * `layer` split above, and a merge drops the whiteouts of a stacked layer
 * that delete nothing below it.
 *
 * Crash safety: a snapshot's row is inserted in the metadata DB only after its
 * directory is complete; on open, every directory under `snapshots/` without a
 * row is a leftover and is removed (see `Store.open`).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, readlink, rename, rm, rmdir, link, utimes, lchown, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BktError,
  type Mounted,
  type MutableSnapshot,
  type Snapshot,
  type Snapshotter,
  type UsageRecord,
} from '@bkt/core';
import type { MetadataDB, SnapshotRow } from './metadata.js';
import {
  MAX_OVERLAY_LAYERS,
  MAX_OVERLAY_OPTIONS,
  copyTree,
  mkWhiteout,
  mountOverlay,
  overlayOptions,
  run,
  unmount,
} from './sys.js';

export type SnapshotterKind = 'overlay' | 'copy';

export interface PrepareOptions {
  description?: string;
  /** The UsageRecord type of the committed snapshot (default `regular`). */
  recordType?: string;
}

/** Snapshot ids are short so that long overlay lowerdir chains fit in one mount. */
function newId(): string {
  return randomBytes(6).toString('hex');
}

/** What both snapshotters share: records, reference counts (in use), and removal. */
export abstract class StoreSnapshotter implements Snapshotter {
  abstract readonly kind: SnapshotterKind;
  readonly snapshotsDir: string;
  readonly mountsDir: string;
  /** Reference counts of snapshots in use (mounted views, results held by running builds). */
  readonly #inUse = new Map<string, number>();
  /** Mutable snapshots not committed yet. */
  protected readonly active = new Map<string, { parent: string | null; description: string; createdAt: number }>();

  constructor(
    readonly root: string,
    protected readonly db: MetadataDB,
  ) {
    this.snapshotsDir = join(root, 'snapshots');
    this.mountsDir = join(root, 'mounts');
  }

  abstract prepare(parent: Snapshot | null, opts?: PrepareOptions): Promise<MutableSnapshot>;
  abstract merge(snapshots: Snapshot[]): Promise<Snapshot>;
  /** The directory `layerPath()` returns for a snapshot row. */
  protected abstract layerDir(row: SnapshotRow): string;
  protected abstract mountView(row: SnapshotRow): Promise<Mounted>;

  async get(id: string): Promise<Snapshot> {
    const row = this.db.getSnapshot(id);
    if (!row || !existsSync(this.fsDir(id))) {
      throw new BktError('NOT_FOUND', `snapshot ${id} is not in the store (${this.root})`, { snapshot: id });
    }
    return this.wrap(row);
  }

  /**
   * The committed snapshot `id`, marked in use in the same tick it is found
   * (so no prune can remove it in between); undefined when it is gone.
   */
  tryAcquire(id: string): Snapshot | undefined {
    const row = this.db.getSnapshot(id);
    if (!row || !existsSync(this.fsDir(id))) return undefined;
    this.acquire(id);
    return this.wrap(row);
  }

  /** Marks a snapshot in use: prune leaves it (and, through it, its parents) alone. */
  acquire(id: string): void {
    this.#inUse.set(id, (this.#inUse.get(id) ?? 0) + 1);
  }

  release(id: string): void {
    const n = (this.#inUse.get(id) ?? 0) - 1;
    if (n <= 0) this.#inUse.delete(id);
    else this.#inUse.set(id, n);
  }

  isInUse(id: string): boolean {
    return this.#inUse.has(id);
  }

  fsDir(id: string): string {
    return join(this.snapshotsDir, id, 'fs');
  }

  /** Ids from `id` down to its base layer. */
  chain(id: string): string[] {
    const ids: string[] = [];
    for (let cur: string | null = id; cur; ) {
      ids.push(cur);
      const row = this.db.getSnapshot(cur);
      if (!row) throw new BktError('NOT_FOUND', `snapshot ${cur} (in the chain of ${id}) is not in the store`, { snapshot: cur });
      cur = row.parent;
    }
    return ids;
  }

  /** Removes committed snapshots (children before parents): rows first, then directories. */
  async remove(ids: string[]): Promise<void> {
    this.db.deleteSnapshots(ids);
    for (const id of ids) await rm(join(this.snapshotsDir, id), { recursive: true, force: true });
  }

  /** Mutable snapshots being written right now, as usage records. */
  activeRecords(): UsageRecord[] {
    return [...this.active].map(([id, a]) => ({
      id,
      mutable: true,
      inUse: true,
      size: 0,
      createdAt: new Date(a.createdAt),
      usageCount: 0,
      description: a.description,
      recordType: 'regular',
      shared: false,
      parents: a.parent ? [a.parent] : [],
    }));
  }

  protected wrap(row: SnapshotRow): Snapshot {
    return {
      id: row.id,
      parent: row.parent,
      mount: () => this.#mountCounted(row),
      layerPath: () => this.layerDir(row),
    };
  }

  async #mountCounted(row: SnapshotRow): Promise<Mounted> {
    this.acquire(row.id);
    try {
      const m = await this.mountView(row);
      let released = false;
      return {
        path: m.path,
        release: async () => {
          if (released) return;
          released = true;
          await m.release();
          this.release(row.id);
        },
      };
    } catch (err) {
      this.release(row.id);
      throw err;
    }
  }

  /** Creates `snapshots/<id>/` and returns the id. */
  protected async newSnapshotDir(withWork: boolean): Promise<string> {
    const id = newId();
    const dir = join(this.snapshotsDir, id);
    await mkdir(join(dir, 'fs'), { recursive: true });
    if (withWork) await mkdir(join(dir, 'work'));
    return id;
  }

  /** Inserts the row of a complete snapshot directory: from now on it is visible. */
  protected record(id: string, parent: string | null, opts: PrepareOptions = {}): Snapshot {
    const row: SnapshotRow = {
      id,
      parent,
      description: opts.description ?? '',
      recordType: opts.recordType ?? 'regular',
      createdAt: Date.now(),
      lastUsedAt: null,
      usageCount: 0,
      size: null,
    };
    this.db.insertSnapshot(row);
    return this.wrap(row);
  }

  protected async newMountPoint(name = newId()): Promise<string> {
    const p = join(this.mountsDir, name);
    await mkdir(p, { recursive: true });
    return p;
  }
}

// ---------------------------------------------------------------------------
// overlayfs
// ---------------------------------------------------------------------------

/**
 * Each snapshot's `fs` is an overlay upper dir (its own changes); its tree is
 * the overlay of its chain's `fs` dirs. A chain too long for one mount is
 * flattened: the parent's tree is copied into a new base snapshot.
 */
export class OverlaySnapshotter extends StoreSnapshotter {
  readonly kind = 'overlay' as const;

  protected layerDir(row: SnapshotRow): string {
    return this.fsDir(row.id);
  }

  /** The directory overlay stacks for a layer: a base layer's `tree` when it has one (see the header), else `fs`. */
  lowerDir(id: string): string {
    const tree = join(this.snapshotsDir, id, 'tree');
    return existsSync(tree) ? tree : this.fsDir(id);
  }

  #lowers(id: string): string[] {
    return this.chain(id).map((l) => this.lowerDir(l));
  }

  protected async mountView(row: SnapshotRow): Promise<Mounted> {
    const lowers = this.#lowers(row.id);
    if (lowers.length === 1) return { path: lowers[0], release: async () => undefined };
    const target = await this.newMountPoint();
    try {
      await mountOverlay(target, lowers);
    } catch (err) {
      await rmdir(target).catch(() => undefined);
      throw err;
    }
    return { path: target, release: () => unmountAndRemove(target) };
  }

  /** True when a chain of these lower dirs plus an upper still mounts. */
  #fits(lowers: string[], withUpper: boolean): boolean {
    if (lowers.length + (withUpper ? 1 : 0) > MAX_OVERLAY_LAYERS) return false;
    const fake = withUpper ? { upper: this.fsDir('x'.repeat(12)), work: join(this.snapshotsDir, 'x'.repeat(12), 'work') } : undefined;
    return overlayOptions(lowers, fake).length <= MAX_OVERLAY_OPTIONS;
  }

  async prepare(parent: Snapshot | null, opts: PrepareOptions = {}): Promise<MutableSnapshot> {
    let parentId = parent?.id ?? null;
    if (parentId && !this.#fits(this.#lowers(parentId), true)) {
      parentId = (await this.flatten(parentId)).id;
    }
    const id = await this.newSnapshotDir(parentId !== null);
    const dir = join(this.snapshotsDir, id);
    this.active.set(id, { parent: parentId, description: opts.description ?? '', createdAt: Date.now() });
    let mountPoint: string | null = null;
    try {
      if (parentId) {
        mountPoint = await this.newMountPoint(id);
        await mountOverlay(mountPoint, this.#lowers(parentId), { upper: join(dir, 'fs'), work: join(dir, 'work') });
      }
    } catch (err) {
      if (mountPoint) await rmdir(mountPoint).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
      this.active.delete(id);
      throw err;
    }
    let done = false;
    const finish = async () => {
      if (done) throw new BktError('INTERNAL', `mutable snapshot ${id} was already committed or discarded`);
      done = true;
      if (mountPoint) await unmountAndRemove(mountPoint);
      this.active.delete(id);
    };
    return {
      id,
      path: mountPoint ?? join(dir, 'fs'),
      commit: async () => {
        await finish();
        try {
          await rm(join(dir, 'work'), { recursive: true, force: true });
          if (!parentId) {
            const whiteouts = await findWhiteouts(join(dir, 'fs'));
            if (whiteouts.length > 0) await linkTreeWithout(join(dir, 'fs'), join(dir, 'tree'), whiteouts);
          }
        } catch (err) {
          await rm(dir, { recursive: true, force: true });
          throw err;
        }
        return this.record(id, parentId, opts);
      },
      discard: async () => {
        if (done) return;
        await finish();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }

  /** A new base snapshot holding the full tree of `id`. */
  async flatten(id: string): Promise<Snapshot> {
    const row = this.db.getSnapshot(id);
    if (!row) throw new BktError('NOT_FOUND', `snapshot ${id} is not in the store`);
    const view = await this.mountView(row);
    const newId = await this.newSnapshotDir(false);
    try {
      await copyTree(view.path, this.fsDir(newId));
    } catch (err) {
      await rm(join(this.snapshotsDir, newId), { recursive: true, force: true });
      throw err;
    } finally {
      await view.release();
    }
    return this.record(newId, null, { description: `flattened ${id}`, recordType: 'internal' });
  }

  /**
   * Stacks the inputs' layers: the first input's chain is reused as is, every
   * layer of the following inputs is hard-linked (whiteouts and opaque
   * markers included) into a new snapshot on top. A whiteout deleting nothing
   * below is dropped (overlayfs would list it in a directory only that layer has).
   */
  async merge(snapshots: Snapshot[]): Promise<Snapshot> {
    if (snapshots.length === 0) {
      const id = await this.newSnapshotDir(false);
      return this.record(id, null, { description: 'merge (empty)' });
    }
    let top: string = snapshots[0].id;
    for (const s of snapshots.slice(1)) {
      for (const layer of this.chain(s.id).reverse()) {
        if (!this.#fits(this.#lowers(top), true)) top = (await this.flatten(top)).id;
        const id = await this.newSnapshotDir(false);
        try {
          await copyTree(this.fsDir(layer), this.fsDir(id), { hardlink: true });
          await this.#dropPointlessWhiteouts(this.fsDir(id), this.fsDir(layer), top);
        } catch (err) {
          await rm(join(this.snapshotsDir, id), { recursive: true, force: true });
          throw err;
        }
        top = this.record(id, top, { description: `merged layer ${layer}`, recordType: 'regular' }).id;
      }
    }
    return this.get(top);
  }

  /** Removes the whiteouts of `layer` (a copy of `source`) whose path the tree of snapshot `below` does not have. */
  async #dropPointlessWhiteouts(layer: string, source: string, below: string): Promise<void> {
    const whiteouts = await findWhiteouts(layer);
    if (whiteouts.length === 0) return;
    const view = await this.mountView(this.db.getSnapshot(below)!);
    const pointless: string[] = [];
    try {
      for (const rel of whiteouts) if (!(await lstat(join(view.path, rel)).catch(() => null))) pointless.push(rel);
    } finally {
      await view.release();
    }
    await removeKeepingTimes(layer, pointless, source);
  }
}

async function unmountAndRemove(target: string): Promise<void> {
  await unmount(target);
  await rmdir(target).catch(() => undefined);
}

// ---------------------------------------------------------------------------
// plain copy
// ---------------------------------------------------------------------------

/**
 * Each snapshot's `fs` is its full tree (a reflink/plain copy of the parent's,
 * then written to); on commit its own changes are computed into `layer/`
 * (changed entries hard-linked, deletions as 0/0 character-device whiteouts).
 */
export class CopySnapshotter extends StoreSnapshotter {
  readonly kind = 'copy' as const;

  /** A child's own changes; a base snapshot's raw layer when it held whiteouts, else its tree. */
  protected layerDir(row: SnapshotRow): string {
    const layer = join(this.snapshotsDir, row.id, 'layer');
    return row.parent || existsSync(layer) ? layer : this.fsDir(row.id);
  }

  protected async mountView(row: SnapshotRow): Promise<Mounted> {
    return { path: this.fsDir(row.id), release: async () => undefined };
  }

  async prepare(parent: Snapshot | null, opts: PrepareOptions = {}): Promise<MutableSnapshot> {
    const parentId = parent?.id ?? null;
    const id = await this.newSnapshotDir(false);
    const dir = join(this.snapshotsDir, id);
    this.active.set(id, { parent: parentId, description: opts.description ?? '', createdAt: Date.now() });
    try {
      if (parentId) await copyTree(this.fsDir(parentId), join(dir, 'fs'));
    } catch (err) {
      this.active.delete(id);
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    let done = false;
    const finish = () => {
      if (done) throw new BktError('INTERNAL', `mutable snapshot ${id} was already committed or discarded`);
      done = true;
      this.active.delete(id);
    };
    return {
      id,
      path: join(dir, 'fs'),
      commit: async () => {
        finish();
        try {
          if (parentId) {
            await mkdir(join(dir, 'layer'));
            await diffTrees(this.fsDir(parentId), join(dir, 'fs'), join(dir, 'layer'));
          } else {
            // A base written with whiteouts (a diff result): `layer` keeps it raw, `fs` is its tree.
            const whiteouts = await findWhiteouts(join(dir, 'fs'));
            if (whiteouts.length > 0) {
              await rename(join(dir, 'fs'), join(dir, 'layer'));
              await linkTreeWithout(join(dir, 'layer'), join(dir, 'fs'), whiteouts);
            }
          }
        } catch (err) {
          await rm(dir, { recursive: true, force: true });
          throw err;
        }
        return this.record(id, parentId, opts);
      },
      discard: async () => {
        if (done) return;
        finish();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }

  /** A new base snapshot: the first input's tree, then every layer of the others applied in order. */
  async merge(snapshots: Snapshot[]): Promise<Snapshot> {
    const id = await this.newSnapshotDir(false);
    const fs = this.fsDir(id);
    try {
      if (snapshots.length > 0) await copyTree(this.fsDir(snapshots[0].id), fs);
      for (const s of snapshots.slice(1)) {
        for (const layer of this.chain(s.id).reverse()) {
          const row = this.db.getSnapshot(layer)!;
          await applyLayer(this.layerDir(row), fs);
        }
      }
    } catch (err) {
      await rm(join(this.snapshotsDir, id), { recursive: true, force: true });
      throw err;
    }
    return this.record(id, null, { description: `merge of ${snapshots.map((s) => s.id).join(', ')}` });
  }
}

function isWhiteout(st: { isCharacterDevice(): boolean; rdev: number }): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

/** Paths (relative, `/`-separated) of the overlay whiteouts (0/0 character devices) under `dir`. */
export async function findWhiteouts(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (rel: string) => {
    for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(r);
      else if (e.isCharacterDevice() && isWhiteout(await lstat(join(dir, r)))) found.push(r);
    }
  };
  await walk('');
  return found;
}

/** Fills `dst` (created here) with hard links of `src`'s tree minus `whiteouts`, directory times kept. */
async function linkTreeWithout(src: string, dst: string, whiteouts: string[]): Promise<void> {
  await mkdir(dst);
  await copyTree(src, dst, { hardlink: true });
  await removeKeepingTimes(dst, whiteouts, src);
}

/**
 * Removes `rels` from `dir`, then gives their parent directories back the
 * times of the same directories in `timesFrom` (removal changed their mtime).
 */
async function removeKeepingTimes(dir: string, rels: string[], timesFrom: string): Promise<void> {
  if (rels.length === 0) return;
  for (const rel of rels) await rm(join(dir, rel), { force: true });
  const parents = [...new Set(rels.map(parentOf))];
  // touch -r copies both times with nanosecond precision; -h never follows a symlink.
  for (const p of parents) await run('touch', ['-h', '-c', '-r', join(timesFrom, p), join(dir, p)]);
}

/**
 * Applies an overlay-style layer onto a full tree: 0/0 character devices
 * delete the path, other entries replace what is there (directories merge).
 */
export async function applyLayer(layer: string, target: string): Promise<void> {
  const whiteouts: string[] = [];
  const prepare = async (rel: string) => {
    for (const name of await readdir(join(layer, rel))) {
      const r = join(rel, name);
      const src = await lstat(join(layer, r));
      const dst = await lstat(join(target, r)).catch(() => null);
      if (isWhiteout(src)) {
        whiteouts.push(r);
        if (dst) await rm(join(target, r), { recursive: true, force: true });
      } else if (dst && src.isDirectory() !== dst.isDirectory()) {
        await rm(join(target, r), { recursive: true, force: true });
      } else if (dst && !dst.isDirectory()) {
        await rm(join(target, r), { force: true });
      }
      if (src.isDirectory()) await prepare(r);
    }
  };
  await prepare('');
  await copyTree(layer, target);
  for (const r of whiteouts) await rm(join(target, r), { force: true });
}

/**
 * Writes into `layer` what turns tree `lower` into tree `upper`: new or changed
 * entries (hard-linked from `upper`, which must stay immutable), directories
 * on the way, and whiteouts for deletions. Entries compare by type, mode,
 * owner, size, mtime, link target and device number.
 */
export async function diffTrees(lower: string, upper: string, layer: string): Promise<void> {
  const createdDirs: string[] = [];
  const ensureDir = async (rel: string) => {
    if (rel === '' || existsSync(join(layer, rel))) return;
    await ensureDir(parentOf(rel));
    const st = await lstat(join(upper, rel));
    await mkdir(join(layer, rel));
    await lchown(join(layer, rel), st.uid, st.gid);
    await chmod(join(layer, rel), st.mode & 0o7777);
    createdDirs.push(rel);
  };
  const walk = async (rel: string) => {
    const upperNames = await readdir(join(upper, rel));
    const lowerNames = new Set(await readdir(join(lower, rel)).catch(() => [] as string[]));
    for (const name of lowerNames) {
      if (!upperNames.includes(name)) {
        await ensureDir(rel);
        await mkWhiteout(join(layer, rel, name));
      }
    }
    for (const name of upperNames) {
      const r = join(rel, name);
      const u = await lstat(join(upper, r));
      const l = lowerNames.has(name) ? await lstat(join(lower, r)) : null;
      if (u.isDirectory()) {
        const same =
          l && l.isDirectory() && l.mode === u.mode && l.uid === u.uid && l.gid === u.gid && l.mtimeMs === u.mtimeMs;
        if (!same) await ensureDir(r);
        if (l && l.isDirectory()) await walk(r);
        else await copyNewDir(r);
        continue;
      }
      let same =
        l !== null &&
        l.mode === u.mode &&
        l.uid === u.uid &&
        l.gid === u.gid &&
        l.size === u.size &&
        l.mtimeMs === u.mtimeMs &&
        l.rdev === u.rdev;
      if (same && u.isSymbolicLink()) same = (await readlink(join(lower, r))) === (await readlink(join(upper, r)));
      if (!same) {
        await ensureDir(rel);
        await link(join(upper, r), join(layer, r));
      }
    }
  };
  /** A directory absent from `lower`: everything under it is new. */
  const copyNewDir = async (rel: string) => {
    await ensureDir(rel);
    for (const name of await readdir(join(upper, rel))) {
      const r = join(rel, name);
      const u = await lstat(join(upper, r));
      if (u.isDirectory()) await copyNewDir(r);
      else await link(join(upper, r), join(layer, r));
    }
  };
  await walk('');
  // Directory mtimes last: adding entries above changed them.
  for (const rel of createdDirs.reverse()) {
    const st = await lstat(join(upper, rel));
    await utimes(join(layer, rel), st.atime, st.mtime);
  }
}

function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}
