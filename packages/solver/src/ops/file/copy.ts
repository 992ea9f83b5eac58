/**
 * FileActionCopy: copies from a source tree into a destination tree with the
 * semantics of BuildKit's file backend and tonistiigi/fsutil's `copy.Copy`
 * (`cp -a`-like): modes, owners, times, symlinks and hardlinks preserved
 * unless overridden; include/exclude patterns relative to the copied source;
 * a trailing `/` on the destination means "into this directory".
 *
 * Every path is resolved inside its root: `..` is clamped and symlinks are
 * followed as in a chroot (`resolveInRoot`), so neither the source (`../../etc/passwd`,
 * a link to `/etc`) nor the destination can reach outside its tree. A source
 * that does not exist (after clamping) is a `NOT_FOUND` error naming it.
 */
import type { Stats } from 'node:fs';
import {
  chmodSync,
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  symlinkSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { copyFile, readdir, rm } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BktError, Pacer } from '@bkt/core';
import { compilePatterns, resolveInRoot, resolveWildcards, type PatternMatcher } from '@bkt/fsutil';
import type * as pb from '@bkt/api/pb';
import { copySpecial, lstatOrNull, mkdirAllInRoot, timestampSeconds } from './fsops.js';
import { parseModeStr, type ModeSet } from './mode.js';
import type { Owner } from './owner.js';
import type { CopyReuse } from './reuse.js';
import { tryUnpack } from './unpack.js';

const DEFAULT_DIR_MODE = 0o755;

/**
 * Cleans an action path like BuildKit's `cleanPath`: rooted at `/`, `..`
 * clamped, a trailing `/` or `/.` kept (they mean "a directory").
 */
export function cleanActionPath(p: string): string {
  const joined = path.posix.join('/', p);
  const cleaned = joined.length > 1 && joined.endsWith('/') ? joined.slice(0, -1) : joined;
  if (p.endsWith('/.')) return cleaned === '/' ? '/.' : cleaned + '/.';
  if (p.endsWith('/') && cleaned !== '/') return cleaned + '/';
  return cleaned;
}

/** Source path in its root: parents followed; the last component followed only with `followLinks`. */
async function sourcePath(root: string, p: string, followLinks: boolean): Promise<string> {
  const clean = path.posix.join('/', p);
  if (clean === '/') return root;
  if (followLinks) return resolveInRoot(root, clean, { followFinalSymlink: true });
  const parent = await resolveInRoot(root, path.posix.dirname(clean), { followFinalSymlink: true });
  return path.join(parent, path.posix.basename(clean));
}

interface CopyOptions {
  owner: Owner | null;
  time: number | null;
  mode: number | null;
  modeSet: ModeSet | null;
  include: PatternMatcher | null;
  exclude: PatternMatcher | null;
  alwaysReplace: boolean;
  signal?: AbortSignal;
  /** The copy may run as `cp -a` when nothing overrides or filters (see `copyWithCp`). */
  allowCp: boolean;
  /** Files the copy would write as an earlier run did are queued there as links instead (see `reuse.ts`). */
  reuse?: CopyReuse;
  destRoot: string;
}

/** Tuning of `copyAction`; the default is what a build uses. */
export interface CopyTuning {
  /** Lets a plain directory copy run as one `cp -a` (see `copyWithCp`); default true. */
  allowCp?: boolean;
  /** Takes unchanged files from an earlier run of the same copy (see `reuse.ts`); the copy then never runs as `cp -a`. */
  reuse?: CopyReuse;
}

/** Runs one FileActionCopy from `srcRoot` into `destRoot` (host directories); returns the source paths it resolved (wildcards expanded). */
export async function copyAction(
  srcRoot: string,
  destRoot: string,
  action: pb.FileActionCopy,
  owner: Owner | null,
  signal?: AbortSignal,
  tuning: CopyTuning = {},
): Promise<string[]> {
  const srcPath = cleanActionPath(action.src);
  const destPath = cleanActionPath(action.dest);
  const time = timestampSeconds(action.timestamp);

  if (!action.createDestPath) {
    const p = await resolveInRoot(destRoot, path.posix.join('/', action.dest), { followFinalSymlink: true });
    const parent = path.dirname(p);
    if (p !== destRoot && !(await lstatOrNull(parent))) {
      throw new BktError('NOT_FOUND', `copy: destination directory "${path.posix.dirname(path.posix.join('/', action.dest))}" does not exist (set createDestPath to create it)`, {
        path: action.dest,
      });
    }
  }

  let sources: string[];
  if (action.allowWildcard) {
    sources = (await resolveWildcards(srcRoot, srcPath, { followLinks: action.followSymlink })).map((m) => '/' + m);
    if (sources.length === 0) {
      if (action.allowEmptyWildcard) return sources;
      throw new BktError('NOT_FOUND', `copy: "${action.src}" not found: no file matches it in the source`, { path: action.src });
    }
  } else {
    sources = [srcPath];
  }

  const opts: CopyOptions = {
    owner,
    time,
    mode: action.mode === -1 || action.mode === undefined ? null : action.mode,
    modeSet: action.modeStr ? parseModeStr(action.modeStr) : null,
    include: action.includePatterns.length > 0 ? compilePatterns(action.includePatterns, ' (copy includePatterns)') : null,
    exclude: action.excludePatterns.length > 0 ? compilePatterns(action.excludePatterns, ' (copy excludePatterns)') : null,
    alwaysReplace: action.alwaysReplaceExistingDestPaths,
    signal,
    allowCp: (tuning.allowCp ?? true) && !action.allowWildcard && !tuning.reuse,
    reuse: tuning.reuse,
    destRoot,
  };
  tuning.reuse?.useFor(sources);

  for (const src of sources) {
    if (action.attemptUnpackDockerCompatibility) {
      if (await tryUnpack(srcRoot, src, destRoot, destPath, owner, time, signal)) continue;
    }
    await copyOne(srcRoot, src, destRoot, destPath, action, opts);
  }
  return sources;
}

/** fsutil's `copy.Copy` for one (already wildcard-resolved) source. */
async function copyOne(srcRoot: string, src: string, destRoot: string, dest: string, action: pb.FileActionCopy, opts: CopyOptions): Promise<void> {
  const dirPerm = opts.mode ?? DEFAULT_DIR_MODE;
  // A destination ending in `/` (or `/.`) is a directory to create; otherwise its parent is.
  const base = path.posix.basename(dest);
  const ensure = dest.endsWith('/') || base === '.' || dest === '/' ? dest : path.posix.dirname(dest);
  const made = await mkdirAllInRoot(destRoot, await resolveInRoot(destRoot, ensure, { followFinalSymlink: true }), dirPerm & 0o7777, opts.owner, opts.time);

  let target = await resolveInRoot(destRoot, path.posix.normalize(dest), { followFinalSymlink: true });
  const srcAbs = await sourcePath(srcRoot, src, action.followSymlink);
  const srcStat = await lstatOrNull(srcAbs);
  if (!srcStat) {
    throw new BktError('NOT_FOUND', `copy: source "${action.src}" not found${src !== cleanActionPath(action.src) ? ` (resolved to "${src}")` : ''}`, {
      path: action.src,
    });
  }
  const destStat = await lstatOrNull(target);
  const srcIsDir = srcStat.isDirectory();
  if ((!action.dirCopyContents && srcIsDir && destStat) || (!srcIsDir && destStat?.isDirectory())) {
    target = path.join(target, path.posix.basename(path.posix.join('/', src)) || '.');
  }
  const parentToCreate = action.dirCopyContents && srcIsDir && !destStat ? target : path.dirname(target);
  await mkdirAllInRoot(destRoot, parentToCreate, dirPerm & 0o7777, opts.owner, opts.time);

  if (srcIsDir && !destStat && plainCopy(opts) && (await copyWithCp(srcAbs, target, action.dirCopyContents, opts.signal))) return;
  // A directory's contents copied into a destination that did not exist (or that this copy just made, `COPY . /app/`): its entries go into a directory this copy made.
  const madeTarget = made.some((d) => path.resolve(d) === path.resolve(target));
  const copier = new Copier(opts, opts.reuse !== undefined && srcIsDir && action.dirCopyContents && (!destStat || madeTarget));
  await copier.copy(srcAbs, '', target, false);
}

const execFileAsync = promisify(execFile);

/** Nothing overrides owner, mode or times, and nothing filters entries. */
function plainCopy(opts: CopyOptions): boolean {
  return opts.allowCp && !opts.owner && opts.time === null && opts.mode === null && !opts.modeSet && !opts.include && !opts.exclude;
}

/** Above this many bytes of arguments, a contents copy takes the Node path (one `cp` must see every entry to keep hardlinks). */
const MAX_CP_ARG_BYTES = 64 * 1024;

/**
 * Copies directory `src` to `target` with coreutils `cp -a`, which is what the
 * Node copier does for a directory without overrides or patterns, in one
 * process (modes, owners, times, symlinks as symlinks, hardlinks within the
 * copy, device nodes and FIFOs; xattrs and sockets too, as BuildKit does and
 * the Node copier cannot), with reflinks where the filesystem has them. Only
 * used when the destination did not exist, so no merge or replace rule applies.
 *
 * `src` is already resolved inside its root and cp never follows a symlink
 * (neither an argument nor one inside the tree: `-a` implies `-P`), so nothing
 * outside the source is read. With `contents`, `target` is the directory just
 * created for them: its own metadata stays as created, its entries are given
 * to one `cp -t`; otherwise `target` does not exist and becomes the copy of `src`.
 * Returns false, having done nothing, when the entries are too many for one command line.
 */
async function copyWithCp(src: string, target: string, contents: boolean, signal?: AbortSignal): Promise<boolean> {
  let args: string[];
  if (contents) {
    const names = await readdir(src);
    if (names.length === 0) return true;
    const sources = names.sort().map((n) => path.join(src, n));
    if (sources.reduce((n, s) => n + Buffer.byteLength(s) + 1, 0) > MAX_CP_ARG_BYTES) return false;
    args = ['-a', '--reflink=auto', '-t', target, '--', ...sources];
  } else {
    args = ['-a', '--reflink=auto', '-T', '--', src, target];
  }
  try {
    await execFileAsync('cp', args, { signal, maxBuffer: 1024 * 1024 });
  } catch (err) {
    signal?.throwIfAborted();
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new BktError('INTERNAL', `copy: cp -a of "${src}" to "${target}" failed: ${stderr || (err as Error).message}`, { path: src });
  }
  return true;
}

/** Files up to this size are copied with synchronous calls through one buffer; larger ones by `copyFile` (a clone where the filesystem can). */
const SMALL_FILE_BYTES = 1 << 20;

/** A source directory whose copy is held back until something under it is included. */
interface PendingDir {
  dst: string;
  stat: Stats;
  /** Set once created (or found). */
  created?: boolean;
}

function lstatOrNullSync(p: string): Stats | null {
  try {
    return lstatSync(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

const S_ISGID = 0o2000;

/**
 * Recursive copy of one tree; one instance per source, so hardlinks inside it
 * are kept. Entries are copied depth first in name order with synchronous
 * system calls (thousands of small files cost far more in trips through the
 * thread pool than in the calls), paced so the event loop still gets a turn
 * every few milliseconds; files larger than `SMALL_FILE_BYTES` are copied
 * asynchronously.
 */
class Copier {
  /** Source inode → the destination path of its first copy. */
  readonly #inodes = new Map<string, string>();
  readonly #pacer: Pacer;
  #buffer: Buffer | undefined;
  readonly #uid = process.getuid?.();
  readonly #gid = process.getgid?.();
  /** With a reuse: the copy's source relative to the source mount, and its root target relative to the destination tree. */
  #srcPrefix = '';
  #destPrefix = '';

  /** `freshRoot`: the copy's root target is a directory this copy just made. */
  constructor(
    readonly opts: CopyOptions,
    readonly freshRoot = false,
  ) {
    this.#pacer = new Pacer(opts.signal);
  }

  /**
   * `inFreshDir`: `target`'s parent was just created by this copy, so `target` does not exist yet.
   * `setgidParent`: `target`'s parent has the setgid bit (a file created in it takes the directory's group).
   */
  async copy(
    src: string,
    rel: string,
    target: string,
    overwriteTargetMetadata: boolean,
    pending: PendingDir[] = [],
    inFreshDir = false,
    setgidParent = ((lstatOrNullSync(path.dirname(target))?.mode ?? 0) & S_ISGID) !== 0,
  ): Promise<void> {
    this.opts.signal?.throwIfAborted();
    if (this.#pacer.due()) await this.#pacer.pause();
    if (rel === '' && this.opts.reuse) {
      this.#srcPrefix = path.relative(this.opts.reuse.sourceRoot, src);
      this.#destPrefix = path.relative(this.opts.destRoot, target);
    }
    const { include: inc, exclude: exc } = this.opts;
    let included = true;
    let excluded = false;
    if (rel !== '') {
      included = inc ? inc.matches(rel) : true;
      excluded = exc ? exc.matches(rel) : false;
      if (excluded) included = false;
      if (!included && !inc && !exc?.hasExclusions) return;
    }
    const st = lstatOrNullSync(src);
    if (!st) throw new BktError('NOT_FOUND', `copy: "${src}" disappeared while copying`);
    const isDir = st.isDirectory();
    if (!included && !isDir) return;
    // An unmatched directory is only entered when a pattern may match below it.
    if (!included && isDir && rel !== '') {
      const mayInclude = !inc || inc.matches(rel) || inc.mayMatchUnder(rel);
      const mayUnexclude = !excluded || !exc!.canSkipDir(rel);
      if (!mayInclude || !mayUnexclude) return;
    }

    let targetStat = inFreshDir ? null : lstatOrNullSync(target);
    if (included) {
      if (this.opts.alwaysReplace && targetStat && !(isDir && targetStat.isDirectory())) {
        await rm(target, { recursive: true, force: true });
        targetStat = null;
      }
      for (const d of pending) if (!d.created) this.#createHeldDir(d, overwriteTargetMetadata);
      if (!isDir && targetStat) {
        if (targetStat.isDirectory()) {
          throw new BktError('INVALID_ARGUMENT', `copy: cannot replace directory "${target}" with a file (set alwaysReplaceExistingDestPaths)`);
        }
        unlinkSync(target);
        targetStat = null;
      }
    }

    let applyInfo = included;
    if (isDir) {
      let created = false;
      const held: PendingDir = { dst: target, stat: st };
      if (included) {
        created = this.#copyDirectoryOnly(target, st, targetStat, overwriteTargetMetadata);
        held.created = true;
      }
      if (!excluded || this.opts.exclude?.hasExclusions) {
        const names = readdirSync(src).sort();
        const below = [...pending, held];
        // Files created in the directory take its group when it has the setgid bit (as it is while its entries are copied).
        const setgid = ((targetStat && !overwriteTargetMetadata ? targetStat.mode : st.mode) & S_ISGID) !== 0;
        const fresh = created || (rel === '' && this.freshRoot);
        for (const name of names) {
          await this.copy(path.join(src, name), rel === '' ? name : `${rel}/${name}`, path.join(target, name), true, below, fresh, setgid);
        }
      }
      if (!overwriteTargetMetadata) applyInfo = created;
    } else if (st.isFile()) {
      // Only into a directory this copy made: nothing of the destination's base is replaced by a link.
      if (applyInfo && inFreshDir && this.opts.reuse?.match(this.#below(this.#srcPrefix, rel), st, this.#below(this.#destPrefix, rel), this.#info(st, true, setgidParent))) return;
      if (await this.#copyFile(src, target, st, applyInfo, setgidParent)) return;
    } else if (st.isSymbolicLink()) {
      symlinkSync(readlinkSync(src), target);
    } else {
      await copySpecial(target, st);
      if (!lstatOrNullSync(target)) return; // a skipped socket
    }
    if (applyInfo) this.#applyInfo(st, target, st.isFile(), setgidParent);
  }

  /** `rel` (relative to the copy's root, `''` for the root itself) as a path relative to what `prefix` is relative to. */
  #below(prefix: string, rel: string): string {
    return prefix === '' ? rel : rel === '' ? prefix : `${prefix}/${rel}`;
  }

  /**
   * Copies a regular file, or hard-links it to the copy of an inode already
   * copied. Returns true when the copy's metadata was applied too.
   */
  async #copyFile(src: string, target: string, st: Stats, applyInfo: boolean, setgidParent: boolean): Promise<boolean> {
    if (st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      const first = this.#inodes.get(key);
      if (first !== undefined) {
        linkSync(first, target);
        return false;
      }
      this.#inodes.set(key, target);
    }
    if (st.size > SMALL_FILE_BYTES) {
      await copyFile(src, target, constants.COPYFILE_FICLONE);
      return false;
    }
    const input = openSync(src, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      // The target does not exist (removed above, or in a directory this copy just made).
      const output = openSync(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      try {
        const buf = (this.#buffer ??= Buffer.allocUnsafe(SMALL_FILE_BYTES));
        for (;;) {
          const n = readSync(input, buf, 0, buf.length, null);
          if (n === 0) break;
          for (let off = 0; off < n; ) off += writeSync(output, buf, off, n - off);
        }
        if (!applyInfo) return false;
        const info = this.#info(st, true, setgidParent);
        if (info.chown) fchownSync(output, info.uid, info.gid);
        fchmodSync(output, info.perm);
        futimesSync(output, info.atime, info.mtime);
        return true;
      } finally {
        closeSync(output);
      }
    } finally {
      closeSync(input);
    }
  }

  #copyDirectoryOnly(dst: string, st: Stats, dstStat: Stats | null, overwriteTargetMetadata: boolean): boolean {
    if (!dstStat) {
      mkdirSync(dst);
      chmodSync(dst, st.mode & 0o7777);
      return true;
    }
    if (!dstStat.isDirectory()) {
      throw new BktError('INVALID_ARGUMENT', `copy: cannot copy a directory onto non-directory "${dst}" (set alwaysReplaceExistingDestPaths)`);
    }
    if (overwriteTargetMetadata) chmodSync(dst, st.mode & 0o7777);
    return false;
  }

  /** Creates a directory held back by include patterns, once something under it is copied. */
  #createHeldDir(d: PendingDir, overwriteTargetMetadata: boolean): void {
    d.created = true;
    const created = this.#copyDirectoryOnly(d.dst, d.stat, lstatOrNullSync(d.dst), overwriteTargetMetadata);
    if (created) this.#applyInfo(d.stat, d.dst, false, false);
  }

  /**
   * Owner, mode and times of a copied entry: overrides when given, else the
   * source's. `fresh` (a file just created by this copy: it has the source's
   * mode and our own uid/gid, or its directory's group under a setgid
   * directory) skips the calls that change nothing.
   */
  #info(st: Stats, fresh: boolean, setgidParent: boolean) {
    const { owner, mode, modeSet, time } = this.opts;
    const uid = owner ? owner.uid : st.uid;
    const gid = owner ? owner.gid : st.gid;
    let perm = st.mode & 0o7777;
    if (modeSet) perm = modeSet(perm, st.isDirectory());
    else if (mode !== null) perm = mode & 0o7777;
    const chown = !fresh || setgidParent || uid !== this.#uid || gid !== this.#gid;
    // chown clears setuid/setgid bits, so a chown'ed file is always chmod'ed.
    const chmod = !fresh || perm !== (st.mode & 0o7777) || (st.mode & 0o6000) !== 0;
    return { uid, gid, perm, chown, chmod, atime: time ?? st.atimeMs / 1000, mtime: time ?? st.mtimeMs / 1000 };
  }

  #applyInfo(st: Stats, target: string, fresh: boolean, setgidParent: boolean): void {
    const info = this.#info(st, fresh, setgidParent);
    if (info.chown) lchownSync(target, info.uid, info.gid);
    if (!st.isSymbolicLink() && info.chmod) chmodSync(target, info.perm);
    lutimesSync(target, info.atime, info.mtime);
  }
}
