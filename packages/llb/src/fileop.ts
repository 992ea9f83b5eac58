import { BktError } from '@bkt/core';
import type * as pb from '@bkt/api/pb';
import { addCap, constraintsFrom, marshalConstraints, type Constraints, type OpOptions } from './constraints.js';
import { cleanPath, joinPath, normalizeActionPath } from './paths.js';
import type { State } from './state.js';
import { Output, sameInput, Vertex, type MarshalContext, type MarshalledVertex } from './vertex.js';

/**
 * An owner: `"user:group"` (names or numeric ids, as Go's `WithUser`) or an
 * object. Names resolve in the /etc/passwd and /etc/group of the action's input.
 */
export type Chown = string | { user?: number | string; group?: number | string };

/** A creation time: a Date, or nanoseconds since the epoch as a bigint. */
export type Timestamp = Date | bigint;

export interface MkdirOptions {
  /** Create missing parents (Go's `WithParents(true)`). */
  makeParents?: boolean;
  chown?: Chown;
  createdTime?: Timestamp;
}

export interface MkfileOptions {
  chown?: Chown;
  createdTime?: Timestamp;
}

export interface RmOptions {
  /** Succeed when the path does not exist. */
  allowNotFound?: boolean;
  /** Treat the path as a `filepath.Match` pattern. */
  allowWildcard?: boolean;
}

/** Every `FileActionCopy` field of ops.proto. */
export interface CopyOptions {
  /** Resolve a symlink given as the source path. */
  followSymlink?: boolean;
  /** When the source is a directory, copy its contents, not the directory itself. */
  dirCopyContents?: boolean;
  /** Unpack a source archive into the destination (Dockerfile ADD). */
  attemptUnpackDockerCompatibility?: boolean;
  /** Create missing parents of the destination. */
  createDestPath?: boolean;
  /** The source path may hold `filepath.Match` wildcards. */
  allowWildcard?: boolean;
  /** A wildcard that matches nothing is not an error. */
  allowEmptyWildcard?: boolean;
  chown?: Chown;
  /** Permission bits for the copied files, or a symbolic mode such as `u+x` (`modeStr`). */
  mode?: number | string;
  /** Timestamp of the copied files (`timestamp`). */
  createdTime?: Timestamp;
  /** Alias of `createdTime`, the field's name in ops.proto. */
  timestamp?: Timestamp;
  /** Copy only paths matching one of these patterns. */
  includePatterns?: string[];
  /** Skip paths matching any of these patterns. */
  excludePatterns?: string[];
  /** Replace an existing destination whose type differs from the source instead of failing. */
  alwaysReplaceExistingDestPaths?: boolean;
}

type ActionSpec =
  | { kind: 'mkdir'; path: string; mode: number; opts: MkdirOptions }
  | { kind: 'mkfile'; path: string; mode: number; data: Uint8Array; opts: MkfileOptions }
  | { kind: 'rm'; path: string; opts: RmOptions }
  | { kind: 'copy'; from: State | FileActionWithState; src: string; dest: string; opts: CopyOptions };

/**
 * A chain of file actions (Go's `*llb.FileAction`): start with `mkdir`,
 * `mkfile`, `rm` or `copy`, chain more with the same methods, apply with
 * `state.file(action)`. Each action works on the result of the previous one.
 * Immutable: chaining returns a new action.
 */
export class FileAction {
  /** @internal */
  constructor(
    readonly spec: ActionSpec,
    readonly prev: FileAction | null,
    /** The state the chain is applied to, once bound by `state.file()` or `withState()`. */
    readonly state: State | null = null,
  ) {}

  mkdir(path: string, mode: number, opts: MkdirOptions = {}): FileAction {
    return new FileAction({ kind: 'mkdir', path, mode, opts }, this);
  }

  mkfile(path: string, mode: number, data: string | Uint8Array, opts: MkfileOptions = {}): FileAction {
    return new FileAction({ kind: 'mkfile', path, mode, data: toBytes(data), opts }, this);
  }

  rm(path: string, opts: RmOptions = {}): FileAction {
    return new FileAction({ kind: 'rm', path, opts }, this);
  }

  copy(from: State | FileActionWithState, src: string, dest: string, opts: CopyOptions = {}): FileAction {
    return new FileAction({ kind: 'copy', from, src, dest, opts }, this);
  }

  /**
   * This chain applied to `state`, usable as the source of a `copy` in
   * another chain: all those actions then run in one FileOp (Go's `WithState`).
   */
  withState(state: State): FileActionWithState {
    return new FileActionWithState(this.bind(state));
  }

  /** @internal A copy of the chain with every action bound to `state`. */
  bind(state: State): FileAction {
    // Rebuilt from the first action on, iteratively: chains of any length fit on the stack.
    const chain: FileAction[] = [];
    for (let a: FileAction | null = this; a; a = a.prev) chain.push(a);
    let bound: FileAction | null = null;
    for (let i = chain.length - 1; i >= 0; i--) bound = new FileAction(chain[i].spec, bound, state);
    return bound!;
  }
}

/** A file action chain bound to a state, as a copy source. */
export class FileActionWithState {
  constructor(readonly action: FileAction) {}
}

function toBytes(data: string | Uint8Array): Uint8Array {
  return typeof data === 'string' ? new TextEncoder().encode(data) : data;
}

/** Creates a directory (Go's `llb.Mkdir`); `mode` is masked to permission bits. */
export function mkdir(path: string, mode: number, opts: MkdirOptions = {}): FileAction {
  return new FileAction({ kind: 'mkdir', path, mode, opts }, null);
}

/** Creates a file with `data` (Go's `llb.Mkfile`). */
export function mkfile(path: string, mode: number, data: string | Uint8Array, opts: MkfileOptions = {}): FileAction {
  return new FileAction({ kind: 'mkfile', path, mode, data: toBytes(data), opts }, null);
}

/** Removes a path (Go's `llb.Rm`). */
export function rm(path: string, opts: RmOptions = {}): FileAction {
  return new FileAction({ kind: 'rm', path, opts }, null);
}

/**
 * Copies `src` of `from` to `dest` of the state the action applies to (Go's
 * `llb.Copy`). A relative `src` resolves against `from`'s working dir, a
 * relative `dest` against the target state's; a trailing `/` on `dest` means
 * "into this directory".
 */
export function copy(from: State | FileActionWithState, src: string, dest: string, opts: CopyOptions = {}): FileAction {
  return new FileAction({ kind: 'copy', from, src, dest, opts }, null);
}

function parseId(v: string): number | undefined {
  if (v === 'root') return 0;
  return /^-?\d+$/.test(v) && Math.abs(Number(v)) <= 0x7fffffff ? Number(v) : undefined;
}

function userOpt(v: number | string | undefined, base: number): pb.UserOpt | undefined {
  if (v === undefined || v === '') return undefined;
  const id = typeof v === 'number' ? v : parseId(v);
  if (id !== undefined) {
    if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) {
      throw new BktError('INVALID_ARGUMENT', `chown: invalid id ${v}`, { attribute: 'chown' });
    }
    return { user: { $case: 'byID', value: id } };
  }
  return { user: { $case: 'byName', value: { name: String(v), input: base } } };
}

/** Go's `ChownOpt.marshal`: names refer to the action's own input (`base`). */
function chownOpt(chown: Chown | undefined, base: number): pb.ChownOpt | undefined {
  if (chown === undefined) return undefined;
  if (typeof chown === 'string') {
    const colon = chown.indexOf(':');
    const user = colon < 0 ? chown : chown.slice(0, colon);
    const group = colon < 0 ? undefined : chown.slice(colon + 1);
    return { user: userOpt(user, base), group: userOpt(group, base) };
  }
  return { user: userOpt(chown.user, base), group: userOpt(chown.group, base) };
}

/** Nanoseconds since the epoch, -1 when unset (Go's `marshalTime`). Encoded as a decimal string to keep int64 precision. */
function marshalTime(t: Timestamp | undefined): number {
  if (t === undefined) return -1;
  const ns = typeof t === 'bigint' ? t : BigInt(t.getTime()) * 1_000_000n;
  // The wire writer takes int64 as number | string | bigint; a string keeps every digit.
  return ns.toString() as unknown as number;
}

function checkMode(mode: number, what: string): void {
  if (!Number.isInteger(mode) || mode < 0) {
    throw new BktError('INVALID_ARGUMENT', `${what}: invalid mode ${mode}`, { attribute: 'mode' });
  }
}

function toProtoAction(spec: ActionSpec, parent: string, base: number): pb.FileAction['action'] {
  switch (spec.kind) {
    case 'mkdir':
      checkMode(spec.mode, `mkdir ${spec.path}`);
      return {
        $case: 'mkdir',
        value: {
          path: normalizeActionPath(parent, spec.path, false),
          mode: spec.mode & 0o777,
          makeParents: spec.opts.makeParents ?? false,
          owner: chownOpt(spec.opts.chown, base),
          timestamp: marshalTime(spec.opts.createdTime),
        },
      };
    case 'mkfile':
      checkMode(spec.mode, `mkfile ${spec.path}`);
      return {
        $case: 'mkfile',
        value: {
          path: normalizeActionPath(parent, spec.path, false),
          mode: spec.mode & 0o777,
          data: Buffer.from(spec.data),
          owner: chownOpt(spec.opts.chown, base),
          timestamp: marshalTime(spec.opts.createdTime),
        },
      };
    case 'rm':
      return {
        $case: 'rm',
        value: {
          path: normalizeActionPath(parent, spec.path, false),
          allowNotFound: spec.opts.allowNotFound ?? false,
          allowWildcard: spec.opts.allowWildcard ?? false,
        },
      };
    case 'copy': {
      const o = spec.opts;
      const fromState = spec.from instanceof FileActionWithState ? spec.from.action.state : spec.from;
      let src = cleanPath(spec.src);
      if (!src.startsWith('/')) src = joinPath(fromState?.getDir() || '/', src);
      if (typeof o.mode === 'number') checkMode(o.mode, `copy ${spec.src}`);
      return {
        $case: 'copy',
        value: {
          src,
          dest: normalizeActionPath(parent, spec.dest, true),
          owner: chownOpt(o.chown, base),
          mode: typeof o.mode === 'number' ? o.mode : -1,
          followSymlink: o.followSymlink ?? false,
          dirCopyContents: o.dirCopyContents ?? false,
          attemptUnpackDockerCompatibility: o.attemptUnpackDockerCompatibility ?? false,
          createDestPath: o.createDestPath ?? false,
          allowWildcard: o.allowWildcard ?? false,
          allowEmptyWildcard: o.allowEmptyWildcard ?? false,
          timestamp: marshalTime(o.createdTime ?? o.timestamp),
          includePatterns: [...(o.includePatterns ?? [])],
          excludePatterns: [...(o.excludePatterns ?? [])],
          alwaysReplaceExistingDestPaths: o.alwaysReplaceExistingDestPaths ?? false,
          modeStr: typeof o.mode === 'string' ? o.mode : '',
        },
      };
    }
  }
}

/** The bookkeeping of one action while a FileOp marshals (Go's `fileActionState`). */
interface ActionState {
  fa: FileAction;
  /** Index of the action's own state in the op's inputs, -1 for scratch. */
  base: number;
  input: number;
  inputRelative?: ActionState;
  input2: number;
  input2Relative?: ActionState;
  target: number;
}

/** FileOp: a chain of file actions run as one op (Go's `llb.FileOp`). */
export class FileOp extends Vertex {
  readonly output: Output;
  private readonly action: FileAction;
  private readonly constraints: Constraints;

  constructor(state: State, action: FileAction, opts: OpOptions) {
    super();
    this.action = action.bind(state);
    this.constraints = constraintsFrom(opts);
    this.output = new Output(this);
  }

  inputs(): Output[] {
    const seen = new Set<Output>();
    // Walks the action chain from the last action back; the chain of a copy's
    // source action is walked before the rest of this chain. Iterative, so
    // chains of any length fit on the stack.
    const pending: (FileAction | null)[] = [this.action];
    while (pending.length > 0) {
      const a = pending.pop();
      if (!a) continue;
      if (a.state?.output) seen.add(a.state.output);
      pending.push(a.prev);
      if (a.spec.kind === 'copy') {
        if (a.spec.from instanceof FileActionWithState) pending.push(a.spec.from.action);
        else if (a.spec.from.output) seen.add(a.spec.from.output);
      }
    }
    return [...seen];
  }

  protected build(ctx: MarshalContext): MarshalledVertex {
    const c: Constraints = { ...this.constraints, metadata: { ...this.constraints.metadata } };
    addCap(c.metadata, 'file.base');
    const { op, metadata } = marshalConstraints(ctx.constraints, c);
    op.platform = undefined; // a file op is not platform-specific
    const visited = new Map<FileAction, ActionState>();
    const actions: ActionState[] = [];

    const addInput = (o: Output): number => {
      const inp = o.toInput(ctx);
      const i = op.inputs.findIndex((x) => sameInput(x, inp));
      if (i >= 0) return i;
      op.inputs.push(inp);
      return op.inputs.length - 1;
    };

    // Numbers the actions: an action after its previous action and after the
    // action it copies from, each once; inputs in the order they are met.
    // Iterative (a stack of frames), so chains of any length fit on the stack.
    type Frame = { fa: FileAction; step: 'prev' | 'own' | 'done'; st?: ActionState };
    const frames: Frame[] = [{ fa: this.action, step: 'prev' }];
    let returned: ActionState | undefined; // the state of the frame that finished last
    while (frames.length > 0) {
      const f = frames[frames.length - 1];
      if (f.step === 'prev') {
        const known = visited.get(f.fa);
        if (known) {
          frames.pop();
          returned = known;
          continue;
        }
        f.step = 'own';
        returned = undefined;
        if (f.fa.prev) {
          frames.push({ fa: f.fa.prev, step: 'prev' });
          continue;
        }
      }
      if (f.step === 'own') {
        const prev = returned;
        const st: ActionState = { fa: f.fa, base: -1, input: -1, input2: -1, target: 0 };
        const source = f.fa.state?.output;
        if (source) st.base = addInput(source);
        if (prev) st.inputRelative = prev;
        else st.input = st.base;
        f.st = st;
        f.step = 'done';
        if (f.fa.spec.kind === 'copy') {
          const from = f.fa.spec.from;
          if (from instanceof FileActionWithState) {
            frames.push({ fa: from.action, step: 'prev' });
            continue;
          }
          if (from.output) st.input2 = addInput(from.output);
        }
        returned = undefined;
      }
      const st = f.st!;
      if (f.fa.spec.kind === 'copy' && f.fa.spec.from instanceof FileActionWithState) st.input2Relative = returned;
      st.target = actions.length;
      visited.set(f.fa, st);
      actions.push(st);
      frames.pop();
      returned = st;
    }

    const index = (input: number, relative?: ActionState) => (relative ? op.inputs.length + relative.target : input);
    const fileActions: pb.FileAction[] = actions.map((st, i) => {
      const o = st.fa.spec.kind === 'copy' ? st.fa.spec.opts : undefined;
      if (o) {
        if (o.includePatterns?.length || o.excludePatterns?.length) addCap(metadata, 'file.copy.includeexcludepatterns');
        if (o.alwaysReplaceExistingDestPaths) addCap(metadata, 'file.copy.alwaysreplaceexistingdestpaths');
        if (typeof o.mode === 'string') addCap(metadata, 'file.copy.modestring');
      }
      if (st.fa.spec.kind === 'rm' && st.fa.spec.opts.allowWildcard) addCap(metadata, 'file.rm.wildcard');
      return {
        input: index(st.input, st.inputRelative),
        secondaryInput: index(st.input2, st.input2Relative),
        output: i + 1 === actions.length ? 0 : -1,
        action: toProtoAction(st.fa.spec, st.fa.state?.getDir() ?? '', st.base),
      };
    });
    op.op = { $case: 'file', value: { actions: fileActions } };
    return Vertex.encode(op, metadata, c.sourceLocations);
  }
}
