import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BktError, isBktError } from '../errors.js';
import type { Attrs, BuildContext, Mounted, Platform, Source } from '../types.js';

/** An identifier a source is asked to handle. */
export interface SourceCase {
  scheme: string;
  ref: string;
  attrs?: Attrs;
  platform?: Platform;
}

/** What a source conformance run needs. */
export interface SourceFixture {
  source: Source;
  /** A build context with a working snapshotter and content store (and `localDirs` etc. as the source needs). */
  context: BuildContext;
  /** An identifier that resolves, and the files its snapshot must hold: path → content (null: a directory). */
  valid: SourceCase & { expect: Record<string, string | null> };
  /** Identifiers that `identify` must reject, with a word the error message must contain (the bad attribute or part). */
  invalid?: (SourceCase & { mentions: string })[];
  /** Changes the content behind `valid`, after which its cache key must differ. Omit for immutable sources. */
  mutate?(): Promise<void>;
  cleanup(): Promise<void>;
}

/**
 * The behaviour every `Source` must have, as vitest tests. Each test gets a
 * fresh fixture from `factory`.
 */
export function describeSourceConformance(name: string, factory: () => Promise<SourceFixture>): void {
  describe(`Source conformance: ${name}`, () => {
    let fx: SourceFixture;
    const mounts: Mounted[] = [];
    beforeEach(async () => {
      fx = await factory();
    });
    afterEach(async () => {
      for (const m of mounts.splice(0)) await m.release();
      await fx.cleanup();
    });

    function identify(c: SourceCase) {
      return fx.source.identify(c.scheme, c.ref, c.attrs ?? {}, c.platform);
    }

    it('declares its schemes, including the one of the valid case', () => {
      expect(fx.source.schemes.length).toBeGreaterThan(0);
      expect(new Set(fx.source.schemes).size).toBe(fx.source.schemes.length);
      expect(fx.source.schemes).toContain(fx.valid.scheme);
    });

    it('identify() returns the scheme and keeps the attrs', () => {
      const id = identify(fx.valid);
      expect(id.scheme).toBe(fx.valid.scheme);
      for (const [k, v] of Object.entries(fx.valid.attrs ?? {})) expect(id.attrs[k], k).toBe(v);
    });

    it('identify() rejects bad identifiers with a BktError naming what is wrong', () => {
      for (const c of fx.invalid ?? []) {
        let err: unknown;
        try {
          identify(c);
        } catch (e) {
          err = e;
        }
        expect(err, `${c.scheme}://${c.ref} ${JSON.stringify(c.attrs ?? {})}`).toBeInstanceOf(BktError);
        expect((err as Error).message).toContain(c.mentions);
      }
    });

    it('the cache key is stable for unchanged content', async () => {
      const id = identify(fx.valid);
      const k1 = await (await fx.source.resolve(id, fx.context)).cacheKey(fx.context);
      const k2 = await (await fx.source.resolve(identify(fx.valid), fx.context)).cacheKey(fx.context);
      expect(typeof k1.key).toBe('string');
      expect(k1.key).not.toBe('');
      expect(k2.key).toBe(k1.key);
    });

    it('the snapshot holds the expected files', async () => {
      const inst = await fx.source.resolve(identify(fx.valid), fx.context);
      await inst.cacheKey(fx.context);
      const snap = await inst.snapshot(fx.context);
      const m = await snap.mount();
      mounts.push(m);
      expect(Object.keys(fx.valid.expect).length, 'valid.expect must name at least one file (else this test checks nothing)').toBeGreaterThan(0);
      for (const [p, content] of Object.entries(fx.valid.expect)) {
        const full = path.join(m.path, p);
        if (content === null) expect((await stat(full)).isDirectory(), p).toBe(true);
        else expect(await readFile(full, 'utf8'), p).toBe(content);
      }
    });

    it('the cache key changes when the content changes', async () => {
      if (!fx.mutate) return;
      const k1 = await (await fx.source.resolve(identify(fx.valid), fx.context)).cacheKey(fx.context);
      await fx.mutate();
      const k2 = await (await fx.source.resolve(identify(fx.valid), fx.context)).cacheKey(fx.context);
      expect(k2.key).not.toBe(k1.key);
    });

    it('stops when the build is already cancelled', async () => {
      const controller = new AbortController();
      controller.abort();
      const ctx: BuildContext = { ...fx.context, signal: controller.signal };
      const err = await (async () => {
        const inst = await fx.source.resolve(identify(fx.valid), ctx);
        await inst.cacheKey(ctx);
        await inst.snapshot(ctx);
      })().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, 'resolving must not succeed once the signal is aborted').toBeDefined();
      expect(isBktError(err, 'CANCELLED') || (err as Error)?.name === 'AbortError', `got ${String(err)}`).toBe(true);
    });
  });
}
