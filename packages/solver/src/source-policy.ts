/**
 * A solve request's source policy (`SolveRequest.sourcePolicy`) over the
 * definitions a build loads — the request's own and every one a frontend
 * solves — and the images a frontend resolves configs of, as BuildKit's
 * llbsolver applies a Solve's SourcePolicy: for each source op the policy
 * decides; `deny` fails the build naming the source, `convert` replaces its
 * identifier (and attrs, when given). A converted op is re-marshalled, so it
 * gets a new digest, and the inputs naming it are rewritten (as BuildKit's
 * loader); its metadata and source locations move with it.
 */
import { createHash } from 'node:crypto';
import * as pb from '@bkt/api/pb';
import { BktError, type SourcePolicyDecision } from '@bkt/core';
import type { SourcePolicy } from './api.js';

/** The error of a source the policy denies; `opDigest` when it is an op of a definition (a frontend names its source line). */
export function deniedSource(identifier: string, decision: Extract<SourcePolicyDecision, { action: 'deny' }>, opDigest?: string): BktError {
  const why = decision.reason ? ` (${decision.reason})` : '';
  return new BktError('PERMISSION_DENIED', `source ${identifier} denied by the build's source policy${why}`, {
    attribute: 'SourcePolicy',
    ...(opDigest ? { opDigest } : {}),
  });
}

/** The marshalled definition `bytes` with `policy` applied to its source ops (the same bytes when nothing changed). */
export async function applySourcePolicy(bytes: Uint8Array, policy: SourcePolicy): Promise<Uint8Array> {
  let definition: pb.Definition;
  try {
    definition = pb.Definition.decode(bytes);
  } catch {
    // The loader names what does not decode.
    return bytes;
  }
  const renamed = new Map<string, string>();
  const ops: Buffer[] = [];
  for (const opBytes of definition.def) {
    let op: pb.Op;
    try {
      op = pb.Op.decode(opBytes);
    } catch {
      return bytes;
    }
    let changed = false;
    if (op.op?.$case === 'source') {
      const src = op.op.value;
      const decision = await policy({ identifier: src.identifier, attrs: { ...src.attrs } });
      if (decision?.action === 'deny') throw deniedSource(src.identifier, decision, digestOf(opBytes));
      if (decision?.action === 'convert') {
        src.identifier = decision.identifier;
        if (decision.attrs) src.attrs = { ...decision.attrs };
        changed = true;
      }
    }
    for (const input of op.inputs) {
      const to = renamed.get(input.digest);
      if (to) {
        input.digest = to;
        changed = true;
      }
    }
    if (!changed) {
      ops.push(opBytes);
      continue;
    }
    const out = Buffer.from(pb.Op.encode(op).finish());
    renamed.set(digestOf(opBytes), digestOf(out));
    ops.push(out);
  }
  if (renamed.size === 0) return bytes;
  const rekey = <T>(byDigest: Record<string, T>): Record<string, T> => Object.fromEntries(Object.entries(byDigest).map(([d, v]) => [renamed.get(d) ?? d, v]));
  const source = definition.Source ? { ...definition.Source, locations: rekey(definition.Source.locations) } : undefined;
  return pb.Definition.encode({ ...definition, def: ops, metadata: rekey(definition.metadata), Source: source }).finish();
}

function digestOf(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}
