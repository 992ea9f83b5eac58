import { execFileSync } from 'node:child_process';
import { chmod, chown as fchown, link, mkdir as fsMkdir, mkdtemp, readFile, rm, stat, lstat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import tar from 'tar-stream';
import type { OpInput, Snapshot } from '@bkt/core';
import { createFileOpExecutor, fileContentSelectors } from './index.js';
import { tryUnpack } from './unpack.js';
import { copy, dumpTree, fileOp, makeSnapshot, mkdir, mkfile, openTestEnv, rmAction, type TestEnv } from '../file-ops.test-util.js';

const exec = createFileOpExecutor();
let env: TestEnv;
let context: Snapshot; // a "build context" tree
let base: Snapshot; // an "image" with /etc/passwd and /etc/group

beforeAll(async () => {
  env = await openTestEnv('overlay');
  context = await makeSnapshot(env.ctx, async (d) => {
    await fsMkdir(path.join(d, 'src/lib'), { recursive: true });
    await writeFile(path.join(d, 'src/main.ts'), 'main');
    await writeFile(path.join(d, 'src/lib/a.ts'), 'a');
    await writeFile(path.join(d, 'src/lib/b.js'), 'b');
    await writeFile(path.join(d, 'README.md'), 'readme');
    await writeFile(path.join(d, 'x.txt'), 'x');
    await writeFile(path.join(d, 'y.txt'), 'y');
    await writeFile(path.join(d, 'run.sh'), '#!/bin/sh\n');
    await chmod(path.join(d, 'run.sh'), 0o750);
    await fchown(path.join(d, 'run.sh'), 1234, 5678);
    await symlink('src/main.ts', path.join(d, 'link-main'));
    await symlink('/etc/passwd', path.join(d, 'link-host-passwd'));
    await symlink('../../../../etc', path.join(d, 'link-up'));
    await link(path.join(d, 'src/main.ts'), path.join(d, 'src/main-hard.ts'));
  });
  base = await makeSnapshot(env.ctx, async (d) => {
    await fsMkdir(path.join(d, 'etc'));
    await writeFile(path.join(d, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n');
    await writeFile(path.join(d, 'etc/group'), 'root:x:0:\nstaff:x:50:\n');
    await fsMkdir(path.join(d, 'app'));
  });
});
afterAll(() => env.close());

async function runOp(actions: Parameters<typeof fileOp>[0], inputs: (Snapshot | null)[]): Promise<(Snapshot | null)[]> {
  const ins: OpInput[] = inputs.map((snapshot) => ({ snapshot }));
  return exec.run(fileOp(actions), ins, env.ctx);
}
async function tree(actions: Parameters<typeof fileOp>[0], inputs: (Snapshot | null)[] = [null]) {
  const [out] = await runOp(actions, inputs);
  return dumpTree(out!);
}

describe('mkdir', () => {
  it('creates a directory with mode, owner and timestamp', async () => {
    const [out] = await runOp([mkdir('/d', 0o700, { owner: { user: 7, group: 8 }, timestamp: 1e15 })], [null]);
    const m = await out!.mount();
    const st = await stat(path.join(m.path, 'd'));
    expect(st.mode & 0o7777).toBe(0o700);
    expect([st.uid, st.gid]).toEqual([7, 8]);
    expect(Math.round(st.mtimeMs / 1000)).toBe(1e6);
    await m.release();
  });

  it('takes a real-world nanosecond timestamp (beyond 2^53) through the wire format', async () => {
    const [out] = await runOp([mkdir('/d', 0o755, { timestamp: 1_700_000_000 * 1e9 })], [null]);
    expect((await dumpTree(out!, { withTimes: true }))['d']).toBeDefined();
    const m = await out!.mount();
    expect(Math.round((await stat(path.join(m.path, 'd'))).mtimeMs / 1000)).toBe(1_700_000_000);
    await m.release();
  });

  it('makeParents creates the chain; without it a missing parent is an error; existing is fine', async () => {
    const t = await tree([mkdir('/a/b/c', 0o711, { makeParents: true })]);
    expect(t['a']!.mode).toBe('711');
    expect(t['a/b/c']!.type).toBe('dir');
    await expect(runOp([mkdir('/a/b', 0o755)], [null])).rejects.toThrow(/file action 0 \(mkdir "\/a\/b"\): .*parent directory does not exist/);
    expect((await tree([mkdir('/app', 0o700)], [base]))['app']!.mode).toBe('755');
  });

  it('clamps .. at the root', async () => {
    const t = await tree([mkdir('../../../escaped', 0o755)]);
    expect(Object.keys(t)).toEqual(['escaped']);
  });
});

describe('mkfile', () => {
  it('writes data with mode, owner by name, timestamp', async () => {
    const [out] = await runOp([mkfile('/app/f', 'hello', 0o640, { owner: { user: 'app' }, timestamp: 2e15 })], [base]);
    const t = await dumpTree(out!, { withTimes: true });
    expect(t['app/f']).toMatchObject({ content: 'hello', mode: '640', uid: 1000, gid: 1001, mtime: 2e6 });
  });

  it('writes through a symlink inside the root only', async () => {
    const start = await makeSnapshot(env.ctx, async (d) => {
      await fsMkdir(path.join(d, 'etc'));
      await symlink('/etc/hostname-bkt-test', path.join(d, 'lnk'));
    });
    const t = await tree([mkfile('/lnk', 'inside', 0o600)], [start]);
    expect(t['etc/hostname-bkt-test']!.content).toBe('inside');
    await expect(stat('/etc/hostname-bkt-test')).rejects.toThrow();
  });

  it('replaces a FIFO or device node with a new file instead of writing through it', async () => {
    const special = await makeSnapshot(env.ctx, async (d) => {
      execFileSync('mkfifo', [path.join(d, 'fifo')]);
      execFileSync('mknod', [path.join(d, 'null'), 'c', '1', '3']); // the host's /dev/null numbers
    });
    // Writing through the FIFO would block forever (no reader); through the node, data would vanish into /dev/null.
    const t = await tree([mkfile('/fifo', 'f', 0o600, { output: -1 }), mkfile('/null', 'n', 0o640, { input: 1 })], [special]);
    expect(t['fifo']).toMatchObject({ type: 'file', content: 'f', mode: '600' });
    expect(t['null']).toMatchObject({ type: 'file', content: 'n', mode: '640' });
  }, 10_000);

  it('refuses an /etc/passwd that is not a regular file when naming an owner (a FIFO would hang the read)', async () => {
    const fifoPasswd = await makeSnapshot(env.ctx, async (d) => {
      await fsMkdir(path.join(d, 'etc'));
      execFileSync('mkfifo', [path.join(d, 'etc/passwd')]);
    });
    await expect(runOp([mkfile('/f', 'x', 0o644, { owner: { user: 'app' } })], [fifoPasswd])).rejects.toThrow(/\/etc\/passwd of the destination is not a regular file/);
  }, 10_000);

  it('refuses to replace a directory; errors on a missing parent', async () => {
    await expect(runOp([mkfile('/app', 'x')], [base])).rejects.toThrow(/directory exists/);
    await expect(runOp([mkfile('/no/such', 'x')], [base])).rejects.toThrow(/parent directory does not exist/);
  });
});

describe('rm', () => {
  it('removes files and trees; allowNotFound; wildcard', async () => {
    const t = await tree([rmAction('/src/lib'), rmAction('/nope', { allowNotFound: true, input: 1 }), rmAction('/*.txt', { allowWildcard: true, input: 2 })].map((a, i) => ({ ...a, output: i === 2 ? 0 : -1 })), [context]);
    expect(Object.keys(t)).not.toContain('src/lib');
    expect(Object.keys(t)).not.toContain('x.txt');
    expect(Object.keys(t)).toContain('README.md');
    await expect(runOp([rmAction('/nope')], [context])).rejects.toThrow(/rm "\/nope": no such file/);
  });

  it('removes a symlink, not its target', async () => {
    const t = await tree([rmAction('/link-main')], [context]);
    expect(t['link-main']).toBeUndefined();
    expect(t['src/main.ts']).toBeDefined();
  });
});

describe('copy', () => {
  it('copies a file to a new name and into a directory (trailing /)', async () => {
    const t = await tree([copy('/x.txt', '/app/renamed'), { ...copy('/y.txt', '/app/'), input: 2 }].map((a, i) => ({ ...a, output: i === 1 ? 0 : -1 })), [base, context]);
    expect(t['app/renamed']!.content).toBe('x');
    expect(t['app/y.txt']!.content).toBe('y');
  });

  it('copies a directory into an existing one, or its contents with dirCopyContents', async () => {
    expect(Object.keys(await tree([copy('/src', '/app')], [base, context]))).toContain('app/src/lib/a.ts');
    const t = await tree([copy('/src', '/app', { dirCopyContents: true })], [base, context]);
    expect(t['app/lib/a.ts']!.content).toBe('a');
    expect(Object.keys(t)).not.toContain('app/src');
    const fresh = await tree([copy('/src', '/new', { dirCopyContents: true })], [null, context]);
    expect(fresh['new/main.ts']!.content).toBe('main');
  });

  it('preserves mode, owner, symlinks and hardlinks', async () => {
    const [out] = await runOp([copy('/', '/ctx', { dirCopyContents: true })], [null, context]);
    const t = await dumpTree(out!);
    expect(t['ctx/run.sh']).toMatchObject({ mode: '750', uid: 1234, gid: 5678 });
    expect(t['ctx/link-main']).toMatchObject({ type: 'symlink', target: 'src/main.ts' });
    const m = await out!.mount();
    const [a, b] = await Promise.all([lstat(path.join(m.path, 'ctx/src/main.ts')), lstat(path.join(m.path, 'ctx/src/main-hard.ts'))]);
    expect(a.ino).toBe(b.ino);
    await m.release();
  });

  it('applies owner (id, name from the destination), mode, modeStr and timestamp', async () => {
    const [out] = await runOp([copy('/src', '/app/s', { owner: { user: 'app', group: 'staff' }, mode: 0o600, timestamp: 3e15 })], [base, context]);
    const t = await dumpTree(out!, { withTimes: true });
    expect(t['app/s/lib/a.ts']).toMatchObject({ uid: 1000, gid: 50, mode: '600', mtime: 3e6 });
    const byId = await tree([copy('/x.txt', '/x', { owner: { user: 42 } })], [null, context]);
    expect(byId['x']).toMatchObject({ uid: 42, gid: 42 });
    const sym = await tree([copy('/run.sh', '/r', { modeStr: 'u+w,g-x,o+rX' })], [null, context]);
    expect(sym['r']!.mode).toBe('745'); // 750, u+w: 750, g-x: 740, o+rX (x set somewhere): 745
    await expect(runOp([copy('/x.txt', '/x', { owner: { user: 'ghost' } })], [base, context])).rejects.toThrow(/unknown user "ghost"/);
  });

  it('wildcards, allowEmptyWildcard, and a clear error when nothing matches', async () => {
    const t = await tree([copy('/*.txt', '/out/', { allowWildcard: true })], [null, context]);
    expect(Object.keys(t).sort()).toEqual(['out', 'out/x.txt', 'out/y.txt']);
    const empty = await tree([copy('/*.nope', '/out/', { allowWildcard: true, allowEmptyWildcard: true }), { ...mkdir('/m', 0o755), input: 2 }].map((a, i) => ({ ...a, output: i === 1 ? 0 : -1 })), [null, context]);
    expect(Object.keys(empty)).toEqual(['m']);
    await expect(runOp([copy('/*.nope', '/out/', { allowWildcard: true })], [null, context])).rejects.toThrow(/"\/\*\.nope" not found/);
  });

  it('include and exclude patterns, relative to the source', async () => {
    const t = await tree([copy('/src', '/o', { includePatterns: ['**/*.ts'], excludePatterns: ['lib/b*', 'main-hard.ts'] })], [null, context]);
    expect(Object.keys(t).sort()).toEqual(['o', 'o/lib', 'o/lib/a.ts', 'o/main.ts']);
  });

  it('createDestPath=false requires the destination directory', async () => {
    await expect(runOp([copy('/x.txt', '/missing/x', { createDestPath: false })], [null, context])).rejects.toThrow(/destination directory "\/missing" does not exist/);
    expect((await tree([copy('/x.txt', '/app/x', { createDestPath: false })], [base, context]))['app/x']).toBeDefined();
  });

  it('replacing a directory with a file needs alwaysReplaceExistingDestPaths', async () => {
    expect((await tree([copy('/x.txt', '/app', { dirCopyContents: false })], [base, context]))['app/x.txt']).toMatchObject({ type: 'file', content: 'x' }); // into the dir
    const dirWithFile = await makeSnapshot(env.ctx, async (d) => {
      await fsMkdir(path.join(d, 'o/src'), { recursive: true });
      await writeFile(path.join(d, 'o/src/main.ts'), 'x');
      await fsMkdir(path.join(d, 'o/src/main.ts.d'));
    });
    await expect(runOp([copy('/src/lib', '/o/src/main.ts', { dirCopyContents: true })], [dirWithFile, context])).rejects.toThrow(/non-directory/);
    const into = await tree([copy('/x.txt', '/o/src/main.ts.d/')], [dirWithFile, context]);
    expect(into['o/src/main.ts.d/x.txt']).toMatchObject({ type: 'file', content: 'x' });
    expect(into['o/src/main.ts']).toMatchObject({ type: 'file', content: 'x' });
    const t = await tree([copy('/src/lib', '/o/src/main.ts', { dirCopyContents: true, alwaysReplaceExistingDestPaths: true })], [dirWithFile, context]);
    expect(t['o/src/main.ts']!.type).toBe('dir');
    expect(t['o/src/main.ts/a.ts']!.content).toBe('a');
  });

  it('never reads outside the source: .. is clamped, outside symlinks resolve inside', async () => {
    await expect(runOp([copy('../../etc/passwd', '/p')], [null, context])).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringMatching(/source "..\/..\/etc\/passwd" not found/),
    });
    await expect(runOp([copy('/link-host-passwd', '/p', { followSymlink: true })], [null, context])).rejects.toThrow(/not found/);
    await expect(runOp([copy('/link-up/passwd', '/p')], [null, context])).rejects.toThrow(/not found/);
    // Without followSymlink the link itself is copied (its target is never read).
    const t = await tree([copy('/link-host-passwd', '/p')], [null, context]);
    expect(t['p']).toMatchObject({ type: 'symlink', target: '/etc/passwd' });
    // followSymlink to a target inside the root copies the content.
    expect((await tree([copy('/link-main', '/m', { followSymlink: true })], [null, context]))['m']!.content).toBe('main');
  });

  it('never writes outside the destination through its symlinks', async () => {
    const evil = await makeSnapshot(env.ctx, async (d) => {
      await symlink('/tmp', path.join(d, 'tmp-link'));
    });
    const t = await tree([copy('/x.txt', '/tmp-link/bkt-escape-test.txt')], [evil, context]);
    expect(t['tmp/bkt-escape-test.txt']!.content).toBe('x');
    await expect(stat('/tmp/bkt-escape-test.txt')).rejects.toThrow();
  });
});

describe('copy with attemptUnpackDockerCompatibility', () => {
  let archives: Snapshot;
  beforeAll(async () => {
    archives = await makeSnapshot(env.ctx, async (d) => {
      const src = path.join(d, 'content');
      await fsMkdir(path.join(src, 'dir'), { recursive: true });
      await writeFile(path.join(src, 'dir/f.txt'), 'packed');
      await symlink('f.txt', path.join(src, 'dir/l'));
      execFileSync('tar', ['-cf', path.join(d, 'a.tar'), '-C', src, 'dir']);
      execFileSync('tar', ['-czf', path.join(d, 'a.tgz'), '-C', src, 'dir']);
      execFileSync('tar', ['-cjf', path.join(d, 'a.tar.bz2'), '-C', src, 'dir']);
      execFileSync('tar', ['-cJf', path.join(d, 'a.tar.xz'), '-C', src, 'dir']);
      execFileSync('sh', ['-c', `tar -cf - -C ${src} dir | zstd -q -o ${path.join(d, 'a.tar.zst')}`]);
      await writeFile(path.join(d, 'plain.gz'), execFileSync('gzip', ['-c'], { input: 'not a tar' }));
      await writeFile(path.join(d, 'evil.tar'), await tarOf([{ name: '../../escape.txt', content: 'bad' }]));
      await writeFile(path.join(d, 'evil-link.tar'), await tarOf([{ name: 'up', type: 'symlink', linkname: '../../..' }]));
      await writeFile(path.join(d, 'via-link.tar'), await tarOf([{ name: 'etc', type: 'symlink', linkname: '/' }, { name: 'etc/owned', content: 'in root' }]));
    });
  });

  for (const name of ['a.tar', 'a.tgz', 'a.tar.bz2', 'a.tar.xz', 'a.tar.zst']) {
    it(`unpacks ${name}`, async () => {
      const t = await tree([copy(`/${name}`, '/out', { attemptUnpackDockerCompatibility: true })], [null, archives]);
      expect(t['out/dir/f.txt']!.content).toBe('packed');
      expect(t['out/dir/l']).toMatchObject({ type: 'symlink', target: 'f.txt' });
    });
  }

  it('names the missing program instead of copying an archive it cannot decompress', async () => {
    const m = await archives.mount();
    const dest = await mkdtemp(path.join(tmpdir(), 'bkt-unpack-'));
    const savedPath = process.env.PATH;
    try {
      process.env.PATH = dest; // no xz here
      await expect(tryUnpack(m.path, '/a.tar.xz', dest, '/out', null, null)).rejects.toMatchObject({
        code: 'NOT_FOUND',
        message: expect.stringMatching(/"\/a\.tar\.xz" is xz-compressed, but the `xz` program is not installed/),
      });
    } finally {
      process.env.PATH = savedPath;
      await m.release();
      await rm(dest, { recursive: true, force: true });
    }
  });

  it('copies a non-archive as a file', async () => {
    const t = await tree([copy('/plain.gz', '/out/', { attemptUnpackDockerCompatibility: true })], [null, archives]);
    expect(t['out/plain.gz']!.type).toBe('file');
  });

  it('refuses entries and links that leave the destination', async () => {
    await expect(runOp([copy('/evil.tar', '/out', { attemptUnpackDockerCompatibility: true })], [null, archives])).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    await expect(runOp([copy('/evil-link.tar', '/out', { attemptUnpackDockerCompatibility: true })], [null, archives])).rejects.toThrow(/outside of the destination/);
    const t = await tree([copy('/via-link.tar', '/out', { attemptUnpackDockerCompatibility: true })], [null, archives]);
    expect(t['out/owned']!.content).toBe('in root');
  });
});

async function tarOf(entries: { name: string; content?: string; type?: 'file' | 'symlink'; linkname?: string }[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    if (e.type === 'symlink') pack.entry({ name: e.name, type: 'symlink', linkname: e.linkname });
    else pack.entry({ name: e.name, mode: 0o644 }, e.content ?? '');
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

describe('action graph', () => {
  it('chains actions through result indexes, with several outputs', async () => {
    // inputs: 0 = base, 1 = context. action 0 -> index 2, action 1 -> index 3, action 2 -> index 4.
    const outs = await runOp(
      [
        { ...mkdir('/work', 0o755), input: 0, output: -1 },
        { ...copy('/x.txt', '/work/x', { input: 2, secondaryInput: 1 }), output: 1 },
        { ...copy('/work', '/from-action', { input: -1, secondaryInput: 3 }), output: 0 },
      ],
      [base, context],
    );
    expect(outs).toHaveLength(2);
    const [o0, o1] = await Promise.all(outs.map((o) => dumpTree(o)));
    expect(o0!['from-action/x']!.content).toBe('x');
    expect(o1!['work/x']!.content).toBe('x');
    expect(o1!['etc/passwd']).toBeDefined();
  });

  it('validates indexes, outputs and cycles', async () => {
    await expect(runOp([{ ...mkdir('/a'), input: 5 }], [null])).rejects.toThrow(/input index 5 out of range \(1 inputs, 1 actions\)/);
    await expect(runOp([{ ...mkdir('/a'), output: 1 }], [null])).rejects.toThrow(/missing output index 0/);
    await expect(runOp([mkdir('/a'), mkdir('/b')], [null])).rejects.toThrow(/duplicate output 0/);
    await expect(runOp([{ ...mkdir('/a'), output: -1 }], [null])).rejects.toThrow(/no output/);
    await expect(runOp([{ ...mkdir('/a'), input: 2, output: -1 }, { ...mkdir('/b'), input: 1, output: 0 }], [null])).rejects.toThrow(/cycle/);
  });

  it('content selectors: only for inputs used purely as copy sources', () => {
    const op = fileOp([
      { ...mkdir('/w'), input: 0, output: -1 },
      { ...copy('/src', '/w', { input: 2, secondaryInput: 1, followSymlink: true, excludePatterns: ['*.js'] }), output: -1 },
      { ...copy('/*.txt', '/w', { input: 3, secondaryInput: 1, allowWildcard: true }), output: 0 },
    ]);
    expect(fileContentSelectors(op, 0)).toBeUndefined();
    expect(fileContentSelectors(op, 1)).toEqual([
      { path: '/src', followLinks: true, excludePatterns: ['*.js'] },
      { path: '/*.txt', wildcard: true },
    ]);
    const named = fileOp([{ ...copy('/a', '/b', { owner: { user: 'app', input: 1 } }), input: -1 }]);
    expect(fileContentSelectors(named, 1)).toBeUndefined();
  });
});
