/**
 * Mount points, as the store and the runc worker handle them: which mounts
 * lie under a directory (from /proc/self/mountinfo), and unmounting one.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { BktError } from '@bkt/core';

/** One line of /proc/self/mountinfo (proc(5)), escapes (`\ooo`) decoded in the mount point. */
export interface MountinfoEntry {
  /** The fields that name the filesystem and how it is mounted, as written: mount id, major:minor, root, mount point, mount options, filesystem type, source, superblock options (not the parent id or propagation fields). */
  identity: string;
  /** The mount point. */
  point: string;
}

/** The entries of mountinfo text `text`, in its order; malformed lines are left out. */
export function parseMountinfo(text: string): MountinfoEntry[] {
  const entries: MountinfoEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const dash = f.indexOf('-', 6);
    if (dash < 0 || f.length < dash + 4) continue;
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    const point = f[4]!.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
    entries.push({ identity: [f[0], f[2], f[3], f[4], f[5], f[dash + 1], f[dash + 2], f[dash + 3]].join(' '), point });
  }
  return entries;
}

/** Mount points at `dir` or under it, deepest first (the order to unmount them in). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'))
    .map((e) => e.point)
    .filter((point) => point === dir || point.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}

/**
 * Unmounts `path`; a busy mount is detached lazily (`umount -l`). A path that
 * is not mounted is not an error; a mount that cannot be removed either way
 * is `BktError('INTERNAL')` naming it and umount's message.
 */
export async function unmount(path: string): Promise<void> {
  const first = await umount([path]);
  if (first.ok || NOT_MOUNTED.test(first.stderr)) return;
  const lazy = await umount(['-l', path]);
  if (!lazy.ok && !NOT_MOUNTED.test(lazy.stderr)) {
    throw new BktError('INTERNAL', `cannot unmount ${path}: ${lazy.stderr.trim() || first.stderr.trim()}`, { path });
  }
}

const NOT_MOUNTED = /not mounted|no mount point|not found|No such file/i;

function umount(args: string[]): Promise<{ ok: boolean; stderr: string }> {
  return new Promise((resolve) => execFile('umount', args, (err, _stdout, stderr) => resolve({ ok: !err, stderr: String(stderr) })));
}

/** Whether process `pid` exists (EPERM: it exists, owned by another user). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
