/**
 * The FileOp executor (op kind `file`). A FileOp is a small graph of actions
 * (mkdir, mkfile, rm, copy) run on snapshots, indexed as in BuildKit's
 * `FileOpSolver`:
 *
 * - indexes `0 … inputs-1` are the op's inputs; index `inputs + i` is the
 *   result of action `i`; `-1` means scratch (an empty tree);
 * - an action's `input` is the tree it modifies, `secondaryInput` the tree a
 *   copy reads from, `NamedUserOpt.input` the tree whose `/etc/passwd` and
 *   `/etc/group` name owners;
 * - an action's `output` (`-1`: none) is the op output it produces; outputs
 *   must be exactly `0 … n-1`.
 *
 * A result used by exactly one later action (and not an output) is handed
 * over as a writable tree without being committed, so a chain of actions
 * costs one snapshot.
 */
import type { BuildContext, ContentSelector, Mounted, MutableSnapshot, OpExecutor, OpInput, Snapshot } from '@bkt/core';
import { BktError } from '@bkt/core';
import type * as pb from '@bkt/api/pb';
import { mkdirAction, mkfileAction, rmAction } from './actions.js';
import { copyAction } from './copy.js';
import { CopyReuse } from './reuse.js';
import { resolveOwner } from './owner.js';
import { execFile } from 'node:child_process';
import { lstatSync, readdirSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';

function describe(a: pb.FileAction): string {
  switch (a.action?.$case) {
    case 'copy':
      return `copy "${a.action.value.src}" -> "${a.action.value.dest}"`;
    case 'mkdir':
      return `mkdir "${a.action.value.path}"`;
    case 'mkfile':
      return `mkfile "${a.action.value.path}"`;
    case 'rm':
      return `rm "${a.action.value.path}"`;
    default:
      return 'unknown action';
  }
}

function userInputs(a: pb.FileAction): number[] {
  const owner = a.action?.$case === 'copy' || a.action?.$case === 'mkdir' || a.action?.$case === 'mkfile' ? a.action.value.owner : undefined;
  const out: number[] = [];
  for (const u of [owner?.user, owner?.group]) if (u?.user?.$case === 'byName') out.push(u.user.value.input);
  return out;
}

/**
 * Checks the action graph of a FileOp with `numInputs` inputs: indexes in
 * range, no cycle, outputs `0 … n-1` each produced once. Returns, per output,
 * the index of the action result producing it.
 */
export function validateFileOp(fileOp: pb.FileOp, numInputs: number): number[] {
  const actions = fileOp.actions;
  const max = numInputs + actions.length;
  const outs = new Map<number, number>();
  actions.forEach((a, i) => {
    const where = `file action ${i} (${describe(a)})`;
    if (!a.action) throw new BktError('INVALID_DEFINITION', `${where}: no action set`);
    for (const [name, idx] of [['input', a.input], ['secondaryInput', a.secondaryInput]] as const) {
      if (idx < -1 || idx >= max) {
        throw new BktError('INVALID_DEFINITION', `${where}: ${name} index ${idx} out of range (${numInputs} inputs, ${actions.length} actions)`, { attribute: name });
      }
    }
    for (const idx of userInputs(a)) {
      if (idx < 0 || idx >= max) throw new BktError('INVALID_DEFINITION', `${where}: owner input index ${idx} out of range`, { attribute: 'owner' });
    }
    if (a.output !== -1) {
      if (outs.has(a.output)) throw new BktError('INVALID_DEFINITION', `${where}: duplicate output ${a.output}`, { attribute: 'output' });
      outs.set(a.output, numInputs + i);
    }
  });
  if (outs.size === 0) throw new BktError('INVALID_DEFINITION', 'file op has no output');
  const result: number[] = [];
  for (let o = 0; o < outs.size; o++) {
    const idx = outs.get(o);
    if (idx === undefined) throw new BktError('INVALID_DEFINITION', `file op is missing output index ${o}`);
    result.push(idx);
  }
  // Cycles: follow every reference of every action.
  const state = new Map<number, 'visiting' | 'done'>();
  const visit = (idx: number) => {
    if (idx < numInputs) return;
    const s = state.get(idx);
    if (s === 'done') return;
    if (s === 'visiting') throw new BktError('INVALID_DEFINITION', `file action ${idx - numInputs} depends on itself (cycle)`);
    state.set(idx, 'visiting');
    const a = actions[idx - numInputs]!;
    for (const r of [a.input, a.secondaryInput, ...userInputs(a)]) if (r >= 0) visit(r);
    state.set(idx, 'done');
  };
  for (let i = 0; i < actions.length; i++) visit(numInputs + i);
  return result;
}

/** The result of an index while a FileOp runs: a committed snapshot, or a writable tree handed to its one consumer. */
interface Result {
  snapshot?: Snapshot | null;
  mutable?: MutableSnapshot;
}

/** Runs a FileOp's action graph against a snapshotter. */
class FileOpRun {
  readonly #results = new Map<number, Promise<Result>>();
  /** How many actions read each index (as input, secondaryInput or owner names). */
  readonly #uses = new Map<number, number>();
  readonly #outputs: Set<number>;
  readonly #mutables = new Set<MutableSnapshot>();

  constructor(
    readonly fileOp: pb.FileOp,
    readonly inputs: OpInput[],
    readonly ctx: BuildContext,
    outputIndexes: number[],
  ) {
    this.#outputs = new Set(outputIndexes);
    fileOp.actions.forEach((a) => {
      // input and secondaryInput count separately (the same index twice must be committed);
      // owner names read from the action's own input before it changes, so they do not count.
      const refs = [a.input, a.secondaryInput, ...new Set(userInputs(a).filter((u) => u !== a.input))];
      for (const r of refs) if (r >= 0) this.#uses.set(r, (this.#uses.get(r) ?? 0) + 1);
    });
  }

  async run(outputIndexes: number[]): Promise<Snapshot[]> {
    try {
      // Every branch settles before cleanup, so no action still writes into a discarded tree.
      const settled = await Promise.allSettled(outputIndexes.map((idx) => this.#get(idx)));
      const failed = settled.find((r) => r.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      return settled.map((r) => (r as PromiseFulfilledResult<Result>).value.snapshot!);
    } finally {
      // Writable trees nobody consumed (e.g. after a failure) are thrown away.
      await Promise.all([...this.#mutables].map((m) => m.discard().catch(() => {})));
    }
  }

  #get(idx: number): Promise<Result> {
    let p = this.#results.get(idx);
    if (!p) {
      p = idx < this.inputs.length ? Promise.resolve({ snapshot: this.inputs[idx]!.snapshot }) : this.#runAction(idx);
      this.#results.set(idx, p);
    }
    return p;
  }

  /** Commits when the result is an output or read more than once; else keeps it writable. */
  #mustCommit(idx: number): boolean {
    return this.#outputs.has(idx) || (this.#uses.get(idx) ?? 0) > 1;
  }

  async #runAction(idx: number): Promise<Result> {
    const i = idx - this.inputs.length;
    const a = this.fileOp.actions[i]!;
    const releases: (() => Promise<void>)[] = [];
    let target: MutableSnapshot | undefined;
    /** Set while this action has its target mounted itself (an incremental copy). */
    let ownMount: string | undefined;
    let reuse: CopyReuse | undefined;
    try {
      const [base, secondary] = await Promise.all([
        a.input === -1 ? Promise.resolve<Result>({ snapshot: null }) : this.#get(a.input),
        a.secondaryInput === -1 ? Promise.resolve<Result>({ snapshot: null }) : this.#get(a.secondaryInput),
      ]);
      const treeOf = async (r: Result): Promise<string> => {
        if (r.mutable) {
          if (r.mutable !== target) releases.push(() => this.#discard(r.mutable!));
          return r.mutable.path;
        }
        if (!r.snapshot) return emptyDir(this.ctx.root);
        const m: Mounted = await r.snapshot.mount();
        releases.push(() => m.release());
        return m.path;
      };
      const act = a.action!;
      // A copy from a snapshot whose maker knows its files' digests (a local context) into a fresh tree committed right
      // after may link the source's files or take them from its earlier run (reuse.ts); copies from other results
      // (stages) are neither linked nor remembered.
      const source =
        act.$case === 'copy' && !act.value.attemptUnpackDockerCompatibility && this.#mustCommit(idx) && !base.mutable && !secondary.mutable && secondary.snapshot?.contentDigests
          ? secondary.snapshot
          : null;
      let sourceTree: string | undefined;
      /** Where the tree's own files are written (the overlay upper dir when the target is an overlay), for the links. */
      let writtenDir: string | undefined;
      /** Set when the copy writes into `writtenDir` itself, the overlay never mounted (see `writesOnlyNewTopLevel`). */
      let copyRoot: string | undefined;
      if (base.mutable) {
        target = base.mutable; // handed over: this action is its only reader
      } else {
        if (source) {
          sourceTree = await treeOf(secondary);
          reuse = await CopyReuse.forCopy(this.ctx, i, source, sourceTree, base.snapshot ?? null);
        }
        target = await this.ctx.snapshotter.prepare(base.snapshot ?? null, { description: `file action ${i}`, ...(reuse ? { deferMount: true } : {}) });
        this.#mutables.add(target);
        if (reuse) {
          const dm = target.deferredMount;
          writtenDir = dm ? upperDirOf(dm.options) : target.path;
          if (dm && writtenDir && act.$case === 'copy' && userInputs(a).length === 0 && writesOnlyNewTopLevel(dm.options, writtenDir, act.value.dest)) {
            copyRoot = writtenDir;
          } else if (dm) {
            await mountTree(dm, target.path);
            ownMount = target.path;
          }
          if (!writtenDir) {
            await reuse.release();
            reuse = undefined;
          }
        }
      }
      /** The source paths the copy resolved. */
      let copied: string[] = [];
      const ownerTree = async (userIdx: number) => (userIdx === a.input ? target!.path : treeOf(await this.#get(userIdx)));
      switch (act.$case) {
        case 'mkdir':
          await mkdirAction(target.path, act.value, await resolveOwner(act.value.owner, ownerTree));
          break;
        case 'mkfile':
          await mkfileAction(target.path, act.value, await resolveOwner(act.value.owner, ownerTree));
          break;
        case 'rm':
          await rmAction(target.path, act.value);
          break;
        case 'copy': {
          const owner = await resolveOwner(act.value.owner, ownerTree);
          copied = await copyAction(sourceTree ?? (await treeOf(secondary)), copyRoot ?? target.path, act.value, owner, this.ctx.signal, reuse ? { reuse } : {});
          break;
        }
      }
      if (ownMount) {
        await unmountTree(ownMount);
        ownMount = undefined;
      }
      if (reuse && writtenDir) {
        reuse.link(writtenDir);
        // The linked-from snapshots now share those files: a size measured before is stale.
        if (reuse.linkedFrom.size > 0) this.ctx.snapshotter.linkedFrom?.([...reuse.linkedFrom]);
      }
      if (this.#mustCommit(idx)) {
        this.#mutables.delete(target);
        const snapshot = await target.commit();
        if (source) await CopyReuse.remember(this.ctx, i, source, copied, snapshot);
        return { snapshot };
      }
      return { mutable: target };
    } catch (err) {
      throw wrapActionError(err, i, a);
    } finally {
      if (ownMount) await unmountTree(ownMount).catch(() => {});
      await reuse?.release().catch(() => {});
      for (const r of releases) await r().catch(() => {});
    }
  }

  async #discard(m: MutableSnapshot): Promise<void> {
    this.#mutables.delete(m);
    await m.discard();
  }
}

const execFileAsync = promisify(execFile);

/** The upper directory in overlay mount options (`…,upperdir=<dir>,…`), or undefined. */
function upperDirOf(options: string): string | undefined {
  const opt = options.split(',').find((o) => o.startsWith('upperdir='));
  return opt?.slice('upperdir='.length) || undefined;
}

/**
 * Whether a copy to `dest` may write into `upper`, the still empty upper
 * directory of the overlay `options` describes, instead of through the
 * mounted overlay, with the same result: `dest`'s first name is in no lower
 * layer (no entry, no whiteout), so all the copy reads of the tree and all it
 * makes is new, below that name, and the overlay would have written it into
 * the upper directory as is (nothing resolved, replaced, copied up or made
 * opaque); the root it starts from is the upper directory, whose metadata is
 * the overlay root's. The owner of the copy must not be read from the tree
 * (no user or group by name). Anything unusual answers false: the copy then
 * goes through the mounted overlay.
 */
export function writesOnlyNewTopLevel(options: string, upper: string, dest: string): boolean {
  const lowers = options
    .split(',')
    .find((o) => o.startsWith('lowerdir='))
    ?.slice('lowerdir='.length)
    .split(':');
  if (!lowers || lowers.some((d) => !path.isAbsolute(d) || d.includes('\\'))) return false;
  const first = path.posix.normalize(path.posix.join('/', dest)).split('/')[1];
  if (!first || first === '.' || first === '..') return false;
  try {
    if (readdirSync(upper).length > 0) return false;
    for (const d of lowers) {
      if (!lstatSync(d).isDirectory()) return false;
      if (lstatSync(path.join(d, first), { throwIfNoEntry: false }) !== undefined) return false;
    }
  } catch {
    return false;
  }
  return true;
}

/** Mounts a mutable snapshot's deferred mount (see core's `MutableSnapshot.deferredMount`) on `at`. */
async function mountTree(m: { type: string; source: string; options: string }, at: string): Promise<void> {
  try {
    await execFileAsync('mount', ['-t', m.type, m.source, '-o', m.options, at]);
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new BktError('INTERNAL', `mounting the copy's tree on ${at} failed: ${stderr || (err as Error).message}`);
  }
}

async function unmountTree(at: string): Promise<void> {
  try {
    await execFileAsync('umount', [at]);
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new BktError('INTERNAL', `unmounting the copy's tree on ${at} failed: ${stderr || (err as Error).message}`);
  }
}

/**
 * The empty directory standing for scratch as a copy source: `<root>/empty`
 * under the store root, read-only, created on first use (mkdir is idempotent,
 * so concurrent runs need no coordination). Nothing ever writes into it.
 */
async function emptyDir(storeRoot: string): Promise<string> {
  const dir = path.join(storeRoot, 'empty');
  await mkdir(dir, { recursive: true, mode: 0o555 });
  return dir;
}

function wrapActionError(err: unknown, i: number, a: pb.FileAction): unknown {
  const where = `file action ${i} (${describe(a)})`;
  if (err instanceof BktError) {
    if (err.details.action !== undefined) return err; // already names its action
    return new BktError(err.code, `${where}: ${err.message}`, { ...err.details, action: i }, { cause: err });
  }
  const e = err as NodeJS.ErrnoException;
  if (e?.name === 'AbortError' || (e as { code?: string })?.code === 'ABORT_ERR') return err;
  return new BktError('INTERNAL', `${where}: ${e?.message ?? String(err)}`, { action: i }, { cause: err });
}

/**
 * Content selectors of input `i`: the copy sources read from it, when the
 * input is used only as a copy source (not modified, not used for owner
 * names). The solver then keys the op on the checksum of those paths, so a
 * change elsewhere in the input does not re-run it.
 */
export function fileContentSelectors(fileOp: pb.FileOp, inputIndex: number): ContentSelector[] | undefined {
  const selectors: ContentSelector[] = [];
  for (const a of fileOp.actions) {
    if (a.input === inputIndex || userInputs(a).includes(inputIndex)) return undefined;
    if (a.action?.$case === 'copy' && a.secondaryInput === inputIndex) {
      const c = a.action.value;
      const p = path.posix.join('/', c.src);
      const sel: ContentSelector = { path: p };
      if (c.allowWildcard && /[*?[\\]/.test(p)) sel.wildcard = true;
      if (c.followSymlink) sel.followLinks = true;
      if (c.includePatterns.length > 0) sel.includePatterns = [...c.includePatterns];
      if (c.excludePatterns.length > 0) sel.excludePatterns = [...c.excludePatterns];
      if (!selectors.some((s) => JSON.stringify(s) === JSON.stringify(sel))) selectors.push(sel);
    }
  }
  return selectors.length > 0 ? selectors : undefined;
}

export function createFileOpExecutor(): OpExecutor<pb.FileOp> {
  return {
    kind: 'file',
    contentSelectors: fileContentSelectors,
    async run(fileOp: pb.FileOp, inputs: OpInput[], ctx: BuildContext): Promise<(Snapshot | null)[]> {
      const outputIndexes = validateFileOp(fileOp, inputs.length);
      return new FileOpRun(fileOp, inputs, ctx, outputIndexes).run(outputIndexes);
    },
  };
}
