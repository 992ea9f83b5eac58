/**
 * Resolving `Meta.user` (`uid`, `name`, `uid:gid`, `name:group`, …) against
 * the container's own /etc/passwd and /etc/group, as runc's
 * `user.GetExecUser` does for Docker and BuildKit.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, readlinkSync, realpathSync, type Stats } from 'node:fs';
import { BktError } from '@bkt/core';
import { rootPath } from './rootpath.js';

export interface ResolvedUser {
  uid: number;
  gid: number;
  /** The primary group, then the groups the user is a member of in /etc/group (only the primary when a group was given). */
  additionalGids: number[];
  /** The user's home from /etc/passwd, `/` when unknown. */
  home: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

const NUMERIC = /^\d+$/;
const MAX_ID = 2 ** 31 - 1;
/** The largest /etc/passwd or /etc/group read (runc has no limit; real ones are a few KiB). */
const MAX_FILE_BYTES = 4 * 1024 * 1024;

/** Resolves `spec` inside `rootfs`. Empty means root. Unknown names are `INVALID_ARGUMENT` errors. */
export function resolveUser(rootfs: string, spec: string): ResolvedUser {
  const [userPart = '', groupPart, ...rest] = (spec || '0').split(':');
  if (rest.length > 0 || userPart === '') {
    throw new BktError('INVALID_ARGUMENT', `invalid user "${spec}": expected user[:group]`, { attribute: 'user' });
  }
  const passwd = readPasswd(rootfs);
  let user: PasswdEntry | undefined;
  let uid: number;
  if (NUMERIC.test(userPart)) {
    uid = parseId(userPart, spec);
    user = passwd.find((p) => p.uid === uid);
  } else {
    user = passwd.find((p) => p.name === userPart);
    if (!user) {
      throw new BktError('INVALID_ARGUMENT', `unable to find user ${userPart}: no matching entries in /etc/passwd`, {
        attribute: 'user',
      });
    }
    uid = user.uid;
  }

  const groups = groupPart !== undefined || user ? readGroup(rootfs) : [];
  let gid = user?.gid ?? 0;
  let additionalGids: number[] = [];
  if (groupPart !== undefined && groupPart !== '') {
    if (NUMERIC.test(groupPart)) {
      gid = parseId(groupPart, spec);
    } else {
      const group = groups.find((g) => g.name === groupPart);
      if (!group) {
        throw new BktError('INVALID_ARGUMENT', `unable to find group ${groupPart}: no matching entries in /etc/group`, {
          attribute: 'user',
        });
      }
      gid = group.gid;
    }
  } else if (user) {
    additionalGids = groups.filter((g) => g.members.includes(user!.name) && g.gid !== gid).map((g) => g.gid);
  }
  // The primary group leads the list, as containerd (and so Docker) set it.
  return { uid, gid, additionalGids: [...new Set([gid, ...additionalGids])], home: user?.home || '/' };
}

function parseId(text: string, spec: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n > MAX_ID) {
    throw new BktError('INVALID_ARGUMENT', `invalid user "${spec}": id ${text} out of range`, { attribute: 'user' });
  }
  return n;
}

function readLines(rootfs: string, file: string): string[][] {
  return readDatabase(rootfs, file)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

/**
 * The text of `file` in the container, '' when it is missing. Only a regular
 * file inside `rootfs` is read: a FIFO would block, a device node would read
 * the host's device, and a running container could swap a parent for a
 * symlink between resolving and opening; each is a `BktError` naming the file.
 */
function readDatabase(rootfs: string, file: string): string {
  const host = rootPath(rootfs, file);
  const notRegular = (st: Stats) =>
    new BktError('INVALID_ARGUMENT', `${file} in the container's root is not a regular file (${kindOf(st)}): cannot resolve the user`, {
      attribute: 'user',
      path: file,
    });
  // Checked before opening too, so that a device node is never opened.
  try {
    const st = lstatSync(host);
    if (!st.isFile()) throw notRegular(st);
  } catch (err) {
    if (err instanceof BktError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return '';
  }
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: the last component is not a symlink.
    fd = openSync(host, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return '';
    throw new BktError('INVALID_ARGUMENT', `cannot read ${file} in the container's root (${host}): ${code ?? String(err)}`, {
      attribute: 'user',
      path: file,
    });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw notRegular(st);
    const root = realpathSync(rootfs);
    if (!readlinkSync(`/proc/self/fd/${fd}`).startsWith(root === '/' ? root : root + '/')) {
      throw new BktError('INVALID_ARGUMENT', `${file} resolves outside the container's root: cannot resolve the user`, {
        attribute: 'user',
        path: file,
      });
    }
    if (st.size > MAX_FILE_BYTES) {
      throw new BktError('INVALID_ARGUMENT', `${file} in the container's root is larger than ${MAX_FILE_BYTES} bytes`, {
        attribute: 'user',
        path: file,
      });
    }
    const buf = Buffer.alloc(st.size);
    let n = 0;
    while (n < buf.length) {
      const read = readSync(fd, buf, n, buf.length - n, n);
      if (read === 0) break;
      n += read;
    }
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a file';
}

function readPasswd(rootfs: string): PasswdEntry[] {
  return readLines(rootfs, '/etc/passwd')
    .filter((f) => f.length >= 4 && NUMERIC.test(f[2]) && NUMERIC.test(f[3]))
    .map((f) => ({ name: f[0], uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? '' }));
}

function readGroup(rootfs: string): GroupEntry[] {
  return readLines(rootfs, '/etc/group')
    .filter((f) => f.length >= 3 && NUMERIC.test(f[2]))
    .map((f) => ({ name: f[0], gid: Number(f[2]), members: (f[3] ?? '').split(',').filter(Boolean) }));
}
