/**
 * Test helpers (not exported from the package): a minimal definition builder
 * and small plugins standing in for real sources and ops, instrumented to
 * count executions.
 */
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, expect } from 'vitest';
import * as pb from '@bkt/api/pb';
import type { BktPlugin, BuildContext, FileStat, OpExecutor, Snapshot, Source, SourceIdentifier } from '@bkt/core';
import { BktError, createBkt } from '@bkt/core';
import { mountsUnder } from '@bkt/fsutil';
import type { Solver } from './api.js';
import { digestOf } from './definition.js';
import { openSolver } from './solver.js';

/** Builds a `pb.Definition` op by op; `add` returns the op's digest. */
export class DefBuilder {
  readonly #ops: Uint8Array[] = [];
  readonly #digests = new Set<string>();
  readonly metadata: Record<string, pb.OpMetadata> = {};

  add(op: Partial<pb.Op>, meta?: Partial<pb.OpMetadata>): string {
    const bytes = pb.Op.encode(pb.Op.fromPartial(op)).finish();
    const digest = digestOf(bytes);
    if (!this.#digests.has(digest)) {
      this.#digests.add(digest);
      this.#ops.push(bytes);
    }
    if (meta) this.metadata[digest] = pb.OpMetadata.fromPartial(meta);
    return digest;
  }

  source(identifier: string, attrs: Record<string, string> = {}): string {
    return this.add({ op: { $case: 'source', value: { identifier, attrs } } });
  }

  /**
   * A file op of mkfile actions over `base` (null: scratch). Like Go's llb,
   * an unset timestamp is -1 (proto3's 0 would mean the epoch).
   */
  mkfile(base: string | null, files: Record<string, string>, meta?: Partial<pb.OpMetadata>, opts: { mode?: number; timestamp?: number } = {}): string {
    const actions = Object.entries(files).map(([path, data], i) =>
      pb.FileAction.fromPartial({
        input: i === 0 ? (base ? 0 : -1) : (base ? 1 : 0) + i - 1,
        secondaryInput: -1,
        output: i === Object.keys(files).length - 1 ? 0 : -1,
        action: {
          $case: 'mkfile',
          value: pb.FileActionMkFile.fromPartial({ path, mode: opts.mode ?? 0o644, data: Buffer.from(data), timestamp: opts.timestamp ?? -1 }),
        },
      }),
    );
    return this.add({ inputs: base ? [{ digest: base, index: 0 }] : [], op: { $case: 'file', value: { actions } } }, meta);
  }

  /** A file op making directory `path` (with parents) over `base` (null: scratch); unset timestamp is -1 as in Go's llb. */
  mkdir(base: string | null, path: string, opts: { mode?: number; timestamp?: number } = {}): string {
    const action = pb.FileAction.fromPartial({
      input: base ? 0 : -1,
      secondaryInput: -1,
      output: 0,
      action: {
        $case: 'mkdir',
        value: pb.FileActionMkDir.fromPartial({ path, mode: opts.mode ?? 0o755, makeParents: true, timestamp: opts.timestamp ?? -1 }),
      },
    });
    return this.add({ inputs: base ? [{ digest: base, index: 0 }] : [], op: { $case: 'file', value: { actions: [action] } } });
  }

  /**
   * A file op copying `src` of `from` to `dest` over `base`. Unset `mode` and
   * `timestamp` are -1 (keep the source's), as Go's llb writes them: proto3's
   * 0 would mean chmod 000 and the epoch.
   */
  copy(base: string | null, from: string, src: string, dest: string, opts: { mode?: number; timestamp?: number } = {}): string {
    const inputs = base ? [{ digest: base, index: 0 }, { digest: from, index: 0 }] : [{ digest: from, index: 0 }];
    const action = pb.FileAction.fromPartial({
      input: base ? 0 : -1,
      secondaryInput: base ? 1 : 0,
      output: 0,
      action: { $case: 'copy', value: pb.FileActionCopy.fromPartial({ src, dest, mode: opts.mode ?? -1, timestamp: opts.timestamp ?? -1 }) },
    });
    return this.add({ inputs, op: { $case: 'file', value: { actions: [action] } } });
  }

  /** The marshalled definition whose result is output `index` of `result`. */
  build(result: string | null, index = 0): Uint8Array {
    const ops = [...this.#ops];
    if (result) ops.push(pb.Op.encode(pb.Op.fromPartial({ inputs: [{ digest: result, index }] })).finish());
    return pb.Definition.encode(pb.Definition.fromPartial({ def: ops.map((o) => Buffer.from(o)), metadata: this.metadata })).finish();
  }
}

export interface Counters {
  /** Executions by op digest-independent label (`file`, `source:<name>`). */
  runs: Map<string, number>;
  total(): number;
}

export function counters(): Counters {
  const runs = new Map<string, number>();
  return { runs, total: () => [...runs.values()].reduce((a, b) => a + b, 0) };
}

function count(c: Counters, label: string): void {
  c.runs.set(label, (c.runs.get(label) ?? 0) + 1);
}

export interface TestPluginOptions {
  counters?: Counters;
  /** Milliseconds each file op takes (honouring the signal). */
  delayMs?: number;
  /** File ops writing a file with this path fail. */
  failPath?: string;
  /** Called with each file op's context as it starts. */
  onRun?: (ctx: BuildContext) => void;
}

/** Resolves after `ms`; rejects with `CANCELLED` when `signal` aborts first. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new BktError('CANCELLED', 'test op cancelled'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A `file` executor handling mkfile and single-file copy, with content
 * selectors on copy sources (so copies get slow keys), and a `test://NAME`
 * source reading the client directory NAME through the client seam.
 */
export function testPlugin(opts: TestPluginOptions = {}): BktPlugin {
  const c = opts.counters ?? counters();
  const fileExec: OpExecutor<pb.FileOp> = {
    kind: 'file',
    contentSelectors(file, i) {
      const sels = file.actions
        .filter((a) => a.action?.$case === 'copy' && a.secondaryInput === i)
        .map((a) => ({ path: (a.action as { value: pb.FileActionCopy }).value.src }));
      return sels.length ? sels : undefined;
    },
    async run(file, inputs, ctx) {
      count(c, 'file');
      opts.onRun?.(ctx);
      if (opts.delayMs) await sleep(opts.delayMs, ctx.signal);
      const n = inputs.length;
      const first = file.actions[0];
      const base = first.input >= 0 && first.input < n ? inputs[first.input].snapshot : null;
      const mut = await ctx.snapshotter.prepare(base);
      try {
        for (const a of file.actions) {
          if (a.action?.$case === 'mkfile') {
            const p = join(mut.path, a.action.value.path);
            if (a.action.value.path === opts.failPath) throw new BktError('INVALID_ARGUMENT', `refusing to write ${a.action.value.path}`);
            await mkdir(dirname(p), { recursive: true });
            await writeFile(p, a.action.value.data);
            ctx.progress.log(1, `wrote ${a.action.value.path}\n`);
          } else if (a.action?.$case === 'copy') {
            const from = inputs[a.secondaryInput].snapshot!;
            const m = await from.mount();
            try {
              const dest = join(mut.path, a.action.value.dest);
              await mkdir(dirname(dest), { recursive: true });
              await cp(join(m.path, a.action.value.src), dest, { recursive: true });
            } finally {
              await m.release();
            }
          }
        }
        return [await mut.commit()];
      } catch (err) {
        await mut.discard();
        throw err;
      }
    },
  };
  const source: Source = {
    schemes: ['test'],
    identify(scheme, ref, attrs, platform): SourceIdentifier {
      return { scheme, ref, attrs, platform };
    },
    async resolve(id, ctx) {
      const dir = ctx.client.localDir(id.ref);
      if (!dir) throw new BktError('NOT_FOUND', `no local dir "${id.ref}"`);
      // The directory as the client sends it: stat entries, then each regular file's bytes.
      const files = async () => {
        const out: { e: FileStat; data?: Buffer }[] = [];
        for await (const e of dir.stat()) {
          const chunks: Uint8Array[] = [];
          if ((e.mode & 0o170000) === 0o100000) for await (const c of dir.read(e.path)) chunks.push(c);
          out.push({ e, data: (e.mode & 0o170000) === 0o100000 ? Buffer.concat(chunks) : undefined });
        }
        return out;
      };
      return {
        cacheKey: async () => {
          const h = createHash('sha256');
          for (const { e, data } of await files()) h.update(`${e.path} ${e.mode} ${e.linkname ?? ''}\n`).update(data ?? '');
          return { key: `sha256:${h.digest('hex')}` };
        },
        snapshot: async (sctx): Promise<Snapshot> => {
          count(c, `source:${id.ref}`);
          const mut = await sctx.snapshotter.prepare(null, { description: `test://${id.ref}` });
          for (const { e, data } of await files()) {
            const p = join(mut.path, e.path);
            if ((e.mode & 0o170000) === 0o040000) await mkdir(p, { recursive: true });
            else if ((e.mode & 0o170000) === 0o120000) await symlink(e.linkname!, p);
            else if (data) await writeFile(p, data, { mode: e.mode & 0o7777 });
          }
          return mut.commit();
        },
      };
    },
  };
  return { name: 'bkt-plugin-solver-test', opExecutors: [fileExec], sources: [source] };
}

/** The regular files of a snapshot, path → content (empty for null); directories are walked, not listed. */
export async function treeOf(snap: Snapshot | null): Promise<Record<string, string>> {
  if (!snap) return {};
  const m = await snap.mount();
  try {
    const out: Record<string, string> = {};
    const walk = async (rel: string) => {
      for (const e of await readdir(join(m.path, rel), { withFileTypes: true })) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) await walk(r);
        else out[r] = await readFile(join(m.path, r), 'utf8');
      }
    };
    await walk('');
    return out;
  } finally {
    await m.release();
  }
}

/**
 * A solver per test on a fresh temp root: `open(plugins)` opens it; after
 * each test it is closed, the root is checked for leftover mounts and removed.
 */
export function solverPerTest(prefix: string): { readonly root: string; open(plugins: BktPlugin[]): Promise<Solver> } {
  let root = '';
  let solver: Solver | undefined;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), prefix));
  });
  afterEach(async () => {
    await solver?.close();
    solver = undefined;
    expect(await mountsUnder(root)).toEqual([]);
    await rm(root, { recursive: true, force: true });
  });
  return {
    get root() {
      return root;
    },
    async open(plugins) {
      solver = await openSolver({ root, bkt: await createBkt(plugins) });
      return solver;
    },
  };
}
