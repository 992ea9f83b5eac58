/**
 * A writable root mounted in the container's own mount namespace (real runc,
 * a real overlay): the host's mount table never holds it, the step's changes
 * are its layer, the mount stubs are still removed, and nothing of it stays
 * when the step is cancelled or the worker is SIGKILLed.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as pb from '@bkt/api/pb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openHarness, runStep, type Harness } from './harness.test-util.js';
import { isAlive } from './sys.js';
import runcWorker from './index.js';
import type { ExecOpExecutor } from './execop.js';
import { RootNamespace, useRootHolder } from './rootns.js';

const DIST = resolve(import.meta.dirname, '../dist/runc-executor.js');
let h: Harness;
beforeAll(async () => {
  h = await openHarness();
});
afterAll(async () => {
  for (const m of mountsUnder(h.dir).sort().reverse()) execFileSync('umount', ['-l', m]);
  await h?.close();
});

function mountsUnder(path: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p === path || p.startsWith(`${path}/`));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Samples the host's mounts under the store while `work` runs. */
async function hostMountsDuring<T>(work: Promise<T>): Promise<{ result: T; seen: string[] }> {
  const seen = new Set<string>();
  let done = false;
  const watching = (async () => {
    while (!done) {
      for (const m of mountsUnder(join(h.root, 'mounts'))) seen.add(m);
      await sleep(20);
    }
  })();
  try {
    return { result: await work, seen: [...seen] };
  } finally {
    done = true;
    await watching;
  }
}

function readLayer(snapshot: { layerPath(): string }, path: string): string | null {
  const file = join(snapshot.layerPath(), path);
  return existsSync(file) ? readFileSync(file, 'utf8') : null;
}

describe('exec op: the root mounted in the container\'s mount namespace', () => {
  it('never appears in the host\'s mount table; the layer holds what the step wrote and no stubs', async () => {
    const { result, seen } = await hostMountsDuring(
      runStep(h, 'cat /etc/hosts >/dev/null; mkdir -p /data; echo made > /data/file; sleep 0.5', {
        mounts: [{ dest: '/run/extra', mountType: pb.MountType.TMPFS }],
      }),
    );
    expect(seen).toEqual([]);
    const layer = result.outputs[0]!;
    expect(readLayer(layer, 'data/file')).toBe('made\n');
    // runc's mount points (the /etc files and /run/extra) are not part of the layer.
    expect(existsSync(join(layer.layerPath(), 'etc/hosts'))).toBe(false);
    expect(existsSync(join(layer.layerPath(), 'run/extra'))).toBe(false);
    expect(mountsUnder(h.root)).toEqual([]);
  }, 20_000);

  it('a user and a working directory are resolved in the mounted root', async () => {
    const r = await runStep(h, 'id -u; pwd; stat -c %u .', { meta: { user: 'user', cwd: '/home/new/dir' } });
    expect(r.stdout).toBe('1000\n/home/new/dir\n1000\n');
  }, 20_000);

  it('a step with a host mount made after the spare process was spawned sees it (the spare is not used for it)', async () => {
    // A second layer: its read-only view is an overlay mounted on the host when the step's mounts are prepared.
    const mutable = await h.store.snapshotter.prepare(h.base);
    writeFileSync(join(mutable.path, 'in-view'), 'view content\n');
    const child = await mutable.commit();
    // The first step leaves a spare behind; the second needs its view mount.
    await runStep(h, 'true');
    const r = await runStep(h, 'cat /v/in-view; test -e /v/bin/sh && echo base-too', {
      inputs: [{ snapshot: h.base }, { snapshot: child }],
      mounts: [{ input: 1, dest: '/v', readonly: true, output: -1 }],
    });
    expect(r.stdout).toBe('view content\nbase-too\n');
    // And a plain step after it still runs (on a spare).
    expect((await runStep(h, 'echo plain')).stdout).toBe('plain\n');
  }, 20_000);

  it("no process keeps a copy of a step's secret tmpfs once the step is over, not even the spare started while it ran", async () => {
    // A worker of its own: no spare is waiting when the step starts, so one is started while it runs (its namespace copies the
    // secret's tmpfs; removing the mount point on the host detaches that copy).
    const fresh = { ...h, executor: runcWorker().opExecutors![0] as ExecOpExecutor };
    const r = await runStep(fresh, 'cat /run/secrets/s; sleep 0.3', {
      secrets: { s: 'hush' },
      mounts: [{ dest: '/run/secrets/s', mountType: pb.MountType.SECRET, secretOpt: { ID: 's', mode: 0o400 }, output: -1 }],
    });
    expect(r.stdout).toBe('hush');
    // Every process's mount table (its namespace's): none holds a secrets tmpfs of this store.
    const holding = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').some((l) => l.includes(` ${h.root}/`) && l.includes('/secrets '));
        } catch {
          return false;
        }
      });
    expect(holding).toEqual([]);
    expect((await runStep(fresh, 'echo after')).stdout).toBe('after\n');
  }, 20_000);

  it('a step whose mounts need no scratch dir makes none', async () => {
    const scratch = join(h.root, 'runc', 'mounts');
    const seen = new Set<string>();
    let done = false;
    const watching = (async () => {
      while (!done) {
        for (const name of existsSync(scratch) ? readdirSync(scratch) : []) seen.add(name);
        await sleep(10);
      }
    })();
    try {
      const r = await runStep(h, 'echo ran; sleep 0.3', { mounts: [{ dest: '/run/extra', mountType: pb.MountType.TMPFS }] });
      expect(r.stdout).toBe('ran\n');
    } finally {
      done = true;
      await watching;
    }
    expect([...seen]).toEqual([]);
  }, 20_000);

  it('a cancelled step leaves no mount, no container and no process holding the root', async () => {
    const ac = new AbortController();
    const step = runStep(h, 'echo up; sleep 100', { signal: ac.signal });
    await sleep(700);
    // The processes holding a root of this store mounted (`bkt-container-root` with a mount under the store in their namespace).
    const holders = () =>
      execFileSync('sh', ['-c', 'pgrep -f bkt-container-root || true'], { encoding: 'utf8' })
        .split('\n')
        .filter((pid) => {
          try {
            return !!pid && readFileSync(`/proc/${pid}/mountinfo`, 'utf8').includes(` ${h.root}/`);
          } catch {
            return false;
          }
        });
    expect(holders().length).toBe(1);
    ac.abort();
    await expect(step).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(mountsUnder(h.root)).toEqual([]);
    expect(holders()).toEqual([]);
  }, 20_000);
});

describe.each(['perl', 'sh'] as const)('RootNamespace (%s)', (holder) => {
  beforeAll(() => useRootHolder(holder));
  afterAll(() => useRootHolder('auto'));
  const target = () => {
    const dir = join(h.dir, `ns-target-${Math.random().toString(36).slice(2)}`);
    mkdirSync(dir);
    return dir;
  };
  const tmpfs = { type: 'tmpfs', source: 'tmpfs', options: 'size=1m' };

  it('exits with its command unless asked to keep the root: the mount goes with it', async () => {
    const dir = target();
    const ns = RootNamespace.spawn();
    await ns.mount(tmpfs, dir, '/bin/sh', ['-c', `echo made > ${dir}/file`], 'a test');
    ns.start();
    expect(await ns.exited).toBe(0);
    // Gone without close(): nothing holds the mount any longer.
    const exit = ns.child.exitCode !== null ? ns.child.exitCode : (await once(ns.child, 'exit'))[0];
    expect(exit).toBe(0);
    await ns.close();
  }, 20_000);

  it('mounts an overlay, and a bind mount (`bind`: a flag, not data); the command gets its arguments as given, without fds 3 and 4', async () => {
    const base = join(h.dir, `ns-base-${holder}`);
    for (const d of ['lower', 'upper', 'work']) mkdirSync(join(base, d), { recursive: true });
    writeFileSync(join(base, 'lower', 'low'), 'low\n');
    const dir = target();
    const ns = RootNamespace.spawn();
    const overlay = { type: 'overlay', source: 'overlay', options: `lowerdir=${base}/lower,upperdir=${base}/upper,workdir=${base}/work` };
    await ns.mount(overlay, dir, '/bin/sh', ['-c', `cat ${dir}/low > ${dir}/"$1"; ls /proc/$$/fd > ${dir}/fds`, 'sh', 'a b'], 'a test');
    ns.start();
    expect(await ns.exited).toBe(0);
    await ns.close();
    expect(readFileSync(join(base, 'upper', 'a b'), 'utf8')).toBe('low\n');
    // Not the control pipes.
    const fds = readFileSync(join(base, 'upper', 'fds'), 'utf8').split('\n');
    expect(fds).toContain('2');
    expect(fds).not.toContain('3');
    expect(fds).not.toContain('4');

    const bound = target();
    const bind = RootNamespace.spawn();
    await bind.mount({ type: 'none', source: join(base, 'lower'), options: 'bind' }, bound, '/bin/cat', [join(bound, 'low')], 'a test');
    let out = '';
    bind.child.stdout!.on('data', (d) => (out += d));
    bind.start();
    expect(await bind.exited).toBe(0);
    await bind.close();
    expect(out).toBe('low\n');
    expect(mountsUnder(h.dir)).toEqual([]);
  }, 20_000);

  it('mounts `bind,ro` read-only, as mount(8) (a second remount), and passes a flag word such as `noatime` as a flag, not as overlay data', async () => {
    const base = join(h.dir, `ns-flags-${holder}`);
    for (const d of ['lower', 'upper', 'work']) mkdirSync(join(base, d), { recursive: true });
    const bound = target();
    const ro = RootNamespace.spawn();
    await ro.mount({ type: 'none', source: join(base, 'lower'), options: 'bind,ro' }, bound, '/bin/sh', ['-c', `touch ${bound}/x 2>/dev/null && exit 7; grep -q " ${bound} .*ro," /proc/self/mountinfo`], 'a test');
    ro.start();
    expect(await ro.exited).toBe(0);
    await ro.close();
    expect(existsSync(join(base, 'lower', 'x'))).toBe(false);

    const dir = target();
    const ns = RootNamespace.spawn();
    const overlay = { type: 'overlay', source: 'overlay', options: `noatime,nosuid,lowerdir=${base}/lower,upperdir=${base}/upper,workdir=${base}/work` };
    await ns.mount(overlay, dir, '/bin/sh', ['-c', `grep " ${dir} " /proc/self/mountinfo | grep -q "nosuid.*noatime"`], 'a test');
    ns.start();
    expect(await ns.exited).toBe(0);
    await ns.close();
    expect(mountsUnder(h.dir)).toEqual([]);
  }, 20_000);

  it("is not changed by Perl's environment (PERL5OPT loading a module that does not exist)", async () => {
    process.env.PERL5OPT = '-MNo::Such::Module';
    try {
      const ns = RootNamespace.spawn();
      await ns.mount(tmpfs, target(), '/bin/true', [], 'a test');
      ns.start();
      expect(await ns.exited).toBe(0);
      await ns.close();
    } finally {
      delete process.env.PERL5OPT;
    }
  }, 20_000);

  it('reports a failed mount as INTERNAL with the error, and a command killed by a signal as 128+N', async () => {
    const ns = RootNamespace.spawn();
    await expect(ns.mount({ type: 'overlay', source: 'overlay', options: 'lowerdir=/nonexistent-lower' }, target(), '/bin/true', [], 'container x')).rejects.toMatchObject({
      code: 'INTERNAL',
      message: expect.stringMatching(/^cannot mount the root filesystem of container x: .*mount.*\S/),
    });
    await ns.close();
    const killed = RootNamespace.spawn();
    await killed.mount(tmpfs, target(), '/bin/sh', ['-c', 'kill -TERM $$'], 'a test');
    killed.start();
    expect(await killed.exited).toBe(143);
    await killed.close();
  }, 20_000);

  it('with keepRoot, the root stays mounted and readable after the command until close()', async () => {
    const dir = target();
    const ns = RootNamespace.spawn();
    await ns.mount(tmpfs, dir, '/bin/sh', ['-c', `echo made > ${dir}/file; exit 3`], 'a test');
    ns.start({ keepRoot: true });
    expect(await ns.exited).toBe(3);
    await sleep(200);
    expect(ns.child.exitCode).toBe(null);
    expect(readFileSync(join(ns.root, 'file'), 'utf8')).toBe('made\n');
    await ns.close();
    expect(ns.child.exitCode).toBe(3);
  }, 20_000);
});

/** getpid(2) (returns the pid) and getuid(2) (returns 0, as root) by Node's arch: numbers that are not mount(2). */
const NOT_MOUNT: Partial<Record<string, { getpid: number; getuid: number }>> = { x64: { getpid: 39, getuid: 102 }, arm64: { getpid: 172, getuid: 174 } };

describe('the Perl holder', () => {
  afterAll(() => useRootHolder('auto'));
  const target = () => {
    const dir = join(h.dir, `perl-target-${Math.random().toString(36).slice(2)}`);
    mkdirSync(dir);
    return dir;
  };
  const tmpfs = { type: 'tmpfs', source: 'tmpfs', options: 'size=1m' };

  it.each(['getpid', 'getuid'] as const)("given %s's number instead of mount(2)'s, fails: it never reports ready on a target with nothing mounted", async (call) => {
    const nr = NOT_MOUNT[process.arch]?.[call];
    if (nr === undefined) throw new Error(`no ${call} number for ${process.arch} in this test`);
    useRootHolder('perl', { nr });
    const ns = RootNamespace.spawn();
    await expect(ns.mount(tmpfs, target(), '/bin/true', [], 'container x')).rejects.toMatchObject({
      code: 'INTERNAL',
      message: expect.stringMatching(/^cannot mount the root filesystem of container x: .*not mount\(2\)/),
    });
    await ns.close();
  }, 20_000);

  it("of another ABI than mount(2)'s number is for (another pointer size) exits before reading anything", async () => {
    useRootHolder('perl', { pointer: 4 });
    const ns = RootNamespace.spawn();
    await expect(ns.mount(tmpfs, target(), '/bin/true', [], 'container x')).rejects.toMatchObject({
      code: 'INTERNAL',
      message: expect.stringMatching(/not of the ABI/),
    });
    await ns.close();
  }, 20_000);

  it('chosen on its own, is replaced by the shell script when `perl` is not one it can run (a wrapper exiting 2): steps still run', async () => {
    const bin = join(h.dir, 'fake-perl-bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'perl'), '#!/bin/sh\nexit 2\n', { mode: 0o755 });
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path}`;
    try {
      useRootHolder('auto');
      const ns = RootNamespace.spawn();
      expect(ns.child.spawnargs).toContain(join(bin, 'perl'));
      await ns.mount(tmpfs, target(), '/bin/true', [], 'a test');
      ns.start();
      expect(await ns.exited).toBe(0);
      await ns.close();
      // The shell script from then on, without trying perl again.
      const next = RootNamespace.spawn();
      expect(next.child.spawnargs).toContain('/bin/sh');
      await next.close();
      const fresh = { ...h, executor: runcWorker().opExecutors![0] as ExecOpExecutor };
      expect((await runStep(fresh, 'echo ran')).stdout).toBe('ran\n');
    } finally {
      process.env.PATH = path;
      useRootHolder('auto');
    }
  }, 30_000);

  it('chosen on its own, reports a failed mount as such (not replaced: the shell script would fail the same)', async () => {
    useRootHolder('auto');
    const ns = RootNamespace.spawn();
    expect(ns.child.spawnargs.some((a) => a.endsWith('/perl'))).toBe(true);
    await expect(ns.mount({ type: 'overlay', source: 'overlay', options: 'lowerdir=/nonexistent-lower' }, target(), '/bin/true', [], 'container x')).rejects.toMatchObject({
      code: 'INTERNAL',
    });
    await ns.close();
    const next = RootNamespace.spawn();
    expect(next.child.spawnargs.some((a) => a.endsWith('/perl'))).toBe(true);
    await next.close();
  }, 20_000);
});

/** A worker running a container whose overlay root it mounts itself; prints `started <pid of the root's holder>`. */
const WORKER = `
import { RuncExecutor } from ${JSON.stringify(DIST)};
const [stateDir, lower, upper, work, target] = process.argv.slice(2);
const id = 'w-' + process.pid + '-1';
const executor = new RuncExecutor({ stateDir });
executor.run(
  { id, rootfs: target, rootfsMount: { type: 'overlay', source: 'overlay', options: 'lowerdir=' + lower + ',upperdir=' + upper + ',workdir=' + work },
    mounts: [], network: 'none', security: 'sandbox', process: { args: ['/bin/sh', '-c', 'echo up > /up; echo up; sleep 1000'], env: [] } },
  { stdout: () => console.log('started'), onRoot: (root) => console.log('root ' + root) },
);
`;

describe('a SIGKILLed worker', () => {
  it('leaves no mount of a root it mounted in the container\'s namespace: it goes with the container', async () => {
    if (!existsSync(DIST)) throw new Error('worker-runc is not built: run `npm run build` first');
    const dir = join(h.dir, 'killed');
    for (const d of ['upper', 'work', 'target', 'state']) mkdirSync(join(dir, d), { recursive: true });
    writeFileSync(join(dir, 'worker.mjs'), WORKER);
    const lower = (await h.base.mount()).path;
    const worker = spawn(process.execPath, [join(dir, 'worker.mjs'), join(dir, 'state'), lower, join(dir, 'upper'), join(dir, 'work'), join(dir, 'target')], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    worker.stdout!.on('data', (d) => (out += d));
    for (let i = 0; i < 200 && !out.includes('started'); i++) await sleep(50);
    expect(out).toContain('started');
    const holder = Number(/root \/proc\/(\d+)\/root/.exec(out)?.[1]);
    expect(isAlive(holder)).toBe(true);
    expect(mountsUnder(dir)).toEqual([]);
    expect(readFileSync(join(dir, 'upper', 'up'), 'utf8')).toBe('up\n');

    worker.kill('SIGKILL');
    for (let i = 0; i < 200 && isAlive(holder); i++) await sleep(50);
    expect(isAlive(holder)).toBe(false);
    expect(mountsUnder(dir)).toEqual([]);
    expect(execFileSync('runc', ['--root', join(dir, 'state', 'state'), 'list', '-q'], { encoding: 'utf8' }).trim()).toBe('');
  }, 30_000);
});
