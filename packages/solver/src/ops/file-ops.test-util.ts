/**
 * Helpers for the ops' tests: a real store (overlay or copy snapshotter) in a
 * temp dir, a BuildContext over it, snapshots made from callbacks, and a
 * readable dump of a snapshot's tree. Not exported from the package.
 */
import { mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as pb from '@bkt/api/pb';
import type { BuildContext, Snapshot } from '@bkt/core';
import { testBuildContext } from '@bkt/core/testing';
import { walk } from '@bkt/fsutil';
import { Store } from '@bkt/store';

export interface TestEnv {
  ctx: BuildContext;
  store: Store;
  dir: string;
  close(): Promise<void>;
}

export async function openTestEnv(kind: 'overlay' | 'copy' = 'overlay'): Promise<TestEnv> {
  const dir = await mkdtemp(path.join(tmpdir(), 'bkt-ops-'));
  const store = await Store.open(path.join(dir, 'store'), kind);
  const { ctx } = testBuildContext({ root: store.root, snapshotter: store.snapshotter, content: store.content, records: store.records });
  return {
    ctx,
    store,
    dir,
    close: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A committed snapshot whose tree `fill` writes (over `parent` when given). */
export async function makeSnapshot(ctx: BuildContext, fill: (dir: string) => Promise<void>, parent: Snapshot | null = null): Promise<Snapshot> {
  const m = await ctx.snapshotter.prepare(parent);
  try {
    await fill(m.path);
  } catch (err) {
    await m.discard();
    throw err;
  }
  return m.commit();
}

export interface EntryDump {
  type: 'dir' | 'file' | 'symlink' | 'other';
  mode: string;
  uid: number;
  gid: number;
  content?: string;
  target?: string;
  mtime?: number;
}

/** The tree of a snapshot (null: scratch) as path → entry (no dir sizes, no times unless `withTimes`). */
export async function dumpTree(snapshot: Snapshot | null, opts: { withTimes?: boolean } = {}): Promise<Record<string, EntryDump>> {
  if (!snapshot) return {};
  const m = await snapshot.mount();
  try {
    return await dumpDir(m.path, opts);
  } finally {
    await m.release();
  }
}

export async function dumpDir(dir: string, opts: { withTimes?: boolean } = {}): Promise<Record<string, EntryDump>> {
  const out: Record<string, EntryDump> = {};
  for await (const e of walk(dir)) {
    const st = e.stat;
    const d: EntryDump = {
      type: st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other',
      mode: (st.mode & 0o7777).toString(8),
      uid: st.uid,
      gid: st.gid,
    };
    if (st.isFile()) d.content = await readFile(e.absPath, 'utf8');
    if (st.isSymbolicLink()) d.target = await readlink(e.absPath);
    if (opts.withTimes && !st.isDirectory()) d.mtime = Math.floor(st.mtimeMs / 1000);
    out[e.path] = d;
  }
  return out;
}

// --- building FileOps -------------------------------------------------------

type Chown = { user?: number | string; group?: number | string; input?: number };

export function chown(c: Chown | undefined): pb.ChownOpt | undefined {
  if (!c) return undefined;
  const opt = (v: number | string | undefined): pb.UserOpt | undefined =>
    v === undefined
      ? undefined
      : typeof v === 'number'
        ? { user: { $case: 'byID', value: v } }
        : { user: { $case: 'byName', value: { name: v, input: c.input ?? 0 } } };
  return { user: opt(c.user), group: opt(c.group) };
}

interface Wiring {
  input?: number;
  secondaryInput?: number;
  output?: number;
}

export function mkdir(p: string, mode = 0o755, o: Partial<Omit<pb.FileActionMkDir, 'owner'>> & { owner?: Chown } & Wiring = {}): pb.FileAction {
  return {
    input: o.input ?? 0,
    secondaryInput: o.secondaryInput ?? -1,
    output: o.output ?? 0,
    action: { $case: 'mkdir', value: { path: p, mode, makeParents: o.makeParents ?? false, owner: chown(o.owner), timestamp: o.timestamp ?? -1 } },
  };
}

export function mkfile(p: string, data: string, mode = 0o644, o: { owner?: Chown; timestamp?: number } & Wiring = {}): pb.FileAction {
  return {
    input: o.input ?? 0,
    secondaryInput: o.secondaryInput ?? -1,
    output: o.output ?? 0,
    action: { $case: 'mkfile', value: { path: p, mode, data: Buffer.from(data), owner: chown(o.owner), timestamp: o.timestamp ?? -1 } },
  };
}

export function rmAction(p: string, o: Partial<pb.FileActionRm> & Wiring = {}): pb.FileAction {
  return {
    input: o.input ?? 0,
    secondaryInput: o.secondaryInput ?? -1,
    output: o.output ?? 0,
    action: { $case: 'rm', value: { path: p, allowNotFound: o.allowNotFound ?? false, allowWildcard: o.allowWildcard ?? false } },
  };
}

export function copy(src: string, dest: string, o: Partial<Omit<pb.FileActionCopy, 'owner'>> & { owner?: Chown } & Wiring = {}): pb.FileAction {
  const { input, secondaryInput, output, owner, ...rest } = o;
  return {
    input: input ?? 0,
    secondaryInput: secondaryInput ?? 1,
    output: output ?? 0,
    action: {
      $case: 'copy',
      value: pb.FileActionCopy.fromPartial({ mode: -1, timestamp: -1, createDestPath: true, ...rest, src, dest, owner: chown(owner) }),
    },
  };
}

/** A FileOp as the executor gets it: round-tripped through the wire format (as part of a `pb.Op`), then unwrapped. */
export function fileOp(actions: pb.FileAction[]): pb.FileOp {
  const op = pb.Op.fromPartial({ op: { $case: 'file', value: { actions } } });
  const decoded = pb.Op.decode(pb.Op.encode(op).finish());
  return (decoded.op as { value: pb.FileOp }).value;
}
