import { chmod, copyFile, constants, lchown, link, mkdir, readFile, readlink, rename, stat, symlink, utimes, lutimes, writeFile } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import { BktError, type Attrs, type BuildContext, type Digest, type Platform, type Snapshot, type Source, type SourceIdentifier, type SourceInstance } from '@bkt/core';
import { checksum, parseDockerignore, selectionPatterns, walk } from '@bkt/fsutil';
import { parseLocalAttrs, type LocalAttrs } from './attrs.js';

export interface LocalSourceOptions {
  /**
   * Read `.dockerignore` at the top of a local directory as exclude patterns
   * when the op gives none (as `docker build` does for its context). Default true.
   */
  dockerignore?: boolean;
  /**
   * Keep the client files' uid/gid in the snapshot (when running as root).
   * Default false: every entry is owned by 0:0, as buildx sends a context.
   */
  keepOwners?: boolean;
}

const isRoot = process.getuid?.() === 0;

/** What a `local://NAME` op selects: its directory and final include/exclude patterns. */
interface Selection {
  name: string;
  dir: string;
  include: string[];
  exclude: string[];
}

/**
 * The `local` source: `local://NAME` is the client directory `ctx.localDirs[NAME]`,
 * narrowed by the op's include/exclude patterns. Its cache key is the content
 * checksum of the selection (paths, modes, owners, sizes, link targets, file
 * content; never timestamps), and an unchanged selection reuses the snapshot
 * made the last time.
 */
export function createLocalSource(opts: LocalSourceOptions = {}): Source {
  const useDockerignore = opts.dockerignore ?? true;
  const keepOwners = opts.keepOwners ?? false;
  return {
    schemes: ['local'],
    identify(scheme: string, ref: string, attrs: Attrs, platform?: Platform): SourceIdentifier {
      const name = ref.replace(/^\/\//, '');
      if (!name) throw new BktError('INVALID_ARGUMENT', `local source: "${scheme}://${ref}" has no directory name`);
      parseLocalAttrs(attrs);
      return { scheme, ref: name, attrs, platform };
    },
    async resolve(id: SourceIdentifier, ctx: BuildContext): Promise<SourceInstance> {
      const selection = await select(id.ref, parseLocalAttrs(id.attrs), ctx, useDockerignore);
      let key: Promise<Digest> | undefined;
      const contentKey = () => (key ??= checksum(selection.dir, selector(selection), { signal: ctx.signal }));
      return {
        async cacheKey() {
          return { key: await contentKey() };
        },
        async snapshot(bctx: BuildContext) {
          const expected = await contentKey();
          // The copy is a second walk: verify the files did not change since the key was computed.
          const verify = async () => {
            const now = await checksum(selection.dir, selector(selection), { signal: bctx.signal });
            if (now !== expected) {
              throw new BktError(
                'INVALID_ARGUMENT',
                `local source "${selection.name}": files in ${selection.dir} changed while the build was reading them; build again`,
                { path: selection.dir },
              );
            }
          };
          return snapshotSelection(selection, expected, bctx, keepOwners, verify);
        },
      };
    },
  };
}

/** What the cache key covers: the selection's entries under the directory. */
function selector(sel: Selection) {
  return { path: '/', includePatterns: sel.include, excludePatterns: sel.exclude };
}

async function select(name: string, attrs: LocalAttrs, ctx: BuildContext, useDockerignore: boolean): Promise<Selection> {
  const dir = ctx.localDirs[name];
  if (dir === undefined) {
    const known = Object.keys(ctx.localDirs).sort();
    throw new BktError(
      'NOT_FOUND',
      `local source: no local directory named "${name}" was given to this build (known: ${known.length ? known.join(', ') : 'none'})`,
      { attribute: 'local', name },
    );
  }
  let st;
  try {
    st = await stat(dir);
  } catch {
    throw new BktError('NOT_FOUND', `local source "${name}": directory ${dir} does not exist`, { path: dir });
  }
  if (!st.isDirectory()) throw new BktError('INVALID_ARGUMENT', `local source "${name}": ${dir} is not a directory`, { path: dir });

  let exclude = attrs.exclude;
  if (exclude.length === 0 && useDockerignore) {
    const text = await readFile(join(dir, '.dockerignore'), 'utf8').catch(() => undefined);
    if (text !== undefined) exclude = parseDockerignore(text);
  }
  const selected = await selectionPatterns(dir, { include: attrs.include, exclude, followPaths: attrs.followPaths }, { storeRoot: ctx.root, what: `local source "${name}"` });
  return { name, dir, ...selected };
}


/** Where the snapshot made for a content checksum is remembered, under the store root. */
function indexPath(root: string, key: Digest): string {
  return join(root, 'source-local', key.replace(':', '-'));
}

/**
 * The snapshot of a selection: the one recorded for its checksum if it still
 * exists, else a new copy, committed only once `verify` confirms the
 * directory still has the content the checksum was computed from.
 */
async function snapshotSelection(
  sel: Selection,
  key: Digest,
  ctx: BuildContext,
  keepOwners: boolean,
  verify: () => Promise<void>,
): Promise<Snapshot> {
  const recorded = await readFile(indexPath(ctx.root, key), 'utf8').catch(() => undefined);
  if (recorded) {
    try {
      return await ctx.snapshotter.get(recorded.trim());
    } catch {
      // pruned since: make it again
    }
  }
  const mutable = await ctx.snapshotter.prepare(null, { description: `local source ${sel.name}` });
  try {
    await copySelection(sel, mutable.path, ctx.signal, keepOwners);
    await verify();
  } catch (err) {
    await mutable.discard();
    throw err;
  }
  const snapshot = await mutable.commit();
  const file = indexPath(ctx.root, key);
  await mkdir(join(ctx.root, 'source-local'), { recursive: true });
  await writeFile(`${file}.tmp-${process.pid}`, snapshot.id);
  await rename(`${file}.tmp-${process.pid}`, file);
  return snapshot;
}

/**
 * Copies the selected entries of `sel.dir` into `dest`: modes, mtimes,
 * hardlinks within the selection, symlinks as symlinks (their targets are
 * never read, so a link pointing out of the directory copies as a link).
 * Owners are 0:0, or the client's with `keepOwners` (when running as root).
 */
async function copySelection(sel: Selection, dest: string, signal: AbortSignal, keepOwners: boolean): Promise<void> {
  // Without root, files can only be owned by us.
  const setOwner = async (path: string, st: Stats) => {
    if (isRoot) await lchown(path, keepOwners ? st.uid : 0, keepOwners ? st.gid : 0);
  };
  // The snapshot's root keeps the snapshotter's mode and owner, as BuildKit's file sync does.
  const dirs: { path: string; st: Stats }[] = [];
  const linked = new Map<string, string>();
  for await (const entry of walk(sel.dir, { include: sel.include, exclude: sel.exclude, signal })) {
    const target = join(dest, entry.path);
    const st = entry.stat;
    if (st.isDirectory()) {
      await mkdir(target, { mode: 0o700 });
      dirs.push({ path: target, st });
      continue;
    }
    if (st.nlink > 1) {
      const first = linked.get(`${st.dev}:${st.ino}`);
      if (first) {
        await link(first, target);
        continue;
      }
      linked.set(`${st.dev}:${st.ino}`, target);
    }
    if (st.isSymbolicLink()) {
      await symlink(await readlink(entry.absPath), target);
      await setOwner(target, st);
      await lutimes(target, st.atime, st.mtime);
    } else if (st.isFile()) {
      await copyFile(entry.absPath, target, constants.COPYFILE_FICLONE);
      await setOwner(target, st);
      await chmod(target, st.mode & 0o7777);
      await utimes(target, st.atime, st.mtime);
    }
    // Sockets, fifos and devices of a client directory are not sent, as with BuildKit's file sync.
  }
  for (const d of dirs.reverse()) {
    await setOwner(d.path, d.st);
    await chmod(d.path, d.st.mode & 0o7777);
    await utimes(d.path, d.st.atime, d.st.mtime);
  }
}
