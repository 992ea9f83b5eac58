import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { rootPath } from './rootpath.js';
import { resolveUser } from './user.js';

const root = mkdtempSync(join(tmpdir(), 'bkt-rootpath-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

mkdirSync(join(root, 'etc'));
mkdirSync(join(root, 'usr/lib'), { recursive: true });
symlinkSync('/', join(root, 'to-root'));
symlinkSync('../../../../..', join(root, 'usr/lib/up'));
symlinkSync('/etc/../../../outside', join(root, 'escape'));
symlinkSync('loop2', join(root, 'loop1'));
symlinkSync('loop1', join(root, 'loop2'));
symlinkSync('usr/lib', join(root, 'lib'));

describe('rootPath', () => {
  it('keeps every path inside the root', () => {
    expect(rootPath(root, '/')).toBe(root);
    expect(rootPath(root, '../../etc/passwd')).toBe(join(root, 'etc/passwd'));
    expect(rootPath(root, '/to-root/etc')).toBe(join(root, 'etc'));
    expect(rootPath(root, '/usr/lib/up/etc/shadow')).toBe(join(root, 'etc/shadow'));
    expect(rootPath(root, '/escape/x')).toBe(join(root, 'outside/x'));
    expect(rootPath(root, '/lib/x')).toBe(join(root, 'usr/lib/x'));
    expect(rootPath(root, '/missing/../etc')).toBe(join(root, 'etc'));
  });

  it('refuses symlink loops', () => {
    expect(() => rootPath(root, '/loop1/x')).toThrow(/too many levels of symbolic links/);
  });
});

describe('resolveUser', () => {
  const fs = mkdtempSync(join(tmpdir(), 'bkt-user-'));
  afterAll(() => rmSync(fs, { recursive: true, force: true }));
  mkdirSync(join(fs, 'etc'));
  writeFileSync(join(fs, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n# comment\napp:x:100:101:App:/srv/app:/bin/sh\n');
  writeFileSync(join(fs, 'etc/group'), 'root:x:0:\nappgrp:x:101:\ndocker:x:999:app,other\n');

  it('resolves names and numbers from the rootfs files', () => {
    expect(resolveUser(fs, 'app')).toEqual({ uid: 100, gid: 101, additionalGids: [101, 999], home: '/srv/app' });
    expect(resolveUser(fs, '100')).toEqual({ uid: 100, gid: 101, additionalGids: [101, 999], home: '/srv/app' });
    expect(resolveUser(fs, 'app:root')).toEqual({ uid: 100, gid: 0, additionalGids: [0], home: '/srv/app' });
    expect(resolveUser(fs, '5000:5001')).toEqual({ uid: 5000, gid: 5001, additionalGids: [5001], home: '/' });
    expect(resolveUser(fs, '')).toMatchObject({ uid: 0, gid: 0 });
  });

  it('names what it cannot resolve', () => {
    expect(() => resolveUser(fs, 'ghost')).toThrow(/unable to find user ghost/);
    expect(() => resolveUser(fs, 'app:ghosts')).toThrow(/unable to find group ghosts/);
    expect(() => resolveUser(fs, 'a:b:c')).toThrow(/invalid user/);
    expect(() => resolveUser(fs, '99999999999')).toThrow(/out of range/);
  });

  it('does not follow an /etc/passwd symlink out of the rootfs', () => {
    const evil = mkdtempSync(join(tmpdir(), 'bkt-user-evil-'));
    mkdirSync(join(evil, 'etc'));
    symlinkSync('/etc/passwd', join(evil, 'etc/passwd'));
    // The host's /etc/passwd has root; inside `evil` the link points at evil/etc/passwd itself: no users.
    expect(() => resolveUser(evil, 'root')).toThrow();
    rmSync(evil, { recursive: true, force: true });
  });
});
