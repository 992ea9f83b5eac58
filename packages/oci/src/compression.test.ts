import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { compress, compressionOfMediaType, decompress, detectCompression, type Compression } from './compression.js';
import { MediaType } from './media-types.js';

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

async function* once(bytes: Uint8Array) {
  yield bytes;
}

const hasZstd = (() => {
  try {
    execFileSync('zstd', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('compression', () => {
  it.each([
    [MediaType.OciLayer, 'uncompressed'],
    [MediaType.OciLayerGzip, 'gzip'],
    [MediaType.OciLayerZstd, 'zstd'],
    [MediaType.DockerLayer, 'uncompressed'],
    [MediaType.DockerLayerGzip, 'gzip'],
    [MediaType.OciConfig, undefined],
    ['application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', 'gzip'],
  ])('the media type %s declares %s', (mediaType, want) => {
    expect(compressionOfMediaType(mediaType)).toBe(want);
  });

  it('tells gzip, zstd and plain bytes by their magic', () => {
    expect(detectCompression(Uint8Array.of(0x1f, 0x8b, 8))).toBe('gzip');
    expect(detectCompression(Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd))).toBe('zstd');
    expect(detectCompression(new TextEncoder().encode('ustar'))).toBe('uncompressed');
    expect(detectCompression(new Uint8Array())).toBe('uncompressed');
  });

  it.each<Compression>(['gzip', 'uncompressed', ...(hasZstd ? (['zstd'] as const) : [])])('round-trips %s', async (compression) => {
    const plain = Buffer.from('layer bytes '.repeat(1000));
    const packed = await collect(compress(once(plain), compression, undefined, 'test layer'));
    expect(detectCompression(packed)).toBe(compression);
    expect((await collect(decompress(once(packed), 'test layer'))).equals(plain)).toBe(true);
  });
});
