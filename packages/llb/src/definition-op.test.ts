import { describe, expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import { digestOf } from '@bkt/oci';
import { definitionHead, fromDefinition, image, local, marshal, mkfile } from './index.js';

describe('fromDefinition (Go NewDefinitionOp)', () => {
  const given = marshal(
    image('busybox', { platform: 'linux/arm64' })
      .run({ shell: 'echo hi > /hi', customName: 'say hi' })
      .root()
      .file(mkfile('/f', 0o644, 'f')),
    { platform: 'linux/arm64' },
  );

  it('marshals back to the same ops, digests and metadata', () => {
    const again = marshal(fromDefinition(given), { platform: 'linux/amd64', customName: 'not applied' });
    expect(again.def).toEqual(given.def);
    for (const d of given.def.slice(0, -1).map(digestOf)) expect(again.metadata[d]).toEqual(given.metadata[d]);
  });

  it('a state built on it keeps the given ops as they are and reads their result', () => {
    const head = definitionHead(given)!;
    const on = marshal(fromDefinition(given).file(mkfile('/g', 0o644, 'g')), { platform: 'linux/amd64' });
    expect(on.def.slice(0, given.def.length - 1)).toEqual(given.def.slice(0, -1));
    const top = pb.Op.decode(on.def.at(-2)!);
    expect(top.inputs).toEqual([{ digest: head, index: 0 }]);
    // A state over a platform-specific result (an image) is of its platform: an exec op on it runs there.
    const arm = fromDefinition(marshal(image('busybox', { platform: 'linux/arm64' })));
    const exec = pb.Op.decode(marshal(arm.run({ shell: 'true' }).root(), { platform: 'linux/amd64' }).def.at(-2)!);
    expect(exec.platform).toMatchObject({ OS: 'linux', Architecture: 'arm64' });
  });

  it('copies from a given context like from any state', () => {
    const ctx = marshal(local('context'));
    const withCtx = marshal(image('busybox').run({ shell: 'ls /src', mounts: [{ target: '/src', source: fromDefinition(ctx), readonly: true }] }).root());
    expect(withCtx.def).toContainEqual(ctx.def[0]);
  });

  it('an empty definition is scratch; a definition without a return op, or missing an input, is INVALID_DEFINITION', () => {
    expect(fromDefinition({ def: [], metadata: {}, Source: undefined }).output).toBeNull();
    expect(() => fromDefinition({ ...given, def: given.def.slice(0, -1) })).toThrow(/does not end with a return op/);
    expect(() => marshal(fromDefinition({ ...given, def: given.def.slice(1) }))).toThrow(/names op sha256:[0-9a-f]{64} as an input but does not hold it/);
  });
});
