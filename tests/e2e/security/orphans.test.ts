/**
 * No container outlives a killed build (issue 8, defect 7). `bkt build` is
 * killed with SIGKILL while a `RUN` with a secret (as env and as a file)
 * sleeps:
 * - its watchdog stops the container: 10 s later neither `runc list` of the
 *   store nor `ps` shows it, and the secret is nowhere under the store;
 * - with the watchdog killed too (a machine where it also died), `bkt prune`
 *   or the next `bkt build` on that store stops the container whose root
 *   filesystem it unmounts, and removes the secrets.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, readdir, readFile, lstat, symlink, writeFile } from 'node:fs/promises';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BKT, bkt, definition, mkfileOp, removeDir, tempDir } from '../helpers.js';

const SECRET = 'orphan-secret-7f3a9c';
let work: string;

beforeAll(async () => {
  work = await tempDir('security-orphans');
  const context = join(work, 'ctx');
  await mkdir(join(context, 'rootfs/bin'), { recursive: true });
  await copyFile('/bin/busybox', join(context, 'rootfs/bin/busybox'));
  for (const applet of ['sh', 'sleep']) await symlink('busybox', join(context, `rootfs/bin/${applet}`));
  await writeFile(
    join(context, 'Dockerfile'),
    [
      'FROM scratch',
      'COPY rootfs/ /',
      'RUN --mount=type=secret,id=token,env=TOKEN --mount=type=secret,id=token,target=/run/secrets/token echo step-is-running; sleep 1000',
      '',
    ].join('\n'),
  );
  await writeFile(join(work, 'token.txt'), SECRET);
  const mk = mkfileOp('/done', 'done');
  await writeFile(join(work, 'mkfile.pb'), definition([mk], mk));
});

afterAll(async () => {
  // Should a test fail, nothing it started may outlive it: builds, containers, mounts.
  for (const build of builds) if (build.exitCode === null && build.signalCode === null) build.kill('SIGKILL');
  for (const name of await readdir(work).catch(() => [] as string[])) {
    const state = join(work, name, 'runc/state');
    for (const id of (await readdir(state).catch(() => [] as string[])).filter((n) => n.startsWith('bkt-'))) {
      execFileSync('runc', ['--root', state, 'delete', '--force', id], { stdio: 'ignore' });
    }
  }
  for (const mount of mountsUnder(work).sort().reverse()) execFileSync('umount', ['-l', mount]);
  await removeDir(work);
});

const builds: ChildProcess[] = [];

/** Starts `bkt build` of the sleeping step and resolves once the step runs. */
async function startBuild(root: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BKT, 'build', '--root', root, '--secret', `id=token,src=${join(work, 'token.txt')}`, '--progress', 'plain', 'ctx'], {
    cwd: work,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  builds.push(child);
  let seen = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      seen += d.toString();
      if (/\d step-is-running/.test(seen)) resolve();
    });
    child.once('exit', () => reject(new Error(`bkt exited before the step ran:\n${seen}`)));
  });
  return child;
}

function runcList(root: string): string[] {
  return execFileSync('runc', ['--root', join(root, 'runc/state'), 'list', '-q'], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

/** Pids of processes whose command line includes `needle` (`ps` by hand: /proc/<pid>/cmdline). */
function processesMatching(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').includes(needle)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Processes in a cgroup of one of `root`'s containers of build process `pid` (ids `bkt-<pid>-…`). */
function containerProcesses(pid: number): number[] {
  const marker = `/bkt/bkt-${pid}-`;
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return readFileSync(`/proc/${d}/cgroup`, 'utf8').includes(marker);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Regular files under `dir` (mounts included) whose bytes contain `needle`. */
async function filesContaining(dir: string, needle: string): Promise<string[]> {
  const hits: string[] = [];
  const visit = async (d: string) => {
    for (const name of await readdir(d).catch(() => [] as string[])) {
      const p = join(d, name);
      const st = await lstat(p).catch(() => null);
      if (!st) continue;
      if (st.isDirectory()) await visit(p);
      else if (st.isFile() && (await readFile(p).catch(() => Buffer.alloc(0))).includes(needle)) hits.push(p);
    }
  };
  await visit(dir);
  return hits;
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p.startsWith(`${dir}/`));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a build killed with SIGKILL during a RUN', () => {
  it('leaves no container running and no secret under the store 10 s later', async () => {
    const root = join(work, 'store-watchdog');
    const build = await startBuild(root);
    const pid = build.pid!;
    expect(runcList(root)).toHaveLength(1);
    expect(containerProcesses(pid).length).toBeGreaterThan(0);
    // While it runs the secret is on a tmpfs under the store (proves the search below looks in the right place).
    expect((await filesContaining(root, SECRET)).length).toBeGreaterThan(0);

    const killedAt = Date.now();
    build.kill('SIGKILL');
    let goneMs = -1;
    while (Date.now() - killedAt < 10_000) {
      if (goneMs < 0 && runcList(root).length === 0 && containerProcesses(pid).length === 0) goneMs = Date.now() - killedAt;
      await sleep(100);
    }
    expect(runcList(root)).toEqual([]);
    expect(containerProcesses(pid)).toEqual([]);
    expect(processesMatching(`bkt-${pid}-`)).toEqual([]);
    expect(await filesContaining(root, SECRET)).toEqual([]);
    expect(mountsUnder(join(root, 'runc'))).toEqual([]);
    console.log(`orphans: no container ${goneMs} ms after kill -9`);
    // The step's root filesystem (a store mount) waits for the store's repair on its next open.
    const du = await bkt(['du', '--root', root], { cwd: work });
    expect(du.code, du.stderr).toBe(0);
    expect(mountsUnder(root)).toEqual([]);
  });

  it.each([
    ['bkt prune', ['prune']],
    ['the next bkt build (one with no RUN)', ['build', '--llb', 'mkfile.pb', '--progress', 'plain']],
  ])('with its watchdog dead too, %s stops the container it unmounts and removes the secrets', async (what, args) => {
    const root = join(work, `store-${what.replace(/\W+/g, '-')}`);
    const build = await startBuild(root);
    const pid = build.pid!;
    // This build's watchdog (the one given this store's runc root) dies first.
    const watchdogs = processesMatching('bkt-container-watchdog').filter((p) => readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(`${root}/`));
    expect(watchdogs.length).toBeLessThanOrEqual(1);
    for (const watchdog of watchdogs) process.kill(watchdog, 'SIGKILL');
    build.kill('SIGKILL');
    await sleep(2000);
    // Nothing acted: the container still runs, its secrets still under the store.
    expect(runcList(root)).toHaveLength(1);
    expect(containerProcesses(pid).length).toBeGreaterThan(0);
    expect((await filesContaining(root, SECRET)).length).toBeGreaterThan(0);

    const r = await bkt([...args, '--root', root], { cwd: work });
    expect(r.code, r.stderr).toBe(0);
    expect(runcList(root)).toEqual([]);
    expect(containerProcesses(pid)).toEqual([]);
    expect(await filesContaining(root, SECRET)).toEqual([]);
    expect(mountsUnder(root)).toEqual([]);
  });
});
