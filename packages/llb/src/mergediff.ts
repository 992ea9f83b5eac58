import { addCap, constraintsFrom, marshalConstraints, type Constraints, type OpOptions } from './constraints.js';
import { State } from './state.js';
import { Output, Vertex, type MarshalContext, type MarshalledVertex } from './vertex.js';

/** MergeOp: the inputs' layers stacked in order (Go's `llb.MergeOp`). */
export class MergeOp extends Vertex {
  readonly output: Output;

  constructor(
    private readonly sources: Output[],
    private readonly constraints: Constraints,
  ) {
    super();
    this.output = new Output(this);
  }

  inputs(): Output[] {
    return [...this.sources];
  }

  protected build(ctx: MarshalContext): MarshalledVertex {
    const { op, metadata } = marshalConstraints(ctx.constraints, this.constraints);
    op.platform = undefined; // a merge op is not platform-specific
    const inputs = this.sources.map((o, i) => {
      op.inputs.push(o.toInput(ctx));
      return { input: i };
    });
    op.op = { $case: 'merge', value: { inputs } };
    return Vertex.encode(op, metadata, this.constraints.sourceLocations);
  }
}

/**
 * The states' filesystems stacked in order, later ones winning (Go's
 * `llb.Merge`). Scratch inputs are dropped; one input left is returned as is.
 */
export function merge(states: State[], opts: OpOptions = {}): State {
  const inputs = states.filter((s) => s.output !== null);
  if (inputs.length === 0) return State.fromOutput(null);
  if (inputs.length === 1) return inputs[0];
  const c = constraintsFrom(opts);
  addCap(c.metadata, 'mergeop');
  return inputs[0].withOutput(new MergeOp(inputs.map((s) => s.output!), c).output);
}

/** DiffOp: the changes that turn `lower` into `upper` (Go's `llb.DiffOp`). */
export class DiffOp extends Vertex {
  readonly output: Output;

  constructor(
    private readonly lower: Output | null,
    private readonly upper: Output | null,
    private readonly constraints: Constraints,
  ) {
    super();
    this.output = new Output(this);
  }

  inputs(): Output[] {
    return [this.lower, this.upper].filter((o): o is Output => o !== null);
  }

  protected build(ctx: MarshalContext): MarshalledVertex {
    const { op, metadata } = marshalConstraints(ctx.constraints, this.constraints);
    op.platform = undefined; // a diff op is not platform-specific
    const lower = { input: this.lower ? op.inputs.push(this.lower.toInput(ctx)) - 1 : -1 };
    const upper = { input: this.upper ? op.inputs.push(this.upper.toInput(ctx)) - 1 : -1 };
    op.op = { $case: 'diff', value: { lower, upper } };
    return Vertex.encode(op, metadata, this.constraints.sourceLocations);
  }
}

/**
 * The changes from `lower` to `upper` as a filesystem (Go's `llb.Diff`), so
 * that `merge([lower, diff(lower, upper)])` equals `upper`. A scratch `lower`
 * gives `upper` itself.
 */
export function diff(lower: State, upper: State, opts: OpOptions = {}): State {
  if (lower.output === null) return upper.output === null ? State.fromOutput(null) : upper;
  const c = constraintsFrom(opts);
  addCap(c.metadata, 'diffop');
  return lower.withOutput(new DiffOp(lower.output, upper.output, c).output);
}
