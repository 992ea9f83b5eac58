import { it } from 'vitest';
import { pb } from '@bkt/api';
import { scratch, mkdir, image, local, copy, merge, diff } from './index.js';
it('smoke', () => {
  const st = scratch().file(mkdir('/a', 0o755));
  const def = st.marshal();
  console.log(def.def.map((b) => Buffer.from(b).toString('hex')));
  const ctx = local('context');
  const base = image('busybox');
  const built = base.run({ shell: 'echo hi > /x', mounts: [{ target: '/src', source: ctx, readonly: true }, { type: 'cache', target: '/root/.cache', id: 'c' }] }).root();
  const out = merge([base, diff(base, built)]).file(copy(ctx, 'a', '/dst/').mkfile('f', 0o644, 'x'));
  const d2 = out.marshal();
  for (const b of d2.def) console.log(JSON.stringify(pb.Op.toJSON(pb.Op.decode(b))));
  console.log(JSON.stringify(pb.Definition.toJSON(d2).metadata, null, 1));
});
