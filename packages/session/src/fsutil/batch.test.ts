/**
 * bkt's batched DiffCopy framing: fsutil's packets, many a message, in
 * order; FIN and ERR sent at once; a malformed batch refused.
 */
import { describe, expect, it } from 'vitest';
import { Packet, Packet_PacketType as T, type Stat } from '@bkt/api/fsutil';
import type { MessageChannel } from '../channel.js';
import { goModeOf } from '../filemode.js';
import { BATCH_BYTES, batchedChannel, decodeBatch } from './batch.js';
import { FsutilReceiver } from './receive.js';
import { FsutilSender } from './send.js';

/** Two connected channels of raw messages, counting what each side sent. */
function bufferPair() {
  const make = () => {
    const queue: (Buffer | undefined)[] = [];
    const waiters: (() => void)[] = [];
    return {
      sent: [] as Buffer[],
      push(b: Buffer | undefined) {
        queue.push(b);
        waiters.splice(0).forEach((w) => w());
      },
      async take(): Promise<Buffer | undefined> {
        while (queue.length === 0) await new Promise<void>((r) => waiters.push(r));
        return queue[0] === undefined ? undefined : queue.shift();
      },
    };
  };
  const toA = make();
  const toB = make();
  const a: MessageChannel<Buffer> = { send: async (b) => void (toB.sent.push(b), toB.push(b)), recv: () => toA.take() };
  const b: MessageChannel<Buffer> = { send: async (m) => void (toA.sent.push(m), toA.push(m)), recv: () => toB.take() };
  return { a, b, fromA: toB.sent, fromB: toA.sent, endA: () => toB.push(undefined) };
}

const stat = (path: string, stMode: number, size = 0): Stat => ({
  path,
  mode: goModeOf(stMode),
  uid: 0,
  gid: 0,
  size,
  modTime: 1_700_000_000_000_000_000,
  linkname: '',
  devmajor: 0,
  devminor: 0,
  xattrs: { 'bkt.change': Buffer.from('66306:1234:1700000000000.123') },
});

describe('batched DiffCopy', () => {
  it('sends a 2,000-entry walk and the files asked for in a few messages; the receiver sees every packet in order', async () => {
    const { a, b, fromA, fromB } = bufferPair();
    const sender = new FsutilSender(batchedChannel(a));
    const receiver = new FsutilReceiver(batchedChannel(b), 'test dir');
    const serving = sender.serve();
    const content = Buffer.alloc(100_000, 7);
    for (let i = 0; i < 2000; i++) {
      await sender.stat(stat(`d${Math.floor(i / 100)}/f${i}.txt`, 0o100644, i === 5 ? content.length : 3), async function* () {
        yield i === 5 ? content : Buffer.from('abc');
      });
    }
    await sender.end();
    const seen: string[] = [];
    for await (const s of receiver.stats()) seen.push(s.stat.path);
    expect(seen).toHaveLength(2000);
    expect(seen[1999]).toBe('d19/f1999.txt');
    const chunks: Buffer[] = [];
    for await (const c of receiver.request(5)) chunks.push(c);
    expect(Buffer.concat(chunks)).toEqual(content);
    const few: Buffer[] = [];
    for await (const c of receiver.request(1999)) few.push(c);
    expect(Buffer.concat(few).toString()).toBe('abc');
    await receiver.finish();
    await serving;
    // 2,000 STATs of ~80 bytes and 100 kB of data: a handful of messages, none over the batch size (plus a chunk).
    expect(fromA.length).toBeLessThan(20);
    expect(Math.max(...fromA.map((m) => m.length))).toBeLessThan(BATCH_BYTES + 33 * 1024);
    // Two REQs and a FIN.
    expect(fromB.length).toBeLessThanOrEqual(3);
  });

  it('sends FIN and ERR at once, not at the end of the turn', async () => {
    const { a, fromA } = bufferPair();
    const ch = batchedChannel(a);
    await ch.send({ type: T.PACKET_STAT, stat: stat('x', 0o100644), ID: 0, data: Buffer.alloc(0) });
    expect(fromA).toHaveLength(0);
    await ch.send({ type: T.PACKET_FIN, stat: undefined, ID: 0, data: Buffer.alloc(0) });
    expect(fromA).toHaveLength(1);
    expect(decodeBatch(fromA[0]!).map((p) => p.type)).toEqual([T.PACKET_STAT, T.PACKET_FIN]);
    await ch.send({ type: T.PACKET_ERR, stat: undefined, ID: 0, data: Buffer.from('boom') });
    expect(fromA).toHaveLength(2);
  });

  it('round-trips packets and refuses a malformed batch', () => {
    const p = { type: T.PACKET_DATA, stat: undefined, ID: 300, data: Buffer.alloc(1000, 1) };
    const encoded = Buffer.from(Packet.encode(p).finish());
    // Field 1, wire type 2, a two-byte varint length.
    const batch = Buffer.concat([Buffer.of(0x0a, (encoded.length & 0x7f) | 0x80, encoded.length >> 7), encoded]);
    expect(decodeBatch(batch)).toEqual([p]);
    expect(() => decodeBatch(Buffer.from([0x12, 0x00]))).toThrow(/unexpected field/);
    expect(() => decodeBatch(Buffer.from([0x0a, 0x05, 0x08]))).toThrow(/truncated/);
    expect(() => decodeBatch(Buffer.from([0x0a, 0xff]))).toThrow(/bad length/);
  });
});
