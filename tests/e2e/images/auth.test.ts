/**
 * Issue 4 acceptance through the built CLI: a registry behind htpasswd
 * (Basic) auth. A push with credentials from docker's config file (found via
 * DOCKER_CONFIG, or HOME/.docker) works; without them, or with a wrong
 * password, the build fails with exit code 1 and an error naming the registry.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushBusyboxImage, skopeoInspect, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { removeDir, tempDir } from '../helpers.js';
import { bktEnv, readMetadata, writeImageProject } from './lib.js';

const USER = 'builder';
const PASSWORD = 'correct horse battery staple';

/** Where the base image comes from: anonymous. */
let open: RegistryServer;
/** Where the result goes: htpasswd auth. */
let locked: RegistryServer;
let busybox: PushedImage;
let work: string;
let project: string;

beforeAll(async () => {
  [open, locked] = await Promise.all([startRegistry(), startRegistry({ htpasswd: { user: USER, password: PASSWORD } })]);
  busybox = await pushBusyboxImage(open, 'library/busybox');
  work = await tempDir('images-auth');
  project = join(work, 'project');
  await mkdir(project);
  await writeImageProject(project, busybox.reference, ['echo "pushed with credentials" > /auth.txt']);
});

afterAll(async () => {
  await Promise.all([open?.stop(), locked?.stop()]);
  if (work) await removeDir(work);
});

/** A docker config dir holding `auths` for the locked registry with `password`. */
async function dockerConfig(dir: string, password: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const auth = Buffer.from(`${USER}:${password}`).toString('base64');
  await writeFile(join(dir, 'config.json'), JSON.stringify({ auths: { [locked.host]: { auth } } }));
  return dir;
}

/** A build pushing to the locked registry as `repo:v1`, with `env` (HOME / DOCKER_CONFIG) for the CLI. */
function push(repo: string, env: Record<string, string>) {
  const meta = join(work, `${repo.replace(/\W/g, '-')}.json`);
  return bktEnv(
    ['build', '--root', join(work, 'store'), '--progress', 'plain', '--output', `type=image,name=${locked.host}/${repo}:v1,push=true`, '--metadata-file', meta],
    { cwd: project, env },
  ).then((r) => ({ ...r, meta }));
}

const errorOf = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('error')).join('\n');

describe('push to a registry with htpasswd auth', () => {
  it('works with credentials from $DOCKER_CONFIG/config.json', async () => {
    const dir = await dockerConfig(join(work, 'docker-config'), PASSWORD);
    const r = await push('e2e/with-docker-config', { DOCKER_CONFIG: dir, HOME: join(work, 'empty-home') });
    expect(r.stderr).toMatch(/solver time/);
    expect(r.code).toBe(0);
    const info = (await skopeoInspect(`${locked.host}/e2e/with-docker-config:v1`, { creds: `${USER}:${PASSWORD}` })) as { Digest: string };
    expect(info.Digest).toBe((await readMetadata(r.meta))['containerimage.digest']);
  });

  it('works with credentials from $HOME/.docker/config.json', async () => {
    const home = join(work, 'home');
    await dockerConfig(join(home, '.docker'), PASSWORD);
    const r = await push('e2e/with-home', { HOME: home, DOCKER_CONFIG: '' });
    expect(r.code).toBe(0);
    await skopeoInspect(`${locked.host}/e2e/with-home:v1`, { creds: `${USER}:${PASSWORD}` });
  });

  it('fails without credentials: exit code 1, the registry named', async () => {
    const r = await push('e2e/anonymous', { HOME: join(work, 'empty-home'), DOCKER_CONFIG: join(work, 'no-config') });
    expect(r.code).toBe(1);
    const error = errorOf(r.stderr);
    expect(error).toContain(`failed to push ${locked.host}/e2e/anonymous:v1`);
    expect(error).toContain(`registry ${locked.host} requires authentication and no credentials are configured for it`);
    await expect(skopeoInspect(`${locked.host}/e2e/anonymous:v1`, { creds: `${USER}:${PASSWORD}` })).rejects.toThrow();
  });

  it('fails with a wrong password: exit code 1, the registry named', async () => {
    const dir = await dockerConfig(join(work, 'wrong-config'), 'not the password');
    const r = await push('e2e/wrong-password', { DOCKER_CONFIG: dir });
    expect(r.code).toBe(1);
    const error = errorOf(r.stderr);
    expect(error).toContain(`failed to push ${locked.host}/e2e/wrong-password:v1`);
    expect(error).toContain(`registry ${locked.host} refused the credentials configured for it`);
  });
});
