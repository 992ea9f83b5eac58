/**
 * fsutil's DiffCopy packets as they travel (send.go, receive.go): the
 * sender and the receiver each driven packet by packet from the other side.
 */
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Packet_PacketType as T, type Packet, type Stat } from '@bkt/api/fsutil';
import type { MessageChannel } from '../channel.js';
import { goModeOf } from '../filemode.js';
import { FsutilReceiver } from './receive.js';
import { FsutilSender } from './send.js';

/** Two connected channels; `end()` ends what one side sends. */
function channelPair(): [MessageChannel<Packet> & { end(): void }, MessageChannel<Packet> & { end(): void }] {
  const make = () => {
    const queue: (Packet | undefined)[] = [];
    const waiters: (() => void)[] = [];
    return {
      push(p: Packet | undefined) {
        queue.push(p);
        waiters.splice(0).forEach((w) => w());
      },
      async take(): Promise<Packet | undefined> {
        while (queue.length === 0) await new Promise<void>((r) => waiters.push(r));
        const p = queue.shift();
        if (p === undefined) queue.unshift(undefined); // the end stays
        return p;
      },
    };
  };
  const toA = make();
  const toB = make();
  return [
    { send: async (p) => toB.push(p), recv: () => toA.take(), end: () => toB.push(undefined) },
    { send: async (p) => toA.push(p), recv: () => toB.take(), end: () => toA.push(undefined) },
  ];
}

const stat = (path: string, stMode: number, extra: Partial<Stat> = {}): Stat => ({
  path,
  mode: goModeOf(stMode),
  uid: 0,
  gid: 0,
  size: 0,
  modTime: 0,
  linkname: '',
  devmajor: 0,
  devminor: 0,
  xattrs: {},
  ...extra,
});
const packet = (type: T, fields: Partial<Packet> = {}): Packet => ({ type, stat: undefined, ID: 0, data: Buffer.alloc(0), ...fields });

describe('fsutil sender', () => {
  it('sends a STAT per entry, the end marker, 32 KiB DATA chunks and an empty DATA on REQ, and FIN for FIN', async () => {
    const [senderEnd, receiverEnd] = channelPair();
    const sender = new FsutilSender(senderEnd);
    const serving = sender.serve();
    const content = Buffer.alloc(70_000, 1);
    await sender.stat(stat('d', 0o40755));
    await sender.stat(stat('d/a', 0o100644, { size: content.length }), async function* () {
      yield content;
    });
    await sender.stat(stat('l', 0o120777, { linkname: 'd/a' }));
    await sender.stat(stat('z', 0o100644, { linkname: 'd/a' }));
    await sender.end();

    const stats: (Stat | undefined)[] = [];
    for (let i = 0; i < 5; i++) stats.push((await receiverEnd.recv())!.stat);
    expect(stats.map((s) => s?.path)).toEqual(['d', 'd/a', 'l', 'z', undefined]);
    expect(stats[3]!.size).toBe(70_000); // a hardlink carries its file's size on the wire (stat.go mkstat)

    await receiverEnd.send(packet(T.PACKET_REQ, { ID: 1 }));
    const data: Packet[] = [];
    for (;;) {
      const p = (await receiverEnd.recv())!;
      data.push(p);
      if (p.data.length === 0) break;
    }
    expect(data.map((p) => [p.type, p.ID, p.data.length])).toEqual([
      [T.PACKET_DATA, 1, 32768],
      [T.PACKET_DATA, 1, 32768],
      [T.PACKET_DATA, 1, 70_000 - 65536],
      [T.PACKET_DATA, 1, 0],
    ]);
    await receiverEnd.send(packet(T.PACKET_FIN));
    expect((await receiverEnd.recv())!.type).toBe(T.PACKET_FIN);
    await serving;
  });

  it('refuses a REQ for an id that is not a regular file, or was served already', async () => {
    for (const [id, twice] of [
      [0, false],
      [1, true],
    ] as const) {
      const [senderEnd, receiverEnd] = channelPair();
      const sender = new FsutilSender(senderEnd);
      const serving = sender.serve();
      await sender.stat(stat('d', 0o40755));
      await sender.stat(stat('f', 0o100644), async function* () {});
      await receiverEnd.recv();
      await receiverEnd.recv();
      if (twice) {
        await receiverEnd.send(packet(T.PACKET_REQ, { ID: 1 }));
        expect((await receiverEnd.recv())!).toMatchObject({ type: T.PACKET_DATA, ID: 1 });
      }
      await receiverEnd.send(packet(T.PACKET_REQ, { ID: id }));
      await expect(serving).rejects.toThrow(`file transfer: invalid file id ${id}`);
    }
  });

  it('serves requests with 4 workers at most', async () => {
    const [senderEnd, receiverEnd] = channelPair();
    const sender = new FsutilSender(senderEnd);
    const serving = sender.serve();
    let open = 0;
    let most = 0;
    const release: (() => void)[] = [];
    for (let i = 0; i < 8; i++) {
      await sender.stat(stat(`f${i}`, 0o100644), async function* () {
        most = Math.max(most, ++open);
        await new Promise<void>((r) => release.push(r));
        open--;
        yield Buffer.from('x');
      });
    }
    await sender.end();
    for (let i = 0; i < 8; i++) await receiverEnd.send(packet(T.PACKET_REQ, { ID: i }));
    await new Promise((r) => setTimeout(r, 50));
    expect(most).toBe(4);
    while (release.length > 0 || open > 0) {
      release.splice(0).forEach((r) => r());
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(most).toBe(4);
    await receiverEnd.send(packet(T.PACKET_FIN));
    await serving;
  });

  it("stops on the receiver's ERR, and when the stream ends before FIN", async () => {
    const [a, b] = channelPair();
    const serving = new FsutilSender(a).serve();
    await b.send(packet(T.PACKET_ERR, { data: Buffer.from('disk full') }));
    await expect(serving).rejects.toThrow('error from receiver: disk full');

    const [c, d] = channelPair();
    const ended = new FsutilSender(c).serve();
    d.end();
    await expect(ended).rejects.toThrow('the receiver ended the stream before it finished');
  });
});

describe('fsutil receiver', () => {
  it('counts every STAT as an id, asks with REQ, reads DATA until the empty one, and finishes with FIN', async () => {
    const [receiverEnd, senderEnd] = channelPair();
    const receiver = new FsutilReceiver(receiverEnd, 'test');
    await senderEnd.send(packet(T.PACKET_STAT, { stat: stat('d', 0o40755) }));
    await senderEnd.send(packet(T.PACKET_STAT, { stat: stat('d/f', 0o100644, { size: 5 }) }));
    await senderEnd.send(packet(T.PACKET_STAT, { stat: stat('z', 0o100644, { linkname: 'd/f', size: 5 }) }));
    await senderEnd.send(packet(T.PACKET_STAT));
    const seen = [];
    for await (const s of receiver.stats()) seen.push([s.id, s.stat.path, s.requestable]);
    expect(seen).toEqual([
      [0, 'd', false],
      [1, 'd/f', true],
      [2, 'z', true],
    ]);

    const reading = (async () => {
      const chunks: Buffer[] = [];
      for await (const c of receiver.request(1)) chunks.push(c);
      return Buffer.concat(chunks).toString();
    })();
    expect(await senderEnd.recv()).toMatchObject({ type: T.PACKET_REQ, ID: 1 });
    await senderEnd.send(packet(T.PACKET_DATA, { ID: 1, data: Buffer.from('he') }));
    await senderEnd.send(packet(T.PACKET_DATA, { ID: 1, data: Buffer.from('llo') }));
    await senderEnd.send(packet(T.PACKET_DATA, { ID: 1 }));
    expect(await reading).toBe('hello');
    await expect(async () => {
      for await (const _ of receiver.request(0));
    }).rejects.toThrow('test: entry 0 has no data to ask for');

    const finishing = receiver.finish();
    expect(await senderEnd.recv()).toMatchObject({ type: T.PACKET_FIN });
    await senderEnd.send(packet(T.PACKET_FIN));
    await finishing;
    senderEnd.end();
    await receiver.done;
  });

  it("fails on the sender's ERR and on DATA nobody asked for", async () => {
    const [a, b] = channelPair();
    const r1 = new FsutilReceiver(a, 'dir');
    await b.send(packet(T.PACKET_ERR, { data: Buffer.from('walk failed') }));
    await expect(r1.done).rejects.toThrow('dir: error from sender: walk failed');

    const [c, d] = channelPair();
    const r2 = new FsutilReceiver(c, 'dir');
    await d.send(packet(T.PACKET_DATA, { ID: 7, data: Buffer.from('x') }));
    await expect(r2.done).rejects.toThrow('dir: invalid file request 7');
  });
  it('watches a signal with one abort listener for all its requests in flight, and fails them all when it aborts', async () => {
    const [receiverEnd, senderEnd] = channelPair();
    const receiver = new FsutilReceiver(receiverEnd, 'ctx');
    for (let i = 0; i < 20; i++) await senderEnd.send(packet(T.PACKET_STAT, { stat: stat(`f${i}`, 0o100644, { size: 1 }) }));
    await senderEnd.send(packet(T.PACKET_STAT));
    for await (const _ of receiver.stats());
    const read = async (id: number, signal: AbortSignal) => {
      const chunks: Buffer[] = [];
      for await (const c of receiver.request(id, signal)) chunks.push(c);
      return Buffer.concat(chunks).toString();
    };
    const build = new AbortController();
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const first = Array.from({ length: 15 }, (_, id) => read(id, build.signal));
      for (let i = 0; i < 15; i++) expect(await senderEnd.recv()).toMatchObject({ type: T.PACKET_REQ });
      expect(getEventListeners(build.signal, 'abort')).toHaveLength(1);
      for (let id = 0; id < 15; id++) {
        await senderEnd.send(packet(T.PACKET_DATA, { ID: id, data: Buffer.from(String(id % 10)) }));
        await senderEnd.send(packet(T.PACKET_DATA, { ID: id }));
      }
      expect(await Promise.all(first)).toEqual(Array.from({ length: 15 }, (_, id) => String(id % 10)));
      expect(getEventListeners(build.signal, 'abort')).toHaveLength(0);

      const rest = Array.from({ length: 5 }, (_, i) => read(15 + i, build.signal));
      for (let i = 0; i < 5; i++) expect(await senderEnd.recv()).toMatchObject({ type: T.PACKET_REQ });
      build.abort();
      for (const r of rest) await expect(r).rejects.toThrow('ctx: cancelled');
      expect(getEventListeners(build.signal, 'abort')).toHaveLength(0);
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });
});
