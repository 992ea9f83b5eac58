/**
 * The hand-written Packet codec against the generated one: the same bytes
 * for every packet, the same packet for every message, and a clean Error
 * (never a hang or a wrong packet) for a malformed message.
 */
import { describe, expect, it } from 'vitest';
import { Packet, Packet_PacketType as T, type Stat } from '@bkt/api/fsutil';
import type { FileStat } from '@bkt/core';
import { wireStatOf } from '../filemode.js';
import { decodePacket, encodePacket, statPacket } from './wire.js';

/** A fixed-seed generator (mulberry32): the same cases every run. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NUMBERS = [0, 1, 127, 128, 16383, 16384, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 35, 2 ** 42 + 5, Number.MAX_SAFE_INTEGER, 1_796_444_051_250_123_000, 2 ** 62, 2 ** 63 - 1024, -1, -1_796_444_051_250_123_000, -(2 ** 63), -(2 ** 31), -(2 ** 40), Number.MIN_SAFE_INTEGER];
const U32 = [0, 1, 127, 128, 0o100644, (0x80000000 | 0o755) >>> 0, 0xffffffff, 65534];
const STRINGS = ['', 'a', 'd7/f42.txt', 'ünïcødé/文件 name', 'x'.repeat(200), 'nul\u0000inside', '😀/emoji'];

function randomStat(next: () => number): Stat {
  const pick = <X>(xs: readonly X[]) => xs[Math.floor(next() * xs.length)]!;
  const xattrs: Record<string, Buffer> = {};
  for (let i = Math.floor(next() * 4); i > 0; i--) xattrs[pick(['bkt.change', 'user.b', 'security.capability', 'user.a', ''])] = Buffer.from(pick(STRINGS));
  return {
    path: pick(STRINGS),
    mode: pick(U32),
    uid: pick(U32),
    gid: pick(U32),
    size: pick(NUMBERS.filter((n) => n >= 0)),
    modTime: pick(NUMBERS),
    linkname: pick(STRINGS),
    devmajor: pick(NUMBERS),
    devminor: pick(NUMBERS),
    xattrs,
  };
}

function randomPacket(next: () => number): Packet {
  const type = [T.PACKET_STAT, T.PACKET_REQ, T.PACKET_DATA, T.PACKET_FIN, T.PACKET_ERR, T.PACKET_HASH][Math.floor(next() * 6)]!;
  return {
    type,
    stat: next() < 0.6 ? randomStat(next) : undefined,
    ID: [0, 1, 300, 2 ** 31, 0xffffffff][Math.floor(next() * 5)]!,
    data: next() < 0.5 ? Buffer.alloc(0) : Buffer.from(Array.from({ length: Math.floor(next() * 300) }, () => Math.floor(next() * 256))),
  };
}

/** Buffers as plain arrays, for comparing decoded packets. */
const plain = (p: Packet) => JSON.parse(JSON.stringify(p, (_k, v: unknown) => (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' ? (v as { data: number[] }).data : v)));

describe('Packet codec', () => {
  it('encodes every packet to the generated codec bytes, and decodes them back to the same packet', () => {
    const next = rng(11);
    for (let i = 0; i < 2000; i++) {
      const p = randomPacket(next);
      const expected = Buffer.from(Packet.encode(p).finish());
      const mine = encodePacket(p);
      expect(mine.toString('hex'), `packet ${i}`).toBe(expected.toString('hex'));
      expect(plain(decodePacket(mine)), `packet ${i}`).toEqual(plain(Packet.decode(expected)));
    }
  });

  it('writes the STAT packet of a walk entry (statPacket) as the generated codec writes the same Stat', () => {
    const next = rng(5);
    const pick = <X>(xs: readonly X[]) => xs[Math.floor(next() * xs.length)]!;
    const types = [0o100000, 0o040000, 0o120000, 0o020000, 0o060000, 0o010000, 0o140000];
    for (let i = 0; i < 2000; i++) {
      const e: FileStat = {
        path: pick(STRINGS.filter((x) => x !== '')),
        mode: pick(types) | pick([0o644, 0o755, 0o4755, 0o2700, 0o1777, 0]),
        uid: pick(U32),
        gid: pick(U32),
        size: pick(NUMBERS.filter((n) => n >= 0)),
        mtimeMs: pick([0, 1, 1796444051250.123, 1796447652087.4148, -1.5]),
      };
      if (next() < 0.3) e.linkname = pick(STRINGS);
      if (next() < 0.7) e.change = pick(['', '65024:3103663:1796447652087.4148', 'ü:1']);
      if (next() < 0.2) [e.devmajor, e.devminor] = [pick([0, 1, 259]), pick([0, 5, 1048575])];
      const extended = next() < 0.7;
      const wire = wireStatOf(e, extended);
      const expected = Buffer.from(Packet.encode({ type: T.PACKET_STAT, stat: wire, ID: 0, data: Buffer.alloc(0) }).finish());
      const sized = statPacket({ ...wire, ...(extended && e.change !== undefined ? { change: e.change } : {}) });
      const mine = Buffer.alloc(sized.size);
      expect(sized.write(mine, 0), `entry ${i}`).toBe(sized.size);
      expect(mine.toString('hex'), `entry ${i}: ${JSON.stringify(e)}`).toBe(expected.toString('hex'));
    }
  });

  it('decodes a packet inside a larger buffer, and skips unknown fields as the generated codec does', () => {
    const p: Packet = { type: T.PACKET_DATA, stat: undefined, ID: 7, data: Buffer.from('abc') };
    const body = encodePacket(p);
    // Unknown fields of every wire type: varint (11), fixed64 (12), bytes (13), fixed32 (14), and field 20 (a two-byte tag).
    const unknown = Buffer.from([11 << 3, 0x96, 0x01, (12 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8, (13 << 3) | 2, 2, 9, 9, (14 << 3) | 5, 1, 2, 3, 4, 0xa0, 0x01, 0x05]);
    const message = Buffer.concat([Buffer.from([0xff]), body, unknown, Buffer.from([0xee])]);
    const decoded = decodePacket(message, 1, message.length - 1);
    expect(plain(decoded)).toEqual(plain(Packet.decode(Buffer.concat([body, unknown]))));
  });

  it('decodes xattrs into a map without a prototype: a key `__proto__` or `constructor` is an attribute, not a prototype', () => {
    const stat: Stat = { ...randomStat(rng(4)), xattrs: {} };
    // Written field by field: an object literal's `__proto__` would set its prototype, not a key.
    for (const [k, v] of [['__proto__', 'p'], ['constructor', 'c'], ['user.a', 'a']] as const) {
      Object.defineProperty(stat.xattrs, k, { value: Buffer.from(v), enumerable: true, writable: true, configurable: true });
    }
    const bytes = encodePacket({ type: T.PACKET_STAT, stat, ID: 0, data: Buffer.alloc(0) });
    const xattrs = decodePacket(bytes).stat!.xattrs;
    expect(Object.getPrototypeOf(xattrs)).toBe(null);
    expect(Object.keys(xattrs).sort()).toEqual(['__proto__', 'constructor', 'user.a']);
    expect(Object.fromEntries(Object.entries(xattrs).map(([k, v]) => [k, v.toString()]))).toEqual(
      JSON.parse('{"__proto__":"p","constructor":"c","user.a":"a"}'),
    );
    expect(({} as Record<string, unknown>).constructor).toBe(Object);
  });

  it('refuses a malformed message with an Error: truncated, overlong, past its end, a bad wire type', () => {
    const good = encodePacket({ type: T.PACKET_STAT, stat: randomStat(rng(3)), ID: 0, data: Buffer.alloc(0) });
    for (const bad of [
      good.subarray(0, good.length - 1),
      Buffer.from([(3 << 3) | 0, 0x80]),
      Buffer.from([(3 << 3) | 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
      Buffer.from([(4 << 3) | 2, 10, 1, 2]),
      Buffer.from([(2 << 3) | 2, 3, (5 << 3) | 0, 0x80, 0x80]),
      Buffer.from([(5 << 3) | 3]),
      Buffer.from([0]),
    ]) {
      expect(() => decodePacket(bad), bad.toString('hex')).toThrow(Error);
    }
  });

  it('never loops or returns garbage on random bytes: each either decodes as the generated codec decodes it, or throws', () => {
    const next = rng(99);
    for (let i = 0; i < 3000; i++) {
      const bytes = Buffer.from(Array.from({ length: Math.floor(next() * 40) }, () => Math.floor(next() * 256)));
      let mine: Packet | Error;
      try {
        mine = decodePacket(bytes);
      } catch (err) {
        mine = err as Error;
      }
      if (mine instanceof Error) continue;
      expect(plain(mine), bytes.toString('hex')).toEqual(plain(Packet.decode(bytes)));
    }
  });
});
