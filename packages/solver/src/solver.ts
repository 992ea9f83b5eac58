/**
 * `openSolver`: the solver over one store. Builds run concurrently and share
 * identical vertices; `prune` waits for running builds and holds new ones
 * back until it is done.
 */
import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { BktError, type BuildResult, type Digest, type ExporterInstance, type FrontendBridge } from '@bkt/core';
import type { PruneOptions, SolveRequest, SolveResponse, Solver, SolverOptions } from './api.js';
import { Build, type Engine } from './build.js';
import { digestOf } from './definition.js';
import { cancelled, Pool, SharedLock } from './pool.js';
import { vertexWriter } from './progress.js';
import { Store } from './store/store.js';

export async function openSolver(opts: SolverOptions): Promise<Solver> {
  const store = await Store.open(opts.root, opts.snapshotter ?? 'auto');
  const engine: Engine = {
    bkt: opts.bkt,
    store,
    pool: new Pool(opts.maxParallelism ?? cpus().length),
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
  const build = new Build(engine, {
    buildId,
    localDirs: req.localDirs ?? {},
    entitlements: new Set(req.entitlements ?? []),
    secrets: req.secrets ?? { get: async () => null },
    noCache: req.noCache ?? false,
    onProgress: req.onProgress,
    signal: req.signal,
    frontend: req.frontend,
    frontendAttrs: req.frontendAttrs ?? {},
  });
  let result: BuildResult = { ref: null, metadata: {} };
  const exporterResponse: Record<string, string> = {};
  let solverMs = 0;
  let error: Error | undefined;
  try {
    if (req.definition && req.frontend) {
      throw new BktError('INVALID_ARGUMENT', 'a solve request takes a definition or a frontend, not both');
    }
    // Exporter attrs are checked before anything runs.
    const exporters: { type: string; instance: ExporterInstance }[] = [];
    for (const e of req.exporters ?? []) {
      exporters.push({ type: e.type, instance: await registries.exporters.require(e.type).resolve(e.attrs) });
    }
    if (req.frontend) {
      const frontend = registries.frontends.require(req.frontend);
      const bridge: FrontendBridge = {
        solve: async (definition) => ({ ref: await build.solve(await build.load(definition)), metadata: {} }),
        warn: (vertex, short, detail) =>
          build.progress.emit({ type: 'warning', warning: { vertex, level: 1, short, detail: detail ?? [] } }),
      };
      const ctx = build.context(syntheticWriter(build, `[frontend] ${req.frontend}`, buildId));
      result = await withSignal(frontend.solve(req.frontendAttrs ?? {}, bridge, ctx), build.signal);
    } else if (req.definition) {
      result = { ref: await build.solve(await build.load(req.definition)), metadata: {} };
    }
    solverMs = performance.now() - t0;
    if (exporters.length > 0) {
      await hooks.beforeExport.promise(result, { buildId, exporters: (req.exporters ?? []).map((e) => ({ type: e.type, attrs: e.attrs })) });
      for (const [i, { type, instance }] of exporters.entries()) {
        const response = await exportStep(build, `exporting to ${type}`, `${buildId}/export/${i}`, (ctx) => instance.export(result, ctx));
        Object.assign(exporterResponse, response);
      }
    }
  } catch (err) {
    error = build.firstError ?? (err as Error);
    if (!build.signal.aborted) build.controller.abort(error);
  } finally {
    build.finish();
  }
  if (solverMs === 0) solverMs = performance.now() - t0;
  const stats = { ...build.stats, solverMs };
  await hooks.afterSolve.promise({ buildId, error, vertices: stats.vertices, cached: stats.cached, exporterResponse });
  if (error) throw error;
  return { buildId, result, exporterResponse, stats };
}

/** Runs a build-level step (an export) as its own progress vertex, like BuildKit's "exporting to …". */
async function exportStep<T>(build: Build, name: string, seed: string, fn: (ctx: ReturnType<Build['context']>) => Promise<T>): Promise<T> {
  const digest = digestOf(new TextEncoder().encode(seed));
  const started = new Date();
  const base = { digest, inputs: [] as Digest[], name, cached: false, started };
  build.progress.vertexStarted(base);
  try {
    const out = await withSignal(fn(build.context(vertexWriter(digest, [build.progress.emit]))), build.signal);
    build.progress.vertexDone({ ...base, completed: new Date() });
    return out;
  } catch (err) {
    build.progress.vertexDone({ ...base, completed: new Date(), error: (err as Error).message });
    throw err;
  }
}

/** A writer for a build-level vertex that appears in the progress only once something is written to it. */
function syntheticWriter(build: Build, name: string, buildId: string) {
  const digest = digestOf(new TextEncoder().encode(`${buildId}/${name}`));
  let shown = false;
  const show = () => {
    if (shown) return;
    shown = true;
    build.progress.vertexStarted({ digest, inputs: [], name, cached: false, started: new Date() });
  };
  const inner = vertexWriter(digest, [build.progress.emit]);
  return {
    log: (stream: 1 | 2, msg: Uint8Array | string) => (show(), inner.log(stream, msg)),
    status: (id: string, n: string, current: number, total: number, done?: boolean) => (show(), inner.status(id, n, current, total, done)),
    warn: (short: string, detail?: string[]) => (show(), inner.warn(short, detail)),
  };
}

/** Rejects as soon as `signal` aborts (a backend that ignores its signal cannot hold the build). */
function withSignal<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(cancelled(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(cancelled(signal));
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
