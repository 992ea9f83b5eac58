import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { END_OF_TAR, TarType, encodeHeader, padding, type TarHeader } from './tar-header.js';

/** A tar of `entries` (bodies as given) written by encodeHeader. */
function tarOf(entries: (TarHeader & { body?: string })[]): Buffer {
  const parts: Buffer[] = [];
  for (const { body, ...h } of entries) {
    const data = Buffer.from(body ?? '');
    parts.push(encodeHeader({ ...h, size: data.length }), data, Buffer.alloc(padding(data.length)));
  }
  parts.push(END_OF_TAR);
  return Buffer.concat(parts);
}

const work = mkdtempSync(join(tmpdir(), 'bkt-tar-header-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const BIG: (TarHeader & { body?: string })[] = [
  { name: 'big', mode: 0o644, uid: 300000, gid: 2097152, size: 0, mtimeMs: 1_600_000_000_000, type: TarType.file, body: 'hello\n' },
  { name: 'big-dir/', mode: 0o755, uid: 262144, gid: 7, size: 0, mtimeMs: 0, type: TarType.directory },
  { name: 'big-link', mode: 0o777, uid: 5, gid: 4294967294, size: 0, mtimeMs: 0, type: TarType.symlink, linkname: 'big' },
  { name: `${'d'.repeat(120)}/long`, mode: 0o600, uid: 300001, gid: 300002, size: 0, mtimeMs: 0, type: TarType.file, body: 'x' },
  { name: 'small', mode: 0o644, uid: 262143, gid: 262143, size: 0, mtimeMs: 0, type: TarType.file, body: 'y' },
];

describe('encodeHeader owner ids', () => {
  it('writes uids and gids over 262143 as pax records that GNU tar reads back', () => {
    const file = join(work, 'gnu.tar');
    writeFileSync(file, tarOf(BIG));
    const lines = execFileSync('tar', ['--numeric-owner', '-tvf', file], { encoding: 'utf8' }).trim().split('\n');
    const owners = lines.map((l) => l.split(/\s+/)[1]);
    expect(owners).toEqual(['300000/2097152', '262144/7', '5/4294967294', '300001/300002', '262143/262143']);
    expect(lines.map((l) => l.split(/\s+/)[5])).toEqual(['big', 'big-dir/', 'big-link', `${'d'.repeat(120)}/long`, 'small']);
  });

  it('writes them so Python\'s tarfile reads them back, names, link targets and contents intact', () => {
    const file = join(work, 'py.tar');
    writeFileSync(file, tarOf(BIG));
    const out = execFileSync('python3', ['-c', `
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    for m in t.getmembers():
        body = t.extractfile(m).read().decode() if m.isfile() else ''
        print(m.name, m.uid, m.gid, m.linkname or '-', repr(body))
`, file], { encoding: 'utf8' });
    expect(out.trim().split('\n')).toEqual([
      "big 300000 2097152 - 'hello\\n'",
      "big-dir 262144 7 - ''",
      "big-link 5 4294967294 big ''",
      `${'d'.repeat(120)}/long 300001 300002 - 'x'`,
      "small 262143 262143 - 'y'",
    ]);
  });

  it('keeps a ustar header for ids up to 2097151 (7 octal digits above 262143, as Go writes them); a pax header above', () => {
    const h = encodeHeader({ name: 'small', mode: 0o644, uid: 262143, gid: 0, size: 1, mtimeMs: 0, type: TarType.file });
    expect(h.length).toBe(512);
    expect(h.subarray(108, 124).toString('latin1')).toBe('777777 \x00' + '000000 \x00');
    const g = encodeHeader({ name: 'mid', mode: 0o644, uid: 300000, gid: 2097151, size: 1, mtimeMs: 0, type: TarType.file });
    expect(g.length).toBe(512);
    expect(g.subarray(108, 124).toString('latin1')).toBe('1111740\x00' + '7777777\x00');
    const p = encodeHeader({ name: 'big', mode: 0o644, uid: 300000, gid: 2097152, size: 1, mtimeMs: 0, type: TarType.file });
    expect(p.length).toBe(1536);
    expect(p.subarray(512, 1024).toString('latin1')).toMatch(/^12 path=big\n15 gid=2097152\n\x00/);
    // The entry's own header: the uid that fits, 0 for the gid that does not.
    expect(p.subarray(1024 + 108, 1024 + 124).toString('latin1')).toBe('1111740\x00' + '000000 \x00');
  });
});
