import { describe, expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import { isBktError } from '@bkt/core';
import { image, local, marshal, mkfile, scratch, shlexSplit, type State } from './index.js';
import { digestOf } from '@bkt/oci';

function execOf(st: State) {
  const def = marshal(st, { platform: 'linux/amd64' });
  const ops = def.def.map((b) => pb.Op.decode(b));
  const i = ops.findIndex((o) => o.op?.$case === 'exec');
  const op = ops[i];
  if (op.op?.$case !== 'exec') throw new Error('no exec op');
  return { op, exec: op.op.value, caps: def.metadata[digestOf(def.def[i])].caps, def };
}

describe('run', () => {
  const base = image('busybox');

  it('takes args, a shell command line, or shlex words', () => {
    expect(execOf(base.run({ args: ['echo', 'a b'] }).root()).exec.meta?.args).toEqual(['echo', 'a b']);
    expect(execOf(base.run({ shell: 'echo hi > /x' }).root()).exec.meta?.args).toEqual(['/bin/sh', '-c', 'echo hi > /x']);
    expect(execOf(base.run({ shlex: `echo "a b" 'c d' e\\ f` }).root()).exec.meta?.args).toEqual(['echo', 'a b', 'c d', 'e f']);
    expect(execOf(base.args('ls', '-l').run({}).root()).exec.meta?.args).toEqual(['ls', '-l']);
  });

  it('requires a command, and only one form of it', () => {
    const err = (() => {
      try {
        base.run({});
      } catch (e) {
        return e;
      }
    })();
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toContain('arguments are required');
    expect(() => base.run({ args: ['a'], shell: 'b' })).toThrow(/only one of/);
  });

  it('marshals meta: env in Go order, cwd, user, hostname, hosts, ulimits, exit codes, cgroup', () => {
    const st = base
      .env('A', '1')
      .env('B', '2')
      .env('A', '3')
      .dir('/work')
      .user('app')
      .run({
        args: ['true'],
        env: { C: '4' },
        cwd: 'sub',
        hostname: 'builder',
        extraHosts: [{ host: 'db', ip: '10.0.0.2' }, { host: 'v6', ip: '2001:DB8:0:0:0:0:0:1' }],
        ulimits: [{ name: 'nofile', soft: 1024, hard: 2048 }],
        validExitCodes: [0, 1],
        cgroupParent: 'bkt',
      });
    const { exec, caps } = execOf(st.root());
    expect(exec.meta).toEqual({
      args: ['true'],
      env: ['B=2', 'A=3', 'C=4'],
      cwd: '/work/sub',
      user: 'app',
      proxyEnv: undefined,
      extraHosts: [{ Host: 'db', IP: '10.0.0.2' }, { Host: 'v6', IP: '2001:db8::1' }],
      hostname: 'builder',
      ulimit: [{ Name: 'nofile', Soft: 1024, Hard: 2048 }],
      cgroupParent: 'bkt',
      removeMountStubsRecursive: true,
      validExitCodes: [0, 1],
    });
    expect(caps).toMatchObject({ 'exec.meta.base': true, 'exec.meta.ulimit': true, 'exec.validexitcode': true });
    // run-only options do not stick to the resulting state (as Go's Run)
    expect(st.root().getEnv('C')).toBeUndefined();
    expect(st.root().getEnv('A')).toBe('3');
    expect(st.getDir()).toBe('/work');
  });

  it('sets network and security modes with their caps', () => {
    const { exec, caps } = execOf(base.run({ args: ['x'], network: 'host', security: 'insecure' }).root());
    expect(exec.network).toBe(pb.NetMode.HOST);
    expect(exec.security).toBe(pb.SecurityMode.INSECURE);
    expect(caps).toMatchObject({ 'exec.meta.network': true, 'exec.meta.security': true });
    const none = execOf(base.network('none').run({ args: ['x'] }).root());
    expect(none.exec.network).toBe(pb.NetMode.NONE);
  });

  it('sorts mounts by target, numbers outputs of writable ones, dedups inputs', () => {
    const ctx = local('context');
    const deps = image('node:20');
    const e = base.run({
      args: ['build'],
      mounts: [
        { target: '/src', source: ctx, readonly: true },
        { target: '/out', source: scratch() },
        { type: 'cache', target: '/root/.npm', id: 'npm', sharing: 'locked' },
        { type: 'tmpfs', target: '/tmp', size: 1 << 20 },
        { target: '/deps', source: deps, selector: '/usr/lib', contentCache: 'on' },
        { target: '/ctx2', source: ctx },
        { target: '/noout', source: deps, noOutput: true },
      ],
    });
    const { op, exec, caps } = execOf(e.root());
    expect(exec.mounts.map((m) => m.dest)).toEqual(['/', '/ctx2', '/deps', '/noout', '/out', '/root/.npm', '/src', '/tmp']);
    expect(exec.mounts.map((m) => [m.dest, m.input, m.output])).toEqual([
      ['/', 0, 0],
      ['/ctx2', 1, 1],
      ['/deps', 2, 2],
      ['/noout', 2, -1],
      ['/out', -1, 3],
      ['/root/.npm', -1, -1],
      ['/src', 1, -1],
      ['/tmp', -1, -1],
    ]);
    expect(op.inputs).toHaveLength(3);
    const cache = exec.mounts[5];
    expect(cache.mountType).toBe(pb.MountType.CACHE);
    expect(cache.cacheOpt).toEqual({ ID: 'npm', sharing: pb.CacheSharingOpt.LOCKED });
    const tmp = exec.mounts[7];
    expect(tmp.mountType).toBe(pb.MountType.TMPFS);
    expect(tmp.TmpfsOpt).toEqual({ size: 1 << 20 });
    expect(exec.mounts[2]).toMatchObject({ selector: '/usr/lib', contentCache: pb.MountContentCache.ON });
    expect(exec.mounts[6].readonly).toBe(true);
    expect(caps).toMatchObject({
      'exec.mount.bind': true, 'exec.mount.cache': true, 'exec.mount.cache.sharing': true,
      'exec.mount.tmpfs': true, 'exec.mount.tmpfs.size': true, 'exec.mount.selector': true, 'exec.mount.cache.content': true,
    });

    // getMount gives the outputs of writable mounts, the source of read-only ones
    const out = e.getMount('/out');
    const outInput = out.file(mkfile('/f', 0o644, 'x'));
    const fileOp = pb.Op.decode(marshal(outInput).def.at(-2)!);
    expect(fileOp.inputs[0].index).toBe(3);
    expect(e.getMount('/src').output).toBe(ctx.output);
    expect(() => marshal(e.getMount('/tmp'))).toThrow(/tmpfs mount for \/tmp can't be used as a parent/);
    expect(() => e.getMount('/nope')).toThrow(/no mount at "\/nope"/);
    expect(e.root().output?.vertex).toBe(e.getMount('/').output?.vertex);
  });

  it('mounts secrets and ssh after the others, and secret env vars', () => {
    const { exec, caps } = execOf(
      base.run({
        args: ['x'],
        mounts: [
          { type: 'secret', target: '/run/secrets/npmrc', id: 'npmrc', mode: 0o440, uid: 1, gid: 2 },
          { type: 'ssh' },
          { type: 'secret', target: '/token' },
        ],
        secretEnv: [{ name: 'TOKEN', id: 'tok', optional: true }],
      }).root(),
    );
    expect(exec.mounts.slice(1).map((m) => [m.dest, m.mountType, m.input, m.output])).toEqual([
      ['/run/secrets/npmrc', pb.MountType.SECRET, -1, 0],
      ['/token', pb.MountType.SECRET, -1, 0],
      ['/run/buildkit/ssh_agent.0', pb.MountType.SSH, -1, 0],
    ]);
    expect(exec.mounts[1].secretOpt).toEqual({ ID: 'npmrc', uid: 1, gid: 2, mode: 0o440, optional: false });
    expect(exec.mounts[2].secretOpt).toEqual({ ID: '/token', uid: 0, gid: 0, mode: 0o400, optional: false });
    expect(exec.mounts[3].SSHOpt).toEqual({ ID: '', uid: 0, gid: 0, mode: 0o600, optional: false });
    expect(exec.secretenv).toEqual([{ ID: 'tok', name: 'TOKEN', optional: true }]);
    expect(exec.meta?.env).toEqual(['SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0']);
    expect(caps).toMatchObject({ 'exec.mount.secret': true, 'exec.secretenv': true, 'exec.mount.ssh': true });
  });

  it('marks a cache mount read-only when asked (pb.Mount.readonly); cache mounts never have an output', () => {
    const seed = scratch().file(mkfile('/f', 0o644, 'x'));
    const { exec } = execOf(
      base.run({
        args: ['x'],
        mounts: [
          { type: 'cache', target: '/ro', id: 'c', readonly: true, source: seed, selector: '/f' },
          { type: 'cache', target: '/rw', id: 'c' },
        ],
      }).root(),
    );
    expect(exec.mounts.slice(1).map((m) => [m.dest, m.mountType, m.readonly, m.input, m.output, m.selector])).toEqual([
      ['/ro', pb.MountType.CACHE, true, 1, -1, '/f'],
      ['/rw', pb.MountType.CACHE, false, -1, -1, ''],
    ]);
  });

  it('a read-only root has no root output: root() is the base', () => {
    const e = base.run({ args: ['x'], readonlyRootfs: true });
    expect(e.root().output).toBe(base.output);
    const { exec } = execOf(e.getMount('/').run({ args: ['y'], mounts: [] }).root());
    expect(exec.mounts[0]).toMatchObject({ dest: '/', readonly: false });
  });

  it('rejects bad mounts and hosts, naming them', () => {
    expect(() => base.run({ args: ['x'], mounts: [{ target: 'rel', source: scratch() }] })).toThrow(/"rel" must be an absolute path/);
    expect(() => base.run({ args: ['x'], mounts: [{ target: '/a', source: scratch() }, { type: 'tmpfs', target: '/a' }] })).toThrow(/two mounts at "\/a"/);
    expect(() => base.run({ args: ['x'], mounts: [{ type: 'cache', target: '/c', id: '' }] })).toThrow(/needs an id/);
    expect(() => marshal(base.run({ args: ['x'], extraHosts: [{ host: 'h', ip: 'not-an-ip' }] }).root())).toThrow(/"not-an-ip" is not an IP address/);
  });

  it('exec ops built on the same state with the same options have the same digest', () => {
    const a = execOf(base.run({ shell: 'make' }).root()).def.def;
    const b = execOf(image('busybox').run({ shell: 'make' }).root()).def.def;
    expect(a.map(digestOf)).toEqual(b.map(digestOf));
  });
});

describe('shlexSplit', () => {
  it('splits like a shell without expanding', () => {
    expect(shlexSplit('  a  "b \\" c" \'d $e\' f\\ g # comment')).toEqual(['a', 'b " c', 'd $e', 'f g']);
    expect(shlexSplit('x"y"z')).toEqual(['xyz']);
    expect(() => shlexSplit('"open')).toThrow(/unterminated/);
  });
});
