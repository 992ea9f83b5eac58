import { createBkt, isBktError, type BktPlugin, type BuildContext, type FrontendBridge } from '@bkt/core';
import cacheBackends from '@bkt/cache-registry';
import ociExporters from '@bkt/exporter-oci';
import dockerfile from '@bkt/frontend-dockerfile';
import frontendGateway from '@bkt/frontend-gateway';
import { describe, expect, it } from 'vitest';
import { cacheBackendsDeclaration, checkDeclaration, dockerfileDeclaration, gatewayDeclaration, lazyPlugin, ociExportersDeclaration } from './lazy-plugins.js';

describe('lazy plugins of the default preset', () => {
  it.each([
    [ociExportersDeclaration, () => ociExporters()],
    [dockerfileDeclaration, () => dockerfile()],
    [gatewayDeclaration, () => frontendGateway()],
    [cacheBackendsDeclaration, () => cacheBackends()],
  ])('declare exactly what the real plugin registers (%o)', (decl, real) => {
    expect(() => checkDeclaration(decl, real())).not.toThrow();
  });

  it('imports the plugin on first use only, once, and runs its setup on the build\'s hooks', async () => {
    let loads = 0;
    let shutdowns = 0;
    const real: BktPlugin = {
      name: 'x',
      frontends: [{ name: 'x.v0', solve: async (attrs) => ({ ref: null, metadata: { got: new TextEncoder().encode(attrs.a ?? '') } }) }],
      exporters: [{ type: 'thing', resolve: async () => ({ export: async () => ({ done: 'yes' }) }) }],
      setup({ hooks }) {
        hooks.shutdown.tapPromise('x', async () => void shutdowns++);
      },
    };
    const plugin = lazyPlugin({ name: 'x', frontends: ['x.v0'], exporters: ['thing'] }, async () => {
      loads++;
      return real;
    });
    const bkt = await createBkt([plugin]);
    expect(loads).toBe(0);
    const fe = bkt.registries.frontends.require('x.v0');
    const [a, b] = await Promise.all([
      fe.solve({ a: '1' }, {} as FrontendBridge, {} as BuildContext),
      fe.solve({ a: '2' }, {} as FrontendBridge, {} as BuildContext),
    ]);
    expect([a.metadata.got, b.metadata.got].map((m) => new TextDecoder().decode(m))).toEqual(['1', '2']);
    const inst = await bkt.registries.exporters.require('thing').resolve({});
    expect(await inst.export({} as never, {} as BuildContext)).toEqual({ done: 'yes' });
    expect(loads).toBe(1);
    await bkt.hooks.shutdown.promise();
    expect(shutdowns).toBe(1);
  });

  it('never loads a plugin no build used (its shutdown does nothing)', async () => {
    let loads = 0;
    const bkt = await createBkt([lazyPlugin({ name: 'y', exporters: ['y'] }, async () => (loads++, { name: 'y', exporters: [] }))]);
    await bkt.hooks.shutdown.promise();
    expect(loads).toBe(0);
  });

  it('refuses a loaded plugin that is not the declared one, naming it', async () => {
    const plugin = lazyPlugin({ name: 'z', frontends: ['z.v0'] }, async () => ({ name: 'z', frontends: [], sources: [] }));
    const bkt = await createBkt([plugin]);
    const err = await bkt.registries.frontends.require('z.v0').solve({}, {} as FrontendBridge, {} as BuildContext).catch((e: unknown) => e);
    expect(isBktError(err) && err.code).toBe('PLUGIN');
    expect((err as Error).message).toContain('z: the plugin loaded on first use is not the one declared');
  });
});
