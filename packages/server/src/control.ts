/**
 * `moby.buildkit.v1.Control`: each RPC translates its request into a call
 * of the solver (or the build tracker), and the result into BuildKit's
 * response messages. No build logic lives here.
 */
import type * as grpc from '@grpc/grpc-js';
import * as control from '@bkt/api/control';
import * as pb from '@bkt/api/pb';
import { BktError, type BuildClient, type FrontendBridge, type ProgressEvent } from '@bkt/core';
import type { ClientFrontends } from './client-frontends.js';
import type { ExportRequest, Solver, CacheOptionsEntry } from '@bkt/solver';
import type { BuildEvent, BuildTracker } from './builds.js';
import { parseFilters, usageAdaptor } from './filters.js';
import { keepBytes, usedBytes, type DiskStat } from './gc.js';
import { statusResponse } from '@bkt/session';
import { historyRecordMessage, usageRecordMessage } from './messages.js';
import type { ServiceImplementation } from './rpc.js';
import { sourcePolicyOf } from './source-policy.js';
import { buildkitVersion, workerMatches, workerRecordMessage, type WorkerInfo } from './worker.js';

/** What a build asks of its session. */
export interface SessionBuild {
  localDirNames: string[];
  exporters: ExportRequest[];
  signal: AbortSignal;
}

/** What the Control handlers call. */
export interface ControlBackend {
  solver: Solver;
  builds: BuildTracker;
  /** Entitlements a Solve may ask for (`network.host`, `security.insecure`). */
  permittedEntitlements: ReadonlySet<string>;
  worker(): Promise<WorkerInfo>;
  /** The store disk's size and free bytes. */
  diskStat(): Promise<DiskStat>;
  /**
   * The client of session `id` (SolveRequest.Session) for one build: the
   * local directories it may name, its exporters (the client's output
   * targets by index). `close()` once the build is over. Absent: the daemon
   * serves no sessions.
   */
  sessionClient?(id: string, build: SessionBuild): Promise<BuildClient & { close?(): Promise<void> }>;
  /** Serves `Control.Session` (the client's tunnel); absent: UNIMPLEMENTED. */
  session?(call: grpc.ServerDuplexStream<control.BytesMessage, control.BytesMessage>): void;
  /** Client-side frontends (LLBBridge routed by build id); absent: a Solve without Definition or Frontend builds nothing. */
  clientFrontends?: ClientFrontends;
  /** Aborted when the daemon shuts down: running builds are cancelled. */
  shutdown: AbortSignal;
  /** Called after each build (the GC runs then). */
  afterBuild?(): void;
  /** Work a call leaves running after its answer (a session client's `close()`): the daemon's shutdown awaits it. */
  track?(work: Promise<unknown>): void;
}

/** A StatusResponse holds at most about this many bytes of logs (clients limit message sizes). */
const STATUS_CHUNK_BYTES = 1 << 20;

/** Build refs as BuildKit makes them, and what a client may reasonably choose. */
const REF = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

export function controlService(backend: ControlBackend): ServiceImplementation<typeof control.ControlService> {
  return {
    async solve(req, { signal }) {
      const ref = req.Ref === '' ? newRef() : req.Ref;
      if (!REF.test(ref)) throw new BktError('INVALID_ARGUMENT', `SolveRequest.Ref "${ref.slice(0, 200)}": want letters, digits, ".", "_", ":" or "-" (at most 128)`, { attribute: 'Ref' });
      const solve = await solveRequest(req, backend);
      const tracked = backend.builds.start(ref, { frontend: solve.frontend ?? '', frontendAttrs: {}, exporters: [] }, { internal: req.Internal });
      const controller = new AbortController();
      const abort = (s: AbortSignal) => () => controller.abort(s.reason);
      const onCall = abort(signal);
      const onShutdown = abort(backend.shutdown);
      signal.addEventListener('abort', onCall, { once: true });
      backend.shutdown.addEventListener('abort', onShutdown, { once: true });
      let client: (BuildClient & { close?(): Promise<void> }) | undefined;
      try {
        if (req.Session && backend.sessionClient) {
          client = await backend.sessionClient(req.Session, { localDirNames: localDirNames(req), exporters: solve.exporters, signal: controller.signal });
        } else if (req.Session) client = sessionlessClient(req.Session);
        // No Definition and no Frontend: the client is the frontend (it calls LLBBridge on this endpoint).
        const clientFrontend = !solve.definition && !solve.frontend && backend.clientFrontends ? backend.clientFrontends : undefined;
        const r = await backend.solver.solve({
          ...solve,
          ...(clientFrontend ? { build: (bridge: FrontendBridge) => clientFrontend.run(ref, bridge, controller.signal) } : {}),
          ...(client ? { client } : {}),
          buildId: ref,
          internal: req.Internal,
          signal: controller.signal,
          onProgress: tracked.onProgress,
        });
        return { ExporterResponse: r.exporterResponse };
      } finally {
        // The client's open transfers are finished (fsutil's FIN exchange: round trips to the client) after the
        // answer, not before it: everything the build wrote to the client was committed by its exporters.
        const closing = client?.close?.().catch(() => {});
        if (closing) backend.track?.(closing);
        signal.removeEventListener('abort', onCall);
        backend.shutdown.removeEventListener('abort', onShutdown);
        tracked.finish();
        backend.afterBuild?.();
      }
    },

    async *status(req, { signal }) {
      if (req.Ref === '') throw new BktError('INVALID_ARGUMENT', 'StatusRequest.Ref is empty', { attribute: 'Ref' });
      // A build this daemon runs or ran lately is followed live; an older one is replayed from the history.
      if (!backend.builds.has(req.Ref)) {
        const [record] = await backend.solver.listBuilds({ ref: req.Ref });
        if (record && record.status !== 'running') {
          yield* replay(backend.solver.buildProgress(req.Ref), signal);
          return;
        }
      }
      for await (const batch of backend.builds.progress(req.Ref, signal)) yield* statusChunks(batch);
    },

    session(call) {
      if (backend.session) return backend.session(call);
      call.emit('error', { code: 12, details: 'this bktd serves no client sessions (Control.Session)' });
    },

    async diskUsage(req) {
      const select = parseFilters(req.filter, 'DiskUsageRequest.filter');
      const records = await backend.solver.diskUsage();
      return { record: records.filter((u) => select(usageAdaptor(u))).map(usageRecordMessage) };
    },

    async *prune(req) {
      const select = parseFilters(req.filter, 'PruneRequest.filter');
      for (const [field, value] of Object.entries({ keepDuration: req.keepDuration, keepBytes: req.keepBytes, maxUsedSpace: req.maxUsedSpace, minFreeSpace: req.minFreeSpace })) {
        if (value < 0) throw new BktError('INVALID_ARGUMENT', `PruneRequest.${field} must not be negative, got ${value}`, { attribute: field });
      }
      // The space limits as a GC policy's: at most maxUsedSpace, less what minFreeSpace misses, never below keepBytes (reserved).
      let keepStorage: number | undefined;
      if (req.maxUsedSpace > 0 || req.minFreeSpace > 0) {
        const used = usedBytes(await backend.solver.diskUsage());
        keepStorage = keepBytes({ reservedSpace: req.keepBytes, maxUsedSpace: req.maxUsedSpace, minFreeSpace: req.minFreeSpace }, used, await backend.diskStat());
        if (used <= keepStorage) return;
      } else if (req.keepBytes > 0) keepStorage = req.keepBytes;
      const removed = await backend.solver.prune({
        all: req.all,
        // Go's time.Duration: nanoseconds.
        ...(req.keepDuration > 0 ? { keepDuration: req.keepDuration / 1e6 } : {}),
        ...(keepStorage !== undefined ? { keepStorage } : {}),
        ...(req.filter.length > 0 ? { filter: (u) => select(usageAdaptor(u)) } : {}),
      });
      for (const u of removed) yield usageRecordMessage(u);
    },

    async listWorkers(req) {
      const w = await backend.worker();
      return { record: workerMatches(w, req.filter) ? [workerRecordMessage(w)] : [] };
    },

    async info() {
      return { buildkitVersion: buildkitVersion() };
    },

    async *listenBuildHistory(req, { signal }) {
      yield* historyEvents(backend, req, AbortSignal.any([signal, backend.shutdown]));
    },

    /** As BuildKit: `Delete`, else `Finalize`, else the build's pin set to `Pinned`. */
    async updateBuildHistory(req) {
      if (req.Ref === '') throw new BktError('INVALID_ARGUMENT', 'UpdateBuildHistoryRequest.Ref is empty', { attribute: 'Ref' });
      const running = backend.builds.isRunning(req.Ref);
      if (req.Delete) {
        if (running) throw new BktError('INVALID_ARGUMENT', `build ${req.Ref} is still running; its record can be deleted once it ends`, { ref: req.Ref });
        // The DELETED event comes from the solver (onBuildDeleted), as for builds the history limits drop.
        await backend.solver.deleteBuild(req.Ref);
        return {};
      }
      const [record] = await backend.solver.listBuilds({ ref: req.Ref });
      if (!record) throw new BktError('NOT_FOUND', `no build ${req.Ref} in the history`, { ref: req.Ref });
      if (req.Finalize) {
        // A finished build's record, logs included, is final as soon as it is written.
        if (running) throw new BktError('INVALID_ARGUMENT', `build ${req.Ref} is still running; it can be finalized once it ends`, { ref: req.Ref });
        return {};
      }
      if ((record.pinned ?? false) !== req.Pinned) {
        await backend.solver.pinBuild(req.Ref, req.Pinned);
        // A finished build's listeners get its record again (COMPLETE), as BuildKit's; a running one's comes when it completes.
        if (!running) backend.builds.updated(req.Ref);
      }
      return {};
    },
  };
}

/** The solver request of a Solve, checked (INVALID_ARGUMENT / PERMISSION_DENIED / UNIMPLEMENTED naming the field). */
async function solveRequest(req: control.SolveRequest, backend: ControlBackend) {
  const hasDefinition = !!req.Definition && req.Definition.def.length > 0;
  if (hasDefinition && req.Frontend !== '') {
    throw new BktError('INVALID_ARGUMENT', 'SolveRequest: give a Definition or a Frontend, not both', { attribute: 'Frontend' });
  }
  const inputs = Object.keys(req.FrontendInputs).sort();
  if (inputs.length > 0 && req.Frontend === '') {
    throw new BktError('INVALID_ARGUMENT', `SolveRequest.FrontendInputs (${inputs.join(', ')}) are read by a Frontend; this request names none`, { attribute: 'FrontendInputs' });
  }
  for (const e of req.Entitlements) {
    if (!backend.permittedEntitlements.has(e)) {
      const permitted = [...backend.permittedEntitlements].sort().join(', ') || 'none';
      throw new BktError('PERMISSION_DENIED', `SolveRequest.Entitlements: ${e} is not permitted by this daemon (permitted: ${permitted}; see entitlements in bktd.config.ts)`, {
        attribute: e,
      });
    }
  }
  const policy = req.SourcePolicy && req.SourcePolicy.rules.length > 0 ? sourcePolicyOf(req.SourcePolicy) : undefined;
  return {
    ...(hasDefinition ? { definition: pb.Definition.encode(req.Definition!).finish() } : {}),
    ...(req.Frontend !== '' ? { frontend: req.Frontend, frontendAttrs: req.FrontendAttrs } : {}),
    ...(inputs.length > 0 ? { frontendInputs: Object.fromEntries(inputs.map((name) => [name, pb.Definition.encode(req.FrontendInputs[name] ?? pb.Definition.fromPartial({})).finish()])) } : {}),
    ...(policy ? { sourcePolicy: policy } : {}),
    exporters: exporters(req),
    entitlements: req.Entitlements,
    cacheImports: cacheImports(req.Cache),
    cacheExports: cacheExports(req.Cache),
  };
}

/** The Exporters list; the deprecated single exporter when the list is empty (as BuildKit). */
function exporters(req: control.SolveRequest): ExportRequest[] {
  const list = req.Exporters.length > 0 ? req.Exporters : req.ExporterDeprecated !== '' ? [{ Type: req.ExporterDeprecated, Attrs: req.ExporterAttrsDeprecated }] : [];
  return list.map((e, i) => {
    if (e.Type === '') throw new BktError('INVALID_ARGUMENT', `SolveRequest.Exporters[${i}]: the exporter type is empty`, { attribute: 'Exporters' });
    return { type: e.Type, attrs: e.Attrs };
  });
}

function cacheImports(cache: control.CacheOptions | undefined): CacheOptionsEntry[] {
  if (!cache) return [];
  return [...cache.Imports.map(cacheEntry), ...cache.ImportRefsDeprecated.map((ref) => ({ type: 'registry', attrs: { ref } }))];
}

function cacheExports(cache: control.CacheOptions | undefined): CacheOptionsEntry[] {
  if (!cache) return [];
  const deprecated = cache.ExportRefDeprecated !== '' ? [{ type: 'registry', attrs: { ...cache.ExportAttrsDeprecated, ref: cache.ExportRefDeprecated } }] : [];
  return [...cache.Exports.map(cacheEntry), ...deprecated];
}

function cacheEntry(e: control.CacheOptionsEntry, i: number): CacheOptionsEntry {
  if (e.Type === '') throw new BktError('INVALID_ARGUMENT', `SolveRequest.Cache entry ${i}: the cache type is empty`, { attribute: 'Cache' });
  return { type: e.Type, attrs: e.Attrs };
}

/**
 * The client directories a Solve may read: the definition's `local://NAME`
 * sources; for a frontend, its context and Dockerfile (`contextkey`,
 * `dockerfilekey`, default `context` and `dockerfile`) and the named
 * contexts given as `local:NAME`.
 */
function localDirNames(req: control.SolveRequest): string[] {
  const names = new Set<string>();
  for (const bytes of req.Definition?.def ?? []) {
    try {
      const op = pb.Op.decode(bytes);
      if (op.op?.$case === 'source' && op.op.value.identifier.startsWith('local://')) names.add(op.op.value.identifier.slice('local://'.length));
    } catch {
      // The solver names an op that does not decode.
    }
  }
  // A frontend's (or a client-side frontend's: neither Definition nor Frontend) context and Dockerfile.
  if (req.Frontend !== '' || (req.Definition?.def.length ?? 0) === 0) {
    const attrs = req.FrontendAttrs;
    names.add(attrs.contextkey || 'context');
    names.add(attrs.dockerfilekey || 'dockerfile');
    for (const [k, v] of Object.entries(attrs)) if (k.startsWith('context:') && v.startsWith('local:')) names.add(v.slice('local:'.length));
  }
  return [...names].sort();
}

/** The client of a build that named a session this daemon cannot reach: anything it asks of the client fails, naming the session. */
function sessionlessClient(id: string): BuildClient {
  const fail = async (): Promise<never> => {
    throw new BktError('UNIMPLEMENTED', `session ${id}: this bktd serves no client sessions, so the build cannot reach the client's files, outputs or credentials`);
  };
  return {
    localDirNames: () => [],
    localDir: () => undefined,
    openFile: fail,
    openStdout: fail,
    openDir: fail,
    secrets: { get: async () => null },
    ssh: { socketPath: async () => null },
    credentials: async () => null,
  };
}

/** A recorded build's progress as StatusResponses of bounded size. */
async function* replay(events: AsyncIterable<ProgressEvent>, signal: AbortSignal): AsyncGenerator<control.StatusResponse> {
  let batch: ProgressEvent[] = [];
  for await (const e of events) {
    if (signal.aborted) return;
    batch.push(e);
    if (batch.length >= 1000) {
      yield* statusChunks(batch);
      batch = [];
    }
  }
  yield* statusChunks(batch);
}

/** Progress events as StatusResponses of at most about STATUS_CHUNK_BYTES of logs each. */
function* statusChunks(batch: Parameters<typeof statusResponse>[0]): Generator<control.StatusResponse> {
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < batch.length; i++) {
    const e = batch[i];
    bytes += e.type === 'log' ? e.log.msg.length : 200;
    if (bytes >= STATUS_CHUNK_BYTES) {
      yield statusResponse(batch.slice(start, i + 1));
      start = i + 1;
      bytes = 0;
    }
  }
  if (start < batch.length) yield statusResponse(batch.slice(start));
}

/**
 * ListenBuildHistory: the recorded builds (running ones as STARTED, others
 * as COMPLETE; `ActiveOnly`: running ones only; `Ref`: that build only),
 * then — unless `EarlyExit` — an event for each build that starts,
 * completes (or, finished, has its record updated: COMPLETE again) or is
 * deleted (DELETED), until the client goes away (with `Ref`: until that
 * build completes or is deleted).
 */
async function* historyEvents(backend: ControlBackend, req: control.BuildHistoryRequest, signal: AbortSignal): AsyncGenerator<control.BuildHistoryEvent> {
  const queue: BuildEvent[] = [];
  let wake: (() => void) | undefined;
  const unsubscribe = backend.builds.subscribe((e) => {
    if (req.Ref !== '' && e.ref !== req.Ref) return;
    queue.push(e);
    wake?.();
  });
  const onAbort = () => wake?.();
  signal.addEventListener('abort', onAbort);
  try {
    const records = await backend.solver.listBuilds(req.Ref !== '' ? { ref: req.Ref } : {});
    let refDone = false;
    for (const r of [...records].reverse()) {
      const running = r.status === 'running' && backend.builds.isRunning(r.ref);
      if (req.ActiveOnly && !running) continue;
      if (!running && r.ref === req.Ref) refDone = true;
      yield { type: running ? control.BuildHistoryEventType.STARTED : control.BuildHistoryEventType.COMPLETE, record: historyRecordMessage(r) };
    }
    if (req.EarlyExit || refDone) return;
    while (!signal.aborted) {
      const e = queue.shift();
      if (!e) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      if (e.type === 'started') {
        yield { type: control.BuildHistoryEventType.STARTED, record: historyRecordMessage(e.record) };
        continue;
      }
      if (e.type === 'deleted') {
        yield { type: control.BuildHistoryEventType.DELETED, record: control.BuildHistoryRecord.fromPartial({ Ref: e.ref }) };
        if (req.Ref !== '') return;
        continue;
      }
      const [r] = await backend.solver.listBuilds({ ref: e.ref });
      if (r) yield { type: control.BuildHistoryEventType.COMPLETE, record: historyRecordMessage(r) };
      if (req.Ref !== '' && e.type === 'completed') return;
    }
  } finally {
    unsubscribe();
    signal.removeEventListener('abort', onAbort);
  }
}

/** A BuildKit-style build ref: 25 lowercase base-36 characters. */
function newRef(): string {
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';
  return Array.from(crypto.getRandomValues(new Uint8Array(25)), (b) => alphabet[b % 36]).join('');
}
