import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pb from '@bkt/api/pb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openHarness, runStep, type Harness } from './harness.test-util.js';

let h: Harness;
beforeAll(async () => {
  h = await openHarness();
});
afterAll(async () => {
  await h?.close();
});

/** Reads a file of a committed snapshot's full tree. */
async function readFromSnapshot(snapshot: { mount(): Promise<{ path: string; release(): Promise<void> }> }, path: string) {
  const m = await snapshot.mount();
  try {
    return readFileSync(join(m.path, path), 'utf8');
  } catch {
    return null;
  } finally {
    await m.release();
  }
}

describe('exec op: user database', () => {
  /** A snapshot of the base with `/etc/<name>` replaced by what `make(path)` creates on the host. */
  async function baseWith(name: string, make: (path: string) => void) {
    const mutable = await h.store.snapshotter.prepare(h.base);
    execFileSync('rm', ['-f', join(mutable.path, 'etc', name)]);
    make(join(mutable.path, 'etc', name));
    return mutable.commit();
  }

  it('an /etc/passwd that is a FIFO fails the step with a clear error instead of hanging', async () => {
    const snapshot = await baseWith('passwd', (p) => execFileSync('mkfifo', [p]));
    const t0 = Date.now();
    const err = await runStep(h, 'id', { meta: { user: 'user' }, inputs: [{ snapshot }] }).catch((e) => e);
    expect(err).toMatchObject({ code: 'INVALID_ARGUMENT', details: { path: '/etc/passwd' } });
    expect(err.message).toMatch(/\/etc\/passwd in the container's root is not a regular file \(a FIFO\)/);
    expect(Date.now() - t0).toBeLessThan(5000);
  }, 10_000);

  it('an /etc/group that is a device node is not read (the host device would be)', async () => {
    // /dev/zero's numbers: reading it would never end.
    const snapshot = await baseWith('group', (p) => execFileSync('mknod', [p, 'c', '1', '5']));
    const err = await runStep(h, 'id', { meta: { user: 'user' }, inputs: [{ snapshot }] }).catch((e) => e);
    expect(err).toMatchObject({ code: 'INVALID_ARGUMENT', details: { path: '/etc/group' } });
    expect(err.message).toMatch(/\/etc\/group in the container's root is not a regular file \(a character device\)/);
    // A regular file still works.
    expect((await runStep(h, 'id -u', { meta: { user: 'user' } })).stdout).toBe('1000\n');
  }, 10_000);
});

describe('exec op: Meta', () => {
  it('args: runs the command, streams stdout and stderr, and returns the root layer', async () => {
    const res = await runStep(h, ['/bin/sh', '-c', 'echo to-out; echo to-err >&2; echo built > /hello']);
    expect(res.stdout).toBe('to-out\n');
    expect(res.stderr).toBe('to-err\n');
    expect(res.outputs).toHaveLength(1);
    const layer = res.outputs[0]!.layerPath();
    // The layer holds only what the step changed, not a copy of the base.
    expect(readFileSync(join(layer, 'hello'), 'utf8')).toBe('built\n');
    expect(existsSync(join(layer, 'bin/busybox'))).toBe(false);
    expect(await readFromSnapshot(res.outputs[0]!, 'bin/busybox')).not.toBeNull();
  });

  it('env: the process sees exactly the given variables (plus HOME from runc)', async () => {
    const res = await runStep(h, 'env | sort', { meta: { env: ['FOO=bar baz', 'PATH=/bin:/usr/bin'] } });
    expect(res.stdout).toContain('FOO=bar baz\n');
    expect(res.stdout).toContain('PATH=/bin:/usr/bin\n');
  });

  it('cwd: is the working directory, created (owned by the user) when missing', async () => {
    const res = await runStep(h, 'pwd; stat -c "%u:%g" .', { meta: { cwd: '/work/dir', user: 'user' } });
    expect(res.stdout).toBe('/work/dir\n1000:1000\n');
    const res2 = await runStep(h, 'pwd', { meta: { cwd: '/tmp' } });
    expect(res2.stdout).toBe('/tmp\n');
  });

  it('user: numeric, by name, name:group, with supplementary groups from /etc/group', async () => {
    expect((await runStep(h, 'id', { meta: { user: '' } })).stdout).toMatch(/^uid=0\(root\) gid=0\(root\) groups=(0\(root\),10\(wheel\)|10\(wheel\),0\(root\))$/m);
    const byName = (await runStep(h, 'id -u; id -g; id -G', { meta: { user: 'user' } })).stdout.split('\n');
    expect(byName.slice(0, 2)).toEqual(['1000', '1000']);
    expect(byName[2].split(' ').sort()).toEqual(['10', '1000', '50']);
    expect((await runStep(h, 'id', { meta: { user: '1000:50' } })).stdout.trim()).toBe('uid=1000(user) gid=50(staff) groups=50(staff)');
    expect((await runStep(h, 'id', { meta: { user: 'user:wheel' } })).stdout.trim()).toBe('uid=1000(user) gid=10(wheel) groups=10(wheel)');
    expect((await runStep(h, 'id -u; id -g', { meta: { user: '4242' } })).stdout).toBe('4242\n0\n');
    await expect(runStep(h, 'id', { meta: { user: 'nosuchuser' } })).rejects.toThrow(/unable to find user nosuchuser/);
  });

  it('hostname: sets the hostname and the /etc/hosts entry', async () => {
    const res = await runStep(h, 'hostname; grep 127.0.0.1 /etc/hosts', { meta: { hostname: 'builder-1' } });
    expect(res.stdout).toBe('builder-1\n127.0.0.1\tlocalhost builder-1\n');
  });

  it('extraHosts: are written to /etc/hosts and resolve', async () => {
    const res = await runStep(h, 'cat /etc/hosts; ping -c1 -W1 myhost >/dev/null 2>&1; nslookup myhost 2>/dev/null | tail -n +1 >/dev/null; getent hosts myhost || grep myhost /etc/hosts', {
      meta: { extraHosts: [{ Host: 'myhost', IP: '10.9.8.7' }, { Host: 'other', IP: '::1' }] },
    });
    expect(res.stdout).toContain('10.9.8.7\tmyhost\n');
    expect(res.stdout).toContain('::1\tother\n');
  });

  it('ulimit: sets rlimits (and defaults nofile to 1024)', async () => {
    expect((await runStep(h, 'ulimit -n')).stdout).toBe('1024\n');
    const res = await runStep(h, 'ulimit -n; ulimit -Hn; ulimit -u', {
      meta: { ulimit: [{ Name: 'nofile', Soft: 512, Hard: 2048 }, { Name: 'nproc', Soft: 77, Hard: 77 }] },
    });
    expect(res.stdout).toBe('512\n2048\n77\n');
  });

  it('cgroupParent: places the container under the given cgroup', async () => {
    const res = await runStep(h, 'grep -E "pids|memory" /proc/self/cgroup', { meta: { cgroupParent: 'bkt-test-parent' } });
    expect(res.stdout).toMatch(/pids:\/bkt-test-parent\/bkt-/);
  });

  it('validExitCodes: accepts listed codes; others fail naming the command, code and last lines', async () => {
    const ok = await runStep(h, 'echo fine > /f; exit 3', { meta: { validExitCodes: [0, 3] } });
    expect(await readFromSnapshot(ok.outputs[0]!, 'f')).toBe('fine\n');

    const err = await runStep(h, 'for i in $(seq 1 30); do echo line$i; done; exit 7').catch((e) => e);
    expect(err.code).toBe('EXEC_FAILED');
    expect(err.message).toContain('process "/bin/sh -c for i in $(seq 1 30); do echo line$i; done; exit 7" did not complete successfully: exit code: 7');
    expect(err.message).toContain('line11\nline12');
    expect(err.message).toContain('line30');
    expect(err.message).not.toContain('line10\n');
    expect(err.details.exitCode).toBe(7);

    const err0 = await runStep(h, 'exit 0', { meta: { validExitCodes: [1] } }).catch((e) => e);
    expect(err0.code).toBe('EXEC_FAILED');
  });

  it('names the step in the failure when the context tells which vertex runs', async () => {
    const err = await runStep(h, 'exit 2', { extraContext: { vertex: { digest: 'sha256:abc', name: '[2/3] RUN exit 2' } } }).catch((e) => e);
    expect(err.message).toMatch(/^\[2\/3\] RUN exit 2: process "\/bin\/sh -c exit 2" did not complete successfully: exit code: 2/);
    expect(err.details.opDigest).toBe('sha256:abc');
  });

  it('proxyEnv: sets upper- and lower-case proxy variables', async () => {
    const res = await runStep(h, 'env | grep -i _proxy | sort', {
      meta: { proxyEnv: { httpProxy: 'http://p:3128', httpsProxy: '', ftpProxy: '', noProxy: 'localhost', allProxy: '' } },
    });
    expect(res.stdout).toBe('HTTP_PROXY=http://p:3128\nNO_PROXY=localhost\nhttp_proxy=http://p:3128\nno_proxy=localhost\n');
  });

  it('removeMountStubsRecursive: mount points made for the step leave no trace in the layer', async () => {
    const tmpfs = { dest: '/a/b/c', input: -1, output: -1, mountType: pb.MountType.TMPFS };
    const plain = await runStep(h, 'true', { mounts: [tmpfs] });
    const layer = plain.outputs[0]!.layerPath();
    expect(existsSync(join(layer, 'a/b/c'))).toBe(false);
    expect(existsSync(join(layer, 'a/b'))).toBe(true); // parents stay without the flag, as in BuildKit
    expect(existsSync(join(layer, 'etc/hosts'))).toBe(false);

    const rec = await runStep(h, 'true', { mounts: [tmpfs], meta: { removeMountStubsRecursive: true } });
    expect(readdirSync(rec.outputs[0]!.layerPath()).filter((n) => n !== 'etc')).toEqual([]);
    expect(existsSync(join(rec.outputs[0]!.layerPath(), 'a'))).toBe(false);

    // A mount point that existed before the step is not a stub.
    const kept = await runStep(h, 'true', { mounts: [{ ...tmpfs, dest: '/tmp' }], meta: { removeMountStubsRecursive: true } });
    const m = await kept.outputs[0]!.mount();
    expect(existsSync(join(m.path, 'tmp'))).toBe(true);
    await m.release();
  });

  it('removing mount stubs never follows a symlink the step put in their way to a host path (CVE-2024-23652)', async () => {
    // On the host, `/x -> <host>` in the root leads to <host>: its empty `m` looks exactly like the stub of /x/m.
    const host = await mkdtemp(join(tmpdir(), 'bkt-stub-escape-'));
    try {
      mkdirSync(join(host, 'm'));
      writeFileSync(join(host, 'sentinel'), 'keep');
      const before = statSync(host).mtimeMs;
      for (const recursive of [false, true]) {
        const res = await runStep(h, `mv /x /x.old && ln -s ${host} /x && ls -d /x.old/m`, {
          mounts: [{ dest: '/x/m', input: -1, output: -1, mountType: pb.MountType.TMPFS }],
          meta: { removeMountStubsRecursive: recursive },
        });
        expect(res.stdout).toBe('/x.old/m\n');
        expect(existsSync(join(host, 'm'))).toBe(true);
        expect(readFileSync(join(host, 'sentinel'), 'utf8')).toBe('keep');
      }
      expect(statSync(host).mtimeMs).toBe(before);
    } finally {
      await rm(host, { recursive: true, force: true });
    }
  });
});
