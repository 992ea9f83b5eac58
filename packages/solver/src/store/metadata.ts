/**
 * The metadata database (`metadata.db`, SQLite in WAL mode): committed
 * snapshot records, cache records, content-store blob references and build
 * history. Every multi-row change runs in one transaction, so a crash leaves
 * either all of it or none of it.
 *
 * Invariants: a `snapshots` row exists only for a complete snapshot directory;
 * a cache record's results and a blob reference's snapshot point only at
 * existing rows (foreign keys; a blob reference goes with its snapshot).
 *
 * `meta.schema_version` is the layout's version. There are no migrations yet:
 * a database of a newer version is refused (it may hold what this code would
 * drop); one without the key is this session's layout and is stamped.
 */
import Database from 'better-sqlite3';
import { BktError, type BlobOwner, type BlobRef, type Digest } from '@bkt/core';

/** The version of the layout below; bump it (and add a migration) when a table changes incompatibly. */
export const SCHEMA_VERSION = 1;

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
  exporter_response TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS builds_created ON builds(created_at);
`;

/** A build history row (control.proto's BuildHistoryRecord where it fits). */
export interface BuildRow {
  ref: string;
  frontend: string;
  frontendAttrs: Record<string, string>;
  exporters: { type: string; attrs: Record<string, string> }[];
  /** `running`, `completed`, `failed`, `cancelled`, or `interrupted` (the process died during the build). */
  status: 'running' | 'completed' | 'failed' | 'cancelled' | 'interrupted';
  error?: { code: string; message: string };
  createdAt: number;
  completedAt: number | null;
  numTotalSteps: number;
  numCachedSteps: number;
  numCompletedSteps: number;
  exporterResponse: Record<string, string>;
}

interface RawBuildRow {
  ref: string;
  frontend: string;
  frontend_attrs: string;
  exporters: string;
  status: BuildRow['status'];
  error_code: string | null;
  error_message: string | null;
  created_at: number;
  completed_at: number | null;
  num_total_steps: number;
  num_cached_steps: number;
  num_completed_steps: number;
  exporter_response: string;
}

function toBuild(r: RawBuildRow): BuildRow {
  return {
    ref: r.ref,
    frontend: r.frontend,
    frontendAttrs: JSON.parse(r.frontend_attrs) as Record<string, string>,
    exporters: JSON.parse(r.exporters) as BuildRow['exporters'],
    status: r.status,
    ...(r.error_code !== null ? { error: { code: r.error_code, message: r.error_message ?? '' } } : {}),
    createdAt: r.created_at,
    completedAt: r.completed_at,
    numTotalSteps: r.num_total_steps,
    numCachedSteps: r.num_cached_steps,
    numCompletedSteps: r.num_completed_steps,
    exporterResponse: JSON.parse(r.exporter_response) as Record<string, string>,
  };
}

function ownerColumns(owner: BlobOwner): { kind: 'snapshot' | 'name'; owner: string; snapshot: string | null } {
  if ('snapshot' in owner && typeof owner.snapshot === 'string' && owner.snapshot !== '') {
    return { kind: 'snapshot', owner: owner.snapshot, snapshot: owner.snapshot };
  }
  if ('name' in owner && typeof owner.name === 'string' && owner.name !== '') return { kind: 'name', owner: owner.name, snapshot: null };
  throw new BktError('INVALID_ARGUMENT', `invalid blob owner ${JSON.stringify(owner)} (want { snapshot: id } or { name })`);
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

export class MetadataDB {
  readonly #db: Database.Database;
  readonly #stmts;

  constructor(file: string) {
    this.#db = new Database(file);
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
    this.#db.exec(SCHEMA);
    this.#db.prepare("INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)").run(String(SCHEMA_VERSION));
    const db = this.#db;
    this.#stmts = {
      getMeta: db.prepare('SELECT value FROM meta WHERE name = ?'),
      setMeta: db.prepare('INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)'),
      insertSnapshot: db.prepare(
        `INSERT INTO snapshots (id, parent, description, record_type, created_at, last_used_at, usage_count, size)
         VALUES (@id, @parent, @description, @recordType, @createdAt, @lastUsedAt, @usageCount, @size)`,
      ),
      getSnapshot: db.prepare('SELECT * FROM snapshots WHERE id = ?'),
      allSnapshots: db.prepare('SELECT * FROM snapshots ORDER BY created_at'),
      childCount: db.prepare('SELECT COUNT(*) AS n FROM snapshots WHERE parent = ?'),
      deleteSnapshot: db.prepare('DELETE FROM snapshots WHERE id = ?'),
      keysOfSnapshot: db.prepare('SELECT DISTINCT key FROM cache_results WHERE snapshot = ?'),
      referencedSnapshots: db.prepare('SELECT DISTINCT snapshot FROM cache_results WHERE snapshot IS NOT NULL'),
      touch: db.prepare('UPDATE snapshots SET last_used_at = ?, usage_count = usage_count + 1 WHERE id = ?'),
      setSize: db.prepare('UPDATE snapshots SET size = ? WHERE id = ?'),
      getKey: db.prepare('SELECT canonical, outputs FROM cache_keys WHERE key = ?'),
      getResults: db.prepare('SELECT output, snapshot FROM cache_results WHERE key = ?'),
      putKey: db.prepare('INSERT OR REPLACE INTO cache_keys (key, canonical, outputs, created_at) VALUES (?, ?, ?, ?)'),
      putResult: db.prepare('INSERT INTO cache_results (key, output, snapshot) VALUES (?, ?, ?)'),
      deleteKey: db.prepare('DELETE FROM cache_keys WHERE key = ?'),
      addRef: db.prepare(
        'INSERT OR IGNORE INTO blob_refs (digest, owner_kind, owner, snapshot, created_at) VALUES (?, ?, ?, ?, ?)',
      ),
      removeRef: db.prepare('DELETE FROM blob_refs WHERE digest = ? AND owner_kind = ? AND owner = ?'),
      refsOfDigest: db.prepare('SELECT * FROM blob_refs WHERE digest = ? ORDER BY created_at, rowid'),
      refsOfOwner: db.prepare('SELECT * FROM blob_refs WHERE owner_kind = ? AND owner = ? ORDER BY created_at, rowid'),
      referencedBlobs: db.prepare('SELECT DISTINCT digest FROM blob_refs'),
      putBuild: db.prepare(
        `INSERT OR REPLACE INTO builds (ref, frontend, frontend_attrs, exporters, status, error_code, error_message, created_at,
           completed_at, num_total_steps, num_cached_steps, num_completed_steps, exporter_response)
         VALUES (@ref, @frontend, @frontendAttrs, @exporters, @status, @errorCode, @errorMessage, @createdAt,
           @completedAt, @numTotalSteps, @numCachedSteps, @numCompletedSteps, @exporterResponse)`,
      ),
      listBuilds: db.prepare('SELECT * FROM builds ORDER BY created_at DESC, rowid DESC'),
      getBuild: db.prepare('SELECT * FROM builds WHERE ref = ?'),
      interruptBuilds: db.prepare(
        "UPDATE builds SET status = 'interrupted', completed_at = ?, error_code = 'INTERNAL', error_message = ? WHERE status = 'running'",
      ),
      trimBuilds: db.prepare(
        `DELETE FROM builds WHERE status != 'running' AND (created_at < ? OR ref NOT IN
           (SELECT ref FROM builds WHERE status != 'running' ORDER BY created_at DESC, rowid DESC LIMIT ?))`,
      ),
    };
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
    this.#db.transaction(() => {
      for (const id of ids) {
        for (const { key } of this.#stmts.keysOfSnapshot.all(id) as { key: string }[]) this.#stmts.deleteKey.run(key);
        this.#stmts.deleteSnapshot.run(id);
      }
    })();
  }

  /** Marks snapshots used now (a cache hit or a build using them). */
  touch(ids: string[], now = Date.now()): void {
    if (ids.length === 0) return;
    this.#db.transaction(() => {
      for (const id of ids) this.#stmts.touch.run(now, id);
    })();
  }

  setSize(id: string, size: number): void {
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
    this.#db.transaction(() => {
      for (const key of keys) {
        this.#stmts.deleteKey.run(key);
        this.#stmts.putKey.run(key, record.canonical, record.outputs.length, now);
        record.outputs.forEach((snap, i) => this.#stmts.putResult.run(key, i, snap));
      }
    })();
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

  // --- build history ----------------------------------------------------------

  /** Inserts or replaces a build's record. The caller redacts secrets first. */
  putBuild(b: BuildRow): void {
    this.#stmts.putBuild.run({
      ref: b.ref,
      frontend: b.frontend,
      frontendAttrs: JSON.stringify(b.frontendAttrs),
      exporters: JSON.stringify(b.exporters),
      status: b.status,
      errorCode: b.error?.code ?? null,
      errorMessage: b.error?.message ?? null,
      createdAt: b.createdAt,
      completedAt: b.completedAt,
      numTotalSteps: b.numTotalSteps,
      numCachedSteps: b.numCachedSteps,
      numCompletedSteps: b.numCompletedSteps,
      exporterResponse: JSON.stringify(b.exporterResponse),
    });
  }

  /** Build records, newest first. */
  listBuilds(): BuildRow[] {
    return (this.#stmts.listBuilds.all() as RawBuildRow[]).map(toBuild);
  }

  getBuild(ref: string): BuildRow | undefined {
    const r = this.#stmts.getBuild.get(ref) as RawBuildRow | undefined;
    return r && toBuild(r);
  }

  /** Marks builds still `running` as interrupted: the process that ran them is gone. */
  interruptBuilds(now = Date.now()): void {
    this.#stmts.interruptBuilds.run(now, 'interrupted: the process running the build exited before it finished');
  }

  /** Keeps the newest `maxEntries` finished builds created within `maxAge` ms. */
  trimBuilds(maxEntries: number, maxAge: number, now = Date.now()): void {
    // SQLite: LIMIT -1 is no limit; an infinite age never expires.
    this.#stmts.trimBuilds.run(Number.isFinite(maxAge) ? now - maxAge : -1, Number.isFinite(maxEntries) ? maxEntries : -1);
  }

  close(): void {
    this.#db.close();
  }
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
