import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBktError } from '@bkt/core';
import { openOutputFile, writeOutputFile } from './output-file.js';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-output-file-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('writeOutputFile', () => {
  it('creates a missing file (and its parents) with the default mode', async () => {
    const dest = join(work, 'new/dir/out.json');
    await writeOutputFile(dest, '{}\n', { what: '--metadata-file' });
    expect(await readFile(dest, 'utf8')).toBe('{}\n');
    expect((await stat(dest)).mode & 0o777).toBe(0o644 & ~process.umask());
  });

  it('replaces a regular file atomically, keeping its mode, and leaves no temporary file', async () => {
    const dir = join(work, 'replace');
    await mkdir(dir);
    const dest = join(dir, 'iid');
    await writeFile(dest, 'old');
    await chmod(dest, 0o600);
    const before = (await stat(dest)).ino;
    await writeOutputFile(dest, 'new', { what: '--iidfile' });
    expect(await readFile(dest, 'utf8')).toBe('new');
    expect((await stat(dest)).mode & 0o777).toBe(0o600);
    expect((await stat(dest)).ino).not.toBe(before); // renamed over, not truncated in place
    expect(await readdir(dir)).toEqual(['iid']);
  });

  it('abort() keeps the old file as it was', async () => {
    const dest = join(work, 'kept');
    await writeFile(dest, 'old');
    const out = await openOutputFile(dest, { what: 'tar exporter: dest' });
    out.stream.write('partial');
    await out.abort();
    expect(await readFile(dest, 'utf8')).toBe('old');
    expect((await readdir(work)).filter((n) => n.includes('bkt-partial'))).toEqual([]);
  });

  it('writes into /dev/null, which stays a character device', async () => {
    await writeOutputFile('/dev/null', 'discarded', { what: 'tar exporter: dest' });
    const st = await lstat('/dev/null');
    expect(st.isCharacterDevice()).toBe(true);
    expect(st.rdev).toBe(0x103); // 1:3
  });

  it('writes into a FIFO, which stays a FIFO, and its reader gets the bytes', async () => {
    const fifo = join(work, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const chunks: Buffer[] = [];
    const reading = new Promise<void>((resolve, reject) => {
      const r = createReadStream(fifo);
      r.on('data', (c) => chunks.push(c as Buffer));
      r.on('end', resolve);
      r.on('error', reject);
    });
    await writeOutputFile(fifo, 'through the pipe', { what: 'tar exporter: dest' });
    await reading;
    expect(Buffer.concat(chunks).toString()).toBe('through the pipe');
    expect((await lstat(fifo)).isFIFO()).toBe(true);
  });

  it('follows a symlink: the link stays, its target file is replaced', async () => {
    const target = join(work, 'link-target');
    const link = join(work, 'link');
    await writeFile(target, 'old');
    await symlink('link-target', link);
    await writeOutputFile(link, 'new', { what: '--metadata-file' });
    expect(await readlink(link)).toBe('link-target');
    expect(await readFile(target, 'utf8')).toBe('new');
  });

  it('follows a symlink to /dev/null and writes into the device', async () => {
    const link = join(work, 'null-link');
    await symlink('/dev/null', link);
    await writeOutputFile(link, 'x', { what: '--iidfile' });
    expect((await lstat('/dev/null')).isCharacterDevice()).toBe(true);
    expect((await lstat(link)).isSymbolicLink()).toBe(true);
  });

  it('refuses a directory, naming the destination', async () => {
    const dir = join(work, 'a-dir');
    await mkdir(dir);
    const err = await writeOutputFile(dir, 'x', { what: 'tar exporter: dest' }).catch((e: unknown) => e);
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toBe(
      `tar exporter: dest "${dir}" is a directory; an output file must be a regular file (replaced), a character device or a FIFO (written into)`,
    );
  });

  it('refuses a symlink loop', async () => {
    const a = join(work, 'loop-a');
    await symlink('loop-b', a);
    await symlink('loop-a', join(work, 'loop-b'));
    const err = await writeOutputFile(a, 'x', { what: '--iidfile' }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/--iidfile ".*loop-a": too many levels of symbolic links/);
  });
});

describe('symlinks are followed as the kernel follows them', () => {
  it('a relative link in a symlinked directory climbs from the real directory', async () => {
    // dir -> real/inner; dir/out -> ../f means real/f, not <work>/f.
    const base = join(work, 'kernel');
    await mkdir(join(base, 'real/inner'), { recursive: true });
    await symlink('real/inner', join(base, 'dir'));
    await symlink('../f', join(base, 'real/inner/out'));
    await writeOutputFile(join(base, 'dir/out'), 'here', { what: '--iidfile' });
    expect(await readFile(join(base, 'real/f'), 'utf8')).toBe('here');
    expect(await readdir(base)).toEqual(['dir', 'real']);
  });

  it('a destination with .. after a symlinked directory', async () => {
    const base = join(work, 'kernel-dotdot');
    await mkdir(join(base, 'a/b'), { recursive: true });
    await symlink('a/b', join(base, 'link'));
    await writeOutputFile('link/../g', 'there', { what: '--metadata-file' }, base);
    expect(await readFile(join(base, 'a/g'), 'utf8')).toBe('there');
  });
});
