import { chmod, chown, link, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, utimes, writeFile, lutimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pb } from '@bkt/api';
import { copyAction } from './copy.js';

let work: string;
let src: string;

/** Every entry under `dir`: type, mode, owner, mtime, atime, content or link target, and its hardlink group. */
async function snapshotTree(dir: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  const inodes = new Map<number, string>();
  const reads: [Record<string, unknown>, string][] = [];
  const visit = async (abs: string, rel: string) => {
    const st = await lstat(abs);
    const e: Record<string, unknown> = {
      mode: st.mode.toString(8),
      uid: st.uid,
      gid: st.gid,
      mtime: st.mtimeMs,
    };
    if (!st.isDirectory()) e.atime = st.atimeMs; // a directory's atime moves when it is listed
    if (st.isFile()) {
      reads.push([e, abs]); // after every stat: reading moves the atime of a file and its hardlinks
      if (st.nlink > 1) {
        if (!inodes.has(st.ino)) inodes.set(st.ino, rel);
        e.sameAs = inodes.get(st.ino);
      }
    }
    if (st.isSymbolicLink()) e.target = await readlink(abs);
    out[rel] = e;
    if (st.isDirectory()) for (const n of (await readdir(abs)).sort()) await visit(path.join(abs, n), rel ? `${rel}/${n}` : n);
  };
  await visit(dir, '');
  for (const [e, abs] of reads) e.content = await readFile(abs, 'utf8');
  return out;
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'bkt-copy-test-'));
  src = path.join(work, 'src');
  await mkdir(path.join(src, 'tree/sub/deep'), { recursive: true });
  await writeFile(path.join(src, 'tree/a.txt'), 'a');
  await writeFile(path.join(src, 'tree/sub/b.sh'), '#!/bin/sh\n');
  await writeFile(path.join(src, 'tree/sub/deep/c'), 'c');
  await writeFile(path.join(src, 'tree/suid'), 's');
  await link(path.join(src, 'tree/a.txt'), path.join(src, 'tree/sub/a-hard.txt'));
  await link(path.join(src, 'tree/sub/deep/c'), path.join(src, 'tree/c-hard'));
  await symlink('sub/b.sh', path.join(src, 'tree/rel-link'));
  await symlink('/etc/passwd', path.join(src, 'tree/abs-link'));
  await symlink('../../../../../etc', path.join(src, 'tree/sub/up-link'));
  await chmod(path.join(src, 'tree/sub/b.sh'), 0o750);
  await chmod(path.join(src, 'tree/suid'), 0o4755);
  await chmod(path.join(src, 'tree/sub/deep'), 0o700);
  await chown(path.join(src, 'tree/sub/b.sh'), 1234, 5678);
  await chown(path.join(src, 'tree/sub'), 42, 43);
  await chmod(path.join(src, 'tree/sub'), 0o2775); // chown cleared nothing on a dir, but set the setgid bit after it
  // A file of our own owner under the setgid directory: a file created there takes the directory's group unless chowned.
  await writeFile(path.join(src, 'tree/sub/plain.txt'), 'p');
  await chown(path.join(src, 'tree/sub/plain.txt'), process.getuid!(), process.getgid!());
  // Larger than what the copier copies through its buffer.
  await writeFile(path.join(src, 'tree/big.bin'), Buffer.alloc(3 * 1024 * 1024 + 17, 'b'));
  // Atimes a little in the future and after the mtimes: reading an entry (relatime) then leaves them alone,
  // so both copies see the same source. Whole and half seconds: exact through Node's float seconds.
  const atime = Math.ceil(Date.now() / 1000) + 3600;
  await lutimes(path.join(src, 'tree/rel-link'), atime, 1_100_000);
  await lutimes(path.join(src, 'tree/abs-link'), atime, 1_200_000);
  await lutimes(path.join(src, 'tree/sub/up-link'), atime, 1_300_000);
  let t = 1_500_000_000;
  for (const p of ['tree/a.txt', 'tree/big.bin', 'tree/sub/plain.txt', 'tree/sub/b.sh', 'tree/sub/deep/c', 'tree/suid', 'tree/sub/deep', 'tree/sub', 'tree']) {
    await utimes(path.join(src, p), atime, t + 0.5);
    t += 1000;
  }
});
afterAll(() => rm(work, { recursive: true, force: true }));

function copyOf(source: string, dest: string, dirCopyContents: boolean): pb.FileActionCopy {
  return pb.FileActionCopy.fromPartial({ src: source, dest, mode: -1, timestamp: -1, createDestPath: true, dirCopyContents });
}

describe('copy of a plain directory: cp -a fast path vs Node copier', () => {
  for (const dirCopyContents of [false, true]) {
    it(`produces identical trees (dirCopyContents: ${dirCopyContents})`, async () => {
      const fast = await mkdtemp(path.join(work, 'fast-'));
      const slow = await mkdtemp(path.join(work, 'slow-'));
      const action = copyOf('/tree', '/out/here', dirCopyContents);
      await copyAction(src, fast, action, null, undefined, { allowCp: true });
      await copyAction(src, slow, action, null, undefined, { allowCp: false });
      const [a, b] = [await snapshotTree(path.join(fast, 'out/here')), await snapshotTree(path.join(slow, 'out/here'))];
      // The copied directory itself: its mtime is "now" when the contents were copied into a fresh one.
      if (dirCopyContents) {
        expect(Math.abs((a[''] as { mtime: number }).mtime - (b[''] as { mtime: number }).mtime)).toBeLessThan(60_000);
        delete (a[''] as { mtime?: number }).mtime;
        delete (b[''] as { mtime?: number }).mtime;
      }
      expect(a).toEqual(b);
      // The inputs really exercised what the comparison is about.
      expect(a['sub/a-hard.txt']).toMatchObject({ sameAs: 'a.txt' });
      expect(a['c-hard']).toMatchObject({ sameAs: 'c-hard' });
      expect(a['sub/deep/c']).toMatchObject({ sameAs: 'c-hard' });
      expect(a['sub/up-link']).toMatchObject({ target: '../../../../../etc' });
      expect(a['sub/b.sh']).toMatchObject({ uid: 1234, gid: 5678, mode: (0o100750).toString(8), mtime: 1_500_003_000_500 });
      expect(a['sub/plain.txt']).toMatchObject({ uid: process.getuid!(), gid: process.getgid!(), content: 'p' });
      expect(a['big.bin']).toMatchObject({ mtime: 1_500_001_000_500 });
      expect((a['big.bin'] as { content: string }).content).toHaveLength(3 * 1024 * 1024 + 17);
      expect(a['suid']).toMatchObject({ mode: (0o104755).toString(8) });
      expect(a['rel-link']).toMatchObject({ mtime: 1_100_000_000 });
      expect(a['a.txt']).toMatchObject({ mtime: 1_500_000_000_500, atime: b['a.txt'] && (b['a.txt'] as { atime: number }).atime });
      expect(a['sub']).toMatchObject({ uid: 42, gid: 43, mode: (0o42775).toString(8), mtime: 1_500_007_000_500 });
      if (!dirCopyContents) expect(a['']).toMatchObject({ mtime: 1_500_008_000_500 });
      // Parents created for the destination are the same too (their mtime is when they were created).
      const { mtime: _f, ...fastOut } = (await snapshotTree(path.join(fast, 'out')))[''] as Record<string, unknown>;
      const { mtime: _s, ...slowOut } = (await snapshotTree(path.join(slow, 'out')))[''] as Record<string, unknown>;
      expect(fastOut).toEqual(slowOut);
    });
  }

  it('leaves an existing destination to the Node copier (merge rules), with the same result either way', async () => {
    const fast = await mkdtemp(path.join(work, 'fast-'));
    const slow = await mkdtemp(path.join(work, 'slow-'));
    for (const d of [fast, slow]) {
      await mkdir(path.join(d, 'out/sub'), { recursive: true });
      await writeFile(path.join(d, 'out/keep'), 'k');
      await utimes(path.join(d, 'out/keep'), Math.ceil(Date.now() / 1000) + 3600, 1_600_000_000);
      await chmod(path.join(d, 'out'), 0o711);
    }
    const action = copyOf('/tree', '/out', true);
    await copyAction(src, fast, action, null, undefined, { allowCp: true });
    await copyAction(src, slow, action, null, undefined, { allowCp: false });
    const [a, b] = [await snapshotTree(path.join(fast, 'out')), await snapshotTree(path.join(slow, 'out'))];
    delete (a[''] as { mtime?: number }).mtime;
    delete (b[''] as { mtime?: number }).mtime;
    expect(a).toEqual(b);
    expect(a['']).toMatchObject({ mode: (0o40711).toString(8) });
    expect(a['keep']).toMatchObject({ content: 'k' });
  });

  it('keeps the owners of files copied under a setgid directory (a new file would take the directory\'s group)', async () => {
    const dest = await mkdtemp(path.join(work, 'setgid-'));
    await mkdir(path.join(dest, 'out'));
    await chown(path.join(dest, 'out'), 0, 4242);
    await chmod(path.join(dest, 'out'), 0o2775);
    await copyAction(src, dest, copyOf('/tree', '/out', true), null, undefined, { allowCp: false });
    const tree = await snapshotTree(path.join(dest, 'out'));
    const own = { uid: process.getuid!(), gid: process.getgid!() };
    expect(tree['a.txt']).toMatchObject({ ...own, content: 'a' });
    expect(tree['big.bin']).toMatchObject(own);
    expect(tree['sub/plain.txt']).toMatchObject(own);
    expect(tree['sub/b.sh']).toMatchObject({ uid: 1234, gid: 5678 });
    expect(tree['sub']).toMatchObject({ uid: 42, gid: 43 });
  });

  it('never reads outside the source root through a symlinked source', async () => {
    const dest = await mkdtemp(path.join(work, 'fast-'));
    const root = await mkdtemp(path.join(work, 'root-'));
    await symlink('/etc', path.join(root, 'etc-link'));
    // Followed inside the root, /etc-link is the root's own /etc: absent, so nothing from the host is copied.
    const action = pb.FileActionCopy.fromPartial({ ...copyOf('/etc-link', '/o', true), followSymlink: true });
    await expect(copyAction(root, dest, action, null)).rejects.toThrow(/not found/);
    await expect(lstat(path.join(dest, 'o/passwd'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
