/**
 * A base image whose layer holds a whiteout naming no entry of its directory
 * (`.wh..`, `.wh...`, `.wh.`, also below a directory) is an invalid layer:
 * the build fails with an error naming the layer digest and the entry, and
 * nothing outside the layer is removed. Before the fix, `.wh...` removed the
 * layer root's parent — the store's directory of live mounts — wiping the
 * running rootfs of a sibling stage.
 *
 * Each case builds two stages at once: `sibling` (busybox from the registry)
 * runs a RUN that checks its own files every 20 ms, and `hostile` pulls the
 * crafted image through a proxy that holds the hostile layer until the
 * sibling's first check was printed, so the layer is unpacked while the
 * sibling runs. The sibling must never see a file of its rootfs vanish, and
 * the store must stay sound and usable.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '@bkt/registry/testing';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { BKT, removeDir, tempDir } from '../helpers.js';
import { bktEnv, corruptBlobs, layerTar, pushCraftedImage, type LayerEntry } from '../images/lib.js';

let registry: RegistryServer;
let proxy: FaultProxy;
let busybox: PushedImage;
let work: string;

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  proxy = await startFaultProxy(registry.host);
  work = await tempDir('security-whiteouts');
});

afterAll(async () => {
  await proxy?.close();
  await registry?.stop();
  if (work) await removeDir(work);
});

const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(dir));
}

/** The sibling's RUN: N checks of its own files, 20 ms apart, each printed as `intact I` or `DAMAGED I`. */
const SIBLING_CHECK =
  'i=0; while [ $i -lt $N ]; do ' +
  'if [ -f /etc/passwd ] && [ -x /bin/busybox ] && [ -f /home/sibling/own ]; then echo "intact $i"; else echo "DAMAGED $i"; fi; ' +
  'i=$((i+1)); sleep 0.02; done';

const WHITEOUTS = ['.wh...', 'etc/.wh...', '.wh..', 'etc/.wh..', '.wh.'];

describe('a whiteout naming no entry of its directory', () => {
  for (const [n, whiteout] of WHITEOUTS.entries()) {
    it(`"${whiteout}" fails the build naming the layer and the entry; the running sibling stage keeps its rootfs`, async () => {
      const repo = `e2e/hostile-whiteout-${n}`;
      const hostileLayer: LayerEntry[] = [
        { name: 'etc/', type: 'directory' },
        { name: 'etc/hostile', type: 'file', body: 'from the hostile image\n' },
        { name: whiteout, type: 'file', body: '' },
      ];
      await pushCraftedImage(registry.host, repo, 'v1', [[{ name: 'etc/', type: 'directory' }, { name: 'etc/base', type: 'file', body: 'base\n' }], hostileLayer]);
      const hostileDigest = sha256(gzipSync(await layerTar(hostileLayer)));

      const project = join(work, `case-${n}`);
      await mkdir(project);
      await writeFile(
        join(project, 'Dockerfile'),
        [
          `FROM ${busybox.reference} AS sibling`,
          'ARG N=400',
          'RUN mkdir -p /home/sibling && echo mine > /home/sibling/own',
          `RUN ${SIBLING_CHECK}`,
          '',
          `FROM ${proxy.host}/${repo}:v1 AS hostile`,
          '',
          'FROM scratch',
          'COPY --from=sibling /home/sibling/own /sibling-own',
          'COPY --from=hostile /etc/hostile /hostile',
          '',
        ].join('\n'),
      );
      const root = join(project, 'store');

      // The hostile layer is served once the sibling has printed its first check.
      let release!: () => void;
      const siblingRunning = new Promise<void>((resolve) => (release = resolve));
      proxy.inject({ method: 'GET', path: new RegExp(`/v2/${repo}/blobs/${hostileDigest}$`), fault: { kind: 'hold', until: siblingRunning } });

      const child = execa('node', [BKT, 'build', '--root', root, '--progress', 'plain', '-o', `type=local,dest=${join(project, 'out')}`, project], {
        cwd: project,
        reject: false,
        timeout: 120_000,
        env: { BKT_DEBUG: '' },
      });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/intact 0\b/.test(stderr)) release();
      });
      const r = await child;
      release();

      expect(stderr).toMatch(/intact 0\b/);
      expect(stderr).not.toMatch(/DAMAGED \d/);
      expect(r.exitCode).toBe(1);
      const errorLines = stderr.split('\n').filter((l) => /error/i.test(l)).join('\n');
      expect(errorLines).toContain(`invalid layer: whiteout entry "${whiteout}"`);
      expect(errorLines).toContain(hostileDigest);
      expect(errorLines).not.toMatch(/EBUSY|ENOTEMPTY/);

      // The store is sound: every blob hashes to its name, no mount is left, and it builds again.
      expect(await corruptBlobs(root)).toEqual([]);
      expect(mountsUnder(root)).toEqual([]);
      const again = await bktEnv(
        ['build', '--root', root, '--progress', 'plain', '--target', 'sibling', '--build-arg', 'N=1', '-o', `type=local,dest=${join(project, 'sibling')}`, project],
        { cwd: project },
      );
      expect(again.stderr).not.toMatch(/DAMAGED \d/);
      expect(again.code).toBe(0);
      expect(readFileSync(join(project, 'sibling/home/sibling/own'), 'utf8')).toBe('mine\n');
      expect(mountsUnder(root)).toEqual([]);
    });
  }
});
