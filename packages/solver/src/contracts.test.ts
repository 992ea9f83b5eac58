/**
 * The declared contracts the solver consumes: cache backends and attestation
 * producers reached from the solve request, and the `ImageConfigResolver`
 * capability of sources.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  BktError,
  createBkt,
  isBktError,
  type AttestationProducer,
  type BktPlugin,
  type CacheBackend,
  type Exporter,
  type FrontendBridge,
  type ImageConfigResolver,
  type Source,
} from '@bkt/core';
import type { Solver } from './api.js';
import { openSolver } from './solver.js';

let root: string;
let solver: Solver | undefined;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'bkt-contracts-'));
});

afterEach(async () => {
  await solver?.close();
  solver = undefined;
  await rm(root, { recursive: true, force: true });
});

async function open(plugins: BktPlugin[]): Promise<Solver> {
  solver = await openSolver({ root, bkt: await createBkt(plugins) });
  return solver;
}

/** A frontend `test.v0` that runs `body` and returns an empty result. */
function frontendPlugin(body: (bridge: FrontendBridge) => Promise<void> = async () => {}): BktPlugin {
  return {
    name: 'test-frontend',
    frontends: [{ name: 'test.v0', solve: async (_attrs, bridge) => (await body(bridge), { ref: null, metadata: {} }) }],
  };
}

/** Fakes of every kind, recording the order they are called in. */
function fakes(calls: string[]) {
  const cache: CacheBackend = {
    type: 'fake-cache',
    async importer(attrs) {
      calls.push(`importer(${attrs.ref})`);
      return { load: async () => (calls.push('cache import'), { description: 'fake', lookup: () => undefined }) };
    },
    async exporter(attrs) {
      calls.push(`exporter(${attrs.ref})`);
      return { export: async () => (calls.push('cache export'), { 'cache.exported': attrs.ref ?? '' }) };
    },
  };
  const exportOnly: CacheBackend = { type: 'export-only', exporter: async () => ({ export: async () => ({}) }) };
  const producer: AttestationProducer = {
    kind: 'fake-sbom',
    async produce(_result, attrs) {
      calls.push('produce');
      return [{ kind: 'fake-sbom', predicateType: 'https://example.com/sbom', payload: new TextEncoder().encode(attrs.scope ?? '') }];
    },
  };
  const exporter: Exporter = {
    type: 'fake-exporter',
    resolve: async () => ({
      async export(result) {
        calls.push(`export(${result.attestations?.map((a) => a.predicateType).join(',') ?? 'none'})`);
        return { 'exporter.done': 'yes' };
      },
    }),
  };
  const plugin: BktPlugin = {
    name: 'fakes',
    cacheBackends: [cache, exportOnly],
    attestationProducers: [producer],
    exporters: [exporter],
    setup({ hooks }) {
      hooks.attest.tapPromise('fakes', async (_result, attestations) => {
        calls.push(`attest hook(${attestations.length})`);
        attestations.push({ kind: 'hooked', predicateType: 'https://example.com/hooked', payload: new Uint8Array() });
      });
      hooks.beforeExport.tap('fakes', () => void calls.push('beforeExport'));
    },
  };
  return plugin;
}

describe('cache backends and attestation producers from the solve request', () => {
  it('imports before solving, produces attestations before export, exports cache after the exporters', async () => {
    const calls: string[] = [];
    const s = await open([fakes(calls), frontendPlugin(async () => void calls.push('frontend'))]);
    const res = await s.solve({
      frontend: 'test.v0',
      exporters: [{ type: 'fake-exporter', attrs: {} }],
      cacheImports: [{ type: 'fake-cache', attrs: { ref: 'in' } }],
      cacheExports: [{ type: 'fake-cache', attrs: { ref: 'out' } }],
      attestations: [{ kind: 'fake-sbom', attrs: { scope: 'all' } }],
    });
    expect(calls).toEqual([
      'importer(in)',
      'exporter(out)',
      'cache import',
      'frontend',
      'produce',
      'attest hook(1)',
      'beforeExport',
      'export(https://example.com/sbom,https://example.com/hooked)',
      'cache export',
    ]);
    expect(res.exporterResponse).toEqual({ 'exporter.done': 'yes', 'cache.exported': 'out' });
    expect(new TextDecoder().decode(res.result.attestations?.[0]?.payload)).toBe('all');
  });

  it('without cache or attestation requests, none is called', async () => {
    const calls: string[] = [];
    const s = await open([fakes(calls), frontendPlugin()]);
    const res = await s.solve({ frontend: 'test.v0', exporters: [{ type: 'fake-exporter', attrs: {} }] });
    expect(calls).toEqual(['beforeExport', 'export(none)']);
    expect(res.result.attestations).toBeUndefined();
  });

  it('an unknown cache type or attestation kind fails before anything runs, naming it and the known ones', async () => {
    const calls: string[] = [];
    const s = await open([fakes(calls), frontendPlugin(async () => void calls.push('frontend'))]);
    const cacheErr = await s.solve({ frontend: 'test.v0', cacheImports: [{ type: 's3', attrs: {} }] }).catch((e: unknown) => e);
    expect(isBktError(cacheErr, 'NOT_FOUND')).toBe(true);
    expect((cacheErr as Error).message).toBe('unknown cache backend "s3" (registered: export-only, fake-cache)');
    const attestErr = await s.solve({ frontend: 'test.v0', attestations: [{ kind: 'provenance', attrs: {} }] }).catch((e: unknown) => e);
    expect(isBktError(attestErr, 'NOT_FOUND')).toBe(true);
    expect((attestErr as Error).message).toBe('unknown attestation producer "provenance" (registered: fake-sbom)');
    expect(calls).toEqual([]);
  });

  it('a backend asked for a side it lacks is an error naming it', async () => {
    const s = await open([fakes([]), frontendPlugin()]);
    const err = await s.solve({ frontend: 'test.v0', cacheImports: [{ type: 'export-only', attrs: {} }] }).catch((e: unknown) => e);
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toMatch(/cache backend "export-only" cannot import caches/);
  });
});

describe('the ImageConfigResolver capability', () => {
  const config = new TextEncoder().encode('{"os":"linux","architecture":"amd64"}');
  const digest = `sha256:${'ab'.repeat(32)}` as const;

  function source(scheme: string, resolver?: ImageConfigResolver['resolveImageConfig']): Source {
    return {
      schemes: [scheme],
      identify: (s, ref, attrs, platform) => ({ scheme: s, ref, attrs, platform }),
      resolve: async () => {
        throw new BktError('UNIMPLEMENTED', 'not used here');
      },
      ...(resolver ? { resolveImageConfig: resolver } : {}),
    };
  }

  it('is asked of the source registered for the ref\'s scheme', async () => {
    const asked: string[] = [];
    let got: unknown;
    const s = await open([
      { name: 'layouts', sources: [source('oci-layout', async (ref, opts) => (asked.push(`${ref} ${opts.resolveMode}`), { digest, config }))] },
      frontendPlugin(async (bridge) => {
        got = await bridge.resolveImageConfig!('oci-layout://store:v1');
      }),
    ]);
    await s.solve({ frontend: 'test.v0' });
    expect(asked).toEqual(['oci-layout://store:v1 default']);
    expect(got).toEqual({ digest, config });
  });

  it('a registered source without the capability is UNIMPLEMENTED, naming the scheme', async () => {
    const s = await open([
      { name: 'images', sources: [source('docker-image')] },
      frontendPlugin(async (bridge) => {
        await bridge.resolveImageConfig!('alpine');
      }),
    ]);
    const err = await s.solve({ frontend: 'test.v0' }).catch((e: unknown) => e);
    expect(isBktError(err, 'UNIMPLEMENTED')).toBe(true);
    expect((err as Error).message).toMatch(/no registered docker-image source resolves image configs/);
  });
});
