import type { Digest, Platform } from '@bkt/core';
import { BktError } from '@bkt/core';
import * as pb from '@bkt/api/pb';
import { digestOf } from '@bkt/oci';
import type { Constraints, OpMetadata } from './constraints.js';
import type { SourceLocation } from './sourcemap.js';

/** One `marshal()` call: its base constraints and the vertices marshalled so far. */
export interface MarshalContext {
  readonly constraints: Constraints;
  readonly done: Map<Vertex, MarshalledVertex>;
}

export interface MarshalledVertex {
  digest: Digest;
  bytes: Uint8Array;
  metadata: OpMetadata;
  sourceLocations: SourceLocation[];
}

/** An op of the graph (Go's `llb.Vertex`). Marshalling is pure and memoized per marshal call. */
export abstract class Vertex {
  /** The outputs this op reads, in the order Go's marshal visits them. */
  abstract inputs(): Output[];
  /** Builds the op's bytes and metadata; called once per marshal call. */
  protected abstract build(ctx: MarshalContext): MarshalledVertex;

  marshal(ctx: MarshalContext): MarshalledVertex {
    let m = ctx.done.get(this);
    if (!m) {
      m = this.build(ctx);
      ctx.done.set(this, m);
    }
    return m;
  }

  /** Encodes an op and digests it. */
  protected static encode(op: pb.Op, metadata: OpMetadata, sourceLocations: SourceLocation[]): MarshalledVertex {
    const bytes = pb.Op.encode(op).finish();
    return { digest: digestOf(bytes), bytes, metadata, sourceLocations };
  }
}

/**
 * One output of a vertex (Go's `llb.Output`): the vertex and which of its
 * outputs. `error` makes every use of the output fail at marshal time (e.g. a
 * tmpfs mount used as a parent).
 */
export class Output {
  constructor(
    readonly vertex: Vertex,
    private readonly index: () => number = () => 0,
    readonly platform?: Platform,
    readonly error?: string,
  ) {}

  toInput(ctx: MarshalContext): pb.Input {
    if (this.error) throw new BktError('INVALID_DEFINITION', this.error);
    const { digest } = this.vertex.marshal(ctx);
    return { digest, index: this.index() };
  }
}

export function sameInput(a: pb.Input, b: pb.Input): boolean {
  return a.digest === b.digest && a.index === b.index;
}
