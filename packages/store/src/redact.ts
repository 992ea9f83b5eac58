/**
 * Redaction of a build's secret values from what its history keeps: every
 * occurrence of a value the build's secret provider handed out is replaced by
 * `***` — in strings (error messages, attrs) and in log streams, where a value
 * may be split across chunks.
 */

export const REDACTED = '***';
const REDACTED_BYTES = Buffer.from(REDACTED);

/** The secret values of one build, growing as the build asks for secrets. */
export class SecretValues {
  /** Longest first, so a value containing another is replaced whole. */
  #values: Buffer[] = [];

  /** Adds a value handed out by the secret provider; one with surrounding whitespace (a file's newline) is also redacted without it. */
  add(value: Uint8Array): void {
    const text = Buffer.from(value).toString('utf8');
    for (const v of new Set([text, text.trim()])) {
      if (v.length === 0 || this.#values.some((known) => known.toString('utf8') === v)) continue;
      this.#values.push(Buffer.from(v));
    }
    this.#values.sort((a, b) => b.length - a.length);
  }

  get values(): readonly Buffer[] {
    return this.#values;
  }

  /** `text` with every known value replaced. */
  text(text: string): string {
    let out = text;
    for (const v of this.#values) out = out.split(v.toString('utf8')).join(REDACTED);
    return out;
  }

  /** A redactor of one stream of chunks (see `StreamRedactor`). */
  stream(): StreamRedactor {
    return new StreamRedactor(this);
  }
}

/**
 * Redacts one stream, chunk by chunk. While the build has secrets, the last
 * (longest value − 1) bytes of what it was given are held back, as they may
 * begin a value that the next chunk completes; `flush` releases them. Without
 * secrets, chunks pass through untouched.
 */
export class StreamRedactor {
  #pending: Buffer = Buffer.alloc(0);

  constructor(private readonly secrets: SecretValues) {}

  /** The redacted bytes of `chunk` (and of what was held back) that can be written now. */
  push(chunk: Uint8Array): Uint8Array {
    const values = this.secrets.values;
    if (values.length === 0 && this.#pending.length === 0) return chunk;
    const buf = this.#pending.length > 0 ? Buffer.concat([this.#pending, chunk]) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    const hold = Math.max(0, (values[0]?.length ?? 1) - 1);
    const { out, end } = replace(buf, values, Math.max(0, buf.length - hold));
    this.#pending = Buffer.from(buf.subarray(end));
    return out;
  }

  /** What was held back, redacted. */
  flush(): Uint8Array {
    const buf = this.#pending;
    this.#pending = Buffer.alloc(0);
    return replace(buf, this.secrets.values, buf.length).out;
  }
}

/**
 * Replaces the values starting before `safe` in `buf` and returns the bytes
 * up to the later of `safe` and the end of the last replacement. A value
 * starting before `safe` lies wholly within `buf` when `buf` holds
 * (longest value − 1) bytes past `safe`.
 */
function replace(buf: Buffer, values: readonly Buffer[], safe: number): { out: Buffer; end: number } {
  const parts: Buffer[] = [];
  let pos = 0;
  for (;;) {
    let at = -1;
    let len = 0;
    for (const v of values) {
      const i = buf.indexOf(v, pos);
      // Values are longest first: at one position the longest wins.
      if (i !== -1 && (at === -1 || i < at)) {
        at = i;
        len = v.length;
      }
    }
    if (at === -1 || at >= safe) break;
    parts.push(buf.subarray(pos, at), REDACTED_BYTES);
    pos = at + len;
  }
  const end = Math.max(pos, safe);
  parts.push(buf.subarray(pos, end));
  return { out: parts.length === 1 ? parts[0]! : Buffer.concat(parts), end };
}
