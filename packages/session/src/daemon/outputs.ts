/**
 * Outputs sent to the client over the session: `FileSend/DiffCopy` with
 * metadata `buildkit-attachable-exporter-id` naming the client's target
 * (BuildKit's `filesync.CopyToCaller` and `CopyFileWriter`). A directory is
 * sent with fsutil's protocol (the daemon is the sender); a file as
 * `BytesMessage` chunks of at most 3 MiB, committed by half-closing once the
 * client took them.
 */
import { Writable } from 'node:stream';
import { BktError, type FileContent, type FileStat, type OutputDir, type OutputFile } from '@bkt/core';
import { FileSendService } from '@bkt/api/filesync';
import { Packet } from '@bkt/api/fsutil';
import { callChannel } from '../channel.js';
import { wireStatOf } from '../filemode.js';
import { FsutilSender } from '../fsutil/send.js';
import type { BidiStream, MethodDefinition } from '../grpc/caller.js';
import { sessionError } from '../grpc/status.js';
import { KEY_EXPORTER_ID, KEY_EXPORTER_META_PREFIX } from '../headers.js';
import type { Session } from './session.js';

export const FILESEND_METHOD = FileSendService.diffCopy.path;

/** grpc-go's default message limit is 4 MiB: chunks stay below it (diffcopy.go `maxChunkSize`). */
const MAX_CHUNK = 3 << 20;

/** Which of the client's targets an output goes to, and the exporter metadata a file target receives. */
export interface OutputTargetRef {
  /** The exporter's id (its index in the solve request). */
  id: number;
  /** Sent as `exporter-md-<key>` (file targets). */
  metadata?: Readonly<Record<string, string>>;
}

/** FileSend's method with fsutil packets as its messages (a directory target). */
const FILESEND_PACKETS: MethodDefinition<Packet, Packet> = {
  path: FILESEND_METHOD,
  requestSerialize: (p) => Buffer.from(Packet.encode(p).finish()),
  responseDeserialize: (b) => Packet.decode(b),
};

function open<Req, Res>(session: Session, method: MethodDefinition<Req, Res>, target: OutputTargetRef, what: string, signal?: AbortSignal): BidiStream<Req, Res> {
  if (!session.supports(FILESEND_METHOD)) {
    throw new BktError('UNIMPLEMENTED', `${what}: the session's client accepts no outputs (it does not serve ${FILESEND_METHOD})`);
  }
  const metadata: Record<string, string> = { [KEY_EXPORTER_ID]: String(target.id) };
  for (const [key, value] of Object.entries(target.metadata ?? {})) metadata[`${KEY_EXPORTER_META_PREFIX}${key}`.toLowerCase()] = value;
  return session.caller.stream(method, { metadata, signal });
}

/**
 * A directory output on the client. `write` resolves once the client took
 * the entry — for a regular file, once its bytes were sent (the client asks
 * for every file as its STAT arrives, as fsutil's receivers do), so the
 * content may be released after it; `commit` ends the walk and the transfer.
 */
export function sessionOutputDir(session: Session, target: OutputTargetRef, what: string, signal?: AbortSignal): OutputDir {
  const call = open(session, FILESEND_PACKETS, target, what, signal);
  const sender = new FsutilSender(callChannel(call));
  const serving = sender.serve();
  serving.catch(() => {});
  const failed = (err: unknown) => sessionError(what, err);
  return {
    async write(entry: FileStat, content?: FileContent) {
      try {
        const hasData = (entry.mode & 0o170000) === 0o100000 && entry.linkname === undefined;
        const { sent } = await sender.stat(wireStatOf(entry), hasData && content ? () => content.stream() : undefined);
        if (hasData) await Promise.race([sent, serving.then(() => sent)]);
      } catch (err) {
        call.cancel('the output failed');
        throw failed(err);
      }
    },
    async commit() {
      try {
        await sender.end();
        await serving;
        call.end();
        await call.status;
      } catch (err) {
        call.cancel('the output failed');
        throw failed(err);
      }
    },
  };
}

/** A file output on the client (`dest=FILE` or stdout, as the client's target says). */
export function sessionOutputFile(session: Session, target: OutputTargetRef, what: string, signal?: AbortSignal): OutputFile {
  const call = open(session, FileSendService.diffCopy, target, what, signal);
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      void (async () => {
        for (let at = 0; at < chunk.length; at += MAX_CHUNK) await call.write({ data: chunk.subarray(at, at + MAX_CHUNK) });
      })().then(() => callback(), (err: unknown) => callback(sessionError(what, err)));
    },
  });
  stream.on('error', () => call.cancel('the output failed'));
  return {
    stream,
    async commit() {
      try {
        if (!stream.writableFinished) {
          await new Promise<void>((resolve, reject) => {
            stream.once('error', reject);
            stream.end(() => resolve());
          });
        }
        call.end();
        await call.status;
      } catch (err) {
        call.cancel('the output failed');
        throw sessionError(what, err);
      }
    },
    async abort() {
      call.cancel('the output was aborted');
      stream.destroy();
      await call.status.catch(() => {});
    },
  };
}
