/**
 * Exporter attributes, as BuildKit's image, oci and docker exporters take them.
 * An attribute the exporter does not know is an error naming it.
 */
import { BktError, type Attrs } from '@bkt/core';
import type { Compression } from '@bkt/oci';

export type ExporterType = 'image' | 'oci' | 'docker';

export type AnnotationTarget = 'manifest' | 'index' | 'manifest-descriptor' | 'index-descriptor';

export interface Annotation {
  target: AnnotationTarget;
  /** `linux/amd64` when the attribute was qualified (`annotation[linux/amd64].key`), else undefined (all platforms). */
  platform?: string;
  key: string;
  value: string;
}

export interface ExportOptions {
  type: ExporterType;
  /** Image names as given (`name=a,b`), in order. */
  names: string[];
  push: boolean;
  pushByDigest: boolean;
  insecure: boolean;
  compression: Compression;
  compressionLevel?: number;
  forceCompression: boolean;
  /** The user gave `compression`, `compression-level` or `force-compression`. */
  compressionSet: boolean;
  ociMediaTypes: boolean;
  annotations: Annotation[];
  rewriteTimestamp: boolean;
  /** SOURCE_DATE_EPOCH in seconds, from the `source-date-epoch` attribute. */
  sourceDateEpoch?: number;
  store: boolean;
  danglingNamePrefix?: string;
  nameCanonical: boolean;
  /** oci and docker: where to write (`-` = stdout); a tar unless `tar=false`. */
  dest?: string;
  tar: boolean;
}

const COMMON = ['name', 'compression', 'compression-level', 'force-compression', 'oci-mediatypes', 'rewrite-timestamp', 'source-date-epoch', 'buildinfo', 'buildinfo-attrs', 'oci-artifact'];
const KNOWN: Record<ExporterType, string[]> = {
  image: [...COMMON, 'push', 'push-by-digest', 'registry.insecure', 'insecure', 'unpack', 'store', 'dangling-name-prefix', 'name-canonical'],
  oci: [...COMMON, 'dest', 'tar'],
  docker: [...COMMON, 'dest', 'tar', 'context'],
};

const ANNOTATION = /^(annotation|annotation-manifest|annotation-index|annotation-manifest-descriptor|annotation-index-descriptor)(?:\[([^\]]+)\])?\.(.+)$/;

function parseBool(type: string, key: string, value: string): boolean {
  // As Go's strconv.ParseBool, and a bare key (empty value) means true, as BuildKit takes it.
  if (['', '1', 't', 'T', 'true', 'TRUE', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(value)) return false;
  throw new BktError('INVALID_ARGUMENT', `${type} exporter: attribute ${key} must be true or false, got "${value}"`, { attribute: key });
}

export function parseSourceDateEpoch(value: string, where: string): number {
  if (!/^\d+$/.test(value.trim())) {
    throw new BktError('INVALID_ARGUMENT', `${where}: SOURCE_DATE_EPOCH must be whole seconds since 1970, got "${value}"`, { attribute: 'source-date-epoch' });
  }
  return Number(value.trim());
}

export function parseExportAttrs(type: ExporterType, attrs: Attrs): ExportOptions {
  const o: ExportOptions = {
    type,
    names: [],
    push: false,
    pushByDigest: false,
    insecure: false,
    compression: 'gzip',
    forceCompression: false,
    compressionSet: false,
    // BuildKit's defaults: Docker media types for image and docker, OCI for oci.
    ociMediaTypes: type === 'oci',
    annotations: [],
    rewriteTimestamp: false,
    store: true,
    nameCanonical: false,
    tar: true,
  };
  let ociSet = false;
  for (const [key, value] of Object.entries(attrs)) {
    const a = ANNOTATION.exec(key);
    if (a) {
      const target = (a[1] === 'annotation' ? 'manifest' : a[1].slice('annotation-'.length)) as AnnotationTarget;
      o.annotations.push({ target, platform: a[2], key: a[3], value });
      continue;
    }
    if (!KNOWN[type].includes(key)) {
      throw new BktError('INVALID_ARGUMENT', `${type} exporter: unknown attribute "${key}" (known: ${KNOWN[type].join(', ')}, annotation.*)`, {
        attribute: key,
      });
    }
    if (key === 'compression' || key === 'compression-level' || key === 'force-compression') o.compressionSet = true;
    switch (key) {
      case 'name':
        o.names = value.split(',').map((n) => n.trim()).filter(Boolean);
        break;
      case 'push':
        o.push = parseBool(type, key, value);
        break;
      case 'push-by-digest':
        o.pushByDigest = parseBool(type, key, value);
        break;
      case 'registry.insecure':
      case 'insecure':
        o.insecure = parseBool(type, key, value);
        break;
      case 'compression':
        if (value !== 'gzip' && value !== 'zstd' && value !== 'uncompressed') {
          throw new BktError('INVALID_ARGUMENT', `${type} exporter: compression must be gzip, zstd or uncompressed, got "${value}"`, { attribute: key });
        }
        o.compression = value;
        break;
      case 'compression-level': {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 0 || n > 22) {
          throw new BktError('INVALID_ARGUMENT', `${type} exporter: compression-level must be an integer 0..22, got "${value}"`, { attribute: key });
        }
        o.compressionLevel = n;
        break;
      }
      case 'force-compression':
        o.forceCompression = parseBool(type, key, value);
        break;
      case 'oci-mediatypes':
        o.ociMediaTypes = parseBool(type, key, value);
        ociSet = true;
        break;
      case 'rewrite-timestamp':
        o.rewriteTimestamp = parseBool(type, key, value);
        break;
      case 'source-date-epoch':
        if (value !== '') o.sourceDateEpoch = parseSourceDateEpoch(value, `${type} exporter`);
        break;
      case 'store':
        o.store = parseBool(type, key, value);
        break;
      case 'unpack':
      case 'oci-artifact':
        parseBool(type, key, value); // accepted; nothing to unpack into without containerd
        break;
      case 'dangling-name-prefix':
        o.danglingNamePrefix = value;
        break;
      case 'name-canonical':
        o.nameCanonical = parseBool(type, key, value);
        break;
      case 'dest':
        o.dest = value;
        break;
      case 'tar':
        o.tar = parseBool(type, key, value);
        break;
      default:
        break; // buildinfo, buildinfo-attrs, context: accepted and ignored, as BuildKit now does
    }
  }
  if (o.compression === 'zstd' && !o.ociMediaTypes) {
    if (ociSet) {
      throw new BktError('INVALID_ARGUMENT', `${type} exporter: compression=zstd needs oci-mediatypes=true (Docker media types have no zstd)`, {
        attribute: 'compression',
      });
    }
    o.ociMediaTypes = true; // as BuildKit: zstd switches to OCI media types
  }
  if (o.compressionLevel !== undefined && o.compression === 'gzip' && o.compressionLevel > 9) {
    throw new BktError('INVALID_ARGUMENT', `${type} exporter: gzip compression-level must be 0..9, got ${o.compressionLevel}`, { attribute: 'compression-level' });
  }
  if (type !== 'image' && !o.dest) {
    throw new BktError('INVALID_ARGUMENT', `${type} exporter: attribute dest is required`, { attribute: 'dest' });
  }
  if ((o.push || o.pushByDigest) && o.names.length === 0) {
    throw new BktError('INVALID_ARGUMENT', `${type} exporter: push needs an image name (name=…)`, { attribute: 'name' });
  }
  return o;
}
