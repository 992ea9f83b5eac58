/**
 * Loading an LLB `pb.Definition`: decode, digest, link and validate.
 *
 * A vertex digest is `sha256:` + hex sha256 of the op's bytes exactly as they
 * arrived (never re-marshalled), so digests match BuildKit's. The last op is
 * BuildKit's return op: only its first input matters, naming the result.
 * Every error is a `BktError('INVALID_DEFINITION')` naming the op digest.
 */
import * as pb from '@bkt/api/pb';
import { BktError, type Digest, type OpKind, type Platform } from '@bkt/core';
import { digestOf } from '@bkt/oci';

export interface VertexInput {
  vertex: Vertex;
  /** Output index of the input vertex. */
  index: number;
}

export interface Vertex {
  digest: Digest;
  kind: OpKind;
  op: pb.Op;
  inputs: VertexInput[];
  /** Number of outputs the op produces. */
  outputs: number;
  metadata: pb.OpMetadata | undefined;
  /** Display name: `llb.customname`, else derived from the op. */
  name: string;
  platform?: Platform;
}

export interface LoadedDefinition {
  /** Reachable vertices, inputs before the vertices that use them. */
  vertices: Vertex[];
  /** The result (the return op's input), or null for an empty definition. */
  result: VertexInput | null;
  /** Source-mapping info of the definition (for error locations). */
  source: pb.Source | undefined;
}

/** One op as it appeared in the definition. */
export interface RawOp {
  digest: Digest;
  op: pb.Op;
}

export { digestOf };

/** Decodes a marshalled `pb.Definition` and each of its ops. */
export function decodeDefinition(bytes: Uint8Array): { ops: RawOp[]; metadata: Record<string, pb.OpMetadata>; source: pb.Source | undefined } {
  let def: pb.Definition;
  try {
    def = pb.Definition.decode(bytes);
  } catch (err) {
    throw new BktError('INVALID_DEFINITION', `malformed LLB definition: ${(err as Error).message}`, {}, { cause: err });
  }
  const ops = def.def.map((opBytes, i) => {
    const digest = digestOf(opBytes);
    try {
      return { digest, op: pb.Op.decode(opBytes) };
    } catch (err) {
      throw new BktError('INVALID_DEFINITION', `malformed op #${i} (${digest}): ${(err as Error).message}`, { opDigest: digest }, { cause: err });
    }
  });
  return { ops, metadata: def.metadata, source: def.Source };
}

function invalid(digest: string, what: string): BktError {
  return new BktError('INVALID_DEFINITION', `invalid LLB op ${digest}: ${what}`, { opDigest: digest });
}

/** Number of outputs of an op; throws when the op has no kind. */
function outputCount(digest: string, op: pb.Op): number {
  switch (op.op?.$case) {
    case 'exec':
      return op.op.value.mounts.reduce((n, m) => (m.output >= 0 ? Math.max(n, m.output + 1) : n), 0);
    case 'file':
      return op.op.value.actions.reduce((n, a) => (a.output >= 0 ? Math.max(n, a.output + 1) : n), 0);
    case 'source':
    case 'merge':
    case 'diff':
    case 'build':
      return 1;
    default:
      throw invalid(digest, 'unknown op kind (none of exec, source, file, build, merge, diff is set)');
  }
}

/** Checks the indexes an op uses internally (mounts, file actions, merge/diff inputs). */
function checkIndexes(digest: string, op: pb.Op): void {
  const n = op.inputs.length;
  const inRange = (i: number, max: number) => i === -1 || (i >= 0 && i < max);
  switch (op.op?.$case) {
    case 'exec': {
      const exec = op.op.value;
      if (!exec.meta || exec.meta.args.length === 0) throw invalid(digest, 'exec op has no command (meta.args is empty)');
      exec.mounts.forEach((m, j) => {
        if (!inRange(m.input, n)) throw invalid(digest, `mount #${j} (${m.dest}) uses input ${m.input}, but the op has ${n} inputs`);
        if (m.output < -1) throw invalid(digest, `mount #${j} (${m.dest}) has output index ${m.output}`);
      });
      break;
    }
    case 'file': {
      const actions = op.op.value.actions;
      if (actions.length === 0) throw invalid(digest, 'file op has no actions');
      const seenOutputs = new Set<number>();
      actions.forEach((a, j) => {
        // Indexes >= n name the result of an earlier action (n + its index).
        const max = n + j;
        if (!inRange(a.input, max)) throw invalid(digest, `file action #${j} uses input ${a.input}, out of range (0..${max - 1} or -1)`);
        if (a.action?.$case === 'copy' && !inRange(a.secondaryInput, max)) {
          throw invalid(digest, `file action #${j} (copy) uses secondary input ${a.secondaryInput}, out of range (0..${max - 1} or -1)`);
        }
        if (a.output < -1) throw invalid(digest, `file action #${j} has output index ${a.output}`);
        if (a.output >= 0) {
          if (seenOutputs.has(a.output)) throw invalid(digest, `file actions share output index ${a.output}`);
          seenOutputs.add(a.output);
        }
        if (!a.action) throw invalid(digest, `file action #${j} has no action (mkdir, mkfile, rm or copy)`);
        const owner = a.action.$case === 'rm' ? undefined : a.action.value.owner;
        for (const u of [owner?.user, owner?.group]) {
          if (u?.user?.$case === 'byName' && !inRange(u.user.value.input, max)) {
            throw invalid(digest, `file action #${j} resolves owner "${u.user.value.name}" from input ${u.user.value.input}, out of range`);
          }
        }
      });
      break;
    }
    case 'merge': {
      const inputs = op.op.value.inputs;
      if (inputs.length === 0) throw invalid(digest, 'merge op has no inputs');
      inputs.forEach((m, j) => {
        if (m.input < 0 || m.input >= n) throw invalid(digest, `merge input #${j} is ${m.input}, but the op has ${n} inputs`);
      });
      break;
    }
    case 'diff': {
      const d = op.op.value;
      for (const [side, ref] of [['lower', d.lower], ['upper', d.upper]] as const) {
        if (ref && !inRange(ref.input, n)) throw invalid(digest, `diff ${side} is input ${ref.input}, but the op has ${n} inputs`);
      }
      break;
    }
    case 'source':
      if (!op.op.value.identifier) throw invalid(digest, 'source op has an empty identifier');
      if (n > 0) throw invalid(digest, 'source op has inputs');
      break;
    default:
      break;
  }
}

/**
 * Links ops by digest into vertices reachable from the return op (the last
 * op), checking inputs exist, output indexes are in range, and there is no cycle.
 */
export function buildGraph(ops: RawOp[], metadata: Record<string, pb.OpMetadata> = {}, source?: pb.Source): LoadedDefinition {
  if (ops.length === 0) return { vertices: [], result: null, source };
  const byDigest = new Map<string, RawOp>();
  for (const raw of ops) byDigest.set(raw.digest, raw);
  const ret = ops[ops.length - 1];
  if (ret.op.op !== undefined || ret.op.inputs.length !== 1) {
    throw invalid(ret.digest, 'the last op of a definition must be a return op (no op, exactly one input)');
  }

  const vertices: Vertex[] = [];
  const done = new Map<string, Vertex>();
  const visiting = new Set<string>();

  /** Checks an op and starts its frame; its inputs are linked as the walk returns from them. */
  const enter = (digest: string, from: string): Frame => {
    if (visiting.has(digest)) throw invalid(digest, `cycle: the op is its own (indirect) input (reached again from ${from})`);
    const raw = byDigest.get(digest);
    if (!raw) throw invalid(from, `input ${digest} is not in the definition`);
    visiting.add(digest);
    const outputs = outputCount(digest, raw.op);
    checkIndexes(digest, raw.op);
    return { raw, outputs, inputs: [] };
  };
  /** The vertex of a frame whose inputs are all linked. */
  const finish = ({ raw, outputs, inputs }: Frame): Vertex => {
    visiting.delete(raw.digest);
    const meta = metadata[raw.digest];
    const v: Vertex = {
      digest: raw.digest,
      kind: raw.op.op!.$case,
      op: raw.op,
      inputs,
      outputs,
      metadata: meta,
      name: meta?.description?.['llb.customname'] || vertexName(raw.op),
      platform: toPlatform(raw.op.platform),
    };
    done.set(raw.digest, v);
    vertices.push(v);
    return v;
  };
  /** Links input `j` of a frame to its vertex. */
  const link = (f: Frame, vertex: Vertex): void => {
    const j = f.inputs.length;
    const inp = f.raw.op.inputs[j];
    if (inp.index < 0 || inp.index >= vertex.outputs) {
      throw invalid(f.raw.digest, `input #${j} asks for output ${inp.index} of ${inp.digest}, which has ${vertex.outputs} outputs`);
    }
    f.inputs.push({ vertex, index: inp.index });
  };

  // Depth-first from the result, inputs in order; iterative (a stack of
  // frames), so chains of any depth fit on the call stack.
  const input = ret.op.inputs[0];
  let vertex: Vertex | undefined;
  const frames: Frame[] = [enter(input.digest, ret.digest)];
  while (frames.length > 0) {
    const top = frames[frames.length - 1];
    const next = top.raw.op.inputs[top.inputs.length];
    if (next) {
      const known = done.get(next.digest);
      if (known) link(top, known);
      else frames.push(enter(next.digest, top.raw.digest));
      continue;
    }
    frames.pop();
    vertex = finish(top);
    if (frames.length > 0) link(frames[frames.length - 1], vertex);
  }
  if (input.index < 0 || input.index >= vertex!.outputs) {
    throw invalid(ret.digest, `the result is output ${input.index} of ${input.digest}, which has ${vertex!.outputs} outputs`);
  }
  return { vertices, result: { vertex: vertex!, index: input.index }, source };
}

/** An op being linked: its inputs linked so far. */
interface Frame {
  raw: RawOp;
  outputs: number;
  inputs: VertexInput[];
}

/** Decodes and validates a marshalled definition (no plugin checks: see `Build`). */
export function loadDefinition(bytes: Uint8Array): LoadedDefinition {
  const { ops, metadata, source } = decodeDefinition(bytes);
  return buildGraph(ops, metadata, source);
}

function toPlatform(p: pb.Platform | undefined): Platform | undefined {
  if (!p || (!p.OS && !p.Architecture)) return undefined;
  const out: Platform = { os: p.OS, architecture: p.Architecture };
  if (p.Variant) out.variant = p.Variant;
  if (p.OSVersion) out.osVersion = p.OSVersion;
  if (p.OSFeatures.length) out.osFeatures = p.OSFeatures;
  return out;
}

/** A name like BuildKit's for an op without `llb.customname`. */
export function vertexName(op: pb.Op): string {
  switch (op.op?.$case) {
    case 'source':
      return op.op.value.identifier;
    case 'exec':
      return op.op.value.meta?.args.join(' ') ?? 'exec';
    case 'file':
      return op.op.value.actions.map(fileActionName).join(', ');
    case 'merge':
      return `merge (${op.op.value.inputs.length} inputs)`;
    case 'diff':
      return 'diff';
    case 'build':
      return 'build';
    default:
      return 'unknown';
  }
}

function fileActionName(a: pb.FileAction): string {
  switch (a.action?.$case) {
    case 'mkdir':
      return `mkdir ${a.action.value.path}`;
    case 'mkfile':
      return `mkfile ${a.action.value.path}`;
    case 'rm':
      return `rm ${a.action.value.path}`;
    case 'copy':
      return `copy ${a.action.value.src} ${a.action.value.dest}`;
    default:
      return 'file';
  }
}
