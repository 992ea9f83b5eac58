/** A solve request's own source policy: over its definition, every definition its frontend solves, and the images the frontend resolves. */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import { isBktError, type BktPlugin, type FrontendBridge, type Source } from '@bkt/core';
import type { SourcePolicy } from './api.js';
import { DefBuilder, solverPerTest, testPlugin, treeOf } from './graphs.test-util.js';
import { applySourcePolicy } from './source-policy.js';

const digest = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Denies `test://secret`, converts `test://old-NAME` to `test://NAME`. */
const policy: SourcePolicy = ({ identifier }) => {
  if (identifier === 'test://secret') return { action: 'deny', reason: 'rule 0: test://secret' };
  const old = /^test:\/\/old-(.*)$/.exec(identifier);
  return old ? { action: 'convert', identifier: `test://${old[1]}` } : undefined;
};

describe('applySourcePolicy over a definition', () => {
  it('CONVERT rewrites the identifier, re-digests the op and the inputs naming it, and moves its metadata and source locations', async () => {
    const g = new DefBuilder();
    const src = g.add({ op: { $case: 'source', value: { identifier: 'test://old-context', attrs: { keep: 'me' } } } }, { description: { 'llb.customname': 'ctx' } });
    const top = g.mkfile(src, { '/x': 'x' });
    const def = pb.Definition.decode(g.build(top));
    def.Source = pb.Source.fromPartial({ locations: { [src]: { locations: [{ sourceIndex: 0, ranges: [{ start: { line: 3, character: 0 } }] }] } } });
    const out = pb.Definition.decode(await applySourcePolicy(pb.Definition.encode(def).finish(), policy));
    const op = pb.Op.decode(out.def[0]!);
    expect(op.op?.$case === 'source' && op.op.value).toEqual({ identifier: 'test://context', attrs: { keep: 'me' } });
    const newSrc = digest(out.def[0]!);
    expect(pb.Op.decode(out.def[1]!).inputs[0]!.digest).toBe(newSrc);
    expect(pb.Op.decode(out.def[2]!).inputs[0]!.digest).toBe(digest(out.def[1]!));
    expect(out.metadata[newSrc]?.description).toEqual({ 'llb.customname': 'ctx' });
    expect(out.metadata[src]).toBeUndefined();
    expect(Object.keys(out.Source!.locations)).toEqual([newSrc]);
  });

  it('DENY names the source, the policy\'s reason and the op; a definition no rule touches comes back as it was', async () => {
    const g = new DefBuilder();
    const secret = g.source('test://secret');
    const err = await applySourcePolicy(g.build(secret), policy).catch((e: unknown) => e);
    expect(isBktError(err, 'PERMISSION_DENIED')).toBe(true);
    expect((err as Error).message).toBe("source test://secret denied by the build's source policy (rule 0: test://secret)");
    expect((err as { details: object }).details).toMatchObject({ opDigest: secret, attribute: 'SourcePolicy' });

    const h = new DefBuilder();
    const untouched = h.build(h.mkfile(h.source('test://context'), { '/x': 'x' }));
    expect(await applySourcePolicy(untouched, policy)).toBe(untouched);
  });
});

describe('a solve with a source policy', () => {
  const t = solverPerTest('bkt-source-policy-');

  /** A frontend solving `test://NAME` for each NAME in attr `sources` (comma-separated), and resolving the image of attr `image`. */
  const frontend: BktPlugin = {
    name: 'test-policy-frontend',
    frontends: [
      {
        name: 'test.v0',
        async solve(attrs, bridge: FrontendBridge) {
          if (attrs.image) await bridge.resolveImageConfig!(attrs.image);
          let ref = null;
          for (const name of (attrs.sources ?? '').split(',').filter(Boolean)) {
            const g = new DefBuilder();
            ref = (await bridge.solve(g.build(g.source(`test://${name}`)))).ref;
          }
          return { ref, metadata: {} };
        },
      },
    ],
  };
  const resolved: string[] = [];
  const images: Source = {
    schemes: ['docker-image'],
    identify: (scheme, ref, attrs, platform) => ({ scheme, ref, attrs, platform }),
    resolve: async () => {
      throw new Error('not used here');
    },
    resolveImageConfig: async (ref: string) => (resolved.push(ref), { digest: `sha256:${'a'.repeat(64)}`, config: new TextEncoder().encode('{}') }),
  } as Source;
  const imagePolicy: SourcePolicy = ({ identifier }) =>
    identifier === 'docker-image://registry.test/denied:1'
      ? { action: 'deny', reason: 'rule 1: docker-image://registry.test/denied:*' }
      : identifier === 'docker-image://registry.test/old:1'
        ? { action: 'convert', identifier: 'docker-image://registry.test/new:1' }
        : undefined;

  it('applies to the definitions a frontend solves: a denied source fails the build naming it', async () => {
    const s = await t.open([testPlugin(), frontend]);
    const err = await s.solve({ frontend: 'test.v0', frontendAttrs: { sources: 'secret' }, sourcePolicy: policy }).catch((e: unknown) => e);
    expect(isBktError(err, 'PERMISSION_DENIED')).toBe(true);
    expect((err as Error).message).toContain("source test://secret denied by the build's source policy (rule 0: test://secret)");
  });

  it('converts the sources of a frontend\'s definitions (the converted directory is read)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bkt-policy-ctx-'));
    try {
      await writeFile(join(dir, 'f'), 'converted');
      const s = await t.open([testPlugin(), frontend]);
      const r = await s.solve({ frontend: 'test.v0', frontendAttrs: { sources: 'old-context' }, localDirs: { context: dir }, sourcePolicy: policy });
      expect(await treeOf(r.result.ref)).toEqual({ f: 'converted' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("applies to the images a frontend resolves: a denied one fails naming it, a converted one is resolved in its place; the request's definition too", async () => {
    const s = await t.open([testPlugin(), frontend, { name: 'images', sources: [images] }]);
    resolved.length = 0;
    const err = await s.solve({ frontend: 'test.v0', frontendAttrs: { image: 'registry.test/denied:1' }, sourcePolicy: imagePolicy }).catch((e: unknown) => e);
    expect(isBktError(err, 'PERMISSION_DENIED')).toBe(true);
    expect((err as Error).message).toContain("source docker-image://registry.test/denied:1 denied by the build's source policy (rule 1:");
    expect(resolved).toEqual([]);

    await s.solve({ frontend: 'test.v0', frontendAttrs: { image: 'registry.test/old:1' }, sourcePolicy: imagePolicy });
    await s.solve({ frontend: 'test.v0', frontendAttrs: { image: 'docker-image://registry.test/old:1' }, sourcePolicy: imagePolicy });
    expect(resolved).toEqual(['registry.test/new:1', 'docker-image://registry.test/new:1']);

    const g = new DefBuilder();
    const denied = await s.solve({ definition: g.build(g.source('test://secret')), sourcePolicy: policy }).catch((e: unknown) => e);
    expect((denied as Error).message).toContain("source test://secret denied by the build's source policy");
  });

  it('without a policy, nothing is asked or changed', async () => {
    const s = await t.open([testPlugin(), frontend, { name: 'images', sources: [images] }]);
    resolved.length = 0;
    await s.solve({ frontend: 'test.v0', frontendAttrs: { image: 'registry.test/denied:1' } });
    expect(resolved).toEqual(['registry.test/denied:1']);
  });
});
