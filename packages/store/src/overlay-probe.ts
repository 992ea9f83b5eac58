/**
 * Whether overlay mounts work for a new store's root: one real overlay mount
 * (and unmount) under the root, since the kernel, the root's filesystem and
 * the process's privileges all decide.
 *
 * A success is remembered in a marker file, so the next new store on the same
 * filesystem skips the mount (two child processes, and an unmount that syncs
 * the filesystem). The marker's name is a digest of everything the outcome
 * depends on: kernel release, effective uid and capabilities, mount and user
 * namespaces, the root's device and filesystem type, and the mount the root
 * lies on as /proc/self/mountinfo gives it (mount id, device, root, mount
 * point, mount options, filesystem type, source, superblock options: a
 * device number reused by another filesystem, or other options, probe
 * again). It lives in a directory
 * of the effective user's (`<tmpdir>/bkt-overlay-probe-<euid>`, mode 0700);
 * a marker or directory owned by anyone else, or writable by group or others,
 * is not believed. A failure is never remembered: the next new store probes
 * again. Remembering is best effort: any error reading or writing the marker
 * means a probe.
 */
import { createHash } from 'node:crypto';
import { lstat, mkdir, readFile, readlink, realpath, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMountinfo, type MountinfoEntry } from '@bkt/fsutil';
import { mountOverlay, unmount } from './sys.js';

/** What remembers a successful probe; `dir` defaults to the effective user's directory under the temp dir. */
export interface OverlayProbeCache {
  dir: string;
}

/**
 * Whether an overlay mount works under `root` (its `mounts/<session>/probe`
 * is the scratch space), from the marker when one vouches for it.
 */
export async function overlayWorks(root: string, session: string, cache: OverlayProbeCache | null = defaultProbeCache()): Promise<boolean> {
  const marker = cache ? await markerPath(cache, root).catch(() => undefined) : undefined;
  if (marker && (await trusted(marker.path, marker.content))) return true;
  const works = await probeMount(root, session);
  if (works && marker) await remember(cache!.dir, marker.path, marker.content).catch(() => undefined);
  return works;
}

/** The effective user's marker directory. Null when there is no effective uid to key it by. */
export function defaultProbeCache(): OverlayProbeCache | null {
  const euid = process.geteuid?.();
  return euid === undefined ? null : { dir: join(tmpdir(), `bkt-overlay-probe-${euid}`) };
}

/** The marker for `root` and what it must hold; undefined when a fact it depends on cannot be read. */
async function markerPath(cache: OverlayProbeCache, root: string): Promise<{ path: string; content: string } | undefined> {
  const status = await readFile('/proc/self/status', 'utf8');
  const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  if (!capEff) return undefined;
  const [mntNs, userNs, st, fs, real, mountinfo] = await Promise.all([
    readlink('/proc/self/ns/mnt'),
    readlink('/proc/self/ns/user'),
    stat(root),
    statfs(root),
    realpath(root),
    readFile('/proc/self/mountinfo', 'utf8'),
  ]);
  const mount = mountOf(mountinfo, real);
  if (!mount) return undefined;
  const key = ['overlay-probe/2', release(), `euid=${process.geteuid!()}`, `cap=${capEff}`, mntNs, userNs, `dev=${st.dev}`, `fstype=${fs.type}`, `mount=${mount}`].join('\n');
  const name = createHash('sha256').update(key).digest('hex').slice(0, 32);
  return { path: join(cache.dir, name), content: `overlay\n${key}\n` };
}

/**
 * The mountinfo line of the mount `path` (a real path) lies on, as the fields
 * that name the filesystem and how it is mounted: mount id, major:minor,
 * root, mount point, mount options, filesystem type, source, superblock
 * options (not the parent id or propagation fields). The mount is the one
 * with the longest mount point at or above `path`, the last listed of equals
 * (it covers the others); undefined when none is.
 */
export function mountOf(mountinfo: string, path: string): string | undefined {
  let found: MountinfoEntry | undefined;
  for (const e of parseMountinfo(mountinfo)) {
    const covers = e.point === '/' || path === e.point || path.startsWith(`${e.point}/`);
    if (covers && (!found || e.point.length >= found.point.length)) found = e;
  }
  return found?.identity;
}

/** Whether `path` is the effective user's own file, writable by no one else, in such a directory, holding `content`. */
async function trusted(path: string, content: string): Promise<boolean> {
  try {
    const euid = process.geteuid!();
    const own = (st: { uid: number; mode: number }) => st.uid === euid && (st.mode & 0o022) === 0;
    const [dir, file] = await Promise.all([lstat(join(path, '..')), lstat(path)]);
    if (!dir.isDirectory() || !own(dir) || !file.isFile() || !own(file)) return false;
    return (await readFile(path, 'utf8')) === content;
  } catch {
    return false;
  }
}

/** Writes the marker (a temp file renamed into place) once its directory is the effective user's own. */
async function remember(dir: string, path: string, content: string): Promise<void> {
  await mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  const st = await lstat(dir);
  if (!st.isDirectory() || st.uid !== process.geteuid!() || (st.mode & 0o077) !== 0) return;
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, content, { mode: 0o600, flag: 'wx' });
    await rename(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
}

/** Tries one overlay mount under the root. */
async function probeMount(root: string, session: string): Promise<boolean> {
  const probe = join(root, 'mounts', session, 'probe');
  const dirs = ['lower', 'upper', 'work', 'merged'].map((d) => join(probe, d));
  for (const d of dirs) await mkdir(d, { recursive: true });
  try {
    await mountOverlay(dirs[3], [dirs[0]], { upper: dirs[1], work: dirs[2] });
    await unmount(dirs[3]);
    return true;
  } catch {
    return false;
  } finally {
    await rm(probe, { recursive: true, force: true });
  }
}
