/**
 * The content store: immutable blobs at `content/blobs/sha256/<hex>`.
 * A write goes to `content/ingest/<random>`, is fsynced, verified, then
 * renamed into place (and the directory fsynced), so a blob path either does
 * not exist or holds exactly the bytes of its digest. Leftover ingest files
 * of a crashed writer are removed when the store opens.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { BktError, type ContentStore, type Digest } from '@bkt/core';

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

export class FileContentStore implements ContentStore {
  readonly blobsDir: string;
  readonly ingestDir: string;

  constructor(readonly dir: string) {
    this.blobsDir = join(dir, 'blobs', 'sha256');
    this.ingestDir = join(dir, 'ingest');
  }

  /** Creates the directories and removes partial writes of an earlier process. */
  async init(): Promise<void> {
    await rm(this.ingestDir, { recursive: true, force: true });
    await mkdir(this.blobsDir, { recursive: true });
    await mkdir(this.ingestDir, { recursive: true });
  }

  async has(digest: Digest): Promise<boolean> {
    checkDigest(digest);
    return stat(this.#blobPath(digest)).then(
      () => true,
      () => false,
    );
  }

  path(digest: Digest): string {
    checkDigest(digest);
    const p = this.#blobPath(digest);
    if (!existsSync(p)) throw new BktError('NOT_FOUND', `blob ${digest} is not in the content store (${this.dir})`, { digest });
    return p;
  }

  async write(
    data: Uint8Array | AsyncIterable<Uint8Array>,
    expected?: Digest,
  ): Promise<{ digest: Digest; size: number }> {
    if (expected !== undefined) checkDigest(expected);
    const tmp = join(this.ingestDir, randomBytes(8).toString('hex'));
    const hash = createHash('sha256');
    let size = 0;
    const fh = await open(tmp, 'wx', 0o644);
    try {
      const chunks: AsyncIterable<Uint8Array> | Uint8Array[] = data instanceof Uint8Array ? [data] : data;
      for await (const chunk of chunks) {
        hash.update(chunk);
        size += chunk.length;
        let off = 0;
        while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
      }
      await fh.sync();
    } catch (err) {
      await fh.close();
      await rm(tmp, { force: true });
      throw err;
    }
    await fh.close();
    const digest = `sha256:${hash.digest('hex')}` as Digest;
    if (expected !== undefined && expected !== digest) {
      await rm(tmp, { force: true });
      throw new BktError('INVALID_ARGUMENT', `content digest mismatch: expected ${expected}, got ${digest} (${size} bytes)`, {
        digest: expected,
      });
    }
    await rename(tmp, this.#blobPath(digest));
    await fsyncDir(this.blobsDir);
    return { digest, size };
  }

  #blobPath(digest: Digest): string {
    return join(this.blobsDir, digest.slice('sha256:'.length));
  }
}

function checkDigest(digest: string): void {
  if (!DIGEST_RE.test(digest)) throw new BktError('INVALID_ARGUMENT', `invalid digest "${digest}" (want sha256:<64 hex>)`);
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
