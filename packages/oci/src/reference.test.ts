import { describe, expect, it } from 'vitest';
import { isBktError } from '@bkt/core';
import { formatReference, normalizeReference, parseReference, splitReference } from './reference.js';

const D = `sha256:${'a'.repeat(64)}`;

describe('parseReference', () => {
  it.each([
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['library/busybox', 'docker.io/library/busybox:latest'],
    ['index.docker.io/foo/bar', 'docker.io/foo/bar:latest'],
    ['docker.io/busybox', 'docker.io/library/busybox:latest'],
    ['ghcr.io/a/b/c:v1', 'ghcr.io/a/b/c:v1'],
    ['localhost/app', 'localhost/app:latest'],
    ['localhost:5000/app:dev', 'localhost:5000/app:dev'],
    ['127.0.0.1:5000/a/b', '127.0.0.1:5000/a/b:latest'],
    ['[::1]:5000/a', '[::1]:5000/a:latest'],
    [`busybox@${D}`, `docker.io/library/busybox@${D}`],
    [`busybox:1@${D}`, `docker.io/library/busybox:1@${D}`],
    ['foo/bar__baz.qux-x:tag_1.2-rc', 'docker.io/foo/bar__baz.qux-x:tag_1.2-rc'],
  ])('%s → %s', (input, want) => {
    expect(formatReference(parseReference(input))).toBe(want);
  });

  it('splits registry, repository, tag and digest', () => {
    expect(parseReference(`127.0.0.1:5000/a/b:t@${D}`)).toEqual({
      registry: '127.0.0.1:5000',
      repository: 'a/b',
      tag: 't',
      digest: D,
    });
  });

  it.each([
    ['', 'empty reference'],
    ['Busybox', 'lowercase'],
    ['busybox:', 'not a valid tag'],
    ['busybox:-x', 'not a valid tag'],
    ['busybox@sha256:abc', 'not a sha256 digest'],
    ['a//b', 'not a valid path component'],
    ['a/b-/c', 'not a valid path component'],
    ['bad_host.com:x/a', 'not a valid registry host'],
    [`x/${'a'.repeat(300)}`, 'longer than 255'],
  ])('rejects %j with an error naming it', (input, why) => {
    let err: unknown;
    try {
      parseReference(input);
    } catch (e) {
      err = e;
    }
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toContain(`"${input}"`);
    expect((err as Error).message).toContain(why);
  });
});

describe('normalizeReference', () => {
  it('is the canonical string of a parsed reference', () => {
    expect(normalizeReference('busybox')).toBe('docker.io/library/busybox:latest');
    expect(normalizeReference(`me/app@${D}`)).toBe(`docker.io/me/app@${D}`);
  });

  it('refuses an image ID as a name, as distribution does', () => {
    expect(() => normalizeReference('a'.repeat(64))).toThrow(/image ID, not a name/);
    expect(normalizeReference(`${'a'.repeat(64)}:1`)).toBe(`docker.io/library/${'a'.repeat(64)}:1`);
  });
});

describe('splitReference', () => {
  it('splits name, tag and digest without checking them', () => {
    expect(splitReference('localhost:5000/a/b:t@sha256:x')).toEqual({ name: 'localhost:5000/a/b', tag: 't', digest: 'sha256:x' });
    expect(splitReference('localhost:5000/a')).toEqual({ name: 'localhost:5000/a' });
    expect(splitReference('store/../x:')).toEqual({ name: 'store/../x', tag: '' });
  });
});
