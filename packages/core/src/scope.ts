import { emptyClient, type BuildClient } from './client.js';
import type { BuildScope, SecretProvider } from './types.js';

/**
 * The result metadata key of the build's SOURCE_DATE_EPOCH in seconds
 * (BuildKit's `exptypes.ExporterEpochKey`): the solver sets it from the
 * frontend's `build-arg:SOURCE_DATE_EPOCH` unless the frontend did; exporters read it.
 */
export const SOURCE_DATE_EPOCH_KEY = 'source.date.epoch';

export interface BuildScopeOptions {
  buildId: string;
  /** The build's client (default: one offering nothing). */
  client?: BuildClient;
  entitlements?: Iterable<string>;
  /** The secrets backends read (default: the client's); the solver passes them wrapped for redaction. */
  secrets?: SecretProvider;
}

/** A build's scope, and `finish()`, which runs what backends registered with `onFinish`. */
export interface OwnedBuildScope extends BuildScope {
  /** Runs the `onFinish` cleanups, latest first, each once; later registrations run at the next call. */
  finish(): Promise<void>;
}

/** Makes the scope of one build (the solver makes one per solve; tests make their own). */
export function createBuildScope(opts: BuildScopeOptions): OwnedBuildScope {
  const client = opts.client ?? emptyClient();
  const cleanups: (() => void | Promise<void>)[] = [];
  return {
    buildId: opts.buildId,
    client,
    entitlements: new Set(opts.entitlements ?? []),
    secrets: opts.secrets ?? client.secrets,
    ssh: client.ssh,
    onFinish(cleanup) {
      cleanups.push(cleanup);
    },
    async finish() {
      for (const cleanup of cleanups.splice(0).reverse()) {
        try {
          await cleanup();
        } catch {
          // A cleanup is best effort: it must not keep the others from running.
        }
      }
    },
  };
}
