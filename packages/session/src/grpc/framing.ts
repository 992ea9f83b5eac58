/**
 * gRPC's length-prefixed messages over HTTP/2 (grpc/grpc doc/PROTOCOL-HTTP2.md):
 * one byte "compressed" flag, a 4-byte big-endian length, the message bytes.
 */

/** One message as a frame, uncompressed. */
export function encodeFrame(message: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + message.length);
  frame[0] = 0;
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

/** Splits a byte stream into messages; messages may arrive in any chunking. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** @param maxMessageBytes a longer message is an error (gRPC's RESOURCE_EXHAUSTED). */
  constructor(private readonly maxMessageBytes: number) {}

  /** Appends `chunk`; returns the messages it completed. Throws `FrameError` on a compressed or oversized message. */
  push(chunk: Buffer): Buffer[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const out: Buffer[] = [];
    while (this.buffered >= 5) {
      const head = this.peek(5);
      if (head[0] !== 0) throw new FrameError('compressed', 'a compressed message arrived, but no compression was offered');
      const length = head.readUInt32BE(1);
      if (length > this.maxMessageBytes) throw new FrameError('too-large', `a message of ${length} bytes exceeds the limit of ${this.maxMessageBytes}`);
      if (this.buffered < 5 + length) break;
      out.push(this.take(5 + length).subarray(5));
    }
    return out;
  }

  /** Bytes of an incomplete message left over (a stream that ends here was cut). */
  get pending(): number {
    return this.buffered;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.subarray(0, n);
  }

  private take(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    const first = this.chunks[0]!;
    const taken = first.subarray(0, n);
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.buffered -= n;
    return taken;
  }
}

export class FrameError extends Error {
  constructor(
    readonly kind: 'compressed' | 'too-large',
    message: string,
  ) {
    super(message);
  }
}
