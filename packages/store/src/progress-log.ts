/**
 * A build's recorded progress: every progress event it sent — vertices,
 * statuses, warnings and every byte of its steps' output — written as it
 * comes, nothing held in memory. Output only displays show
 * (`only: 'display'`, e.g. a clip notice) is not recorded; output only the
 * history keeps (`only: 'history'`) is.
 *
 * Each event is a row of the metadata DB's `build_progress` (its JSON; a log
 * event's bytes left out). The first `INLINE_LOG_BYTES` of the build's output
 * are kept in the rows; output past them is appended to the build's log file
 * (a store record, made when the build first needs it), the row holding its
 * offset. Most builds thus leave no file; one that prints 50 MB streams it to
 * disk. A log message longer than `MAX_LOG_CHUNK` is split.
 *
 * The build's secret values are replaced by `***` (see redact.ts): in the
 * events' text, and in each step's stdout and stderr as streams.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { BktError, type ProgressEvent, type VertexEvent, type VertexLogEvent, type VertexStatusEvent } from '@bkt/core';
import type { MetadataDB } from './metadata.js';
import type { SecretValues, StreamRedactor } from './redact.js';

/** Output bytes of one build kept in the database; more goes to its log file. */
export const INLINE_LOG_BYTES = 1024 * 1024;
/** The largest log chunk of one row; longer messages are split. */
export const MAX_LOG_CHUNK = 1024 * 1024;
/** Rows read at once. */
const PAGE = 256;

/** A log event as recorded: its bytes left out, their count kept. */
type LogHeader = Omit<VertexLogEvent, 'msg' | 'only'> & { size: number };

export interface ProgressRecorderOptions {
  db: MetadataDB;
  ref: string;
  secrets: SecretValues;
  /** Makes the build's log file (and its record) and returns its path; called once, when output first goes past the database's share. */
  createLogFile: () => string;
}

export class ProgressRecorder {
  readonly #opts: ProgressRecorderOptions;
  /** Per vertex and stream (`<digest> <stream>`), what redacts its output. */
  readonly #redactors = new Map<string, StreamRedactor>();
  #seq = 0;
  #inline = 0;
  #file: { fd: number; size: number } | undefined;
  #closed = false;
  #error: Error | undefined;

  constructor(opts: ProgressRecorderOptions) {
    this.#opts = opts;
    opts.db.clearProgress(opts.ref);
  }

  /** Why recording stopped early (a write failed, e.g. the disk is full); later events were not recorded. */
  get error(): Error | undefined {
    return this.#error;
  }

  /** Records `event` (nothing once closed). Never throws: a failed write stops the recording (see `error`). */
  write(event: ProgressEvent): void {
    if (this.#closed) return;
    try {
      if (event.type === 'log') this.#log(event.log);
      else {
        // A completed vertex's output precedes its completion.
        if (event.type === 'vertex' && (event.vertex.completed || event.vertex.error)) this.#flush(event.vertex.digest);
        this.#row(redactEvent(event, this.#opts.secrets), null);
      }
    } catch (err) {
      this.#error = err as Error;
      this.#stop();
    }
  }

  /** Records what redaction held back and closes the log file. */
  close(): void {
    if (this.#closed) return;
    try {
      this.#flush();
    } catch (err) {
      this.#error = err as Error;
    }
    this.#stop();
  }

  #log(log: VertexLogEvent): void {
    if (log.only === 'display') return;
    const key = `${log.vertex} ${log.stream}`;
    let redactor = this.#redactors.get(key);
    if (!redactor) this.#redactors.set(key, (redactor = this.#opts.secrets.stream()));
    this.#logBytes(log, redactor.push(log.msg));
  }

  #logBytes(log: Pick<VertexLogEvent, 'vertex' | 'stream' | 'timestamp'>, bytes: Uint8Array): void {
    for (let off = 0; off < bytes.length; off += MAX_LOG_CHUNK) {
      const part = bytes.subarray(off, off + MAX_LOG_CHUNK);
      const header: LogHeader = { vertex: log.vertex, stream: log.stream, timestamp: log.timestamp, size: part.length };
      this.#row({ type: 'log', log: header }, part);
    }
  }

  /** Records the output redaction held back, of vertex `digest` or of all. */
  #flush(digest?: string): void {
    for (const [key, redactor] of this.#redactors) {
      const [vertex, stream] = key.split(' ') as [VertexLogEvent['vertex'], string];
      if (digest !== undefined && vertex !== digest) continue;
      const rest = redactor.flush();
      if (rest.length > 0) this.#logBytes({ vertex, stream: Number(stream), timestamp: new Date() }, rest);
    }
  }

  /** One row; a log's bytes inline while the database's share lasts, then in the log file (written before the row that points at them). */
  #row(event: unknown, bytes: Uint8Array | null): void {
    const { db, ref } = this.#opts;
    const seq = ++this.#seq;
    const json = JSON.stringify(event);
    if (bytes === null) return db.addProgress(ref, seq, json, null, null);
    if (!this.#file && this.#inline + bytes.length <= INLINE_LOG_BYTES) {
      this.#inline += bytes.length;
      return db.addProgress(ref, seq, json, bytes, null);
    }
    this.#file ??= { fd: openSync(this.#opts.createLogFile(), 'w', 0o600), size: 0 };
    const offset = this.#file.size;
    for (let done = 0; done < bytes.length; ) done += writeSync(this.#file.fd, bytes, done, bytes.length - done);
    this.#file.size += bytes.length;
    db.addProgress(ref, seq, json, null, offset);
  }

  #stop(): void {
    this.#closed = true;
    if (this.#file) closeSync(this.#file.fd);
    this.#file = undefined;
  }
}

/**
 * The recorded events of build `ref`, in order, read a page at a time. With
 * `logs: false`, log events are left out (their bytes never read).
 * `logFile` is the build's log file; when output in it is asked for and it
 * is gone, `missingLogFile` says why.
 */
export async function* readProgress(
  db: MetadataDB,
  ref: string,
  logFile: string,
  opts: { logs?: boolean; missingLogFile: () => Error },
): AsyncGenerator<ProgressEvent> {
  const logs = opts.logs !== false;
  let file: FileHandle | undefined;
  try {
    for (let after = 0; ; ) {
      const rows = db.progressPage(ref, after, PAGE, logs);
      if (rows.length === 0) return;
      for (const row of rows) {
        after = row.seq;
        const event = revive(JSON.parse(row.event) as ProgressEvent, ref, row.seq);
        if (event.type !== 'log') {
          yield event;
          continue;
        }
        if (!logs) continue;
        const { size, ...log } = event.log as unknown as LogHeader;
        let msg: Buffer;
        if (row.data) msg = row.data;
        else {
          file ??= await open(logFile, 'r').catch((err: NodeJS.ErrnoException) => {
            throw err.code === 'ENOENT' ? opts.missingLogFile() : err;
          });
          msg = await readAt(file, row.fileOffset ?? 0, size, logFile);
        }
        yield { type: 'log', log: { ...log, msg } };
      }
    }
  } finally {
    await file?.close();
  }
}

async function readAt(file: FileHandle, position: number, size: number, path: string): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(size);
  for (let got = 0; got < size; ) {
    const { bytesRead } = await file.read(buf, got, size - got, position + got);
    if (bytesRead === 0) throw new BktError('INTERNAL', `build log file ${path} ends at byte ${position + got}, before the ${size} bytes recorded at ${position}`, { path });
    got += bytesRead;
  }
  return buf;
}

/** `event` with the build's secret values replaced in its free text (names, errors, warnings). */
function redactEvent(event: Exclude<ProgressEvent, { type: 'log' }>, secrets: SecretValues): ProgressEvent {
  const r = (text: string) => secrets.text(text);
  switch (event.type) {
    case 'vertex': {
      const v = event.vertex;
      return {
        type: 'vertex',
        vertex: {
          ...v,
          name: r(v.name),
          ...(v.error !== undefined ? { error: r(v.error) } : {}),
          ...(v.progressGroup ? { progressGroup: { ...v.progressGroup, name: r(v.progressGroup.name) } } : {}),
        },
      };
    }
    case 'status':
      return { type: 'status', status: { ...event.status, id: r(event.status.id), name: r(event.status.name) } };
    case 'warning':
      return { type: 'warning', warning: { ...event.warning, short: r(event.warning.short), detail: event.warning.detail.map(r) } };
  }
}

/** An event as parsed from JSON, its dates made `Date`s again. */
function revive(e: ProgressEvent, ref: string, seq: number): ProgressEvent {
  const dates = <T extends object>(o: T, keys: (keyof T)[]): T => {
    const out = { ...o };
    for (const k of keys) if (typeof out[k] === 'string') (out as Record<keyof T, unknown>)[k] = new Date(out[k] as string);
    return out;
  };
  switch (e.type) {
    case 'vertex':
      return { type: 'vertex', vertex: dates<VertexEvent>(e.vertex, ['started', 'completed']) };
    case 'status':
      return { type: 'status', status: dates<VertexStatusEvent>(e.status, ['timestamp', 'started', 'completed']) };
    case 'log':
      return { type: 'log', log: dates(e.log, ['timestamp']) };
    case 'warning':
      return e;
    default:
      throw new BktError('INTERNAL', `recorded progress of build ${ref}: event ${seq} has unknown type ${JSON.stringify((e as { type?: unknown }).type)}`, { ref });
  }
}
