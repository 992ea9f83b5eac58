import { createHash } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checksum } from './checksum.js';
import { resolveWildcards } from './glob.js';
import { execFile } from 'node:child_process';
import { readdirSync, lstatSync } from 'node:fs';
import { promisify } from 'node:util';
import { compareNames, walk, walkBatches } from './walk.js';

const execFileP = promisify(execFile);
let root: string;
async function put(rel: string, data = rel) {
  await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
  await writeFile(path.join(root, rel), data);
}
async function paths(opts: Parameters<typeof walk>[1] = {}, dir = root) {
  const out: string[] = [];
  for await (const e of walk(dir, opts)) out.push(e.path);
  return out;
}

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'fsutil-walk-'));
  for (const f of ['b.txt', 'a.txt', 'src/main.ts', 'src/util/x.ts', 'src/util/y.js', 'docs/readme.md', 'a/z']) await put(f);
  await symlink('/etc/passwd', path.join(root, 'link'));
});
afterEach(() => rm(root, { recursive: true, force: true }));

describe('walk', () => {
  it('lists everything depth-first, sorted by name, symlinks not followed', async () => {
    expect(await paths()).toEqual([
      'a', 'a/z', 'a.txt', 'b.txt', 'docs', 'docs/readme.md', 'link',
      'src', 'src/main.ts', 'src/util', 'src/util/x.ts', 'src/util/y.js',
    ]);
    for await (const e of walk(root)) if (e.path === 'link') expect(e.stat.isSymbolicLink()).toBe(true);
  });

  it('excludes with parent semantics and skips excluded dirs', async () => {
    expect(await paths({ exclude: ['src', '*.txt'] })).toEqual(['a', 'a/z', 'docs', 'docs/readme.md', 'link']);
  });

  it('re-includes with ! inside an excluded dir, reporting its parents', async () => {
    expect(await paths({ exclude: ['src', '!src/util/x.ts'] })).toEqual([
      'a', 'a/z', 'a.txt', 'b.txt', 'docs', 'docs/readme.md', 'link', 'src', 'src/util', 'src/util/x.ts',
    ]);
  });

  it('includes only matches, their contents and the parents needed to reach them', async () => {
    expect(await paths({ include: ['src/util/*.ts', 'docs'] })).toEqual([
      'docs', 'docs/readme.md', 'src', 'src/util', 'src/util/x.ts',
    ]);
    expect(await paths({ include: ['**/*.ts'], exclude: ['src/util'] })).toEqual(['src', 'src/main.ts']);
  });

  it('hands out a large tree in batches, in the order of a plain recursive listing', async () => {
    for (let d = 0; d < 6; d++) for (let f = 0; f < 70; f++) await put(`deep/d${d}/${f % 2 ? 'x' : 'y'}${f}/f`);
    const listing = (dirAbs: string, rel: string): string[] =>
      readdirSync(dirAbs).sort(compareNames).flatMap((n) => {
        const r = rel ? `${rel}/${n}` : n;
        return lstatSync(path.join(dirAbs, n)).isDirectory() ? [r, ...listing(path.join(dirAbs, n), r)] : [r];
      });
    const batches: string[][] = [];
    for await (const b of walkBatches(root)) batches.push(b.map((e) => e.path));
    expect(batches.length).toBeGreaterThan(1);
    expect(batches.every((b) => b.length > 0)).toBe(true);
    expect(batches.flat()).toEqual(listing(root, ''));
    expect(await paths()).toEqual(batches.flat());
    for await (const e of walk(root)) expect(e.absPath).toBe(path.join(root, e.path));
    // Selection across batches: an excluded directory re-included below, an include reaching into the depth.
    expect(await paths({ exclude: ['deep', '!deep/d5/x69'] })).toEqual([
      ...['a', 'a/z', 'a.txt', 'b.txt'], 'deep', 'deep/d5', 'deep/d5/x69', 'deep/d5/x69/f', ...['docs', 'docs/readme.md', 'link'],
      ...['src', 'src/main.ts', 'src/util', 'src/util/x.ts', 'src/util/y.js'],
    ]);
    expect(await paths({ include: ['deep/d*/y0', 'deep/d3/x1/f'] })).toEqual([
      'deep',
      ...[0, 1, 2, 3, 4, 5].flatMap((d) => [`deep/d${d}`, ...(d === 3 ? ['deep/d3/x1', 'deep/d3/x1/f'] : []), `deep/d${d}/y0`, `deep/d${d}/y0/f`]),
    ]);
  });

  it('a failing system call ends the walk with its error, after the entries found before it', async () => {
    // A path longer than PATH_MAX: its lstat fails (ENAMETOOLONG).
    const segment = 'n'.repeat(200);
    await execFileP('mkdir', ['-p', path.join(root, 'long', ...Array.from({ length: 24 }, () => segment))]);
    const got: string[] = [];
    let failure: NodeJS.ErrnoException | undefined;
    try {
      for await (const e of walk(root)) got.push(e.path);
    } catch (err) {
      failure = err as NodeJS.ErrnoException;
    }
    expect(failure?.code).toBe('ENAMETOOLONG');
    expect(got.slice(0, 8)).toEqual(['a', 'a/z', 'a.txt', 'b.txt', 'docs', 'docs/readme.md', 'link', 'long']);
    expect(got).not.toContain('src');
    await execFileP('rm', ['-rf', path.join(root, 'long')]);
  });

  it('honours an abort signal', async () => {
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expect(paths({ signal: ac.signal })).rejects.toThrow('stop');
  });
});

describe('resolveWildcards', () => {
  it('matches per component, sorted, inside the root', async () => {
    expect(await resolveWildcards(root, '*.txt')).toEqual(['a.txt', 'b.txt']);
    expect(await resolveWildcards(root, '/src/*/?.ts')).toEqual(['src/util/x.ts']);
    expect(await resolveWildcards(root, '../../*.txt')).toEqual(['a.txt', 'b.txt']);
    expect(await resolveWildcards(root, 'nomatch*')).toEqual([]);
    expect(await resolveWildcards(root, 'src/[mx]*')).toEqual(['src/main.ts']);
  });

  it('a dangling symlink matches only without followLinks', async () => {
    expect(await resolveWildcards(root, 'lin*')).toEqual(['link']);
    expect(await resolveWildcards(root, 'lin*', { followLinks: true })).toEqual([]);
  });

  it('goes through symlinked dirs inside the root only', async () => {
    await symlink('/src', path.join(root, 'srclink'));
    expect(await resolveWildcards(root, 'srclink/*.ts')).toEqual(['src/main.ts']);
  });
});

describe('checksum', () => {
  it('is deterministic and ignores mtime', async () => {
    const a = await checksum(root, { path: '/src' });
    await utimes(path.join(root, 'src/main.ts'), 1, 1);
    expect(await checksum(root, { path: '/src' })).toBe(a);
    expect(a).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('changes with content, mode, owner, names and link targets', async () => {
    const seen = new Set<string>();
    const sel = { path: '/' };
    seen.add(await checksum(root, sel));
    await writeFile(path.join(root, 'src/main.ts'), 'changed');
    seen.add(await checksum(root, sel));
    await chmod(path.join(root, 'src/main.ts'), 0o700);
    seen.add(await checksum(root, sel));
    await chown(path.join(root, 'src/main.ts'), 1000, 1000);
    seen.add(await checksum(root, sel));
    await rm(path.join(root, 'link'));
    await symlink('/elsewhere', path.join(root, 'link'));
    seen.add(await checksum(root, sel));
    await put('new-empty-dir/.keep', '');
    seen.add(await checksum(root, sel));
    expect(seen.size).toBe(6);
  });

  it('covers only the selection: other files do not change it', async () => {
    const before = await checksum(root, { path: 'src/util' });
    await writeFile(path.join(root, 'a.txt'), 'other');
    expect(await checksum(root, { path: 'src/util' })).toBe(before);
    const inc = await checksum(root, { path: '/src', includePatterns: ['*.ts'], excludePatterns: ['util'] });
    await writeFile(path.join(root, 'src/util/x.ts'), 'excluded change');
    expect(await checksum(root, { path: '/src', includePatterns: ['*.ts'], excludePatterns: ['util'] })).toBe(inc);
    await writeFile(path.join(root, 'src/main.ts'), 'included change');
    expect(await checksum(root, { path: '/src', includePatterns: ['*.ts'], excludePatterns: ['util'] })).not.toBe(inc);
  });

  it('wildcards: the set of matches and their content', async () => {
    const w = await checksum(root, { path: '/*.txt', wildcard: true });
    await writeFile(path.join(root, 'c.txt'), 'c');
    const w2 = await checksum(root, { path: '/*.txt', wildcard: true });
    expect(w2).not.toBe(w);
    expect(await checksum(root, { path: '/none*', wildcard: true })).toMatch(/^sha256:/);
  });

  it('followLinks hashes the target, inside the root', async () => {
    await symlink('src/main.ts', path.join(root, 'mainlink'));
    const nofollow = await checksum(root, { path: '/mainlink' });
    const follow = await checksum(root, { path: '/mainlink', followLinks: true });
    expect(follow).toBe(await checksum(root, { path: '/src/main.ts' }));
    expect(nofollow).not.toBe(follow);
    // `/link` points at host /etc/passwd: followed inside the root it does not exist.
    await expect(checksum(root, { path: '/link', followLinks: true })).rejects.toThrow(/not found/);
  });

  it('takes known content digests instead of reading those files, for any selection of the tree', async () => {
    const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}` as const;
    const want = await checksum(root, { path: '/src' });
    const wantUtil = await checksum(root, { path: 'src/util' });
    const truth = await readFile(path.join(root, 'src/main.ts'), 'utf8');
    // The file's bytes change behind the known digest: the known digest is what counts, so it was not read.
    await writeFile(path.join(root, 'src/main.ts'), 'x'.repeat(truth.length));
    const known = new Map([['src/main.ts', sha(truth)]]);
    expect(await checksum(root, { path: '/src' }, { knownDigests: known })).toBe(want);
    expect(await checksum(root, { path: '/src' })).not.toBe(want);
    // Keyed by the path in the tree, whatever the selector's path.
    expect(await checksum(root, { path: 'src/util' }, { knownDigests: known })).toBe(wantUtil);
  });

  it('records each entry as documented: path, mode, owner, size and sha256 of small and large files, link targets', async () => {
    const dir = path.join(root, 'rec');
    await mkdir(dir);
    const big = Buffer.alloc(3 * 1024 * 1024 + 5, 'x');
    big[big.length - 1] = 0x79; // a change past the first MiB
    await writeFile(path.join(dir, 'big'), big);
    await writeFile(path.join(dir, 'small'), 'hello');
    await symlink('small', path.join(dir, 'ln'));
    await chmod(path.join(dir, 'small'), 0o640);
    const hex = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
    const st = async (p: string) => (await import('node:fs/promises')).lstat(p);
    const line = async (name: string, abs: string, extra: string[]) => {
      const s = await st(abs);
      return [name, (s.mode >>> 0).toString(8), String(s.uid), String(s.gid), ...extra].join('\0') + '\n';
    };
    const lines = [
      await line('.', dir, []),
      await line('./big', path.join(dir, 'big'), [String(big.length), hex(big)]),
      await line('./ln', path.join(dir, 'ln'), ['small']),
      await line('./small', path.join(dir, 'small'), ['5', hex('hello')]),
    ];
    expect(await checksum(root, { path: '/rec' })).toBe(`sha256:${hex(lines.join(''))}`);
    const stopped = new AbortController();
    stopped.abort();
    await expect(checksum(root, { path: '/rec' }, { signal: stopped.signal })).rejects.toThrow();
  });

  it('a missing path is NOT_FOUND, .. is clamped', async () => {
    await expect(checksum(root, { path: '/nope' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(checksum(root, { path: '../../etc/passwd' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('compareNames', () => {
  const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
  const names = ['', 'a', 'a/b', 'a-b', 'a.b', 'ab', 'B', 'é', 'e\u0301', '\u00ff', '\u0100', '\u07ff', '\u0800', '\ud7ff', '\ue000', '\uffef', '\uffff', '\u{10000}', '\u{1f600}', '\u{10ffff}', 'x\ue000', 'x\u{1f600}', 'x\uffff', 'x\u{10000}y', 'x\u{10000}', '\u{1f600}a', '\ue000z'];

  it('orders names by their UTF-8 bytes, a code point above U+FFFF after U+E000–U+FFFF', () => {
    for (const a of names) for (const b of names) expect([a, b, Math.sign(compareNames(a, b))]).toEqual([a, b, Math.sign(byBytes(a, b))]);
    // UTF-16 order would put the emoji (a surrogate pair) before U+E000.
    expect(['\u{1f600}', '\ue000', 'z'].sort(compareNames)).toEqual(['z', '\ue000', '\u{1f600}']);
  });

  it('sorts as the byte order does (random names over the whole range)', () => {
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const pool = [0x61, 0x7a, 0xe9, 0x800, 0xd7ff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x1f600, 0x10ffff];
    const random = Array.from({ length: 500 }, () => String.fromCodePoint(...Array.from({ length: 1 + rnd(4) }, () => pool[rnd(pool.length)]!)));
    expect([...random].sort(compareNames)).toEqual([...random].sort(byBytes));
  });
});
