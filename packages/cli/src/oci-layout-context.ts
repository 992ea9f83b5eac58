/**
 * `--build-context NAME=oci-layout://PATH[:TAG][@DIGEST]`, as buildx takes
 * it: PATH is an OCI image layout directory of this machine; without a
 * digest, TAG (default `latest`) is looked up in its `index.json`
 * (`org.opencontainers.image.ref.name`), or the layout's only image is taken.
 * The directory goes to the build as a local directory (the layout store),
 * and the frontend gets `oci-layout://STORE:TAG@DIGEST`.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { BktError } from '@bkt/core';

const PREFIX = 'oci-layout://';
const REF_NAME = 'org.opencontainers.image.ref.name';

export interface OciLayoutContext {
  /** The named context (`NAME`). */
  name: string;
  /** The local directory name the layout travels under (the `oci.store` id). */
  store: string;
  /** The layout directory. */
  dir: string;
  /** The frontend attribute's value: `oci-layout://STORE:TAG@DIGEST`. */
  attr: string;
}

/** The layout context of a `--build-context` value, or undefined when it is not `oci-layout://`. */
export async function ociLayoutContext(value: string, cwd: string): Promise<OciLayoutContext | undefined> {
  const eq = value.indexOf('=');
  const name = value.slice(0, eq);
  const target = value.slice(eq + 1);
  if (eq <= 0 || !target.startsWith(PREFIX)) return undefined;
  const bad = (why: string, code: 'INVALID_ARGUMENT' | 'NOT_FOUND' = 'INVALID_ARGUMENT') =>
    new BktError(code, `--build-context ${value}: ${why}`, { attribute: 'build-context' });

  // As buildx: the digest after the first "@", the tag after the first ":" of what precedes it.
  let path = target.slice(PREFIX.length);
  let digest: string | undefined;
  const at = path.indexOf('@');
  if (at >= 0) [path, digest] = [path.slice(0, at), path.slice(at + 1)];
  let tag = 'latest';
  const colon = path.indexOf(':');
  if (colon >= 0) [path, tag] = [path.slice(0, colon), path.slice(colon + 1)];
  if (path === '') throw bad('the layout path is empty (want oci-layout://PATH[:TAG][@sha256:…])');
  if (tag === '' || !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(tag)) throw bad(`"${tag}" is not a valid tag`);
  const dir = resolve(cwd, path);
  if (digest === undefined) digest = await resolveTag(dir, tag, bad);
  else if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw bad(`"${digest}" is not a sha256 digest`);
  const store = `oci-layout-${createHash('sha256').update(`${name}\0${dir}`).digest('hex').slice(0, 16)}`;
  return { name, store, dir, attr: `${PREFIX}${store}:${tag}@${digest}` };
}

/** The digest `tag` names in the layout's index.json, or its only image's (buildx's resolveDigest). */
async function resolveTag(dir: string, tag: string, bad: (why: string, code?: 'INVALID_ARGUMENT' | 'NOT_FOUND') => BktError): Promise<string> {
  let index: { manifests?: { digest?: unknown; annotations?: Record<string, string> }[] };
  try {
    index = JSON.parse(await readFile(resolve(dir, 'index.json'), 'utf8')) as typeof index;
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `is not readable JSON (${(err as Error).message})`;
    throw bad(`${dir}/index.json ${why}: is it an OCI image layout?`, 'NOT_FOUND');
  }
  const manifests = Array.isArray(index?.manifests) ? index.manifests : [];
  const entry = manifests.find((m) => m?.annotations?.[REF_NAME] === tag) ?? (manifests.length === 1 ? manifests[0] : undefined);
  if (!entry) {
    const tags = manifests.map((m) => m?.annotations?.[REF_NAME]).filter(Boolean);
    throw bad(`the layout ${dir} has no image tagged "${tag}" (tags: ${tags.length > 0 ? tags.join(', ') : 'none'})`, 'NOT_FOUND');
  }
  if (typeof entry.digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(entry.digest)) {
    throw bad(`${dir}/index.json: the image tagged "${tag}" has no valid digest`);
  }
  return entry.digest;
}
