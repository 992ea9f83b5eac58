/**
 * The records API (`StoreRecords` of @bkt/core): plugins' persistent state.
 *
 * A namespace `name` owns the directory `<root>/<name>`; its record `id` owns
 * `<root>/<name>/<id>` (when it has files) and is a row in the metadata DB's
 * `records` table with the snapshots and blobs it keeps alive. Entries of the
 * namespace directory starting with `.` are the plugin's own scratch.
 *
 * - `put` writes the row and replaces the references in one transaction.
 * - `hold` leases the record for this session (taken before its files are
 *   built, it also protects them); prune in any process skips held records.
 * - `remove` (and prune) delete the row and its references and rename the
 *   files into `<root>/trash/` in one transaction, then delete them: a crash
 *   leaves either the record or trash the next open removes.
 *
 * Temp paths (`tempPath`) are `<root>/tmp/<session>~<prefix>-<random>`; the
 * next open removes those of dead sessions.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, renameSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BktError, type Digest, type RecordHold, type RecordInput, type RecordNamespace, type StoreRecord, type StoreRecords } from '@bkt/core';
import type { MetadataDB, RecordRow } from './metadata.js';

/** Names under the root that the store itself uses: no namespace may take them. */
export const RESERVED_NAMES = new Set(['content', 'snapshots', 'mounts', 'empty', 'trash', 'tmp', 'lock', 'history', 'metadata.db', 'metadata.db-wal', 'metadata.db-shm']);
const NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
/** A valid record id (also a safe directory name). */
export const RECORD_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/;

export interface RecordsOptions {
  root: string;
  db: MetadataDB;
  session: string;
  /** Whether a session is live (for `remove`). */
  isLive: () => (session: string) => boolean;
  /** Throws NOT_FOUND when a blob is absent (for `put`'s references). */
  checkBlob: (digest: Digest) => void;
}

export class Records implements StoreRecords {
  readonly #opts: RecordsOptions;
  /** Holds in this process per `<namespace>/<id>`; the lease exists while the count is above zero. */
  readonly #holds = new Map<string, number>();
  readonly #namespaces = new Map<string, RecordNamespace>();

  constructor(opts: RecordsOptions) {
    this.#opts = opts;
  }

  get trashDir(): string {
    return join(this.#opts.root, 'trash');
  }

  get tmpDir(): string {
    return join(this.#opts.root, 'tmp');
  }

  namespace(name: string): RecordNamespace {
    if (!NAME.test(name) || RESERVED_NAMES.has(name)) {
      throw new BktError('INVALID_ARGUMENT', `invalid record namespace "${name}" (want [a-z0-9][a-z0-9._-]*, not one of the store's own names)`, {
        attribute: 'namespace',
      });
    }
    let ns = this.#namespaces.get(name);
    if (!ns) this.#namespaces.set(name, (ns = this.#newNamespace(name)));
    return ns;
  }

  tempPath(prefix: string): string {
    if (!NAME.test(prefix)) throw new BktError('INVALID_ARGUMENT', `invalid temp path prefix "${prefix}"`, { attribute: 'prefix' });
    return join(this.tmpDir, `${this.#opts.session}~${prefix}-${randomBytes(8).toString('hex')}`);
  }

  /** Whether this process holds record `<namespace>/<id>`. */
  heldHere(namespace: string, id: string): boolean {
    return this.#holds.has(`${namespace}/${id}`);
  }

  /**
   * Deletes a record (row, references, files) unless a live session holds it;
   * false when it is held. Its files go to the trash inside the transaction
   * and are deleted after it.
   */
  async removeUnheld(namespace: string, id: string): Promise<boolean> {
    const { db, root, session } = this.#opts;
    const files = join(root, namespace, id);
    const trash = join(this.trashDir, `${session}~${randomBytes(8).toString('hex')}`);
    await mkdir(this.trashDir, { recursive: true });
    const removed = db.deleteRecordIfUnheld(namespace, id, this.#opts.isLive(), () => {
      if (existsSync(files)) renameSync(files, trash);
    });
    if (removed) await rm(trash, { recursive: true, force: true });
    return removed;
  }

  toStoreRecord(r: RecordRow): StoreRecord {
    return {
      namespace: r.namespace,
      id: r.id,
      recordType: r.recordType,
      description: r.description,
      mutable: r.mutable,
      pinned: r.pinned,
      data: r.data,
      snapshots: r.snapshots,
      blobs: r.blobs,
      path: join(this.#opts.root, r.namespace, r.id),
      createdAt: new Date(r.createdAt),
      ...(r.lastUsedAt !== null ? { lastUsedAt: new Date(r.lastUsedAt) } : {}),
      usageCount: r.usageCount,
    };
  }

  #newNamespace(name: string): RecordNamespace {
    const { db, root, session } = this.#opts;
    const dir = join(root, name);
    const checkId = (id: string) => {
      if (!RECORD_ID.test(id)) throw new BktError('INVALID_ARGUMENT', `invalid record id "${id}" in namespace ${name}`, { attribute: 'id' });
    };
    return {
      name,
      dir,
      get: async (id) => {
        checkId(id);
        const r = db.getRecord(name, id);
        return r && this.toStoreRecord(r);
      },
      list: async () => db.listRecords(name).map((r) => this.toStoreRecord(r)),
      put: async (id: string, input: RecordInput) => {
        checkId(id);
        db.putRecord(
          {
            namespace: name,
            id,
            recordType: input.recordType,
            description: input.description ?? '',
            mutable: input.mutable ?? false,
            pinned: input.pinned ?? false,
            data: input.data ?? {},
            snapshots: input.snapshots ?? [],
            blobs: input.blobs ?? [],
          },
          this.#opts.checkBlob,
        );
        return this.toStoreRecord(db.getRecord(name, id)!);
      },
      touch: async (id) => {
        checkId(id);
        db.touchRecord(name, id);
      },
      hold: async (id): Promise<RecordHold> => {
        checkId(id);
        const key = `${name}/${id}`;
        const n = this.#holds.get(key) ?? 0;
        if (n === 0) db.holdRecord(session, name, id);
        this.#holds.set(key, n + 1);
        let released = false;
        return {
          release: async () => {
            if (released) return;
            released = true;
            const left = (this.#holds.get(key) ?? 1) - 1;
            if (left > 0) this.#holds.set(key, left);
            else {
              this.#holds.delete(key);
              db.removeLease(session, 'record', key);
            }
          },
        };
      },
      remove: async (id) => {
        checkId(id);
        if (!(await this.removeUnheld(name, id))) {
          throw new BktError('PERMISSION_DENIED', `record ${name}/${id} is in use`, { attribute: 'id' });
        }
      },
    };
  }
}
