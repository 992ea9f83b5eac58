/**
 * A worker thread that stages received files: it creates each file (never
 * through a symlink), writes the bytes the main thread read from the client,
 * gives it its owner, mode and mtime, and hashes it. The main thread keeps
 * only the client's reads, so a cold sync's thousands of file creations and
 * its hashing run beside whatever else the build does (an image's unpack).
 *
 * The worker's code is a self-contained script (node: built-ins only), run
 * with `eval`: it does not depend on where a bundler put this module.
 *
 * Protocol: the main thread posts batches of operations on files it numbers
 * (`open`, `data`, `end` with the metadata, `abort`), each `data` an
 * ArrayBuffer of its own (transferred); the worker answers a batch with the
 * results of the files it ended or aborted (digest or error) and the bytes it
 * consumed. At most `MAX_QUEUED_BYTES` are in flight: a sender waits for the
 * worker to catch up. `close()` closes every descriptor the worker holds
 * before it stops (descriptors are the process's, not the thread's).
 */
import { Worker } from 'node:worker_threads';
import type { Digest } from '@bkt/core';

/** Owner, permissions and mtime of an entry in the snapshot (a staged file is given them). */
export interface EntryMeta {
  uid: number;
  gid: number;
  perm: number;
  mtime: Date;
}

/** Bytes posted to the worker and not yet written: a sender waits above this. */
const MAX_QUEUED_BYTES = 16 * 1024 * 1024;
/** A file's bytes go to the worker in pieces of at least this size (its last piece aside). */
const PIECE_BYTES = 64 * 1024;
/** A batch is posted once it holds this many bytes (else on the next turn of the event loop). */
const BATCH_BYTES = 1024 * 1024;

type Op =
  | { t: 'open'; id: number; file: string }
  | { t: 'data'; id: number; bytes: ArrayBuffer }
  | { t: 'end'; id: number; uid: number; gid: number; perm: number; mtimeMs: number }
  | { t: 'abort'; id: number }
  | { t: 'closeAll' };

interface Reply {
  results: { id: number; digest?: string; error?: { message: string; code?: string } }[];
  consumed: number;
  closed?: boolean;
}

const WORKER_SOURCE = `
'use strict';
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const { createHash } = require('node:crypto');
const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
const isRoot = process.getuid && process.getuid() === 0;
/** id -> { fd, hash } of the files being written; a failed file stays as { error } until its end or abort. */
const files = new Map();
const fail = (f, err) => {
  if (f.fd >= 0) { try { fs.closeSync(f.fd); } catch {} f.fd = -1; }
  f.error ??= { message: err && err.message ? err.message : String(err), code: err && err.code };
};
parentPort.on('message', (batch) => {
  const results = [];
  let consumed = 0;
  let closed = false;
  for (const op of batch) {
    if (op.t === 'open') {
      const f = { fd: -1, hash: createHash('sha256') };
      files.set(op.id, f);
      try { f.fd = fs.openSync(op.file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600); } catch (err) { fail(f, err); }
    } else if (op.t === 'data') {
      consumed += op.bytes.byteLength;
      const f = files.get(op.id);
      if (!f || f.fd < 0) continue;
      const bytes = new Uint8Array(op.bytes);
      try {
        f.hash.update(bytes);
        for (let off = 0; off < bytes.length; ) off += fs.writeSync(f.fd, bytes, off);
      } catch (err) { fail(f, err); }
    } else if (op.t === 'end') {
      const f = files.get(op.id);
      files.delete(op.id);
      if (!f) continue;
      if (f.fd >= 0) {
        try {
          // Owner first (as root), then permissions (chown clears setuid bits), then times.
          if (isRoot) fs.fchownSync(f.fd, op.uid, op.gid);
          fs.fchmodSync(f.fd, op.perm);
          fs.futimesSync(f.fd, op.mtimeMs / 1000, op.mtimeMs / 1000);
          fs.closeSync(f.fd);
          f.fd = -1;
        } catch (err) { fail(f, err); }
      }
      results.push(f.error ? { id: op.id, error: f.error } : { id: op.id, digest: 'sha256:' + f.hash.digest('hex') });
    } else if (op.t === 'abort') {
      const f = files.get(op.id);
      files.delete(op.id);
      if (f) fail(f, new Error('aborted'));
      results.push({ id: op.id, error: { message: 'aborted' } });
    } else if (op.t === 'closeAll') {
      for (const f of files.values()) fail(f, new Error('closed'));
      files.clear();
      closed = true;
    }
  }
  parentPort.postMessage({ results, consumed, closed });
});
`;

/** Stages files in a worker thread (see the module comment). One per sync; `close()` it when done. */
export class Stager {
  readonly #worker: Worker;
  #nextId = 0;
  #batch: Op[] = [];
  #transfer: ArrayBuffer[] = [];
  #batchBytes = 0;
  #flushScheduled = false;
  /** Bytes posted (or batched) and not yet consumed by the worker. */
  #queued = 0;
  #drained: (() => void)[] = [];
  readonly #waiting = new Map<number, { resolve: (d: Digest) => void; reject: (e: Error) => void }>();
  #failed: Error | undefined;
  #closed: (() => void) | undefined;

  constructor() {
    this.#worker = new Worker(WORKER_SOURCE, { eval: true });
    this.#worker.on('message', (reply: Reply) => this.#onReply(reply));
    this.#worker.on('error', (err) => this.#fail(err));
    this.#worker.on('exit', (code) => this.#fail(new Error(`the staging worker exited (code ${code})`)));
  }

  /**
   * Writes `chunks` to the new file `file` (created; never through a
   * symlink) with `meta`. Resolves once every chunk has been sent, with
   * `written`: the digest of the bytes, once the worker has written them (so
   * the caller reads the next file meanwhile). A chunk is copied before the
   * next is asked for: its producer may reuse it. `size` (the file's
   * expected size) only sizes the copies.
   */
  async stage(file: string, chunks: AsyncIterable<Uint8Array>, size: number, meta: EntryMeta): Promise<{ written: Promise<Digest> }> {
    if (this.#failed) throw this.#failed;
    const id = this.#nextId++;
    const done = new Promise<Digest>((resolve, reject) => this.#waiting.set(id, { resolve, reject }));
    done.catch(() => undefined); // the caller's, unless its file's read failed first
    this.#post({ t: 'open', id, file });
    // Each chunk is copied at once (its producer may reuse it): a large one into a buffer of its own, small ones (a
    // session client's) together into pieces of PIECE_BYTES. The copies are transferred to the worker, not copied again.
    let piece: Uint8Array | undefined;
    let used = 0;
    let sent = 0;
    const send = (bytes: Uint8Array) => this.#post({ t: 'data', id, bytes: bytes.buffer as ArrayBuffer }, bytes.buffer as ArrayBuffer);
    const sendPiece = () => {
      if (piece && used > 0) send(used === piece.byteLength ? piece : piece.slice(0, used));
      sent += used;
      piece = undefined;
      used = 0;
    };
    try {
      for await (const chunk of chunks) {
        if (chunk.byteLength === 0) continue;
        if (chunk.byteLength >= PIECE_BYTES) {
          sendPiece();
          send(new Uint8Array(chunk));
          sent += chunk.byteLength;
        } else {
          for (let off = 0; off < chunk.byteLength; ) {
            // What is left of the file, as its size tells, in one piece when it is small.
            piece ??= new Uint8Array(Math.min(PIECE_BYTES, Math.max(size - sent, chunk.byteLength - off)));
            const n = Math.min(chunk.byteLength - off, piece.byteLength - used);
            piece.set(chunk.subarray(off, off + n), used);
            used += n;
            off += n;
            if (used === piece.byteLength) sendPiece();
          }
        }
        if (this.#queued > MAX_QUEUED_BYTES) await this.#drain();
        if (this.#failed) throw this.#failed;
      }
      sendPiece();
    } catch (err) {
      this.#post({ t: 'abort', id });
      throw err;
    }
    this.#post({ t: 'end', id, uid: meta.uid, gid: meta.gid, perm: meta.perm, mtimeMs: meta.mtime.getTime() });
    return { written: done };
  }

  /** Closes every file the worker still holds, then stops it. */
  async close(): Promise<void> {
    if (!this.#failed) {
      const closed = new Promise<void>((resolve) => (this.#closed = resolve));
      this.#post({ t: 'closeAll' });
      this.#flush();
      await Promise.race([closed, new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()))]);
    }
    this.#worker.removeAllListeners('exit');
    await this.#worker.terminate();
    // A file still being sent (its read outlived the sync) fails.
    this.#fail(new Error('staging stopped: the stager was closed'));
  }

  #post(op: Op, bytes?: ArrayBuffer): void {
    this.#batch.push(op);
    if (bytes) {
      this.#transfer.push(bytes);
      this.#batchBytes += bytes.byteLength;
      this.#queued += bytes.byteLength;
    }
    if (this.#batchBytes >= BATCH_BYTES) this.#flush();
    else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#batch.length === 0 || this.#failed) return;
    this.#worker.postMessage(this.#batch, this.#transfer);
    this.#batch = [];
    this.#transfer = [];
    this.#batchBytes = 0;
  }

  #drain(): Promise<void> {
    this.#flush();
    if (this.#failed) return Promise.resolve();
    return new Promise((resolve) => this.#drained.push(resolve));
  }

  #onReply(reply: Reply): void {
    this.#queued -= reply.consumed;
    for (const r of reply.results) {
      const w = this.#waiting.get(r.id);
      this.#waiting.delete(r.id);
      if (!w) continue;
      if (r.digest !== undefined) w.resolve(r.digest as Digest);
      else w.reject(Object.assign(new Error(r.error?.message ?? 'staging failed'), r.error?.code ? { code: r.error.code } : {}));
    }
    if (this.#queued <= MAX_QUEUED_BYTES / 2) for (const d of this.#drained.splice(0)) d();
    if (reply.closed) this.#closed?.();
  }

  #fail(err: Error): void {
    this.#failed ??= err;
    for (const w of this.#waiting.values()) w.reject(this.#failed);
    this.#waiting.clear();
    for (const d of this.#drained.splice(0)) d();
    this.#closed?.();
  }
}
