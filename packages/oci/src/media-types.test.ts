import { describe, expect, it } from 'vitest';
import { isBktError } from '@bkt/core';
import { checkDescriptor, MediaType } from './media-types.js';

const digest = `sha256:${'a'.repeat(64)}`;
const good = { mediaType: MediaType.OciLayerGzip, digest, size: 10 };

describe('checkDescriptor', () => {
  it('accepts a well-formed descriptor, size 0 included', () => {
    expect(checkDescriptor(good, 'layer 1')).toBe(good);
    expect(checkDescriptor({ ...good, size: 0 }, 'layer 1').size).toBe(0);
  });

  it.each([
    ['a negative size', { ...good, size: -1 }, 'layer 1: invalid descriptor: size -1 of sha256:aaaa'],
    ['a fractional size', { ...good, size: 1.5 }, 'size 1.5 of'],
    ['a size beyond 2^53', { ...good, size: 2 ** 60 }, 'is not a non-negative integer'],
    ['a string size', { ...good, size: '10' }, 'size "10" of'],
    ['no size', { mediaType: good.mediaType, digest }, 'size undefined of'],
    ['a malformed digest', { ...good, digest: 'sha256:xyz' }, 'digest "sha256:xyz" is not a digest'],
    ['a media type with spaces', { ...good, mediaType: 'text plain' }, 'mediaType "text plain" is not a media type'],
    ['no media type', { digest, size: 1 }, 'mediaType undefined is not a media type'],
    ['not an object', [good], 'not a JSON object'],
  ])('refuses %s, naming the field', (_what, desc, message) => {
    let err: unknown;
    try {
      checkDescriptor(desc, 'layer 1');
    } catch (e) {
      err = e;
    }
    expect(isBktError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toContain(message);
  });
});
