/**
 * Issue 10, `bkt build --load` through the built CLI: a Dockerfile build FROM
 * the test registry's busybox with a RUN step (real runc) is loaded into a
 * dockerd this test starts on its own socket and data root (Debian's
 * docker.io), where `docker image inspect` finds it under its tag with the
 * build's image id and `docker run` prints what the RUN step wrote. Where
 * dockerd can't start, those tests are skipped with the reason. Without a
 * reachable engine, `--load` is an error naming where bkt looked, before
 * anything is built.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { bktEnv } from './lib.js';

const run = promisify(execFile);
const DOCKER = '/usr/bin/docker';

/** A dockerd of this test, or why there is none. */
type Dockerd = { socket: string; stop(): Promise<void> } | { skip: string };

/**
 * Starts `dockerd` (no bridge, no iptables) with its data under `dir` and its
 * sockets and state under a short temp dir (socket paths have a length
 * limit), and waits until it answers; the reason it could not start otherwise.
 */
async function startDockerd(dir: string): Promise<Dockerd> {
  const binary = ['/usr/sbin/dockerd', '/usr/bin/dockerd'].find((p) => existsSync(p));
  if (!binary || !existsSync(DOCKER)) return { skip: 'dockerd or /usr/bin/docker is not installed (Debian package docker.io)' };
  const runDir = await mkdtemp(join(tmpdir(), 'bkt-dockerd-'));
  const socket = join(runDir, 'docker.sock');
  const logFile = join(dir, 'dockerd.log');
  const log = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(
      binary,
      ['--bridge=none', '--iptables=false', '--data-root', join(dir, 'data'), '--exec-root', join(runDir, 'exec'), '--pidfile', join(runDir, 'dockerd.pid'), '-H', `unix://${socket}`],
      { stdio: ['ignore', log, log] },
    );
  } finally {
    closeSync(log);
  }
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  child.once('error', () => undefined);
  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      const killed = await Promise.race([exit.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 30_000))]);
      if (!killed) {
        child.kill('SIGKILL');
        await exit;
      }
    }
    // Its containerd and shims go shortly after it: wait until no process names the run dir.
    for (let i = 0; i < 30; i++) {
      const { stdout } = await run('ps', ['-eo', 'args'], { encoding: 'utf8' });
      if (!stdout.includes(runDir)) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    // What dockerd left mounted under its roots (it unmounts on a clean stop).
    const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(dir) || m.startsWith(runDir));
    for (const m of mounts.sort().reverse()) await run('umount', ['-l', m]).catch(() => undefined);
    await rm(runDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && !exited) {
    const ok = await run(DOCKER, ['-H', `unix://${socket}`, 'version', '--format', '{{.Server.Version}}'], { timeout: 10_000 }).then(() => true, () => false);
    if (ok) return { socket, stop };
    await new Promise((r) => setTimeout(r, 500));
  }
  await stop();
  const tail = (await readFile(logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join(' | ');
  return { skip: `dockerd did not start within 60 s${exited ? ' (it exited)' : ''}: ${tail}` };
}

let registry: RegistryServer;
let busybox: PushedImage;
let work: string;
let context: string;
let dockerd: Dockerd;

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('images-load');
  context = join(work, 'context');
  await mkdir(context);
  await writeFile(join(context, 'Dockerfile'), [`FROM ${busybox.reference}`, 'RUN echo "loaded by bkt" > /greeting.txt', 'CMD ["cat", "/greeting.txt"]', ''].join('\n'));
  await mkdir(join(work, 'dockerd'));
  dockerd = await startDockerd(join(work, 'dockerd'));
  if ('skip' in dockerd) console.warn(`load.test.ts: skipping the dockerd tests: ${dockerd.skip}`);
});

afterAll(async () => {
  if (dockerd && 'stop' in dockerd) await dockerd.stop();
  await registry?.stop();
  if (work) await removeDir(work);
});

const build = (args: string[], env: Record<string, string>, root = join(work, 'store')) =>
  bktEnv(['build', '--root', root, '--progress', 'plain', ...args, context], { cwd: work, env });

describe('bkt build --load', () => {
  it('without a reachable engine, fails naming where it looked, before building anything', async () => {
    const socket = join(work, 'absent.sock');
    const root = join(work, 'unused-store');
    const r = await build(['--load', '-t', 'app:nowhere'], { DOCKER_HOST: `unix://${socket}` }, root);
    expect(r.stderr).toMatch(
      new RegExp(`^error: --load: no Docker engine reachable at unix://${socket} \\(DOCKER_HOST=unix://${socket}\\): connect ENOENT ${socket}; start dockerd, or point DOCKER_HOST at a running engine\\n$`),
    );
    expect(r.code).toBe(1);
    expect(existsSync(root)).toBe(false);
    const ssh = await build(['--load'], { DOCKER_HOST: 'ssh://user@host' }, root);
    expect(ssh.stderr).toMatch(/^error: --load: DOCKER_HOST=ssh:\/\/user@host: bkt reaches a Docker engine over unix:\/\/ or tcp:\/\/ only$/m);
    expect(ssh.code).toBe(1);
  });

  it('loads the image into a running dockerd: tagged, with the build\'s image id, and it runs', async (ctx) => {
    if ('skip' in dockerd) return ctx.skip(dockerd.skip);
    const host = `unix://${dockerd.socket}`;
    const iid = join(work, 'iid');
    const r = await build(['--load', '-t', 'app:loaded', '--iidfile', iid], { DOCKER_HOST: host });
    expect(r.stderr).not.toMatch(/^error/m);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`Loaded image: app:loaded (Docker engine at ${host})\n`);
    const id = await readFile(iid, 'utf8');
    const inspected = await run(DOCKER, ['-H', host, 'image', 'inspect', 'app:loaded', '--format', '{{.Id}} {{index .RepoTags 0}}'], { encoding: 'utf8' });
    expect(inspected.stdout.trim()).toBe(`${id} app:loaded`);
    const ran = await run(DOCKER, ['-H', host, 'run', '--rm', '--network', 'none', 'app:loaded'], { encoding: 'utf8', timeout: 120_000 });
    expect(ran.stdout).toBe('loaded by bkt\n');
  });
});
