import { BktError, type OutputSpec } from '@bkt/core';

/**
 * The exporters of a build from `--output`, `-t` and `--push`, as buildx
 * combines them:
 *
 * - `type=registry` is `type=image,push=true`;
 * - `--push` adds `push=true` to the first output, which must be an image
 *   (or, without `--output`, is `type=image,push=true`);
 * - `-t NAME` (repeatable) names every `image`, `oci` and `docker` output that
 *   has no `name`; with no output at all, `-t` means `type=image` (kept in the
 *   store's image index).
 */
export function planOutputs(outputs: OutputSpec[], opts: { tags: string[]; push: boolean }): OutputSpec[] {
  let out = outputs.map((o): OutputSpec => (o.type === 'registry' ? { ...o, type: 'image', push: 'true' } : { ...o }));
  if (opts.push) {
    if (out.length === 0) out = [{ type: 'image', push: 'true' }];
    else if (out[0]!.type === 'image') out[0]!.push = 'true';
    else throw new BktError('INVALID_ARGUMENT', `--push and an output of type=${out[0]!.type} can't be used together (push needs type=image or type=registry)`, { attribute: 'push' });
  }
  if (opts.tags.length > 0) {
    if (out.length === 0) out = [{ type: 'image' }];
    for (const o of out) {
      if ((o.type === 'image' || o.type === 'oci' || o.type === 'docker') && o.name === undefined) o.name = opts.tags.join(',');
    }
  }
  for (const o of out) {
    if (o.type === 'image' && isTrue(o.push) && !o.name) {
      throw new BktError('INVALID_ARGUMENT', 'pushing an image needs a name: give -t NAME (or name= in --output)', { attribute: 'name' });
    }
  }
  return out;
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
