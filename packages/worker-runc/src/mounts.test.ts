import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pb from '@bkt/api/pb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CacheMounts, cacheMountsFor } from './cachemounts.js';
import { openHarness, runStep, type Harness } from './harness.test-util.js';

let h: Harness;
beforeAll(async () => {
  h = await openHarness();
});
afterAll(async () => {
  await h?.close();
});

const BIND = pb.MountType.BIND;
const CACHE = pb.MountType.CACHE;

/** Every file under `dir` (recursively), as paths. */
async function allFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await allFiles(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

async function grepTree(dir: string, needle: string): Promise<string[]> {
  const hits: string[] = [];
  for (const f of await allFiles(dir)) {
    if ((await readFile(f).catch(() => Buffer.alloc(0))).includes(needle)) hits.push(f);
  }
  return hits;
}

describe('exec op: mounts', () => {
  it('BIND readonly: an input at a path, narrowed by a selector, not writable', async () => {
    const first = await runStep(h, 'mkdir -p /src/sub && echo data > /src/sub/file && echo top > /src/top');
    const input = first.outputs[0]!;
    const res = await runStep(h, 'ls /mnt; cat /mnt/file; echo x > /mnt/new 2>/dev/null || echo readonly', {
      inputs: [{ snapshot: h.base }, { snapshot: input }],
      mounts: [{ input: 1, selector: '/src/sub', dest: '/mnt', readonly: true, output: -1, mountType: BIND }],
    });
    expect(res.stdout).toBe('file\ndata\nreadonly\n');
    // Nothing of the mount lands in the root's layer.
    expect(existsSync(join(res.outputs[0]!.layerPath(), 'mnt'))).toBe(false);
  });

  it('BIND writable with an output: the mount becomes a further output of the op', async () => {
    const res = await runStep(h, 'echo made > /out/result; echo root > /in-root', {
      mounts: [{ input: -1, dest: '/out', output: 1, mountType: BIND }],
    });
    expect(res.outputs).toHaveLength(2);
    expect(readFileSync(join(res.outputs[1]!.layerPath(), 'result'), 'utf8')).toBe('made\n');
    expect(existsSync(join(res.outputs[1]!.layerPath(), 'in-root'))).toBe(false);
    expect(existsSync(join(res.outputs[0]!.layerPath(), 'in-root'))).toBe(true);
  });

  it('BIND writable without an output: changes are thrown away', async () => {
    const res = await runStep(h, 'echo scratch > /w/x && cat /w/x', {
      inputs: [{ snapshot: h.base }, { snapshot: h.base }],
      mounts: [{ input: 1, dest: '/w', output: -1, mountType: BIND }],
    });
    expect(res.stdout).toBe('scratch\n');
    expect(res.outputs).toHaveLength(1);
  });

  it('a readonly root: the step cannot write to /', async () => {
    const res = await runStep(h, 'touch /x 2>/dev/null || echo ro-root', {
      rootMount: { input: 0, dest: '/', output: -1, readonly: true },
    });
    expect(res.stdout).toBe('ro-root\n');
    expect(res.outputs).toEqual([]);
  });

  it('TMPFS: an empty tmpfs of the given size, not in the layer', async () => {
    const res = await runStep(h, 'grep " /scratch " /proc/mounts; echo hi > /scratch/f; dd if=/dev/zero of=/scratch/big bs=1k count=2048 2>/dev/null || echo full', {
      mounts: [{ dest: '/scratch', input: -1, output: -1, mountType: pb.MountType.TMPFS, TmpfsOpt: { size: 1024 * 1024 } }],
    });
    expect(res.stdout).toMatch(/^tmpfs \/scratch tmpfs rw,.*size=1024k/);
    expect(res.stdout).toContain('full');
    expect(existsSync(join(res.outputs[0]!.layerPath(), 'scratch/f'))).toBe(false);
  });

  describe('CACHE', () => {
    const cache = (id: string, sharing = pb.CacheSharingOpt.SHARED) => ({
      dest: '/cache',
      input: -1,
      output: -1,
      mountType: CACHE,
      cacheOpt: { ID: id, sharing },
    });

    it('persists across steps (and builds), outside the layer, and is listed and removable', async () => {
      await runStep(h, 'echo first >> /cache/log', { mounts: [cache('persist')] });
      const second = await runStep(h, 'echo second >> /cache/log; cat /cache/log', { mounts: [cache('persist')] });
      expect(second.stdout).toBe('first\nsecond\n');
      expect(existsSync(join(second.outputs[0]!.layerPath(), 'cache/log'))).toBe(false);
      // Another ID is another directory.
      expect((await runStep(h, 'ls /cache | wc -l', { mounts: [cache('other')] })).stdout.trim()).toBe('0');

      const store = cacheMountsFor(h.root);
      const records = await store.list();
      const rec = records.find((r) => r.description.includes('"persist"'))!;
      expect(rec).toMatchObject({ recordType: 'exec.cachemount', inUse: false, usageCount: 2, size: 13 });
      await store.remove(rec.id);
      expect((await runStep(h, 'cat /cache/log 2>/dev/null || echo empty', { mounts: [cache('persist')] })).stdout).toBe('empty\n');
    });

    it('LOCKED: concurrent steps take turns', async () => {
      const script = (name: string) => `echo ${name}-start >> /cache/order; sleep 0.4; echo ${name}-end >> /cache/order`;
      const locked = cache('locked', pb.CacheSharingOpt.LOCKED);
      await Promise.all([runStep(h, script('a'), { mounts: [locked] }), runStep(h, script('b'), { mounts: [locked] })]);
      const order = (await runStep(h, 'cat /cache/order', { mounts: [locked] })).stdout.trim().split('\n');
      expect(order).toHaveLength(4);
      // Each start is immediately followed by its own end: no interleaving.
      expect(order[1]).toBe(order[0].replace('start', 'end'));
      expect(order[3]).toBe(order[2].replace('start', 'end'));
    });

    it('SHARED: concurrent steps see each other', async () => {
      const shared = cache('shared');
      const [a] = await Promise.all([
        runStep(h, 'for i in $(seq 50); do [ -e /cache/b ] && break; sleep 0.1; done; touch /cache/a; ls /cache', { mounts: [shared] }),
        runStep(h, 'touch /cache/b; for i in $(seq 50); do [ -e /cache/a ] && break; sleep 0.1; done', { mounts: [shared] }),
      ]);
      expect(a.stdout).toBe('a\nb\n');
    });

    it('PRIVATE: concurrent steps get their own directories', async () => {
      const priv = cache('private', pb.CacheSharingOpt.PRIVATE);
      const script = (name: string) => `touch /cache/${name}; sleep 0.4; ls /cache`;
      const [a, b] = await Promise.all([runStep(h, script('a'), { mounts: [priv] }), runStep(h, script('b'), { mounts: [priv] })]);
      expect(a.stdout).toBe('a\n');
      expect(b.stdout).toBe('b\n');
    });

    it('seeds a new cache from an input, keeping owners, modes and links', async () => {
      const seed = (
        await runStep(h, 'mkdir /seed && echo seeded > /seed/s && chown 1000:50 /seed/s && chmod 640 /seed/s && ln -s s /seed/l && chown -h 1000:1000 /seed/l')
      ).outputs[0]!;
      const res = await runStep(h, 'cat /cache/s; stat -c "%n %u:%g %a" /cache/s; stat -c "%n %u:%g %N" /cache/l', {
        inputs: [{ snapshot: h.base }, { snapshot: seed }],
        mounts: [{ ...cache('seeded'), input: 1, selector: '/seed' }],
      });
      expect(res.stdout).toBe("seeded\n/cache/s 1000:50 640\n/cache/l 1000:1000 '/cache/l' -> 's'\n");
    });

    it('a from= source that is missing or not a directory is a clear error naming the mount and the path', async () => {
      const inputs = [{ snapshot: h.base }, { snapshot: h.base }];
      const missing = runStep(h, 'true', { inputs, mounts: [{ ...cache('from-missing'), input: 1, selector: '/no/such/dir' }] });
      await expect(missing).rejects.toMatchObject({
        code: 'NOT_FOUND',
        message: 'cache mount /cache (from= input 1, source=/no/such/dir): /no/such/dir does not exist in the from= input',
        details: { target: '/cache', source: '/no/such/dir' },
      });
      const file = runStep(h, 'true', { inputs, mounts: [{ ...cache('from-file'), input: 1, selector: '/bin/busybox' }] });
      await expect(file).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
        message: 'cache mount /cache (from= input 1, source=/bin/busybox): /bin/busybox in the from= input is not a directory',
      });
    });

    it('removes the half-built and half-deleted instances a dead process left behind, not those of a live one', async () => {
      const root = await mkdtemp(join(tmpdir(), 'bkt-cachemounts-'));
      try {
        const deadPid = spawnSync('true').pid!;
        const key = 'a'.repeat(64);
        const dead = [`.new-${key}-0-${deadPid}-1`, `.trash-${key}-1-${deadPid}-2`];
        const live = `.new-${key}-2-${process.pid}-3`;
        for (const name of [...dead, live]) await mkdir(join(root, 'cachemounts', name, 'data'), { recursive: true });
        expect(await new CacheMounts(root).list()).toEqual([]);
        expect((await readdir(join(root, 'cachemounts'))).sort()).toEqual([live]);
      } finally {
        await rm(root, { recursive: true, force: true });
      }
    });
  });

  describe('SECRET', () => {
    const SECRET = 'p4ss-w0rd-4b8e1f9c';

    it('a secret file with uid, gid and mode, and a secret env var; the bytes reach no layer, store file or log', async () => {
      const res = await runStep(
        h,
        'stat -c "%u:%g %a" /run/secrets/tok /etc/key /etc/mode0; [ "$(cat /run/secrets/tok)" = "$TOKEN_CHECK" ] && echo file-ok; [ "$API_KEY" = "$TOKEN_CHECK" ] && echo env-ok; cat /run/secrets/tok > /dev/null; su user -s /bin/sh -c "cat /etc/key" >/dev/null && echo user-can-read',
        {
          meta: { env: [`TOKEN_CHECK=${'p4ss-w0rd'}-4b8e1f9c`] },
          mounts: [
            { dest: '/run/secrets/tok', input: -1, output: -1, mountType: pb.MountType.SECRET, secretOpt: { ID: 'tok', uid: 0, gid: 0, mode: 0o400 } },
            { dest: '/etc/key', input: -1, output: -1, mountType: pb.MountType.SECRET, secretOpt: { ID: 'tok', uid: 1000, gid: 1000, mode: 0o440 } },
            // An explicit mode 0 is kept (BuildKit uses the mode as given; the client defaults it to 0400).
            { dest: '/etc/mode0', input: -1, output: -1, mountType: pb.MountType.SECRET, secretOpt: { ID: 'tok', uid: 0, gid: 0, mode: 0 } },
          ],
          secretenv: [{ ID: 'tok', name: 'API_KEY' }],
          secrets: { tok: SECRET },
        },
      );
      expect(res.stdout).toBe('0:0 400\n1000:1000 440\n0:0 0\nfile-ok\nenv-ok\nuser-can-read\n');
      expect(res.logs.some((l) => l.text.includes(SECRET))).toBe(false);
      expect(await grepTree(h.root, SECRET)).toEqual([]);
      const m = await res.outputs[0]!.mount();
      expect(await grepTree(m.path, SECRET)).toEqual([]);
      await m.release();
      expect(existsSync(join(res.outputs[0]!.layerPath(), 'run/secrets/tok'))).toBe(false);
      // The secrets tmpfs is gone.
      expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(join(h.root, 'runc'));
    });

    it('a missing secret fails the step unless optional', async () => {
      const mount = (optional: boolean) => ({
        dest: '/run/secrets/x',
        input: -1,
        output: -1,
        mountType: pb.MountType.SECRET,
        secretOpt: { ID: 'absent', uid: 0, gid: 0, mode: 0o400, optional },
      });
      await expect(runStep(h, 'true', { mounts: [mount(false)] })).rejects.toThrow(/secret absent not found/);
      expect((await runStep(h, '[ -e /run/secrets/x ] || echo none', { mounts: [mount(true)] })).stdout).toBe('none\n');
      await expect(runStep(h, 'true', { secretenv: [{ ID: 'absent', name: 'X' }] })).rejects.toThrow(/secret absent not found/);
    });
  });

  describe('SSH', () => {
    it('forwards an ssh-agent socket with the requested owner and mode', async () => {
      const agentDir = join(h.dir, 'agent');
      execFileSync('mkdir', ['-p', agentDir]);
      const agentSock = join(agentDir, 'agent.sock');
      const agent = spawn('ssh-agent', ['-D', '-a', agentSock], { stdio: 'ignore' });
      try {
        for (let i = 0; i < 50 && !existsSync(agentSock); i++) await new Promise((r) => setTimeout(r, 20));
        const ssh = { socketPath: async (id: string) => (id === 'default' ? agentSock : null) };
        const stepDone = runStep(h, 'stat -c "%u:%g %a %F" /run/buildkit/ssh_agent.0; sleep 1.5', {
          mounts: [{ dest: '/run/buildkit/ssh_agent.0', input: -1, output: -1, mountType: pb.MountType.SSH, SSHOpt: { ID: 'default', uid: 1000, gid: 1000, mode: 0o600 } }],
          extraContext: { ssh },
        });
        // While the step runs, talk to the agent through the container's view of the socket.
        let listed = '';
        for (let i = 0; i < 40 && !listed.includes('The agent has no identities'); i++) {
          await new Promise((r) => setTimeout(r, 50));
          const state = execFileSync('runc', ['--root', join(h.root, 'runc/state'), 'list', '-f', 'json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
          const pid = (JSON.parse(state || '[]') as { pid: number }[] | null)?.[0]?.pid;
          if (!pid) continue;
          const r = await runText('ssh-add', ['-l'], { SSH_AUTH_SOCK: `/proc/${pid}/root/run/buildkit/ssh_agent.0` });
          listed = r;
        }
        expect(listed).toContain('The agent has no identities');
        const res = await stepDone;
        expect(res.stdout).toBe('1000:1000 600 socket\n');
        await expect(runStep(h, 'true', { mounts: [{ dest: '/s', input: -1, output: -1, mountType: pb.MountType.SSH, SSHOpt: { ID: 'other' } }] })).rejects.toThrow(
          /no SSH agent forwarded for id "other"/,
        );
      } finally {
        agent.kill();
      }
    });
  });
});

/** Runs a command asynchronously (the agent proxy lives in this process) and returns stdout + stderr. */
function runText(cmd: string, args: string[], env: Record<string, string>): Promise<string> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { ...process.env, ...env }, encoding: 'utf8' }, (_err, stdout, stderr) => resolve(stdout + stderr));
  });
}
