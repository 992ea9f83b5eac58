/**
 * A busybox base root filesystem for tests, made from Debian's busybox-static
 * (`/bin/busybox`). Every test that needs a base image uses it, through the
 * `local` source (`local://base` with `localDirs: { base: dir }`) or pushed to
 * the test registry.
 *
 * The tree: `/bin/busybox` plus one symlink per applet at the path busybox
 * itself lists (`/bin/sh`, `/usr/bin/id`, `/sbin/ip`, …); `/etc/passwd` with
 * `root` (0), `user` (1000) and `nobody` (65534); `/etc/group` where `user`
 * is also a member of `staff` (50) and `wheel` (10), so supplementary groups
 * can be observed; `/tmp` mode 1777; `/root` 0700; `/home/user` owned by
 * 1000:1000; empty `/proc`, `/dev`, `/sys`, `/run`, `/var/tmp` mount points.
 */
import { execFileSync } from 'node:child_process';
import { chmod, chown, copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BktError } from '@bkt/core';

/** Where Debian's busybox-static installs its binary. */
export const BUSYBOX_BINARY = '/bin/busybox';

export const BUSYBOX_PASSWD = [
  'root:x:0:0:root:/root:/bin/sh',
  'user:x:1000:1000:user:/home/user:/bin/sh',
  'nobody:x:65534:65534:nobody:/nonexistent:/bin/false',
  '',
].join('\n');

export const BUSYBOX_GROUP = [
  'root:x:0:',
  'wheel:x:10:root,user',
  'staff:x:50:user',
  'user:x:1000:',
  'nogroup:x:65534:',
  '',
].join('\n');

let appletPaths: string[] | undefined;

/** The applet paths busybox reports (`bin/sh`, `usr/bin/id`, …), relative to `/`. */
export function busyboxApplets(): string[] {
  if (appletPaths) return appletPaths;
  ensureBusybox();
  const out = execFileSync(BUSYBOX_BINARY, ['--list-full'], { encoding: 'utf8' });
  appletPaths = out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('/') && !l.includes('..'));
  return appletPaths;
}

/** Installs `busybox-static` with apt when `/bin/busybox` is missing (we run as root in CI). */
function ensureBusybox(): void {
  if (existsSync(BUSYBOX_BINARY)) return;
  try {
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'busybox-static'], {
      stdio: 'ignore',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  } catch (err) {
    throw new BktError('NOT_FOUND', `${BUSYBOX_BINARY} is missing and installing busybox-static failed`, {}, { cause: err });
  }
  if (!existsSync(BUSYBOX_BINARY)) {
    throw new BktError('NOT_FOUND', `${BUSYBOX_BINARY} is missing after installing busybox-static`);
  }
}

/**
 * Fills `dir` (created when missing) with the busybox rootfs described above
 * and returns `dir`. The binary is copied, not linked, so a test may change
 * the tree freely.
 */
export async function makeBusyboxRootfs(dir: string): Promise<string> {
  const applets = busyboxApplets();
  await mkdir(dir, { recursive: true });
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'proc', 'dev', 'sys', 'run', 'var/tmp', 'home']) {
    await mkdir(join(dir, d), { recursive: true });
  }
  await copyFile(BUSYBOX_BINARY, join(dir, 'bin/busybox'));
  await chmod(join(dir, 'bin/busybox'), 0o755);
  for (const applet of applets) {
    const target = join(dir, applet);
    if (applet === 'bin/busybox' || existsSync(target)) continue;
    await mkdir(dirname(target), { recursive: true });
    await symlink('/bin/busybox', target);
  }

  await writeFile(join(dir, 'etc/passwd'), BUSYBOX_PASSWD, { mode: 0o644 });
  await writeFile(join(dir, 'etc/group'), BUSYBOX_GROUP, { mode: 0o644 });
  // Empty placeholders that runtimes bind-mount over.
  await writeFile(join(dir, 'etc/hosts'), '', { mode: 0o644 });
  await writeFile(join(dir, 'etc/resolv.conf'), '', { mode: 0o644 });
  await writeFile(join(dir, 'etc/hostname'), '', { mode: 0o644 });

  await mkdir(join(dir, 'tmp'), { recursive: true });
  await chmod(join(dir, 'tmp'), 0o1777);
  await chmod(join(dir, 'var/tmp'), 0o1777);
  await mkdir(join(dir, 'root'), { recursive: true });
  await chmod(join(dir, 'root'), 0o700);
  await mkdir(join(dir, 'home/user'), { recursive: true });
  if (process.getuid?.() === 0) await chown(join(dir, 'home/user'), 1000, 1000);
  return dir;
}
