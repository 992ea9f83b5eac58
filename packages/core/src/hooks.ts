import type {
  Attestation,
  Attrs,
  BuildResult,
  Digest,
  VertexEvent,
  VertexLogEvent,
} from './types.js';
import { hookClasses } from './tapable-hooks.js';

/* tapable's own classes, so a plugin taps them with tapable's API. */
const { AsyncParallelHook, AsyncSeriesBailHook, AsyncSeriesHook, AsyncSeriesWaterfallHook, SyncHook } = hookClasses;

/** Facts about the solve that hooks receive. */
export interface SolveInfo {
  buildId: string;
  frontend?: string;
  frontendAttrs: Attrs;
}

/** Asked of `sourcePolicy` for every source op before it resolves. */
export interface SourcePolicyRequest {
  identifier: string;
  attrs: Attrs;
}

/** A `sourcePolicy` tap's answer; returning undefined defers to the next tap (default: allow). */
export type SourcePolicyDecision =
  | { action: 'allow' }
  | { action: 'deny'; reason: string }
  | { action: 'convert'; identifier: string; attrs?: Attrs };

export interface ExportInfo {
  buildId: string;
  exporters: { type: string; attrs: Attrs }[];
}

/** What `storeOpen` taps receive. */
export interface StoreOpenInfo {
  /** The store root about to be opened (`--root`). */
  root: string;
}

export interface SolveSummary {
  buildId: string;
  error?: Error;
  vertices: number;
  cached: number;
  exporterResponse: Record<string, string>;
}

/**
 * The lifecycle hooks, declared once and in the order they fire. A plugin taps
 * them in its `setup()`. The object is frozen: plugins cannot add or replace hooks.
 */
export function createHooks() {
  return Object.freeze({
    /**
     * Before the solver opens a store root (once per open, before any build):
     * a backend stops what a killed process of its kind left running there.
     * Opening the store then unmounts stale mounts and releases dead sessions.
     */
    storeOpen: new AsyncSeriesHook<[StoreOpenInfo]>(['store']),
    /** Waterfall over the marshalled `pb.Definition` before it is loaded. */
    beforeSolve: new AsyncSeriesWaterfallHook<[Uint8Array, SolveInfo]>(['definition', 'info']),
    /** Bail: the first tap to answer decides allow / deny / convert. */
    sourcePolicy: new AsyncSeriesBailHook<[SourcePolicyRequest], SourcePolicyDecision | undefined>(['request']),
    vertexStart: new SyncHook<[VertexEvent]>(['vertex']),
    vertexLog: new SyncHook<[VertexLogEvent]>(['log']),
    vertexDone: new SyncHook<[VertexEvent]>(['vertex']),
    beforeExport: new AsyncSeriesHook<[BuildResult, ExportInfo]>(['result', 'info']),
    /** Parallel: every producer pushes its attestations into the array. */
    attest: new AsyncParallelHook<[BuildResult, Attestation[]]>(['result', 'attestations']),
    afterSolve: new AsyncSeriesHook<[SolveSummary]>(['summary']),
    shutdown: new AsyncSeriesHook<[]>([]),
  });
}

export type BktHooks = ReturnType<typeof createHooks>;

/** The digest of a vertex a hook event refers to. */
export type VertexDigest = Digest;
