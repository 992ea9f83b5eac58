/**
 * Writing a file the user named as an output (`dest=FILE`, `--metadata-file`,
 * `--iidfile`) without harming what is there:
 *
 * - a regular file, or a missing one, is replaced atomically: the content is
 *   written to a temporary file beside it and renamed over it on `commit()`
 *   (an existing file's mode and owner are kept); `abort()` leaves the old
 *   file as it was;
 * - a character device (`/dev/null`, a tty) or a FIFO is written into, as a
 *   shell's `>` does, and never replaced (as with `>`, opening a FIFO waits
 *   for its reader);
 * - a symlink is followed (up to 40 links), and its target is treated as above;
 * - a directory, a block device or a socket is refused with an
 *   `INVALID_ARGUMENT` error naming the destination and what it is.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { chmod, chown, lstat, mkdir, readlink, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { finished } from 'node:stream/promises';
import { BktError } from '@bkt/core';

export interface OutputFile {
  /** Where the bytes go. Write, then `commit()`; or `abort()`. */
  readonly stream: WriteStream;
  /** The path written in the end (a symlink's target). */
  readonly path: string;
  /** Ends the stream and puts the content in place. */
  commit(): Promise<void>;
  /** Discards what was written; a replaced file is left as it was. */
  abort(): Promise<void>;
}

export interface OutputFileOptions {
  /** Names the destination in errors, e.g. `tar exporter: dest` or `--iidfile`. */
  what: string;
  /** Mode of a file that did not exist (default 0o644). */
  mode?: number;
}

const MAX_SYMLINKS = 40;

/** Opens the output `dest` (relative to `cwd`, default the process's) for writing; see the module comment. */
export async function openOutputFile(dest: string, opts: OutputFileOptions, cwd = process.cwd()): Promise<OutputFile> {
  const target = await followSymlinks(isAbsolute(dest) ? dest : `${cwd}/${dest}`, opts.what, dest);
  const st = await stat(target).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (st && (st.isCharacterDevice() || st.isFIFO())) {
    // Written in place; O_TRUNC means nothing to a device or a FIFO.
    const stream = createWriteStream(target, { flags: 'w' });
    stream.on('error', () => undefined); // reported by the writer's pipeline or by commit()
    return {
      stream,
      path: target,
      commit: async () => {
        stream.end();
        await finished(stream);
      },
      abort: async () => {
        stream.destroy();
      },
    };
  }
  if (st && !st.isFile()) {
    const kind = st.isDirectory() ? 'a directory' : st.isBlockDevice() ? 'a block device' : st.isSocket() ? 'a socket' : 'not a regular file';
    throw new BktError(
      'INVALID_ARGUMENT',
      `${opts.what} "${dest}" is ${kind}; an output file must be a regular file (replaced), a character device or a FIFO (written into)`,
      { path: dest },
    );
  }

  await mkdir(dirname(target), { recursive: true });
  const tmp = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.bkt-partial`);
  const stream = createWriteStream(tmp, { flags: 'wx', mode: st ? st.mode & 0o7777 : (opts.mode ?? 0o644) });
  stream.on('error', () => undefined); // reported by the writer's pipeline or by commit()
  const discard = async () => {
    stream.destroy();
    await rm(tmp, { force: true });
  };
  return {
    stream,
    path: target,
    commit: async () => {
      try {
        stream.end();
        await finished(stream);
        if (st) {
          // The old file's owner, then its mode (chown clears setuid/setgid; the umask narrowed the mode at creation).
          await chown(tmp, st.uid, st.gid).catch(() => undefined);
          await chmod(tmp, st.mode & 0o7777);
        }
        await rename(tmp, target);
      } catch (err) {
        await discard();
        throw err;
      }
    },
    abort: discard,
  };
}

/** Writes `bytes` to the output `dest` as `openOutputFile` does. */
export async function writeOutputFile(dest: string, bytes: string | Uint8Array, opts: OutputFileOptions, cwd?: string): Promise<void> {
  const out = await openOutputFile(dest, opts, cwd);
  try {
    await new Promise<void>((ok, fail) => out.stream.write(bytes, (err) => (err ? fail(err) : ok())));
  } catch (err) {
    await out.abort();
    throw err;
  }
  await out.commit();
}

/**
 * The path `path` leads to after following symlinks, as the kernel follows
 * them: the directories on the way are resolved first (`dir/../f` with `dir`
 * a symlink is `realpath(dir)/../f`), then the final component while it is a
 * link. A missing final component (a new file, or a dangling link's target)
 * is kept as named.
 */
async function followSymlinks(path: string, what: string, dest: string): Promise<string> {
  let current = path;
  for (let hops = 0; hops <= MAX_SYMLINKS; hops++) {
    current = join(await realDirectory(dirname(current)), basename(current));
    const st = await lstat(current).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw err;
    });
    if (!st?.isSymbolicLink()) return current;
    const link = await readlink(current);
    // Not normalised here: `..` is resolved by realpath, after the symlinks before it.
    current = isAbsolute(link) ? link : `${dirname(current)}/${link}`;
  }
  throw new BktError('INVALID_ARGUMENT', `${what} "${dest}": too many levels of symbolic links`, { path: dest });
}

/** `realpath` of a directory; for a missing one, that of its nearest existing ancestor with the rest appended (it is created later). */
async function realDirectory(dir: string): Promise<string> {
  try {
    return await realpath(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(dir) === dir) throw err;
    return join(await realDirectory(dirname(dir)), basename(dir));
  }
}
