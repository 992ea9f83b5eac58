/**
 * fsutil's DiffCopy with many packets per message: bkt's own FileSync
 * method, which a bkt client serves beside BuildKit's and a bkt daemon uses
 * when the session announces it (BuildKit's clients and daemons never see
 * it). The packets and their protocol are fsutil's unchanged; only the
 * framing differs: each gRPC message is a `PacketBatch` —
 *
 *   message PacketBatch { repeated fsutil.types.Packet packets = 1; }
 *
 * — so a 2,000-entry walk travels as a few messages instead of 2,000, each
 * of which costs a gRPC message, HTTP/2 frames and a tunnel message on both
 * sides. A batch is sent when it reaches `BATCH_BYTES`, at the end of the
 * event loop turn that queued its first packet, or at once for FIN and ERR.
 *
 * Its STATs may carry the client's change token (`FileStat.change`) in the
 * reserved xattr `bkt.change` (no real xattr has a name without a
 * namespace prefix); `fileStatOf` reads it back.
 */
import { Packet_PacketType, type Packet } from '@bkt/api/fsutil';
import type { MessageChannel } from '../channel.js';
import type { MethodDefinition } from '../grpc/caller.js';
import { decodePacket, sizePacket, varintSize, writeVarint, type SizedPacket } from './wire.js';

/** The method: bkt's, not BuildKit's, so only a bkt daemon calls it and only a bkt client serves it. */
export const DIFFCOPY_BATCH_METHOD = '/bkt.filesync.v1.FileSync/DiffCopy';
/** A batch is sent once it holds this many bytes. */
export const BATCH_BYTES = 64 << 10;

/** The method as the daemon's caller calls it: raw batches both ways. */
export const diffCopyBatchMethod: MethodDefinition<Buffer, Buffer> = {
  path: DIFFCOPY_BATCH_METHOD,
  requestSerialize: (b) => b,
  responseDeserialize: (b) => b,
};

const FIELD_PACKETS_TAG = (1 << 3) | 2;

/** The `PacketBatch` message of `packets`, with `bytes` its encoded size. */
function encodeBatch(packets: readonly SizedPacket[], bytes: number): Buffer {
  const buf = Buffer.allocUnsafe(bytes);
  let at = 0;
  for (const p of packets) {
    buf[at++] = FIELD_PACKETS_TAG;
    at = writeVarint(buf, at, p.size);
    at = p.write(buf, at);
  }
  return buf;
}

/** The packets of one `PacketBatch` message. Throws on a malformed batch. */
export function decodeBatch(data: Buffer): Packet[] {
  const out: Packet[] = [];
  let at = 0;
  while (at < data.length) {
    if (data[at++] !== FIELD_PACKETS_TAG) throw new Error('not a packet batch: unexpected field');
    let len = 0;
    for (let shift = 0; ; shift += 7) {
      if (at >= data.length || shift > 28) throw new Error('not a packet batch: bad length');
      const b = data[at++]!;
      len += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
    }
    if (at + len > data.length) throw new Error('not a packet batch: truncated packet');
    out.push(decodePacket(data, at, at + len));
    at += len;
  }
  return out;
}

/** A channel of packets that can also take a packet already measured (`statPacket`), without waiting when it need not. */
export interface BatchedChannel extends MessageChannel<Packet> {
  /**
   * Queues a measured packet. Returns undefined when it is queued, or a
   * promise when the batch it filled is being sent (await it: backpressure).
   * Throws the channel's failure.
   */
  sendSized(p: SizedPacket): Promise<void> | undefined;
  /** Sends what is queued; call it before ending the call. */
  flush(): Promise<void>;
}

/**
 * Packets over a channel of `PacketBatch` messages. `send` resolves once
 * the packet is queued (or, for a full batch, once the stream took it);
 * `flush()` sends what is queued — call it before ending the call.
 */
export function batchedChannel(inner: MessageChannel<Buffer>): BatchedChannel {
  let parts: SizedPacket[] = [];
  let bytes = 0;
  let scheduled = false;
  let sending: Promise<void> = Promise.resolve();
  let failure: Error | undefined;
  let received: Packet[] = [];
  let next = 0;

  const flush = (): Promise<void> => {
    scheduled = false;
    if (parts.length > 0) {
      const data = encodeBatch(parts, bytes);
      parts = [];
      bytes = 0;
      sending = sending.then(() => inner.send(data));
      sending.catch((err: Error) => (failure ??= err));
    }
    return sending;
  };
  const queue = (sized: SizedPacket, now: boolean): Promise<void> | undefined => {
    if (failure) throw failure;
    parts.push(sized);
    bytes += 1 + varintSize(sized.size) + sized.size;
    if (now || bytes >= BATCH_BYTES) return flush();
    if (!scheduled) {
      scheduled = true;
      setImmediate(() => void flush().catch(() => undefined));
    }
    return undefined;
  };

  return {
    async send(p) {
      await queue(sizePacket(p), p.type === Packet_PacketType.PACKET_FIN || p.type === Packet_PacketType.PACKET_ERR);
    },
    sendSized: (p) => queue(p, false),
    async recv() {
      while (next >= received.length) {
        const data = await inner.recv();
        if (data === undefined) return undefined;
        received = decodeBatch(data);
        next = 0;
      }
      return received[next++];
    },
    flush,
  };
}
