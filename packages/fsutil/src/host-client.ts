/**
 * `createHostClient`: the client seam (`BuildClient` of @bkt/core) over this
 * machine, for a build run in the client's own process (the `bkt` CLI).
 * Local directories are host directories walked here; outputs are host
 * paths (relative to `cwd`) and the given stdout.
 */
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, createWriteStream, fstatSync, openSync, readlinkSync, readSync, realpathSync, type ReadStream, type Stats } from 'node:fs';
import { chmod, copyFile, constants, lchown, link, lstat, lutimes, mkdir, readlink, rm, stat, symlink, utimes } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import {
  BktError,
  NO_SECRETS,
  NO_SSH_AGENTS,
  Pacer,
  type BuildClient,
  type ClientLocalDir,
  type FileContent,
  type FileStat,
  type LocalDirSelection,
  type OutputDir,
  type OutputFile,
  type RegistryCredentials,
  type SecretProvider,
  type SshAgentProvider,
} from '@bkt/core';
import { openOutputFile } from './output-file.js';
import { cleanRelPath } from './patterns.js';
import { selectionPatterns } from './selection.js';
import { walkBatches } from './walk.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const { S_IFMT, S_IFSOCK, S_IFREG, S_IFLNK, S_IFCHR, S_IFBLK } = constants;

export interface HostClientOptions {
  /** Local directories by name: host paths (relative to `cwd`). */
  localDirs?: Readonly<Record<string, string>>;
  /** Where relative output paths start (default: the process's working directory). */
  cwd?: string;
  /** The stream of `dest=-` (default: process.stdout). It is never ended. */
  stdout?: NodeJS.WritableStream;
  secrets?: SecretProvider;
  ssh?: SshAgentProvider;
  credentials?(host: string): Promise<RegistryCredentials | null>;
  /**
   * The store root: never sent as part of a local directory, and no output
   * directory may overlap it.
   */
  storeRoot?: string;
  /** Host paths never sent as part of a local directory (e.g. the build's output destinations inside its context). */
  excludePaths?: readonly string[];
}

export function createHostClient(opts: HostClientOptions = {}): BuildClient {
  const cwd = opts.cwd ?? process.cwd();
  const dirs = Object.fromEntries(Object.entries(opts.localDirs ?? {}).map(([name, dir]) => [name, resolve(cwd, dir)]));
  const stdout = opts.stdout ?? process.stdout;
  return {
    localDirNames: () => Object.keys(dirs).sort(),
    localDir: (name) => (Object.hasOwn(dirs, name) ? hostLocalDir(name, dirs[name]!, { storeRoot: opts.storeRoot, excludePaths: opts.excludePaths }) : undefined),
    openFile: (dest, o) => openOutputFile(dest, { what: o.what }, cwd),
    openStdout: async () => stdoutSink(stdout),
    openDir: (dest, o) => openHostDir(resolve(cwd, dest), o.what, opts.storeRoot),
    secrets: opts.secrets ?? NO_SECRETS,
    ssh: opts.ssh ?? NO_SSH_AGENTS,
    credentials: async (host) => (opts.credentials ? opts.credentials(host) : null),
  };
}

// ---------------------------------------------------------------------------
// Local directories.

/** What a local directory never sends: the store root, and the excluded paths. */
interface HostExclusions {
  storeRoot?: string;
  excludePaths?: readonly string[];
}

/** Files up to this size are read with one `read` into one buffer (sized from `fstat`); larger ones are streamed. */
export const SMALL_FILE_BYTES = 1 << 20;

function hostLocalDir(name: string, dir: string, exclusions: HostExclusions): ClientLocalDir {
  // The directory's own real path, resolved once: an opened file's path is compared against it.
  let realRoot: string | undefined;
  // Small reads are synchronous system calls (a trip through the thread pool each costs more than the call); the event
  // loop gets a turn every few milliseconds of them.
  const pacer = new Pacer();
  /**
   * Whether open descriptor `fd` is the file at `rel` of the directory, reached through no symlink: the kernel's
   * path of the descriptor (`/proc/self/fd`) must be the directory's real path joined with `rel`. Checking what was
   * opened (not the path before opening it) leaves no window between check and open, and an ancestor swapped for a
   * symlink (even to the very directory moved away, same inode) gives another path.
   */
  const opened = (fd: number, rel: string): boolean => {
    try {
      realRoot ??= realpathSync.native(dir);
      return readlinkSync(`/proc/self/fd/${fd}`) === join(realRoot, rel);
    } catch {
      return false;
    }
  };
  return {
    name,
    syncKey: createHash('sha256').update(`host:${dir}`).digest('hex'),
    stat: (selection, signal) => statDir(name, dir, exclusions, selection ?? {}, signal),
    async *read(path, signal) {
      signal?.throwIfAborted();
      if (pacer.due()) await pacer.pause();
      const rel = cleanRelPath(path);
      const abs = join(dir, rel);
      if (!rel || rel === '.' || relative(dir, abs).startsWith('..')) throw notFound(name, path);
      // Only a regular file of the directory is sent, as fsutil's sender sends what its walk saw:
      // no path through a symlink, no symlink, FIFO (O_NONBLOCK: never waits for a writer) or device.
      let fd: number;
      try {
        fd = openSync(abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      } catch {
        throw notFound(name, path);
      }
      // The descriptor is closed exactly once: here, or by the stream of a large file once no read of it is pending
      // (closing it under a queued read would let that read take bytes of whatever file reuses the number).
      let stream: ReadStream | undefined;
      try {
        const st = fstatSync(fd);
        if (!st.isFile() || !opened(fd, relative(dir, abs))) throw notFound(name, path);
        if (st.size <= SMALL_FILE_BYTES) {
          // Read to the end, as a stream would: the size only sizes the buffer.
          const chunks = readSmall(fd, st.size);
          closeSync(fd);
          fd = -1;
          yield* chunks;
          return;
        }
        stream = createReadStream('', { fd, highWaterMark: SMALL_FILE_BYTES, signal, autoClose: true });
        fd = -1;
        yield* stream as AsyncIterable<Buffer>;
      } finally {
        if (fd >= 0) closeSync(fd);
        if (stream && !stream.closed) {
          // The reader stopped (or failed): an error of the stream now has no one to tell; wait for the descriptor to close.
          const s = stream;
          s.on('error', () => {});
          await new Promise<void>((closed) => {
            s.once('close', closed);
            s.destroy();
          });
        }
      }
    },
  };
}

/** What reads past a small file's expected end (to see it end) land in; copied out only when there is more. */
let probe: Buffer | undefined;

/**
 * The bytes of open file `fd` from its start to its end, read at explicit offsets (never the descriptor's own
 * position): one buffer of `size` bytes unless the file grew or shrank meanwhile. Only a read of 0 bytes ends it.
 * The chunks returned are the caller's (none is a view of a buffer read into again).
 */
export function readSmall(fd: number, size: number): Buffer[] {
  const buf = Buffer.allocUnsafe(size);
  let filled = 0;
  while (filled < size) {
    const n = readSync(fd, buf, filled, size - filled, filled);
    if (n === 0) return filled === 0 ? [] : [buf.subarray(0, filled)];
    filled += n;
  }
  const chunks = size > 0 ? [buf] : [];
  probe ??= Buffer.allocUnsafe(64 * 1024);
  for (let pos = filled; ; ) {
    const n = readSync(fd, probe, 0, probe.length, pos);
    if (n === 0) return chunks;
    chunks.push(Buffer.from(probe.subarray(0, n)));
    pos += n;
  }
}

function notFound(name: string, path: string): BktError {
  return new BktError('NOT_FOUND', `local directory "${name}": no regular file "${path}"`, { path });
}

async function* statDir(name: string, dir: string, exclusions: HostExclusions, sel: LocalDirSelection, signal?: AbortSignal): AsyncGenerator<FileStat> {
  let st;
  try {
    st = await stat(dir);
  } catch {
    throw new BktError('NOT_FOUND', `local directory "${name}": ${dir} does not exist`, { path: dir });
  }
  if (!st.isDirectory()) throw new BktError('INVALID_ARGUMENT', `local directory "${name}": ${dir} is not a directory`, { path: dir });
  const { include, exclude } = await selectionPatterns(dir, sel, { ...exclusions, what: `local directory "${name}"` });

  const firstOfInode = new Map<string, string>();
  // A batch of the walk at a time (one async step per batch, not per entry).
  for await (const batch of walkBatches(dir, { include, exclude, signal })) {
    for (const e of batch) {
      const s = e.stat;
      const type = s.mode & S_IFMT;
      if (type === S_IFSOCK) continue;
      const entry: FileStat = { path: e.path, mode: s.mode, uid: s.uid, gid: s.gid, size: type === S_IFREG ? s.size : 0, mtimeMs: s.mtimeMs, change: `${s.dev}:${s.ino}:${s.ctimeMs}` };
      if (type === S_IFLNK) entry.linkname = await readlink(e.absPath);
      else if (type === S_IFREG && s.nlink > 1) {
        const first = firstOfInode.get(`${s.dev}:${s.ino}`);
        if (first !== undefined) {
          entry.linkname = first;
          entry.size = 0;
        } else firstOfInode.set(`${s.dev}:${s.ino}`, e.path);
      } else if (type === S_IFCHR || type === S_IFBLK) {
        entry.devmajor = devMajor(s.rdev);
        entry.devminor = devMinor(s.rdev);
      }
      yield entry;
    }
  }
}

/** Linux dev_t encoding of major/minor numbers. */
function devMajor(rdev: number): number {
  return Number((BigInt(rdev) >> 8n) & 0xfffn);
}
function devMinor(rdev: number): number {
  return Number((BigInt(rdev) & 0xffn) | ((BigInt(rdev) >> 12n) & 0xfff00n));
}

// ---------------------------------------------------------------------------
// Outputs.

/** stdout as an output file: written through, never ended (others may write after us). */
function stdoutSink(stdout: NodeJS.WritableStream): OutputFile {
  const through = new PassThrough();
  const drained = new Promise<void>((ok) => through.once('end', ok));
  // stdout is not ended, so its errors are forwarded by hand.
  const onError = (err: Error) => through.destroy(err);
  stdout.once('error', onError);
  through.pipe(stdout, { end: false });
  const detach = () => {
    stdout.removeListener('error', onError);
    through.unpipe(stdout);
  };
  return {
    stream: through,
    commit: async () => {
      try {
        if (!through.writableEnded) through.end();
        await drained;
      } finally {
        detach();
      }
    },
    abort: async () => {
      through.destroy();
      detach();
    },
  };
}

/** Exporting must not write into the store, nor lay a tree over it. */
function refuseOverlap(dest: string, what: string, storeRoot: string | undefined): void {
  if (storeRoot === undefined) return;
  const inside = (child: string, parent: string) => {
    const rel = relative(parent, child);
    return rel === '' || (rel !== '..' && !rel.startsWith('../') && !isAbsolute(rel));
  };
  const root = resolve(storeRoot);
  if (inside(root, dest) || inside(dest, root)) {
    throw new BktError('INVALID_ARGUMENT', `${what}: dest "${dest}" overlaps the store root ${root}; choose another directory`, { attribute: 'dest', path: dest });
  }
}

/**
 * A directory output over host directory `dest`: created when missing;
 * `/` and a path that is not a directory are refused. Entries are written
 * parents first; an existing entry in the way is replaced (never followed),
 * so the tree cannot write outside `dest`. Owners are kept when running as root.
 */
async function openHostDir(dest: string, what: string, storeRoot: string | undefined): Promise<OutputDir> {
  refuseOverlap(dest, what, storeRoot);
  if (dest === '/') throw new BktError('INVALID_ARGUMENT', `${what}: refusing to write into "/" (attribute dest)`, { attribute: 'dest' });
  const st = await stat(dest).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!st) await mkdir(dest, { recursive: true });
  else if (!st.isDirectory()) throw new BktError('INVALID_ARGUMENT', `${what}: dest "${dest}" exists and is not a directory`, { attribute: 'dest', path: dest });

  const dirs: { path: string; entry: FileStat }[] = [];
  // What this output wrote: an entry goes only under a directory written before it (never through a symlink it or
  // the destination holds), a hardlink only to a regular file written before it — whoever sends the tree.
  const writtenDirs = new Set<string>(['.']);
  const writtenFiles = new Set<string>();
  return {
    async write(entry, content) {
      const rel = cleanRelPath(entry.path);
      const target = join(dest, rel);
      if (rel === '..' || rel.startsWith('../') || relative(dest, target).startsWith('..')) {
        throw new BktError('INVALID_ARGUMENT', `${what}: entry "${entry.path}" is outside the directory`, { path: entry.path });
      }
      const type = entry.mode & 0o170000;
      if (rel === '.' && type !== 0o040000) {
        throw new BktError('INVALID_ARGUMENT', `${what}: entry "${entry.path}" would replace the directory itself`, { path: entry.path });
      }
      const parent = dirname(rel);
      if (rel !== '.' && !writtenDirs.has(parent)) {
        throw new BktError('INVALID_ARGUMENT', `${what}: entry "${entry.path}" is not under a directory sent before it ("${parent}")`, { path: entry.path });
      }
      // A path sent again replaces what it was (platform-split=false merges trees); what was under a replaced
      // directory is gone, and nothing may be written under it or linked to it any more.
      if (type !== 0o040000 && writtenDirs.delete(rel)) {
        for (const set of [writtenDirs, writtenFiles]) for (const p of set) if (p.startsWith(`${rel}/`)) set.delete(p);
      }
      writtenFiles.delete(rel);
      await clearForMerge(target, type === 0o040000);
      if (type === 0o040000) {
        await mkdir(target, { mode: 0o700, recursive: true });
        writtenDirs.add(rel);
        dirs.push({ path: target, entry });
        return;
      }
      if (type === 0o100000 && entry.linkname !== undefined) {
        const linked = cleanRelPath(entry.linkname);
        if (!writtenFiles.has(linked)) {
          throw new BktError('INVALID_ARGUMENT', `${what}: entry "${entry.path}" links to "${entry.linkname}", not a regular file sent before it`, { path: entry.path });
        }
        await link(join(dest, linked), target);
        writtenFiles.add(rel);
        return;
      }
      if (type === 0o100000) writtenFiles.add(rel);
      if (type === 0o120000) {
        await symlink(entry.linkname ?? '', target);
        if (isRoot) await lchown(target, entry.uid, entry.gid);
        const t = new Date(entry.mtimeMs);
        await lutimes(target, t, t);
        return;
      }
      if (type === 0o100000) await writeContent(target, content);
      else if (type === 0o010000) await run('mkfifo', ['-m', (entry.mode & 0o7777).toString(8), target]);
      else if (type === 0o020000 || type === 0o060000) {
        await run('mknod', ['-m', (entry.mode & 0o7777).toString(8), target, type === 0o020000 ? 'c' : 'b', String(entry.devmajor ?? 0), String(entry.devminor ?? 0)]);
      } else return; // sockets cannot be made
      await setMetadata(target, entry);
    },
    async commit() {
      // Directories last, deepest first: writing children changes a directory's mtime.
      for (const d of dirs.splice(0).reverse()) await setMetadata(d.path, d.entry);
    },
  };
}

async function writeContent(target: string, content: FileContent | undefined): Promise<void> {
  if (content?.localPath !== undefined) {
    await copyFile(content.localPath, target, constants.COPYFILE_FICLONE);
    return;
  }
  await pipeline(content ? content.stream() : [], createWriteStream(target, { flags: 'wx', mode: 0o600 }));
}

/** Removes whatever is at `path` unless both it and the incoming entry are directories. */
async function clearForMerge(path: string, incomingIsDir: boolean): Promise<void> {
  let existing: Stats;
  try {
    existing = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (existing.isDirectory() && incomingIsDir) return;
  await rm(path, { recursive: true, force: true });
}

async function setMetadata(path: string, entry: FileStat): Promise<void> {
  if (isRoot) await lchown(path, entry.uid, entry.gid);
  await chmod(path, entry.mode & 0o7777);
  const t = new Date(entry.mtimeMs);
  await utimes(path, t, t);
}
