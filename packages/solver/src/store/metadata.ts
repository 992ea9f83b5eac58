/**
 * The metadata database (`metadata.db`, SQLite in WAL mode): committed
 * snapshot records and cache records. Every multi-row change runs in one
 * transaction, so a crash leaves either all of it or none of it.
 *
 * Invariants: a `snapshots` row exists only for a complete snapshot directory;
 * a cache record's results point only at existing rows (foreign keys).
 */
import Database from 'better-sqlite3';

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
`;

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
    this.#db.exec(SCHEMA);
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

  close(): void {
    this.#db.close();
  }
}
