import { execFileSync } from 'node:child_process';
import { chmod, chown, link, lstat, mkdir, mkdtemp, readFile, readlink, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BuildContext, BuildResult, Snapshot } from '@bkt/core';
import { createHostClient } from '@bkt/fsutil';
import localExporters from './index.js';

const isRoot = process.getuid?.() === 0;
let work: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-exporter-local-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A committed tree standing in for a solver snapshot: a real directory, mounted as itself. */
function dirSnapshot(path: string): Snapshot {
  return { id: path, parent: null, mount: async () => ({ path, release: async () => {} }), layerPath: () => path };
}

/** The stdout of the client of `ctx()`: the one the last `exporter()` call was given. */
let clientStdout: NodeJS.WritableStream | undefined;

function ctx(): BuildContext {
  const root = join(work, 'store');
  const client = createHostClient({ storeRoot: root, ...(clientStdout ? { stdout: clientStdout } : {}) });
  return { root, client, signal: new AbortController().signal } as BuildContext;
}

async function makeTree(): Promise<string> {
  const src = join(work, 'src');
  await mkdir(join(src, 'dir/sub'), { recursive: true });
  await writeFile(join(src, 'dir/exec.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(src, 'dir/exec.sh'), 0o750);
  await writeFile(join(src, 'a.txt'), 'hello');
  await link(join(src, 'a.txt'), join(src, 'dir/a-hardlink'));
  await symlink('/etc/passwd', join(src, 'dir/outside-link'));
  await symlink('../a.txt', join(src, 'dir/rel-link'));
  await chmod(join(src, 'dir/sub'), 0o1777);
  if (isRoot) await chown(join(src, 'a.txt'), 1234, 5678);
  return src;
}

async function exporter(type: string, attrs: Record<string, string>, stdout?: NodeJS.WritableStream) {
  clientStdout = stdout;
  const plugin = localExporters();
  const ex = plugin.exporters!.find((e) => e.type === type)!;
  return ex.resolve(attrs);
}

describe('local exporter', () => {
  it('writes the tree with modes, owners, symlinks and hardlinks, keeping what dest already had', async () => {
    const src = await makeTree();
    const dest = join(work, 'out');
    await mkdir(dest);
    await writeFile(join(dest, 'stale.txt'), 'old');
    const result: BuildResult = { ref: dirSnapshot(src), metadata: {} };
    await (await exporter('local', { dest })).export(result, ctx());

    expect((await readdir(dest)).sort()).toEqual(['a.txt', 'dir', 'stale.txt']);
    expect(await readFile(join(dest, 'stale.txt'), 'utf8')).toBe('old'); // merged, as BuildKit: never deleted
    expect(await readFile(join(dest, 'a.txt'), 'utf8')).toBe('hello');
    expect((await stat(join(dest, 'dir/exec.sh'))).mode & 0o7777).toBe(0o750);
    expect((await stat(join(dest, 'dir/sub'))).mode & 0o7777).toBe(0o1777);
    expect(await readlink(join(dest, 'dir/outside-link'))).toBe('/etc/passwd');
    expect((await lstat(join(dest, 'dir/outside-link'))).isSymbolicLink()).toBe(true);
    expect(await readlink(join(dest, 'dir/rel-link'))).toBe('../a.txt');
    const a = await stat(join(dest, 'a.txt'));
    expect((await stat(join(dest, 'dir/a-hardlink'))).ino).toBe(a.ino);
    if (isRoot) expect([a.uid, a.gid]).toEqual([1234, 5678]);
  });

  it('merges into a project directory (as `-o .`): replaces only the result\'s paths, never follows a symlink in the way', async () => {
    const src = await makeTree();
    const project = join(work, 'project');
    await mkdir(join(project, 'dir/keep'), { recursive: true });
    await mkdir(join(project, '.git'));
    await writeFile(join(project, '.git/HEAD'), 'ref: main');
    await writeFile(join(project, 'dir/keep/mine.txt'), 'mine');
    await mkdir(join(project, 'a.txt')); // a directory where the result has a file: replaced
    const outside = join(work, 'outside');
    await mkdir(outside);
    await symlink(outside, join(project, 'dir/sub')); // a symlink where the result has a directory: replaced, not followed
    await (await exporter('local', { dest: project })).export({ ref: dirSnapshot(src), metadata: {} }, ctx());

    expect(await readFile(join(project, '.git/HEAD'), 'utf8')).toBe('ref: main');
    expect(await readFile(join(project, 'dir/keep/mine.txt'), 'utf8')).toBe('mine');
    expect(await readFile(join(project, 'a.txt'), 'utf8')).toBe('hello');
    expect((await lstat(join(project, 'dir/sub'))).isDirectory()).toBe(true);
    expect(await readdir(outside)).toEqual([]);
    expect(await readFile(join(project, 'dir/exec.sh'), 'utf8')).toBe('#!/bin/sh\necho hi\n');
  });

  it('writes an empty directory for an empty (scratch) result', async () => {
    const dest = join(work, 'out');
    await (await exporter('local', { dest })).export({ ref: null, metadata: {} }, ctx());
    expect(await readdir(dest)).toEqual([]);
    expect(await readdir(join(work, 'store'))).toEqual([]); // scratch dir cleaned up
  });

  it('splits a multi-platform result into per-platform directories', async () => {
    const a = join(work, 'a');
    const b = join(work, 'b');
    await mkdir(a);
    await mkdir(b);
    await writeFile(join(a, 'f'), 'amd64');
    await writeFile(join(b, 'f'), 'arm64');
    const result: BuildResult = {
      ref: null,
      refs: { 'linux/amd64': dirSnapshot(a), 'linux/arm64/v8': dirSnapshot(b) },
      metadata: {},
    };
    const dest = join(work, 'out');
    await (await exporter('local', { dest })).export(result, ctx());
    expect(await readFile(join(dest, 'linux_amd64/f'), 'utf8')).toBe('amd64');
    expect(await readFile(join(dest, 'linux_arm64_v8/f'), 'utf8')).toBe('arm64');

    const flat = join(work, 'flat');
    await (await exporter('local', { dest: flat, 'platform-split': 'false' })).export(result, ctx());
    expect(await readdir(flat)).toEqual(['f']);
    expect(await readFile(join(flat, 'f'), 'utf8')).toBe('arm64');
  });

  it('rejects unknown and missing attributes, naming them', async () => {
    await expect(exporter('local', { dest: 'x', compression: 'gzip' })).rejects.toThrow(/unknown attribute "compression"/);
    await expect(exporter('local', {})).rejects.toThrow(/attribute dest is required/);
    await expect(exporter('tar', { dest: 'x', 'platform-split': 'yes' })).rejects.toThrow(/platform-split/);
  });

  it('refuses a dest that holds the store or lies inside it', async () => {
    await mkdir(join(work, 'store'));
    await writeFile(join(work, 'store/keep'), 'store data');
    for (const dest of [work, join(work, 'store'), join(work, 'store/sub')]) {
      const ex = await exporter('local', { dest });
      await expect(ex.export({ ref: null, metadata: {} }, ctx())).rejects.toThrow(/overlaps the store root/);
    }
    expect(await readFile(join(work, 'store/keep'), 'utf8')).toBe('store data');
  });

  it('refuses a dest that is a file', async () => {
    const dest = join(work, 'file');
    await writeFile(dest, 'x');
    const ex = await exporter('local', { dest });
    await expect(ex.export({ ref: null, metadata: {} }, ctx())).rejects.toThrow(/not a directory/);
  });
});

describe('tar exporter', () => {
  it('writes a deterministic archive that GNU tar reads back with owners, modes and links', async () => {
    const src = await makeTree();
    const result: BuildResult = { ref: dirSnapshot(src), metadata: {} };
    const file1 = join(work, 'out/one.tar');
    const file2 = join(work, 'two.tar');
    await (await exporter('tar', { dest: file1 })).export(result, ctx());
    await (await exporter('tar', { dest: file2 })).export(result, ctx());
    expect(await readFile(file1)).toEqual(await readFile(file2));

    const listing = execFileSync('tar', ['--numeric-owner', '-tvf', file1], { encoding: 'utf8' }).trim().split('\n');
    const names = listing.map((l) => l.split(/\s+/).slice(5).join(' '));
    expect(names).toEqual([
      'a.txt',
      'dir/',
      'dir/a-hardlink link to a.txt',
      'dir/exec.sh',
      'dir/outside-link -> /etc/passwd',
      'dir/rel-link -> ../a.txt',
      'dir/sub/',
    ]);
    expect(listing[3]).toMatch(/^-rwxr-x---/);
    expect(listing[6]).toMatch(/^drwxrwxrwt/);
    if (isRoot) expect(listing[0]).toMatch(/ 1234\/5678 /);

    const x = join(work, 'x');
    await mkdir(x);
    execFileSync('tar', ['-xf', file1, '-C', x]);
    expect(await readFile(join(x, 'dir/a-hardlink'), 'utf8')).toBe('hello');
    expect(await readdir(join(work, 'out'))).toEqual(['one.tar']); // no temp file left
  });

  it('fails promptly (no hang, no unhandled rejection) when the output breaks', async () => {
    const src = await makeTree();
    const broken = new Writable({
      write(_chunk, _enc, cb) {
        const err = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
        cb(err);
      },
    });
    const err = await (await exporter('tar', { dest: '-' }, broken)).export({ ref: dirSnapshot(src), metadata: {} }, ctx()).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/EPIPE/);
  });

  it('writes to the given stdout for dest=-', async () => {
    const src = await makeTree();
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    await (await exporter('tar', { dest: '-' }, out)).export({ ref: dirSnapshot(src), metadata: {} }, ctx());
    const file = join(work, 'stdout.tar');
    await writeFile(file, Buffer.concat(chunks));
    const names = execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).trim().split('\n');
    expect(names).toContain('dir/exec.sh');
    expect(out.writableEnded).toBe(false);
  });
});
