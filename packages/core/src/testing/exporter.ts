import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BktError, isBktError } from '../errors.js';
import type { Attrs, BuildContext, BuildResult, Exporter } from '../types.js';

/** What an exporter conformance run needs. */
export interface ExporterFixture {
  exporter: Exporter;
  /** A build context with a working snapshotter and content store. */
  context: BuildContext;
  /** A result holding a tree with at least one file (built with `context.snapshotter`). */
  result(): Promise<BuildResult>;
  /** Attributes for a valid export to a fresh destination (a new directory, file, or registry repo). */
  validAttrs(): Promise<Attrs>;
  /** Attributes without which `resolve` must fail, naming the attribute (e.g. `dest` for local/tar). */
  requiredAttrs?: string[];
  /** Checks that what the export wrote (where `attrs` point) holds `result`'s tree; throws otherwise. */
  verify(attrs: Attrs, response: Record<string, string>): Promise<void>;
  cleanup(): Promise<void>;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

/**
 * The behaviour every `Exporter` must have, as vitest tests. Each test gets a
 * fresh fixture from `factory`.
 */
export function describeExporterConformance(name: string, factory: () => Promise<ExporterFixture>): void {
  describe(`Exporter conformance: ${name}`, () => {
    let fx: ExporterFixture;
    beforeEach(async () => {
      fx = await factory();
    });
    afterEach(async () => {
      await fx.cleanup();
    });

    it('has a non-empty type', () => {
      expect(typeof fx.exporter.type).toBe('string');
      expect(fx.exporter.type).not.toBe('');
    });

    it('rejects an unknown attribute with a BktError naming it', async () => {
      const attrs = { ...(await fx.validAttrs()), 'bkt-conformance-no-such-attr': '1' };
      const err = await rejection(fx.exporter.resolve(attrs));
      expect(err).toBeInstanceOf(BktError);
      expect((err as Error).message).toContain('bkt-conformance-no-such-attr');
    });

    it('rejects a missing required attribute with a BktError naming it', async () => {
      for (const attr of fx.requiredAttrs ?? []) {
        const attrs = await fx.validAttrs();
        delete attrs[attr];
        const err = await rejection(fx.exporter.resolve(attrs));
        expect(err, `without "${attr}"`).toBeInstanceOf(BktError);
        expect((err as Error).message).toContain(attr);
      }
    });

    it('exports a result so that verify() finds its tree', async () => {
      const attrs = await fx.validAttrs();
      const instance = await fx.exporter.resolve(attrs);
      const response = await instance.export(await fx.result(), fx.context);
      expect(typeof response).toBe('object');
      for (const v of Object.values(response)) expect(typeof v).toBe('string');
      await fx.verify(attrs, response);
    });

    it('exports an empty (scratch) result without error', async () => {
      const instance = await fx.exporter.resolve(await fx.validAttrs());
      await instance.export({ ref: null, metadata: {} }, fx.context);
    });

    it('stops with CANCELLED (or an abort error) when the build is already cancelled', async () => {
      const instance = await fx.exporter.resolve(await fx.validAttrs());
      const result = await fx.result();
      const controller = new AbortController();
      controller.abort();
      const ctx: BuildContext = { ...fx.context, signal: controller.signal };
      const err = await rejection(instance.export(result, ctx));
      expect(err, 'export must not succeed once the signal is aborted').toBeDefined();
      const cancelled = isBktError(err, 'CANCELLED') || (err as Error)?.name === 'AbortError';
      expect(cancelled, `got ${String(err)}`).toBe(true);
    });
  });
}
