/**
 * The receiving side of fsutil's DiffCopy protocol (tonistiigi/fsutil
 * receive.go): STATs arrive in walk order, each counted (its index is its
 * id), until a STAT without a stat; the receiver asks for the data of the
 * requestable entries it wants (REQ{id}), which arrives as DATA{id} chunks
 * ended by an empty DATA{id}; when it has all it wants it sends FIN, the
 * sender answers FIN, and the stream ends. ERR{data} from either side ends
 * the transfer with that message.
 *
 * The daemon receives a client's local directory this way (FileSync), the
 * client a directory output (FileSend).
 */
import { BktError } from '@bkt/core';
import { Packet_PacketType, type Packet, type Stat } from '@bkt/api/fsutil';
import type { MessageChannel } from '../channel.js';
import { canRequestData } from '../filemode.js';
import { deferred } from './send.js';

/** Bytes buffered for one file before the whole stream waits for its reader (as Go's pipe writes block). */
const FILE_BUFFER_BYTES = 1 << 20;

export interface ReceivedStat {
  /** The index of the STAT in the stream. */
  id: number;
  stat: Stat;
  /** Whether its data may be asked for (fsutil's `fileCanRequestData`). */
  requestable: boolean;
}

export class FsutilReceiver {
  private nextId = 0;
  private readonly statQueue: ReceivedStat[] = [];
  private statsEnded = false;
  private readonly pipes = new Map<number, FilePipe>();
  private readonly requested = new Set<number>();
  private readonly requestable = new Set<number>();
  private failure: Error | undefined;
  private finSent = false;
  private readonly finReceived = deferred();
  private waiters: (() => void)[] = [];
  /** One abort listener per signal for all requests in flight under it (a build reads many files at once). */
  private readonly watched = new Map<AbortSignal, { pipes: Set<FilePipe>; onAbort: () => void }>();
  /** Settles when the stream is over: after the FIN exchange and the end of the stream, or with its failure. */
  readonly done: Promise<void>;

  constructor(
    private readonly channel: MessageChannel<Packet>,
    /** Names the transfer in errors (`local directory "context"`). */
    private readonly what: string,
  ) {
    this.done = this.run();
    this.done.catch(() => {});
  }

  /** The entries in stream order, up to the end marker. Throws the transfer's failure. */
  async *stats(): AsyncGenerator<ReceivedStat> {
    let at = 0;
    for (;;) {
      if (at < this.statQueue.length) {
        yield this.statQueue[at++]!;
        continue;
      }
      if (this.failure) throw this.failure;
      if (this.statsEnded) return;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /**
   * The data of entry `id`: sends REQ{id} and yields its chunks until its
   * end. An id may be asked for once. Leaving the iteration early drops the
   * rest of the file's data as it arrives.
   */
  async *request(id: number, signal?: AbortSignal): AsyncGenerator<Buffer> {
    if (!this.requestable.has(id)) throw new BktError('INTERNAL', `${this.what}: entry ${id} has no data to ask for`);
    if (this.requested.has(id)) throw new BktError('INTERNAL', `${this.what}: entry ${id} was already asked for on this stream`);
    if (this.failure) throw this.failure;
    this.requested.add(id);
    const pipe = new FilePipe();
    this.pipes.set(id, pipe);
    if (signal) this.watch(signal, pipe);
    try {
      await this.send({ type: Packet_PacketType.PACKET_REQ, stat: undefined, ID: id, data: Buffer.alloc(0) });
      yield* pipe.chunks();
    } finally {
      if (signal) this.unwatch(signal, pipe);
      pipe.drop();
    }
  }

  private watch(signal: AbortSignal, pipe: FilePipe): void {
    let w = this.watched.get(signal);
    if (!w) {
      const pipes = new Set<FilePipe>();
      const onAbort = () => {
        for (const p of pipes) p.fail(new BktError('CANCELLED', `${this.what}: cancelled`));
      };
      w = { pipes, onAbort };
      this.watched.set(signal, w);
      signal.addEventListener('abort', onAbort, { once: true });
    }
    w.pipes.add(pipe);
  }

  private unwatch(signal: AbortSignal, pipe: FilePipe): void {
    const w = this.watched.get(signal);
    if (!w) return;
    w.pipes.delete(pipe);
    if (w.pipes.size > 0) return;
    signal.removeEventListener('abort', w.onAbort);
    this.watched.delete(signal);
  }

  /**
   * Sends FIN; resolves once the sender answered FIN: the transfer is
   * complete. (The stream's end follows; `done` settles then.)
   */
  async finish(): Promise<void> {
    if (!this.finSent) {
      this.finSent = true;
      await this.send({ type: Packet_PacketType.PACKET_FIN, stat: undefined, ID: 0, data: Buffer.alloc(0) });
    }
    await this.finReceived.promise;
  }

  /** Tells the sender why this side stops (ERR). */
  async fail(message: string): Promise<void> {
    await this.channel.send({ type: Packet_PacketType.PACKET_ERR, stat: undefined, ID: 0, data: Buffer.from(message) }).catch(() => {});
  }

  private async send(p: Packet): Promise<void> {
    if (this.failure) throw this.failure;
    await this.channel.send(p);
  }

  private async run(): Promise<void> {
    try {
      for (;;) {
        const p = await this.channel.recv();
        if (p === undefined) {
          if (this.finSent) break;
          throw new BktError('INTERNAL', `${this.what}: the sender ended the stream before the transfer finished`);
        }
        switch (p.type) {
          case Packet_PacketType.PACKET_ERR:
            throw new BktError('INTERNAL', `${this.what}: error from sender: ${p.data.toString('utf8')}`);
          case Packet_PacketType.PACKET_STAT:
            this.onStat(p.stat);
            break;
          case Packet_PacketType.PACKET_DATA: {
            const pipe = this.pipes.get(p.ID);
            if (!pipe) throw new BktError('INTERNAL', `${this.what}: invalid file request ${p.ID}`);
            if (p.data.length === 0) {
              pipe.end();
              this.pipes.delete(p.ID);
            } else await pipe.push(p.data);
            break;
          }
          case Packet_PacketType.PACKET_FIN:
            this.finReceived.resolve();
            break; // then drain to the end of the stream, as receive.go does
        }
      }
    } catch (err) {
      this.failure = err instanceof Error ? err : new Error(String(err));
      for (const pipe of this.pipes.values()) pipe.fail(this.failure);
      this.finReceived.reject(this.failure);
      this.wake();
      throw this.failure;
    }
    this.statsEnded = true;
    // A no-op when FIN was answered.
    this.finReceived.reject(new BktError('INTERNAL', `${this.what}: the sender ended the stream without answering FIN`));
    this.wake();
  }

  private onStat(stat: Stat | undefined): void {
    if (this.statsEnded) throw new BktError('INTERNAL', `${this.what}: a STAT arrived after the end of the walk`);
    if (stat === undefined) {
      this.statsEnded = true;
    } else {
      // Every STAT counts, requestable or not (receive.go: `i++` for each).
      const id = this.nextId++;
      const requestable = canRequestData(stat.mode);
      if (requestable) this.requestable.add(id);
      this.statQueue.push({ id, stat, requestable });
    }
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

/** The chunks of one file between the receive loop and the file's reader, bounded (the loop waits). */
class FilePipe {
  private readonly chunks_: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private dropped = false;
  private failure: Error | undefined;
  private readerWaiting: (() => void) | undefined;
  private writerWaiting: (() => void) | undefined;

  async push(chunk: Buffer): Promise<void> {
    if (this.dropped) return;
    this.chunks_.push(chunk);
    this.buffered += chunk.length;
    this.wakeReader();
    while (this.buffered > FILE_BUFFER_BYTES && !this.dropped && !this.failure) {
      await new Promise<void>((resolve) => (this.writerWaiting = resolve));
    }
  }

  end(): void {
    this.ended = true;
    this.wakeReader();
  }

  fail(err: Error): void {
    this.failure ??= err;
    this.wakeReader();
    this.wakeWriter();
  }

  /** The reader is gone: what arrives is discarded. */
  drop(): void {
    this.dropped = true;
    this.chunks_.length = 0;
    this.buffered = 0;
    this.wakeWriter();
  }

  async *chunks(): AsyncGenerator<Buffer> {
    for (;;) {
      if (this.failure) throw this.failure;
      const next = this.chunks_.shift();
      if (next) {
        this.buffered -= next.length;
        if (this.buffered <= FILE_BUFFER_BYTES) this.wakeWriter();
        yield next;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.readerWaiting = resolve));
    }
  }

  private wakeReader(): void {
    const w = this.readerWaiting;
    this.readerWaiting = undefined;
    w?.();
  }

  private wakeWriter(): void {
    const w = this.writerWaiting;
    this.writerWaiting = undefined;
    w?.();
  }
}
