/**
 * Image references, parsed and normalized as distribution's `reference`
 * library does (`ParseNormalizedNamed` + `TagNameOnly`):
 * `busybox` → `docker.io/library/busybox:latest`, `localhost:5000/a/b@sha256:…`.
 */
import { BktError, type Digest } from '@bkt/core';
import { isDigest } from './digest.js';

/** A normalized image reference. At least one of `tag` and `digest` is set. */
export interface Reference {
  /** The registry host as users write it (`docker.io`, `127.0.0.1:5000`, `[::1]:5000`). */
  registry: string;
  /** The repository path inside the registry (`library/busybox`). */
  repository: string;
  tag?: string;
  digest?: Digest;
}

/** The registry of a name without a host (`busybox`), as references are normalized. */
export const DOCKER_HUB = 'docker.io';
const DEFAULT_TAG = 'latest';
const MAX_NAME_LENGTH = 255;

// The grammar of github.com/distribution/reference (regexp.go).
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]+)?$`);
const TAG = /^[\w][\w.-]{0,127}$/;
/** An image ID: distribution refuses it as a name. */
const IMAGE_ID = /^[a-f0-9]{64}$/;

function invalid(ref: string, why: string): BktError {
  return new BktError('INVALID_ARGUMENT', `invalid image reference "${ref}": ${why}`, { reference: ref });
}

/**
 * The lexical parts of `name[:tag][@digest]`, unchecked: the digest follows
 * the first '@'; a tag follows the last ':' after the last '/' (a ':' before
 * it is a registry port). For references of other grammars (an OCI layout's
 * `NAME[:TAG][@DIGEST]`); image references go through `parseReference`.
 */
export function splitReference(text: string): { name: string; tag?: string; digest?: string } {
  let name = text;
  let digest: string | undefined;
  const at = name.indexOf('@');
  if (at >= 0) {
    digest = name.slice(at + 1);
    name = name.slice(0, at);
  }
  let tag: string | undefined;
  const colon = name.lastIndexOf(':');
  if (colon > name.lastIndexOf('/')) {
    tag = name.slice(colon + 1);
    name = name.slice(0, colon);
  }
  return { name, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/**
 * Parses and normalizes an image reference. A reference without tag or digest
 * gets `latest`; one with both keeps both (the digest is what gets fetched).
 * Throws `BktError('INVALID_ARGUMENT')` naming the reference and the problem.
 */
export function parseReference(input: string): Reference {
  const ref = input.trim();
  if (ref === '') throw invalid(input, 'empty reference');
  if (IMAGE_ID.test(ref)) throw invalid(input, 'a 64-character hexadecimal string is an image ID, not a name');

  const { name, digest, tag: givenTag } = splitReference(ref);
  if (digest !== undefined && !isDigest(digest)) throw invalid(input, `"${digest}" is not a sha256 digest (sha256:<64 hex digits>)`);
  if (givenTag !== undefined && !TAG.test(givenTag)) throw invalid(input, `"${givenTag}" is not a valid tag`);
  if (name === '') throw invalid(input, 'missing repository name');

  let registry = DOCKER_HUB;
  let repository = name;
  const slash = name.indexOf('/');
  if (slash >= 0) {
    const first = name.slice(0, slash);
    // As docker: the first component is a host when it looks like one.
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase()) {
      if (!DOMAIN.test(first)) throw invalid(input, `"${first}" is not a valid registry host`);
      registry = first;
      repository = name.slice(slash + 1);
    }
  }
  if (registry === 'index.docker.io') registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;

  if (repository !== repository.toLowerCase()) throw invalid(input, 'repository name must be lowercase');
  for (const component of repository.split('/')) {
    if (!PATH_COMPONENT.test(component)) throw invalid(input, `"${component}" is not a valid path component`);
  }
  if (registry.length + 1 + repository.length > MAX_NAME_LENGTH) {
    throw invalid(input, `repository name longer than ${MAX_NAME_LENGTH} characters`);
  }
  const tag = givenTag === undefined && digest === undefined ? DEFAULT_TAG : givenTag;
  return { registry, repository, tag, digest };
}

/** The canonical string form: `registry/repository[:tag][@digest]`. */
export function formatReference(ref: Reference): string {
  let s = `${ref.registry}/${ref.repository}`;
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** The normalized form of a reference string: `busybox` → `docker.io/library/busybox:latest`. Throws as `parseReference`. */
export function normalizeReference(input: string): string {
  return formatReference(parseReference(input));
}

/** `registry/repository`, the name without tag or digest. */
export function repositoryName(ref: Pick<Reference, 'registry' | 'repository'>): string {
  return `${ref.registry}/${ref.repository}`;
}
