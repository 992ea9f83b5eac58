/**
 * src/binary.ts against @bufbuild/protobuf's wire classes (which ts-proto
 * targets): random sequences of writes give the same bytes, and reading
 * them back gives the same values; truncated and malformed inputs throw.
 * (src/wire.test.ts checks the generated codecs against protoc.)
 */
import * as buf from '@bufbuild/protobuf/wire';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BinaryReader, BinaryWriter } from './binary.js';

type Op =
  | { kind: 'uint32'; v: number }
  | { kind: 'int32'; v: number }
  | { kind: 'int64'; v: number }
  | { kind: 'bool'; v: boolean }
  | { kind: 'string'; v: string }
  | { kind: 'bytes'; v: Uint8Array }
  | { kind: 'message'; ops: Op[] };

const int64Number = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 32 }),
  fc.maxSafeInteger(),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((b) => Number(BigInt.asIntN(64, BigInt(Math.trunc(Number(b)))))),
  fc.constantFrom(1.7e18, -1.7e18, 2 ** 53, -(2 ** 53), 2 ** 62, -(2 ** 63)),
);
const { op } = fc.letrec<{ op: Op }>((tie) => ({
  op: fc.oneof(
    { depthSize: 'small' },
    fc.integer({ min: 0, max: 2 ** 32 - 1 }).map((v) => ({ kind: 'uint32' as const, v })),
    fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map((v) => ({ kind: 'int32' as const, v })),
    int64Number.filter((v) => Number.isInteger(v) && v >= -(2 ** 63) && v < 2 ** 63).map((v) => ({ kind: 'int64' as const, v })),
    fc.boolean().map((v) => ({ kind: 'bool' as const, v })),
    fc.string({ unit: 'binary' }).map((v) => ({ kind: 'string' as const, v })),
    fc.uint8Array({ maxLength: 300 }).map((v) => ({ kind: 'bytes' as const, v })),
    fc.array(tie('op'), { maxLength: 6 }).map((ops) => ({ kind: 'message' as const, ops })),
  ),
}));

function write<W extends { uint32(v: number): W; int32(v: number): W; int64(v: number): W; bool(v: boolean): W; string(v: string): W; bytes(v: Uint8Array): W; fork(): W; join(): W }>(w: W, ops: Op[]): W {
  for (const o of ops) {
    if (o.kind === 'message') write(w.fork(), o.ops).join();
    else (w[o.kind] as (v: unknown) => W).call(w, o.v);
  }
  return w;
}

/** Reads `ops` back; values as comparable JSON (int64 as decimal strings). */
function read(r: { uint32(): number; int32(): number; int64(): bigint | string; bool(): boolean; string(): string; bytes(): Uint8Array; pos: number }, ops: Op[]): unknown[] {
  return ops.map((o) => {
    if (o.kind === 'message') {
      const length = r.uint32();
      const end = r.pos + length;
      const inner = read(r, o.ops);
      expect(r.pos).toBe(end);
      return inner;
    }
    const v = r[o.kind]();
    return o.kind === 'int64' ? String(v) : o.kind === 'bytes' ? [...(v as Uint8Array)] : v;
  });
}

describe('the wire classes', () => {
  it('write the bytes @bufbuild/protobuf writes, and read back what it reads', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 20 }), (ops) => {
        const ours = write(new BinaryWriter(), ops).finish();
        const theirs = write(new buf.BinaryWriter(), ops).finish();
        expect(ours).toEqual(theirs);
        expect(Object.getPrototypeOf(ours)).toBe(Uint8Array.prototype);
        const r = new BinaryReader(theirs);
        expect(read(r, ops)).toEqual(read(new buf.BinaryReader(theirs), ops));
        expect(r.pos).toBe(r.len);
      }),
      { numRuns: 500, seed: 11 },
    );
  });

  it('skip every wire type as @bufbuild/protobuf does', () => {
    const w = new buf.BinaryWriter();
    w.tag(1, buf.WireType.Varint).int64(-5n);
    w.tag(2, buf.WireType.Bit64).fixed64(7n);
    w.tag(3, buf.WireType.LengthDelimited).string('héllo');
    w.tag(4, buf.WireType.StartGroup).tag(1, buf.WireType.Varint).uint32(300).tag(4, buf.WireType.EndGroup);
    w.tag(5, buf.WireType.Bit32).fixed32(9);
    const bytes = w.finish();
    const ours = new BinaryReader(bytes);
    const theirs = new buf.BinaryReader(bytes);
    while (theirs.pos < theirs.len) {
      const tag = theirs.uint32();
      expect(ours.uint32()).toBe(tag);
      expect(ours.skip(tag & 7, tag >>> 3)).toEqual(theirs.skip(tag & 7, tag >>> 3));
      expect(ours.pos).toBe(theirs.pos);
    }
  });

  it('throw on truncated and malformed input', () => {
    const full = new BinaryWriter().string('abcdef').finish();
    expect(() => new BinaryReader(full.subarray(0, 3)).string()).toThrow('premature EOF');
    expect(() => new BinaryReader(new Uint8Array([0x80, 0x80])).uint32()).toThrow('premature EOF');
    expect(() => new BinaryReader(new Uint8Array(11).fill(0x80)).int64()).toThrow('invalid varint');
    expect(() => new BinaryReader(new Uint8Array([1])).skip(7)).toThrow('cant skip wire type 7');
    expect(() => new BinaryReader(new Uint8Array([1, 2])).skip(1)).toThrow('premature EOF');
    expect(() => new BinaryWriter().int64(1.5)).toThrow(RangeError);
    expect(() => new BinaryWriter().int64(2 ** 63)).toThrow('invalid int64');
    expect(() => new BinaryWriter().join()).toThrow();
    expect(() => new BinaryWriter().fork().finish()).toThrow();
  });

  it('write an absent string field of a plain-object request as the empty string', () => {
    const written = new BinaryWriter().uint32(10).string(undefined).finish();
    expect([...written]).toEqual([10, 0]);
    expect(new BinaryReader(written.subarray(1)).string()).toBe('');
  });

  it('keep a leading U+FEFF of a string, as protobuf-es and Go do', () => {
    const name = '\uFEFFnotes.txt';
    const written = new BinaryWriter().string(name).finish();
    expect([...written.subarray(1, 4)]).toEqual([0xef, 0xbb, 0xbf]);
    expect(new BinaryReader(written).string()).toBe(name);
    expect(new buf.BinaryReader(written).string()).toBe(name);
  });

  it('refuse a uint32 or int32 the field cannot hold, as @bufbuild/protobuf does', () => {
    for (const v of [-1, 2 ** 32, 2 ** 32 + 1, 1.5, NaN, Infinity]) {
      expect(() => new buf.BinaryWriter().uint32(v)).toThrow(`invalid uint32: ${v}`);
      expect(() => new BinaryWriter().uint32(v)).toThrow(`invalid uint32: ${v}`);
    }
    for (const v of [2 ** 31, -(2 ** 31) - 1, 1.5, -0.5, NaN]) {
      expect(() => new buf.BinaryWriter().int32(v)).toThrow(`invalid int32: ${v}`);
      expect(() => new BinaryWriter().int32(v)).toThrow(`invalid int32: ${v}`);
    }
    expect([...new BinaryWriter().uint32(2 ** 32 - 1).int32(-(2 ** 31)).int32(2 ** 31 - 1).uint32(-0).int32(-0).finish()]).toEqual([
      ...new buf.BinaryWriter().uint32(2 ** 32 - 1).int32(-(2 ** 31)).int32(2 ** 31 - 1).uint32(-0).int32(-0).finish(),
    ]);
  });

  it('write an absent number of a plain-object request as 0, the default', () => {
    expect([...new BinaryWriter().uint32(undefined).int32(undefined).int64(undefined).finish()]).toEqual([0, 0, 0]);
  });
});
