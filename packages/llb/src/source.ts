import { BktError, type ImageMetaResolver } from '@bkt/core';
import { formatReference, normalizeReference, parseReference } from '@bkt/oci';
import { addCap, constraintsFrom, marshalConstraints, sorted, type Constraints, type OpOptions } from './constraints.js';
import { cleanPath } from './paths.js';
import { State } from './state.js';
import { Output, Vertex, type MarshalContext, type MarshalledVertex } from './vertex.js';

/** SourceOp: an identifier and attributes a source plugin resolves (Go's `llb.SourceOp`). */
export class SourceOp extends Vertex {
  readonly output: Output;

  constructor(
    readonly identifier: string,
    readonly attrs: Readonly<Record<string, string>>,
    private readonly constraints: Constraints,
  ) {
    super();
    if (!identifier) throw new BktError('INVALID_ARGUMENT', "source identifier can't be empty");
    this.output = new Output(this, () => 0, constraints.platform);
  }

  inputs(): Output[] {
    return [];
  }

  protected build(ctx: MarshalContext): MarshalledVertex {
    const attrs = { ...this.attrs };
    const c: Constraints = { ...this.constraints, metadata: { ...this.constraints.metadata } };
    if (this.identifier.startsWith('local://') && !('local.session' in attrs)) {
      const uid = c.localUniqueId || ctx.constraints.localUniqueId;
      if (uid) {
        attrs['local.unique'] = uid;
        addCap(c.metadata, 'source.local.unique');
      }
    }
    const { op, metadata } = marshalConstraints(ctx.constraints, c);
    op.op = { $case: 'source', value: { identifier: this.identifier, attrs: sorted(attrs) } };
    // Only images (and OCI layouts) are platform-specific sources.
    if (!this.identifier.startsWith('docker-image://') && !this.identifier.startsWith('oci-layout://')) {
      op.platform = undefined;
    }
    return Vertex.encode(op, metadata, c.sourceLocations);
  }
}

function sourceState(identifier: string, attrs: Record<string, string>, c: Constraints): State {
  return State.fromOutput(new SourceOp(identifier, attrs, c).output);
}

/** An empty filesystem (Go's `llb.Scratch`): no op at all. */
export function scratch(): State {
  return State.fromOutput(null);
}

export interface ImageOptions extends OpOptions {
  /** `default`, `pull` (always check the registry) or `local` (prefer a local image) — `image.resolvemode`. */
  resolveMode?: 'default' | 'pull' | 'local';
  /** The usage record type of the pulled layers, e.g. `internal` (`image.recordtype`). */
  recordType?: string;
  /** Use only the first N layers (`image.layerlimit`). */
  layerLimit?: number;
  /** The expected manifest digest (`image.checksum`). */
  checksum?: string;
}

/** `image()` options with a resolver: the image's config is looked up first (Go's `llb.WithMetaResolver`). */
export interface ResolvedImageOptions extends ImageOptions {
  metaResolver: ImageMetaResolver;
}

/**
 * An image of a registry (Go's `llb.Image`). The reference is normalized as
 * Docker does: `busybox` → `docker-image://docker.io/library/busybox:latest`.
 *
 * With `metaResolver` (Go's `llb.WithMetaResolver`) it resolves to a
 * promise: the image's config is looked up for `platform` (else the
 * resolver's default), the reference is pinned to the digest found
 * (`…:tag@sha256:…`), and the state takes the config's env, working dir and
 * platform (`withImageConfig`) and its user, as a Dockerfile's FROM does.
 */
export function image(ref: string, opts: ResolvedImageOptions): Promise<State>;
export function image(ref: string, opts?: ImageOptions): State;
export function image(ref: string, opts: ImageOptions | ResolvedImageOptions = {}): State | Promise<State> {
  if ('metaResolver' in opts && opts.metaResolver !== undefined) return resolvedImage(ref, opts);
  let normalized: string;
  try {
    normalized = normalizeReference(ref);
  } catch (err) {
    throw new BktError('INVALID_ARGUMENT', `image: ${(err as Error).message}`, { attribute: 'ref' });
  }
  const c = constraintsFrom(opts);
  addCap(c.metadata, 'source.image');
  const attrs: Record<string, string> = {};
  if (opts.resolveMode && opts.resolveMode !== 'default') {
    if (!['pull', 'local'].includes(opts.resolveMode)) {
      throw new BktError('INVALID_ARGUMENT', `image ${ref}: unknown resolveMode "${opts.resolveMode}" (default, pull, local)`, { attribute: 'resolveMode' });
    }
    attrs['image.resolvemode'] = opts.resolveMode;
    if (opts.resolveMode === 'pull') addCap(c.metadata, 'source.image.resolvemode');
  }
  if (opts.recordType) attrs['image.recordtype'] = opts.recordType;
  if (opts.layerLimit !== undefined) {
    attrs['image.layerlimit'] = String(opts.layerLimit);
    addCap(c.metadata, 'source.image.layerlimit');
  }
  if (opts.checksum) {
    attrs['image.checksum'] = opts.checksum;
    addCap(c.metadata, 'source.image.checksum');
  }
  return sourceState(`docker-image://${normalized}`, attrs, c);
}

async function resolvedImage(ref: string, opts: ResolvedImageOptions): Promise<State> {
  const { metaResolver, ...imageOpts } = opts;
  let normalized: string;
  try {
    normalized = normalizeReference(ref);
  } catch (err) {
    throw new BktError('INVALID_ARGUMENT', `image: ${(err as Error).message}`, { attribute: 'ref' });
  }
  const platform = constraintsFrom(imageOpts).platform;
  const resolved = await metaResolver.resolveImageConfig(normalized, {
    ...(platform ? { platform } : {}),
    ...(imageOpts.resolveMode ? { resolveMode: imageOpts.resolveMode } : {}),
  });
  const pinned = formatReference({ ...parseReference(resolved.ref ?? normalized), digest: resolved.digest });
  const state = image(pinned, imageOpts).withImageConfig(resolved.config);
  const user = (JSON.parse(Buffer.from(resolved.config).toString('utf8')) as { config?: { User?: string } }).config?.User;
  return user ? state.user(user) : state;
}

export interface LocalOptions extends OpOptions {
  /** Only transfer paths matching these patterns (`local.includepattern`). */
  include?: string[];
  /** Skip paths matching these patterns, `.dockerignore` syntax (`local.excludepatterns`). */
  exclude?: string[];
  /** Only these paths, following symlinks to them (`local.followpaths`). */
  followPaths?: string[];
  /** A key under which transfers of the same directory share their cache (`local.sharedkeyhint`). */
  sharedKeyHint?: string;
  /** The client session the directory comes from (`local.session`). */
  sessionId?: string;
  /** How a re-transfer detects changes: `none` or `metadata` (`local.differ`). */
  differ?: { type: 'none' | 'metadata'; required?: boolean };
  /**
   * The `local.unique` attr (Go sets a random id per marshal). Here it is
   * unset unless given, here or in `marshal(state, { localUniqueId })`, so
   * the same program marshals to the same bytes.
   */
  localUniqueId?: string;
}

/** A directory of the client, by name (`context`, `dockerfile`, …) (Go's `llb.Local`). */
export function local(name: string, opts: LocalOptions = {}): State {
  if (!name) throw new BktError('INVALID_ARGUMENT', 'local: a name is required');
  const c = constraintsFrom(opts);
  if (opts.localUniqueId) c.localUniqueId = opts.localUniqueId;
  const attrs: Record<string, string> = {};
  if (opts.sessionId) {
    attrs['local.session'] = opts.sessionId;
    addCap(c.metadata, 'source.local.sessionid');
  }
  if (opts.include?.length) {
    attrs['local.includepattern'] = JSON.stringify(opts.include);
    addCap(c.metadata, 'source.local.includepatterns');
  }
  if (opts.followPaths?.length) {
    attrs['local.followpaths'] = JSON.stringify(opts.followPaths);
    addCap(c.metadata, 'source.local.followpaths');
  }
  if (opts.exclude?.length) {
    attrs['local.excludepatterns'] = JSON.stringify(opts.exclude);
    addCap(c.metadata, 'source.local.excludepatterns');
  }
  if (opts.sharedKeyHint) {
    attrs['local.sharedkeyhint'] = opts.sharedKeyHint;
    addCap(c.metadata, 'source.local.sharedkeyhint');
  }
  if (opts.differ) {
    attrs['local.differ'] = opts.differ.type;
    if (opts.differ.required) addCap(c.metadata, 'source.local.differ');
  }
  addCap(c.metadata, 'source.local');
  return sourceState(`local://${name}`, attrs, c);
}

export interface GitOptions extends OpOptions {
  /** Keep the `.git` directory (`git.keepgitdir`). */
  keepGitDir?: boolean;
  /** Only this subdirectory of the repository. */
  subdir?: string;
  /** Secret ids for HTTP auth (`git.authtokensecret`, `git.authheadersecret`); defaults GIT_AUTH_TOKEN, GIT_AUTH_HEADER. */
  authTokenSecret?: string;
  authHeaderSecret?: string;
  /** known_hosts lines for SSH remotes (`git.knownsshhosts`). */
  knownSshHosts?: string;
  /** The SSH agent id for SSH remotes (`git.mountsshsock`, default `default`). */
  mountSshSock?: string;
  /** The expected commit (`git.checksum`). */
  checksum?: string;
  /** Do not fetch submodules (`git.skipsubmodules`). */
  skipSubmodules?: boolean;
  /** File mtimes: `checkout` (default) or `commit` (`git.mtime`). */
  mtime?: 'checkout' | 'commit';
}

interface GitRemote {
  /** The URL given to git. */
  remote: string;
  host: string;
  path: string;
  ssh: boolean;
}

/** Go's `gitutil.ParseURL` for the forms BuildKit accepts; undefined for an unknown protocol. */
function parseGitURL(url: string): GitRemote | undefined {
  const scp = /^([a-zA-Z0-9._-]+@)?([a-zA-Z0-9.-]+):(?!\/\/)(.+)$/.exec(url);
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url) && scp && scp[1]) {
    return { remote: url, host: scp[2], path: scp[3], ssh: true };
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  const scheme = u.protocol.slice(0, -1);
  if (!['http', 'https', 'git', 'ssh', 'file'].includes(scheme)) return undefined;
  const remote = `${u.protocol}//${u.username ? `${u.username}${u.password ? `:${u.password}` : ''}@` : ''}${u.host}${u.pathname}`;
  return { remote, host: u.host, path: decodeURIComponent(u.pathname), ssh: scheme === 'ssh' };
}

/**
 * A git repository at a ref (Go's `llb.Git`): `git('https://github.com/moby/buildkit.git', 'v0.11.6')`.
 * A URL without a known scheme gets `https://`. The identifier is
 * `git://<host>/<path>[#<ref>[:<subdir>]]`, the same for https and ssh remotes.
 */
export function git(url: string, ref = '', opts: GitOptions = {}): State {
  let remote = parseGitURL(url);
  if (!remote) {
    url = `https://${url}`;
    remote = parseGitURL(url);
  }
  if (remote) url = remote.remote;
  // A "ref:subdir" fragment, as Docker's git URLs.
  const colon = ref.indexOf(':');
  const gitRef = colon < 0 ? ref : ref.slice(0, colon);
  let subdir = opts.subdir ?? (colon < 0 ? '' : ref.slice(colon + 1));
  subdir = cleanPath(`/${subdir}`).replace(/^\//, '');
  let id = url;
  if (remote) {
    id = remote.host + cleanPath(`/${remote.path}`);
    if (gitRef || subdir) id += `#${gitRef}${subdir ? `:${subdir}` : ''}`;
  }
  const c = constraintsFrom(opts);
  const attrs: Record<string, string> = {};
  if (opts.keepGitDir) {
    attrs['git.keepgitdir'] = 'true';
    addCap(c.metadata, 'source.git.keepgitdir');
  }
  if (url) {
    attrs['git.fullurl'] = url;
    addCap(c.metadata, 'source.git.fullurl');
  }
  attrs['git.authtokensecret'] = opts.authTokenSecret ?? 'GIT_AUTH_TOKEN';
  attrs['git.authheadersecret'] = opts.authHeaderSecret ?? 'GIT_AUTH_HEADER';
  if (opts.authTokenSecret || opts.authHeaderSecret) addCap(c.metadata, 'source.git.httpauth');
  if (remote?.ssh) {
    if (opts.knownSshHosts) attrs['git.knownsshhosts'] = opts.knownSshHosts.replace(/\n?$/, '\n');
    addCap(c.metadata, 'source.git.knownsshhosts');
    attrs['git.mountsshsock'] = opts.mountSshSock || 'default';
    addCap(c.metadata, 'source.git.mountsshsock');
  }
  if (opts.checksum) {
    attrs['git.checksum'] = opts.checksum;
    addCap(c.metadata, 'source.git.checksum');
  }
  if (opts.skipSubmodules) {
    attrs['git.skipsubmodules'] = 'true';
    addCap(c.metadata, 'source.git.skipsubmodules');
  }
  if (opts.mtime) {
    attrs['git.mtime'] = opts.mtime;
    addCap(c.metadata, 'source.git.mtime');
  }
  addCap(c.metadata, 'source.git');
  return sourceState(`git://${id}`, attrs, c);
}

export interface HttpOptions extends OpOptions {
  /** The expected sha256 of the content, `sha256:…` (`http.checksum`). */
  checksum?: string;
  /** The file name to save as (`http.filename`); default: from the URL. */
  filename?: string;
  /** Permission bits of the file (`http.perm`). */
  chmod?: number;
  /** Owner of the file (`http.uid`, `http.gid`). */
  chown?: { uid: number; gid: number };
  /** Secret id holding an `Authorization` header (`http.authheadersecret`). */
  authHeaderSecret?: string;
  /** Request headers (`http.header.accept`, `http.header.user-agent`). */
  header?: { accept?: string; userAgent?: string };
}

/** A file downloaded over HTTP(S) (Go's `llb.HTTP`); the identifier is the URL. */
export function http(url: string, opts: HttpOptions = {}): State {
  if (!/^https?:\/\//.test(url)) {
    throw new BktError('INVALID_ARGUMENT', `http: "${url}" is not an http:// or https:// URL`, { attribute: 'url' });
  }
  const c = constraintsFrom(opts);
  const attrs: Record<string, string> = {};
  if (opts.checksum) {
    if (!/^sha256:[a-f0-9]{64}$/.test(opts.checksum)) {
      throw new BktError('INVALID_ARGUMENT', `http ${url}: checksum "${opts.checksum}" is not a sha256 digest`, { attribute: 'checksum' });
    }
    attrs['http.checksum'] = opts.checksum;
    addCap(c.metadata, 'source.http.checksum');
  }
  if (opts.filename) attrs['http.filename'] = opts.filename;
  const perm = (opts.chmod ?? 0) & 0o777;
  if (perm !== 0) {
    attrs['http.perm'] = `0${perm.toString(8)}`;
    addCap(c.metadata, 'source.http.perm');
  }
  if (opts.chown?.uid) {
    attrs['http.uid'] = String(opts.chown.uid);
    addCap(c.metadata, 'soruce.http.uidgid'); // sic: BuildKit's cap id has this spelling
  }
  if (opts.chown?.gid) {
    attrs['http.gid'] = String(opts.chown.gid);
    addCap(c.metadata, 'soruce.http.uidgid');
  }
  if (opts.authHeaderSecret) {
    attrs['http.authheadersecret'] = opts.authHeaderSecret;
    addCap(c.metadata, 'source.http.auth');
  }
  if (opts.header) {
    if (opts.header.accept) attrs['http.header.accept'] = opts.header.accept;
    if (opts.header.userAgent) attrs['http.header.user-agent'] = opts.header.userAgent;
    addCap(c.metadata, 'source.http.header');
  }
  addCap(c.metadata, 'source.http');
  return sourceState(url, attrs, c);
}

export interface OciLayoutOptions extends OpOptions {
  sessionId?: string;
  storeId?: string;
  layerLimit?: number;
}

/** An image in an OCI layout of the client (Go's `llb.OCILayout`): `ociLayout('name@sha256:…', { storeId })`. */
export function ociLayout(ref: string, opts: OciLayoutOptions = {}): State {
  try {
    const r = parseReference(ref);
    if (!r.digest) throw new Error('an OCI layout reference needs a digest (name@sha256:…)');
  } catch (err) {
    throw new BktError('INVALID_ARGUMENT', `ociLayout: ${(err as Error).message}`, { attribute: 'ref' });
  }
  const c = constraintsFrom(opts);
  const attrs: Record<string, string> = {};
  if (opts.sessionId) attrs['oci.session'] = opts.sessionId;
  if (opts.storeId) attrs['oci.store'] = opts.storeId;
  if (opts.layerLimit !== undefined) attrs['oci.layerlimit'] = String(opts.layerLimit);
  addCap(c.metadata, 'source.ocilayout');
  return sourceState(`oci-layout://${ref}`, attrs, c);
}
