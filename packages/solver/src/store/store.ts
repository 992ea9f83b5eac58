/**
 * The store under one root:
 *
 *   <root>/metadata.db           snapshot and cache records (SQLite, WAL)
 *   <root>/content/blobs/sha256  content-addressed blobs
 *   <root>/snapshots/<id>/       snapshot directories
 *   <root>/mounts/               mount points (all unmounted when the store opens)
 *   <root>/lock                  pid of the process that has the store open
 *
 * Opening repairs what a crash (kill -9 at any instant) can leave behind:
 * stale mounts, partial blobs, snapshot directories without a record, records
 * without a directory (and the cache records pointing at them).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BktError, type UsageRecord } from '@bkt/core';
import { FileContentStore } from './content.js';
import { MetadataDB, type SnapshotRow } from './metadata.js';
import { CopySnapshotter, OverlaySnapshotter, type SnapshotterKind, type StoreSnapshotter } from './snapshots.js';
import { mountOverlay, mountsUnder, unmount } from './sys.js';

export interface StorePruneOptions {
  all?: boolean;
  keepDuration?: number;
  keepStorage?: number;
}

/** Record types a prune without `all` keeps (as `buildctl prune` keeps internal and frontend references). */
const KEPT_WITHOUT_ALL = new Set(['internal', 'frontend']);

/** Roots open in this process: a second open of one root would repair (delete) the first's work in progress. */
const openRoots = new Set<string>();

export class Store {
  private constructor(
    readonly root: string,
    readonly db: MetadataDB,
    readonly content: FileContentStore,
    readonly snapshotter: StoreSnapshotter,
  ) {}

  static async open(rootArg: string, want: 'auto' | SnapshotterKind = 'auto'): Promise<Store> {
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
      const content = new FileContentStore(join(root, 'content'));
      await content.init();
      const db = new MetadataDB(join(root, 'metadata.db'));
      const kind = await chooseSnapshotter(root, db, want);
      const snapshotter = kind === 'overlay' ? new OverlaySnapshotter(root, db) : new CopySnapshotter(root, db);
      await reconcileSnapshots(snapshotter, db);
      return new Store(root, db, content, snapshotter);
    } catch (err) {
      openRoots.delete(root);
      await rm(join(root, 'lock'), { force: true });
      throw err;
    }
  }

  async diskUsage(): Promise<UsageRecord[]> {
    const records: UsageRecord[] = [];
    for (const row of this.db.listSnapshots()) records.push(await this.#usage(row));
    return [...records, ...this.snapshotter.activeRecords()];
  }

  /**
   * Removes snapshots not in use, leaves first (a parent goes once its children
   * are gone), least recently used first. Cache records pointing at a removed
   * snapshot go with it. Without `all`, `internal` and `frontend` records stay.
   * `keepDuration` keeps records used (or created) within that many ms;
   * `keepStorage` stops once the store's snapshots total at most that many bytes.
   */
  async prune(opts: StorePruneOptions = {}): Promise<UsageRecord[]> {
    const removed: UsageRecord[] = [];
    const now = Date.now();
    let total = Infinity;
    if (opts.keepStorage !== undefined) {
      total = 0;
      for (const row of this.db.listSnapshots()) total += (await this.#usage(row)).size;
    }
    for (;;) {
      const rows = this.db.listSnapshots();
      const parents = new Set(rows.map((r) => r.parent).filter((p): p is string => p !== null));
      const candidates = rows
        .filter((r) => !parents.has(r.id) && !this.snapshotter.isInUse(r.id))
        .filter((r) => opts.all || !KEPT_WITHOUT_ALL.has(r.recordType))
        .filter((r) => opts.keepDuration === undefined || (r.lastUsedAt ?? r.createdAt) < now - opts.keepDuration)
        .sort((a, b) => (a.lastUsedAt ?? a.createdAt) - (b.lastUsedAt ?? b.createdAt));
      const batch: SnapshotRow[] = [];
      for (const row of candidates) {
        if (opts.keepStorage !== undefined && total <= opts.keepStorage) break;
        const usage = await this.#usage(row);
        // Re-check after the await: a build may have started using it.
        if (this.snapshotter.isInUse(row.id)) continue;
        batch.push(row);
        removed.push(usage);
        total -= usage.size;
      }
      if (batch.length === 0) break;
      await this.snapshotter.remove(batch.map((r) => r.id));
    }
    return removed;
  }

  async close(): Promise<void> {
    for (const m of await mountsUnder(join(this.root, 'mounts'))) await unmount(m);
    this.db.close();
    await rm(join(this.root, 'lock'), { force: true });
    openRoots.delete(this.root);
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

/** Writes our pid to `<root>/lock`; refuses when another live process holds it. */
function takeLock(root: string): void {
  const lock = join(root, 'lock');
  if (existsSync(lock)) {
    const pid = Number(readFileSync(lock, 'utf8').trim());
    if (pid && pid !== process.pid && isAlive(pid)) {
      throw new BktError('INVALID_ARGUMENT', `store ${root} is in use by process ${pid} (${lock})`);
    }
  }
  // Synchronous on purpose: nothing may interleave between the check and the write.
  writeFileSync(lock, String(process.pid));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
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
  // Children before parents.
  const depth = (id: string): number => {
    const r = rows.find((x) => x.id === id);
    return r?.parent ? 1 + depth(r.parent) : 0;
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
