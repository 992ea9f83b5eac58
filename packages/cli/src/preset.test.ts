/** The default preset's `@bkt/source-http` and `@bkt/source-git`, through `bkt build` of a Dockerfile (their own tests are in their packages). */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from './program.js';

let work: string;
let http: Server;
let httpUrl: string;
let daemon: ChildProcess;
let gitUrl: string;
let requests = 0;
const HELLO = 'hello over http\n';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createNetServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bkt-cli-sources-'));
  http = createServer((req, res) => {
    requests++;
    if (req.url === '/files/hello.txt') res.writeHead(200, { 'last-modified': new Date('2024-01-02T03:04:05Z').toUTCString() }).end(HELLO);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  httpUrl = `http://127.0.0.1:${(http.address() as { port: number }).port}`;

  // A repository with a subdir and an executable, served by a real git daemon.
  const src = join(work, 'src');
  await mkdir(join(src, 'lib'), { recursive: true });
  await writeFile(join(src, 'README.md'), 'readme\n');
  await writeFile(join(src, 'lib/code.txt'), 'code\n');
  await writeFile(join(src, 'tool.sh'), '#!/bin/sh\necho tool\n', { mode: 0o755 });
  const env = { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@x', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@x', GIT_CONFIG_NOSYSTEM: '1', HOME: work };
  const g = (...args: string[]) => execFileSync('git', args, { cwd: src, env, stdio: 'pipe' });
  g('init', '-q', '-b', 'main');
  g('add', '-A');
  g('commit', '-q', '-m', 'one');
  g('tag', 'v1');
  await mkdir(join(work, 'repos'));
  execFileSync('git', ['clone', '-q', '--bare', src, join(work, 'repos/repo.git')], { env, stdio: 'pipe' });
  const port = await freePort();
  daemon = spawn('git', ['daemon', '--reuseaddr', '--export-all', `--base-path=${join(work, 'repos')}`, '--listen=127.0.0.1', `--port=${port}`, join(work, 'repos')], { stdio: 'ignore' });
  gitUrl = `git://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      execFileSync('git', ['ls-remote', `${gitUrl}/repo.git`], { stdio: 'pipe' });
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
});

afterAll(async () => {
  http?.close();
  daemon?.kill('SIGTERM');
  await rm(work, { recursive: true, force: true });
});

async function build(dockerfile: string, out: string, extra: string[] = []) {
  let stderr = '';
  const code = await main(
    ['build', '--root', join(work, 'store'), '--progress', 'plain', '-f', '-', '-o', `type=local,dest=${out}`, ...extra, join(work, 'src')],
    { stdin: Readable.from([Buffer.from(dockerfile)]), stdout: { write: () => {} }, stderr: { write: (s: string) => (stderr += s) }, cwd: work },
  );
  return { code, stderr };
}

describe('default preset: http source (ADD URL)', () => {
  it('ADDs a URL with the file name from the URL, a checksum, a chmod; a cached build downloads again but reuses the result', async () => {
    const sum = `sha256:${createHash('sha256').update(HELLO).digest('hex')}`;
    const df = `FROM scratch\nADD ${httpUrl}/files/hello.txt /web/\nADD --checksum=${sum} --chmod=640 ${httpUrl}/files/hello.txt /web/checked.txt\n`;
    const r = await build(df, join(work, 'out-http'));
    expect(r.code, r.stderr).toBe(0);
    expect(await readFile(join(work, 'out-http/web/hello.txt'), 'utf8')).toBe(HELLO);
    expect((await lstat(join(work, 'out-http/web/hello.txt'))).mode & 0o777).toBe(0o600);
    expect((await lstat(join(work, 'out-http/web/checked.txt'))).mode & 0o777).toBe(0o640);

    const before = requests;
    const again = await build(df, join(work, 'out-http2'));
    expect(again.code).toBe(0);
    expect(requests).toBeGreaterThan(before); // the content decides the cache key
    expect(again.stderr).toMatch(/CACHED/);
    expect(await readdir(join(work, 'store/tmp')).catch(() => [])).toEqual([]); // unused downloads removed
  });
});

describe('default preset: git source (ADD git-repo)', () => {
  it('ADDs a branch, a tag with a subdir, and keeps .git on request', async () => {
    const df = [
      'FROM scratch',
      `ADD ${gitUrl}/repo.git#main /plain`,
      `ADD ${gitUrl}/repo.git#v1:lib /lib-only`,
      `ADD --keep-git-dir=true ${gitUrl}/repo.git#main /with-git`,
      '',
    ].join('\n');
    const r = await build(df, join(work, 'out-git'));
    expect(r.code, r.stderr).toBe(0);
    expect((await readdir(join(work, 'out-git/plain'))).sort()).toEqual(['README.md', 'lib', 'tool.sh']);
    expect((await lstat(join(work, 'out-git/plain/tool.sh'))).mode & 0o777).toBe(0o755);
    expect(await readdir(join(work, 'out-git/lib-only'))).toEqual(['code.txt']);
    expect((await readdir(join(work, 'out-git/with-git'))).sort()).toEqual(['.git', 'README.md', 'lib', 'tool.sh']);
    expect(execFileSync('git', ['-C', join(work, 'out-git/with-git'), 'remote', 'get-url', 'origin']).toString().trim()).toBe(`${gitUrl}/repo.git`);
  });
});
