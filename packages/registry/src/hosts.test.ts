/** Host settings (plain HTTP, insecure TLS, mirrors), the retry backoff, and bounded parallelism. */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { isBktError } from '@bkt/core';
import { digestOf } from '@bkt/oci';
import { RegistryClient } from './client.js';
import { staticCredentials } from './credentials.js';
import { pullEndpoints, pushEndpoint } from './hosts.js';
import { backoffDelay, DEFAULT_RETRY } from './http.js';
import { Limiter } from './limiter.js';
import { startFaultProxy } from './testing/fault-proxy.js';
import { startRegistry } from './testing/registry-server.js';


describe('endpoints', () => {
  it('uses HTTPS by default, plain HTTP for loopback, and Docker Hub\'s API host', () => {
    expect(pushEndpoint('ghcr.io', {}).base).toBe('https://ghcr.io/v2');
    expect(pushEndpoint('docker.io', {}).base).toBe('https://registry-1.docker.io/v2');
    expect(pushEndpoint('127.0.0.1:5000', {}).base).toBe('http://127.0.0.1:5000/v2');
    expect(pushEndpoint('localhost:5000', {}).base).toBe('http://localhost:5000/v2');
    expect(pushEndpoint('[::1]:5000', {}).base).toBe('http://[::1]:5000/v2');
    expect(pushEndpoint('127.0.0.1:5000', { '127.0.0.1:5000': { http: false, insecure: true } })).toMatchObject({
      base: 'https://127.0.0.1:5000/v2',
      insecure: true,
    });
    expect(pushEndpoint('reg.local', { 'reg.local': { http: true } }).base).toBe('http://reg.local/v2');
  });

  it('makes insecure + http (given, or loopback\'s default) HTTPS without verification that may fall back to HTTP, as BuildKit', () => {
    expect(pushEndpoint('127.0.0.1:5000', { '127.0.0.1:5000': { insecure: true } })).toMatchObject({
      base: 'https://127.0.0.1:5000/v2',
      insecure: true,
      httpFallback: true,
    });
    expect(pushEndpoint('reg.local', { 'reg.local': { insecure: true, http: true } })).toMatchObject({ base: 'https://reg.local/v2', httpFallback: true });
    expect(pushEndpoint('reg.local', { 'reg.local': { insecure: true } })).toMatchObject({ base: 'https://reg.local/v2', httpFallback: false });
    expect(pushEndpoint('127.0.0.1:5000', {})).toMatchObject({ base: 'http://127.0.0.1:5000/v2', httpFallback: false });
  });

  it('lists mirrors (with their own settings and path prefixes) before the origin for pulls only', () => {
    const hosts = { 'docker.io': { mirrors: ['mirror.local/hub', 'm2.local:5000'] }, 'm2.local:5000': { http: true } };
    expect(pullEndpoints('docker.io', hosts).map((e) => [e.base, e.mirror])).toEqual([
      ['https://mirror.local/hub/v2', true],
      ['http://m2.local:5000/v2', true],
      ['https://registry-1.docker.io/v2', false],
    ]);
    expect(pushEndpoint('docker.io', hosts).base).toBe('https://registry-1.docker.io/v2');
  });
});

describe('backoffDelay', () => {
  const policy = { ...DEFAULT_RETRY, baseDelayMs: 100, maxDelayMs: 1000 };
  it('grows exponentially under a cap, with jitter', () => {
    for (let i = 0; i < 50; i++) {
      expect(backoffDelay(policy, 1)).toBeLessThanOrEqual(100);
      expect(backoffDelay(policy, 3)).toBeLessThanOrEqual(400);
      expect(backoffDelay(policy, 10)).toBeLessThanOrEqual(1000);
    }
    const samples = new Set(Array.from({ length: 20 }, () => backoffDelay(policy, 4)));
    expect(samples.size).toBeGreaterThan(1);
  });

  it('honours Retry-After in seconds or as a date, capped', () => {
    expect(backoffDelay(policy, 1, '0')).toBe(0);
    expect(backoffDelay(policy, 1, '0.5')).toBe(500);
    expect(backoffDelay(policy, 1, '120')).toBe(1000);
    const inAbout300ms = new Date(Date.now() + 300_000).toUTCString();
    expect(backoffDelay(policy, 1, inAbout300ms)).toBe(1000);
  });
});

describe('Limiter', () => {
  it('runs at most `limit` tasks at once, in order', async () => {
    const limiter = new Limiter(2);
    let active = 0;
    let peak = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        limiter.run(async () => {
          active++;
          peak = Math.max(peak, active);
          order.push(i);
          await new Promise((r) => setTimeout(r, 10));
          active--;
        }),
      ),
    );
    expect(peak).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('bounds concurrent blob downloads of a client', async () => {
    const registry = await startRegistry();
    const proxy = await startFaultProxy(registry.host);
    const client = new RegistryClient({ credentials: staticCredentials({}), concurrency: 2 });
    try {
      const blobs = Array.from({ length: 6 }, () => randomBytes(200_000));
      for (const b of blobs) await client.pushBlob(`${registry.host}/par/a`, { digest: digestOf(b), size: b.length }, b);
      let inFlight = 0;
      let peak = 0;
      await Promise.all(
        blobs.map(async (b) => {
          const stream = client.blobStream(`${proxy.host}/par/a`, { digest: digestOf(b), size: b.length });
          let counted = false;
          for await (const _ of stream) {
            if (!counted) {
              counted = true;
              inFlight++;
              peak = Math.max(peak, inFlight);
            }
            await new Promise((r) => setTimeout(r, 5));
          }
          inFlight--;
        }),
      );
      expect(peak).toBe(2);
    } finally {
      client.close();
      await proxy.close();
      await registry.stop();
    }
  });
});

describe('TLS', () => {
  it('refuses a self-signed registry unless the host is marked insecure', async () => {
    const registry = await startRegistry({ tls: true });
    const strict = new RegistryClient({ credentials: staticCredentials({}), hosts: { [registry.host]: { http: false } }, retry: { attempts: 1 } });
    const insecure = new RegistryClient({ credentials: staticCredentials({}), hosts: { [registry.host]: { http: false, insecure: true } } });
    try {
      let err: unknown;
      await strict.ping(registry.host).catch((e) => (err = e));
      expect(isBktError(err)).toBe(true);
      expect((err as Error).message).toMatch(/self[- ]signed/i);
      await insecure.ping(registry.host);
      const data = randomBytes(1000);
      expect(await insecure.pushBlob(`${registry.host}/tls/a`, { digest: digestOf(data), size: data.length }, data)).toBe('uploaded');
      // A large blob (read as bulk data, over a TLS connection of its own) is held to the same rule.
      const large = randomBytes(300_000);
      const largeDesc = { digest: digestOf(large), size: large.length };
      await insecure.pushBlob(`${registry.host}/tls/a`, largeDesc, large);
      const back: Buffer[] = [];
      for await (const c of insecure.blobStream(`${registry.host}/tls/a`, largeDesc)) back.push(Buffer.from(c));
      expect(Buffer.concat(back).equals(large)).toBe(true);
      err = undefined;
      try {
        for await (const c of strict.blobStream(`${registry.host}/tls/a`, largeDesc)) void c;
      } catch (e) {
        err = e;
      }
      expect(isBktError(err)).toBe(true);
      expect((err as Error).message).toMatch(/self[- ]signed/i);
    } finally {
      strict.close();
      insecure.close();
      await registry.stop();
    }
  });

  it('with insecure + http, talks HTTPS to a TLS registry and falls back to HTTP for a plain one', async () => {
    const [tls, plain] = await Promise.all([startRegistry({ tls: true }), startRegistry()]);
    const hosts = { [tls.host]: { insecure: true, http: true }, [plain.host]: { insecure: true, http: true } };
    const client = new RegistryClient({ credentials: staticCredentials({}), hosts, retry: { attempts: 1 } });
    try {
      for (const host of [tls.host, plain.host]) {
        await client.ping(host);
        const large = randomBytes(300_000);
        const largeDesc = { digest: digestOf(large), size: large.length };
        await client.pushBlob(`${host}/fallback/a`, largeDesc, large);
        // A large blob is read as bulk data: over https, or over http after the TLS handshake got a plain-HTTP answer.
        const largeBack: Buffer[] = [];
        for await (const c of client.blobStream(`${host}/fallback/a`, largeDesc)) largeBack.push(Buffer.from(c));
        expect(Buffer.concat(largeBack).equals(large)).toBe(true);
        const data = randomBytes(3000);
        // Uploads follow the registry's Location (http:// for the plain one) and still end with the digest check.
        expect(await client.pushBlob(`${host}/fallback/a`, { digest: digestOf(data), size: data.length }, data, { chunkSize: 1024 })).toBe('uploaded');
        const back: Buffer[] = [];
        for await (const c of client.blobStream(`${host}/fallback/a`, { digest: digestOf(data), size: data.length })) back.push(Buffer.from(c));
        expect(Buffer.concat(back).equals(data)).toBe(true);
      }
    } finally {
      client.close();
      await Promise.all([tls.stop(), plain.stop()]);
    }
  });
});
