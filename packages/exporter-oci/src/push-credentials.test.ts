/**
 * Pushes take each build's registry credentials from the build's client:
 * one long-lived set of exporters (one registry client, as in a daemon
 * serving many clients) never lets a token obtained with one build's
 * credentials serve another build's push.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyClient, isBktError, type BuildClient, type BuildContext, type BuildResult, type RegistryCredentials } from '@bkt/core';
import { openTestContext, type TestContext } from '@bkt/store/testing';
import { skopeoInspect, startRegistry, type RegistryServer } from '@bkt/testkit';
import { createImageExporters } from './exporters.js';

const USER = 'pusher';
const PASSWORD = 'push it';

describe('image exporter push credentials come from each build\'s client', () => {
  let registry: RegistryServer;
  let t: TestContext;
  let result: BuildResult;
  const { exporters, close } = createImageExporters();
  const image = exporters.find((e) => e.type === 'image')!;

  beforeAll(async () => {
    // Bearer tokens (Docker Hub's flow): anonymous tokens may pull, the user's may push.
    registry = await startRegistry({ token: { user: USER, password: PASSWORD } });
    t = await openTestContext();
    const m = await t.ctx.snapshotter.prepare(null);
    await writeFile(join(m.path, 'hello.txt'), 'hello\n');
    result = { ref: await m.commit(), metadata: {} };
  });
  afterAll(async () => {
    close();
    await t?.close();
    await registry?.stop();
  });

  function build(creds: RegistryCredentials | null): BuildContext {
    const client: BuildClient = { ...emptyClient(), credentials: async (host) => (host === registry.host ? creds : null) };
    return { ...t.ctx, client };
  }

  const push = (name: string, ctx: BuildContext) =>
    image.resolve({ name, push: 'true', store: 'false' }).then((e) => e.export(result, ctx));

  it('pushes with the build\'s credentials; a build without them is refused, even right after and alongside', async () => {
    const repo = `${registry.host}/creds/app`;
    const owner = build({ username: USER, secret: PASSWORD });
    const pushed = await push(`${repo}:v1`, owner);
    expect(((await skopeoInspect(`${repo}:v1`)) as { Digest: string }).Digest).toBe(pushed['containerimage.digest']);

    // Same repository, same scopes: a token cached by scope alone would let these through.
    const [stranger, alongside] = await Promise.all([
      push(`${repo}:v2`, build(null)).catch((e: unknown) => e as Error),
      push(`${repo}:v3`, build({ username: USER, secret: PASSWORD })),
    ]);
    expect(isBktError(stranger, 'PERMISSION_DENIED')).toBe(true);
    expect((stranger as Error).message).toContain(`failed to push ${repo}:v2`);
    expect((stranger as Error).message).toContain(`registry ${registry.host} requires authentication`);
    expect(((await skopeoInspect(`${repo}:v3`)) as { Digest: string }).Digest).toBe(alongside['containerimage.digest']);
    await expect(skopeoInspect(`${repo}:v2`)).rejects.toThrow();

    const wrong = await push(`${repo}:v4`, build({ username: USER, secret: 'guess' })).catch((e: unknown) => e as Error);
    expect(isBktError(wrong, 'PERMISSION_DENIED')).toBe(true);

    // Builds with the same credentials share the push token; the anonymous one got tokens of its own.
    const pushScope = 'repository:creds/app:pull,push';
    const asked = registry.tokenServer!.requests.filter((r) => r.scopes.includes(pushScope));
    expect(asked.filter((r) => r.grant === 'password' && r.status === 200)).toHaveLength(1);
    expect(asked.some((r) => r.grant === 'anonymous')).toBe(true);
  });

  it('refuses credentials in the plugin\'s registry option', () => {
    expect(() => createImageExporters({ registry: { credentials: async () => undefined } as never })).toThrow(/registry option takes no credentials/);
  });
});
