import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig } from '@bkt/core';
import { image } from '@bkt/llb';

// The registry: $BKT_EXAMPLE_REGISTRY, else the one `node registry.mjs` started (./.registry).
const hostFile = fileURLToPath(new URL('./.registry', import.meta.url));
const registry = process.env.BKT_EXAMPLE_REGISTRY || (existsSync(hostFile) ? readFileSync(hostFile, 'utf8').trim() : '127.0.0.1:5000');

// FROM the registry's busybox; each run() is one container and one layer of the image.
const app = () =>
  image(`${registry}/library/busybox:latest`)
    .run({
      shell: 'mkdir -p /app && printf "#!/bin/sh\\necho hello from an image built by bkt, running as \\$(id -un)\\n" > /app/hello.sh && chmod 755 /app/hello.sh',
      customName: 'write /app/hello.sh',
    })
    .root()
    .run({ shell: 'busybox --list | wc -l > /app/applets.txt && rm /bin/vi', customName: 'count the applets, remove vi' })
    .root();

export default defineConfig({
  targets: {
    // Pushed to the registry as example/app:latest.
    default: {
      description: 'RUN steps on busybox, pushed to the local registry',
      build: app,
      outputs: [{ type: 'image', name: `${registry}/example/app:latest`, push: true }],
    },
    // The same image as an OCI layout tar and a docker-archive tar.
    archives: {
      description: 'the same image as app.oci.tar and app.docker.tar',
      build: app,
      outputs: [
        { type: 'oci', dest: 'app.oci.tar', name: 'example/app:latest' },
        { type: 'docker', dest: 'app.docker.tar', name: 'example/app:latest' },
      ],
    },
  },
});
