import { realpathSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { defineConfig } from '@bkt/core';
import { copy, image, local, mkdir, scratch } from '@bkt/llb';

// The registry ./setup.sh serves (127.0.0.1:$PORT, default 5000).
const registry = `127.0.0.1:${process.env.PORT || '5000'}`;
// Debian's busybox-static installs a static busybox as /bin/busybox; $BUSYBOX names another.
const busybox = realpathSync(process.env.BUSYBOX || '/bin/busybox');

const passwd = 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n';
const group = 'root:x:0:\nnogroup:x:65534:\n';

export default defineConfig({
  targets: {
    // What `docker pull busybox` would give: the binary, its applet links, a PATH and `sh` to run.
    busybox: {
      description: "busybox:latest from this machine's busybox-static (./setup.sh pushes it)",
      localDirs: { busybox: dirname(busybox) },
      build: () =>
        scratch()
          .file(
            mkdir('/bin', 0o755)
              .mkdir('/etc', 0o755)
              .mkdir('/root', 0o700)
              .mkdir('/tmp', 0o1777)
              .mkfile('/etc/passwd', 0o644, passwd)
              .mkfile('/etc/group', 0o644, group),
            { customName: 'root filesystem' },
          )
          .file(copy(local('busybox', { include: [basename(busybox)] }), basename(busybox), '/bin/busybox'), { customName: `copy ${busybox}` })
          // The first container on the new filesystem: busybox links its applets (/bin/sh, /bin/ls, …).
          .run({ args: ['/bin/busybox', '--install', '-s', '/bin'], customName: 'busybox --install -s /bin' })
          .root(),
      image: { env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' }, cmd: ['sh'] },
    },
    // An image FROM the pushed busybox, as a check that it works: its config (PATH, sh) is inherited.
    hello: {
      description: 'an image FROM the local registry\'s busybox, written to hello.oci.tar',
      build: async ({ metaResolver }) =>
        (await image(`${registry}/library/busybox:latest`, { metaResolver }))
          .run({ shell: 'echo "hello from busybox $(busybox | head -n 1 | cut -d " " -f 2), offline" > /hello.txt' })
          .root(),
      image: { cmd: ['cat', '/hello.txt'] },
      outputs: [{ type: 'oci', dest: 'hello.oci.tar', name: 'hello:latest' }],
    },
  },
});
