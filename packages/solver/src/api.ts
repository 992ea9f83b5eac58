/**
 * The solver's public API: what the CLI, the server and tests call.
 * (Implementation: solver.ts. Types only here, so callers can code against them.)
 */
import type { StepExplanation } from './explain.js';
import type {
  Attrs,
  Bkt,
  BuildClient,
  BuildResult,
  FailedExec,
  FrontendBridge,
  InteractiveContainer,
  NewContainerRequest,
  ProgressEvent,
  SecretProvider,
  SourcePolicyDecision,
  SourcePolicyRequest,
  UsageRecord,
} from '@bkt/core';
import type { BuildHistoryRecord, HistoryLimits } from '@bkt/store';

export type { BuildHistoryRecord, HistoryLimits } from '@bkt/store';

export interface SolverOptions {
  /** Store root: content store, snapshots, metadata DB. Created when missing. */
  root: string;
  /** The configured core (plugins registered). */
  bkt: Bkt;
  /** Max concurrently running ops (default: max(8, 2 × CPU cores); exec steps mostly wait on processes and I/O). */
  maxParallelism?: number;
  /** `auto` (default) tries overlayfs and falls back to plain copy. */
  snapshotter?: 'auto' | 'overlay' | 'copy';
  /** How much build history to keep (default: 50 builds, 48 hours, as BuildKit). */
  history?: HistoryLimits;
}

export interface ExportRequest {
  type: string;
  attrs: Attrs;
}

/** A cache import or export (control.proto's `CacheOptionsEntry`), resolved through the `cacheBackends` registry. */
export interface CacheOptionsEntry {
  type: string;
  attrs: Attrs;
}

/** An attestation to produce (buildx's `--attest type=KIND,…`), resolved through the `attestationProducers` registry. */
export interface AttestationRequest {
  kind: string;
  attrs: Attrs;
}

/**
 * A client's build function (BuildKit's `client.Build` with a gateway
 * `BuildFunc`): run inside the build as a frontend is, it solves definitions
 * and resolves image configs through `bridge`, and returns the result with
 * its metadata (e.g. `containerimage.config`).
 */
export type BuildFunction = (bridge: FrontendBridge) => Promise<BuildResult>;

/**
 * A build's own source policy (control.proto's `SolveRequest.SourcePolicy`,
 * as a function): asked for every source op of every definition the build
 * loads — the request's and each one its frontend solves — and for every
 * image whose config the frontend resolves. `deny` fails the build naming
 * the source; `convert` replaces the identifier (and the attrs, when given);
 * undefined or `allow` leaves it. The plugins' `sourcePolicy` hook is asked
 * afterwards, of what this policy left.
 */
export type SourcePolicy = (source: SourcePolicyRequest) => SourcePolicyDecision | undefined | Promise<SourcePolicyDecision | undefined>;

export interface SolveRequest {
  /** A marshalled `pb.Definition`. One of this, `frontend` or `build`. */
  definition?: Uint8Array;
  /** A frontend by registry name (`dockerfile.v0`) with its attrs. */
  frontend?: string;
  frontendAttrs?: Attrs;
  /**
   * With `frontend` or `build`: named inputs for it, marshalled `pb.Definition`s
   * (control.proto's `FrontendInputs`; the frontend reads them as `bridge.inputs`).
   */
  frontendInputs?: Record<string, Uint8Array>;
  /** This build's source policy (see `SourcePolicy`). */
  sourcePolicy?: SourcePolicy;
  /** A build function run in the build, as a frontend (its vertex is `[frontend] client build`). */
  build?: BuildFunction;
  exporters?: ExportRequest[];
  /** Caches to load before solving (each backend's importer; checked before anything runs). */
  cacheImports?: CacheOptionsEntry[];
  /** Caches to write after the exporters ran (each backend's exporter; checked before anything runs). */
  cacheExports?: CacheOptionsEntry[];
  /** Attestations to produce once solved, before export; they reach exporters as `result.attestations`. */
  attestations?: AttestationRequest[];
  /**
   * The build's client: its local directories, output sinks, secrets, ssh
   * agents and registry credentials (see `BuildClient`). Default: this
   * process's host (`createHostClient` of @bkt/fsutil) over `localDirs` and
   * `secrets`, never sending nor overwriting the store root, offering no
   * registry credentials (pulls and pushes are anonymous).
   */
  client?: BuildClient;
  /** Without `client`: the host directories for `local://NAME` sources, by name. */
  localDirs?: Record<string, string>;
  /** Ignore every cache record (still records new ones). */
  noCache?: boolean;
  /** Explain why each step that ran missed the cache, against the previous build of the same target (`SolveResponse.explanations`). */
  explain?: boolean;
  /** Granted entitlements: `network.host`, `security.insecure`. */
  entitlements?: string[];
  /** Without `client`: the build's secrets. */
  secrets?: SecretProvider;
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
  /** Build id (the Solve request's `ref`); generated when absent. */
  buildId?: string;
  /** Not recorded in the build history (control.proto's `Internal`: a daemon's own builds). */
  internal?: boolean;
  /**
   * Called once the build has solved and exported (`result`) or failed
   * (`error`, with `failedExec` when an exec step failed), with the build
   * still open: its snapshots — a failed step's inputs and mounts as the
   * process left them included — stay alive, and `newContainer` runs
   * containers over them, until the returned promise settles. Then the
   * containers are released and the build finishes (history, `afterSolve`).
   * `bkt build --invoke` and `bkt debug` are built on it. A failure of the
   * callback fails the solve unless the build failed already.
   */
  debug?: (session: BuildDebugSession) => Promise<void>;
}

/** What a solve's `debug` callback gets (see `SolveRequest.debug`). */
export interface BuildDebugSession {
  readonly buildId: string;
  /** The build's result, when it succeeded. */
  readonly result?: BuildResult;
  /** The exporters' response, when it succeeded. */
  readonly exporterResponse?: Record<string, string>;
  /** The error the build failed with. */
  readonly error?: Error;
  /** The exec step that failed, as it was (`failedExecOf(error)` of @bkt/core). */
  readonly failedExec?: FailedExec;
  /** Aborted when the client cancels the build (the session should end) and once the session is over. */
  readonly signal: AbortSignal;
  /**
   * A container in the build (the exec executor's `ContainerProvider`);
   * `req.inputs` are snapshots of this build (the result's, the failed
   * step's). Released when the session ends, if not before.
   */
  newContainer(req: NewContainerRequest): Promise<InteractiveContainer>;
}

export interface SolveStats {
  vertices: number;
  cached: number;
  /** Wall time spent in the solver (load + schedule + run), excluding export. */
  solverMs: number;
}

export interface SolveResponse {
  buildId: string;
  result: BuildResult;
  exporterResponse: Record<string, string>;
  stats: SolveStats;
  /** With `explain`: why each step that ran missed the cache. */
  explanations?: StepExplanation[];
}

export interface PruneOptions {
  /**
   * Also remove `internal` and `frontend` records (as `buildctl prune --all`).
   * Without it, every other record not in use is removed (see README: prune).
   */
  all?: boolean;
  /** Keep records used within this many milliseconds. */
  keepDuration?: number;
  /** Keep at most this many bytes (least recently used removed first). */
  keepStorage?: number;
  /** Only records it accepts are removed (buildx's `--filter`). */
  filter?: (record: UsageRecord) => boolean;
}

export interface Solver {
  solve(req: SolveRequest): Promise<SolveResponse>;
  /** Snapshots (committed and being written) and content-store blobs (`recordType: 'content'`, id = digest). */
  diskUsage(): Promise<UsageRecord[]>;
  /** Removes unused records; returns what was removed. */
  prune(opts?: PruneOptions): Promise<UsageRecord[]>;
  /** Recorded builds, newest first (running ones included); `ref` selects one, `limit` the newest few. */
  listBuilds(opts?: { ref?: string; limit?: number }): Promise<BuildHistoryRecord[]>;
  /**
   * The recorded progress of build `ref`, in order: vertex, status, warning
   * and log events as the build sent them, the logs holding every byte its
   * steps wrote however much displays clipped (the build's secret values as
   * `***`); a running build's so far. `logs: false` leaves log events out.
   * Iterating fails with `NOT_FOUND` when the history has no such build or
   * its progress is no longer stored (a prune `--all` removes it).
   */
  buildProgress(ref: string, opts?: { logs?: boolean }): AsyncIterable<ProgressEvent>;
  /** Pins build `ref` (no history limit drops it, no prune removes its logs) or unpins it; `NOT_FOUND` when the history has no such build. */
  pinBuild(ref: string, pinned: boolean): Promise<void>;
  /**
   * Deletes build `ref` from the history: its record, its recorded progress
   * and its logs, at once. `NOT_FOUND` when the history has no such build,
   * `INVALID_ARGUMENT` while it runs.
   */
  deleteBuild(ref: string): Promise<void>;
  /** Calls `listener` with the ref of every build this solver deletes from the history (`deleteBuild`, or dropped by its limits) until the returned function is called. */
  onBuildDeleted(listener: (ref: string) => void): () => void;
  /** Waits for running builds, unmounts everything under the root, releases the store. */
  close(): Promise<void>;
}
