import type { Digest, Platform } from '@bkt/core';
import * as pb from '@bkt/api/pb';
import { digestOf, hostPlatform } from '@bkt/oci';
import { constraintsFrom, mergeMetadata, metadataToPB, type OpMetadata, type OpOptions } from './constraints.js';
import { SourceMapCollector } from './sourcemap.js';
import type { State } from './state.js';
import type { MarshalContext, Output, Vertex } from './vertex.js';

export interface MarshalOptions extends OpOptions {
  /** The platform of ops that set none (default: this machine's, as Go's `platforms.DefaultSpec()`). */
  platform?: Platform | string;
  /** The `local.unique` attr of local sources without a session (unset by default, for determinism). */
  localUniqueId?: string;
}

/**
 * Marshals a state and everything it depends on into a `pb.Definition`, as
 * Go's `State.Marshal`: ops in dependency order (each op after its inputs,
 * inputs visited in order, each op once), then BuildKit's return op: an op
 * with a single input, the state's output. `metadata` has an entry per op
 * digest. Deterministic: the same program gives the same bytes.
 */
export function marshal(state: State, opts: MarshalOptions = {}): pb.Definition {
  const constraints = constraintsFrom(opts);
  constraints.platform ??= hostPlatform();
  if (opts.localUniqueId) constraints.localUniqueId = opts.localUniqueId;
  const ctx: MarshalContext = { constraints, done: new Map() };
  const def: Uint8Array[] = [];
  const metadata = new Map<string, OpMetadata>();
  if (!state.output) return { def: [], metadata: {}, Source: undefined };

  const seenDigests = new Set<string>();
  const seenVertices = new Set<Vertex>();
  const sources = new SourceMapCollector();
  const record = (v: Vertex): void => {
    const m = v.marshal(ctx);
    seenVertices.add(v);
    metadata.set(m.digest, mergeMetadata(metadata.get(m.digest) ?? {}, m.metadata));
    sources.add(m.digest, m.sourceLocations);
    if (seenDigests.has(m.digest)) return;
    def.push(m.bytes);
    seenDigests.add(m.digest);
  };
  // Depth-first, inputs in order before the vertex that reads them. Iterative
  // (a stack of frames), so graphs of any depth fit on the call stack; each
  // vertex marshals after its inputs, so Vertex.marshal never recurses.
  const frames: { vertex: Vertex; inputs: Output[]; next: number }[] = [];
  const enter = (v: Vertex): void => {
    if (!seenVertices.has(v)) frames.push({ vertex: v, inputs: v.inputs(), next: 0 });
  };
  enter(state.output.vertex);
  while (frames.length > 0) {
    const top = frames[frames.length - 1];
    if (top.next < top.inputs.length) {
      enter(top.inputs[top.next++].vertex);
      continue;
    }
    frames.pop();
    if (!seenVertices.has(top.vertex)) record(top.vertex);
  }

  const ret = encodeReturnOp(state.output.toInput(ctx));
  def.push(ret);
  const caps: Record<string, true> = { constraints: true, platform: true };
  for (const m of metadata.values()) {
    if (m.ignoreCache) caps['meta.ignorecache'] = true;
    if (m.description) caps['meta.description'] = true;
    if (m.exportCache !== undefined) caps['meta.exportcache'] = true;
  }
  const retDigest = digestOf(ret);
  metadata.set(retDigest, { ...metadata.get(retDigest), caps });

  const pbMetadata: Record<string, pb.OpMetadata> = {};
  for (const d of [...metadata.keys()].sort()) pbMetadata[d] = metadataToPB(metadata.get(d)!);
  return {
    def: def.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)),
    metadata: pbMetadata,
    Source: sources.toPB((s) => marshal(s, opts)),
  };
}

/** BuildKit's return op: an op with only an input, the definition's result (no platform, no constraints). */
export function encodeReturnOp(input: pb.Input): Uint8Array {
  return pb.Op.encode({ inputs: [input], op: undefined, platform: undefined, constraints: undefined }).finish();
}

/** The encoded `pb.Definition` of a state. */
export function marshalBytes(state: State, opts?: MarshalOptions): Uint8Array {
  return pb.Definition.encode(marshal(state, opts)).finish();
}

/** The digest of the op a definition's return op points at (Go's `Definition.Head`), or undefined when empty. */
export function definitionHead(def: pb.Definition): Digest | undefined {
  const last = def.def[def.def.length - 1];
  if (!last) return undefined;
  return pb.Op.decode(last).inputs[0]?.digest as Digest | undefined;
}
