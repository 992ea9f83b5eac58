/**
 * The attributes of `--cache-to` and `--cache-from` entries, as BuildKit's
 * (README §Export cache, `cache/remotecache/{registry,local}`). An unknown or
 * bad attribute is an `INVALID_ARGUMENT` naming the backend and attribute.
 */
import { BktError, type Attrs } from '@bkt/core';
import { parseReference, type Compression } from '@bkt/oci';
import type { CacheMode, LayerExportOptions } from './export.js';

export type BackendType = 'registry' | 'local' | 'inline';

export interface ExportAttrs extends LayerExportOptions {
  mode: CacheMode;
  /** An OCI image manifest whose config is the cache config (default), or the legacy index. */
  imageManifest: boolean;
  /** A failed export is a warning, not a failed build. */
  ignoreError: boolean;
  /** Keep the records another export left at the destination (several runners, one ref). */
  merge: boolean;
  /** Save `RUN --mount=type=cache` contents with the cache. */
  cacheMounts: boolean;
  /** registry: the reference. */
  ref?: string;
  /** registry: plain HTTP / self-signed TLS. */
  insecure: boolean;
  /** local: the layout directory and tag. */
  dest?: string;
  tag: string;
}

export interface ImportAttrs {
  ref?: string;
  insecure: boolean;
  /** local: the layout directory, its tag, or a manifest digest. */
  src?: string;
  tag: string;
  digest?: string;
  /** Restore the `RUN --mount=type=cache` contents the cache carries (opt-in: they seed the store's cache mounts). */
  cacheMounts: boolean;
}

function bad(type: string, side: string, attr: string, problem: string): BktError {
  return new BktError('INVALID_ARGUMENT', `cache ${side} type=${type}: ${problem}`, { attribute: attr, type });
}

function bool(type: string, side: string, attrs: Attrs, name: string, dflt: boolean): boolean {
  const v = attrs[name];
  if (v === undefined) return dflt;
  if (v === '' || v === 'true') return true;
  if (v === 'false') return false;
  throw bad(type, side, name, `attribute ${name} must be true or false, got "${v}"`);
}

function known(type: string, side: string, attrs: Attrs, names: string[]): void {
  for (const k of Object.keys(attrs)) {
    if (!names.includes(k)) throw bad(type, side, k, `unknown attribute "${k}" (known: ${names.join(', ')})`);
  }
}

const EXPORT_COMMON = ['mode', 'image-manifest', 'oci-mediatypes', 'compression', 'compression-level', 'force-compression', 'ignore-error', 'merge', 'cache-mounts'];

export function parseExportAttrs(type: BackendType, attrs: Attrs): ExportAttrs {
  const side = 'export';
  const names =
    type === 'registry' ? ['ref', 'registry.insecure', ...EXPORT_COMMON] : type === 'local' ? ['dest', 'tag', ...EXPORT_COMMON] : ['mode', 'ignore-error', 'cache-mounts'];
  known(type, side, attrs, names);
  const mode = attrs.mode ?? 'min';
  if (mode !== 'min' && mode !== 'max') throw bad(type, side, 'mode', `mode must be min or max, got "${mode}"`);
  if (type === 'inline' && mode !== 'min') throw bad(type, side, 'mode', 'the inline cache exports only mode=min (its records live in the image config)');
  const compression = (attrs.compression ?? 'gzip') as Compression;
  if (!['gzip', 'zstd', 'uncompressed'].includes(compression)) throw bad(type, side, 'compression', `compression must be gzip, zstd or uncompressed, got "${compression}"`);
  let compressionLevel: number | undefined;
  if (attrs['compression-level'] !== undefined) {
    compressionLevel = Number(attrs['compression-level']);
    const max = compression === 'zstd' ? 22 : 9;
    if (!Number.isInteger(compressionLevel) || compressionLevel < 0 || compressionLevel > max) {
      throw bad(type, side, 'compression-level', `compression-level must be an integer from 0 to ${max} for ${compression}, got "${attrs['compression-level']}"`);
    }
  }
  const ociMediaTypes = bool(type, side, attrs, 'oci-mediatypes', true);
  const imageManifest = bool(type, side, attrs, 'image-manifest', true);
  if (imageManifest && !ociMediaTypes) {
    throw bad(type, side, 'image-manifest', 'image-manifest=true needs oci-mediatypes=true (set image-manifest=false for Docker media types)');
  }
  if (compression === 'zstd' && !ociMediaTypes) throw bad(type, side, 'compression', 'compression=zstd needs oci-mediatypes=true');
  const out: ExportAttrs = {
    mode,
    imageManifest,
    ociMediaTypes,
    compression,
    ...(compressionLevel !== undefined ? { compressionLevel } : {}),
    forceCompression: bool(type, side, attrs, 'force-compression', false),
    ignoreError: bool(type, side, attrs, 'ignore-error', false),
    merge: bool(type, side, attrs, 'merge', false),
    cacheMounts: bool(type, side, attrs, 'cache-mounts', false),
    insecure: bool(type, side, attrs, 'registry.insecure', false),
    tag: attrs.tag ?? 'latest',
  };
  if (type === 'registry') {
    if (!attrs.ref) throw bad(type, side, 'ref', 'ref is required (ref=REGISTRY/REPOSITORY[:TAG])');
    checkRef(type, side, attrs.ref);
    out.ref = attrs.ref;
  }
  if (type === 'local') {
    if (!attrs.dest) throw bad(type, side, 'dest', 'dest is required (dest=DIRECTORY)');
    out.dest = attrs.dest;
    checkTag(type, side, out.tag);
  }
  return out;
}

export function parseImportAttrs(type: BackendType, attrs: Attrs): ImportAttrs {
  const side = 'import';
  // BuildKit's registry import takes the export's attributes too (buildx passes mode etc. through): accepted, unused.
  const names = type === 'registry' ? ['ref', 'registry.insecure', 'mode', 'cache-mounts'] : type === 'local' ? ['src', 'tag', 'digest', 'cache-mounts'] : [];
  known(type, side, attrs, names);
  const out: ImportAttrs = {
    insecure: bool(type, side, attrs, 'registry.insecure', false),
    tag: attrs.tag ?? 'latest',
    cacheMounts: bool(type, side, attrs, 'cache-mounts', false),
  };
  if (type === 'registry') {
    if (!attrs.ref) throw bad(type, side, 'ref', 'ref is required (ref=REGISTRY/REPOSITORY[:TAG])');
    checkRef(type, side, attrs.ref);
    out.ref = attrs.ref;
  }
  if (type === 'local') {
    if (!attrs.src) throw bad(type, side, 'src', 'src is required (src=DIRECTORY)');
    out.src = attrs.src;
    checkTag(type, side, out.tag);
    if (attrs.digest !== undefined) {
      if (!/^sha256:[0-9a-f]{64}$/.test(attrs.digest)) throw bad(type, side, 'digest', `digest must be sha256:<64 hex>, got "${attrs.digest}"`);
      out.digest = attrs.digest;
    }
  }
  return out;
}

function checkRef(type: string, side: string, ref: string): void {
  try {
    parseReference(ref);
  } catch (err) {
    throw bad(type, side, 'ref', `ref "${ref}": ${(err as Error).message}`);
  }
}

function checkTag(type: string, side: string, tag: string): void {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(tag)) throw bad(type, side, 'tag', `tag "${tag}" is not a valid tag`);
}
