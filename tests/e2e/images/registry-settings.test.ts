/**
 * Per-registry settings through the CLI, as buildkitd.toml's
 * `[registry."host"]`: given to the image source's plugin in bkt.config.ts
 * (`mirrors`, `insecure`), and the image exporter's `registry.insecure`
 * attribute for a push to an HTTPS registry with a self-signed certificate.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, skopeoInspect, startRegistry, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { bktEnv } from './lib.js';

let plain: RegistryServer;
let tls: RegistryServer;
let work: string;

beforeAll(async () => {
  [plain, tls] = await Promise.all([startRegistry(), startRegistry({ tls: true })]);
  await pushBusyboxImage(plain, 'library/busybox');
  work = await tempDir('images-settings');
});

afterAll(async () => {
  await Promise.all([plain?.stop(), tls?.stop()]);
  if (work) await removeDir(work);
});

/** A project whose config passes `hosts` to the image source and builds FROM `base` with one step. */
async function project(name: string, base: string, hosts: Record<string, unknown>): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir);
  await writeFile(
    join(dir, 'bkt.config.ts'),
    [
      `import { defineConfig } from '@bkt/core';`,
      `import { image } from '@bkt/llb';`,
      `import imageSource from '@bkt/source-image';`,
      `const state = image(${JSON.stringify(base)}).run({ shell: 'echo "from $(cat /etc/hostname 2>/dev/null)" > /seen.txt' }).root();`,
      `export default defineConfig({`,
      `  plugins: [imageSource({ registry: { hosts: ${JSON.stringify(hosts)} } })],`,
      `  targets: { default: { build: state } },`,
      `});`,
      '',
    ].join('\n'),
  );
  return dir;
}

describe('registry settings', () => {
  it('a docker.io mirror in the config serves FROM busybox (no internet needed)', async () => {
    const dir = await project('mirror', 'busybox', { 'docker.io': { mirrors: [plain.host] } });
    const out = join(dir, 'out');
    const r = await bktEnv(['build', '--root', join(dir, 'store'), '--output', `type=local,dest=${out}`], { cwd: dir });
    expect(r.stderr).toMatch(/solver time/);
    expect(r.code).toBe(0);
    expect(await readFile(join(out, 'seen.txt'), 'utf8')).toMatch(/^from /);
  });

  it('an HTTPS registry with a self-signed certificate: refused when verified, used with insecure / registry.insecure', async () => {
    // The test kit pushes over plain HTTP (loopback's default): copy the base to the TLS registry with skopeo.
    execFileSync('skopeo', ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${plain.host}/library/busybox:latest`, `docker://${tls.host}/library/busybox:latest`]);

    // http = false: HTTPS with certificate verification.
    const strict = await project('strict', `${tls.host}/library/busybox:latest`, { [tls.host]: { http: false } });
    const refused = await bktEnv(['build', '--root', join(strict, 'store')], { cwd: strict });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(tls.host);
    expect(refused.stderr).toMatch(/certificate/i);

    // insecure on a loopback host: HTTPS without verification (falling back to HTTP if the server spoke it).
    const dir = await project('insecure', `${tls.host}/library/busybox:latest`, { [tls.host]: { insecure: true } });
    const name = `${tls.host}/e2e/insecure:v1`;
    const r = await bktEnv(['build', '--root', join(dir, 'store'), '--output', `type=image,name=${name},push=true,registry.insecure=true`], { cwd: dir });
    expect(r.stderr).toMatch(/solver time/);
    expect(r.code).toBe(0);
    expect(((await skopeoInspect(name)) as { Layers: string[] }).Layers).toHaveLength(2);

    // registry.insecure=true also pushes to a plain-HTTP registry (BuildKit's HTTP fallback).
    const plainName = `${plain.host}/e2e/insecure:v1`;
    const toPlain = await bktEnv(['build', '--root', join(dir, 'store'), '--output', `type=image,name=${plainName},push=true,registry.insecure=true`], { cwd: dir });
    expect(toPlain.code).toBe(0);
    expect(((await skopeoInspect(plainName)) as { Layers: string[] }).Layers).toHaveLength(2);
  });
});
