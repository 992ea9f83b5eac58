/**
 * fsutil's `Packet` (and its `Stat`) encoded and decoded by hand, for bkt's
 * batched DiffCopy: a 2,000-entry walk is 2,000 packets on each side, and
 * the generated codec (a writer, a fork per message, 64-bit varints through
 * a generic path) costs tens of milliseconds for them in a fresh client
 * process. The bytes are exactly the generated codec's (proto3: default
 * values left out, fields in number order, map entries sorted by key), and
 * the decoder reads anything the generated one reads — unknown fields
 * skipped, a malformed message an `Error`.
 */
import { Packet_PacketType, type Packet, type Stat } from '@bkt/api/fsutil';

const TAG_TYPE = (1 << 3) | 0;
const TAG_STAT = (2 << 3) | 2;
const TAG_ID = (3 << 3) | 0;
const TAG_DATA = (4 << 3) | 2;

const TAG_PATH = (1 << 3) | 2;
const TAG_MODE = (2 << 3) | 0;
const TAG_UID = (3 << 3) | 0;
const TAG_GID = (4 << 3) | 0;
const TAG_SIZE = (5 << 3) | 0;
const TAG_MODTIME = (6 << 3) | 0;
const TAG_LINKNAME = (7 << 3) | 2;
const TAG_DEVMAJOR = (8 << 3) | 0;
const TAG_DEVMINOR = (9 << 3) | 0;
const TAG_XATTR = (10 << 3) | 2;
const TAG_KEY = (1 << 3) | 2;
const TAG_VALUE = (2 << 3) | 2;

const TWO_32 = 2 ** 32;

/** Bytes of a varint of an unsigned 32-bit value. */
function sizeU32(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

/** Bytes of a varint of a 64-bit value given as a number (negative: ten bytes, as Go and protobuf-es). */
function sizeI64(n: number): number {
  if (n < 0) return 10;
  if (n < TWO_32) return sizeU32(n);
  let size = 5;
  for (let rest = Math.floor(n / 2 ** 35); rest > 0; rest = Math.floor(rest / 128)) size++;
  return size;
}

function writeU32(buf: Buffer, at: number, n: number): number {
  while (n > 0x7f) {
    buf[at++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[at++] = n;
  return at;
}

function writeI64(buf: Buffer, at: number, n: number): number {
  if (n >= 0 && n < TWO_32) return writeU32(buf, at, n);
  // The 64-bit two's complement as two 32-bit halves (exact for any integer a double holds: a
  // nanosecond timestamp is beyond 2^53), written seven bits at a time.
  const m = Math.abs(n);
  let hi = Math.floor(m / TWO_32) % TWO_32;
  let lo = m - Math.floor(m / TWO_32) * TWO_32;
  if (n < 0) {
    lo = (~lo + 1) >>> 0;
    hi = (~hi + (lo === 0 ? 1 : 0)) >>> 0;
  }
  while (hi > 0 || lo > 0x7f) {
    buf[at++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  buf[at++] = lo;
  return at;
}

interface StatSizes {
  total: number;
  path: number;
  linkname: number;
  xattrs: [key: string, keyBytes: number, value: Uint8Array, entry: number][];
}

function statSizes(s: Stat): StatSizes {
  let total = 0;
  const path = Buffer.byteLength(s.path);
  if (path > 0) total += 1 + sizeU32(path) + path;
  if (s.mode !== 0) total += 1 + sizeU32(s.mode >>> 0);
  if (s.uid !== 0) total += 1 + sizeU32(s.uid >>> 0);
  if (s.gid !== 0) total += 1 + sizeU32(s.gid >>> 0);
  if (s.size !== 0) total += 1 + sizeI64(s.size);
  if (s.modTime !== 0) total += 1 + sizeI64(s.modTime);
  const linkname = s.linkname === '' ? 0 : Buffer.byteLength(s.linkname);
  if (linkname > 0) total += 1 + sizeU32(linkname) + linkname;
  if (s.devmajor !== 0) total += 1 + sizeI64(s.devmajor);
  if (s.devminor !== 0) total += 1 + sizeI64(s.devminor);
  const xattrs: StatSizes['xattrs'] = [];
  const keys = Object.keys(s.xattrs);
  if (keys.length > 0) {
    // As ts-proto's sortedMapEntries: by key.
    keys.sort();
    for (const key of keys) {
      const value = s.xattrs[key]!;
      const keyBytes = Buffer.byteLength(key);
      const entry = (keyBytes > 0 ? 1 + sizeU32(keyBytes) + keyBytes : 0) + (value.length > 0 ? 1 + sizeU32(value.length) + value.length : 0);
      xattrs.push([key, keyBytes, value, entry]);
      total += 1 + sizeU32(entry) + entry;
    }
  }
  return { total, path, linkname, xattrs };
}

function writeStat(buf: Buffer, at: number, s: Stat, z: StatSizes): number {
  if (z.path > 0) {
    buf[at++] = TAG_PATH;
    at = writeU32(buf, at, z.path);
    at += buf.write(s.path, at, 'utf8');
  }
  if (s.mode !== 0) {
    buf[at++] = TAG_MODE;
    at = writeU32(buf, at, s.mode >>> 0);
  }
  if (s.uid !== 0) {
    buf[at++] = TAG_UID;
    at = writeU32(buf, at, s.uid >>> 0);
  }
  if (s.gid !== 0) {
    buf[at++] = TAG_GID;
    at = writeU32(buf, at, s.gid >>> 0);
  }
  if (s.size !== 0) {
    buf[at++] = TAG_SIZE;
    at = writeI64(buf, at, s.size);
  }
  if (s.modTime !== 0) {
    buf[at++] = TAG_MODTIME;
    at = writeI64(buf, at, s.modTime);
  }
  if (z.linkname > 0) {
    buf[at++] = TAG_LINKNAME;
    at = writeU32(buf, at, z.linkname);
    at += buf.write(s.linkname, at, 'utf8');
  }
  if (s.devmajor !== 0) {
    buf[at++] = TAG_DEVMAJOR;
    at = writeI64(buf, at, s.devmajor);
  }
  if (s.devminor !== 0) {
    buf[at++] = TAG_DEVMINOR;
    at = writeI64(buf, at, s.devminor);
  }
  for (const [key, keyBytes, value, entry] of z.xattrs) {
    buf[at++] = TAG_XATTR;
    at = writeU32(buf, at, entry);
    if (keyBytes > 0) {
      buf[at++] = TAG_KEY;
      at = writeU32(buf, at, keyBytes);
      at += buf.write(key, at, 'utf8');
    }
    if (value.length > 0) {
      buf[at++] = TAG_VALUE;
      at = writeU32(buf, at, value.length);
      buf.set(value, at);
      at += value.length;
    }
  }
  return at;
}

/** A packet ready to be written: its size known. */
export interface SizedPacket {
  /** Bytes of the encoded packet. */
  readonly size: number;
  /** Writes the packet at `at` of `buf` (room for `size` bytes); returns the offset after it. */
  write(buf: Buffer, at: number): number;
}

/** Measures `p` for writing. */
export function sizePacket(p: Packet): SizedPacket {
  let size = 0;
  // The type is an int32: a negative one is ten bytes.
  if (p.type !== 0) size += 1 + sizeI64(p.type | 0);
  let stat: StatSizes | undefined;
  if (p.stat !== undefined) {
    stat = statSizes(p.stat);
    size += 1 + sizeU32(stat.total) + stat.total;
  }
  if (p.ID !== 0) size += 1 + sizeU32(p.ID >>> 0);
  if (p.data.length > 0) size += 1 + sizeU32(p.data.length) + p.data.length;
  return { size, write: (buf, at) => writePacket(buf, at, p, stat) };
}

function writePacket(buf: Buffer, at: number, p: Packet, stat: StatSizes | undefined): number {
  if (p.type !== 0) {
    buf[at++] = TAG_TYPE;
    at = writeI64(buf, at, p.type | 0);
  }
  if (stat) {
    buf[at++] = TAG_STAT;
    at = writeU32(buf, at, stat.total);
    at = writeStat(buf, at, p.stat!, stat);
  }
  if (p.ID !== 0) {
    buf[at++] = TAG_ID;
    at = writeU32(buf, at, p.ID >>> 0);
  }
  if (p.data.length > 0) {
    buf[at++] = TAG_DATA;
    at = writeU32(buf, at, p.data.length);
    buf.set(p.data, at);
    at += p.data.length;
  }
  return at;
}

/** `p` encoded, the same bytes as `Packet.encode(p).finish()`. */
export function encodePacket(p: Packet): Buffer {
  const sized = sizePacket(p);
  const buf = Buffer.allocUnsafe(sized.size);
  sized.write(buf, 0);
  return buf;
}

/** The fields of a STAT packet, as a sender has them: `Stat`'s without its xattr map (mode: Go `os.FileMode` bits; modTime: nanoseconds). */
export type StatFields = Omit<Stat, 'xattrs'> & {
  /** The `bkt.change` xattr (`XATTR_CHANGE`), when sent. */
  change?: string;
};

const CHANGE_KEY = 'bkt.change';
const CHANGE_KEY_BYTES = Buffer.byteLength(CHANGE_KEY);

/**
 * A STAT packet of `f`: the bytes `sizePacket` gives for the same packet
 * with a `Stat` whose only xattr is the change token — without making the
 * `Stat`, its xattr map or the token's Buffer (a walk sends thousands).
 */
export function statPacket(f: StatFields): SizedPacket {
  const path = Buffer.byteLength(f.path);
  const linkname = f.linkname === '' ? 0 : Buffer.byteLength(f.linkname);
  const change = f.change === undefined ? -1 : Buffer.byteLength(f.change);
  const mode = f.mode >>> 0;
  const uid = f.uid >>> 0;
  const gid = f.gid >>> 0;
  let total = 0;
  if (path > 0) total += 1 + sizeU32(path) + path;
  if (mode !== 0) total += 1 + sizeU32(mode);
  if (uid !== 0) total += 1 + sizeU32(uid);
  if (gid !== 0) total += 1 + sizeU32(gid);
  if (f.size !== 0) total += 1 + sizeI64(f.size);
  if (f.modTime !== 0) total += 1 + sizeI64(f.modTime);
  if (linkname > 0) total += 1 + sizeU32(linkname) + linkname;
  if (f.devmajor !== 0) total += 1 + sizeI64(f.devmajor);
  if (f.devminor !== 0) total += 1 + sizeI64(f.devminor);
  const entry = change < 0 ? 0 : 1 + sizeU32(CHANGE_KEY_BYTES) + CHANGE_KEY_BYTES + (change > 0 ? 1 + sizeU32(change) + change : 0);
  if (change >= 0) total += 1 + sizeU32(entry) + entry;
  return {
    size: 1 + sizeU32(total) + total,
    write(buf, at) {
      buf[at++] = TAG_STAT;
      at = writeU32(buf, at, total);
      if (path > 0) {
        buf[at++] = TAG_PATH;
        at = writeU32(buf, at, path);
        at += buf.write(f.path, at, path === f.path.length ? 'latin1' : 'utf8');
      }
      if (mode !== 0) {
        buf[at++] = TAG_MODE;
        at = writeU32(buf, at, mode);
      }
      if (uid !== 0) {
        buf[at++] = TAG_UID;
        at = writeU32(buf, at, uid);
      }
      if (gid !== 0) {
        buf[at++] = TAG_GID;
        at = writeU32(buf, at, gid);
      }
      if (f.size !== 0) {
        buf[at++] = TAG_SIZE;
        at = writeI64(buf, at, f.size);
      }
      if (f.modTime !== 0) {
        buf[at++] = TAG_MODTIME;
        at = writeI64(buf, at, f.modTime);
      }
      if (linkname > 0) {
        buf[at++] = TAG_LINKNAME;
        at = writeU32(buf, at, linkname);
        at += buf.write(f.linkname, at, linkname === f.linkname.length ? 'latin1' : 'utf8');
      }
      if (f.devmajor !== 0) {
        buf[at++] = TAG_DEVMAJOR;
        at = writeI64(buf, at, f.devmajor);
      }
      if (f.devminor !== 0) {
        buf[at++] = TAG_DEVMINOR;
        at = writeI64(buf, at, f.devminor);
      }
      if (change >= 0) {
        buf[at++] = TAG_XATTR;
        at = writeU32(buf, at, entry);
        buf[at++] = TAG_KEY;
        at = writeU32(buf, at, CHANGE_KEY_BYTES);
        at += buf.write(CHANGE_KEY, at, 'latin1');
        if (change > 0) {
          buf[at++] = TAG_VALUE;
          at = writeU32(buf, at, change);
          at += buf.write(f.change!, at, 'utf8');
        }
      }
      return at;
    },
  };
}

/** Bytes of the varint `n` (`varintSize` for a length prefix). */
export const varintSize = sizeU32;
/** Writes the varint `n` (an unsigned 32-bit value) at `at`; returns the offset after it. */
export const writeVarint = writeU32;

// ---------------------------------------------------------------------------
// Decoding.

/** Reads protobuf fields of `buf` from `start` to `end` (also the BytesMessage codec of ../grpc/bytes-tunnel.ts). */
export class Reader {
  at: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.at = start;
  }

  /** A varint as an unsigned 32-bit value (the low 32 bits of a longer one, as protobuf's uint32). */
  u32(): number {
    const b = this.buf;
    let value = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.at >= this.end) throw new Error('truncated varint');
      const byte = b[this.at++]!;
      if (shift < 32) value |= (byte & 0x7f) << shift;
      if (byte < 0x80) return value >>> 0;
    }
    throw new Error('varint longer than 10 bytes');
  }

  /** A varint as a signed 64-bit value, as a number (the generated codec's `longToNumber`). */
  i64(): number {
    const b = this.buf;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.at >= this.end) throw new Error('truncated varint');
      const byte = b[this.at++]!;
      if (i < 4) lo |= (byte & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (byte & 0x0f) << 28;
        hi |= (byte & 0x7f) >> 4;
      } else hi |= (byte & 0x7f) << (7 * i - 32);
      if (byte < 0x80) {
        // As the generated codec's longToNumber: the nearest double beyond 2^53.
        return (hi | 0) * TWO_32 + (lo >>> 0);
      }
    }
    throw new Error('varint longer than 10 bytes');
  }

  /** The length of a length-delimited field, checked against what is left. */
  len(): number {
    const n = this.u32();
    if (n > this.end - this.at) throw new Error('a field runs past the end of its message');
    return n;
  }

  string(): string {
    const n = this.len();
    const s = this.buf.toString('utf8', this.at, this.at + n);
    this.at += n;
    return s;
  }

  /** A bytes field: a copy, or (`view`) a view of the message's buffer. */
  bytes(view = false): Buffer {
    const n = this.len();
    const slice = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return view ? slice : Buffer.from(slice);
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.u32();
        return;
      case 1:
        this.advance(8);
        return;
      case 2:
        this.advance(this.len());
        return;
      case 5:
        this.advance(4);
        return;
      default:
        throw new Error(`unsupported wire type ${wireType}`);
    }
  }

  private advance(n: number): void {
    if (n > this.end - this.at) throw new Error('a field runs past the end of its message');
    this.at += n;
  }
}

function readStat(r: Reader, end: number): Stat {
  // xattrs has no prototype: its keys are the peer's (a key `__proto__` is an attribute like any other).
  const xattrs: Record<string, Buffer> = Object.create(null);
  const s: Stat = { path: '', mode: 0, uid: 0, gid: 0, size: 0, modTime: 0, linkname: '', devmajor: 0, devminor: 0, xattrs };
  while (r.at < end) {
    const tag = r.u32();
    switch (tag) {
      case TAG_PATH:
        s.path = r.string();
        break;
      case TAG_MODE:
        s.mode = r.u32();
        break;
      case TAG_UID:
        s.uid = r.u32();
        break;
      case TAG_GID:
        s.gid = r.u32();
        break;
      case TAG_SIZE:
        s.size = r.i64();
        break;
      case TAG_MODTIME:
        s.modTime = r.i64();
        break;
      case TAG_LINKNAME:
        s.linkname = r.string();
        break;
      case TAG_DEVMAJOR:
        s.devmajor = r.i64();
        break;
      case TAG_DEVMINOR:
        s.devminor = r.i64();
        break;
      case TAG_XATTR: {
        const entryEnd = r.len() + r.at;
        let key = '';
        let value: Buffer = Buffer.alloc(0);
        const inner = new Reader(r.buf, r.at, entryEnd);
        while (inner.at < entryEnd) {
          const t = inner.u32();
          if (t === TAG_KEY) key = inner.string();
          // A view of the message, as file chunks are: a walk's change tokens are thousands of small values.
          else if (t === TAG_VALUE) value = inner.bytes(true);
          else skipUnknown(inner, t);
        }
        r.at = entryEnd;
        s.xattrs[key] = value;
        break;
      }
      default:
        skipUnknown(r, tag);
    }
  }
  return s;
}

function skipUnknown(r: Reader, tag: number): void {
  // An end-group or field 0 ends nothing here: a malformed message.
  if ((tag & 7) === 4 || tag >>> 3 === 0) throw new Error(`invalid tag ${tag}`);
  r.skip(tag & 7);
}

/** The packet in `buf[start, end)`. Throws on a malformed one. */
export function decodePacket(buf: Buffer, start = 0, end = buf.length): Packet {
  const r = new Reader(buf, start, end);
  const p: Packet = { type: Packet_PacketType.PACKET_STAT, stat: undefined, ID: 0, data: Buffer.alloc(0) };
  while (r.at < end) {
    const tag = r.u32();
    switch (tag) {
      case TAG_TYPE:
        // An int32, kept as sent (as the generated codec keeps it).
        p.type = (r.u32() | 0) as Packet_PacketType;
        break;
      case TAG_STAT: {
        const statEnd = r.len() + r.at;
        p.stat = readStat(new Reader(buf, r.at, statEnd), statEnd);
        r.at = statEnd;
        break;
      }
      case TAG_ID:
        p.ID = r.u32();
        break;
      case TAG_DATA:
        // File chunks are views of the message they came in (each message is a buffer of its own).
        p.data = r.bytes(true);
        break;
      default:
        skipUnknown(r, tag);
    }
  }
  return p;
}
