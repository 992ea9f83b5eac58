import * as pb from '@bkt/api/pb';
import { digestOf } from '@bkt/oci';
import type { ImageConfigResolver } from './convert.js';

/** One op of a marshalled definition, decoded, with its display name (test helper). */
export interface DecodedOp {
  digest: string;
  op: pb.Op;
  name: string;
  metadata: pb.OpMetadata | undefined;
  lines: number[];
}

export function decodeOps(def: pb.Definition): DecodedOp[] {
  const out: DecodedOp[] = [];
  for (const bytes of def.def.slice(0, -1)) {
    const digest = digestOf(bytes);
    const op = pb.Op.decode(bytes);
    const metadata = def.metadata[digest];
    const lines = (def.Source?.locations[digest]?.locations ?? []).flatMap((l) => l.ranges.map((r) => r.start?.line ?? 0));
    out.push({ digest, op, name: metadata?.description['llb.customname'] ?? '', metadata, lines });
  }
  return out;
}

/** The op whose name contains `text`; throws listing the names otherwise. */
export function opNamed(ops: DecodedOp[], text: string): DecodedOp {
  const found = ops.filter((o) => o.name.includes(text));
  if (found.length !== 1) throw new Error(`${found.length} ops named like "${text}" in: ${ops.map((o) => o.name).join(' | ')}`);
  return found[0];
}

export function execOf(o: DecodedOp): pb.ExecOp {
  if (o.op.op?.$case !== 'exec') throw new Error(`${o.name} is not an exec op`);
  return o.op.op.value;
}

export function fileOf(o: DecodedOp): pb.FileOp {
  if (o.op.op?.$case !== 'file') throw new Error(`${o.name} is not a file op`);
  return o.op.op.value;
}

export function sourceOf(o: DecodedOp): pb.SourceOp {
  if (o.op.op?.$case !== 'source') throw new Error(`${o.name} is not a source op`);
  return o.op.op.value;
}

/** Every op `o` depends on, transitively (digests). */
export function ancestors(ops: DecodedOp[], o: DecodedOp): Set<string> {
  const byDigest = new Map(ops.map((x) => [x.digest, x]));
  const out = new Set<string>();
  const visit = (x: DecodedOp): void => {
    for (const inp of x.op.inputs) {
      if (out.has(inp.digest)) continue;
      out.add(inp.digest);
      const next = byDigest.get(inp.digest);
      if (next) visit(next);
    }
  };
  visit(o);
  return out;
}

/** An image config resolver over fixed configs (a registry's answers, without a registry). */
export function fixedImages(configs: Record<string, object>): ImageConfigResolver & { calls: string[] } {
  const calls: string[] = [];
  const fn = async (ref: string) => {
    calls.push(ref);
    const cfg = configs[ref];
    if (!cfg) throw new Error(`docker.io/${ref}: not found`);
    const bytes = new TextEncoder().encode(JSON.stringify(cfg));
    return { digest: digestOf(bytes), config: bytes };
  };
  return Object.assign(fn, { calls });
}

export const BUSYBOX_CONFIG = {
  architecture: 'amd64',
  os: 'linux',
  config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
  rootfs: { type: 'layers', diff_ids: [`sha256:${'1'.repeat(64)}`] },
  history: [{ created_by: 'ADD busybox', comment: 'base' }],
};
