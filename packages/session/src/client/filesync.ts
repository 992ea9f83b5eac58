/**
 * `moby.filesync.v1.FileSync/DiffCopy` as the client serves it: the local
 * directory named by metadata `dir-name`, selected by `include-patterns`,
 * `exclude-patterns` and `followpaths` (BuildKit's `fsSyncProvider.handle`),
 * sent with fsutil's protocol. The walk and the bytes are the client's
 * (`BuildClient.localDir`: the host client's walk, selection and reads).
 */
import { BktError, type BuildClient, type LocalDirSelection } from '@bkt/core';
import type { Packet } from '@bkt/api/fsutil';
import { servedChannel, type MessageChannel } from '../channel.js';
import type { ServerCall } from '../grpc/server.js';
import { batchedChannel, type BatchedChannel } from '../fsutil/batch.js';
import { FsutilSender } from '../fsutil/send.js';
import { decodeOpts, KEY_DIR_NAME, KEY_EXCLUDE_PATTERNS, KEY_FOLLOW_PATHS, KEY_INCLUDE_PATTERNS } from '../headers.js';
import { endWithError } from './calls.js';

export function serveDiffCopy(client: BuildClient, call: ServerCall<Packet, Packet>): Promise<void> {
  return serveDirectory(client, call, servedChannel<Packet>(call), false);
}

/** bkt's DiffCopy (`DIFFCOPY_BATCH_METHOD`): the same, many packets a message, with the entries' change tokens. */
export function serveDiffCopyBatch(client: BuildClient, call: ServerCall<Buffer, Buffer>): Promise<void> {
  return serveDirectory(client, call, batchedChannel(servedChannel<Buffer>(call)), true);
}

async function serveDirectory(
  client: BuildClient,
  call: ServerCall<Packet, Packet> | ServerCall<Buffer, Buffer>,
  channel: MessageChannel<Packet> | BatchedChannel,
  extended: boolean,
): Promise<void> {
  const md = decodeOpts(call.metadata);
  const name = md[KEY_DIR_NAME]?.[0] ?? '';
  const dir = client.localDir(name);
  if (!dir) {
    // BuildKit's words (filesync.go), answered as NOT_FOUND.
    endWithError(call, new BktError('NOT_FOUND', `no access allowed to dir "${name}"`));
    return;
  }
  const selection: LocalDirSelection = {};
  if (md[KEY_INCLUDE_PATTERNS]) selection.include = md[KEY_INCLUDE_PATTERNS];
  if (md[KEY_EXCLUDE_PATTERNS]) selection.exclude = md[KEY_EXCLUDE_PATTERNS];
  if (md[KEY_FOLLOW_PATHS]) selection.followPaths = md[KEY_FOLLOW_PATHS];

  const abort = new AbortController();
  call.on('cancelled', () => abort.abort());
  const sender = new FsutilSender(channel);
  const serving = sender.serve();
  const walking = (async () => {
    let started = false;
    const read = (path: string) => dir.read(path, abort.signal);
    try {
      for await (const e of dir.stat(selection, abort.signal)) {
        started = true;
        const queued = sender.entry(e, extended, read);
        if (queued) await queued;
      }
      await sender.end();
    } catch (err) {
      // A walk failing midway is told with ERR (send.go); one that cannot start (no such
      // directory, a bad pattern) only by the call's status, which keeps its code.
      if (started && !abort.signal.aborted) await sender.fail(err instanceof Error ? err.message : String(err));
      throw err;
    }
  })();
  walking.catch(() => {});
  try {
    // The receiver's FIN may come before the walk ends (it stopped reading the stats): the walk then stops.
    await Promise.race([serving, walking.then(() => serving)]);
    abort.abort();
    if ('flush' in channel) await channel.flush();
    if (!call.cancelled) call.end();
  } catch (err) {
    abort.abort();
    endWithError(call, err);
  }
}
