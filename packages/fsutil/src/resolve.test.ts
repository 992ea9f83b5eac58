import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { joinInRoot, resolveInRoot } from './resolve.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'fsutil-resolve-'));
  await mkdir(path.join(root, 'etc'));
  await writeFile(path.join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
  await mkdir(path.join(root, 'a/b'), { recursive: true });
});
afterEach(() => rm(root, { recursive: true, force: true }));

describe('resolveInRoot', () => {
  it('clamps .. at the root', async () => {
    expect(await resolveInRoot(root, '../../etc/passwd')).toBe(path.join(root, 'etc/passwd'));
    expect(await resolveInRoot(root, '/a/../../../..')).toBe(root);
    expect(await resolveInRoot(root, 'a/b/../../x')).toBe(path.join(root, 'x'));
  });

  it('resolves an absolute symlink relative to the root', async () => {
    await symlink('/etc', path.join(root, 'a/hostetc'));
    expect(await resolveInRoot(root, 'a/hostetc/passwd')).toBe(path.join(root, 'etc/passwd'));
  });

  it('resolves a relative symlink that climbs out, clamped', async () => {
    await symlink('../../../../../../etc', path.join(root, 'a/b/up'));
    expect(await resolveInRoot(root, '/a/b/up/passwd')).toBe(path.join(root, 'etc/passwd'));
    await symlink('../../../../../../etc/shadow', path.join(root, 'a/esc'));
    expect(await resolveInRoot(root, '/a/esc', { followFinalSymlink: true })).toBe(path.join(root, 'etc/shadow'));
  });

  it('leaves the final symlink unless asked to follow it', async () => {
    await symlink('/etc/passwd', path.join(root, 'link'));
    expect(await resolveInRoot(root, 'link')).toBe(path.join(root, 'link'));
    expect(await resolveInRoot(root, 'link', { followFinalSymlink: true })).toBe(path.join(root, 'etc/passwd'));
  });

  it('re-checks symlinks after .. out of a missing component', async () => {
    await symlink('/etc', path.join(root, 'lnk'));
    expect(await resolveInRoot(root, 'missing/../lnk/passwd')).toBe(path.join(root, 'etc/passwd'));
  });

  it('appends missing components lexically', async () => {
    expect(await resolveInRoot(root, '/a/new/deeper')).toBe(path.join(root, 'a/new/deeper'));
  });

  it('reports symlink loops', async () => {
    await symlink('l2', path.join(root, 'l1'));
    await symlink('l1', path.join(root, 'l2'));
    await expect(resolveInRoot(root, 'l1/x')).rejects.toThrow(/too many levels/);
  });

  it('never leaves the root (property over link targets)', async () => {
    const targets = ['/', '..', '../..', '/..', 'a/../../..', '/etc/../..', '.', 'b/../../../x'];
    for (const [i, t] of targets.entries()) {
      await symlink(t, path.join(root, `t${i}`));
      for (const suffix of ['', '/x', '/../..']) {
        const got = await resolveInRoot(root, `t${i}${suffix}`, { followFinalSymlink: true });
        expect(got === root || got.startsWith(root + '/')).toBe(true);
      }
    }
  });
});

describe('joinInRoot', () => {
  it('clamps lexically', () => {
    expect(joinInRoot('/r', '../../x/./y')).toBe('/r/x/y');
  });
});
