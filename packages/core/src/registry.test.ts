import { describe, expect, it } from 'vitest';
import { BktError, isBktError } from './errors.js';
import { createRegistries, Registry } from './registry.js';

describe('Registry', () => {
  it('rejects a duplicate key, naming the key and both owners', () => {
    const r = new Registry<number>('exporter');
    r.register('local', 1, '@bkt/exporter-local');
    let err: unknown;
    try {
      r.register('local', 2, 'bkt-plugin-other');
    } catch (e) {
      err = e;
    }
    expect(isBktError(err, 'DUPLICATE_KEY')).toBe(true);
    expect((err as BktError).message).toBe(
      'exporter "local" is registered twice: by @bkt/exporter-local and by bkt-plugin-other',
    );
    expect((err as BktError).details.owners).toEqual(['@bkt/exporter-local', 'bkt-plugin-other']);
    expect(r.get('local')).toBe(1); // the first registration stays
  });

  it('require() of an unknown key lists the registered keys, sorted', () => {
    const r = new Registry<string>('source');
    r.register('local', 'l', 'a');
    r.register('docker-image', 'd', 'b');
    expect(() => r.require('git')).toThrow('unknown source "git" (registered: docker-image, local)');
    expect(() => new Registry('frontend').require('x')).toThrow('unknown frontend "x" (registered: none)');
    expect(r.require('local')).toBe('l');
  });

  it('records owners and keys', () => {
    const r = new Registry<string>('cache backend');
    r.register('inline', 'i', 'p1');
    expect(r.owner('inline')).toBe('p1');
    expect(r.has('inline')).toBe(true);
    expect(r.has('registry')).toBe(false);
    expect(r.keys()).toEqual(['inline']);
  });

  it('createRegistries gives a frozen set of independent registries', () => {
    const a = createRegistries();
    const b = createRegistries();
    a.sources.register('local', {} as never, 'x');
    expect(b.sources.has('local')).toBe(false);
    expect(Object.isFrozen(a)).toBe(true);
    expect(Object.keys(a)).toEqual([
      'sources',
      'opExecutors',
      'exporters',
      'cacheBackends',
      'frontends',
      'attestationProducers',
    ]);
  });
});
