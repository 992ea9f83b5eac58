/**
 * Cache mounts (`RUN --mount=type=cache`): directories that persist in the
 * store across builds, keyed by the mount's cache ID (and the snapshot that
 * seeded it, if any).
 *
 * On disk, one directory per instance: `<root>/cachemounts/<key>-<n>/` with
 * `data/` (what the container sees) and `record.json` (cache ID, times, use
 * count, description). Instance 0 is the one SHARED and LOCKED mounts use;
 * PRIVATE takes the first instance nobody holds, creating one when all are
 * held. Holding is per process: SHARED holders share, LOCKED and PRIVATE
 * holders are exclusive and wait their turn in order of arrival.
 *
 * Given the store's records namespace (`cachemounts`, whose directory is
 * `<root>/cachemounts`), every instance is also a store record of type
 * `exec.cachemount`: put before its directory is moved into place, held
 * (across processes) while a step uses it, touched on each use. That is how
 * `bkt du` lists and the store's prune removes them. Without it (a bare
 * directory, in tests) the instances are only directories.
 *
 * New instances are built in `.new-<id>-<pid>-<time>` and deleted ones
 * renamed to `.trash-<id>-<pid>-<time>` first; those a dead process left
 * behind are removed before this process first uses the directory.
 */
import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BktError, type RecordHold, type RecordNamespace, type UsageRecord } from '@bkt/core';
import { isAlive, mustRun } from './sys.js';

export type CacheSharing = 'shared' | 'private' | 'locked';

/** The store namespace of the cache mounts; its directory is `<root>/cachemounts`. */
export const NAMESPACE = 'cachemounts';
/** Their `UsageRecord.recordType`. */
const RECORD_TYPE = 'exec.cachemount';

export interface CacheMountRequest {
  /** The mount's cache ID (BuildKit: the ID, or the destination when empty). */
  id: string;
  sharing: CacheSharing;
  /** Seeds a new cache from this directory (a mounted input snapshot); part of the key. */
  base?: { key: string; path: string };
  /** Shown by `bkt du`. */
  description?: string;
  signal?: AbortSignal;
}

export interface HeldCacheMount {
  /** The directory to bind into the container. */
  readonly path: string;
  /** The usage record id (`<key>-<n>`). */
  readonly recordId: string;
  release(): Promise<void>;
}

interface RecordFile {
  cacheId: string;
  createdAt: string;
  lastUsedAt: string;
  usageCount: number;
  description: string;
}

interface Holds {
  shared: number;
  exclusive: boolean;
  waiters: { exclusive: boolean; wake: () => void }[];
}

export class CacheMounts {
  readonly dir: string;
  readonly #holds = new Map<string, Holds>();
  /** The last pending record update per record id. */
  readonly #records = new Map<string, Promise<void>>();
  #swept: Promise<void> | undefined;
  /** The store's records of the cache mounts (see the header). */
  records: RecordNamespace | undefined;

  constructor(storeRoot: string, records?: RecordNamespace) {
    this.dir = records?.dir ?? join(storeRoot, NAMESPACE);
    this.records = records;
  }

  async acquire(req: CacheMountRequest): Promise<HeldCacheMount> {
    await this.#sweep();
    const key = cacheKey(req.id, req.base?.key);
    let recordId: string;
    if (req.sharing === 'private') {
      recordId = this.#freeInstance(key);
      await this.#hold(recordId, true, req.signal);
    } else {
      recordId = `${key}-0`;
      await this.#hold(recordId, req.sharing === 'locked', req.signal);
    }
    const exclusive = req.sharing !== 'shared';
    let stored: RecordHold | undefined;
    try {
      // Held in the store before its directory is made: a prune elsewhere leaves it while a step uses it.
      stored = await this.records?.hold(recordId);
      const path = await this.#serialized(recordId, () => this.#ensure(recordId, req));
      let released = false;
      return {
        path,
        recordId,
        release: async () => {
          if (released) return;
          released = true;
          await stored?.release();
          this.#unhold(recordId, exclusive);
        },
      };
    } catch (err) {
      await stored?.release();
      this.#unhold(recordId, exclusive);
      throw err;
    }
  }

  /** The shared instance of cache mount `id` (no base) when the store has it, held shared until released. */
  async open(id: string, signal?: AbortSignal): Promise<HeldCacheMount | undefined> {
    await this.#sweep();
    if (!(await this.#readRecord(`${cacheKey(id)}-0`))) return undefined;
    return this.acquire({ id, sharing: 'shared', signal });
  }

  /**
   * Makes cache mount `id` (no base) from an import unless the store has it:
   * `fill` writes the files into `tmp`, which is then copied into a new
   * instance as a base is (built aside, renamed in: a crash leaves no half
   * cache). Returns whether it made it.
   */
  async restore(id: string, fill: (dir: string) => Promise<void>, tmp: string, signal?: AbortSignal): Promise<boolean> {
    await this.#sweep();
    const recordId = `${cacheKey(id)}-0`;
    await this.#hold(recordId, true, signal);
    let stored: RecordHold | undefined;
    try {
      stored = await this.records?.hold(recordId);
      if (await this.#readRecord(recordId)) return false;
      await mkdir(tmp, { recursive: true });
      try {
        await fill(tmp);
        await this.#serialized(recordId, () => this.#ensure(recordId, { id, sharing: 'locked', base: { key: '', path: tmp }, description: `cache mount ${id} (imported)` }));
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
      return true;
    } finally {
      await stored?.release();
      this.#unhold(recordId, true);
    }
  }

  /** Every cache mount in the store, as usage records. */
  async list(): Promise<UsageRecord[]> {
    await this.#sweep();
    const out: UsageRecord[] = [];
    for (const name of await this.#recordIds()) {
      const rec = await this.#readRecord(name);
      if (!rec) continue;
      const holds = this.#holds.get(name);
      out.push({
        id: name,
        mutable: true,
        inUse: !!holds && (holds.shared > 0 || holds.exclusive),
        size: await treeSize(join(this.dir, name, 'data')),
        createdAt: new Date(rec.createdAt),
        lastUsedAt: new Date(rec.lastUsedAt),
        usageCount: rec.usageCount,
        description: rec.description,
        recordType: RECORD_TYPE,
        shared: false,
        parents: [],
      });
    }
    return out;
  }

  /** Deletes one cache mount; `BktError('PERMISSION_DENIED')` while a step uses it, `NOT_FOUND` if absent. */
  async remove(recordId: string): Promise<void> {
    if (!/^[0-9a-f]{64}-\d+$/.test(recordId) || !(await this.#readRecord(recordId))) {
      throw new BktError('NOT_FOUND', `no cache mount ${recordId}`, { attribute: 'id' });
    }
    const holds = this.#holds.get(recordId);
    if (holds && (holds.shared > 0 || holds.exclusive)) {
      throw new BktError('PERMISSION_DENIED', `cache mount ${recordId} is in use`, { attribute: 'id' });
    }
    const records = this.records;
    if (records) {
      await this.#serialized(recordId, () => records.remove(recordId));
      return;
    }
    // Rename first so that a crash mid-delete never leaves a half-empty cache in place.
    const trash = join(this.dir, `.trash-${recordId}-${process.pid}-${Date.now()}`);
    await this.#serialized(recordId, () => rename(join(this.dir, recordId), trash));
    await rm(trash, { recursive: true, force: true });
  }

  /** Removes, once per instance, the `.new-*` and `.trash-*` directories of processes that no longer run. */
  #sweep(): Promise<void> {
    this.#swept ??= (async () => {
      let names: string[];
      try {
        names = await readdir(this.dir);
      } catch {
        return;
      }
      for (const name of names) {
        const m = /^\.(?:new|trash)-[0-9a-f]{64}-\d+-(\d+)-\d+$/.exec(name);
        if (!m) continue;
        const pid = Number(m[1]);
        if (isAlive(pid)) continue;
        await rm(join(this.dir, name), { recursive: true, force: true });
      }
    })();
    return this.#swept;
  }

  async #recordIds(): Promise<string[]> {
    try {
      return (await readdir(this.dir)).filter((n) => /^[0-9a-f]{64}-\d+$/.test(n)).sort();
    } catch {
      return [];
    }
  }

  /** The first instance of `key` nobody holds or waits for (maybe a new one). Synchronous, so two callers never pick the same. */
  #freeInstance(key: string): string {
    for (let n = 0; ; n++) {
      const id = `${key}-${n}`;
      const holds = this.#holds.get(id);
      if (!holds || (holds.shared === 0 && !holds.exclusive && holds.waiters.length === 0)) return id;
    }
  }

  /** Runs `work` after every earlier `#serialized` work on the same record (SHARED holders arrive together). */
  #serialized<T>(recordId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#records.get(recordId) ?? Promise.resolve();
    const result = previous.then(work, work);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.#records.set(recordId, tail);
    void tail.then(() => {
      if (this.#records.get(recordId) === tail) this.#records.delete(recordId);
    });
    return result;
  }

  async #ensure(recordId: string, req: CacheMountRequest): Promise<string> {
    const dir = join(this.dir, recordId);
    const data = join(dir, 'data');
    const now = new Date().toISOString();
    let rec = await this.#readRecord(recordId);
    if (!rec) {
      // Build the instance aside and rename it in: a crash never leaves a half-seeded cache.
      const tmp = join(this.dir, `.new-${recordId}-${process.pid}-${Date.now()}`);
      await mkdir(join(tmp, 'data'), { recursive: true });
      // Without a base: 0755 root (whatever the umask). With one, as `cp -a`: the top directory takes the base's
      // mode and owner (how the Dockerfile's `mode`/`uid`/`gid` arrive), and owners, modes, times, links, special
      // files and xattrs of every entry are kept, as BuildKit's seeding copy keeps them.
      if (req.base) await mustRun('cp', ['-a', '-T', '--reflink=auto', req.base.path, join(tmp, 'data')]);
      else await chmod(join(tmp, 'data'), 0o755);
      rec = { cacheId: req.id, createdAt: now, lastUsedAt: now, usageCount: 0, description: req.description ?? `cache mount ${req.id}` };
      await writeFile(join(tmp, 'record.json'), JSON.stringify(rec));
      // The store's record first, then the directory: a crash in between leaves a record without files, remade on next use.
      await this.records?.put(recordId, { recordType: RECORD_TYPE, description: rec.description, mutable: true, data: { cacheId: req.id } });
      await rm(dir, { recursive: true, force: true });
      await rename(tmp, dir);
    } else if (this.records && !(await this.records.get(recordId))) {
      await this.records.put(recordId, { recordType: RECORD_TYPE, description: rec.description, mutable: true, data: { cacheId: rec.cacheId } });
    }
    await this.records?.touch(recordId);
    rec.lastUsedAt = now;
    rec.usageCount += 1;
    await writeFile(join(dir, 'record.json.tmp'), JSON.stringify(rec));
    await rename(join(dir, 'record.json.tmp'), join(dir, 'record.json'));
    return data;
  }

  async #readRecord(recordId: string): Promise<RecordFile | null> {
    try {
      return JSON.parse(await readFile(join(this.dir, recordId, 'record.json'), 'utf8')) as RecordFile;
    } catch {
      return null;
    }
  }

  #hold(recordId: string, exclusive: boolean, signal?: AbortSignal): Promise<void> {
    let holds = this.#holds.get(recordId);
    if (!holds) this.#holds.set(recordId, (holds = { shared: 0, exclusive: false, waiters: [] }));
    const h = holds;
    const canTake = () => !h.exclusive && (exclusive ? h.shared === 0 : true);
    if (h.waiters.length === 0 && canTake()) {
      take(h, exclusive);
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        exclusive,
        wake: () => {
          signal?.removeEventListener('abort', onAbort);
          take(h, exclusive);
          resolve();
        },
      };
      const onAbort = () => {
        h.waiters.splice(h.waiters.indexOf(waiter), 1);
        reject(new BktError('CANCELLED', `cancelled while waiting for cache mount ${recordId}`));
        this.#wakeWaiters(recordId);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      h.waiters.push(waiter);
    });
  }

  #unhold(recordId: string, exclusive: boolean): void {
    const h = this.#holds.get(recordId);
    if (!h) return;
    if (exclusive) h.exclusive = false;
    else h.shared -= 1;
    this.#wakeWaiters(recordId);
  }

  /** Wakes waiters in order of arrival while they can take their hold. */
  #wakeWaiters(recordId: string): void {
    const h = this.#holds.get(recordId);
    if (!h) return;
    while (h.waiters.length > 0) {
      const next = h.waiters[0];
      const ok = !h.exclusive && (next.exclusive ? h.shared === 0 : true);
      if (!ok) break;
      h.waiters.shift();
      next.wake();
    }
    if (h.shared === 0 && !h.exclusive && h.waiters.length === 0) this.#holds.delete(recordId);
  }
}

function take(h: Holds, exclusive: boolean): void {
  if (exclusive) h.exclusive = true;
  else h.shared += 1;
}

/** The key of a cache ID (and seeding snapshot): sha256 hex. */
function cacheKey(id: string, baseKey?: string): string {
  return createHash('sha256').update(`${id}\0${baseKey ?? ''}`).digest('hex');
}

/** Sum of the sizes of every entry under `dir` (not following symlinks). */
async function treeSize(dir: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await treeSize(p);
    else total += (await lstat(p)).size;
  }
  return total;
}

const stores = new Map<string, CacheMounts>();

/** The one `CacheMounts` of a store root in this process (holds are per instance), on the store's records when given. */
export function cacheMountsFor(storeRoot: string, records?: RecordNamespace): CacheMounts {
  let store = stores.get(storeRoot);
  if (!store) stores.set(storeRoot, (store = new CacheMounts(storeRoot, records)));
  else if (records) store.records = records;
  return store;
}
