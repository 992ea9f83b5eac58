import { createReadStream, type Stats } from 'node:fs';
import { lstat, mkdir, readdir, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BktError,
  type Attrs,
  type BuildContext,
  type BuildResult,
  type Exporter,
  type FileStat,
  type Mounted,
  type OutputDir,
  type Snapshot,
} from '@bkt/core';
import { compareBytes, inodeKey, walkSorted, type TreeEntry } from './tree.js';

interface ParsedAttrs {
  dest: string;
  platformSplit: boolean | undefined;
}

/**
 * Validates exporter attrs as buildx gives them: `dest` (required) and
 * `platform-split` (bool). Any other attribute is an error naming it.
 */
function parseAttrs(type: string, attrs: Attrs): ParsedAttrs {
  let dest: string | undefined;
  let platformSplit: boolean | undefined;
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'dest') dest = value;
    else if (key === 'platform-split') {
      if (value !== 'true' && value !== 'false') {
        throw new BktError('INVALID_ARGUMENT', `${type} exporter: attribute platform-split must be true or false, got "${value}"`, {
          attribute: key,
        });
      }
      platformSplit = value === 'true';
    } else {
      throw new BktError('INVALID_ARGUMENT', `${type} exporter: unknown attribute "${key}" (known: dest, platform-split)`, {
        attribute: key,
      });
    }
  }
  if (!dest) {
    throw new BktError('INVALID_ARGUMENT', `${type} exporter: attribute dest is required`, { attribute: 'dest' });
  }
  return { dest, platformSplit };
}

/**
 * The trees of a result: the single ref, or one per platform key when the
 * result has several refs (written under `os_arch[_variant]/` as BuildKit
 * does, unless `platform-split=false`, which overlays them in order).
 */
function resultTrees(result: BuildResult, platformSplit: boolean | undefined): { snapshot: Snapshot | null; prefix: string }[] {
  const refs = Object.entries(result.refs ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (refs.length > 1) {
    const split = platformSplit ?? true;
    return refs.map(([key, snapshot]) => ({ snapshot, prefix: split ? `${key.replaceAll('/', '_')}/` : '' }));
  }
  if (refs.length === 1 && !result.ref) return [{ snapshot: refs[0]![1], prefix: '' }];
  return [{ snapshot: result.ref, prefix: '' }];
}

/** Mounts the snapshots (an empty directory stands for a null ref); `release()` undoes all. */
async function mountAll(
  trees: { snapshot: Snapshot | null; prefix: string }[],
  scratch: () => Promise<string>,
): Promise<{ mounts: { path: string; prefix: string }[]; release: () => Promise<void> }> {
  const held: Mounted[] = [];
  const release = async () => {
    for (const m of held.splice(0)) await m.release();
  };
  try {
    const mounts = [];
    for (const tree of trees) {
      if (tree.snapshot) {
        const m = await tree.snapshot.mount();
        held.push(m);
        mounts.push({ path: m.path, prefix: tree.prefix });
      } else {
        mounts.push({ path: await scratch(), prefix: tree.prefix });
      }
    }
    return { mounts, release };
  } catch (err) {
    await release();
    throw err;
  }
}

async function withScratchDir<T>(base: string, fn: (scratch: () => Promise<string>) => Promise<T>): Promise<T> {
  const dir = join(base, `.bkt-scratch-${process.pid}-${Date.now()}`);
  let made = false;
  try {
    return await fn(async () => {
      await mkdir(dir, { recursive: true });
      made = true;
      return dir;
    });
  } finally {
    if (made) await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The `local` exporter: lays the result's tree over directory `dest` (created
 * when missing). As with BuildKit, it merges: entries of the result replace
 * what `dest` has at their paths, and nothing else in `dest` is deleted.
 */
export function createLocalExporter(): Exporter {
  return {
    type: 'local',
    async resolve(attrs) {
      const { dest, platformSplit } = parseAttrs('local', attrs);
      return {
        async export(result, ctx) {
          const out = await ctx.client.openDir(dest, { what: 'local exporter' });
          const trees = resultTrees(result, platformSplit);
          if (await sendLayersDirectly(trees, out, ctx)) {
            await out.commit();
            return {};
          }
          await withScratchDir(ctx.root, async (scratch) => {
            const { mounts, release } = await mountAll(trees, scratch);
            try {
              for (const m of mounts) await sendTree(m.path, m.prefix.replace(/\/$/, ''), out, ctx.signal);
            } finally {
              await release();
            }
          });
          await out.commit();
          return {};
        },
      };
    },
  };
}

/**
 * Sends the tree at `root` to an output directory, under `prefix` when
 * given (the prefix directory itself carries the root's metadata). Hardlinks
 * within the tree are sent as links to the first path of their inode.
 */
async function sendTree(root: string, prefix: string, out: OutputDir, signal: AbortSignal): Promise<void> {
  await sendEntries(walkSorted(root), root, prefix, out, signal);
}

/**
 * The layer directories of `snapshot`, top-most first, when its tree is
 * exactly their union read as they are, so that no overlay mount is needed;
 * undefined otherwise (a single layer, which the store shows without a mount
 * itself, or layers whose top-level names meet).
 *
 * Why the union is the tree: when no two layers hold the same name at their
 * root, every path below the root exists in exactly one layer, so overlayfs
 * resolves it in that layer alone (its attributes, content and directory
 * listing are that layer's; an opaque directory hides nothing, as nothing
 * below shares its path). What overlayfs would otherwise take from another
 * layer always puts a path in two layers: a whiteout or an opaque directory
 * hiding something below, a renamed directory's redirect (a whiteout is left
 * at its old path), a metadata-only copy-up. A whiteout found while sending
 * (one hiding nothing, which overlayfs would not show either) ends the
 * direct read: `sendLayersDirectly` then leaves the export to the mount.
 */
async function disjointLayers(snapshot: Snapshot, ctx: BuildContext): Promise<string[] | undefined> {
  if (!snapshot.parent) return undefined;
  const chain: Snapshot[] = [snapshot];
  for (let s = snapshot; s.parent; ) {
    // A chain longer than any overlay mount the store makes is not one to read here.
    if (chain.length >= 128) return undefined;
    s = await ctx.snapshotter.get(s.parent);
    chain.push(s);
  }
  const seen = new Set<string>();
  const dirs: string[] = [];
  for (const s of chain) {
    await s.materialize?.();
    const dir = s.layerPath();
    for (const name of await readdir(dir)) {
      if (seen.has(name)) return undefined;
      seen.add(name);
    }
    dirs.push(dir);
  }
  return dirs;
}

/** Thrown when a direct read of layers meets a whiteout: the export goes through a mount instead. */
class WhiteoutMet extends Error {}

function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

/** The entries of the union of disjoint `layers` (see `disjointLayers`), in `walkSorted`'s order. */
async function* walkLayers(layers: string[]): AsyncGenerator<TreeEntry> {
  const top: { name: string; layer: string }[] = [];
  for (const layer of layers) for (const name of await readdir(layer)) top.push({ name, layer });
  top.sort((a, b) => compareBytes(a.name, b.name));
  for (const { name, layer } of top) {
    const abs = join(layer, name);
    const stat = await lstat(abs);
    yield { rel: name, abs, stat };
    if (stat.isDirectory()) yield* walkSorted(layer, name);
  }
}

/**
 * Sends a result of one tree (no platform prefix: the root's own metadata is
 * not sent) whose snapshot is a chain of disjoint layers straight from its
 * layer directories, without mounting it; false (nothing sent) when it is
 * not one, or when a whiteout turned up: the caller then exports through a
 * mount, sending every entry again (each replaces what was sent).
 */
async function sendLayersDirectly(trees: { snapshot: Snapshot | null; prefix: string }[], out: OutputDir, ctx: BuildContext): Promise<boolean> {
  if (trees.length !== 1 || trees[0]!.prefix !== '' || !trees[0]!.snapshot) return false;
  const layers = await disjointLayers(trees[0]!.snapshot, ctx);
  if (!layers) return false;
  try {
    await sendEntries(walkLayers(layers), layers[0]!, '', out, ctx.signal, true);
  } catch (err) {
    if (err instanceof WhiteoutMet) return false;
    throw err;
  }
  return true;
}

async function sendEntries(
  entries: AsyncIterable<TreeEntry>,
  root: string,
  prefix: string,
  out: OutputDir,
  signal: AbortSignal,
  refuseWhiteouts = false,
): Promise<void> {
  const at = (rel: string) => (prefix ? `${prefix}/${rel}` : rel);
  if (prefix) await out.write(statOf(prefix, await lstat(root)));
  const firstOfInode = new Map<string, string>();
  for await (const e of entries) {
    signal.throwIfAborted();
    if (refuseWhiteouts && isWhiteout(e.stat)) throw new WhiteoutMet();
    const st = e.stat;
    const entry = statOf(at(e.rel), st);
    if (st.isSymbolicLink()) entry.linkname = await readlink(e.abs);
    else if (st.isFile() && st.nlink > 1) {
      const first = firstOfInode.get(inodeKey(st));
      if (first !== undefined) {
        await out.write({ ...entry, size: 0, linkname: first });
        continue;
      }
      firstOfInode.set(inodeKey(st), entry.path);
    }
    const abs = e.abs;
    await out.write(entry, st.isFile() ? { localPath: abs, stream: () => createReadStream(abs) as AsyncIterable<Uint8Array> } : undefined);
  }
}

function statOf(path: string, st: Stats): FileStat {
  const entry: FileStat = { path, mode: st.mode, uid: st.uid, gid: st.gid, size: st.isFile() ? st.size : 0, mtimeMs: st.mtimeMs };
  if (st.isCharacterDevice() || st.isBlockDevice()) {
    entry.devmajor = Number((BigInt(st.rdev) >> 8n) & 0xfffn);
    entry.devminor = Number((BigInt(st.rdev) & 0xffn) | ((BigInt(st.rdev) >> 12n) & 0xfff00n));
  }
  return entry;
}

/** The `tar` exporter: writes the result's tree as a tar archive to the client's file `dest`, or its stdout for `-`. */
export function createTarExporter(): Exporter {
  return {
    type: 'tar',
    async resolve(attrs) {
      const { dest, platformSplit } = parseAttrs('tar', attrs);
      return {
        async export(result, ctx) {
          const trees = resultTrees(result, platformSplit);
          await withScratchDir(ctx.root, async (scratch) => {
            const { mounts, release } = await mountAll(trees, scratch);
            try {
              const what = { what: 'tar exporter: dest' };
              const file = dest === '-' ? await ctx.client.openStdout(what) : await ctx.client.openFile(dest, what);
              try {
                // tar-stream and its streams load only for a tar export.
                const { writeTar } = await import('./write-tar.js');
                await writeTar(mounts, file.stream, ctx.signal);
              } catch (err) {
                await file.abort();
                throw err;
              }
              await file.commit();
            } finally {
              await release();
            }
          });
          return {};
        },
      };
    },
  };
}
