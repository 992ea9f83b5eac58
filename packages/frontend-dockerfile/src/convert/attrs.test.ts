import { describe, expect, test } from 'vitest';
import { parseFrontendAttrs } from './attrs.js';
import { parseGitRef } from './git.js';

describe('frontend attrs', () => {
  test('platform: read as containerd reads it (a bare arm is arm/v7; any os/arch pair)', () => {
    expect(parseFrontendAttrs({ platform: 'linux/arm' }).targetPlatform).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(parseFrontendAttrs({ platform: 'linux/aarch64/v8' }).targetPlatform).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(parseFrontendAttrs({ platform: 'nope/nope' }).targetPlatform).toEqual({ os: 'nope', architecture: 'nope' });
  });

  test('platform: several platforms are an UNIMPLEMENTED error of the attr', () => {
    let err: unknown;
    try {
      parseFrontendAttrs({ platform: 'linux/amd64, linux/arm64' });
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'UNIMPLEMENTED', details: { attribute: 'platform' } });
    expect((err as Error).message).toBe('platform: several platforms in one build are not supported yet (got linux/amd64, linux/arm64); build each platform separately');
  });

  test('as BuildKit names them', () => {
    const o = parseFrontendAttrs({
      filename: 'build/Dockerfile.prod',
      target: 'app',
      'build-arg:A': '1',
      'label:org.example': 'x',
      platform: 'linux/arm64',
      'context:base': 'docker-image://alpine:3',
      'no-cache': 'deps,test',
      'add-hosts': 'db=10.0.0.2,cache=::1',
      'shm-size': '1048576',
      ulimit: 'nofile=1024:2048,nproc=512',
      'force-network-mode': 'none',
      'image-resolve-mode': 'pull',
      contextkey: 'ctx',
      dockerfilekey: 'df',
      'build-arg:BUILDKIT_CACHE_MOUNT_NS': 'ns',
      'build-arg:BUILDKIT_DOCKERFILE_CHECK': 'skip=all',
    });
    expect(o).toMatchObject({
      filename: 'build/Dockerfile.prod',
      target: 'app',
      buildArgs: { A: '1', BUILDKIT_CACHE_MOUNT_NS: 'ns', BUILDKIT_DOCKERFILE_CHECK: 'skip=all' },
      labels: { 'org.example': 'x' },
      targetPlatform: { os: 'linux', architecture: 'arm64' },
      contexts: { base: 'docker-image://alpine:3' },
      noCache: ['deps', 'test'],
      extraHosts: [{ host: 'db', ip: '10.0.0.2' }, { host: 'cache', ip: '::1' }],
      shmSize: 1048576,
      ulimits: [{ name: 'nofile', soft: 1024, hard: 2048 }, { name: 'nproc', soft: 512, hard: 512 }],
      networkMode: 'none',
      resolveMode: 'pull',
      contextKey: 'ctx',
      dockerfileKey: 'df',
      cacheNamespace: 'ns',
      check: 'skip=all',
    });
    expect(parseFrontendAttrs({ 'no-cache': '' }).noCache).toEqual([]);
    expect(parseFrontendAttrs({}).noCache).toBeUndefined();
  });

  test('bad values name the attribute', () => {
    expect(() => parseFrontendAttrs({ ulimit: 'bogus=1' })).toThrow(/ulimit: invalid ulimit type: bogus/);
    expect(() => parseFrontendAttrs({ 'force-network-mode': 'bridge' })).toThrow(/force-network-mode: invalid netmode bridge/);
    expect(() => parseFrontendAttrs({ platform: 'nope' })).toThrow(/platform: failed to parse/); // containerd reads any os/arch pair; one unknown word fails
    expect(() => parseFrontendAttrs({ 'add-hosts': 'db' })).toThrow(/add-hosts: invalid key-value pair db/);
  });
});

describe('git references', () => {
  test('URLs that are git repositories, with ref, subdir and query options', () => {
    expect(parseGitRef('https://github.com/moby/buildkit.git#v0.12:docs')).toEqual({
      isGit: true,
      ref: { remote: 'https://github.com/moby/buildkit.git', ref: 'v0.12', subdir: 'docs', checksum: '', indistinguishableFromLocal: false },
    });
    expect(parseGitRef('git@github.com:moby/buildkit.git#main')).toMatchObject({ isGit: true, ref: { remote: 'git@github.com:moby/buildkit.git', ref: 'main' } });
    expect(parseGitRef('https://host/repo.git?tag=v1&keep-git-dir=1&subdir=x')).toMatchObject({ isGit: true, ref: { ref: 'refs/tags/v1', keepGitDir: true, subdir: 'x' } });
    expect(parseGitRef('git://127.0.0.1:9418/r.git')).toMatchObject({ isGit: true, ref: { remote: 'git://127.0.0.1:9418/r.git' } });
  });

  test('other sources are not', () => {
    expect(parseGitRef('https://example.com/file.tar.gz').isGit).toBe(false);
    expect(parseGitRef('src/app.go').isGit).toBe(false);
    expect(parseGitRef('./repo.git').isGit).toBe(false);
    expect(parseGitRef('https://h/r.git?ref=a&branch=b')).toEqual({ isGit: true, error: 'ref conflicts: "a" vs "refs/heads/b"' });
  });
});
