import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import * as pb from '@bkt/api/pb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openHarness, runStep, type Harness } from './harness.test-util.js';

let h: Harness;
let server: Server;
let port: number;
beforeAll(async () => {
  h = await openHarness();
  server = createServer((req, res) => res.end(`host says ${req.url}`));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await h?.close();
});

function runcList(root?: string): string[] {
  const args = root ? ['--root', root, 'list', '-q'] : ['list', '-q'];
  try {
    return execFileSync('runc', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

describe('exec op: network', () => {
  it('NONE: its own namespace with only loopback', async () => {
    const res = await runStep(h, 'ls /sys/class/net; ip -o -4 addr', { network: pb.NetMode.NONE });
    expect(res.stdout.split('\n')[0]).toBe('lo');
    expect(res.stdout).not.toContain('tap0');
    expect(res.stdout).toMatch(/lo\s+inet 127\.0\.0\.1/);
    expect(res.stdout.trim().split('\n')).toHaveLength(2);
  });

  it('sandbox (UNSET): reaches a server on the host loopback through its own route, not the host stack', async () => {
    const hostNetns = readFileSync('/proc/self/net/dev', 'utf8');
    const res = await runStep(
      h,
      `ls /sys/class/net | tr '\\n' ' '; echo; ip route; wget -q -O - http://10.0.2.2:${port}/via-slirp; echo; wget -q -T 2 -O - http://127.0.0.1:${port}/ 2>/dev/null || echo no-host-loopback; cat /proc/net/dev`,
      { network: pb.NetMode.UNSET },
    );
    expect(res.stdout).toContain('lo tap0 \n');
    expect(res.stdout).toContain('default via 10.0.2.2 dev tap0');
    expect(res.stdout).toContain('host says /via-slirp');
    expect(res.stdout).toContain('no-host-loopback');
    // The container's interfaces are not the host's.
    expect(hostNetns).not.toContain('tap0');
  });

  it('HOST: refused without network.host, the host stack with it', async () => {
    const err = await runStep(h, 'true', { network: pb.NetMode.HOST }).catch((e) => e);
    expect(err).toMatchObject({ code: 'PERMISSION_DENIED' });
    expect(err.message).toContain('network.host');
    const res = await runStep(h, `wget -q -O - http://127.0.0.1:${port}/on-host`, { network: pb.NetMode.HOST, entitlements: ['network.host'] });
    expect(res.stdout).toBe('host says /on-host');
  });
});

describe('exec op: security', () => {
  it('INSECURE: refused without security.insecure; privileged with it', async () => {
    const err = await runStep(h, 'true', { security: pb.SecurityMode.INSECURE }).catch((e) => e);
    expect(err).toMatchObject({ code: 'PERMISSION_DENIED' });
    expect(err.message).toContain('security.insecure');

    const sandboxed = await runStep(h, 'mkdir -p /mnt/t; mount -t tmpfs none /mnt/t 2>/dev/null && echo mounted || echo denied');
    expect(sandboxed.stdout).toBe('denied\n');
    const res = await runStep(h, 'grep CapEff /proc/self/status; grep Seccomp: /proc/self/status; mkdir -p /mnt/t; mount -t tmpfs none /mnt/t && echo mounted; umount /mnt/t', {
      security: pb.SecurityMode.INSECURE,
      entitlements: ['security.insecure'],
    });
    const ownBounding = /CapBnd:\s+([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1];
    expect(res.stdout).toContain(`CapEff:\t${ownBounding}`);
    expect(res.stdout).toMatch(/Seccomp:\s+0/);
    expect(res.stdout).toContain('mounted');
  });
});

describe('exec op: process', () => {
  it('cancellation kills the container within 2 s and leaves no container, mount or state behind', async () => {
    const ac = new AbortController();
    const step = runStep(h, 'echo started; sleep 100', { signal: ac.signal, network: pb.NetMode.UNSET }).catch((e) => e);
    // Wait until the container runs.
    for (let i = 0; i < 100 && runcList(join(h.root, 'runc/state')).length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(runcList(join(h.root, 'runc/state'))).toHaveLength(1);
    const t0 = Date.now();
    ac.abort();
    const err = await step;
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(err).toMatchObject({ code: 'CANCELLED' });
    expect(runcList(join(h.root, 'runc/state'))).toEqual([]);
    expect(runcList().filter((id) => id.startsWith('bkt-'))).toEqual([]);
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
    expect(mounts).not.toContain(h.root);
    expect(containerProcesses(process.pid)).toEqual([]);
    // And the next step runs.
    expect((await runStep(h, 'echo again')).stdout).toBe('again\n');
  });

  it('clips output beyond the log limit with a notice, and still fails with the real last lines', async () => {
    const res = await runStep(h, 'yes 0123456789abcdef | head -c 3000000; echo; echo the-end');
    const total = res.logs.reduce((n, l) => n + Buffer.byteLength(l.text), 0);
    expect(total).toBeLessThan(2 * 1024 * 1024 + 200);
    expect(res.stderr).toContain('[output clipped, log limit 2MiB reached]');
    expect(res.stdout).not.toContain('the-end');

    const err = await runStep(h, 'yes 0123456789abcdef | head -c 3000000; echo; echo the-end; exit 4').catch((e) => e);
    expect(err.message).toMatch(/exit code: 4\n[\s\S]*the-end$/);
  });
});

/** Pids of processes still in a cgroup of a container made by worker process `workerPid` (ids `bkt-<pid>-…`). */
function containerProcesses(workerPid: number): string[] {
  const marker = `/bkt/bkt-${workerPid}-`;
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cgroup`, 'utf8').includes(marker);
      } catch {
        return false;
      }
    });
}
