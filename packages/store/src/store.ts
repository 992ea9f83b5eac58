/**
 * The store under one root, shared by every process that opens it:
 *
 *   <root>/metadata.db           snapshot, cache, blob-reference, build, record, session and lease rows (SQLite, WAL)
 *   <root>/content/blobs/sha256  content-addressed blobs
 *   <root>/snapshots/<id>/       snapshot directories
 *   <root>/mounts/<session>/     mount points of one session
 *   <root>/empty/                an empty read-only directory (scratch as a FileOp copy source)
 *   <root>/<namespace>/<id>      the files of plugin records (records.ts)
 *   <root>/history/<id>/         each build's recorded progress, a record of the store's own (history.ts)
 *   <root>/tmp/, <root>/trash/   temp paths of sessions; removed records' files on their way out
 *   <root>/lock                  held (pid inside) only while a process opens the store
 *
 * Many processes: each open is a session (sessions.ts); what a session uses
 * is leased in the metadata DB, and prune — in any process — removes only
 * what no live session leases, checked and deleted in one transaction.
 * Writers of the database wait for each other; opens wait for each other.
 *
 * Opening repairs, under `lock`, what dead sessions (kill -9 at any instant)
 * left behind: their mounts, partial blobs, temp files and trash, snapshot
 * directories without a record, records without a directory (and the cache
 * records pointing at them), their builds recorded as running (marked
 * `interrupted`) and their leases. Live sessions' work is left alone.
 */
import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BktError, type Digest, type UsageRecord } from '@bkt/core';
import { FileContentStore, type BlobInfo } from './content.js';
import { BuildHistory, HISTORY_RECORD_TYPE, type HistoryLimits } from './history.js';
import { MetadataDB, type RecordRow, type SnapshotRow } from './metadata.js';
import { Records } from './records.js';
import { liveness, newSession, SESSION_ID } from './sessions.js';
import { CopySnapshotter, OverlaySnapshotter, type SnapshotterKind, type StoreSnapshotter } from './snapshots.js';
import { takeLock } from './lock.js';
import { overlayWorks } from './overlay-probe.js';
import { mountsUnder, unmount } from './sys.js';

export interface StorePruneOptions {
  /** Also remove `internal` and `frontend` records (as `buildctl prune --all`). */
  all?: boolean;
  /** Keep what was used (or created) within this many milliseconds. */
  keepDuration?: number;
  /** Stop once everything left totals at most this many bytes (least recently used removed first). */
  keepStorage?: number;
  /** Only records it accepts are removed (buildx's `--filter`); the others stay, whatever the other options say. */
  filter?: (record: UsageRecord) => boolean;
}

/**
 * Record types a prune without `all` keeps: as `buildctl prune` keeps
 * internal and frontend references and leaves build history alone.
 */
const KEPT_WITHOUT_ALL = new Set(['internal', 'frontend', HISTORY_RECORD_TYPE]);

/** The `recordType` of content-store blobs in `diskUsage` and `prune` results. */
export const CONTENT_RECORD_TYPE = 'content';

/** What one prune round may remove: a leaf snapshot, an unreferenced blob, or a plugin record. */
type PruneCandidate =
  | { kind: 'snapshot'; row: SnapshotRow; lastUsed: number }
  | { kind: 'blob'; blob: BlobInfo; lastUsed: number }
  | { kind: 'record'; row: RecordRow; lastUsed: number };

/** Roots open in this process (one session per root and process), with their sessions' `end`. */
const openRoots = new Map<string, () => void>();

/** How long an open waits for other processes' opens (their repairs) before giving up. */
const OPEN_WAIT_MS = 600_000;

export class Store {
  private constructor(
    readonly root: string,
    readonly db: MetadataDB,
    readonly content: FileContentStore,
    readonly snapshotter: StoreSnapshotter,
    readonly history: BuildHistory,
    /** The records API handed to plugins (`BuildContext.records`). */
    readonly records: Records,
    readonly session: string,
    private readonly endSession: () => void,
  ) {}

  static async open(rootArg: string, want: 'auto' | SnapshotterKind = 'auto', opts: { history?: HistoryLimits } = {}): Promise<Store> {
    const root = resolve(rootArg);
    if (openRoots.has(root)) throw new BktError('INVALID_ARGUMENT', `store ${root} is already open in this process`);
    await mkdir(root, { recursive: true });
    const session = newSession();
    openRoots.set(root, session.end);
    try {
      await waitForLock(root);
      try {
        return await Store.#openLocked(root, want, opts, session);
      } finally {
        await rm(join(root, 'lock'), { force: true });
      }
    } catch (err) {
      session.end();
      openRoots.delete(root);
      throw err;
    }
  }

  /** The open and repair of a store, under its lock. */
  static async #openLocked(
    root: string,
    want: 'auto' | SnapshotterKind,
    opts: { history?: HistoryLimits },
    session: ReturnType<typeof newSession>,
  ): Promise<Store> {
    await mkdir(join(root, 'snapshots'), { recursive: true });
    const db = new MetadataDB(join(root, 'metadata.db'));
    try {
      db.addSession(session);
      const isLive = liveness(db.sessions());
      await removeDeadSessionFiles(root, isLive);
      const content = new FileContentStore(join(root, 'content'), db, session.id);
      await content.init(isLive);
      db.interruptBuilds(isLive);
      for (const s of db.sessions()) if (!isLive(s.id)) db.endSession(s.id);
      const kind = await chooseSnapshotter(root, db, want, session.id);
      const snapshotter = kind === 'overlay' ? new OverlaySnapshotter(root, db, session.id) : new CopySnapshotter(root, db, session.id);
      await reconcileSnapshots(snapshotter, db, isLive);
      const records = new Records({
        root,
        db,
        session: session.id,
        isLive: () => liveness(db.sessions()),
        checkBlob: (digest: Digest) => {
          if (!existsSync(join(content.blobsDir, digest.slice('sha256:'.length)))) {
            throw new BktError('NOT_FOUND', `blob ${digest} is not in the content store (${content.dir})`, { digest });
          }
        },
      });
      const history = new BuildHistory({ db, records, root, session: session.id, isLive: () => liveness(db.sessions()), limits: opts.history });
      return new Store(root, db, content, snapshotter, history, records, session.id, session.end);
    } catch (err) {
      db.endSession(session.id);
      db.close();
      throw err;
    }
  }

  /** Whether a session is live now (sessions are read once per call). */
  liveness(): (session: string) => boolean {
    return liveness(this.db.sessions());
  }

  /**
   * One record per committed snapshot, per mutable snapshot this process is
   * writing, per content-store blob (`recordType: 'content'`, id = digest;
   * its description names what references it) and per plugin record (id
   * `<namespace>/<id>`). Sizes are apparent bytes (see `treeBytes`).
   */
  async diskUsage(): Promise<UsageRecord[]> {
    const isLive = this.liveness();
    const leased = this.db.leased('snapshot', isLive);
    const records: UsageRecord[] = [];
    for (const row of this.db.listSnapshots()) records.push(await this.#usage(row, leased));
    records.push(...this.snapshotter.activeRecords());
    for (const blob of await this.content.list()) records.push(this.#blobUsage(blob, leased));
    const held = this.db.leased('record', isLive);
    for (const row of this.db.listRecords()) records.push(await this.#recordUsage(row, held));
    return records;
  }

  /**
   * Removes, least recently used first: snapshots no live session uses and
   * no plugin record references (leaves first: a parent goes once its
   * children are gone), content-store blobs nothing references, and plugin
   * records no live session holds (with their references, so what only they
   * kept goes in the same prune). Cache records and blob references of a
   * removed snapshot go with it. Without `all`, `internal` and `frontend`
   * snapshots and records stay. `keepDuration` keeps what was used (or
   * created) within that many ms; `keepStorage` stops once what is left
   * totals at most that many bytes. Each removal is checked against other
   * processes' leases in the transaction that makes it.
   */
  async prune(opts: StorePruneOptions = {}): Promise<UsageRecord[]> {
    const removed: UsageRecord[] = [];
    const now = Date.now();
    const kept = (lastUsed: number) => opts.keepDuration !== undefined && lastUsed >= now - opts.keepDuration;
    const typeKept = (recordType: string) => !opts.all && KEPT_WITHOUT_ALL.has(recordType);
    let total = Infinity;
    if (opts.keepStorage !== undefined) total = (await this.diskUsage()).reduce((n, r) => n + r.size, 0);
    for (;;) {
      const isLive = this.liveness();
      const leased = this.db.leased('snapshot', isLive);
      const held = this.db.leased('record', isLive);
      const rows = this.db.listSnapshots();
      const records = this.db.listRecords();
      const parents = new Set(rows.map((r) => r.parent).filter((p): p is string => p !== null));
      const recordSnapshots = new Set(records.flatMap((r) => r.snapshots));
      const referenced = this.db.referencedBlobs();
      const candidates: PruneCandidate[] = [
        ...rows
          .filter((r) => !parents.has(r.id) && !leased.has(r.id) && !recordSnapshots.has(r.id) && !typeKept(r.recordType))
          .map((row) => ({ kind: 'snapshot' as const, row, lastUsed: row.lastUsedAt ?? row.createdAt })),
        ...(await this.content.list())
          .filter((b) => !referenced.has(b.digest))
          .map((blob) => ({ kind: 'blob' as const, blob, lastUsed: blob.createdAt.getTime() })),
        ...records
          .filter((r) => !r.pinned && !held.has(`${r.namespace}/${r.id}`) && !typeKept(r.recordType))
          .map((row) => ({ kind: 'record' as const, row, lastUsed: row.lastUsedAt ?? row.createdAt })),
      ]
        .filter((c) => !kept(c.lastUsed))
        .sort((a, b) => a.lastUsed - b.lastUsed);
      let progressed = false;
      for (const c of candidates) {
        if (opts.keepStorage !== undefined && total <= opts.keepStorage) break;
        const selected = (u: UsageRecord) => !opts.filter || opts.filter(u);
        let usage: UsageRecord | undefined;
        /** What the removal gave back, when not `usage.size` (a shared tree's other links keep their files). */
        let freed: number | undefined;
        if (c.kind === 'blob') {
          const u = this.#blobUsage(c.blob, leased);
          if (selected(u) && this.content.removeIfUnused(c.blob.digest, isLive)) usage = u;
        } else if (c.kind === 'snapshot') {
          const m = await this.#measured(c.row, leased);
          if (selected(m.usage) && (await this.snapshotter.removeUnused([c.row.id], this.liveness())).length > 0) {
            usage = m.usage;
            freed = m.freed;
          }
        } else {
          const u = await this.#recordUsage(c.row, held);
          if (selected(u) && (await this.records.removeUnheld(c.row.namespace, c.row.id))) usage = u;
        }
        if (!usage) continue;
        removed.push(usage);
        total -= freed ?? usage.size;
        progressed = true;
      }
      if (!progressed) break;
    }
    return removed;
  }

  /**
   * Unmounts this session's mounts (views never released, mutable snapshots
   * never committed), ends the session and closes the database. Throws
   * `INTERNAL` naming any mount that could not be removed.
   */
  async close(): Promise<void> {
    const mine = this.snapshotter.mountsDir;
    const mounted = await mountsUnder(mine);
    for (const m of mounted) await unmount(m);
    const left = mounted.length > 0 ? await mountsUnder(mine) : [];
    if (left.length === 0) await rm(mine, { recursive: true, force: true });
    this.db.endSession(this.session);
    this.endSession();
    this.db.close();
    openRoots.delete(this.root);
    if (left.length > 0) {
      throw new BktError('INTERNAL', `closing store ${this.root}: could not unmount ${left.join(', ')}`);
    }
  }

  #blobUsage(blob: BlobInfo, leased: Set<string>): UsageRecord {
    const refs = this.db.blobRefs({ digest: blob.digest });
    const owners = refs.map((r) => ('snapshot' in r.owner ? `snapshot ${r.owner.snapshot}` : r.owner.name));
    // Prune never takes a named blob, nor one whose snapshot is in use.
    const inUse = refs.some((r) => ('name' in r.owner ? true : leased.has(r.owner.snapshot) || this.snapshotter.isInUse(r.owner.snapshot)));
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

  async #usage(row: SnapshotRow, leased: Set<string>): Promise<UsageRecord> {
    return (await this.#measured(row, leased)).usage;
  }

  /**
   * A snapshot's usage record and the bytes its removal frees (its share of
   * a file linked from other trees stays with them). A size is remembered
   * only for a tree no other tree links into; a copy that links a measured
   * tree's files later has it forgotten (`StoreSnapshotter.linkedFrom`), and
   * a shared tree is measured on each call (a prune changes its share).
   */
  async #measured(row: SnapshotRow, leased: Set<string>): Promise<{ usage: UsageRecord; freed: number }> {
    let size = row.size;
    let shared = false;
    let own = size ?? 0;
    if (size === null) {
      const generation = this.snapshotter.sizeGeneration();
      ({ bytes: size, shared, own } = await treeUsage(join(this.snapshotter.snapshotsDir, row.id)));
      if (!shared && this.snapshotter.sizeGeneration() === generation) this.db.setSize(row.id, size);
    }
    const usage: UsageRecord = {
      id: row.id,
      mutable: false,
      inUse: leased.has(row.id) || this.snapshotter.isInUse(row.id),
      size,
      createdAt: new Date(row.createdAt),
      lastUsedAt: row.lastUsedAt === null ? undefined : new Date(row.lastUsedAt),
      usageCount: row.usageCount,
      description: row.description,
      recordType: row.recordType,
      shared,
      parents: row.parent ? [row.parent] : [],
    };
    return { usage, freed: own };
  }

  async #recordUsage(row: RecordRow, held: Set<string>): Promise<UsageRecord> {
    const refs = [...row.snapshots.map((s) => `snapshot ${s}`), ...row.blobs];
    return {
      id: `${row.namespace}/${row.id}`,
      mutable: row.mutable,
      inUse: row.pinned || held.has(`${row.namespace}/${row.id}`), // a pinned record is never reclaimable
      size: await treeBytes(join(this.root, row.namespace, row.id)),
      createdAt: new Date(row.createdAt),
      ...(row.lastUsedAt !== null ? { lastUsedAt: new Date(row.lastUsedAt) } : {}),
      usageCount: row.usageCount,
      description: refs.length > 0 ? `${row.description} (keeps ${refs.join(', ')})` : row.description,
      recordType: row.recordType,
      shared: false,
      parents: [],
    };
  }
}


/** Takes `<root>/lock`, waiting while other processes open the store. */
async function waitForLock(root: string): Promise<void> {
  const deadline = Date.now() + OPEN_WAIT_MS;
  for (;;) {
    try {
      takeLock(root);
      return;
    } catch (err) {
      if (!(err instanceof BktError) || err.code !== 'INVALID_ARGUMENT' || !/in use by process|could not take/.test(err.message) || Date.now() > deadline) throw err;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Unmounts and removes the mount dirs of dead sessions (and anything else
 * under `mounts/`), and removes dead sessions' temp paths and trash.
 */
async function removeDeadSessionFiles(root: string, isLive: (session: string) => boolean): Promise<void> {
  const mounts = join(root, 'mounts');
  await mkdir(mounts, { recursive: true });
  for (const name of await readdir(mounts)) {
    if (SESSION_ID.test(name) && isLive(name)) continue;
    for (const m of await mountsUnder(join(mounts, name))) await unmount(m);
    await rm(join(mounts, name), { recursive: true, force: true });
  }
  for (const dir of ['tmp', 'trash']) {
    const names = await readdir(join(root, dir)).catch(() => [] as string[]);
    for (const name of names) if (!isLive(name.split('~')[0])) await rm(join(root, dir, name), { recursive: true, force: true });
  }
}

/** Tests only: forget that `root` is open (simulates the process that opened it having died). */
export function __resetOpenRoots(root: string): void {
  openRoots.get(resolve(root))?.();
  openRoots.delete(resolve(root));
}

/** The snapshotter a store uses is fixed at creation (its snapshot dirs differ in meaning). */
async function chooseSnapshotter(root: string, db: MetadataDB, want: 'auto' | SnapshotterKind, session: string): Promise<SnapshotterKind> {
  const stored = db.getMeta('snapshotter') as SnapshotterKind | undefined;
  if (stored) {
    if (want !== 'auto' && want !== stored) {
      throw new BktError('INVALID_ARGUMENT', `store ${root} was created with the ${stored} snapshotter, not ${want}`, {
        attribute: 'snapshotter',
      });
    }
    return stored;
  }
  const kind = want === 'auto' ? ((await overlayWorks(root, session)) ? 'overlay' : 'copy') : want;
  db.setMeta('snapshotter', kind);
  return kind;
}

/**
 * Makes directories and rows agree: removes unrecorded dirs no live session
 * leases (one being written), and records (with descendants) whose dir is gone.
 */
async function reconcileSnapshots(snapshotter: StoreSnapshotter, db: MetadataDB, isLive: (session: string) => boolean): Promise<void> {
  // Directories first, then rows and leases: a directory listed was leased before it was made, and is recorded before its lease goes.
  const dirs = await readdir(snapshotter.snapshotsDir);
  const rows = db.listSnapshots();
  const leased = db.leased('snapshot', isLive);
  const recorded = new Set(rows.map((r) => r.id));
  for (const name of dirs) {
    if (!recorded.has(name) && !leased.has(name)) await rm(join(snapshotter.snapshotsDir, name), { recursive: true, force: true });
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

/**
 * Apparent bytes of what `path` holds, as `du -sb` counts them: files,
 * directories and symlinks by their size, a hard link once, nothing across a
 * mount point; `path` itself is not counted. 0 when `path` does not exist.
 * This is the size of every usage record (snapshot, blob, plugin record).
 */
export async function treeBytes(path: string): Promise<number> {
  return (await treeUsage(path)).bytes;
}

/**
 * `treeBytes`, where a file also linked from outside `path` (a copy from a
 * local context links the context's files into its result) counts for the
 * share of its links found here: k of n links count size·k/n, so the trees
 * holding all n links add up to its size once, as `du -sb` of the store
 * does. `shared` says such a file was found (BuildKit's "shared" record);
 * `own` is what removing the tree would free (its files linked nowhere else).
 */
export async function treeUsage(path: string): Promise<{ bytes: number; shared: boolean; own: number }> {
  const seen = new Map<number, { size: number; nlink: number; here: number }>();
  const top = await lstat(path).catch(() => null);
  if (!top) return { bytes: 0, shared: false, own: 0 };
  let total = 0;
  let own = 0;
  const walk = async (p: string) => {
    const st = await lstat(p).catch(() => null);
    if (!st || st.dev !== top.dev) return;
    const known = seen.get(st.ino);
    if (known) {
      known.here++;
      return;
    }
    seen.set(st.ino, { size: p === path ? 0 : st.size, nlink: st.isDirectory() ? 1 : st.nlink, here: 1 });
    if (st.isDirectory()) for (const name of await readdir(p).catch(() => [] as string[])) await walk(join(p, name));
  };
  await walk(path);
  let shared = false;
  for (const { size, nlink, here } of seen.values()) {
    if (here >= nlink) {
      total += size;
      own += size;
    } else {
      shared = true;
      total += (size * here) / nlink;
    }
  }
  return { bytes: Math.round(total), shared, own };
}
