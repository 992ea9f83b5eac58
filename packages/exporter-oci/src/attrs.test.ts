import { describe, expect, it } from 'vitest';
import { parseExportAttrs } from './attrs.js';

describe('parseExportAttrs', () => {
  it('reads BuildKit attributes and annotations', () => {
    const o = parseExportAttrs('image', {
      name: 'a/b:1, c/d:2',
      push: '',
      compression: 'zstd',
      'annotation.org.x': '1',
      'annotation-index.org.y': '2',
      'annotation-manifest[linux/arm64].org.z': '3',
    });
    expect(o.names).toEqual(['a/b:1', 'c/d:2']);
    expect(o.push).toBe(true);
    expect(o.ociMediaTypes).toBe(true); // zstd switches to OCI media types
    expect(o.annotations).toEqual([
      { target: 'manifest', platform: undefined, key: 'org.x', value: '1' },
      { target: 'index', platform: undefined, key: 'org.y', value: '2' },
      { target: 'manifest', platform: 'linux/arm64', key: 'org.z', value: '3' },
    ]);
  });

  it('names the bad attribute', () => {
    expect(() => parseExportAttrs('image', { push: 'maybe' })).toThrow('image exporter: attribute push must be true or false, got "maybe"');
    expect(() => parseExportAttrs('image', { compression: 'lz4' })).toThrow(/compression must be gzip, zstd or uncompressed/);
    expect(() => parseExportAttrs('image', { compression: 'zstd', 'oci-mediatypes': 'false' })).toThrow(/zstd needs oci-mediatypes=true/);
    expect(() => parseExportAttrs('oci', { dest: 'x', push: 'true' })).toThrow('oci exporter: unknown attribute "push"');
    expect(() => parseExportAttrs('image', { push: 'true' })).toThrow(/push needs an image name/);
    expect(() => parseExportAttrs('image', { 'source-date-epoch': 'yesterday' })).toThrow(/SOURCE_DATE_EPOCH must be whole seconds/);
  });
});
