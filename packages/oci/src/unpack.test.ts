import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, writeFile, symlink, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import tar from 'tar-stream';
import { isBktError, type Snapshot } from '@bkt/core';
import { openTestContext, type TestContext } from '@bkt/store/testing';
import { resolveRelInRoot } from '@bkt/fsutil';
import { resolveParts, unpackLayer } from './unpack.js';
import { decompress } from './compression.js';
import { END_OF_TAR, TarType, encodeHeader, padding } from './tar-header.js';

/** A tar made by GNU tar from a directory tree. */
function gnuTar(dir: string): Buffer {
  return execFileSync('tar', ['--numeric-owner', '-C', dir, '-cf', '-', '.'], { maxBuffer: 64 << 20 });
}

/** A tar of hand-made entries (for names GNU tar would refuse to write). */
async function craftedTar(entries: (Partial<tar.Header> & { name: string; body?: string })[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c) => chunks.push(c as Buffer));
  const ended = new Promise<void>((r) => pack.on('end', () => r()));
  for (const { body, ...h } of entries) {
    const header = { ...h, mtime: h.mtime ?? new Date(0) } as tar.Header;
    const content = body ?? (h.type === 'file' ? '' : undefined);
    await new Promise<void>((res, rej) => {
      const done = (e?: Error | null) => (e ? rej(e) : res());
      if (content === undefined) pack.entry(header, done);
      else pack.entry({ ...header, size: Buffer.byteLength(content) }, content, done);
    });
  }
  pack.finalize();
  await ended;
  return Buffer.concat(chunks);
}

async function* once(b: Buffer): AsyncGenerator<Uint8Array> {
  yield b;
}

describe('unpackLayer', () => {
  let t: TestContext;
  let work: string;
  beforeAll(async () => {
    t = await openTestContext();
    work = await mkdtemp(join(tmpdir(), 'bkt-unpack-'));
  });
  afterAll(async () => {
    await t?.close();
    await rm(work, { recursive: true, force: true });
  });

  /** Unpacks `layer` into a new snapshot over `parent`. */
  async function apply(parent: Snapshot | null, layer: Buffer): Promise<Snapshot> {
    const m = await t.ctx.snapshotter.prepare(parent);
    try {
      await unpackLayer(m.path, decompress(once(layer), 'test layer'), { base: parent === null, what: 'test layer' });
    } catch (err) {
      await m.discard();
      throw err;
    }
    return m.commit();
  }

  async function read(s: Snapshot, p: string): Promise<string | null> {
    const m = await s.mount();
    try {
      return existsSync(join(m.path, p)) ? await readFile(join(m.path, p), 'utf8') : null;
    } finally {
      await m.release();
    }
  }

  let base: Snapshot;

  it('unpacks a GNU tar layer (gzip) with modes, owners, times, symlinks and hard links', async () => {
    const src = join(work, 'base');
    await mkdir(join(src, 'etc'), { recursive: true });
    await mkdir(join(src, 'keep/sub'), { recursive: true });
    await mkdir(join(src, 'opaque/old'), { recursive: true });
    await writeFile(join(src, 'etc/motd'), 'hello\n');
    await writeFile(join(src, 'etc/gone'), 'bye\n');
    await writeFile(join(src, 'keep/sub/file'), 'kept\n');
    await writeFile(join(src, 'opaque/a'), 'lower a\n');
    await writeFile(join(src, 'opaque/old/b'), 'lower b\n');
    await writeFile(join(src, 'run.sh'), '#!/bin/sh\n', { mode: 0o4755 });
    execFileSync('chown', ['1000:50', join(src, 'run.sh')]);
    execFileSync('chmod', ['4755', join(src, 'run.sh')]);
    await symlink('etc/motd', join(src, 'motd-link'));
    execFileSync('ln', [join(src, 'etc/motd'), join(src, 'etc/motd-hard')]);
    await utimes(join(src, 'etc/motd'), 1_600_000_000, 1_600_000_000);
    const gz = execFileSync('gzip', ['-c'], { input: gnuTar(src) });

    base = await apply(null, gz);
    const m = await base.mount();
    try {
      expect(await readFile(join(m.path, 'etc/motd'), 'utf8')).toBe('hello\n');
      const run = await stat(join(m.path, 'run.sh'));
      expect(run.mode & 0o7777).toBe(0o4755);
      expect([run.uid, run.gid]).toEqual([1000, 50]);
      expect(await readlink(join(m.path, 'motd-link'))).toBe('etc/motd');
      const a = await stat(join(m.path, 'etc/motd'));
      const b = await stat(join(m.path, 'etc/motd-hard'));
      expect(b.ino).toBe(a.ino);
      expect(Math.floor(a.mtimeMs / 1000)).toBe(1_600_000_000);
    } finally {
      await m.release();
    }
  });

  it('takes owners over 262143 from pax uid/gid records (ours and GNU tar\'s), and refuses an invalid one', async () => {
    const body = Buffer.from('big\n');
    const ours = Buffer.concat([
      encodeHeader({ name: 'big', mode: 0o640, uid: 300000, gid: 2097152, size: body.length, mtimeMs: 0, type: TarType.file }),
      body,
      Buffer.alloc(padding(body.length)),
      encodeHeader({ name: 'big-dir/', mode: 0o750, uid: 262144, gid: 12, size: 0, mtimeMs: 0, type: TarType.directory }),
      END_OF_TAR,
    ]);
    const src = join(work, 'big-owners');
    await mkdir(src, { recursive: true });
    await writeFile(join(src, 'gnu'), 'gnu\n');
    execFileSync('chown', ['300001:2097153', join(src, 'gnu')]);
    const posix = execFileSync('tar', ['--numeric-owner', '--format=posix', '-C', src, '-cf', '-', 'gnu']);
    const s = await apply(null, Buffer.concat([ours.subarray(0, ours.length - END_OF_TAR.length), posix]));
    const m = await s.mount();
    try {
      const f = await stat(join(m.path, 'big'));
      expect([f.uid, f.gid, f.mode & 0o7777]).toEqual([300000, 2097152, 0o640]);
      const d = await stat(join(m.path, 'big-dir'));
      expect([d.uid, d.gid]).toEqual([262144, 12]);
      const g = await stat(join(m.path, 'gnu'));
      expect([g.uid, g.gid]).toEqual([300001, 2097153]);
    } finally {
      await m.release();
    }
    const bad = await craftedTar([{ name: 'x', type: 'file', pax: { uid: '-1' } } as never]);
    const err = await apply(null, bad).catch((e: unknown) => e);
    expect(isBktError(err) && err.code).toBe('INVALID_ARGUMENT');
    expect((err as Error).message).toMatch(/"x" has an invalid pax uid record "-1"/);
  });

  it('turns .wh. entries into deletions and .wh..wh..opq into an opaque directory', async () => {
    const layer = await craftedTar([
      { name: 'etc/', type: 'directory', mode: 0o755 },
      { name: 'etc/.wh.gone', type: 'file', size: 0 },
      { name: 'opaque/', type: 'directory', mode: 0o750 },
      { name: 'opaque/.wh..wh..opq', type: 'file', size: 0 },
      { name: 'opaque/new', type: 'file', mode: 0o644, body: 'upper\n' },
      { name: 'added', type: 'file', mode: 0o644, body: 'added\n' },
    ]);
    const top = await apply(base, layer);
    expect(await read(top, 'etc/gone')).toBeNull();
    expect(await read(top, 'etc/motd')).toBe('hello\n');
    expect(await read(top, 'keep/sub/file')).toBe('kept\n');
    expect(await read(top, 'opaque/a')).toBeNull();
    expect(await read(top, 'opaque/old/b')).toBeNull();
    expect(await read(top, 'opaque/new')).toBe('upper\n');
    expect(await read(top, 'added')).toBe('added\n');
    // The snapshot's own layer holds overlay whiteouts, not `.wh.` files.
    const own = top.layerPath();
    expect(existsSync(join(own, 'etc/.wh.gone'))).toBe(false);
    if (t.store.snapshotter.kind === 'overlay') {
      const wh = await lstat(join(own, 'etc/gone'));
      expect(wh.isCharacterDevice() && wh.rdev === 0).toBe(true);
      // The opaque directory hides the lower entries without whiteouts for each.
      expect(existsSync(join(own, 'opaque/a'))).toBe(false);
      const tarOut = execFileSync('tar', ['--xattrs', '--xattrs-include=trusted.*', '-C', own, '-cf', '-', '--no-recursion', 'opaque']);
      expect(tarOut.toString('latin1')).toContain('trusted.overlay.opaque=y');
    }
    // The lower snapshot is untouched.
    expect(await read(base, 'opaque/a')).toBe('lower a\n');
  });

  describe('a whiteout naming no entry of its directory is an invalid layer, and nothing is removed', () => {
    for (const name of ['.wh..', '.wh...', 'etc/.wh..', 'etc/.wh...', '.wh.', 'etc/.wh.', 'keep/sub/.wh...']) {
      for (const layerKind of ['base', 'upper'] as const) {
        it(`"${name}" in a${layerKind === 'base' ? ' base' : 'n upper'} layer`, async () => {
          const m = await t.ctx.snapshotter.prepare(layerKind === 'base' ? null : base);
          // The layer root's neighbours (other live mounts) and its own tree must survive.
          const neighbour = join(dirname(m.path), `neighbour-${process.pid}-${Math.random().toString(36).slice(2)}`);
          await writeFile(neighbour, 'still here\n');
          try {
            const layer = await craftedTar([{ name: 'etc/', type: 'directory', mode: 0o755 }, { name, type: 'file', size: 0 }]);
            const err = await unpackLayer(m.path, decompress(once(layer), 'test layer'), { base: layerKind === 'base', what: 'layer sha256:abc' }).catch(
              (e: unknown) => e,
            );
            expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
            expect((err as Error).message).toContain(`layer sha256:abc: invalid layer: whiteout entry "${name}"`);
            expect(await readFile(neighbour, 'utf8')).toBe('still here\n');
            expect(existsSync(m.path)).toBe(true);
            if (layerKind === 'upper') expect(await readFile(join(m.path, 'etc/motd'), 'utf8')).toBe('hello\n');
          } finally {
            await rm(neighbour, { force: true });
            await m.discard();
          }
        });
      }
    }

    it('skips aufs metadata (.wh..wh.plnk) as containerd does', async () => {
      const layer = await craftedTar([
        { name: '.wh..wh.plnk/', type: 'directory', mode: 0o700 },
        { name: '.wh..wh.aufs', type: 'file', size: 0 },
        { name: 'etc/.wh..wh.orph', type: 'file', size: 0 },
      ]);
      const top = await apply(base, layer);
      expect(await read(top, 'etc/motd')).toBe('hello\n');
    });
  });

  it('refuses entries climbing out with "..", and leaves nothing outside', async () => {
    const outside = join(work, 'outside-dotdot');
    const layer = await craftedTar([{ name: `../../../../../../..${outside}`, type: 'file', mode: 0o644, body: 'pwned' }]);
    const err = await apply(base, layer).catch((e: unknown) => e);
    expect(isBktError(err, 'PERMISSION_DENIED')).toBe(true);
    expect((err as Error).message).toMatch(/test layer: entry "\.\.\/.*" refused: .*climbs out/);
    expect(existsSync(outside)).toBe(false);
  });

  it('resolves an absolute symlink inside the root, and writes nothing outside', async () => {
    const outsideDir = join(work, 'outside-symlink');
    await mkdir(outsideDir);
    const layer = await craftedTar([
      { name: 'evil', type: 'symlink', linkname: outsideDir },
      { name: 'evil/pwned', type: 'file', mode: 0o644, body: 'pwned' },
    ]);
    const s = await apply(base, layer);
    // `evil` stays the symlink it is; the file lands where the container sees it.
    expect(await read(s, `${outsideDir.slice(1)}/pwned`)).toBe('pwned');
    const m = await s.mount();
    try {
      expect(await readlink(join(m.path, 'evil'))).toBe(outsideDir);
    } finally {
      await m.release();
    }
    expect(existsSync(join(outsideDir, 'pwned'))).toBe(false);
  });

  it("sets no directory's times through a symlink a later entry put in its place (the directory itself, or a parent)", async () => {
    const victim = join(work, 'times-victim');
    await mkdir(join(victim, 'y'), { recursive: true });
    const was = new Date('2020-01-01T00:00:00Z');
    await utimes(victim, was, was);
    await utimes(join(victim, 'y'), was, was);
    const layer = await craftedTar([
      { name: 'd', type: 'directory', mode: 0o755, mtime: new Date(1000) },
      { name: 'd', type: 'symlink', linkname: victim },
      { name: 'x', type: 'directory', mode: 0o755, mtime: new Date(2000) },
      { name: 'x/y', type: 'directory', mode: 0o755, mtime: new Date(3000) },
      { name: 'x', type: 'symlink', linkname: victim },
      { name: 'kept', type: 'directory', mode: 0o755, mtime: new Date(4000) },
    ]);
    const s = await apply(base, layer);
    expect((await stat(victim)).mtime).toEqual(was);
    expect((await stat(join(victim, 'y'))).mtime).toEqual(was);
    const m = await s.mount();
    try {
      expect(await readlink(join(m.path, 'd'))).toBe(victim);
      expect((await lstat(join(m.path, 'kept'))).mtimeMs).toBe(4000);
    } finally {
      await m.release();
    }
  });

  it("gives a directory named twice in a layer its last entry's times", async () => {
    const layer = await craftedTar([
      { name: 'twice', type: 'directory', mode: 0o755, mtime: new Date(1_000_000) },
      { name: 'twice/f', type: 'file', mode: 0o644, body: 'f' },
      { name: 'twice', type: 'directory', mode: 0o700, mtime: new Date(2_000_000) },
    ]);
    const s = await apply(base, layer);
    const m = await s.mount();
    try {
      const st = await lstat(join(m.path, 'twice'));
      expect(st.mtimeMs).toBe(2_000_000);
      expect(st.mode & 0o777).toBe(0o700);
    } finally {
      await m.release();
    }
  });

  it('clamps a relative symlink climbing above the root at the root, and refuses a hard link climbing out', async () => {
    const outside = join(work, 'outside-rel');
    await mkdir(outside);
    const viaRel = await craftedTar([
      { name: 'up', type: 'symlink', linkname: '../../../../../../../../..' + outside },
      { name: 'up/pwned', type: 'file', mode: 0o644, body: 'pwned' },
    ]);
    expect(await read(await apply(base, viaRel), `${outside.slice(1)}/pwned`)).toBe('pwned');
    expect(existsSync(join(outside, 'pwned'))).toBe(false);
    await writeFile(join(work, 'secret'), 'host secret');
    const hard = await craftedTar([{ name: 'stolen', type: 'link', linkname: `../../../../../../../..${join(work, 'secret')}` }]);
    const hardErr = await apply(base, hard).catch((e: unknown) => e);
    expect(isBktError(hardErr, 'PERMISSION_DENIED')).toBe(true);
    expect((hardErr as Error).message).toMatch(/entry "stolen" refused: it is a hard link to "[./]+.*secret", which climbs out of the root/);
    expect(readFileSync(join(work, 'secret'), 'utf8')).toBe('host secret');
  });

  it('resolves a hard link through an absolute symlink inside the root', async () => {
    await writeFile(join(work, 'host-file'), 'host file');
    const layer = await craftedTar([
      { name: 'data/', type: 'directory', mode: 0o755 },
      { name: 'data/file', type: 'file', mode: 0o644, body: 'inside' },
      { name: 'abs', type: 'symlink', linkname: '/data' },
      { name: 'hostlink', type: 'symlink', linkname: work },
      { name: 'linked', type: 'link', linkname: 'abs/file' },
    ]);
    const s = await apply(base, layer);
    expect(await read(s, 'linked')).toBe('inside');
    // A hard link through `hostlink` would look for `<root>${work}/host-file`, which the layer does not hold.
    const viaHost = await craftedTar([{ name: 'stolen', type: 'link', linkname: 'hostlink/host-file' }]);
    const err = await apply(s, viaHost).catch((e: unknown) => e);
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toMatch(/hard link "stolen" points to "hostlink\/host-file", which the layer does not hold/);
    // A target under a regular file (ENOTDIR) is as missing.
    const underFile = await craftedTar([{ name: 'odd', type: 'link', linkname: 'data/file/x' }]);
    const errFile = await apply(s, underFile).catch((e: unknown) => e);
    expect(isBktError(errFile, 'INVALID_ARGUMENT')).toBe(true);
    expect((errFile as Error).message).toMatch(/hard link "odd" points to "data\/file\/x", which the layer does not hold/);
  });

  it('unpacks a later layer writing under an absolute symlink of an earlier one (Debian\'s var/run -> /run)', async () => {
    const lower = await apply(
      base,
      await craftedTar([
        { name: 'run/', type: 'directory', mode: 0o755 },
        { name: 'var/', type: 'directory', mode: 0o755 },
        { name: 'var/run', type: 'symlink', linkname: '/run' },
      ]),
    );
    const upper = await apply(
      lower,
      await craftedTar([
        { name: 'var/run/app/', type: 'directory', mode: 0o755 },
        { name: 'var/run/app/pid', type: 'file', mode: 0o644, body: '42\n' },
      ]),
    );
    expect(await read(upper, 'run/app/pid')).toBe('42\n');
    const m = await upper.mount();
    try {
      expect(await readlink(join(m.path, 'var/run'))).toBe('/run');
      expect((await lstat(join(m.path, 'var/run'))).isSymbolicLink()).toBe(true);
      // The snapshot's own changes are under run/, not under a var/run directory.
      expect(existsSync(join(upper.layerPath(), 'run/app/pid'))).toBe(true);
    } finally {
      await m.release();
    }
    expect(existsSync('/run/app/pid')).toBe(false);
  });

  it('resolves relative symlinks that stay inside the root', async () => {
    const layer = await craftedTar([
      { name: 'real/', type: 'directory', mode: 0o755 },
      { name: 'alias', type: 'symlink', linkname: 'real' },
      { name: 'alias/file', type: 'file', mode: 0o644, body: 'via alias' },
    ]);
    const s = await apply(base, layer);
    expect(await read(s, 'real/file')).toBe('via alias');
  });

  it('unpacks zstd and uncompressed layers', async () => {
    const src = join(work, 'z');
    await mkdir(src);
    await writeFile(join(src, 'z.txt'), 'zstd content\n');
    const plain = gnuTar(src);
    const zst = execFileSync('zstd', ['-q', '-c'], { input: plain });
    expect(await read(await apply(base, zst), 'z.txt')).toBe('zstd content\n');
    expect(await read(await apply(base, plain), 'z.txt')).toBe('zstd content\n');
  });
});

describe('resolveParts (an entry\'s parent, resolved inside the root)', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'bkt-resolve-parts-'));
    await mkdir(join(root, 'a/x/y'), { recursive: true });
    await writeFile(join(root, 'f'), 'file');
    await symlink('a', join(root, 'b'));
    await symlink('/a/x', join(root, 'abs'));
    await symlink('../../../../etc', join(root, 'a/up'));
    await symlink('b/../abs/y', join(root, 'chain'));
    await symlink('loop2', join(root, 'loop1'));
    await symlink('loop1', join(root, 'loop2'));
    await symlink('/', join(root, 'slash'));
    await symlink('./x/./y/', join(root, 'a/dots'));
  });
  afterAll(async () => rm(root, { recursive: true, force: true }));

  it('gives what resolveRelInRoot of @bkt/fsutil gives (symlinks followed, the last one too; ".." stops at the root)', async () => {
    const paths = [
      '', 'a', 'a/x', 'b', 'b/x/y', 'abs', 'abs/y', 'a/up', 'a/up/passwd', 'chain', 'chain/z', '..', '../..', 'a/../..', 'b/../../a',
      'missing', 'missing/../a', 'f', 'f/g', 'f/g/..', 'slash', 'slash/a/x', 'a/dots', 'a/dots/..', 'abs/../../b', './a/./x', 'a//x',
    ];
    for (const p of paths) {
      const want = await resolveRelInRoot(root, p, { followFinalSymlink: true });
      expect(resolveParts(root, p.split('/'), 'layer', p).join('/'), p).toBe(want);
    }
  });

  it('refuses a symlink loop, naming the layer and the entry', async () => {
    await expect(resolveRelInRoot(root, 'loop1/z', { followFinalSymlink: true })).rejects.toThrow(/too many levels of symbolic links/);
    expect(() => resolveParts(root, ['loop1', 'z'], 'layer L', 'loop1/z/f')).toThrow(/^layer L: entry "loop1\/z\/f": too many levels of symbolic links resolving "loop1\/z"$/);
  });
});
