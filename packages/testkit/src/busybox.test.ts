import { execFileSync } from 'node:child_process';
import { lstat, mkdtemp, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { busyboxApplets, makeBusyboxRootfs } from './busybox.js';

describe('makeBusyboxRootfs', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('makes a tree whose /bin/sh runs and whose users resolve', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bkt-busybox-'));
    dirs.push(dir);
    await makeBusyboxRootfs(join(dir, 'rootfs'));
    const root = join(dir, 'rootfs');

    expect(await readlink(join(root, 'bin/sh'))).toBe('/bin/busybox');
    expect(await readlink(join(root, 'usr/bin/id'))).toBe('/bin/busybox');
    expect(busyboxApplets().length).toBeGreaterThan(100);
    expect((await stat(join(root, 'tmp'))).mode & 0o7777).toBe(0o1777);
    expect((await stat(join(root, 'root'))).mode & 0o7777).toBe(0o700);
    expect((await lstat(join(root, 'bin/busybox'))).isFile()).toBe(true);
    const passwd = await readFile(join(root, 'etc/passwd'), 'utf8');
    expect(passwd).toMatch(/^root:x:0:0:/m);
    expect(passwd).toMatch(/^user:x:1000:1000:/m);
    expect(await readFile(join(root, 'etc/group'), 'utf8')).toMatch(/^staff:x:50:user$/m);

    // The copied binary runs, and resolves applets from inside the tree (chroot).
    const out = execFileSync('chroot', [root, '/bin/sh', '-c', 'id user; echo ok > /tmp/x; cat /tmp/x'], {
      encoding: 'utf8',
    });
    expect(out).toContain('uid=1000(user) gid=1000(user)');
    expect(out).toContain('staff');
    expect(out).toContain('ok');
  });
});
