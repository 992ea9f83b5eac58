/**
 * fsutil's wire `Stat` against core's `FileStat`: the mode is Go's
 * `os.FileMode` (`goModeOf`/`stModeOf` of `@bkt/fsutil`), the core seam
 * speaks `st_mode`; these convert at the session's edge.
 */
import type { Stat } from '@bkt/api/fsutil';
import type { FileStat } from '@bkt/core';
import { GO_MODE_SOCKET, GO_MODE_TYPE, goModeOf, stModeOf } from '@bkt/fsutil';

export { goModeOf, stModeOf };

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFBLK = 0o060000;
const S_IFCHR = 0o020000;

/**
 * fsutil's `fileCanRequestData` (send.go): only an entry with no type bit
 * has an id the receiver may ask data for — hardlinks included, though a
 * receiver links them instead. "avoid updating this function as it needs to
 * match between sender/receiver".
 */
export function canRequestData(goMode: number): boolean {
  return (goMode & GO_MODE_TYPE) === 0;
}

/** The reserved xattr carrying a stat's change token over bkt's DiffCopy (see `fsutil/batch.ts`). */
export const XATTR_CHANGE = 'bkt.change';

/** A POSIX mode as a wire `Stat`'s: Go's mode bits with the socket bit cleared (mkstat clears it). */
export function wireModeOf(stMode: number): number {
  return (goModeOf(stMode) & ~GO_MODE_SOCKET) >>> 0;
}

/**
 * A core stat as fsutil's wire `Stat`: Go mode bits with the socket bit
 * cleared (mkstat clears it), modification time in nanoseconds. `extended`
 * (bkt's DiffCopy only): the change token travels as xattr `bkt.change`.
 */
export function wireStatOf(e: FileStat, extended = false): Stat {
  return {
    path: e.path,
    mode: wireModeOf(e.mode),
    uid: e.uid,
    gid: e.gid,
    size: e.size,
    modTime: Math.round(e.mtimeMs * 1e6),
    linkname: e.linkname ?? '',
    devmajor: e.devmajor ?? 0,
    devminor: e.devminor ?? 0,
    xattrs: extended && e.change !== undefined ? { [XATTR_CHANGE]: Buffer.from(e.change) } : {},
  };
}

/**
 * fsutil's wire `Stat` as a core stat: POSIX mode, milliseconds (rounded to
 * the microsecond: the nanoseconds travel through a double). A hardlink's
 * size is 0, as core's `FileStat` has it (fsutil sends its file's size).
 */
export function fileStatOf(s: Stat): FileStat {
  const mode = stModeOf(s.mode);
  const type = mode & S_IFMT;
  const hardlink = type === S_IFREG && s.linkname !== '';
  const entry: FileStat = { path: s.path, mode, uid: s.uid, gid: s.gid, size: hardlink ? 0 : s.size, mtimeMs: Math.round(s.modTime / 1e3) / 1e3 };
  if (s.linkname !== '') entry.linkname = s.linkname;
  const change = s.xattrs[XATTR_CHANGE];
  if (change !== undefined) entry.change = (Buffer.isBuffer(change) ? change : Buffer.from(change)).toString('utf8');
  if (type === S_IFCHR || type === S_IFBLK) {
    entry.devmajor = s.devmajor;
    entry.devminor = s.devminor;
  }
  return entry;
}
