/**
 * The local image store as a user sees it: `bkt images` lists what builds
 * stored by name (`-t NAME` without `--push`, `--output type=image`),
 * `bkt image rm` removes a name, `bkt image save` writes one as a tar that
 * `docker load` and `skopeo copy docker-archive:` (or `oci-archive:`) read.
 */
import { BktError, isBktError } from '@bkt/core';
import { listStoredImages, removeStoredImage, saveStoredImage, type ImageStore, type StoredImage } from '@bkt/exporter-oci';
import { createHostClient } from '@bkt/fsutil';
import { formatPlatform } from '@bkt/oci';
import { Store } from '@bkt/store';
import { humanAgo, humanSize } from '../options.js';
import type { Output } from '../progress/displays.js';
import { terminalSafe } from '../progress/terminal-safe.js';
import { openProject, storeRoot, type ProjectOptions } from '../project.js';
import type { Io } from './build.js';

export interface ImagesOptions extends ProjectOptions {
  /** `-q`: only the names. */
  quiet?: boolean;
}

export interface ImageSaveOptions extends ProjectOptions {
  output?: string;
  format: string;
}

const FORMATS = ['docker', 'oci'] as const;

/** Runs `fn` over the store of the project's root, closing it afterwards. */
async function withImageStore<T>(opts: ProjectOptions, cwd: string, fn: (store: ImageStore) => Promise<T>): Promise<T> {
  const project = await openProject(opts, false, cwd);
  const store = await Store.open(storeRoot(opts, project));
  try {
    return await fn({ records: store.records, content: store.content });
  } finally {
    await store.close();
  }
}

/** `bkt images`: NAME, DIGEST (manifest or index), PLATFORM, SIZE (its blobs as stored), CREATED. */
export async function imagesCommand(opts: ImagesOptions, out: Output, cwd: string): Promise<number> {
  const images = await withImageStore(opts, cwd, listStoredImages);
  if (opts.quiet) {
    for (const image of images) out.write(`${terminalSafe(image.name)}\n`);
    return 0;
  }
  const table = [['NAME', 'DIGEST', 'PLATFORM', 'SIZE', 'CREATED']];
  for (const image of images) table.push(row(image));
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  for (const r of table) out.write(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 2))).join('').trimEnd() + '\n');
  return 0;
}

function row(image: StoredImage): string[] {
  return [
    terminalSafe(image.name),
    image.target.digest,
    image.platforms.map(formatPlatform).join(','),
    humanSize(image.size),
    image.created ? humanAgo(image.created) : '',
  ];
}

/** `bkt image rm NAME…`: removes each name (printing `Untagged: NAME`, as docker); a later `bkt prune` reclaims what only it kept. */
export async function imageRmCommand(names: string[], opts: ProjectOptions, io: Io): Promise<number> {
  return withImageStore(opts, io.cwd, async (store) => {
    let failed = 0;
    for (const name of names) {
      try {
        io.stdout.write(`Untagged: ${terminalSafe(await removeStoredImage(store, name))}\n`);
      } catch (err) {
        if (!isBktError(err) || names.length === 1) throw err;
        io.stderr.write(`error: ${terminalSafe(err.message)}\n`);
        failed++;
      }
    }
    return failed > 0 ? 1 : 0;
  });
}

/** `bkt image save NAME -o FILE [--format docker|oci]`: a tar of the stored image (`-o -`: stdout, never a terminal). */
export async function imageSaveCommand(name: string, opts: ImageSaveOptions, io: Io): Promise<number> {
  const format = opts.format as (typeof FORMATS)[number];
  if (!FORMATS.includes(format)) {
    throw new BktError('INVALID_ARGUMENT', `bkt image save: --format ${opts.format}: expected docker or oci`, { attribute: 'format' });
  }
  if (opts.output === undefined || opts.output === '') {
    throw new BktError('INVALID_ARGUMENT', 'bkt image save: give the tar file to write with -o FILE (or -o - for stdout)', { attribute: 'output' });
  }
  if (opts.output === '-' && io.stdout.isTTY) {
    throw new BktError('INVALID_ARGUMENT', 'bkt image save: refusing to write a tar to a terminal: redirect stdout, or give -o FILE', { attribute: 'output' });
  }
  const stdout = isStream(io.stdout) ? io.stdout : process.stdout;
  const client = createHostClient({ cwd: io.cwd, stdout });
  await withImageStore(opts, io.cwd, (store) => saveStoredImage(store, name, { format, dest: opts.output!, client, what: `bkt image save -o ${opts.output}` }));
  return 0;
}

function isStream(o: Output): o is Output & NodeJS.WritableStream {
  return typeof (o as Partial<NodeJS.WritableStream>).once === 'function' && typeof (o as Partial<NodeJS.WritableStream>).end === 'function';
}
