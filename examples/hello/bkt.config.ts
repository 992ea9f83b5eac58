import { defineConfig } from '@bkt/core';
import { diff, local, merge, mkdir, mkfile, scratch, copy } from '@bkt/llb';

// The project directory, as the build sees it: only the files we use, so
// that writing ./out (or editing this config) does not touch the cache.
const context = local('context', { include: ['greeting.txt', 'src'] });

// A base made from nothing: a directory and a file written by the build.
const base = scratch().file(
  mkdir('/app', 0o755).mkfile('/app/VERSION', 0o644, '1.0.0\n'),
  { customName: 'make /app with its VERSION' },
);

// The base plus the context's src/ directory: copies read the context.
const app = base.file(copy(context, '/src', '/app/bin', { dirCopyContents: true, createDestPath: true }), {
  customName: 'copy src/ into /app/bin',
});

// A tree of its own, and a single file taken from the context.
const docs = scratch().file(mkdir('/docs', 0o755).mkfile('/docs/README', 0o644, 'Built by bkt.\n'), {
  customName: 'write /docs/README',
});
const greeting = scratch().file(copy(context, '/greeting.txt', '/greeting.txt'), {
  customName: 'copy greeting.txt',
});

// diff(base, app) holds only what the copy added (/app/bin/…), not /app/VERSION.
const added = diff(base, app, { customName: 'what the copy added' });

export default defineConfig({
  targets: {
    default: {
      description: 'the hello tree: /app/bin from the context, /docs/README, /greeting.txt',
      build: merge([added, docs, greeting], { customName: 'merge the parts' }),
      outputs: [{ type: 'local', dest: 'out' }],
    },
    // The whole app, VERSION included, as a tar archive.
    app: {
      build: app,
      outputs: [{ type: 'tar', dest: 'out/app.tar' }],
    },
  },
});
