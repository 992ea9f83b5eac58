import { fileURLToPath } from 'node:url';
import { defineConfig } from '@bkt/core';
import { copy, local, mkfile, scratch } from '@bkt/llb';
import { bucketCache } from './bucket-cache.js';

// The "bucket": a directory here (BKT_EXAMPLE_BUCKET, default ./bucket), an object store in real life.
const bucket = process.env.BKT_EXAMPLE_BUCKET ?? fileURLToPath(new URL('./bucket', import.meta.url));

const context = local('context', { include: ['message.txt'] });
const app = scratch()
  .file(mkfile('/VERSION', 0o644, '1.0.0\n'), { customName: 'write /VERSION' })
  .file(copy(context, '/message.txt', '/message.txt'), { customName: 'copy message.txt' });

export default defineConfig({
  plugins: [bucketCache({ bucket })],
  targets: { default: { build: app, outputs: [{ type: 'local', dest: 'out' }] } },
});
