import { BktError, type Digest, type Pacer, type Platform } from '@bkt/core';
import * as pb from '@bkt/api/pb';
import { digestOf, hostPlatform } from '@bkt/oci';
import { constraintsFrom, mergeMetadata, metadataToPB, type OpMetadata, type OpOptions } from './constraints.js';
import { SourceMapCollector } from './sourcemap.js';
import type { State } from './state.js';
import type { MarshalContext, MarshalledVertex, Output, Vertex } from './vertex.js';

export interface MarshalOptions extends OpOptions {
  /** The platform of ops that set none (default: this machine's, as Go's `platforms.DefaultSpec()`). */
  platform?: Platform | string;
  /** The `local.unique` attr of local sources without a session (unset by default, for determinism). */
  localUniqueId?: string;
  /** The most bytes the encoded ops may take (default `MAX_DEFINITION_BYTES`). */
  maxBytes?: number;
}

/**
 * The default bound of a marshalled definition's ops, 512 MiB. A definition
 * is held in memory whole (and encoded once more as one protobuf message), so
 * it must stay well below what a process can hold; real definitions are
 * kilobytes to a few megabytes (BuildKit's own client sends them in one gRPC
 * message, at most 16 MiB by default), so a definition 32 times that is
 * generous and one past it is a runaway (every exec op repeating a huge
 * environment), refused before it exhausts memory.
 */
export const MAX_DEFINITION_BYTES = 512 * 1024 * 1024;

/**
 * Marshals a state and everything it depends on into a `pb.Definition`, as
 * Go's `State.Marshal`: ops in dependency order (each op after its inputs,
 * inputs visited in order, each op once), then BuildKit's return op: an op
 * with a single input, the state's output. `metadata` has an entry per op
 * digest. Deterministic: the same program gives the same bytes.
 */
export function marshal(state: State, opts: MarshalOptions = {}): pb.Definition {
  return runSteps(marshalSteps(state, opts));
}

/**
 * `marshal` that pauses with `pacer` between ops (and throws its signal's
 * reason once aborted): for definitions large enough that encoding them
 * would keep a process from answering signals.
 */
export async function marshalPaced(state: State, opts: MarshalOptions, pacer: Pacer): Promise<pb.Definition> {
  const steps = marshalSteps(state, opts);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (pacer.due()) await pacer.pause();
  }
}

function runSteps<T>(steps: Generator<void, T, void>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** The work of `marshal`, yielding after each op. */
function* marshalSteps(state: State, opts: MarshalOptions): Generator<void, pb.Definition, void> {
  const constraints = constraintsFrom(opts);
  constraints.platform ??= hostPlatform();
  if (opts.localUniqueId) constraints.localUniqueId = opts.localUniqueId;
  const ctx: MarshalContext = { constraints, done: new Map() };
  const def: Uint8Array[] = [];
  const metadata = new Map<string, OpMetadata>();
  if (!state.output) return { def: [], metadata: {}, Source: undefined };

  const maxBytes = opts.maxBytes ?? MAX_DEFINITION_BYTES;
  let bytes = 0;
  const seenDigests = new Set<string>();
  const seenVertices = new Set<Vertex>();
  const sources = new SourceMapCollector();
  const record = (v: Vertex): void => {
    const m = v.marshal(ctx);
    seenVertices.add(v);
    metadata.set(m.digest, mergeMetadata(metadata.get(m.digest) ?? {}, m.metadata));
    sources.add(m.digest, m.sourceLocations);
    if (seenDigests.has(m.digest)) return;
    bytes += m.bytes.byteLength;
    if (bytes > maxBytes) throw definitionTooLarge(maxBytes, m);
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
    if (!seenVertices.has(top.vertex)) {
      record(top.vertex);
      yield;
    }
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

/** The error for a definition past `maxBytes`: names the op that passed it, and its first source location as file and line. */
function definitionTooLarge(maxBytes: number, op: MarshalledVertex): BktError {
  const name = op.metadata.description?.['llb.customname'];
  const at = op.sourceLocations[0];
  const line = at?.ranges[0]?.start.line;
  return new BktError(
    'INVALID_DEFINITION',
    `the definition is larger than ${maxBytes / (1024 * 1024)} MiB (${maxBytes} bytes), the limit of a marshalled definition, at op ${op.digest}${name ? ` (${name})` : ''}`,
    { opDigest: op.digest, ...(at ? { file: at.sourceMap.filename } : {}), ...(line !== undefined ? { line } : {}) },
  );
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
