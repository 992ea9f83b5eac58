import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Stager } from './stager.js';

const isRoot = process.getuid?.() === 0;
let work: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-stager-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function* pieces(bytes: Buffer, size: number): AsyncGenerator<Uint8Array> {
  // One buffer reused for every piece, as a producer may: the stager copies each before asking for the next.
  const reused = Buffer.alloc(size);
  for (let off = 0; off < bytes.length; off += size) {
    const n = bytes.copy(reused, 0, off, off + size);
    yield reused.subarray(0, n);
  }
}

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const openFds = async () => (await readdir('/proc/self/fd')).length;
const meta = { uid: 0, gid: 0, perm: 0o4751, mtime: new Date(1_600_000_000_123) };

describe('Stager', () => {
  it('writes each file with its bytes, mode and mtime and returns its digest, whatever the pieces (more than it queues at once)', async () => {
    const stager = new Stager();
    const big = Buffer.alloc(40 * 1024 * 1024 + 5);
    for (let i = 0; i < big.length; i += 4096) big[i] = i % 251;
    const files = [Buffer.from('a'), Buffer.alloc(0), Buffer.from('x'.repeat(100_000)), big];
    try {
      const digests = await Promise.all(files.map(async (b, i) => (await stager.stage(join(work, `f${i}`), pieces(b, i === 3 ? 1024 * 1024 : 7), b.length, meta)).written));
      expect(digests).toEqual(files.map(sha));
    } finally {
      await stager.close();
    }
    for (let i = 0; i < files.length; i++) {
      expect((await readFile(join(work, `f${i}`))).equals(files[i]!)).toBe(true);
      const st = await stat(join(work, `f${i}`));
      expect(st.mode & 0o7777).toBe(0o4751);
      expect(Math.abs(st.mtimeMs - 1_600_000_000_123)).toBeLessThan(0.001); // times are set as float seconds
      if (isRoot) expect([st.uid, st.gid]).toEqual([0, 0]);
    }
  });

  it('refuses an existing path and a symlink (never written through), reports a failed read, and leaves no descriptor open', async () => {
    const before = await openFds();
    const stager = new Stager();
    await writeFile(join(work, 'exists'), 'keep');
    await symlink(join(work, 'target'), join(work, 'link'));
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield Buffer.from('half');
      throw new Error('the client went away');
    }
    // A file left half-written: its descriptor must be closed by close().
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    async function* stalled(): AsyncGenerator<Uint8Array> {
      yield Buffer.alloc(70_000, 1);
      await held;
    }
    const pending = stager.stage(join(work, 'stalled'), stalled(), 140_000, meta).then((s) => s.written);
    try {
      await expect((await stager.stage(join(work, 'exists'), pieces(Buffer.from('new'), 3), 3, meta)).written).rejects.toMatchObject({ code: 'EEXIST' });
      await expect((await stager.stage(join(work, 'link'), pieces(Buffer.from('new'), 3), 3, meta)).written).rejects.toMatchObject({ code: 'EEXIST' });
      await expect(stager.stage(join(work, 'failed'), failing(), 8, meta)).rejects.toThrow('the client went away');
      // The stage after a failure works.
      expect(await (await stager.stage(join(work, 'ok'), pieces(Buffer.from('fine'), 2), 4, meta)).written).toBe(sha(Buffer.from('fine')));
    } finally {
      await stager.close();
      release();
    }
    await expect(pending).rejects.toThrow();
    expect(await readFile(join(work, 'exists'), 'utf8')).toBe('keep');
    await expect(stat(join(work, 'target'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await openFds()).toBe(before);
  });
});
