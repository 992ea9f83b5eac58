import { link, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readClientFile, type FileStat } from '@bkt/core';
import { createHostClient, readSmall, SMALL_FILE_BYTES } from './host-client.js';

let work: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-host-client-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function statAll(entries: AsyncIterable<FileStat>): Promise<FileStat[]> {
  const out: FileStat[] = [];
  for await (const e of entries) out.push(e);
  return out;
}

async function bytes(chunks: AsyncIterable<Uint8Array>): Promise<string> {
  const out: Uint8Array[] = [];
  for await (const c of chunks) out.push(c);
  return Buffer.concat(out).toString('utf8');
}

describe('host client: local directories (stat first, then content)', () => {
  it('sends stat entries in walk order: hardlinks name their first path, symlinks their target, sockets never', async () => {
    const dir = join(work, 'ctx');
    await mkdir(join(dir, 'sub'), { recursive: true });
    await writeFile(join(dir, 'a.txt'), 'hello');
    await link(join(dir, 'a.txt'), join(dir, 'sub/b.txt'));
    await symlink('../a.txt', join(dir, 'sub/link'));
    const client = createHostClient({ localDirs: { context: dir } });
    expect(client.localDirNames()).toEqual(['context']);
    expect(client.localDir('other')).toBeUndefined();
    const entries = await statAll(client.localDir('context')!.stat());
    expect(entries.map((e) => e.path)).toEqual(['a.txt', 'sub', 'sub/b.txt', 'sub/link']);
    const [a, , b, l] = entries;
    expect(a).toMatchObject({ size: 5 });
    expect(a!.linkname).toBeUndefined();
    expect(a!.mode & 0o170000).toBe(0o100000);
    expect(b).toMatchObject({ size: 0, linkname: 'a.txt' });
    expect(l).toMatchObject({ linkname: '../a.txt' });
    expect(await bytes(client.localDir('context')!.read('a.txt'))).toBe('hello');
  });

  it('reads only regular files inside the directory', async () => {
    const dir = join(work, 'ctx');
    await mkdir(dir);
    await symlink('/etc/passwd', join(dir, 'escape'));
    const local = createHostClient({ localDirs: { context: dir } }).localDir('context')!;
    await expect(bytes(local.read('escape'))).rejects.toThrow(/no regular file "escape"/);
    await expect(bytes(local.read('../../etc/passwd'))).rejects.toThrow(/no regular file/);
  });

  it('refuses a file whose parent or an ancestor became a symlink after files under it were read', async () => {
    const dir = join(work, 'ctx');
    const outside = join(work, 'outside');
    await mkdir(join(dir, 'a/b'), { recursive: true });
    await mkdir(join(outside, 'b'), { recursive: true });
    for (const name of ['x', 'y']) {
      await writeFile(join(dir, 'a/b', name), `inside ${name}`);
      await writeFile(join(outside, 'b', name), `outside ${name}`);
      await writeFile(join(outside, name), `outside ${name}`);
    }
    const local = createHostClient({ localDirs: { context: dir } }).localDir('context')!;
    expect(await bytes(local.read('a/b/x'))).toBe('inside x');
    // An ancestor swapped for a symlink to a directory outside: the parent it resolved to before is not that any more.
    await rename(join(dir, 'a'), join(work, 'a.moved'));
    await symlink(outside, join(dir, 'a'));
    await expect(bytes(local.read('a/b/y'))).rejects.toThrow(/no regular file "a\/b\/y"/);
    await expect(bytes(local.read('a/b/x'))).rejects.toThrow(/no regular file/);
    // The parent itself swapped.
    await rm(join(dir, 'a'));
    await rename(join(work, 'a.moved'), join(dir, 'a'));
    expect(await bytes(local.read('a/b/y'))).toBe('inside y');
    await rename(join(dir, 'a/b'), join(work, 'b.moved'));
    await symlink(join(outside, 'b'), join(dir, 'a/b'));
    await expect(bytes(local.read('a/b/x'))).rejects.toThrow(/no regular file/);
    // A directory that was a symlink when first read never is cached as inside.
    await expect(bytes(local.read('a/b/y'))).rejects.toThrow(/no regular file/);
  });

  it('refuses a file under an ancestor moved outside and replaced by a symlink to it (same directory, same inode)', async () => {
    const dir = join(work, 'ctx');
    const outside = join(work, 'outside');
    await mkdir(join(dir, 'a/b'), { recursive: true });
    await mkdir(outside);
    await writeFile(join(dir, 'a/b/f'), 'f');
    await writeFile(join(dir, 'a/b/g'), 'g');
    const local = createHostClient({ localDirs: { context: dir } }).localDir('context')!;
    expect(await bytes(local.read('a/b/f'))).toBe('f');
    await rename(join(dir, 'a'), join(outside, 'a'));
    await symlink(join(outside, 'a'), join(dir, 'a'));
    await expect(bytes(local.read('a/b/g'))).rejects.toThrow(/no regular file "a\/b\/g"/);
    await expect(bytes(local.read('a/b/f'))).rejects.toThrow(/no regular file "a\/b\/f"/);
    // A symlink to a directory inside the directory is a path through a symlink too.
    await rm(join(dir, 'a'));
    await rename(join(outside, 'a'), join(dir, 'c'));
    await symlink('c', join(dir, 'a'));
    await expect(bytes(local.read('a/b/g'))).rejects.toThrow(/no regular file/);
    expect(await bytes(local.read('c/b/g'))).toBe('g');
  });

  it('a large file whose reader stops early never lends its descriptor to the next reads (small files read whole)', async () => {
    const dir = join(work, 'ctx');
    await mkdir(dir);
    await writeFile(join(dir, 'large'), Buffer.alloc(SMALL_FILE_BYTES * 8, 0x4c));
    const smalls: string[] = [];
    for (let i = 0; i < 8; i++) {
      const content = `${String(i).repeat(3)}-`.repeat(2000 + i * 100);
      smalls.push(content);
      await writeFile(join(dir, `small-${i}`), content);
    }
    const local = createHostClient({ localDirs: { context: dir } }).localDir('context')!;
    for (let round = 0; round < 40; round++) {
      for await (const chunk of local.read('large')) {
        expect(chunk[0]).toBe(0x4c);
        break; // the consumer stops while the stream reads ahead
      }
      for (let i = 0; i < smalls.length; i++) expect(await bytes(local.read(`small-${i}`))).toBe(smalls[i]);
    }
  });

  it('reads through a directory given as a symlink (only what is below it may not be one)', async () => {
    const dir = join(work, 'ctx');
    await mkdir(join(dir, 'sub'), { recursive: true });
    await writeFile(join(dir, 'top'), 'top');
    await writeFile(join(dir, 'sub/f'), 'f');
    await symlink(dir, join(work, 'ctx-link'));
    const local = createHostClient({ localDirs: { context: join(work, 'ctx-link') } }).localDir('context')!;
    expect(await bytes(local.read('top'))).toBe('top');
    expect(await bytes(local.read('sub/f'))).toBe('f');
  });

  it('reads small files whole and large ones streamed, to their end', async () => {
    const dir = join(work, 'ctx');
    await mkdir(dir);
    const small = Buffer.alloc(1000, 7);
    const large = Buffer.alloc(SMALL_FILE_BYTES * 2 + 5, 9);
    await writeFile(join(dir, 'small'), small);
    await writeFile(join(dir, 'large'), large);
    await writeFile(join(dir, 'empty'), '');
    const local = createHostClient({ localDirs: { context: dir } }).localDir('context')!;
    const chunks = async (path: string) => {
      const out: Uint8Array[] = [];
      for await (const c of local.read(path)) out.push(c);
      return out;
    };
    const s = await chunks('small');
    expect(s).toHaveLength(1);
    expect(Buffer.concat(s).equals(small)).toBe(true);
    const l = await chunks('large');
    expect(l.length).toBeGreaterThan(1);
    expect(Buffer.concat(l).equals(large)).toBe(true);
    expect(Buffer.concat(await chunks('empty')).length).toBe(0);
    const aborted = new AbortController();
    aborted.abort();
    await expect(bytes(local.read('small', aborted.signal))).rejects.toThrow();
  });

  it('leaves out the store root, and refuses a directory that is the store root', async () => {
    const dir = join(work, 'ctx');
    await mkdir(join(dir, 'store/snapshots'), { recursive: true });
    await writeFile(join(dir, 'f'), 'f');
    const client = createHostClient({ localDirs: { context: dir, root: join(dir, 'store') }, storeRoot: join(dir, 'store') });
    expect((await statAll(client.localDir('context')!.stat())).map((e) => e.path)).toEqual(['f']);
    await expect(statAll(client.localDir('root')!.stat())).rejects.toThrow(/is the store root itself/);
  });

  it('leaves out the excluded paths inside the directory (a file, a directory, a name with pattern characters); others are ignored', async () => {
    const dir = join(work, 'ctx');
    await mkdir(join(dir, 'out/deep'), { recursive: true });
    await mkdir(join(dir, 'src'));
    await writeFile(join(dir, 'out/deep/x'), 'x');
    await writeFile(join(dir, 'app[1].tar'), 't');
    await writeFile(join(dir, 'app1.tar'), 'kept: the pattern is escaped');
    await writeFile(join(dir, 'src/main.c'), 'm');
    const client = createHostClient({
      localDirs: { context: dir },
      excludePaths: [join(dir, 'out'), join(dir, 'app[1].tar'), join(work, 'elsewhere'), dir],
    });
    expect((await statAll(client.localDir('context')!.stat())).map((e) => e.path)).toEqual(['app1.tar', 'src', 'src/main.c']);
  });

  it('leaves out the directories above an excluded path that hold nothing else', async () => {
    const dir = join(work, 'ctx');
    await mkdir(join(dir, 'dist/tars'), { recursive: true });
    await mkdir(join(dir, 'shared'), { recursive: true });
    await writeFile(join(dir, 'dist/tars/app.tar'), 't');
    await writeFile(join(dir, 'shared/app.tar'), 't');
    await writeFile(join(dir, 'shared/keep.txt'), 'k');
    const client = createHostClient({ localDirs: { context: dir }, excludePaths: [join(dir, 'dist/tars/app.tar'), join(dir, 'shared/app.tar')] });
    expect((await statAll(client.localDir('context')!.stat())).map((e) => e.path)).toEqual(['shared', 'shared/keep.txt']);
  });

  it('applies include, exclude and follow paths; readClientFile follows a final symlink inside the directory', async () => {
    const dir = join(work, 'ctx');
    await mkdir(join(dir, 'docker'), { recursive: true });
    await writeFile(join(dir, 'docker/Dockerfile.real'), 'FROM scratch\n');
    await symlink('docker/Dockerfile.real', join(dir, 'Dockerfile'));
    await writeFile(join(dir, 'other'), 'x');
    const local = createHostClient({ localDirs: { context: dir } }).localDir('context')!;
    const picked = await statAll(local.stat({ include: ['Dockerfile'], followPaths: ['Dockerfile'] }));
    expect(picked.map((e) => e.path)).toEqual(['Dockerfile', 'docker', 'docker/Dockerfile.real']);
    expect((await statAll(local.stat({ exclude: ['docker'] }))).map((e) => e.path)).toEqual(['Dockerfile', 'other']);
    expect((await readClientFile(local, 'Dockerfile'))?.toString()).toBe('FROM scratch\n');
    expect(await readClientFile(local, 'missing')).toBeUndefined();
  });

  it('keeps the same sync key for the same directory', () => {
    const a = createHostClient({ localDirs: { context: join(work, 'x') } }).localDir('context')!;
    const b = createHostClient({ localDirs: { other: join(work, 'x') } }).localDir('other')!;
    const c = createHostClient({ localDirs: { context: join(work, 'y') } }).localDir('context')!;
    expect(a.syncKey).toBe(b.syncKey);
    expect(a.syncKey).not.toBe(c.syncKey);
  });
});

describe('host client: outputs', () => {
  it('a directory output merges: entries replace what is at their path, a symlink in the way is never followed', async () => {
    const dest = join(work, 'out');
    const outside = join(work, 'outside');
    await mkdir(join(dest, 'keep'), { recursive: true });
    await mkdir(outside);
    await writeFile(join(dest, 'keep/mine'), 'mine');
    await symlink(outside, join(dest, 'sub'));
    const out = await createHostClient({ cwd: work }).openDir('out', { what: 'test' });
    const now = Date.now();
    const base = { uid: process.getuid!(), gid: process.getgid!(), mtimeMs: now };
    await out.write({ path: 'sub', mode: 0o040750, size: 0, ...base });
    await out.write({ path: 'sub/f', mode: 0o100640, size: 3, ...base }, { stream: async function* () { yield Buffer.from('abc'); } });
    await out.write({ path: 'sub/g', mode: 0o100640, size: 0, linkname: 'sub/f', ...base });
    await out.write({ path: 'sub/l', mode: 0o120777, size: 0, linkname: '/etc/passwd', ...base });
    await out.commit();
    expect(await readFile(join(dest, 'keep/mine'), 'utf8')).toBe('mine');
    expect((await lstat(join(dest, 'sub'))).isDirectory()).toBe(true);
    expect((await lstat(join(dest, 'sub'))).mode & 0o7777).toBe(0o750);
    expect(await readFile(join(dest, 'sub/f'), 'utf8')).toBe('abc');
    expect((await lstat(join(dest, 'sub/g'))).ino).toBe((await lstat(join(dest, 'sub/f'))).ino);
    expect(await readlink(join(dest, 'sub/l'))).toBe('/etc/passwd');
    expect(await readdir(outside)).toEqual([]);
  });

  it('a directory output writes only under directories it was sent: never through a symlink it was sent, never a hardlink to what it did not write', async () => {
    const dest = join(work, 'out');
    const outside = join(work, 'outside');
    await mkdir(outside);
    await writeFile(join(work, 'secret'), 'secret');
    const base = { uid: process.getuid!(), gid: process.getgid!(), mtimeMs: Date.now() };
    const content = { stream: async function* () { yield Buffer.from('x'); } };
    const hostile: { entries: FileStat[]; error: RegExp }[] = [
      // A symlink to a directory outside, then a file "under" it.
      { entries: [{ path: 'a', mode: 0o120777, size: 0, linkname: outside, ...base }, { path: 'a/x', mode: 0o100644, size: 1, ...base }], error: /"a\/x" is not under a directory sent before it/ },
      // A directory, replaced by a symlink, then a file under the old directory.
      { entries: [{ path: 'd', mode: 0o040755, size: 0, ...base }, { path: 'd', mode: 0o120777, size: 0, linkname: outside, ...base }, { path: 'd/x', mode: 0o100644, size: 1, ...base }], error: /"d\/x" is not under a directory sent before it/ },
      // A file under a directory never sent.
      { entries: [{ path: 'nodir/x', mode: 0o100644, size: 1, ...base }], error: /not under a directory sent before it \("nodir"\)/ },
      // A hardlink to a host file outside, or to a symlink it was sent.
      { entries: [{ path: 'h', mode: 0o100644, size: 0, linkname: '../secret', ...base }], error: /links to "..\/secret", not a regular file sent before it/ },
      { entries: [{ path: 's', mode: 0o120777, size: 0, linkname: join(work, 'secret'), ...base }, { path: 'h', mode: 0o100644, size: 0, linkname: 's', ...base }], error: /links to "s", not a regular file sent before it/ },
    ];
    for (const { entries, error } of hostile) {
      await rm(dest, { recursive: true, force: true });
      const out = await createHostClient({ cwd: work }).openDir('out', { what: 'test' });
      const write = async () => {
        for (const e of entries) await out.write(e, (e.mode & 0o170000) === 0o100000 && e.linkname === undefined ? content : undefined);
      };
      await expect(write(), entries.map((e) => e.path).join(' ')).rejects.toThrow(error);
      expect(await readdir(outside)).toEqual([]);
      expect(await readFile(join(work, 'secret'), 'utf8')).toBe('secret');
    }
  });

  it('a directory output refuses to overlap the store root', async () => {
    const client = createHostClient({ cwd: work, storeRoot: join(work, 'store') });
    await expect(client.openDir(work, { what: 'local exporter' })).rejects.toThrow(/overlaps the store root/);
  });

  it('a file output replaces the file only on commit; stdout is written through and never ended', async () => {
    const stdout = new PassThrough();
    const chunks: Buffer[] = [];
    stdout.on('data', (c: Buffer) => chunks.push(c));
    const client = createHostClient({ cwd: work, stdout });
    await writeFile(join(work, 'f'), 'old');
    const file = await client.openFile('f', { what: 'test' });
    file.stream.write('new');
    expect(await readFile(join(work, 'f'), 'utf8')).toBe('old');
    await file.commit();
    expect(await readFile(join(work, 'f'), 'utf8')).toBe('new');
    const out = await client.openStdout({ what: 'test' });
    out.stream.end('to stdout');
    await out.commit();
    expect(Buffer.concat(chunks).toString()).toBe('to stdout');
    expect(stdout.writableEnded).toBe(false);
  });
});

describe('readSmall (a small file read to its end)', () => {
  it('reads what the file has whatever size it was expected to have, each chunk its own (grown files read through the probe)', async () => {
    const { closeSync, openSync } = await import('node:fs');
    const one = join(work, 'one');
    const two = join(work, 'two');
    await writeFile(one, 'a'.repeat(70 * 1024));
    await writeFile(two, 'b'.repeat(10));
    const fd1 = openSync(one, 'r');
    const fd2 = openSync(two, 'r');
    try {
      // Expected 4 bytes, has 70 KiB: the rest comes through the probe, twice.
      const grown = readSmall(fd1, 4);
      // Another grown file read after it: the first one's chunks must not change.
      const other = readSmall(fd2, 2);
      expect(Buffer.concat(grown).toString()).toBe('a'.repeat(70 * 1024));
      expect(grown.length).toBe(3);
      expect(Buffer.concat(other).toString()).toBe('b'.repeat(10));
      // Expected more than it has (it shrank): what it has.
      expect(Buffer.concat(readSmall(fd2, 100)).toString()).toBe('b'.repeat(10));
      expect(readSmall(fd2, 0).map(String)).toEqual(['b'.repeat(10)]);
    } finally {
      closeSync(fd1);
      closeSync(fd2);
    }
  });
});
