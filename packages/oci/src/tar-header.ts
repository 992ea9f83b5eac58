/**
 * The tar headers of bkt's layer tars, byte for byte: ustar headers (numeric
 * owners, empty user and group names, octal fields of 6 digits plus a space,
 * 11 for size and mtime; base-256 for a size or mtime that does not fit), and
 * a pax header (`path`, `linkpath`) before an entry whose name is not ASCII
 * or does not fit the ustar name and prefix fields, or whose link target is
 * over 100 bytes. These are the bytes tar-stream 3 writes, which earlier
 * releases used: a layer's diff id does not depend on which writer made it.
 * Owner ids as Go's archive/tar (BuildKit) writes them: one over 262143 and
 * up to 0o7777777 (2097151) as 7 octal digits and a NUL (the 8-byte field
 * full, still ustar); a larger one in a pax header (`uid`, `gid` records,
 * after `path` and `linkpath`), the ustar field holding 0.
 */

/** Tar type flags. */
export const TarType = {
  file: 0,
  link: 1,
  symlink: 2,
  characterDevice: 3,
  blockDevice: 4,
  directory: 5,
  fifo: 6,
  paxHeader: 72,
} as const;

export interface TarHeader {
  /** The entry's path; a directory's ends with `/`. */
  name: string;
  /** Permission bits (`& 0o7777`). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of the body (0 for anything but a regular file). */
  size: number;
  /** Modification time in milliseconds since the epoch (written as whole seconds, rounded down). */
  mtimeMs: number;
  type: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
}

const ZEROS = '0000000000000000000';
const SEVENS = '7777777777777777777';

function encodeOct(val: number, n: number): string {
  const s = val.toString(8);
  if (s.length > n) return `${SEVENS.slice(0, n)} `;
  return `${ZEROS.slice(0, n - s.length)}${s} `;
}

function encodeSizeBin(num: number, buf: Buffer, off: number): void {
  buf[off] = num < 0 ? 0xff : 0x80;
  for (let i = 11; i > 0; i--) {
    buf[off + i] = num & 0xff;
    num = Math.floor(num / 0x100);
  }
}

function encodeSize(num: number, buf: Buffer, off: number): void {
  if (num < 0 || num.toString(8).length > 11) encodeSizeBin(num, buf, off);
  else buf.write(encodeOct(num, 11), off, 'latin1');
}

function cksum(block: Buffer): number {
  let sum = 8 * 32;
  for (let i = 0; i < 148; i++) sum += block[i]!;
  for (let j = 156; j < 512; j++) sum += block[j]!;
  return sum;
}

const USTAR = Buffer.from([0x75, 0x73, 0x74, 0x61, 0x72, 0x00, 0x30, 0x30]); // "ustar\0" "00"

/** One ustar header block, or undefined when the entry needs a pax header. */
function ustar(h: TarHeader): Buffer | undefined {
  let name = h.name;
  let prefix = '';
  if (Buffer.byteLength(name) !== name.length) return undefined; // not ASCII
  while (name.length > 100) {
    const i = name.indexOf('/');
    if (i === -1) return undefined;
    prefix += prefix ? `/${name.slice(0, i)}` : name.slice(0, i);
    name = name.slice(i + 1);
  }
  if (name.length > 100 || prefix.length > 155) return undefined;
  if (h.linkname && Buffer.byteLength(h.linkname) > 100) return undefined;
  if (!fitsId(h.uid) || !fitsId(h.gid)) return undefined;
  const buf = Buffer.alloc(512);
  buf.write(name, 0, 'latin1');
  buf.write(encodeOct(h.mode & 0o7777, 6), 100, 'latin1');
  writeId(buf, h.uid, 108);
  writeId(buf, h.gid, 116);
  encodeSize(h.size, buf, 124);
  encodeSize(Math.floor(h.mtimeMs / 1000) || 0, buf, 136);
  buf[156] = 48 + h.type;
  if (h.linkname) buf.write(h.linkname, 157, 'utf8');
  USTAR.copy(buf, 257);
  buf.write(encodeOct(h.devmajor || 0, 6), 329, 'latin1');
  buf.write(encodeOct(h.devminor || 0, 6), 337, 'latin1');
  if (prefix) buf.write(prefix, 345, 'latin1');
  buf.write(encodeOct(cksum(buf), 6), 148, 'latin1');
  return buf;
}

/** Whether a uid or gid fits its 8-byte ustar field (7 octal digits and a NUL). */
function fitsId(id: number): boolean {
  return id <= 0o7777777;
}

/** A uid or gid that fits: tar-stream's 6 digits and a space up to 262143, 7 digits (then the zeroed NUL) above. */
function writeId(buf: Buffer, id: number, off: number): void {
  if (id <= 0o777777) buf.write(encodeOct(id, 6), off, 'latin1');
  else buf.write(id.toString(8), off, 'latin1');
}

/** A pax record: its length in decimal (counting itself), then ` key=value\n`. */
function paxRecord(str: string): string {
  const len = Buffer.byteLength(str);
  let digits = Math.floor(Math.log(len) / Math.log(10)) + 1;
  if (len + digits >= Math.pow(10, digits)) digits++;
  return `${len + digits}${str}`;
}

/** Zero bytes padding `size` bytes of a body to the next 512-byte block. */
export function padding(size: number): number {
  const rest = size & 511;
  return rest ? 512 - rest : 0;
}

/** The header blocks of one entry (512 bytes, or a pax header, its records and the entry's header). */
export function encodeHeader(h: TarHeader): Buffer {
  const plain = ustar(h);
  if (plain) return plain;
  let records = '';
  if (h.name) records += paxRecord(` path=${h.name}\n`);
  if (h.linkname) records += paxRecord(` linkpath=${h.linkname}\n`);
  if (!fitsId(h.uid)) records += paxRecord(` uid=${h.uid}\n`);
  if (!fitsId(h.gid)) records += paxRecord(` gid=${h.gid}\n`);
  const pax = Buffer.from(records);
  const paxHeader: TarHeader = {
    name: 'PaxHeader',
    mode: h.mode,
    uid: fitsId(h.uid) ? h.uid : 0,
    gid: fitsId(h.gid) ? h.gid : 0,
    size: pax.length,
    mtimeMs: h.mtimeMs,
    type: TarType.paxHeader,
    linkname: h.linkname ? 'PaxHeader' : undefined,
    devmajor: h.devmajor,
    devminor: h.devminor,
  };
  const first = ustar(paxHeader)!;
  const entry = ustar({ ...paxHeader, size: h.size, type: h.type })!;
  const out = Buffer.alloc(512 + pax.length + padding(pax.length) + 512);
  first.copy(out, 0);
  pax.copy(out, 512);
  entry.copy(out, out.length - 512);
  return out;
}

/** The two zero blocks that end a tar. */
export const END_OF_TAR = Buffer.alloc(1024);
