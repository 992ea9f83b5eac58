/**
 * Docker image reference normalization, as `reference.ParseNormalizedNamed` +
 * `reference.TagNameOnly` of github.com/distribution/reference:
 * `busybox` → `docker.io/library/busybox:latest`,
 * `me/app@sha256:…` → `docker.io/me/app@sha256:…`.
 */

const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?`;
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*';
const NAME_RE = new RegExp(`^(?:(${DOMAIN})/)?(${PATH_COMPONENT}(?:/${PATH_COMPONENT})*)$`);
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export interface ImageReference {
  /** `docker.io`, `localhost:5000`, … */
  domain: string;
  /** `library/busybox` */
  path: string;
  tag?: string;
  digest?: string;
}

/** Parses and normalizes an image reference; throws an Error saying what is wrong. */
export function parseImageReference(ref: string): ImageReference {
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_RE.test(digest)) throw new Error(`invalid reference "${ref}": bad digest "${digest}"`);
    if (digest.startsWith('sha256:') && !/^sha256:[a-f0-9]{64}$/.test(digest)) {
      throw new Error(`invalid reference "${ref}": a sha256 digest has 64 lower-case hex characters`);
    }
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw new Error(`invalid reference "${ref}": bad tag "${tag}"`);
  }
  // Split the domain as the docker CLI does: the first component is a domain
  // when it has a '.' or ':' or is 'localhost' (or has upper-case letters).
  let domain = 'docker.io';
  let path = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase()) {
      domain = first;
      path = rest.slice(slash + 1);
    }
  }
  if (domain === 'index.docker.io') domain = 'docker.io';
  if (domain === 'docker.io' && !path.includes('/')) path = `library/${path}`;
  if (path !== path.toLowerCase()) {
    throw new Error(`invalid reference "${ref}": repository name must be lowercase`);
  }
  if (!NAME_RE.test(`${domain}/${path}`) || `${domain}/${path}`.length > 255) {
    throw new Error(`invalid reference "${ref}": not a valid repository name`);
  }
  return { domain, path, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** The normalized reference string; adds `:latest` when it has neither tag nor digest. */
export function normalizeImageReference(ref: string): string {
  const r = parseImageReference(ref);
  const tag = r.tag ?? (r.digest ? undefined : 'latest');
  return `${r.domain}/${r.path}${tag ? `:${tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;
}
