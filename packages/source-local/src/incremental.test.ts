/**
 * The incremental sync over a real store (overlay where the machine has it):
 * a changed context becomes one more layer over the last sync's snapshot,
 * holding only what changed, and its tree is exactly what a sync from
 * scratch makes; an edit that keeps size and mtime is still seen.
 */
import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { BuildContext, FileStat, Snapshot } from '@bkt/core';
import { walk } from '@bkt/fsutil';
import { openTestContext, type TestContext } from '@bkt/store/testing';
import localSource from './index.js';

let work: string;
const opened: TestContext[] = [];
const PAST = new Date(Date.now() - 3600_000);

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-source-local-incr-'));
});
afterEach(async () => {
  for (const t of opened.splice(0)) await t.close();
  await rm(work, { recursive: true, force: true });
});

async function storeFor(dir: string, client?: (ctx: BuildContext) => BuildContext['client'], snapshotter?: 'overlay' | 'copy'): Promise<BuildContext> {
  const t = await openTestContext({ localDirs: { context: dir }, snapshotter });
  opened.push(t);
  return client ? { ...t.ctx, client: client(t.ctx) } : t.ctx;
}

async function sync(ctx: BuildContext): Promise<{ snapshot: Snapshot; key: string }> {
  const source = localSource().sources![0]!;
  const inst = await source.resolve(source.identify('local', 'context', {}), ctx);
  const { key } = await inst.cacheKey(ctx);
  return { snapshot: await inst.snapshot(ctx), key };
}

/** Every entry of a tree: type, mode, mtime, and a file's content digest or a link's target. */
async function describeTree(root: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of walk(root)) {
    const s = e.stat;
    const what = s.isFile()
      ? createHash('sha256').update(await readFile(e.absPath)).digest('hex').slice(0, 12)
      : s.isSymbolicLink()
        ? `-> ${await readlink(e.absPath)}`
        : s.isDirectory()
          ? 'dir'
          : 'other';
    out.push(`${e.path} ${(s.mode & 0o7777).toString(8)} ${s.uid}:${s.gid} ${Math.round(s.mtimeMs)} ${what}`);
  }
  return out;
}

async function tree(snapshot: Snapshot): Promise<string[]> {
  const m = await snapshot.mount();
  try {
    return await describeTree(m.path);
  } finally {
    await m.release();
  }
}

/** Sets every entry's mtime an hour back (older than the racy window). */
async function age(dir: string): Promise<void> {
  const entries: string[] = [];
  for await (const e of walk(dir)) if (!e.stat.isSymbolicLink()) entries.push(e.absPath);
  for (const p of entries.reverse()) await utimes(p, PAST, PAST);
}

async function makeContext(): Promise<string> {
  const dir = join(work, 'ctx');
  for (const d of ['a', 'b/c', 'gone/deep', 'becomes-file']) await mkdir(join(dir, d), { recursive: true });
  for (let i = 0; i < 20; i++) await writeFile(join(dir, 'a', `f${i}.txt`), `a ${i}\n`.repeat(10));
  await writeFile(join(dir, 'b/c/x.txt'), 'x');
  await writeFile(join(dir, 'b/mode.sh'), 'echo');
  await writeFile(join(dir, 'gone/deep/y.txt'), 'y');
  await writeFile(join(dir, 'becomes-dir'), 'file for now');
  await writeFile(join(dir, 'becomes-file/z'), 'z');
  await writeFile(join(dir, 'to-delete.txt'), 'bye');
  await symlink('a/f1.txt', join(dir, 'link'));
  await age(dir);
  return dir;
}

it.each<'overlay' | 'copy' | undefined>([undefined, 'copy'])('writes a changed context as one layer over the last snapshot, holding only the changes; the tree is what a sync from scratch makes (snapshotter %s)', async (kind) => {
  const dir = await makeContext();
  const ctx = await storeFor(dir, undefined, kind);
  const first = await sync(ctx);

  await writeFile(join(dir, 'a/f3.txt'), 'edited\n');
  await chmod(join(dir, 'b/mode.sh'), 0o755);
  await rm(join(dir, 'gone'), { recursive: true });
  await rm(join(dir, 'to-delete.txt'));
  await rm(join(dir, 'becomes-dir'));
  await mkdir(join(dir, 'becomes-dir'));
  await writeFile(join(dir, 'becomes-dir/inner.txt'), 'inner');
  await rm(join(dir, 'becomes-file'), { recursive: true });
  await writeFile(join(dir, 'becomes-file'), 'now a file');
  await rm(join(dir, 'link'));
  await symlink('a/f2.txt', join(dir, 'link'));
  await mkdir(join(dir, 'new/sub'), { recursive: true });
  await writeFile(join(dir, 'new/sub/n.txt'), 'new');
  await age(dir);

  const second = await sync(ctx);
  expect(second.key).not.toBe(first.key);
  expect(second.snapshot.parent).toBe(first.snapshot.id);

  // The layer holds the changed entries (and the directories above them), whiteouts of the removed ones; no unchanged file.
  // (The copy snapshotter's layers are whole trees.)
  const layer: string[] = [];
  for await (const e of walk(second.snapshot.layerPath())) if (!e.stat.isDirectory()) layer.push(e.path);
  const unchangedFiles = Array.from({ length: 20 }, (_, i) => `a/f${i}.txt`).filter((p) => p !== 'a/f3.txt');
  if (kind !== 'copy') {
    expect(layer.filter((p) => unchangedFiles.includes(p) || p === 'b/c/x.txt')).toEqual([]);
    expect(layer).toEqual(expect.arrayContaining(['a/f3.txt', 'b/mode.sh', 'becomes-dir/inner.txt', 'becomes-file', 'link', 'new/sub/n.txt', 'gone', 'to-delete.txt']));
  }

  // The same tree as a fresh store's first sync of the directory.
  const fresh = await sync(await storeFor(dir, undefined, kind));
  expect(fresh.snapshot.parent).toBeNull();
  expect(fresh.key).toBe(second.key);
  expect(await tree(second.snapshot)).toEqual(await tree(fresh.snapshot));
  expect(await readFile(join((await second.snapshot.mount()).path, 'a/f3.txt'), 'utf8')).toBe('edited\n');

  // What it tells content checksums (instead of their reading the files again) is every file's true digest.
  for (const { snapshot } of [first, second, fresh]) {
    const known = snapshot.contentDigests!();
    const m = await snapshot.mount();
    const actual = new Map<string, string>();
    for await (const e of walk(m.path)) if (e.stat.isFile()) actual.set(e.path, `sha256:${createHash('sha256').update(await readFile(e.absPath)).digest('hex')}`);
    await m.release();
    expect(new Map(known)).toEqual(actual);
  }
});

it('flattens: after many layers a sync writes a whole snapshot again', async () => {
  const dir = await makeContext();
  const ctx = await storeFor(dir);
  let last = await sync(ctx);
  const depth = async (s: Snapshot) => {
    let n = 1;
    for (let p = s.parent; p; n++) p = (await ctx.snapshotter.get(p)).parent;
    return n;
  };
  let maxDepth = 1;
  for (let i = 0; i < 20; i++) {
    await writeFile(join(dir, 'a/f0.txt'), `round ${i}\n`);
    await age(dir);
    last = await sync(ctx);
    maxDepth = Math.max(maxDepth, await depth(last.snapshot));
  }
  expect(maxDepth).toBeGreaterThan(2);
  expect(maxDepth).toBeLessThanOrEqual(16);
  expect(await readFile(join((await last.snapshot.mount()).path, 'a/f0.txt'), 'utf8')).toBe('round 19\n');
});

it('sees an edit that keeps the size and restores the mtime (the ctime and inode changed)', async () => {
  const dir = await makeContext();
  const reads: string[] = [];
  const ctx = await storeFor(dir, (c) => {
    const host = c.client;
    return {
      ...host,
      localDir(name: string) {
        const d = host.localDir(name)!;
        return { name: d.name, syncKey: d.syncKey, stat: d.stat, read: (path: string, signal?: AbortSignal) => (reads.push(path), d.read(path, signal)) };
      },
    };
  });
  const first = await sync(ctx);
  const file = join(dir, 'a/f5.txt');
  const before = await lstat(file);
  const content = await readFile(file, 'utf8');
  const edited = content.replace('a 5', 'A 5');
  expect(edited.length).toBe(content.length);
  await writeFile(file, edited);
  await utimes(file, before.atime, before.mtime);
  const after = await lstat(file);
  expect([after.size, after.mtimeMs]).toEqual([before.size, before.mtimeMs]);

  reads.length = 0;
  const second = await sync(ctx);
  expect(reads.filter((p) => p !== '.dockerignore')).toEqual(['a/f5.txt']);
  expect(second.key).not.toBe(first.key);
  expect(await readFile(join((await second.snapshot.mount()).path, 'a/f5.txt'), 'utf8')).toBe(edited);

  // The same for a file replaced by another of the same size and mtime (a new inode).
  const other = join(dir, 'a/f6.txt');
  const st6 = await lstat(other);
  const replacement = join(work, 'replacement');
  await writeFile(replacement, (await readFile(other, 'utf8')).replace('a 6', 'B 6'));
  await utimes(replacement, st6.atime, st6.mtime);
  await rm(other);
  await (await import('node:fs/promises')).rename(replacement, other);
  reads.length = 0;
  const third = await sync(ctx);
  expect(reads.filter((p) => p !== '.dockerignore')).toEqual(['a/f6.txt']);
  expect(await readFile(join((await third.snapshot.mount()).path, 'a/f6.txt'), 'utf8')).toContain('B 6');
});

it('remembers the change token of each file in its index', async () => {
  const dir = await makeContext();
  const ctx = await storeFor(dir);
  await sync(ctx);
  const records = await ctx.records!.namespace('source-local').list();
  const index = JSON.parse(await readFile(join(records[0]!.path, 'index.json'), 'utf8')) as { files: Record<string, { change?: string }>; others: Record<string, FileStat> };
  const st = await lstat(join(dir, 'a/f1.txt'));
  expect(index.files['a/f1.txt']!.change).toBe(`${st.dev}:${st.ino}:${st.ctimeMs}`);
  expect(Object.keys(index.others).sort()).toEqual(expect.arrayContaining(['a', 'b', 'b/c', 'link']));
  expect(await readdir(records[0]!.path)).toEqual(['index.json']);
});

it('remembers the hashes of a sync whose key was a cache hit (no snapshot asked): a directory of content synced elsewhere is read once', async () => {
  const first = await makeContext();
  const second = join(work, 'copy');
  await (await import('node:fs/promises')).cp(first, second, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
  await age(second);
  const t = await openTestContext({ localDirs: { first, second } });
  opened.push(t);
  const reads: string[] = [];
  const ctx: BuildContext = {
    ...t.ctx,
    client: {
      ...t.ctx.client,
      localDir(name: string) {
        const d = t.ctx.client.localDir(name)!;
        return { name: d.name, syncKey: d.syncKey, stat: d.stat, read: (path: string, signal?: AbortSignal) => (reads.push(`${name}:${path}`), d.read(path, signal)) };
      },
    },
  };
  const source = localSource().sources![0]!;
  const resolve = (name: string) => source.resolve(source.identify('local', name, {}), ctx);
  const contentReads = () => reads.filter((p) => !p.endsWith(':.dockerignore'));

  const a = await resolve('first');
  const keyA = (await a.cacheKey(ctx)).key;
  const treeA = await tree(await a.snapshot(ctx));
  // The same content under another directory: the solver's cache has its key, so only the key is asked.
  reads.length = 0;
  expect((await (await resolve('second')).cacheKey(ctx)).key).toBe(keyA);
  expect(contentReads().length).toBeGreaterThan(20);
  reads.length = 0;
  expect((await (await resolve('second')).cacheKey(ctx)).key).toBe(keyA);
  expect(contentReads()).toEqual([]);

  // A change is read alone; a snapshot asked for then is whole and right.
  await writeFile(join(second, 'a/f2.txt'), 'changed\n');
  for (const p of ['a/f2.txt', 'a']) await utimes(join(second, p), PAST, PAST);
  reads.length = 0;
  const b = await resolve('second');
  expect((await b.cacheKey(ctx)).key).not.toBe(keyA);
  expect(contentReads()).toEqual(['second:a/f2.txt']);
  const treeB = await tree(await b.snapshot(ctx));
  // (The copy's symlink has its own mtime.)
  const same = (l: string) => !l.startsWith('a/f2.txt ') && !l.startsWith('link ');
  expect(treeB.filter(same)).toEqual(treeA.filter(same));
  expect(treeB.find((l) => l.startsWith('a/f2.txt '))).toContain(createHash('sha256').update('changed\n').digest('hex').slice(0, 12));
  reads.length = 0;
  const again = await resolve('second');
  await again.cacheKey(ctx);
  await again.snapshot(ctx);
  expect(contentReads()).toEqual([]);
});

/** A member of `target`, methods bound to it (a proxy's receiver has none of its private fields). */
function bound(target: object, key: string | symbol): unknown {
  const v = Reflect.get(target, key, target) as unknown;
  return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
}

it("reads the last sync's index while the client sends its stats, and leaves an unchanged index as it is", async () => {
  const dir = await makeContext();
  let indexReadStarted: () => void = () => undefined;
  const started = new Promise<void>((resolve) => (indexReadStarted = resolve));
  let startedBeforeLastStat: boolean | undefined;
  const t = await openTestContext({ localDirs: { context: dir } });
  opened.push(t);
  const records = t.ctx.records!;
  const ctx: BuildContext = {
    ...t.ctx,
    // A record whose files are looked at (the index is read from its path) says so.
    records: new Proxy(records, {
      get(target, key) {
        if (key !== 'namespace') return bound(target, key);
        return (name: string) => {
          const ns = target.namespace(name);
          return new Proxy(ns, {
            get(nsTarget, nsKey) {
              if (nsKey !== 'get') return bound(nsTarget, nsKey);
              return async (id: string) => {
                const r = await nsTarget.get(id);
                return r && new Proxy(r, { get: (rt, rk) => (rk === 'path' && indexReadStarted(), Reflect.get(rt, rk, rt) as unknown) });
              };
            },
          });
        };
      },
    }),
    client: {
      ...t.ctx.client,
      localDir(name: string) {
        const d = t.ctx.client.localDir(name)!;
        return {
          ...d,
          name: d.name,
          syncKey: d.syncKey,
          read: d.read,
          // The last stat waits (up to 2 s) for the index read to begin.
          async *stat(selection, signal) {
            const all: FileStat[] = [];
            for await (const e of d.stat(selection, signal)) all.push(e);
            for (const e of all.slice(0, -1)) yield e;
            const timeout = new Promise<false>((resolve) => setTimeout(() => resolve(false), 2000));
            startedBeforeLastStat ??= await Promise.race([started.then(() => true), timeout]);
            yield all.at(-1)!;
          },
        };
      },
    },
  };
  await sync(t.ctx);
  const records0 = await records.namespace('source-local').list();
  const indexFile = join(records0[0]!.path, 'index.json');
  const before = await lstat(indexFile);
  const second = await sync(ctx);
  expect(startedBeforeLastStat).toBe(true);
  // Nothing changed: the index stays the file it was.
  const after = await lstat(indexFile);
  expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
  expect(second.key).toBe((JSON.parse(await readFile(indexFile, 'utf8')) as { key: string }).key);
});

it('keeps the index of a concurrent sync that moved the record on while this one reused its snapshot', async () => {
  const dir = await makeContext();
  const ctx = await storeFor(dir);
  await sync(ctx);
  // A file written just now is read again by every sync (its mtime may hide a later write): the sync below stages it.
  const now = new Date();
  await utimes(join(dir, 'a/f0.txt'), now, now);
  const source = localSource().sources![0]!;
  const slow = await source.resolve(source.identify('local', 'context', {}), ctx);
  await slow.cacheKey(ctx);
  // Meanwhile another build syncs a changed directory: the record names its snapshot and index.
  await writeFile(join(dir, 'b/c/x.txt'), 'changed meanwhile');
  const moved = await sync(ctx);
  await slow.snapshot(ctx);
  const [record] = await ctx.records!.namespace('source-local').list();
  const index = JSON.parse(await readFile(join(record!.path, 'index.json'), 'utf8')) as { key: string; snapshot: string };
  expect(record!.data.key).toBe(moved.key);
  expect([index.key, index.snapshot]).toEqual([record!.data.key, record!.data.snapshot]);
});

it('keeps its cache key of a known directory (a key changed by a release would miss every cache made before it)', async () => {
  const dir = join(work, 'known');
  await mkdir(join(dir, 'd'), { recursive: true });
  await writeFile(join(dir, 'a.txt'), 'a\n');
  await writeFile(join(dir, 'd/b.sh'), 'echo b\n');
  await symlink('a.txt', join(dir, 'l'));
  await chmod(join(dir, 'a.txt'), 0o644);
  await chmod(join(dir, 'd/b.sh'), 0o755);
  await chmod(join(dir, 'd'), 0o755);
  const ctx = await storeFor(dir);
  expect((await sync(ctx)).key).toBe('sha256:5fabf86b520c06f0b783dede32fbb69713230e24e3b47c19621ac9f2c9bd05e6');
});

/** The record of the context's sync and the index beside it. */
async function recordAndIndex(ctx: BuildContext) {
  const [record, ...more] = await ctx.records!.namespace('source-local').list();
  expect(more).toEqual([]);
  const index = JSON.parse(await readFile(join(record!.path, 'index.json'), 'utf8')) as { key: string; snapshot: string };
  return { record: record!, index };
}

it('keeps the record of a sync that wrote it after an older sync read it: the older one remembers its hashes without dropping it', async () => {
  const dir = await makeContext();
  const ctx = await storeFor(dir);
  const source = localSource().sources![0]!;
  // The older sync reads the record (there is none yet) and stats the directory; its hashing comes last.
  const older = await source.resolve(source.identify('local', 'context', {}), ctx);
  await new Promise((resolve) => setTimeout(resolve, 10));
  const newer = await sync(ctx);
  await older.cacheKey(ctx);
  let { record, index } = await recordAndIndex(ctx);
  expect(record.data).toEqual({ key: newer.key, snapshot: newer.snapshot.id });
  expect(record.snapshots).toEqual([newer.snapshot.id]);
  expect([index.key, index.snapshot]).toEqual([newer.key, newer.snapshot.id]);

  // Its snapshot, made now, is referenced too; the record stays the newer sync's.
  const made = await older.snapshot(ctx);
  ({ record, index } = await recordAndIndex(ctx));
  expect(record.data).toEqual({ key: newer.key, snapshot: newer.snapshot.id });
  expect([...record.snapshots].sort()).toEqual([newer.snapshot.id, made.id].sort());
  expect([index.key, index.snapshot]).toEqual([newer.key, newer.snapshot.id]);
});

it('keeps the snapshot of a sync that moved the record on while an older sync made its own', async () => {
  const dir = await makeContext();
  const ctx = await storeFor(dir);
  const first = await sync(ctx);
  await writeFile(join(dir, 'a/f3.txt'), 'edited\n');
  await age(dir);
  const source = localSource().sources![0]!;
  const older = await source.resolve(source.identify('local', 'context', {}), ctx);
  await older.cacheKey(ctx);
  await new Promise((resolve) => setTimeout(resolve, 10));
  // Meanwhile a newer sync sees one more change and records its snapshot.
  await writeFile(join(dir, 'b/c/x.txt'), 'changed meanwhile');
  await age(dir);
  const newer = await sync(ctx);
  const made = await older.snapshot(ctx);
  expect(made.id).not.toBe(newer.snapshot.id);

  const { record, index } = await recordAndIndex(ctx);
  expect(record.data).toEqual({ key: newer.key, snapshot: newer.snapshot.id });
  expect([...record.snapshots].sort()).toEqual([first.snapshot.id, newer.snapshot.id, made.id].sort());
  expect([index.key, index.snapshot]).toEqual([newer.key, newer.snapshot.id]);
  // The next sync of the unchanged directory reuses the newer snapshot, then drops the others.
  const next = await sync(ctx);
  expect([next.key, next.snapshot.id]).toEqual([newer.key, newer.snapshot.id]);
});

it('two syncs of one process writing the record at once each see the write of the other: neither snapshot is dropped', async () => {
  const dir = await makeContext();
  const t = await openTestContext({ localDirs: { context: dir } });
  opened.push(t);
  const records = t.ctx.records!;
  // Once armed, a record read waits (up to 1 s) until a second one is under way: two read-then-write updates would interleave.
  let armed = false;
  const waiting: (() => void)[] = [];
  const ctx: BuildContext = {
    ...t.ctx,
    records: new Proxy(records, {
      get(target, key) {
        if (key !== 'namespace') return bound(target, key);
        return (name: string) =>
          new Proxy(target.namespace(name), {
            get(nsTarget, nsKey) {
              if (nsKey !== 'get') return bound(nsTarget, nsKey);
              return async (id: string) => {
                const r = await nsTarget.get(id);
                if (armed) {
                  await new Promise<void>((resolve) => {
                    waiting.push(resolve);
                    if (waiting.length >= 2) for (const w of waiting.splice(0)) w();
                    else setTimeout(resolve, 1000);
                  });
                }
                return r;
              };
            },
          });
      },
    }),
  };
  const first = await sync(ctx);
  const source = localSource().sources![0]!;
  const resolveNow = async () => {
    const inst = await source.resolve(source.identify('local', 'context', {}), ctx);
    return { inst, key: (await inst.cacheKey(ctx)).key };
  };
  await writeFile(join(dir, 'a/f3.txt'), 'edited\n');
  await age(dir);
  const a = await resolveNow();
  await new Promise((resolve) => setTimeout(resolve, 10));
  await writeFile(join(dir, 'b/c/x.txt'), 'changed meanwhile');
  await age(dir);
  const b = await resolveNow();
  armed = true;
  const [madeA, madeB] = await Promise.all([a.inst.snapshot(ctx), b.inst.snapshot(ctx)]);
  armed = false;

  const { record, index } = await recordAndIndex(ctx);
  expect(record.data).toEqual({ key: b.key, snapshot: madeB.id });
  expect([...record.snapshots].sort()).toEqual([first.snapshot.id, madeA.id, madeB.id].sort());
  expect([index.key, index.snapshot]).toEqual([b.key, madeB.id]);
});
