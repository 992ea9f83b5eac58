/**
 * Shared types of bkt: the contracts between the solver and its backends.
 *
 * Everything here is plain data or a small interface (2–4 methods) with a
 * factory/instance split, as BuildKit's `source.Source` / `SourceInstance`.
 * Attributes stay `Record<string, string>` until they reach the backend, as on
 * the wire.
 */

import type { BuildClient, FileStat } from './client.js';
import type { InteractiveContainer, NewContainerRequest } from './container.js';
import type { CacheChain, CacheImport } from './cache.js';

/** An OCI content digest, `sha256:<64 hex>`. */
export type Digest = `sha256:${string}`;

/** Key/value attributes as they travel on the wire (exporter attrs, source attrs, frontend opts). */
export type Attrs = Record<string, string>;

/** An OCI platform (image-spec `Platform`). */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  osVersion?: string;
  osFeatures?: string[];
}

/** The op kinds of LLB, keys of the op-executor registry. */
export type OpKind = 'source' | 'exec' | 'file' | 'merge' | 'diff' | 'build';

// ---------------------------------------------------------------------------
// Snapshots: the filesystem trees ops read and produce.
// ---------------------------------------------------------------------------

/** A directory made available on the host; `release()` unmounts/cleans it and is idempotent. */
export interface Mounted {
  readonly path: string;
  release(): Promise<void>;
}

/**
 * An immutable, committed filesystem tree in the store. A snapshot is a layer
 * (its own changes) over a chain of parents; `mount()` shows the whole tree.
 */
export interface Snapshot {
  readonly id: string;
  /** The parent snapshot's id, or null for a base layer. */
  readonly parent: string | null;
  /**
   * Optional: when the snapshot was committed (the store's record of it). An
   * image exporter dates a layer's history entry by it, as BuildKit does, so
   * that a rebuild from the cache makes the same image.
   */
  readonly createdAt?: Date;
  /** Mounts the full tree read-only. */
  mount(): Promise<Mounted>;
  /**
   * The directory holding only this snapshot's own changes (an overlay upper
   * dir: deletions as overlay whiteouts, i.e. 0/0 character devices and the
   * `trusted.overlay.opaque` xattr). Used for layer export and diff.
   */
  layerPath(): string;
  /**
   * Optional: the content digests (`sha256:…` of the bytes) its maker
   * already knows of regular files of the tree, by path relative to its root
   * (`a/b.txt`). A content checksum of the snapshot takes these instead of
   * reading the files again (the local source knows every file it synced).
   */
  contentDigests?(): ReadonlyMap<string, Digest>;
  /**
   * Optional: makes the tree of a lazy snapshot (see `Snapshotter.lazy`),
   * its lazy parents' first; a no-op once made. `mount()`, and a
   * snapshotter's `prepare` / `merge` over it, do it themselves; a reader of
   * `layerPath()` calls it first.
   */
  materialize?(): Promise<void>;
}

/**
 * The layer blob a lazy snapshot's own changes are made from: a layer tar in
 * the content store (compressed or not) whose uncompressed digest is `diffId`.
 */
export interface LazyLayer {
  blob: { mediaType: string; digest: Digest; size: number };
  diffId: Digest;
  /** When the layer was made where it came from (a cache's `createdAt`): the snapshot is dated by it, not by now. */
  createdAt?: Date;
  /** Names the layer in errors (`layer 2/3 (sha256:…) of cache REF`). */
  what: string;
}

/**
 * Applies `layer` onto `dir` — the writable tree over the lazy snapshot's
 * parent (`base`: there is none) — from its blob in the content store;
 * throws when the uncompressed content's digest is not `layer.diffId`.
 * `@bkt/oci`'s `applyLayerBlob` is one.
 */
export type LayerApplier = (dir: string, layer: LazyLayer, opts: { base: boolean }) => Promise<void>;

/** A writable tree being built; becomes a `Snapshot` on `commit()`. */
export interface MutableSnapshot {
  readonly id: string;
  /** The writable, mounted full tree (parent + changes so far); with `deferredMount`, the empty directory to mount it on. */
  readonly path: string;
  /**
   * Set only when `prepare` was asked for `deferMount` and the tree needs a
   * mount: `path` is not mounted, the caller mounts this filesystem there
   * itself — in a mount namespace of its own, so that the mount is gone with
   * the namespace's last process — and must have it unmounted before
   * `commit()` or `discard()`.
   */
  readonly deferredMount?: { type: string; source: string; options: string };
  /** Unmounts and records the snapshot; the mutable is unusable afterwards. */
  commit(): Promise<Snapshot>;
  /** Unmounts and deletes everything written; idempotent. */
  discard(): Promise<void>;
}

/** Creates and finds snapshots. Implementations: overlayfs (default) and plain copy (fallback). */
export interface Snapshotter {
  /**
   * A new writable tree over `parent` (null: empty). `deferMount`: the
   * caller mounts it (see `MutableSnapshot.deferredMount`); a snapshotter
   * may ignore it and return a ready tree.
   */
  prepare(parent: Snapshot | null, opts?: { description?: string; recordType?: string; deferMount?: boolean }): Promise<MutableSnapshot>;
  /** A committed snapshot by id; throws `BktError('NOT_FOUND')` when absent. */
  get(id: string): Promise<Snapshot>;
  /**
   * A snapshot whose tree is the given snapshots stacked in order (later ones
   * win), as MergeOp needs. Implementations may stack layers or copy.
   */
  merge(snapshots: Snapshot[]): Promise<Snapshot>;
  /**
   * Optional (the store's snapshotters): a committed snapshot over `parent`
   * whose own changes are `layer`'s, made into a tree only when something
   * first needs it — mounted, a child prepared on it, merged, or
   * `materialize()` — as BuildKit's lazy refs: an imported result nobody
   * needs as a tree costs its blobs only, and an image export reuses them.
   * The blob must be in the content store; the caller references it
   * (`ContentStore.addRef`) so it lives as long as the snapshot. The process
   * making the tree needs a `LayerApplier` (the solver's store has one).
   */
  lazy?(parent: Snapshot | null, layer: LazyLayer, opts?: { description?: string; recordType?: string }): Promise<Snapshot>;
  /**
   * Optional: files of these committed snapshots were hard-linked into
   * another tree (a copy from a local context links the context's files):
   * the bytes each one holds alone changed, so a size measured before is
   * forgotten (`bkt du` measures it again).
   */
  linkedFrom?(ids: readonly string[]): void;
}

/**
 * Who keeps a content-store blob alive: a snapshot (the reference ends when
 * the snapshot is removed; `{ snapshot }` also records "this snapshot was
 * unpacked from this layer blob"), or a name its user manages (`image:<name>`).
 */
export type BlobOwner = { snapshot: string } | { name: string };

export interface BlobRef {
  digest: Digest;
  owner: BlobOwner;
  createdAt: Date;
}

/** Content-addressed blob storage (`content/blobs/sha256/…`). Writes are temp + fsync + rename. */
export interface ContentStore {
  has(digest: Digest): Promise<boolean>;
  /** Path of a stored blob; throws `BktError('NOT_FOUND')` when absent. */
  path(digest: Digest): string;
  /** Stores bytes or a stream, verifying `expected` when given; returns digest and size. */
  write(
    data: Uint8Array | AsyncIterable<Uint8Array>,
    expected?: Digest,
  ): Promise<{ digest: Digest; size: number }>;
  /**
   * Optional (the solver's store has it): records that `owner` uses a stored
   * blob (idempotent). `prune` removes blobs nothing references. Throws
   * `NOT_FOUND` when the blob or the owning snapshot is absent.
   */
  addRef?(digest: Digest, owner: BlobOwner): Promise<void>;
  /** Optional: removes a reference made by `addRef` (idempotent). */
  removeRef?(digest: Digest, owner: BlobOwner): Promise<void>;
  /** Optional: the references of one blob, or those one owner holds, oldest first. */
  refs?(of: { digest: Digest } | BlobOwner): Promise<BlobRef[]>;
}

// ---------------------------------------------------------------------------
// Progress: shaped like control.proto's Vertex, VertexStatus, VertexLog, VertexWarning.
// ---------------------------------------------------------------------------

export interface ProgressGroup {
  id: string;
  name: string;
  weak?: boolean;
}

export interface VertexEvent {
  digest: Digest;
  inputs: Digest[];
  name: string;
  cached: boolean;
  started?: Date;
  completed?: Date;
  error?: string;
  progressGroup?: ProgressGroup;
}

export interface VertexStatusEvent {
  id: string;
  vertex: Digest;
  name: string;
  current: number;
  total: number;
  timestamp: Date;
  started?: Date;
  completed?: Date;
}

export interface VertexLogEvent {
  vertex: Digest;
  timestamp: Date;
  /** 1 = stdout, 2 = stderr. */
  stream: number;
  msg: Uint8Array;
  /**
   * Absent: the vertex's output, for progress displays and the build's
   * history alike. `display`: a note about the output that only displays
   * show (e.g. where it was clipped). `history`: output only the build's
   * history keeps (a step's output past its display limit); displays never
   * receive these, the `vertexLog` hook does.
   */
  only?: LogAudience;
}

/** Who a log message is only for (see `VertexLogEvent.only`). */
export type LogAudience = 'display' | 'history';

export interface SourceRange {
  start: { line: number; character: number };
  end: { line: number; character: number };
}

export interface VertexWarningEvent {
  vertex: Digest;
  level: number;
  short: string;
  detail: string[];
  url?: string;
  ranges?: SourceRange[];
}

/** One progress update, as control.proto's `StatusResponse` carries them. */
export type ProgressEvent =
  | { type: 'vertex'; vertex: VertexEvent }
  | { type: 'status'; status: VertexStatusEvent }
  | { type: 'log'; log: VertexLogEvent }
  | { type: 'warning'; warning: VertexWarningEvent };

/** What a running op may report. */
export interface ProgressWriter {
  /**
   * Appends output of the running vertex (stream 1 stdout, 2 stderr), shown
   * by progress displays and kept in the build's history. `only: 'display'`:
   * a note about the output (e.g. that it was clipped) that the history does
   * not keep.
   */
  log(stream: 1 | 2, msg: Uint8Array | string, only?: 'display'): void;
  /**
   * Appends output of the running vertex that progress displays do not show
   * and the build's history keeps: a step's output past its display limit,
   * so the history holds every byte. Optional: a writer without it has no
   * history, and such output is dropped.
   */
  logHistoryOnly?(stream: 1 | 2, msg: Uint8Array): void;
  /** Reports sub-progress (bytes copied, layers pulled…). */
  status(id: string, name: string, current: number, total: number, done?: boolean): void;
  warn(short: string, detail?: string[]): void;
}

// ---------------------------------------------------------------------------
// What backends receive from the solver.
// ---------------------------------------------------------------------------

/**
 * What one build gives every backend, the same for all its steps: the
 * client, what the client granted, and the build's lifetime. Values that
 * belong to one build travel here, never in a plugin option or a map keyed
 * by build id. Result metadata (`source.date.epoch` and the other exporter
 * keys) travels in `BuildResult.metadata`, as BuildKit's.
 */
export interface BuildScope {
  /** Unique id of this solve (the `ref` of a Solve request). */
  readonly buildId: string;
  /** The client's machine: local directories, output sinks, credentials (see `BuildClient`). */
  readonly client: BuildClient;
  /** Entitlements the client granted (`network.host`, `security.insecure`). */
  readonly entitlements: ReadonlySet<string>;
  /** The client's secrets by id (never logged, never cached; the build redacts their values). */
  readonly secrets: SecretProvider;
  /** The client's SSH agents by id (`default`, …). */
  readonly ssh: SshAgentProvider;
  /**
   * Runs `cleanup` once the build has finished (exports done, failed or
   * cancelled), latest registered first. A failing cleanup does not stop
   * the others, nor fail the build.
   */
  onFinish(cleanup: () => void | Promise<void>): void;
}

/** What a backend receives for one step: the build's scope and the step's store, signal and progress. */
export interface BuildContext extends BuildScope {
  /** The store root (`--root`). */
  readonly root: string;
  readonly snapshotter: Snapshotter;
  readonly content: ContentStore;
  /** Aborted when the build is cancelled or fails; backends must stop promptly. */
  readonly signal: AbortSignal;
  readonly progress: ProgressWriter;
  /** The vertex this context is scoped to (set for op executors and sources). */
  readonly vertex?: { digest: Digest; name: string };
  /**
   * The store's records API: plugins keep their persistent state and temp
   * files here, never elsewhere under `root`. Set by the solver; absent in
   * contexts made without a store (a backend that needs it throws `UNIMPLEMENTED`).
   */
  readonly records?: StoreRecords;
}

export interface SshAgentProvider {
  /** Path of a socket on this machine speaking to the agent `id`, or null when the build has none of that id. */
  socketPath(id: string): Promise<string | null>;
}

export interface SecretProvider {
  /** The secret's bytes, or null when the build has no secret of that id. */
  get(id: string): Promise<Uint8Array | null>;
}

// ---------------------------------------------------------------------------
// Sources.
// ---------------------------------------------------------------------------

/** A parsed source identifier (`local://context`, `docker-image://…`). */
export interface SourceIdentifier {
  /** The scheme, a key of the source registry. */
  scheme: string;
  /** The identifier without its scheme. */
  ref: string;
  /** The source op's attrs (`local.includepattern`, `git.keepgitdir`, …). */
  attrs: Attrs;
  platform?: Platform;
}

/** A source kind: registered by scheme. */
export interface Source {
  readonly schemes: readonly string[];
  /** Parses and validates; throws a `BktError` naming the bad attribute. */
  identify(scheme: string, ref: string, attrs: Attrs, platform?: Platform): SourceIdentifier;
  resolve(id: SourceIdentifier, ctx: BuildContext): Promise<SourceInstance>;
}

export interface SourceCacheKey {
  /** A stable key for the content (e.g. a content checksum, an image digest). */
  key: string;
  /** A pinned identifier to record (e.g. `docker-image://…@sha256:…`). */
  pin?: string;
}

export interface SourceInstance {
  cacheKey(ctx: BuildContext): Promise<SourceCacheKey>;
  snapshot(ctx: BuildContext): Promise<Snapshot>;
}

// ---------------------------------------------------------------------------
// Op executors: run a decoded op of one kind.
// ---------------------------------------------------------------------------

/** Which part of an input's tree a content checksum covers (BuildKit's `fsutil` checksum options). */
export interface ContentSelector {
  /** Path inside the input, `/`-rooted; may hold wildcards when `wildcard` is set. */
  path: string;
  wildcard?: boolean;
  followLinks?: boolean;
  includePatterns?: string[];
  excludePatterns?: string[];
}

/** A resolved input of an op: the snapshot of the input vertex's output. */
export interface OpInput {
  snapshot: Snapshot | null;
}

/**
 * Executes ops of one kind (registered by `kind`). The solver unwraps the
 * decoded `pb.Op` (from `@bkt/api`) and passes the op of this kind, having
 * checked that the op's kind is `kind`: a `pb.ExecOp` for `exec`, a
 * `pb.FileOp` for `file`, a `pb.MergeOp` for `merge`, a `pb.DiffOp` for
 * `diff`. An executor declares its payload type (`OpExecutor<pb.ExecOp>`);
 * `Op` defaults to `unknown` so core depends on no generated types.
 *
 * Nothing else of the outer `pb.Op` is passed whole: its `inputs` arrive
 * resolved as `inputs` (in order), the vertex's digest and name as
 * `ctx.vertex`, its `platform` in `envelope` (`OpEnvelope`). No executor
 * reads the op's `constraints`.
 */
export interface OpExecutor<Op = unknown> {
  readonly kind: OpKind;
  /**
   * Content-based cache inputs: for input `i`, the paths whose content
   * checksum stands in for the input's definition key (BuildKit's
   * `CacheMap.Deps[i].Selector` + `ComputeDigestFunc`). Undefined = none.
   */
  contentSelectors?(op: Op, inputIndex: number): ContentSelector[] | undefined;
  /**
   * Runs the op; returns one snapshot per output. `ctx` is vertex-scoped: its
   * `progress` writes to this vertex, its `signal` aborts on cancellation.
   */
  run(op: Op, inputs: OpInput[], ctx: BuildContext, envelope?: OpEnvelope): Promise<(Snapshot | null)[]>;
}

/** What the solver passes an executor of the outer `pb.Op` besides its payload. */
export interface OpEnvelope {
  /**
   * The platform the op is for (`pb.Op.platform`, normalized as the
   * definition has it); undefined when the op names none (the host's). An
   * executor that runs processes runs them for this platform or refuses.
   */
  platform?: Platform;
}

// ---------------------------------------------------------------------------
// Exporters.
// ---------------------------------------------------------------------------

/** What a solve produced: the default result and named ones (multi-platform). */
export interface BuildResult {
  ref: Snapshot | null;
  refs?: Record<string, Snapshot | null>;
  /** Frontend-provided metadata, e.g. `containerimage.config`. */
  metadata: Record<string, Uint8Array>;
  /** Attestations of the result, when the solve asked for some (set before export). */
  attestations?: Attestation[];
}

export interface Exporter {
  readonly type: string;
  /** Validates attrs; throws a `BktError` naming an unknown or bad attribute. */
  resolve(attrs: Attrs): Promise<ExporterInstance>;
}

export interface ExporterInstance {
  /** Writes the result; returns the exporter response (BuildKit keys). */
  export(result: BuildResult, ctx: BuildContext): Promise<Record<string, string>>;
}

// ---------------------------------------------------------------------------
// Cache backends, frontends, attestation producers.
// ---------------------------------------------------------------------------

/** A cache export requested by a solve (control.proto's `CacheOptionsEntry` of `CacheOptions.Exports`). */
export interface CacheExporterInstance {
  /**
   * Exports `chain`, the cache of the build that produced `result`; called
   * after the build's exporters. Returns response keys (merged into the
   * exporter response, e.g. `cache.manifest`).
   */
  export(chain: CacheChain, result: BuildResult, ctx: BuildContext): Promise<Record<string, string>>;
  /**
   * An exporter that lives in the exported image (`inline`): the bytes the
   * image exporters put in the image config (`INLINE_CACHE_CONFIG_KEY`),
   * made before they run and handed to them in the result's metadata
   * (`INLINE_CACHE_METADATA_KEY`). Its results index the final result's layers.
   */
  inline?(chain: CacheChain, result: BuildResult, ctx: BuildContext): Promise<Uint8Array | undefined>;
}

/** A cache import requested by a solve (a `CacheOptionsEntry` of `CacheOptions.Imports`). */
export interface CacheImporterInstance {
  /** Reads the import's records (not its layers: a record's result is fetched when the build needs it). */
  load(ctx: BuildContext): Promise<CacheImport>;
}

/**
 * A cache backend, registered by `type` (`registry`, `local`, `inline`, …).
 * A solve request's `{ type, attrs }` entries reach it; it provides an
 * importer, an exporter or both, and validates `attrs` (a `BktError` naming
 * a bad one) before the build runs.
 */
export interface CacheBackend {
  readonly type: string;
  exporter?(attrs: Attrs): Promise<CacheExporterInstance>;
  importer?(attrs: Attrs): Promise<CacheImporterInstance>;
}

/** Options of `FrontendBridge.resolveImageConfig`, as the gateway's ResolveImageConfigRequest. */
export interface ResolveImageConfigOptions {
  /** The platform whose config to return (default: the solver's host platform). */
  platform?: Platform;
  /** `default`, `pull` or `local` (as the `image-resolve-mode` frontend attribute). */
  resolveMode?: string;
}

/** An image config, as the gateway's ResolveImageConfigResponse. */
export interface ResolvedImageConfig {
  /** Digest of the manifest the config belongs to. */
  digest: Digest;
  /** The config JSON, byte for byte. */
  config: Uint8Array;
  /** The reference pinned to `digest` (`docker.io/library/alpine:3.19@sha256:…`), when the resolver knows it. */
  ref?: string;
}

/**
 * Resolves image configs for an LLB builder (Go's `llb.ImageMetaResolver`):
 * what `image(ref, { metaResolver })` of `@bkt/llb` asks. A frontend's
 * `bridge.resolveImageConfig` is one; a config target's build function is
 * given one (`TargetBuildArgs.metaResolver`).
 */
export interface ImageMetaResolver {
  resolveImageConfig(ref: string, opts?: ResolveImageConfigOptions): Promise<ResolvedImageConfig>;
}

/** How an image reference is resolved: `default` (local if present, else the registry), `pull` (always the registry) or `local` (never the registry). */
export type ImageResolveMode = 'default' | 'pull' | 'local';

/**
 * A capability a source may declare (BuildKit's `llb.ImageMetaResolver`):
 * answering an image's config without unpacking the image. The solver serves
 * `FrontendBridge.resolveImageConfig(ref)` through the source registered for
 * `ref`'s scheme (`docker-image` when `ref` has none), when that source
 * implements this interface (`isImageConfigResolver`); otherwise the call is
 * an `UNIMPLEMENTED` error naming the scheme.
 */
export interface ImageConfigResolver {
  /**
   * The config of `ref` (with or without its `scheme://`) for `opts.platform`
   * (default: the host's). `opts.resolveMode` has been validated by the solver.
   * `ctx` is scoped to the `[internal] load metadata for …` vertex.
   */
  resolveImageConfig(
    ref: string,
    opts: { platform?: Platform; resolveMode: ImageResolveMode },
    ctx: BuildContext,
  ): Promise<ResolvedImageConfig>;
}

/** Options of a warning, as control.proto's VertexWarning. */
export interface WarnOptions {
  /** Documentation of the rule that warned. */
  url?: string;
  /** Where in the frontend's source (e.g. Dockerfile lines, 1-based) the warning points. */
  ranges?: SourceRange[];
  /** Severity; 1 (warning) unless given. */
  level?: number;
}

/** A byte range of `FrontendBridge.readFile` (the gateway's `FileRange`). */
export interface FileRange {
  offset: number;
  /** Bytes to read from `offset`; undefined: to the end of the file. */
  length?: number;
}

/**
 * What a frontend may ask of the solver: the domain side of the gateway's
 * LLBBridge (`@bkt/frontend-gateway` translates its messages to these calls).
 *
 * Results are snapshots the build holds until it ends, so a frontend may
 * read them (`readFile`, `readDir`, `statFile`) or return them at any time
 * during the build. Every path is resolved inside the result's root, as in a
 * chroot: `..` and symlinks (absolute ones too) never leave it.
 */
export interface FrontendBridge {
  /**
   * Solves a marshalled `pb.Definition`; returns the result (evaluated: its
   * snapshot exists). Exec ops are checked against the build's entitlements
   * as the client's own definitions are (`PERMISSION_DENIED` naming the
   * entitlement): a frontend never obtains what the client did not grant.
   */
  solve(definition: Uint8Array): Promise<BuildResult>;
  /**
   * Runs the frontend registered as `name` (`dockerfile.v0`, `gateway.v0`, …)
   * in this build, with `attrs` and `inputs` (marshalled definitions, its
   * `bridge.inputs`); returns its result with its metadata. As the gateway's
   * Solve with `Frontend` set (the Dockerfile frontend's `# syntax=` forwarding).
   */
  solveFrontend(name: string, attrs: Attrs, inputs?: Readonly<Record<string, Uint8Array>>): Promise<BuildResult>;
  /**
   * The bytes of file `path` of a result (symlinks followed inside its root),
   * or of `range`. `NOT_FOUND` naming the path when it does not exist,
   * `INVALID_ARGUMENT` when it is not a regular file. A null ref (an empty
   * result) holds no file.
   */
  readFile(ref: Snapshot | null, path: string, range?: FileRange): Promise<Uint8Array>;
  /**
   * The entries directly under directory `path` of a result, sorted by name,
   * each `path` its name; `include` (a Docker path pattern, e.g. `*.json`)
   * keeps only the names it matches.
   */
  readDir(ref: Snapshot | null, path: string, include?: string): Promise<FileStat[]>;
  /** The stat of `path` of a result (symlinks followed inside its root); its `path` is as asked. */
  statFile(ref: Snapshot | null, path: string): Promise<FileStat>;
  /**
   * Resolves an image's config (as LLBBridge.ResolveImageConfig) through the
   * registered `docker-image` source. A bare `Platform` as second argument is
   * the older form of `{ platform }` and is still accepted.
   */
  resolveImageConfig?(ref: string, opts?: ResolveImageConfigOptions | Platform): Promise<ResolvedImageConfig>;
  /**
   * Reports a warning on `vertex`. A vertex the client has not been shown yet
   * (e.g. the frontend's own digest for its source file) is shown first.
   */
  warn(vertex: Digest, short: string, detail?: string[], opts?: WarnOptions): void;
  /**
   * The solve request's frontend inputs (the gateway's `Inputs`: control.proto's
   * `FrontendInputs`): marshalled `pb.Definition`s by name, for the frontend to
   * build on (the Dockerfile frontend's `context`, `dockerfile` and the
   * `input:NAME` named contexts). Absent or empty: the request gave none.
   */
  readonly inputs?: Readonly<Record<string, Uint8Array>>;
  /**
   * Makes an interactive container (LLBBridge's NewContainer) through the
   * `exec` executor's `ContainerProvider` capability, over snapshots this
   * bridge's solves returned (`req.inputs`). It is released when the build
   * finishes, if not before. `UNIMPLEMENTED` when no registered executor
   * makes containers.
   */
  newContainer?(req: NewContainerRequest): Promise<InteractiveContainer>;
}

export interface Frontend {
  readonly name: string;
  solve(opts: Attrs, bridge: FrontendBridge, ctx: BuildContext): Promise<BuildResult>;
}

export interface Attestation {
  kind: string;
  predicateType: string;
  payload: Uint8Array;
}

/**
 * Produces attestations of a build's result, registered by `kind`
 * (`provenance`, `sbom`). A solve request's `{ kind, attrs }` entries reach
 * it after the build solved and before the `attest` hook and the exporters;
 * what it returns is in `BuildResult.attestations`.
 */
export interface AttestationProducer {
  readonly kind: string;
  produce(result: BuildResult, attrs: Attrs, ctx: BuildContext): Promise<Attestation[]>;
}

// ---------------------------------------------------------------------------
// The store's records API: plugins' persistent state (cache mounts, image and
// layer records, mirrors, indexes), shared by every process using the store.
// ---------------------------------------------------------------------------

/** What a plugin says about one of its records. */
export interface RecordInput {
  /**
   * The `UsageRecord.recordType` it is listed under (`exec.cachemount`,
   * `source.git.checkout`, …). A prune without `all` keeps `internal` and
   * `frontend` records, as it keeps such snapshots.
   */
  recordType: string;
  /** Shown by `bkt du --verbose`. */
  description?: string;
  /** Whether its files change after it is made (a cache mount's do). */
  mutable?: boolean;
  /**
   * Never removed by a prune (`--all` included), only by `remove()`: state a
   * user named, such as an image in the local image store, not build cache.
   * `bkt du` reports it as not reclaimable.
   */
  pinned?: boolean;
  /** Snapshots (ids) it keeps alive: no prune removes them while the record exists. */
  snapshots?: string[];
  /** Content-store blobs it keeps alive. */
  blobs?: Digest[];
  /** Small plugin data, returned as given. */
  data?: Record<string, string>;
}

/** A record as stored. */
export interface StoreRecord extends Required<RecordInput> {
  readonly namespace: string;
  readonly id: string;
  /** The record's files, `<namespace dir>/<id>` (the plugin creates it); removed with the record. */
  readonly path: string;
  createdAt: Date;
  lastUsedAt?: Date;
  usageCount: number;
}

/** A hold on a record; `release()` is idempotent. */
export interface RecordHold {
  release(): Promise<void>;
}

/**
 * One plugin's records. Every record is reported by `bkt du` (size: the
 * bytes under its `path`; in use: while held) and removed by the store's one
 * prune when not held — with its references, so what only it kept alive goes
 * in the same prune.
 */
export interface RecordNamespace {
  readonly name: string;
  /** `<root>/<name>`: a directory per record (`<id>`); entries starting with `.` are the plugin's scratch. */
  readonly dir: string;
  get(id: string): Promise<StoreRecord | undefined>;
  list(): Promise<StoreRecord[]>;
  /**
   * Creates or updates a record, replacing its references, in one
   * transaction (`NOT_FOUND` when a referenced snapshot or blob is absent).
   * To add files: `hold` the id, build them aside, `put`, rename them into `path`.
   */
  put(id: string, input: RecordInput): Promise<StoreRecord>;
  /** Counts a use: `lastUsedAt` now, `usageCount` + 1. */
  touch(id: string): Promise<void>;
  /**
   * Marks the record in use by this process until released (or until the
   * process ends, a crash included): no prune, in any process, removes it.
   * May be taken before the record exists.
   */
  hold(id: string): Promise<RecordHold>;
  /** Removes the record, its references and files; `PERMISSION_DENIED` while any process holds it. */
  remove(id: string): Promise<void>;
}

/** The records API a backend reaches through `BuildContext.records`. */
export interface StoreRecords {
  /** The records of namespace `name` (the plugin's own, e.g. `cachemounts`; `[a-z0-9][a-z0-9._-]*`). */
  namespace(name: string): RecordNamespace;
  /**
   * A fresh path under `<root>/tmp` (not created) for a temp file or
   * directory of this process. The caller removes it when done; what a dead
   * process left is removed by the store.
   */
  tempPath(prefix: string): string;
}


// ---------------------------------------------------------------------------
// Store usage, as control.proto's UsageRecord.
// ---------------------------------------------------------------------------

export interface UsageRecord {
  id: string;
  mutable: boolean;
  inUse: boolean;
  size: number;
  createdAt: Date;
  lastUsedAt?: Date;
  usageCount: number;
  description: string;
  /** `regular`, `internal`, `frontend`, `source.local`, `source.git.checkout`, `exec.cachemount`. */
  recordType: string;
  shared: boolean;
  parents: string[];
}
