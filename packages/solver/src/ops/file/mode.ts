/**
 * `FileActionCopy.modeStr`: a chmod(1)-style mode, octal (`755`, `4755`) or
 * symbolic (`u+x`, `go-w`, `a=rX,u+w`, `g=u`), applied to each copied
 * entry's current mode as BuildKit does (umask 0: a clause without `ugoa`
 * means `a`).
 */
import { BktError } from '@bkt/core';

/** Applies a parsed mode to a file's permission bits (07777); `isDir` matters for `X`. */
export type ModeSet = (perm: number, isDir: boolean) => number;

const WHO_BITS: Record<string, number> = { u: 0o4700, g: 0o2070, o: 0o1007 };
const CLAUSE = /^([ugoa]*)((?:[-+=](?:[rwxXst]*|[ugo]))+)$/;

export function parseModeStr(modeStr: string): ModeSet {
  const s = modeStr.trim();
  if (/^[0-7]{1,4}$/.test(s)) {
    const abs = parseInt(s, 8);
    return () => abs;
  }
  const clauses = s.split(',').map((c) => {
    const m = CLAUSE.exec(c);
    if (!m) throw new BktError('INVALID_ARGUMENT', `invalid mode "${modeStr}": bad clause "${c}"`, { attribute: 'modeStr' });
    const who = m[1] === '' || m[1]!.includes('a') ? 'ugo' : m[1]!;
    const actions = [...m[2]!.matchAll(/([-+=])([ugo]|[rwxXst]*)/g)].map((a) => ({ op: a[1]!, perms: a[2]! }));
    return { who, actions };
  });
  return (perm: number, isDir: boolean) => {
    let mode = perm & 0o7777;
    for (const { who, actions } of clauses) {
      let whoMask = 0;
      for (const w of who) whoMask |= WHO_BITS[w]!;
      for (const { op, perms } of actions) {
        let bits = 0;
        if (perms === 'u' || perms === 'g' || perms === 'o') {
          const shift = perms === 'u' ? 6 : perms === 'g' ? 3 : 0;
          const rwx = (mode >> shift) & 7;
          bits = (rwx << 6) | (rwx << 3) | rwx;
        } else {
          for (const p of perms) {
            if (p === 'r') bits |= 0o444;
            else if (p === 'w') bits |= 0o222;
            else if (p === 'x') bits |= 0o111;
            else if (p === 'X') {
              if (isDir || (mode & 0o111) !== 0) bits |= 0o111;
            } else if (p === 's') bits |= 0o6000;
            else if (p === 't') bits |= 0o1000;
          }
        }
        bits &= whoMask;
        if (op === '+') mode |= bits;
        else if (op === '-') mode &= ~bits;
        else mode = (mode & ~(whoMask & 0o777 | (whoMask & 0o6000))) | bits;
      }
    }
    return mode;
  };
}
