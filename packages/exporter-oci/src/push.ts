/**
 * Pushing a built image with @bkt/registry: for each name, every blob (layers
 * and configs in parallel; a layer pulled from another repository of the same
 * registry is mounted from it instead of uploaded), then the platform
 * manifests, then the root manifest under the name's tag (or only by digest).
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { BktError, requireRecords, type BuildContext } from '@bkt/core';
import { addLayerSource, parseReference, readLayerRecord, type Descriptor } from '@bkt/oci';
import type { RegistryClient, StreamBody } from '@bkt/registry';
import type { BuiltImage } from './image.js';

async function blobBody(content: BuildContext['content'], d: Descriptor): Promise<StreamBody> {
  const path = content.path(d.digest);
  const { size } = await stat(path);
  return { size, open: () => createReadStream(path) };
}

export interface PushOptions {
  /** Push the manifest by digest only, without a tag. */
  byDigest: boolean;
}

type PushContext = Pick<BuildContext, 'root' | 'content' | 'signal' | 'progress' | 'records'>;

/** Pushes `image` under each of `names`; a failure says which name (as buildx: `failed to push NAME: …`). */
export async function pushImage(image: BuiltImage, names: string[], client: RegistryClient, ctx: PushContext, opts: PushOptions): Promise<void> {
  for (const name of names) {
    try {
      await pushOne(image, name, client, ctx, opts);
    } catch (err) {
      if (!(err instanceof BktError) || ctx.signal.aborted) throw err;
      throw new BktError(err.code, `failed to push ${name}: ${err.message}`, err.details, { cause: err });
    }
  }
}

async function pushOne(image: BuiltImage, name: string, client: RegistryClient, ctx: PushContext, opts: PushOptions): Promise<void> {
  const r = parseReference(name);
  const repo = `${r.registry}/${r.repository}`;
  const blobs: Promise<unknown>[] = [];
  const pushed = new Set<string>();
  for (const m of image.manifests) {
    for (const l of m.layers) {
      if (pushed.has(l.descriptor.digest)) continue;
      pushed.add(l.descriptor.digest);
      const mountFrom = l.sources
        .filter((s) => s.startsWith(`${r.registry}/`))
        .map((s) => s.slice(r.registry.length + 1))
        .filter((s) => s !== r.repository);
      blobs.push(
        (async () => {
          const how = await client.pushBlob(repo, l.descriptor, await blobBody(ctx.content, l.descriptor), { mountFrom, signal: ctx.signal });
          ctx.progress.status(`push ${l.descriptor.digest}`, `pushing layer ${l.descriptor.digest.slice(0, 19)} (${how})`, l.descriptor.size, l.descriptor.size, true);
          if (l.sources.length > 0) {
            const records = requireRecords(ctx, '@bkt/exporter-oci');
            const rec = await readLayerRecord(records, l.snapshotId);
            if (rec && rec.blob.digest === l.descriptor.digest) await addLayerSource(records, rec, repo);
          }
        })(),
      );
    }
    if (!pushed.has(m.config.digest)) {
      pushed.add(m.config.digest);
      blobs.push((async () => client.pushBlob(repo, m.config, await blobBody(ctx.content, m.config), { signal: ctx.signal }))());
    }
  }
  const settled = await Promise.allSettled(blobs);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;

  const rootIsIndex = image.manifests.length > 1 || image.manifests[0].descriptor.digest !== image.root.digest;
  if (rootIsIndex) {
    for (const m of image.manifests) {
      await client.putManifest({ registry: r.registry, repository: r.repository, digest: m.descriptor.digest }, await readFile(ctx.content.path(m.descriptor.digest)), {
        mediaType: m.descriptor.mediaType,
        signal: ctx.signal,
      });
    }
  }
  const target = opts.byDigest
    ? { registry: r.registry, repository: r.repository, digest: image.root.digest }
    : { registry: r.registry, repository: r.repository, tag: r.tag ?? 'latest' };
  await client.putManifest(target, await readFile(ctx.content.path(image.root.digest)), { mediaType: image.root.mediaType, signal: ctx.signal });
}
