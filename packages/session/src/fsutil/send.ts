/**
 * The sending side of fsutil's DiffCopy protocol (tonistiigi/fsutil
 * send.go): one STAT per entry in walk order, each counted (ids are the
 * index in the STAT sequence, directories included), a STAT without a stat
 * as the end marker; for each REQ{id} the entry's bytes as DATA{id} chunks
 * of at most 32 KiB and an empty DATA{id} as its end, by 4 workers; the
 * receiver's FIN is answered with FIN and ends the transfer. Either side
 * may send ERR{data: message}.
 *
 * The client sends its local directories this way (FileSync), the daemon
 * its directory outputs (FileSend).
 */
import { BktError, type FileStat } from '@bkt/core';
import { Packet_PacketType, type Packet, type Stat } from '@bkt/api/fsutil';
import type { MessageChannel } from '../channel.js';
import { canRequestData, wireModeOf, wireStatOf } from '../filemode.js';
import type { BatchedChannel } from './batch.js';
import { statPacket } from './wire.js';

/** fsutil's copy buffer (send.go `bufPool`): the largest DATA chunk. */
export const DATA_CHUNK = 32 << 10;
const WORKERS = 4;

interface Requestable {
  /** The entry's bytes: `open()`, or `read(path)` (one reader for every entry of a walk). */
  open?: () => AsyncIterable<Uint8Array>;
  read?: (path: string) => AsyncIterable<Uint8Array>;
  path?: string;
  /** Settles once the entry's data was sent (or the transfer ended without asking for it); made only when someone waits for it. */
  sent?: Deferred;
}

export class FsutilSender {
  private nextId = 0;
  private readonly files = new Map<number, Requestable>();
  /** Sizes of the regular files sent, by path (for their hardlinks' STATs). */
  private readonly sizes = new Map<string, number>();
  private readonly pending: { id: number; file: Requestable }[] = [];
  private readonly idle: (() => void)[] = [];
  private stopped: Error | null | undefined;
  /** Settles when `stop` is called, so that waiting for the receiver ends too. */
  private readonly stopping = deferred();

  constructor(private readonly channel: MessageChannel<Packet> | BatchedChannel) {}

  /**
   * Sends the STAT of one entry. `open` gives the bytes of a requestable
   * entry (a regular file; fsutil's `fileCanRequestData`) when asked.
   * Resolves once the STAT was sent, with `sent`: settles when that
   * entry's data has been sent — or when the transfer ended without the
   * receiver asking for it.
   */
  async stat(stat: Stat, open?: () => AsyncIterable<Uint8Array>): Promise<{ sent: Promise<void> }> {
    const id = this.nextId++;
    let sent: Promise<void> = Promise.resolve();
    if (canRequestData(stat.mode)) {
      // A hardlink is a regular file's STAT whose linkname is the first path of its inode in
      // this walk (stat_unix.go setUnixOpt; hardlinks.go re-points it when that path was
      // filtered out). Its size is its file's: mkstat sets Size after the hardlink lookup
      // (stat.go), while core's FileStat gives a hardlink size 0.
      if (stat.linkname !== '') stat = { ...stat, size: this.sizes.get(stat.linkname) ?? stat.size };
      else this.sizes.set(stat.path, stat.size);
      const file: Requestable = { open: open ?? (async function* () {}), sent: deferred() };
      this.files.set(id, file);
      sent = file.sent!.promise;
    }
    await this.channel.send({ type: Packet_PacketType.PACKET_STAT, stat, ID: 0, data: Buffer.alloc(0) });
    return { sent };
  }

  /**
   * Sends the STAT of one entry of a walk, as `stat(wireStatOf(e,
   * extended))` would, with `read(e.path)` its bytes when asked — the
   * client's FileSync path: over a batched channel the packet is written
   * from `e` directly, and nothing is awaited unless the channel asks for
   * it (a returned promise: backpressure).
   */
  entry(e: FileStat, extended: boolean, read: (path: string) => AsyncIterable<Uint8Array>): Promise<void> | undefined {
    const id = this.nextId++;
    const mode = wireModeOf(e.mode);
    let size = e.size;
    if (canRequestData(mode)) {
      // As in `stat`: a hardlink's size is its file's.
      if (e.linkname !== undefined) size = this.sizes.get(e.linkname) ?? size;
      else this.sizes.set(e.path, size);
      this.files.set(id, { read, path: e.path });
    }
    const channel = this.channel;
    if ('sendSized' in channel) {
      return channel.sendSized(
        statPacket({
          path: e.path,
          mode,
          uid: e.uid,
          gid: e.gid,
          size,
          modTime: Math.round(e.mtimeMs * 1e6),
          linkname: e.linkname ?? '',
          devmajor: e.devmajor ?? 0,
          devminor: e.devminor ?? 0,
          ...(extended && e.change !== undefined ? { change: e.change } : {}),
        }),
      );
    }
    return channel.send({ type: Packet_PacketType.PACKET_STAT, stat: { ...wireStatOf(e, extended), size }, ID: 0, data: Buffer.alloc(0) });
  }

  /** The end of the walk: a STAT packet without a stat. */
  async end(): Promise<void> {
    await this.channel.send({ type: Packet_PacketType.PACKET_STAT, stat: undefined, ID: 0, data: Buffer.alloc(0) });
  }

  /** Tells the receiver why this side stopped (ERR). */
  async fail(message: string): Promise<void> {
    await this.channel.send({ type: Packet_PacketType.PACKET_ERR, stat: undefined, ID: 0, data: Buffer.from(message) }).catch(() => {});
  }

  /**
   * Answers the receiver until its FIN (answered with FIN): REQs are served
   * by 4 workers. Rejects on the receiver's ERR, on a REQ for an id that is
   * not (or no longer) requestable, on a read failing mid-file, and when the
   * stream ends or fails before FIN.
   */
  async serve(): Promise<void> {
    const workers = Array.from({ length: WORKERS }, () => this.work());
    try {
      for (;;) {
        const p = await Promise.race([this.channel.recv(), this.stopping.promise.then(() => undefined)]);
        if (this.stopped !== undefined) break;
        if (p === undefined) throw new BktError('INTERNAL', 'file transfer: the receiver ended the stream before it finished');
        if (p.type === Packet_PacketType.PACKET_ERR) throw new BktError('INTERNAL', `error from receiver: ${p.data.toString('utf8')}`);
        if (p.type === Packet_PacketType.PACKET_REQ) this.queue(p.ID);
        else if (p.type === Packet_PacketType.PACKET_FIN) {
          await this.channel.send({ type: Packet_PacketType.PACKET_FIN, stat: undefined, ID: 0, data: Buffer.alloc(0) });
          this.stop(null);
          break;
        }
      }
    } catch (err) {
      this.stop(err as Error);
    }
    await Promise.all(workers);
    if (this.stopped) throw this.stopped;
  }

  private queue(id: number): void {
    const file = this.files.get(id);
    // Each id is served once (send.go `queue` deletes it).
    if (!file) throw new BktError('INTERNAL', `file transfer: invalid file id ${id}`);
    this.files.delete(id);
    this.pending.push({ id, file });
    this.idle.shift()?.();
  }

  private stop(err: Error | null): void {
    if (this.stopped !== undefined) return;
    this.stopped = err;
    this.stopping.resolve();
    for (const wake of this.idle.splice(0)) wake();
    for (const [, file] of this.files) file.sent?.resolve();
    for (const { file } of this.pending.splice(0)) file.sent?.resolve();
  }

  private async work(): Promise<void> {
    for (;;) {
      if (this.stopped !== undefined) return;
      const next = this.pending.shift();
      if (!next) {
        await new Promise<void>((resolve) => this.idle.push(resolve));
        continue;
      }
      try {
        await this.sendFile(next.id, next.file);
        next.file.sent?.resolve();
      } catch (err) {
        next.file.sent?.reject(err as Error);
        this.stop(err as Error);
        return;
      }
    }
  }

  private async sendFile(id: number, file: Requestable): Promise<void> {
    let chunks: AsyncIterator<Uint8Array> | undefined;
    try {
      chunks = (file.open ? file.open() : file.read!(file.path!))[Symbol.asyncIterator]();
      let next = await chunks.next();
      while (!next.done) {
        const bytes = next.value;
        for (let at = 0; at < bytes.length; at += DATA_CHUNK) {
          if (this.stopped !== undefined) throw this.stopped ?? new BktError('CANCELLED', 'file transfer: finished while sending');
          const data = Buffer.from(bytes.buffer, bytes.byteOffset + at, Math.min(DATA_CHUNK, bytes.length - at));
          await this.channel.send({ type: Packet_PacketType.PACKET_DATA, stat: undefined, ID: id, data });
        }
        next = await chunks.next();
      }
    } catch (err) {
      // As send.go `sendFile`: a file that cannot be opened (gone since its STAT) is sent empty.
      if (!(err instanceof BktError && err.code === 'NOT_FOUND')) throw err;
    } finally {
      await chunks?.return?.();
    }
    await this.channel.send({ type: Packet_PacketType.PACKET_DATA, stat: undefined, ID: id, data: Buffer.alloc(0) });
  }
}

export interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(err: Error): void;
}

export function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}
