import { describe, expect, test } from 'vitest';
import * as pb from '@bkt/api/pb';
import { BktError, isBktError } from '@bkt/core';
import { type ConvertOptions, convertDockerfile } from './convert.js';
import { BUSYBOX_CONFIG, ancestors, decodeOps, execOf, fileOf, fixedImages, opNamed, sourceOf } from './decoded-ops.test-util.js';
import type { DockerImage } from './image.js';

const BUSYBOX = 'docker.io/library/busybox:latest';

async function convert(text: string, opts: ConvertOptions = {}) {
  const resolver = fixedImages({ [BUSYBOX]: BUSYBOX_CONFIG, ...(opts as { images?: Record<string, object> }).images });
  const r = await convertDockerfile(text, { resolveImageConfig: resolver, targetPlatform: { os: 'linux', architecture: 'amd64' }, ...opts });
  const image = JSON.parse(new TextDecoder().decode(r.imageConfig)) as DockerImage;
  return { ...r, ops: decodeOps(r.definition), image, calls: resolver.calls };
}

const history = (img: DockerImage) => (img.history ?? []).filter((h) => h.comment === 'buildkit.dockerfile.v0');

describe('FROM', () => {
  test('an image: pinned by digest, its config inherited', async () => {
    const cfg = { ...BUSYBOX_CONFIG, config: { Env: ['PATH=/bin', 'HOME=/home/app'], WorkingDir: '/srv', User: 'app', Cmd: ['run'], Entrypoint: ['/init'], Labels: { a: 'b' } } };
    const r = await convert('FROM busybox\nRUN true\n', { images: { [BUSYBOX]: cfg } } as ConvertOptions);
    const src = sourceOf(opNamed(r.ops, 'FROM'));
    expect(src.identifier).toMatch(/^docker-image:\/\/docker\.io\/library\/busybox:latest@sha256:[0-9a-f]{64}$/);
    const run = execOf(opNamed(r.ops, 'RUN true'));
    expect(run.meta!.env).toEqual(['PATH=/bin', 'HOME=/home/app']);
    expect(run.meta!.cwd).toBe('/srv');
    expect(run.meta!.user).toBe('app');
    expect(run.meta!.args).toEqual(['/bin/sh', '-c', 'true']);
    expect(r.image.config).toMatchObject({ Env: ['PATH=/bin', 'HOME=/home/app'], WorkingDir: '/srv', User: 'app', Cmd: ['run'], Entrypoint: ['/init'], Labels: { a: 'b' } });
    expect(r.image.history![0].created_by).toBe('ADD busybox');
    expect(r.image.rootfs.diff_ids).toEqual(BUSYBOX_CONFIG.rootfs.diff_ids);
  });

  test('scratch: the empty config (PATH, WorkingDir /) and no ops', async () => {
    const r = await convert('FROM scratch\nENV A=1\n');
    expect(r.ops).toEqual([]);
    expect(r.calls).toEqual([]);
    expect(r.image).toMatchObject({ architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'A=1'], WorkingDir: '/' } });
  });

  test('only the stages the target needs are resolved and built; --target picks a stage', async () => {
    const df = 'FROM busybox AS a\nRUN echo a\nFROM unknown/image AS unused\nRUN echo u\nFROM busybox AS b\nRUN echo b\n';
    const r = await convert(df);
    expect(r.ops.map((o) => o.name).filter((n) => n.includes('RUN'))).toEqual(['[b 2/2] RUN echo b']);
    const t = await convert(df, { target: 'a' });
    expect(t.ops.some((o) => o.name === '[a 2/2] RUN echo a')).toBe(true);
    expect(t.ops.some((o) => o.name.includes('echo b'))).toBe(false);
  });

  test('independent stages are independent branches of the graph', async () => {
    const r = await convert(
      'FROM busybox AS a\nRUN sleep 1\nFROM busybox AS b\nRUN sleep 2\nFROM busybox\nCOPY --from=a /x /a\nCOPY --from=b /x /b\n',
    );
    const a = opNamed(r.ops, 'sleep 1');
    const b = opNamed(r.ops, 'sleep 2');
    expect(ancestors(r.ops, a).has(b.digest)).toBe(false);
    expect(ancestors(r.ops, b).has(a.digest)).toBe(false);
    const last = opNamed(r.ops, 'COPY --from=b');
    expect(ancestors(r.ops, last)).toEqual(expect.objectContaining({}));
    expect(ancestors(r.ops, last).has(a.digest) && ancestors(r.ops, last).has(b.digest)).toBe(true);
  });

  test('stages by index and as base; the child inherits env, workdir and history', async () => {
    const r = await convert('FROM busybox\nENV A=1\nWORKDIR /w\nFROM 0 AS x\nFROM x\nCOPY --from=0 /f /g\n'.replace('FROM 0 AS x', 'FROM busybox AS x'));
    const copy = fileOf(opNamed(r.ops, 'COPY --from=0'));
    expect(copy.actions[0].action?.$case).toBe('copy');
    const s = await convert('FROM busybox AS base\nENV A=1\nWORKDIR /w\nFROM base\nRUN pwd\n');
    const run = execOf(opNamed(s.ops, 'RUN pwd'));
    expect(run.meta!.cwd).toBe('/w');
    expect(run.meta!.env).toContain('A=1');
    expect(history(s.image).map((h) => h.created_by)).toEqual(['ENV A=1', 'WORKDIR /w', 'RUN /bin/sh -c pwd # buildkit']);
  });

  test('--platform and the automatic platform ARGs', async () => {
    // busybox resolved for $BUILDPLATFORM is an amd64 image (a base of another platform is refused, see base-platform.test.ts).
    const r = await convert('FROM --platform=$BUILDPLATFORM busybox AS b\nARG TARGETARCH\nARG BUILDARCH\nRUN echo $TARGETARCH $BUILDARCH\n', {
      targetPlatform: { os: 'linux', architecture: 'arm64' },
      buildPlatform: { os: 'linux', architecture: 'amd64' },
    } as ConvertOptions);
    const run = opNamed(r.ops, 'RUN');
    expect(run.name).toBe('[2/2] RUN echo arm64 amd64');
    expect(run.op.platform).toMatchObject({ OS: 'linux', Architecture: 'amd64' });
    expect(execOf(run).meta!.env).toEqual(expect.arrayContaining(['TARGETARCH=arm64', 'BUILDARCH=amd64']));
    expect(r.image.architecture).toBe('arm64');
  });
});

describe('ARG and ENV', () => {
  test('global ARGs in FROM, stage ARGs with defaults and build args, RUN history lists them', async () => {
    const df = 'ARG IMG=busybox\nARG V=global\nFROM $IMG\nARG V\nARG W=w-$V\nENV E=$W\nRUN echo $E\n';
    const r = await convert(df, { buildArgs: { V: 'cli' } });
    const run = execOf(opNamed(r.ops, 'RUN'));
    expect(run.meta!.env).toEqual(expect.arrayContaining(['V=cli', 'W=w-cli', 'E=w-cli']));
    expect(r.image.config.Env).toContain('E=w-cli');
    expect(r.image.config.Env!.some((e) => e.startsWith('V='))).toBe(false);
    expect(history(r.image).map((h) => h.created_by)).toEqual(['ARG V=cli', 'ARG W=w-cli', 'ENV E=w-cli', 'RUN |2 V=cli W=w-cli /bin/sh -c echo $E # buildkit']);
  });

  test('proxy build args reach RUN as proxy env, not history', async () => {
    const r = await convert('FROM busybox\nRUN wget x\n', { buildArgs: { HTTP_PROXY: 'http://p:3128', no_proxy: 'local' } });
    const run = execOf(opNamed(r.ops, 'RUN'));
    expect(run.meta!.proxyEnv).toMatchObject({ httpProxy: 'http://p:3128', noProxy: 'local' });
    expect(history(r.image)[0].created_by).toBe('RUN /bin/sh -c wget x # buildkit');
  });

  test('SOURCE_DATE_EPOCH dates the history', async () => {
    const r = await convert('FROM busybox\nENV A=1\n', { buildArgs: { SOURCE_DATE_EPOCH: '86400' } });
    expect(history(r.image)[0].created).toBe('1970-01-02T00:00:00Z');
  });
});

describe('RUN', () => {
  test('shell form through SHELL, exec form as written', async () => {
    const r = await convert('FROM busybox\nSHELL ["/bin/ash", "-eo", "pipefail", "-c"]\nRUN echo a | cat\nRUN ["echo", "b"]\nUSER 1000:1000\nRUN id\n');
    expect(execOf(opNamed(r.ops, 'echo a')).meta!.args).toEqual(['/bin/ash', '-eo', 'pipefail', '-c', 'echo a | cat']);
    expect(execOf(opNamed(r.ops, 'RUN ["echo"')).meta!.args).toEqual(['echo', 'b']);
    expect(execOf(opNamed(r.ops, 'RUN id')).meta!.user).toBe('1000:1000');
    expect(r.image.config.Shell).toEqual(['/bin/ash', '-eo', 'pipefail', '-c']);
    expect(history(r.image)[0].created_by).toBe('SHELL [/bin/ash -eo pipefail -c]');
  });

  test('heredocs: a script with a shebang is mounted and run; a plain body is the command', async () => {
    const r = await convert('FROM busybox\nRUN <<EOF\n#!/bin/sh\necho script\nEOF\nRUN <<-EOT\n\techo plain\nEOT\nRUN cat <<A > /a\nhello\nA\n');
    const script = opNamed(r.ops, 'RUN <<EOF');
    expect(script.name).toBe('[2/4] RUN <<EOF (#!/bin/sh...)');
    const exec = execOf(script);
    expect(exec.meta!.args).toEqual(['/bin/sh', '-c', '/dev/pipes/EOF']);
    const pipe = exec.mounts.find((m) => m.dest === '/dev/pipes/')!;
    expect(pipe).toMatchObject({ readonly: true, selector: '/' });
    const doc = r.ops.find((o) => o.digest === script.op.inputs[pipe.input].digest)!;
    const mk = fileOf(doc).actions[0].action;
    expect(mk?.$case === 'mkfile' && mk.value).toMatchObject({ path: '/EOF', mode: 0o755 });
    expect(execOf(opNamed(r.ops, 'EOT')).meta!.args).toEqual(['/bin/sh', '-c', 'echo plain\n']);
    expect(execOf(opNamed(r.ops, 'cat <<A')).meta!.args).toEqual(['/bin/sh', '-c', 'cat <<A > /a\nhello\nA']);
  });

  test('--mount=type=bind from context, stage and image; rw binds keep no output', async () => {
    const r = await convert(
      'FROM busybox AS src\nRUN touch /s\nFROM busybox\nRUN --mount=target=/ctx --mount=type=bind,from=src,source=/s,target=/m,rw --mount=from=alpine,target=/al ls\n',
      { images: { 'docker.io/library/alpine:latest': BUSYBOX_CONFIG } } as ConvertOptions,
    );
    const o = opNamed(r.ops, 'RUN --mount');
    const ex = execOf(o);
    const byDest = Object.fromEntries(ex.mounts.map((m) => [m.dest, m]));
    expect(byDest['/ctx']).toMatchObject({ readonly: true, output: -1, mountType: pb.MountType.BIND });
    expect(sourceOf(r.ops.find((x) => x.digest === o.op.inputs[byDest['/ctx'].input].digest)!).identifier).toBe('local://context');
    expect(byDest['/m']).toMatchObject({ readonly: false, output: -1, selector: '/s' });
    expect(r.ops.find((x) => x.digest === o.op.inputs[byDest['/m'].input].digest)!.name).toBe('[src 2/2] RUN touch /s');
    expect(sourceOf(r.ops.find((x) => x.digest === o.op.inputs[byDest['/al'].input].digest)!).identifier).toMatch(/^docker-image:\/\/docker\.io\/library\/alpine:latest@sha256:/);
  });

  test('--mount=type=cache with id, sharing, uid/gid/mode; tmpfs with size', async () => {
    const r = await convert('FROM busybox\nWORKDIR /w\nRUN --mount=type=cache,target=/c,id=mine,sharing=locked --mount=type=cache,target=rel,uid=1000,mode=0700 --mount=type=tmpfs,target=/t,size=64m true\n', {
      cacheNamespace: 'ns',
    });
    const o = opNamed(r.ops, 'RUN --mount');
    const ex = execOf(o);
    const byDest = Object.fromEntries(ex.mounts.map((m) => [m.dest, m]));
    expect(byDest['/c']).toMatchObject({ mountType: pb.MountType.CACHE, cacheOpt: { ID: 'ns/mine', sharing: pb.CacheSharingOpt.LOCKED }, input: -1 });
    expect(byDest['/w/rel']).toMatchObject({ mountType: pb.MountType.CACHE, cacheOpt: { ID: 'ns/rel' }, selector: '/cache' });
    const perm = r.ops.find((x) => x.digest === o.op.inputs[byDest['/w/rel'].input].digest)!;
    expect(perm.name).toBe('[internal] setting cache mount permissions');
    const mk = fileOf(perm).actions[0].action;
    expect(mk?.$case === 'mkdir' && mk.value).toMatchObject({ path: '/cache', mode: 0o700, owner: { user: { user: { $case: 'byID', value: 1000 } } } });
    expect(byDest['/t']).toMatchObject({ mountType: pb.MountType.TMPFS, TmpfsOpt: { size: 64 * 1024 * 1024 } });
  });

  test('--mount=type=secret (file and env) and type=ssh', async () => {
    const r = await convert(
      'FROM busybox\nRUN --mount=type=secret,id=tok,env=TOKEN,required --mount=type=secret,id=npmrc,target=/root/.npmrc,mode=0444,uid=1 --mount=type=secret,id=aws --mount=type=ssh,id=gh,mode=0644 echo $TOKEN\n',
    );
    const o = opNamed(r.ops, 'RUN --mount');
    expect(o.name).toContain('echo ****');
    const ex = execOf(o);
    expect(ex.secretenv).toEqual([{ ID: 'tok', name: 'TOKEN', optional: false }]);
    const secrets = ex.mounts.filter((m) => m.mountType === pb.MountType.SECRET);
    expect(secrets.map((m) => [m.dest, m.secretOpt])).toEqual([
      ['/root/.npmrc', { ID: 'npmrc', uid: 1, gid: 0, mode: 0o444, optional: true }],
      ['/run/secrets/aws', { ID: 'aws', uid: 0, gid: 0, mode: 0o400, optional: true }],
    ]);
    const ssh = ex.mounts.find((m) => m.mountType === pb.MountType.SSH)!;
    expect(ssh).toMatchObject({ dest: '/run/buildkit/ssh_agent.0', SSHOpt: { ID: 'gh', mode: 0o644, optional: true } });
    expect(ex.meta!.env).toContain('SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0');
  });

  test('relative mount targets: cache, bind and tmpfs under the workdir; secret and ssh under / (as BuildKit with runc)', async () => {
    const r = await convert(
      'FROM busybox\nWORKDIR /app\nRUN --mount=type=cache,target=cache --mount=type=bind,target=./ctx --mount=type=tmpfs,target=t/../tmp --mount=type=secret,id=tok,target=tok --mount=type=ssh,target=run/agent.sock true\n',
    );
    const ex = execOf(opNamed(r.ops, 'RUN --mount'));
    expect(ex.mounts.map((m) => m.dest).sort()).toEqual(['/', '/run/agent.sock', '/app/cache', '/app/ctx', '/app/tmp', '/tok'].sort());
    expect(ex.meta!.env).toContain('SSH_AUTH_SOCK=/run/agent.sock');
  });

  test('--network and --security', async () => {
    const r = await convert('FROM busybox\nRUN --network=none true\nRUN --network=host --security=insecure true\n');
    expect(execOf(opNamed(r.ops, 'RUN --network=none')).network).toBe(pb.NetMode.NONE);
    const h = execOf(opNamed(r.ops, 'RUN --network=host'));
    expect(h.network).toBe(pb.NetMode.HOST);
    expect(h.security).toBe(pb.SecurityMode.INSECURE);
  });

  test('frontend attrs: add-hosts, ulimit, shm-size, hostname, force-network-mode', async () => {
    const r = await convert('FROM busybox\nRUN true\n', {
      extraHosts: [{ host: 'db', ip: '10.0.0.2' }],
      ulimits: [{ name: 'nofile', soft: 1024, hard: 2048 }],
      shmSize: 1 << 20,
      hostname: 'builder',
      networkMode: 'none',
    });
    const ex = execOf(opNamed(r.ops, 'RUN'));
    expect(ex.meta!.extraHosts).toEqual([{ Host: 'db', IP: '10.0.0.2' }]);
    expect(ex.meta!.ulimit).toEqual([{ Name: 'nofile', Soft: 1024, Hard: 2048 }]);
    expect(ex.meta!.hostname).toBe('builder');
    expect(ex.network).toBe(pb.NetMode.NONE);
    expect(ex.mounts.find((m) => m.dest === '/dev/shm')).toMatchObject({ mountType: pb.MountType.TMPFS, TmpfsOpt: { size: 1 << 20 } });
  });
});

describe('COPY and ADD', () => {
  test('context sources: wildcards, chown by name in the destination, chmod, exclude, dest against WORKDIR', async () => {
    const r = await convert('FROM busybox\nWORKDIR /app\nCOPY --chown=app:staff --chmod=640 --exclude=*.md *.txt src/ ./\nCOPY --chmod=u+x run.sh /bin/\n');
    const o = opNamed(r.ops, 'COPY --chown');
    const f = fileOf(o);
    const [a, b] = f.actions.map((x) => (x.action?.$case === 'copy' ? x.action.value : undefined)!);
    expect(a).toMatchObject({ src: '/*.txt', dest: '/app/', mode: 0o640, followSymlink: true, dirCopyContents: true, allowWildcard: true, allowEmptyWildcard: true, createDestPath: true, excludePatterns: ['*.md'], attemptUnpackDockerCompatibility: false });
    expect(a.owner).toEqual({ user: { user: { $case: 'byName', value: { name: 'app', input: 0 } } }, group: { user: { $case: 'byName', value: { name: 'staff', input: 0 } } } });
    expect(b).toMatchObject({ src: '/src', dest: '/app/' });
    expect(sourceOf(r.ops.find((x) => x.digest === o.op.inputs[f.actions[0].secondaryInput].digest)!).identifier).toBe('local://context');
    const chmod = fileOf(opNamed(r.ops, 'u+x')).actions[0].action;
    expect(chmod?.$case === 'copy' && chmod.value).toMatchObject({ mode: -1, modeStr: 'u+x', dest: '/bin/' });
    expect(history(r.image).map((h) => h.created_by)).toEqual([
      'WORKDIR /app',
      'COPY --chown=app:staff --chmod=640 *.txt src/ ./ # buildkit',
      'COPY --chmod=u+x run.sh /bin/ # buildkit',
    ]);
  });

  test('--link copies onto scratch and merges; --parents keeps the source path', async () => {
    const r = await convert('FROM busybox\nCOPY --link a /a\nCOPY --parents x/./y/*.go /dst/\n');
    const merge = opNamed(r.ops, 'LINK COPY');
    expect(merge.op.op?.$case).toBe('merge');
    const copied = r.ops.find((x) => x.digest === merge.op.inputs[1].digest)!;
    expect(copied.name).toBe('[2/3] COPY --link a /a');
    expect(fileOf(copied).actions[0].input).toBe(-1);
    expect(merge.name).toBe('[2/3] LINK COPY --link a /a');
    const p = fileOf(opNamed(r.ops, '--parents')).actions[0].action;
    expect(p?.$case === 'copy' && p.value).toMatchObject({ src: '/x', includePatterns: ['y/*.go'], dest: '/dst/' });
  });

  test('--from a stage, an image, and a stage defined later is an error', async () => {
    const r = await convert('FROM busybox AS a\nRUN touch /x\nFROM scratch\nCOPY --from=a /x /x\nCOPY --from=alpine:3 /etc/os-release /\n', {
      images: { 'docker.io/library/alpine:3': BUSYBOX_CONFIG },
    } as ConvertOptions);
    const img = r.ops.find((o) => o.name.startsWith('FROM docker.io/library/alpine:3@sha256:'));
    expect(img).toBeDefined();
    await expect(convert('FROM busybox AS first\nCOPY --from=later /x /x\nFROM busybox AS later\n', { target: 'first' })).rejects.toThrow(
      /Dockerfile:2:1: cannot copy from stage "later", it needs to be defined before current stage "first"/,
    );
  });

  test('an undefined stage in --from that is no image either fails at its line', async () => {
    await expect(convert('FROM busybox\nRUN true\nCOPY --from=nosuchstage /x /x\n')).rejects.toThrow(/^Dockerfile:3:1: nosuchstage: docker\.io\/docker\.io\/library\/nosuchstage:latest: not found/);
  });

  test('ADD: URLs with --checksum, local archives unpacked, git with --keep-git-dir, heredocs', async () => {
    const sum = `sha256:${'a'.repeat(64)}`;
    const r = await convert(
      `FROM busybox\nADD --checksum=${sum} https://example.com/dl/tool.tgz /opt/\nADD app.tar.gz /srv/\nADD --keep-git-dir https://github.com/moby/buildkit.git#v0.12:docs /src\nADD <<EOF /etc/motd\nhello \${HOME:-x}\nEOF\n`,
    );
    const url = opNamed(r.ops.filter((o) => o.op.op?.$case === 'file'), 'ADD --checksum');
    const urlSrc = r.ops.filter((o) => o.op.op?.$case === 'source').map((o) => sourceOf(o)).find((s) => s.identifier.startsWith('https://'))!;
    expect(urlSrc).toMatchObject({ identifier: 'https://example.com/dl/tool.tgz', attrs: { 'http.checksum': sum, 'http.filename': 'tool.tgz' } });
    const a = fileOf(url).actions[0].action;
    expect(a?.$case === 'copy' && a.value).toMatchObject({ src: '/tool.tgz', dest: '/opt/', attemptUnpackDockerCompatibility: false });
    const tar = fileOf(opNamed(r.ops.filter((o) => o.op.op?.$case === 'file'), 'ADD app.tar.gz')).actions[0].action;
    expect(tar?.$case === 'copy' && tar.value).toMatchObject({ src: '/app.tar.gz', attemptUnpackDockerCompatibility: true });
    const gitSrc = r.ops.map((o) => (o.op.op?.$case === 'source' ? o.op.op.value : undefined)).find((s) => s?.identifier.startsWith('git://'))!;
    expect(gitSrc.identifier).toBe('git://github.com/moby/buildkit.git#v0.12:docs');
    expect(gitSrc.attrs['git.keepgitdir']).toBe('true');
    const motd = opNamed(r.ops, 'ADD <<EOF');
    const doc = r.ops.find((o) => o.digest === motd.op.inputs[fileOf(motd).actions[0].secondaryInput].digest)!;
    const mk = fileOf(doc).actions[0].action;
    expect(mk?.$case === 'mkfile' && Buffer.from(mk.value.data).toString()).toBe('hello x\n');
    await expect(convert('FROM busybox\nCOPY https://example.com/x /x\n')).rejects.toThrow(/Dockerfile:2:1: source can't be a URL for COPY/);
    await expect(convert('FROM busybox\nADD --checksum=sha256:00 a /x\n')).rejects.toThrow(/checksum requires HTTP\(S\) or Git sources/);
  });

  test('.dockerignore goes to the context source; copying an ignored file warns (CopyIgnoredFile)', async () => {
    const r = await convert('FROM busybox\nCOPY secret.txt /\n', { excludes: ['secret.txt', '*.log'] });
    const ctx = r.ops.find((o) => o.name === '[internal] load build context')!;
    expect(sourceOf(ctx).attrs['local.excludepatterns']).toBe('["secret.txt","*.log"]');
    expect(r.warnings.map((w) => [w.rule, w.message])).toContainEqual(['CopyIgnoredFile', 'Attempting to Copy file "secret.txt" that is excluded by .dockerignore']);
  });
});

describe('image config instructions', () => {
  test('WORKDIR makes the directory owned by USER', async () => {
    const r = await convert('FROM busybox\nUSER app\nWORKDIR /home/app/src\nWORKDIR /\n');
    const mk = fileOf(opNamed(r.ops, 'WORKDIR /home')).actions[0].action;
    expect(mk?.$case === 'mkdir' && mk.value).toMatchObject({ path: '/home/app/src', mode: 0o755, makeParents: true, owner: { user: { user: { $case: 'byName', value: { name: 'app', input: 0 } } } } });
    expect(history(r.image).map((h) => [h.created_by, h.empty_layer ?? false])).toEqual([
      ['USER app', true],
      ['WORKDIR /home/app/src', false],
      ['WORKDIR /', true],
    ]);
  });

  test('LABEL, EXPOSE, VOLUME, STOPSIGNAL, HEALTHCHECK, MAINTAINER, ONBUILD, CMD and ENTRYPOINT', async () => {
    const r = await convert(
      [
        'FROM busybox',
        'LABEL a=1 "b c"="d e"',
        'EXPOSE 80 53/udp 8000-8001',
        'VOLUME /data /logs',
        'STOPSIGNAL SIGQUIT',
        'HEALTHCHECK --interval=30s --timeout=1m30s --retries=3 CMD wget -q localhost',
        'MAINTAINER me@example.com',
        'ONBUILD RUN echo child',
        'CMD echo hi',
        '',
      ].join('\n'),
    );
    const c = r.image.config;
    expect(c.Labels).toEqual({ a: '1', 'b c': 'd e' });
    expect(Object.keys(c.ExposedPorts!)).toEqual(['53/udp', '80/tcp', '8000/tcp', '8001/tcp']);
    expect(c.Volumes).toEqual({ '/data': {}, '/logs': {} });
    expect(c.StopSignal).toBe('SIGQUIT');
    expect(c.Healthcheck).toEqual({ Test: ['CMD-SHELL', 'wget -q localhost'], Interval: 30e9, Timeout: 90e9, Retries: 3 });
    expect(r.image.author).toBe('me@example.com');
    expect(c.OnBuild).toEqual(['RUN echo child']);
    expect(c.Cmd).toEqual(['/bin/sh', '-c', 'echo hi']);
    expect(c.ArgsEscaped).toBe(true);
    expect(history(r.image).map((h) => h.created_by)).toEqual([
      'LABEL a=1 b c=d e',
      'EXPOSE [53/udp 80/tcp 8000/tcp 8001/tcp]',
      'VOLUME [/data /logs]',
      'STOPSIGNAL SIGQUIT',
      'HEALTHCHECK {Test:[CMD-SHELL wget -q localhost] Interval:30s Timeout:1m30s StartPeriod:0s StartInterval:0s Retries:3}',
      'MAINTAINER me@example.com',
      'CMD ["/bin/sh" "-c" "echo hi"]',
    ]);
    expect(history(r.image).every((h) => h.empty_layer)).toBe(true);
    await expect(convert('FROM busybox\nSTOPSIGNAL SIGNOPE\n')).rejects.toThrow(/Dockerfile:2:1: Invalid signal: SIGNOPE/);
  });

  test('ENTRYPOINT resets the inherited CMD, not one set in the same stage', async () => {
    const a = await convert('FROM busybox\nENTRYPOINT ["/app"]\n');
    expect(a.image.config.Entrypoint).toEqual(['/app']);
    expect(a.image.config.Cmd).toBeUndefined();
    const b = await convert('FROM busybox\nCMD ["--help"]\nENTRYPOINT ["/app"]\n');
    expect(b.image.config.Cmd).toEqual(['--help']);
  });

  test("ONBUILD triggers of the base image run in the child build and are not inherited", async () => {
    const parent = { ...BUSYBOX_CONFIG, config: { ...BUSYBOX_CONFIG.config, OnBuild: ['RUN echo triggered', 'COPY --from=helper /h /h'] } };
    const r = await convert('FROM busybox AS helper\nRUN touch /h\nFROM parent\nRUN echo own\n', { images: { 'docker.io/library/parent:latest': parent } } as ConvertOptions);
    const names = r.ops.map((o) => o.name);
    expect(names).toContain('[stage-1 2/4] ONBUILD RUN echo triggered');
    expect(names).toContain('[stage-1 3/4] ONBUILD COPY --from=helper /h /h');
    expect(names).toContain('[stage-1 4/4] RUN echo own');
    expect(r.image.config.OnBuild).toBeUndefined();
    const own = opNamed(r.ops, 'RUN echo own');
    expect(own.lines).toEqual([4]);
    expect(opNamed(r.ops, 'echo triggered').lines).toEqual([3]);
  });
});

describe('graph and build options', () => {
  test('vertex names carry the stage and step, source locations the Dockerfile lines', async () => {
    const r = await convert('FROM busybox AS build\nRUN echo one \\\n  two\nFROM busybox\nCOPY --from=build /a /b\n');
    const run = opNamed(r.ops, 'echo one');
    expect(run.name).toBe('[build 2/2] RUN echo one   two');
    expect(run.lines).toEqual([2]);
    expect(r.definition.Source!.locations[run.digest].locations[0].ranges[0]).toEqual({ start: { line: 2, character: 0 }, end: { line: 3, character: 0 } });
    expect(r.definition.Source!.infos[0]).toMatchObject({ filename: 'Dockerfile', language: 'Dockerfile' });
    expect(opNamed(r.ops, 'COPY').name).toBe('[stage-1 2/2] COPY --from=build /a /b');
    expect(execOf(run).meta!.args).toEqual(['/bin/sh', '-c', 'echo one   two']);
  });

  test('no-cache filter marks the ops of the named stages', async () => {
    const df = 'FROM busybox AS deps\nRUN echo deps\nFROM busybox\nCOPY --from=deps / /\nRUN echo final\n';
    const r = await convert(df, { noCache: ['deps'] });
    expect(opNamed(r.ops, 'echo deps').metadata!.ignoreCache).toBe(true);
    expect(opNamed(r.ops, 'echo final').metadata!.ignoreCache).toBe(false);
    const all = await convert(df, { noCache: [] });
    expect(opNamed(all.ops, 'echo final').metadata!.ignoreCache).toBe(true);
  });

  test('labels from attrs are added to the image config', async () => {
    const r = await convert('FROM busybox\nLABEL a=1\n', { labels: { b: '2', a: 'over' } });
    expect(r.image.config.Labels).toEqual({ a: 'over', b: '2' });
  });

  test('named contexts replace images and stages', async () => {
    const r = await convert('FROM busybox AS base\nRUN echo never\nFROM alpine\nCOPY --from=base /x /x\nCOPY --from=extra /y /y\n', {
      contexts: { base: 'docker-image://busybox:1.36', alpine: 'local:alpine-dir', extra: 'docker-image://scratch' },
      images: { 'docker.io/library/busybox:1.36': BUSYBOX_CONFIG },
    } as ConvertOptions);
    expect(r.ops.some((o) => o.name.includes('echo never'))).toBe(false);
    const ctxImage = r.ops.find((o) => o.name === '[context base] busybox:1.36')!;
    expect(sourceOf(ctxImage).identifier).toMatch(/^docker-image:\/\/docker\.io\/library\/busybox:1\.36@sha256:/);
    expect(sourceOf(r.ops.find((o) => o.name === '[context alpine] load from client')!).identifier).toBe('local://alpine-dir');
  });

  test('check=error=true fails on a warning; warnings carry rule and line', async () => {
    const r = await convert('FROM busybox AS Build\nCMD echo hi\n');
    expect(r.warnings.map((w) => [w.rule, w.range.startLine])).toEqual([
      ['StageNameCasing', 1],
      ['JSONArgsRecommended', 2],
    ]);
    await expect(convert('# check=error=true\nFROM busybox AS Build\n')).rejects.toThrow(/lint violation found for rules: StageNameCasing/);
    await expect(convert('FROM busybox AS Build\n', { check: 'error=true' })).rejects.toThrow(/lint violation/);
  });

  test('a cycle between stages and a bad mount are errors at their lines', async () => {
    await expect(convert('FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nCOPY --from=a /y /y\n')).rejects.toThrow(/circular dependency detected on stage: [ab]/);
    await expect(convert('FROM busybox\nRUN --mount=type=cache,target=/ true\n')).rejects.toThrow(/Dockerfile:2:1: invalid mount target "\/"/);
  });
});

describe('a base image the build may not use', () => {
  test("a resolver's PERMISSION_DENIED (a source policy) stays PERMISSION_DENIED, at the FROM line, naming the image", async () => {
    const deny: ConvertOptions['resolveImageConfig'] = async (ref) => {
      throw new BktError('PERMISSION_DENIED', `source docker-image://${ref} denied by the build's source policy (rule 0: docker-image://*)`, { attribute: 'SourcePolicy' });
    };
    const err = await convertDockerfile('FROM scratch AS a\nFROM busybox\nRUN true\n', { resolveImageConfig: deny }).catch((e: unknown) => e);
    expect(isBktError(err, 'PERMISSION_DENIED')).toBe(true);
    expect((err as Error).message).toBe(
      "Dockerfile:2:1: busybox: source docker-image://docker.io/library/busybox:latest denied by the build's source policy (rule 0: docker-image://*)\n   2 | FROM busybox",
    );
    expect((err as { details: object }).details).toMatchObject({ file: 'Dockerfile', line: 2, attribute: 'SourcePolicy' });
  });
});
