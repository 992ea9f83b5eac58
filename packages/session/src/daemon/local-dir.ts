/**
 * A client's local directory read over the session: `FileSync/DiffCopy`
 * with the daemon as fsutil's receiver (BuildKit's `filesync.FSSync`).
 *
 * `stat(selection)` opens a DiffCopy stream with the selection as metadata
 * and yields the entries; the stream then stays open, so that `read(path)`
 * asks for that entry's bytes on it (REQ for the entry's id) — only the
 * files the build wants travel. A stream stays open until a newer `stat()`
 * of the same directory with the same selection replaces it (after the
 * reads in flight on it end) or the build's client is closed
 * (`SessionBuildClient.close()`); each is then finished with fsutil's FIN
 * exchange. `read(path)` asks the newest open stream that offers the path;
 * when none does (never listed, or already read once: fsutil serves each id
 * once) it opens a stream of its own selecting only that path.
 *
 * Single files are known for the rest of the build: a frontend and the
 * local source each read `.dockerignore` (and probe for it first), which
 * was a stream to the client each time. A `stat` selecting one literal
 * path (a probe: `include` that path, as `readClientFile` and `read` ask)
 * that found no regular file there makes later reads of it `NOT_FOUND` at
 * once, and the bytes of a probed path read whole (at most
 * `KNOWN_FILE_BYTES`) answer later reads of it: one build sees one
 * answer for such a file, however many of its parts ask.
 */
import { createHash } from 'node:crypto';
import { BktError, type ClientLocalDir, type FileStat, type LocalDirSelection } from '@bkt/core';
import { FileSyncService } from '@bkt/api/filesync';
import type { Packet } from '@bkt/api/fsutil';
import { callChannel } from '../channel.js';
import { batchedChannel, diffCopyBatchMethod, DIFFCOPY_BATCH_METHOD } from '../fsutil/batch.js';
import { fileStatOf, stModeOf } from '../filemode.js';
import { FsutilReceiver, type ReceivedStat } from '../fsutil/receive.js';
import type { BidiStream } from '../grpc/caller.js';
import { CallError, sessionError, Status } from '../grpc/status.js';
import { encodeOpts, KEY_DIR_NAME, KEY_EXCLUDE_PATTERNS, KEY_FOLLOW_PATHS, KEY_INCLUDE_PATTERNS, type HeaderMap } from '../headers.js';
import type { Session } from './session.js';

export const DIFFCOPY_METHOD = FileSyncService.diffCopy.path;
/** The largest single file kept for later reads in the build (an ignore file, a Dockerfile). */
export const KNOWN_FILE_BYTES = 64 << 10;

export class SessionLocalDir implements ClientLocalDir {
  readonly syncKey: string;
  private readonly what: string;
  /** The open stream of each selection (by its metadata). */
  private readonly current = new Map<string, OpenSync>();
  /** Every stream not yet finished, oldest first. */
  private readonly syncs = new Set<OpenSync>();
  /** Single files probed in this build: their bytes (read whole), or null (no regular file there). */
  private readonly known = new Map<string, Buffer | null>();
  /** Paths a probe found (their bytes are kept once read). */
  private readonly probed = new Set<string>();

  constructor(
    private readonly session: Session,
    readonly name: string,
  ) {
    this.what = `local directory "${name}"`;
    // The shared key names the client's directories across its sessions; without one, nothing is shared.
    this.syncKey = createHash('sha256').update(`session:${session.sharedKey || session.id}:${name}`).digest('hex');
  }

  async *stat(selection: LocalDirSelection = {}, signal?: AbortSignal): AsyncGenerator<FileStat> {
    const sync = this.open(selection, signal);
    const previous = this.current.get(sync.selectionKey);
    this.current.set(sync.selectionKey, sync);
    previous?.retire();
    const probe = probedPath(selection);
    let file = false;
    try {
      for await (const s of sync.receiver.stats()) {
        sync.offer(s);
        if (s.stat.path === probe && regular(s)) file = true;
        yield fileStatOf(s.stat);
      }
    } catch (err) {
      throw this.error(err);
    }
    if (probe === undefined) return;
    if (file) this.probed.add(probe);
    else this.known.set(probe, null);
  }

  async *read(path: string, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    const rel = path.replace(/^\/+/, '');
    let offered: { sync: OpenSync; id: number } | undefined;
    for (const sync of [...this.syncs].reverse()) {
      const id = sync.take(rel);
      if (id !== undefined) {
        offered = { sync, id };
        break;
      }
    }
    const known = offered ? undefined : this.known.get(rel);
    try {
      if (known === null) throw noRegularFile(this.what, rel);
      if (known) {
        yield Buffer.from(known);
        return;
      }
      const chunks = offered ? offered.sync.read(offered.id, signal) : this.readAlone(rel, signal);
      // A probed file (or one read alone, its own probe) is kept when small: later reads in the build get the same bytes.
      if (!offered || this.probed.has(rel)) yield* this.keeping(rel, chunks);
      else yield* chunks;
    } catch (err) {
      throw this.error(err);
    }
  }

  /** `chunks` of file `rel`, kept in `known` once read whole if small; a read that ends NOT_FOUND is kept as such. */
  private async *keeping(rel: string, chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    let kept: Buffer[] | undefined = [];
    let bytes = 0;
    try {
      for await (const chunk of chunks) {
        if (kept) {
          bytes += chunk.length;
          if (bytes <= KNOWN_FILE_BYTES) kept.push(Buffer.from(chunk));
          else kept = undefined;
        }
        yield chunk;
      }
    } catch (err) {
      if (err instanceof BktError && err.code === 'NOT_FOUND' && !this.known.has(rel)) this.known.set(rel, null);
      throw err;
    }
    if (kept) this.known.set(rel, Buffer.concat(kept, bytes));
  }

  /** Finishes every open stream. */
  async close(): Promise<void> {
    this.current.clear();
    await Promise.all([...this.syncs].map((s) => s.finish()));
  }

  private async *readAlone(rel: string, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    const sync = this.open({ include: [escapePattern(rel)] }, signal);
    try {
      let found: ReceivedStat | undefined;
      for await (const s of sync.receiver.stats()) if (s.stat.path === rel) found = s;
      if (!found || !regular(found)) throw noRegularFile(this.what, rel);
      yield* sync.read(found.id, signal);
    } finally {
      sync.retire();
    }
  }

  private open(selection: LocalDirSelection, signal?: AbortSignal): OpenSync {
    const batched = this.session.supports(DIFFCOPY_BATCH_METHOD);
    if (!batched && !this.session.supports(DIFFCOPY_METHOD)) {
      throw new BktError('UNIMPLEMENTED', `${this.what}: the session's client does not serve ${DIFFCOPY_METHOD}`);
    }
    const md: HeaderMap = { [KEY_DIR_NAME]: [this.name] };
    if (selection.include?.length) md[KEY_INCLUDE_PATTERNS] = [...selection.include];
    if (selection.exclude?.length) md[KEY_EXCLUDE_PATTERNS] = [...selection.exclude];
    if (selection.followPaths?.length) md[KEY_FOLLOW_PATHS] = [...selection.followPaths];
    const metadata = encodeOpts(md);
    // bkt's client serves its batched DiffCopy too: many packets a message.
    const call: BidiStream<unknown, unknown> = batched
      ? this.session.caller.stream(diffCopyBatchMethod, { metadata, signal })
      : this.session.caller.stream(FileSyncService.diffCopy, { metadata, signal });
    const channel = batched ? batchedChannel(callChannel(call as BidiStream<Buffer, Buffer>)) : callChannel(call as BidiStream<Packet, Packet>);
    const sync = new OpenSync(call, new FsutilReceiver(channel, this.what), JSON.stringify(metadata), () => {
      this.syncs.delete(sync);
      if (this.current.get(sync.selectionKey) === sync) this.current.delete(sync.selectionKey);
    });
    this.syncs.add(sync);
    return sync;
  }

  private error(err: unknown): BktError {
    if (err instanceof CallError && err.code === Status.NOT_FOUND) {
      return new BktError('NOT_FOUND', `${this.what}: the client has no such directory (${err.details})`, { name: this.name }, { cause: err });
    }
    return sessionError(this.what, err);
  }
}

/** One DiffCopy stream: the ids of the entries not yet asked for, by path. */
class OpenSync {
  private readonly ids = new Map<string, number>();
  private inFlight = 0;
  private retired = false;
  private finishing: Promise<void> | undefined;

  constructor(
    private readonly call: BidiStream<unknown, unknown>,
    readonly receiver: FsutilReceiver,
    /** The selection it was opened with. */
    readonly selectionKey: string,
    private readonly onFinished: () => void,
  ) {}

  offer(s: ReceivedStat): void {
    if (s.requestable) this.ids.set(s.stat.path, s.id);
  }

  /** The id of `path` if it can still be asked for on this stream (then no longer). */
  take(path: string): number | undefined {
    if (this.retired) return undefined;
    const id = this.ids.get(path);
    if (id !== undefined) this.ids.delete(path);
    return id;
  }

  async *read(id: number, signal?: AbortSignal): AsyncGenerator<Buffer> {
    this.inFlight++;
    try {
      yield* this.receiver.request(id, signal);
    } finally {
      this.inFlight--;
      if (this.retired && this.inFlight === 0) void this.finish();
    }
  }

  /** No new reads; finished once the reads in flight end. */
  retire(): void {
    this.retired = true;
    if (this.inFlight === 0) void this.finish();
  }

  /** FIN, the sender's FIN, then the end of the call; a stream that fails is cancelled instead. */
  finish(): Promise<void> {
    this.retired = true;
    return (this.finishing ??= (async () => {
      try {
        await this.receiver.finish();
        this.call.end();
        await this.call.status;
      } catch {
        this.call.cancel('the file transfer failed');
      } finally {
        this.onFinished();
      }
    })());
  }
}

/** A path as a pattern matching only itself (pattern metacharacters escaped). */
function escapePattern(path: string): string {
  return path.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/** Whether a received entry is a regular file whose bytes may be asked for. */
function regular(s: ReceivedStat): boolean {
  return s.requestable && (stModeOf(s.stat.mode) & 0o170000) === 0o100000;
}

function noRegularFile(what: string, rel: string): BktError {
  return new BktError('NOT_FOUND', `${what}: no regular file "${rel}"`, { path: rel });
}

/**
 * The one path a selection probes for: a single `include` pattern that is a
 * literal clean relative path (metacharacters escaped, as `escapePattern`
 * and core's `readClientFile` write them), no `exclude`. Else undefined.
 */
export function probedPath(selection: LocalDirSelection): string | undefined {
  if (selection.include?.length !== 1 || selection.exclude?.length) return undefined;
  const pattern = selection.include[0]!;
  let path = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\') {
      const next = pattern[++i];
      if (next === undefined) return undefined;
      path += next;
    } else if (c === '*' || c === '?' || c === '[' || c === ']') return undefined;
    else path += c;
  }
  if (path === '' || path.startsWith('!') || path.startsWith('/') || path.endsWith('/')) return undefined;
  if (path.split('/').some((seg) => seg === '' || seg === '.' || seg === '..')) return undefined;
  return path;
}
