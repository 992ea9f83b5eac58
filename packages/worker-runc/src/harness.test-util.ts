/**
 * Test harness for the exec op executor: a real store (the solver's overlay
 * snapshotter) with a busybox base snapshot, and a vertex-scoped context that
 * records logs. Not part of the package's exports.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pb from '@bkt/api/pb';
import type { BuildContext, OpInput, ProgressWriter, Snapshot } from '@bkt/core';
import { testBuildContext } from '@bkt/core/testing';
import { Store } from '@bkt/store';
import { makeBusyboxRootfs } from '@bkt/testkit';
import runcWorker from './index.js';
import type { ExecOpExecutor } from './execop.js';

export interface Harness {
  dir: string;
  root: string;
  store: Store;
  base: Snapshot;
  executor: ExecOpExecutor;
  close(): Promise<void>;
}

export async function openHarness(): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'bkt-execop-'));
  const root = join(dir, 'store');
  const store = await Store.open(root, 'overlay');
  const mutable = await store.snapshotter.prepare(null);
  await makeBusyboxRootfs(mutable.path);
  const base = await mutable.commit();
  const executor = runcWorker().opExecutors![0] as ExecOpExecutor;
  return {
    dir,
    root,
    store,
    base,
    executor,
    close: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

type DeepPartial<T> = T extends (infer U)[] ? DeepPartial<U>[] : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;

export interface StepOptions {
  meta?: DeepPartial<pb.Meta>;
  /** Extra mounts after the root mount (input 0 = base, output 0). */
  mounts?: DeepPartial<pb.Mount>[];
  /** Replaces the default root mount. */
  rootMount?: DeepPartial<pb.Mount>;
  network?: pb.NetMode;
  security?: pb.SecurityMode;
  secretenv?: DeepPartial<pb.SecretEnv>[];
  inputs?: OpInput[];
  entitlements?: string[];
  secrets?: Record<string, string>;
  signal?: AbortSignal;
  extraContext?: Record<string, unknown>;
}

export interface StepResult {
  outputs: (Snapshot | null)[];
  stdout: string;
  stderr: string;
  logs: { stream: number; text: string }[];
}

/** Runs one exec op over the base snapshot; rejects like the executor does. */
export async function runStep(h: Harness, script: string | string[], opts: StepOptions = {}): Promise<StepResult> {
  const args = Array.isArray(script) ? script : ['/bin/sh', '-c', script];
  const op = pb.ExecOp.fromPartial(<DeepPartial<pb.ExecOp>>{
    meta: { args, env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], cwd: '/', ...opts.meta },
    mounts: [opts.rootMount ?? { input: 0, dest: '/', output: 0 }, ...(opts.mounts ?? [])],
    network: opts.network ?? pb.NetMode.NONE,
    security: opts.security ?? pb.SecurityMode.SANDBOX,
    secretenv: opts.secretenv ?? [],
  } as never);
  const logs: { stream: number; text: string }[] = [];
  const progress: ProgressWriter = {
    log: (stream, msg) => logs.push({ stream, text: typeof msg === 'string' ? msg : Buffer.from(msg).toString() }),
    status: () => {},
    warn: () => {},
  };
  const secrets = opts.secrets ?? {};
  const { ctx: base } = testBuildContext({
    root: h.root,
    snapshotter: h.store.snapshotter,
    content: h.store.content,
    records: h.store.records,
    entitlements: opts.entitlements ?? [],
    secrets: { get: async (id) => (id in secrets ? new TextEncoder().encode(secrets[id]) : null) },
    ...(opts.signal ? { signal: opts.signal } : {}),
    progress,
  });
  const ctx: BuildContext = { ...base, ...opts.extraContext };
  const outputs = await h.executor.run(op, opts.inputs ?? [{ snapshot: h.base }], ctx);
  const text = (s: number) => logs.filter((l) => l.stream === s).map((l) => l.text).join('');
  return { outputs, stdout: text(1), stderr: text(2), logs };
}
