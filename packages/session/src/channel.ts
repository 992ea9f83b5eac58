/**
 * A message channel: one bidirectional stream of messages, as the fsutil
 * protocol code sees it, over either end of a session call (a call the
 * client serves, or a call the daemon makes with its caller).
 */
import type { BidiStream } from './grpc/caller.js';
import type { ServerCall } from './grpc/server.js';
import { CallError, Status } from './grpc/status.js';

export interface MessageChannel<T> {
  /** Sends one message; resolves when the stream took it. Rejects when the call is over. */
  send(message: T): Promise<void>;
  /** The next message, or undefined at the end of the other side's messages. Rejects when the call fails. */
  recv(): Promise<T | undefined>;
}

/** Messages buffered from a served call before it is paused (HTTP/2 flow control then stops the peer). */
const HIGH_WATER = 16;

/**
 * The channel of a call the client serves. `decode`/`encode` convert when
 * the method is registered with raw bytes (FileSend carries fsutil packets
 * or byte chunks depending on the target).
 */
export function servedChannel<T, Wire = T>(
  call: ServerCall<Wire, Wire>,
  codec: { decode(w: Wire): T; encode(m: T): Wire } = { decode: (w) => w as unknown as T, encode: (m) => m as unknown as Wire },
): MessageChannel<T> {
  const queue: T[] = [];
  let ended = false;
  let failure: Error | undefined;
  let waiter: (() => void) | undefined;
  const wake = () => {
    const w = waiter;
    waiter = undefined;
    w?.();
  };
  call.on('data', (w: Wire) => {
    try {
      queue.push(codec.decode(w));
    } catch (err) {
      failure ??= new CallError(Status.INVALID_ARGUMENT, `cannot decode a message: ${(err as Error).message}`, call.getPath());
    }
    if (queue.length >= HIGH_WATER) call.pause();
    wake();
  });
  call.on('end', () => {
    ended = true;
    wake();
  });
  const cancelled = () => {
    failure ??= new CallError(Status.CANCELLED, 'the daemon cancelled the call', call.getPath());
    wake();
  };
  if (call.cancelled) cancelled();
  call.on('cancelled', cancelled);
  return {
    async send(message) {
      if (failure) throw failure;
      if (call.cancelled || call.writableEnded) throw new CallError(Status.CANCELLED, 'the call is over', call.getPath());
      if (call.write(codec.encode(message))) return;
      await new Promise<void>((resolve) => {
        const done = () => {
          call.off('drain', done);
          call.off('cancelled', done);
          resolve();
        };
        call.on('drain', done);
        call.on('cancelled', done);
      });
      if (call.cancelled) throw failure ?? new CallError(Status.CANCELLED, 'the daemon cancelled the call', call.getPath());
    },
    async recv() {
      for (;;) {
        if (failure) throw failure;
        if (queue.length > 0) {
          const next = queue.shift()!;
          if (queue.length < HIGH_WATER / 4 && call.isPaused()) call.resume();
          return next;
        }
        if (ended) return undefined;
        await new Promise<void>((resolve) => (waiter = resolve));
      }
    },
  };
}

/** The channel of a call the daemon makes. */
export function callChannel<T>(call: BidiStream<T, T>): MessageChannel<T> {
  const incoming = call[Symbol.asyncIterator]();
  return {
    send: (message) => call.write(message),
    async recv() {
      const next = await incoming.next();
      return next.done ? undefined : next.value;
    },
  };
}
