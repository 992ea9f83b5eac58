/**
 * @bkt/worker-runc: runs ExecOp steps in runc containers.
 *
 * `runcWorker(opts)` is the plugin (default export): it registers the `exec`
 * op executor. Per store root it keeps one `RuncExecutor` whose runc state
 * lives in `<root>/runc/state`; cache mounts are the store records of namespace
 * `cachemounts` (`<root>/cachemounts`), listed by `bkt du` and removed by the store's prune
 * through the solver. Before the solver opens a store (the `storeOpen` hook)
 * it stops what a killed worker left running there.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type {
  BktPlugin,
  BuildContext,
  CacheMountStore,
  ContainerProvider,
  InteractiveContainer,
  NewContainerRequest,
  OpEnvelope,
  OpExecutor,
  OpInput,
  Snapshot,
} from '@bkt/core';
import type * as pb from '@bkt/api/pb';
import type { ExecOpExecutor, ExecOpExecutorOptions } from './execop.js';
import type { NetworkOptions } from './network.js';
import type { RuncExecutor } from './runc.js';

export interface RuncWorkerOptions {
  /** The runc binary (default `runc` on PATH). */
  runc?: string;
  network?: NetworkOptions;
  /** Per-step log limit in bytes (default 2 MiB, as BuildKit; ≤ 0: none). */
  logMaxBytes?: number;
  /** Each container's `pids.max` (default 4096); 0: no limit of its own. */
  pidsLimit?: number;
}

export default function runcWorker(opts: RuncWorkerOptions = {}): BktPlugin {
  const executors = new Map<string, Promise<RuncExecutor>>();
  // One executor per store root.
  const executorFor = (storeRoot: string): Promise<RuncExecutor> => {
    let ex = executors.get(storeRoot);
    if (!ex) {
      ex = newExecutor(storeRoot, opts);
      executors.set(storeRoot, ex);
    }
    return ex;
  };
  return {
    name: '@bkt/worker-runc',
    setup({ hooks }) {
      // Opening the store unmounts what a killed build left mounted, i.e. the root filesystems of
      // containers it may have left running: stop those first (unmounting does not stop a process).
      hooks.storeOpen.tapPromise('@bkt/worker-runc', async ({ root }) => {
        await sweepStaleContainers(root, { runc: opts.runc });
      });
      hooks.shutdown.tapPromise('@bkt/worker-runc', async () => {
        const all = [...executors.values()];
        executors.clear();
        for (const ex of all) await (await ex).close();
      });
    },
    opExecutors: [
      new LazyExecOpExecutor({
        executorFor,
        runDirFor,
        logMaxBytes: opts.logMaxBytes,
      }),
    ],
  };
}

/**
 * The exec op executor (`ExecOpExecutor`), its module and runc's loaded on
 * first use: a build whose steps are all cached, or that runs none, never
 * loads them. Declares the same capabilities (`ContainerProvider`,
 * `CacheMountStore`).
 */
class LazyExecOpExecutor implements OpExecutor<pb.ExecOp>, ContainerProvider<pb.Mount>, CacheMountStore {
  readonly kind = 'exec' as const;
  readonly #opts: ExecOpExecutorOptions;
  #executor: Promise<ExecOpExecutor> | undefined;

  constructor(opts: ExecOpExecutorOptions) {
    this.#opts = opts;
  }

  #load(): Promise<ExecOpExecutor> {
    this.#executor ??= import('./execop.js').then(({ ExecOpExecutor }) => new ExecOpExecutor(this.#opts));
    return this.#executor;
  }

  async run(exec: pb.ExecOp, inputs: OpInput[], ctx: BuildContext, envelope?: OpEnvelope): Promise<(Snapshot | null)[]> {
    return (await this.#load()).run(exec, inputs, ctx, envelope);
  }

  async openCacheMount(id: string, ctx: BuildContext): Promise<{ path: string; release(): Promise<void> } | undefined> {
    return (await this.#load()).openCacheMount(id, ctx);
  }

  async restoreCacheMount(id: string, fill: (dir: string) => Promise<void>, ctx: BuildContext): Promise<boolean> {
    return (await this.#load()).restoreCacheMount(id, fill, ctx);
  }

  async newContainer(req: NewContainerRequest<pb.Mount>, ctx: BuildContext): Promise<InteractiveContainer> {
    return (await this.#load()).newContainer(req, ctx);
  }
}

/** The worker's directory in a store root: runc state, bundles, per-run mounts. */
function workerDir(storeRoot: string): string {
  return join(storeRoot, 'runc');
}

/** The first part of the ids of the exec op's containers (`bkt-<pid>-…`). */
const ID_PREFIX = 'bkt';

function runDirFor(storeRoot: string): string {
  return join(workerDir(storeRoot), 'mounts');
}

async function newExecutor(storeRoot: string, opts: Pick<RuncWorkerOptions, 'runc' | 'network' | 'pidsLimit'>): Promise<RuncExecutor> {
  const { RuncExecutor } = await import('./runc.js');
  return new RuncExecutor({
    stateDir: workerDir(storeRoot),
    runc: opts.runc,
    network: opts.network,
    pidsLimit: opts.pidsLimit,
    runDirs: runDirFor(storeRoot),
  });
}

/**
 * Stops and removes the containers that workers which no longer run left in
 * `storeRoot` (their watchdogs died with them), with their bundles and
 * scratch dirs. Run it before unmounting a store's stale mounts: they are
 * those containers' root filesystems. Containers of live processes are not
 * touched. Returns the ids of the containers removed. When runc's state,
 * the bundles and the run dirs are all absent or empty (no container ever
 * ran there, or every one was cleaned up), there is nothing to stop and
 * runc's code is not loaded.
 */
export async function sweepStaleContainers(storeRoot: string, opts: { runc?: string } = {}): Promise<string[]> {
  const dir = workerDir(storeRoot);
  const swept = [join(dir, 'state'), join(dir, 'bundles'), runDirFor(storeRoot)];
  const entries = await Promise.all(swept.map((d) => readdir(d).catch(() => [] as string[])));
  if (entries.every((names) => names.length === 0)) return [];
  const executor = await newExecutor(storeRoot, opts);
  try {
    return await executor.sweepStale(ID_PREFIX);
  } finally {
    await executor.close();
  }
}

export { runcWorker };
// The public surface: the plugin and its options, the stale-container sweep
// (run by the plugin's `storeOpen` tap), the platforms runc executes here (native and
// emulated: a worker's `Platforms`), the ssh agent type of the build's client, and the types of
// the `Executor` interface. The container executor that implements it (`RuncExecutor`: runs a
// container without a solver) is `@bkt/worker-runc/runc-executor`, not re-exported here: a
// static import of it would make every importer of the plugin load runc's code (a bundler
// keeps a chunk an entry imports even when nothing of it is used). The exec op executor,
// cache mounts, network and spec details are internal.
export type { NetworkOptions } from './network.js';
export { executablePlatforms, workerPlatforms, type EmulatedPlatform, type ExecutablePlatforms } from './platforms.js';
export type { SshAgentProvider } from './mounts.js';
export type { RuncExecutorOptions } from './runc.js';
export type * from './executor.js';
