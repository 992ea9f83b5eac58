import { describe, expect, it } from 'vitest';
import { canRequestData, fileStatOf, goModeOf, stModeOf, wireStatOf } from './filemode.js';

// Go's uint32(os.FileMode) for lstat results (os/stat_linux.go fillFileStatFromSys), checked by hand:
// ModeDir=1<<31, ModeSymlink=1<<27, ModeDevice=1<<26, ModeNamedPipe=1<<25, ModeSocket=1<<24,
// ModeSetuid=1<<23, ModeSetgid=1<<22, ModeCharDevice=1<<21, ModeSticky=1<<20.
const cases: [string, number, number][] = [
  ['regular 0644', 0o100644, 0o644],
  ['directory 0755', 0o040755, 2147484141],
  ['symlink 0777', 0o120777, 134218239],
  ['setuid 4755', 0o104755, 8389101],
  ['setgid dir 2775', 0o042775, 2151678461],
  ['sticky dir 1777', 0o041777, 2148532735],
  ['char device 0666', 0o020666, 69206454],
  ['block device 0660', 0o060660, 67109296],
  ['fifo 0600', 0o010600, 33554816],
  ['socket 0755', 0o140755, 16777709],
];

describe('Go os.FileMode <-> st_mode', () => {
  it.each(cases)('%s', (_what, stMode, goMode) => {
    expect(goModeOf(stMode)).toBe(goMode);
    expect(stModeOf(goMode)).toBe(stMode);
  });

  it('only entries without a type bit can have data asked for (fsutil fileCanRequestData)', () => {
    expect(cases.filter(([, st]) => canRequestData(goModeOf(st))).map(([what]) => what)).toEqual(['regular 0644', 'setuid 4755']);
  });

  it('wire stats: socket bit cleared (mkstat), times in nanoseconds, back in milliseconds', () => {
    const socket = wireStatOf({ path: 's', mode: 0o140755, uid: 1, gid: 2, size: 0, mtimeMs: 1_700_000_000_123.456 });
    expect(socket.mode).toBe(0o755);
    expect(socket.modTime).toBe(1_700_000_000_123_456_000);
    const dev = fileStatOf({ path: 'd', mode: 69206454, uid: 0, gid: 0, size: 0, modTime: 1_700_000_000_123_456_789, linkname: '', devmajor: 1, devminor: 3, xattrs: {} });
    expect(dev).toEqual({ path: 'd', mode: 0o020666, uid: 0, gid: 0, size: 0, mtimeMs: 1_700_000_000_123.457, devmajor: 1, devminor: 3 });
    const link = fileStatOf({ ...wireStatOf({ path: 'l', mode: 0o120777, uid: 0, gid: 0, size: 0, mtimeMs: 5, linkname: 'target' }) });
    expect(link).toEqual({ path: 'l', mode: 0o120777, uid: 0, gid: 0, size: 0, mtimeMs: 5, linkname: 'target' });
  });
});
