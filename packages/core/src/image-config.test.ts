import { describe, expect, it } from 'vitest';
import { isImageConfigResolver } from './image-config.js';
import type { ImageConfigResolver, Source } from './types.js';

const base: Source = {
  schemes: ['docker-image'],
  identify: (scheme, ref, attrs) => ({ scheme, ref, attrs }),
  resolve: async () => {
    throw new Error('not used');
  },
};

describe('isImageConfigResolver', () => {
  it('is true for a source implementing ImageConfigResolver, false otherwise', () => {
    const resolver: Source & ImageConfigResolver = {
      ...base,
      resolveImageConfig: async () => ({ digest: `sha256:${'0'.repeat(64)}`, config: new Uint8Array() }),
    };
    expect(isImageConfigResolver(resolver)).toBe(true);
    expect(isImageConfigResolver(base)).toBe(false);
    expect(isImageConfigResolver(undefined)).toBe(false);
  });
});
