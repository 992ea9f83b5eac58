/**
 * The OCI Distribution client: manifests, blobs, uploads, mounts, referrers
 * and tags over the registry HTTP API (distribution-spec v1.1), with auth,
 * retries, mirrors and bounded parallelism.
 *
 * Contract for everything downloaded: bytes are checked against their digest
 * (and size) before a caller can take them as complete — a blob stream throws
 * at its end instead of finishing when the bytes don't match.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { BktError, type Digest } from '@bkt/core';
import { AuthCache, HostAuthorizer, repositoryScope, type Scope } from './auth.js';
import { dockerConfigCredentials, type CredentialsProvider } from './credentials.js';
import { pullEndpoints, pushEndpoint, type Endpoint, type RegistryHostsConfig } from './hosts.js';
import {
  DEFAULT_RETRY,
  RetryableStatus,
  Transport,
  backoffDelay,
  discard,
  isRetryableError,
  isRetryableStatus,
  readBody,
  withRetries,
  type HttpRequest,
  type HttpResponse,
  type RetryPolicy,
  type StreamBody,
} from './http.js';
import { Limiter } from './limiter.js';
import { MANIFEST_MEDIA_TYPES, MediaType, digestOf, formatReference, isDigest, parseReference, type Descriptor, type ImageIndex, type Reference } from '@bkt/oci';

/**
 * What a client shares with its views (`withCredentials`): per-registry
 * settings, the concurrency limit, retries — nothing of a user's. Plugins
 * take these as options; credentials come from each build's client.
 */
export interface RegistrySettings {
  /** Per-registry settings (plain HTTP, insecure TLS, mirrors), as buildkitd.toml's `[registry."host"]`. */
  hosts?: RegistryHostsConfig;
  /** The most registry operations (requests, blob transfers) in flight at once, over the client and all its views. Default 4. */
  concurrency?: number;
  retry?: Partial<RetryPolicy>;
}

export interface RegistryClientOptions extends RegistrySettings {
  /** Where credentials come from. Default: docker's config file (`~/.docker/config.json`). */
  credentials?: CredentialsProvider;
}

/** A manifest or index as fetched: its descriptor, its exact bytes (which the digest covers), and its JSON. */
export interface FetchedManifest {
  descriptor: Descriptor;
  bytes: Uint8Array;
  json: Record<string, unknown>;
}

/** Bytes to upload: in memory, or re-openable (each attempt reads from the start). */
export type BlobData = Uint8Array | StreamBody;

/** Receives a blob download. `commit()` is called only once all bytes arrived and matched the digest. */
export interface BlobSink {
  write(chunk: Uint8Array): Promise<void> | void;
  commit(): Promise<void> | void;
  /** The download failed or its bytes mismatched: drop everything written. */
  abort(reason: Error): Promise<void> | void;
}

export interface PushBlobOptions {
  /** Upload in PATCH chunks of this many bytes; default: one monolithic PUT. */
  chunkSize?: number;
  /** Repositories of the same registry to try a cross-repository mount from, before uploading. */
  mountFrom?: string[];
  signal?: AbortSignal;
}

/** How a blob came to be in the target repository. */
export type PushBlobResult = 'exists' | 'mounted' | 'uploaded';

/** A repository, a tag/digest reference, or its string form. */
export type RefLike = string | Reference;

/**
 * The blob a download is held to: its digest and either its size in bytes
 * (a non-negative integer, from a checked descriptor) or `'unknown'`, said
 * explicitly by a caller that knows only the digest.
 */
export type BlobTarget = { digest: Digest; size: number | 'unknown' };

/** Refuses a size that is neither a non-negative integer nor `'unknown'` (a descriptor's -1 is not "no limit"). */
function checkBlobTarget(desc: BlobTarget, what: string): void {
  if (desc.size === 'unknown') return;
  if (typeof desc.size !== 'number' || !Number.isSafeInteger(desc.size) || desc.size < 0) {
    throw new BktError('INVALID_ARGUMENT', `${what}: invalid blob size ${JSON.stringify(desc.size)} (want a non-negative integer, or 'unknown')`, {
      digest: desc.digest,
    });
  }
}

/** Blobs of at least this size (or of unknown size) are fetched as bulk data (`HttpRequest.bulk`); smaller ones reuse pooled connections. */
const BULK_BLOB_BYTES = 128 * 1024;

/** Manifests larger than this are refused, as containerd does. */
const MAX_MANIFEST_SIZE = 4 * 1024 * 1024;

/** What a manifest request addresses: the digest when known, else the tag. */
const manifestTarget = (ref: Reference): string => ref.digest ?? ref.tag ?? 'latest';

function toRef(ref: RefLike): Reference {
  return typeof ref === 'string' ? parseReference(ref) : ref;
}

/** The Content-Length of an answer, when it has one that is a non-negative integer. */
function contentLength(res: HttpResponse): number | undefined {
  const value = header(res, 'content-length');
  return value !== undefined && /^\d+$/.test(value) && Number.isSafeInteger(Number(value)) ? Number(value) : undefined;
}

function header(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The tag under which the referrers tag schema keeps the referrers of `digest`. */
export function referrersTag(digest: Digest): string {
  return digest.replace(':', '-');
}

/** The client `withCredentials` is making a view of (handed to the constructor, synchronously). */
let viewOf: RegistryClient | undefined;

export class RegistryClient {
  // Shared with every view: settings, the connection pool, the limiter, the auth cache.
  readonly #hosts: RegistryHostsConfig;
  readonly #retry: RetryPolicy;
  readonly #limiter: Limiter;
  readonly #transport: Transport;
  readonly #auth: AuthCache;
  // This client's (or view's) own: its credentials, and the authorizers that look them up.
  readonly #credentials: CredentialsProvider;
  readonly #authorizers = new Map<string, HostAuthorizer>();
  readonly #isView: boolean;

  constructor(opts: RegistryClientOptions = {}) {
    const parent = viewOf;
    viewOf = undefined;
    this.#credentials = opts.credentials ?? dockerConfigCredentials();
    this.#isView = parent !== undefined;
    if (parent) {
      this.#hosts = parent.#hosts;
      this.#retry = parent.#retry;
      this.#limiter = parent.#limiter;
      this.#transport = parent.#transport;
      this.#auth = parent.#auth;
      return;
    }
    this.#hosts = opts.hosts ?? {};
    this.#retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.#limiter = new Limiter(opts.concurrency ?? 4);
    this.#transport = new Transport();
    this.#auth = new AuthCache();
  }

  /**
   * A view of this client that asks `credentials` instead (one build's, in a
   * process serving many): the same settings, connection pool and
   * concurrency limit, its own credential lookups (once per host). Bearer
   * tokens are shared only between views whose credentials are the same
   * (anonymous tokens between all anonymous ones), so a token obtained with
   * one user's credentials never authorizes another's request. Closing a
   * view does nothing; close the client it came from.
   */
  withCredentials(credentials: CredentialsProvider): RegistryClient {
    viewOf = this;
    try {
      return new RegistryClient({ credentials });
    } finally {
      viewOf = undefined;
    }
  }

  /** Frees pooled connections. The client and its views must not be used afterwards; on a view, nothing. */
  close(): void {
    if (!this.#isView) this.#transport.close();
  }

  // ---------------------------------------------------------------------------
  // Public API
  // ---------------------------------------------------------------------------

  /** Checks that `registry` (a host: `127.0.0.1:5000`) answers the v2 API; 401 counts as answering. */
  async ping(registry: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const ep = pushEndpoint(registry, this.#hosts);
    await this.#limiter.run(async () => {
      const res = await withRetries(this.#retry, opts.signal, async () => {
        const r = await this.#transport.send({ method: 'GET', url: new URL(`${ep.base}/`), insecure: ep.insecure, httpFallback: ep.httpFallback, signal: opts.signal });
        if (isRetryableStatus(r.status)) throw new RetryableStatus(r, `ping ${registry}`);
        return r;
      }).catch((err) => {
        throw this.#networkError(err, `ping ${registry}`, opts.signal);
      });
      discard(res);
      if (res.status !== 200 && res.status !== 401) {
        throw new BktError('NOT_FOUND', `${registry} is not an OCI registry: GET ${ep.base}/ answered HTTP ${res.status}`);
      }
    });
  }

  /** Fetches a manifest or index by tag or digest; verifies its digest. Throws `NOT_FOUND` naming the reference. */
  async getManifest(ref: RefLike, opts: { signal?: AbortSignal } = {}): Promise<FetchedManifest> {
    const r = toRef(ref);
    return this.#limiter.run(() => this.#getManifest(r, opts.signal));
  }

  /** The descriptor of a manifest by tag or digest, or undefined when the registry has none. */
  async headManifest(ref: RefLike, opts: { signal?: AbortSignal } = {}): Promise<Descriptor | undefined> {
    const r = toRef(ref);
    const what = `HEAD manifest ${formatReference(r)}`;
    return this.#limiter.run(() =>
      this.#fromPullEndpoints(r, async (ep) => {
        const res = await this.#request(ep, [repositoryScope(r.repository, ['pull'])], {
          method: 'HEAD',
          url: this.#url(ep, r.repository, `manifests/${manifestTarget(r)}`),
          headers: { accept: MANIFEST_MEDIA_TYPES.join(', ') },
          signal: opts.signal,
        }, what);
        discard(res);
        if (res.status === 404) return undefined;
        if (res.status !== 200) throw await this.#statusError(res, what, ep);
        const digest = header(res, 'docker-content-digest') ?? r.digest;
        if (!digest || !isDigest(digest)) {
          // Without the header a HEAD can't tell the digest; a GET can.
          return (await this.#getManifest(r, opts.signal)).descriptor;
        }
        if (r.digest && digest !== r.digest) throw this.#mismatch(what, r.digest, digest);
        const size = contentLength(res);
        // Without a length a HEAD can't make a descriptor either; a GET can.
        if (size === undefined) return (await this.#getManifest(r, opts.signal)).descriptor;
        return { mediaType: (header(res, 'content-type') ?? '').split(';')[0], digest, size };
      }, true),
    );
  }

  /**
   * Uploads a manifest or index under `ref`'s tag (or its digest). The media
   * type comes from `mediaType` or the JSON's own `mediaType`. A manifest with
   * a `subject` is also recorded in the subject's referrers tag when the
   * registry doesn't index referrers itself (no `OCI-Subject` in its answer).
   */
  async putManifest(ref: RefLike, manifest: Uint8Array | object, opts: { mediaType?: string; signal?: AbortSignal } = {}): Promise<Descriptor> {
    const r = toRef(ref);
    const bytes = manifest instanceof Uint8Array ? manifest : Buffer.from(JSON.stringify(manifest));
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new BktError('INVALID_ARGUMENT', `manifest for ${formatReference(r)} is not valid JSON`);
    }
    const mediaType = opts.mediaType ?? (typeof json.mediaType === 'string' ? json.mediaType : undefined);
    if (!mediaType) throw new BktError('INVALID_ARGUMENT', `manifest for ${formatReference(r)} has no mediaType`);
    const digest = digestOf(bytes);
    if (r.digest && r.digest !== digest) {
      throw new BktError('INVALID_ARGUMENT', `manifest bytes have digest ${digest}, not ${r.digest} as ${formatReference(r)} says`);
    }
    const descriptor: Descriptor = { mediaType, digest, size: bytes.byteLength };
    const artifactType = artifactTypeOf(json);
    if (artifactType) descriptor.artifactType = artifactType;
    if (json.annotations && typeof json.annotations === 'object') descriptor.annotations = json.annotations as Record<string, string>;

    const what = `PUT manifest ${formatReference(r)}`;
    const ep = pushEndpoint(r.registry, this.#hosts);
    const res = await this.#limiter.run(() =>
      this.#request(ep, [repositoryScope(r.repository, ['pull', 'push'])], {
        method: 'PUT',
        url: this.#url(ep, r.repository, `manifests/${r.tag ?? digest}`),
        headers: { 'content-type': mediaType },
        body: bytes,
        signal: opts.signal,
      }, what),
    );
    if (res.status !== 201 && res.status !== 200) throw await this.#statusError(res, what, ep);
    discard(res);
    const answered = header(res, 'docker-content-digest');
    if (answered && answered !== digest) throw this.#mismatch(what, digest, answered);

    const subject = json.subject as Descriptor | undefined;
    if (subject && isDigest(subject.digest) && !header(res, 'oci-subject')) {
      await this.#addToReferrersTag({ ...r, tag: undefined, digest: undefined }, subject.digest, descriptor, opts.signal);
    }
    return descriptor;
  }

  /**
   * A blob's bytes as a stream that resumes with `Range` after a dropped
   * connection and throws at its end (instead of finishing) when the bytes
   * don't match `desc.digest` and `desc.size` — so a consumer that commits on
   * completion (a content store) never commits wrong bytes. `verifyDigest:
   * false` leaves the digest check (not the size check) to a consumer that
   * hashes the bytes anyway, such as a content store writing with an expected
   * digest: one pass of sha256 less. `desc.size` is a non-negative integer
   * (the stream stops past it) or `'unknown'` (a caller that knows only the
   * digest says so); anything else is refused before a request is made.
   */
  blobStream(repo: RefLike, desc: BlobTarget, opts: { signal?: AbortSignal; verifyDigest?: boolean } = {}): AsyncIterable<Uint8Array> {
    const r = toRef(repo);
    const self = this;
    return {
      async *[Symbol.asyncIterator]() {
        checkBlobTarget(desc, `GET blob ${desc.digest} from ${r.registry}/${r.repository}`);
        const release = await self.#limiter.acquire();
        try {
          yield* self.#blobStreamFromEndpoints(r, desc, opts.verifyDigest ?? true, opts.signal);
        } catch (err) {
          throw self.#networkError(err, `GET blob ${desc.digest} from ${r.registry}/${r.repository}`, opts.signal);
        } finally {
          release();
        }
      },
    };
  }

  /** Downloads a blob into `sink`; `sink.commit()` runs only after the digest matched, else `sink.abort()`. */
  async getBlob(repo: RefLike, desc: BlobTarget, sink: BlobSink, opts: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      for await (const chunk of this.blobStream(repo, desc, opts)) await sink.write(chunk);
    } catch (err) {
      await sink.abort(err as Error);
      throw err;
    }
    await sink.commit();
  }

  /** A blob's descriptor (media type `application/octet-stream`) when the repository has it, else undefined. */
  async headBlob(repo: RefLike, digest: Digest, opts: { signal?: AbortSignal } = {}): Promise<Descriptor | undefined> {
    const r = toRef(repo);
    const found = await this.#limiter.run(() =>
      this.#fromPullEndpoints(r, (ep) => this.#headBlob(ep, r, digest, [repositoryScope(r.repository, ['pull'])], opts.signal), true),
    );
    if (!found) return undefined;
    if (found.size === undefined) {
      throw new BktError('INTERNAL', `HEAD blob ${digest} in ${r.registry}/${r.repository}: the registry answered without a valid Content-Length`, { digest });
    }
    return { mediaType: 'application/octet-stream', digest, size: found.size };
  }

  /**
   * Makes `desc` exist in `repo`: nothing when it already does; else a
   * cross-repository mount from `mountFrom` when the registry allows it; else
   * an upload (one PUT, or PATCH chunks of `chunkSize`). A failed upload is
   * retried from a new session.
   */
  async pushBlob(repo: RefLike, desc: Pick<Descriptor, 'digest' | 'size'>, data: BlobData, opts: PushBlobOptions = {}): Promise<PushBlobResult> {
    const r = toRef(repo);
    const size = data instanceof Uint8Array ? data.byteLength : data.size;
    if (size !== desc.size) {
      throw new BktError('INVALID_ARGUMENT', `blob ${desc.digest} for ${r.registry}/${r.repository}: data has ${size} bytes, descriptor says ${desc.size}`);
    }
    const ep = pushEndpoint(r.registry, this.#hosts);
    const scopes = [repositoryScope(r.repository, ['pull', 'push']), ...(opts.mountFrom ?? []).map((m) => repositoryScope(m, ['pull']))];
    return this.#limiter.run(async () => {
      if (await this.#headBlob(ep, r, desc.digest, scopes, opts.signal)) return 'exists';
      for (const from of opts.mountFrom ?? []) {
        if (from !== r.repository && (await this.#mount(ep, r, desc.digest, from, scopes, opts.signal))) return 'mounted';
      }
      const what = `upload blob ${desc.digest} to ${r.registry}/${r.repository}`;
      await withRetries(this.#retry, opts.signal, () => this.#upload(ep, r, desc, data, scopes, what, opts)).catch(async (err) => {
        if (err instanceof RetryableStatus) throw await this.#statusError(err.response, `${what} (after ${this.#retry.attempts} attempts)`, ep);
        throw this.#networkError(err, what, opts.signal);
      });
      return 'uploaded';
    });
  }

  /** Asks the registry to link `digest` from repository `from` (same registry) into `repo`; true when it did. */
  async mountBlob(repo: RefLike, digest: Digest, from: string, opts: { signal?: AbortSignal } = {}): Promise<boolean> {
    const r = toRef(repo);
    const ep = pushEndpoint(r.registry, this.#hosts);
    const scopes = [repositoryScope(r.repository, ['pull', 'push']), repositoryScope(from, ['pull'])];
    return this.#limiter.run(() => this.#mount(ep, r, digest, from, scopes, opts.signal));
  }

  /**
   * The manifests that name `ref`'s digest as their `subject` (OCI 1.1), by
   * the referrers API, or by the referrers tag schema on registries without
   * it. `artifactType` filters.
   */
  async referrers(ref: RefLike, opts: { artifactType?: string; signal?: AbortSignal } = {}): Promise<Descriptor[]> {
    const r = toRef(ref);
    if (!r.digest) throw new BktError('INVALID_ARGUMENT', `referrers need a digest reference, got ${formatReference(r)}`);
    const subject = r.digest;
    const what = `GET referrers of ${formatReference(r)}`;
    const found = await this.#limiter.run(() =>
      this.#fromPullEndpoints(r, async (ep) => {
        const url = this.#url(ep, r.repository, `referrers/${subject}`);
        if (opts.artifactType) url.searchParams.set('artifactType', opts.artifactType);
        const res = await this.#request(ep, [repositoryScope(r.repository, ['pull'])], {
          method: 'GET',
          url,
          headers: { accept: MediaType.OciIndex },
          signal: opts.signal,
        }, what);
        if (res.status === 200) {
          const index = JSON.parse((await readBody(res, MAX_MANIFEST_SIZE)).toString('utf8')) as ImageIndex;
          return index.manifests ?? [];
        }
        discard(res);
        // 404 (or 400 from some older registries): no referrers API; use the tag schema.
        if (res.status !== 404 && res.status !== 400) throw await this.#statusError(res, what, ep);
        return (await this.#referrersFromTag(r, subject, opts.signal)).manifests;
      }, false),
    );
    return opts.artifactType ? found.filter((d) => d.artifactType === opts.artifactType) : found;
  }

  /** Every tag of a repository, following `Link` pagination. */
  async listTags(repo: RefLike, opts: { signal?: AbortSignal } = {}): Promise<string[]> {
    const r = toRef(repo);
    const what = `list tags of ${r.registry}/${r.repository}`;
    return this.#limiter.run(() =>
      this.#fromPullEndpoints(r, async (ep) => {
        const tags: string[] = [];
        let url: URL | undefined = this.#url(ep, r.repository, 'tags/list');
        url.searchParams.set('n', '1000');
        while (url) {
          const res = await this.#request(ep, [repositoryScope(r.repository, ['pull'])], { method: 'GET', url, signal: opts.signal }, what);
          if (res.status !== 200) throw await this.#statusError(res, what, ep);
          const body = JSON.parse((await readBody(res)).toString('utf8')) as { tags?: string[] | null };
          tags.push(...(body.tags ?? []));
          const next = /<([^>]+)>\s*;\s*rel="?next"?/.exec(header(res, 'link') ?? '');
          url = next ? new URL(next[1], url) : undefined;
        }
        return tags;
      }, false),
    );
  }

  // ---------------------------------------------------------------------------
  // Manifests
  // ---------------------------------------------------------------------------

  #getManifest(r: Reference, signal: AbortSignal | undefined): Promise<FetchedManifest> {
    const what = `GET manifest ${formatReference(r)}`;
    return this.#fromPullEndpoints(r, async (ep) => {
      const res = await this.#request(ep, [repositoryScope(r.repository, ['pull'])], {
        method: 'GET',
        url: this.#url(ep, r.repository, `manifests/${manifestTarget(r)}`),
        headers: { accept: MANIFEST_MEDIA_TYPES.join(', ') },
        signal,
      }, what);
      if (res.status !== 200) throw await this.#statusError(res, what, ep);
      const bytes = await readBody(res, MAX_MANIFEST_SIZE);
      const digest = digestOf(bytes);
      if (r.digest && r.digest !== digest) throw this.#mismatch(what, r.digest, digest);
      const answered = header(res, 'docker-content-digest');
      if (answered?.startsWith('sha256:') && answered !== digest) throw this.#mismatch(what, answered, digest);
      let json: Record<string, unknown>;
      try {
        json = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
      } catch {
        throw new BktError('INTERNAL', `${what}: ${ep.host} sent a manifest that is not JSON`);
      }
      const contentType = (header(res, 'content-type') ?? '').split(';')[0].trim();
      const mediaType =
        typeof json.mediaType === 'string' ? json.mediaType : MANIFEST_MEDIA_TYPES.includes(contentType) ? contentType : MediaType.OciManifest;
      const descriptor: Descriptor = { mediaType, digest, size: bytes.byteLength };
      const artifactType = artifactTypeOf(json);
      if (artifactType) descriptor.artifactType = artifactType;
      return { descriptor, bytes: new Uint8Array(bytes), json };
    }, false);
  }

  async #referrersFromTag(r: Reference, subject: Digest, signal: AbortSignal | undefined): Promise<ImageIndex> {
    try {
      const { json } = await this.#getManifest({ ...r, tag: referrersTag(subject), digest: undefined }, signal);
      const index = json as unknown as ImageIndex;
      return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: index.manifests ?? [] };
    } catch (err) {
      if (err instanceof BktError && err.code === 'NOT_FOUND') return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
      throw err;
    }
  }

  async #addToReferrersTag(repo: Reference, subject: Digest, referrer: Descriptor, signal: AbortSignal | undefined): Promise<void> {
    const index = await this.#referrersFromTag(repo, subject, signal);
    if (index.manifests.some((d) => d.digest === referrer.digest)) return;
    index.manifests.push(referrer);
    const bytes = Buffer.from(JSON.stringify(index));
    const what = `PUT referrers tag ${repo.registry}/${repo.repository}:${referrersTag(subject)}`;
    const ep = pushEndpoint(repo.registry, this.#hosts);
    const res = await this.#request(ep, [repositoryScope(repo.repository, ['pull', 'push'])], {
      method: 'PUT',
      url: this.#url(ep, repo.repository, `manifests/${referrersTag(subject)}`),
      headers: { 'content-type': MediaType.OciIndex },
      body: bytes,
      signal,
    }, what);
    if (res.status !== 201 && res.status !== 200) throw await this.#statusError(res, what, ep);
    discard(res);
  }

  // ---------------------------------------------------------------------------
  // Blobs
  // ---------------------------------------------------------------------------

  /** Whether the endpoint has the blob, and its Content-Length when the answer has a valid one. */
  async #headBlob(ep: Endpoint, r: Reference, digest: Digest, scopes: Scope[], signal: AbortSignal | undefined): Promise<{ size: number | undefined } | undefined> {
    const what = `HEAD blob ${digest} in ${r.registry}/${r.repository}`;
    const res = await this.#request(ep, scopes, { method: 'HEAD', url: this.#url(ep, r.repository, `blobs/${digest}`), signal }, what);
    discard(res);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw await this.#statusError(res, what, ep);
    return { size: contentLength(res) };
  }

  async *#blobStreamFromEndpoints(
    r: Reference,
    desc: BlobTarget,
    verifyDigest: boolean,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<Uint8Array> {
    const endpoints = pullEndpoints(r.registry, this.#hosts);
    for (const [i, ep] of endpoints.entries()) {
      const last = i === endpoints.length - 1;
      let started = false;
      try {
        for await (const chunk of this.#blobStream(ep, r, desc, verifyDigest, signal)) {
          started = true;
          yield chunk;
        }
        return;
      } catch (err) {
        // A mirror that failed before sending anything is skipped; bytes already handed out can't be taken back.
        if (last || started) throw err;
      }
    }
  }

  async *#blobStream(
    ep: Endpoint,
    r: Reference,
    desc: BlobTarget,
    verifyDigest: boolean,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<Uint8Array> {
    const what = `GET blob ${desc.digest} from ${ep.host}/${r.repository}`;
    const hash = verifyDigest ? createHash('sha256') : undefined;
    const size = desc.size === 'unknown' ? Infinity : desc.size;
    let offset = 0;
    let failures = 0;
    for (;;) {
      const resumeAt = offset;
      const res = await this.#request(ep, [repositoryScope(r.repository, ['pull'])], {
        method: 'GET',
        url: this.#url(ep, r.repository, `blobs/${desc.digest}`),
        headers: resumeAt > 0 ? { range: `bytes=${resumeAt}-` } : {},
        signal,
        bulk: desc.size === 'unknown' || desc.size >= BULK_BLOB_BYTES,
      }, what);
      let skip = 0;
      if (res.status === 206 && resumeAt > 0) {
        const range = /^bytes (\d+)-/.exec(header(res, 'content-range') ?? '');
        if (!range || Number(range[1]) !== resumeAt) {
          discard(res);
          throw new BktError('INTERNAL', `${what}: resumed at byte ${resumeAt} but the registry answered range "${header(res, 'content-range')}"`);
        }
      } else if (res.status === 200) {
        skip = resumeAt; // the server ignored Range: drop the bytes we already have
      } else {
        throw await this.#statusError(res, what, ep);
      }
      try {
        for await (const raw of res.body as AsyncIterable<Buffer>) {
          let chunk = raw;
          if (skip > 0) {
            const n = Math.min(skip, chunk.length);
            skip -= n;
            chunk = chunk.subarray(n);
            if (chunk.length === 0) continue;
          }
          offset += chunk.length;
          if (offset > size) {
            res.body.destroy();
            throw new BktError('INTERNAL', `${what}: the registry sent more than the ${desc.size} bytes the descriptor says; refusing the blob`, { digest: desc.digest });
          }
          hash?.update(chunk);
          yield chunk;
        }
        // A server that closes early without an error looks like a clean end: check the length.
        if (desc.size !== 'unknown' && offset < desc.size) throw Object.assign(new Error(`connection closed after ${offset} of ${desc.size} bytes`), { code: 'ECONNRESET' });
        break;
      } catch (err) {
        if (!isRetryableError(err) || signal?.aborted) throw err;
        // Progress resets the count: a long download on a flaky link keeps going as long as it advances.
        failures = offset > resumeAt ? 1 : failures + 1;
        if (failures >= this.#retry.attempts) {
          throw new BktError('INTERNAL', `${what}: connection lost at byte ${offset} ${failures} times in a row: ${(err as Error).message}`, { digest: desc.digest }, { cause: err });
        }
        await sleep(backoffDelay(this.#retry, failures), undefined, { signal });
      }
    }
    if (!hash) return;
    const got: Digest = `sha256:${hash.digest('hex')}`;
    if (got !== desc.digest) throw this.#mismatch(what, desc.digest, got);
  }

  async #mount(ep: Endpoint, r: Reference, digest: Digest, from: string, scopes: Scope[], signal: AbortSignal | undefined): Promise<boolean> {
    const what = `mount blob ${digest} from ${from} into ${r.registry}/${r.repository}`;
    const url = this.#url(ep, r.repository, 'blobs/uploads/');
    url.searchParams.set('mount', digest);
    url.searchParams.set('from', from);
    const res = await this.#request(ep, scopes, { method: 'POST', url, signal }, what);
    discard(res);
    if (res.status === 201) return true;
    if (res.status === 202) {
      // Not mountable: the registry opened an upload session instead; close it.
      const location = header(res, 'location');
      if (location) {
        const cancel = await this.#request(ep, scopes, { method: 'DELETE', url: new URL(location, url), signal }, what).catch(() => undefined);
        if (cancel) discard(cancel);
      }
      return false;
    }
    throw await this.#statusError(res, what, ep);
  }

  /** One upload session, start to end, without retries (the caller retries it as a whole). */
  async #upload(
    ep: Endpoint,
    r: Reference,
    desc: Pick<Descriptor, 'digest' | 'size'>,
    data: BlobData,
    scopes: Scope[],
    what: string,
    opts: PushBlobOptions,
  ): Promise<void> {
    const start = await this.#send(ep, scopes, { method: 'POST', url: this.#url(ep, r.repository, 'blobs/uploads/'), signal: opts.signal });
    discard(start);
    if (start.status !== 202) throw await this.#retryableOrError(start, what, ep);
    let location = this.#location(start, what);

    if (opts.chunkSize && opts.chunkSize > 0 && desc.size > 0) {
      // A registry may ask for larger chunks (distribution-spec: OCI-Chunk-Min-Length).
      const chunkSize = Math.max(opts.chunkSize, Number(header(start, 'oci-chunk-min-length') ?? 0) || 0);
      const hash = createHash('sha256');
      let sent = 0;
      for await (const chunk of chunked(data, chunkSize)) {
        hash.update(chunk);
        const res = await this.#send(ep, scopes, {
          method: 'PATCH',
          url: location,
          headers: { 'content-type': 'application/octet-stream', 'content-range': `${sent}-${sent + chunk.byteLength - 1}` },
          body: chunk,
          signal: opts.signal,
        });
        discard(res);
        if (res.status !== 202) throw await this.#retryableOrError(res, what, ep);
        sent += chunk.byteLength;
        location = this.#location(res, what);
      }
      const got: Digest = `sha256:${hash.digest('hex')}`;
      if (got !== desc.digest) throw new BktError('INVALID_ARGUMENT', `${what}: the data's digest is ${got}`, { digest: desc.digest });
      location.searchParams.set('digest', desc.digest);
      const done = await this.#send(ep, scopes, { method: 'PUT', url: location, signal: opts.signal });
      discard(done);
      if (done.status !== 201) throw await this.#retryableOrError(done, what, ep);
      return;
    }

    location.searchParams.set('digest', desc.digest);
    const res = await this.#send(ep, scopes, {
      method: 'PUT',
      url: location,
      headers: { 'content-type': 'application/octet-stream' },
      body: data,
      signal: opts.signal,
    });
    discard(res);
    if (res.status !== 201) throw await this.#retryableOrError(res, what, ep);
  }

  #location(res: HttpResponse, what: string): URL {
    const location = header(res, 'location');
    if (!location) throw new BktError('INTERNAL', `${what}: the registry answered HTTP ${res.status} without a Location`);
    return new URL(location, res.url);
  }

  // ---------------------------------------------------------------------------
  // Requests: endpoints, auth, retries, redirects, errors
  // ---------------------------------------------------------------------------

  #url(ep: Endpoint, repository: string, rest: string): URL {
    return new URL(`${ep.base}/${repository}/${rest}`);
  }

  /**
   * Runs `attempt` on each pull endpoint in order (mirrors, then the origin),
   * moving on when a mirror fails or (`notFoundIsUndefined`) answers nothing.
   */
  async #fromPullEndpoints<T>(r: Reference, attempt: (ep: Endpoint) => Promise<T>, notFoundIsUndefined: boolean): Promise<T> {
    const endpoints = pullEndpoints(r.registry, this.#hosts);
    for (const [i, ep] of endpoints.entries()) {
      const last = i === endpoints.length - 1;
      try {
        const result = await attempt(ep);
        if (result === undefined && notFoundIsUndefined && !last) continue;
        return result;
      } catch (err) {
        if (last) throw err;
      }
    }
    throw new BktError('INTERNAL', `no endpoint for ${r.registry}`); // unreachable: the origin is always last
  }

  #authorizer(ep: Endpoint): HostAuthorizer {
    const key = `${ep.base} ${ep.insecure}`;
    let a = this.#authorizers.get(key);
    if (!a) {
      a = new HostAuthorizer(ep.host, key, this.#transport, () => this.#credentials(ep.host), ep.insecure, this.#auth);
      this.#authorizers.set(key, a);
    }
    return a;
  }

  /**
   * One exchange with auth: attaches the authorization for `scopes`, answers
   * a 401 challenge (twice at most), follows redirects of GET/HEAD (without
   * credentials to another origin). No retries.
   */
  async #send(ep: Endpoint, scopes: Scope[], req: HttpRequest): Promise<HttpResponse> {
    const authorizer = this.#authorizer(ep);
    // An endpoint that fell back to plain HTTP is the same origin over http and https.
    const originOf = (u: URL) => (ep.httpFallback ? this.#transport.effectiveUrl(u).origin : u.origin);
    let url = req.url;
    for (let round = 0, redirects = 0; ; ) {
      const sameOrigin = originOf(url) === originOf(req.url);
      const authorization = sameOrigin ? await authorizer.authorization(scopes) : undefined;
      const headers = { ...req.headers };
      if (authorization) headers.authorization = authorization;
      let res: HttpResponse;
      try {
        res = await this.#transport.send({ ...req, url, headers, insecure: ep.insecure, httpFallback: ep.httpFallback });
      } catch (err) {
        throw annotate(err, ep);
      }
      if (res.status === 401 && sameOrigin && round < 2 && (await authorizer.onUnauthorized(res, scopes, authorization !== undefined))) {
        discard(res);
        round++;
        continue;
      }
      if ((req.method === 'GET' || req.method === 'HEAD') && [301, 302, 303, 307, 308].includes(res.status) && redirects < 5) {
        const location = header(res, 'location');
        if (location) {
          discard(res);
          url = new URL(location, url);
          redirects++;
          continue;
        }
      }
      return res;
    }
  }

  /** `#send` with retries on 5xx, 429 and connection failures. */
  #request(ep: Endpoint, scopes: Scope[], req: HttpRequest, what: string): Promise<HttpResponse> {
    return withRetries(this.#retry, req.signal, async () => {
      const res = await this.#send(ep, scopes, req);
      if (isRetryableStatus(res.status)) throw new RetryableStatus(res, what);
      return res;
    }).catch(async (err) => {
      if (err instanceof RetryableStatus) throw await this.#statusError(err.response, `${what} (after ${this.#retry.attempts} attempts)`, ep);
      throw this.#networkError(err, what, req.signal);
    });
  }

  /** For steps retried as a whole (uploads): a retryable status becomes `RetryableStatus`, anything else a `BktError`. */
  async #retryableOrError(res: HttpResponse, what: string, ep: Endpoint): Promise<Error> {
    if (isRetryableStatus(res.status)) return new RetryableStatus(res, what);
    return this.#statusError(res, what, ep);
  }

  async #statusError(res: HttpResponse, what: string, ep: Endpoint): Promise<BktError> {
    let detail = '';
    try {
      const body = (await readBody(res, 64 * 1024)).toString('utf8');
      const parsed = JSON.parse(body) as { errors?: { code?: string; message?: string }[] };
      detail = (parsed.errors ?? []).map((e) => `${e.code ?? ''}: ${e.message ?? ''}`).join('; ');
    } catch {
      // Not a registry error body.
    }
    const suffix = detail ? ` (${detail})` : '';
    if (res.status === 401 || res.status === 403) {
      const hasCreds = await this.#authorizer(ep).hasCredentials().catch(() => false);
      const why = hasCreds
        ? `registry ${ep.host} refused the credentials configured for it`
        : `registry ${ep.host} requires authentication and no credentials are configured for it`;
      return new BktError('PERMISSION_DENIED', `${what}: ${why} (HTTP ${res.status})${suffix}`, { registry: ep.host });
    }
    const code = res.status === 404 ? 'NOT_FOUND' : 'INTERNAL';
    return new BktError(code, `${what}: ${ep.host} answered HTTP ${res.status}${suffix}`, { registry: ep.host, status: res.status });
  }

  #networkError(err: unknown, what: string, signal?: AbortSignal): Error {
    if (err instanceof BktError) return err;
    if ((err as Error)?.name === 'AbortError' || signal?.aborted) return new BktError('CANCELLED', `${what}: cancelled`, {}, { cause: err });
    return new BktError('INTERNAL', `${what}: ${(err as Error).message}`, {}, { cause: err });
  }

  #mismatch(what: string, expected: string, got: string): BktError {
    return new BktError('INTERNAL', `${what}: digest mismatch: expected ${expected}, got ${got}; the content was rejected`, { expected, got });
  }
}

/** Adds which registry a connection error belongs to, keeping its `code` for the retry decision. */
function annotate(err: unknown, ep: Endpoint): unknown {
  if (err instanceof Error && !(err instanceof BktError) && !err.message.includes(ep.host)) {
    err.message = `${err.message} (${ep.base})`;
  }
  return err;
}

function artifactTypeOf(json: Record<string, unknown>): string | undefined {
  if (typeof json.artifactType === 'string') return json.artifactType;
  // OCI 1.1: a manifest without artifactType is typed by its config's media type, unless that is the empty config.
  const config = json.config as { mediaType?: string } | undefined;
  if (json.subject && config?.mediaType && config.mediaType !== MediaType.OciEmpty) return config.mediaType;
  return undefined;
}

/** Re-slices a blob into chunks of exactly `size` bytes (the last may be shorter). */
async function* chunked(data: BlobData, size: number): AsyncGenerator<Uint8Array> {
  if (data instanceof Uint8Array) {
    for (let i = 0; i < data.byteLength; i += size) yield data.subarray(i, i + size);
    return;
  }
  let pending: Buffer[] = [];
  let pendingSize = 0;
  for await (const piece of data.open()) {
    let buf = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    while (pendingSize + buf.length >= size) {
      const take = size - pendingSize;
      pending.push(buf.subarray(0, take));
      yield Buffer.concat(pending);
      buf = buf.subarray(take);
      pending = [];
      pendingSize = 0;
    }
    if (buf.length) {
      pending.push(Buffer.from(buf));
      pendingSize += buf.length;
    }
  }
  if (pendingSize) yield Buffer.concat(pending);
}
