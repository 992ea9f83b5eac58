/**
 * The client seam: everything a build touches on the client's machine —
 * local directories, output sinks, secrets, ssh agents and registry
 * credentials — reached through one interface, `BuildClient`. Backends never
 * read a host path of the client or write its stdout themselves.
 *
 * The shapes follow BuildKit's session services, so a daemon can implement
 * them over the session (fsutil's DiffCopy for local directories and
 * directory outputs, FileSend for file outputs, Secrets, SSH, Auth): a local
 * directory is a stream of stat entries, then the bytes of the files the
 * receiver asks for; names travel, never host paths. The CLI implements it in
 * process (`createHostClient` of `@bkt/fsutil`).
 */
import type { Writable } from 'node:stream';
import { BktError } from './errors.js';
import type { SecretProvider, SshAgentProvider } from './types.js';

/**
 * One entry of a client directory, as fsutil's `types.Stat` (DiffCopy's
 * `PACKET_STAT`). `mode` is POSIX `st_mode` (type and permission bits); a
 * session implementation converts to and from Go's `os.FileMode`.
 */
export interface FileStat {
  /** Relative to the directory, `/`-separated, no leading `/`. */
  path: string;
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of a regular file; 0 for anything else and for a hardlink. */
  size: number;
  /** Modification time, milliseconds since the epoch (may be fractional). */
  mtimeMs: number;
  /**
   * Optional, opaque: changes whenever the entry may have changed even if
   * its size and mtime say otherwise (a write followed by `utimes`, a file
   * replaced by another with the same stat). The host client sends the
   * device, inode and ctime. Compared for equality only: a receiver that
   * remembers entries trusts an unchanged stat only if this is unchanged too.
   */
  change?: string;
  /**
   * A symlink's target; for a regular file, a hardlink: the path of the
   * first entry of the same inode (which came earlier in the stream).
   */
  linkname?: string;
  /** Device numbers of a character or block device. */
  devmajor?: number;
  devminor?: number;
}

/** What of a client directory to send (the DiffCopy metadata `include-patterns`, `exclude-patterns`, `followpaths`). */
export interface LocalDirSelection {
  /** `.dockerignore`-syntax patterns; only matching entries (and what is under them) are sent. Empty: everything. */
  include?: readonly string[];
  /** `.dockerignore`-syntax patterns of entries left out (`!` re-includes). */
  exclude?: readonly string[];
  /** Paths whose symlink chains (inside the directory) are added to `include`. */
  followPaths?: readonly string[];
}

/**
 * A client directory, read as FileSync's DiffCopy reads it: stat entries
 * first, then the content of only the files the receiver asks for — a
 * receiver that remembers what it saw keeps unchanged files without reading
 * them again.
 */
export interface ClientLocalDir {
  readonly name: string;
  /**
   * The same for the same client directory across builds and processes
   * (the session's shared key): a receiver keys what it remembers by it.
   */
  readonly syncKey: string;
  /**
   * The selected entries in walk order: depth first, names byte-sorted, a
   * directory before its contents (an unselected directory holding selected
   * entries comes too). Symlinks are never followed; sockets are not sent.
   * `NOT_FOUND` when the directory is gone.
   */
  stat(selection?: LocalDirSelection, signal?: AbortSignal): AsyncIterable<FileStat>;
  /** The bytes of regular file `path` (as `stat` names it); `NOT_FOUND` when it is not a regular file of the directory. */
  read(path: string, signal?: AbortSignal): AsyncIterable<Uint8Array>;
}

/** A file output being written (`dest=FILE` of the tar, oci and docker exporters, or stdout). */
export interface OutputFile {
  /** Where the bytes go. Write, then `commit()`; or `abort()`. */
  readonly stream: Writable;
  /** Puts the content in place (a regular file is replaced atomically; stdout is flushed, not closed). */
  commit(): Promise<void>;
  /** Discards what was written; a replaced file is left as it was. */
  abort(): Promise<void>;
}

/** The bytes of a regular file sent to an output directory. */
export interface FileContent {
  stream(): AsyncIterable<Uint8Array>;
  /**
   * A file on this machine holding the same bytes (a mounted snapshot's):
   * a sink in the same process may clone it instead of streaming.
   */
  readonly localPath?: string;
}

/**
 * A directory output (the `local` exporter), as a merging receive: each
 * entry replaces what the directory has at its path (a directory over a
 * directory is merged into); nothing else is touched.
 */
export interface OutputDir {
  /** Writes one entry; parents come first. `content` for a regular file that is not a hardlink. */
  write(entry: FileStat, content?: FileContent): Promise<void>;
  /** Applies the directories' metadata and ends the transfer. */
  commit(): Promise<void>;
}

export interface OutputOptions {
  /** Names the output in errors, e.g. `tar exporter: dest`. */
  what: string;
  /**
   * The index of the exporter writing it in the solve request's `exporters`
   * (BuildKit's exporter id): set by the solver, so a client serving several
   * outputs of one type knows which this is. Exporters need not set it.
   */
  exporter?: number;
}

/** Registry credentials the client holds (the session's Auth service). */
export interface RegistryCredentials {
  username: string;
  /** A password or an identity token. */
  secret: string;
}

/** The client's machine, as a build sees it. */
export interface BuildClient {
  /** Names of the local directories the client offers (`context`, `dockerfile`, …). */
  localDirNames(): string[];
  /** A local directory by name; undefined when the client offers none of that name. */
  localDir(name: string): ClientLocalDir | undefined;
  /** Opens file output `dest` (the client resolves it; e.g. relative to its working directory). */
  openFile(dest: string, opts: OutputOptions): Promise<OutputFile>;
  /** The client's standard output (`dest=-`). */
  openStdout(opts: OutputOptions): Promise<OutputFile>;
  /** Opens directory output `dest` (created when missing). */
  openDir(dest: string, opts: OutputOptions): Promise<OutputDir>;
  /** Secrets the client offers, by id. Backends read them through `BuildContext.secrets`. */
  readonly secrets: SecretProvider;
  /** SSH agents the client forwards, by id. Backends reach them through `BuildContext.ssh`. */
  readonly ssh: SshAgentProvider;
  /** Credentials for registry `host`, or null. */
  credentials(host: string): Promise<RegistryCredentials | null>;
}

export const NO_SECRETS: SecretProvider = { get: async () => null };
export const NO_SSH_AGENTS: SshAgentProvider = { socketPath: async () => null };

/** A client that offers nothing: no directories, no outputs, no secrets, no agents (a build without a client). */
export function emptyClient(): BuildClient {
  const none = async (): Promise<never> => {
    throw new BktError('UNIMPLEMENTED', 'this build has no client to write outputs to');
  };
  return {
    localDirNames: () => [],
    localDir: () => undefined,
    openFile: none,
    openStdout: none,
    openDir: none,
    secrets: NO_SECRETS,
    ssh: NO_SSH_AGENTS,
    credentials: async () => null,
  };
}

/**
 * The content of file `path` of a client directory, following a final
 * symlink chain inside the directory (as `followpaths` does); undefined
 * when there is no such regular file.
 */
export async function readClientFile(dir: ClientLocalDir, path: string, signal?: AbortSignal): Promise<Buffer | undefined> {
  const wanted = path.replace(/^\/+/, '');
  const entries = new Map<string, FileStat>();
  for await (const e of dir.stat({ include: [escapePattern(wanted)], followPaths: [wanted] }, signal)) entries.set(e.path, e);
  let current = wanted;
  for (let hops = 0; hops < 40; hops++) {
    const e = entries.get(current);
    if (!e) return undefined;
    const type = e.mode & 0o170000;
    if (type === 0o100000) {
      const chunks: Uint8Array[] = [];
      for await (const c of dir.read(e.linkname ?? current, signal)) chunks.push(c);
      return Buffer.concat(chunks);
    }
    if (type !== 0o120000 || e.linkname === undefined) return undefined;
    current = resolveLink(current, e.linkname);
  }
  return undefined;
}

/** A symlink's target as a path of the directory (absolute targets from its top; `..` stops at it). */
function resolveLink(from: string, target: string): string {
  const parts = target.startsWith('/') ? [] : from.split('/').slice(0, -1);
  for (const seg of target.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') parts.pop();
    else parts.push(seg);
  }
  return parts.join('/');
}

/** A path as a pattern matching only itself. */
function escapePattern(path: string): string {
  return path.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
