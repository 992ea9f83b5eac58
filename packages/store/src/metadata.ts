/**
 * The metadata database (`metadata.db`, SQLite in WAL mode): committed
 * snapshot records, cache records, content-store blob references, build
 * history (and what builds recorded of their progress), plugin records, and the sessions (processes) that have the store
 * open with their leases. Every multi-row change runs in one transaction, so
 * a crash leaves either all of it or none of it.
 *
 * Several processes use one database at once: WAL lets readers run beside
 * one writer, writers wait for each other (a busy timeout, never an error),
 * and every transaction that reads before it writes is `BEGIN IMMEDIATE`, so
 * what it read cannot change before it commits.
 *
 * Invariants: a `snapshots` row exists only for a complete snapshot directory;
 * a cache record's results and a blob reference's snapshot point only at
 * existing rows (foreign keys; a blob reference goes with its snapshot).
 *
 * `meta.schema_version` is the layout's version. There are no migrations yet:
 * a database of a newer version is refused (it may hold what this code would
 * drop); one without the key is this session's layout and is stamped.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { BktError, type BlobOwner, type BlobRef, type Digest } from '@bkt/core';
import type { BuildHistoryRecord } from './history.js';

/** The version of the layout below; bump it (and add a migration) when a table changes incompatibly. */
export const SCHEMA_VERSION = 1;

/**
 * The database header's `user_version` once the layout below is complete (every table and index, the
 * columns added since, `meta.schema_version` stamped). Bump it whenever `SCHEMA` or the columns added
 * at open change, so that an existing database gets them on its next open.
 */
const LAYOUT_MARK = 1;

export interface SnapshotRow {
  id: string;
  parent: string | null;
  description: string;
  recordType: string;
  createdAt: number;
  lastUsedAt: number | null;
  usageCount: number;
  /** Bytes of the snapshot's own layer; null until first measured. */
  size: number | null;
}

export interface CacheRecord {
  /** The key downstream vertices derive theirs from (the content key when the op has one). */
  canonical: string;
  /** One snapshot id per output; null for an empty (scratch) output. */
  outputs: (string | null)[];
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
  id TEXT PRIMARY KEY,
  parent TEXT REFERENCES snapshots(id),
  description TEXT NOT NULL DEFAULT '',
  record_type TEXT NOT NULL DEFAULT 'regular',
  created_at INTEGER NOT NULL,
  last_used_at INTEGER,
  usage_count INTEGER NOT NULL DEFAULT 0,
  size INTEGER
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);
CREATE TABLE IF NOT EXISTS cache_keys (
  key TEXT PRIMARY KEY,
  canonical TEXT NOT NULL,
  outputs INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cache_results (
  key TEXT NOT NULL REFERENCES cache_keys(key) ON DELETE CASCADE,
  output INTEGER NOT NULL,
  snapshot TEXT REFERENCES snapshots(id),
  PRIMARY KEY (key, output)
);
CREATE INDEX IF NOT EXISTS cache_results_snapshot ON cache_results(snapshot);
CREATE TABLE IF NOT EXISTS blob_refs (
  digest TEXT NOT NULL,
  owner_kind TEXT NOT NULL CHECK (owner_kind IN ('snapshot', 'name')),
  owner TEXT NOT NULL,
  snapshot TEXT REFERENCES snapshots(id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (digest, owner_kind, owner),
  CHECK ((owner_kind = 'snapshot') = (snapshot IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS blob_refs_owner ON blob_refs(owner_kind, owner);
CREATE INDEX IF NOT EXISTS blob_refs_snapshot ON blob_refs(snapshot);
CREATE TABLE IF NOT EXISTS builds (
  ref TEXT PRIMARY KEY,
  frontend TEXT NOT NULL DEFAULT '',
  frontend_attrs TEXT NOT NULL DEFAULT '{}',
  exporters TEXT NOT NULL DEFAULT '[]',
  status TEXT NOT NULL,
  error_code TEXT,
  error_message TEXT,
  created_at INTEGER NOT NULL,
  completed_at INTEGER,
  num_total_steps INTEGER NOT NULL DEFAULT 0,
  num_cached_steps INTEGER NOT NULL DEFAULT 0,
  num_completed_steps INTEGER NOT NULL DEFAULT 0,
  exporter_response TEXT NOT NULL DEFAULT '{}',
  pinned INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS builds_created ON builds(created_at);
CREATE TABLE IF NOT EXISTS build_progress (
  ref TEXT NOT NULL,
  seq INTEGER NOT NULL,
  event TEXT NOT NULL,
  data BLOB,
  file_offset INTEGER,
  PRIMARY KEY (ref, seq)
);
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  pid INTEGER NOT NULL,
  started TEXT NOT NULL,
  opened_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
  session TEXT NOT NULL,
  kind TEXT NOT NULL,
  target TEXT NOT NULL,
  PRIMARY KEY (session, kind, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS leases_target ON leases(kind, target);
CREATE TABLE IF NOT EXISTS records (
  namespace TEXT NOT NULL,
  id TEXT NOT NULL,
  record_type TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  mutable INTEGER NOT NULL DEFAULT 0,
  pinned INTEGER NOT NULL DEFAULT 0,
  data TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  last_used_at INTEGER,
  usage_count INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (namespace, id)
);
CREATE TABLE IF NOT EXISTS record_snapshots (
  namespace TEXT NOT NULL,
  id TEXT NOT NULL,
  snapshot TEXT NOT NULL REFERENCES snapshots(id),
  PRIMARY KEY (namespace, id, snapshot),
  FOREIGN KEY (namespace, id) REFERENCES records(namespace, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS record_snapshots_snapshot ON record_snapshots(snapshot);
`;

/** What a lease keeps in use: a snapshot (id), a blob (digest), a plugin record (`<namespace>/<id>`), a running build (ref). */
export type LeaseKind = 'snapshot' | 'blob' | 'record' | 'build';

/** A process's use of the store: leases name it; it is gone when its process is (see sessions.ts). */
export interface SessionRow {
  id: string;
  pid: number;
  /** The process's start time (`/proc/<pid>/stat`), so a reused pid is not taken for it. */
  started: string;
}

/** A plugin record's row (the records API, records.ts). */
export interface RecordRow {
  namespace: string;
  id: string;
  recordType: string;
  description: string;
  mutable: boolean;
  pinned: boolean;
  data: Record<string, string>;
  createdAt: number;
  lastUsedAt: number | null;
  usageCount: number;
  snapshots: string[];
  blobs: Digest[];
}

/** The blob-reference owner name a plugin record's blobs are held under. */
export function recordOwner(namespace: string, id: string): string {
  return `record:${namespace}/${id}`;
}

/** One recorded progress event of a build (see progress-log.ts). */
export interface ProgressRow {
  seq: number;
  /** The event as JSON; a log event's bytes are left out. */
  event: string;
  /** A log event's bytes, when the database keeps them. */
  data: Buffer | null;
  /** Else where they are in the build's log file. */
  fileOffset: number | null;
}

interface RawBuildRow {
  ref: string;
  frontend: string;
  frontend_attrs: string;
  exporters: string;
  status: BuildHistoryRecord['status'];
  error_code: string | null;
  error_message: string | null;
  created_at: number;
  completed_at: number | null;
  num_total_steps: number;
  num_cached_steps: number;
  num_completed_steps: number;
  exporter_response: string;
  pinned: number;
}

function toBuild(r: RawBuildRow): BuildHistoryRecord {
  return {
    ref: r.ref,
    frontend: r.frontend,
    frontendAttrs: JSON.parse(r.frontend_attrs) as Record<string, string>,
    exporters: JSON.parse(r.exporters) as BuildHistoryRecord['exporters'],
    status: r.status,
    ...(r.error_code !== null ? { error: { code: r.error_code, message: r.error_message ?? '' } } : {}),
    createdAt: new Date(r.created_at),
    ...(r.completed_at !== null ? { completedAt: new Date(r.completed_at) } : {}),
    numTotalSteps: r.num_total_steps,
    numCachedSteps: r.num_cached_steps,
    numCompletedSteps: r.num_completed_steps,
    exporterResponse: JSON.parse(r.exporter_response) as Record<string, string>,
    pinned: r.pinned !== 0,
  };
}

function ownerColumns(owner: BlobOwner): { kind: 'snapshot' | 'name'; owner: string; snapshot: string | null } {
  if ('snapshot' in owner && typeof owner.snapshot === 'string' && owner.snapshot !== '') {
    return { kind: 'snapshot', owner: owner.snapshot, snapshot: owner.snapshot };
  }
  if ('name' in owner && typeof owner.name === 'string' && owner.name !== '') return { kind: 'name', owner: owner.name, snapshot: null };
  throw new BktError('INVALID_ARGUMENT', `invalid blob owner ${JSON.stringify(owner)} (want { snapshot: id } or { name })`);
}

interface RawRecordRow {
  namespace: string;
  id: string;
  record_type: string;
  description: string;
  mutable: number;
  pinned: number;
  data: string;
  created_at: number;
  last_used_at: number | null;
  usage_count: number;
}

interface RawSnapshotRow {
  id: string;
  parent: string | null;
  description: string;
  record_type: string;
  created_at: number;
  last_used_at: number | null;
  usage_count: number;
  size: number | null;
}

function toRow(r: RawSnapshotRow): SnapshotRow {
  return {
    id: r.id,
    parent: r.parent,
    description: r.description,
    recordType: r.record_type,
    createdAt: r.created_at,
    lastUsedAt: r.last_used_at,
    usageCount: r.usage_count,
    size: r.size,
  };
}

/**
 * Set by a build that bundles better-sqlite3's JavaScript (the `bkt`
 * executable: packages/cli/tsup.config.ts, esbuild's `define`) to the version
 * of the package it bundled. Not defined where `better-sqlite3` is imported
 * from the installed package (the store's own dist, its sources).
 */
declare const __BKT_BUNDLED_BETTER_SQLITE3_VERSION__: string | undefined;
const BUNDLED_SQLITE_VERSION: string | undefined =
  typeof __BKT_BUNDLED_BETTER_SQLITE3_VERSION__ === 'string' ? __BKT_BUNDLED_BETTER_SQLITE3_VERSION__ : undefined;

/** better-sqlite3 as the store opens databases with it: the `Database` constructor and its addon (`nativeBinding`). */
export interface SqliteModule {
  /** The root of the installed better-sqlite3 package (the store's dependency). */
  root: string;
  Database: typeof Database;
  /** The addon's path, or its module (better-sqlite3 takes either). */
  nativeBinding: string | object;
}

let sqlite: SqliteModule | undefined;
/** better-sqlite3 as the installed package (the store's dependency) provides it; see `sqliteModuleOf`. */
export function sqliteModule(): SqliteModule {
  sqlite ??= sqliteModuleOf(sqlitePackageRoot(import.meta.url, BUNDLED_SQLITE_VERSION !== undefined), BUNDLED_SQLITE_VERSION, Database);
  return sqlite;
}

/**
 * The root of the installed better-sqlite3 package: resolved from the module
 * at `fromUrl` (the store's own file), or, when this code is bundled into
 * another package's executable (`bundled`), from the `@bkt/store` package
 * that executable depends on — better-sqlite3 is the store's dependency, and
 * may be installed only under the store's `node_modules`.
 */
export function sqlitePackageRoot(fromUrl: string, bundled: boolean): string {
  let from = createRequire(fromUrl);
  if (bundled) from = createRequire(from.resolve('@bkt/store/package.json'));
  return dirname(from.resolve('better-sqlite3/package.json'));
}

/**
 * better-sqlite3's JavaScript and addon, both of the installed package at
 * `root`, so that one version's halves are never paired with another's
 * (the package promises nothing across versions). `imported` is what this
 * module imported as `better-sqlite3`: the installed package itself when
 * `bundledVersion` is undefined (Node resolved it from the store), else a copy
 * bundled into an executable at its build, used only when the installed
 * package's version is `bundledVersion`; otherwise the installed package's
 * own JavaScript is required.
 */
export function sqliteModuleOf(root: string, bundledVersion: string | undefined, imported: typeof Database): SqliteModule {
  let Db = imported;
  if (bundledVersion !== undefined) {
    const manifest = join(root, 'package.json');
    const { version } = JSON.parse(readFileSync(manifest, 'utf8')) as { version?: unknown };
    if (version !== bundledVersion) Db = createRequire(manifest)(root) as typeof Database;
  }
  return { root, Database: Db, nativeBinding: sqliteAddonOf(root) };
}

/**
 * The addon of the better-sqlite3 package at `root`, handed to every
 * `Database` (`nativeBinding`): the file its own lookup (the `bindings`
 * package, from the package's root) loads. When that is
 * `build/Release/better_sqlite3.node` (no `build/better_sqlite3.node` or
 * `build/Debug/` one before it) its path, loaded without `bindings`' search
 * of a dozen candidate paths and a stack trace; otherwise the module
 * `bindings` loads, searching from the package's root, given explicitly
 * (better-sqlite3 may be bundled into an executable, where the stack would
 * name the bundle's file, not the package).
 */
export function sqliteAddonOf(root: string): string | object {
  const build = join(root, 'build');
  const release = join(build, 'Release', 'better_sqlite3.node');
  if (!existsSync(join(build, 'better_sqlite3.node')) && !existsSync(join(build, 'Debug', 'better_sqlite3.node')) && existsSync(release)) return release;
  const req = createRequire(join(root, 'package.json'));
  const bindings = req('bindings') as (opts: { bindings: string; module_root: string }) => object;
  return bindings({ bindings: 'better_sqlite3.node', module_root: root });
}

export class MetadataDB {
  readonly #db: Database.Database;
  readonly #stmts;

  constructor(file: string) {
    // Writers of other processes are waited for (better-sqlite3's busy timeout), up to 10 minutes.
    // better-sqlite3 takes the addon's module as well as its path (its typings name the path only).
    const { Database: Db, nativeBinding } = sqliteModule();
    this.#db = new Db(file, { timeout: 600_000, nativeBinding: nativeBinding as string });
    this.#db.pragma('journal_mode = WAL');
    // NORMAL is durable against process crashes (kill -9) in WAL mode; a power loss may lose the last commits, never consistency.
    this.#db.pragma('synchronous = NORMAL');
    this.#db.pragma('foreign_keys = ON');
    try {
      checkSchemaVersion(this.#db, file);
    } catch (err) {
      this.#db.close();
      throw err;
    }
    // The layout in one transaction: one commit for a new database, not one per statement. A database
    // whose header carries LAYOUT_MARK has it all (tables, indexes, added columns, the stamped version):
    // an open then reads one header field instead of running the DDL.
    if ((this.#db.pragma('user_version', { simple: true }) as number) < LAYOUT_MARK) {
      this.#db.transaction(() => {
        this.#db.exec(SCHEMA);
        // A records table made before pinned records: add the column (every existing record is unpinned).
        const recordColumns = this.#db.prepare('PRAGMA table_info(records)').all() as { name: string }[];
        if (!recordColumns.some((c) => c.name === 'pinned')) this.#db.exec('ALTER TABLE records ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0');
        // A builds table made before pinned builds: the same (every existing build is unpinned).
        const buildColumns = this.#db.prepare('PRAGMA table_info(builds)').all() as { name: string }[];
        if (!buildColumns.some((c) => c.name === 'pinned')) this.#db.exec('ALTER TABLE builds ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0');
        this.#db.prepare("INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)").run(String(SCHEMA_VERSION));
        this.#db.pragma(`user_version = ${LAYOUT_MARK}`);
      }).immediate();
    }
    // Each statement is prepared on its first use: a build uses a few of them.
    this.#stmts = lazyStatements(this.#db, {
      getMeta: 'SELECT value FROM meta WHERE name = ?',
      setMeta: 'INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)',
      insertSnapshot: `INSERT INTO snapshots (id, parent, description, record_type, created_at, last_used_at, usage_count, size)
         VALUES (@id, @parent, @description, @recordType, @createdAt, @lastUsedAt, @usageCount, @size)`,
      getSnapshot: 'SELECT * FROM snapshots WHERE id = ?',
      allSnapshots: 'SELECT * FROM snapshots ORDER BY created_at',
      childCount: 'SELECT COUNT(*) AS n FROM snapshots WHERE parent = ?',
      deleteSnapshot: 'DELETE FROM snapshots WHERE id = ?',
      keysOfSnapshot: 'SELECT DISTINCT key FROM cache_results WHERE snapshot = ?',
      referencedSnapshots: 'SELECT DISTINCT snapshot FROM cache_results WHERE snapshot IS NOT NULL',
      touch: 'UPDATE snapshots SET last_used_at = ?, usage_count = usage_count + 1 WHERE id = ?',
      setSize: 'UPDATE snapshots SET size = ? WHERE id = ?',
      getKey: 'SELECT canonical, outputs FROM cache_keys WHERE key = ?',
      getResults: 'SELECT output, snapshot FROM cache_results WHERE key = ?',
      putKey: 'INSERT OR REPLACE INTO cache_keys (key, canonical, outputs, created_at) VALUES (?, ?, ?, ?)',
      putResult: 'INSERT INTO cache_results (key, output, snapshot) VALUES (?, ?, ?)',
      deleteKey: 'DELETE FROM cache_keys WHERE key = ?',
      addRef: 'INSERT OR IGNORE INTO blob_refs (digest, owner_kind, owner, snapshot, created_at) VALUES (?, ?, ?, ?, ?)',
      removeRef: 'DELETE FROM blob_refs WHERE digest = ? AND owner_kind = ? AND owner = ?',
      refsOfDigest: 'SELECT * FROM blob_refs WHERE digest = ? ORDER BY created_at, rowid',
      refsOfOwner: 'SELECT * FROM blob_refs WHERE owner_kind = ? AND owner = ? ORDER BY created_at, rowid',
      referencedBlobs: 'SELECT DISTINCT digest FROM blob_refs',
      // Rewriting a build's record (the build finishing) keeps its pin.
      putBuild: `INSERT OR REPLACE INTO builds (ref, frontend, frontend_attrs, exporters, status, error_code, error_message, created_at,
           completed_at, num_total_steps, num_cached_steps, num_completed_steps, exporter_response, pinned)
         VALUES (@ref, @frontend, @frontendAttrs, @exporters, @status, @errorCode, @errorMessage, @createdAt,
           @completedAt, @numTotalSteps, @numCachedSteps, @numCompletedSteps, @exporterResponse,
           COALESCE((SELECT pinned FROM builds WHERE ref = @ref), 0))`,
      pinBuild: 'UPDATE builds SET pinned = ? WHERE ref = ?',
      pinRecord: 'UPDATE records SET pinned = ? WHERE namespace = ? AND id = ?',
      listBuilds: 'SELECT * FROM builds ORDER BY created_at DESC, rowid DESC',
      getBuild: 'SELECT * FROM builds WHERE ref = ?',
      interruptBuild: "UPDATE builds SET status = 'interrupted', completed_at = ?, error_code = 'INTERNAL', error_message = ? WHERE ref = ? AND status = 'running'",
      addSession: 'INSERT OR REPLACE INTO sessions (id, pid, started, opened_at) VALUES (?, ?, ?, ?)',
      allSessions: 'SELECT id, pid, started FROM sessions',
      deleteSession: 'DELETE FROM sessions WHERE id = ?',
      deleteLeasesOf: 'DELETE FROM leases WHERE session = ?',
      addLease: 'INSERT OR IGNORE INTO leases (session, kind, target) VALUES (?, ?, ?)',
      removeLease: 'DELETE FROM leases WHERE session = ? AND kind = ? AND target = ?',
      leasesOfKind: 'SELECT session, target FROM leases WHERE kind = ?',
      leasesOfTarget: 'SELECT session FROM leases WHERE kind = ? AND target = ?',
      recordSnapshotsOf: 'SELECT 1 FROM record_snapshots WHERE snapshot = ? LIMIT 1',
      putRecord: `INSERT INTO records (namespace, id, record_type, description, mutable, pinned, data, created_at, last_used_at, usage_count)
         VALUES (@namespace, @id, @recordType, @description, @mutable, @pinned, @data, @now, NULL, 0)
         ON CONFLICT (namespace, id) DO UPDATE SET record_type = @recordType, description = @description, mutable = @mutable, pinned = @pinned, data = @data`,
      getRecord: 'SELECT * FROM records WHERE namespace = ? AND id = ?',
      recordsOf: 'SELECT * FROM records WHERE namespace = ? ORDER BY created_at, id',
      allRecords: 'SELECT * FROM records ORDER BY created_at, namespace, id',
      deleteRecord: 'DELETE FROM records WHERE namespace = ? AND id = ?',
      touchRecord: 'UPDATE records SET last_used_at = ?, usage_count = usage_count + 1 WHERE namespace = ? AND id = ?',
      addRecordSnapshot: 'INSERT OR IGNORE INTO record_snapshots (namespace, id, snapshot) VALUES (?, ?, ?)',
      deleteRecordSnapshots: 'DELETE FROM record_snapshots WHERE namespace = ? AND id = ?',
      snapshotsOfRecord: 'SELECT snapshot FROM record_snapshots WHERE namespace = ? AND id = ?',
      blobsOfOwner: "SELECT digest FROM blob_refs WHERE owner_kind = 'name' AND owner = ?",
      deleteRefsOfOwner: "DELETE FROM blob_refs WHERE owner_kind = 'name' AND owner = ?",
      buildsBeyond: `SELECT ref FROM builds WHERE status != 'running' AND pinned = 0 AND (created_at < ? OR ref NOT IN
           (SELECT ref FROM builds WHERE status != 'running' AND pinned = 0 ORDER BY created_at DESC, rowid DESC LIMIT ?))`,
      deleteBuild: 'DELETE FROM builds WHERE ref = ?',
      deleteProgress: 'DELETE FROM build_progress WHERE ref = ?',
      addProgress: 'INSERT OR REPLACE INTO build_progress (ref, seq, event, data, file_offset) VALUES (?, ?, ?, ?, ?)',
      progressPage: 'SELECT seq, event, data, file_offset FROM build_progress WHERE ref = ? AND seq > ? ORDER BY seq LIMIT ?',
      progressPageNoData: 'SELECT seq, event, NULL AS data, file_offset FROM build_progress WHERE ref = ? AND seq > ? ORDER BY seq LIMIT ?',
    });
  }

  getMeta(name: string): string | undefined {
    return (this.#stmts.getMeta.get(name) as { value: string } | undefined)?.value;
  }

  setMeta(name: string, value: string): void {
    this.#stmts.setMeta.run(name, value);
  }

  insertSnapshot(row: SnapshotRow): void {
    this.#stmts.insertSnapshot.run(row);
  }

  getSnapshot(id: string): SnapshotRow | undefined {
    const r = this.#stmts.getSnapshot.get(id) as RawSnapshotRow | undefined;
    return r && toRow(r);
  }

  listSnapshots(): SnapshotRow[] {
    return (this.#stmts.allSnapshots.all() as RawSnapshotRow[]).map(toRow);
  }

  hasChildren(id: string): boolean {
    return (this.#stmts.childCount.get(id) as { n: number }).n > 0;
  }

  /** Ids of snapshots some cache record points at. */
  referencedSnapshots(): Set<string> {
    return new Set((this.#stmts.referencedSnapshots.all() as { snapshot: string }[]).map((r) => r.snapshot));
  }

  /**
   * Deletes snapshot rows and, in the same transaction, every cache record
   * pointing at one of them. Children must be deleted first (or in the same call, before their parent).
   */
  deleteSnapshots(ids: string[]): void {
    this.#db
      .transaction(() => {
        for (const id of ids) this.#deleteSnapshot(id);
      })
      .immediate();
  }

  #deleteSnapshot(id: string): void {
    for (const { key } of this.#stmts.keysOfSnapshot.all(id) as { key: string }[]) this.#stmts.deleteKey.run(key);
    this.#stmts.deleteSnapshot.run(id);
  }

  /**
   * Deletes, in one transaction, those of `ids` (children first) that no live
   * session leases, no plugin record references and that have no child left;
   * returns the ids deleted. What a lease or record taken meanwhile by another
   * process protects is thus never deleted.
   */
  deleteUnusedSnapshots(ids: string[], isLive: (session: string) => boolean): string[] {
    return this.#db
      .transaction(() => {
        const deleted: string[] = [];
        for (const id of ids) {
          if (this.#leasedByLive('snapshot', id, isLive)) continue;
          if (this.#stmts.recordSnapshotsOf.get(id)) continue;
          if (this.hasChildren(id)) continue;
          this.#deleteSnapshot(id);
          deleted.push(id);
        }
        return deleted;
      })
      .immediate();
  }

  /** Marks snapshots used now (a cache hit or a build using them). */
  touch(ids: string[], now = Date.now()): void {
    if (ids.length === 0) return;
    this.#db
      .transaction(() => {
        for (const id of ids) this.#stmts.touch.run(now, id);
      })
      .immediate();
  }

  /** Remembers a snapshot's measured size (null: forgets it). */
  setSize(id: string, size: number | null): void {
    this.#stmts.setSize.run(size, id);
  }

  getCache(key: string): CacheRecord | undefined {
    const k = this.#stmts.getKey.get(key) as { canonical: string; outputs: number } | undefined;
    if (!k) return undefined;
    const outputs: (string | null)[] = new Array(k.outputs).fill(null);
    for (const r of this.#stmts.getResults.all(key) as { output: number; snapshot: string | null }[]) {
      if (r.output < outputs.length) outputs[r.output] = r.snapshot;
    }
    return { canonical: k.canonical, outputs };
  }

  /** Records (or replaces) the same result under each of `keys`, in one transaction. */
  putCache(keys: string[], record: CacheRecord, now = Date.now()): void {
    this.#db
      .transaction(() => {
        for (const key of keys) {
          this.#stmts.deleteKey.run(key);
          this.#stmts.putKey.run(key, record.canonical, record.outputs.length, now);
          record.outputs.forEach((snap, i) => this.#stmts.putResult.run(key, i, snap));
        }
      })
      .immediate();
  }

  deleteCache(key: string): void {
    this.#stmts.deleteKey.run(key);
  }

  // --- blob references ------------------------------------------------------

  /** Records that `owner` uses blob `digest` (idempotent). A snapshot owner must exist. */
  addBlobRef(digest: Digest, owner: BlobOwner, now = Date.now()): void {
    const o = ownerColumns(owner);
    if (o.snapshot !== null && !this.getSnapshot(o.snapshot)) {
      throw new BktError('NOT_FOUND', `snapshot ${o.snapshot} is not in the store (blob reference to ${digest})`, { snapshot: o.snapshot, digest });
    }
    this.#stmts.addRef.run(digest, o.kind, o.owner, o.snapshot, now);
  }

  removeBlobRef(digest: Digest, owner: BlobOwner): void {
    const o = ownerColumns(owner);
    this.#stmts.removeRef.run(digest, o.kind, o.owner);
  }

  /** The references of one blob, or those one owner holds; oldest first. */
  blobRefs(of: { digest: Digest } | BlobOwner): BlobRef[] {
    type Raw = { digest: Digest; owner_kind: 'snapshot' | 'name'; owner: string; created_at: number };
    let rows: Raw[];
    if ('digest' in of) rows = this.#stmts.refsOfDigest.all(of.digest) as Raw[];
    else {
      const o = ownerColumns(of);
      rows = this.#stmts.refsOfOwner.all(o.kind, o.owner) as Raw[];
    }
    return rows.map((r) => ({
      digest: r.digest,
      owner: r.owner_kind === 'snapshot' ? { snapshot: r.owner } : { name: r.owner },
      createdAt: new Date(r.created_at),
    }));
  }

  /** Digests some reference keeps alive. */
  referencedBlobs(): Set<string> {
    return new Set((this.#stmts.referencedBlobs.all() as { digest: string }[]).map((r) => r.digest));
  }

  /**
   * Removes blob `digest` with `remove` (a synchronous unlink) inside one
   * transaction, unless something references it or a live session other than
   * `self` leases it (a writer that has not referenced it yet). False when kept.
   */
  removeBlobIfUnused(digest: Digest, self: string, isLive: (session: string) => boolean, remove: () => void): boolean {
    return this.#db
      .transaction(() => {
        if ((this.#stmts.refsOfDigest.all(digest) as unknown[]).length > 0) return false;
        if (this.#leasedByLive('blob', digest, (s) => s !== self && isLive(s))) return false;
        remove();
        return true;
      })
      .immediate();
  }

  /** `addBlobRef` after `check()` (e.g. the blob file exists), in one transaction with a prune's removal. */
  addBlobRefChecked(digest: Digest, owner: BlobOwner, check: () => void): void {
    this.#db.transaction(() => {
      check();
      this.addBlobRef(digest, owner);
    }).immediate();
  }

  // --- sessions and leases ----------------------------------------------------

  addSession(s: SessionRow, now = Date.now()): void {
    this.#stmts.addSession.run(s.id, s.pid, s.started, now);
  }

  sessions(): SessionRow[] {
    return this.#stmts.allSessions.all() as SessionRow[];
  }

  /** Forgets a session and its leases. */
  endSession(id: string): void {
    this.#db
      .transaction(() => {
        this.#stmts.deleteLeasesOf.run(id);
        this.#stmts.deleteSession.run(id);
      })
      .immediate();
  }

  addLease(session: string, kind: LeaseKind, target: string): void {
    this.#stmts.addLease.run(session, kind, target);
  }

  removeLease(session: string, kind: LeaseKind, target: string): void {
    this.#stmts.removeLease.run(session, kind, target);
  }

  /** Targets of `kind` that some session for which `isLive` holds leases. */
  leased(kind: LeaseKind, isLive: (session: string) => boolean): Set<string> {
    const rows = this.#stmts.leasesOfKind.all(kind) as { session: string; target: string }[];
    return new Set(rows.filter((r) => isLive(r.session)).map((r) => r.target));
  }

  #leasedByLive(kind: LeaseKind, target: string, isLive: (session: string) => boolean): boolean {
    return (this.#stmts.leasesOfTarget.all(kind, target) as { session: string }[]).some((r) => isLive(r.session));
  }

  /**
   * Leases snapshot `id` for `session` if its row exists, in one transaction
   * with a prune's deletion; false when the snapshot is gone.
   */
  leaseSnapshotIfPresent(session: string, id: string): boolean {
    return this.#db
      .transaction(() => {
        if (!this.#stmts.getSnapshot.get(id)) return false;
        this.#stmts.addLease.run(session, 'snapshot', id);
        return true;
      })
      .immediate();
  }

  // --- plugin records ---------------------------------------------------------

  /**
   * Creates or updates a record and replaces its references, in one
   * transaction; a referenced snapshot or blob must exist (`check` throws otherwise).
   */
  putRecord(r: Omit<RecordRow, 'createdAt' | 'lastUsedAt' | 'usageCount'>, checkBlob: (digest: Digest) => void, now = Date.now()): void {
    this.#db
      .transaction(() => {
        for (const snap of r.snapshots) {
          if (!this.#stmts.getSnapshot.get(snap)) {
            throw new BktError('NOT_FOUND', `snapshot ${snap} is not in the store (record ${r.namespace}/${r.id})`, { snapshot: snap });
          }
        }
        for (const d of r.blobs) checkBlob(d);
        this.#stmts.putRecord.run({
          namespace: r.namespace,
          id: r.id,
          recordType: r.recordType,
          description: r.description,
          mutable: r.mutable ? 1 : 0,
          pinned: r.pinned ? 1 : 0,
          data: JSON.stringify(r.data),
          now,
        });
        this.#stmts.deleteRecordSnapshots.run(r.namespace, r.id);
        for (const snap of r.snapshots) this.#stmts.addRecordSnapshot.run(r.namespace, r.id, snap);
        const owner = recordOwner(r.namespace, r.id);
        this.#stmts.deleteRefsOfOwner.run(owner);
        for (const d of r.blobs) this.#stmts.addRef.run(d, 'name', owner, null, now);
      })
      .immediate();
  }

  getRecord(namespace: string, id: string): RecordRow | undefined {
    const raw = this.#stmts.getRecord.get(namespace, id) as RawRecordRow | undefined;
    return raw && this.#toRecord(raw);
  }

  /** The records of one namespace, or of all. */
  listRecords(namespace?: string): RecordRow[] {
    const raws = (namespace === undefined ? this.#stmts.allRecords.all() : this.#stmts.recordsOf.all(namespace)) as RawRecordRow[];
    return raws.map((r) => this.#toRecord(r));
  }

  touchRecord(namespace: string, id: string, now = Date.now()): void {
    this.#stmts.touchRecord.run(now, namespace, id);
  }

  /**
   * Deletes a record with its references, then runs `removeFiles` (a
   * synchronous rename of its files out of the way), in one transaction,
   * unless a live session holds it: then nothing changes and the result is false.
   */
  deleteRecordIfUnheld(namespace: string, id: string, isLive: (session: string) => boolean, removeFiles: () => void): boolean {
    return this.#db
      .transaction(() => {
        if (this.#leasedByLive('record', `${namespace}/${id}`, isLive)) return false;
        this.#stmts.deleteRecord.run(namespace, id);
        this.#stmts.deleteRefsOfOwner.run(recordOwner(namespace, id));
        removeFiles();
        return true;
      })
      .immediate();
  }

  /** Leases record `<namespace>/<id>` for `session` (it need not exist yet). */
  holdRecord(session: string, namespace: string, id: string): void {
    this.#stmts.addLease.run(session, 'record', `${namespace}/${id}`);
  }

  #toRecord(r: RawRecordRow): RecordRow {
    return {
      namespace: r.namespace,
      id: r.id,
      recordType: r.record_type,
      description: r.description,
      mutable: r.mutable !== 0,
      pinned: r.pinned !== 0,
      data: JSON.parse(r.data) as Record<string, string>,
      createdAt: r.created_at,
      lastUsedAt: r.last_used_at,
      usageCount: r.usage_count,
      snapshots: (this.#stmts.snapshotsOfRecord.all(r.namespace, r.id) as { snapshot: string }[]).map((x) => x.snapshot),
      blobs: (this.#stmts.blobsOfOwner.all(recordOwner(r.namespace, r.id)) as { digest: Digest }[]).map((x) => x.digest),
    };
  }

  // --- build history ----------------------------------------------------------

  /** Inserts or replaces a build's record. The caller redacts secrets first. */
  putBuild(b: BuildHistoryRecord): void {
    this.#stmts.putBuild.run({
      ref: b.ref,
      frontend: b.frontend,
      frontendAttrs: JSON.stringify(b.frontendAttrs),
      exporters: JSON.stringify(b.exporters),
      status: b.status,
      errorCode: b.error?.code ?? null,
      errorMessage: b.error?.message ?? null,
      createdAt: b.createdAt.getTime(),
      completedAt: b.completedAt?.getTime() ?? null,
      numTotalSteps: b.numTotalSteps,
      numCachedSteps: b.numCachedSteps,
      numCompletedSteps: b.numCompletedSteps,
      exporterResponse: JSON.stringify(b.exporterResponse),
    });
  }

  /** Build records, newest first. */
  listBuilds(): BuildHistoryRecord[] {
    return (this.#stmts.listBuilds.all() as RawBuildRow[]).map(toBuild);
  }

  getBuild(ref: string): BuildHistoryRecord | undefined {
    const r = this.#stmts.getBuild.get(ref) as RawBuildRow | undefined;
    return r && toBuild(r);
  }

  /** Marks builds still `running` as interrupted unless a live session leases them: the process that ran them is gone. */
  interruptBuilds(isLive: (session: string) => boolean, now = Date.now()): void {
    const running = this.leased('build', isLive);
    this.#db
      .transaction(() => {
        for (const b of this.listBuilds()) {
          if (b.status === 'running' && !running.has(b.ref)) this.#stmts.interruptBuild.run(now, 'interrupted: the process running the build exited before it finished', b.ref);
        }
      })
      .immediate();
  }

  /** Refs of the finished builds beyond the newest `maxEntries` or created before `maxAge` ms ago. */
  buildsBeyond(maxEntries: number, maxAge: number, now = Date.now()): string[] {
    // SQLite: LIMIT -1 is no limit; an infinite age never expires.
    const rows = this.#stmts.buildsBeyond.all(Number.isFinite(maxAge) ? now - maxAge : -1, Number.isFinite(maxEntries) ? maxEntries : -1) as { ref: string }[];
    return rows.map((r) => r.ref);
  }

  /**
   * Deletes build `ref` with everything recorded of it — its record, its
   * recorded progress, the record of its log file (`log`, with that record's
   * references) — and runs `removeFiles` (a synchronous rename of the log
   * file's directory out of the way), in one transaction. Nothing changes
   * when there is no such build, when a live session runs it, or when one
   * holds its log file: the result says which.
   */
  deleteBuild(ref: string, log: { namespace: string; id: string }, isLive: (session: string) => boolean, removeFiles: () => void): 'deleted' | 'missing' | 'running' | 'held' {
    return this.#db
      .transaction(() => {
        if (!this.#stmts.getBuild.get(ref)) return 'missing';
        if (this.#leasedByLive('build', ref, isLive)) return 'running';
        if (this.#leasedByLive('record', `${log.namespace}/${log.id}`, isLive)) return 'held';
        this.#stmts.deleteProgress.run(ref);
        this.#stmts.deleteBuild.run(ref);
        this.#stmts.deleteRecord.run(log.namespace, log.id);
        this.#stmts.deleteRefsOfOwner.run(recordOwner(log.namespace, log.id));
        removeFiles();
        return 'deleted';
      })
      .immediate();
  }

  /** Pins or unpins build `ref` and the record of its log file (`log`), in one transaction; false when there is no such build. */
  pinBuild(ref: string, log: { namespace: string; id: string }, pinned: boolean): boolean {
    return this.#db
      .transaction(() => {
        if (this.#stmts.pinBuild.run(pinned ? 1 : 0, ref).changes === 0) return false;
        this.#stmts.pinRecord.run(pinned ? 1 : 0, log.namespace, log.id);
        return true;
      })
      .immediate();
  }

  /** Drops what was recorded of a build's progress (a build started again under its ref). */
  clearProgress(ref: string): void {
    this.#stmts.deleteProgress.run(ref);
  }

  /** Records progress event `seq` of build `ref`: its JSON, and a log event's bytes or their offset in the build's log file. */
  addProgress(ref: string, seq: number, event: string, data: Uint8Array | null, fileOffset: number | null): void {
    this.#stmts.addProgress.run(ref, seq, event, data, fileOffset);
  }

  /** Up to `limit` progress events of build `ref` after `afterSeq`, in order; `data: false` leaves log bytes unread. */
  progressPage(ref: string, afterSeq: number, limit: number, data = true): ProgressRow[] {
    const stmt = data ? this.#stmts.progressPage : this.#stmts.progressPageNoData;
    return (stmt.all(ref, afterSeq, limit) as { seq: number; event: string; data: Buffer | null; file_offset: number | null }[]).map((r) => ({
      seq: r.seq,
      event: r.event,
      data: r.data,
      fileOffset: r.file_offset,
    }));
  }

  close(): void {
    this.#db.close();
  }
}

/**
 * The statements of `sql` by name, each prepared on its first use and kept:
 * preparing all of them costs an open more than most builds' use of them.
 */
function lazyStatements<K extends string>(db: Database.Database, sql: Record<K, string>): Record<K, Database.Statement> {
  const statements = {} as Record<K, Database.Statement>;
  for (const name of Object.keys(sql) as K[]) {
    Object.defineProperty(statements, name, {
      configurable: true,
      enumerable: true,
      get() {
        const statement = db.prepare(sql[name]);
        Object.defineProperty(statements, name, { value: statement, enumerable: true });
        return statement;
      },
    });
  }
  return statements;
}

/** Refuses a database written by a newer layout (see the header). */
function checkSchemaVersion(db: Database.Database, file: string): void {
  const hasMeta = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get();
  if (!hasMeta) return;
  const row = db.prepare("SELECT value FROM meta WHERE name = 'schema_version'").get() as { value: string } | undefined;
  if (!row) return;
  const version = Number(row.value);
  if (!Number.isInteger(version) || version > SCHEMA_VERSION) {
    throw new BktError(
      'INVALID_ARGUMENT',
      `store database ${file} has schema version ${row.value}, newer than this bkt supports (${SCHEMA_VERSION}); use a newer bkt or another --root`,
      { file, attribute: 'schema_version' },
    );
  }
}
