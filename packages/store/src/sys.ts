/**
 * Thin wrappers over the host tools the store needs and Node lacks: mount(8),
 * cp(1) and mknod(1); mount points and umount(8) come from `@bkt/fsutil`.
 */
import { execFile } from 'node:child_process';
import { BktError } from '@bkt/core';
import { unmount as unmountOrThrow } from '@bkt/fsutil';

/** Runs a host command; a non-zero exit is a `BktError('INTERNAL')` carrying its stderr. */
export function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        reject(new BktError('INTERNAL', `${cmd} ${args.join(' ')}: ${String(stderr).trim() || err.message}`, {}, { cause: err }));
      } else resolve(String(stdout));
    });
  });
}

/**
 * Mounts an overlay filesystem at `target`. `lowers` are listed top-most
 * first. Without `upper` it is a read-only view, mounted `nodev`: a device
 * node in a layer cannot be opened through it.
 */
export async function mountOverlay(target: string, lowers: string[], upper?: { upper: string; work: string }): Promise<void> {
  await run('mount', ['-t', 'overlay', 'overlay', '-o', overlayOptions(lowers, upper), target]);
}

/** The option string `mount -t overlay` receives; its length is bounded by the page size. */
export function overlayOptions(lowers: string[], upper?: { upper: string; work: string }): string {
  let opts = `lowerdir=${lowers.join(':')}`;
  if (upper) opts += `,upperdir=${upper.upper},workdir=${upper.work}`;
  else opts += ',nodev';
  return opts;
}

/** Longest overlay option string we hand to mount(2) (one page, minus headroom for the kernel's own options). */
export const MAX_OVERLAY_OPTIONS = 3800;
/** Most lower layers overlayfs stacks in one mount (kernel limit is 500; stay well below). */
export const MAX_OVERLAY_LAYERS = 120;

export { mountsUnder } from '@bkt/fsutil';

/** Unmounts `target` (lazily when busy); never throws: callers check what is left with `mountsUnder`. */
export async function unmount(target: string): Promise<void> {
  await unmountOrThrow(target).catch(() => undefined);
}

/**
 * Copies the tree under `src` into `dst` (which must exist) preserving modes,
 * owners, timestamps, symlinks, hardlinks, special files and xattrs (overlay
 * whiteouts and opaque markers included). `hardlink` links files instead of
 * copying them; only for trees nobody writes to in place.
 */
export async function copyTree(src: string, dst: string, opts: { hardlink?: boolean } = {}): Promise<void> {
  await run('cp', ['-a', '-T', opts.hardlink ? '--link' : '--reflink=auto', src, dst]);
}

/** Creates an overlay whiteout (a 0/0 character device) at `path`. */
export async function mkWhiteout(path: string): Promise<void> {
  await run('mknod', [path, 'c', '0', '0']);
}
