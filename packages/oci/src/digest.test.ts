import { describe, expect, it } from 'vitest';
import { digestOf, digesting, isDigest } from './digest.js';

const EMPTY = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

describe('digests', () => {
  it('digestOf hashes bytes and strings alike', () => {
    expect(digestOf(new Uint8Array())).toBe(EMPTY);
    expect(digestOf('abc')).toBe(digestOf(new TextEncoder().encode('abc')));
    expect(digestOf('abc')).toBe('sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it.each([
    [EMPTY, true],
    [EMPTY.toUpperCase(), false],
    ['sha256:abc', false],
    [`sha512:${'a'.repeat(128)}`, false],
    [EMPTY.slice('sha256:'.length), false],
  ])('isDigest(%j) is %s', (d, want) => {
    expect(isDigest(d)).toBe(want);
  });

  it('digesting passes a stream through and gives its digest at the end', async () => {
    async function* source() {
      yield new TextEncoder().encode('a');
      yield new TextEncoder().encode('bc');
    }
    const d = digesting(source());
    expect(() => d.digest()).toThrow(/read to the end/);
    const seen: string[] = [];
    for await (const chunk of d.chunks) seen.push(new TextDecoder().decode(chunk));
    expect(seen).toEqual(['a', 'bc']);
    expect(d.digest()).toBe(digestOf('abc'));
  });
});
