/**
 * Content digests as the OCI image spec writes them: `sha256:<64 lower-case
 * hex digits>`. bkt hashes with sha256 only.
 */
import { createHash, type Hash } from 'node:crypto';
import type { Digest } from '@bkt/core';

const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;

/** True when `digest` is a well-formed `sha256:<64 lowercase hex>` digest. */
export function isDigest(digest: string): digest is Digest {
  return SHA256_DIGEST.test(digest);
}

/** The sha256 digest of `bytes` (a string is hashed as UTF-8). */
export function digestOf(bytes: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** A stream passed through unchanged while its sha256 is computed. */
export interface DigestingStream {
  /** The bytes of the source, as they come. */
  readonly chunks: AsyncIterable<Uint8Array>;
  /** The digest of every byte `chunks` yielded; throws until `chunks` has been read to the end. */
  digest(): Digest;
}

/**
 * Hashes `source` as it is read (a layer's `diff_id` while it is compressed
 * or unpacked, without a second pass). `chunks` can be read once.
 */
export function digesting(source: AsyncIterable<Uint8Array>): DigestingStream {
  const hash: Hash = createHash('sha256');
  let result: Digest | undefined;
  async function* chunks(): AsyncGenerator<Uint8Array> {
    for await (const chunk of source) {
      hash.update(chunk);
      yield chunk;
    }
    result = `sha256:${hash.digest('hex')}`;
  }
  return {
    chunks: chunks(),
    digest() {
      if (result === undefined) throw new Error('digesting: the stream has not been read to the end');
      return result;
    },
  };
}
