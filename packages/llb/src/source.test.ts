import { describe, expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import { isBktError } from '@bkt/core';
import { git, http, image, local, marshal, ociLayout, type State } from './index.js';
import { digestOf, normalizeReference } from '@bkt/oci';

/** The source op of a source state, and its metadata. */
function sourceOf(st: State, opts?: Parameters<typeof marshal>[1]) {
  const def = marshal(st, opts);
  const op = pb.Op.decode(def.def[0]);
  if (op.op?.$case !== 'source') throw new Error('not a source op');
  return { ...op.op.value, platform: op.platform, caps: def.metadata[digestOf(def.def[0])].caps };
}

describe('image', () => {
  it('normalizes references as Docker does', () => {
    const cases: Record<string, string> = {
      busybox: 'docker.io/library/busybox:latest',
      'busybox:1.36': 'docker.io/library/busybox:1.36',
      'me/app': 'docker.io/me/app:latest',
      'index.docker.io/library/alpine:3': 'docker.io/library/alpine:3',
      'localhost:5000/x': 'localhost:5000/x:latest',
      '127.0.0.1:5000/a/b:t': '127.0.0.1:5000/a/b:t',
      'ghcr.io/o/r': 'ghcr.io/o/r:latest',
      [`alpine@sha256:${'a'.repeat(64)}`]: `docker.io/library/alpine@sha256:${'a'.repeat(64)}`,
      [`alpine:3@sha256:${'b'.repeat(64)}`]: `docker.io/library/alpine:3@sha256:${'b'.repeat(64)}`,
    };
    for (const [ref, want] of Object.entries(cases)) expect(normalizeReference(ref), ref).toBe(want);
    expect(sourceOf(image('busybox')).identifier).toBe('docker-image://docker.io/library/busybox:latest');
  });

  it('with a metaResolver: pins the digest found and takes env, working dir, platform and user from the config', async () => {
    const digest = `sha256:${'d'.repeat(64)}` as const;
    const config = JSON.stringify({
      architecture: 'arm64',
      os: 'linux',
      config: { Env: ['PATH=/usr/bin:/bin', 'LANG=C'], WorkingDir: '/srv', User: 'nobody' },
    });
    const asked: unknown[] = [];
    const metaResolver = {
      resolveImageConfig: async (ref: string, opts?: unknown) => {
        asked.push([ref, opts]);
        return { digest, config: new TextEncoder().encode(config), ref: `${ref}@${digest}` };
      },
    };
    const st = await image('busybox:1.36', { metaResolver, platform: 'linux/arm64', resolveMode: 'pull' });
    expect(asked).toEqual([['docker.io/library/busybox:1.36', { platform: { os: 'linux', architecture: 'arm64' }, resolveMode: 'pull' }]]);
    expect(sourceOf(st).identifier).toBe(`docker-image://docker.io/library/busybox:1.36@${digest}`);
    expect(st.envList()).toEqual(['PATH=/usr/bin:/bin', 'LANG=C']);
    expect([st.getDir(), st.getUser(), st.getPlatform()?.architecture]).toEqual(['/srv', 'nobody', 'arm64']);
    expect(Buffer.from(st.getImageConfig()!).toString()).toBe(config);
    // Ops built on it keep the config; a fresh image() has none.
    expect(st.run({ shell: 'true' }).root().getImageConfig()).toBe(st.getImageConfig());
    expect(image('busybox').getImageConfig()).toBeUndefined();
  });

  it('rejects bad references', () => {
    for (const bad of ['Busybox', 'busybox:', 'a b', 'busybox@sha256:123']) {
      let err: unknown;
      try {
        image(bad);
      } catch (e) {
        err = e;
      }
      expect(isBktError(err, 'INVALID_ARGUMENT'), bad).toBe(true);
    }
  });

  it('sets its attrs and caps, and always a platform', () => {
    const s = sourceOf(image('busybox', { resolveMode: 'pull', recordType: 'internal', layerLimit: 2, checksum: `sha256:${'c'.repeat(64)}` }), { platform: 'linux/amd64' });
    expect(s.attrs).toEqual({
      'image.checksum': `sha256:${'c'.repeat(64)}`,
      'image.layerlimit': '2',
      'image.recordtype': 'internal',
      'image.resolvemode': 'pull',
    });
    expect(Object.keys(s.attrs)).toEqual([...Object.keys(s.attrs)].sort());
    expect(s.caps).toEqual({
      'source.image': true,
      'source.image.resolvemode': true,
      'source.image.layerlimit': true,
      'source.image.checksum': true,
    });
    expect(s.platform).toEqual({ OS: 'linux', Architecture: 'amd64', Variant: '', OSVersion: '', OSFeatures: [] });
  });
});

describe('local', () => {
  it('encodes patterns as JSON arrays with their caps', () => {
    const s = sourceOf(local('context', { include: ['src/**'], exclude: ['node_modules', '*.log'], followPaths: ['Dockerfile'], sharedKeyHint: 'ctx', sessionId: 's1', differ: { type: 'metadata', required: true } }));
    expect(s.identifier).toBe('local://context');
    expect(s.attrs).toEqual({
      'local.differ': 'metadata',
      'local.excludepatterns': '["node_modules","*.log"]',
      'local.followpaths': '["Dockerfile"]',
      'local.includepattern': '["src/**"]',
      'local.session': 's1',
      'local.sharedkeyhint': 'ctx',
    });
    expect(s.caps).toEqual({
      'source.local': true,
      'source.local.sessionid': true,
      'source.local.includepatterns': true,
      'source.local.followpaths': true,
      'source.local.excludepatterns': true,
      'source.local.sharedkeyhint': true,
      'source.local.differ': true,
    });
    expect(s.platform).toBeUndefined();
  });

  it('sets local.unique only when an id is given (and no session)', () => {
    expect(sourceOf(local('c')).attrs).toEqual({});
    expect(sourceOf(local('c'), { localUniqueId: 'u1' }).attrs).toEqual({ 'local.unique': 'u1' });
    expect(sourceOf(local('c', { localUniqueId: 'own' }), { localUniqueId: 'u1' }).attrs).toEqual({ 'local.unique': 'own' });
    expect(sourceOf(local('c', { localUniqueId: 'own' }), { localUniqueId: 'u1' }).caps).toHaveProperty(['source.local.unique']);
    expect(sourceOf(local('c', { sessionId: 's' }), { localUniqueId: 'u1' }).attrs).toEqual({ 'local.session': 's' });
  });
});

describe('git', () => {
  it('builds the same identifier for https and ssh remotes', () => {
    const https = sourceOf(git('https://github.com/moby/buildkit.git', 'v0.11.6'));
    expect(https.identifier).toBe('git://github.com/moby/buildkit.git#v0.11.6');
    expect(https.attrs).toEqual({
      'git.authheadersecret': 'GIT_AUTH_HEADER',
      'git.authtokensecret': 'GIT_AUTH_TOKEN',
      'git.fullurl': 'https://github.com/moby/buildkit.git',
    });
    const ssh = sourceOf(git('git@github.com:moby/buildkit.git', 'v0.11.6', { knownSshHosts: 'github.com ssh-ed25519 AAAA' }));
    expect(ssh.identifier).toBe(https.identifier);
    expect(ssh.attrs['git.mountsshsock']).toBe('default');
    expect(ssh.attrs['git.knownsshhosts']).toBe('github.com ssh-ed25519 AAAA\n');
    expect(ssh.attrs['git.fullurl']).toBe('git@github.com:moby/buildkit.git');
  });

  it('adds https:// to a bare remote and parses ref:subdir', () => {
    const s = sourceOf(git('github.com/moby/buildkit', 'main:docs/../frontend', { keepGitDir: true, checksum: 'abc', skipSubmodules: true, mtime: 'commit' }));
    expect(s.identifier).toBe('git://github.com/moby/buildkit#main:frontend');
    expect(s.attrs).toMatchObject({
      'git.fullurl': 'https://github.com/moby/buildkit',
      'git.keepgitdir': 'true',
      'git.checksum': 'abc',
      'git.skipsubmodules': 'true',
      'git.mtime': 'commit',
    });
    expect(s.caps).toMatchObject({ 'source.git': true, 'source.git.keepgitdir': true, 'source.git.checksum': true });
    expect(sourceOf(git('https://example.com/r.git')).identifier).toBe('git://example.com/r.git');
  });
});

describe('http', () => {
  it('uses the URL as identifier with checksum, filename, perm and owner attrs', () => {
    const sum = `sha256:${'d'.repeat(64)}`;
    const s = sourceOf(http('https://example.com/f.tgz', { checksum: sum, filename: 'f.tgz', chmod: 0o755, chown: { uid: 1000, gid: 1001 }, header: { accept: 'application/json' } }));
    expect(s.identifier).toBe('https://example.com/f.tgz');
    expect(s.attrs).toEqual({
      'http.checksum': sum,
      'http.filename': 'f.tgz',
      'http.gid': '1001',
      'http.header.accept': 'application/json',
      'http.perm': '0755',
      'http.uid': '1000',
    });
    expect(s.caps).toMatchObject({ 'source.http': true, 'source.http.checksum': true, 'source.http.perm': true });
  });

  it('rejects a bad checksum or URL, naming it', () => {
    expect(() => http('https://x/y', { checksum: 'md5:abc' })).toThrow(/checksum "md5:abc"/);
    expect(() => http('ftp://x/y')).toThrow(/ftp:\/\/x\/y/);
  });
});

describe('ociLayout', () => {
  it('requires a digest and is platform-specific', () => {
    const ref = `myimage@sha256:${'e'.repeat(64)}`;
    const s = sourceOf(ociLayout(ref, { storeId: 'store', sessionId: 'sess', layerLimit: 1 }));
    expect(s.identifier).toBe(`oci-layout://${ref}`);
    expect(s.attrs).toEqual({ 'oci.layerlimit': '1', 'oci.session': 'sess', 'oci.store': 'store' });
    expect(s.platform).toBeDefined();
    expect(() => ociLayout('myimage:latest')).toThrow(/digest/);
  });
});
