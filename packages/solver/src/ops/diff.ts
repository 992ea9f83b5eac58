/**
 * DiffOp (op kind `diff`): the changes that turn `lower` into `upper`, as a
 * layer, such that `merge(lower, diff(lower, upper))` has the tree of `upper`.
 * New and changed entries are copied (with mode, owner, times); a deleted
 * entry becomes an overlay whiteout (a 0/0 character device) in the layer,
 * which a merge applies. As BuildKit: scratch lower gives upper itself;
 * identical inputs give scratch.
 *
 * An entry is changed when its type, mode, owner, size, mtime, link target,
 * device number or (for equal-looking files) content differs.
 */
import type { Stats } from 'node:fs';
import { chmod, copyFile, constants, lchown, lutimes, mkdir, readdir, readFile, readlink, symlink } from 'node:fs/promises';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BktError, type BuildContext, type OpExecutor, type OpInput, type Snapshot } from '@bkt/core';
import type * as pb from '@bkt/api/pb';
import { copySpecial, lstatOrNull } from './file/fsops.js';

const run = promisify(execFile);

/** Creates an overlay whiteout at `p`. */
async function whiteout(p: string): Promise<void> {
  await run('mknod', [p, 'c', '0', '0']);
}

async function sameContent(a: string, b: string, size: number): Promise<boolean> {
  if (size > 64 << 20) {
    // Large files with identical size and mtime: compare in chunks without holding both whole.
    const { open } = await import('node:fs/promises');
    const [fa, fb] = await Promise.all([open(a), open(b)]);
    try {
      const ba = Buffer.alloc(1 << 20);
      const bb = Buffer.alloc(1 << 20);
      for (let off = 0; off < size; off += ba.length) {
        const [ra, rb] = await Promise.all([fa.read(ba, 0, ba.length, off), fb.read(bb, 0, bb.length, off)]);
        if (ra.bytesRead !== rb.bytesRead || !ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false;
      }
      return true;
    } finally {
      await Promise.all([fa.close(), fb.close()]);
    }
  }
  const [x, y] = await Promise.all([readFile(a), readFile(b)]);
  return x.equals(y);
}

async function changed(l: Stats, u: Stats, lp: string, up: string): Promise<boolean> {
  if ((l.mode & 0o170000) !== (u.mode & 0o170000)) return true;
  if (l.mode !== u.mode || l.uid !== u.uid || l.gid !== u.gid) return true;
  if (u.isSymbolicLink()) return (await readlink(lp)) !== (await readlink(up));
  if (u.isCharacterDevice() || u.isBlockDevice()) return l.rdev !== u.rdev;
  if (u.isFile()) {
    if (l.size !== u.size || l.mtimeMs !== u.mtimeMs) return true;
    return !(await sameContent(lp, up, u.size));
  }
  return false;
}

/** Copies one non-directory entry (metadata included). */
async function copyEntry(src: string, dst: string, st: Stats): Promise<void> {
  if (st.isFile()) await copyFile(src, dst, constants.COPYFILE_FICLONE);
  else if (st.isSymbolicLink()) await symlink(await readlink(src), dst);
  else await copySpecial(dst, st);
  if (!(await lstatOrNull(dst))) return;
  await lchown(dst, st.uid, st.gid);
  if (!st.isSymbolicLink()) await chmod(dst, st.mode & 0o7777);
  await lutimes(dst, st.atimeMs / 1000, st.mtimeMs / 1000);
}

/**
 * Writes into `out` (an empty directory) the layer from `lower` (null: empty)
 * to `upper`.
 */
export async function writeDiff(lower: string | null, upper: string, out: string, signal?: AbortSignal): Promise<void> {
  /** Directories of `out` whose metadata must be set last (children change their mtime). */
  const dirs: { rel: string; st: Stats }[] = [];
  const made = new Set<string>(['']);

  const ensureDir = async (rel: string): Promise<void> => {
    if (made.has(rel)) return;
    await ensureDir(path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel));
    const st = (await lstatOrNull(path.join(upper, rel)))!;
    await mkdir(path.join(out, rel));
    made.add(rel);
    dirs.push({ rel, st });
  };

  const copyTree = async (rel: string, st: Stats): Promise<void> => {
    signal?.throwIfAborted();
    if (!st.isDirectory()) return copyEntry(path.join(upper, rel), path.join(out, rel), st);
    await ensureDir(rel);
    for (const name of (await readdir(path.join(upper, rel))).sort()) {
      const r = `${rel}/${name}`.replace(/^\//, '');
      await copyTree(r, (await lstatOrNull(path.join(upper, r)))!);
    }
  };

  const walk = async (rel: string): Promise<void> => {
    signal?.throwIfAborted();
    const upperNames = (await readdir(path.join(upper, rel))).sort();
    const lowerNames = lower ? new Set(await readdir(path.join(lower, rel)).catch(() => [] as string[])) : new Set<string>();
    const upperSet = new Set(upperNames);
    for (const name of [...lowerNames].sort()) {
      if (upperSet.has(name)) continue;
      await ensureDir(rel);
      await whiteout(path.join(out, rel, name));
    }
    for (const name of upperNames) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const u = (await lstatOrNull(path.join(upper, r)))!;
      const l = lowerNames.has(name) ? await lstatOrNull(path.join(lower!, r)) : null;
      if (u.isDirectory()) {
        if (l?.isDirectory()) {
          if (l.mode !== u.mode || l.uid !== u.uid || l.gid !== u.gid || l.mtimeMs !== u.mtimeMs) await ensureDir(r);
          await walk(r);
        } else {
          // New directory, or one replacing a non-directory: all of it is new.
          await copyTree(r, u);
        }
      } else if (!l || (await changed(l, u, path.join(lower!, r), path.join(upper, r)))) {
        await ensureDir(rel);
        await copyEntry(path.join(upper, r), path.join(out, r), u);
      }
    }
  };

  await walk('');
  for (const { rel, st } of dirs.reverse()) {
    const p = path.join(out, rel);
    await lchown(p, st.uid, st.gid);
    await chmod(p, st.mode & 0o7777);
    await lutimes(p, st.atimeMs / 1000, st.mtimeMs / 1000);
  }
}

export function createDiffOpExecutor(): OpExecutor<pb.DiffOp> {
  return {
    kind: 'diff',
    async run(diff: pb.DiffOp, inputs: OpInput[], ctx: BuildContext): Promise<(Snapshot | null)[]> {
      const pick = (name: string, idx: number | undefined): Snapshot | null => {
        if (idx === undefined || idx === -1) return null;
        if (idx < 0 || idx >= inputs.length) {
          throw new BktError('INVALID_DEFINITION', `diff ${name} input index ${idx} out of range (${inputs.length} inputs)`);
        }
        return inputs[idx]!.snapshot;
      };
      const lower = pick('lower', diff.lower?.input);
      const upper = pick('upper', diff.upper?.input);
      if (!lower) return [upper];
      if (upper && lower.id === upper.id) return [null];

      const lowerM = await lower.mount();
      const upperM = upper ? await upper.mount() : null;
      const out = await ctx.snapshotter.prepare(null, { description: 'diff' });
      try {
        if (upperM) await writeDiff(lowerM.path, upperM.path, out.path, ctx.signal);
        else await writeDeletions(lowerM.path, out.path);
        return [await out.commit()];
      } catch (err) {
        await out.discard();
        throw err;
      } finally {
        await upperM?.release();
        await lowerM.release();
      }
    },
  };
}

/** The diff from a tree to scratch: a whiteout for each top-level entry. */
async function writeDeletions(lower: string, out: string): Promise<void> {
  for (const name of (await readdir(lower)).sort()) await whiteout(path.join(out, name));
}
