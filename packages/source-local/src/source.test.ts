import { chmod, chown, cp, link, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BktError, type BuildContext, type ClientLocalDir, type FileStat, type MutableSnapshot, type Snapshot, type Snapshotter } from '@bkt/core';
import { testBuildContext } from '@bkt/core/testing';
import { createHostClient, walk } from '@bkt/fsutil';
import localSource from './index.js';

const isRoot = process.getuid?.() === 0;
let work: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-source-local-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A snapshotter over plain directories of the temp dir (each snapshot a full tree); counts prepares. */
function dirSnapshotter(base: string) {
  const committed = new Map<string, Snapshot>();
  let n = 0;
  const snapshotter: Snapshotter & { prepared: number } = {
    prepared: 0,
    async prepare(parent): Promise<MutableSnapshot> {
      snapshotter.prepared++;
      const id = `snap${++n}`;
      const path = join(base, id);
      await mkdir(path, { recursive: true });
      // As the store's copy snapshotter: the parent's tree, copied.
      if (parent) await cp(join(base, parent.id), path, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
      return {
        id,
        path,
        async commit() {
          const s: Snapshot = { id, parent: parent?.id ?? null, mount: async () => ({ path, release: async () => {} }), layerPath: () => path };
          committed.set(id, s);
          return s;
        },
        async discard() {
          await rm(path, { recursive: true, force: true });
        },
      };
    },
    async get(id) {
      const s = committed.get(id);
      if (!s) throw new BktError('NOT_FOUND', `snapshot ${id} not found`);
      return s;
    },
    async merge() {
      throw new Error('not needed');
    },
  };
  return { snapshotter, committed };
}

function buildContext(localDirs: Record<string, string>, snapshotter: Snapshotter): BuildContext {
  const root = join(work, 'root');
  return testBuildContext({ root, snapshotter, content: undefined as never, client: createHostClient({ localDirs }) }).ctx;
}

async function load(ctx: BuildContext, attrs: Record<string, string> = {}, name = 'context', opts = {}) {
  const source = localSource(opts).sources![0]!;
  const id = source.identify('local', name, attrs);
  return source.resolve(id, ctx);
}

async function listTree(root: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of walk(root)) out.push(e.stat.isDirectory() ? `${e.path}/` : e.path);
  return out;
}

async function makeContext(): Promise<string> {
  const dir = join(work, 'ctx');
  await mkdir(join(dir, 'src/lib'), { recursive: true });
  await mkdir(join(dir, 'node_modules/x'), { recursive: true });
  await writeFile(join(dir, 'README.md'), '# hi\n');
  await writeFile(join(dir, 'src/main.ts'), 'main');
  await writeFile(join(dir, 'src/lib/util.ts'), 'util');
  await writeFile(join(dir, 'src/lib/util.test.ts'), 'test');
  await writeFile(join(dir, 'node_modules/x/index.js'), 'x');
  await chmod(join(dir, 'src/main.ts'), 0o741);
  return dir;
}

describe('local source', () => {
  it('copies the whole directory with modes, owners, symlinks (not followed) and hardlinks', async () => {
    const dir = await makeContext();
    await symlink('/etc/passwd', join(dir, 'escape'));
    await symlink('../../../../../etc', join(dir, 'src/up'));
    await link(join(dir, 'README.md'), join(dir, 'src/readme-link'));
    if (isRoot) await chown(join(dir, 'src/lib/util.ts'), 4321, 8765);
    const { snapshotter } = dirSnapshotter(join(work, 'snaps'));
    const inst = await load(buildContext({ context: dir }, snapshotter));
    const snap = await inst.snapshot(buildContext({ context: dir }, snapshotter));
    const out = (await snap.mount()).path;

    expect(await listTree(out)).toEqual(await listTree(dir));
    expect(await readlink(join(out, 'escape'))).toBe('/etc/passwd');
    expect((await lstat(join(out, 'escape'))).isSymbolicLink()).toBe(true);
    expect(await readlink(join(out, 'src/up'))).toBe('../../../../../etc');
    expect((await stat(join(out, 'src/main.ts'))).mode & 0o7777).toBe(0o741);
    expect((await stat(join(out, 'src/readme-link'))).ino).toBe((await stat(join(out, 'README.md'))).ino);
    if (isRoot) {
      // As buildx sends a context: every entry owned by 0:0.
      const st = await stat(join(out, 'src/lib/util.ts'));
      expect([st.uid, st.gid]).toEqual([0, 0]);
    }
  });

  it('writes each file with its content, mode (setuid kept after the owner), owner and mtime, however the client chunks it', async () => {
    const dir = await makeContext();
    const big = Buffer.alloc(3 * 1024 * 1024 + 3, 'b');
    await writeFile(join(dir, 'big.bin'), big);
    if (isRoot) await chown(join(dir, 'src/main.ts'), 4321, 8765);
    await chmod(join(dir, 'src/main.ts'), 0o4755); // after the chown, which clears it
    await utimes(join(dir, 'src/lib/util.ts'), 1_500_000_000.25, 1_500_000_000.125);
    // A client answering in small pieces, as a session client may.
    const host = createHostClient({ localDirs: { context: dir } });
    const client = {
      ...host,
      localDir(name: string): ClientLocalDir | undefined {
        const d = host.localDir(name);
        if (!d) return undefined;
        return {
          name: d.name,
          syncKey: d.syncKey,
          stat: (sel, signal) => d.stat(sel, signal),
          async *read(path, signal) {
            for await (const chunk of d.read(path, signal)) for (let i = 0; i < chunk.byteLength; i += 3) yield chunk.subarray(i, i + 3);
          },
        };
      },
    };
    const { snapshotter } = dirSnapshotter(join(work, 'snaps'));
    const ctx = testBuildContext({ root: join(work, 'root'), snapshotter, content: undefined as never, client }).ctx;
    const out = (await (await (await load(ctx, {}, 'context', { keepOwners: true })).snapshot(ctx)).mount()).path;
    expect((await readFile(join(out, 'big.bin'))).equals(big)).toBe(true);
    expect(await readFile(join(out, 'src/main.ts'), 'utf8')).toBe('main');
    const main = await stat(join(out, 'src/main.ts'));
    expect(main.mode & 0o7777).toBe(0o4755);
    if (isRoot) expect([main.uid, main.gid]).toEqual([4321, 8765]);
    // Times as the client sent them, to the millisecond.
    expect((await stat(join(out, 'src/lib/util.ts'))).mtimeMs).toBe(1_500_000_000_125);
    // Node sets times as float seconds: at today's magnitudes a double holds them to ~0.24 µs, so the written time is the sent millisecond within 1 µs.
    const sentMs = Math.floor((await stat(join(dir, 'big.bin'))).mtimeMs);
    expect(Math.abs((await stat(join(out, 'big.bin'))).mtimeMs - sentMs)).toBeLessThan(0.001);
  });

  it.runIf(isRoot)('keeps the client\'s owners with keepOwners', async () => {
    const dir = await makeContext();
    await chown(join(dir, 'src/lib/util.ts'), 4321, 8765);
    await symlink('util.ts', join(dir, 'src/lib/l'));
    await chown(join(dir, 'src/lib'), 11, 12);
    const { snapshotter } = dirSnapshotter(join(work, 'snaps'));
    const ctx = buildContext({ context: dir }, snapshotter);
    const out = (await (await (await load(ctx, {}, 'context', { keepOwners: true })).snapshot(ctx)).mount()).path;
    const st = await stat(join(out, 'src/lib/util.ts'));
    expect([st.uid, st.gid]).toEqual([4321, 8765]);
    const d = await stat(join(out, 'src/lib'));
    expect([d.uid, d.gid]).toEqual([11, 12]);
  });

  it('refuses to snapshot files that changed after the cache key was computed', async () => {
    const dir = await makeContext();
    const past = new Date(Date.now() - 3600_000);
    for await (const e of walk(dir)) if (!e.stat.isSymbolicLink()) await utimes(e.absPath, past, past);
    // The last sync's snapshot is gone (pruned): files whose digests the index trusts must be read at snapshot time.
    const ctx1 = buildContext({ context: dir }, dirSnapshotter(join(work, 'snaps1')).snapshotter);
    await (await load(ctx1)).snapshot(ctx1);
    const ctx: BuildContext = { ...ctx1, snapshotter: dirSnapshotter(join(work, 'snaps2')).snapshotter };
    const inst = await load(ctx);
    const before = await inst.cacheKey(ctx);
    expect(before.key).toMatch(/^sha256:/);
    await writeFile(join(dir, 'README.md'), 'edited between key and copy');
    await expect(inst.snapshot(ctx)).rejects.toThrow(/files in .* changed while the build was reading them/);
    // A new resolve sees the new content under a new key, and snapshots it.
    const again = await load(ctx);
    expect((await again.cacheKey(ctx)).key).not.toBe(before.key);
    const out = (await (await again.snapshot(ctx)).mount()).path;
    expect(await readFile(join(out, 'README.md'), 'utf8')).toBe('edited between key and copy');
  });

  it('snapshots the bytes its key was computed from, whatever changed since', async () => {
    const dir = await makeContext();
    const { snapshotter } = dirSnapshotter(join(work, 'snaps'));
    const ctx = buildContext({ context: dir }, snapshotter);
    const inst = await load(ctx);
    await inst.cacheKey(ctx);
    // Every file was read (and kept) to compute the key: the snapshot holds those bytes, matching its key.
    await writeFile(join(dir, 'README.md'), 'edited between key and copy');
    const out = (await (await inst.snapshot(ctx)).mount()).path;
    expect(await readFile(join(out, 'README.md'), 'utf8')).toBe('# hi\n');
  });

  it('applies include and exclude patterns (JSON attrs, .dockerignore syntax)', async () => {
    const dir = await makeContext();
    const { snapshotter } = dirSnapshotter(join(work, 'snaps'));
    const ctx = buildContext({ context: dir }, snapshotter);
    const inst = await load(ctx, {
      'local.includepattern': JSON.stringify(['src', 'README.md']),
      'local.excludepatterns': JSON.stringify(['**/*.test.ts']),
    });
    const out = (await (await inst.snapshot(ctx)).mount()).path;
    expect(await listTree(out)).toEqual(['README.md', 'src/', 'src/lib/', 'src/lib/util.ts', 'src/main.ts']);
  });

  it('reads .dockerignore when the op has no exclude patterns, with ! re-inclusion', async () => {
    const dir = await makeContext();
    await writeFile(join(dir, '.dockerignore'), '# deps\nnode_modules\n*.md\n!README.md\nsrc/**/*.test.ts\n');
    await writeFile(join(dir, 'NOTES.md'), 'n');
    const { snapshotter } = dirSnapshotter(join(work, 'snaps'));
    const ctx = buildContext({ context: dir }, snapshotter);
    const out = (await (await (await load(ctx)).snapshot(ctx)).mount()).path;
    expect(await listTree(out)).toEqual(['.dockerignore', 'README.md', 'src/', 'src/lib/', 'src/lib/util.ts', 'src/main.ts']);

    const out2 = (await (await (await load(ctx, {}, 'context', { dockerignore: false })).snapshot(ctx)).mount()).path;
    expect(await listTree(out2)).toContain('node_modules/x/index.js');
  });

  it('adds followpaths symlink chains to the include patterns, staying inside the directory', async () => {
    const dir = await makeContext();
    await symlink('src/lib', join(dir, 'lib-link'));
    await symlink('/src/main.ts', join(dir, 'abs-link'));
    const { snapshotter } = dirSnapshotter(join(work, 'snaps'));
    const ctx = buildContext({ context: dir }, snapshotter);
    const inst = await load(ctx, {
      'local.includepattern': JSON.stringify(['README.md']),
      'local.followpaths': JSON.stringify(['lib-link', 'abs-link']),
    });
    const out = (await (await inst.snapshot(ctx)).mount()).path;
    expect(await listTree(out)).toEqual([
      'README.md',
      'abs-link',
      'lib-link',
      'src/',
      'src/lib/',
      'src/lib/util.test.ts',
      'src/lib/util.ts',
      'src/main.ts',
    ]);
  });

  it('keys on content, never on mtime, and reuses the snapshot of an unchanged selection', async () => {
    const dir = await makeContext();
    const { snapshotter } = dirSnapshotter(join(work, 'snaps'));
    const ctx = buildContext({ context: dir }, snapshotter);
    const key1 = (await (await load(ctx)).cacheKey(ctx)).key;
    const snap1 = await (await load(ctx)).snapshot(ctx);

    await utimes(join(dir, 'src/main.ts'), new Date(0), new Date(0));
    const inst2 = await load(ctx);
    expect((await inst2.cacheKey(ctx)).key).toBe(key1);
    const snap2 = await inst2.snapshot(ctx);
    expect(snap2.id).toBe(snap1.id);
    expect(snapshotter.prepared).toBe(1);

    await writeFile(join(dir, 'src/main.ts'), 'main2');
    const key3 = (await (await load(ctx)).cacheKey(ctx)).key;
    expect(key3).not.toBe(key1);
    await chmod(join(dir, 'src/main.ts'), 0o644);
    expect((await (await load(ctx)).cacheKey(ctx)).key).not.toBe(key3);

    // An excluded file's change does not change the key.
    const attrs = { 'local.excludepatterns': JSON.stringify(['node_modules']) };
    const k4 = (await (await load(ctx, attrs)).cacheKey(ctx)).key;
    await writeFile(join(dir, 'node_modules/x/index.js'), 'changed');
    expect((await (await load(ctx, attrs)).cacheKey(ctx)).key).toBe(k4);
  });

  it('makes a new snapshot when the remembered one was pruned', async () => {
    const dir = await makeContext();
    const first = dirSnapshotter(join(work, 'snaps1'));
    const ctx1 = buildContext({ context: dir }, first.snapshotter);
    await (await load(ctx1)).snapshot(ctx1);
    const second = dirSnapshotter(join(work, 'snaps2')); // same root, but the snapshot is gone
    const ctx2 = buildContext({ context: dir }, second.snapshotter);
    const snap = await (await load(ctx2)).snapshot(ctx2);
    expect(second.snapshotter.prepared).toBe(1);
    expect(await readFile(join((await snap.mount()).path, 'src/main.ts'), 'utf8')).toBe('main');
  });

  it('leaves out the store when it lies inside the directory', async () => {
    const dir = await makeContext();
    const { snapshotter } = dirSnapshotter(join(work, 'snaps'));
    const storeRoot = join(dir, 'src/.store[1]');
    const client = createHostClient({ localDirs: { context: dir }, storeRoot });
    const ctx = testBuildContext({ root: storeRoot, snapshotter, content: undefined as never, client }).ctx;
    await mkdir(join(ctx.root, 'snapshots'), { recursive: true });
    await writeFile(join(ctx.root, 'snapshots/data'), 'x');
    const inst = await load(ctx);
    const out = (await (await inst.snapshot(ctx)).mount()).path;
    const tree = await listTree(out);
    expect(tree).toContain('src/main.ts');
    expect(tree.filter((p) => p.includes('.store'))).toEqual([]);
    const same = testBuildContext({ root: dir, snapshotter, content: undefined as never, client: createHostClient({ localDirs: { context: dir }, storeRoot: dir }) }).ctx;
    await expect(load(same).then((i) => i.cacheKey(same))).rejects.toThrow(/is the store root itself/);
  });

  it('names an unknown directory and the known ones', async () => {
    const { snapshotter } = dirSnapshotter(join(work, 'snaps'));
    const ctx = buildContext({ context: work, dockerfile: work }, snapshotter);
    await expect(load(ctx, {}, 'missing')).rejects.toThrow('no local directory named "missing" was given to this build (known: context, dockerfile)');
    const gone = buildContext({ context: join(work, 'nope') }, snapshotter);
    await expect(load(gone)).rejects.toThrow(/does not exist/);
  });

  it('rejects bad attributes, naming them', () => {
    const source = localSource().sources![0]!;
    expect(() => source.identify('local', 'context', { 'local.includepattern': 'src' })).toThrow(/local.includepattern is not JSON/);
    expect(() => source.identify('local', 'context', { 'local.excludepatterns': '{"a":1}' })).toThrow(/local.excludepatterns must be a JSON array/);
    expect(() => source.identify('local', 'context', { 'local.differ': 'mtime' })).toThrow(/local.differ/);
    expect(() => source.identify('local', 'context', { 'local.bogus': '1' })).toThrow(/unknown attribute "local.bogus"/);
    expect(source.identify('local', 'context', { 'local.sharedkeyhint': 'ctx', 'local.unique': 'u1', 'local.differ': 'none' }).ref).toBe('context');
  });

  it('leaves no partial snapshot when the copy is cancelled', async () => {
    const dir = await makeContext();
    const { snapshotter } = dirSnapshotter(join(work, 'snaps'));
    await mkdir(join(work, 'snaps'), { recursive: true });
    const ac = new AbortController();
    const ctx = { ...buildContext({ context: dir }, snapshotter), signal: ac.signal };
    const inst = await load(ctx);
    await inst.cacheKey(ctx);
    ac.abort();
    await expect(inst.snapshot(ctx)).rejects.toThrow();
    expect(await readdir(join(work, 'snaps'))).toEqual([]);
    expect(relative(work, ctx.root)).toBe('root');
  });

  it('syncs stat first: a second build reads only the files whose stat changed, the rest come from the last snapshot', async () => {
    const dir = await makeContext();
    const past = new Date(Date.now() - 3600_000);
    for await (const e of walk(dir)) if (!e.stat.isSymbolicLink()) await utimes(e.absPath, past, past);
    const { snapshotter } = dirSnapshotter(join(work, 'snaps'));
    const host = createHostClient({ localDirs: { context: dir } });
    const reads: string[] = [];
    const client = {
      ...host,
      localDir(name: string) {
        const d = host.localDir(name)!;
        return { ...d, name: d.name, syncKey: d.syncKey, stat: d.stat, read: (path: string, signal?: AbortSignal) => (reads.push(path), d.read(path, signal)) };
      },
    };
    const ctx = testBuildContext({ root: join(work, 'root'), snapshotter, content: undefined as never, client }).ctx;
    const first = await (await load(ctx)).snapshot(ctx);
    expect(reads.filter((p) => p !== '.dockerignore').sort()).toEqual(['README.md', 'node_modules/x/index.js', 'src/lib/util.test.ts', 'src/lib/util.ts', 'src/main.ts']);

    reads.length = 0;
    await writeFile(join(dir, 'src/lib/util.ts'), 'util, changed');
    await utimes(join(dir, 'src/lib/util.ts'), new Date(past.getTime() + 1000), new Date(past.getTime() + 1000));
    const second = await (await load(ctx)).snapshot(ctx);
    expect(second.id).not.toBe(first.id);
    expect(reads.filter((p) => p !== '.dockerignore')).toEqual(['src/lib/util.ts']);
    const out = (await second.mount()).path;
    expect(await readFile(join(out, 'src/lib/util.ts'), 'utf8')).toBe('util, changed');
    expect(await readFile(join(out, 'src/main.ts'), 'utf8')).toBe('main');
    expect((await stat(join(out, 'src/main.ts'))).mode & 0o7777).toBe(0o741);

    // Nothing changed: nothing read, the same snapshot.
    reads.length = 0;
    const third = await (await load(ctx)).snapshot(ctx);
    expect(third.id).toBe(second.id);
    expect(reads.filter((p) => p !== '.dockerignore')).toEqual([]);

    // A file modified just now may change again within its mtime's resolution: it is read every time.
    await writeFile(join(dir, 'README.md'), 'fresh');
    await (await load(ctx)).snapshot(ctx);
    reads.length = 0;
    await (await load(ctx)).snapshot(ctx);
    expect(reads.filter((p) => p !== '.dockerignore')).toEqual(['README.md']);
  });

  it('keeps what a sync remembers as a store record referencing its snapshot', async () => {
    const dir = await makeContext();
    const { snapshotter } = dirSnapshotter(join(work, 'snaps'));
    const ctx = buildContext({ context: dir }, snapshotter);
    const snap = await (await load(ctx)).snapshot(ctx);
    const records = await ctx.records!.namespace('source-local').list();
    expect(records).toHaveLength(1);
    expect(records[0]!.recordType).toBe('source.local');
    expect(records[0]!.snapshots).toEqual([snap.id]);
    expect(JSON.parse(await readFile(join(records[0]!.path, 'index.json'), 'utf8')).snapshot).toBe(snap.id);
  });
});

describe('a client sending entries that would leave the snapshot', () => {
  /** A client directory that lists `entries` (as a malicious session client may) and serves `content` for any file. */
  function hostileClient(entries: FileStat[], content = 'pwned'): BuildContext['client'] {
    const dir: ClientLocalDir = {
      name: 'context',
      syncKey: 'hostile',
      async *stat() {
        yield* entries;
      },
      async *read(path) {
        if (path === '.dockerignore') throw new BktError('NOT_FOUND', 'none');
        yield Buffer.from(content);
      },
    };
    return { ...createHostClient(), localDirNames: () => ['context'], localDir: (n: string) => (n === 'context' ? dir : undefined) };
  }
  const DIR = 0o40755;
  const FILE = 0o100644;
  const LINK = 0o120777;
  const e = (path: string, mode: number, extra: Partial<FileStat> = {}): FileStat => ({ path, mode, uid: 0, gid: 0, size: mode === FILE ? 5 : 0, mtimeMs: 1_600_000_000_000, ...extra });

  it.each<[string, FileStat[]]>([
    ['a file under a symlink', [e('a', LINK, { linkname: '' }), e('a/pwned', FILE)]],
    ['a climbing path', [e('../pwned', FILE)]],
    ['a climbing component', [e('d', DIR), e('d/../../pwned', FILE)]],
    ['an absolute path', [e('/tmp/pwned', FILE)]],
    ['an entry whose parent was not listed', [e('nodir/pwned', FILE)]],
    ['a hardlink to a path outside', [e('x', FILE, { linkname: '../../../../etc/passwd', size: 0 })]],
    ['a hardlink to an entry not listed before it', [e('x', FILE, { linkname: 'y', size: 0 }), e('y', FILE)]],
    ['the same path twice', [e('d', DIR), e('d', FILE)]],
    ['an empty path', [e('', FILE)]],
  ])('refuses %s, naming it, and writes nothing outside', async (_what, entries) => {
    const outside = join(work, 'outside');
    await mkdir(outside, { recursive: true });
    for (const x of entries) if (x.mode === LINK) x.linkname = outside;
    const { snapshotter } = dirSnapshotter(join(work, 'snaps'));
    const ctx = { ...buildContext({}, snapshotter), client: hostileClient(entries) };
    const attempt = (async () => {
      const inst = await load(ctx);
      await inst.cacheKey(ctx);
      await inst.snapshot(ctx);
    })();
    await expect(attempt).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/local directory "context".*entry/) });
    expect(await readdir(outside)).toEqual([]);
    expect(await readdir(join(work, 'root')).catch(() => [])).not.toContain('pwned');
  });
});
