import { createReadStream } from 'node:fs';
import { readlink } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { inodeKey, walkSorted } from './tree.js';

/** A tree to put in a tar stream, under an optional directory prefix (`linux_amd64/`). */
export interface TarTree {
  path: string;
  prefix: string;
}

/**
 * Writes the trees as one tar stream into `out`: entries in byte order of
 * their paths (deterministic), with mode, uid, gid, mtime, symlink targets
 * (never followed), hardlinks within the output and device numbers.
 * Resolves once `out` has received every byte; rejects with `out`'s error
 * (EPIPE, ENOSPC, …) as soon as it fails, never leaving a write waiting,
 * and with `signal`'s abort error before each entry once it is aborted.
 */
export async function writeTar(trees: TarTree[], out: Writable, signal?: AbortSignal): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack, out);
  done.catch(() => undefined); // observed below; this only keeps an early failure from being unhandled
  // Each write waits for its entry or for the stream to fail, whichever comes first.
  const addEntry = (header: Partial<tar.Header> & { name: string }) => Promise.race([entryWritten(pack, header), failed(done)]);
  try {
    signal?.throwIfAborted();
    const linked = new Map<string, string>();
    for (const tree of trees) {
      if (tree.prefix) {
        await addEntry({ name: tree.prefix, type: 'directory', mode: 0o755, mtime: new Date(0) });
      }
      for await (const entry of walkSorted(tree.path)) {
        signal?.throwIfAborted();
        const st = entry.stat;
        const name = tree.prefix + entry.rel;
        const common = { name, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtime };
        if (!st.isDirectory() && st.nlink > 1) {
          const first = linked.get(inodeKey(st));
          if (first) {
            await addEntry({ ...common, type: 'link', linkname: first });
            continue;
          }
          linked.set(inodeKey(st), name);
        }
        if (st.isDirectory()) {
          await addEntry({ ...common, name: `${name}/`, type: 'directory' });
        } else if (st.isSymbolicLink()) {
          await addEntry({ ...common, type: 'symlink', linkname: await readlink(entry.abs) });
        } else if (st.isFile()) {
          const stream = pack.entry({ ...common, type: 'file', size: st.size });
          await Promise.race([pipeline(createReadStream(entry.abs), stream), failed(done)]);
        } else if (st.isFIFO()) {
          await addEntry({ ...common, type: 'fifo' });
        } else if (st.isCharacterDevice() || st.isBlockDevice()) {
          const rdev = BigInt(st.rdev);
          await addEntry({
            ...common,
            type: st.isCharacterDevice() ? 'character-device' : 'block-device',
            devmajor: Number((rdev >> 8n) & 0xfffn),
            devminor: Number((rdev & 0xffn) | ((rdev >> 12n) & 0xfff00n)),
          });
        }
        // Sockets have no tar representation; they are skipped.
      }
    }
    pack.finalize();
  } catch (err) {
    pack.destroy(err as Error);
    await done.catch(() => undefined);
    throw err;
  }
  await done;
}

function entryWritten(pack: tar.Pack, header: Partial<tar.Header> & { name: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry(header, (err) => (err ? reject(err) : resolve()));
  });
}

/** Rejects when `done` rejects; never resolves (a finished stream is no failure to race against). */
function failed(done: Promise<void>): Promise<never> {
  return done.then(
    () => new Promise<never>(() => {}),
    (err: unknown) => Promise.reject(err),
  );
}
