import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig } from '@bkt/core';
import { copy, local, scratch } from '@bkt/llb';
import { makeBusyboxRootfs } from '@bkt/testkit';

// The base image: a busybox root filesystem made from Debian's busybox-static
// into ./rootfs on first use, read through the `local` source as `base`.
const rootfs = fileURLToPath(new URL('./rootfs', import.meta.url));
const base = local('base');

// Each run() is one container; its changes to / become the next step's root.
const app = base
  .run({ shell: 'mkdir -p /app && chown user /app && echo "hello from $(hostname)" > /app/hello.txt', customName: 'write /app/hello.txt' })
  .root()
  .run({
    shell: 'id > /app/whoami.txt && ulimit -n > /app/nofile.txt',
    user: 'user',
    ulimits: [{ name: 'nofile', soft: 4096, hard: 4096 }],
    customName: 'record the user and its open-file limit',
  })
  .root()
  .run({
    // A cache mount survives from build to build: the counter goes up each time the step runs.
    shell: 'n=$(cat /cache/runs 2>/dev/null || echo 0); echo $((n + 1)) > /cache/runs; echo "run #$((n + 1)) of this step" > /app/runs.txt',
    mounts: [{ type: 'cache', target: '/cache', id: 'example-run' }],
    customName: 'count the runs in a cache mount',
  })
  .root()
  .run({
    shell: 'sha256sum *.txt > SHA256SUMS',
    cwd: '/app',
    network: 'none',
    customName: 'checksum /app (no network)',
  })
  .root();

// Only /app is exported, not the whole busybox tree.
const result = scratch().file(copy(app, '/app', '/', { dirCopyContents: true }), { customName: 'take /app' });

export default defineConfig({
  targets: {
    default: {
      description: 'shell steps on busybox; /app exported to ./out',
      build: async () => {
        if (!existsSync(rootfs)) await makeBusyboxRootfs(rootfs);
        return result;
      },
      localDirs: { base: 'rootfs' },
      outputs: [{ type: 'local', dest: 'out' }],
    },
  },
});
