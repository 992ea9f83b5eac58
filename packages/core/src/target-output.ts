/**
 * The outputs of a config target, typed per exporter (`{ type: 'image',
 * name, push: true }`), and their conversion to the exporter attributes a
 * solve request carries (`OutputSpec`, BuildKit's string attributes). The
 * conversion is the one place a config's outputs are checked at run time:
 * a JS or JSON config gets the errors TypeScript gives a typed one.
 */
import { BktError } from './errors.js';
import type { OutputSpec } from './config.js';
import { describeValue } from './load-config.js';

/** Attributes every image-producing output (`image`, `registry`, `oci`, `docker`) takes. */
export interface ImageExportOptions {
  /** Image names (`name=`); `-t NAME` names an output that has none. */
  name?: string | string[];
  compression?: 'gzip' | 'zstd' | 'uncompressed';
  /** 0..22 (`compression-level`). */
  compressionLevel?: number;
  /** Recompress layers pulled with another compression (`force-compression`). */
  forceCompression?: boolean;
  /** OCI media types instead of Docker's (`oci-mediatypes`; default: only for `oci`). */
  ociMediaTypes?: boolean;
  /** Manifest annotations, `annotation.KEY=VALUE` (needs OCI media types). */
  annotations?: Record<string, string>;
  /** Clamp file timestamps in new layers to `sourceDateEpoch` (`rewrite-timestamp`). */
  rewriteTimestamp?: boolean;
  /** SOURCE_DATE_EPOCH in seconds (`source-date-epoch`). */
  sourceDateEpoch?: number;
}

/** The store's image index, and a registry with `push: true` (the `image` exporter). */
export interface ImageOutput extends ImageExportOptions {
  type: 'image';
  push?: boolean;
  pushByDigest?: boolean;
  /** Plain HTTP or an unverified certificate for the registry (`registry.insecure`). */
  insecure?: boolean;
  /** Keep the image in the store's image index (default true). */
  store?: boolean;
  danglingNamePrefix?: string;
  nameCanonical?: boolean;
}

/** `{ type: 'image', push: true }`. */
export interface RegistryOutput extends ImageExportOptions {
  type: 'registry';
  pushByDigest?: boolean;
  insecure?: boolean;
}

/** An OCI image layout: a tar file, or a directory with `tar: false`. */
export interface OciOutput extends ImageExportOptions {
  type: 'oci';
  /** A file (`-` = stdout), or a directory with `tar: false`. */
  dest: string;
  tar?: boolean;
}

/** A `docker load` archive. */
export interface DockerOutput extends ImageExportOptions {
  type: 'docker';
  dest: string;
  tar?: boolean;
}

/** The result's tree in a directory (its contents replaced). */
export interface LocalOutput {
  type: 'local';
  dest: string;
  /** One subdirectory per platform of a multi-platform result (default true). */
  platformSplit?: boolean;
}

/** The result's tree as a tar file (`-` = stdout). */
export interface TarOutput {
  type: 'tar';
  dest: string;
  platformSplit?: boolean;
}

/** An exporter a plugin registers, by its type, with the string attributes it parses. */
export interface ExporterOutput {
  exporter: string;
  attrs?: Record<string, string>;
  type?: never;
}

/** An output of a config target. */
export type TargetOutput = ImageOutput | RegistryOutput | OciOutput | DockerOutput | LocalOutput | TarOutput | ExporterOutput;

type Kind = 'string' | 'boolean' | 'integer' | 'names' | 'annotations';
interface Field {
  attr: string;
  kind: Kind;
}

const f = (attr: string, kind: Kind): Field => ({ attr, kind });
const IMAGE_COMMON: Record<string, Field> = {
  name: f('name', 'names'),
  compression: f('compression', 'string'),
  compressionLevel: f('compression-level', 'integer'),
  forceCompression: f('force-compression', 'boolean'),
  ociMediaTypes: f('oci-mediatypes', 'boolean'),
  annotations: f('annotation', 'annotations'),
  rewriteTimestamp: f('rewrite-timestamp', 'boolean'),
  sourceDateEpoch: f('source-date-epoch', 'integer'),
};
const PUSHING: Record<string, Field> = { pushByDigest: f('push-by-digest', 'boolean'), insecure: f('registry.insecure', 'boolean') };
const ARCHIVE: Record<string, Field> = { dest: f('dest', 'string'), tar: f('tar', 'boolean') };
const TREE: Record<string, Field> = { dest: f('dest', 'string'), platformSplit: f('platform-split', 'boolean') };

/** The fields of each built-in output type, by their config name. */
const FIELDS: Record<string, Record<string, Field>> = {
  image: {
    ...IMAGE_COMMON,
    ...PUSHING,
    push: f('push', 'boolean'),
    store: f('store', 'boolean'),
    danglingNamePrefix: f('dangling-name-prefix', 'string'),
    nameCanonical: f('name-canonical', 'boolean'),
  },
  registry: { ...IMAGE_COMMON, ...PUSHING },
  oci: { ...IMAGE_COMMON, ...ARCHIVE },
  docker: { ...IMAGE_COMMON, ...ARCHIVE },
  local: TREE,
  tar: TREE,
};
const REQUIRED: Record<string, string[]> = { oci: ['dest'], docker: ['dest'], local: ['dest'], tar: ['dest'] };

/**
 * The exporter request of a target output: `{ type: 'image', push: true }`
 * → `{ type: 'image', push: 'true' }`. `where` names the output in errors
 * (`target "app": outputs[0]`); an unknown type or attribute, a missing
 * `dest` or a value of the wrong type is a `CONFIG` error naming it.
 */
export function outputSpecOf(output: TargetOutput, where: string): OutputSpec {
  if (output === null || typeof output !== 'object' || Array.isArray(output)) {
    throw new BktError('CONFIG', `${where}: an output must be an object like { type: 'local', dest: 'out' }`, { attribute: 'outputs' });
  }
  if ('exporter' in output && output.exporter !== undefined) return exporterSpec(output, where);
  const { type, ...rest } = output as { type?: unknown } & Record<string, unknown>;
  const fields = typeof type === 'string' && Object.hasOwn(FIELDS, type) ? FIELDS[type]! : undefined;
  if (!fields) {
    throw new BktError(
      'CONFIG',
      `${where}: unknown output type ${JSON.stringify(type)} (known: ${Object.keys(FIELDS).join(', ')}; a plugin's exporter is { exporter: TYPE, attrs: {…} })`,
      { attribute: 'type' },
    );
  }
  for (const key of REQUIRED[type as string] ?? []) {
    if (rest[key] === undefined) throw new BktError('CONFIG', `${where}: ${article(type as string)} output needs "${key}"`, { attribute: key });
  }
  const spec: OutputSpec = { type: type as string };
  for (const [key, value] of Object.entries(rest)) {
    if (value === undefined) continue;
    const field = Object.hasOwn(fields, key) ? fields[key]! : undefined;
    if (!field) {
      throw new BktError('CONFIG', `${where}: unknown attribute "${key}" of ${article(type as string)} output (known: ${Object.keys(fields).join(', ')})`, {
        attribute: key,
      });
    }
    Object.assign(spec, attrsOf(field, value, `${where}: "${key}"`));
  }
  return spec;
}

function attrsOf(field: Field, value: unknown, where: string): Record<string, string> {
  switch (field.kind) {
    case 'string':
      if (typeof value !== 'string' || value === '') throw typeError(where, 'a non-empty string', value, field);
      return { [field.attr]: value };
    case 'boolean':
      if (typeof value !== 'boolean') throw typeError(where, 'true or false', value, field);
      return { [field.attr]: String(value) };
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw typeError(where, 'a whole number', value, field);
      return { [field.attr]: String(value) };
    case 'names': {
      const names = typeof value === 'string' ? [value] : value;
      if (!Array.isArray(names) || names.length === 0 || names.some((n) => typeof n !== 'string' || n === '' || n.includes(','))) {
        throw typeError(where, 'an image name or a list of them', value, field);
      }
      return { [field.attr]: names.join(',') };
    }
    case 'annotations': {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) throw typeError(where, 'an object of strings', value, field);
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') throw typeError(`${where}.${k}`, 'a string', v, field);
        out[`annotation.${k}`] = v;
      }
      return out;
    }
  }
}

function exporterSpec(output: ExporterOutput, where: string): OutputSpec {
  const { exporter, attrs, ...rest } = output as ExporterOutput & Record<string, unknown>;
  const extra = Object.keys(rest).filter((k) => rest[k] !== undefined);
  if (extra.length > 0) {
    throw new BktError('CONFIG', `${where}: unknown attribute "${extra[0]}" of an exporter output (it takes exporter and attrs)`, { attribute: extra[0]! });
  }
  if (typeof exporter !== 'string' || exporter === '') throw typeError(`${where}: "exporter"`, 'an exporter type', exporter);
  const spec: OutputSpec = { type: exporter };
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (typeof v !== 'string') throw typeError(`${where}: attrs.${k}`, 'a string', v);
    if (k === 'type') throw new BktError('CONFIG', `${where}: attrs may not set "type" (it is "exporter")`, { attribute: 'type' });
    spec[k] = v;
  }
  return spec;
}

function typeError(where: string, want: string, got: unknown, field?: Field): BktError {
  return new BktError('CONFIG', `${where} must be ${want}, got ${describeValue(got)}`, { attribute: field?.attr ?? where });
}

/** `an image`, `a local`. */
function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}
