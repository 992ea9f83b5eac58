import { describe, expect, it } from 'vitest';
import { createBkt } from './bkt.js';
import { isBktError } from './errors.js';
import { definePlugin } from './plugin.js';
import type { Exporter } from './types.js';

const exporter = (type: string): Exporter => ({ type, resolve: async () => ({ export: async () => ({}) }) });

describe('createBkt', () => {
  it('registers backends by key with their plugin as owner, then runs setup() in order', async () => {
    const order: string[] = [];
    const a = definePlugin({
      name: 'a',
      exporters: [exporter('local')],
      setup({ registries, projectDir }) {
        // every plugin's backends are registered before any setup runs
        expect(registries.exporters.has('tar')).toBe(true);
        expect(projectDir).toBe('/proj');
        order.push('a');
      },
    });
    const b = definePlugin({ name: 'b', exporters: [exporter('tar')], setup: () => void order.push('b') });
    const bkt = await createBkt([a, b], { projectDir: '/proj' });
    expect(order).toEqual(['a', 'b']);
    expect(bkt.registries.exporters.owner('local')).toBe('a');
    expect(bkt.registries.exporters.owner('tar')).toBe('b');
    expect(bkt.plugins.map((p) => p.name)).toEqual(['a', 'b']);
  });

  it('fails on two plugins registering the same key, naming both', async () => {
    const one = definePlugin({ name: '@bkt/exporter-local', exporters: [exporter('local')] });
    const two = definePlugin({ name: 'bkt-plugin-fancy-local', exporters: [exporter('local')] });
    const err = await createBkt([one, two]).catch((e: unknown) => e);
    expect(isBktError(err, 'DUPLICATE_KEY')).toBe(true);
    expect((err as Error).message).toContain('@bkt/exporter-local');
    expect((err as Error).message).toContain('bkt-plugin-fancy-local');
    expect((err as Error).message).toContain('"local"');
  });

  it('registers a source under each of its schemes', async () => {
    const src = { schemes: ['https', 'http'], identify: () => ({}) as never, resolve: async () => ({}) as never };
    const bkt = await createBkt([{ name: 'http', sources: [src] }]);
    expect(bkt.registries.sources.require('http')).toBe(src);
    expect(bkt.registries.sources.require('https')).toBe(src);
  });

  it('close() runs the shutdown hook', async () => {
    let closed = 0;
    const bkt = await createBkt([{ name: 'p', setup: ({ hooks }) => hooks.shutdown.tap('p', () => void closed++) }]);
    await bkt.close();
    expect(closed).toBe(1);
  });
});
