/**
 * `openSolver`: the solver over one store. Builds run concurrently and share
 * identical vertices; `prune` waits for running builds and holds new ones
 * back until it is done.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  BktError,
  createBuildScope,
  type Attestation,
  type Attrs,
  type BuildClient,
  type CacheBackend,
  type Registry,
  IMAGE_RESOLVE_MODES,
  INLINE_CACHE_METADATA_KEY,
  isBktError,
  isImageConfigResolver,
  SOURCE_DATE_EPOCH_KEY,
  type BuildResult,
  type Digest,
  type ExporterInstance,
  type Frontend,
  type FrontendBridge,
  type ImageResolveMode,
  type Platform,
  type ProgressWriter,
  type ResolvedImageConfig,
  type ResolveImageConfigOptions,
  type VertexEvent,
} from '@bkt/core';
import type { CacheOptionsEntry, PruneOptions, SolveRequest, SolveResponse, Solver, SolverOptions } from './api.js';
import { Build, type Engine } from './build.js';
import { newBuildContainer, runDebugSession } from './debug.js';
import { readResultDir, readResultFile, statResultFile } from './bridge-files.js';
import { digestOf } from './definition.js';
import { cancelled, defaultParallelism, Pool, SharedLock } from './pool.js';
import { vertexWriter } from './progress.js';
import { deniedSource } from './source-policy.js';
import { digestText as hashText, explainSteps, previousBuildKeys, redactBuildKeys, saveBuildKeys, type BuildKeys, type StepExplanation } from './explain.js';
import { applyLayerBlob } from '@bkt/oci';
import { Store, type BuildRecorder } from '@bkt/store';
import { createHostClient } from '@bkt/fsutil';

export async function openSolver(opts: SolverOptions): Promise<Solver> {
  await opts.bkt.hooks.storeOpen.promise({ root: opts.root });
  const store = await Store.open(opts.root, opts.snapshotter ?? 'auto', { history: opts.history });
  // Lazy snapshots (an imported cache's results) get their trees from their layer blobs on first use.
  store.snapshotter.setLayerApplier((dir, layer, o) => applyLayerBlob(dir, store.content.path(layer.blob.digest), layer, o));
  const engine: Engine = {
    bkt: opts.bkt,
    store,
    pool: new Pool(opts.maxParallelism ?? defaultParallelism()),
    jobs: new Map(),
  };
  const gc = new SharedLock();
  let closed = false;
  const open = () => {
    if (closed) throw new BktError('INVALID_ARGUMENT', `solver over ${store.root} is closed`);
  };
  return {
    solve: async (req) => {
      open();
      return gc.shared(() => solve(engine, req));
    },
    diskUsage: async () => {
      open();
      return store.diskUsage();
    },
    prune: async (o?: PruneOptions) => {
      open();
      return gc.exclusive(() => store.prune(o));
    },
    listBuilds: async (o) => {
      open();
      return store.history.list(o);
    },
    buildProgress: (ref, o) => {
      open();
      return store.history.progress(ref, o);
    },
    pinBuild: async (ref, pinned) => {
      open();
      store.history.pin(ref, pinned);
    },
    deleteBuild: async (ref) => {
      open();
      await store.history.delete(ref);
    },
    onBuildDeleted: (listener) => store.history.onDeleted(listener),
    close: async () => {
      if (closed) return;
      closed = true;
      await gc.exclusive(() => store.close());
    },
  };
}

/** A BuildKit-style build ref: 25 lowercase base-36 characters. */
function newBuildId(): string {
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';
  return [...randomBytes(25)].map((b) => alphabet[b % 36]).join('');
}

async function solve(engine: Engine, req: SolveRequest): Promise<SolveResponse> {
  const t0 = performance.now();
  const { hooks, registries } = engine.bkt;
  const buildId = req.buildId ?? newBuildId();
  if (req.client && (req.localDirs || req.secrets)) {
    throw new BktError('INVALID_ARGUMENT', 'a solve request takes a client, or localDirs and secrets for a host client, not both');
  }
  const client = req.client ?? createHostClient({ localDirs: req.localDirs ?? {}, secrets: req.secrets, storeRoot: engine.store.root });
  const history = req.internal ? unrecorded() : engine.store.history.start({ ref: buildId, frontend: req.frontend, frontendAttrs: req.frontendAttrs, exporters: req.exporters });
  const scope = createBuildScope({ buildId, client, entitlements: req.entitlements, secrets: history.secrets(client.secrets) });
  const build = new Build(engine, {
    scope,
    noCache: req.noCache ?? false,
    onProgress: history.observe(req.onProgress),
    signal: req.signal,
    frontend: req.frontend,
    frontendAttrs: req.frontendAttrs ?? {},
    ...(req.sourcePolicy ? { sourcePolicy: req.sourcePolicy } : {}),
  });
  let result: BuildResult = { ref: null, metadata: {} };
  const exporterResponse: Record<string, string> = {};
  let solverMs = 0;
  let error: Error | undefined;
  let frontendError: Error | undefined;
  let debugError: Error | undefined;
  try {
    if ([req.definition, req.frontend, req.build].filter((x) => x !== undefined).length > 1) {
      throw new BktError('INVALID_ARGUMENT', 'a solve request takes one of a definition, a frontend or a build function');
    }
    const frontendInputs = req.frontendInputs ?? {};
    if (Object.keys(frontendInputs).length > 0 && !req.frontend && !req.build) {
      throw new BktError('INVALID_ARGUMENT', `frontend inputs (${Object.keys(frontendInputs).sort().join(', ')}) are for a frontend or a build function; this solve request has neither`, {
        attribute: 'frontendInputs',
      });
    }
    // Exporter, cache and attestation requests are checked before anything runs.
    const exporters: { type: string; instance: ExporterInstance }[] = [];
    for (const e of req.exporters ?? []) {
      exporters.push({ type: e.type, instance: await registries.exporters.require(e.type).resolve(e.attrs) });
    }
    const cacheImporters = await resolveCacheBackends(registries.cacheBackends, req.cacheImports ?? [], 'importer');
    const cacheExporters = await resolveCacheBackends(registries.cacheBackends, req.cacheExports ?? [], 'exporter');
    const producers = (req.attestations ?? []).map((a) => ({ ...a, producer: registries.attestationProducers.require(a.kind) }));
    // Cache imports load while the frontend runs; cache keys wait for them (`Build.importsFrom`).
    const importing = (async () => {
      const imports = await Promise.all(
        cacheImporters.map(({ type, instance }, i) => buildStep(build, `importing cache from ${type}`, `${buildId}/cache-import/${i}`, (ctx) => instance.load(ctx))),
      );
      for (const imp of imports) build.addImport(imp);
      // Cache mounts the imports carry: those the build's exec steps declare, restored as its definitions load.
      const restorers = imports.filter((imp) => imp.restoreCacheMounts);
      const mountStore = build.cacheMountStore;
      if (restorers.length > 0 && mountStore) {
        build.restoreCacheMountsWith((ids) =>
          buildStep(build, `restoring cache mounts ${ids.join(', ')}`, `${buildId}/cache-mounts/${ids.join(',')}`, async (ctx) => {
            for (const imp of restorers) await imp.restoreCacheMounts!(mountStore, ids, ctx);
          }),
        );
      }
    })();
    if (cacheImporters.length > 0) build.importsFrom(importing);
    if (req.frontend) {
      try {
        const frontend = engine.bkt.registries.frontends.require(req.frontend);
        result = withSourceDateEpoch(await runFrontend(engine, build, frontend, req.frontendAttrs ?? {}, frontendInputs, req.signal), req.frontendAttrs ?? {});
      } catch (err) {
        frontendError = frontendFailure(err as Error, build.firstError);
        throw frontendError;
      }
    } else if (req.build) {
      const buildFn = req.build;
      try {
        result = await runFrontend(engine, build, { name: 'client build', solve: (_attrs, bridge) => buildFn(bridge) }, {}, frontendInputs, req.signal);
      } catch (err) {
        frontendError = frontendFailure(err as Error, build.firstError);
        throw frontendError;
      }
    } else if (req.definition) {
      result = { ref: await build.solve(await build.load(req.definition)), metadata: {} };
    }
    await importing;
    solverMs = performance.now() - t0;
    if (producers.length > 0) {
      const attestations: Attestation[] = [];
      for (const [i, { kind, attrs, producer }] of producers.entries()) {
        const produced = await buildStep(build, `producing ${kind} attestation`, `${buildId}/attest/${i}`, (ctx) => producer.produce(result, attrs, ctx));
        attestations.push(...produced);
      }
      await hooks.attest.promise(result, attestations);
      result = { ...result, attestations };
    }
    // An inline cache goes into the image the exporters write: made before they run.
    const inlineCaches = cacheExporters.filter(({ instance }) => instance.inline);
    if (inlineCaches.length > 0 && exporters.length > 0) {
      const chain = await build.cacheChain(result);
      for (const [i, { type, instance }] of inlineCaches.entries()) {
        const bytes = await buildStep(build, `preparing inline cache (${type})`, `${buildId}/cache-inline/${i}`, (ctx) => instance.inline!(chain, result, ctx));
        if (bytes) result = { ...result, metadata: { ...result.metadata, [INLINE_CACHE_METADATA_KEY]: bytes } };
      }
    }
    if (exporters.length > 0) {
      await hooks.beforeExport.promise(result, { buildId, exporters: (req.exporters ?? []).map((e) => ({ type: e.type, attrs: e.attrs })) });
      for (const [i, { type, instance }] of exporters.entries()) {
        const response = await buildStep(build, `exporting to ${type}`, `${buildId}/export/${i}`, (ctx) =>
          instance.export(result, { ...ctx, client: clientOfExporter(ctx.client, i) }),
        );
        Object.assign(exporterResponse, response);
      }
    }
    const chain = cacheExporters.length > 0 ? await build.cacheChain(result) : undefined;
    for (const [i, { type, instance }] of cacheExporters.entries()) {
      const response = await buildStep(build, `exporting cache to ${type}`, `${buildId}/cache-export/${i}`, (ctx) => instance.export(chain!, result, ctx));
      Object.assign(exporterResponse, response);
    }
    // The build stays open (its snapshots held) while a client debugs its result.
    if (req.debug) debugError = await runDebugSession(engine, build, req.debug, { result, exporterResponse }, req.signal);
  } catch (err) {
    error = frontendError ?? build.firstError ?? (err as Error);
    if (!build.signal.aborted) build.controller.abort(error);
    build.progress.cancelOpen();
    // ... or its failure: the failed step's state is kept until the session ends.
    if (req.debug) await runDebugSession(engine, build, req.debug, { error }, req.signal);
  } finally {
    await build.closeViews();
    build.finish();
    await scope.finish();
    await build.dropFailedExecs();
  }
  if (solverMs === 0) solverMs = performance.now() - t0;
  // Key plaintexts are kept for the builds that succeeded: a failed or refused build leaves the store as it was.
  const explanations = req.internal || error ? undefined : await keepBuildKeys(engine, build, req, client, buildId, req.explain === true);
  const stats = { ...build.stats, solverMs };
  await history.finish({ error, exporterResponse });
  await hooks.afterSolve.promise({ buildId, error, vertices: stats.vertices, cached: stats.cached, exporterResponse });
  if (error) throw error;
  if (debugError) throw debugError;
  return { buildId, result, exporterResponse, stats, ...(explanations ? { explanations } : {}) };
}

/**
 * Keeps the plaintexts of a successful build's keys (for `--explain` and
 * `bkt history explain`); with `explain`, returns why each step that ran missed, against
 * the previous build of the same target. The target: the frontend, its
 * Dockerfile and stage, and the client's directories (by their sync keys).
 * Failing to keep them never fails the build.
 */
async function keepBuildKeys(engine: Engine, build: Build, req: SolveRequest, client: BuildClient, buildId: string, explain: boolean): Promise<StepExplanation[] | undefined> {
  try {
    const attrs = req.frontendAttrs ?? {};
    const steps = await build.stepKeys();
    // The client directories the build read (its local:// sources), not every one it was offered (a cache's, an output's).
    const names = [...new Set(steps.flatMap((s) => (s.source?.identifier.startsWith('local://') ? [s.source.identifier.slice('local://'.length)] : [])))].sort();
    const dirs = names.map((n) => [n, client.localDir(n)?.syncKey ?? '']);
    const target = hashText(JSON.stringify([req.frontend ?? (req.build ? 'build' : 'definition'), attrs.filename ?? '', attrs.target ?? '', dirs]));
    const buildArgs = Object.keys(attrs).filter((k) => k.startsWith('build-arg:')).map((k) => k.slice('build-arg:'.length));
    // Compared as kept: without credentials, as the previous build's record is.
    const keys: BuildKeys = redactBuildKeys({ target, buildArgs, createdAt: new Date().toISOString(), steps });
    await saveBuildKeys(engine.store.records, buildId, keys);
    if (!explain) return undefined;
    const previous = await previousBuildKeys(engine.store.records, target, keys.createdAt, buildId);
    return explainSteps(keys, previous?.keys);
  } catch {
    return undefined;
  }
}

/**
 * The recorder of a build the history does not keep (`internal`): progress
 * passes through as a recorded build's does — output meant only for the
 * history dropped, `only` left out of what is passed on.
 */
function unrecorded(): BuildRecorder {
  return {
    secrets: (inner) => inner ?? { get: async () => null },
    observe: (inner) => (event) => {
      if (event.type !== 'log' || event.log.only === undefined) inner?.(event);
      else if (event.log.only === 'display') {
        const { only: _only, ...log } = event.log;
        inner?.({ type: 'log', log });
      }
    },
    finish: async () => {},
  };
}

/**
 * The importers or exporters of a solve's cache entries, by backend type:
 * an unknown type is a `NOT_FOUND` naming it and the registered ones; a
 * backend without that side is an `INVALID_ARGUMENT`.
 */
async function resolveCacheBackends<Side extends 'importer' | 'exporter'>(
  backends: Registry<CacheBackend>,
  entries: CacheOptionsEntry[],
  side: Side,
): Promise<{ type: string; instance: Awaited<ReturnType<NonNullable<CacheBackend[Side]>>> }[]> {
  const resolved = [];
  for (const { type, attrs } of entries) {
    const backend = backends.require(type);
    const make = backend[side] as ((attrs: Attrs) => Promise<Awaited<ReturnType<NonNullable<CacheBackend[Side]>>>>) | undefined;
    if (!make) {
      const verb = side === 'importer' ? 'import' : 'export';
      throw new BktError('INVALID_ARGUMENT', `cache backend "${type}" cannot ${verb} caches (it has no ${side})`, { type });
    }
    resolved.push({ type, instance: await make.call(backend, attrs) });
  }
  return resolved;
}

/**
 * As BuildKit's solver: a frontend's `build-arg:SOURCE_DATE_EPOCH` becomes
 * the result's `source.date.epoch` metadata unless the frontend set it.
 */
function withSourceDateEpoch(result: BuildResult, frontendAttrs: Record<string, string>): BuildResult {
  const epoch = frontendAttrs['build-arg:SOURCE_DATE_EPOCH'];
  if (epoch === undefined || epoch === '' || SOURCE_DATE_EPOCH_KEY in result.metadata) return result;
  return { ...result, metadata: { ...result.metadata, [SOURCE_DATE_EPOCH_KEY]: new TextEncoder().encode(epoch) } };
}

/**
 * Runs a frontend (a registered one, or a solve request's build function).
 * Its progress goes to a vertex `[frontend] <name>`, shown once it writes.
 * Only the client's cancellation cuts it short: a vertex failure reaches the
 * frontend through `bridge.solve`, so the frontend can annotate it (e.g.
 * with its Dockerfile line) before failing the build. `inputs` (the request's
 * frontend inputs) are `bridge.inputs`.
 */
/** How many times each frontend ran in a build (for the step of each run). */
const frontendRuns = new WeakMap<Build, Map<string, number>>();

async function runFrontend(
  engine: Engine,
  build: Build,
  frontend: Frontend,
  attrs: Record<string, string>,
  inputs: Record<string, Uint8Array>,
  clientSignal: AbortSignal | undefined,
): Promise<BuildResult> {
  // A frontend run again in the same build (a frontend forwarding to one of its own name) is a step of its own.
  const runs = frontendRuns.get(build) ?? new Map<string, number>();
  frontendRuns.set(build, runs);
  const n = (runs.get(frontend.name) ?? 0) + 1;
  runs.set(frontend.name, n);
  const own = syntheticVertex(build, `[frontend] ${frontend.name}`, n === 1 ? build.buildId : `${build.buildId}#${n}`);
  const ctx = build.context(own.writer);
  const bridge: FrontendBridge = {
    inputs: Object.freeze({ ...inputs }),
    solve: async (definition) => ({ ref: await build.solve(await build.load(definition)), metadata: {} }),
    solveFrontend: async (name, subAttrs, subInputs) => {
      const sub = engine.bkt.registries.frontends.require(name);
      return withSourceDateEpoch(await runFrontend(engine, build, sub, { ...subAttrs }, { ...(subInputs ?? {}) }, clientSignal), subAttrs);
    },
    readFile: (ref, path, range) => readResultFile(ref, path, range),
    readDir: (ref, path, include) => readResultDir(ref, path, include),
    statFile: (ref, path) => statResultFile(ref, path),
    resolveImageConfig: (ref, opts) => resolveImageConfig(engine, build, ref, opts),
    // A frontend may make containers after a step failed (to debug it, from its error's refs) until it returns:
    // only the client's cancellation stops them; the build's end releases them.
    newContainer: (req) => newBuildContainer(engine, build, req, clientSignal ?? new AbortController().signal),
    warn: (vertex, short, detail, opts) => {
      // A vertex the client has not seen (the frontend's digest for its source file) is shown first.
      if (!build.progress.shown(vertex)) {
        const now = new Date();
        const event = { digest: vertex, inputs: [], name: '[internal] load build definition', cached: false, started: now };
        build.progress.vertexStarted(event);
        build.progress.vertexDone({ ...event, completed: now });
      }
      build.progress.emit({
        type: 'warning',
        warning: { vertex, level: opts?.level ?? 1, short, detail: detail ?? [], ...(opts?.url ? { url: opts.url } : {}), ...(opts?.ranges ? { ranges: opts.ranges } : {}) },
      });
    },
  };
  try {
    const solving = frontend.solve(attrs, bridge, ctx);
    const result = await (clientSignal ? withSignal(solving, clientSignal, build.signal) : solving);
    own.done();
    return result;
  } catch (err) {
    own.done(err as Error);
    throw err;
  }
}

/**
 * The error a failed frontend fails the build with: its own (which may wrap
 * or annotate the failed vertex's), unless it only reports the cancellation
 * that followed the build's first failure.
 */
function frontendFailure(err: Error, first: Error | undefined): Error {
  if (first && err !== first && isBktError(err, 'CANCELLED') && !isBktError(first, 'CANCELLED')) return first;
  return err;
}

/**
 * `bridge.resolveImageConfig`: asks the source registered for the ref's
 * scheme (`docker-image` when it has none), which must declare the
 * `ImageConfigResolver` capability, as the vertex `[internal] load metadata
 * for <ref>` (as BuildKit shows it).
 */
async function resolveImageConfig(
  engine: Engine,
  build: Build,
  ref: string,
  given: ResolveImageConfigOptions | Platform | undefined,
): Promise<ResolvedImageConfig> {
  ref = await imageAfterPolicy(build, ref);
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//.exec(ref)?.[1] ?? 'docker-image';
  const source = engine.bkt.registries.sources.get(scheme);
  if (!isImageConfigResolver(source)) {
    throw new BktError(
      'UNIMPLEMENTED',
      `cannot resolve the image config of ${ref}: no registered ${scheme} source resolves image configs (add @bkt/source-image to the plugins of bkt.config.ts)`,
      { reference: ref, scheme },
    );
  }
  // A bare Platform is the older form of { platform }.
  const opts: ResolveImageConfigOptions = given && 'os' in given ? { platform: given } : ((given as ResolveImageConfigOptions | undefined) ?? {});
  const mode = opts.resolveMode ?? 'default';
  if (!isResolveMode(mode)) {
    throw new BktError('INVALID_ARGUMENT', `resolveImageConfig ${ref}: unknown resolve mode "${mode}" (want ${IMAGE_RESOLVE_MODES.join(', ')})`, {
      attribute: 'image-resolve-mode',
    });
  }
  const platform = opts.platform ? ` (${[opts.platform.os, opts.platform.architecture, opts.platform.variant].filter(Boolean).join('/')})` : '';
  const name = `[internal] load metadata for ${ref.replace(/^docker-image:\/\//, '')}${platform}`;
  const r = await buildStep(build, name, `${build.buildId}/${name}`, (ctx) =>
    source.resolveImageConfig(ref, { ...(opts.platform ? { platform: opts.platform } : {}), resolveMode: mode }, ctx),
  );
  return { digest: r.digest, config: r.config, ...(r.ref ? { ref: r.ref } : {}) };
}

/**
 * The image `ref` (a bare reference is a `docker-image://` source) as the
 * build's source policy leaves it: denied (PERMISSION_DENIED naming it), or
 * converted to another (given back in the form it came in).
 */
async function imageAfterPolicy(build: Build, ref: string): Promise<string> {
  const policy = build.opts.sourcePolicy;
  if (!policy) return ref;
  const bare = !/^[a-z][a-z0-9+.-]*:\/\//.test(ref);
  const identifier = bare ? `docker-image://${ref}` : ref;
  const decision = await policy({ identifier, attrs: {} });
  if (decision?.action === 'deny') throw deniedSource(identifier, decision);
  if (decision?.action !== 'convert') return ref;
  return bare ? decision.identifier.replace(/^docker-image:\/\//, '') : decision.identifier;
}

function isResolveMode(mode: string): mode is ImageResolveMode {
  return (IMAGE_RESOLVE_MODES as readonly string[]).includes(mode);
}

/** Runs a build-level step (an export, an image-config lookup) as its own progress vertex, like BuildKit's "exporting to …". */
/** The build's client as exporter `index` sees it: its outputs are tagged with its index (`OutputOptions.exporter`). */
function clientOfExporter(client: BuildClient, index: number): BuildClient {
  return {
    secrets: client.secrets,
    ssh: client.ssh,
    localDirNames: () => client.localDirNames(),
    localDir: (name) => client.localDir(name),
    credentials: (host) => client.credentials(host),
    openFile: (dest, o) => client.openFile(dest, { ...o, exporter: index }),
    openStdout: (o) => client.openStdout({ ...o, exporter: index }),
    openDir: (dest, o) => client.openDir(dest, { ...o, exporter: index }),
  };
}

async function buildStep<T>(build: Build, name: string, seed: string, fn: (ctx: ReturnType<Build['context']>) => Promise<T>): Promise<T> {
  const digest = digestOf(new TextEncoder().encode(seed));
  const started = new Date();
  const base = { digest, inputs: [] as Digest[], name, cached: false, started };
  build.progress.vertexStarted(base);
  try {
    const out = await withSignal(fn(build.context(vertexWriter(digest, [build.progress.emit]))), build.signal);
    build.progress.vertexDone({ ...base, completed: new Date() });
    return out;
  } catch (err) {
    build.progress.vertexDone({ ...base, completed: new Date(), error: build.stepError(err as Error) });
    throw err;
  }
}

/** A build-level vertex that appears in the progress only once something is written to it; `done` completes it. */
function syntheticVertex(build: Build, name: string, buildId: string): { writer: ProgressWriter; done(error?: Error): void } {
  const digest = digestOf(new TextEncoder().encode(`${buildId}/${name}`));
  let shown: VertexEvent | undefined;
  const show = () => {
    if (shown) return;
    shown = { digest, inputs: [], name, cached: false, started: new Date() };
    build.progress.vertexStarted(shown);
  };
  const inner = vertexWriter(digest, [build.progress.emit]);
  return {
    writer: {
      log: (stream, msg, only) => (show(), inner.log(stream, msg, only)),
      logHistoryOnly: (stream, msg) => (show(), inner.logHistoryOnly?.(stream, msg)),
      status: (id, n, current, total, done) => (show(), inner.status(id, n, current, total, done)),
      warn: (short, detail) => (show(), inner.warn(short, detail)),
    },
    done(error) {
      if (shown) build.progress.vertexDone({ ...shown, completed: new Date(), ...(error ? { error: build.stepError(error) } : {}) });
    },
  };
}

/**
 * Rejects as soon as `signal` aborts (a backend that ignores its signal
 * cannot hold the build), with the error `reason` was aborted with.
 */
function withSignal<T>(p: Promise<T>, signal: AbortSignal, reason: AbortSignal = signal): Promise<T> {
  if (signal.aborted) return Promise.reject(cancelled(reason));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(cancelled(reason));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
