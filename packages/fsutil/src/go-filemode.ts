/**
 * Go's `os.FileMode`, as tonistiigi/fsutil's `Stat.mode` carries it
 * (`uint32(fi.Mode())`, stat.go `mkstat`), against POSIX `st_mode`: the type
 * is in the high bits and setuid/setgid/sticky move too. BuildKit's session
 * (DiffCopy) and the gateway (ReadDir, StatFile) both send it. Go's side of
 * the mapping is `fillFileStatFromSys` in Go's os/stat_linux.go.
 */
// Go's os.FileMode bits (io/fs/fs.go).
export const GO_MODE_DIR = 2 ** 31;
export const GO_MODE_SYMLINK = 2 ** 27;
export const GO_MODE_DEVICE = 2 ** 26;
export const GO_MODE_NAMED_PIPE = 2 ** 25;
export const GO_MODE_SOCKET = 2 ** 24;
export const GO_MODE_SETUID = 2 ** 23;
export const GO_MODE_SETGID = 2 ** 22;
export const GO_MODE_CHAR_DEVICE = 2 ** 21;
export const GO_MODE_STICKY = 2 ** 20;
export const GO_MODE_IRREGULAR = 2 ** 19;
/** `os.ModeType`: any of these set means "not a regular file". */
export const GO_MODE_TYPE = GO_MODE_DIR + GO_MODE_SYMLINK + GO_MODE_NAMED_PIPE + GO_MODE_SOCKET + GO_MODE_DEVICE + GO_MODE_CHAR_DEVICE + GO_MODE_IRREGULAR;

const S_IFMT = 0o170000;
const S_IFSOCK = 0o140000;
const S_IFLNK = 0o120000;
const S_IFREG = 0o100000;
const S_IFBLK = 0o060000;
const S_IFDIR = 0o040000;
const S_IFCHR = 0o020000;
const S_IFIFO = 0o010000;

/** POSIX `st_mode` → Go `os.FileMode`. */
export function goModeOf(stMode: number): number {
  let mode = stMode & 0o777;
  switch (stMode & S_IFMT) {
    case S_IFBLK:
      mode += GO_MODE_DEVICE;
      break;
    case S_IFCHR:
      mode += GO_MODE_DEVICE + GO_MODE_CHAR_DEVICE;
      break;
    case S_IFDIR:
      mode += GO_MODE_DIR;
      break;
    case S_IFIFO:
      mode += GO_MODE_NAMED_PIPE;
      break;
    case S_IFLNK:
      mode += GO_MODE_SYMLINK;
      break;
    case S_IFSOCK:
      mode += GO_MODE_SOCKET;
      break;
  }
  if (stMode & 0o4000) mode += GO_MODE_SETUID;
  if (stMode & 0o2000) mode += GO_MODE_SETGID;
  if (stMode & 0o1000) mode += GO_MODE_STICKY;
  return mode >>> 0;
}

/** Go `os.FileMode` → POSIX `st_mode` (as fsutil's receivers map it back when they create files). */
export function stModeOf(goMode: number): number {
  const has = (bit: number) => Math.floor(goMode / bit) % 2 === 1;
  let type = S_IFREG;
  if (has(GO_MODE_DIR)) type = S_IFDIR;
  else if (has(GO_MODE_SYMLINK)) type = S_IFLNK;
  else if (has(GO_MODE_DEVICE)) type = has(GO_MODE_CHAR_DEVICE) ? S_IFCHR : S_IFBLK;
  else if (has(GO_MODE_NAMED_PIPE)) type = S_IFIFO;
  else if (has(GO_MODE_SOCKET)) type = S_IFSOCK;
  let mode = type | (goMode & 0o777);
  if (has(GO_MODE_SETUID)) mode |= 0o4000;
  if (has(GO_MODE_SETGID)) mode |= 0o2000;
  if (has(GO_MODE_STICKY)) mode |= 0o1000;
  return mode;
}
