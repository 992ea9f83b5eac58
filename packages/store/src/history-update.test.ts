/** Pinning and deleting recorded builds: a pin outlives the history's limits and prunes; a delete takes everything recorded of a build at once. */
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isBktError, type Digest, type ProgressEvent } from '@bkt/core';
import { Store } from './store.js';

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'bkt-history-update-'));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const STEP = `sha256:${'2'.repeat(64)}` as Digest;
const log = (bytes: number, fill: string): ProgressEvent => ({ type: 'log', log: { vertex: STEP, timestamp: new Date(), stream: 1, msg: Buffer.alloc(bytes, fill) } });
/** Past the first MiB a build's output goes to its log file (`history/<ref>`). */
const BIG = 1024 * 1024 + 1;

async function build(store: Store, ref: string, bytes = BIG): Promise<void> {
  const rec = store.history.start({ ref });
  rec.observe(undefined)(log(bytes, ref.slice(0, 1)));
  await rec.finish({});
}

/** Bytes of output a build recorded, all read back (from the database and its log file). */
async function outputBytes(store: Store, ref: string): Promise<number> {
  let n = 0;
  for await (const e of store.history.progress(ref)) if (e.type === 'log') n += e.log.msg.length;
  return n;
}

async function collect(events: AsyncIterable<ProgressEvent>): Promise<ProgressEvent[]> {
  const out: ProgressEvent[] = [];
  for await (const e of events) out.push(e);
  return out;
}

const refs = (store: Store) => store.history.list().map((b) => b.ref);

describe('a pinned build', () => {
  it('is neither counted nor dropped by the history limits, and no prune --all removes its log file; unpinned, it goes at the next trim', async () => {
    const store = await Store.open(root, 'copy', { history: { maxEntries: 1 } });
    try {
      await build(store, 'a');
      store.history.pin('a', true);
      expect(store.history.list({ ref: 'a' })[0]).toMatchObject({ pinned: true });
      await build(store, 'b');
      await build(store, 'c');
      // a is pinned; of the others only the newest is kept (a does not count towards the 1).
      expect(refs(store)).toEqual(['c', 'a']);
      expect(existsSync(join(root, 'history/a/logs'))).toBe(true);
      expect((await store.diskUsage()).find((u) => u.id === 'history/a')).toMatchObject({ inUse: true });
      expect((await store.prune({ all: true })).map((u) => u.id)).toEqual(['history/c']);
      expect(existsSync(join(root, 'history/a/logs'))).toBe(true);
      expect(await outputBytes(store, 'a')).toBe(BIG);

      store.history.pin('a', false);
      expect(store.history.list({ ref: 'a' })[0]).toMatchObject({ pinned: false });
      await build(store, 'd');
      expect(refs(store)).toEqual(['d']);
      expect(existsSync(join(root, 'history/a'))).toBe(false);
    } finally {
      await store.close();
    }
  });

  it('pinned while it runs: the finished record and the log file written meanwhile are pinned; the pin outlives a reopen', async () => {
    const store = await Store.open(root, 'copy', { history: { maxEntries: 1 } });
    try {
      const rec = store.history.start({ ref: 'running' });
      store.history.pin('running', true);
      rec.observe(undefined)(log(BIG, 'r'));
      await rec.finish({});
      expect(store.history.list({ ref: 'running' })[0]).toMatchObject({ status: 'completed', pinned: true });
      await build(store, 'later');
      expect((await store.prune({ all: true })).map((u) => u.id)).toEqual(['history/later']);
    } finally {
      await store.close();
    }
    const again = await Store.open(root, 'copy', { history: { maxEntries: 1 } });
    try {
      await build(again, 'last', 10);
      expect(refs(again)).toEqual(['last', 'running']);
      expect(again.history.list({ ref: 'running' })[0]?.pinned).toBe(true);
    } finally {
      await again.close();
    }
  });

  it('of a build the history does not hold is NOT_FOUND', async () => {
    const store = await Store.open(root, 'copy');
    try {
      let err: unknown;
      try {
        store.history.pin('nope', true);
      } catch (e) {
        err = e;
      }
      expect(isBktError(err, 'NOT_FOUND')).toBe(true);
      expect((err as Error).message).toMatch(/no build nope in the history of /);
    } finally {
      await store.close();
    }
  });

  it('a store whose builds table predates pins opens with every build unpinned', async () => {
    const first = await Store.open(root, 'copy');
    await build(first, 'old', 10);
    await first.close();
    const db = new Database(join(root, 'metadata.db'));
    db.exec('ALTER TABLE builds DROP COLUMN pinned');
    // As every database written before the layout mark: its header's user_version is 0.
    db.pragma('user_version = 0');
    db.close();
    const store = await Store.open(root, 'copy');
    try {
      expect(store.history.list()).toEqual([expect.objectContaining({ ref: 'old', pinned: false })]);
      store.history.pin('old', true);
      expect(store.history.list()[0]?.pinned).toBe(true);
    } finally {
      await store.close();
    }
  });
});

describe('deleting a build', () => {
  it('removes its record, its recorded progress and its log file (gone from du); listeners hear of deleted and trimmed builds', async () => {
    const store = await Store.open(root, 'copy', { history: { maxEntries: 2 } });
    const deleted: string[] = [];
    const off = store.history.onDeleted((ref) => deleted.push(ref));
    try {
      await build(store, 'a');
      await build(store, 'b');
      expect((await store.diskUsage()).map((u) => u.id).sort()).toEqual(['history/a', 'history/b']);
      await store.history.delete('a');
      expect(refs(store)).toEqual(['b']);
      expect(existsSync(join(root, 'history/a'))).toBe(false);
      expect((await store.diskUsage()).map((u) => u.id)).toEqual(['history/b']);
      await expect(collect(store.history.progress('a'))).rejects.toThrow(/no build a in the history/);
      expect(existsSync(join(root, 'trash')) ? readdirSync(join(root, 'trash')) : []).toEqual([]);

      // A pinned build can be deleted too; trimming reports what it drops.
      store.history.pin('b', true);
      await store.history.delete('b');
      await build(store, 'c', 10);
      await build(store, 'd', 10);
      await build(store, 'e', 10);
      expect(refs(store)).toEqual(['e', 'd']);
      expect(deleted).toEqual(['a', 'b', 'c']);
      off();
      await store.history.delete('e');
      expect(deleted).toEqual(['a', 'b', 'c']);
    } finally {
      await store.close();
    }
  });

  it('refuses a running build (INVALID_ARGUMENT) and an unknown one (NOT_FOUND), changing nothing', async () => {
    const store = await Store.open(root, 'copy');
    try {
      const rec = store.history.start({ ref: 'busy' });
      rec.observe(undefined)(log(BIG, 'b'));
      const running = await store.history.delete('busy').catch((e: unknown) => e);
      expect(isBktError(running, 'INVALID_ARGUMENT')).toBe(true);
      expect((running as Error).message).toBe('build busy is still running; its record can be deleted once it ends');
      expect(existsSync(join(root, 'history/busy/logs'))).toBe(true);
      await rec.finish({});
      expect(refs(store)).toEqual(['busy']);

      const unknown = await store.history.delete('nope').catch((e: unknown) => e);
      expect(isBktError(unknown, 'NOT_FOUND')).toBe(true);
      await store.history.delete('busy');
      expect(refs(store)).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it('is one transaction: when removing the log file fails, the record, its progress and the log file record all stay', async () => {
    const store = await Store.open(root, 'copy');
    try {
      await build(store, 'kept');
      const before = await collect(store.history.progress('kept', { logs: false }));
      expect(() =>
        store.db.deleteBuild('kept', { namespace: 'history', id: 'kept' }, () => false, () => {
          throw new Error('rename failed');
        }),
      ).toThrow('rename failed');
      expect(refs(store)).toEqual(['kept']);
      expect(await collect(store.history.progress('kept', { logs: false }))).toEqual(before);
      expect((await store.diskUsage()).map((u) => u.id)).toEqual(['history/kept']);
      expect(await outputBytes(store, 'kept')).toBe(BIG);
    } finally {
      await store.close();
    }
  });
});
