/**
 * A state over a definition already marshalled (Go's `llb.NewDefinitionOp`):
 * a frontend builds on a definition it was given (a Solve's frontend inputs)
 * as on any state. Each op of the definition marshals as it is — the same
 * bytes, so the same digest — with its metadata; the marshal call's
 * constraints (default platform, metadata) do not touch it. Source locations
 * of the given definition are not carried over.
 */
import type { Digest, Platform } from '@bkt/core';
import { BktError } from '@bkt/core';
import * as pb from '@bkt/api/pb';
import { digestOf } from '@bkt/oci';
import { metadataFromPB } from './constraints.js';
import { State } from './state.js';
import { Output, Vertex, type MarshalledVertex } from './vertex.js';

interface DecodedOp {
  digest: Digest;
  bytes: Uint8Array;
  op: pb.Op;
}

/** The ops of one given definition by digest, each made a vertex once it is reached. */
class DefinitionGraph {
  readonly #ops = new Map<string, DecodedOp>();
  readonly #vertices = new Map<string, DefinitionOp>();

  constructor(readonly definition: pb.Definition) {
    definition.def.forEach((bytes, i) => {
      let op: pb.Op;
      try {
        op = pb.Op.decode(bytes);
      } catch (err) {
        throw new BktError('INVALID_DEFINITION', `op ${i} of the definition does not decode: ${(err as Error).message}`);
      }
      const digest = digestOf(bytes);
      this.#ops.set(digest, { digest, bytes, op });
    });
  }

  vertex(digest: string): DefinitionOp {
    let v = this.#vertices.get(digest);
    if (!v) {
      const op = this.#ops.get(digest);
      if (!op) throw new BktError('INVALID_DEFINITION', `the definition names op ${digest} as an input but does not hold it`);
      v = new DefinitionOp(op, this);
      this.#vertices.set(digest, v);
    }
    return v;
  }

  output(input: pb.Input): Output {
    const v = this.vertex(input.digest);
    return new Output(v, () => input.index, v.platform);
  }
}

/** One op of a given definition. */
export class DefinitionOp extends Vertex {
  readonly platform: Platform | undefined;

  constructor(
    private readonly decoded: DecodedOp,
    private readonly graph: DefinitionGraph,
  ) {
    super();
    const p = decoded.op.platform;
    this.platform = p ? { os: p.OS, architecture: p.Architecture, ...(p.Variant ? { variant: p.Variant } : {}) } : undefined;
  }

  inputs(): Output[] {
    return this.decoded.op.inputs.map((input) => this.graph.output(input));
  }

  protected build(): MarshalledVertex {
    const metadata = this.graph.definition.metadata[this.decoded.digest];
    return { digest: this.decoded.digest, bytes: this.decoded.bytes, metadata: metadata ? metadataFromPB(metadata) : {}, sourceLocations: [] };
  }
}

/**
 * The state a marshalled definition returns: the output its last op (the
 * return op) names; scratch for an empty definition. `INVALID_DEFINITION`
 * when an op does not decode, the last op is not a return op, or an input
 * names an op the definition does not hold.
 */
export function fromDefinition(definition: pb.Definition): State {
  if (definition.def.length === 0) return State.fromOutput(null);
  const graph = new DefinitionGraph(definition);
  const ret = pb.Op.decode(definition.def[definition.def.length - 1]!);
  if (ret.op !== undefined || ret.inputs.length !== 1) {
    throw new BktError('INVALID_DEFINITION', 'the definition does not end with a return op (an op with one input and nothing else)');
  }
  return State.fromOutput(graph.output(ret.inputs[0]!));
}
