import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants,
  copyFileSync,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lutimesSync,
  mkdirSync,
  openSync,
  renameSync,
  symlinkSync,
  utimesSync,
  writeSync,
} from 'node:fs';
import { chmod, copyFile, lchown, lutimes, mkdir, readFile, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BktError,
  Pacer,
  requireRecords,
  type Attrs,
  type BuildContext,
  type ClientLocalDir,
  type Digest,
  type FileStat,
  type LocalDirSelection,
  type Mounted,
  type MutableSnapshot,
  type Platform,
  type RecordNamespace,
  type Snapshot,
  type Source,
  type SourceIdentifier,
  type SourceInstance,
  type StoreRecord,
} from '@bkt/core';
import { parseDockerignore } from '@bkt/fsutil';
import { parseLocalAttrs, type LocalAttrs } from './attrs.js';

export interface LocalSourceOptions {
  /**
   * Read `.dockerignore` at the top of a local directory as exclude patterns
   * when the op gives none (as `docker build` does for its context). Default true.
   */
  dockerignore?: boolean;
  /**
   * Keep the client files' uid/gid in the snapshot (when running as root).
   * Default false: every entry is owned by 0:0, as buildx sends a context.
   */
  keepOwners?: boolean;
}

/** The records namespace of the sync indexes. */
export const RECORD_NAMESPACE = 'source-local';
const RECORD_TYPE = 'source.local';
/** Files modified this close (ms) before a sync began are hashed again next time: their mtime may not show a later write. */
const RACY_MS = 2000;
/** Client files read at once while hashing (a session client answers each over the network). */
const READ_CONCURRENCY = 16;
/** Files up to this size are copied with synchronous system calls; larger ones through the thread pool. */
const SMALL_FILE_BYTES = 1 << 20;

const isRoot = process.getuid?.() === 0;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

/** Layers a snapshot chain may have before a sync writes a whole new snapshot instead of one more layer. */
const MAX_LAYERS = 16;

/** What the sync index remembers of a regular file: its client stat and content digest. */
interface IndexedFile {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  /** The client's change token (`FileStat.change`: device, inode, ctime), when it sends one. */
  change?: string;
  digest: Digest;
}

/** What the sync index remembers of any other entry (directory, symlink, hardlink, device): as the snapshot has it. */
interface IndexedEntry {
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  linkname?: string;
}

/**
 * The sync index of a (client directory, selection): the content key of the
 * last snapshot made from it, that snapshot, and the regular files it holds
 * (stat as the client reported them, content digest). A file whose stat is
 * unchanged is not read again; its bytes come from that snapshot.
 */
interface SyncIndex {
  key: Digest;
  /**
   * The snapshot, or '' when the sync made none (its key was a cache hit on
   * content synced from elsewhere): then the index only spares the next
   * sync re-reading unchanged files, and a new snapshot is written whole.
   */
  snapshot: string;
  /** When the stat pass the index describes began (ms since the epoch). */
  syncedAtMs: number;
  files: Record<string, IndexedFile>;
  /**
   * The snapshot's other entries, by path: with `files`, the whole tree the
   * snapshot holds, so that the next sync writes only what differs (an
   * index without it cannot be diffed against).
   */
  others?: Record<string, IndexedEntry>;
}

/** One stat pass over the client directory, and the content hashing it needed. */
interface Sync {
  key: Digest;
  entries: FileStat[];
  /** Content digest of each regular file that is not a hardlink, by path. */
  digests: Map<string, Digest>;
  /** Files read while hashing, staged under `staging` (by path). */
  staged: Map<string, string>;
  syncedAtMs: number;
  /** The index the pass started from (still describing `record`'s snapshot). */
  index?: SyncIndex;
  /** The record the pass started from (none when there was none): a write compares it with the record then. */
  record?: StoreRecord;
}

/**
 * The `local` source: `local://NAME` is the client's local directory NAME
 * (`ctx.client.localDir`), narrowed by the op's include/exclude patterns.
 *
 * It syncs as BuildKit's file sync does: the client's stat entries first,
 * then the content of only the files whose stat changed since the last sync
 * of the same directory and selection — the others come from the snapshot
 * that sync made. What a sync remembers is a record of the store
 * (`source-local` namespace, keyed by the directory's `syncKey` and the
 * selection), referencing its snapshot, so `bkt du` counts it and a prune
 * removes both together.
 *
 * Its cache key is the content checksum of the selection (paths, modes,
 * owners, sizes, link targets, file content; never timestamps); an unchanged
 * selection reuses the snapshot made the last time.
 */
export function createLocalSource(opts: LocalSourceOptions = {}): Source {
  const useDockerignore = opts.dockerignore ?? true;
  const keepOwners = opts.keepOwners ?? false;
  return {
    schemes: ['local'],
    identify(scheme: string, ref: string, attrs: Attrs, platform?: Platform): SourceIdentifier {
      const name = ref.replace(/^\/\//, '');
      if (!name) throw new BktError('INVALID_ARGUMENT', `local source: "${scheme}://${ref}" has no directory name`);
      parseLocalAttrs(attrs);
      return { scheme, ref: name, attrs, platform };
    },
    async resolve(id: SourceIdentifier, ctx: BuildContext): Promise<SourceInstance> {
      const name = id.ref;
      const found = ctx.client.localDir(name);
      if (!found) {
        const known = ctx.client.localDirNames().sort();
        throw new BktError(
          'NOT_FOUND',
          `local source: no local directory named "${name}" was given to this build (known: ${known.length ? known.join(', ') : 'none'})`,
          { attribute: 'local', name },
        );
      }
      const dir = found;
      const ns = requireRecords(ctx, 'local source').namespace(RECORD_NAMESPACE);
      const selection = await selectionOf(dir, parseLocalAttrs(id.attrs), useDockerignore, ctx.signal);
      const recordId = recordIdOf(dir, selection, keepOwners);
      const hold = await ns.hold(recordId);
      ctx.onFinish(() => hold.release());
      // The last sync's record and index are read while the client sends its stats: the sync compares them afterwards.
      const last = lastSync(ns, recordId);
      // The stat pass happens here, so a missing directory fails the resolve.
      const syncedAtMs = Date.now();
      const entries = await collectChecked(name, dir.stat(selection, ctx.signal));
      const stagingDir = requireRecords(ctx, 'local source').tempPath('source-local-sync');
      ctx.onFinish(() => rm(stagingDir, { recursive: true, force: true }));

      let sync: Promise<Sync> | undefined;
      let made: Promise<Snapshot> | undefined;
      const synced = (c: BuildContext) =>
        (sync ??= (async () => {
          const { record, index } = await last;
          const s: Sync = { ...(await hashEntries(dir, entries, index, syncedAtMs, stagingDir, keepOwners, c.signal)), record };
          // The key may be a cache hit (no snapshot asked for): what was hashed is remembered now, unless an index tied to a snapshot would be lost.
          if (!index || (!index.snapshot && (index.key !== s.key || s.staged.size > 0))) await rememberHashes(ns, recordId, dir.name, s);
          return s;
        })());
      return {
        async cacheKey(c: BuildContext) {
          return { key: (await synced(c)).key };
        },
        snapshot(c: BuildContext) {
          return (made ??= makeOnce(c));
        },
      };
      async function makeOnce(c: BuildContext): Promise<Snapshot> {
        const s = await synced(c);
        const snapshot =
          (await reuseSnapshot(ns, recordId, s, c)) ??
          (await makeSnapshot(dir, ns, recordId, s, c, keepOwners, async () => {
            // Files not staged are about to be read: the directory must still be as the stat pass saw it.
            const now = await collectChecked(name, dir.stat(selection, c.signal));
            if (!sameEntries(now, s.entries)) throw changedWhileReading(name);
          }));
        return withDigests(snapshot, s.digests);
      }
    },
  };
}

/** The op's selection: its patterns, or `.dockerignore`'s when it has no exclude patterns. */
async function selectionOf(dir: ClientLocalDir, attrs: LocalAttrs, useDockerignore: boolean, signal: AbortSignal): Promise<LocalDirSelection> {
  let exclude = attrs.exclude;
  if (exclude.length === 0 && useDockerignore) {
    const text = await readAll(dir.read('.dockerignore', signal)).catch((err: unknown) => {
      if (err instanceof BktError && err.code === 'NOT_FOUND') return undefined;
      throw err;
    });
    if (text !== undefined) exclude = parseDockerignore(text.toString('utf8'));
  }
  return { include: attrs.include, exclude, followPaths: attrs.followPaths };
}

function recordIdOf(dir: ClientLocalDir, selection: LocalDirSelection, keepOwners: boolean): string {
  const h = createHash('sha256').update(JSON.stringify([dir.syncKey, dir.name, selection.include, selection.exclude, selection.followPaths, keepOwners]));
  return h.digest('hex');
}

/** The client's entries, each checked (`entryChecker`) as it arrives. */
async function collectChecked(name: string, items: AsyncIterable<FileStat>): Promise<FileStat[]> {
  const check = entryChecker(name);
  const out: FileStat[] = [];
  for await (const e of items) out.push(check(e));
  return out;
}

async function readAll(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of chunks) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

const isDir = (e: FileStat) => (e.mode & S_IFMT) === S_IFDIR;
const isLink = (e: FileStat) => (e.mode & S_IFMT) === S_IFLNK;
const isFile = (e: FileStat) => (e.mode & S_IFMT) === S_IFREG;
/** A regular file whose content travels (not a hardlink to an earlier entry). */
const hasContent = (e: FileStat) => isFile(e) && e.linkname === undefined;
/** An entry the snapshot holds (fifos, sockets and devices are not synced). */
const synced = (e: FileStat) => isDir(e) || isLink(e) || isFile(e);

/**
 * The record of `recordId` and the index it names. The promise never goes
 * unobserved into a rejection (a failed stat pass leaves it unawaited): a
 * failure to read the record is the sync's, when it awaits it.
 */
function lastSync(ns: RecordNamespace, recordId: string): Promise<{ record: StoreRecord | undefined; index: SyncIndex | undefined }> {
  const read = ns.get(recordId).then(async (record) => ({ record, index: record ? await readIndex(record) : undefined }));
  read.catch(() => undefined);
  return read;
}

async function readIndex(record: StoreRecord): Promise<SyncIndex | undefined> {
  const text = await readFile(join(record.path, 'index.json'), 'utf8').catch(() => undefined);
  if (!text) return undefined;
  try {
    const index = JSON.parse(text) as SyncIndex;
    // The record names the snapshot the index describes; a half-finished update leaves them apart.
    if (index.key !== record.data.key || index.snapshot !== record.data.snapshot) return undefined;
    return index;
  } catch {
    return undefined;
  }
}

/** Whether the index's digest of `e` can be trusted without reading it. */
function unchanged(e: FileStat, index: SyncIndex | undefined): IndexedFile | undefined {
  const f = index?.files[e.path];
  if (!f || !index) return undefined;
  if (f.mode !== e.mode || f.uid !== e.uid || f.gid !== e.gid || f.size !== e.size || f.mtimeMs !== e.mtimeMs || f.change !== e.change) return undefined;
  return e.mtimeMs < index.syncedAtMs - RACY_MS ? f : undefined;
}

/**
 * The content key of the entries: each file's digest from the index when
 * its stat is unchanged, else read from the client (and staged, so the
 * snapshot need not read it again).
 */
async function hashEntries(
  dir: ClientLocalDir,
  entries: FileStat[],
  index: SyncIndex | undefined,
  syncedAtMs: number,
  stagingDir: string,
  keepOwners: boolean,
  signal: AbortSignal,
): Promise<Sync> {
  const digests = new Map<string, Digest>();
  const staged = new Map<string, string>();
  const toRead: FileStat[] = [];
  for (const e of entries) {
    if (!hasContent(e)) continue;
    const known = unchanged(e, index);
    if (known) digests.set(e.path, known.digest);
    else toRead.push(e);
  }
  if (toRead.length > 0) await mkdir(stagingDir, { recursive: true });
  let next = 0;
  const worker = async () => {
    while (next < toRead.length) {
      const e = toRead[next]!;
      const file = join(stagingDir, String(next++));
      // Staged with the metadata the snapshot gives it: moving it in is all that is left.
      digests.set(e.path, await receive(dir, e.path, file, metaOf(e, keepOwners), signal));
      staged.set(e.path, file);
    }
  };
  await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, toRead.length) }, worker));

  // One line per entry, hashed in one update (the digest of the lines' concatenation).
  let lines = '';
  for (const e of entries) {
    if (!synced(e)) continue; // fifos and devices are not synced
    const [uid, gid] = keepOwners ? [e.uid, e.gid] : [0, 0];
    const content = hasContent(e) ? digests.get(e.path)! : isLink(e) ? `symlink:${e.linkname}` : e.linkname !== undefined ? `hardlink:${e.linkname}` : '';
    lines += `${JSON.stringify(e.path)} ${(e.mode & 0o177777).toString(8)} ${uid}:${gid} ${hasContent(e) ? e.size : 0} ${content}\n`;
  }
  const key: Digest = `sha256:${createHash('sha256').update(lines).digest('hex')}`;
  return { key, entries, digests, staged, syncedAtMs, index };
}

/** Owner, permissions and mtime of an entry in the snapshot. */
interface EntryMeta {
  uid: number;
  gid: number;
  perm: number;
  mtime: Date;
}

function metaOf(e: FileStat, keepOwners: boolean): EntryMeta {
  return { uid: keepOwners ? e.uid : 0, gid: keepOwners ? e.gid : 0, perm: e.mode & 0o7777, mtime: new Date(e.mtimeMs) };
}

/** Owner (as root; without root, files can only be owned by us), then permissions (chown clears setuid bits), then times. */
function setMeta(path: string, meta: EntryMeta): void {
  if (isRoot) lchownSync(path, meta.uid, meta.gid);
  chmodSync(path, meta.perm);
  utimesSync(path, meta.mtime, meta.mtime);
}

/**
 * Writes client file `path` to `file` (created, never through a symlink)
 * with `meta`; returns the digest of the bytes written. Written with
 * synchronous calls on one descriptor: the chunks are in memory already.
 */
async function receive(dir: ClientLocalDir, path: string, file: string, meta: EntryMeta, signal: AbortSignal): Promise<Digest> {
  const h = createHash('sha256');
  const fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    for await (const chunk of dir.read(path, signal)) {
      signal.throwIfAborted();
      h.update(chunk);
      for (let off = 0; off < chunk.byteLength; ) off += writeSync(fd, chunk, off);
    }
    if (isRoot) fchownSync(fd, meta.uid, meta.gid);
    fchmodSync(fd, meta.perm);
    futimesSync(fd, meta.mtime, meta.mtime);
  } finally {
    closeSync(fd);
  }
  return `sha256:${h.digest('hex')}`;
}

/** Moves a staged file (already given its metadata) to `target`; across filesystems (an overlay mount), copies it. */
async function placeStaged(staged: string, target: string, meta: EntryMeta, size: number): Promise<void> {
  try {
    renameSync(staged, target);
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
  }
  await cloneFile(staged, target, size);
  setMeta(target, meta);
}

/** Copies a file (a clone where the filesystem can): small ones synchronously. */
async function cloneFile(from: string, to: string, size: number): Promise<void> {
  if (size <= SMALL_FILE_BYTES) copyFileSync(from, to, constants.COPYFILE_FICLONE);
  else await copyFile(from, to, constants.COPYFILE_FICLONE);
}

/**
 * A check of the client's entries, in the order sent: each is refused
 * unless it stays inside the snapshot: a clean relative path (no empty, `.`
 * or `..` component, no leading `/`), listed once, under a directory listed
 * before it (never under a symlink or a file, which writing through would
 * leave the tree), a hardlink naming a regular file listed before it. A
 * session client is not trusted to send only what a walk would.
 */
function entryChecker(name: string): (e: FileStat) => FileStat {
  const kinds = new Map<string, 'dir' | 'file' | 'other'>();
  const refuse = (e: FileStat, why: string) =>
    new BktError('INVALID_ARGUMENT', `local directory "${name}": the client sent entry ${JSON.stringify(e.path)}, ${why}`, { name, path: e.path });
  return (e) => {
    const parts = e.path.split('/');
    if (e.path.includes('\0') || parts.some((p) => p === '' || p === '.' || p === '..')) throw refuse(e, 'which is not a clean relative path');
    if (kinds.has(e.path)) throw refuse(e, 'twice');
    const parent = parts.slice(0, -1).join('/');
    if (parent !== '' && kinds.get(parent) !== 'dir') throw refuse(e, `whose parent "${parent}" is not a directory listed before it`);
    if (isFile(e) && e.linkname !== undefined && kinds.get(e.linkname) !== 'file') {
      throw refuse(e, `a hardlink to "${e.linkname}", which is not a regular file listed before it`);
    }
    kinds.set(e.path, isDir(e) ? 'dir' : hasContent(e) ? 'file' : 'other');
    return e;
  };
}

/** The directory no longer holds what the cache key was computed from. */
function changedWhileReading(name: string): BktError {
  return new BktError('INVALID_ARGUMENT', `local source "${name}": files in the client directory changed while the build was reading them; build again`, { name });
}

function sameEntries(a: FileStat[], b: FileStat[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((x, i) => {
    const y = b[i]!;
    return (
      x.path === y.path &&
      x.mode === y.mode &&
      x.uid === y.uid &&
      x.gid === y.gid &&
      x.size === y.size &&
      x.mtimeMs === y.mtimeMs &&
      x.linkname === y.linkname &&
      x.change === y.change
    );
  });
}

/** The snapshot recorded for the sync's key, when it still exists; the index learns the new stats. */
async function reuseSnapshot(ns: RecordNamespace, recordId: string, s: Sync, ctx: BuildContext): Promise<Snapshot | undefined> {
  if (!s.index || !s.index.snapshot || s.index.key !== s.key) return undefined;
  let snapshot: Snapshot;
  try {
    snapshot = await ctx.snapshotter.get(s.index.snapshot);
  } catch {
    return undefined; // pruned since: make it again
  }
  await updatingRecord(ns, recordId, async () => {
    const record = await ns.get(recordId);
    // An index stands only beside a record naming its snapshot: a concurrent sync that moved the record on keeps its own index.
    if (record && s.staged.size > 0 && record.data.key === s.key && record.data.snapshot === snapshot.id) await writeIndex(record, indexOf(s, snapshot.id));
    if (record) await ns.touch(recordId);
  });
  return snapshot;
}

function indexOf(s: Sync, snapshot: string): SyncIndex {
  const files: Record<string, IndexedFile> = {};
  const others: Record<string, IndexedEntry> = {};
  for (const e of s.entries) {
    if (hasContent(e)) {
      const f: IndexedFile = { mode: e.mode, uid: e.uid, gid: e.gid, size: e.size, mtimeMs: e.mtimeMs, digest: s.digests.get(e.path)! };
      if (e.change !== undefined) f.change = e.change;
      files[e.path] = f;
    } else if (synced(e)) {
      const o: IndexedEntry = { mode: e.mode, uid: e.uid, gid: e.gid, mtimeMs: e.mtimeMs };
      if (e.linkname !== undefined) o.linkname = e.linkname;
      others[e.path] = o;
    }
  }
  return { key: s.key, snapshot, syncedAtMs: s.syncedAtMs, files, others };
}

/**
 * Record updates of this process by record, each running after the one
 * before it: a record read and the write decided on it are never split by
 * another sync's write (the store's lock keeps other processes out).
 */
const recordUpdates = new Map<string, Promise<void>>();

function updatingRecord<T>(ns: RecordNamespace, recordId: string, update: () => Promise<T>): Promise<T> {
  const key = join(ns.dir, recordId);
  const run = (recordUpdates.get(key) ?? Promise.resolve()).then(update);
  const done = run.then(
    () => undefined,
    () => undefined,
  );
  recordUpdates.set(key, done);
  void done.then(() => {
    if (recordUpdates.get(key) === done) recordUpdates.delete(key);
  });
  return run;
}

/** Whether `now` is the record `then` was (its key, snapshot and references), both absent included. */
function sameRecord(now: StoreRecord | undefined, then: StoreRecord | undefined): boolean {
  if (!now || !then) return now === then;
  const refs = new Set(then.snapshots);
  return (
    now.data.key === then.data.key &&
    now.data.snapshot === then.data.snapshot &&
    now.snapshots.length === then.snapshots.length &&
    now.snapshots.every((id) => refs.has(id))
  );
}

/**
 * Records a sync that made no snapshot: its index (snapshot '') remembers
 * each file's stat and digest. The record keeps the snapshots it referenced
 * (a concurrent build may still be copying from them). When another sync
 * wrote the record after this one read it, that record and its index stay
 * as they are.
 */
async function rememberHashes(ns: RecordNamespace, recordId: string, name: string, s: Sync): Promise<void> {
  await updatingRecord(ns, recordId, async () => {
    const record = await ns.get(recordId);
    if (!sameRecord(record, s.record)) return;
    const put = await ns.put(recordId, {
      recordType: RECORD_TYPE,
      description: `local directory "${name}"`,
      snapshots: record?.snapshots ?? [],
      data: { key: s.key, snapshot: '' },
    });
    await writeIndex(put, indexOf(s, ''));
  });
}

/**
 * Points the record (and its index) at `snapshot`, the sync's new one. The
 * record then references it and, when it still exists, the snapshot the
 * sync started from (a concurrent build may still be copying from it; it
 * goes with the next sync); of those before, none. When another sync wrote the
 * record after this one read it, nothing it references is dropped, and the
 * record stays that sync's (only gaining `snapshot`) when its stat pass
 * began after this one's.
 */
async function recordSnapshot(ns: RecordNamespace, recordId: string, name: string, s: Sync, snapshot: string, ctx: BuildContext): Promise<void> {
  await updatingRecord(ns, recordId, async () => {
    const record = await ns.get(recordId);
    const previous = s.index?.snapshot;
    const kept = previous && previous !== snapshot && (await ctx.snapshotter.get(previous).then(() => true, () => false));
    const ours = kept ? [snapshot, previous] : [snapshot];
    const description = `local directory "${name}"`;
    if (sameRecord(record, s.record)) {
      const put = await ns.put(recordId, { recordType: RECORD_TYPE, description, snapshots: ours, data: { key: s.key, snapshot } });
      await writeIndex(put, indexOf(s, snapshot));
      return;
    }
    const snapshots = [...new Set([...ours, ...(record?.snapshots ?? [])])];
    const theirs = record && (await readIndex(record));
    if (record && theirs && theirs.syncedAtMs > s.syncedAtMs) {
      await ns.put(recordId, { recordType: RECORD_TYPE, description, snapshots, data: record.data });
      return;
    }
    const put = await ns.put(recordId, { recordType: RECORD_TYPE, description, snapshots, data: { key: s.key, snapshot } });
    await writeIndex(put, indexOf(s, snapshot));
  });
}

async function writeIndex(record: StoreRecord, index: SyncIndex): Promise<void> {
  await mkdir(record.path, { recursive: true });
  // Unique per write: two builds of one process may write the same record's index at once (the last rename wins; both are whole).
  const tmp = join(record.path, `.index-${process.pid}-${randomBytes(6).toString('hex')}`);
  await writeFile(tmp, JSON.stringify(index));
  await rename(tmp, join(record.path, 'index.json'));
}

/**
 * A new snapshot of the sync: staged files moved in, unchanged ones cloned
 * from the last snapshot, anything else read from the client (and checked
 * against the digest the key was computed from); then the record and its
 * index point at it.
 */
async function makeSnapshot(
  dir: ClientLocalDir,
  ns: RecordNamespace,
  recordId: string,
  s: Sync,
  ctx: BuildContext,
  keepOwners: boolean,
  beforeClientReads: () => Promise<void>,
): Promise<Snapshot> {
  const last = s.index?.snapshot ? await ctx.snapshotter.get(s.index.snapshot).catch(() => undefined) : undefined;
  const description = { description: `local source ${dir.name}`, recordType: RECORD_TYPE };
  let mutable: MutableSnapshot;
  if (last && s.index && layerable(s.index, s.entries) && (await depthOf(ctx, last)) < MAX_LAYERS) {
    // One more layer over the last sync's snapshot, holding only what changed since (and whiteouts of what went).
    mutable = await ctx.snapshotter.prepare(last, description);
    try {
      await applyChanges(mutable.path, dir, s, s.index, ctx.signal, keepOwners);
    } catch (err) {
      await mutable.discard();
      throw err;
    }
  } else {
    // A whole new snapshot: unchanged files cloned from the last one; without it, read from the client.
    if (!last && s.entries.some((e) => hasContent(e) && !s.staged.has(e.path))) await beforeClientReads();
    const previous = await last?.mount();
    mutable = await ctx.snapshotter.prepare(null, description);
    try {
      await fill(mutable.path, dir, s, previous, ctx.signal, keepOwners);
    } catch (err) {
      await mutable.discard();
      throw err;
    } finally {
      await previous?.release();
    }
  }
  const snapshot = await mutable.commit();
  await recordSnapshot(ns, recordId, dir.name, s, snapshot.id, ctx);
  return snapshot;
}

async function fill(root: string, dir: ClientLocalDir, s: Sync, previous: Mounted | undefined, signal: AbortSignal, keepOwners: boolean): Promise<void> {
  // Synchronous calls, paced: thousands of small files cost far more in trips through the thread pool than in the calls.
  const pacer = new Pacer();
  // The snapshot's root keeps the snapshotter's mode and owner, as BuildKit's file sync does.
  const dirs: { path: string; e: FileStat }[] = [];
  for (const e of s.entries) {
    if (signal.aborted) throw new BktError('CANCELLED', `local source "${dir.name}": cancelled`);
    if (pacer.due()) await pacer.pause();
    const target = join(root, e.path);
    const meta = metaOf(e, keepOwners);
    if (isDir(e)) {
      mkdirSync(target, { mode: 0o700 });
      dirs.push({ path: target, e });
    } else if (isLink(e)) {
      symlinkSync(e.linkname ?? '', target);
      if (isRoot) lchownSync(target, meta.uid, meta.gid);
      lutimesSync(target, meta.mtime, meta.mtime);
    } else if (isFile(e) && e.linkname !== undefined) {
      linkSync(join(root, e.linkname), target);
    } else if (isFile(e)) {
      const staged = s.staged.get(e.path);
      const expected = s.digests.get(e.path)!;
      if (staged) await placeStaged(staged, target, meta, e.size);
      else if (previous) {
        await cloneFile(join(previous.path, e.path), target, e.size);
        setMeta(target, meta);
      } else if ((await receive(dir, e.path, target, meta, signal)) !== expected) throw changedWhileReading(dir.name);
    }
    // Sockets, fifos and devices of a client directory are not sent, as with BuildKit's file sync.
  }
  for (const d of dirs.reverse()) {
    if (pacer.due()) await pacer.pause();
    setMeta(d.path, metaOf(d.e, keepOwners));
  }
}

/** Layers in the chain of `snapshot` (itself included), counted up to `MAX_LAYERS`. */
async function depthOf(ctx: BuildContext, snapshot: Snapshot): Promise<number> {
  let depth = 1;
  for (let parent = snapshot.parent; parent !== null && depth < MAX_LAYERS; depth++) {
    const p = await ctx.snapshotter.get(parent).catch(() => undefined);
    if (!p) break;
    parent = p.parent;
  }
  return depth;
}

/**
 * Whether the next snapshot can be a layer of changes over the one `index`
 * describes: the index knows its whole tree, and no hardlink is involved
 * (a changed file would have to be relinked everywhere; those trees are
 * written whole).
 */
function layerable(index: SyncIndex, entries: FileStat[]): boolean {
  if (!index.others) return false;
  for (const o of Object.values(index.others)) if (isFile(o as FileStat) && o.linkname !== undefined) return false;
  return !entries.some((e) => isFile(e) && e.linkname !== undefined);
}

/**
 * Turns the tree of `root` (the snapshot `index` describes, mounted
 * writable) into the sync's tree, touching only what differs: entries gone
 * (or of another type) removed, new and changed ones written, directories
 * whose metadata or children changed given their metadata again. The
 * result is the tree `fill` makes from scratch.
 */
async function applyChanges(root: string, dir: ClientLocalDir, s: Sync, index: SyncIndex, signal: AbortSignal, keepOwners: boolean): Promise<void> {
  const others = index.others ?? {};
  const typeOf = (mode: number) => mode & S_IFMT;
  const wanted = new Map<string, FileStat>();
  for (const e of s.entries) if (synced(e)) wanted.set(e.path, e);
  const touchedDirs = new Set<string>();
  const parentOf = (p: string) => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');
  // Removals: what the new tree lacks, or has with another type.
  const old: [string, number][] = [...Object.entries(index.files).map(([p, f]) => [p, f.mode] as [string, number]), ...Object.entries(others).map(([p, o]) => [p, o.mode] as [string, number])];
  for (const [path, mode] of old) {
    const now = wanted.get(path);
    if (now && typeOf(now.mode) === typeOf(mode)) continue;
    if (signal.aborted) throw new BktError('CANCELLED', `local source "${dir.name}": cancelled`);
    await rm(join(root, path), { recursive: true, force: true });
    touchedDirs.add(parentOf(path));
  }
  const setOwner = async (path: string, e: FileStat) => {
    if (isRoot) await lchown(path, keepOwners ? e.uid : 0, keepOwners ? e.gid : 0);
  };
  const dirs: { path: string; e: FileStat }[] = [];
  for (const e of wanted.values()) {
    if (signal.aborted) throw new BktError('CANCELLED', `local source "${dir.name}": cancelled`);
    const target = join(root, e.path);
    const mtime = new Date(e.mtimeMs);
    const f = index.files[e.path];
    const o = others[e.path];
    const before = f ?? o;
    const sameType = before !== undefined && typeOf(before.mode) === typeOf(e.mode);
    const sameMeta = sameType && before.mode === e.mode && before.uid === e.uid && before.gid === e.gid && before.mtimeMs === e.mtimeMs;
    if (isDir(e)) {
      if (!sameType) {
        await mkdir(target, { mode: 0o700 });
        touchedDirs.add(parentOf(e.path));
      }
      dirs.push({ path: target, e });
      if (!sameMeta) touchedDirs.add(e.path);
    } else if (isLink(e)) {
      if (sameMeta && o?.linkname === e.linkname) continue;
      if (sameType) await rm(target, { force: true });
      await symlink(e.linkname ?? '', target);
      await setOwner(target, e);
      await lutimes(target, mtime, mtime);
      touchedDirs.add(parentOf(e.path));
    } else if (hasContent(e)) {
      const digest = s.digests.get(e.path)!;
      if (sameMeta && f?.digest === digest) continue;
      const staged = s.staged.get(e.path);
      if (f?.digest === digest && sameType) {
        // Same content, other metadata: only the metadata changes.
      } else {
        if (sameType) await rm(target, { force: true });
        if (staged) await placeStaged(staged, target, metaOf(e, keepOwners), e.size);
        else if ((await receive(dir, e.path, target, metaOf(e, keepOwners), signal)) !== digest) throw changedWhileReading(dir.name);
        touchedDirs.add(parentOf(e.path));
        continue; // written with its metadata
      }
      await setOwner(target, e);
      await chmod(target, e.mode & 0o7777);
      await utimes(target, mtime, mtime);
    }
  }
  // Directories last, deepest first (writing into a directory changes its mtime); the root keeps the snapshotter's.
  for (const d of dirs.reverse()) {
    if (!touchedDirs.has(d.e.path)) continue;
    const mtime = new Date(d.e.mtimeMs);
    await setOwner(d.path, d.e);
    await chmod(d.path, d.e.mode & 0o7777);
    await utimes(d.path, mtime, mtime);
  }
}

/** The snapshot, telling content checksums the digests of its files (which the sync computed or trusted from its index). */
function withDigests(snapshot: Snapshot, digests: ReadonlyMap<string, Digest>): Snapshot {
  return {
    id: snapshot.id,
    parent: snapshot.parent,
    ...(snapshot.createdAt ? { createdAt: snapshot.createdAt } : {}),
    mount: () => snapshot.mount(),
    layerPath: () => snapshot.layerPath(),
    contentDigests: () => digests,
  };
}
