import { expect, it } from 'vitest';
import * as pb from '@bkt/api/pb';
import { copy, diff, image, local, merge, mkdir, mkfile, scratch } from './index.js';

it('the README example marshals', () => {
  const ctx = local('context', { exclude: ['node_modules'] });
  const base = image('busybox');
  const built = base
    .dir('/app')
    .env('NODE_ENV', 'production')
    .run({
      shell: 'cp -r /src/. . && echo built > stamp',
      mounts: [
        { target: '/src', source: ctx, readonly: true },
        { type: 'cache', target: '/root/.cache', id: 'cache' },
        { type: 'secret', target: '/run/secrets/token', id: 'token' },
      ],
    })
    .root();
  const out = merge([scratch().file(mkdir('/out', 0o755).mkfile('/out/README', 0o644, 'hi\n')), diff(base, built)]).file(
    copy(ctx, 'config/', '/etc/app/', { createDestPath: true, chown: '1000:1000' }),
    { customName: 'add config' },
  );
  const def = pb.Definition.decode(out.marshalBytes());
  expect(def.def.map((b) => pb.Op.decode(b).op?.$case)).toEqual(['file', 'source', 'source', 'exec', 'diff', 'merge', 'file', undefined]);
});
