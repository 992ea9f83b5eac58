/**
 * Client-side frontends (BuildKit's `control/gateway.GatewayForwarder`): a
 * Control.Solve with no Definition and no Frontend starts a build whose
 * frontend is the client itself. The client then calls LLBBridge on the
 * daemon's main endpoint, each call naming its build in the
 * `buildkit-controlapi-buildid` metadata key; the build's result is what the
 * client passes to `Return`. The routing table holds the running client
 * builds only; the session (its refs, its containers) lives in the build.
 */
import type * as grpc from '@grpc/grpc-js';
import { BktError, type BuildResult, type FrontendBridge } from '@bkt/core';
import { llbBridgeHandlers, lookupByBuildId, LLBBridgeSession, type GatewayWorker } from '@bkt/frontend-gateway';

export class ClientFrontends {
  readonly #sessions = new Map<string, LLBBridgeSession>();

  constructor(private readonly workers: () => Promise<GatewayWorker[]>) {}

  /** Serves build `ref`'s LLBBridge until the client returns (its result) or the build is cancelled. */
  async run(ref: string, bridge: FrontendBridge, signal: AbortSignal): Promise<BuildResult> {
    if (this.#sessions.has(ref)) throw new BktError('INVALID_ARGUMENT', `SolveRequest.Ref ${ref}: a client build of that ref is running already`, { attribute: 'Ref' });
    const session = new LLBBridgeSession({ bridge, signal, workers: await this.workers() });
    this.#sessions.set(ref, session);
    try {
      await new Promise<void>((resolve, reject) => {
        const cancelled = () => new BktError('CANCELLED', `client build ${ref} was cancelled before the client returned a result`);
        if (signal.aborted) return reject(cancelled());
        const onAbort = () => reject(cancelled());
        signal.addEventListener('abort', onAbort, { once: true });
        void session.returned.then(() => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        });
      });
      return session.result();
    } finally {
      this.#sessions.delete(ref);
      await session.discard();
    }
  }

  /** The LLBBridge service over the running client builds. */
  handlers(): grpc.UntypedServiceImplementation {
    return llbBridgeHandlers(lookupByBuildId((id) => this.#sessions.get(id)));
  }
}
