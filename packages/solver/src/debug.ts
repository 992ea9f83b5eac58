/**
 * Interactive containers in a build, and a solve's `debug` callback: the
 * build kept open (its snapshots held, a failed step's state included)
 * while a client runs containers in it — `bkt build --invoke`,
 * `bkt debug`, the buildx Controller's Invoke.
 */
import * as pb from '@bkt/api/pb';
import {
  BktError,
  failedExecOf,
  type BuildResult,
  type ContainerProcessSpec,
  type FailedExec,
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

/** What it needs of the solver: the op executors. */
export interface DebugEngine {
  readonly bkt: { registries: { opExecutors: { get(kind: string): OpExecutor | undefined } } };
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
  outcome: { result?: BuildDebugSession['result']; exporterResponse?: Record<string, string>; error?: Error },
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
    ...(outcome.result ? { result: outcome.result, exporterResponse: outcome.exporterResponse ?? {} } : {}),
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
 * A container to debug in, and what its processes default to: the failed
 * step's (its mounts over the trees it left, its meta), or the result's.
 */
export interface DebugTarget {
  request: NewContainerRequest;
  /** The step's or the image config's env, cwd, user and security; `args` is the default command (`/bin/sh`). */
  process: ContainerProcessSpec;
  /** `[3/3] RUN …` for a failed step, `the build result` for a result. */
  what: string;
}

const DEFAULT_SHELL = ['/bin/sh'];

/**
 * The failed exec step's container as the step left it (BuildKit's way,
 * as buildx rebuilds it from a SolveError): each mount over the snapshot
 * its process left (writable ones) or read (the others), the cache, tmpfs,
 * secret and ssh mounts made again; its args' process replaced by a shell;
 * its env, cwd, user, network, extra hosts, hostname and security.
 */
export function failedStepTarget(failed: FailedExec): DebugTarget {
  const op = failed.op as pb.ExecOp;
  const inputs = [...failed.inputs, ...failed.mounts].map((snapshot) => ({ snapshot }));
  const mounts = op.mounts.map((m, i) => pb.Mount.fromPartial({ ...m, input: failed.mounts[i] ? failed.inputs.length + i : m.input, output: -1 }));
  const meta = op.meta ?? pb.Meta.fromPartial({});
  return {
    request: {
      mounts,
      inputs,
      network: op.network === pb.NetMode.HOST ? 'host' : op.network === pb.NetMode.NONE ? 'none' : 'sandbox',
      extraHosts: meta.extraHosts.map((h) => ({ host: h.Host, ip: h.IP })),
      ...(meta.hostname ? { hostname: meta.hostname } : {}),
      ...(failed.platform ? { platform: failed.platform } : {}),
    },
    process: {
      args: DEFAULT_SHELL,
      env: [...meta.env],
      cwd: meta.cwd || '/',
      user: meta.user,
      security: op.security === pb.SecurityMode.INSECURE ? 'insecure' : 'sandbox',
    },
    what: failed.name,
  };
}

/** The result's container: its tree (a writable overlay, thrown away), the image config's env, workdir and user. Undefined for an empty result. */
export function resultTarget(result: BuildResult): DebugTarget | undefined {
  if (!result.ref) return undefined;
  const config = imageConfig(result.metadata['containerimage.config']);
  return {
    request: { mounts: [pb.Mount.fromPartial({ input: 0, dest: '/', output: -1 })], inputs: [{ snapshot: result.ref }], network: 'sandbox' },
    process: { args: DEFAULT_SHELL, env: [...(config.Env ?? [])], cwd: config.WorkingDir || '/', user: config.User ?? '' },
    what: 'the build result',
  };
}

/** Where a debug session opens: the failed step's container, else the result's; undefined when there is neither. */
export function debugTarget(session: Pick<BuildDebugSession, 'result' | 'failedExec' | 'error'>): DebugTarget | undefined {
  if (session.error) return session.failedExec ? failedStepTarget(session.failedExec) : undefined;
  return session.result ? resultTarget(session.result) : undefined;
}

function imageConfig(bytes: Uint8Array | undefined): { Env?: string[]; WorkingDir?: string; User?: string } {
  if (!bytes) return {};
  try {
    const parsed = JSON.parse(Buffer.from(bytes).toString('utf8')) as { config?: { Env?: string[]; WorkingDir?: string; User?: string } };
    return parsed.config ?? {};
  } catch {
    return {};
  }
}
