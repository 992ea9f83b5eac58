/**
 * The layer tar's bytes are part of bkt's contract: the same tree gives the
 * same diff id (and, compressed, the same layer digest) in every release, so a
 * rebuild reproduces an image digest. This pins the digest of one tree holding
 * every kind of entry an overlay upper dir has; a change of the writer that
 * moves it changes every image bkt makes.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, chown, link, lutimes, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import tar from 'tar-stream';
import { layerTar } from './layer.js';

/** `bytes` deterministic pseudo-random bytes (a sha256 chain). */
function noise(bytes: number, seed: string): Buffer {
  const out = Buffer.alloc(bytes);
  let block = createHash('sha256').update(seed).digest();
  for (let off = 0; off < bytes; off += block.length) {
    block.copy(out, off);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/** Sets `trusted.overlay.opaque=y` on `rel` under `root` (GNU tar restores xattrs; Node cannot set them). */
async function markOpaque(root: string, rel: string): Promise<void> {
  const pack = tar.pack();
  pack.entry({ name: `${rel}/`, type: 'directory', mode: 0o755, pax: { 'SCHILY.xattr.trusted.overlay.opaque': 'y' } });
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  execFileSync('tar', ['--xattrs', '--xattrs-include=trusted.*', '-xf', '-', '-C', root], { input: Buffer.concat(chunks) });
}

const canRoot = process.getuid?.() === 0;

/**
 * An overlay upper dir by hand: regular files (empty, small, over 1 MiB, setuid,
 * other owners), directories, an opaque directory, whiteouts (0/0 character
 * devices), symlinks (one target over 100 bytes), hard links (small and large),
 * devices, a fifo, a socket, names over 100 bytes (ustar prefix and pax) and
 * a non-ASCII name; mtimes on both sides of the clamp.
 */
async function everyKindTree(root: string): Promise<void> {
  const f = (p: string) => join(root, p);
  await mkdir(f('dir/sub'), { recursive: true });
  await mkdir(f('opq'));
  await mkdir(f(`long/${'a'.repeat(60)}`), { recursive: true });
  await writeFile(f('a-file'), 'hello\n');
  await writeFile(f('empty'), '');
  await writeFile(f('exec'), '#!/bin/sh\necho hi\n');
  await writeFile(f('setuid'), 'suid');
  await writeFile(f('big'), noise(3 * 1024 * 1024 + 123, 'big'));
  await writeFile(f('dir/sub/deep.txt'), 'deep');
  await writeFile(f('opq/keep'), 'kept');
  await writeFile(f('hl1'), 'linked twice');
  await link(f('hl1'), f('dir/hl2'));
  await writeFile(f('biglink1'), noise(1536 * 1024, 'biglink'));
  await link(f('biglink1'), f('dir/biglink2'));
  await writeFile(f(`long/${'a'.repeat(60)}/${'b'.repeat(60)}`), 'ustar prefix');
  await writeFile(f('c'.repeat(120)), 'pax path');
  await writeFile(f('ünï.txt'), 'utf-8 name');
  await symlink('a-file', f('link'));
  await symlink(`/${'t'.repeat(150)}`, f('longlink'));
  execFileSync('mknod', [f('.wh-src-gone'), 'c', '0', '0']);
  execFileSync('mv', [f('.wh-src-gone'), f('gone')]);
  execFileSync('mknod', [f('dir/gone2'), 'c', '0', '0']);
  execFileSync('mknod', [f('cdev'), 'c', '1', '3']);
  execFileSync('mknod', [f('bdev'), 'b', '7', '200']);
  execFileSync('mkfifo', [f('fifo')]);
  // A socket: not archived.
  spawnSync('python3', ['-c', `import socket; s = socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(f('sock'))})`]);
  await markOpaque(root, 'opq');
  await chmod(f('a-file'), 0o644);
  await chmod(f('empty'), 0o600);
  await chmod(f('exec'), 0o755);
  await chmod(f('setuid'), 0o4755);
  await chmod(f('dir'), 0o750);
  await chown(f('exec'), 1000, 1001);
  await chown(f('dir/sub'), 33, 33);
  await chown(f('cdev'), 0, 5);
  // mtimes: some before the clamp (kept), some after (clamped); directories last, deepest first.
  const old = 500;
  const late = 5_000_000_000;
  for (const p of ['a-file', 'empty', 'big', 'dir/sub/deep.txt', 'opq/keep', 'hl1', 'biglink1', 'c'.repeat(120), 'ünï.txt', `long/${'a'.repeat(60)}/${'b'.repeat(60)}`, 'cdev', 'bdev', 'fifo', 'gone', 'dir/gone2']) {
    await utimes(f(p), old, old + 0.75);
  }
  for (const p of ['exec', 'setuid']) await utimes(f(p), late, late);
  await lutimes(f('link'), old, old);
  await lutimes(f('longlink'), late, late);
  for (const p of [`long/${'a'.repeat(60)}`, 'long', 'dir/sub', 'dir', 'opq']) await utimes(f(p), old, old + 0.25);
}

async function sha256Of(stream: AsyncIterable<Uint8Array>): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of stream) {
    h.update(c);
    size += c.byteLength;
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

describe.skipIf(!canRoot)('layerTar digest', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'bkt-layer-digest-'));
    await everyKindTree(root);
  });
  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('is pinned for a tree with every kind of entry (mtimes clamped)', async () => {
    expect(await sha256Of(layerTar(root, { clampMtime: 1000 }))).toEqual({ digest: 'sha256:a50537299f58b5442fb21bb381faf54f0489755e37646e1c91b5f94a63a9cce6', size: 4741632 });
  });

  it('is pinned without a clamp and without opaque markers', async () => {
    const got = await sha256Of(layerTar(root, { withOpaque: false }));
    expect(got).toEqual({ digest: 'sha256:94409ca0fafaf466773e5d84c6032ec75e2eed32cca6934ae78320a04019f05d', size: 4741120 });
  });

  it('keeps the permission bits of a file and a directory of mode 000', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bkt-layer-mode-'));
    try {
      await mkdir(join(dir, 'locked'));
      await writeFile(join(dir, 'secret'), 'x');
      await chmod(join(dir, 'secret'), 0);
      await chmod(join(dir, 'locked'), 0);
      const extract = tar.extract();
      const feeding = (async () => {
        for await (const c of layerTar(dir, { withOpaque: false })) extract.write(c);
        extract.end(undefined);
      })();
      const modes: Record<string, number | undefined> = {};
      for await (const e of extract) {
        modes[e.header.name] = e.header.mode;
        e.resume();
      }
      await feeding;
      expect(modes).toEqual({ 'locked/': 0, secret: 0 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
