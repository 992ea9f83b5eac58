/**
 * The image config of a config target (`image: { entrypoint, cmd, env, user,
 * workdir, exposedPorts, labels, healthcheck, stopSignal }`) and `image(ref,
 * { metaResolver })` inheriting the base image's config, as a Dockerfile's
 * FROM does: a base image built from a target and pushed with `-t --push`,
 * an app target FROM it whose RUN step sees the base's env, working dir and
 * user, pushed with a typed output (`push: true`); skopeo reads both
 * configs, runc runs the app with its own entrypoint, and the same app as a
 * Dockerfile gets the same config.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, skopeoInspect, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { bktEnv, run, runcRun } from '../images/lib.js';
import { writeProject, type Project } from './lib.js';

let registry: RegistryServer;
let busybox: PushedImage;
let work: string;
let project: Project;

const baseName = () => `${registry.host}/e2e/base:1`;
const appName = () => `${registry.host}/e2e/app:1`;

const APP_RUN = 'echo "$BASE_VAR $(pwd) $(id -un)" > /tmp/seen.txt';
const APP_ENTRYPOINT = ['sh', '-c', 'cat /tmp/seen.txt; echo "$APP_VAR"'];

const config = () => `
import { defineConfig } from '@bkt/core';
import { image } from '@bkt/llb';

export default defineConfig({
  targets: {
    base: {
      description: 'busybox with a config of its own',
      build: async ({ metaResolver }) =>
        (await image(${JSON.stringify(busybox.reference)}, { metaResolver })).run({ shell: 'mkdir -p /srv && chmod 777 /srv' }).root(),
      image: {
        env: { BASE_VAR: 'from-base' },
        workdir: '/srv',
        user: 'nobody',
        cmd: ['echo', 'base cmd'],
        labels: { 'org.example.base': 'yes' },
        exposedPorts: [8080],
      },
    },
    app: {
      build: async ({ metaResolver }) => (await image(${JSON.stringify(baseName())}, { metaResolver })).run({ shell: ${JSON.stringify(APP_RUN)} }).root(),
      image: {
        entrypoint: ${JSON.stringify(APP_ENTRYPOINT)},
        env: { APP_VAR: 'from-app' },
        labels: { 'org.example.app': 'yes' },
        exposedPorts: ['53/udp'],
        healthcheck: { test: ['CMD-SHELL', 'true'], interval: '30s', timeout: '5s', retries: 3 },
        stopSignal: 'SIGINT',
      },
      outputs: [
        { type: 'image', name: ${JSON.stringify(appName())}, push: true },
        { type: 'oci', dest: 'app.oci.tar', name: 'app:1' },
      ],
    },
  },
});
`;

type RuntimeConfig = Record<string, unknown> & { Env: string[]; Labels: Record<string, string> };

async function registryConfig(name: string): Promise<{ config: RuntimeConfig }> {
  const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--raw', '--config', `docker://${name}`], { encoding: 'utf8' });
  return JSON.parse(stdout) as { config: RuntimeConfig };
}

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await pushBusyboxImage(registry, 'library/busybox');
  work = await tempDir('targets-image-config');
  project = await writeProject(work, config());
});

afterAll(async () => {
  await registry?.stop();
  if (work) await removeDir(work);
});

describe('a target\'s image config', () => {
  it('-t NAME --push pushes a target (not a Dockerfile build) with the config its image settings give', async () => {
    const r = await project.build(['base', '-t', baseName(), '--push'], { progress: 'plain' });
    expect(r.stderr).toMatch(/solver time/);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`pushing ${baseName()}@sha256:[0-9a-f]{64} done`));
    const { config } = await registryConfig(baseName());
    expect(config.Env).toEqual([...busyboxEnv(), 'BASE_VAR=from-base']);
    expect(config).toMatchObject({ WorkingDir: '/srv', User: 'nobody', Cmd: ['echo', 'base cmd'], ExposedPorts: { '8080/tcp': {} } });
    expect(config.Labels).toEqual({ 'org.example.base': 'yes' });
  });

  it('an image FROM it inherits its config: RUN sees its env, working dir and user; the config is merged over it', async () => {
    const r = await project.build(['app'], { progress: 'plain' });
    expect(r.stderr).toMatch(/solver time/);
    expect(r.code).toBe(0);
    // The image was looked up through the build, as a Dockerfile's FROM is.
    expect(r.stderr).toMatch(new RegExp(`\\[internal\\] load metadata for ${baseName()}`));

    const { config } = await registryConfig(appName());
    expect(config.Env).toEqual([...busyboxEnv(), 'BASE_VAR=from-base', 'APP_VAR=from-app']);
    expect(config).toMatchObject({
      Entrypoint: APP_ENTRYPOINT,
      WorkingDir: '/srv',
      User: 'nobody',
      ExposedPorts: { '8080/tcp': {}, '53/udp': {} },
      Healthcheck: { Test: ['CMD-SHELL', 'true'], Interval: 30e9, Timeout: 5e9, Retries: 3 },
      StopSignal: 'SIGINT',
    });
    // As a Dockerfile's ENTRYPOINT: the base image's CMD no longer applies.
    expect(config.Cmd).toBeUndefined();
    expect(config.Labels).toEqual({ 'org.example.base': 'yes', 'org.example.app': 'yes' });
    const base = (await skopeoInspect(baseName())) as { Layers: string[] };
    const app = (await skopeoInspect(appName())) as { Layers: string[] };
    expect(app.Layers.slice(0, -1)).toEqual(base.Layers);

    // The OCI layout runs in runc with the image's own entrypoint, user and working dir.
    const layout = join(work, 'layout');
    await mkdir(layout);
    await run('tar', ['-xf', join(project.dir, 'app.oci.tar'), '-C', layout]);
    const bundle = join(work, 'bundle');
    await run('umoci', ['unpack', '--image', `${layout}:1`, bundle]);
    expect(await runcRun(bundle)).toBe('from-base /srv nobody\nfrom-app\n');
  });

  it('is the config a Dockerfile with the same instructions makes', async () => {
    const context = join(work, 'dockerfile');
    await mkdir(context);
    await writeFile(
      join(context, 'Dockerfile'),
      [
        `FROM ${baseName()}`,
        `RUN ${APP_RUN}`,
        `ENTRYPOINT ${JSON.stringify(APP_ENTRYPOINT)}`,
        'ENV APP_VAR=from-app',
        'LABEL org.example.app=yes',
        'EXPOSE 53/udp',
        'HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD true',
        'STOPSIGNAL SIGINT',
        '',
      ].join('\n'),
    );
    const name = `${registry.host}/e2e/dockerfile-app:1`;
    const r = await bktEnv(['build', '--root', join(work, 'store'), '--progress', 'plain', '-t', name, '--push', context], { cwd: project.dir });
    expect(r.stderr).toMatch(/solver time/);
    expect(r.code).toBe(0);
    const fields = ['Entrypoint', 'Cmd', 'Env', 'User', 'WorkingDir', 'ExposedPorts', 'Labels', 'Healthcheck', 'StopSignal'];
    const pick = (c: RuntimeConfig) => Object.fromEntries(fields.map((f) => [f, c[f]]));
    expect(pick((await registryConfig(appName())).config)).toEqual(pick((await registryConfig(name)).config));
  });

  it('a JS config\'s image settings are checked as TypeScript checks them: an unknown one or a wrong type is an error naming it', async () => {
    const js = await writeProject(
      join(work, 'js'),
      `export default { targets: {
        typo: { build: new Uint8Array(), image: { entryPoint: ['sh'] } },
        wrong: { build: new Uint8Array(), image: { env: ['A=1'] } },
        port: { build: new Uint8Array(), image: { exposedPorts: ['http'] } },
      } };\n`,
      'bkt.config.mjs',
    );
    const typo = await js.build(['typo']);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toMatch(/^error: target "typo": unknown image setting "entryPoint" \(known: entrypoint, cmd, env, /m);
    const wrong = await js.build(['wrong']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^error: target "wrong": image\.env must be an object of strings, got an array/m);
    const port = await js.build(['port']);
    expect(port.code).toBe(1);
    expect(port.stderr).toMatch(/^error: target "port": image\.exposedPorts: "http" is not a port/m);
  });
});

/** The Env of the busybox image the test registry serves (`pushBusyboxImage`'s config). */
function busyboxEnv(): string[] {
  return ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'];
}
