/**
 * What runs `bkt build`'s solves: a solver over the store at `--root` in
 * this process (the default), or bktd at `--addr` / `BKT_HOST`
 * (`src/remote/`). The build commands ask one of them the same way; this is
 * the one place that chooses. Each side is imported only when chosen: a
 * build through a daemon loads gRPC and the session, never the solver, the
 * store or the backends; a build here never loads gRPC.
 */
import type { BuildTarget, OutputSpec, Platform } from '@bkt/core';
import { createHostClient, type HostClientOptions } from '@bkt/fsutil';
import type { SolveRequest, SolveResponse } from '@bkt/solver';
import type { Invocation } from './invoke.js';
import type { Project, ProjectOptions } from './project.js';
import { daemonAddress, type DaemonFlags } from './remote/address.js';

/** One build: what to solve, its outputs and progress, and this machine's side of it (the host client's options). */
export interface BuildRequest extends Pick<SolveRequest, 'definition' | 'frontend' | 'frontendAttrs' | 'build' | 'entitlements' | 'noCache' | 'signal' | 'onProgress' | 'cacheImports' | 'cacheExports' | 'explain'> {
  outputs: OutputSpec[];
  /** The build's client: local directories, outputs' base dir, secrets, ssh agents, credentials (the store root is the backend's). */
  host: Omit<HostClientOptions, 'storeRoot'>;
  /** `--invoke` / `bkt debug`: a process in the result or the failed step once the build has an outcome, attached to this terminal. */
  invoke?: Invocation;
}

export interface BuildBackend {
  solve(req: BuildRequest): Promise<SolveResponse>;
  /** What solves config target `name` with `outputs`: a build function here, its definition through a daemon. */
  targetSolve(name: string, target: BuildTarget, platform: Platform | undefined, outputs: OutputSpec[]): Promise<Pick<SolveRequest, 'build' | 'definition'>>;
  close(): Promise<void>;
}

/** The daemon named by `--addr` (or `BKT_HOST`), connected; else a solver over the project's store. */
export async function openBackend(opts: ProjectOptions & DaemonFlags, project: Project): Promise<BuildBackend> {
  const address = daemonAddress(opts, project.cwd);
  if (address) {
    const { openDaemonBackend } = await import('./remote/backend.js');
    return openDaemonBackend(address, opts);
  }
  const { openBuilder } = await import('./builder.js');
  const { bkt, solver, root } = await openBuilder(opts, project);
  return {
    solve: async ({ outputs, host, invoke, ...req }) =>
      solver.solve({
        ...req,
        exporters: outputs.map(({ type, ...attrs }) => ({ type, attrs })),
        client: createHostClient({ ...host, storeRoot: root }),
        ...(invoke ? { debug: (await import('./invoke.js')).invokeCallback(invoke) } : {}),
      }),
    targetSolve: async (name, target, platform) => ({ build: (await import('./target-build.js')).targetBuildFunction(name, target, platform) }),
    close: async () => {
      await solver.close();
      await bkt.close();
    },
  };
}
