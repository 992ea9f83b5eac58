/**
 * `moby.filesync.v1.FileSend/DiffCopy` as the client serves it: the daemon
 * sends an output to one of the client's targets, chosen by metadata
 * `buildkit-attachable-exporter-id` (BuildKit's `SyncTarget.DiffCopy`). The
 * client decides where each target goes; the daemon never names a client
 * path. A directory target receives fsutil packets (the method is declared
 * with BytesMessage, but a directory's messages are `fsutil.types.Packet`s),
 * a file target `BytesMessage` chunks until the daemon half-closes.
 */
import { BktError, type BuildClient, type OutputDir, type OutputFile } from '@bkt/core';
import { BytesMessage } from '@bkt/api/filesync';
import { Packet } from '@bkt/api/fsutil';
import { servedChannel, type MessageChannel } from '../channel.js';
import { fileStatOf } from '../filemode.js';
import type { ServerCall } from '../grpc/server.js';
import { FsutilReceiver } from '../fsutil/receive.js';
import { KEY_EXPORTER_ID, KEY_EXPORTER_META_PREFIX } from '../headers.js';
import { endWithError } from './calls.js';

/** Where one of the client's outputs goes. */
export type OutputTarget =
  | { type: 'dir'; dest: string }
  | {
      type: 'file';
      /** A path, or a function of the exporter's metadata (`exporter-md-*`, e.g. an image name). */
      dest: string | ((metadata: Record<string, string>) => string);
    }
  | { type: 'stdout' };

/** The client's outputs by exporter id (the exporter's index in the solve request). */
export type OutputTargets = Readonly<Record<number, OutputTarget>>;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;

export async function serveFileSend(client: BuildClient, targets: OutputTargets, call: ServerCall<Buffer, Buffer>): Promise<void> {
  const md = call.metadata;
  // As SyncTarget.chooser: a missing or malformed id is 0.
  const id = Number.parseInt(md[KEY_EXPORTER_ID]?.[0] ?? '0', 10) || 0;
  const target = Object.hasOwn(targets, id) ? targets[id] : undefined;
  if (!target) {
    endWithError(call, new BktError('NOT_FOUND', `exporter ${id} not found`));
    return;
  }
  const what = `output ${id}`;
  try {
    if (target.type === 'dir') {
      const out = await client.openDir(target.dest, { what });
      await receiveDir(out, servedChannel(call, { decode: (b) => Packet.decode(b), encode: (p) => Buffer.from(Packet.encode(p).finish()) }), what);
    } else {
      const meta: Record<string, string> = {};
      for (const [key, values] of Object.entries(md)) {
        if (key.startsWith(KEY_EXPORTER_META_PREFIX)) meta[key.slice(KEY_EXPORTER_META_PREFIX.length)] = values.join(',');
      }
      const out =
        target.type === 'stdout'
          ? await client.openStdout({ what })
          : await client.openFile(typeof target.dest === 'function' ? target.dest(meta) : target.dest, { what });
      await receiveFile(out, servedChannel(call, { decode: (b) => BytesMessage.decode(b).data, encode: (data) => Buffer.from(BytesMessage.encode({ data }).finish()) }));
    }
    if (!call.cancelled) call.end();
  } catch (err) {
    endWithError(call, err);
  }
}

/**
 * A directory output as fsutil's receiver with `Merge` (BuildKit's
 * `syncTargetDiffCopy`): every entry is written over what the target has,
 * every regular file's data is asked for, and owners become this process's
 * (its filter sets uid/gid to `os.Getuid()`/`os.Getgid()`).
 */
async function receiveDir(out: OutputDir, channel: MessageChannel<Packet>, what: string): Promise<void> {
  const receiver = new FsutilReceiver(channel, what);
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  try {
    for await (const s of receiver.stats()) {
      const entry = { ...fileStatOf(s.stat), uid, gid };
      if ((entry.mode & S_IFMT) === S_IFREG && entry.linkname === undefined && s.requestable) {
        await out.write(entry, { stream: () => receiver.request(s.id) });
      } else {
        await out.write(entry);
      }
    }
    await out.commit();
  } catch (err) {
    await receiver.fail(err instanceof Error ? err.message : String(err));
    throw err;
  }
  await receiver.finish();
}

/** A file output: each message's bytes in order; the daemon's half-close commits it, anything else aborts it. */
async function receiveFile(out: OutputFile, channel: MessageChannel<Buffer>): Promise<void> {
  try {
    for (;;) {
      const data = await channel.recv();
      if (data === undefined) break;
      if (data.length > 0 && !out.stream.write(data)) await drained(out.stream);
    }
  } catch (err) {
    await out.abort();
    throw err;
  }
  await out.commit();
}

function drained(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      stream.off('drain', onDrain);
      stream.off('error', done);
      stream.off('close', onDrain);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    stream.on('drain', onDrain);
    stream.on('error', done);
    stream.on('close', onDrain);
  });
}
