/**
 * The servers a corpus run needs, all on 127.0.0.1 and all stopped by
 * `stop()`: the test registry with the busybox base image, an HTTP server
 * for `ADD {{HTTP}}/…`, a git daemon for `ADD {{GIT}}/…`, and an ssh-agent
 * for `RUN --mount=type=ssh`.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createReadStream, existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, normalize, sep } from 'node:path';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import type { Case, Placeholders } from './corpus.js';

export interface Fixtures {
  registry: RegistryServer;
  base: PushedImage;
  /** `http://127.0.0.1:PORT`; a case's files are under `/<case>/`. */
  httpUrl: string;
  /** `git://127.0.0.1:PORT`; a case's repositories are under `/<case>/`. */
  gitUrl: string;
  /** The ssh-agent's socket (no keys: the cases only check the socket). */
  sshAuthSock: string;
  /** The placeholders of `c` in this run (`parent` is set by whoever builds the parent). */
  placeholders(c: Case): Placeholders;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

async function waitForPort(port: number, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const sock = connect(port, '127.0.0.1', () => {
        sock.end();
        res(true);
      });
      sock.once('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A fixed Last-Modified, so nothing a peer derives from it varies between runs. */
const LAST_MODIFIED = new Date('2024-01-01T00:00:00Z').toUTCString();

/** Serves `<casesDir>/<case>/http/<rest>` at `/<case>/<rest>`; nothing outside those directories. */
function startHttp(casesDir: string): Promise<{ server: Server; url: string }> {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const [, caseName, ...rest] = path.split('/');
    const root = join(casesDir, caseName ?? '', 'http');
    const file = normalize(join(root, ...rest));
    if (!caseName || caseName.includes('..') || !file.startsWith(root + sep)) {
      res.writeHead(404).end();
      return;
    }
    try {
      const st = await stat(file);
      if (!st.isFile()) throw new Error('not a file');
      res.writeHead(200, { 'content-length': st.size, 'content-type': 'application/octet-stream', 'last-modified': LAST_MODIFIED });
      if (req.method === 'HEAD') res.end();
      else createReadStream(file).pipe(res);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      resolve({ server, url: `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}` });
    });
  });
}

/**
 * Makes a bare repository `<root>/<case>/<name>.git` of each `<case>/git/<name>/`
 * directory: one commit on `main`, with fixed author, committer and dates so
 * its id is the same on every run and machine.
 */
async function makeGitRepos(casesDir: string, cases: Case[], root: string): Promise<void> {
  const env = {
    ...process.env,
    GIT_AUTHOR_NAME: 'bkt corpus',
    GIT_AUTHOR_EMAIL: 'corpus@bkt.invalid',
    GIT_COMMITTER_NAME: 'bkt corpus',
    GIT_COMMITTER_EMAIL: 'corpus@bkt.invalid',
    GIT_AUTHOR_DATE: '2024-01-01T00:00:00Z',
    GIT_COMMITTER_DATE: '2024-01-01T00:00:00Z',
    GIT_CONFIG_NOSYSTEM: '1',
    HOME: root,
  };
  for (const c of cases) {
    const gitDir = join(casesDir, c.name, 'git');
    if (!existsSync(gitDir)) continue;
    for (const name of execFileSync('ls', [gitDir], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
      const work = join(root, '.work', c.name, name);
      await mkdir(join(root, '.work', c.name), { recursive: true });
      await cp(join(gitDir, name), work, { recursive: true, verbatimSymlinks: true });
      const git = (...args: string[]) => execFileSync('git', args, { cwd: work, env, stdio: 'pipe' });
      git('init', '-q', '-b', 'main');
      git('add', '-A');
      git('commit', '-q', '-m', `${c.name}: ${name}`);
      await mkdir(join(root, c.name), { recursive: true });
      execFileSync('git', ['clone', '-q', '--bare', work, join(root, c.name, `${name}.git`)], { env, stdio: 'pipe' });
    }
  }
}

function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

export async function startFixtures(casesDir: string, cases: Case[]): Promise<Fixtures> {
  const tmp = await mkdtemp(join(tmpdir(), 'bkt-corpus-fixtures-'));
  let registry: RegistryServer | undefined;
  let http: Server | undefined;
  let gitDaemon: ChildProcess | undefined;
  let agent: ChildProcess | undefined;
  const stop = async () => {
    await stopChild(gitDaemon);
    await stopChild(agent);
    await new Promise<void>((r) => (http ? http.close(() => r()) : r()));
    await registry?.stop();
    await rm(tmp, { recursive: true, force: true });
  };
  try {
    registry = await startRegistry();
    const base = await pushBusyboxImage(registry, 'busybox', 'latest');

    const h = await startHttp(casesDir);
    http = h.server;

    const gitRoot = join(tmp, 'git');
    await mkdir(gitRoot, { recursive: true });
    await makeGitRepos(casesDir, cases, gitRoot);
    const gitPort = await freePort();
    gitDaemon = spawn(
      'git',
      ['daemon', '--reuseaddr', '--export-all', '--listen=127.0.0.1', `--port=${gitPort}`, `--base-path=${gitRoot}`, gitRoot],
      { stdio: 'ignore' },
    );
    await waitForPort(gitPort, 'git daemon');

    const sshAuthSock = join(tmp, 'agent.sock');
    agent = spawn('ssh-agent', ['-D', '-a', sshAuthSock], { stdio: 'ignore' });
    for (let i = 0; i < 200 && !existsSync(sshAuthSock); i++) await new Promise((r) => setTimeout(r, 25));
    if (!existsSync(sshAuthSock)) throw new Error('ssh-agent did not create its socket');

    const reg = registry;
    return {
      registry: reg,
      base,
      httpUrl: h.url,
      gitUrl: `git://127.0.0.1:${gitPort}`,
      sshAuthSock,
      placeholders: (c) => ({ base: base.reference, registry: reg.host, http: `${h.url}/${c.name}`, git: `git://127.0.0.1:${gitPort}/${c.name}` }),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
