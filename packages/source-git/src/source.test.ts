import { execFileSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBkt, type BuildContext, type Snapshot } from '@bkt/core';
import { testBuildContext } from '@bkt/core/testing';
import { Store } from '@bkt/store';
import gitSource, { createGitSource } from './index.js';
import { serveRepositories, type GitDaemon } from './git-daemon.test-util.js';

let work: string;
let store: Store;
let daemon: GitDaemon | undefined;
/** `127.0.0.1:PORT`, a git daemon serving `repo.git`. */
let host: string;
let commit: string;
const COMMIT_TIME = 1_700_000_000;

function context(): BuildContext {
  return testBuildContext({ buildId: 'b1', root: store.root, snapshotter: store.snapshotter, content: store.content, records: store.records }).ctx;
}

/** Resolves `git://HOST/repo.git#FRAGMENT` with `attrs` as the solver would, and mounts its snapshot into `fn`. */
async function checkout<T>(fragment: string, attrs: Record<string, string>, fn: (dir: string, snapshot: Snapshot) => Promise<T>) {
  const source = createGitSource();
  const ctx = context();
  const instance = await source.resolve(source.identify('git', `${host}/repo.git${fragment}`, { 'git.fullurl': `git://${host}/repo.git`, ...attrs }), ctx);
  const key = await instance.cacheKey(ctx);
  const snapshot = await instance.snapshot(ctx);
  const m = await snapshot.mount();
  try {
    return { key, result: await fn(m.path, snapshot) };
  } finally {
    await m.release();
  }
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-source-git-'));
  store = await Store.open(join(work, 'store'));
  // A repository with a subdir and an executable, served by a real git daemon.
  const src = join(work, 'src');
  await mkdir(join(src, 'lib'), { recursive: true });
  await writeFile(join(src, 'README.md'), 'readme\n');
  await writeFile(join(src, 'lib/code.txt'), 'code\n');
  await writeFile(join(src, 'tool.sh'), '#!/bin/sh\necho tool\n', { mode: 0o755 });
  const date = `@${COMMIT_TIME} +0000`;
  const env = { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@x', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@x', GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date, GIT_CONFIG_NOSYSTEM: '1', HOME: work };
  const g = (...args: string[]) => execFileSync('git', args, { cwd: src, env, stdio: 'pipe' }).toString().trim();
  g('init', '-q', '-b', 'main');
  g('add', '-A');
  g('commit', '-q', '-m', 'one');
  g('tag', '-a', '-m', 'v1', 'v1');
  commit = g('rev-parse', 'HEAD');
  await mkdir(join(work, 'repos'));
  execFileSync('git', ['clone', '-q', '--bare', src, join(work, 'repos/repo.git')], { env, stdio: 'pipe' });
  daemon = await serveRepositories(join(work, 'repos'));
  host = daemon.host;
});

afterAll(async () => {
  daemon?.stop();
  await store?.close();
  await rm(work, { recursive: true, force: true });
});

describe('git source', () => {
  it('checks out a branch without .git, keeping modes; the key pins the commit', async () => {
    const { key, result } = await checkout('#main', {}, async (dir) => ({
      names: (await readdir(dir)).sort(),
      toolMode: (await lstat(join(dir, 'tool.sh'))).mode & 0o777,
      code: await readFile(join(dir, 'lib/code.txt'), 'utf8'),
    }));
    expect(key.pin).toBe(commit);
    expect(result).toEqual({ names: ['README.md', 'lib', 'tool.sh'], toolMode: 0o755, code: 'code\n' });
  });

  it('resolves an annotated tag to its commit and narrows to a subdir (same commit, another key)', async () => {
    const main = await checkout('#main', {}, async () => undefined);
    const { key, result } = await checkout('#v1:lib', {}, async (dir) => readdir(dir));
    expect(key.pin).toBe(commit);
    expect(key.key).not.toBe(main.key.key);
    expect(result).toEqual(['code.txt']);
  });

  it('keeps .git with origin on request, and sets commit mtimes with git.mtime=commit', async () => {
    const { result } = await checkout('#main', { 'git.keepgitdir': 'true', 'git.mtime': 'commit' }, async (dir) => ({
      names: (await readdir(dir)).sort(),
      origin: execFileSync('git', ['-C', dir, 'remote', 'get-url', 'origin']).toString().trim(),
      mtime: (await lstat(join(dir, 'README.md'))).mtimeMs,
    }));
    expect(result.names).toEqual(['.git', 'README.md', 'lib', 'tool.sh']);
    expect(result.origin).toBe(`git://${host}/repo.git`);
    expect(result.mtime).toBe(COMMIT_TIME * 1000);
  });

  it('fails naming a missing ref, a wrong checksum, an escaping subdir and SSH remotes', async () => {
    await expect(checkout('#nope', {}, async () => undefined)).rejects.toThrow(/no ref "nope"/);
    await expect(checkout('#main', { 'git.checksum': '0'.repeat(40) }, async () => undefined)).rejects.toThrow(/expected checksum 0+, got [0-9a-f]{40}/);
    const source = createGitSource();
    expect(() => source.identify('git', `${host}/repo.git#main:../up`, {})).toThrow(/subdir "\.\.\/up" leaves the repository/);
    expect(() => source.identify('git', 'github.com/x/y.git', { 'git.fullurl': 'git@github.com:x/y.git' })).toThrow(/SSH remotes/);
  });
});

describe('the plugin', () => {
  it('registers the git scheme under its own name', async () => {
    const bkt = await createBkt([gitSource()]);
    expect(bkt.registries.sources.get('git')?.schemes).toEqual(['git']);
    expect(bkt.registries.sources.owner('git')).toBe('@bkt/source-git');
    await bkt.close();
  });
});
