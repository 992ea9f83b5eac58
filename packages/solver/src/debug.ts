/**
 * Interactive containers in a build, and a solve's `debug` callback: the
 * build kept open (its snapshots held, a failed step's state included)
 * while a client runs containers in it — `bkt build --invoke`,
 * `bkt debug`, the buildx Controller's Invoke.
 */
import {
  BktError,
  failedExecOf,
  isContainerProvider,
  type BuildContext,
  type InteractiveContainer,
  type NewContainerRequest,
  type OpExecutor,
  type ProgressWriter,
} from '@bkt/core';
import type { BuildDebugSession, SolveRequest } from './api.js';

/** What the debug code needs of a build. */
export interface DebuggedBuild {
  readonly buildId: string;
  context(progress: ProgressWriter, signal?: AbortSignal): BuildContext;
}

/** What it needs of the solver: the op executors, and the store to drop a failed step's kept state from. */
export interface DebugEngine {
  readonly bkt: { registries: { opExecutors: { get(kind: string): OpExecutor | undefined } } };
  readonly store: { snapshotter: { removeUnused(ids: string[], isLive: (session: string) => boolean): Promise<string[]> }; liveness(): (session: string) => boolean };
}

const SILENT: ProgressWriter = { log() {}, status() {}, warn() {} };

/**
 * A container in `build` through the `exec` executor's `ContainerProvider`
 * capability, its context aborted by `signal` (which releases it).
 */
export async function newBuildContainer(engine: DebugEngine, build: DebuggedBuild, req: NewContainerRequest, signal: AbortSignal, progress: ProgressWriter = SILENT): Promise<InteractiveContainer> {
  const executor = engine.bkt.registries.opExecutors.get('exec');
  if (!isContainerProvider(executor)) {
    throw new BktError('UNIMPLEMENTED', 'no registered exec executor makes interactive containers (add @bkt/worker-runc to the plugins of bkt.config.ts)', {
      attribute: 'exec',
    });
  }
  if (!Array.isArray(req.mounts) || !Array.isArray(req.inputs)) {
    throw new BktError('INVALID_ARGUMENT', 'a new container needs mounts and inputs', { attribute: 'mounts' });
  }
  return executor.newContainer(req, build.context(progress, signal));
}

/**
 * Runs the solve's `debug` callback with the build still open: containers
 * it makes are released when it returns (or throws), and the build
 * finishes afterwards. Its own failure is returned, not thrown: the build's
 * outcome stays what it was.
 */
export async function runDebugSession(
  engine: DebugEngine,
  build: DebuggedBuild,
  debug: NonNullable<SolveRequest['debug']>,
  outcome: { result?: BuildDebugSession['result']; error?: Error },
  clientSignal: AbortSignal | undefined,
): Promise<Error | undefined> {
  const controller = new AbortController();
  const onAbort = () => controller.abort(new BktError('CANCELLED', `build ${build.buildId} cancelled`));
  if (clientSignal?.aborted) onAbort();
  else clientSignal?.addEventListener('abort', onAbort, { once: true });
  const containers: InteractiveContainer[] = [];
  const failedExec = outcome.error ? failedExecOf(outcome.error) : undefined;
  const session: BuildDebugSession = {
    buildId: build.buildId,
    ...(outcome.result ? { result: outcome.result } : {}),
    ...(outcome.error ? { error: outcome.error } : {}),
    ...(failedExec ? { failedExec } : {}),
    signal: controller.signal,
    newContainer: async (req) => {
      if (controller.signal.aborted) throw new BktError('CANCELLED', `the debug session of build ${build.buildId} is over`);
      const c = await newBuildContainer(engine, build, req, controller.signal);
      containers.push(c);
      return c;
    },
  };
  try {
    await debug(session);
    return undefined;
  } catch (err) {
    return err as Error;
  } finally {
    clientSignal?.removeEventListener('abort', onAbort);
    controller.abort();
    await Promise.allSettled(containers.map((c) => c.release()));
  }
}

/**
 * Removes what a failed exec step kept for debugging (its writable mounts
 * as the process left them) once the build has finished and released it;
 * kept only if something else took it (a record, a running build).
 */
export async function dropFailedExecState(engine: DebugEngine, error: Error | undefined): Promise<void> {
  const failed = error ? failedExecOf(error) : undefined;
  if (!failed) return;
  const ids = failed.mounts.filter((s) => s !== null).map((s) => s.id);
  if (ids.length === 0) return;
  await engine.store.snapshotter.removeUnused(ids, engine.store.liveness()).catch(() => undefined);
}
