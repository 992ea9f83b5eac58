/**
 * `@bkt/store/testing`: a real store (overlayfs, or the copy snapshotter) in
 * a temporary directory and a `BuildContext` over it, for the tests of
 * sources, exporters and op executors — bkt's own and third-party plugins'
 * (with `@bkt/core/testing`'s conformance suites).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BuildContext, ProgressWriter } from '@bkt/core';
import { testBuildContext } from '@bkt/core/testing';
import { createHostClient } from '@bkt/fsutil';
import { Store } from '../store.js';

export interface TestContext {
  ctx: BuildContext;
  store: Store;
  /** Warnings the backends reported. */
  warnings: string[];
  /** Names of the sub-progress statuses reported (`pushing layer … (mounted)`). */
  statuses: string[];
  /** Closes the store and removes its directory. */
  close(): Promise<void>;
}

/** Opens a fresh store in a temporary directory and a context for one build. */
export async function openTestContext(opts: { localDirs?: Record<string, string>; snapshotter?: 'overlay' | 'copy' } = {}): Promise<TestContext> {
  const root = await mkdtemp(join(tmpdir(), 'bkt-store-test-'));
  const store = await Store.open(root, opts.snapshotter ?? 'auto');
  const warnings: string[] = [];
  const statuses: string[] = [];
  const progress: ProgressWriter = {
    log: () => undefined,
    status: (_id, name) => void statuses.push(name),
    warn: (short) => void warnings.push(short),
  };
  const abort = new AbortController();
  const { ctx } = testBuildContext({
    root: store.root,
    snapshotter: store.snapshotter,
    content: store.content,
    records: store.records,
    client: createHostClient({ localDirs: opts.localDirs ?? {}, storeRoot: store.root }),
    signal: abort.signal,
    progress,
  });
  return {
    ctx,
    store,
    warnings,
    statuses,
    close: async () => {
      abort.abort();
      await store.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}
