import { lstat, mkdir, rm } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { BktError, type Attrs, type BuildResult, type Exporter, type Mounted, type Snapshot } from '@bkt/core';
import { openOutputFile } from '@bkt/fsutil';
import { copyTree, ensureDestDir } from './write-dir.js';
import { writeTar } from './write-tar.js';

/** Where `tar` writes when `dest=-`; tests and servers may pass another stream. */
export interface LocalExporterOptions {
  stdout?: NodeJS.WritableStream;
}

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

/** Exporting must not write into the store, nor lay a tree over it. */
function refuseOverlap(dest: string, storeRoot: string): void {
  const inside = (child: string, parent: string) => {
    const rel = relative(parent, child);
    return rel === '' || (rel !== '..' && !rel.startsWith('../') && !isAbsolute(rel));
  };
  const root = resolve(storeRoot);
  if (inside(root, dest) || inside(dest, root)) {
    throw new BktError('INVALID_ARGUMENT', `local exporter: dest "${dest}" overlaps the store root ${root}; choose another directory`, {
      attribute: 'dest',
      path: dest,
    });
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
      const target = resolve(dest);
      return {
        async export(result, ctx) {
          refuseOverlap(target, ctx.root);
          const trees = resultTrees(result, platformSplit);
          await withScratchDir(ctx.root, async (scratch) => {
            const { mounts, release } = await mountAll(trees, scratch);
            try {
              await ensureDestDir(target);
              for (const m of mounts) {
                const into = m.prefix ? join(target, m.prefix.replace(/\/$/, '')) : target;
                if (m.prefix) {
                  // A file or symlink in the way is replaced (never followed); a directory is merged into.
                  const existing = await lstat(into).catch(() => undefined);
                  if (existing && !existing.isDirectory()) await rm(into, { force: true });
                  await mkdir(into, { recursive: true });
                }
                await copyTree(m.path, into);
              }
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

/** The `tar` exporter: writes the result's tree as a tar archive to file `dest`, or stdout for `-`. */
export function createTarExporter(opts: LocalExporterOptions = {}): Exporter {
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
              if (dest === '-') {
                const stdout = opts.stdout ?? process.stdout;
                const through = new PassThrough();
                const drained = new Promise((ok) => through.once('end', ok));
                // stdout is not ended (others may write after us), so its errors are forwarded by hand.
                const onError = (err: Error) => through.destroy(err);
                stdout.once('error', onError);
                try {
                  through.pipe(stdout as NodeJS.WritableStream, { end: false });
                  await writeTar(mounts, through);
                  await drained;
                } finally {
                  stdout.removeListener('error', onError);
                  through.unpipe(stdout as NodeJS.WritableStream);
                }
                return;
              }
              const file = await openOutputFile(dest, { what: 'tar exporter: dest' });
              try {
                await writeTar(mounts, file.stream);
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
