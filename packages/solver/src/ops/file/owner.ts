/**
 * Owners of FileOp actions (`ChownOpt`): ids given directly, or names looked
 * up in `/etc/passwd` and `/etc/group` of the tree the `NamedUserOpt.input`
 * index designates (the destination, as BuildKit's LLB builder sets it). The
 * files are opened through `resolveInRoot`, so a symlinked `/etc/passwd`
 * cannot read the host's, and only when they are regular files of at most
 * `MAX_DB_SIZE` bytes (a FIFO would hang the read, a device read the host's).
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { BktError } from '@bkt/core';
import { resolveInRoot } from '@bkt/fsutil';
import type * as pb from '@bkt/api/pb';
import { lstatOrNull } from './fsops.js';

export interface Owner {
  uid: number;
  gid: number;
}

/** Looks up a tree by action index (for names); returns its host path. */
export type TreeForIndex = (index: number) => Promise<string>;

/** Largest /etc/passwd or /etc/group read (real ones are a few KiB). */
export const MAX_DB_SIZE = 4 * 1024 * 1024;

/** Rows of a passwd/group file; a missing file has none. */
async function readDb(root: string, file: string): Promise<string[][]> {
  const resolved = await resolveInRoot(root, file, { followFinalSymlink: true });
  const notRegular = () => new BktError('INVALID_ARGUMENT', `${file} of the destination is not a regular file`, { path: file });
  // Checked before opening too: opening a device node can itself have effects.
  const st0 = await lstatOrNull(resolved);
  if (!st0) return [];
  if (!st0.isFile()) throw notRegular();
  let fh;
  try {
    // O_NONBLOCK: opening a FIFO returns at once (and is refused below) instead of waiting for a writer.
    fh = await open(resolved, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw new BktError('INVALID_ARGUMENT', `cannot read ${file} of the destination: ${(err as Error).message}`, { path: file });
  }
  let text: string;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw notRegular();
    if (st.size > MAX_DB_SIZE) {
      throw new BktError('INVALID_ARGUMENT', `${file} of the destination is too large (${st.size} bytes, limit ${MAX_DB_SIZE})`, { path: file });
    }
    const buf = Buffer.alloc(st.size);
    const { bytesRead } = await fh.read(buf, 0, st.size, 0);
    text = buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

async function lookup(tree: TreeForIndex, opt: pb.NamedUserOpt, kind: 'user' | 'group'): Promise<{ id: number; gid?: number }> {
  const file = kind === 'user' ? '/etc/passwd' : '/etc/group';
  if (/^\d+$/.test(opt.name)) return { id: Number(opt.name) };
  if (opt.input < 0) throw new BktError('INVALID_DEFINITION', `invalid ${kind} input index ${opt.input} for "${opt.name}"`);
  const rows = await readDb(await tree(opt.input), file);
  const row = rows.find((r) => r[0] === opt.name);
  if (!row) {
    throw new BktError('INVALID_ARGUMENT', `unknown ${kind} "${opt.name}": not in ${file} of the destination`, {
      attribute: kind,
    });
  }
  return kind === 'user' ? { id: Number(row[2]), gid: Number(row[3]) } : { id: Number(row[2]) };
}

/**
 * Resolves a `ChownOpt` to ids, or null when none is given. As in BuildKit, a
 * user given alone also sets the group: its primary group for a name, the
 * same number for an id. Unlike BuildKit (which silently uses 0), an unknown
 * name is an error.
 */
export async function resolveOwner(chown: pb.ChownOpt | undefined, tree: TreeForIndex): Promise<Owner | null> {
  if (!chown || (!chown.user?.user && !chown.group?.user)) return null;
  const owner: Owner = { uid: 0, gid: 0 };
  const u = chown.user?.user;
  if (u?.$case === 'byID') {
    owner.uid = u.value;
    owner.gid = u.value;
  } else if (u?.$case === 'byName') {
    const found = await lookup(tree, u.value, 'user');
    owner.uid = found.id;
    owner.gid = found.gid ?? found.id;
  }
  const g = chown.group?.user;
  if (g?.$case === 'byID') owner.gid = g.value;
  else if (g?.$case === 'byName') owner.gid = (await lookup(tree, g.value, 'group')).id;
  return owner;
}
