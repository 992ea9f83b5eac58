/**
 * Registry credentials are per build: one long-lived image source (one
 * registry client, as in a daemon serving many clients) pulls for several
 * builds at once, each with its own client's credentials — never another's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyClient, isBktError, type BuildClient, type BuildContext, type RegistryCredentials } from '@bkt/core';
import { openTestContext, type TestContext } from '@bkt/store/testing';
import { pushBusyboxImage, startRegistry, type PushedImage, type RegistryServer } from '@bkt/testkit';
import { ImageSource } from './source.js';

const USER = 'puller';
const PASSWORD = 'open sesame';

describe('docker-image credentials come from each build\'s client', () => {
  let locked: RegistryServer;
  let pushed: PushedImage;
  let t: TestContext;
  const source = new ImageSource();

  beforeAll(async () => {
    locked = await startRegistry({ htpasswd: { user: USER, password: PASSWORD } });
    pushed = await pushBusyboxImage(locked, 'private/busybox');
    t = await openTestContext();
  });
  afterAll(async () => {
    source.close();
    await t?.close();
    await locked?.stop();
  });

  /** A build (its own client) offering `creds` for the locked registry; `asked` lists the hosts it was asked for. */
  function build(creds: RegistryCredentials | null): { ctx: BuildContext; asked: string[] } {
    const asked: string[] = [];
    const client: BuildClient = {
      ...emptyClient(),
      credentials: async (host) => {
        asked.push(host);
        return host === locked.host ? creds : null;
      },
    };
    return { ctx: { ...t.ctx, client }, asked };
  }

  it('pulls and resolves image configs for several builds at once, each with its own credentials', async () => {
    const builds = {
      authorized: build({ username: USER, secret: PASSWORD }),
      anonymous: build(null),
      wrong: build({ username: USER, secret: 'not it' }),
      authorizedToo: build({ username: USER, secret: PASSWORD }),
    };
    const attempt = (ctx: BuildContext) =>
      Promise.all([
        source.resolveImageConfig(pushed.reference, {}, ctx),
        source.resolve(source.identify('docker-image', pushed.reference, {}), ctx).then((i) => i.cacheKey(ctx)),
      ]).then(
        ([config, key]) => ({ ok: true as const, digest: config.digest, key: key.key }),
        (err: unknown) => ({ ok: false as const, err: err as Error }),
      );
    // Interleaved on the one source: the failures must not spoil the successes, nor the successes authorize the failures.
    const [authorized, anonymous, wrong, authorizedToo] = await Promise.all(
      [builds.authorized, builds.anonymous, builds.wrong, builds.authorizedToo].map((b) => attempt(b.ctx)),
    );
    for (const r of [authorized, authorizedToo]) expect(r).toEqual({ ok: true, digest: pushed.manifest.digest, key: pushed.manifest.digest });
    expect(anonymous.ok).toBe(false);
    if (!anonymous.ok) {
      expect(isBktError(anonymous.err, 'PERMISSION_DENIED')).toBe(true);
      expect(anonymous.err.message).toContain(`registry ${locked.host} requires authentication and no credentials are configured for it`);
    }
    expect(wrong.ok).toBe(false);
    if (!wrong.ok) {
      expect(isBktError(wrong.err, 'PERMISSION_DENIED')).toBe(true);
      expect(wrong.err.message).toContain(`registry ${locked.host} refused the credentials configured for it`);
    }
    // Each build's client was asked, once for the registry's host, however many requests its pulls made.
    for (const b of Object.values(builds)) expect(b.asked).toEqual([locked.host]);

    // After all that, a build with the credentials pulls the layers; one without still can't resolve the tag.
    const later = build({ username: USER, secret: PASSWORD });
    const snap = await (await source.resolve(source.identify('docker-image', pushed.reference, { 'image.resolvemode': 'pull' }), later.ctx)).snapshot(later.ctx);
    expect(snap.id).toBeTruthy();
    const stranger = build(null);
    const err = await source.resolve(source.identify('docker-image', pushed.reference, { 'image.resolvemode': 'pull' }), stranger.ctx).catch((e: unknown) => e);
    expect(isBktError(err, 'PERMISSION_DENIED')).toBe(true);
  });

  it('refuses credentials in the plugin\'s registry option', () => {
    expect(() => new ImageSource({ registry: { credentials: async () => undefined } as never })).toThrow(/registry option takes no credentials/);
  });
});
