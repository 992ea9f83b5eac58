import { closeSync, existsSync, fstatSync, lstatSync, mkdirSync, mkdtempSync, readlinkSync, renameSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bindDirectoryFd, bindSubdirectory, openDirectoryInRoot } from './subdir.js';
import { unmount } from './sys.js';

const top = mkdtempSync(join(tmpdir(), 'bkt-subdir-'));
const root = join(top, 'root');
afterAll(() => rmSync(top, { recursive: true, force: true }));

mkdirSync(join(root, 'a/b'), { recursive: true });
mkdirSync(join(top, 'outside'));
writeFileSync(join(top, 'outside/secret'), 'host');
writeFileSync(join(root, 'file'), '');
symlinkSync('/', join(root, 'to-root'));
symlinkSync('../..', join(root, 'a/up'));
symlinkSync(join(top, 'outside'), join(root, 'to-outside'));
symlinkSync('a/b', join(root, 'rel'));
symlinkSync('loop2', join(root, 'loop1'));
symlinkSync('loop1', join(root, 'loop2'));

/** The host path of the directory `path` resolves to, and closes it. */
function resolved(path: string, create = false): string {
  const fd = openDirectoryInRoot(root, path, { create, what: 'test' });
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } finally {
    closeSync(fd);
  }
}

describe('openDirectoryInRoot', () => {
  it('resolves every symlink inside the root', () => {
    expect(resolved('a/b')).toBe(join(root, 'a/b'));
    expect(resolved('/')).toBe(root);
    expect(resolved('../../..')).toBe(root);
    expect(resolved('to-root')).toBe(root);
    expect(resolved('to-root/a')).toBe(join(root, 'a'));
    expect(resolved('a/up')).toBe(root);
    expect(resolved('a/up/a/b')).toBe(join(root, 'a/b'));
    expect(resolved('rel')).toBe(join(root, 'a/b'));
  });

  it('an absolute symlink out of the root lands inside it (created there, never on the host)', () => {
    expect(resolved('to-outside', true)).toBe(join(root, top.slice(1), 'outside'));
    expect(existsSync(join(root, top.slice(1), 'outside/secret'))).toBe(false);
  });

  it('creates missing directories 0755 whatever the umask', () => {
    const old = process.umask(0o077);
    try {
      expect(resolved('new/deeper', true)).toBe(join(root, 'new/deeper'));
    } finally {
      process.umask(old);
    }
    expect(lstatSync(join(root, 'new')).mode & 0o7777).toBe(0o755);
    expect(lstatSync(join(root, 'new/deeper')).mode & 0o7777).toBe(0o755);
  });

  it('names the problem: missing, not a directory, a loop', () => {
    expect(() => resolved('missing')).toThrow(/^test: missing does not exist$/);
    expect(() => resolved('file')).toThrow(/^test: file is not a directory$/);
    expect(() => resolved('file/x', true)).toThrow(/^test: file is not a directory$/);
    expect(() => resolved('loop1', true)).toThrow(/too many levels of symbolic links/);
  });
});

describe('bindDirectoryFd', () => {
  it('mounts the directory that was opened, though its path became a symlink out of the root', async () => {
    mkdirSync(join(root, 'victim'));
    writeFileSync(join(root, 'victim/inside'), 'cache');
    const fd = openDirectoryInRoot(root, 'victim', { create: false, what: 'test' });
    const point = join(top, 'mnt');
    mkdirSync(point);
    try {
      renameSync(join(root, 'victim'), join(root, 'moved'));
      symlinkSync(join(top, 'outside'), join(root, 'victim'));
      await bindDirectoryFd(fd, point);
    } finally {
      closeSync(fd);
    }
    try {
      expect(await readdir(point)).toEqual(['inside']);
    } finally {
      await unmount(point);
    }
  });

  // What bindSubdirectory resolves again on: the kernel refuses a removed directory, whose link count is then 0.
  it('refuses a directory removed after it was opened', async () => {
    mkdirSync(join(root, 'removed'));
    const fd = openDirectoryInRoot(root, 'removed', { create: false, what: 'test' });
    const point = join(top, 'mnt-removed');
    mkdirSync(point);
    try {
      rmdirSync(join(root, 'removed'));
      await expect(bindDirectoryFd(fd, point)).rejects.toThrow(/mount --bind of a cache directory on .* failed/);
      expect(fstatSync(fd).nlink).toBe(0);
    } finally {
      closeSync(fd);
    }
  });
});

describe('bindSubdirectory', () => {
  it('mounts the directory resolved inside the root, created when missing', async () => {
    const point = join(top, 'mnt-sub');
    await bindSubdirectory(root, 'to-outside/made', point, { create: true, what: 'test' });
    try {
      writeFileSync(join(point, 'written'), '');
      expect(existsSync(join(root, top.slice(1), 'outside/made/written'))).toBe(true);
      expect(existsSync(join(top, 'outside/made'))).toBe(false);
    } finally {
      await unmount(point);
    }
  });
});
