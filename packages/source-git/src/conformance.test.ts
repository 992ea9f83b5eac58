import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { describeSourceConformance, type SourceFixture } from '@bkt/core/testing';
import { openTestContext } from '@bkt/store/testing';
import gitSource from './index.js';
import { serveRepositories, type GitDaemon } from './git-daemon.test-util.js';

let work: string;
/** The working copy behind the served repository; `commitToServed` pushes its changes. */
let checkoutDir: string;
let daemon: GitDaemon | undefined;
/** `127.0.0.1:PORT`, a git daemon serving `repo.git`. */
let host: string;

const gitEnv = () => ({ ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@x', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@x', GIT_CONFIG_NOSYSTEM: '1', HOME: work });
const git = (...args: string[]) => execFileSync('git', args, { cwd: checkoutDir, env: gitEnv(), stdio: 'pipe' }).toString().trim();

/** Commits everything in the working copy and pushes it to the served repository's `main`. */
function commitToServed(message: string): void {
  git('add', '-A');
  git('commit', '-q', '-m', message);
  git('push', '-q', join(work, 'repos/repo.git'), 'main');
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-source-git-conformance-'));
  checkoutDir = join(work, 'src');
  await mkdir(join(checkoutDir, 'lib'), { recursive: true });
  await writeFile(join(checkoutDir, 'README.md'), 'readme\n');
  await writeFile(join(checkoutDir, 'lib/code.txt'), 'code\n');
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-q', '-m', 'one');
  await mkdir(join(work, 'repos'));
  execFileSync('git', ['clone', '-q', '--bare', checkoutDir, join(work, 'repos/repo.git')], { env: gitEnv(), stdio: 'pipe' });
  daemon = await serveRepositories(join(work, 'repos'));
  host = daemon.host;
});

afterAll(async () => {
  daemon?.stop();
  await rm(work, { recursive: true, force: true });
});

/** The `git` source over a repository served by a real git daemon, in a real store; `mutate` pushes a commit to `main`. */
describeSourceConformance('git', async (): Promise<SourceFixture> => {
  const store = await openTestContext();
  const fullurl = `git://${host}/repo.git`;
  let changes = 0;
  return {
    source: gitSource().sources![0]!,
    context: store.ctx,
    valid: {
      scheme: 'git',
      ref: `${host}/repo.git#main`,
      attrs: { 'git.fullurl': fullurl },
      expect: { 'README.md': 'readme\n', lib: null, 'lib/code.txt': 'code\n' },
    },
    invalid: [
      { scheme: 'git', ref: `${host}/repo.git#main:../outside`, attrs: { 'git.fullurl': fullurl }, mentions: 'subdir' },
      { scheme: 'git', ref: `${host}/repo.git#main`, attrs: { 'git.fullurl': fullurl, 'git.mtime': 'yesterday' }, mentions: 'git.mtime' },
      { scheme: 'git', ref: 'example.com/repo.git', attrs: { 'git.fullurl': 'ssh://git@example.com/repo.git' }, mentions: 'SSH' },
    ],
    mutate: async () => {
      await writeFile(join(checkoutDir, 'lib/code.txt'), `code, change ${++changes}\n`);
      commitToServed(`change ${changes}`);
    },
    cleanup: () => store.close(),
  };
});
