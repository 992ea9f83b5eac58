/** The build backend of a daemon: each build a Control.Solve with a session (solve.ts), a config target solved as its definition (target.ts). */
import { BktError } from '@bkt/core';
import { createHostClient } from '@bkt/fsutil';
import type { BuildBackend } from '../backend.js';
import type { ProjectOptions } from '../project.js';
import type { DaemonAddress, DaemonFlags } from './address.js';
import { ControlConnection } from './connection.js';
import type { DaemonClient } from './daemon.js';
import { remoteSolve } from './solve.js';

export async function openDaemonBackend(address: DaemonAddress, opts: ProjectOptions & DaemonFlags): Promise<BuildBackend> {
  refuseRoot(opts);
  // Builds go over node:http2 (connection.ts); `--call` needs the gateway's grpc-js stubs: a grpc-js client, loaded and made on first use.
  const daemon = await ControlConnection.connect(address);
  let callClient: Promise<DaemonClient> | undefined;
  return {
    solve: async ({ outputs, host, build, invoke, ...req }) => {
      if (build) throw new BktError('INTERNAL', "a build function cannot run through a daemon: solve the target's definition (targetSolve)");
      const remote = { ...req, exporters: outputs, client: createHostClient(host), localDirs: host.localDirs ?? {} };
      // A process in the build's result or failed step: through bktd's buildx Controller.
      if (invoke) return (await import('./debug.js')).remoteDebugSolve(address, remote, invoke);
      return remoteSolve(daemon, remote, () => (callClient ??= import('./daemon.js').then(({ DaemonClient }) => DaemonClient.connect(address))));
    },
    // A config target's evaluation (the LLB builder, image configs) is loaded only for one.
    targetSolve: async (name, target, platform, outputs) => ({ definition: await (await import('./target.js')).daemonTargetDefinition(name, target, platform, outputs, daemon.address) }),
    close: async () => {
      daemon.close();
      if (callClient) (await callClient.catch(() => undefined))?.close();
    },
  };
}

/** `--root` names a store of this machine; a daemon builds in its own. */
export function refuseRoot(opts: ProjectOptions & DaemonFlags): void {
  if (opts.root !== undefined) {
    throw new BktError('INVALID_ARGUMENT', `--root ${opts.root} and --addr ${opts.addr}: --root is the store of a build in this process; a daemon uses its own store (bktd --root)`, {
      attribute: 'root',
    });
  }
}
