/**
 * Resolving `Meta.user` (`uid`, `name`, `uid:gid`, `name:group`, …) against
 * the container's own /etc/passwd and /etc/group, as runc's
 * `user.GetExecUser` does for Docker and BuildKit.
 */
import { readFileSync } from 'node:fs';
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
  let text: string;
  try {
    text = readFileSync(rootPath(rootfs, file), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.split(':'));
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
