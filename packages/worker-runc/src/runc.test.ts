import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { makeBusyboxRootfs } from '@bkt/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ContainerSpec } from './executor.js';
import { RuncExecutor } from './runc.js';

let dir: string;
let rootfs: string;
let executor: RuncExecutor;
let n = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bkt-runc-'));
  rootfs = await makeBusyboxRootfs(join(dir, 'rootfs'));
  executor = new RuncExecutor({ stateDir: join(dir, 'state') });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function run(script: string, extra: Partial<ContainerSpec> = {}) {
  let stdout = '';
  let stderr = '';
  const code = await executor.run(
    {
      id: `t-${process.pid}-${++n}`,
      rootfs,
      mounts: [],
      network: 'none',
      security: 'sandbox',
      ...extra,
      process: { args: ['/bin/sh', '-c', script], env: [], ...extra.process },
    },
    { stdout: (d) => (stdout += Buffer.from(d).toString()), stderr: (d) => (stderr += Buffer.from(d).toString()) },
  );
  return { code, stdout, stderr };
}

describe('RuncExecutor', () => {
  it('runs a process and returns its exit code and output', async () => {
    const res = await run('echo out; echo err >&2; exit 3');
    expect(res).toEqual({ code: 3, stdout: 'out\n', stderr: 'err\n' });
  });

  it('uses the default hostname, PATH and /etc/hosts', async () => {
    const res = await run('hostname; echo $PATH; cat /etc/hosts', { extraHosts: [{ host: 'db.local', ip: '10.1.2.3' }] });
    expect(res.stdout).toContain('buildkitsandbox\n/usr/local/sbin:');
    expect(res.stdout).toContain('127.0.0.1\tlocalhost buildkitsandbox');
    expect(res.stdout).toContain('10.1.2.3\tdb.local');
  });

  it('applies the sandbox security defaults', async () => {
    const res = await run('grep CapEff /proc/self/status; grep Seccomp: /proc/self/status; cat /proc/kcore | wc -c; echo x > /proc/sys/kernel/hostname || echo ro');
    expect(res.stdout).toMatch(/CapEff:\s+00000000a80425fb/);
    expect(res.stdout).toMatch(/Seccomp:\s+2/);
    expect(res.stdout).toContain('ro');
    expect(res.code).toBe(0);
  });

  it('leaves no container or bundle behind', async () => {
    await run('true');
    const list = execFileSync('runc', ['--root', executor.runcRoot, 'list', '-q'], { encoding: 'utf8' });
    expect(list.trim()).toBe('');
    expect(existsSync(join(dir, 'state', 'bundles', `t-${process.pid}-${n}`))).toBe(false);
  });

  it('reports a runc failure as an error, not an exit code', async () => {
    await expect(run('true', { process: { args: ['/nonexistent'], env: [] } })).rejects.toThrow(/runc could not run container/);
  });

  it('keeps a sensitive bundle (secret env in config.json) on a tmpfs while the container runs', async () => {
    const id = `t-${process.pid}-sensitive`;
    let started!: () => void;
    const isStarted = new Promise<void>((r) => (started = r));
    const running = executor.run(
      { id, rootfs, mounts: [], network: 'none', security: 'sandbox', sensitive: true, process: { args: ['/bin/sh', '-c', 'sleep 0.5'], env: ['TOKEN=x'] } },
      { onStarted: started },
    );
    await isStarted;
    const bundle = join(dir, 'state', 'bundles', id);
    const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === bundle);
    expect(line).toMatch(/ - tmpfs /);
    expect(await running).toBe(0);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(bundle);
  });

  it('execs a second process in a running container', async () => {
    const id = `t-${process.pid}-exec`;
    const ac = new AbortController();
    let started!: () => void;
    const isStarted = new Promise<void>((r) => (started = r));
    const running = executor.run(
      { id, rootfs, mounts: [], network: 'none', security: 'sandbox', process: { args: ['/bin/sh', '-c', 'echo hi > /tmp/marker; sleep 30'], env: [] } },
      { signal: ac.signal, onStarted: started },
    );
    await isStarted;
    let out = '';
    let code = 1;
    for (let i = 0; i < 50; i++) {
      out = '';
      code = await executor.exec(id, { args: ['/bin/cat', '/tmp/marker'], env: [] }, { stdout: (d) => (out += Buffer.from(d).toString()) });
      if (code === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(code).toBe(0);
    expect(out).toBe('hi\n');
    const t0 = Date.now();
    ac.abort();
    await expect(running).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(Date.now() - t0).toBeLessThan(2000);
    const list = execFileSync('runc', ['--root', executor.runcRoot, 'list', '-q'], { encoding: 'utf8' });
    expect(list.trim()).toBe('');
  });

  it('execs as a named user of a root the executor mounted (rootfsMount): resolved in the namespace\'s root', async () => {
    const id = `t-${process.pid}-exec-user`;
    const userRoot = await makeBusyboxRootfs(join(dir, 'user-root'));
    await writeFile(join(userRoot, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nbuilder:x:1234:2345::/home/builder:/bin/sh\n');
    await writeFile(join(userRoot, 'etc', 'group'), 'root:x:0:\nbuilders:x:2345:\n');
    // The empty directory the root is mounted on in the container's own namespace: no /etc/passwd here.
    const target = await mkdtemp(join(dir, 'target-'));
    const ac = new AbortController();
    let started!: () => void;
    const isStarted = new Promise<void>((r) => (started = r));
    const running = executor.run(
      {
        id,
        rootfs: target,
        rootfsMount: { type: 'none', source: userRoot, options: 'bind' },
        mounts: [],
        network: 'none',
        security: 'sandbox',
        process: { args: ['/bin/sh', '-c', 'sleep 30'], env: [] },
      },
      { signal: ac.signal, onStarted: started },
    );
    try {
      await isStarted;
      let out = '';
      let code = 1;
      for (let i = 0; i < 50; i++) {
        out = '';
        code = await executor.exec(id, { args: ['/bin/sh', '-c', 'id'], env: [], user: 'builder' }, { stdout: (d) => (out += Buffer.from(d).toString()) });
        if (code === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(code).toBe(0);
      expect(out).toMatch(/^uid=1234\b.* gid=2345\b/);
    } finally {
      ac.abort();
      await running.catch(() => undefined);
    }
  });

  it("refuses a container id that does not carry this process's pid (the watchdog would not cover it)", async () => {
    const spec = { rootfs, mounts: [], network: 'none' as const, security: 'sandbox' as const, process: { args: ['/bin/true'], env: [] } };
    await expect(executor.run({ ...spec, id: 'plain-id' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(executor.run({ ...spec, id: `t-${process.pid + 1}-x` })).rejects.toThrow(/does not have the form <name>-\d+-<rest>/);
  });

  describe('pids limit', () => {
    const readLimit = 'cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max';

    it("is 4096 by default: the container cgroup's pids.max, seen from the host while it runs and from inside", async () => {
      const id = `t-${process.pid}-pids-default`;
      let stdout = '';
      let printed!: () => void;
      const hasPrinted = new Promise<void>((r) => (printed = r));
      const running = executor.run(
        { id, rootfs, mounts: [], network: 'none', security: 'sandbox', process: { args: ['/bin/sh', '-c', `${readLimit}; sleep 2`], env: [] } },
        { stdout: (d) => ((stdout += Buffer.from(d).toString()), printed()) },
      );
      // The process runs (so runc has set up its cgroup): read the limit from the host.
      await hasPrinted;
      // cgroup v1 (a pids hierarchy) or v2 (unified), at the spec's cgroupsPath /bkt/<id>.
      const hostFiles = [`/sys/fs/cgroup/pids/bkt/${id}/pids.max`, `/sys/fs/cgroup/bkt/${id}/pids.max`];
      const fromHost = hostFiles.map((f) => (existsSync(f) ? readFileSync(f, 'utf8').trim() : '')).join('');
      expect(await running).toBe(0);
      expect(fromHost).toBe('4096');
      expect(stdout).toBe('4096\n');
    });

    it('a configured limit stops a fork loop; 0 sets none', async () => {
      const limited = new RuncExecutor({ stateDir: join(dir, 'state-pids'), pidsLimit: 20 });
      const unlimited = new RuncExecutor({ stateDir: join(dir, 'state-pids'), pidsLimit: 0 });
      // Up to 60 background sleeps; the shell gives up at the first fork that fails. Then everything is killed.
      const forkLoop = `${readLimit}; sh -c 'i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done; echo spawned $i' 2>&1; echo inner exit $?; kill -9 -1`;
      const runIn = async (ex: RuncExecutor, name: string) => {
        let out = '';
        const t0 = Date.now();
        const code = await ex.run(
          { id: `t-${process.pid}-${name}`, rootfs, mounts: [], network: 'none', security: 'sandbox', process: { args: ['/bin/sh', '-c', forkLoop], env: [] } },
          { stdout: (d) => (out += Buffer.from(d).toString()), stderr: (d) => (out += Buffer.from(d).toString()) },
        );
        return { code, out, ms: Date.now() - t0 };
      };
      const low = await runIn(limited, 'pids-20');
      expect(low.out).toMatch(/^20\n/);
      expect(low.out).toMatch(/can't fork/);
      expect(low.out).not.toContain('spawned 60');
      expect(low.out).toMatch(/inner exit [1-9]/);
      expect(low.ms).toBeLessThan(10_000);
      const none = await runIn(unlimited, 'pids-none');
      expect(none.out).toContain('spawned 60');
      expect(none.out).not.toMatch(/^4096\n|^20\n/);
      await limited.close();
      await unlimited.close();
    });
  });

  describe('network', () => {
    let server: Server;
    let port: number;
    beforeAll(async () => {
      server = createServer((req, res) => res.end(`hello from host ${req.url}`));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      port = (server.address() as AddressInfo).port;
    });
    afterAll(() => new Promise<void>((r) => server.close(() => r())));

    it('none: only loopback', async () => {
      const res = await run('ls /sys/class/net; ip -o addr show lo | head -1');
      expect(res.stdout.split('\n')[0]).toBe('lo');
      expect(res.stdout.trim().split('\n').length).toBe(2);
    });

    it('sandbox: own namespace with a route out, reaching the host loopback through slirp', async () => {
      const res = await run(`ls /sys/class/net; ip route; cat /etc/resolv.conf; wget -q -O - http://10.0.2.2:${port}/x; echo; wget -q -T 2 -O - http://127.0.0.1:${port}/ || echo no-host-loopback`, { network: 'sandbox' });
      expect(res.stdout).toContain('tap0');
      expect(res.stdout).toContain('default via 10.0.2.2 dev tap0');
      expect(res.stdout).toContain('nameserver 10.0.2.3');
      expect(res.stdout).toContain('hello from host /x');
      expect(res.stdout).toContain('no-host-loopback');
    });

    it('host: the host stack', async () => {
      const res = await run(`wget -q -O - http://127.0.0.1:${port}/h`, { network: 'host' });
      expect(res.stdout).toBe('hello from host /h');
    });
  });
});
