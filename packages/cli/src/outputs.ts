import { BktError, type OutputSpec } from '@bkt/core';
// @bkt/oci (platforms, references) is imported only for an annotation's platform or an image's names: a build without them never loads it.

export interface OutputFlags {
  tags: string[];
  push: boolean;
  /** `--load`: the docker-archive file the build writes for the Docker engine to load. */
  load?: string;
  /** `--annotation` values, as buildx takes them. */
  annotations?: string[];
}

const IMAGE_TYPES = new Set(['image', 'oci', 'docker']);

/**
 * The exporters of a build from `--output`, `-t`, `--push`, `--load` and
 * `--annotation`, as buildx combines them:
 *
 * - `type=registry` is `type=image,push=true`;
 * - `--push` adds `push=true` to the first output, which must be an image
 *   (or, without `--output`, is `type=image,push=true`);
 * - `--load` adds `type=docker` writing to `flags.load`;
 * - `-t NAME` (repeatable) names every `image`, `oci` and `docker` output that
 *   has no `name`; with no output at all, `-t` means `type=image` (kept in the
 *   store's image index);
 * - `type=cacheonly` exports nothing (the result stays in the build cache) and
 *   keeps `-t` from adding `type=image`;
 * - `--annotation` adds its attributes to every `image`, `oci` and `docker`
 *   output, with OCI media types unless the output sets `oci-mediatypes`
 *   (BuildKit turns them on for annotations too).
 */
export async function planOutputs(outputs: OutputSpec[], flags: OutputFlags): Promise<OutputSpec[]> {
  let out = outputs.map((o): OutputSpec => (o.type === 'registry' ? { ...o, type: 'image', push: 'true' } : { ...o }));
  if (flags.push) {
    if (out.length === 0) out = [{ type: 'image', push: 'true' }];
    else if (out[0]!.type === 'image') out[0]!.push = 'true';
    else throw new BktError('INVALID_ARGUMENT', `--push and an output of type=${out[0]!.type} can't be used together (push needs type=image or type=registry)`, { attribute: 'push' });
  }
  if (flags.load !== undefined) out.push({ type: 'docker', dest: flags.load });
  if (flags.tags.length > 0) {
    if (out.length === 0) out = [{ type: 'image' }];
    for (const o of out) {
      if (IMAGE_TYPES.has(o.type) && o.name === undefined) o.name = flags.tags.join(',');
    }
  }
  for (const o of out) {
    if (o.type === 'image' && isTrue(o.push) && !o.name) {
      throw new BktError('INVALID_ARGUMENT', 'pushing an image needs a name: give -t NAME (or name= in --output)', { attribute: 'name' });
    }
    if (o.type === 'cacheonly') {
      const extra = Object.keys(o).filter((k) => k !== 'type');
      if (extra.length > 0) throw new BktError('INVALID_ARGUMENT', `--output type=cacheonly takes no attributes (got ${extra.join(', ')})`, { attribute: extra[0]! });
    }
  }
  out = out.filter((o) => o.type !== 'cacheonly');
  const annotations = await parseAnnotations(flags.annotations ?? []);
  if (Object.keys(annotations).length > 0) {
    const images = out.filter((o) => IMAGE_TYPES.has(o.type));
    if (images.length === 0) {
      throw new BktError('INVALID_ARGUMENT', '--annotation: the build exports no image (give -t NAME, --push, --load or --output type=image|oci|docker)', { attribute: 'annotation' });
    }
    for (const o of images) {
      Object.assign(o, annotations);
      o['oci-mediatypes'] ??= 'true';
    }
  }
  return out;
}

const ANNOTATION_TYPES = ['manifest', 'manifest-descriptor', 'index', 'index-descriptor'];

/**
 * `--annotation` values as buildx parses them, to exporter attributes:
 * `KEY=VALUE` → `annotation.KEY` (the manifest); `TYPES:KEY=VALUE`, TYPES a
 * comma-separated list of `manifest`, `manifest-descriptor`, `index`,
 * `index-descriptor`, each optionally for one platform (`manifest[linux/arm64]`)
 * → `annotation-TYPE[PLATFORM].KEY`.
 */
export async function parseAnnotations(values: string[]): Promise<Record<string, string>> {
  const attrs: Record<string, string> = {};
  for (const value of values) {
    if (value === '') continue;
    const eq = value.indexOf('=');
    const bad = (why: string) => new BktError('INVALID_ARGUMENT', `--annotation ${value}: ${why}`, { attribute: 'annotation' });
    if (eq < 0) throw bad('expected KEY=VALUE or TYPE:KEY=VALUE');
    const left = value.slice(0, eq);
    const colon = left.indexOf(':');
    const key = colon < 0 ? left : left.slice(colon + 1);
    if (key === '') throw bad('the key is empty');
    if (colon < 0) {
      attrs[`annotation.${key}`] = value.slice(eq + 1);
      continue;
    }
    for (const typeAndPlatform of left.slice(0, colon).split(',')) {
      const m = /^([a-z-]+)(?:\[([A-Za-z0-9_/-]+)\])?$/.exec(typeAndPlatform);
      if (!m) throw bad(`invalid annotation type "${typeAndPlatform}" (want TYPE or TYPE[os/arch]; TYPE one of ${ANNOTATION_TYPES.join(', ')})`);
      if (!ANNOTATION_TYPES.includes(m[1]!)) throw bad(`unknown annotation type "${m[1]}" (known: ${ANNOTATION_TYPES.join(', ')})`);
      let platform = '';
      if (m[2] !== undefined) {
        const { formatPlatform, normalizePlatform, parsePlatform } = await import('@bkt/oci');
        try {
          platform = `[${formatPlatform(normalizePlatform(parsePlatform(m[2])))}]`;
        } catch (err) {
          throw bad((err as Error).message);
        }
      }
      attrs[`annotation-${m[1]}${platform}.${key}`] = value.slice(eq + 1);
    }
  }
  return attrs;
}

function isTrue(v: string | undefined): boolean {
  return v === 'true' || v === '1';
}

/**
 * The exporter response as buildx writes `--metadata-file`: a value that is
 * base64 of a JSON object becomes that object (e.g. `containerimage.descriptor`),
 * other values stay strings.
 */
export function metadataJson(response: Record<string, string>, buildRef: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(response)) out[k] = decodeValue(v);
  out['bkt.build.ref'] = buildRef;
  return out;
}

function decodeValue(v: string): unknown {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(v) || v.length % 4 !== 0) return v;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(v, 'base64').toString('utf8'));
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) && Object.keys(parsed).length > 0) return parsed;
  } catch {
    // not JSON: keep the string
  }
  return v;
}

/** buildx's attestation flags: accepted so that they are never "unknown options", refused until attestations exist. */
export interface AttestationFlags {
  provenance?: string | boolean;
  sbom?: string | boolean;
  attest?: string[];
}

/**
 * Refuses `--provenance`, `--sbom` and `--attest` with an error naming the
 * flag, as attestations are not made yet; `--provenance=false` and
 * `--sbom=false` ask for none and pass.
 */
export function checkAttestationFlags(flags: AttestationFlags): void {
  for (const flag of ['provenance', 'sbom'] as const) {
    const value = flags[flag];
    if (value === undefined || /^(false|0)$/i.test(String(value))) continue;
    throw new BktError(
      'UNIMPLEMENTED',
      `--${flag}: attestations (provenance, SBOM) are not supported yet; they are coming. Build without --${flag} (or with --${flag}=false)`,
      { attribute: flag },
    );
  }
  if (flags.attest && flags.attest.length > 0) {
    throw new BktError('UNIMPLEMENTED', `--attest ${flags.attest[0]}: attestations (provenance, SBOM) are not supported yet; they are coming. Build without --attest`, {
      attribute: 'attest',
    });
  }
}

/** The image id of an export, as buildx's `-q` prints it: the config digest, else the manifest or index digest. */
export function imageId(response: Record<string, string>): string | undefined {
  return response['containerimage.config.digest'] ?? response['containerimage.digest'];
}

/**
 * The closing lines about exported images, as buildx's last steps name them:
 * `writing image sha256:… done` (the image id), then per name of an `image`
 * output `naming to NAME@DIGEST done` (stored in the local image store) and
 * `pushing NAME@DIGEST done` (pushed).
 */
export async function imageSummary(outputs: OutputSpec[], response: Record<string, string>): Promise<string[]> {
  const id = imageId(response);
  const digest = response['containerimage.digest'];
  if (!id || !digest || !outputs.some((o) => IMAGE_TYPES.has(o.type))) return [];
  const lines = [`writing image ${id} done`];
  for (const o of outputs) {
    if (o.type !== 'image') continue;
    const given = (o.name ?? '').split(',').map((n) => n.trim()).filter(Boolean);
    const names = given.length > 0 ? given.map(canonicalName(await import('@bkt/oci'))) : [];
    const stored = o.store === undefined || !/^(0|f|false)$/i.test(o.store);
    if (stored) for (const n of names) lines.push(`naming to ${n}@${digest} done`);
    if (isTrue(o.push)) for (const n of names) lines.push(`pushing ${n}@${digest} done`);
  }
  return lines;
}

/** `app` → `docker.io/library/app:latest`; a name the exporter would refuse never gets here. */
const canonicalName =
  ({ formatReference, parseReference }: typeof import('@bkt/oci')) =>
  (name: string): string => {
    try {
      return formatReference(parseReference(name));
    } catch {
      return name;
    }
  };
