/**
 * The store under one root:
 *
 *   <root>/metadata.db           snapshot, cache, blob-reference and build records (SQLite, WAL)
 *   <root>/content/blobs/sha256  content-addressed blobs
 *   <root>/snapshots/<id>/       snapshot directories
 *   <root>/mounts/               mount points (all unmounted when the store opens)
 *   <root>/empty/                an empty read-only directory (scratch as a FileOp copy source)
 *   <root>/lock                  pid of the process that has the store open (created exclusively)
 *
 * Opening repairs what a crash (kill -9 at any instant) can leave behind:
 * stale mounts, partial blobs, snapshot directories without a record, records
 * without a directory (and the cache records pointing at them), builds
 * recorded as running (marked `interrupted`).
 */
import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BktError, type Digest, type UsageRecord } from '@bkt/core';
import { FileContentStore, type BlobInfo } from './content.js';
import { BuildHistory, type HistoryLimits } from './history.js';
import { MetadataDB, type SnapshotRow } from './metadata.js';
import { CopySnapshotter, OverlaySnapshotter, type SnapshotterKind, type StoreSnapshotter } from './snapshots.js';
import { takeLock } from './lock.js';
import { mountOverlay, mountsUnder, unmount } from './sys.js';

export interface StorePruneOptions {
  all?: boolean;
  keepDuration?: number;
  keepStorage?: number;
}

/** Record types a prune without `all` keeps (as `buildctl prune` keeps internal and frontend references). */
const KEPT_WITHOUT_ALL = new Set(['internal', 'frontend']);

/** The `recordType` of content-store blobs in `diskUsage` and `prune` results. */
export const CONTENT_RECORD_TYPE = 'content';

/** What one prune round may remove: a leaf snapshot or an unreferenced blob. */
type PruneCandidate = { kind: 'snapshot'; row: SnapshotRow; lastUsed: number } | { kind: 'blob'; blob: BlobInfo; lastUsed: number };

/** Roots open in this process: a second open of one root would repair (delete) the first's work in progress. */
const openRoots = new Set<string>();

export class Store {
  private constructor(
    readonly root: string,
    readonly db: MetadataDB,
    readonly content: FileContentStore,
    readonly snapshotter: StoreSnapshotter,
    readonly history: BuildHistory,
  ) {}

  static async open(rootArg: string, want: 'auto' | SnapshotterKind = 'auto', opts: { history?: HistoryLimits } = {}): Promise<Store> {
    const root = resolve(rootArg);
    if (openRoots.has(root)) throw new BktError('INVALID_ARGUMENT', `store ${root} is already open in this process`);
    await mkdir(root, { recursive: true });
    takeLock(root);
    openRoots.add(root);
    try {
      for (const m of await mountsUnder(root)) await unmount(m);
      await rm(join(root, 'mounts'), { recursive: true, force: true });
      await mkdir(join(root, 'mounts'));
      await mkdir(join(root, 'snapshots'), { recursive: true });
      const db = new MetadataDB(join(root, 'metadata.db'));
      try {
        const content = new FileContentStore(join(root, 'content'), db);
        await content.init();
        const kind = await chooseSnapshotter(root, db, want);
        const snapshotter = kind === 'overlay' ? new OverlaySnapshotter(root, db) : new CopySnapshotter(root, db);
        await reconcileSnapshots(snapshotter, db);
        db.interruptBuilds();
        return new Store(root, db, content, snapshotter, new BuildHistory(db, opts.history));
      } catch (err) {
        db.close();
        throw err;
      }
    } catch (err) {
      openRoots.delete(root);
      await rm(join(root, 'lock'), { force: true });
      throw err;
    }
  }

  /**
   * One record per committed snapshot, per mutable snapshot being written, and
   * per content-store blob (`recordType: 'content'`, id = digest; its
   * description names what references it).
   */
  async diskUsage(): Promise<UsageRecord[]> {
    const records: UsageRecord[] = [];
    for (const row of this.db.listSnapshots()) records.push(await this.#usage(row));
    records.push(...this.snapshotter.activeRecords());
    for (const blob of await this.content.list()) records.push(this.#blobUsage(blob));
    return records;
  }

  /**
   * Removes snapshots not in use, leaves first (a parent goes once its children
   * are gone), and content-store blobs nothing references (no snapshot, no
   * named owner), least recently used first. Cache records and blob references
   * of a removed snapshot go with it, so its blobs may go in the same prune.
   * Without `all`, `internal` and `frontend` snapshots stay.
   * `keepDuration` keeps records used (or created) within that many ms;
   * `keepStorage` stops once snapshots and blobs total at most that many bytes.
   */
  async prune(opts: StorePruneOptions = {}): Promise<UsageRecord[]> {
    const removed: UsageRecord[] = [];
    const now = Date.now();
    const kept = (lastUsed: number) => opts.keepDuration !== undefined && lastUsed >= now - opts.keepDuration;
    let total = Infinity;
    if (opts.keepStorage !== undefined) {
      total = 0;
      for (const row of this.db.listSnapshots()) total += (await this.#usage(row)).size;
      for (const blob of await this.content.list()) total += blob.size;
    }
    for (;;) {
      const rows = this.db.listSnapshots();
      const parents = new Set(rows.map((r) => r.parent).filter((p): p is string => p !== null));
      const referenced = this.db.referencedBlobs();
      const candidates: PruneCandidate[] = [
        ...rows
          .filter((r) => !parents.has(r.id) && !this.snapshotter.isInUse(r.id))
          .filter((r) => opts.all || !KEPT_WITHOUT_ALL.has(r.recordType))
          .map((row) => ({ kind: 'snapshot' as const, row, lastUsed: row.lastUsedAt ?? row.createdAt })),
        ...(await this.content.list())
          .filter((b) => !referenced.has(b.digest))
          .map((blob) => ({ kind: 'blob' as const, blob, lastUsed: blob.createdAt.getTime() })),
      ]
        .filter((c) => !kept(c.lastUsed))
        .sort((a, b) => a.lastUsed - b.lastUsed);
      const snapshots: SnapshotRow[] = [];
      const blobs: Digest[] = [];
      for (const c of candidates) {
        if (opts.keepStorage !== undefined && total <= opts.keepStorage) break;
        if (c.kind === 'blob') {
          blobs.push(c.blob.digest);
          removed.push(this.#blobUsage(c.blob));
          total -= c.blob.size;
          continue;
        }
        const usage = await this.#usage(c.row);
        // Re-check after the await: a build may have started using it.
        if (this.snapshotter.isInUse(c.row.id)) continue;
        snapshots.push(c.row);
        removed.push(usage);
        total -= usage.size;
      }
      if (snapshots.length === 0 && blobs.length === 0) break;
      await this.snapshotter.remove(snapshots.map((r) => r.id));
      for (const d of blobs) await this.content.remove(d);
    }
    return removed;
  }

  /**
   * Unmounts everything under the root (views never released, mutable
   * snapshots never committed) and releases the store. Throws `INTERNAL`
   * naming any mount that could not be removed.
   */
  async close(): Promise<void> {
    for (const m of await mountsUnder(this.root)) await unmount(m);
    const left = await mountsUnder(this.root);
    this.db.close();
    await rm(join(this.root, 'lock'), { force: true });
    openRoots.delete(this.root);
    if (left.length > 0) {
      throw new BktError('INTERNAL', `closing store ${this.root}: could not unmount ${left.join(', ')}`);
    }
  }

  #blobUsage(blob: BlobInfo): UsageRecord {
    const refs = this.db.blobRefs({ digest: blob.digest });
    const owners = refs.map((r) => ('snapshot' in r.owner ? `snapshot ${r.owner.snapshot}` : r.owner.name));
    // Prune never takes a named blob, nor one whose snapshot is in use.
    const inUse = refs.some((r) => ('name' in r.owner ? true : this.snapshotter.isInUse(r.owner.snapshot)));
    return {
      id: blob.digest,
      mutable: false,
      inUse,
      size: blob.size,
      createdAt: blob.createdAt,
      usageCount: 0,
      description: owners.length > 0 ? `content blob, used by ${owners.join(', ')}` : 'content blob, unreferenced',
      recordType: CONTENT_RECORD_TYPE,
      shared: false,
      parents: [],
    };
  }

  async #usage(row: SnapshotRow): Promise<UsageRecord> {
    let size = row.size;
    if (size === null) {
      size = await diskSize(this.snapshotter.snapshotsDir, row.id);
      this.db.setSize(row.id, size);
    }
    return {
      id: row.id,
      mutable: false,
      inUse: this.snapshotter.isInUse(row.id),
      size,
      createdAt: new Date(row.createdAt),
      lastUsedAt: row.lastUsedAt === null ? undefined : new Date(row.lastUsedAt),
      usageCount: row.usageCount,
      description: row.description,
      recordType: row.recordType,
      shared: false,
      parents: row.parent ? [row.parent] : [],
    };
  }
}

/** Tests only: forget that `root` is open (simulates the process that opened it having died). */
export function __resetOpenRoots(root: string): void {
  openRoots.delete(resolve(root));
}

/** The snapshotter a store uses is fixed at creation (its snapshot dirs differ in meaning). */
async function chooseSnapshotter(root: string, db: MetadataDB, want: 'auto' | SnapshotterKind): Promise<SnapshotterKind> {
  const stored = db.getMeta('snapshotter') as SnapshotterKind | undefined;
  if (stored) {
    if (want !== 'auto' && want !== stored) {
      throw new BktError('INVALID_ARGUMENT', `store ${root} was created with the ${stored} snapshotter, not ${want}`, {
        attribute: 'snapshotter',
      });
    }
    return stored;
  }
  const kind = want === 'auto' ? ((await overlayWorks(root)) ? 'overlay' : 'copy') : want;
  db.setMeta('snapshotter', kind);
  return kind;
}

/** Tries one overlay mount under the root (the filesystem and privileges decide). */
async function overlayWorks(root: string): Promise<boolean> {
  const probe = join(root, 'mounts', 'probe');
  const dirs = ['lower', 'upper', 'work', 'merged'].map((d) => join(probe, d));
  for (const d of dirs) await mkdir(d, { recursive: true });
  try {
    await mountOverlay(dirs[3], [dirs[0]], { upper: dirs[1], work: dirs[2] });
    await unmount(dirs[3]);
    return true;
  } catch {
    return false;
  } finally {
    await rm(probe, { recursive: true, force: true });
  }
}

/** Makes directories and rows agree: removes unrecorded dirs, and records (with descendants) whose dir is gone. */
async function reconcileSnapshots(snapshotter: StoreSnapshotter, db: MetadataDB): Promise<void> {
  const rows = db.listSnapshots();
  const recorded = new Set(rows.map((r) => r.id));
  for (const name of await readdir(snapshotter.snapshotsDir)) {
    if (!recorded.has(name)) await rm(join(snapshotter.snapshotsDir, name), { recursive: true, force: true });
  }
  const broken = new Set(rows.filter((r) => !existsSync(snapshotter.fsDir(r.id))).map((r) => r.id));
  if (broken.size === 0) return;
  // A child of a broken snapshot is broken too.
  let grew = true;
  while (grew) {
    grew = false;
    for (const r of rows) {
      if (r.parent && broken.has(r.parent) && !broken.has(r.id)) {
        broken.add(r.id);
        grew = true;
      }
    }
  }
  // Children before parents. A snapshot's depth is its number of ancestors
  // (a parent without a row counts, its own parent does not); computed by
  // walking up iteratively, remembering each depth, so long chains are cheap.
  const parentOf = new Map(rows.map((r) => [r.id, r.parent]));
  const depths = new Map<string, number>();
  const depth = (id: string): number => {
    const path: string[] = [];
    let known = -1;
    for (let cur: string | null = id; cur !== null; cur = parentOf.get(cur) ?? null) {
      const d = depths.get(cur);
      if (d !== undefined) {
        known = d;
        break;
      }
      path.push(cur);
    }
    for (let i = path.length - 1; i >= 0; i--) depths.set(path[i], ++known);
    return depths.get(id)!;
  };
  await snapshotter.remove([...broken].sort((a, b) => depth(b) - depth(a)));
}

/** Bytes on disk of a snapshot directory (allocated blocks; hard links counted once). */
async function diskSize(snapshotsDir: string, id: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const walk = async (p: string) => {
    const st = await lstat(p).catch(() => null);
    if (!st) return;
    const k = `${st.dev}:${st.ino}`;
    if (seen.has(k)) return;
    seen.add(k);
    total += st.blocks * 512;
    if (st.isDirectory()) for (const name of await readdir(p)) await walk(join(p, name));
  };
  await walk(join(snapshotsDir, id));
  return total;
}
