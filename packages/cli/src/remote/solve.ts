/**
 * A build through bktd, as buildctl runs one: the CLI opens a session
 * serving this machine to the build (its local directories, output targets,
 * secrets, ssh agents, registry credentials: the host client), sends
 * `Control.Solve` naming the session, and follows `Control.Status` for the
 * build's ref into the same progress displays a build in this process feeds.
 */
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import * as control from '@bkt/api/control';
import type * as gateway from '@bkt/api/gateway';
import * as llb from '@bkt/api/definition';
import { BktError, type BuildClient, type OutputSpec, type ProgressEvent } from '@bkt/core';
import { progressEvents, type OutputTargets } from '@bkt/session';
import type { SolveRequest, SolveResponse } from '@bkt/solver';
import type { BuildConnection } from './connection.js';
import type { DaemonClient } from './daemon.js';

/** What a solve through the daemon is given: a definition or a frontend, and the build's client. */
export interface RemoteSolveRequest extends Pick<SolveRequest, 'definition' | 'frontend' | 'frontendAttrs' | 'entitlements' | 'noCache' | 'signal' | 'onProgress' | 'cacheImports' | 'cacheExports'> {
  exporters: OutputSpec[];
  client: BuildClient;
  /** The client's local directories (host paths by name): they make the session's shared key. */
  localDirs: Readonly<Record<string, string>>;
}

/** How long the progress stream may lag behind the end of a Solve that had progress. */
const STATUS_DRAIN_MS = 10_000;
/** …and behind a Solve cancelled by an interruption (the CLI exits soon after). */
const INTERRUPTED_DRAIN_MS = 2_000;

/**
 * The solver's own steps, which are no vertex of the graph and which its
 * step counts (`solver time: … (N steps, M cached)`) leave out: the
 * frontend's, the definition's and image config loads, cache imports and
 * exports, attestations, exporters.
 */
const SOLVER_STEP = /^(\[frontend\] |\[internal\] load build definition$|\[internal\] load metadata for |importing cache from |exporting to |exporting cache to |producing \S+ attestation$)/;

/** Output types whose result comes back to this machine, and how: a directory, or a file (a tar). */
const CLIENT_OUTPUTS = new Set(['local', 'tar', 'oci', 'docker']);

/**
 * A build through the daemon on `connection`; `--call` (a `requestid`
 * attribute) through the grpc-js client `callClient()` gives, which also
 * speaks BuildKit's gateway.
 */
export async function remoteSolve(connection: BuildConnection, req: RemoteSolveRequest, callClient: () => Promise<DaemonClient>): Promise<SolveResponse> {
  refuseLayoutContexts(req.frontendAttrs ?? {});
  if (req.frontendAttrs?.requestid) return remoteCall(await callClient(), req);
  const daemon = connection;
  const signal = req.signal ?? new AbortController().signal;
  const outputs = outputTargets(req.exporters);
  const ref = newRef();
  const session = daemon.openSession(req.client, { outputs, sharedKey: sharedKey(req.localDirs) });
  const solveRequest = control.SolveRequest.fromPartial({
    Ref: ref,
    Session: session.id,
    ...(req.definition ? { Definition: definitionFor(req.definition, !!req.noCache) } : {}),
    ...(req.frontend ? { Frontend: req.frontend, FrontendAttrs: req.frontendAttrs ?? {} } : {}),
    Exporters: req.exporters.map(({ type, ...attrs }) => ({ Type: type, Attrs: attrs })),
    Entitlements: req.entitlements ?? [],
    Cache: {
      Imports: (req.cacheImports ?? []).map((e) => ({ Type: e.type, Attrs: e.attrs })),
      Exports: (req.cacheExports ?? []).map((e) => ({ Type: e.type, Attrs: e.attrs })),
    },
  });

  const steps = new Map<string, boolean>();
  const onEvent = (e: ProgressEvent) => {
    if (e.type === 'vertex' && !SOLVER_STEP.test(e.vertex.name)) steps.set(e.vertex.digest, e.vertex.cached);
    req.onProgress?.(e);
  };
  const status = followStatus(daemon, ref, onEvent);
  const t0 = performance.now();
  try {
    const res = await daemon.solve(solveRequest, signal).catch(async (err: unknown) => {
      // Interrupted: the daemon's last events (the steps it cancelled) for a moment, as a build here shows them.
      await status.settle(false, signal.aborted ? INTERRUPTED_DRAIN_MS : STATUS_DRAIN_MS);
      throw err;
    });
    const solverMs = performance.now() - t0;
    await status.settle(true, STATUS_DRAIN_MS);
    const cached = [...steps.values()].filter(Boolean).length;
    return { buildId: ref, result: { ref: null, metadata: {} }, exporterResponse: res.ExporterResponse, stats: { vertices: steps.size, cached, solverMs } };
  } finally {
    session.close();
  }
}

/** How long a client build may take to be registered by the daemon after its Solve was sent. */
const CLIENT_BUILD_WAIT_MS = 10_000;

/**
 * `--call` through bktd: the frontend's answer is its result's metadata,
 * which only BuildKit's gateway returns. The CLI is a client-side frontend
 * (as buildx's `--call`): a Control.Solve with no frontend starts the build,
 * LLBBridge.Solve runs the frontend with its `requestid` and returns the
 * answer, and an empty `Return` ends the build.
 */
async function remoteCall(daemon: DaemonClient, req: RemoteSolveRequest): Promise<SolveResponse> {
  const signal = req.signal ?? new AbortController().signal;
  const ref = newRef();
  const session = daemon.openSession(req.client, { outputs: {}, sharedKey: sharedKey(req.localDirs) });
  const t0 = performance.now();
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    const solving = daemon.solve(
      control.SolveRequest.fromPartial({ Ref: ref, Session: session.id, FrontendAttrs: req.frontendAttrs ?? {}, Entitlements: req.entitlements ?? [] }),
      controller.signal,
    );
    solving.catch(() => undefined);
    // The build is registered once the daemon got the Solve: until then LLBBridge answers NOT_FOUND.
    for (const deadline = Date.now() + CLIENT_BUILD_WAIT_MS; ; ) {
      try {
        await daemon.bridge('ping', ref, {}, controller.signal);
        break;
      } catch (err) {
        if ((err as { grpcCode?: number }).grpcCode !== 5 || Date.now() > deadline) throw await solving.then(() => err, (e: unknown) => e);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    let answer: gateway.SolveResponse;
    try {
      answer = await daemon.bridge<gateway.SolveRequest, gateway.SolveResponse>(
        'solve',
        ref,
        { ...(await import('@bkt/api/gateway')).SolveRequest.fromPartial({}), Frontend: req.frontend ?? 'dockerfile.v0', FrontendOpt: req.frontendAttrs ?? {}, allowResultReturn: true, allowResultArrayRef: true },
        controller.signal,
      );
    } catch (err) {
      const e = err as Error;
      await daemon.bridge('return', ref, { result: undefined, error: { code: (err as { grpcCode?: number }).grpcCode ?? 2, message: e.message, details: [] } }).catch(() => undefined);
      await solving.catch(() => undefined);
      throw err;
    }
    await daemon.bridge('return', ref, { result: (await import('@bkt/api/gateway')).Result.fromPartial({}), error: undefined }, controller.signal);
    const res = await solving;
    const metadata: Record<string, Uint8Array> = {};
    for (const [k, v] of Object.entries(answer.result?.metadata ?? {})) metadata[k] = new Uint8Array(v);
    return { buildId: ref, result: { ref: null, metadata }, exporterResponse: res.ExporterResponse, stats: { vertices: 0, cached: 0, solverMs: performance.now() - t0 } };
  } finally {
    signal.removeEventListener('abort', onAbort);
    session.close();
  }
}

/**
 * Follows Control.Status of `ref` into `onEvent`. `settle(solved, drainMs)`
 * waits for the stream to end after the Solve returned — at once when the
 * build never showed progress (a request refused before it started), else
 * for what the daemon still sends, at most `drainMs`.
 */
function followStatus(daemon: BuildConnection, ref: string, onEvent: (e: ProgressEvent) => void) {
  const stop = new AbortController();
  let received = false;
  const done = (async () => {
    for await (const res of daemon.status(ref, stop.signal)) {
      received = true;
      for (const e of progressEvents(res)) onEvent(e);
    }
  })().catch(() => {
    // Progress is only shown: a Status that fails (the build was refused before it started) leaves the Solve's outcome to tell.
  });
  return {
    async settle(solved: boolean, drainMs: number): Promise<void> {
      if (!solved && !received) stop.abort();
      const timer = setTimeout(() => stop.abort(), drainMs);
      await done;
      clearTimeout(timer);
    },
  };
}

/**
 * An OCI layout named context travels as a local directory the build
 * reads as a layout store; bktd lends a build only its context, Dockerfile
 * and `local:` named contexts, so through a daemon it is refused here.
 */
function refuseLayoutContexts(attrs: Readonly<Record<string, string>>): void {
  for (const [key, value] of Object.entries(attrs)) {
    if (!key.startsWith('context:') || !value.startsWith('oci-layout://')) continue;
    throw new BktError(
      'UNIMPLEMENTED',
      `--build-context ${key.slice('context:'.length)}=oci-layout://…: through a daemon (--addr) an OCI layout context is not supported yet (bktd lends a build only its context, Dockerfile and directory contexts); push the image and use docker-image://, or build without --addr`,
      { attribute: 'build-context' },
    );
  }
}

/**
 * The session's targets of the outputs that come back to this machine, by
 * exporter index: a directory (`local`; `oci`/`docker` with `tar=false`), a
 * file, or stdout (`dest=-`). bktd tells a build's outputs apart by exporter
 * type, so two of one type that write here are refused.
 */
export function outputTargets(exporters: readonly OutputSpec[]): OutputTargets {
  const targets: Record<number, OutputTargets[number]> = {};
  const seen = new Set<string>();
  for (const [i, o] of exporters.entries()) {
    if (!CLIENT_OUTPUTS.has(o.type) || o.dest === undefined) continue;
    if (seen.has(o.type)) {
      throw new BktError('UNIMPLEMENTED', `--output type=${o.type}: through a daemon (--addr) a build writes one output of each type to this machine; bktd tells them apart by type`, {
        attribute: 'output',
      });
    }
    seen.add(o.type);
    const dir = o.type === 'local' || ((o.type === 'oci' || o.type === 'docker') && o.tar === 'false');
    targets[i] = dir ? { type: 'dir', dest: o.dest } : o.dest === '-' ? { type: 'stdout' } : { type: 'file', dest: o.dest };
  }
  return targets;
}

/** The definition as the Solve carries it; `noCache` marks every op to ignore the cache (as `--no-cache` does for a build here). */
function definitionFor(bytes: Uint8Array, noCache: boolean): llb.Definition {
  let def: llb.Definition;
  try {
    def = llb.Definition.decode(bytes);
  } catch (err) {
    throw new BktError('INVALID_DEFINITION', `the LLB definition does not decode as a pb.Definition: ${(err as Error).message}`, {}, { cause: err });
  }
  if (!noCache) return def;
  const metadata: Record<string, llb.OpMetadata> = { ...def.metadata };
  for (const op of def.def) {
    const digest = `sha256:${createHash('sha256').update(op).digest('hex')}`;
    metadata[digest] = { ...llb.OpMetadata.fromPartial(metadata[digest] ?? {}), ignoreCache: true };
  }
  return { ...def, metadata };
}

/**
 * Names this machine's directories of a build across sessions, so the
 * daemon reuses what it synced of them before: the same directories from
 * the same host share a key; other directories never do.
 */
function sharedKey(localDirs: Readonly<Record<string, string>>): string {
  const dirs = Object.entries(localDirs)
    .map(([name, dir]) => [name, resolve(dir)])
    // By code unit (localeCompare would load ICU's collator: ~15 ms of a client's start).
    .sort(([a], [b]) => (a! < b! ? -1 : a! > b! ? 1 : 0));
  return createHash('sha256').update(JSON.stringify([hostname(), dirs])).digest('hex').slice(0, 32);
}

/** A build ref as BuildKit's clients make them: 25 lowercase base-36 characters. */
function newRef(): string {
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';
  return Array.from(randomBytes(25), (b) => alphabet[b % 36]).join('');
}
