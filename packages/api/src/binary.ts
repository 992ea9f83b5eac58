/**
 * The protobuf binary wire format (protobuf.dev "Encoding") as the
 * generated codecs use it: scripts/generate.mjs points their import of
 * `@bufbuild/protobuf/wire` here. That module's index also loads its text
 * format and reflection (~15 ms of every process that loads a codec); the
 * codecs need only these two classes, with the methods below.
 *
 * Encoding is canonical as Go's and protobuf-es's: varints in as few bytes
 * as they take; a negative int32 or int64 as ten bytes (its 64-bit two's
 * complement); strings as UTF-8; a nested message (`fork`/`join`) as its
 * length and bytes. A value a field cannot hold (a uint32 out of range, an
 * int32 that is a fraction) throws `invalid <type>: <value>`, as protobuf-es
 * does; an absent number (a plain-object request without the field, which
 * ts-proto's encode passes through) is written as 0, the field's default.
 * Decoding throws on a truncated or malformed input
 * (`premature EOF`, a varint longer than ten bytes, a wire type it cannot
 * skip).
 */

const TWO_32 = 2 ** 32;
const INT64_MIN = -(2n ** 63n);
const INT64_LIMIT = 2n ** 63n;
/** Keeps a leading U+FEFF, as protobuf-es and Go do (it is part of the string). */
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

function varintSize(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

export class BinaryWriter {
  private buf = Buffer.allocUnsafe(256);
  private pos = 0;
  /** Start positions of the messages being written (`fork`). */
  private readonly forks: number[] = [];

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  /** An unsigned 32-bit varint (a tag, a length, a uint32 field); undefined is 0. */
  uint32(value: number | undefined): this {
    let n = value! >>> 0;
    if (n !== value && value !== undefined) throw new RangeError(`invalid uint32: ${value}`);
    this.reserve(5);
    const buf = this.buf;
    while (n > 0x7f) {
      buf[this.pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    buf[this.pos++] = n;
    return this;
  }

  /** A signed 32-bit varint: a negative value is sign-extended to ten bytes; undefined is 0. */
  int32(value: number | undefined): this {
    const n = value! | 0;
    if (n !== value && value !== undefined) throw new RangeError(`invalid int32: ${value}`);
    return n >= 0 ? this.uint32(n) : this.int64(n);
  }

  /** A signed 64-bit varint, from a number (any integer a double holds exactly), a bigint or a decimal string; undefined is 0. */
  int64(value: number | bigint | string | undefined): this {
    if (typeof value === 'number' && value >= 0 && value < TWO_32 && Number.isInteger(value)) return this.uint32(value);
    if (value === undefined) return this.uint32(0);
    const big = BigInt(value); // throws for a fraction or a malformed string
    if (big < INT64_MIN || big >= INT64_LIMIT) throw new RangeError(`invalid int64: ${value}`);
    let u = BigInt.asUintN(64, big);
    this.reserve(10);
    const buf = this.buf;
    while (u > 0x7fn) {
      buf[this.pos++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    buf[this.pos++] = Number(u);
    return this;
  }

  bool(value: boolean): this {
    this.reserve(1);
    this.buf[this.pos++] = value ? 1 : 0;
    return this;
  }

  /**
   * A string as its UTF-8 length and bytes. An absent value (a plain-object
   * request without the field, which ts-proto's encode passes through) is
   * written as the empty string, the field's default.
   */
  string(value: string | undefined): this {
    value ??= '';
    const length = Buffer.byteLength(value, 'utf8');
    this.uint32(length);
    this.reserve(length);
    this.pos += this.buf.write(value, this.pos, length, 'utf8');
    return this;
  }

  bytes(value: Uint8Array): this {
    this.uint32(value.length);
    this.reserve(value.length);
    this.buf.set(value, this.pos);
    this.pos += value.length;
    return this;
  }

  /** Starts a nested message; `join` ends it. */
  fork(): this {
    this.forks.push(this.pos);
    return this;
  }

  /** Ends the nested message `fork` started: its bytes get their length in front. */
  join(): this {
    const start = this.forks.pop();
    if (start === undefined) throw new Error('invalid state, fork stack empty');
    const length = this.pos - start;
    const prefix = varintSize(length);
    this.reserve(prefix);
    this.buf.copyWithin(start + prefix, start, this.pos);
    let n = length;
    let at = start;
    while (n > 0x7f) {
      this.buf[at++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    this.buf[at] = n;
    this.pos += prefix;
    return this;
  }

  /** The bytes written (a copy, a plain Uint8Array). */
  finish(): Uint8Array {
    if (this.forks.length > 0) throw new Error('invalid state, fork stack not empty');
    return new Uint8Array(this.buf.subarray(0, this.pos));
  }
}

export class BinaryReader {
  /** Where the next read starts. */
  pos = 0;
  /** The input's length. */
  readonly len: number;
  private readonly buf: Uint8Array;

  constructor(buf: Uint8Array) {
    this.buf = buf;
    this.len = buf.length;
  }

  /** A varint as its low and high 32 bits; throws when truncated or longer than ten bytes. */
  private varint(): [lo: number, hi: number] {
    const buf = this.buf;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.len) throw new RangeError('premature EOF');
      const b = buf[this.pos++]!;
      const bits = b & 0x7f;
      if (i < 4) lo |= bits << (7 * i);
      else if (i === 4) {
        lo |= (bits & 0x0f) << 28;
        hi |= bits >>> 4;
      } else hi |= bits << (7 * i - 32);
      if (b < 0x80) return [lo >>> 0, hi >>> 0];
    }
    throw new Error('invalid varint');
  }

  /** An unsigned 32-bit varint (its low 32 bits). */
  uint32(): number {
    // The common case: one byte.
    if (this.pos < this.len) {
      const b = this.buf[this.pos]!;
      if (b < 0x80) {
        this.pos++;
        return b;
      }
    }
    return this.varint()[0];
  }

  int32(): number {
    return this.uint32() | 0;
  }

  /** A signed 64-bit varint, exactly (the generated code makes it a number). */
  int64(): bigint {
    const [lo, hi] = this.varint();
    return hi === 0 ? BigInt(lo) : BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo));
  }

  bool(): boolean {
    const [lo, hi] = this.varint();
    return lo !== 0 || hi !== 0;
  }

  /** A length-delimited field's bytes (a view of the input). */
  bytes(): Uint8Array {
    const length = this.uint32();
    const start = this.pos;
    if (start + length > this.len) throw new RangeError('premature EOF');
    this.pos += length;
    return this.buf.subarray(start, start + length);
  }

  string(): string {
    return utf8.decode(this.bytes());
  }

  /** Skips a field of wire type `wireType` (a group up to its end tag, which must be of field `fieldNo` when given); returns its bytes. */
  skip(wireType: number, fieldNo?: number): Uint8Array {
    const start = this.pos;
    switch (wireType) {
      case 0:
        this.varint();
        break;
      case 1:
        this.advance(8);
        break;
      case 2: {
        const length = this.uint32();
        this.advance(length);
        break;
      }
      case 3:
        for (;;) {
          const tag = this.uint32();
          const type = tag & 7;
          if (type === 4) {
            if (fieldNo !== undefined && tag >>> 3 !== fieldNo) throw new Error('invalid end group tag');
            break;
          }
          this.skip(type, tag >>> 3);
        }
        break;
      case 5:
        this.advance(4);
        break;
      default:
        throw new Error(`cant skip wire type ${wireType}`);
    }
    return this.buf.subarray(start, this.pos);
  }

  private advance(n: number): void {
    if (this.pos + n > this.len) throw new RangeError('premature EOF');
    this.pos += n;
  }
}
