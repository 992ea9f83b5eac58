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
 *   snapshots/<id>/lazy.json  a lazy snapshot's layer (core's `LazyLayer`) while its tree is
 *                         not made: `fs` is empty until the first use fills it (see below)
 *   mounts/<session>/<name>  mount points of views and mutable snapshots, per session
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
 * row and without a live lease is a leftover and is removed (see `Store.open`).
 *
 * Lazy snapshots (`lazy()`, BuildKit's lazy refs): a committed snapshot whose
 * tree is made from a layer blob on first use — a view, a child prepared or
 * merged on it, `materialize()`. The tree is made as any layer is (a mutable
 * snapshot over the parent, the layer applied by the process's
 * `LayerApplier`, committed), then its directories are moved into the lazy
 * snapshot's: `fs` last, by rename(2) over the empty one, so of two processes
 * filling the same snapshot one wins and the other's work is dropped; then
 * `lazy.json` goes. A crash in between leaves a lazy snapshot (and a
 * leftover directory without a row, removed at the next open).
 *
 * A snapshot's own small directories (`fs`, `work`, its mount point) are
 * made, renamed and removed with synchronous calls: each is a moment's work a
 * step waits for, where an asynchronous call is a thread-pool round trip
 * that, on a busy machine, waits for a time slice. Trees of unbounded size
 * (a discarded or removed snapshot's files, copies, walks) stay asynchronous.
 *
 * In use: a snapshot held in this process (a mounted view, a build's result,
 * one being written) has a lease of this session in the metadata DB while its
 * count here is above zero, so a prune in any process leaves it alone. A new
 * snapshot's lease is taken before its directory is made.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmdirSync, rmSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, readlink, rm, link, utimes, lchown, chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BktError,
  type LayerApplier,
  type LazyLayer,
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
  /** Internal: the commit makes the tree of lazy snapshot `into` (no new row). */
  into?: string;
  /** The caller mounts the tree itself (core's `MutableSnapshot.deferredMount`); the copy snapshotter ignores it. */
  deferMount?: boolean;
  /** Internal: the row's creation time when not now (a lazy layer's `createdAt`). */
  createdAt?: Date;
}

/** The file holding a lazy snapshot's layer while its tree is not made. */
const LAZY_FILE = 'lazy.json';

/** Snapshot ids are short so that long overlay lowerdir chains fit in one mount. */
function newId(): string {
  return randomBytes(6).toString('hex');
}

/** Called with the id of every snapshot a scoped snapshotter creates, while it is still held (see `StoreSnapshotter.scoped`). */
type Holder = (id: string) => void;

/** A snapshotter whose new snapshots stay in use until `release()` (a build's scope). */
export interface ScopedSnapshotter {
  readonly snapshotter: Snapshotter;
  release(): void;
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
  /** Makes lazy snapshots' trees (`setLayerApplier`). */
  #applier: LayerApplier | undefined;
  /** Lazy snapshots being made into trees in this process, by id. */
  readonly #filling = new Map<string, Promise<void>>();

  /** Bumped by `sizeChanged`: a size measured across a bump is not remembered (`sizeGeneration`). */
  #sizeGeneration = 0;

  /** Forgets the measured sizes of `ids` (core's `Snapshotter.linkedFrom`): their files are now also another tree's. */
  linkedFrom(ids: readonly string[]): void {
    for (const id of new Set(ids)) this.sizeChanged(id);
  }

  /** Forgets `id`'s measured size: its tree, or what of it is its own, changed. */
  protected sizeChanged(id: string): void {
    this.#sizeGeneration++;
    this.db.setSize(id, null);
  }

  /** Changes whenever a size is forgotten (any snapshot's): a measure taken across a change is not remembered. */
  sizeGeneration(): number {
    return this.#sizeGeneration;
  }

  /** `session`: the id leases are taken under; mount points go to `mounts/<session>`. */
  constructor(
    readonly root: string,
    protected readonly db: MetadataDB,
    readonly session: string,
  ) {
    this.snapshotsDir = join(root, 'snapshots');
    this.mountsDir = join(root, 'mounts', session);
  }

  abstract prepare(parent: Snapshot | null, opts?: PrepareOptions, hold?: Holder): Promise<MutableSnapshot>;
  abstract merge(snapshots: Snapshot[], hold?: Holder): Promise<Snapshot>;

  /**
   * A view of this snapshotter for one build: every snapshot it creates
   * (committed or not) stays in use until `release()`, so no prune — in this
   * or another process — removes a result between its commit and the build
   * taking it.
   */
  scoped(): ScopedSnapshotter {
    const held: string[] = [];
    let released = false;
    // Once released (a build gone while a run it started still finishes for another), new snapshots are not kept.
    const hold: Holder = (id) => {
      if (released) return;
      this.acquire(id);
      held.push(id);
    };
    return {
      snapshotter: {
        get: (id) => this.get(id),
        prepare: (parent, opts) => this.prepare(parent, opts, hold),
        merge: (snapshots) => this.merge(snapshots, hold),
        lazy: (parent, layer, opts) => this.lazy(parent, layer, opts, hold),
        linkedFrom: (ids) => this.linkedFrom(ids),
      },
      release: () => {
        released = true;
        for (const id of held.splice(0)) this.release(id);
      },
    };
  }
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
    const n = this.#inUse.get(id) ?? 0;
    // The first hold here leases it, in one transaction with the row's check (a prune elsewhere may just have taken it).
    if (n === 0 && !this.db.leaseSnapshotIfPresent(this.session, id)) return undefined;
    this.#inUse.set(id, n + 1);
    return this.wrap(row);
  }

  /** Marks a snapshot in use: prune (in any process) leaves it (and, through it, its parents) alone. */
  acquire(id: string): void {
    const n = this.#inUse.get(id) ?? 0;
    if (n === 0) this.db.addLease(this.session, 'snapshot', id);
    this.#inUse.set(id, n + 1);
  }

  release(id: string): void {
    const n = (this.#inUse.get(id) ?? 0) - 1;
    if (n <= 0) {
      if (this.#inUse.delete(id)) this.db.removeLease(this.session, 'snapshot', id);
    } else this.#inUse.set(id, n);
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

  /** Removes committed snapshots (children before parents): rows first, then directories. For repair: no lease is asked. */
  async remove(ids: string[]): Promise<void> {
    this.db.deleteSnapshots(ids);
    for (const id of ids) await rm(join(this.snapshotsDir, id), { recursive: true, force: true });
  }

  /**
   * Removes those of `ids` (children first) no live session uses, no plugin
   * record references and no other snapshot stands on; returns their ids.
   * Rows go in one transaction (see `MetadataDB.deleteUnusedSnapshots`), then directories.
   */
  async removeUnused(ids: string[], isLive: (session: string) => boolean): Promise<string[]> {
    const removed = this.db.deleteUnusedSnapshots(ids, isLive);
    for (const id of removed) await rm(join(this.snapshotsDir, id), { recursive: true, force: true });
    return removed;
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
      createdAt: new Date(row.createdAt),
      mount: () => this.#mountCounted(row),
      layerPath: () => this.layerDir(row),
      materialize: () => this.materialize(row.id),
    };
  }

  /** How this process makes lazy snapshots' trees; without one, using a lazy snapshot's tree is an error naming it. */
  setLayerApplier(applier: LayerApplier): void {
    this.#applier = applier;
  }

  /** A lazy snapshot over `parent` (see the header and core's `Snapshotter.lazy`). */
  async lazy(parent: Snapshot | null, layer: LazyLayer, opts: PrepareOptions = {}, hold?: Holder): Promise<Snapshot> {
    const parentId = parent ? await this.lazyParent(parent.id, hold) : null;
    const id = await this.newSnapshotDir(false, hold);
    try {
      await writeFile(join(this.snapshotsDir, id, LAZY_FILE), JSON.stringify({ blob: layer.blob, diffId: layer.diffId, what: layer.what }));
    } catch (err) {
      await this.abandon(id);
      throw err;
    }
    const createdAt = layer.createdAt && !Number.isNaN(layer.createdAt.getTime()) && layer.createdAt.getTime() <= Date.now() ? layer.createdAt : undefined;
    return this.recordNew(id, parentId, { description: opts.description ?? `lazy ${layer.what}`, recordType: opts.recordType, ...(createdAt ? { createdAt } : {}) });
  }

  /** The parent a lazy snapshot over `id` stands on (the overlay snapshotter flattens a chain too long to mount). */
  protected async lazyParent(id: string, _hold?: Holder): Promise<string> {
    return id;
  }

  /** Whether snapshot `id`'s tree is still to be made. */
  isLazy(id: string): boolean {
    return existsSync(join(this.snapshotsDir, id, LAZY_FILE));
  }

  /** Makes the trees of the lazy snapshots of `id`'s chain, base first (a no-op when none is lazy). */
  async materialize(id: string): Promise<void> {
    const lazy = this.chain(id).filter((l) => this.isLazy(l));
    for (const l of lazy.reverse()) await this.#fill(l);
  }

  #fill(id: string): Promise<void> {
    let p = this.#filling.get(id);
    if (!p) {
      p = this.#makeTree(id).finally(() => this.#filling.delete(id));
      this.#filling.set(id, p);
    }
    return p;
  }

  async #makeTree(id: string): Promise<void> {
    const file = join(this.snapshotsDir, id, LAZY_FILE);
    const text = await readFile(file, 'utf8').catch(() => undefined);
    if (text === undefined) return; // made meanwhile (by another process)
    const layer = JSON.parse(text) as LazyLayer;
    if (!this.#applier) {
      throw new BktError('UNIMPLEMENTED', `snapshot ${id} is lazy (its tree is made from ${layer.what} on first use), and this process has no layer applier`, { snapshot: id });
    }
    const row = this.db.getSnapshot(id);
    if (!row) throw new BktError('NOT_FOUND', `snapshot ${id} is not in the store (${this.root})`, { snapshot: id });
    this.acquire(id);
    try {
      const parent = row.parent ? await this.get(row.parent) : null;
      const m = await this.prepare(parent, { description: `tree of lazy snapshot ${id}`, into: id });
      try {
        await this.#applier(m.path, layer, { base: parent === null });
      } catch (err) {
        await m.discard();
        throw err;
      }
      await m.commit();
    } finally {
      this.release(id);
    }
  }

  /**
   * Moves the directories of new snapshot `from` (committed, no row) into
   * lazy snapshot `into`: `fs` last, replacing the empty one; a directory
   * another process moved there first is kept. Then `into` is no longer lazy.
   */
  protected async adopt(from: string, into: string): Promise<Snapshot> {
    const src = join(this.snapshotsDir, from);
    const dst = join(this.snapshotsDir, into);
    try {
      for (const name of ['tree', 'layer', 'fs']) {
        if (!existsSync(join(src, name))) continue;
        try {
          renameSync(join(src, name), join(dst, name));
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
        }
      }
      rmSync(join(dst, LAZY_FILE), { force: true });
    } finally {
      await this.abandon(from);
    }
    // A lazy snapshot measured before its tree was made held no files.
    this.sizeChanged(into);
    const row = this.db.getSnapshot(into);
    if (!row) throw new BktError('NOT_FOUND', `snapshot ${into} is not in the store (${this.root})`, { snapshot: into });
    return this.wrap(row);
  }

  /** Commits new snapshot `id`: records it, or (`opts.into`) makes it the tree of a lazy snapshot. */
  protected async committed(id: string, parent: string | null, opts: PrepareOptions): Promise<Snapshot> {
    return opts.into ? this.adopt(id, opts.into) : this.recordNew(id, parent, opts);
  }

  async #mountCounted(row: SnapshotRow): Promise<Mounted> {
    this.acquire(row.id);
    try {
      await this.materialize(row.id);
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

  /**
   * Creates `snapshots/<id>/` and returns the id, held (leased before the
   * directory exists); the caller releases it once recorded or removed.
   * `hold` (a scope) takes its own hold meanwhile.
   */
  protected async newSnapshotDir(withWork: boolean, hold?: Holder): Promise<string> {
    const id = newId();
    this.acquire(id);
    hold?.(id);
    const dir = join(this.snapshotsDir, id);
    try {
      mkdirSync(dir, { recursive: true });
      mkdirSync(join(dir, 'fs'));
      if (withWork) mkdirSync(join(dir, 'work'));
    } catch (err) {
      this.release(id);
      throw err;
    }
    return id;
  }

  /** Removes a new snapshot's directory (never recorded) and drops its hold. */
  protected async abandon(id: string): Promise<void> {
    await rm(join(this.snapshotsDir, id), { recursive: true, force: true });
    this.release(id);
  }

  /** Records a new snapshot (see `newSnapshotDir`) and drops the hold `newSnapshotDir` took. */
  protected recordNew(id: string, parent: string | null, opts: PrepareOptions = {}): Snapshot {
    try {
      return this.record(id, parent, opts);
    } finally {
      this.release(id);
    }
  }

  /** Inserts the row of a complete snapshot directory: from now on it is visible. */
  protected record(id: string, parent: string | null, opts: PrepareOptions = {}): Snapshot {
    const row: SnapshotRow = {
      id,
      parent,
      description: opts.description ?? '',
      recordType: opts.recordType ?? 'regular',
      createdAt: opts.createdAt?.getTime() ?? Date.now(),
      // Dated where it was made (an imported cache's layer): used now, so a keepDuration prune does not take it as old.
      lastUsedAt: opts.createdAt ? Date.now() : null,
      usageCount: 0,
      size: null,
    };
    this.db.insertSnapshot(row);
    return this.wrap(row);
  }

  protected newMountPoint(name = newId()): string {
    const p = join(this.mountsDir, name);
    mkdirSync(p, { recursive: true });
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
    const target = this.newMountPoint();
    try {
      await mountOverlay(target, lowers);
    } catch (err) {
      removeEmptyDir(target);
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

  protected async lazyParent(id: string, hold?: Holder): Promise<string> {
    if (this.#fits(this.#lowers(id), true)) return id;
    await this.materialize(id);
    return (await this.flatten(id, hold)).id;
  }

  async prepare(parent: Snapshot | null, opts: PrepareOptions = {}, hold?: Holder): Promise<MutableSnapshot> {
    if (parent) await this.materialize(parent.id);
    let parentId = parent?.id ?? null;
    // The parent's chain is final once materialized: its lower dirs are found once.
    let lowers = parentId ? this.#lowers(parentId) : [];
    if (parentId && !this.#fits(lowers, true)) {
      parentId = (await this.flatten(parentId, hold)).id;
      lowers = this.#lowers(parentId);
    }
    const id = await this.newSnapshotDir(parentId !== null, hold);
    const dir = join(this.snapshotsDir, id);
    this.active.set(id, { parent: parentId, description: opts.description ?? '', createdAt: Date.now() });
    let mountPoint: string | null = null;
    const layers = { upper: join(dir, 'fs'), work: join(dir, 'work') };
    const deferred = parentId && opts.deferMount ? { type: 'overlay', source: 'overlay', options: overlayOptions(lowers, layers) } : undefined;
    try {
      if (parentId) {
        mountPoint = this.newMountPoint(id);
        if (!deferred) await mountOverlay(mountPoint, lowers, layers);
      }
    } catch (err) {
      if (mountPoint) removeEmptyDir(mountPoint);
      this.active.delete(id);
      await this.abandon(id);
      throw err;
    }
    let done = false;
    const finish = async () => {
      if (done) throw new BktError('INTERNAL', `mutable snapshot ${id} was already committed or discarded`);
      done = true;
      // A deferred mount is the caller's to drop: its directory is empty then (rmdir fails on a mount point left mounted here).
      if (mountPoint && !(deferred && removeEmptyDir(mountPoint))) await unmountAndRemove(mountPoint);
      this.active.delete(id);
    };
    return {
      id,
      path: mountPoint ?? join(dir, 'fs'),
      ...(deferred ? { deferredMount: deferred } : {}),
      commit: async () => {
        await finish();
        try {
          removeWorkDir(join(dir, 'work'));
          if (!parentId) {
            const whiteouts = await findWhiteouts(join(dir, 'fs'));
            if (whiteouts.length > 0) await linkTreeWithout(join(dir, 'fs'), join(dir, 'tree'), whiteouts);
          }
        } catch (err) {
          await this.abandon(id);
          throw err;
        }
        return this.committed(id, parentId, opts);
      },
      discard: async () => {
        if (done) return;
        await finish();
        await this.abandon(id);
      },
    };
  }

  /** A new base snapshot holding the full tree of `id`. */
  async flatten(id: string, hold?: Holder): Promise<Snapshot> {
    const row = this.db.getSnapshot(id);
    if (!row) throw new BktError('NOT_FOUND', `snapshot ${id} is not in the store`);
    const view = await this.mountView(row);
    let newId: string;
    try {
      newId = await this.newSnapshotDir(false, hold);
    } catch (err) {
      await view.release();
      throw err;
    }
    try {
      await copyTree(view.path, this.fsDir(newId));
    } catch (err) {
      await this.abandon(newId);
      throw err;
    } finally {
      await view.release();
    }
    return this.recordNew(newId, null, { description: `flattened ${id}`, recordType: 'internal' });
  }

  /**
   * Stacks the inputs' layers: the first input's chain is reused as is, every
   * layer of the following inputs is hard-linked (whiteouts and opaque
   * markers included) into a new snapshot on top. A whiteout deleting nothing
   * below is dropped (overlayfs would list it in a directory only that layer has).
   */
  async merge(snapshots: Snapshot[], hold?: Holder): Promise<Snapshot> {
    for (const s of snapshots) await this.materialize(s.id);
    if (snapshots.length === 0) {
      const id = await this.newSnapshotDir(false, hold);
      return this.recordNew(id, null, { description: 'merge (empty)' });
    }
    // Each new layer is held until the next one stands on it (a child keeps its parent), the top until returned.
    let top: string = snapshots[0].id;
    let heldTop: string | null = null;
    const advance = (next: string) => {
      if (heldTop) this.release(heldTop);
      top = heldTop = next;
    };
    try {
      for (const s of snapshots.slice(1)) {
        for (const layer of this.chain(s.id).reverse()) {
          if (!this.#fits(this.#lowers(top), true)) {
            const flat = await this.flatten(top, hold);
            this.acquire(flat.id);
            advance(flat.id);
          }
          const id = await this.newSnapshotDir(false, hold);
          try {
            await copyTree(this.fsDir(layer), this.fsDir(id), { hardlink: true });
            this.linkedFrom([layer]);
            await this.#dropPointlessWhiteouts(this.fsDir(id), this.fsDir(layer), top);
          } catch (err) {
            await this.abandon(id);
            throw err;
          }
          this.record(id, top, { description: `merged layer ${layer}`, recordType: 'regular' });
          advance(id);
        }
      }
      return await this.get(top);
    } finally {
      if (heldTop) this.release(heldTop);
    }
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
  removeEmptyDir(target);
}

/**
 * Removes an unmounted overlay's work dir: it holds only the kernel's empty
 * `work` dir, unless overlay left more (an `index`, files of an interrupted
 * copy-up), which the recursive removal takes.
 */
function removeWorkDir(work: string): void {
  try {
    rmdirSync(join(work, 'work'));
    rmdirSync(work);
  } catch {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Removes directory `path` if it is empty and no mount point; whether it is gone. */
function removeEmptyDir(path: string): boolean {
  try {
    rmdirSync(path);
    return true;
  } catch {
    return false;
  }
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

  async prepare(parent: Snapshot | null, opts: PrepareOptions = {}, hold?: Holder): Promise<MutableSnapshot> {
    if (parent) await this.materialize(parent.id);
    const parentId = parent?.id ?? null;
    const id = await this.newSnapshotDir(false, hold);
    const dir = join(this.snapshotsDir, id);
    this.active.set(id, { parent: parentId, description: opts.description ?? '', createdAt: Date.now() });
    try {
      if (parentId) await copyTree(this.fsDir(parentId), join(dir, 'fs'));
    } catch (err) {
      this.active.delete(id);
      await this.abandon(id);
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
            mkdirSync(join(dir, 'layer'));
            await diffTrees(this.fsDir(parentId), join(dir, 'fs'), join(dir, 'layer'));
          } else {
            // A base written with whiteouts (a diff result): `layer` keeps it raw, `fs` is its tree.
            const whiteouts = await findWhiteouts(join(dir, 'fs'));
            if (whiteouts.length > 0) {
              renameSync(join(dir, 'fs'), join(dir, 'layer'));
              await linkTreeWithout(join(dir, 'layer'), join(dir, 'fs'), whiteouts);
            }
          }
        } catch (err) {
          await this.abandon(id);
          throw err;
        }
        return this.committed(id, parentId, opts);
      },
      discard: async () => {
        if (done) return;
        finish();
        await this.abandon(id);
      },
    };
  }

  /** A new base snapshot: the first input's tree, then every layer of the others applied in order. */
  async merge(snapshots: Snapshot[], hold?: Holder): Promise<Snapshot> {
    for (const s of snapshots) await this.materialize(s.id);
    const id = await this.newSnapshotDir(false, hold);
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
      await this.abandon(id);
      throw err;
    }
    return this.recordNew(id, null, { description: `merge of ${snapshots.map((s) => s.id).join(', ')}` });
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
